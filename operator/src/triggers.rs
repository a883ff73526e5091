//! Which faults to reconcile when a pod or a node changes.
//!
//! A fault depends on the pods of its namespace: a pod that becomes Ready may become a target,
//! and a restarted pod (new UID or IP) needs its injection re-targeted. Waking only the faults a
//! pod can matter to — its selector matches the pod, or the fault already lists the pod among
//! its targets (a pod that stopped matching must be dropped) — keeps a busy namespace from
//! reconciling every fault on every pod update. A fault with a `match.sourceSelector` is woken
//! by every pod of its namespace: a source pod's address comes and goes with it, and one that
//! stopped matching must be dropped from the injections' addresses.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kafka_shock_crds::{KafkaFault, parse_selector, selector::SelectorExt};
use kube::{ResourceExt, runtime::reflector::ObjectRef};

/// The faults among `faults` that the pod with metadata `pod` can matter to. Metadata is all it
/// takes, so the controller watches pods' metadata only.
pub fn faults_for_pod<'a>(
    pod: &ObjectMeta,
    faults: impl IntoIterator<Item = &'a KafkaFault>,
) -> Vec<ObjectRef<KafkaFault>> {
    let namespace = pod.namespace.clone();
    let name = pod.name.clone().unwrap_or_default();
    faults
        .into_iter()
        .filter(|fault| fault.namespace() == namespace)
        .filter(|fault| {
            let labels = pod.labels.as_ref();
            let selects = parse_selector(&fault.spec.selector)
                .is_ok_and(|s| !s.selects_all() && s.matches(labels.unwrap_or(&BTreeMap::new())));
            let lists = fault
                .status
                .as_ref()
                .is_some_and(|status| status.targets.iter().any(|t| t.pod == name));
            let sources = fault.spec.terms.match_.source_selector.is_some();
            selects || lists || sources
        })
        .map(ObjectRef::from_obj)
        .collect()
}

/// The faults among `faults` that a node disappearing can unblock: those being deleted, whose
/// injections on that node no agent will ever release.
pub fn faults_for_node<'a>(
    faults: impl IntoIterator<Item = &'a KafkaFault>,
) -> Vec<ObjectRef<KafkaFault>> {
    faults
        .into_iter()
        .filter(|fault| fault.metadata.deletion_timestamp.is_some())
        .map(ObjectRef::from_obj)
        .collect()
}

#[cfg(test)]
mod tests {
    use kafka_shock_crds::{KafkaFaultStatus, TargetStatus};

    use super::*;
    use crate::{
        injections::time,
        targets::tests::{fault, pod},
    };

    fn names(refs: &[ObjectRef<KafkaFault>]) -> Vec<&str> {
        refs.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn a_pod_wakes_the_faults_that_select_or_list_it() {
        let matching = fault("All", None);
        let mut elsewhere = fault("All", None);
        elsewhere.metadata.name = Some("elsewhere".into());
        elsewhere.metadata.namespace = Some("default".into());
        let mut other_labels = fault("All", None);
        other_labels.metadata.name = Some("other-labels".into());
        other_labels.spec.selector.match_labels = Some([("app".into(), "zookeeper".into())].into());
        let mut listing = other_labels.clone();
        listing.metadata.name = Some("listing".into());
        listing.status = Some(KafkaFaultStatus {
            targets: vec![TargetStatus {
                pod: "broker-0".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let mut empty = fault("All", None);
        empty.metadata.name = Some("empty-selector".into());
        empty.spec.selector = Default::default();

        let faults = [matching, elsewhere, other_labels, listing, empty];
        assert_eq!(
            names(&faults_for_pod(&pod("broker-0").metadata, &faults)),
            ["reset-orders", "listing"]
        );
        assert_eq!(
            names(&faults_for_pod(&pod("broker-1").metadata, &faults)),
            ["reset-orders"]
        );
    }

    #[test]
    fn any_pod_of_its_namespace_wakes_a_fault_with_a_source_selector() {
        let mut isolating = fault("All", None);
        isolating.metadata.name = Some("isolating".into());
        isolating.spec.selector.match_labels = Some([("app".into(), "zookeeper".into())].into());
        isolating.spec.terms.match_.source_selector = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some([("role".into(), "follower".into())].into()),
                ..Default::default()
            },
        );
        let mut elsewhere = isolating.clone();
        elsewhere.metadata.name = Some("elsewhere".into());
        elsewhere.metadata.namespace = Some("default".into());
        // broker-0 is no source (it lacks the label): it may just have stopped being one.
        assert_eq!(
            names(&faults_for_pod(
                &pod("broker-0").metadata,
                &[isolating, elsewhere]
            )),
            ["isolating"]
        );
    }

    #[test]
    fn a_node_wakes_only_deleting_faults() {
        let live = fault("All", None);
        let mut deleting = fault("All", None);
        deleting.metadata.name = Some("deleting".into());
        deleting.metadata.deletion_timestamp = Some(time("2025-01-02T03:04:05Z"));
        assert_eq!(names(&faults_for_node([&live, &deleting])), ["deleting"]);
    }
}
