//! Kubernetes label selectors (`matchLabels` and `matchExpressions`): checked here as the API
//! server checks them, once for both the spec's validation and the operator's pod selection,
//! then matched with kube's own [`Selector`].
//!
//! The operator selects target pods from what it lists rather than trusting the API server's
//! filtering alone, so the semantics must be the API server's, exactly: every requirement must
//! hold; `NotIn` and `DoesNotExist` hold for a pod without the key; an empty selector matches
//! every pod (which a fault refuses: see `KafkaFaultSpec::validate`).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
pub use kube::core::{Expression, Selector, SelectorExt};
use kube::core::{Reason, Rule};

/// The CEL rule that refuses an empty selector (which would select every pod), with `message`.
pub(crate) fn non_empty_rule(message: &'static str) -> Rule {
    Rule::new(
        "(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",
    )
    .message(message)
    .reason(Reason::FieldValueRequired)
}

/// The CEL rule that refuses a `matchExpressions` operator Kubernetes does not know.
pub(crate) fn operators_rule() -> Rule {
    Rule::new(
        "!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",
    )
    .message("each matchExpressions operator must be In, NotIn, Exists or DoesNotExist")
    .field_path(".matchExpressions")
}

/// The CEL rule that refuses In and NotIn without values.
pub(crate) fn values_needed_rule() -> Rule {
    Rule::new(
        "!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",
    )
    .message("matchExpressions with operator In or NotIn need values")
    .field_path(".matchExpressions")
    .reason(Reason::FieldValueRequired)
}

/// The CEL rule that refuses Exists and DoesNotExist with values.
pub(crate) fn values_forbidden_rule() -> Rule {
    Rule::new(
        "!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",
    )
    .message("matchExpressions with operator Exists or DoesNotExist take no values")
    .field_path(".matchExpressions")
    .reason(Reason::FieldValueForbidden)
}

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
    #[error("matchExpressions[{index}]: operator {operator} needs values")]
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

/// One `matchExpressions` entry as a requirement, or why the API server would refuse it.
fn expression(index: usize, entry: &LabelSelectorRequirement) -> Result<Expression, SelectorError> {
    let key = entry.key.clone();
    let values: BTreeSet<String> = entry.values.iter().flatten().cloned().collect();
    let operator = entry.operator.clone();
    Ok(match operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            return Err(SelectorError::MissingValues { index, operator });
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            return Err(SelectorError::UnexpectedValues { index, operator });
        }
        "In" => Expression::In(key, values),
        "NotIn" => Expression::NotIn(key, values),
        "Exists" => Expression::Exists(key),
        "DoesNotExist" => Expression::DoesNotExist(key),
        _ => return Err(SelectorError::UnknownOperator { index, operator }),
    })
}

/// Every `matchExpressions` entry of `selector` the API server would refuse, in order.
pub fn selector_errors(selector: &LabelSelector) -> Vec<SelectorError> {
    let expressions = selector.match_expressions.iter().flatten();
    expressions
        .enumerate()
        .filter_map(|(index, entry)| expression(index, entry).err())
        .collect()
}

/// `selector` checked as the API server checks it (the first problem is the error), as kube's
/// [`Selector`]: `matchLabels` `{k: v}` is the requirement `k=v`, and its `Display` is the
/// API's `labelSelector` query syntax (`k=v,k in (a,b),k notin (c),k,!k`).
pub fn parse_selector(selector: &LabelSelector) -> Result<Selector, SelectorError> {
    let labels = selector.match_labels.iter().flatten();
    let mut requirements: Vec<Expression> = labels
        .map(|(key, value)| Expression::Equal(key.clone(), value.clone()))
        .collect();
    for (index, entry) in selector.match_expressions.iter().flatten().enumerate() {
        requirements.push(expression(index, entry)?);
    }
    Ok(requirements.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
        parse_selector(&LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        })
        .unwrap()
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = selector(&[("app", "kafka"), ("role", "broker")], vec![]);
        assert!(s.matches(&labels(&[("app", "kafka"), ("role", "broker"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("app", "kafka")])));
        assert!(!s.matches(&labels(&[("app", "kafka"), ("role", "controller")])));
        assert!(!s.matches(&BTreeMap::new()));
    }

    #[test]
    fn each_operator_follows_kubernetes() {
        let in_ = selector(&[], vec![expression("role", "In", &["broker", "dual"])]);
        assert!(in_.matches(&labels(&[("role", "dual")])));
        assert!(!in_.matches(&labels(&[("role", "controller")])));
        assert!(!in_.matches(&BTreeMap::new()));

        let not_in = selector(&[], vec![expression("role", "NotIn", &["controller"])]);
        assert!(not_in.matches(&labels(&[("role", "broker")])));
        assert!(!not_in.matches(&labels(&[("role", "controller")])));
        assert!(
            not_in.matches(&BTreeMap::new()),
            "NotIn holds when the key is absent"
        );

        let exists = selector(&[], vec![expression("broker-id", "Exists", &[])]);
        assert!(exists.matches(&labels(&[("broker-id", "")])));
        assert!(!exists.matches(&labels(&[("other", "1")])));

        let absent = selector(&[], vec![expression("canary", "DoesNotExist", &[])]);
        assert!(absent.matches(&BTreeMap::new()));
        assert!(!absent.matches(&labels(&[("canary", "true")])));
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
        assert!(s.matches(&labels(&[("app", "kafka"), ("role", "broker")])));
        assert!(!s.matches(&labels(&[
            ("app", "kafka"),
            ("role", "broker"),
            ("canary", "1")
        ])));
        assert!(!s.matches(&labels(&[("role", "broker")])));
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
            parse_selector(&LabelSelector::default())
                .unwrap()
                .to_string(),
            ""
        );
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = parse_selector(&LabelSelector::default()).unwrap();
        assert!(s.selects_all());
        assert!(s.matches(&BTreeMap::new()));
        assert!(!selector(&[("a", "b")], vec![]).selects_all());
    }

    #[test]
    fn refuses_what_the_api_server_refuses() {
        let bad = |e: LabelSelectorRequirement| {
            parse_selector(&LabelSelector {
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

    #[test]
    fn reports_every_bad_expression() {
        let problems = selector_errors(&LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                expression("a", "Equals", &["v"]),
                expression("ok", "Exists", &[]),
                expression("b", "NotIn", &[]),
            ]),
        });
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "matchExpressions[0]: unknown operator \"Equals\"; use In, NotIn, Exists or DoesNotExist",
                "matchExpressions[2]: operator NotIn needs values",
            ]
        );
    }
}
