//! Request frames: header, body, and what a fault could match on.

use bytes::Bytes;
use kafka_protocol::messages::{self, ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::fast::{self, ProduceRequestView};
use super::guard::decode_guarded;
use super::records::count_records;
use super::{DecodeError, TopicRef, api_name, for_each_api};

/// Bytes [`plausible_request_start`] needs: size, api key, version,
/// correlation id and client-id length.
pub const REQUEST_PROBE_LEN: usize = 14;

/// What one request frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Api key number.
    pub api_key: i16,
    /// Api version.
    pub api_version: i16,
    /// Pairs the request with its response.
    pub correlation_id: i32,
    /// Client id from the header, when present.
    pub client_id: Option<String>,
    /// Topics touched, by name or id, without duplicates.
    pub topics: Vec<TopicRef>,
    /// Consumer or share group, the first one when several are named.
    pub group_id: Option<String>,
    /// Transactional id, the first one when several are named.
    pub transactional_id: Option<String>,
    /// Produce: total records, when the batches are v2.
    pub records: Option<u64>,
    /// False for Produce with acks=0, which the broker never answers.
    pub expects_response: bool,
    /// Why the frame was not fully decoded.
    pub error: Option<DecodeError>,
}

/// Decodes one request frame (without its size prefix). `declared` is the
/// size the prefix declared: when larger than `frame`, only `frame`'s head
/// was kept and only the header is decoded. `None` when the frame is too
/// short to carry even a correlation id, so it cannot be reported usefully.
pub fn decode_request(frame: &[u8], declared: usize) -> Option<RequestInfo> {
    let fixed = frame.get(..8)?;
    let api_key = i16::from_be_bytes([fixed[0], fixed[1]]);
    let api_version = i16::from_be_bytes([fixed[2], fixed[3]]);
    let mut info = RequestInfo {
        api_key,
        api_version,
        correlation_id: i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        client_id: None,
        topics: Vec::new(),
        group_id: None,
        transactional_id: None,
        records: None,
        expects_response: true,
        error: None,
    };
    let key = ApiKey::try_from(api_key).ok();
    let header_version = key
        .map_or(1, |k| k.request_header_version(api_version))
        .max(1);
    let body_at = match fast::request_header(frame, header_version) {
        Some((client_id, header_len)) => {
            info.client_id = client_id.map(str::to_owned);
            header_len
        }
        None => {
            match decode_guarded::<RequestHeader>(&Bytes::copy_from_slice(frame), header_version) {
                Ok((header, body)) => {
                    info.client_id = header.client_id.map(|id| id.to_string());
                    frame.len() - body.len()
                }
                Err(e) => {
                    info.error = Some(DecodeError::Header(e.to_string()));
                    return Some(info);
                }
            }
        }
    };
    info.error = match key {
        None => Some(DecodeError::UnknownApiKey(api_key)),
        Some(_) if declared > frame.len() => Some(DecodeError::Oversized(declared)),
        Some(k) if !version_supported(k, api_version) => Some(DecodeError::UnsupportedVersion {
            api: api_name(api_key).into_owned(),
            version: api_version,
        }),
        Some(k) => decode_known_body(&mut info, k, frame, body_at),
    };
    Some(info)
}

/// Decodes the body of a request of a known api and supported version, which
/// starts at `body_at` in `frame`, into `info`: Produce by the fast path when it
/// can, everything else (and Produce it cannot read) with kafka-protocol.
fn decode_known_body(
    info: &mut RequestInfo,
    key: ApiKey,
    frame: &[u8],
    body_at: usize,
) -> Option<DecodeError> {
    let version = info.api_version;
    let body = frame.get(body_at..).unwrap_or_default();
    if key == ApiKey::Produce {
        let mut extract = Extract(info);
        if let Some(view) = fast::produce_request(body, version, |name, id| extract.topic(name, id))
        {
            extract.produce(&view);
            return None;
        }
        // Forget what the fast path named before giving up.
        info.topics.clear();
    }
    match decode_body(key, version, &Bytes::copy_from_slice(body)) {
        Ok(request) => {
            Extract(info).request(&request);
            None
        }
        Err(e) => Some(DecodeError::Body(e.to_string())),
    }
}

/// Whether a request plausibly starts at `probe` (size prefix first): used
/// to find a frame boundary after joining a connection mid-stream.
pub fn plausible_request_start(probe: &[u8], max_frame: usize) -> bool {
    let Some(p) = probe.get(..REQUEST_PROBE_LEN) else {
        return false;
    };
    let size = i32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    let api_key = i16::from_be_bytes([p[4], p[5]]);
    let version = i16::from_be_bytes([p[6], p[7]]);
    let correlation_id = i32::from_be_bytes([p[8], p[9], p[10], p[11]]);
    let client_id_len = i16::from_be_bytes([p[12], p[13]]);
    let Ok(size) = usize::try_from(size) else {
        return false;
    };
    let key_fits = ApiKey::try_from(api_key).is_ok_and(|key| version_supported(key, version));
    let client_id_fits =
        client_id_len == -1 || usize::try_from(client_id_len).is_ok_and(|len| len + 10 <= size);
    (10..=max_frame).contains(&size) && key_fits && correlation_id >= 0 && client_id_fits
}

fn version_supported(key: ApiKey, version: i16) -> bool {
    let range = key.valid_versions();
    (range.min..=range.max).contains(&version)
}

macro_rules! decode_request_body {
    ($($key:ident: $request:ident, $response:ident;)*) => {
        /// Decodes the body of any request kafka-protocol knows.
        fn decode_body(key: ApiKey, version: i16, body: &Bytes) -> anyhow::Result<RequestKind> {
            Ok(match key {
                $(ApiKey::$key => RequestKind::$key(decode_guarded::<messages::$request>(body, version)?.0),)*
            })
        }
    };
}
for_each_api!(decode_request_body);

/// What the sniffer reports of a Produce request decoded by kafka-protocol, besides its
/// topics, as the fast path reads it.
pub(super) fn produce_view(r: &messages::ProduceRequest) -> ProduceRequestView<'_> {
    let mut records = Some(0u64);
    for partition in r.topic_data.iter().flat_map(|t| &t.partition_data) {
        let count = partition.records.as_deref().map_or(Some(0), count_records);
        records = records.zip(count).and_then(|(a, b)| a.checked_add(b));
    }
    ProduceRequestView {
        transactional_id: r.transactional_id.as_deref().map(StrBytes::as_str),
        acks: r.acks,
        records,
    }
}

/// Fills a [`RequestInfo`] from a decoded request.
struct Extract<'a>(&'a mut RequestInfo);

impl Extract<'_> {
    fn topic(&mut self, name: &str, id: Uuid) {
        let topic = if !name.is_empty() {
            TopicRef::Name(name.to_owned())
        } else if !id.is_nil() {
            TopicRef::Id(id)
        } else {
            return;
        };
        if !self.0.topics.contains(&topic) {
            self.0.topics.push(topic);
        }
    }

    fn name(&mut self, name: &str) {
        self.topic(name, Uuid::nil());
    }

    fn id(&mut self, id: Uuid) {
        self.topic("", id);
    }

    fn group(&mut self, group: &str) {
        if self.0.group_id.is_none() && !group.is_empty() {
            self.0.group_id = Some(group.to_owned());
        }
    }

    fn transaction(&mut self, id: &str) {
        if self.0.transactional_id.is_none() && !id.is_empty() {
            self.0.transactional_id = Some(id.to_owned());
        }
    }

    fn request(&mut self, request: &RequestKind) {
        use RequestKind as K;
        match request {
            K::Produce(r) => {
                r.topic_data
                    .iter()
                    .for_each(|t| self.topic(&t.name, t.topic_id));
                self.produce(&produce_view(r));
            }
            K::Fetch(r) => r
                .topics
                .iter()
                .for_each(|t| self.topic(&t.topic, t.topic_id)),
            K::ListOffsets(r) => r.topics.iter().for_each(|t| self.name(&t.name)),
            K::Metadata(r) => r.topics.iter().flatten().for_each(|t| {
                self.topic(t.name.as_deref().map_or("", StrBytes::as_str), t.topic_id);
            }),
            K::OffsetCommit(r) => {
                self.group(&r.group_id);
                r.topics
                    .iter()
                    .for_each(|t| self.topic(&t.name, t.topic_id));
            }
            K::OffsetFetch(r) => {
                self.group(&r.group_id);
                r.topics.iter().flatten().for_each(|t| self.name(&t.name));
                for group in &r.groups {
                    self.group(&group.group_id);
                    group
                        .topics
                        .iter()
                        .flatten()
                        .for_each(|t| self.topic(&t.name, t.topic_id));
                }
            }
            K::FindCoordinator(r) => {
                let keys = std::iter::once(&r.key).chain(&r.coordinator_keys);
                for key in keys {
                    match r.key_type {
                        0 => self.group(key),
                        1 => self.transaction(key),
                        _ => {}
                    }
                }
            }
            K::JoinGroup(r) => self.group(&r.group_id),
            K::Heartbeat(r) => self.group(&r.group_id),
            K::LeaveGroup(r) => self.group(&r.group_id),
            K::SyncGroup(r) => self.group(&r.group_id),
            K::DescribeGroups(r) => r.groups.iter().for_each(|g| self.group(g)),
            K::DeleteGroups(r) => r.groups_names.iter().for_each(|g| self.group(g)),
            K::ConsumerGroupDescribe(r) => r.group_ids.iter().for_each(|g| self.group(g)),
            K::CreateTopics(r) => r.topics.iter().for_each(|t| self.name(&t.name)),
            K::DeleteTopics(r) => {
                r.topic_names.iter().for_each(|n| self.name(n));
                r.topics.iter().for_each(|t| {
                    self.topic(t.name.as_deref().map_or("", StrBytes::as_str), t.topic_id)
                });
            }
            K::DeleteRecords(r) => r.topics.iter().for_each(|t| self.name(&t.name)),
            K::CreatePartitions(r) => r.topics.iter().for_each(|t| self.name(&t.name)),
            K::InitProducerId(r) => {
                self.transaction(r.transactional_id.as_deref().map_or("", StrBytes::as_str))
            }
            K::OffsetForLeaderEpoch(r) => r.topics.iter().for_each(|t| self.name(&t.topic)),
            K::AddPartitionsToTxn(r) => {
                self.transaction(&r.v3_and_below_transactional_id);
                r.v3_and_below_topics
                    .iter()
                    .for_each(|t| self.name(&t.name));
                for txn in &r.transactions {
                    self.transaction(&txn.transactional_id);
                    txn.topics.iter().for_each(|t| self.name(&t.name));
                }
            }
            K::AddOffsetsToTxn(r) => {
                self.transaction(&r.transactional_id);
                self.group(&r.group_id);
            }
            K::EndTxn(r) => self.transaction(&r.transactional_id),
            K::TxnOffsetCommit(r) => {
                self.transaction(&r.transactional_id);
                self.group(&r.group_id);
                r.topics.iter().for_each(|t| self.name(&t.name));
            }
            K::DescribeTransactions(r) => {
                r.transactional_ids.iter().for_each(|t| self.transaction(t))
            }
            K::DescribeProducers(r) => r.topics.iter().for_each(|t| self.name(&t.name)),
            K::AlterPartitionReassignments(r) => r.topics.iter().for_each(|t| self.name(&t.name)),
            K::ListPartitionReassignments(r) => {
                r.topics.iter().flatten().for_each(|t| self.name(&t.name))
            }
            K::ElectLeaders(r) => r
                .topic_partitions
                .iter()
                .flatten()
                .for_each(|t| self.name(&t.topic)),
            K::OffsetDelete(r) => {
                self.group(&r.group_id);
                r.topics.iter().for_each(|t| self.name(&t.name));
            }
            K::ConsumerGroupHeartbeat(r) => {
                self.group(&r.group_id);
                r.subscribed_topic_names
                    .iter()
                    .flatten()
                    .for_each(|n| self.name(n));
                r.topic_partitions
                    .iter()
                    .flatten()
                    .for_each(|t| self.id(t.topic_id));
            }
            K::ShareGroupHeartbeat(r) => {
                self.group(&r.group_id);
                r.subscribed_topic_names
                    .iter()
                    .flatten()
                    .for_each(|n| self.name(n));
            }
            K::ShareFetch(r) => {
                self.group(r.group_id.as_deref().map_or("", StrBytes::as_str));
                r.topics.iter().for_each(|t| self.id(t.topic_id));
            }
            K::ShareAcknowledge(r) => {
                self.group(r.group_id.as_deref().map_or("", StrBytes::as_str));
                r.topics.iter().for_each(|t| self.id(t.topic_id));
            }
            K::DescribeTopicPartitions(r) => r.topics.iter().for_each(|t| self.name(&t.name)),
            _ => {}
        }
    }

    /// A Produce request's fields besides its topics (named to [`Extract::topic`]).
    fn produce(&mut self, view: &ProduceRequestView<'_>) {
        self.transaction(view.transactional_id.unwrap_or(""));
        self.0.expects_response = view.acks != 0;
        self.0.records = view.records;
    }
}
