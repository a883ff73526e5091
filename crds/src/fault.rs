//! `KafkaFault`: the resource users apply to break Kafka on purpose.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    duration::parse_duration,
    injection::{InjectionPhase, RefusalReason},
    terms::FaultTerms,
};

/// What a KafkaFault does: which broker pods it targets, which Kafka requests it hits, and what
/// happens to them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kafkashock.io",
    version = "v1alpha1",
    kind = "KafkaFault",
    namespaced,
    shortname = "kf",
    category = "kafkashock",
    status = "KafkaFaultStatus",
    derive = "PartialEq",
    doc = "A Kafka fault: makes the selected broker pods reset, drop or delay the Kafka requests that match, until its duration ends or it is deleted.",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where the fault is in its life"}"#,
    printcolumn = r#"{"name": "Injected", "type": "integer", "jsonPath": ".status.injectedTargets", "description": "Target pods whose rules are in place"}"#,
    printcolumn = r#"{"name": "Targets", "type": "integer", "jsonPath": ".status.totalTargets", "description": "Pods the selector and mode picked"}"#,
    printcolumn = r#"{"name": "Matched", "type": "integer", "jsonPath": ".status.matchedRequests", "description": "Requests the fault has hit so far"}"#,
    printcolumn = r#"{"name": "Action", "type": "string", "jsonPath": ".spec.action.type", "priority": 1, "description": "Reject, Drop or Delay"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(self.mode in ['Fixed', 'Percent']) || has(self.value)")
        .message("value is required when mode is Fixed or Percent")
        .field_path(".value")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("!has(self.value) || self.mode in ['Fixed', 'Percent']")
        .message("value is only used when mode is Fixed or Percent")
        .field_path(".value")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("!has(self.value) || self.mode != 'Percent' || self.value <= 100")
        .message("value is a percentage (1-100) when mode is Percent")
        .field_path(".value"),
    validation = crate::action::delay_needs_inline(),
    validation = crate::action::regex_needs_stream(),
    validation = crate::action::proxy_actions_need_proxy(),
    validation = crate::action::proxy_does_not_reset(),
    validation = crate::action::error_apis_answerable(),
    validation = crate::action::corrupt_needs_its_api(),
    validation = crate::action::duplicate_needs_produce(),
    validation = crate::action::handover_needs_proxy()
)]
pub struct KafkaFaultSpec {
    /// The broker pods to target, in the fault's own namespace (for Strimzi, e.g.
    /// matchLabels {strimzi.io/cluster: my-cluster, strimzi.io/broker-role: "true"}). Must not
    /// be empty.
    #[x_kube(
        validation = crate::selector::non_empty_rule(
            "selector must set matchLabels or matchExpressions: an empty selector would target every pod in the namespace"
        ),
        validation = crate::selector::operators_rule(),
        validation = crate::selector::values_needed_rule(),
        validation = crate::selector::values_forbidden_rule()
    )]
    pub selector: LabelSelector,

    /// How many of the selected pods to target: All, One (picked at random), Fixed (value
    /// pods) or Percent (value percent of them, at least one).
    #[serde(default)]
    pub mode: TargetMode,

    /// The count (mode Fixed) or percentage 1-100 (mode Percent) of pods to target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub value: Option<u32>,

    /// The ports, match, action and enforcement, at spec level.
    #[serde(flatten)]
    pub terms: FaultTerms,

    /// How long the fault lasts once injected, e.g. 5m or 1h30m. Absent: until deleted. The
    /// agents end it on time even when the operator is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = crate::duration::DURATION_PATTERN))]
    #[x_kube(
        validation = crate::duration::positive_duration(),
        validation = crate::duration::bounded_duration()
    )]
    pub duration: Option<String>,

    /// Suspend the fault: its rules are removed but its targets are kept, so resuming hits
    /// the same pods.
    #[serde(default)]
    pub paused: bool,

    /// Select and report the targets, but change nothing on them.
    #[serde(default)]
    pub dry_run: bool,
}

impl KafkaFaultSpec {
    /// How long the fault lasts once injected; `None` when it lasts until deleted (or when the
    /// duration is unreadable, which [`KafkaFaultSpec::validate`] reports).
    pub fn duration(&self) -> Option<Duration> {
        self.duration
            .as_deref()
            .and_then(|d| parse_duration(d).ok())
    }
}

/// How many of the selected pods a fault targets: All; One, picked at random; Fixed, `value`
/// pods; Percent, `value` percent of them (rounded up, so at least one).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TargetMode {
    /// Every selected pod.
    #[default]
    All,
    /// One selected pod, picked at random.
    One,
    /// `value` selected pods, picked at random.
    Fixed,
    /// `value` percent of the selected pods (rounded up), picked at random.
    Percent,
}

/// What the operator has done with a fault so far, rolled up from its injections.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaFaultStatus {
    /// Where the fault is in its life.
    #[serde(default)]
    pub phase: FaultPhase,

    /// The metadata.generation of the spec this status describes.
    pub observed_generation: Option<i64>,

    /// The conditions Selected, Injected, Recovered, Paused and Valid, e.g. for
    /// `kubectl wait --for=condition=Injected kafkafault/NAME`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// One entry per targeted pod.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["pod".into()]))]
    pub targets: Vec<TargetStatus>,

    /// Requests hit so far, summed over the targets.
    #[serde(default)]
    pub matched_requests: u64,

    /// Proxy enforcement: what the proxies did, summed over the targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::injection::ProxyCounts>,

    /// Targets whose rules are in place.
    #[serde(default)]
    pub injected_targets: u32,

    /// Pods the selector and mode picked.
    #[serde(default)]
    pub total_targets: u32,

    /// When the fault was first injected (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub start_time: Option<String>,

    /// When the fault ends, from startTime and spec.duration (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub expire_time: Option<String>,
}

/// Where a fault is in its life: Pending (not yet injected), Injecting (some targets still
/// without rules), Active (every target injected), Paused, Recovering (rules being removed),
/// Completed (duration over, rules gone) or Failed (see the conditions).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FaultPhase {
    /// Accepted, not injected yet.
    #[default]
    Pending,
    /// Some targets do not have their rules yet.
    Injecting,
    /// Every target has its rules in place.
    Active,
    /// Suspended by spec.paused; rules removed.
    Paused,
    /// Rules are being removed (duration over, or fault deleted).
    Recovering,
    /// The duration is over and every rule is gone.
    Completed,
    /// The fault cannot be injected; the conditions say why.
    Failed,
}

/// One targeted pod, as its injection reports it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// The pod's name.
    pub pod: String,
    /// The node the pod runs on.
    pub node: Option<String>,
    /// The pod's IP address.
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    /// The phase of the pod's injection.
    #[serde(default)]
    pub phase: InjectionPhase,
    /// Rules installed for this pod.
    #[serde(default)]
    pub rules: u32,
    /// Requests hit on this pod so far.
    #[serde(default)]
    pub matched_requests: u64,
    /// The last error or notable event for this pod.
    pub message: Option<String>,
    /// Set when the agent refused to act on this pod's injection: which check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RefusalReason>,
}

/// The condition types a KafkaFault reports in `status.conditions`.
pub mod conditions {
    /// The selector and mode picked the targets.
    pub const SELECTED: &str = "Selected";
    /// Every target has its rules in place.
    pub const INJECTED: &str = "Injected";
    /// Every rule the fault installed is gone again.
    pub const RECOVERED: &str = "Recovered";
    /// The fault is suspended by spec.paused.
    pub const PAUSED: &str = "Paused";
    /// The spec passed `KafkaFaultSpec::validate`; when False, its message says what is wrong.
    pub const VALID: &str = "Valid";
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ActionType, Enforcement, FaultMatch, matching::DEFAULT_KAFKA_PORT};

    /// The example of docs/architecture.md, every field set, with a status as the operator writes
    /// it.
    const FULL: &str = r#"
apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {name: reset-orders-producer, namespace: kafka, generation: 3}
spec:
  selector: {matchLabels: {strimzi.io/cluster: my-cluster, strimzi.io/broker-role: "true"}}
  mode: All
  ports: [9092]
  match:
    apiKeys: [Produce]
    apiVersions: {min: 0, max: 13}
    clientId: {exact: checkout-svc}
    topics: [orders]
    groupId: billing
    transactionalId: checkout-tx
    sourceCIDRs: [10.0.0.0/8]
  action:
    type: Reject
    delay: 500ms
    probability: 100
  enforcement: Auto
  duration: 5m
  paused: false
  dryRun: false
status:
  phase: Active
  observedGeneration: 3
  conditions:
  - {type: Injected, status: "True", reason: AllTargetsInjected, message: 3 of 3 targets injected, lastTransitionTime: "2025-01-02T03:04:05Z", observedGeneration: 3}
  targets:
  - {pod: my-cluster-broker-0, node: node-a, podIP: 10.1.0.7, phase: Active, rules: 2, matchedRequests: 1200, message: null}
  - {pod: my-cluster-broker-1, node: node-b, podIP: 10.1.0.8, phase: Failed, rules: 0, matchedRequests: 34, message: no network namespace for the pod}
  matchedRequests: 1234
  injectedTargets: 1
  totalTargets: 2
  startTime: "2025-01-02T03:04:05Z"
  expireTime: "2025-01-02T03:09:05Z"
"#;

    #[test]
    fn full_example_round_trips() {
        let fault: KafkaFault = serde_yaml::from_str(FULL).unwrap();
        let spec = &fault.spec;
        assert_eq!(spec.terms.match_.api_keys, ["Produce"]);
        assert_eq!(spec.terms.match_.source_cidrs, ["10.0.0.0/8"]);
        assert_eq!(
            spec.terms
                .match_
                .client_id
                .as_ref()
                .unwrap()
                .exact
                .as_deref(),
            Some("checkout-svc")
        );
        assert_eq!(spec.terms.action.delay(), Some(Duration::from_millis(500)));
        assert_eq!(spec.duration(), Some(Duration::from_secs(300)));
        let status = fault.status.as_ref().unwrap();
        assert_eq!(status.phase, FaultPhase::Active);
        assert_eq!(status.targets[1].phase, InjectionPhase::Failed);
        assert_eq!(status.conditions[0].type_, conditions::INJECTED);

        let yaml = serde_yaml::to_string(&fault).unwrap();
        for key in [
            "match:",
            "sourceCIDRs:",
            "dryRun: false",
            "podIP: 10.1.0.7",
            "apiVersions:",
        ] {
            assert!(yaml.contains(key), "{key} missing from\n{yaml}");
        }
        let again: KafkaFault = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(again, fault);
        // The example shows every field at once; a delay on a Reject is not meaningful.
        assert_eq!(
            fault.spec.validate().unwrap_err(),
            [crate::SpecError::UnusedActionField {
                field: "spec.action.delay",
                used_by: ActionType::Delay,
                action: ActionType::Reject,
            }]
        );
    }

    #[test]
    fn minimal_example_gets_defaults_and_round_trips() {
        let minimal = r#"
apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {name: m}
spec:
  selector: {matchLabels: {app: kafka}}
  action: {type: Drop}
"#;
        let fault: KafkaFault = serde_yaml::from_str(minimal).unwrap();
        let spec = &fault.spec;
        assert_eq!(spec.terms.ports, [DEFAULT_KAFKA_PORT]);
        assert_eq!(spec.mode, TargetMode::All);
        assert_eq!(spec.value, None);
        assert_eq!(spec.terms.enforcement, Enforcement::Auto);
        assert_eq!(spec.terms.action.probability, 100);
        assert_eq!(spec.terms.action.delay(), None);
        assert_eq!(spec.terms.match_, FaultMatch::default());
        assert_eq!(spec.duration(), None);
        assert!(!spec.paused && !spec.dry_run);
        assert_eq!(fault.status, None);
        assert_eq!(spec.validate(), Ok(()));

        let yaml = serde_yaml::to_string(&fault).unwrap();
        assert!(!yaml.contains("status"), "{yaml}");
        assert_eq!(serde_yaml::from_str::<KafkaFault>(&yaml).unwrap(), fault);
    }

    #[test]
    fn empty_status_reads_with_defaults() {
        let status: KafkaFaultStatus = serde_yaml::from_str("{}").unwrap();
        assert_eq!(status, KafkaFaultStatus::default());
        assert_eq!(status.phase, FaultPhase::Pending);
    }
}
