//! What the node agent decides about the KafkaFaultInjections of its node, as pure functions
//! of what it observed: whether it may act on an injection at all ([`vet()`]: the injection
//! checked against its live pod), what state an injection's rules must be in ([`desired`]),
//! the whole reconcile of one injection ([`decide()`]: the actions to take and the status to
//! report), which chains in a namespace nobody wants any more ([`is_orphan`]), and which
//! network namespace is a pod's ([`pod_netns`]). The agent in the binary only gathers what
//! these need (objects, the clock, `/proc`, its sessions' progress), calls them, and acts.
//!
//! It depends on [`crate::fault`] (the plan a session enforces) and [`crate::rules`] (the
//! chains it judges); only the binary's `agent` command and namespace lookup use it.

mod decide;
pub mod pod_netns;
mod vet;

pub use decide::{
    Act, Decision, NetnsMiss, Observed, Placement, PodNetns, RESYNC, SessionView, Start, decide,
    start_failed,
};
pub use vet::{HOST_NETWORK_HINT, HostTargets, Refusal, vet};

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kafka_shock_crds::{
    InjectionPhase, KafkaFaultInjection, KafkaFaultInjectionStatus, ProxyCounts, parse_rule_id,
    tls_condition, tls_message,
};

use crate::rules::OwnedChain;

/// Whether `chain` was installed by the agent of `node` for an injection not in `live`: a
/// leftover of an injection deleted while the agent was down, to be swept at start. Chains of
/// other nodes and of CLI runs are never this agent's to judge.
pub fn is_orphan(chain: &OwnedChain, node: &str, live: &HashSet<String>) -> bool {
    let mut ours = chain
        .ids
        .iter()
        .filter_map(|id| parse_rule_id(id))
        .filter(|(owner, _)| *owner == node)
        .peekable();
    ours.peek().is_some() && ours.all(|(_, uid)| !live.contains(uid))
}

/// The state an injection's rules must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desired {
    /// Rules in place until `until` (or until the injection changes).
    Enforce { until: Option<Timestamp> },
    /// Rules out, object kept: the fault is paused.
    Paused,
    /// Rules out for good: `expireTime` has passed.
    Expired,
    /// Rules out, then the finalizer released: the injection is being deleted.
    Deleting,
}

/// Why an injection cannot be acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("spec.expireTime {0:?} is not an RFC 3339 time")]
    BadExpireTime(String),
}

/// What the injection asks for at `now`. Deletion wins over everything, then expiry (the agent
/// enforces `expireTime` itself, also when the operator is down), then pause.
pub fn desired(
    injection: &KafkaFaultInjection,
    now: Timestamp,
) -> Result<Desired, AssignmentError> {
    if injection.metadata.deletion_timestamp.is_some() {
        return Ok(Desired::Deleting);
    }
    let until = injection
        .spec
        .expire_time
        .as_deref()
        .map(|text| {
            text.parse::<Timestamp>()
                .map_err(|_| AssignmentError::BadExpireTime(text.to_owned()))
        })
        .transpose()?;
    Ok(match until {
        Some(until) if until <= now => Desired::Expired,
        _ if injection.spec.paused => Desired::Paused,
        _ => Desired::Enforce { until },
    })
}

/// How long until `until`, from `now`; zero once passed.
pub fn time_until(until: Timestamp, now: Timestamp) -> Duration {
    let nanos = until.as_nanosecond().saturating_sub(now.as_nanosecond());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// What a session has done, as the status reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub rules_installed: usize,
    pub matched: u64,
    /// Inline enforcement only.
    pub delayed: u64,
    pub dropped: u64,
    pub reset: u64,
    pub failed_open: u64,
    /// Proxy enforcement only.
    pub proxy: Option<ProxyCounts>,
    /// Broker ports on which a client's stream began with a TLS record.
    pub tls_ports: Vec<u16>,
}

impl Tally {
    /// The figures `status` already reports, for an injection this agent runs no session for
    /// (it restarted): what was hit stays reported; no rule is in place.
    pub fn reported(status: Option<&KafkaFaultInjectionStatus>) -> Tally {
        status.map_or_else(Tally::default, |status| Tally {
            rules_installed: 0,
            matched: status.matched_requests,
            delayed: status.delayed_requests,
            dropped: status.dropped_requests,
            reset: status.reset_requests,
            failed_open: status.failed_open,
            proxy: status.proxy,
            tls_ports: status.tls_ports.clone(),
        })
    }
}

/// The status the agent reports for `injection`: its own observation of the spec's generation,
/// so the operator can tell a status of an older spec from a current one.
pub fn status_for(
    injection: &KafkaFaultInjection,
    phase: InjectionPhase,
    tally: Tally,
    last_error: Option<String>,
) -> KafkaFaultInjectionStatus {
    KafkaFaultInjectionStatus {
        phase,
        rules_installed: u32::try_from(tally.rules_installed).unwrap_or(u32::MAX),
        matched_requests: tally.matched,
        delayed_requests: tally.delayed,
        dropped_requests: tally.dropped,
        reset_requests: tally.reset,
        failed_open: tally.failed_open,
        proxy: tally.proxy,
        last_error,
        reason: None,
        observed_generation: injection.metadata.generation,
        tls_ports: tally.tls_ports,
        conditions: Vec::new(),
    }
}

/// The conditions of `status` for `injection` at `now`: RequestsVisible=False (reason TLS)
/// while the status names TLS ports, keeping the time it became so.
pub fn conditions_for(
    status: &KafkaFaultInjectionStatus,
    injection: &KafkaFaultInjection,
    now: Timestamp,
) -> Vec<Condition> {
    let previous = injection
        .status
        .as_ref()
        .map_or(&[][..], |s| s.conditions.as_slice());
    tls_condition(
        &status.tls_ports,
        tls_message(&status.tls_ports),
        previous,
        injection.metadata.generation,
        &Time(now),
    )
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use kafka_shock_crds::{
        Action, ActionType, Enforcement, FaultMatch, FaultTerms, KafkaFaultInjectionSpec,
    };

    /// The injection of "reset every Produce to `orders`" on one pod, generation 3, as the
    /// operator writes it: in the pod's namespace, controlled by its fault.
    pub(crate) fn injection(expire: Option<&str>, paused: bool) -> KafkaFaultInjection {
        let mut object = KafkaFaultInjection::new(
            "reset-orders-kafka-broker-0",
            KafkaFaultInjectionSpec {
                fault_name: "reset-orders".into(),
                pod_name: "kafka-broker-0".into(),
                pod_uid: "0b0f6c6e-1b7a-4d0e-9a51-3f1c4e8b2a10".into(),
                pod_ip: "10.77.0.10".into(),
                pod_ips: vec![],
                node_name: "ksl-node-1".into(),
                terms: FaultTerms {
                    ports: vec![9092],
                    match_: FaultMatch {
                        api_keys: vec!["Produce".into()],
                        topics: vec!["orders".into()],
                        ..FaultMatch::default()
                    },
                    action: Action::new(ActionType::Reject),
                    enforcement: Enforcement::Auto,
                    handover: None,
                },
                expire_time: expire.map(str::to_owned),
                paused,
                source_ips: None,
            },
        );
        object.metadata.generation = Some(3);
        object.metadata.namespace = Some("kafka".into());
        object.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "kafkashock.io/v1alpha1".into(),
            kind: "KafkaFault".into(),
            name: "reset-orders".into(),
            uid: "5e1f0a3c-fault".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        object
    }

    /// The live pod [`injection`] names, on its node.
    pub(crate) fn pod() -> Pod {
        let spec = injection(None, false).spec;
        Pod {
            metadata: ObjectMeta {
                name: Some(spec.pod_name),
                namespace: Some("kafka".into()),
                uid: Some(spec.pod_uid),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some(spec.node_name),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    pub(crate) fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn only_this_nodes_dead_injections_are_orphans() {
        let chain = |ids: &[&str]| OwnedChain {
            name: "KSHOCK-000000000001".into(),
            ids: ids.iter().map(|id| id.to_string()).collect(),
            rules: 1,
            jumps: vec![],
            lease: crate::rules::ChainLease::NoJump,
        };
        let live: HashSet<String> = ["alive".to_owned()].into();
        assert!(is_orphan(&chain(&["kfi.n1.dead"]), "n1", &live));
        assert!(!is_orphan(&chain(&["kfi.n1.alive"]), "n1", &live));
        assert!(!is_orphan(&chain(&["kfi.n2.dead"]), "n1", &live));
        assert!(!is_orphan(&chain(&["cli.1.2.0.x"]), "n1", &live));
        assert!(!is_orphan(&chain(&[]), "n1", &live));
        assert!(!is_orphan(
            &chain(&["kfi.n1.dead", "kfi.n1.alive"]),
            "n1",
            &live
        ));
    }

    #[test]
    fn deletion_beats_expiry_beats_pause() {
        let now = at("2026-11-25T12:00:00Z");
        let mut deleting = injection(Some("2026-11-25T11:00:00Z"), true);
        deleting.metadata.deletion_timestamp = Some(Time(now));
        assert_eq!(desired(&deleting, now), Ok(Desired::Deleting));
        assert_eq!(
            desired(&injection(Some("2026-11-25T12:00:00Z"), true), now),
            Ok(Desired::Expired)
        );
        assert_eq!(
            desired(&injection(Some("2026-11-25T12:00:01Z"), true), now),
            Ok(Desired::Paused)
        );
        assert_eq!(
            desired(&injection(Some("2026-11-25T12:00:01Z"), false), now),
            Ok(Desired::Enforce {
                until: Some(at("2026-11-25T12:00:01Z"))
            })
        );
        assert_eq!(
            desired(&injection(None, false), now),
            Ok(Desired::Enforce { until: None })
        );
        assert_eq!(
            desired(&injection(Some("tomorrow"), false), now),
            Err(AssignmentError::BadExpireTime("tomorrow".into()))
        );
    }

    #[test]
    fn time_until_saturates_at_zero() {
        let now = at("2026-11-25T12:00:00Z");
        assert_eq!(
            time_until(at("2026-11-25T12:00:01.5Z"), now),
            Duration::from_millis(1500)
        );
        assert_eq!(time_until(at("2026-11-25T11:00:00Z"), now), Duration::ZERO);
    }

    #[test]
    fn status_reports_the_observed_generation() {
        let tally = Tally {
            rules_installed: 7,
            matched: 42,
            delayed: 40,
            failed_open: 1,
            ..Tally::default()
        };
        let status = status_for(&injection(None, false), InjectionPhase::Active, tally, None);
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.rules_installed, 7);
        assert_eq!(status.matched_requests, 42);
        assert_eq!((status.delayed_requests, status.failed_open), (40, 1));
        assert_eq!(status.phase, InjectionPhase::Active);
    }
}
