//! The rule compiler for Signature and Connection enforcement, and the desired-vs-actual diff.
//!
//! Pure, after netavark: an [`Injection`] compiles to one [`Chain`] per family ([`compile`]);
//! the reconcile parses what `iptables-save` prints ([`parse_save`]) and [`diff`]s it into the
//! [`Batch`] that makes the kernel match, which the I/O edge renders once and applies with
//! `iptables-restore --noflush`. Nothing here runs a command, and no byte a user wrote reaches
//! the batch text except as hex (client ids, topics, group and transactional ids) or through
//! [`sanitise_id`] (the comment), so no quoting of user strings is ever needed. An Inline
//! injection compiles to a chain that sends the broker's segments to an NFQUEUE (and resets
//! what the agent marks for it); the decisions are then [`crate::inline`]'s. A Proxy
//! injection compiles to a nat chain that redirects new connections to the proxy's listener
//! (and a filter chain that resets the connections opened before it); the decisions are then
//! [`crate::proxy`]'s.
//!
//! What users get, per TCP reality: a Reject resets the connection, killing every request in
//! flight on it; a Drop blackholes the segment, and since TCP retransmits it, the whole
//! connection stalls until the client times out. Signature rules look at segments, so a
//! request split across segments, or not first in its segment, escapes them; [`Exactness`]
//! says what else they cannot express, so that Auto mode adds Connection rules as a backstop.
//!
//! Which run owns a chain is in its comments: [`CliOwner`] for `kafka-shock inject`, the
//! contract's `rule_id` for the node agent. How long it bites is in its jumps: each carries a
//! kernel lease its owner renews ([`lease`](self::ChainLease)), so a dead owner's fault ends by
//! itself.
//!
//! Pure; it depends on nothing else in the library (only on the API's `Cidr` and hash). The
//! fault plan compiles through it, and the binary's enforcer applies its batches.

mod batch;
mod chain;
mod compile;
mod lease;
mod names;
mod offsets;
mod owner;
mod proxy_chains;
mod save;
mod spec;

#[cfg(test)]
mod tests;

pub use batch::{Batch, Op, OwnedChain, diff, owned_chains, sweep};
pub use chain::{Chain, Rule, Table};
pub use compile::{Compiled, Exactness, Gap, compile};
pub use lease::{ChainLease, datestop, lease_probe, parse_datestop};
pub use names::{
    CHAIN_PREFIX, COMMENT_PREFIX, INLINE_QUEUE_TRIES, PROXY_MARK, chain_name, inline_queue,
    reject_mark, sanitise_id, wake_port,
};
pub use owner::{CliOwner, start_ticks_of_stat};
pub use save::{Actual, SavedJump, SavedRule, parse_save};
pub use spec::{ClientIdPattern, Family, Flow, Injection, Layers, Signature, Verdict};
