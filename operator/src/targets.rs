//! Which pods a fault targets.
//!
//! Only pods that can carry a fault right now are eligible: in the fault's namespace, matching
//! its selector, Running and Ready, not being deleted, scheduled (a node, whose agent enforces)
//! and with an IP (to find its network namespace). The mode then picks some of them.
//!
//! The pick is rendezvous hashing: every pod gets a score from (fault UID, pod name), and the
//! highest scores win. So the same fault picks the same pods on every reconcile and after an
//! operator restart, different faults spread over different pods, and a pod joining or leaving
//! changes at most one target, instead of reshuffling (and re-injecting) them all.

use std::{cmp::Reverse, collections::BTreeMap};

use k8s_openapi::api::core::v1::Pod;
use kafka_shock_crds::{
    KafkaFault, SelectorError, TargetMode, parse_selector, selector::SelectorExt, stable_hash,
};
use kube::ResourceExt;

/// One pod a fault is to be injected into, with what its injection needs to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The pod's name.
    pub pod_name: String,
    /// The pod's UID: changes when the pod is recreated, which must re-target the injection.
    pub pod_uid: String,
    /// The pod's primary IP.
    pub pod_ip: String,
    /// All of the pod's IPs, as the pod status lists them (dual stack: IPv4 and IPv6).
    pub pod_ips: Vec<String>,
    /// The node the pod runs on.
    pub node_name: String,
}

/// Why a fault's targets cannot be picked. Each is also reported by `KafkaFaultSpec::validate`,
/// but selection must not guess when handed such a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The selector itself is invalid.
    #[error("spec.selector.{0}")]
    Selector(#[from] SelectorError),
    /// An empty selector matches every pod in the namespace, which a fault must never do.
    #[error(
        "spec.selector: set matchLabels or matchExpressions; an empty selector would target every pod in the namespace"
    )]
    EmptySelector,
    /// Fixed or Percent without the count they need.
    #[error("spec.value: required when mode is {0:?}")]
    MissingValue(TargetMode),
    /// Fixed or Percent with value 0 would target nothing.
    #[error("spec.value: must be at least 1 when mode is {0:?}")]
    ZeroValue(TargetMode),
    /// The fault has no UID, which seeds the stable choice; faults read from the API server
    /// always have one.
    #[error("metadata.uid: the fault has no UID; targets are picked only for stored faults")]
    MissingUid,
}

/// The pods `fault` targets among `pods`, sorted by name.
///
/// A `value` given with mode All or One is ignored (validation reports it); Fixed beyond the
/// eligible pods takes them all; Percent rounds up, so it takes at least one pod when any is
/// eligible.
pub fn select_targets<'a>(
    fault: &KafkaFault,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Result<Vec<Target>, SelectError> {
    let spec = &fault.spec;
    let selector = parse_selector(&spec.selector)?;
    if selector.selects_all() {
        return Err(SelectError::EmptySelector);
    }
    let count = TargetCount::new(spec.mode, spec.value)?;
    let seed = fault.uid().ok_or(SelectError::MissingUid)?;
    let namespace = fault.namespace();

    let mut eligible: Vec<Target> = pods
        .into_iter()
        .filter(|pod| {
            let labels = pod.metadata.labels.as_ref();
            pod.namespace() == namespace && selector.matches(labels.unwrap_or(&BTreeMap::new()))
        })
        .filter_map(eligible_target)
        .collect();
    let wanted = count.of(eligible.len());
    if wanted < eligible.len() {
        eligible.sort_by_cached_key(|t| {
            (
                Reverse(stable_hash(&[&seed, &t.pod_name])),
                t.pod_name.clone(),
            )
        });
        eligible.truncate(wanted);
    }
    eligible.sort_by(|a, b| a.pod_name.cmp(&b.pod_name));
    Ok(eligible)
}

/// How many of the eligible pods a mode takes.
#[derive(Debug, Clone, Copy)]
enum TargetCount {
    All,
    Fixed(usize),
    Percent(u32),
}

impl TargetCount {
    fn new(mode: TargetMode, value: Option<u32>) -> Result<Self, SelectError> {
        let needed = || match value {
            None => Err(SelectError::MissingValue(mode)),
            Some(0) => Err(SelectError::ZeroValue(mode)),
            Some(value) => Ok(value),
        };
        Ok(match mode {
            TargetMode::All => Self::All,
            TargetMode::One => Self::Fixed(1),
            TargetMode::Fixed => Self::Fixed(usize::try_from(needed()?).unwrap_or(usize::MAX)),
            TargetMode::Percent => Self::Percent(needed()?),
        })
    }

    fn of(self, eligible: usize) -> usize {
        match self {
            Self::All => eligible,
            Self::Fixed(count) => count.min(eligible),
            Self::Percent(percent) => {
                let share = (eligible as u64 * u64::from(percent)).div_ceil(100);
                usize::try_from(share).map_or(eligible, |share| share.min(eligible))
            }
        }
    }
}

/// The pod as a [`Target`], when it can carry a fault now.
fn eligible_target(pod: &Pod) -> Option<Target> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if status.phase.as_deref() != Some("Running") || !ready {
        return None;
    }
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    Some(Target {
        pod_name: non_empty(&pod.metadata.name)?,
        pod_uid: non_empty(&pod.metadata.uid)?,
        pod_ip: non_empty(&status.pod_ip)?,
        pod_ips: status
            .pod_ips
            .iter()
            .flatten()
            .map(|ip| ip.ip.clone())
            .collect(),
        node_name: non_empty(&pod.spec.as_ref()?.node_name)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;

    /// A fault in namespace `kafka` selecting `app=kafka`, as read from the API server.
    pub(crate) fn fault(mode: &str, value: Option<u32>) -> KafkaFault {
        serde_json::from_value(json!({
            "apiVersion": "kafkashock.io/v1alpha1",
            "kind": "KafkaFault",
            "metadata": {"name": "reset-orders", "namespace": "kafka", "uid": "fault-uid-1", "generation": 2},
            "spec": {
                "selector": {"matchLabels": {"app": "kafka"}},
                "mode": mode,
                "value": value,
                "action": {"type": "Reject"},
            },
        }))
        .unwrap()
    }

    /// A Running, Ready broker pod `name` in `kafka` on `node-<name>`.
    pub(crate) fn pod(name: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kafka", "uid": format!("uid-{name}"), "labels": {"app": "kafka"}},
            "spec": {"nodeName": format!("node-{name}"), "containers": []},
            "status": {
                "phase": "Running",
                "podIP": format!("10.0.0.{}", name.len()),
                "podIPs": [{"ip": format!("10.0.0.{}", name.len())}, {"ip": "fd00::1"}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }))
        .unwrap()
    }

    fn pods(count: usize) -> Vec<Pod> {
        (0..count).map(|i| pod(&format!("broker-{i}"))).collect()
    }

    fn names(targets: &[Target]) -> BTreeSet<String> {
        targets.iter().map(|t| t.pod_name.clone()).collect()
    }

    #[test]
    fn target_carries_what_the_injection_needs() {
        let targets = select_targets(&fault("All", None), &[pod("broker-0")]).unwrap();
        assert_eq!(
            targets,
            [Target {
                pod_name: "broker-0".into(),
                pod_uid: "uid-broker-0".into(),
                pod_ip: "10.0.0.8".into(),
                pod_ips: vec!["10.0.0.8".into(), "fd00::1".into()],
                node_name: "node-broker-0".into(),
            }]
        );
    }

    #[test]
    fn only_running_ready_live_scheduled_matching_pods_in_the_namespace() {
        let mut skipped = Vec::new();
        let mut variant = |name: &str, change: &dyn Fn(&mut Pod)| {
            let mut p = pod(name);
            change(&mut p);
            skipped.push(p);
        };
        variant("other-namespace", &|p| {
            p.metadata.namespace = Some("default".into())
        });
        variant("other-labels", &|p| p.metadata.labels = None);
        variant("pending", &|p| {
            p.status.as_mut().unwrap().phase = Some("Pending".into())
        });
        variant("succeeded", &|p| {
            p.status.as_mut().unwrap().phase = Some("Succeeded".into())
        });
        variant("not-ready", &|p| {
            p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into()
        });
        variant("no-conditions", &|p| {
            p.status.as_mut().unwrap().conditions = None
        });
        variant("deleting", &|p| {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ))
        });
        variant("unscheduled", &|p| {
            p.spec.as_mut().unwrap().node_name = None
        });
        variant("no-ip", &|p| p.status.as_mut().unwrap().pod_ip = None);
        variant("empty-ip", &|p| {
            p.status.as_mut().unwrap().pod_ip = Some(String::new())
        });
        variant("no-status", &|p| p.status = None);
        variant("no-uid", &|p| p.metadata.uid = None);
        let mut all = skipped;
        all.push(pod("good"));
        let targets = select_targets(&fault("All", None), &all).unwrap();
        assert_eq!(names(&targets), BTreeSet::from(["good".to_string()]));
    }

    #[test]
    fn modes_take_the_right_number() {
        let ten = pods(10);
        let count = |mode: &str, value: Option<u32>, pods: &[Pod]| {
            select_targets(&fault(mode, value), pods).unwrap().len()
        };
        assert_eq!(count("All", None, &ten), 10);
        assert_eq!(count("One", None, &ten), 1);
        assert_eq!(count("Fixed", Some(3), &ten), 3);
        assert_eq!(count("Fixed", Some(30), &ten), 10);
        assert_eq!(count("Percent", Some(100), &ten), 10);
        assert_eq!(count("Percent", Some(150), &ten), 10);
        assert_eq!(count("Percent", Some(25), &ten), 3, "2.5 rounds up");
        assert_eq!(count("Percent", Some(10), &ten), 1);
        assert_eq!(count("Percent", Some(1), &ten), 1, "at least one");
        assert_eq!(count("Percent", Some(34), &pods(3)), 2, "1.02 rounds up");
        assert_eq!(count("Percent", Some(33), &pods(3)), 1);
        assert_eq!(count("One", None, &[]), 0);
        assert_eq!(count("Percent", Some(50), &[]), 0);
    }

    #[test]
    fn output_is_sorted_by_pod_name() {
        let mut shuffled = pods(10);
        shuffled.reverse();
        let targets = select_targets(&fault("Fixed", Some(4)), &shuffled).unwrap();
        let in_order: Vec<_> = targets.iter().map(|t| t.pod_name.clone()).collect();
        let mut sorted = in_order.clone();
        sorted.sort();
        assert_eq!(in_order, sorted);
        assert_eq!(
            targets,
            select_targets(&fault("Fixed", Some(4)), &pods(10)).unwrap()
        );
    }

    #[test]
    fn choice_is_stable_under_pod_churn() {
        for (mode, value) in [("One", None), ("Fixed", Some(3)), ("Percent", Some(30))] {
            let fault = fault(mode, value);
            let base = names(&select_targets(&fault, &pods(10)).unwrap());
            // The same input gives the same pick, whatever the order of the pods.
            let mut reversed = pods(10);
            reversed.reverse();
            assert_eq!(
                names(&select_targets(&fault, &reversed).unwrap()),
                base,
                "{mode}"
            );

            // One more pod moves at most one target.
            let mut more = pods(10);
            more.push(pod("broker-new"));
            let grown = names(&select_targets(&fault, &more).unwrap());
            assert!(
                base.difference(&grown).count() <= 1,
                "{mode}: {base:?} -> {grown:?}"
            );

            // Losing a pod that was not picked changes nothing; losing a picked one replaces
            // just that one (30% of 9 pods is still 3).
            for gone in 0..10 {
                let gone_name = format!("broker-{gone}");
                let fewer: Vec<Pod> = pods(10)
                    .into_iter()
                    .filter(|p| p.metadata.name.as_deref() != Some(&gone_name))
                    .collect();
                let shrunk = names(&select_targets(&fault, &fewer).unwrap());
                let kept: BTreeSet<_> = base.iter().filter(|n| **n != gone_name).cloned().collect();
                assert!(kept.is_subset(&shrunk), "{mode} -{gone_name}");
                assert!(shrunk.difference(&base).count() <= 1, "{mode} -{gone_name}");
                if !base.contains(&gone_name) {
                    assert_eq!(shrunk, base, "{mode} -{gone_name}");
                }
            }
        }
    }

    #[test]
    fn different_faults_spread_over_different_pods() {
        let picks: BTreeSet<String> = (0..20)
            .map(|i| {
                let mut f = fault("One", None);
                f.metadata.uid = Some(format!("fault-{i}"));
                select_targets(&f, &pods(10)).unwrap()[0].pod_name.clone()
            })
            .collect();
        assert!(picks.len() > 3, "20 faults all picked among {picks:?}");
    }

    #[test]
    fn refuses_specs_it_cannot_pick_from() {
        let pods = pods(3);
        assert_eq!(
            select_targets(&fault("Fixed", None), &pods),
            Err(SelectError::MissingValue(TargetMode::Fixed))
        );
        assert_eq!(
            select_targets(&fault("Percent", Some(0)), &pods),
            Err(SelectError::ZeroValue(TargetMode::Percent))
        );
        let mut empty = fault("All", None);
        empty.spec.selector = Default::default();
        assert_eq!(
            select_targets(&empty, &pods),
            Err(SelectError::EmptySelector)
        );
        let mut bad = fault("All", None);
        bad.spec.selector.match_expressions = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                key: "k".into(),
                operator: "Near".into(),
                values: None,
            },
        ]);
        let err = select_targets(&bad, &pods).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("spec.selector.matchExpressions[0]: unknown operator"),
            "{err}"
        );
        let mut unstored = fault("All", None);
        unstored.metadata.uid = None;
        assert_eq!(
            select_targets(&unstored, &pods),
            Err(SelectError::MissingUid)
        );
    }
}
