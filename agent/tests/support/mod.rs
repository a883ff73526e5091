//! Shared helpers of the hostile-capture and fuzz tests: real Kafka frames
//! encoded with kafka-protocol, hand-built IPv4/TCP packets, TCP
//! conversations, pcap files, a deterministic PRNG, and running the binary.
// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::fs::File;
use std::io::BufWriter;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, BrokerId, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

/// The client id every generated request carries.
pub const CLIENT_ID: &str = "checkout-svc";
/// The topic every generated Produce and Metadata names.
pub const TOPIC: &str = "orders";
/// Produce and Metadata versions the generated frames use.
pub const PRODUCE_VERSION: i16 = 9;
pub const METADATA_VERSION: i16 = 12;
/// Records in each generated Produce.
pub const RECORDS: usize = 3;

/// SplitMix64: tiny, fast and deterministic, so every failure replays from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5eed_cafe_f00d_d00d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `1 / n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.fill(&mut out);
        out
    }

    /// Flips `flips` random bits of `data`.
    pub fn flip_bits(&mut self, data: &mut [u8], flips: usize) {
        if data.is_empty() {
            return;
        }
        for _ in 0..flips {
            let at = self.below(data.len());
            data[at] ^= 1 << self.below(8);
        }
    }
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// `frame` with its 4-byte big-endian size prefix.
pub fn prefixed(frame: &[u8]) -> Vec<u8> {
    let mut out = i32::try_from(frame.len())
        .expect("frame size")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(frame);
    out
}

/// A request header and body, without the size prefix.
pub fn request_body<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("request header");
    body.encode(&mut buf, version).expect("request body");
    buf.to_vec()
}

/// A size-prefixed response frame, with the header version the api dictates.
pub fn response_frame<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Vec<u8> {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, key.response_header_version(version))
        .expect("response header");
    body.encode(&mut buf, version).expect("response body");
    prefixed(&buf)
}

/// A real v2 record batch of `n` records.
pub fn record_batch(n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("record batch");
    buf.freeze()
}

/// ProduceRequest v9 (acks=1) of one 3-record batch to `orders`, without the size prefix.
pub fn produce_body(correlation_id: i32) -> Vec<u8> {
    let body = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name())
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(record_batch(RECORDS))),
                ]),
        ]);
    request_body(ApiKey::Produce, PRODUCE_VERSION, correlation_id, &body)
}

/// A size-prefixed ProduceRequest v9 (see [`produce_body`]).
pub fn produce_request(correlation_id: i32) -> Vec<u8> {
    prefixed(&produce_body(correlation_id))
}

pub fn produce_response(correlation_id: i32) -> Vec<u8> {
    let body = ProduceResponse::default().with_responses(vec![
        TopicProduceResponse::default()
            .with_name(topic_name())
            .with_partition_responses(vec![PartitionProduceResponse::default().with_index(0)]),
    ]);
    response_frame(ApiKey::Produce, PRODUCE_VERSION, correlation_id, &body)
}

/// A size-prefixed MetadataRequest v12 for `orders`.
pub fn metadata_request(correlation_id: i32) -> Vec<u8> {
    let body = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name())),
    ]));
    prefixed(&request_body(
        ApiKey::Metadata,
        METADATA_VERSION,
        correlation_id,
        &body,
    ))
}

pub fn metadata_response(correlation_id: i32) -> Vec<u8> {
    let body = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(StrBytes::from_static_str("10.77.0.10"))
                .with_port(9092),
        ])
        .with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(topic_name()))
                .with_topic_id(uuid::Uuid::from_u128(0x1234_5678))
                .with_partitions(vec![
                    MetadataResponsePartition::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(0)),
                ]),
        ]);
    response_frame(ApiKey::Metadata, METADATA_VERSION, correlation_id, &body)
}

/// TCP flag bits.
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

pub fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|error| panic!("{text}: {error}"))
}

/// An IPv4 packet (raw IP, link type 101) carrying one TCP segment, with a
/// valid IP header checksum. Payloads too large for the 16-bit total length
/// get a total length of 0, as TSO super-packets captured on the sender do.
pub fn ipv4_tcp(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv4 addresses expected");
    };
    let total = u16::try_from(40 + payload.len()).unwrap_or(0);
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    let checksum = !p
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .fold(0u32, |sum, word| {
            let sum = sum + word;
            (sum & 0xffff) + (sum >> 16)
        }) as u16;
    p[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

/// `ip` inside an Ethernet II frame (link type 1).
pub fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    frame.extend_from_slice(ip);
    frame
}

/// One TCP segment of a [`Conversation`], before it is rendered to a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub ts: Duration,
    pub to_broker: bool,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// One TCP connection between a client and a broker, built segment by segment.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub client: SocketAddr,
    pub broker: SocketAddr,
    client_next: u32,
    broker_next: u32,
    ts: Duration,
    pub segments: Vec<Segment>,
}

impl Conversation {
    /// A connection opened by the three-way handshake at `ts`.
    pub fn open(client: SocketAddr, broker: SocketAddr, ts: Duration) -> Self {
        let (client_isn, broker_isn) = (1_000, 7_000_000);
        let mut c = Self {
            client,
            broker,
            client_next: client_isn,
            broker_next: broker_isn,
            ts,
            segments: Vec::new(),
        };
        c.push(true, client_isn, 0, SYN, Vec::new());
        c.push(false, broker_isn, client_isn + 1, SYN | ACK, Vec::new());
        c.client_next = client_isn + 1;
        c.broker_next = broker_isn + 1;
        c.push(true, c.client_next, c.broker_next, ACK, Vec::new());
        c
    }

    fn push(&mut self, to_broker: bool, seq: u32, ack: u32, flags: u8, payload: Vec<u8>) {
        self.ts += Duration::from_micros(100);
        self.segments.push(Segment {
            ts: self.ts,
            to_broker,
            seq,
            ack,
            flags,
            payload,
        });
    }

    /// Sends `bytes` one way, cut into segments of at most `mss` bytes.
    pub fn send(&mut self, to_broker: bool, bytes: &[u8], mss: usize) {
        for chunk in bytes.chunks(mss.max(1)) {
            let (seq, ack) = if to_broker {
                (self.client_next, self.broker_next)
            } else {
                (self.broker_next, self.client_next)
            };
            self.push(to_broker, seq, ack, ACK | PSH, chunk.to_vec());
            let len = chunk.len() as u32;
            if to_broker {
                self.client_next = self.client_next.wrapping_add(len);
            } else {
                self.broker_next = self.broker_next.wrapping_add(len);
            }
        }
    }

    pub fn request(&mut self, bytes: &[u8]) {
        self.send(true, bytes, 1448);
    }

    pub fn response(&mut self, bytes: &[u8]) {
        self.send(false, bytes, 1448);
    }

    /// Closes both directions with FIN.
    pub fn close(&mut self) {
        let (c, b) = (self.client_next, self.broker_next);
        self.push(true, c, b, FIN | ACK, Vec::new());
        self.push(false, b, c.wrapping_add(1), FIN | ACK, Vec::new());
        self.client_next = c.wrapping_add(1);
        self.broker_next = b.wrapping_add(1);
        self.push(true, self.client_next, self.broker_next, ACK, Vec::new());
    }

    /// `segment` as a raw IPv4 packet.
    pub fn render(&self, segment: &Segment) -> Vec<u8> {
        let (src, dst) = if segment.to_broker {
            (self.client, self.broker)
        } else {
            (self.broker, self.client)
        };
        ipv4_tcp(
            src,
            dst,
            segment.seq,
            segment.ack,
            segment.flags,
            &segment.payload,
        )
    }

    /// Every segment as (capture time, raw IPv4 packet).
    pub fn packets(&self) -> Vec<(Duration, Vec<u8>)> {
        self.segments
            .iter()
            .map(|s| (s.ts, self.render(s)))
            .collect()
    }
}

/// The capture time of generated conversations: 2023-11-14T22:13:20Z.
pub const EPOCH: Duration = Duration::from_secs(1_700_000_000);

/// The baseline conversation: Metadata and Produce, each answered, then FIN.
pub fn good_conversation() -> Conversation {
    let mut c = Conversation::open(addr("10.77.0.100:40000"), addr("10.77.0.10:9092"), EPOCH);
    c.request(&metadata_request(1));
    c.response(&metadata_response(1));
    c.request(&produce_request(2));
    c.response(&produce_response(2));
    c.close();
    c
}

/// Writes `packets` to a pcap file of the given link type.
pub fn write_pcap(path: &Path, datalink: DataLink, packets: &[(Duration, Vec<u8>)]) {
    let mut writer = pcap_writer(path, datalink);
    for (ts, data) in packets {
        write_packet(&mut writer, *ts, data);
    }
}

/// Largest packet the generated files may hold (their snaplen).
pub const SNAPLEN: u32 = 1 << 20;

pub fn pcap_writer(path: &Path, datalink: DataLink) -> PcapWriter<BufWriter<File>> {
    let file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = PcapHeader {
        datalink,
        snaplen: SNAPLEN,
        ..PcapHeader::default()
    };
    PcapWriter::with_header(BufWriter::new(file), header).expect("pcap header")
}

pub fn write_packet(writer: &mut PcapWriter<BufWriter<File>>, ts: Duration, data: &[u8]) {
    let len = u32::try_from(data.len()).expect("packet size");
    writer
        .write_packet(&PcapPacket::new(ts, len, data))
        .expect("pcap packet");
}

/// A directory removed (with its content) when dropped, also when a test fails.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under /tmp named after the test.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "kafka-shock-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self(path)
    }

    pub fn join(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of `kafka-shock` did.
#[derive(Debug)]
pub struct Run {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON objects of `--json` output, one per line.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{self:?}"))
            })
            .collect()
    }

    /// The `--stats` counters.
    pub fn counters(&self) -> serde_json::Value {
        let json = self
            .stderr
            .lines()
            .find_map(|line| line.strip_prefix("sniff: counters "))
            .unwrap_or_else(|| panic!("no counters on stderr: {self:?}"));
        serde_json::from_str(json).expect("counters JSON")
    }

    /// The `--stats` peak resident memory, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.stderr
            .lines()
            .find_map(|line| line.strip_prefix("sniff: peak_rss_kib "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak_rss_kib on stderr: {self:?}"))
    }

    /// Asserts a clean exit (0): the input was read to its end, without a panic.
    pub fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "expected exit 0: {self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
    }

    /// Asserts the error exit (2) with a message mentioning `needle`.
    pub fn assert_error(&self, needle: &str) {
        assert_eq!(self.code, Some(2), "expected exit 2: {self:?}");
        assert!(
            self.stderr.contains("kafka-shock: error:") && self.stderr.contains(needle),
            "expected an error mentioning {needle:?}: {self:?}"
        );
    }
}

/// Runs the real `kafka-shock` binary with `args`.
pub fn kafka_shock(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-shock"))
        .args(args)
        .output()
        .expect("running kafka-shock");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `kafka-shock sniff --pcap FILE --json --stats`.
pub fn sniff_json(pcap: &Path) -> Run {
    let path = pcap.to_str().expect("UTF-8 path");
    kafka_shock(&["sniff", "--pcap", path, "--json", "--stats"])
}
