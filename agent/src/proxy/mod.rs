//! Proxy enforcement's pure core: a transparent Kafka proxy in the broker's network namespace
//! that forwards each request, or answers it with a Kafka error, throttles, delays, corrupts
//! or duplicates it — what no TCP-level fault can do (`enforcement: Proxy`).
//!
//! Everything here is sans-I/O. The edge (not here) accepts the connections a nat REDIRECT
//! sends to its listener, opens one upstream connection per client to the broker's own address,
//! and moves bytes: client bytes into [`Connection::from_client`], broker bytes into
//! [`Connection::from_broker`], time into [`Connection::tick`] (at
//! [`Connection::next_deadline`]), and it writes out what each call leaves in [`Output`].
//! One [`Fault`] holds what all the fault's connections share: the match (the same
//! [`RequestMatcher`](crate::fault::RequestMatcher) as Connection and Inline enforcement,
//! on the same [`Event`](crate::sniffer::event::Event) the sniffer decodes), the probability draw, the
//! counters, the hits to report and the memory budget.
//!
//! - [`answer`]: the error responses the proxy builds itself, per api and version.
//! - [`rewrite`]: throttle, Metadata errors and corruption, by re-encoding a message.
//! - [`corrupt`]: record values inverted inside record batches, CRC left stale or fixed.
//! - [`connection`]: one proxied connection's state machine: order, holds, answers, passthrough.
//! - [`fault`]: the shared state.
//! - [`handover`]: the connections opened before the fault, read from `/proc/net/tcp`.

mod answer;
mod codec;
mod connection;
mod corrupt;
mod fault;
pub mod handover;
mod rewrite;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub use answer::{ErrorPath, error_path};
pub use connection::{Connection, Output};
pub use fault::Fault;
pub use kafka_shock_crds::kafka_errors::{PROXY_ERROR_APIS as ERROR_APIS, error_code};

use crate::decode::error_name;
use crate::sniffer::event::Event;

/// Why the proxy could not build or rewrite a message (the message then goes as it was).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The api has no error answer.
    #[error("{0} cannot be answered with an error by the proxy")]
    NotAnswerable(String),
    /// An api key kafka-protocol does not know.
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    /// The message did not decode.
    #[error("decode: {0}")]
    Decode(String),
    /// The message did not encode.
    #[error("encode: {0}")]
    Encode(String),
}

/// Which records `Corrupt` alters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptTarget {
    /// The values a producer sends, before the broker checks and stores them.
    Produce,
    /// The values a consumer fetches, after the broker stored them intact.
    Fetch,
}

/// What a hit request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fail it with this Kafka error code (see [`error_code`]): not forwarded, answered by the
    /// proxy (Metadata: forwarded, the error written into the response).
    Error(i16),
    /// Forward it and set `throttle_time_ms` in its response.
    Throttle(Duration),
    /// Hold it, and every request behind it on the connection, for `delay` plus a uniform
    /// draw up to `jitter`, then forward it.
    Delay {
        /// The hold.
        delay: Duration,
        /// The largest random extra.
        jitter: Duration,
    },
    /// Invert the record values of the fault's topics.
    Corrupt {
        /// In Produce requests or in Fetch responses.
        target: CorruptTarget,
        /// Recompute the batch CRC so the corruption passes for valid data.
        fix_crc: bool,
    },
    /// Forward a Produce twice; the client gets one response.
    Duplicate,
}

/// What decides what the proxy does and bounds its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// What a hit request gets.
    pub action: Action,
    /// Percent of matching requests hit, drawn per request (1..=100).
    pub probability: u8,
    /// The largest request or response handled whole. A request frame declaring more (or a
    /// negative size) turns its connection into a byte-for-byte passthrough; a larger
    /// response the action would rewrite goes through unchanged (counted as failed open).
    pub max_frame: usize,
    /// Bytes all connections may hold at once: partial requests, held requests, responses
    /// being rewritten, answers waiting their turn. A connection that would go beyond it
    /// becomes a passthrough (partial requests) or lets its held requests go now (Delay).
    pub max_buffered: usize,
    /// Requests awaiting a response on one connection; beyond it the connection becomes a
    /// passthrough rather than remember more.
    pub max_in_flight: usize,
    /// The most bytes one compressed record batch may decompress to when corrupted.
    pub max_decompressed: usize,
}

impl ProxyConfig {
    /// Limits sized for a proxy in a broker pod: requests and rewritten responses up to
    /// 16 MiB are handled whole (Kafka's default message.max.bytes is 1 MiB), 256 MiB at most
    /// over all connections.
    pub fn new(action: Action, probability: u8) -> Self {
        Self {
            action,
            probability,
            max_frame: 16 << 20,
            max_buffered: 256 << 20,
            max_in_flight: 1024,
            max_decompressed: 64 << 20,
        }
    }
}

/// What a matching request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Failed with this error code.
    Errored(i16),
    /// A Produce with acks=0 failed with this error: no answer is expected, so the connection
    /// is closed, as a broker closes it.
    ErroredClosed(i16),
    /// Forwarded; its response carries this throttle time.
    Throttled(Duration),
    /// Held this long.
    Delayed(Duration),
    /// Produce: this many record values corrupted before the broker saw them.
    Corrupted(u64),
    /// Fetch: forwarded; the record values in its response are corrupted.
    CorruptingResponse,
    /// Forwarded twice.
    Duplicated,
    /// Not hit: the probability draw spared it.
    Spared,
    /// Forwarded unchanged: the action does not apply to this api (or acks=0 request).
    NotApplicable,
    /// Forwarded unchanged: the action could not be applied (the body did not decode, or a
    /// memory bound was reached).
    FailedOpen,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |code: i16| error_name(code).unwrap_or_else(|| "NONE".into());
        match self {
            Outcome::Errored(code) => f.write_str(&name(*code)),
            Outcome::ErroredClosed(code) => {
                write!(f, "{} (acks=0: connection closed)", name(*code))
            }
            Outcome::Throttled(time) => write!(f, "throttled {} ms", time.as_millis()),
            Outcome::Delayed(time) => write!(f, "delayed {} ms", time.as_millis()),
            Outcome::Corrupted(records) => write!(f, "corrupted {records} records"),
            Outcome::CorruptingResponse => f.write_str("response corrupted"),
            Outcome::Duplicated => f.write_str("duplicated"),
            Outcome::Spared => f.write_str("spared by probability"),
            Outcome::NotApplicable => f.write_str("forwarded (the action does not apply)"),
            Outcome::FailedOpen => f.write_str("forwarded (failed open)"),
        }
    }
}

/// A matching request and what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The request.
    pub request: Event,
    /// What it got.
    pub outcome: Outcome,
}

/// What a Proxy fault has done. Request counts are per Kafka request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProxyCounters {
    /// Connections proxied.
    pub connections: u64,
    /// Requests decoded.
    pub requests_seen: u64,
    /// Requests the fault's match selected (hit or spared by probability).
    pub requests_matched: u64,
    /// Requests failed with the fault's error (answered, or written into a Metadata response).
    pub errored: u64,
    /// Responses whose `throttle_time_ms` was set.
    pub throttled: u64,
    /// Requests held (Delay).
    pub delayed: u64,
    /// Produce requests or Fetch responses whose record values were corrupted.
    pub corrupted: u64,
    /// Record values corrupted.
    pub corrupted_records: u64,
    /// Produce requests forwarded twice.
    pub duplicated: u64,
    /// Requests whose body did not decode (forwarded unchanged).
    pub undecodable: u64,
    /// Connections passed through byte for byte because they carry TLS.
    pub passthrough_tls: u64,
    /// Connections turned into a byte-for-byte passthrough for another reason: an absurd or
    /// over-cap frame size, an undecodable Produce or header, SASL without Kafka framing, a
    /// memory or in-flight bound, a response the proxy did not expect.
    pub passthrough_other: u64,
    /// Times the action could not be applied and traffic went unchanged (an undecodable body,
    /// a response over the frame cap, held requests let go at the memory bound).
    pub failed_open: u64,
    /// Connections closed because the broker's responses did not follow its requests' order.
    pub out_of_order_closed: u64,
    /// Bytes buffered now over all connections.
    pub buffered_bytes: u64,
}
