//! Kafka decoding of framed requests and responses, with kafka-protocol, and
//! with a hand-written reader for Produce, which is most of the traffic.
//!
//! Decoding never fails the stream: whatever cannot be decoded is reported
//! with what is known (api key, version, client id) and the reason, because
//! the point of the sniffer is to show what is on the wire, odd or not.
//!
//! Pure; it depends on nothing else in the library. The sniffer and the Inline decider decode
//! with it, and the binary's topic probe reads the broker's Metadata answer with it.

mod fast;
pub(crate) mod guard;
pub(crate) mod records;
mod request;
mod response;
mod topic_ids;

use std::borrow::Cow;

use kafka_protocol::messages::ApiKey;
use uuid::Uuid;

pub use request::{REQUEST_PROBE_LEN, RequestInfo, decode_request, plausible_request_start};
pub use response::{ResponseInfo, decode_response, response_correlation_id};
pub use topic_ids::TopicIds;

/// Why (part of) a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the fixed part of a header.
    #[error("frame of {0} bytes is too short for a header")]
    ShortFrame(usize),
    /// An api key kafka-protocol does not know.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// A version outside what kafka-protocol supports for that api.
    #[error("unsupported version {version} of {api}")]
    UnsupportedVersion {
        /// Api name.
        api: String,
        /// The version on the wire.
        version: i16,
    },
    /// The header did not decode.
    #[error("header: {0}")]
    Header(String),
    /// The body did not decode.
    #[error("body: {0}")]
    Body(String),
    /// The frame was over the size cap; only its head was kept.
    #[error("frame of {0} bytes is over the size cap; body not decoded")]
    Oversized(usize),
}

/// A topic as a request names it: by name, or by id (resolved later from
/// what Metadata responses taught).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    /// By name.
    Name(String),
    /// By topic id.
    Id(Uuid),
}

macro_rules! api_names {
    ($($key:ident: $request:ident, $response:ident;)*) => {
        /// Kafka's name of an api key ("Produce", "Fetch", …), or `Unknown(N)`: borrowed
        /// but for unknown keys, since every request event carries one.
        pub fn api_name(api_key: i16) -> Cow<'static, str> {
            match ApiKey::try_from(api_key) {
                $(Ok(ApiKey::$key) => Cow::Borrowed(stringify!($key)),)*
                Err(()) => Cow::Owned(format!("Unknown({api_key})")),
            }
        }
    };
}
for_each_api!(api_names);

pub use kafka_shock_crds::kafka_errors::error_name;

/// Calls `$callback!` with every api kafka-protocol knows, as
/// `Key: Request, Response;`, so dispatch code lists them once.
macro_rules! for_each_api {
    ($callback:ident) => {
        $callback! {
            Produce: ProduceRequest, ProduceResponse;
            Fetch: FetchRequest, FetchResponse;
            ListOffsets: ListOffsetsRequest, ListOffsetsResponse;
            Metadata: MetadataRequest, MetadataResponse;
            OffsetCommit: OffsetCommitRequest, OffsetCommitResponse;
            OffsetFetch: OffsetFetchRequest, OffsetFetchResponse;
            FindCoordinator: FindCoordinatorRequest, FindCoordinatorResponse;
            JoinGroup: JoinGroupRequest, JoinGroupResponse;
            Heartbeat: HeartbeatRequest, HeartbeatResponse;
            LeaveGroup: LeaveGroupRequest, LeaveGroupResponse;
            SyncGroup: SyncGroupRequest, SyncGroupResponse;
            DescribeGroups: DescribeGroupsRequest, DescribeGroupsResponse;
            ListGroups: ListGroupsRequest, ListGroupsResponse;
            SaslHandshake: SaslHandshakeRequest, SaslHandshakeResponse;
            ApiVersions: ApiVersionsRequest, ApiVersionsResponse;
            CreateTopics: CreateTopicsRequest, CreateTopicsResponse;
            DeleteTopics: DeleteTopicsRequest, DeleteTopicsResponse;
            DeleteRecords: DeleteRecordsRequest, DeleteRecordsResponse;
            InitProducerId: InitProducerIdRequest, InitProducerIdResponse;
            OffsetForLeaderEpoch: OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse;
            AddPartitionsToTxn: AddPartitionsToTxnRequest, AddPartitionsToTxnResponse;
            AddOffsetsToTxn: AddOffsetsToTxnRequest, AddOffsetsToTxnResponse;
            EndTxn: EndTxnRequest, EndTxnResponse;
            WriteTxnMarkers: WriteTxnMarkersRequest, WriteTxnMarkersResponse;
            TxnOffsetCommit: TxnOffsetCommitRequest, TxnOffsetCommitResponse;
            DescribeAcls: DescribeAclsRequest, DescribeAclsResponse;
            CreateAcls: CreateAclsRequest, CreateAclsResponse;
            DeleteAcls: DeleteAclsRequest, DeleteAclsResponse;
            DescribeConfigs: DescribeConfigsRequest, DescribeConfigsResponse;
            AlterConfigs: AlterConfigsRequest, AlterConfigsResponse;
            AlterReplicaLogDirs: AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse;
            DescribeLogDirs: DescribeLogDirsRequest, DescribeLogDirsResponse;
            SaslAuthenticate: SaslAuthenticateRequest, SaslAuthenticateResponse;
            CreatePartitions: CreatePartitionsRequest, CreatePartitionsResponse;
            CreateDelegationToken: CreateDelegationTokenRequest, CreateDelegationTokenResponse;
            RenewDelegationToken: RenewDelegationTokenRequest, RenewDelegationTokenResponse;
            ExpireDelegationToken: ExpireDelegationTokenRequest, ExpireDelegationTokenResponse;
            DescribeDelegationToken: DescribeDelegationTokenRequest, DescribeDelegationTokenResponse;
            DeleteGroups: DeleteGroupsRequest, DeleteGroupsResponse;
            ElectLeaders: ElectLeadersRequest, ElectLeadersResponse;
            IncrementalAlterConfigs: IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse;
            AlterPartitionReassignments: AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse;
            ListPartitionReassignments: ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse;
            OffsetDelete: OffsetDeleteRequest, OffsetDeleteResponse;
            DescribeClientQuotas: DescribeClientQuotasRequest, DescribeClientQuotasResponse;
            AlterClientQuotas: AlterClientQuotasRequest, AlterClientQuotasResponse;
            DescribeUserScramCredentials: DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse;
            AlterUserScramCredentials: AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse;
            Vote: VoteRequest, VoteResponse;
            BeginQuorumEpoch: BeginQuorumEpochRequest, BeginQuorumEpochResponse;
            EndQuorumEpoch: EndQuorumEpochRequest, EndQuorumEpochResponse;
            DescribeQuorum: DescribeQuorumRequest, DescribeQuorumResponse;
            AlterPartition: AlterPartitionRequest, AlterPartitionResponse;
            UpdateFeatures: UpdateFeaturesRequest, UpdateFeaturesResponse;
            Envelope: EnvelopeRequest, EnvelopeResponse;
            FetchSnapshot: FetchSnapshotRequest, FetchSnapshotResponse;
            DescribeCluster: DescribeClusterRequest, DescribeClusterResponse;
            DescribeProducers: DescribeProducersRequest, DescribeProducersResponse;
            BrokerRegistration: BrokerRegistrationRequest, BrokerRegistrationResponse;
            BrokerHeartbeat: BrokerHeartbeatRequest, BrokerHeartbeatResponse;
            UnregisterBroker: UnregisterBrokerRequest, UnregisterBrokerResponse;
            DescribeTransactions: DescribeTransactionsRequest, DescribeTransactionsResponse;
            ListTransactions: ListTransactionsRequest, ListTransactionsResponse;
            AllocateProducerIds: AllocateProducerIdsRequest, AllocateProducerIdsResponse;
            ConsumerGroupHeartbeat: ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse;
            ConsumerGroupDescribe: ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse;
            ControllerRegistration: ControllerRegistrationRequest, ControllerRegistrationResponse;
            GetTelemetrySubscriptions: GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse;
            PushTelemetry: PushTelemetryRequest, PushTelemetryResponse;
            AssignReplicasToDirs: AssignReplicasToDirsRequest, AssignReplicasToDirsResponse;
            ListConfigResources: ListConfigResourcesRequest, ListConfigResourcesResponse;
            DescribeTopicPartitions: DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse;
            ShareGroupHeartbeat: ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse;
            ShareGroupDescribe: ShareGroupDescribeRequest, ShareGroupDescribeResponse;
            ShareFetch: ShareFetchRequest, ShareFetchResponse;
            ShareAcknowledge: ShareAcknowledgeRequest, ShareAcknowledgeResponse;
            AddRaftVoter: AddRaftVoterRequest, AddRaftVoterResponse;
            RemoveRaftVoter: RemoveRaftVoterRequest, RemoveRaftVoterResponse;
            UpdateRaftVoter: UpdateRaftVoterRequest, UpdateRaftVoterResponse;
            InitializeShareGroupState: InitializeShareGroupStateRequest, InitializeShareGroupStateResponse;
            ReadShareGroupState: ReadShareGroupStateRequest, ReadShareGroupStateResponse;
            WriteShareGroupState: WriteShareGroupStateRequest, WriteShareGroupStateResponse;
            DeleteShareGroupState: DeleteShareGroupStateRequest, DeleteShareGroupStateResponse;
            ReadShareGroupStateSummary: ReadShareGroupStateSummaryRequest, ReadShareGroupStateSummaryResponse;
            DescribeShareGroupOffsets: DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse;
            AlterShareGroupOffsets: AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse;
            DeleteShareGroupOffsets: DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse;
        }
    };
}
pub(crate) use for_each_api;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka() {
        assert_eq!(api_name(0), "Produce");
        assert_eq!(api_name(75), "DescribeTopicPartitions");
        assert_eq!(api_name(999), "Unknown(999)");
        assert_eq!(error_name(0), None);
        assert_eq!(error_name(6).as_deref(), Some("NOT_LEADER_OR_FOLLOWER"));
        assert_eq!(error_name(3).as_deref(), Some("UNKNOWN_TOPIC_OR_PARTITION"));
        assert_eq!(error_name(-1).as_deref(), Some("UNKNOWN_SERVER_ERROR"));
        assert_eq!(error_name(9999).as_deref(), Some("UNKNOWN(9999)"));
    }
}
