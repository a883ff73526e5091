//! What happens to a matched request ([`Action`]) and how the agent makes it happen
//! ([`Enforcement`]).

use std::time::Duration;

use kube::{KubeSchema, core::Rule};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;

/// What to do to each matched request.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'Delay' || has(self.delay)")
        .message("delay is required when type is Delay")
        .field_path(".delay")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type == 'Delay' || !has(self.delay)")
        .message("delay is only used when type is Delay")
        .field_path(".delay")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.type == 'Delay' || !has(self.jitter)")
        .message("jitter is only used when type is Delay")
        .field_path(".jitter")
        .reason(Reason::FieldValueForbidden)
)]
pub struct Action {
    /// Reject resets the connection (TCP RST); Drop blackholes the request's packets, so the
    /// client waits for its request.timeout.ms; Delay holds the request before the broker sees
    /// it (Inline enforcement only). TCP applies these to the connection, not to one request:
    /// a reset kills every request in flight on it, and a dropped segment stalls it until
    /// retransmission.
    #[serde(rename = "type")]
    pub type_: ActionType,

    /// How long Delay holds each matched request, e.g. 500ms or 2s. Required by Delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = crate::duration::DURATION_PATTERN))]
    #[x_kube(
        validation = crate::duration::positive_duration(),
        validation = crate::duration::bounded_duration()
    )]
    pub delay: Option<String>,

    /// A random extra wait of up to this much, added to each delay, e.g. 100ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = crate::duration::DURATION_PATTERN))]
    #[x_kube(validation = crate::duration::bounded_duration())]
    pub jitter: Option<String>,

    /// The percentage (1-100) of matched requests the action applies to; the rest pass. Zero
    /// would hit nothing: to rehearse a fault without effect, use dryRun.
    #[serde(default = "default_probability")]
    #[schemars(range(min = 1, max = 100))]
    pub probability: u8,
}

/// Serde default for [`Action::probability`]: every matched request.
fn default_probability() -> u8 {
    100
}

impl Action {
    /// The action with this type and defaults for everything else.
    pub fn new(type_: ActionType) -> Self {
        Self {
            type_,
            delay: None,
            jitter: None,
            probability: default_probability(),
        }
    }

    /// How long to hold each matched request. `None` when unset or unreadable;
    /// `KafkaFaultSpec::validate` reports the latter.
    pub fn delay(&self) -> Option<Duration> {
        self.delay.as_deref().and_then(|d| parse_duration(d).ok())
    }

    /// The largest random extra wait to add to [`Action::delay`]. `None` when unset or
    /// unreadable.
    pub fn jitter(&self) -> Option<Duration> {
        self.jitter.as_deref().and_then(|d| parse_duration(d).ok())
    }
}

/// The kind of fault: Reject (TCP reset), Drop (blackhole) or Delay (hold, then pass).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionType {
    /// Reset the connection (TCP RST): the client sees a network error at once.
    Reject,
    /// Drop the packets silently: the client waits until its request times out.
    Drop,
    /// Hold the request for `delay` (plus up to `jitter`), then let it through.
    Delay,
}

impl ActionType {
    /// What happened to a request this action hit, as the agent's and the CLI's lines say it:
    /// `reset`, `dropped` or `delayed`.
    pub fn word(self) -> &'static str {
        match self {
            ActionType::Reject => "reset",
            ActionType::Drop => "dropped",
            ActionType::Delay => "delayed",
        }
    }
}

/// How the agent enforces a fault: Auto picks the cheapest mode that can express it;
/// Signature compiles the match into kernel rules on request bytes (no userspace in the data
/// path, but it misses requests split across segments and later requests in a segment);
/// Connection cuts the flow on which the agent saw a matching request; Inline decides every
/// packet in the agent through NFQUEUE (exact, allows Delay and client-id regexes, and fails
/// open if the agent dies).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Enforcement {
    /// The cheapest mode that can express the fault.
    #[default]
    Auto,
    /// iptables rules matching the request bytes on the wire.
    Signature,
    /// Per-flow rules installed when a matching request is seen.
    Connection,
    /// Per-packet decisions in the agent (NFQUEUE).
    Inline,
}

impl Enforcement {
    /// Whether this mode can hold a request (action Delay): only Inline can, and Auto, which
    /// then resolves to Inline.
    pub fn can_delay(self) -> bool {
        matches!(self, Enforcement::Auto | Enforcement::Inline)
    }

    /// Whether this mode can test a client.id against a regex: kernel byte signatures cannot.
    pub fn can_match_regex(self) -> bool {
        self != Enforcement::Signature
    }
}

/// The spec-level CEL rule behind [`Enforcement::can_delay`], shared by both kinds' specs.
pub(crate) fn delay_needs_inline() -> Rule {
    Rule::new("self.action.type != 'Delay' || self.enforcement in ['Auto', 'Inline']")
        .message(
            "action type Delay needs enforcement Inline (or Auto): only Inline can hold a request",
        )
        .field_path(".enforcement")
}

/// The spec-level CEL rule behind [`Enforcement::can_match_regex`], shared by both kinds' specs.
pub(crate) fn regex_needs_stream() -> Rule {
    Rule::new(
        "self.enforcement != 'Signature' || !has(self.match.clientId) || !has(self.match.clientId.regex)",
    )
    .message("clientId.regex cannot be enforced by Signature: use Auto, Connection or Inline")
    .field_path(".enforcement")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_delay_and_jitter() {
        let mut action = Action::new(ActionType::Delay);
        assert_eq!(action.delay(), None);
        action.delay = Some("1s500ms".into());
        action.jitter = Some("100ms".into());
        assert_eq!(action.delay(), Some(Duration::from_millis(1500)));
        assert_eq!(action.jitter(), Some(Duration::from_millis(100)));
        action.delay = Some("soon".into());
        assert_eq!(action.delay(), None);
    }

    #[test]
    fn only_inline_delays_and_signature_cannot_regex() {
        let delays: Vec<_> = [
            Enforcement::Auto,
            Enforcement::Signature,
            Enforcement::Connection,
            Enforcement::Inline,
        ]
        .into_iter()
        .filter(|e| e.can_delay())
        .collect();
        assert_eq!(delays, [Enforcement::Auto, Enforcement::Inline]);
        assert!(!Enforcement::Signature.can_match_regex());
        assert!(Enforcement::Connection.can_match_regex());
    }
}
