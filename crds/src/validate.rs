//! [`KafkaFaultSpec::validate`]: every check the CRD's schema and CEL rules make, plus those
//! the API server cannot make (regexes compile, CIDRs parse, API names are known, durations
//! read). The operator runs it before acting and reports the result in the `Valid` condition;
//! the CLI runs it before applying. [`FaultTerms::validate`] is its part both kinds share:
//! the agent runs it on each injection before enforcing it.

use std::collections::HashSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{
    action::{Action, ActionType, Enforcement},
    duration::{DurationError, MAX_DURATION, MAX_DURATION_TEXT, parse_duration},
    fault::{KafkaFaultSpec, TargetMode},
    matching::{Cidr, CidrError, FaultMatch, api_key_by_name},
    selector::{SelectorError, selector_errors},
    terms::FaultTerms,
};

/// One thing wrong with a fault spec. Every message starts with the path of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The selector has neither matchLabels nor matchExpressions.
    #[error(
        "spec.selector: set matchLabels or matchExpressions; an empty selector would target every pod in the namespace"
    )]
    EmptySelector,
    /// A matchExpressions entry Kubernetes would refuse when listing pods.
    #[error("spec.selector.{0}")]
    Selector(#[from] SelectorError),
    /// Mode Fixed or Percent without a value.
    #[error("spec.value: required when mode is {0:?}")]
    MissingValue(TargetMode),
    /// A value with a mode that does not use one.
    #[error("spec.value: only used when mode is Fixed or Percent, not {0:?}")]
    UnusedValue(TargetMode),
    /// A value of zero would target no pod.
    #[error("spec.value: must be at least 1")]
    ZeroValue,
    /// Mode Percent with a value above 100.
    #[error("spec.value: {0} is not a percentage (1-100)")]
    PercentTooHigh(u32),
    /// No listener port.
    #[error("spec.ports: list at least one port")]
    NoPorts,
    /// Port 0.
    #[error("spec.ports[{0}]: 0 is not a port")]
    ZeroPort(usize),
    /// The same port twice.
    #[error("spec.ports[{index}]: port {port} is listed twice")]
    DuplicatePort {
        /// Position of the repeat.
        index: usize,
        /// The repeated port.
        port: u16,
    },
    /// A name that is not a Kafka API.
    #[error(
        "spec.match.apiKeys[{index}]: {name:?} is not a Kafka API name (e.g. Produce, Fetch, Metadata)"
    )]
    UnknownApiKey {
        /// Position in apiKeys.
        index: usize,
        /// The unknown name.
        name: String,
    },
    /// A negative request version.
    #[error("spec.match.apiVersions.{bound}: {version} is negative")]
    NegativeApiVersion {
        /// `min` or `max`.
        bound: &'static str,
        /// The version given.
        version: i16,
    },
    /// An empty version range.
    #[error("spec.match.apiVersions: min {min} is greater than max {max}")]
    EmptyApiVersionRange {
        /// The lower bound given.
        min: i16,
        /// The upper bound given.
        max: i16,
    },
    /// clientId with none or several of exact, prefix and regex.
    #[error("spec.match.clientId: set exactly one of exact, prefix or regex")]
    ClientIdChoice,
    /// A clientId regex that does not compile.
    #[error("spec.match.clientId.regex: invalid regex: {0}")]
    BadClientIdRegex(String),
    /// A topic name Kafka would refuse.
    #[error("spec.match.topics[{index}]: {name:?} is not a Kafka topic name: {problem}")]
    BadTopic {
        /// Position in topics.
        index: usize,
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A sourceCIDRs entry that is not a CIDR.
    #[error("spec.match.sourceCIDRs[{index}]: {source}")]
    BadCidr {
        /// Position in sourceCIDRs.
        index: usize,
        /// Why it is not a CIDR.
        source: CidrError,
    },
    /// A duration field that does not read.
    #[error("{field}: {source}")]
    BadDuration {
        /// Path of the field.
        field: &'static str,
        /// Why it does not read.
        source: DurationError,
    },
    /// A zero delay or fault duration.
    #[error("{0}: must be greater than zero")]
    ZeroDuration(&'static str),
    /// A duration beyond [`MAX_DURATION`].
    #[error("{0}: must be at most {MAX_DURATION_TEXT} (a year)")]
    DurationTooLong(&'static str),
    /// Delay without spec.action.delay.
    #[error("spec.action.delay: required when type is Delay")]
    MissingDelay,
    /// delay or jitter with an action that does not wait.
    #[error("{field}: only used when type is Delay, not {action:?}")]
    UnusedDelay {
        /// Path of the field.
        field: &'static str,
        /// The action type given.
        action: ActionType,
    },
    /// A probability of zero (it would hit nothing) or above 100 percent.
    #[error("spec.action.probability: {0} is not a percentage from 1 to 100")]
    BadProbability(u8),
    /// Delay with an enforcement that cannot hold requests.
    #[error(
        "spec.enforcement: {0:?} cannot delay requests; action type Delay needs Inline (or Auto)"
    )]
    DelayNeedsInline(Enforcement),
    /// A clientId regex with an enforcement that matches bytes only.
    #[error(
        "spec.enforcement: {0:?} cannot match spec.match.clientId.regex; use Auto, Connection or Inline"
    )]
    RegexNeedsStream(Enforcement),
}

impl KafkaFaultSpec {
    /// Checks the whole spec and returns every problem found, not just the first, so a user
    /// can fix them all in one go.
    pub fn validate(&self) -> Result<(), Vec<SpecError>> {
        let mut errors = Vec::new();
        check_selector(&self.selector, &mut errors);
        check_mode(self.mode, self.value, &mut errors);
        self.terms.check(&mut errors);
        if let Some(duration) = &self.duration {
            check_duration("spec.duration", duration, false, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl FaultTerms {
    /// Checks the ports, match, action and enforcement, as [`KafkaFaultSpec::validate`] does
    /// for a fault: what the agent runs before enforcing an injection (or a CLI file, which
    /// no API server has seen).
    pub fn validate(&self) -> Result<(), Vec<SpecError>> {
        let mut errors = Vec::new();
        self.check(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check(&self, errors: &mut Vec<SpecError>) {
        check_ports(&self.ports, errors);
        check_match(&self.match_, errors);
        check_action(&self.action, errors);
        check_enforcement(self, errors);
    }
}

fn check_selector(selector: &LabelSelector, errors: &mut Vec<SpecError>) {
    let labels = selector.match_labels.as_ref().map_or(0, |l| l.len());
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    if labels == 0 && expressions.is_empty() {
        errors.push(SpecError::EmptySelector);
    }
    errors.extend(selector_errors(selector).into_iter().map(SpecError::from));
}

fn check_mode(mode: TargetMode, value: Option<u32>, errors: &mut Vec<SpecError>) {
    let uses_value = matches!(mode, TargetMode::Fixed | TargetMode::Percent);
    match value {
        None if uses_value => errors.push(SpecError::MissingValue(mode)),
        None => {}
        Some(_) if !uses_value => errors.push(SpecError::UnusedValue(mode)),
        Some(0) => errors.push(SpecError::ZeroValue),
        Some(percent) if mode == TargetMode::Percent && percent > 100 => {
            errors.push(SpecError::PercentTooHigh(percent))
        }
        Some(_) => {}
    }
}

fn check_ports(ports: &[u16], errors: &mut Vec<SpecError>) {
    if ports.is_empty() {
        errors.push(SpecError::NoPorts);
    }
    let mut seen = HashSet::new();
    for (index, &port) in ports.iter().enumerate() {
        if port == 0 {
            errors.push(SpecError::ZeroPort(index));
        } else if !seen.insert(port) {
            errors.push(SpecError::DuplicatePort { index, port });
        }
    }
}

fn check_match(m: &FaultMatch, errors: &mut Vec<SpecError>) {
    for (index, name) in m.api_keys.iter().enumerate() {
        if api_key_by_name(name).is_none() {
            errors.push(SpecError::UnknownApiKey {
                index,
                name: name.clone(),
            });
        }
    }
    if let Some(range) = m.api_versions {
        for (bound, version) in [("min", range.min), ("max", range.max)] {
            if let Some(version) = version.filter(|v| *v < 0) {
                errors.push(SpecError::NegativeApiVersion { bound, version });
            }
        }
        if let (Some(min), Some(max)) = (range.min, range.max)
            && min > max
        {
            errors.push(SpecError::EmptyApiVersionRange { min, max });
        }
    }
    if let Some(client_id) = &m.client_id {
        let set = [&client_id.exact, &client_id.prefix, &client_id.regex]
            .into_iter()
            .filter(|field| field.is_some())
            .count();
        if set != 1 {
            errors.push(SpecError::ClientIdChoice);
        }
        if let Some(Err(error)) = client_id.regex.as_deref().map(regex::Regex::new) {
            errors.push(SpecError::BadClientIdRegex(error.to_string()));
        }
    }
    for (index, name) in m.topics.iter().enumerate() {
        if let Some(problem) = topic_name_problem(name) {
            errors.push(SpecError::BadTopic {
                index,
                name: name.clone(),
                problem,
            });
        }
    }
    for (index, cidr) in m.source_cidrs.iter().enumerate() {
        if let Err(source) = cidr.parse::<Cidr>() {
            errors.push(SpecError::BadCidr { index, source });
        }
    }
}

/// Kafka's own rules for topic names (`org.apache.kafka.common.internals.Topic.validate`): why
/// `name` is not one, or `None`.
pub fn topic_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are reserved")
    } else if name.len() > 249 {
        Some("it is longer than 249 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    }
}

fn check_action(action: &Action, errors: &mut Vec<SpecError>) {
    let delays = action.type_ == ActionType::Delay;
    match &action.delay {
        None if delays => errors.push(SpecError::MissingDelay),
        None => {}
        Some(delay) if delays => check_duration("spec.action.delay", delay, false, errors),
        Some(_) => errors.push(SpecError::UnusedDelay {
            field: "spec.action.delay",
            action: action.type_,
        }),
    }
    match &action.jitter {
        Some(jitter) if delays => check_duration("spec.action.jitter", jitter, true, errors),
        Some(_) => errors.push(SpecError::UnusedDelay {
            field: "spec.action.jitter",
            action: action.type_,
        }),
        None => {}
    }
    if !(1..=100).contains(&action.probability) {
        errors.push(SpecError::BadProbability(action.probability));
    }
}

fn check_enforcement(terms: &FaultTerms, errors: &mut Vec<SpecError>) {
    if terms.action.type_ == ActionType::Delay && !terms.enforcement.can_delay() {
        errors.push(SpecError::DelayNeedsInline(terms.enforcement));
    }
    let has_regex = terms
        .match_
        .client_id
        .as_ref()
        .is_some_and(|c| c.regex.is_some());
    if has_regex && !terms.enforcement.can_match_regex() {
        errors.push(SpecError::RegexNeedsStream(terms.enforcement));
    }
}

fn check_duration(field: &'static str, value: &str, zero_ok: bool, errors: &mut Vec<SpecError>) {
    match parse_duration(value) {
        Err(source) => errors.push(SpecError::BadDuration { field, source }),
        Ok(d) if d.is_zero() && !zero_ok => errors.push(SpecError::ZeroDuration(field)),
        Ok(d) if d > MAX_DURATION => errors.push(SpecError::DurationTooLong(field)),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A valid minimal spec with `patch` merged in (RFC 7386: null removes a field).
    fn spec(patch: Value) -> KafkaFaultSpec {
        let mut spec = json!({
            "selector": {"matchLabels": {"app": "kafka"}},
            "action": {"type": "Reject"},
        });
        merge(&mut spec, patch);
        serde_json::from_value(spec).expect("test spec deserializes")
    }

    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(target), Value::Object(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(&key);
                    } else {
                        merge(target.entry(key).or_insert(Value::Null), value);
                    }
                }
            }
            (target, patch) => *target = patch,
        }
    }

    #[test]
    fn minimal_and_rich_specs_are_valid() {
        assert_eq!(spec(json!({})).validate(), Ok(()));
        let rich = spec(json!({
            "selector": {"matchExpressions": [
                {"key": "role", "operator": "In", "values": ["broker"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ]},
            "mode": "Percent", "value": 100, "ports": [9092, 9093],
            "match": {
                "apiKeys": ["Produce", "Fetch", "ShareFetch"],
                "apiVersions": {"min": 3, "max": 3},
                "clientId": {"regex": "^checkout-[0-9]+$"},
                "topics": ["orders", "orders.v2_dlq-1"],
                "groupId": "billing", "transactionalId": "tx-1",
                "sourceCIDRs": ["10.0.0.0/8", "fd00::/8"],
            },
            "action": {"type": "Delay", "delay": "1m30s", "jitter": "0s", "probability": 1},
            "enforcement": "Inline", "duration": "8760h",
        }));
        assert_eq!(rich.validate(), Ok(()));
    }

    #[test]
    fn every_error_names_its_field() {
        let delay = |extra: Value| {
            let mut action = json!({"type": "Delay", "delay": "1s"});
            merge(&mut action, extra);
            json!({ "action": action })
        };
        let cases = [
            (
                json!({"selector": {"matchLabels": null}}),
                "spec.selector: set matchLabels",
            ),
            (
                json!({"selector": {"matchLabels": {"app": null}}}),
                "spec.selector: set matchLabels",
            ),
            (
                json!({"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
                "spec.selector.matchExpressions[0]: operator In needs values",
            ),
            (
                json!({"selector": {"matchExpressions": [
                    {"key": "a", "operator": "Exists"},
                    {"key": "a", "operator": "Exists", "values": ["x"]},
                ]}}),
                "spec.selector.matchExpressions[1]: operator Exists takes no values",
            ),
            (
                json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Equals"}]}}),
                "spec.selector.matchExpressions[0]: unknown operator \"Equals\"",
            ),
            (
                json!({"mode": "Fixed"}),
                "spec.value: required when mode is Fixed",
            ),
            (
                json!({"mode": "Percent"}),
                "spec.value: required when mode is Percent",
            ),
            (
                json!({"mode": "One", "value": 2}),
                "spec.value: only used when mode is Fixed or Percent, not One",
            ),
            (
                json!({"value": 2}),
                "spec.value: only used when mode is Fixed or Percent, not All",
            ),
            (
                json!({"mode": "Fixed", "value": 0}),
                "spec.value: must be at least 1",
            ),
            (
                json!({"mode": "Percent", "value": 101}),
                "spec.value: 101 is not a percentage",
            ),
            (json!({"ports": []}), "spec.ports: list at least one port"),
            (json!({"ports": [0]}), "spec.ports[0]: 0 is not a port"),
            (
                json!({"ports": [9092, 9093, 9092]}),
                "spec.ports[2]: port 9092 is listed twice",
            ),
            (
                json!({"match": {"apiKeys": ["Produce", "produce"]}}),
                "spec.match.apiKeys[1]: \"produce\" is not a Kafka API name",
            ),
            (
                json!({"match": {"apiVersions": {"min": -1}}}),
                "spec.match.apiVersions.min: -1 is negative",
            ),
            (
                json!({"match": {"apiVersions": {"max": -2}}}),
                "spec.match.apiVersions.max: -2 is negative",
            ),
            (
                json!({"match": {"apiVersions": {"min": 5, "max": 3}}}),
                "spec.match.apiVersions: min 5 is greater than max 3",
            ),
            (
                json!({"match": {"clientId": {}}}),
                "spec.match.clientId: set exactly one",
            ),
            (
                json!({"match": {"clientId": {"exact": "a", "prefix": "b"}}}),
                "spec.match.clientId: set exactly one",
            ),
            (
                json!({"match": {"clientId": {"regex": "checkout-(["}}}),
                "spec.match.clientId.regex: invalid regex: ",
            ),
            (
                json!({"match": {"topics": ["orders", ""]}}),
                "spec.match.topics[1]: \"\" is not a Kafka topic name: it is empty",
            ),
            (
                json!({"match": {"topics": [".."]}}),
                "spec.match.topics[0]: \"..\" is not a Kafka topic name: '.' and '..' are reserved",
            ),
            (
                json!({"match": {"topics": ["a b"]}}),
                "spec.match.topics[0]: \"a b\" is not a Kafka topic name: only ASCII",
            ),
            (
                json!({"match": {"topics": ["x".repeat(250)]}}),
                "spec.match.topics[0]: ",
            ),
            (
                json!({"match": {"sourceCIDRs": ["10.0.0.0/8", "10.0.0.1"]}}),
                "spec.match.sourceCIDRs[1]: \"10.0.0.1\" has no /prefix length",
            ),
            (
                json!({"match": {"sourceCIDRs": ["fd00::/200"]}}),
                "spec.match.sourceCIDRs[0]: \"200\" is not a valid prefix length",
            ),
            (
                json!({"duration": "5"}),
                "spec.duration: unknown or missing unit",
            ),
            (
                json!({"duration": "0s"}),
                "spec.duration: must be greater than zero",
            ),
            (
                json!({"duration": "8760h1ms"}),
                "spec.duration: must be at most 8760h",
            ),
            (
                json!({"action": {"type": "Delay"}}),
                "spec.action.delay: required when type is Delay",
            ),
            (
                delay(json!({"delay": "1.5s"})),
                "spec.action.delay: unknown or missing unit",
            ),
            (
                delay(json!({"delay": "0ms"})),
                "spec.action.delay: must be greater than zero",
            ),
            (
                delay(json!({"jitter": "soon"})),
                "spec.action.jitter: expected a number",
            ),
            (
                delay(json!({"jitter": "9000h"})),
                "spec.action.jitter: must be at most 8760h",
            ),
            (
                json!({"action": {"delay": "1s"}}),
                "spec.action.delay: only used when type is Delay, not Reject",
            ),
            (
                json!({"action": {"type": "Drop", "jitter": "1s"}}),
                "spec.action.jitter: only used when type is Delay, not Drop",
            ),
            (
                json!({"action": {"probability": 101}}),
                "spec.action.probability: 101 is not a percentage from 1 to 100",
            ),
            (
                json!({"action": {"probability": 0}}),
                "spec.action.probability: 0 is not a percentage from 1 to 100",
            ),
            (
                {
                    let mut patch = delay(json!({}));
                    merge(&mut patch, json!({"enforcement": "Connection"}));
                    patch
                },
                "spec.enforcement: Connection cannot delay requests",
            ),
            (
                json!({"match": {"clientId": {"regex": "^a"}}, "enforcement": "Signature"}),
                "spec.enforcement: Signature cannot match spec.match.clientId.regex",
            ),
        ];
        for (patch, want) in cases {
            let errors = spec(patch.clone())
                .validate()
                .expect_err(&format!("{patch} should be invalid"));
            let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(messages.len(), 1, "{patch}: {messages:#?}");
            assert!(messages[0].starts_with(want), "{patch}: {messages:#?}");
        }
    }

    /// Where the agent's Rust regex and the API server's RE2 agree and differ (the lab's
    /// `crd_validation` shows the server's side of the same patterns).
    #[test]
    fn client_id_regexes_compile_as_rust_regexes() {
        let regex =
            |pattern: &str| spec(json!({"match": {"clientId": {"regex": pattern}}})).validate();
        // Accepted by both.
        for ok in [
            r"^checkout-[0-9]+$",
            r"\pL+",
            r"(?i)^CHECKOUT",
            r"^\w{3,8}$",
        ] {
            assert_eq!(regex(ok), Ok(()), "{ok}");
        }
        // Refused by both: lookaround and backreferences (neither engine backtracks).
        for bad in [r"^(?=checkout)", r"(?<!a)b", r"(a)\1"] {
            let errors = regex(bad).expect_err(bad);
            assert!(
                matches!(errors[..], [SpecError::BadClientIdRegex(_)]),
                "{bad}: {errors:?}"
            );
        }
        // RE2 only (the server accepts it; validate refuses, so the fault is Valid=False).
        assert!(regex(r"\Qa.b\E").is_err());
        // Rust only (the server refuses it at apply time).
        assert_eq!(regex("(?x) checkout - svc"), Ok(()));
    }

    #[test]
    fn reports_every_problem_at_once() {
        let errors = spec(json!({
            "selector": {"matchLabels": null},
            "mode": "Fixed",
            "ports": [0],
            "action": {"type": "Delay"},
            "enforcement": "Signature",
        }))
        .validate()
        .unwrap_err();
        assert_eq!(
            errors,
            [
                SpecError::EmptySelector,
                SpecError::MissingValue(TargetMode::Fixed),
                SpecError::ZeroPort(0),
                SpecError::MissingDelay,
                SpecError::DelayNeedsInline(Enforcement::Signature),
            ]
        );
    }
}
