//! Rewrites of whole requests and responses the proxy forwards: decode at the version on the
//! wire, change one thing, encode again with kafka-protocol, keeping the header bytes as they
//! were and everything else as decoded (unknown tagged fields included).
//!
//! - Throttle: `throttle_time_ms` in a response of any api that carries it (KIP-219: the
//!   client then holds its next requests to that broker for that long).
//! - Metadata errors: the error written into the broker's own response, per matched topic,
//!   with no partitions, as a broker reports a topic whose leader is unknown; brokers, cluster
//!   id and controller stay the broker's.
//! - Corrupt: the record values of matched topics, in a Produce request or a Fetch response.
//!
//! Each returns `None` when there was nothing to change, so the caller forwards the original
//! bytes untouched (the common case costs no re-encoding).

use bytes::Bytes;
use kafka_protocol::messages::{self, ApiKey, FetchResponse, MetadataResponse, ProduceRequest};
use uuid::Uuid;

use super::ProxyError;
use super::codec::{RequestFrame, ResponseFrame, decode_exact};
use super::corrupt::{Corruption, corrupt_batches};
use crate::FastMap;

/// The topics an action applies to inside a message: the fault's topic names (all topics when
/// it names none), a topic named by id counting by the name learned for it.
pub(crate) struct TopicFilter<'a> {
    /// The fault's `match.topics`.
    pub(crate) names: &'a [String],
    /// Names of topic ids learned from the broker.
    pub(crate) ids: &'a FastMap<Uuid, String>,
}

impl TopicFilter<'_> {
    fn hits(&self, name: &str, id: Uuid) -> bool {
        self.names.is_empty()
            || (!name.is_empty() && self.names.iter().any(|n| n == name))
            || self
                .ids
                .get(&id)
                .is_some_and(|known| self.names.contains(known))
    }
}

/// What setting `throttle_time_ms` did to a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Throttle {
    /// The rewritten frame, size-prefixed.
    Set(Vec<u8>),
    /// The broker already asked for at least that long: the response goes as it was.
    AlreadyThrottled,
    /// This api or version has no `throttle_time_ms`.
    NotCarried,
}

macro_rules! throttled_apis {
    ($($key:ident: $response:ident,)*) => {
        /// Sets `throttle_time_ms` to `ms` in `frame`, the response (without its size prefix)
        /// to a request of `key` at `version`.
        pub(crate) fn throttle(
            frame: &Bytes,
            key: ApiKey,
            version: i16,
            ms: i32,
        ) -> Result<Throttle, ProxyError> {
            let response = ResponseFrame::parse(frame, key, version)?;
            match key {
                $(ApiKey::$key => {
                    let (mut body, trailing) =
                        decode_exact::<messages::$response>(&response.body, version)?;
                    if body.throttle_time_ms >= ms {
                        return Ok(Throttle::AlreadyThrottled);
                    }
                    body.throttle_time_ms = ms;
                    let rewritten = response.with_body(&body, version, &trailing)?;
                    // Versions before the field was added encode without it.
                    Ok(if rewritten[4..] == frame[..] {
                        Throttle::NotCarried
                    } else {
                        Throttle::Set(rewritten)
                    })
                })*
                _ => Ok(Throttle::NotCarried),
            }
        }
    };
}

throttled_apis! {
    Produce: ProduceResponse,
    Fetch: FetchResponse,
    ListOffsets: ListOffsetsResponse,
    Metadata: MetadataResponse,
    OffsetCommit: OffsetCommitResponse,
    OffsetFetch: OffsetFetchResponse,
    FindCoordinator: FindCoordinatorResponse,
    JoinGroup: JoinGroupResponse,
    Heartbeat: HeartbeatResponse,
    LeaveGroup: LeaveGroupResponse,
    SyncGroup: SyncGroupResponse,
    DescribeGroups: DescribeGroupsResponse,
    ListGroups: ListGroupsResponse,
    ApiVersions: ApiVersionsResponse,
    CreateTopics: CreateTopicsResponse,
    DeleteTopics: DeleteTopicsResponse,
    DeleteRecords: DeleteRecordsResponse,
    InitProducerId: InitProducerIdResponse,
    OffsetForLeaderEpoch: OffsetForLeaderEpochResponse,
    AddPartitionsToTxn: AddPartitionsToTxnResponse,
    AddOffsetsToTxn: AddOffsetsToTxnResponse,
    EndTxn: EndTxnResponse,
    TxnOffsetCommit: TxnOffsetCommitResponse,
    DescribeAcls: DescribeAclsResponse,
    CreateAcls: CreateAclsResponse,
    DeleteAcls: DeleteAclsResponse,
    DescribeConfigs: DescribeConfigsResponse,
    AlterConfigs: AlterConfigsResponse,
    AlterReplicaLogDirs: AlterReplicaLogDirsResponse,
    DescribeLogDirs: DescribeLogDirsResponse,
    CreatePartitions: CreatePartitionsResponse,
    CreateDelegationToken: CreateDelegationTokenResponse,
    RenewDelegationToken: RenewDelegationTokenResponse,
    ExpireDelegationToken: ExpireDelegationTokenResponse,
    DescribeDelegationToken: DescribeDelegationTokenResponse,
    DeleteGroups: DeleteGroupsResponse,
    ElectLeaders: ElectLeadersResponse,
    IncrementalAlterConfigs: IncrementalAlterConfigsResponse,
    AlterPartitionReassignments: AlterPartitionReassignmentsResponse,
    ListPartitionReassignments: ListPartitionReassignmentsResponse,
    OffsetDelete: OffsetDeleteResponse,
    DescribeClientQuotas: DescribeClientQuotasResponse,
    AlterClientQuotas: AlterClientQuotasResponse,
    DescribeUserScramCredentials: DescribeUserScramCredentialsResponse,
    AlterUserScramCredentials: AlterUserScramCredentialsResponse,
    AlterPartition: AlterPartitionResponse,
    UpdateFeatures: UpdateFeaturesResponse,
    DescribeCluster: DescribeClusterResponse,
    DescribeProducers: DescribeProducersResponse,
    BrokerRegistration: BrokerRegistrationResponse,
    BrokerHeartbeat: BrokerHeartbeatResponse,
    UnregisterBroker: UnregisterBrokerResponse,
    DescribeTransactions: DescribeTransactionsResponse,
    ListTransactions: ListTransactionsResponse,
    AllocateProducerIds: AllocateProducerIdsResponse,
    ConsumerGroupHeartbeat: ConsumerGroupHeartbeatResponse,
    ConsumerGroupDescribe: ConsumerGroupDescribeResponse,
    ControllerRegistration: ControllerRegistrationResponse,
    GetTelemetrySubscriptions: GetTelemetrySubscriptionsResponse,
    PushTelemetry: PushTelemetryResponse,
    AssignReplicasToDirs: AssignReplicasToDirsResponse,
    ListConfigResources: ListConfigResourcesResponse,
    DescribeTopicPartitions: DescribeTopicPartitionsResponse,
    ShareGroupHeartbeat: ShareGroupHeartbeatResponse,
    ShareGroupDescribe: ShareGroupDescribeResponse,
    ShareFetch: ShareFetchResponse,
    ShareAcknowledge: ShareAcknowledgeResponse,
    AddRaftVoter: AddRaftVoterResponse,
    RemoveRaftVoter: RemoveRaftVoterResponse,
    UpdateRaftVoter: UpdateRaftVoterResponse,
    DescribeShareGroupOffsets: DescribeShareGroupOffsetsResponse,
    AlterShareGroupOffsets: AlterShareGroupOffsetsResponse,
    DeleteShareGroupOffsets: DeleteShareGroupOffsetsResponse,
    FetchSnapshot: FetchSnapshotResponse,
}

/// Writes error `code` into every topic of `frame` (a Metadata response at `version`, without
/// its size prefix) that `topics` selects, dropping its partitions. Returns the new frame and
/// how many topics got the error, or `None` when the response named no such topic.
pub(crate) fn inject_metadata_error(
    frame: &Bytes,
    version: i16,
    code: i16,
    topics: &TopicFilter<'_>,
) -> Result<Option<(Vec<u8>, usize)>, ProxyError> {
    let response = ResponseFrame::parse(frame, ApiKey::Metadata, version)?;
    let (mut body, trailing) = decode_exact::<MetadataResponse>(&response.body, version)?;
    let mut errored = 0;
    for topic in &mut body.topics {
        let name = topic.name.as_deref().map_or("", |n| n.as_str());
        if topics.hits(name, topic.topic_id) {
            topic.error_code = code;
            topic.partitions.clear();
            errored += 1;
        }
    }
    if errored == 0 {
        return Ok(None);
    }
    Ok(Some((
        response.with_body(&body, version, &trailing)?,
        errored,
    )))
}

/// Corrupts the record values of the selected topics in a Produce request; returns the new
/// size-prefixed frame and the records corrupted, or `None` when no value changed.
pub(crate) fn corrupt_produce(
    request: &RequestFrame,
    topics: &TopicFilter<'_>,
    corruption: Corruption,
) -> Result<Option<(Vec<u8>, u64)>, ProxyError> {
    let (mut body, _) = decode_exact::<ProduceRequest>(&request.body, request.version)?;
    let mut records = 0;
    for topic in &mut body.topic_data {
        if !topics.hits(&topic.name, topic.topic_id) {
            continue;
        }
        for partition in &mut topic.partition_data {
            records += corrupt_field(&mut partition.records, corruption);
        }
    }
    if records == 0 {
        return Ok(None);
    }
    Ok(Some((request.with_body(&body)?, records)))
}

/// Corrupts the record values of the selected topics in `frame`, a Fetch response (without
/// its size prefix) at `version`; returns the new frame and the records corrupted, or `None`
/// when no value changed.
pub(crate) fn corrupt_fetch(
    frame: &Bytes,
    version: i16,
    topics: &TopicFilter<'_>,
    corruption: Corruption,
) -> Result<Option<(Vec<u8>, u64)>, ProxyError> {
    let response = ResponseFrame::parse(frame, ApiKey::Fetch, version)?;
    let (mut body, trailing) = decode_exact::<FetchResponse>(&response.body, version)?;
    let mut records = 0;
    for topic in &mut body.responses {
        if !topics.hits(&topic.topic, topic.topic_id) {
            continue;
        }
        for partition in &mut topic.partitions {
            records += corrupt_field(&mut partition.records, corruption);
        }
    }
    if records == 0 {
        return Ok(None);
    }
    Ok(Some((
        response.with_body(&body, version, &trailing)?,
        records,
    )))
}

/// Corrupts one partition's `records` in place; returns the records corrupted.
fn corrupt_field(records: &mut Option<Bytes>, corruption: Corruption) -> u64 {
    let Some(batches) = records.as_ref() else {
        return 0;
    };
    match corrupt_batches(batches, corruption) {
        Some(corrupted) => {
            *records = Some(Bytes::from(corrupted.bytes));
            corrupted.records
        }
        None => 0,
    }
}
