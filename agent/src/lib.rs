//! The pure core of kafka-shock's agent and CLI: every decision, none of the I/O. Packets,
//! times, objects and texts go in; events, rules, verdicts and statuses come out. Nothing here
//! opens a socket, runs a command, enters a namespace, reads a file or the clock, or talks to
//! Kubernetes, so all of it is unit-tested and fuzzed without root (see
//! `docs/architecture.md` for how the parts fit together).
//!
//! The folders, each depending only on those above it (and on `kafka-shock-crds`, the API):
//! - [`wire`]: link-layer frames to TCP segments, TCP reassembly, Kafka framing, and the
//!   capture filter program;
//! - [`decode`]: Kafka requests and responses to what a fault can match;
//! - [`sniffer`]: the sans-I/O state machine from packets to decoded [`sniffer::event`]s, and
//!   the summary `sniff` prints;
//! - [`rules`]: the iptables rule compiler, the desired-vs-actual diff, and who owns a chain;
//! - [`fault`]: a fault's terms made enforceable ([`fault::FaultPlan`]) and its match
//!   evaluated on decoded requests ([`fault::RequestMatcher`]);
//! - [`inline`]: the Inline decider, one verdict per queued packet;
//! - [`assignment`]: what the node agent does about one injection, and which network
//!   namespace is a pod's.
//!
//! The binary (`main.rs`) holds the commands and the I/O edges that feed this core.
#![forbid(unsafe_code)]

pub mod assignment;
mod civil;
pub mod decode;
pub mod fault;
pub mod inline;
pub mod proxy;
pub mod rules;
pub mod sniffer;
#[cfg(test)]
mod test_rng;
pub mod wire;

/// A hash map for the per-packet lookups (connections, correlation ids, topic ids): foldhash is
/// several times faster than std's SipHash on these small keys, and its per-process random
/// seed still keeps hostile traffic from choosing colliding keys offline.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
