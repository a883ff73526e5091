//! Response frames: the error codes they carry, and the topic ids they teach.

use bytes::Bytes;
use kafka_protocol::messages::{self, ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::fast;
use super::guard::decode_guarded;
use super::{DecodeError, error_name, for_each_api};

/// What one response frame says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Kafka error names found at any level, each once, in order of appearance.
    pub errors: Vec<String>,
    /// (topic id, name) pairs the response carries.
    pub topic_ids: Vec<(Uuid, String)>,
    /// Why the response was not fully decoded.
    pub error: Option<DecodeError>,
}

/// The correlation id at the start of a response frame (size prefix removed).
pub fn response_correlation_id(frame: &[u8]) -> Option<i32> {
    let id: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(id))
}

/// Decodes one response frame (without its size prefix) to the request with
/// this api key and version. `declared` as for requests: when larger than
/// `frame`, the body is not decoded.
pub fn decode_response(
    frame: &[u8],
    api_key: i16,
    api_version: i16,
    declared: usize,
) -> ResponseInfo {
    let mut info = ResponseInfo::default();
    let Ok(key) = ApiKey::try_from(api_key) else {
        info.error = Some(DecodeError::UnknownApiKey(api_key));
        return info;
    };
    if declared > frame.len() {
        info.error = Some(DecodeError::Oversized(declared));
        return info;
    }
    let mut found = Codes::default();
    if key == ApiKey::Produce
        && fast::produce_response(frame, api_version, |code| found.add(code)).is_some()
    {
        info.errors = found.names();
        return info;
    }
    let frame = Bytes::copy_from_slice(frame);
    // ApiVersions answers with header v0 whatever the version, so that a
    // client can read it before versions are agreed; the crate encodes that.
    let header_version = key.response_header_version(api_version);
    let body = match decode_guarded::<ResponseHeader>(&frame, header_version) {
        Ok((_, body)) => body,
        Err(e) => {
            info.error = Some(DecodeError::Header(e.to_string()));
            return info;
        }
    };
    match decode_body(key, api_version, &body) {
        Ok(response) => {
            let mut codes = Codes::default();
            codes.response(&response, &mut info.topic_ids);
            info.errors = codes.names();
        }
        Err(e) => info.error = Some(DecodeError::Body(e.to_string())),
    }
    info
}

macro_rules! decode_response_body {
    ($($key:ident: $request:ident, $response:ident;)*) => {
        /// Decodes the body of any response kafka-protocol knows.
        fn decode_body(key: ApiKey, version: i16, body: &Bytes) -> anyhow::Result<ResponseKind> {
            Ok(match key {
                $(ApiKey::$key => ResponseKind::$key(decode_guarded::<messages::$response>(body, version)?.0),)*
            })
        }
    };
}
for_each_api!(decode_response_body);

/// Error codes collected from one response, each once.
#[derive(Default)]
struct Codes(Vec<i16>);

impl Codes {
    fn add(&mut self, code: i16) {
        if code != 0 && !self.0.contains(&code) {
            self.0.push(code);
        }
    }

    fn names(&self) -> Vec<String> {
        self.0.iter().filter_map(|&code| error_name(code)).collect()
    }

    fn response(&mut self, response: &ResponseKind, learned: &mut Vec<(Uuid, String)>) {
        use ResponseKind as K;
        let mut learn = |name: Option<&StrBytes>, id: Uuid| {
            if let Some(name) = name.filter(|n| !n.is_empty() && !id.is_nil()) {
                learned.push((id, name.to_string()));
            }
        };
        match response {
            K::Produce(r) => r
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .for_each(|p| self.add(p.error_code)),
            K::Fetch(r) => {
                self.add(r.error_code);
                r.responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| self.add(p.error_code));
            }
            K::Metadata(r) => {
                self.add(r.error_code);
                for topic in &r.topics {
                    self.add(topic.error_code);
                    topic.partitions.iter().for_each(|p| self.add(p.error_code));
                    learn(topic.name.as_deref(), topic.topic_id);
                }
            }
            K::ListOffsets(r) => r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| self.add(p.error_code)),
            K::OffsetCommit(r) => r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| self.add(p.error_code)),
            K::OffsetFetch(r) => {
                self.add(r.error_code);
                r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| self.add(p.error_code));
                for group in &r.groups {
                    self.add(group.error_code);
                    group
                        .topics
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .for_each(|p| self.add(p.error_code));
                }
            }
            K::FindCoordinator(r) => {
                self.add(r.error_code);
                r.coordinators.iter().for_each(|c| self.add(c.error_code));
            }
            K::CreateTopics(r) => {
                for topic in &r.topics {
                    self.add(topic.error_code);
                    learn(Some(&topic.name), topic.topic_id);
                }
            }
            K::DeleteTopics(r) => r.responses.iter().for_each(|t| self.add(t.error_code)),
            K::DescribeGroups(r) => r.groups.iter().for_each(|g| self.add(g.error_code)),
            K::DeleteGroups(r) => r.results.iter().for_each(|g| self.add(g.error_code)),
            K::TxnOffsetCommit(r) => r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| self.add(p.error_code)),
            K::AddPartitionsToTxn(r) => {
                self.add(r.error_code);
                let by_txn = r
                    .results_by_transaction
                    .iter()
                    .flat_map(|t| &t.topic_results);
                by_txn
                    .chain(&r.results_by_topic_v3_and_below)
                    .flat_map(|t| &t.results_by_partition)
                    .for_each(|p| self.add(p.partition_error_code));
            }
            K::DeleteRecords(r) => r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| self.add(p.error_code)),
            K::OffsetForLeaderEpoch(r) => r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| self.add(p.error_code)),
            K::CreatePartitions(r) => r.results.iter().for_each(|t| self.add(t.error_code)),
            K::DescribeTopicPartitions(r) => {
                for topic in &r.topics {
                    self.add(topic.error_code);
                    topic.partitions.iter().for_each(|p| self.add(p.error_code));
                    learn(topic.name.as_deref(), topic.topic_id);
                }
            }
            other => self.top_level(other),
        }
    }
}

macro_rules! top_level_error_code {
    ($($key:ident),* $(,)?) => {
        impl Codes {
            /// Responses whose only common error is the top-level `error_code`.
            fn top_level(&mut self, response: &ResponseKind) {
                match response {
                    $(ResponseKind::$key(r) => self.add(r.error_code),)*
                    _ => {}
                }
            }
        }
    };
}

top_level_error_code!(
    AddOffsetsToTxn,
    AddRaftVoter,
    AllocateProducerIds,
    AlterPartition,
    AlterPartitionReassignments,
    AlterShareGroupOffsets,
    ApiVersions,
    AssignReplicasToDirs,
    BeginQuorumEpoch,
    BrokerHeartbeat,
    BrokerRegistration,
    ConsumerGroupHeartbeat,
    ControllerRegistration,
    CreateDelegationToken,
    DeleteShareGroupOffsets,
    DescribeAcls,
    DescribeClientQuotas,
    DescribeCluster,
    DescribeDelegationToken,
    DescribeLogDirs,
    DescribeQuorum,
    DescribeUserScramCredentials,
    ElectLeaders,
    EndQuorumEpoch,
    EndTxn,
    Envelope,
    ExpireDelegationToken,
    FetchSnapshot,
    GetTelemetrySubscriptions,
    Heartbeat,
    InitProducerId,
    JoinGroup,
    LeaveGroup,
    ListConfigResources,
    ListGroups,
    ListPartitionReassignments,
    ListTransactions,
    OffsetDelete,
    PushTelemetry,
    RemoveRaftVoter,
    RenewDelegationToken,
    SaslAuthenticate,
    SaslHandshake,
    ShareAcknowledge,
    ShareFetch,
    ShareGroupHeartbeat,
    SyncGroup,
    UnregisterBroker,
    UpdateFeatures,
    UpdateRaftVoter,
    Vote,
);
