//! The pure core of kafka-shock's agent and CLI.
//!
//! Everything here is deterministic and free of I/O, so that it can be unit
//! tested and fuzzed without root, sockets or Kubernetes: parsing captured
//! packets, TCP reassembly, Kafka framing and decoding, and the events and
//! summaries `kafka-shock sniff` prints. The binary wires these to capture.
#![forbid(unsafe_code)]

pub mod assignment;
pub mod bpf;
pub mod decode;
pub mod event;
pub mod frame;
pub mod inline;
pub mod lease;
pub mod matching;
pub mod packet;
pub mod plan;
pub mod pod_netns;
pub mod proxy;
pub mod reassembly;
pub mod rules;
pub mod sniffer;
pub mod span;
pub mod summary;
#[cfg(test)]
mod test_rng;

/// A hash map for the per-packet lookups (connections, correlation ids, topic ids): foldhash is
/// several times faster than std's SipHash on these small keys, and its per-process random
/// seed still keeps hostile traffic from choosing colliding keys offline.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
