//! What happens to a matched request ([`Action`]) and how the agent makes it happen
//! ([`Enforcement`]), with the spec-level CEL rules that tie the two together (shared by both
//! kinds' specs, which flatten [`crate::FaultTerms`]).

use std::time::Duration;

use kube::{
    KubeSchema,
    core::{Message, Reason, Rule},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;
use crate::kafka_errors::PROXY_ERROR_APIS;

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
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.type != 'Error' || has(self.errorCode)")
        .message("errorCode is required when type is Error")
        .field_path(".errorCode")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type == 'Error' || !has(self.errorCode)")
        .message("errorCode is only used when type is Error")
        .field_path(".errorCode")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.type != 'Throttle' || has(self.throttleTime)")
        .message("throttleTime is required when type is Throttle")
        .field_path(".throttleTime")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type == 'Throttle' || !has(self.throttleTime)")
        .message("throttleTime is only used when type is Throttle")
        .field_path(".throttleTime")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.type != 'Corrupt' || has(self.target)")
        .message("target (Produce or Fetch) is required when type is Corrupt")
        .field_path(".target")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type == 'Corrupt' || !has(self.target)")
        .message("target is only used when type is Corrupt")
        .field_path(".target")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.type == 'Corrupt' || !has(self.fixCrc)")
        .message("fixCrc is only used when type is Corrupt")
        .field_path(".fixCrc")
        .reason(Reason::FieldValueForbidden)
)]
pub struct Action {
    /// Reject resets the connection (TCP RST); Drop blackholes the request's packets, so the
    /// client waits for its request.timeout.ms; Delay holds the request before the broker sees
    /// it (Inline or Proxy enforcement). TCP applies these to the connection, not to one
    /// request: a reset kills every request in flight on it, and a dropped segment stalls it
    /// until retransmission. The Kafka-level actions need Proxy enforcement (Auto picks it):
    /// Error answers the request with a Kafka error (errorCode); Throttle sets throttle_time_ms
    /// in its response (throttleTime); Corrupt alters record values in Produce requests or Fetch
    /// responses (target, fixCrc); Duplicate sends a Produce to the broker twice.
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

    /// Error: the Kafka error the proxy answers each matched request with, by Kafka's name
    /// (NOT_LEADER_OR_FOLLOWER, REBALANCE_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, ...), carried
    /// wherever the request's API carries errors. Required by Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = crate::kafka_errors::error_name_enum)]
    pub error_code: Option<String>,

    /// Throttle: the throttle_time_ms set in each matched request's response, e.g. 2s; the
    /// request is forwarded, and clients (KIP-219) wait this long before their next request to
    /// the broker. At most 1h. Required by Throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = crate::duration::DURATION_PATTERN))]
    #[x_kube(
        validation = crate::duration::positive_duration(),
        validation = Rule::new(format!(
            "!self.matches('{}') || duration(self) <= duration('1h')",
            crate::duration::DURATION_PATTERN
        ))
        .message("must be at most 1h")
    )]
    pub throttle_time: Option<String>,

    /// Corrupt: whose record values are altered, Produce (the producer's records before the
    /// broker checks them) or Fetch (stored records on their way to the consumer). Required by
    /// Corrupt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<CorruptTarget>,

    /// Corrupt: recompute the record batch's CRC after altering it, so the corruption passes
    /// every check and is stored or delivered as valid data (a byzantine fault). Default false:
    /// the CRC is left as it was, so the broker answers CORRUPT_MESSAGE (Produce) or the
    /// consumer's CRC check fails (Fetch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_crc: Option<bool>,

    /// The percentage (1-100) of matched requests the action applies to; the rest pass. Zero
    /// would hit nothing: to rehearse a fault without effect, use dryRun.
    #[serde(default = "default_probability")]
    #[schemars(range(min = 1, max = 100))]
    pub probability: u8,
}

/// Whose record values Corrupt alters.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CorruptTarget {
    /// The values a producer sends, before the broker checks and stores them.
    Produce,
    /// The values a consumer fetches, after the broker stored them intact.
    Fetch,
}

impl CorruptTarget {
    /// The API whose records are altered.
    pub fn api(self) -> &'static str {
        match self {
            CorruptTarget::Produce => "Produce",
            CorruptTarget::Fetch => "Fetch",
        }
    }
}

/// What happens, when a Proxy fault starts, to the connections clients already have to the
/// broker port (they bypass the proxy: only new connections are redirected).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Handover {
    /// Reset each of them once, as soon as the redirect is in, so its client reconnects
    /// through the proxy and the fault reaches it at once (what a drill usually wants; clients
    /// reconnect on their own).
    #[default]
    Reset,
    /// Leave them alone: only connections opened from now on go through the proxy (clients
    /// with long-lived connections may never see the fault).
    NewConnectionsOnly,
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
            error_code: None,
            throttle_time: None,
            target: None,
            fix_crc: None,
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

    /// Throttle's time. `None` when unset or unreadable.
    pub fn throttle_time(&self) -> Option<Duration> {
        self.throttle_time
            .as_deref()
            .and_then(|d| parse_duration(d).ok())
    }

    /// The Kafka error code of `errorCode`. `None` when unset or unknown.
    pub fn error_code(&self) -> Option<i16> {
        self.error_code
            .as_deref()
            .and_then(crate::kafka_errors::error_code)
    }
}

/// The kind of fault: Reject (TCP reset), Drop (blackhole), Delay (hold, then pass), and the
/// Kafka-level ones Proxy enforcement makes: Error, Throttle, Corrupt, Duplicate.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActionType {
    /// Reset the connection (TCP RST): the client sees a network error at once.
    Reject,
    /// Drop the packets silently: the client waits until its request times out.
    Drop,
    /// Hold the request for `delay` (plus up to `jitter`), then let it through.
    Delay,
    /// Answer the request with the Kafka error `errorCode` (Proxy).
    Error,
    /// Forward the request and set `throttleTime` in its response (Proxy).
    Throttle,
    /// Alter the record values of Produce requests or Fetch responses (Proxy).
    Corrupt,
    /// Send a Produce to the broker twice, answer the client once (Proxy).
    Duplicate,
}

impl ActionType {
    /// The actions only Proxy enforcement can carry out.
    pub const PROXY_ONLY: [ActionType; 4] = [
        ActionType::Error,
        ActionType::Throttle,
        ActionType::Corrupt,
        ActionType::Duplicate,
    ];

    /// What happened to a request this action hit, as the agent's and the CLI's lines say it:
    /// `reset`, `dropped`, `delayed`, `errored`, `throttled`, `corrupted` or `duplicated`.
    pub fn word(self) -> &'static str {
        match self {
            ActionType::Reject => "reset",
            ActionType::Drop => "dropped",
            ActionType::Delay => "delayed",
            ActionType::Error => "errored",
            ActionType::Throttle => "throttled",
            ActionType::Corrupt => "corrupted",
            ActionType::Duplicate => "duplicated",
        }
    }

    /// Whether only Proxy enforcement can carry it out.
    pub fn needs_proxy(self) -> bool {
        Self::PROXY_ONLY.contains(&self)
    }

    /// Whether it acts on TCP (a reset, a blackhole), which the proxy does not do.
    pub fn is_tcp(self) -> bool {
        matches!(self, ActionType::Reject | ActionType::Drop)
    }
}

/// How the agent enforces a fault: Auto picks the cheapest mode that can express it;
/// Signature compiles the match into kernel rules on request bytes (no userspace in the data
/// path, but it misses requests split across segments and later requests in a segment);
/// Connection cuts the flow on which the agent saw a matching request; Inline decides every
/// packet in the agent through NFQUEUE (exact, allows Delay and client-id regexes, and fails
/// open if the agent dies); Proxy redirects new connections to the broker port to a
/// transparent Kafka proxy in the broker's network namespace, which forwards each request or
/// answers it with a Kafka error, throttles, delays, corrupts or duplicates it.
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
    /// A transparent Kafka proxy in the broker's network namespace (nat REDIRECT).
    Proxy,
}

impl Enforcement {
    /// Whether this mode can hold a request (action Delay): Inline and Proxy can, and Auto,
    /// which then resolves to Inline.
    pub fn can_delay(self) -> bool {
        matches!(
            self,
            Enforcement::Auto | Enforcement::Inline | Enforcement::Proxy
        )
    }

    /// Whether this mode can carry out `action`: the Kafka-level actions need Proxy (or Auto,
    /// which then picks Proxy), and Proxy does not reset or drop.
    pub fn can_act(self, action: ActionType) -> bool {
        match self {
            Enforcement::Auto => true,
            Enforcement::Proxy => !action.is_tcp(),
            _ => !action.needs_proxy(),
        }
    }

    /// The mode a fault with `action` runs in, when it is this one: Proxy for Auto with a
    /// Kafka-level action.
    pub fn is_proxy_for(self, action: ActionType) -> bool {
        self == Enforcement::Proxy || (self == Enforcement::Auto && action.needs_proxy())
    }

    /// Whether this mode can test a client.id against a regex: kernel byte signatures cannot.
    pub fn can_match_regex(self) -> bool {
        self != Enforcement::Signature
    }
}

/// The spec-level CEL rule behind [`Enforcement::can_delay`], shared by both kinds' specs.
pub(crate) fn delay_needs_inline() -> Rule {
    Rule::new("self.action.type != 'Delay' || self.enforcement in ['Auto', 'Inline', 'Proxy']")
        .message(
            "action type Delay needs enforcement Inline or Proxy (or Auto): only they can hold a request",
        )
        .field_path(".enforcement")
}

/// `self.action.type` is one of the Proxy-only actions, in CEL.
const PROXY_ACTION_CEL: &str = "self.action.type in ['Error', 'Throttle', 'Corrupt', 'Duplicate']";

/// `apiKeys` is absent or empty (every API), in CEL.
const NO_API_KEYS_CEL: &str =
    "!has(self.match) || !has(self.match.apiKeys) || size(self.match.apiKeys) == 0";

/// The spec-level CEL rule behind [`Enforcement::can_act`] for the Kafka-level actions.
pub(crate) fn proxy_actions_need_proxy() -> Rule {
    Rule::new(format!(
        "!({PROXY_ACTION_CEL}) || self.enforcement in ['Auto', 'Proxy']"
    ))
    .message(
        "action types Error, Throttle, Corrupt and Duplicate need enforcement Proxy (or Auto): only the proxy speaks Kafka to the client",
    )
    .field_path(".enforcement")
}

/// The spec-level CEL rule behind [`Enforcement::can_act`] for Proxy.
pub(crate) fn proxy_does_not_reset() -> Rule {
    Rule::new("self.enforcement != 'Proxy' || !(self.action.type in ['Reject', 'Drop'])")
        .message(
            "enforcement Proxy answers requests, it does not reset or drop them: use Error, Throttle, Delay, Corrupt or Duplicate, or another enforcement for Reject and Drop",
        )
        .field_path(".action.type")
}

/// Error's apiKeys must be APIs the proxy can fail ([`PROXY_ERROR_APIS`]).
pub(crate) fn error_apis_answerable() -> Rule {
    let apis = PROXY_ERROR_APIS
        .iter()
        .map(|api| format!("'{api}'"))
        .collect::<Vec<_>>()
        .join(", ");
    Rule::new(format!(
        "self.action.type != 'Error' || {NO_API_KEYS_CEL} || self.match.apiKeys.all(k, k in [{apis}])"
    ))
    .message(Message::Message(format!(
        "action type Error can fail only these apiKeys (the proxy answers no other API with an error): {}",
        PROXY_ERROR_APIS.join(", ")
    )))
    .field_path(".match.apiKeys")
}

/// Corrupt's target API must be among apiKeys, when they are listed.
pub(crate) fn corrupt_needs_its_api() -> Rule {
    Rule::new(format!(
        "self.action.type != 'Corrupt' || !has(self.action.target) || {NO_API_KEYS_CEL} || self.action.target in self.match.apiKeys"
    ))
    .message("action type Corrupt alters the records of its target's API: list that API (Produce or Fetch) in apiKeys, or leave apiKeys empty")
    .field_path(".match.apiKeys")
}

/// Duplicate sends Produce requests twice: Produce must be among apiKeys, when they are listed.
pub(crate) fn duplicate_needs_produce() -> Rule {
    Rule::new(format!(
        "self.action.type != 'Duplicate' || {NO_API_KEYS_CEL} || 'Produce' in self.match.apiKeys"
    ))
    .message("action type Duplicate sends Produce requests twice: list Produce in apiKeys, or leave apiKeys empty")
    .field_path(".match.apiKeys")
}

/// handover only means something to Proxy enforcement.
pub(crate) fn handover_needs_proxy() -> Rule {
    Rule::new(format!(
        "!has(self.handover) || self.enforcement == 'Proxy' || (self.enforcement == 'Auto' && {PROXY_ACTION_CEL})"
    ))
    .message("handover is only used by Proxy enforcement (enforcement Proxy, or Auto with a Kafka-level action)")
    .field_path(".handover")
    .reason(Reason::FieldValueForbidden)
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
    fn only_inline_and_proxy_delay_and_signature_cannot_regex() {
        let delays: Vec<_> = [
            Enforcement::Auto,
            Enforcement::Signature,
            Enforcement::Connection,
            Enforcement::Inline,
            Enforcement::Proxy,
        ]
        .into_iter()
        .filter(|e| e.can_delay())
        .collect();
        assert_eq!(
            delays,
            [Enforcement::Auto, Enforcement::Inline, Enforcement::Proxy]
        );
        assert!(Enforcement::Auto.is_proxy_for(ActionType::Error));
        assert!(!Enforcement::Auto.is_proxy_for(ActionType::Delay));
        assert!(Enforcement::Proxy.is_proxy_for(ActionType::Delay));
        assert!(!Enforcement::Proxy.can_act(ActionType::Reject));
        assert!(!Enforcement::Inline.can_act(ActionType::Throttle));
        assert!(Enforcement::Auto.can_act(ActionType::Duplicate));
        assert!(!Enforcement::Signature.can_match_regex());
        assert!(Enforcement::Connection.can_match_regex());
    }
}
