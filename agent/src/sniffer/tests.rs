//! End-to-end tests of the pure core: real Kafka frames, encoded with
//! kafka-protocol, carried in IPv4/TCP packets through the whole pipeline.

use crate::test_rng::Rng;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, GroupId,
    JoinGroupRequest, JoinGroupResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;
use uuid::Uuid;

use super::*;
use crate::decode::records::tests::batch;
use crate::wire::packet::tests::ipv4_tcp;

const CLIENT: &str = "10.0.0.1:40000";
const BROKER: &str = "10.0.0.2:9092";
const ORDERS_ID: u128 = 0x1234_5678_9abc_def0_1234_5678_9abc_def0;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub(crate) fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

/// A size-prefixed request frame.
pub(crate) fn request<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &'static str,
    body: &R,
) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    prefixed(&buf)
}

/// A size-prefixed response frame, with the header version the api dictates.
fn response<R: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, key.response_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    prefixed(&buf)
}

fn prefixed(frame: &[u8]) -> Vec<u8> {
    let mut out = i32::try_from(frame.len())
        .expect("size")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(frame);
    out
}

fn produce(correlation_id: i32, acks: i16) -> Vec<u8> {
    let body = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic("orders"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(3, Compression::None))),
                ]),
        ]);
    request(ApiKey::Produce, 9, correlation_id, "checkout-svc", &body)
}

fn produce_response(correlation_id: i32, error_code: i16) -> Vec<u8> {
    let body = ProduceResponse::default().with_responses(vec![
        TopicProduceResponse::default()
            .with_name(topic("orders"))
            .with_partition_responses(vec![
                PartitionProduceResponse::default()
                    .with_index(0)
                    .with_error_code(error_code),
            ]),
    ]);
    response(ApiKey::Produce, 9, correlation_id, &body)
}

/// One TCP connection on the wire, as the capture sees it.
struct Wire {
    sniffer: Sniffer,
    client: SocketAddr,
    broker: SocketAddr,
    client_seq: u32,
    broker_seq: u32,
    now: Duration,
    events: Vec<Event>,
}

const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;

impl Wire {
    fn new(config: SnifferConfig) -> Self {
        Self {
            sniffer: Sniffer::new(config),
            client: addr(CLIENT),
            broker: addr(BROKER),
            client_seq: 1000,
            broker_seq: 5000,
            now: Duration::from_secs(1_700_000_000),
            events: Vec::new(),
        }
    }

    /// Opens the connection with SYN and SYN-ACK, starting at the given ISNs.
    fn open(mut self, client_isn: u32, broker_isn: u32) -> Self {
        (self.client_seq, self.broker_seq) = (client_isn, broker_isn);
        self.packet(true, client_isn, SYN, b"");
        self.packet(false, broker_isn, SYN | ACK, b"");
        self.client_seq = client_isn.wrapping_add(1);
        self.broker_seq = broker_isn.wrapping_add(1);
        self
    }

    fn packet(&mut self, to_broker: bool, seq: u32, flags: u8, payload: &[u8]) {
        let (src, dst) = if to_broker {
            (self.client, self.broker)
        } else {
            (self.broker, self.client)
        };
        let ip = ipv4_tcp(src, dst, seq, flags, payload);
        let events = self.sniffer.on_packet(LinkType::RawIp, &ip, self.now);
        self.events.extend(events);
    }

    /// Sends `bytes` in order, in segments of `chunk` bytes.
    fn send(&mut self, to_broker: bool, bytes: &[u8], chunk: usize) {
        for piece in bytes.chunks(chunk.max(1)) {
            let seq = if to_broker {
                self.client_seq
            } else {
                self.broker_seq
            };
            self.packet(to_broker, seq, ACK, piece);
            let next = seq.wrapping_add(piece.len() as u32);
            if to_broker {
                self.client_seq = next;
            } else {
                self.broker_seq = next;
            }
        }
    }

    fn wait(&mut self, us: u64) {
        self.now += Duration::from_micros(us);
    }

    fn finish(&mut self) -> Vec<Event> {
        let rest = self.sniffer.finish();
        self.events.extend(rest);
        std::mem::take(&mut self.events)
    }
}

fn assert_produce_event(event: &Event, latency_us: Option<u64>, errors: Option<Vec<&str>>) {
    assert_eq!(event.api, "Produce");
    assert_eq!(event.api_version, 9);
    assert_eq!(event.client_id.as_deref(), Some("checkout-svc"));
    assert_eq!(event.topics, vec!["orders"]);
    assert_eq!(event.records, Some(3));
    assert_eq!(
        event.request_bytes,
        produce(event.correlation_id, -1).len() as u64
    );
    assert_eq!(event.latency_us, latency_us);
    assert_eq!(
        event.errors,
        errors.map(|e| e.into_iter().map(String::from).collect())
    );
    assert_eq!(event.decode_error, None);
    assert_eq!(event.client, addr(CLIENT));
    assert_eq!(event.broker, addr(BROKER));
}

#[test]
fn produce_in_order_pairs_with_its_response() {
    let mut wire = Wire::new(SnifferConfig::default()).open(1000, 5000);
    wire.send(true, &produce(7, -1), 1460);
    wire.wait(1500);
    wire.send(false, &produce_response(7, 6), 1460);
    let events = wire.finish();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_produce_event(&events[0], Some(1500), Some(vec!["NOT_LEADER_OR_FOLLOWER"]));
    let counters = wire.sniffer.counters();
    assert_eq!(
        (counters.decode.requests, counters.decode.responses),
        (1, 1)
    );
    assert_eq!(counters.reassembly.midstream_joins, 0);
    assert_eq!(counters.framing.resyncs, 0);
}

#[test]
fn one_byte_segments_and_many_frames_per_segment() {
    let mut wire = Wire::new(SnifferConfig::default()).open(1000, 5000);
    wire.send(true, &produce(1, -1), 1);
    wire.send(false, &produce_response(1, 0), 1);
    let mut three = produce(2, -1);
    three.extend(produce(3, -1));
    three.extend(produce(4, -1));
    wire.send(true, &three, 65_536);
    wire.wait(10);
    let mut answers = produce_response(3, 0);
    answers.extend(produce_response(2, 0));
    answers.extend(produce_response(4, 0));
    wire.send(false, &answers, 65_536);
    let events = wire.finish();
    let ids: Vec<i32> = events.iter().map(|e| e.correlation_id).collect();
    assert_eq!(ids, vec![1, 3, 2, 4]);
    assert_produce_event(&events[0], Some(0), Some(vec![]));
    assert_produce_event(&events[3], Some(10), Some(vec![]));
    assert_eq!(wire.sniffer.buffered_bytes(), 0);
}

#[test]
fn out_of_order_duplicated_overlapping_and_wrapping() {
    let isn = u32::MAX - 100;
    let mut wire = Wire::new(SnifferConfig::default()).open(isn, 5000);
    let mut stream = produce(1, -1);
    stream.extend(produce(2, -1));
    let base = isn.wrapping_add(1);
    let seq = |offset: usize| base.wrapping_add(offset as u32);
    let n = stream.len();
    let pieces = [
        (150, 300),
        (0, 60),
        (40, 200),
        (300, n),
        (0, 60),
        (120, 180),
    ];
    for (from, to) in pieces {
        wire.packet(true, seq(from), ACK, &stream[from..to]);
    }
    wire.send(false, &produce_response(1, 0), 1460);
    wire.send(false, &produce_response(2, 0), 1460);
    let events = wire.finish();
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert_produce_event(event, Some(0), Some(vec![]));
    }
    let r = wire.sniffer.counters().reassembly;
    assert!(r.out_of_order >= 1 && r.retransmitted >= 2, "{r:?}");
}

#[test]
fn metadata_teaches_topic_ids_that_name_fetches() {
    let mut wire = Wire::new(SnifferConfig::default()).open(1000, 5000);
    let orders = Uuid::from_u128(ORDERS_ID);
    let unknown = Uuid::from_u128(42);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic("orders"))),
    ]));
    wire.send(
        true,
        &request(ApiKey::Metadata, 12, 1, "consumer-1", &metadata),
        1460,
    );
    let answer = MetadataResponse::default().with_topics(vec![
        MetadataResponseTopic::default()
            .with_name(Some(topic("orders")))
            .with_topic_id(orders),
    ]);
    wire.send(false, &response(ApiKey::Metadata, 12, 1, &answer), 1460);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic_id(orders)
                .with_partitions(vec![FetchPartition::default()]),
            FetchTopic::default()
                .with_topic_id(unknown)
                .with_partitions(vec![FetchPartition::default()]),
        ]);
    wire.send(
        true,
        &request(ApiKey::Fetch, 13, 2, "consumer-1", &fetch),
        1460,
    );
    wire.wait(250);
    let fetched = FetchResponse::default().with_responses(vec![
        FetchableTopicResponse::default()
            .with_topic_id(orders)
            .with_partitions(vec![PartitionData::default().with_error_code(1)]),
    ]);
    wire.send(false, &response(ApiKey::Fetch, 13, 2, &fetched), 1460);
    let events = wire.finish();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].api, "Metadata");
    assert_eq!(events[0].topics, vec!["orders"]);
    assert_eq!(events[1].api, "Fetch");
    assert_eq!(
        events[1].topics,
        vec!["orders".to_owned(), unknown.to_string()]
    );
    assert_eq!(events[1].latency_us, Some(250));
    assert_eq!(
        events[1].errors,
        Some(vec!["OFFSET_OUT_OF_RANGE".to_owned()])
    );
}

#[test]
fn api_versions_response_uses_header_v0() {
    let mut wire = Wire::new(SnifferConfig::default()).open(1000, 5000);
    let hello = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("kcat"))
        .with_client_software_version(StrBytes::from_static_str("1.7.0"));
    wire.send(
        true,
        &request(ApiKey::ApiVersions, 3, 0, "rdkafka", &hello),
        1460,
    );
    let answer = ApiVersionsResponse::default().with_error_code(35);
    wire.send(false, &response(ApiKey::ApiVersions, 3, 0, &answer), 1460);
    let events = wire.finish();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].api, "ApiVersions");
    assert_eq!(events[0].client_id.as_deref(), Some("rdkafka"));
    assert_eq!(
        events[0].errors,
        Some(vec!["UNSUPPORTED_VERSION".to_owned()])
    );
    assert_eq!(events[0].decode_error, None);
}

#[test]
fn group_apis_carry_group_ids_and_errors() {
    let mut wire = Wire::new(SnifferConfig::default()).open(1000, 5000);
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("billing")))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic("orders"))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(42),
                ]),
        ]);
    wire.send(
        true,
        &request(ApiKey::OffsetCommit, 8, 1, "billing-consumer", &commit),
        1460,
    );
    let committed = OffsetCommitResponse::default().with_topics(vec![
        OffsetCommitResponseTopic::default()
            .with_name(topic("orders"))
            .with_partitions(vec![
                OffsetCommitResponsePartition::default().with_error_code(25),
            ]),
    ]);
    wire.send(
        false,
        &response(ApiKey::OffsetCommit, 8, 1, &committed),
        1460,
    );
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("billing")))
        .with_session_timeout_ms(45_000)
        .with_rebalance_timeout_ms(300_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range")),
        ]);
    wire.send(
        true,
        &request(ApiKey::JoinGroup, 5, 2, "billing-consumer", &join),
        1460,
    );
    wire.send(
        false,
        &response(
            ApiKey::JoinGroup,
            5,
            2,
            &JoinGroupResponse::default().with_error_code(79),
        ),
        1460,
    );
    let events = wire.finish();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].api, "OffsetCommit");
    assert_eq!(events[0].group_id.as_deref(), Some("billing"));
    assert_eq!(events[0].topics, vec!["orders"]);
    assert_eq!(events[0].errors, Some(vec!["UNKNOWN_MEMBER_ID".to_owned()]));
    assert_eq!(events[1].api, "JoinGroup");
    assert_eq!(events[1].group_id.as_deref(), Some("billing"));
    assert_eq!(
        events[1].errors,
        Some(vec!["MEMBER_ID_REQUIRED".to_owned()])
    );
}

#[test]
fn midstream_join_resyncs_on_the_next_request() {
    let mut wire = Wire::new(SnifferConfig::default());
    let first = produce(1, -1);
    let mut stream = first[first.len() / 2..].to_vec();
    stream.extend(produce(2, -1));
    wire.send(true, &stream, 100);
    let mut answers = produce_response(1, 0);
    answers = answers[3..].to_vec();
    answers.extend(produce_response(2, 0));
    wire.send(false, &answers, 100);
    let events = wire.finish();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_produce_event(&events[0], Some(0), Some(vec![]));
    let counters = wire.sniffer.counters();
    assert_eq!(counters.reassembly.midstream_joins, 1);
    assert_eq!(counters.framing.resyncs, 2);
    assert!(counters.framing.resync_skipped_bytes > 0);
}

#[test]
fn rst_reports_pending_requests_unanswered() {
    let mut wire = Wire::new(SnifferConfig::default()).open(1000, 5000);
    wire.send(true, &produce(1, -1), 1460);
    let ahead = wire.client_seq.wrapping_add(100);
    wire.packet(true, ahead, ACK, b"out of order, never delivered");
    assert!(wire.sniffer.buffered_bytes() > 0);
    let seq = wire.broker_seq;
    wire.packet(false, seq, RST, b"");
    assert_eq!(wire.sniffer.buffered_bytes(), 0);
    assert_eq!(wire.events.len(), 1);
    assert_produce_event(&wire.events[0], None, None);
    assert_eq!(wire.sniffer.counters().reassembly.flows_reset, 1);
}

#[test]
fn acks_zero_produce_is_reported_at_once() {
    let mut wire = Wire::new(SnifferConfig::default()).open(1000, 5000);
    wire.send(true, &produce(1, 0), 1460);
    assert_eq!(wire.events.len(), 1);
    assert_eq!(wire.events[0].latency_us, None);
}

#[test]
fn two_gib_frame_is_skipped_with_bounded_memory() {
    let mut config = SnifferConfig::default();
    config.framer.max_frame = 1024 * 1024;
    let mut wire = Wire::new(config).open(1000, 5000);
    let mut frame = produce(9, -1);
    frame[..4].copy_from_slice(&i32::MAX.to_be_bytes());
    wire.send(true, &frame, 1460);
    let filler = vec![0u8; 64 * 1024];
    for _ in 0..48 {
        wire.send(true, &filler, filler.len());
        assert!(
            wire.sniffer.buffered_bytes() < 1024 * 1024,
            "{}",
            wire.sniffer.buffered_bytes()
        );
    }
    let events = wire.finish();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(
        (&*event.api, event.api_version, event.correlation_id),
        ("Produce", 9, 9)
    );
    assert_eq!(event.client_id.as_deref(), Some("checkout-svc"));
    assert_eq!(event.request_bytes, i32::MAX as u64 + 4);
    assert!(
        event
            .decode_error
            .as_deref()
            .is_some_and(|e| e.contains("over the size cap"))
    );
    assert_eq!(wire.sniffer.counters().framing.oversized_frames, 1);
}

#[test]
fn negative_length_and_garbage_then_resync() {
    let mut wire = Wire::new(SnifferConfig::default()).open(1000, 5000);
    let mut stream = (-1i32).to_be_bytes().to_vec();
    stream.extend_from_slice(b"\x00\x07garbage that is not kafka\xff\xfe");
    stream.extend(produce(5, -1));
    wire.send(true, &stream, 7);
    wire.send(false, &produce_response(5, 0), 1460);
    let events = wire.finish();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_produce_event(&events[0], Some(0), Some(vec![]));
    let framing = wire.sniffer.counters().framing;
    assert_eq!((framing.invalid_sizes, framing.resyncs), (1, 1));
}

#[test]
fn unknown_api_key_and_bad_body_are_reported() {
    let mut wire = Wire::new(SnifferConfig::default()).open(1000, 5000);
    let mut unknown = BytesMut::new();
    let header = RequestHeader::default()
        .with_request_api_key(999)
        .with_request_api_version(1)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("mystery")));
    header.encode(&mut unknown, 1).expect("header");
    unknown.extend_from_slice(b"opaque body");
    wire.send(true, &prefixed(&unknown), 1460);
    let mut broken = produce(2, -1);
    broken.truncate(broken.len() - 10);
    let len = i32::try_from(broken.len() - 4).expect("len");
    broken[..4].copy_from_slice(&len.to_be_bytes());
    wire.send(true, &broken, 1460);
    wire.send(false, &prefixed(&[0, 0, 0, 1, 0, 0]), 1460);
    wire.send(true, &produce(3, -1), 1460);
    wire.send(false, &produce_response(3, 0), 1460);
    let events = wire.finish();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0].api, "Unknown(999)");
    assert_eq!(events[0].client_id.as_deref(), Some("mystery"));
    assert_eq!(
        events[0].decode_error.as_deref(),
        Some("unknown api key 999")
    );
    assert!(events[0].latency_us.is_some());
    assert_eq!(events[1].correlation_id, 3);
    assert_produce_event(&events[1], Some(0), Some(vec![]));
    assert_eq!(events[2].correlation_id, 2);
    assert_eq!(events[2].client_id.as_deref(), Some("checkout-svc"));
    assert!(
        events[2]
            .decode_error
            .as_deref()
            .is_some_and(|e| e.starts_with("body:")),
        "{:?}",
        events[2]
    );
    assert_eq!(wire.sniffer.counters().decode.decode_errors, 3);
}

fn mutate(rng: &mut Rng, mut data: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 if len > 4 => {
                let i = rng.below(len - 4);
                let big = [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
                let from = rng.below(4);
                data[i..i + 4].copy_from_slice(&big[from..from + 4]);
            }
            3 => data.truncate(rng.below(len + 1)),
            4 => {
                let i = rng.below(len + 1);
                let n = rng.below(16);
                let junk = rng.bytes(n);
                data.splice(i..i, junk);
            }
            _ => data.reverse(),
        }
    }
    data
}

#[test]
fn hostile_input_never_panics_and_memory_stays_bounded() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut config = SnifferConfig::default();
    config.framer.max_frame = 64 * 1024;
    config.reassembly.max_buffered_per_flow = 256 * 1024;
    config.reassembly.max_flows = 64;
    let bound = 8 * 2 * 256 * 1024 + 2 * 8 * (64 * 1024 + 256 * 1024 + 4096);
    let seeds = [
        produce(1, -1),
        produce_response(1, 6),
        request(ApiKey::Fetch, 13, 2, "c", &FetchRequest::default()),
        request(ApiKey::Metadata, 12, 3, "c", &MetadataRequest::default()),
        response(ApiKey::Metadata, 12, 3, &MetadataResponse::default()),
        request(
            ApiKey::ApiVersions,
            3,
            4,
            "c",
            &ApiVersionsRequest::default(),
        ),
        response(ApiKey::ApiVersions, 3, 4, &ApiVersionsResponse::default()),
    ];
    let links = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
    ];
    let mut sniffer = Sniffer::new(config);
    let mut now = Duration::from_secs(1);
    for round in 0..4000 {
        now += Duration::from_millis(rng.below(500) as u64);
        let port = 40_000 + rng.below(8) as u16;
        let client: SocketAddr = SocketAddr::new(addr(CLIENT).ip(), port);
        let to_broker = rng.below(2) == 0;
        let (src, dst) = if to_broker {
            (client, addr(BROKER))
        } else {
            (addr(BROKER), client)
        };
        let seq = match rng.below(4) {
            0 => rng.next() as u32,
            _ => (round as u32).wrapping_mul(97),
        };
        let random_flags = rng.next() as u8;
        let flags = [ACK, ACK, ACK, SYN, RST, 0x01 | ACK, random_flags][rng.below(7)];
        let payload = match rng.below(3) {
            0 => {
                let n = rng.below(3000);
                rng.bytes(n)
            }
            _ => {
                let seed = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, seed)
            }
        };
        let packet = ipv4_tcp(src, dst, seq, flags, &payload);
        let frame = match rng.below(3) {
            0 => {
                let n = rng.below(200);
                rng.bytes(n)
            }
            1 => mutate(&mut rng, packet),
            _ => packet,
        };
        let _ = sniffer.on_packet(LinkType::RawIp, &frame, now);
        let _ = sniffer.on_packet(links[rng.below(links.len())], &frame, now);
        assert!(
            sniffer.buffered_bytes() <= bound,
            "round {round}: {}",
            sniffer.buffered_bytes()
        );
    }
    let _ = sniffer.finish();
    assert_eq!(sniffer.buffered_bytes(), 0);
    let counters = sniffer.counters();
    assert!(counters.decode.packets >= 8000);
    assert!(
        counters.decode.requests > 0 && counters.framing.resyncs > 0,
        "{counters:?}"
    );
}

#[test]
fn decoders_survive_every_truncation_and_mutation() {
    let mut rng = Rng(7);
    let frames = [
        produce(1, -1),
        request(
            ApiKey::Fetch,
            13,
            2,
            "c",
            &FetchRequest::default().with_topics(vec![FetchTopic::default()]),
        ),
        request(ApiKey::Metadata, 12, 3, "c", &MetadataRequest::default()),
        request(ApiKey::JoinGroup, 5, 4, "c", &JoinGroupRequest::default()),
    ];
    for frame in &frames {
        for cut in 4..frame.len() {
            let body = Bytes::copy_from_slice(&frame[4..cut]);
            let _ = decode_request(&body, body.len());
            let _ = decode_response(&body, 0, 9, body.len());
        }
        for _ in 0..500 {
            let mutated = Bytes::from(mutate(&mut rng, frame[4..].to_vec()));
            let _ = decode_request(&mutated, mutated.len());
            for key in [0, 1, 3, 11, 18] {
                let _ = decode_response(&mutated, key, 9, mutated.len());
            }
        }
    }
}

/// The first bytes of a TLS 1.2/1.3 ClientHello record, then some of its body.
fn client_hello() -> Vec<u8> {
    let mut record = vec![
        0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03,
    ];
    record.extend((0u8..53).map(|i| i.wrapping_mul(37)));
    record
}

#[test]
fn a_tls_stream_is_noticed_once_per_port_and_never_framed() {
    let config = SnifferConfig::with_broker_ports([9092, 9094]);
    let mut wire = Wire::new(config).open(1000, 5000);
    wire.broker = addr("10.0.0.2:9094");
    wire = wire.open(2000, 6000);
    wire.send(true, &client_hello(), 7);
    assert_eq!(
        wire.sniffer.take_notices(),
        [Notice::Tls {
            broker: addr("10.0.0.2:9094")
        }]
    );
    wire.send(false, &[0x16, 0x03, 0x03, 0x00, 0x02, 0x02, 0x00], 1460);
    // A second TLS client of the same port is not told again.
    wire.client = addr("10.0.0.3:40001");
    wire = wire.open(3000, 7000);
    wire.send(true, &client_hello(), 1460);
    assert_eq!(wire.sniffer.take_notices(), []);
    // Plaintext Kafka on the other port is read as ever.
    wire.broker = addr(BROKER);
    wire = wire.open(4000, 8000);
    wire.send(true, &produce(7, -1), 1460);
    wire.send(false, &produce_response(7, 0), 1460);
    let events = wire.finish();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].api, "Produce");
    let counters = wire.sniffer.counters();
    assert_eq!(counters.decode.requests, 1, "TLS bytes are never framed");
    assert_eq!(counters.decode.decode_errors, 0);
    assert_eq!(counters.framing.resyncs, 0);
    assert!(wire.sniffer.take_notices().is_empty());
}

#[test]
fn kafka_never_looks_like_tls() {
    assert!(starts_tls_record(&[0x16, 0x03, 0x01]));
    assert!(starts_tls_record(&[0x17, 0x03, 0x03]));
    assert!(starts_tls_record(&[0x16]), "too short to say otherwise");
    assert!(!starts_tls_record(&[0x16, 0x04, 0x01]));
    assert!(!starts_tls_record(&[]));
    // A Kafka frame's first byte is its size's top byte: 0 below 16 MiB.
    assert!(!starts_tls_record(&produce(1, -1)[..3]));
}

#[test]
fn the_kraft_quorums_requests_are_decoded_on_the_controller_port() {
    use kafka_protocol::messages::{
        BeginQuorumEpochRequest, EndQuorumEpochRequest, FetchSnapshotRequest, VoteRequest,
    };
    let mut wire = Wire::new(SnifferConfig::with_broker_ports([9093]));
    wire.broker = addr("10.0.0.2:9093");
    let mut wire = wire.open(1000, 5000);
    let frames = [
        request(ApiKey::Vote, 2, 1, "raft-client-1", &VoteRequest::default()),
        request(
            ApiKey::BeginQuorumEpoch,
            1,
            2,
            "raft-client-1",
            &BeginQuorumEpochRequest::default(),
        ),
        request(
            ApiKey::EndQuorumEpoch,
            1,
            3,
            "raft-client-1",
            &EndQuorumEpochRequest::default(),
        ),
        request(
            ApiKey::Fetch,
            17,
            4,
            "raft-client-1",
            &FetchRequest::default(),
        ),
        request(
            ApiKey::FetchSnapshot,
            1,
            5,
            "raft-client-1",
            &FetchSnapshotRequest::default(),
        ),
    ];
    for frame in &frames {
        wire.send(true, frame, 1460);
    }
    let events = wire.finish();
    let apis: Vec<&str> = events.iter().map(|e| &*e.api).collect();
    assert_eq!(
        apis,
        [
            "Vote",
            "BeginQuorumEpoch",
            "EndQuorumEpoch",
            "Fetch",
            "FetchSnapshot"
        ]
    );
    assert!(
        events.iter().all(|e| e.decode_error.is_none()),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e.broker.port() == 9093));
}
