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
    kafka_errors::{PROXY_ERROR_APIS, error_code},
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
    /// A sourceSelector with neither matchLabels nor matchExpressions.
    #[error(
        "spec.match.sourceSelector: set matchLabels or matchExpressions; leave sourceSelector out to hit every source"
    )]
    EmptySourceSelector,
    /// A sourceSelector matchExpressions entry Kubernetes would refuse when listing pods.
    #[error("spec.match.sourceSelector.{0}")]
    SourceSelector(SelectorError),
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
    /// An action without the field its type needs (delay, errorCode, throttleTime, target).
    #[error("{field}: required when type is {action:?}")]
    MissingActionField {
        /// Path of the field.
        field: &'static str,
        /// The action type given.
        action: ActionType,
    },
    /// An action field that another type uses (delay or jitter without Delay, ...).
    #[error("{field}: only used when type is {used_by:?}, not {action:?}")]
    UnusedActionField {
        /// Path of the field.
        field: &'static str,
        /// The action type that uses it.
        used_by: ActionType,
        /// The action type given.
        action: ActionType,
    },
    /// An errorCode that is not a Kafka error name.
    #[error(
        "spec.action.errorCode: {0:?} is not a Kafka error name (e.g. NOT_LEADER_OR_FOLLOWER, REBALANCE_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE)"
    )]
    UnknownErrorCode(String),
    /// A throttleTime over an hour.
    #[error("spec.action.throttleTime: must be at most 1h")]
    ThrottleTooLong,
    /// A Kafka-level action with an enforcement other than Proxy or Auto.
    #[error(
        "spec.enforcement: {enforcement:?} cannot carry out action type {action:?}; Error, Throttle, Corrupt and Duplicate need Proxy (or Auto)"
    )]
    NeedsProxy {
        /// The action type given.
        action: ActionType,
        /// The enforcement given.
        enforcement: Enforcement,
    },
    /// Reject or Drop under Proxy enforcement.
    #[error(
        "spec.action.type: Proxy enforcement does not {0:?}: use Error, Throttle, Delay, Corrupt or Duplicate, or another enforcement"
    )]
    ProxyCannot(ActionType),
    /// An Error on an API the proxy cannot answer with an error.
    #[error(
        "spec.match.apiKeys[{index}]: the proxy cannot answer {name} with an error; action type Error can fail: {}",
        PROXY_ERROR_APIS.join(", ")
    )]
    UnanswerableApi {
        /// Position in apiKeys.
        index: usize,
        /// The API.
        name: String,
    },
    /// Corrupt or Duplicate whose apiKeys leave out the API it acts on.
    #[error(
        "spec.match.apiKeys: action type {action:?} acts on {api} requests: list {api} in apiKeys, or leave apiKeys empty"
    )]
    ActionNeedsApi {
        /// The action type given.
        action: ActionType,
        /// The API it acts on.
        api: &'static str,
    },
    /// handover with an enforcement that is not Proxy.
    #[error(
        "spec.handover: only used by Proxy enforcement (Proxy, or Auto with Error, Throttle, Corrupt or Duplicate), not {enforcement:?} with {action:?}"
    )]
    HandoverNeedsProxy {
        /// The enforcement given.
        enforcement: Enforcement,
        /// The action type given.
        action: ActionType,
    },
    /// A probability of zero (it would hit nothing) or above 100 percent.
    #[error("spec.action.probability: {0} is not a percentage from 1 to 100")]
    BadProbability(u8),
    /// Delay with an enforcement that cannot hold requests.
    #[error(
        "spec.enforcement: {0:?} cannot delay requests; action type Delay needs Inline or Proxy (or Auto)"
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
    if is_empty(selector) {
        errors.push(SpecError::EmptySelector);
    }
    errors.extend(selector_errors(selector).into_iter().map(SpecError::from));
}

/// Whether `selector` sets no requirement at all (and so would select every pod).
fn is_empty(selector: &LabelSelector) -> bool {
    let labels = selector.match_labels.as_ref().map_or(0, |l| l.len());
    let expressions = selector.match_expressions.as_deref().unwrap_or_default();
    labels == 0 && expressions.is_empty()
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
    if let Some(selector) = &m.source_selector {
        if is_empty(selector) {
            errors.push(SpecError::EmptySourceSelector);
        }
        let problems = selector_errors(selector).into_iter();
        errors.extend(problems.map(SpecError::SourceSelector));
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
    let given = action.type_;
    let mut field = |field: &'static str, present: bool, used_by: ActionType| {
        if present && given != used_by {
            errors.push(SpecError::UnusedActionField {
                field,
                used_by,
                action: given,
            });
        }
        let required = field != "spec.action.jitter" && field != "spec.action.fixCrc";
        if !present && given == used_by && required {
            errors.push(SpecError::MissingActionField {
                field,
                action: given,
            });
        }
    };
    field(
        "spec.action.delay",
        action.delay.is_some(),
        ActionType::Delay,
    );
    field(
        "spec.action.jitter",
        action.jitter.is_some(),
        ActionType::Delay,
    );
    field(
        "spec.action.errorCode",
        action.error_code.is_some(),
        ActionType::Error,
    );
    field(
        "spec.action.throttleTime",
        action.throttle_time.is_some(),
        ActionType::Throttle,
    );
    field(
        "spec.action.target",
        action.target.is_some(),
        ActionType::Corrupt,
    );
    field(
        "spec.action.fixCrc",
        action.fix_crc.is_some(),
        ActionType::Corrupt,
    );
    if let (Some(delay), ActionType::Delay) = (&action.delay, given) {
        check_duration("spec.action.delay", delay, false, errors);
    }
    if let (Some(jitter), ActionType::Delay) = (&action.jitter, given) {
        check_duration("spec.action.jitter", jitter, true, errors);
    }
    if let Some(name) = &action.error_code
        && error_code(name).is_none()
    {
        errors.push(SpecError::UnknownErrorCode(name.clone()));
    }
    if let Some(throttle) = &action.throttle_time {
        check_duration("spec.action.throttleTime", throttle, false, errors);
        if action
            .throttle_time()
            .is_some_and(|time| time > MAX_THROTTLE)
        {
            errors.push(SpecError::ThrottleTooLong);
        }
    }
    if !(1..=100).contains(&action.probability) {
        errors.push(SpecError::BadProbability(action.probability));
    }
}

/// The longest throttleTime: a quota's throttle is seconds; throttle_time_ms is an int32.
const MAX_THROTTLE: std::time::Duration = std::time::Duration::from_secs(3600);

fn check_enforcement(terms: &FaultTerms, errors: &mut Vec<SpecError>) {
    let (action, enforcement) = (terms.action.type_, terms.enforcement);
    if action == ActionType::Delay && !enforcement.can_delay() {
        errors.push(SpecError::DelayNeedsInline(enforcement));
    }
    if action.needs_proxy() && !enforcement.can_act(action) {
        errors.push(SpecError::NeedsProxy {
            action,
            enforcement,
        });
    }
    if action.is_tcp() && !enforcement.can_act(action) {
        errors.push(SpecError::ProxyCannot(action));
    }
    let has_regex = terms
        .match_
        .client_id
        .as_ref()
        .is_some_and(|c| c.regex.is_some());
    if has_regex && !enforcement.can_match_regex() {
        errors.push(SpecError::RegexNeedsStream(enforcement));
    }
    if terms.handover.is_some() && !terms.is_proxy() {
        errors.push(SpecError::HandoverNeedsProxy {
            enforcement,
            action,
        });
    }
    check_proxy_apis(terms, errors);
}

/// The APIs a Proxy action acts on must be among apiKeys, when they are listed.
fn check_proxy_apis(terms: &FaultTerms, errors: &mut Vec<SpecError>) {
    let api_keys = &terms.match_.api_keys;
    let action = terms.action.type_;
    if action == ActionType::Error {
        for (index, name) in api_keys.iter().enumerate() {
            if api_key_by_name(name).is_some() && !PROXY_ERROR_APIS.contains(&name.as_str()) {
                errors.push(SpecError::UnanswerableApi {
                    index,
                    name: name.clone(),
                });
            }
        }
    }
    let acts_on = match (action, terms.action.target) {
        (ActionType::Corrupt, Some(target)) => Some(target.api()),
        (ActionType::Duplicate, _) => Some("Produce"),
        _ => None,
    };
    if let Some(api) = acts_on
        && !api_keys.is_empty()
        && !api_keys.iter().any(|key| key == api)
    {
        errors.push(SpecError::ActionNeedsApi { action, api });
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
                "sourceSelector": {"matchExpressions": [
                    {"key": "broker-id", "operator": "In", "values": ["1", "2"]}]},
            },
            "action": {"type": "Delay", "delay": "1m30s", "jitter": "0s", "probability": 1},
            "enforcement": "Inline", "duration": "8760h",
        }));
        assert_eq!(rich.validate(), Ok(()));
        for proxy in [
            json!({"match": {"apiKeys": ["Produce", "Metadata", "ConsumerGroupHeartbeat"]},
                   "action": {"type": "Error", "errorCode": "NOT_LEADER_OR_FOLLOWER", "probability": 50},
                   "handover": "NewConnectionsOnly"}),
            json!({"action": {"type": "Throttle", "throttleTime": "2s"}, "enforcement": "Proxy"}),
            json!({"match": {"apiKeys": ["Fetch"]},
                   "action": {"type": "Corrupt", "target": "Fetch", "fixCrc": true}}),
            json!({"action": {"type": "Corrupt", "target": "Produce"}, "handover": "Reset"}),
            json!({"match": {"apiKeys": ["Produce"]}, "action": {"type": "Duplicate"}}),
            json!({"action": {"type": "Delay", "delay": "1s"}, "enforcement": "Proxy",
                   "handover": "Reset"}),
        ] {
            assert_eq!(spec(proxy.clone()).validate(), Ok(()), "{proxy}");
        }
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
                json!({"match": {"sourceSelector": {}}}),
                "spec.match.sourceSelector: set matchLabels or matchExpressions",
            ),
            (
                json!({"match": {"sourceSelector": {"matchExpressions": [
                    {"key": "a", "operator": "Exists", "values": ["b"]}]}}}),
                "spec.match.sourceSelector.matchExpressions[0]: operator Exists takes no values",
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
            (
                json!({"action": {"type": "Error"}}),
                "spec.action.errorCode: required when type is Error",
            ),
            (
                json!({"action": {"type": "Error", "errorCode": "NOT_LEADER"}}),
                "spec.action.errorCode: \"NOT_LEADER\" is not a Kafka error name",
            ),
            (
                json!({"action": {"type": "Error", "errorCode": "NONE"}}),
                "spec.action.errorCode: \"NONE\" is not a Kafka error name",
            ),
            (
                json!({"action": {"errorCode": "NOT_LEADER_OR_FOLLOWER"}}),
                "spec.action.errorCode: only used when type is Error, not Reject",
            ),
            (
                json!({"action": {"type": "Throttle"}}),
                "spec.action.throttleTime: required when type is Throttle",
            ),
            (
                json!({"action": {"type": "Throttle", "throttleTime": "2h"}}),
                "spec.action.throttleTime: must be at most 1h",
            ),
            (
                json!({"action": {"type": "Throttle", "throttleTime": "0s"}}),
                "spec.action.throttleTime: must be greater than zero",
            ),
            (
                json!({"action": {"type": "Corrupt"}}),
                "spec.action.target: required when type is Corrupt",
            ),
            (
                json!({"action": {"type": "Duplicate", "fixCrc": true}}),
                "spec.action.fixCrc: only used when type is Corrupt, not Duplicate",
            ),
            (
                json!({"action": {"type": "Delay", "delay": "1s", "target": "Fetch"}}),
                "spec.action.target: only used when type is Corrupt, not Delay",
            ),
            (
                json!({"action": {"type": "Duplicate"}, "enforcement": "Inline"}),
                "spec.enforcement: Inline cannot carry out action type Duplicate",
            ),
            (
                json!({"enforcement": "Proxy"}),
                "spec.action.type: Proxy enforcement does not Reject",
            ),
            (
                json!({"match": {"apiKeys": ["Produce", "ApiVersions"]},
                       "action": {"type": "Error", "errorCode": "NOT_LEADER_OR_FOLLOWER"}}),
                "spec.match.apiKeys[1]: the proxy cannot answer ApiVersions with an error",
            ),
            (
                json!({"match": {"apiKeys": ["Produce"]},
                       "action": {"type": "Corrupt", "target": "Fetch"}}),
                "spec.match.apiKeys: action type Corrupt acts on Fetch requests",
            ),
            (
                json!({"match": {"apiKeys": ["Fetch"]}, "action": {"type": "Duplicate"}}),
                "spec.match.apiKeys: action type Duplicate acts on Produce requests",
            ),
            (
                json!({"handover": "Reset"}),
                "spec.handover: only used by Proxy enforcement",
            ),
            (
                json!({"handover": "NewConnectionsOnly", "action": {"type": "Delay", "delay": "1s"}}),
                "spec.handover: only used by Proxy enforcement",
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
                SpecError::MissingActionField {
                    field: "spec.action.delay",
                    action: ActionType::Delay,
                },
                SpecError::DelayNeedsInline(Enforcement::Signature),
            ]
        );
    }
}
