//! `KafkaFaultInjection`: one fault on one pod, written by the operator for the agent on that
//! pod's node.
//!
//! Dispatch goes through the API rather than a private RPC, so it survives restarts, shows in
//! kubectl, and leaves no open port on a privileged agent. Its labels, finalizer and name are
//! in [`crate::contract`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{matching::SourcesError, terms::FaultTerms};

/// Everything the agent needs to enforce one fault on one pod, with no further lookups.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kafkashock.io",
    version = "v1alpha1",
    kind = "KafkaFaultInjection",
    namespaced,
    shortname = "kfi",
    category = "kafkashock",
    status = "KafkaFaultInjectionStatus",
    derive = "PartialEq",
    doc = "One KafkaFault applied to one pod. Written by the kafka-shock operator and enforced by the agent on the pod's node; do not edit.",
    printcolumn = r#"{"name": "Pod", "type": "string", "jsonPath": ".spec.podName", "description": "The targeted pod"}"#,
    printcolumn = r#"{"name": "Node", "type": "string", "jsonPath": ".spec.nodeName", "description": "The node whose agent enforces it"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Where the injection is in its life"}"#,
    printcolumn = r#"{"name": "Rules", "type": "integer", "jsonPath": ".status.rulesInstalled", "description": "Rules installed in the pod's network namespace"}"#,
    printcolumn = r#"{"name": "Matched", "type": "integer", "jsonPath": ".status.matchedRequests", "description": "Requests hit so far"}"#,
    printcolumn = r#"{"name": "Fault", "type": "string", "jsonPath": ".spec.faultName", "priority": 1, "description": "The KafkaFault this belongs to"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = crate::action::delay_needs_inline(),
    validation = crate::action::regex_needs_stream(),
    validation = crate::action::proxy_actions_need_proxy(),
    validation = crate::action::proxy_does_not_reset(),
    validation = crate::action::error_apis_answerable(),
    validation = crate::action::corrupt_needs_its_api(),
    validation = crate::action::duplicate_needs_produce(),
    validation = crate::action::handover_needs_proxy()
)]
pub struct KafkaFaultInjectionSpec {
    /// The KafkaFault (same namespace) this injection belongs to.
    pub fault_name: String,

    /// The targeted pod's name.
    pub pod_name: String,

    /// The targeted pod's UID, to find its network namespace through its cgroup.
    #[serde(rename = "podUID")]
    pub pod_uid: String,

    /// The pod's primary IP address, to find its network namespace when the cgroup does not
    /// tell.
    #[serde(rename = "podIP")]
    pub pod_ip: String,

    /// All of the pod's IP addresses (IPv4 and IPv6 on dual-stack clusters).
    #[serde(default, rename = "podIPs", skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<String>,

    /// The node the pod runs on: the agent there enforces this injection.
    pub node_name: String,

    /// The fault's ports, match, action and enforcement, copied from it, at spec level.
    #[serde(flatten)]
    pub terms: FaultTerms,

    /// When the agent must remove the rules on its own, even if the operator is down
    /// (RFC 3339). Absent: until the injection is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expire_time: Option<String>,

    /// Remove the rules but keep the injection, so resuming is quick.
    #[serde(default)]
    pub paused: bool,

    /// The IP addresses of the pods the fault's match.sourceSelector selects, resolved by the
    /// operator and kept current as pods come and go; present exactly when the fault has a
    /// sourceSelector. The agent enforces them as sourceCIDRs.
    #[serde(default, rename = "sourceIPs", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), inner(length(max = 64)))]
    pub source_ips: Option<Vec<String>>,
}

impl KafkaFaultInjectionSpec {
    /// The terms as the agent enforces them: a sourceSelector replaced by the addresses the
    /// operator resolved it to (see [`crate::FaultMatch::with_selected_sources`]).
    pub fn enforced_terms(&self) -> Result<FaultTerms, SourcesError> {
        let match_ = self
            .terms
            .match_
            .with_selected_sources(self.source_ips.as_deref())?;
        Ok(FaultTerms {
            match_,
            ..self.terms.clone()
        })
    }
}

/// What the agent reports about one injection.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaFaultInjectionStatus {
    /// Where the injection is in its life.
    #[serde(default)]
    pub phase: InjectionPhase,

    /// Rules the agent has installed in the pod's network namespace.
    #[serde(default)]
    pub rules_installed: u32,

    /// Requests hit so far.
    #[serde(default)]
    pub matched_requests: u64,

    /// Inline enforcement: requests held for the action's delay.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delayed_requests: u64,

    /// Inline enforcement: requests whose segments were dropped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_requests: u64,

    /// Inline enforcement: requests whose connection was reset.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reset_requests: u64,

    /// Inline enforcement: times the agent's hold budget was full and traffic was let through
    /// untouched rather than held (it fails open, never stalls the broker).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_open: u64,

    /// Proxy enforcement: what the proxy did to requests and connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyCounts>,

    /// The last error the agent met enforcing or removing the rules; null once resolved.
    pub last_error: Option<String>,

    /// Set when the agent refused to act on the injection (phase Failed): which of its checks
    /// against the live pod and node failed. lastError says more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RefusalReason>,

    /// The metadata.generation of the spec this status describes.
    pub observed_generation: Option<i64>,

    /// Broker ports on which a client's stream began with a TLS record: the agent cannot read
    /// the requests there (see the RequestsVisible condition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_ports: Vec<u16>,

    /// RequestsVisible=False (reason TLS) once the agent saw TLS on a port of the fault,
    /// saying what still works there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The condition type that says whether the agent can read the requests on the fault's ports.
pub const REQUESTS_VISIBLE: &str = "RequestsVisible";
/// The reason of RequestsVisible=False when a port carries TLS.
pub const TLS_REASON: &str = "TLS";

/// What a TLS port means for a fault, for the CLI, the injection and the fault alike.
pub fn tls_message(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let (noun, verb) = if ports.len() == 1 {
        ("port", "carries")
    } else {
        ("ports", "carry")
    };
    format!(
        "{noun} {} {verb} TLS: its requests cannot be read, so apiKeys, apiVersions, clientId, topics, groupId and transactionalId match nothing there; connection-level faults still work (an empty match, or only sourceCIDRs or sourceSelector)",
        ports.join(", ")
    )
}

/// RequestsVisible=False (reason TLS) for `tls_ports`, saying `message`; `None` without TLS
/// ports. Its lastTransitionTime is `previous`'s when that already said False, so an
/// unchanged world writes an unchanged status.
pub fn tls_condition(
    tls_ports: &[u16],
    message: String,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Option<Condition> {
    if tls_ports.is_empty() {
        return None;
    }
    let since = previous
        .iter()
        .find(|c| c.type_ == REQUESTS_VISIBLE && c.status == "False")
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Some(Condition {
        type_: REQUESTS_VISIBLE.to_owned(),
        status: "False".to_owned(),
        reason: TLS_REASON.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    })
}

/// What Proxy enforcement did: per injection in its status, summed over the injections in
/// the fault's.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyCounts {
    /// Requests the proxy decoded.
    #[serde(default)]
    pub requests_seen: u64,
    /// Requests failed with the fault's Kafka error.
    #[serde(default)]
    pub errored_requests: u64,
    /// Responses whose throttle_time_ms the proxy set.
    #[serde(default)]
    pub throttled_requests: u64,
    /// Requests the proxy held (Delay).
    #[serde(default)]
    pub delayed_requests: u64,
    /// Produce requests or Fetch responses whose record values the proxy altered.
    #[serde(default)]
    pub corrupted_requests: u64,
    /// Produce requests the proxy sent to the broker twice.
    #[serde(default)]
    pub duplicated_requests: u64,
    /// Connections the proxy carried.
    #[serde(default)]
    pub proxied_connections: u64,
    /// Connections opened before the fault that were reset to reconnect through the proxy.
    #[serde(default)]
    pub handed_over_connections: u64,
    /// Connections passed through unread because they carry TLS.
    #[serde(default)]
    pub tls_passthroughs: u64,
    /// Times the action could not be applied and traffic went unchanged.
    #[serde(default)]
    pub failed_open: u64,
}

impl ProxyCounts {
    /// Adds `other` to these counts (saturating), for the fault's roll-up.
    pub fn add(&mut self, other: &ProxyCounts) {
        let pairs = [
            (&mut self.requests_seen, other.requests_seen),
            (&mut self.errored_requests, other.errored_requests),
            (&mut self.throttled_requests, other.throttled_requests),
            (&mut self.delayed_requests, other.delayed_requests),
            (&mut self.corrupted_requests, other.corrupted_requests),
            (&mut self.duplicated_requests, other.duplicated_requests),
            (&mut self.proxied_connections, other.proxied_connections),
            (
                &mut self.handed_over_connections,
                other.handed_over_connections,
            ),
            (&mut self.tls_passthroughs, other.tls_passthroughs),
            (&mut self.failed_open, other.failed_open),
        ];
        for (sum, count) in pairs {
            *sum = sum.saturating_add(count);
        }
    }
}

/// Where an injection is in its life: Pending (agent has not acted yet), Active (rules in
/// place), Paused (rules removed on request), Recovered (rules removed for good) or Failed
/// (see lastError).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InjectionPhase {
    /// The agent has not acted on it yet.
    #[default]
    Pending,
    /// The rules are in place.
    Active,
    /// The rules are removed because the fault is paused.
    Paused,
    /// The rules are removed for good (expired or being deleted).
    Recovered,
    /// The agent could not enforce it; lastError says why.
    Failed,
}

/// Why the agent refused to act on an injection: the check it failed, in the order the agent
/// makes them. No rule is installed for a refused injection, and any it had are removed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The injection is for another node than the agent's, or its pod runs on another node.
    WrongNode,
    /// No pod of spec.podName exists in the injection's namespace.
    PodNotFound,
    /// The pod of spec.podName has another UID than spec.podUID (it was recreated, or the
    /// injection is not its).
    PodMismatch,
    /// The injection is not controlled by the KafkaFault spec.faultName of its namespace.
    NotOwned,
    /// The pod uses the node's network namespace (spec.hostNetwork), and the agent does not
    /// allow host-network targets.
    HostNetwork,
    /// The pod's network namespace is the node's own (or the agent's), and the agent does not
    /// allow host-network targets.
    HostNamespace,
}

impl RefusalReason {
    /// The reason as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::WrongNode => "WrongNode",
            RefusalReason::PodNotFound => "PodNotFound",
            RefusalReason::PodMismatch => "PodMismatch",
            RefusalReason::NotOwned => "NotOwned",
            RefusalReason::HostNetwork => "HostNetwork",
            RefusalReason::HostNamespace => "HostNamespace",
        }
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Inline counters stay out of the status of faults that never queue a packet.
fn is_zero(count: &u64) -> bool {
    *count == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActionType, ClientIdMatch, Enforcement, FAULT_LABEL, FINALIZER, NODE_LABEL};

    #[test]
    fn round_trips_with_camel_case_names() {
        let yaml = r#"
apiVersion: kafkashock.io/v1alpha1
kind: KafkaFaultInjection
metadata:
  name: reset-orders-producer-my-cluster-broker-0
  namespace: kafka
  labels: {kafkashock.io/node: node-a, kafkashock.io/fault: reset-orders-producer}
  finalizers: [kafkashock.io/rules]
spec:
  faultName: reset-orders-producer
  podName: my-cluster-broker-0
  podUID: 6f1f0b2c-0d5e-4d39-9a57-3f1c2b7c9d10
  podIP: 10.1.0.7
  podIPs: [10.1.0.7, fd00::7]
  nodeName: node-a
  match:
    apiKeys: [Produce]
    clientId: {prefix: checkout-}
  action: {type: Reject}
  expireTime: "2025-01-02T03:09:05Z"
status:
  phase: Active
  rulesInstalled: 2
  matchedRequests: 17
  lastError: null
  observedGeneration: 1
"#;
        let injection: KafkaFaultInjection = serde_yaml::from_str(yaml).unwrap();
        let labels = injection.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[NODE_LABEL], "node-a");
        assert_eq!(labels[FAULT_LABEL], "reset-orders-producer");
        assert_eq!(
            injection.metadata.finalizers.as_deref(),
            Some(&[FINALIZER.to_owned()][..])
        );
        let spec = &injection.spec;
        assert_eq!(spec.pod_ips, ["10.1.0.7", "fd00::7"]);
        assert_eq!(spec.terms.ports, [9092]);
        assert_eq!(spec.terms.enforcement, Enforcement::Auto);
        assert!(!spec.paused);
        assert_eq!(spec.terms.action.type_, ActionType::Reject);
        assert_eq!(
            spec.terms.match_.client_id,
            Some(ClientIdMatch {
                prefix: Some("checkout-".into()),
                ..ClientIdMatch::default()
            })
        );
        assert_eq!(
            injection.status.as_ref().unwrap().phase,
            InjectionPhase::Active
        );

        let out = serde_yaml::to_string(&injection).unwrap();
        for key in [
            "podUID:",
            "podIP:",
            "podIPs:",
            "rulesInstalled: 2",
            "expireTime:",
        ] {
            assert!(out.contains(key), "{key} missing from\n{out}");
        }
        assert_eq!(
            serde_yaml::from_str::<KafkaFaultInjection>(&out).unwrap(),
            injection
        );
    }
}
