//! Answers: the response a broker sends when a request fails with a given Kafka error, built by
//! the proxy for a request it does not forward (action `Error`).
//!
//! Each answer is the request's api and version, with its correlation id, encoded with
//! kafka-protocol's own types. It mirrors what the request named — topics by name or by id as
//! the request did, partitions, groups, coordinator keys, members, transactions — and carries
//! the error wherever that api carries errors: per partition, per topic, per group, per key,
//! and at the top level. Other fields hold what a broker puts there for a failed request
//! (offsets and ids -1, empty assignments, no coordinator, null error messages so that
//! clients print their own text for the code).
//!
//! Two apis differ, to stay what a client expects from a real broker:
//! - Fetch carries a partition error in each partition and sets the top-level error only for
//!   fetch-session errors (or when no partition can carry it): Java consumers read a top-level
//!   error as a session failure and skip the partitions, so NOT_LEADER_OR_FOLLOWER there would
//!   never refresh their metadata. The answer closes the fetch session (session id 0): the
//!   client starts a new one with its next full fetch.
//! - Metadata is not answered: clients ignore a metadata response without brokers, and the
//!   proxy cannot invent the cluster. Its request is forwarded and the error is written into
//!   the broker's own response, per topic, as a broker reports a topic without a leader (see
//!   [`super::rewrite::inject_metadata_error`]).

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeGroupsRequest, DescribeGroupsResponse, EndTxnRequest,
    EndTxnResponse, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    HeartbeatRequest, HeartbeatResponse, InitProducerIdRequest, InitProducerIdResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListOffsetsRequest,
    ListOffsetsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, ProduceRequest, ProduceResponse, SyncGroupRequest, SyncGroupResponse,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::ProxyError;
use super::codec::{RequestFrame, decode_exact, response_frame};
use crate::decode::api_name;

/// How the proxy makes a request of some api fail with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPath {
    /// Not forwarded: the proxy answers it itself.
    Answer,
    /// Forwarded: the error is written into the broker's response (Metadata).
    Inject,
}

/// Offsets, ids and epochs a broker reports as unknown.
const UNKNOWN: i32 = -1;

/// Kafka's fetch-session errors, the ones a broker reports at the top of a Fetch response:
/// FETCH_SESSION_ID_NOT_FOUND, INVALID_FETCH_SESSION_EPOCH, FETCH_SESSION_TOPIC_ID_ERROR.
const FETCH_SESSION_ERRORS: [i16; 3] = [70, 71, 106];

macro_rules! answered {
    ($($key:ident: $request:ident => $build:ident;)*) => {
        /// The apis the proxy answers itself, by Kafka's names: with Metadata, whose response
        /// it rewrites, exactly the API's
        /// [`PROXY_ERROR_APIS`](kafka_shock_crds::kafka_errors::PROXY_ERROR_APIS) (a test holds
        /// them equal).
        #[cfg(test)]
        pub(crate) const ANSWERED: &[&str] = &[$(stringify!($key),)*];

        /// How a request of `api_key` is made to fail, or `None` when the proxy cannot.
        pub fn error_path(api_key: i16) -> Option<ErrorPath> {
            match ApiKey::try_from(api_key).ok()? {
                ApiKey::Metadata => Some(ErrorPath::Inject),
                $(ApiKey::$key)|* => Some(ErrorPath::Answer),
                _ => None,
            }
        }

        /// The size-prefixed response failing `request` with error `code`.
        pub(crate) fn answer(request: &RequestFrame, code: i16) -> Result<Vec<u8>, ProxyError> {
            match request.key {
                $(ApiKey::$key => {
                    let (body, _) = decode_exact::<$request>(&request.body, request.version)?;
                    response_frame(request, &$build(&body, request.version, code))
                })*
                other => Err(ProxyError::NotAnswerable(api_name(other as i16).into_owned())),
            }
        }
    };
}

answered! {
    Produce: ProduceRequest => produce;
    Fetch: FetchRequest => fetch;
    ListOffsets: ListOffsetsRequest => list_offsets;
    OffsetCommit: OffsetCommitRequest => offset_commit;
    OffsetFetch: OffsetFetchRequest => offset_fetch;
    FindCoordinator: FindCoordinatorRequest => find_coordinator;
    JoinGroup: JoinGroupRequest => join_group;
    Heartbeat: HeartbeatRequest => heartbeat;
    LeaveGroup: LeaveGroupRequest => leave_group;
    SyncGroup: SyncGroupRequest => sync_group;
    DescribeGroups: DescribeGroupsRequest => describe_groups;
    CreateTopics: CreateTopicsRequest => create_topics;
    DeleteTopics: DeleteTopicsRequest => delete_topics;
    InitProducerId: InitProducerIdRequest => init_producer_id;
    AddPartitionsToTxn: AddPartitionsToTxnRequest => add_partitions_to_txn;
    AddOffsetsToTxn: AddOffsetsToTxnRequest => add_offsets_to_txn;
    EndTxn: EndTxnRequest => end_txn;
    TxnOffsetCommit: TxnOffsetCommitRequest => txn_offset_commit;
    ConsumerGroupHeartbeat: ConsumerGroupHeartbeatRequest => consumer_group_heartbeat;
}

fn produce(r: &ProduceRequest, _version: i16, code: i16) -> ProduceResponse {
    let responses = r.topic_data.iter().map(|topic| {
        let partitions = topic.partition_data.iter().map(|p| {
            PartitionProduceResponse::default()
                .with_index(p.index)
                .with_error_code(code)
                .with_base_offset(UNKNOWN.into())
        });
        TopicProduceResponse::default()
            .with_name(topic.name.clone())
            .with_topic_id(topic.topic_id)
            .with_partition_responses(partitions.collect())
    });
    ProduceResponse::default().with_responses(responses.collect())
}

fn fetch(r: &FetchRequest, version: i16, code: i16) -> FetchResponse {
    let responses: Vec<FetchableTopicResponse> = r
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic.partitions.iter().map(|p| {
                PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_error_code(code)
                    .with_high_watermark(UNKNOWN.into())
            });
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions.collect())
        })
        .collect();
    let nowhere_else = responses.iter().all(|t| t.partitions.is_empty());
    let top_level = version >= 7 && (FETCH_SESSION_ERRORS.contains(&code) || nowhere_else);
    FetchResponse::default()
        .with_error_code(if top_level { code } else { 0 })
        .with_session_id(0)
        .with_responses(responses)
}

fn list_offsets(r: &ListOffsetsRequest, _version: i16, code: i16) -> ListOffsetsResponse {
    let topics = r.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|p| {
            ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_error_code(code)
        });
        ListOffsetsTopicResponse::default()
            .with_name(topic.name.clone())
            .with_partitions(partitions.collect())
    });
    ListOffsetsResponse::default().with_topics(topics.collect())
}

fn offset_commit(r: &OffsetCommitRequest, _version: i16, code: i16) -> OffsetCommitResponse {
    let topics = r.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|p| {
            OffsetCommitResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(code)
        });
        OffsetCommitResponseTopic::default()
            .with_name(topic.name.clone())
            .with_partitions(partitions.collect())
    });
    OffsetCommitResponse::default().with_topics(topics.collect())
}

/// OffsetFetch: one group up to v7 (partition errors, and a top-level error from v2), a batch
/// of groups from v8 (an error per group and per partition).
fn offset_fetch(r: &OffsetFetchRequest, version: i16, code: i16) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = r.groups.iter().map(|g| offset_fetch_group(g, code));
        return OffsetFetchResponse::default().with_groups(groups.collect());
    }
    let topics = r
        .topics
        .iter()
        .flatten()
        .map(|topic: &OffsetFetchRequestTopic| {
            let partitions = topic.partition_indexes.iter().map(|&index| {
                OffsetFetchResponsePartition::default()
                    .with_partition_index(index)
                    .with_committed_offset(UNKNOWN.into())
                    .with_error_code(code)
            });
            OffsetFetchResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions.collect())
        });
    OffsetFetchResponse::default()
        .with_topics(topics.collect())
        .with_error_code(if version >= 2 { code } else { 0 })
}

fn offset_fetch_group(group: &OffsetFetchRequestGroup, code: i16) -> OffsetFetchResponseGroup {
    let topics = group
        .topics
        .iter()
        .flatten()
        .map(|topic: &OffsetFetchRequestTopics| {
            let partitions = topic.partition_indexes.iter().map(|&index| {
                OffsetFetchResponsePartitions::default()
                    .with_partition_index(index)
                    .with_committed_offset(UNKNOWN.into())
                    .with_error_code(code)
            });
            OffsetFetchResponseTopics::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions.collect())
        });
    OffsetFetchResponseGroup::default()
        .with_group_id(group.group_id.clone())
        .with_topics(topics.collect())
        .with_error_code(code)
}

/// FindCoordinator: one key up to v3, a batch of keys from v4; no coordinator in either.
fn find_coordinator(
    r: &FindCoordinatorRequest,
    version: i16,
    code: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let coordinators = r.coordinator_keys.iter().map(|key| {
            Coordinator::default()
                .with_key(key.clone())
                .with_node_id(UNKNOWN.into())
                .with_port(UNKNOWN)
                .with_error_code(code)
                .with_error_message(None)
        });
        return FindCoordinatorResponse::default().with_coordinators(coordinators.collect());
    }
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_error_message(None)
        .with_node_id(UNKNOWN.into())
        .with_port(UNKNOWN)
}

/// JoinGroup: no generation, leader or members; the member id the request carried.
fn join_group(r: &JoinGroupRequest, version: i16, code: i16) -> JoinGroupResponse {
    let response = JoinGroupResponse::default()
        .with_error_code(code)
        .with_generation_id(UNKNOWN)
        .with_member_id(r.member_id.clone());
    if version >= 7 {
        response.with_protocol_name(None)
    } else {
        response
    }
}

fn heartbeat(_r: &HeartbeatRequest, _version: i16, code: i16) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(code)
}

/// LeaveGroup: a top-level error, and from v3 one per member the request named.
fn leave_group(r: &LeaveGroupRequest, _version: i16, code: i16) -> LeaveGroupResponse {
    let members = r.members.iter().map(|member| {
        MemberResponse::default()
            .with_member_id(member.member_id.clone())
            .with_group_instance_id(member.group_instance_id.clone())
            .with_error_code(code)
    });
    LeaveGroupResponse::default()
        .with_error_code(code)
        .with_members(members.collect())
}

fn sync_group(_r: &SyncGroupRequest, _version: i16, code: i16) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code)
}

/// DescribeGroups: each group named, in an unknown state, with the error.
fn describe_groups(r: &DescribeGroupsRequest, _version: i16, code: i16) -> DescribeGroupsResponse {
    let groups = r.groups.iter().map(|group| {
        DescribedGroup::default()
            .with_group_id(group.clone())
            .with_error_code(code)
    });
    DescribeGroupsResponse::default().with_groups(groups.collect())
}

fn create_topics(r: &CreateTopicsRequest, _version: i16, code: i16) -> CreateTopicsResponse {
    let topics = r.topics.iter().map(|topic| {
        CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_error_code(code)
            .with_error_message(None)
    });
    CreateTopicsResponse::default().with_topics(topics.collect())
}

/// DeleteTopics: by name up to v5; by name or id, as each was named, from v6.
fn delete_topics(r: &DeleteTopicsRequest, _version: i16, code: i16) -> DeleteTopicsResponse {
    let by_name = r.topic_names.iter().map(|name| {
        DeletableTopicResult::default()
            .with_name(Some(name.clone()))
            .with_error_code(code)
    });
    let by_state = r.topics.iter().map(|topic| {
        DeletableTopicResult::default()
            .with_name(topic.name.clone())
            .with_topic_id(topic.topic_id)
            .with_error_code(code)
    });
    DeleteTopicsResponse::default().with_responses(by_name.chain(by_state).collect())
}

fn init_producer_id(
    _r: &InitProducerIdRequest,
    _version: i16,
    code: i16,
) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code)
        .with_producer_id(i64::from(UNKNOWN).into())
        .with_producer_epoch(-1)
}

/// AddPartitionsToTxn: per partition up to v3; from v4 (brokers' batched verification) per
/// transaction and partition, and at the top level.
fn add_partitions_to_txn(
    r: &AddPartitionsToTxnRequest,
    version: i16,
    code: i16,
) -> AddPartitionsToTxnResponse {
    let topic_results = |topics: &[AddPartitionsToTxnTopic]| -> Vec<AddPartitionsToTxnTopicResult> {
        topics
            .iter()
            .map(|topic| {
                let partitions = topic.partitions.iter().map(|&index| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(index)
                        .with_partition_error_code(code)
                });
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic.name.clone())
                    .with_results_by_partition(partitions.collect())
            })
            .collect()
    };
    if version <= 3 {
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(topic_results(&r.v3_and_below_topics));
    }
    let transactions = r.transactions.iter().map(|txn| {
        AddPartitionsToTxnResult::default()
            .with_transactional_id(txn.transactional_id.clone())
            .with_topic_results(topic_results(&txn.topics))
    });
    AddPartitionsToTxnResponse::default()
        .with_error_code(code)
        .with_results_by_transaction(transactions.collect())
}

fn add_offsets_to_txn(
    _r: &AddOffsetsToTxnRequest,
    _version: i16,
    code: i16,
) -> AddOffsetsToTxnResponse {
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

fn end_txn(_r: &EndTxnRequest, _version: i16, code: i16) -> EndTxnResponse {
    EndTxnResponse::default().with_error_code(code)
}

fn txn_offset_commit(
    r: &TxnOffsetCommitRequest,
    _version: i16,
    code: i16,
) -> TxnOffsetCommitResponse {
    let topics = r.topics.iter().map(|topic| {
        let partitions = topic.partitions.iter().map(|p| {
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(code)
        });
        TxnOffsetCommitResponseTopic::default()
            .with_name(topic.name.clone())
            .with_partitions(partitions.collect())
    });
    TxnOffsetCommitResponse::default().with_topics(topics.collect())
}

fn consumer_group_heartbeat(
    _r: &ConsumerGroupHeartbeatRequest,
    _version: i16,
    code: i16,
) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default().with_error_code(code)
}
