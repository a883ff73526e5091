//! [`FaultTerms`]: what a fault does wherever it is enforced — the broker ports, which requests,
//! what happens to them, and how. `KafkaFault` holds them with where (selector, mode) and when
//! (duration, paused, dryRun); the operator copies them unchanged into each
//! `KafkaFaultInjection`; the agent's fault plan is made of them alone.
//!
//! They are flattened into both kinds' specs (`#[serde(flatten)]`), so the manifests keep the
//! fields at spec level and the API is unchanged. The spec-level CEL rules that tie `action`
//! and `match` to `enforcement` stay on each spec ([`crate::action`]): a flattened struct's own
//! rules would be dropped where the spec has rules of its own. [`FaultTerms::validate`] checks
//! the four fields for both kinds.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::{
    action::{Action, Enforcement, Handover},
    matching::{FaultMatch, default_ports},
};

/// The broker ports, the requests hit, the action and the enforcement of a fault.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultTerms {
    /// The broker listener ports whose traffic the fault inspects.
    #[serde(default = "default_ports")]
    #[schemars(length(min = 1, max = 16), inner(range(min = 1)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub ports: Vec<u16>,

    /// Which requests the fault hits; every condition set must hold, and an empty match hits
    /// every request.
    #[serde(default, rename = "match")]
    pub match_: FaultMatch,

    /// What happens to each matched request.
    pub action: Action,

    /// How the agent enforces the fault; Auto picks the cheapest mode that can express it.
    #[serde(default)]
    pub enforcement: Enforcement,

    /// Proxy enforcement only: what happens to the connections clients already have when the
    /// fault starts. The redirect reaches only new connections, so by default (Reset) each
    /// existing connection to the broker port is reset once, at its next request, and its
    /// client reconnects through the proxy: the fault hits everyone it matches at once, as a
    /// drill expects. NewConnectionsOnly leaves them alone (a gentler start; long-lived
    /// clients may never see the fault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
}

impl FaultTerms {
    /// What happens to existing connections when a Proxy fault starts (default Reset).
    pub fn handover(&self) -> Handover {
        self.handover.unwrap_or_default()
    }

    /// Whether the fault runs in Proxy enforcement (chosen, or Auto's pick for its action).
    pub fn is_proxy(&self) -> bool {
        self.enforcement.is_proxy_for(self.action.type_)
    }
}
