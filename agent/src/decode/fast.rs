//! A hand-written reader for what nearly all captured traffic is: request
//! headers, Produce requests and Produce responses.
//!
//! kafka-protocol decodes every field into owned structures, which for a
//! one-record Produce costs more than the rest of the sniffer. These readers
//! borrow from the frame and keep only what the sniffer reports. They accept
//! only what they fully understand (no tagged fields, no negative lengths,
//! valid UTF-8, nothing truncated) and return `None` otherwise, so the caller
//! falls back to kafka-protocol: whenever they accept, the full decode would
//! have succeeded with the same result (the unit tests and the fuzz test
//! check it).

use uuid::Uuid;

use super::records::count_records;

/// Reads Kafka primitive types from a borrowed frame.
struct Reader<'a> {
    bytes: &'a [u8],
    /// Flexible versions: compact lengths and tagged fields.
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], flexible: bool) -> Self {
        Self { bytes, flexible }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(drop)
    }

    fn uuid(&mut self) -> Option<Uuid> {
        self.array().map(Uuid::from_bytes)
    }

    /// An unsigned varint of at most four bytes: longer ones (or lengths over
    /// 256 MiB) are left to kafka-protocol, whose five-byte reading truncates.
    fn varint(&mut self) -> Option<u32> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = *self.take(1)?.first()?;
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A length prefix: `i16` or `i32` in classic versions, varint of length
    /// plus one in flexible ones. `Some(None)` is null.
    fn length(&mut self, wide: bool) -> Option<Option<usize>> {
        let length = if self.flexible {
            i64::from(self.varint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match length {
            -1 => Some(None),
            n => usize::try_from(n).ok().map(Some),
        }
    }

    /// A nullable string.
    fn nullable_str(&mut self) -> Option<Option<&'a str>> {
        match self.length(false)? {
            None => Some(None),
            Some(n) => std::str::from_utf8(self.take(n)?).ok().map(Some),
        }
    }

    /// A string that may not be null.
    fn str(&mut self) -> Option<&'a str> {
        self.nullable_str()?
    }

    /// Nullable bytes.
    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.length(true)? {
            None => Some(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// The element count of an array that may not be null; every element
    /// takes at least one byte, so a count beyond the bytes left is refused.
    fn count(&mut self) -> Option<usize> {
        self.length(true)?.filter(|&n| n <= self.bytes.len())
    }

    /// The tagged fields of a flexible structure: only an empty set is understood.
    fn no_tags(&mut self) -> Option<()> {
        if self.flexible && self.varint()? != 0 {
            return None;
        }
        Some(())
    }
}

/// Produce versions the fast path reads (those kafka-protocol decodes).
const PRODUCE_VERSIONS: std::ops::RangeInclusive<i16> = 3..=13;
/// First flexible Produce version.
const PRODUCE_FLEXIBLE: i16 = 9;
/// First Produce version that names topics by id.
const PRODUCE_TOPIC_IDS: i16 = 13;

/// A request header (version 1 or 2): the client id and the header's length.
/// The fixed part (api key, version, correlation id) is read by the caller.
pub(super) fn request_header(frame: &[u8], header_version: i16) -> Option<(Option<&str>, usize)> {
    if !(1..=2).contains(&header_version) {
        return None;
    }
    let mut reader = Reader::new(frame.get(8..)?, false);
    let client_id = reader.nullable_str()?;
    if header_version >= 2 {
        reader.flexible = true;
        reader.no_tags()?;
    }
    Some((client_id, frame.len() - reader.bytes.len()))
}

/// What the sniffer reports of a Produce request, besides its topics.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ProduceRequestView<'a> {
    pub transactional_id: Option<&'a str>,
    pub acks: i16,
    /// Records in v2 batches, `None` when any partition's are not.
    pub records: Option<u64>,
}

/// Reads a Produce request body, telling `topic` each topic as the request names it (by name
/// up to v12, by id from v13) as it goes: a caller collecting them needs no vector of its
/// own, and must drop those it was told when the body turns out unreadable (`None`).
pub(super) fn produce_request<'a>(
    body: &'a [u8],
    version: i16,
    mut topic: impl FnMut(&'a str, Uuid),
) -> Option<ProduceRequestView<'a>> {
    if !PRODUCE_VERSIONS.contains(&version) {
        return None;
    }
    let mut r = Reader::new(body, version >= PRODUCE_FLEXIBLE);
    let transactional_id = r.nullable_str()?;
    let acks = r.i16()?;
    r.skip(4)?; // timeout
    let topic_count = r.count()?;
    let mut view = ProduceRequestView {
        transactional_id,
        acks,
        records: Some(0),
    };
    for _ in 0..topic_count {
        if version >= PRODUCE_TOPIC_IDS {
            topic("", r.uuid()?);
        } else {
            topic(r.str()?, Uuid::nil());
        }
        for _ in 0..r.count()? {
            r.skip(4)?; // partition index
            let count = r.nullable_bytes()?.map_or(Some(0), count_records);
            view.records = view.records.zip(count).and_then(|(a, b)| a.checked_add(b));
            r.no_tags()?;
        }
        r.no_tags()?;
    }
    r.no_tags()?;
    Some(view)
}

/// Reads a Produce response (header included, size prefix not), telling `code` the
/// partitions' error codes in order, zeros included (and some of them before giving up on
/// an unreadable response with `None`).
pub(super) fn produce_response(
    frame: &[u8],
    version: i16,
    mut code: impl FnMut(i16),
) -> Option<()> {
    if !PRODUCE_VERSIONS.contains(&version) {
        return None;
    }
    let mut r = Reader::new(frame, version >= PRODUCE_FLEXIBLE);
    r.skip(4)?; // correlation id
    r.no_tags()?;
    for _ in 0..r.count()? {
        if version >= PRODUCE_TOPIC_IDS {
            r.skip(16)?;
        } else {
            r.str()?;
        }
        for _ in 0..r.count()? {
            r.skip(4)?; // partition index
            code(r.i16()?);
            r.skip(if version >= 5 { 24 } else { 16 })?; // offsets, append time
            if version >= 8 {
                for _ in 0..r.count()? {
                    r.skip(4)?; // batch index
                    r.nullable_str()?;
                    r.no_tags()?;
                }
                r.nullable_str()?;
            }
            r.no_tags()?;
        }
        r.no_tags()?;
    }
    r.skip(4)?; // throttle time
    r.no_tags()?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::guard::decode_guarded;
    use crate::decode::records::tests::batch;
    use crate::decode::request::produce_view;
    use crate::decode::{decode_request, decode_response};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::produce_response::{
        BatchIndexAndErrorMessage, LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{
        ApiKey, BrokerId, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
        TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use kafka_protocol::records::Compression;

    /// Shapes of message per version: client ids, acks, topic and partition
    /// counts, record batches of every kind, errors.
    const SHAPES: usize = 24;

    fn encode(buf: &mut BytesMut, value: &impl Encodable, version: i16) {
        value.encode(buf, version).expect("encode");
    }

    fn records(kind: usize) -> Option<Bytes> {
        match kind % 5 {
            0 => None,
            1 => Some(batch(1, Compression::None)),
            2 => Some(batch(3, Compression::Gzip)),
            3 => {
                let mut legacy = batch(2, Compression::None).to_vec();
                legacy[16] = 1;
                Some(legacy.into())
            }
            _ => Some(Bytes::new()),
        }
    }

    /// A real Produce request frame (no size prefix) of `version`.
    fn request(version: i16, shape: usize) -> Vec<u8> {
        let client_id = [None, Some("perf-producer-client"), Some("")][shape % 3];
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(client_id.map(StrBytes::from_static_str));
        let topic = |t: usize| {
            let partitions = (0..shape % 4)
                .map(|p| {
                    PartitionProduceData::default()
                        .with_index(p as i32)
                        .with_records(records(p + shape))
                })
                .collect();
            let topic = TopicProduceData::default().with_partition_data(partitions);
            match (version >= PRODUCE_TOPIC_IDS, t % 3) {
                (true, 2) => topic,
                (true, n) => topic.with_topic_id(Uuid::from_u128(0x5eed + n as u128)),
                (false, 2) => topic.with_name(TopicName(StrBytes::from_static_str(""))),
                (false, n) => topic.with_name(TopicName(StrBytes::from_string(format!("t{n}")))),
            }
        };
        let transactional_id = [None, Some("txn-1"), Some("")][shape / 3 % 3];
        let body = ProduceRequest::default()
            .with_transactional_id(
                transactional_id.map(|id| TransactionalId(StrBytes::from_static_str(id))),
            )
            .with_acks([1, -1, 0][shape % 3])
            .with_timeout_ms(30_000)
            .with_topic_data((0..shape % 5).map(topic).collect());
        let mut buf = BytesMut::new();
        encode(
            &mut buf,
            &header,
            ApiKey::Produce.request_header_version(version),
        );
        encode(&mut buf, &body, version);
        buf.to_vec()
    }

    /// A real Produce response frame (no size prefix) of `version`; with
    /// `leader`, v10+ partitions carry the tagged current leader.
    fn response(version: i16, shape: usize, leader: bool) -> Vec<u8> {
        let partition = |p: usize| {
            let mut partition = PartitionProduceResponse::default()
                .with_index(p as i32)
                .with_error_code([0, 6, 3, 0, 87, -1][(p + shape) % 6])
                .with_base_offset(42)
                .with_log_append_time_ms(-1);
            if version >= 5 {
                partition = partition.with_log_start_offset(0);
            }
            if version >= 8 && shape % 2 == 1 {
                let error = BatchIndexAndErrorMessage::default()
                    .with_batch_index(0)
                    .with_batch_index_error_message(Some(StrBytes::from_static_str("bad")));
                partition = partition
                    .with_record_errors(vec![error.clone(), error])
                    .with_error_message(Some(StrBytes::from_static_str("invalid record")));
            }
            if version >= 10 && leader {
                let current = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(2))
                    .with_leader_epoch(5);
                partition = partition.with_current_leader(current);
            }
            partition
        };
        let topic = |t: usize| {
            let topic = TopicProduceResponse::default()
                .with_partition_responses((0..(t + shape) % 4).map(partition).collect());
            if version >= PRODUCE_TOPIC_IDS {
                topic.with_topic_id(Uuid::from_u128(0x5eed + t as u128))
            } else {
                topic.with_name(TopicName(StrBytes::from_string(format!("t{t}"))))
            }
        };
        let body = ProduceResponse::default()
            .with_responses((0..shape % 3).map(topic).collect())
            .with_throttle_time_ms(0);
        let mut buf = BytesMut::new();
        let header = ResponseHeader::default().with_correlation_id(7);
        encode(
            &mut buf,
            &header,
            ApiKey::Produce.response_header_version(version),
        );
        encode(&mut buf, &body, version);
        buf.to_vec()
    }

    /// Checks that where the fast path reads `frame`, kafka-protocol decodes it
    /// the same; returns whether the fast path read the whole request.
    fn agrees_on_request(frame: &[u8]) -> bool {
        let Some(version) = frame.get(2..4).map(|v| i16::from_be_bytes([v[0], v[1]])) else {
            return false;
        };
        let header_version = ApiKey::Produce.request_header_version(version).max(1);
        let Some((client_id, header_len)) = request_header(frame, header_version) else {
            return false;
        };
        let bytes = Bytes::copy_from_slice(frame);
        let (header, body) = decode_guarded::<RequestHeader>(&bytes, header_version)
            .expect("kafka-protocol reads a header the fast path read");
        assert_eq!(header.client_id.as_deref(), client_id);
        assert_eq!(frame.len() - body.len(), header_len);
        let mut topics = Vec::new();
        let Some(view) = produce_request(&frame[header_len..], version, |name, id| {
            topics.push((name, id));
        }) else {
            return false;
        };
        let (full, _) = decode_guarded::<ProduceRequest>(&body, version)
            .expect("kafka-protocol reads a request the fast path read");
        assert_eq!(produce_view(&full), view);
        let full_topics: Vec<(&str, Uuid)> = full
            .topic_data
            .iter()
            .map(|t| (t.name.as_str(), t.topic_id))
            .collect();
        assert_eq!(full_topics, topics);
        true
    }

    /// As [`agrees_on_request`], for a response to a request of `version`.
    fn agrees_on_response(frame: &[u8], version: i16) -> bool {
        let mut codes = Vec::new();
        if produce_response(frame, version, |code| codes.push(code)).is_none() {
            return false;
        }
        let bytes = Bytes::copy_from_slice(frame);
        let header_version = ApiKey::Produce.response_header_version(version);
        let (_, body) = decode_guarded::<ResponseHeader>(&bytes, header_version)
            .expect("kafka-protocol reads a header the fast path read");
        let (full, _) = decode_guarded::<ProduceResponse>(&body, version)
            .expect("kafka-protocol reads a response the fast path read");
        let expected: Vec<i16> = full
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .map(|p| p.error_code)
            .collect();
        assert_eq!(codes, expected);
        true
    }

    #[test]
    fn reads_every_produce_version_as_kafka_protocol_does() {
        for version in PRODUCE_VERSIONS {
            for shape in 0..SHAPES {
                let frame = request(version, shape);
                assert!(
                    agrees_on_request(&frame),
                    "request v{version} shape {shape}"
                );
                let frame = response(version, shape, false);
                assert!(
                    agrees_on_response(&frame, version),
                    "response v{version} {shape}"
                );
            }
        }
    }

    #[test]
    fn leaves_tagged_fields_to_kafka_protocol_with_the_same_result() {
        for version in 10..=13 {
            let frame = response(version, 5, true);
            assert!(!agrees_on_response(&frame, version));
            let plain = response(version, 5, false);
            let tagged = decode_response(&Bytes::from(frame.clone()), 0, version, frame.len());
            let fast = decode_response(&Bytes::from(plain.clone()), 0, version, plain.len());
            assert_eq!(tagged, fast);
            assert!(!tagged.errors.is_empty() && tagged.error.is_none());
        }
        // A request header with a tagged field.
        let mut frame = request(9, 4);
        let tags_at = 8 + 2 + "perf-producer-client".len();
        frame.splice(tags_at..=tags_at, [1, 0, 1, 0xaa]);
        assert!(!agrees_on_request(&frame));
        let info = decode_request(&Bytes::from(frame.clone()), frame.len()).expect("info");
        assert_eq!(info.error, None);
        assert_eq!(info.client_id.as_deref(), Some("perf-producer-client"));
    }

    #[test]
    fn leaves_invalid_utf8_and_short_frames_to_kafka_protocol() {
        let mut frame = request(8, 1);
        let name_at = frame
            .windows(2)
            .position(|w| w == b"t0")
            .expect("topic name");
        frame[name_at] = 0xff;
        assert!(!agrees_on_request(&frame));
        let info = decode_request(&Bytes::from(frame.clone()), frame.len()).expect("info");
        assert!(info.error.is_some());
        let whole = request(13, 7);
        for len in 0..whole.len() {
            agrees_on_request(&whole[..len]);
        }
    }

    #[test]
    fn a_request_cut_after_its_topics_names_none() {
        // Two topics with partitions: cut short, the fast path names topics before giving
        // up, and kafka-protocol fails too; what it named must not be reported.
        let whole = request(8, 7);
        let cut = &whole[..whole.len() - 3];
        let mut named = 0;
        assert!(produce_request(&cut[8 + 2 + 20..], 8, |_, _| named += 1).is_none());
        assert_eq!(named, 2);
        let info = decode_request(cut, cut.len()).expect("info");
        assert!(matches!(
            info.error,
            Some(crate::decode::DecodeError::Body(_))
        ));
        assert_eq!(info.topics, []);
    }

    use crate::test_rng::Rng;

    /// Mutates `frame` as a broken or hostile peer would: flipped bytes,
    /// boundary values, truncation, insertion and deletion.
    fn mutate(rng: &mut Rng, frame: &mut Vec<u8>) {
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(frame.len());
            match rng.below(6) {
                0 => frame[at] = rng.next() as u8,
                1 => frame[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)],
                2 => frame.truncate(at),
                3 => frame.insert(at, rng.next() as u8),
                4 if at < frame.len() => {
                    frame.remove(at);
                }
                _ => frame[at] ^= 1 << rng.below(8),
            }
            if frame.is_empty() {
                return;
            }
        }
    }

    /// Differential fuzzing: wherever the fast path accepts a mutated frame,
    /// kafka-protocol decodes it to the same result.
    #[test]
    fn agrees_with_kafka_protocol_on_mutated_frames() {
        let mut rng = Rng(0x6b73);
        let (mut requests, mut responses) = (0, 0);
        for version in PRODUCE_VERSIONS {
            for shape in 0..SHAPES {
                for _ in 0..150 {
                    let mut frame = request(version, shape);
                    mutate(&mut rng, &mut frame);
                    requests += usize::from(agrees_on_request(&frame));
                    let mut frame = response(version, shape, shape % 4 == 0);
                    mutate(&mut rng, &mut frame);
                    responses += usize::from(agrees_on_response(&frame, version));
                }
            }
        }
        assert!(
            requests > 1000 && responses > 1000,
            "{requests} {responses}"
        );
    }
}
