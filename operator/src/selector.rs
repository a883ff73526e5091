//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), evaluated locally.
//!
//! The controller selects target pods from its own pod cache rather than by asking the API
//! server, so the semantics the API server would apply are reproduced here, exactly: every
//! requirement must hold; `NotIn` and `DoesNotExist` hold for a pod without the key; an empty
//! selector matches every pod.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A `matchExpressions` entry the API server would refuse, so no pod can be said to match it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// An operator other than In, NotIn, Exists and DoesNotExist.
    #[error(
        "matchExpressions[{index}]: unknown operator {operator:?}; use In, NotIn, Exists or DoesNotExist"
    )]
    UnknownOperator {
        /// Position in matchExpressions.
        index: usize,
        /// The operator given.
        operator: String,
    },
    /// In or NotIn without values.
    #[error("matchExpressions[{index}]: operator {operator} needs at least one value")]
    MissingValues {
        /// Position in matchExpressions.
        index: usize,
        /// In or NotIn.
        operator: String,
    },
    /// Exists or DoesNotExist with values.
    #[error("matchExpressions[{index}]: operator {operator} takes no values")]
    UnexpectedValues {
        /// Position in matchExpressions.
        index: usize,
        /// Exists or DoesNotExist.
        operator: String,
    },
}

/// One requirement on a label.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    /// The label is set to one of the values.
    In(String, BTreeSet<String>),
    /// The label is unset, or set to none of the values.
    NotIn(String, BTreeSet<String>),
    /// The label is set, to anything.
    Exists(String),
    /// The label is unset.
    DoesNotExist(String),
}

impl Requirement {
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Self::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Self::Exists(key) => labels.contains_key(key),
            Self::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// A [`LabelSelector`] checked once, then matched against many pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Checks `selector` the way the API server does and keeps its requirements; `matchLabels`
    /// `{k: v}` is the requirement `k In [v]`.
    pub fn new(selector: &LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(key, value)| Requirement::In(key.clone(), BTreeSet::from([value.clone()])))
            .collect();
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let key = expression.key.clone();
            let values: BTreeSet<String> = expression.values.iter().flatten().cloned().collect();
            let operator = expression.operator.clone();
            let requirement = match operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::MissingValues { index, operator });
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::UnexpectedValues { index, operator });
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                _ => return Err(SelectorError::UnknownOperator { index, operator }),
            };
            requirements.push(requirement);
        }
        Ok(Self { requirements })
    }

    /// Whether every requirement holds for an object with these labels (`None`: no labels).
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let none = BTreeMap::new();
        let labels = labels.unwrap_or(&none);
        self.requirements.iter().all(|r| r.holds(labels))
    }

    /// Whether the selector has no requirement at all, and so matches every object.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// The selector in the API's `labelSelector` query syntax (`k=v,k in (a,b),k notin (c),k,!k`),
/// so the API server sends only the pods it selects; [`Selector::matches`] stays the judge.
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |values: &BTreeSet<String>| values.iter().cloned().collect::<Vec<_>>().join(",");
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match requirement {
                Requirement::In(key, values) if values.len() == 1 => {
                    write!(f, "{key}={}", list(values))?
                }
                Requirement::In(key, values) => write!(f, "{key} in ({})", list(values))?,
                Requirement::NotIn(key, values) => write!(f, "{key} notin ({})", list(values))?,
                Requirement::Exists(key) => write!(f, "{key}")?,
                Requirement::DoesNotExist(key) => write!(f, "!{key}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expression(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        expressions: Vec<LabelSelectorRequirement>,
    ) -> Selector {
        Selector::new(&LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        })
        .unwrap()
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = selector(&[("app", "kafka"), ("role", "broker")], vec![]);
        assert!(s.matches(Some(&labels(&[
            ("app", "kafka"),
            ("role", "broker"),
            ("x", "y")
        ]))));
        assert!(!s.matches(Some(&labels(&[("app", "kafka")]))));
        assert!(!s.matches(Some(&labels(&[("app", "kafka"), ("role", "controller")]))));
        assert!(!s.matches(None));
    }

    #[test]
    fn each_operator_follows_kubernetes() {
        let in_ = selector(&[], vec![expression("role", "In", &["broker", "dual"])]);
        assert!(in_.matches(Some(&labels(&[("role", "dual")]))));
        assert!(!in_.matches(Some(&labels(&[("role", "controller")]))));
        assert!(!in_.matches(None));

        let not_in = selector(&[], vec![expression("role", "NotIn", &["controller"])]);
        assert!(not_in.matches(Some(&labels(&[("role", "broker")]))));
        assert!(!not_in.matches(Some(&labels(&[("role", "controller")]))));
        assert!(not_in.matches(None), "NotIn holds when the key is absent");

        let exists = selector(&[], vec![expression("broker-id", "Exists", &[])]);
        assert!(exists.matches(Some(&labels(&[("broker-id", "")]))));
        assert!(!exists.matches(Some(&labels(&[("other", "1")]))));

        let absent = selector(&[], vec![expression("canary", "DoesNotExist", &[])]);
        assert!(absent.matches(None));
        assert!(!absent.matches(Some(&labels(&[("canary", "true")]))));
    }

    #[test]
    fn labels_and_expressions_combine_with_and() {
        let s = selector(
            &[("app", "kafka")],
            vec![
                expression("role", "In", &["broker"]),
                expression("canary", "DoesNotExist", &[]),
            ],
        );
        assert!(s.matches(Some(&labels(&[("app", "kafka"), ("role", "broker")]))));
        assert!(!s.matches(Some(&labels(&[
            ("app", "kafka"),
            ("role", "broker"),
            ("canary", "1")
        ]))));
        assert!(!s.matches(Some(&labels(&[("role", "broker")]))));
    }

    #[test]
    fn writes_the_api_query_syntax() {
        let s = selector(
            &[("app", "kafka"), ("strimzi.io/cluster", "lab")],
            vec![
                expression("role", "In", &["broker", "dual"]),
                expression("zone", "NotIn", &["a"]),
                expression("broker-id", "Exists", &[]),
                expression("canary", "DoesNotExist", &[]),
            ],
        );
        assert_eq!(
            s.to_string(),
            "app=kafka,strimzi.io/cluster=lab,role in (broker,dual),zone notin (a),broker-id,!canary"
        );
        assert_eq!(
            Selector::new(&LabelSelector::default())
                .unwrap()
                .to_string(),
            ""
        );
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = Selector::new(&LabelSelector::default()).unwrap();
        assert!(s.is_empty());
        assert!(s.matches(None));
        assert!(!selector(&[("a", "b")], vec![]).is_empty());
    }

    #[test]
    fn refuses_what_the_api_server_refuses() {
        let bad = |e: LabelSelectorRequirement| {
            Selector::new(&LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![expression("ok", "Exists", &[]), e]),
            })
            .unwrap_err()
        };
        assert_eq!(
            bad(expression("k", "Equals", &["v"])),
            SelectorError::UnknownOperator {
                index: 1,
                operator: "Equals".into()
            }
        );
        assert_eq!(
            bad(expression("k", "In", &[])),
            SelectorError::MissingValues {
                index: 1,
                operator: "In".into()
            }
        );
        assert_eq!(
            bad(expression("k", "Exists", &["v"])),
            SelectorError::UnexpectedValues {
                index: 1,
                operator: "Exists".into()
            }
        );
        assert!(
            bad(expression("k", "NotIn", &[]))
                .to_string()
                .starts_with("matchExpressions[1]: operator NotIn needs")
        );
    }
}
