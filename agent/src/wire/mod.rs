//! The bytes on the wire, before anything is Kafka: a captured or queued frame to a TCP
//! segment ([`packet`]), segments to in-order byte streams ([`reassembly`]), streams to Kafka
//! frames ([`frame`]), the no-copy hand-over between them ([`span`]), and the classic BPF
//! program that keeps a capture socket to the broker ports ([`bpf`]).
//!
//! Pure, and at the bottom of the library: it depends on nothing else in it. The sniffer and
//! the Inline decider build on it; the capture edges use [`packet::LinkType`] and [`bpf`].

pub mod bpf;
pub mod frame;
pub mod packet;
pub mod reassembly;
pub mod span;
