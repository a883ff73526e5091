//! Tests of the Proxy core on real Kafka messages encoded and decoded with kafka-protocol:
//! answers for every api and version, rewrites, the connection state machine, and hostile
//! input.

mod answers;
mod connection;
mod fuzz;
mod rewrites;

use std::ops::RangeInclusive;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use uuid::Uuid;

pub(super) use crate::sniffer::tests::{request, topic};

/// The correlation id test requests carry.
const CORRELATION_ID: i32 = 4242;
/// NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER: i16 = 6;
/// COORDINATOR_NOT_AVAILABLE.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// The id of topic `orders` in requests that name topics by id.
const ORDERS_ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
/// The id of topic `payments`.
const PAYMENTS_ID: Uuid = Uuid::from_u128(0xfedc_ba98_7654_3210_fedc_ba98_7654_3210);

fn versions(key: ApiKey) -> RangeInclusive<i16> {
    let range = key.valid_versions();
    range.min..=range.max
}

/// The versions of message `M` kafka-protocol encodes and decodes (sometimes fewer than the
/// api's: OffsetCommit and OffsetFetch v10, unstable in Kafka 4.1, have no request type).
fn message_versions<M: Message>() -> RangeInclusive<i16> {
    M::VERSIONS.min..=M::VERSIONS.max
}

fn text(s: &'static str) -> StrBytes {
    StrBytes::from_static_str(s)
}

/// A size-prefixed response frame, with the header version the api dictates.
fn response<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, key.response_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    buf.to_vec()
}

/// Decodes a size-prefixed response frame: its correlation id and body, checking the prefix
/// and that nothing is left over.
fn decode_response<R: Decodable>(key: ApiKey, version: i16, frame: &[u8]) -> (i32, R) {
    let size = i32::from_be_bytes(frame[..4].try_into().expect("prefix"));
    assert_eq!(
        size as usize,
        frame.len() - 4,
        "size prefix of {key:?} v{version}"
    );
    let mut buf = Bytes::copy_from_slice(&frame[4..]);
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version))
        .unwrap_or_else(|e| panic!("{key:?} v{version} header: {e}"));
    let body = R::decode(&mut buf, version).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    assert!(
        buf.is_empty(),
        "{key:?} v{version}: {} bytes left",
        buf.len()
    );
    (header.correlation_id, body)
}
