//! Whether the node agent may act on an injection at all: the injection is checked against
//! the live pod it names, before its network namespace is looked for or anything is
//! installed. Only the operator may write injections (an admission policy of the chart), but
//! the agent is the most privileged process of the cluster, so it does not take an
//! injection's word for where to act: the pod must exist in the injection's namespace with
//! the injection's UID, run on this agent's node, and the injection must be controlled by the
//! KafkaFault it names. A pod in the node's own network namespace (`hostNetwork`) is refused
//! unless the agent was told to allow such targets.

use k8s_openapi::api::core::v1::Pod;
use kafka_shock_crds::{KafkaFault, KafkaFaultInjection, RefusalReason};
use kube::Resource;

/// Why an injection is not acted on: the check that failed, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: RefusalReason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: RefusalReason, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
        }
    }

    /// The text the status reports as lastError: the reason first, as the KafkaFault's
    /// conditions repeat it.
    pub fn last_error(&self) -> String {
        format!("{}: {}", self.reason, self.message)
    }
}

/// What the agent allows beyond pods in a network namespace of their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostTargets {
    /// A pod with `hostNetwork`, and so the node's own network namespace, may be a target
    /// (`--allow-host-network-targets`).
    pub allowed: bool,
}

/// The hint a refusal of the node's namespace ends with.
pub const HOST_NETWORK_HINT: &str = "the agent acts on the node's own network namespace only with --allow-host-network-targets \
     (chart value agent.allowHostNetworkTargets)";

/// Checks `injection` against `pod` (the pod of its spec.podName in its namespace, as read
/// now; `None` when there is none) for the agent of `node`, in this order: the injection is
/// for this node; the pod exists, has the injection's UID and runs on this node; the
/// injection is controlled by its KafkaFault; the pod is not in the host's network.
pub fn vet(
    injection: &KafkaFaultInjection,
    pod: Option<&Pod>,
    node: &str,
    host: HostTargets,
) -> Result<(), Refusal> {
    let spec = &injection.spec;
    let namespace = injection.metadata.namespace.as_deref().unwrap_or_default();
    if spec.node_name != node {
        return Err(Refusal::new(
            RefusalReason::WrongNode,
            format!(
                "the injection is for node {:?}; this agent runs on {node:?}",
                spec.node_name
            ),
        ));
    }
    let Some(pod) = pod else {
        return Err(Refusal::new(
            RefusalReason::PodNotFound,
            format!(
                "no pod {:?} in namespace {namespace:?}, the injection's own",
                spec.pod_name
            ),
        ));
    };
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    if uid != spec.pod_uid {
        return Err(Refusal::new(
            RefusalReason::PodMismatch,
            format!(
                "pod {namespace}/{} has UID {uid:?}, not the injection's {:?} (recreated, or not the injection's pod)",
                spec.pod_name, spec.pod_uid
            ),
        ));
    }
    let pod_spec = pod.spec.as_ref();
    let pod_node = pod_spec.and_then(|s| s.node_name.as_deref());
    if pod_node != Some(node) {
        return Err(Refusal::new(
            RefusalReason::WrongNode,
            format!(
                "pod {namespace}/{} runs on node {:?}, not on this agent's {node:?}",
                spec.pod_name,
                pod_node.unwrap_or("(none)")
            ),
        ));
    }
    if !controlled_by_its_fault(injection) {
        return Err(Refusal::new(
            RefusalReason::NotOwned,
            format!(
                "the injection is not controlled by KafkaFault {namespace}/{} (no such controller ownerReference)",
                spec.fault_name
            ),
        ));
    }
    if pod_spec.and_then(|s| s.host_network) == Some(true) && !host.allowed {
        return Err(Refusal::new(
            RefusalReason::HostNetwork,
            format!(
                "pod {namespace}/{} uses the node's network namespace (spec.hostNetwork), where a fault would act on the node itself; {HOST_NETWORK_HINT}",
                spec.pod_name
            ),
        ));
    }
    Ok(())
}

/// Whether the injection's controller ownerReference is the KafkaFault it names (of its own
/// namespace: ownerReferences never cross namespaces).
fn controlled_by_its_fault(injection: &KafkaFaultInjection) -> bool {
    let api_version = KafkaFault::api_version(&());
    let kind = KafkaFault::kind(&());
    injection
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .is_some_and(|owner| {
            owner.api_version == api_version
                && owner.kind == kind
                && owner.name == injection.spec.fault_name
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assignment::tests::{injection, pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    const NODE: &str = "ksl-node-1";

    fn owner(name: &str, kind: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "kafkashock.io/v1alpha1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: "5e1f0a3c-fault".into(),
            controller: Some(controller),
            block_owner_deletion: Some(true),
        }
    }

    /// The test injection, as the operator writes it.
    fn owned() -> KafkaFaultInjection {
        injection(None, false)
    }

    fn reason(result: Result<(), Refusal>) -> Option<RefusalReason> {
        result.err().map(|refusal| refusal.reason)
    }

    const REFUSED: HostTargets = HostTargets { allowed: false };

    #[test]
    fn an_injection_that_matches_its_live_pod_passes() {
        assert_eq!(vet(&owned(), Some(&pod()), NODE, REFUSED), Ok(()));
    }

    #[test]
    fn each_failed_check_is_named() {
        let injection = owned();
        let on_other_node = vet(&injection, Some(&pod()), "ksl-node-2", REFUSED).unwrap_err();
        assert_eq!(on_other_node.reason, RefusalReason::WrongNode);
        assert_eq!(
            on_other_node.last_error(),
            "WrongNode: the injection is for node \"ksl-node-1\"; this agent runs on \"ksl-node-2\""
        );

        let missing = vet(&injection, None, NODE, REFUSED).unwrap_err();
        assert_eq!(
            missing.last_error(),
            "PodNotFound: no pod \"kafka-broker-0\" in namespace \"kafka\", the injection's own"
        );

        let mut recreated = pod();
        recreated.metadata.uid = Some("11111111-new".into());
        let mismatch = vet(&injection, Some(&recreated), NODE, REFUSED).unwrap_err();
        assert_eq!(mismatch.reason, RefusalReason::PodMismatch);
        assert!(
            mismatch.message.contains("\"11111111-new\""),
            "{}",
            mismatch.message
        );

        let mut elsewhere = pod();
        elsewhere.spec.as_mut().unwrap().node_name = Some("ksl-node-2".into());
        let moved = vet(&injection, Some(&elsewhere), NODE, REFUSED).unwrap_err();
        assert_eq!(moved.reason, RefusalReason::WrongNode);
        assert!(moved.message.contains("runs on node \"ksl-node-2\""));
        let mut unscheduled = pod();
        unscheduled.spec = None;
        assert_eq!(
            reason(vet(&injection, Some(&unscheduled), NODE, REFUSED)),
            Some(RefusalReason::WrongNode)
        );
    }

    #[test]
    fn only_the_named_fault_as_controller_owns_an_injection() {
        for owners in [
            None,
            Some(vec![]),
            Some(vec![owner("reset-orders", "KafkaFault", false)]),
            Some(vec![owner("another-fault", "KafkaFault", true)]),
            Some(vec![owner("reset-orders", "ConfigMap", true)]),
        ] {
            let mut injection = owned();
            injection.metadata.owner_references = owners.clone();
            let refusal = vet(&injection, Some(&pod()), NODE, REFUSED).unwrap_err();
            assert_eq!(refusal.reason, RefusalReason::NotOwned, "{owners:?}");
            assert_eq!(
                refusal.message,
                "the injection is not controlled by KafkaFault kafka/reset-orders (no such controller ownerReference)"
            );
        }
        let mut wrong_version = owner("reset-orders", "KafkaFault", true);
        wrong_version.api_version = "kafkashock.io/v9".into();
        let mut injection = owned();
        injection.metadata.owner_references = Some(vec![wrong_version]);
        assert_eq!(
            reason(vet(&injection, Some(&pod()), NODE, REFUSED)),
            Some(RefusalReason::NotOwned)
        );
    }

    #[test]
    fn a_host_network_pod_is_refused_unless_allowed() {
        let mut host = pod();
        host.spec.as_mut().unwrap().host_network = Some(true);
        let refusal = vet(&owned(), Some(&host), NODE, REFUSED).unwrap_err();
        assert_eq!(refusal.reason, RefusalReason::HostNetwork);
        assert!(
            refusal.message.contains("--allow-host-network-targets"),
            "{}",
            refusal.message
        );
        let allowed = HostTargets { allowed: true };
        assert_eq!(vet(&owned(), Some(&host), NODE, allowed), Ok(()));
        // Allowing host targets lifts no other check.
        assert_eq!(
            reason(vet(&owned(), None, NODE, allowed)),
            Some(RefusalReason::PodNotFound)
        );
        host.spec.as_mut().unwrap().host_network = Some(false);
        assert_eq!(vet(&owned(), Some(&host), NODE, REFUSED), Ok(()));
    }
}
