//! What Inline enforcement has done, as a plain snapshot for reports and status, and as atomics the
//! Inline enforcer's thread publishes and any other thread (the CLI, the node agent's status and
//! metrics) reads without locking.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The counters of one Inline fault. Request counts are per Kafka request; `packets_*` per
/// segment (a cut connection's retransmissions are dropped or reset again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InlineCounters {
    /// Segments decided.
    pub packets: u64,
    /// Segments that were not TCP over IP or were malformed (accepted).
    pub packets_unparsed: u64,
    /// Requests decoded.
    pub requests_seen: u64,
    /// Requests the fault's match selected (hit or spared by probability).
    pub requests_matched: u64,
    /// Requests held (Delay).
    pub delayed: u64,
    /// Requests whose segments were dropped (Drop).
    pub dropped: u64,
    /// Requests whose connection was reset (Reject).
    pub reset: u64,
    /// Times a budget was full and traffic was let through rather than held or decided:
    /// held packets over [`crate::inline::Budget`], partial frames over their cap.
    pub failed_open: u64,
    /// Segments dropped, the hit ones and the retransmissions after them.
    pub packets_dropped: u64,
    /// Segments answered with a reset.
    pub packets_reset: u64,
    /// Frames too short to carry a request header.
    pub short_frames: u64,
    /// Packets held now.
    pub held_packets: u64,
    /// Bytes of packets held now.
    pub held_bytes: u64,
    /// Bytes buffered now for reassembly and partial frames.
    pub buffered_bytes: u64,
}

/// [`InlineCounters`] as atomics: one writer (the Inline enforcer's thread), any number of readers.
#[derive(Debug, Default)]
pub struct SharedCounters {
    packets: AtomicU64,
    packets_unparsed: AtomicU64,
    requests_seen: AtomicU64,
    requests_matched: AtomicU64,
    delayed: AtomicU64,
    dropped: AtomicU64,
    reset: AtomicU64,
    failed_open: AtomicU64,
    packets_dropped: AtomicU64,
    packets_reset: AtomicU64,
    short_frames: AtomicU64,
    held_packets: AtomicU64,
    held_bytes: AtomicU64,
    buffered_bytes: AtomicU64,
}

macro_rules! each_counter {
    ($m:ident) => {
        $m!(
            packets,
            packets_unparsed,
            requests_seen,
            requests_matched,
            delayed,
            dropped,
            reset,
            failed_open,
            packets_dropped,
            packets_reset,
            short_frames,
            held_packets,
            held_bytes,
            buffered_bytes
        )
    };
}

impl SharedCounters {
    /// Publishes a snapshot.
    pub fn store(&self, counters: &InlineCounters) {
        macro_rules! store {
            ($($field:ident),*) => { $(self.$field.store(counters.$field, Ordering::Relaxed);)* };
        }
        each_counter!(store);
    }

    /// The last snapshot published. Fields are read one by one, so a reader racing the
    /// writer may see counters of two neighbouring snapshots; each is still exact.
    pub fn load(&self) -> InlineCounters {
        macro_rules! load {
            ($($field:ident),*) => { InlineCounters { $($field: self.$field.load(Ordering::Relaxed),)* } };
        }
        each_counter!(load)
    }
}
