//! From targets to KafkaFaultInjections: a deterministic builder and the create/update/delete
//! changes that bring the API in line with it.
//!
//! The builder fills only fields that follow from its inputs, in a fixed order, so the same
//! fault, target and start give a byte-identical object: comparing it with what is stored tells
//! exactly whether a write is needed, and reconciles do not flap (after stackable's
//! operator-rs).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::core::v1::Pod,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time},
};
use kafka_shock_crds::{
    FAULT_LABEL, FINALIZER, KafkaFault, KafkaFaultInjection, KafkaFaultInjectionSpec, NODE_LABEL,
    injection_name, label_value,
};
use kube::{Resource, ResourceExt};

use crate::{
    schedule::{
        START_ANNOTATION, ends_at, expiry, injection_start, rfc3339, started_at, whole_seconds,
    },
    targets::Target,
};

/// Why injections cannot be built for a fault: it lacks metadata that only the API server sets,
/// without which the injection would have no owner or place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectionError {
    /// The fault lacks `metadata.<field>`.
    #[error("the fault has no metadata.{0}; injections are built only for stored faults")]
    MissingMetadata(&'static str),
}

/// What to change so that the fault's injections are exactly those its targets need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InjectionChanges {
    /// Injections to create.
    pub create: Vec<KafkaFaultInjection>,
    /// Injections whose stored version differs from these (e.g. the pod was recreated with a new
    /// UID or IP, or the fault was paused or edited); apply them (server-side apply keeps the
    /// agent's status and finalizer handling apart).
    pub update: Vec<KafkaFaultInjection>,
    /// Names of injections no longer wanted (pod no longer targeted, fault deleted or in dry
    /// run). Deleting starts recovery; the agent removes the finalizer once the rules are gone.
    pub delete: Vec<String>,
}

impl InjectionChanges {
    /// Whether nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The injection of `fault` on `target`, for a fault that started at `start` (cut to whole
/// seconds): owned by the fault, labelled with the node and fault, holding the finalizer that
/// lets the agent remove the rules before it goes, and carrying the fault's spec, the pod and
/// `expireTime` = start + duration.
pub fn injection_for(
    fault: &KafkaFault,
    target: &Target,
    start: &Time,
    sources: Option<&[String]>,
) -> Result<KafkaFaultInjection, InjectionError> {
    let fault_name = fault
        .metadata
        .name
        .clone()
        .ok_or(InjectionError::MissingMetadata("name"))?;
    let namespace = fault
        .metadata
        .namespace
        .clone()
        .ok_or(InjectionError::MissingMetadata("namespace"))?;
    let owner = OwnerReference {
        block_owner_deletion: Some(true),
        ..fault
            .controller_owner_ref(&())
            .ok_or(InjectionError::MissingMetadata("uid"))?
    };
    let start = whole_seconds(start.0);
    let spec = &fault.spec;
    Ok(KafkaFaultInjection {
        metadata: ObjectMeta {
            name: Some(injection_name(&fault_name, &target.pod_name)),
            namespace: Some(namespace),
            labels: Some(BTreeMap::from([
                (NODE_LABEL.to_owned(), label_value(&target.node_name)),
                (FAULT_LABEL.to_owned(), label_value(&fault_name)),
            ])),
            annotations: Some(BTreeMap::from([(
                START_ANNOTATION.to_owned(),
                rfc3339(start),
            )])),
            owner_references: Some(vec![owner]),
            finalizers: Some(vec![FINALIZER.to_owned()]),
            ..ObjectMeta::default()
        },
        spec: KafkaFaultInjectionSpec {
            fault_name,
            pod_name: target.pod_name.clone(),
            pod_uid: target.pod_uid.clone(),
            pod_ip: target.pod_ip.clone(),
            pod_ips: target.pod_ips.clone(),
            node_name: target.node_name.clone(),
            terms: spec.terms.clone(),
            expire_time: ends_at(fault, start).map(rfc3339),
            paused: spec.paused,
            source_ips: sources.map(<[String]>::to_vec),
        },
        status: None,
    })
}

/// What to create, update and delete so that `existing` (the fault's injections, as stored)
/// becomes one injection per target.
///
/// - Every injection keeps the start it was built with, and new ones take the fault's start
///   (`now` for the first), so `expireTime` never moves on re-reconcile and all targets end
///   together.
/// - A fault that is being deleted, is in dry run, or whose duration is over wants no
///   injection: the existing ones are deleted, and each goes once its agent has removed the
///   rules (or its pod or node is gone). The agents end an expired fault on their own too; the
///   deletion makes the end visible in the API and lets the fault roll up to Completed.
/// - An injection already being deleted is left alone: its successor is created once it is
///   gone (the controller's watch on injections brings it back).
/// - `sources` are the addresses `match.sourceSelector` resolved to (`None` without one),
///   carried by every injection. When the selector selects no pod, no injection is wanted: an
///   empty selection never widens the fault to every source.
pub fn injection_changes(
    fault: &KafkaFault,
    targets: &[Target],
    existing: &[KafkaFaultInjection],
    now: &Time,
    sources: Option<&[String]>,
) -> Result<InjectionChanges, InjectionError> {
    let expired = expiry(fault, existing).is_some_and(|end| end <= now.0);
    let wants_none = fault.metadata.deletion_timestamp.is_some()
        || fault.spec.dry_run
        || expired
        || sources.is_some_and(<[String]>::is_empty);
    let wanted = if wants_none { &[][..] } else { targets };
    let fault_start = started_at(fault, existing).unwrap_or(now.0);
    let stored: BTreeMap<String, &KafkaFaultInjection> =
        existing.iter().map(|i| (i.name_any(), i)).collect();

    let mut changes = InjectionChanges::default();
    let mut wanted_names = BTreeSet::new();
    for target in wanted {
        let name = injection_name(&fault.name_any(), &target.pod_name);
        match stored.get(&name) {
            None => changes
                .create
                .push(injection_for(fault, target, &Time(fault_start), sources)?),
            Some(current) if current.metadata.deletion_timestamp.is_some() => {}
            Some(current) => {
                let start = injection_start(current).unwrap_or(fault_start);
                let desired = injection_for(fault, target, &Time(start), sources)?;
                if needs_update(current, &desired) {
                    changes.update.push(desired);
                }
            }
        }
        wanted_names.insert(name);
    }
    changes.delete = stored
        .into_iter()
        .filter(|(name, i)| !wanted_names.contains(name) && i.metadata.deletion_timestamp.is_none())
        .map(|(name, _)| name)
        .collect();
    Ok(changes)
}

/// Whether `current` lacks anything `desired` sets: its spec, a label, the start annotation, the
/// finalizer or the owner reference. Fields others added (other labels, the agent's status) do
/// not count.
fn needs_update(current: &KafkaFaultInjection, desired: &KafkaFaultInjection) -> bool {
    let has_all = |have: &Option<BTreeMap<String, String>>,
                   want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    current.spec != desired.spec
        || !has_all(&current.metadata.labels, &desired.metadata.labels)
        || !has_all(&current.metadata.annotations, &desired.metadata.annotations)
        || !desired
            .finalizers()
            .iter()
            .all(|f| current.finalizers().contains(f))
        || !desired
            .owner_references()
            .iter()
            .all(|o| current.owner_references().contains(o))
}

/// Whether the operator may remove the agent's finalizer from `injection` itself: it is being
/// deleted and no agent can ever remove the rules, because `pod` (the pod of that name, if any)
/// is gone or is a different pod (new UID, hence a new network namespace without the rules),
/// or because the node is gone (`node_exists` false). Otherwise only the agent removes it, once
/// the rules are gone, so that a deleted fault is not gone until its rules are.
pub fn finalizer_releasable(
    injection: &KafkaFaultInjection,
    pod: Option<&Pod>,
    node_exists: bool,
) -> bool {
    let pod_gone = pod.is_none_or(|p| p.metadata.uid.as_deref() != Some(&injection.spec.pod_uid));
    injection.metadata.deletion_timestamp.is_some()
        && injection.finalizers().iter().any(|f| f == FINALIZER)
        && (pod_gone || !node_exists)
}

/// The time `text` (RFC 3339); for tests.
#[cfg(test)]
pub(crate) fn time(text: &str) -> Time {
    Time(text.parse().unwrap())
}

#[cfg(test)]
mod tests {
    use kafka_shock_crds::{InjectionPhase, KafkaFaultInjectionStatus};

    use super::*;
    use crate::targets::tests::{fault, pod};

    fn target(name: &str) -> Target {
        crate::select_targets(&fault("All", None), &[pod(name)])
            .unwrap()
            .remove(0)
    }

    fn stored(injection: KafkaFaultInjection) -> KafkaFaultInjection {
        let mut stored = injection;
        stored.metadata.uid = Some("injection-uid".into());
        stored.metadata.resource_version = Some("42".into());
        stored.metadata.generation = Some(1);
        stored
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("team".into(), "sre".into());
        stored.status = Some(KafkaFaultInjectionStatus {
            phase: InjectionPhase::Active,
            rules_installed: 2,
            ..Default::default()
        });
        stored
    }

    #[test]
    fn builds_the_whole_injection() {
        let mut f = fault("All", None);
        f.spec.duration = Some("5m".into());
        f.spec.terms.ports = vec![9092, 9093];
        let injection = injection_for(
            &f,
            &target("broker-0"),
            &time("2025-01-02T03:04:05.7Z"),
            None,
        )
        .unwrap();
        let json = serde_json::to_value(&injection).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "kafkashock.io/v1alpha1",
                "kind": "KafkaFaultInjection",
                "metadata": {
                    "name": "reset-orders-broker-0",
                    "namespace": "kafka",
                    "labels": {"kafkashock.io/fault": "reset-orders", "kafkashock.io/node": "node-broker-0"},
                    "annotations": {"kafkashock.io/start-time": "2025-01-02T03:04:05Z"},
                    "finalizers": ["kafkashock.io/rules"],
                    "ownerReferences": [{
                        "apiVersion": "kafkashock.io/v1alpha1",
                        "kind": "KafkaFault",
                        "name": "reset-orders",
                        "uid": "fault-uid-1",
                        "controller": true,
                        "blockOwnerDeletion": true,
                    }],
                },
                "spec": {
                    "faultName": "reset-orders",
                    "podName": "broker-0",
                    "podUID": "uid-broker-0",
                    "podIP": "10.0.0.8",
                    "podIPs": ["10.0.0.8", "fd00::1"],
                    "nodeName": "node-broker-0",
                    "ports": [9092, 9093],
                    "match": serde_json::to_value(&f.spec.terms.match_).unwrap(),
                    "action": serde_json::to_value(&f.spec.terms.action).unwrap(),
                    "enforcement": "Auto",
                    "expireTime": "2025-01-02T03:09:05Z",
                    "paused": false,
                },
            })
        );
        f.spec.duration = None;
        let forever =
            injection_for(&f, &target("broker-0"), &time("2025-01-02T03:04:05Z"), None).unwrap();
        assert_eq!(forever.spec.expire_time, None);
    }

    #[test]
    fn same_inputs_give_byte_identical_objects() {
        let f = fault("All", None);
        let bytes = || {
            serde_json::to_vec(
                &injection_for(&f, &target("broker-0"), &time("2025-01-02T03:04:05Z"), None)
                    .unwrap(),
            )
            .unwrap()
        };
        let first = bytes();
        for _ in 0..5 {
            assert_eq!(bytes(), first);
        }
    }

    #[test]
    fn refuses_faults_not_from_the_api_server() {
        let t = target("broker-0");
        let now = time("2025-01-02T03:04:05Z");
        for (field, strip) in [
            (
                "name",
                (|f: &mut KafkaFault| f.metadata.name = None) as fn(&mut KafkaFault),
            ),
            ("namespace", |f| f.metadata.namespace = None),
            ("uid", |f| f.metadata.uid = None),
        ] {
            let mut f = fault("All", None);
            strip(&mut f);
            assert_eq!(
                injection_for(&f, &t, &now, None),
                Err(InjectionError::MissingMetadata(field))
            );
        }
    }

    #[test]
    fn plans_creates_for_new_targets_with_one_shared_start() {
        let mut f = fault("All", None);
        f.spec.duration = Some("10m".into());
        let targets = [target("broker-0"), target("broker-1")];
        let now = time("2025-01-02T03:04:05Z");
        let plan = injection_changes(&f, &targets, &[], &now, None).unwrap();
        assert!(plan.update.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.create.len(), 2);
        for created in &plan.create {
            assert_eq!(
                created.spec.expire_time.as_deref(),
                Some("2025-01-02T03:14:05Z")
            );
        }

        // A pod joining later gets the fault's start, not its own.
        let existing = [stored(plan.create[0].clone())];
        let later = time("2025-01-02T03:07:00Z");
        let plan = injection_changes(&f, &targets, &existing, &later, None).unwrap();
        assert!(plan.update.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].spec.pod_name, "broker-1");
        assert_eq!(
            plan.create[0].spec.expire_time.as_deref(),
            Some("2025-01-02T03:14:05Z")
        );
    }

    #[test]
    fn re_reconcile_changes_nothing_and_expire_time_stays() {
        let mut f = fault("All", None);
        f.spec.duration = Some("10m".into());
        let targets = [target("broker-0"), target("broker-1")];
        let first =
            injection_changes(&f, &targets, &[], &time("2025-01-02T03:04:05Z"), None).unwrap();
        let existing: Vec<_> = first.create.into_iter().map(stored).collect();
        for now in ["2025-01-02T03:04:06Z", "2025-01-02T03:10:00Z"] {
            let plan = injection_changes(&f, &targets, &existing, &time(now), None).unwrap();
            assert!(plan.is_empty(), "{now}: {plan:?}");
        }
        // Even with no status startTime (lost write) and the targets in another order.
        f.status = None;
        let reversed = [targets[1].clone(), targets[0].clone()];
        assert!(
            injection_changes(
                &f,
                &reversed,
                &existing,
                &time("2025-01-02T03:05:00Z"),
                None
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn restarted_pod_updates_its_injection_keeping_its_start() {
        let mut f = fault("All", None);
        f.spec.duration = Some("10m".into());
        let before = target("broker-0");
        let created = injection_changes(
            &f,
            std::slice::from_ref(&before),
            &[],
            &time("2025-01-02T03:04:05Z"),
            None,
        )
        .unwrap();
        let existing = [stored(created.create[0].clone())];
        let restarted = Target {
            pod_uid: "uid-broker-0-new".into(),
            pod_ip: "10.0.0.99".into(),
            pod_ips: vec!["10.0.0.99".into()],
            ..before
        };
        let plan = injection_changes(
            &f,
            &[restarted],
            &existing,
            &time("2025-01-02T03:06:00Z"),
            None,
        )
        .unwrap();
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        let [updated] = &plan.update[..] else {
            panic!("{plan:?}")
        };
        assert_eq!(updated.metadata.name, existing[0].metadata.name);
        assert_eq!(updated.spec.pod_uid, "uid-broker-0-new");
        assert_eq!(updated.spec.pod_ip, "10.0.0.99");
        assert_eq!(
            updated.spec.expire_time.as_deref(),
            Some("2025-01-02T03:14:05Z")
        );
    }

    #[test]
    fn pausing_and_editing_update_every_injection() {
        let mut f = fault("All", None);
        let targets = [target("broker-0"), target("broker-1")];
        let now = time("2025-01-02T03:04:05Z");
        let existing: Vec<_> = injection_changes(&f, &targets, &[], &now, None)
            .unwrap()
            .create
            .into_iter()
            .map(stored)
            .collect();
        f.spec.paused = true;
        let plan = injection_changes(&f, &targets, &existing, &now, None).unwrap();
        assert_eq!(plan.update.len(), 2);
        assert!(plan.update.iter().all(|i| i.spec.paused));

        let paused: Vec<_> = plan.update.into_iter().map(stored).collect();
        assert!(
            injection_changes(&f, &targets, &paused, &now, None)
                .unwrap()
                .is_empty()
        );
        f.spec.paused = false;
        let resumed = injection_changes(&f, &targets, &paused, &now, None).unwrap();
        assert_eq!(resumed.update.len(), 2);
        assert!(resumed.update.iter().all(|i| !i.spec.paused));

        // A duration added later is counted from the original start.
        f.spec.duration = Some("1h".into());
        let plan = injection_changes(&f, &targets, &existing, &time("2025-01-02T03:30:00Z"), None)
            .unwrap();
        assert_eq!(plan.update.len(), 2);
        assert!(
            plan.update
                .iter()
                .all(|i| i.spec.expire_time.as_deref() == Some("2025-01-02T04:04:05Z"))
        );
    }

    #[test]
    fn repairs_what_was_stripped_from_a_stored_injection() {
        let f = fault("All", None);
        let targets = [target("broker-0")];
        let now = time("2025-01-02T03:04:05Z");
        let good = stored(injection_for(&f, &targets[0], &now, None).unwrap());
        let strip: [fn(&mut KafkaFaultInjection); 4] = [
            |i| i.metadata.finalizers = None,
            |i| i.metadata.owner_references = Some(vec![]),
            |i| i.metadata.labels = None,
            |i| {
                i.metadata.annotations.as_mut().unwrap().clear();
            },
        ];
        for (n, strip) in strip.into_iter().enumerate() {
            let mut broken = good.clone();
            strip(&mut broken);
            assert_eq!(
                injection_changes(&f, &targets, &[broken], &now, None)
                    .unwrap()
                    .update
                    .len(),
                1,
                "{n}"
            );
        }
    }

    #[test]
    fn deletes_what_is_no_longer_targeted() {
        let f = fault("All", None);
        let now = time("2025-01-02T03:04:05Z");
        let all = [target("broker-0"), target("broker-1"), target("broker-2")];
        let existing: Vec<_> = injection_changes(&f, &all, &[], &now, None)
            .unwrap()
            .create
            .into_iter()
            .map(stored)
            .collect();

        let plan = injection_changes(&f, &all[..2], &existing, &now, None).unwrap();
        assert_eq!(plan.delete, ["reset-orders-broker-2"]);
        assert!(plan.create.is_empty() && plan.update.is_empty());

        let mut dry = f.clone();
        dry.spec.dry_run = true;
        let plan = injection_changes(&dry, &all, &existing, &now, None).unwrap();
        assert_eq!(plan.delete.len(), 3);
        assert!(plan.create.is_empty() && plan.update.is_empty());
        assert!(
            injection_changes(&dry, &all, &[], &now, None)
                .unwrap()
                .is_empty(),
            "dry run creates nothing"
        );

        let mut deleted = f.clone();
        deleted.metadata.deletion_timestamp = Some(now.clone());
        assert_eq!(
            injection_changes(&deleted, &all, &existing, &now, None)
                .unwrap()
                .delete
                .len(),
            3
        );

        // Already terminating: neither deleted again nor replaced until gone.
        let mut terminating = existing.clone();
        terminating[2].metadata.deletion_timestamp = Some(now.clone());
        let plan = injection_changes(&f, &all, &terminating, &now, None).unwrap();
        assert!(plan.is_empty(), "{plan:?}");
        assert!(
            injection_changes(&f, &all[..2], &terminating, &now, None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn expired_fault_creates_nothing_and_deletes_its_injections() {
        let mut f = fault("All", None);
        f.spec.duration = Some("1m".into());
        let all = [target("broker-0"), target("broker-1")];
        let existing: Vec<_> =
            injection_changes(&f, &all[..1], &[], &time("2025-01-02T03:04:05Z"), None)
                .unwrap()
                .create
                .into_iter()
                .map(stored)
                .collect();
        let expired = time("2025-01-02T03:05:05Z");
        let plan = injection_changes(&f, &all, &existing, &expired, None).unwrap();
        assert!(plan.create.is_empty() && plan.update.is_empty(), "{plan:?}");
        assert_eq!(plan.delete, ["reset-orders-broker-0"]);
        let plan =
            injection_changes(&f, &all, &existing, &time("2025-01-02T03:05:04Z"), None).unwrap();
        assert_eq!(plan.create.len(), 1, "one second before expiry");
        assert!(plan.delete.is_empty());

        // Once deleted, the start kept in the status still says it is over: nothing comes back.
        f.status = Some(kafka_shock_crds::KafkaFaultStatus {
            start_time: Some("2025-01-02T03:04:05Z".into()),
            ..Default::default()
        });
        assert!(
            injection_changes(&f, &all, &[], &expired, None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn finalizer_is_released_only_when_no_agent_can_act() {
        let f = fault("All", None);
        let now = time("2025-01-02T03:04:05Z");
        let mut injection = stored(injection_for(&f, &target("broker-0"), &now, None).unwrap());
        let same = pod("broker-0");
        let mut recreated = pod("broker-0");
        recreated.metadata.uid = Some("uid-broker-0-new".into());

        assert!(
            !finalizer_releasable(&injection, None, false),
            "not being deleted"
        );
        injection.metadata.deletion_timestamp = Some(now);
        assert!(
            !finalizer_releasable(&injection, Some(&same), true),
            "the agent will act"
        );
        assert!(finalizer_releasable(&injection, None, true), "pod gone");
        assert!(
            finalizer_releasable(&injection, Some(&recreated), true),
            "pod recreated"
        );
        assert!(
            finalizer_releasable(&injection, Some(&same), false),
            "node gone"
        );
        injection.metadata.finalizers = Some(vec!["other/finalizer".into()]);
        assert!(!finalizer_releasable(&injection, None, false), "not ours");
    }
}
