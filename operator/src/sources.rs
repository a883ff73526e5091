//! The client pods a fault's `match.sourceSelector` names, as the addresses its injections
//! carry (`sourceIPs`) and the agents enforce like sourceCIDRs.
//!
//! Every pod in the fault's namespace that matches the selector and has an address counts,
//! Ready or not (a broker catching up still sends its Fetches), until it has terminated. The
//! selector is matched here again rather than trusting the API server's filtering alone, as
//! targets are. An empty result is kept apart from "no selector": the fault then has no
//! injection, never one that hits every source.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kafka_shock_crds::{KafkaFault, SelectorError, parse_selector, selector::SelectorExt};
use kube::ResourceExt;

/// Why the sources of a fault cannot be resolved. `KafkaFaultSpec::validate` reports both, but
/// resolution must not guess when handed such a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourcesError {
    /// The selector itself is invalid.
    #[error("spec.match.sourceSelector.{0}")]
    Selector(#[from] SelectorError),
    /// An empty selector matches every pod, which would hide the intent "every source".
    #[error(
        "spec.match.sourceSelector: set matchLabels or matchExpressions; leave sourceSelector out to hit every source"
    )]
    EmptySelector,
}

/// The addresses of the pods among `pods` that `fault`'s `match.sourceSelector` selects, sorted
/// and without repeats; `None` when the fault has no sourceSelector.
pub fn source_addresses<'a>(
    fault: &KafkaFault,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Result<Option<Vec<String>>, SourcesError> {
    let Some(selector) = &fault.spec.terms.match_.source_selector else {
        return Ok(None);
    };
    let selector = parse_selector(selector)?;
    if selector.selects_all() {
        return Err(SourcesError::EmptySelector);
    }
    let namespace = fault.namespace();
    let addresses: BTreeSet<String> = pods
        .into_iter()
        .filter(|pod| {
            let labels = pod.metadata.labels.as_ref();
            pod.namespace() == namespace && selector.matches(labels.unwrap_or(&BTreeMap::new()))
        })
        .filter_map(|pod| pod.status.as_ref())
        .filter(|status| !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")))
        .flat_map(|status| {
            let listed = status.pod_ips.iter().flatten().map(|ip| ip.ip.clone());
            status.pod_ip.clone().into_iter().chain(listed)
        })
        .filter(|ip| !ip.is_empty())
        .collect();
    Ok(Some(addresses.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;
    use crate::targets::tests::{fault, pod};

    /// The test fault, hitting only sources labelled `role=follower`.
    fn isolating() -> KafkaFault {
        let mut f = fault("All", None);
        f.spec.terms.match_.source_selector = Some(LabelSelector {
            match_labels: Some([("role".into(), "follower".into())].into()),
            ..LabelSelector::default()
        });
        f
    }

    fn follower(name: &str, ip: &str) -> Pod {
        let mut p = pod(name);
        p.metadata
            .labels
            .get_or_insert_default()
            .insert("role".into(), "follower".into());
        let status = p.status.as_mut().unwrap();
        status.pod_ip = Some(ip.into());
        status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP { ip: ip.into() }]);
        p
    }

    #[test]
    fn selected_pods_give_their_addresses_sorted_once_each() {
        let mut not_ready = follower("b-2", "10.0.0.12");
        not_ready.status.as_mut().unwrap().conditions = None;
        let mut dual = follower("b-1", "10.0.0.11");
        dual.status.as_mut().unwrap().pod_ips = Some(vec![
            k8s_openapi::api::core::v1::PodIP {
                ip: "10.0.0.11".into(),
            },
            k8s_openapi::api::core::v1::PodIP {
                ip: "fd00::11".into(),
            },
        ]);
        let mut gone = follower("b-3", "10.0.0.13");
        gone.status.as_mut().unwrap().phase = Some("Failed".into());
        let mut elsewhere = follower("b-4", "10.0.0.14");
        elsewhere.metadata.namespace = Some("default".into());
        let leader = pod("b-0");
        let pods = [not_ready, dual, gone, elsewhere, leader];
        assert_eq!(
            source_addresses(&isolating(), &pods).unwrap(),
            Some(vec![
                "10.0.0.11".into(),
                "10.0.0.12".into(),
                "fd00::11".into()
            ])
        );
    }

    #[test]
    fn no_selector_is_none_and_no_pod_is_an_empty_selection() {
        let pods = [pod("b-0")];
        assert_eq!(source_addresses(&fault("All", None), &pods).unwrap(), None);
        assert_eq!(
            source_addresses(&isolating(), &pods).unwrap(),
            Some(vec![]),
            "selects nothing: not the same as no selector"
        );
        let mut empty = isolating();
        empty.spec.terms.match_.source_selector = Some(LabelSelector::default());
        assert_eq!(
            source_addresses(&empty, &pods),
            Err(SourcesError::EmptySelector)
        );
    }
}
