//! Every answerable api at every version kafka-protocol supports: a realistic request encoded
//! as a client would, answered, and the answer decoded as a client would — the error is where
//! the api carries errors, and topics, partitions, groups, keys and members mirror the request.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::Compression;

use super::*;
use crate::proxy::answer::answer;
use crate::proxy::codec::RequestFrame;
use crate::proxy::corrupt::tests::batch;
use crate::proxy::{ERROR_APIS, ErrorPath, error_code, error_path};

/// Answers `body` (a request of `key` at `version`) with `code`, and decodes the answer.
fn answered<Req: Encodable, Resp: Decodable>(
    key: ApiKey,
    version: i16,
    body: &Req,
    code: i16,
) -> Resp {
    let frame = request(key, version, CORRELATION_ID, "checkout-svc", body);
    let parsed = RequestFrame::parse(&Bytes::copy_from_slice(&frame[4..]))
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    let answer = answer(&parsed, code).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    let (correlation_id, response) = decode_response(key, version, &answer);
    assert_eq!(correlation_id, CORRELATION_ID, "{key:?} v{version}");
    response
}

/// Topics as a request of `version` names them: by id from `by_id`, else by name.
fn named(version: i16, by_id: i16) -> [(TopicName, Uuid); 2] {
    if version >= by_id {
        [(topic(""), ORDERS_ID), (topic(""), PAYMENTS_ID)]
    } else {
        [
            (topic("orders"), Uuid::nil()),
            (topic("payments"), Uuid::nil()),
        ]
    }
}

#[test]
fn produce_fails_every_partition() {
    for v in message_versions::<ProduceRequest>() {
        let topics = named(v, 13).map(|(name, id)| {
            let partitions = [0, 3].map(|index| {
                PartitionProduceData::default()
                    .with_index(index)
                    .with_records(Some(Bytes::from(batch(2, Compression::None))))
            });
            TopicProduceData::default()
                .with_name(name)
                .with_topic_id(id)
                .with_partition_data(partitions.to_vec())
        });
        let body = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(topics.to_vec());
        let r: ProduceResponse = answered(ApiKey::Produce, v, &body, NOT_LEADER);
        let mirrored: Vec<_> = r
            .responses
            .iter()
            .map(|t| (t.name.clone(), t.topic_id))
            .collect();
        assert_eq!(mirrored, named(v, 13).to_vec(), "v{v}");
        for p in r.responses.iter().flat_map(|t| &t.partition_responses) {
            assert_eq!(
                (p.error_code, p.base_offset),
                (NOT_LEADER, (-1).into()),
                "v{v}"
            );
        }
        let indexes: Vec<i32> = r.responses[0]
            .partition_responses
            .iter()
            .map(|p| p.index)
            .collect();
        assert_eq!(indexes, [0, 3], "v{v}");
    }
}

fn fetch_request(v: i16, partitions: &[i32]) -> FetchRequest {
    let topics = named(v, 13).map(|(name, id)| {
        let partitions = partitions.iter().map(|&partition| {
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(42)
                .with_partition_max_bytes(1 << 20)
        });
        FetchTopic::default()
            .with_topic(name)
            .with_topic_id(id)
            .with_partitions(partitions.collect())
    });
    FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(topics.to_vec())
}

#[test]
fn fetch_fails_partitions_and_only_session_errors_at_the_top() {
    const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    for v in message_versions::<FetchRequest>() {
        let r: FetchResponse = answered(ApiKey::Fetch, v, &fetch_request(v, &[0, 1]), NOT_LEADER);
        let mirrored: Vec<_> = r
            .responses
            .iter()
            .map(|t| (t.topic.clone(), t.topic_id))
            .collect();
        assert_eq!(mirrored, named(v, 13).to_vec(), "v{v}");
        for p in r.responses.iter().flat_map(|t| &t.partitions) {
            assert_eq!(p.error_code, NOT_LEADER, "v{v}");
            assert_eq!(p.high_watermark, -1, "v{v}");
            assert_eq!(p.records.as_deref(), Some(&[][..]), "v{v}");
        }
        assert_eq!(
            (r.error_code, r.session_id),
            (0, 0),
            "v{v}: not a session error"
        );
        if v >= 7 {
            let r: FetchResponse = answered(
                ApiKey::Fetch,
                v,
                &fetch_request(v, &[0]),
                FETCH_SESSION_ID_NOT_FOUND,
            );
            assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND, "v{v}");
            // An incremental fetch naming no partition: the top level is the only place.
            let r: FetchResponse = answered(ApiKey::Fetch, v, &FetchRequest::default(), NOT_LEADER);
            assert_eq!(r.error_code, NOT_LEADER, "v{v}");
        }
    }
}

#[test]
fn list_offsets_fails_every_partition() {
    for v in message_versions::<ListOffsetsRequest>() {
        let topics = ["orders", "payments"].map(|name| {
            let partitions = [0, 1, 2].map(|index| {
                ListOffsetsPartition::default()
                    .with_partition_index(index)
                    .with_timestamp(-1)
            });
            ListOffsetsTopic::default()
                .with_name(topic(name))
                .with_partitions(partitions.to_vec())
        });
        let body = ListOffsetsRequest::default().with_topics(topics.to_vec());
        let r: ListOffsetsResponse = answered(ApiKey::ListOffsets, v, &body, NOT_LEADER);
        let names: Vec<_> = r.topics.iter().map(|t| t.name.0.to_string()).collect();
        assert_eq!(names, ["orders", "payments"], "v{v}");
        for t in &r.topics {
            let got: Vec<_> = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code, p.offset))
                .collect();
            assert_eq!(got, [0, 1, 2].map(|i| (i, NOT_LEADER, -1)), "v{v}");
        }
    }
}

#[test]
fn offset_commit_fails_every_partition() {
    for v in message_versions::<OffsetCommitRequest>() {
        let partitions = [0, 5].map(|index| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(index)
                .with_committed_offset(100)
        });
        let body = OffsetCommitRequest::default()
            .with_group_id(GroupId(text("billing")))
            .with_generation_id_or_member_epoch(3)
            .with_member_id(text("member-1"))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(partitions.to_vec()),
            ]);
        let r: OffsetCommitResponse =
            answered(ApiKey::OffsetCommit, v, &body, COORDINATOR_NOT_AVAILABLE);
        assert_eq!(r.topics.len(), 1, "v{v}");
        assert_eq!(r.topics[0].name.0.as_str(), "orders", "v{v}");
        let got: Vec<_> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        assert_eq!(
            got,
            [
                (0, COORDINATOR_NOT_AVAILABLE),
                (5, COORDINATOR_NOT_AVAILABLE)
            ]
        );
    }
}

#[test]
fn offset_fetch_fails_groups_and_partitions() {
    let code = COORDINATOR_NOT_AVAILABLE;
    for v in message_versions::<OffsetFetchRequest>() {
        if v < 8 {
            let topics = vec![
                OffsetFetchRequestTopic::default()
                    .with_name(topic("orders"))
                    .with_partition_indexes(vec![0, 1]),
            ];
            let body = OffsetFetchRequest::default()
                .with_group_id(GroupId(text("billing")))
                .with_topics(Some(topics));
            let r: OffsetFetchResponse = answered(ApiKey::OffsetFetch, v, &body, code);
            assert_eq!(r.error_code, if v >= 2 { code } else { 0 }, "v{v}");
            assert_eq!(r.topics[0].name.0.as_str(), "orders", "v{v}");
            let got: Vec<_> = r.topics[0]
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code, p.committed_offset))
                .collect();
            assert_eq!(got, [(0, code, -1), (1, code, -1)], "v{v}");
            if v >= 2 {
                let all = OffsetFetchRequest::default()
                    .with_group_id(GroupId(text("billing")))
                    .with_topics(None);
                let r: OffsetFetchResponse = answered(ApiKey::OffsetFetch, v, &all, code);
                assert_eq!((r.error_code, r.topics.len()), (code, 0), "v{v}");
            }
            continue;
        }
        let topics = vec![
            OffsetFetchRequestTopics::default()
                .with_name(topic("orders"))
                .with_partition_indexes(vec![2]),
        ];
        let groups = vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(text("billing")))
                .with_topics(Some(topics)),
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(text("shipping")))
                .with_topics(None),
        ];
        let body = OffsetFetchRequest::default().with_groups(groups);
        let r: OffsetFetchResponse = answered(ApiKey::OffsetFetch, v, &body, code);
        let got: Vec<_> = r
            .groups
            .iter()
            .map(|g| (g.group_id.0.to_string(), g.error_code, g.topics.len()))
            .collect();
        assert_eq!(
            got,
            [("billing".into(), code, 1), ("shipping".into(), code, 0)],
            "v{v}"
        );
        let partition = &r.groups[0].topics[0].partitions[0];
        assert_eq!((partition.partition_index, partition.error_code), (2, code));
    }
}

#[test]
fn find_coordinator_fails_the_key_or_every_key() {
    let code = COORDINATOR_NOT_AVAILABLE;
    for v in message_versions::<FindCoordinatorRequest>() {
        let mut body = FindCoordinatorRequest::default();
        if v >= 1 {
            body = body.with_key_type(0);
        }
        if v >= 4 {
            body = body.with_coordinator_keys(vec![text("billing"), text("shipping")]);
        } else {
            body = body.with_key(text("billing"));
        }
        let r: FindCoordinatorResponse = answered(ApiKey::FindCoordinator, v, &body, code);
        if v >= 4 {
            let got: Vec<_> = r
                .coordinators
                .iter()
                .map(|c| {
                    (
                        c.key.to_string(),
                        c.error_code,
                        c.node_id.0,
                        c.error_message.clone(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                [
                    ("billing".into(), code, -1, None),
                    ("shipping".into(), code, -1, None)
                ],
                "v{v}"
            );
        } else {
            assert_eq!((r.error_code, r.node_id.0, r.port), (code, -1, -1), "v{v}");
        }
    }
}

#[test]
fn group_membership_apis_fail_at_the_top() {
    let code = 27; // REBALANCE_IN_PROGRESS
    for v in message_versions::<JoinGroupRequest>() {
        let mut body = JoinGroupRequest::default()
            .with_group_id(GroupId(text("billing")))
            .with_session_timeout_ms(45_000)
            .with_member_id(text("member-1"))
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(text("range"))
                    .with_metadata(Bytes::from_static(b"\x00\x01")),
            ]);
        if v >= 1 {
            body = body.with_rebalance_timeout_ms(300_000);
        }
        let r: JoinGroupResponse = answered(ApiKey::JoinGroup, v, &body, code);
        assert_eq!(r.error_code, code, "v{v}");
        assert_eq!(
            (r.generation_id, r.member_id.as_str()),
            (-1, "member-1"),
            "v{v}"
        );
        assert!(r.members.is_empty() && r.leader.is_empty(), "v{v}");
    }
    for v in message_versions::<HeartbeatRequest>() {
        let body = HeartbeatRequest::default()
            .with_group_id(GroupId(text("billing")))
            .with_generation_id(3)
            .with_member_id(text("member-1"));
        let r: HeartbeatResponse = answered(ApiKey::Heartbeat, v, &body, code);
        assert_eq!(r.error_code, code, "v{v}");
    }
    for v in message_versions::<SyncGroupRequest>() {
        let body = SyncGroupRequest::default()
            .with_group_id(GroupId(text("billing")))
            .with_generation_id(3)
            .with_member_id(text("member-1"));
        let r: SyncGroupResponse = answered(ApiKey::SyncGroup, v, &body, code);
        assert_eq!((r.error_code, r.assignment.len()), (code, 0), "v{v}");
    }
    for v in message_versions::<ConsumerGroupHeartbeatRequest>() {
        let body = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(text("billing")))
            .with_member_id(text("member-1"))
            .with_member_epoch(5)
            .with_subscribed_topic_names(Some(vec![topic("orders")]));
        let r: ConsumerGroupHeartbeatResponse =
            answered(ApiKey::ConsumerGroupHeartbeat, v, &body, code);
        assert_eq!((r.error_code, r.assignment), (code, None), "v{v}");
    }
}

#[test]
fn leave_group_fails_at_the_top_and_per_member() {
    let code = COORDINATOR_NOT_AVAILABLE;
    for v in message_versions::<LeaveGroupRequest>() {
        let mut body = LeaveGroupRequest::default().with_group_id(GroupId(text("billing")));
        if v >= 3 {
            body = body.with_members(
                ["member-1", "member-2"]
                    .map(|m| MemberIdentity::default().with_member_id(text(m)))
                    .to_vec(),
            );
        } else {
            body = body.with_member_id(text("member-1"));
        }
        let r: LeaveGroupResponse = answered(ApiKey::LeaveGroup, v, &body, code);
        assert_eq!(r.error_code, code, "v{v}");
        let members: Vec<_> = r
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.error_code))
            .collect();
        let want: Vec<(String, i16)> = if v >= 3 {
            vec![("member-1".into(), code), ("member-2".into(), code)]
        } else {
            vec![]
        };
        assert_eq!(members, want, "v{v}");
    }
}

#[test]
fn describe_groups_fails_each_group() {
    for v in message_versions::<DescribeGroupsRequest>() {
        let body = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(text("billing")), GroupId(text("shipping"))]);
        let r: DescribeGroupsResponse =
            answered(ApiKey::DescribeGroups, v, &body, COORDINATOR_NOT_AVAILABLE);
        let got: Vec<_> = r
            .groups
            .iter()
            .map(|g| (g.group_id.0.to_string(), g.error_code, g.members.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("billing".into(), COORDINATOR_NOT_AVAILABLE, 0),
                ("shipping".into(), COORDINATOR_NOT_AVAILABLE, 0)
            ],
            "v{v}"
        );
    }
}

#[test]
fn topic_admin_apis_fail_each_topic() {
    let code = 41; // NOT_CONTROLLER
    for v in message_versions::<CreateTopicsRequest>() {
        let topics = ["orders", "payments"].map(|name| {
            CreatableTopic::default()
                .with_name(topic(name))
                .with_num_partitions(3)
                .with_replication_factor(1)
        });
        let body = CreateTopicsRequest::default()
            .with_topics(topics.to_vec())
            .with_timeout_ms(30_000);
        let r: CreateTopicsResponse = answered(ApiKey::CreateTopics, v, &body, code);
        let got: Vec<_> = r
            .topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.error_code, t.error_message.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("orders".into(), code, None),
                ("payments".into(), code, None)
            ],
            "v{v}"
        );
    }
    for v in message_versions::<DeleteTopicsRequest>() {
        let body = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic("orders"))),
                DeleteTopicState::default()
                    .with_name(None)
                    .with_topic_id(PAYMENTS_ID),
            ])
        } else {
            DeleteTopicsRequest::default()
                .with_topic_names(vec![topic("orders"), topic("payments")])
        };
        let r: DeleteTopicsResponse = answered(ApiKey::DeleteTopics, v, &body, code);
        let got: Vec<_> = r
            .responses
            .iter()
            .map(|t| (t.name.clone(), t.topic_id, t.error_code))
            .collect();
        let want = if v >= 6 {
            vec![
                (Some(topic("orders")), Uuid::nil(), code),
                (None, PAYMENTS_ID, code),
            ]
        } else {
            vec![
                (Some(topic("orders")), Uuid::nil(), code),
                (Some(topic("payments")), Uuid::nil(), code),
            ]
        };
        assert_eq!(got, want, "v{v}");
    }
}

#[test]
fn transaction_apis_fail_where_they_carry_errors() {
    let code = 51; // CONCURRENT_TRANSACTIONS
    let txn = || TransactionalId(text("tx-1"));
    for v in message_versions::<InitProducerIdRequest>() {
        let body = InitProducerIdRequest::default()
            .with_transactional_id(Some(txn()))
            .with_transaction_timeout_ms(60_000);
        let r: InitProducerIdResponse = answered(ApiKey::InitProducerId, v, &body, code);
        assert_eq!(
            (r.error_code, r.producer_id.0, r.producer_epoch),
            (code, -1, -1)
        );
    }
    let topics = || {
        vec![
            AddPartitionsToTxnTopic::default()
                .with_name(topic("orders"))
                .with_partitions(vec![0, 2]),
        ]
    };
    for v in message_versions::<AddPartitionsToTxnRequest>() {
        let body = if v >= 4 {
            AddPartitionsToTxnRequest::default().with_transactions(vec![
                AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(txn())
                    .with_producer_id(7.into())
                    .with_topics(topics()),
            ])
        } else {
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn())
                .with_v3_and_below_producer_id(7.into())
                .with_v3_and_below_topics(topics())
        };
        let r: AddPartitionsToTxnResponse = answered(ApiKey::AddPartitionsToTxn, v, &body, code);
        let results = if v >= 4 {
            assert_eq!(r.error_code, code, "v{v}");
            assert_eq!(r.results_by_transaction.len(), 1, "v{v}");
            assert_eq!(r.results_by_transaction[0].transactional_id, txn());
            &r.results_by_transaction[0].topic_results
        } else {
            &r.results_by_topic_v3_and_below
        };
        assert_eq!(results[0].name.0.as_str(), "orders", "v{v}");
        let got: Vec<_> = results[0]
            .results_by_partition
            .iter()
            .map(|p| (p.partition_index, p.partition_error_code))
            .collect();
        assert_eq!(got, [(0, code), (2, code)], "v{v}");
    }
    for v in message_versions::<AddOffsetsToTxnRequest>() {
        let body = AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn())
            .with_group_id(GroupId(text("billing")));
        let r: AddOffsetsToTxnResponse = answered(ApiKey::AddOffsetsToTxn, v, &body, code);
        assert_eq!(r.error_code, code, "v{v}");
    }
    for v in message_versions::<EndTxnRequest>() {
        let body = EndTxnRequest::default()
            .with_transactional_id(txn())
            .with_committed(true);
        let r: EndTxnResponse = answered(ApiKey::EndTxn, v, &body, code);
        assert_eq!(r.error_code, code, "v{v}");
    }
    for v in message_versions::<TxnOffsetCommitRequest>() {
        let partitions = [1, 4].map(|index| {
            TxnOffsetCommitRequestPartition::default()
                .with_partition_index(index)
                .with_committed_offset(9)
        });
        let body = TxnOffsetCommitRequest::default()
            .with_transactional_id(txn())
            .with_group_id(GroupId(text("billing")))
            .with_topics(vec![
                TxnOffsetCommitRequestTopic::default()
                    .with_name(topic("orders"))
                    .with_partitions(partitions.to_vec()),
            ]);
        let r: TxnOffsetCommitResponse = answered(ApiKey::TxnOffsetCommit, v, &body, code);
        let got: Vec<_> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code))
            .collect();
        assert_eq!(got, [(1, code), (4, code)], "v{v}");
    }
}

#[test]
fn the_error_list_covers_the_issue_and_matches_the_paths() {
    let wanted = [
        "Produce",
        "Fetch",
        "ListOffsets",
        "Metadata",
        "OffsetCommit",
        "OffsetFetch",
        "FindCoordinator",
        "JoinGroup",
        "Heartbeat",
        "LeaveGroup",
        "SyncGroup",
        "DescribeGroups",
        "CreateTopics",
        "DeleteTopics",
        "InitProducerId",
        "AddPartitionsToTxn",
        "AddOffsetsToTxn",
        "EndTxn",
        "TxnOffsetCommit",
        "ConsumerGroupHeartbeat",
    ];
    let mut listed = ERROR_APIS.to_vec();
    listed.sort_unstable();
    let mut answered = crate::proxy::answer::ANSWERED.to_vec();
    answered.push("Metadata");
    answered.sort_unstable();
    assert_eq!(answered, listed, "the core answers exactly the API's list");
    let mut wanted = wanted.to_vec();
    wanted.sort_unstable();
    assert_eq!(listed, wanted);
    for key in 0..=100 {
        let name = crate::decode::api_name(key);
        let path = error_path(key);
        assert_eq!(path.is_some(), ERROR_APIS.contains(&&*name), "{name}");
        assert_eq!(
            path == Some(ErrorPath::Inject),
            name == "Metadata",
            "{name}"
        );
    }
}

#[test]
fn error_names_round_trip_through_the_one_table() {
    assert_eq!(error_code("NOT_LEADER_OR_FOLLOWER"), Some(6));
    assert_eq!(error_code("REBALANCE_IN_PROGRESS"), Some(27));
    assert_eq!(error_code("COORDINATOR_NOT_AVAILABLE"), Some(15));
    assert_eq!(error_code("UNKNOWN_SERVER_ERROR"), Some(-1));
    assert_eq!(error_code("CORRUPT_MESSAGE"), Some(2));
    assert_eq!(error_code("NONE"), None);
    assert_eq!(error_code("not_leader_or_follower"), None);
    assert_eq!(error_code("UNKNOWN(9999)"), None);
    for code in -1..=133 {
        let name = crate::decode::error_name(code);
        assert_eq!(name.as_deref().and_then(error_code), name.map(|_| code));
    }
}

#[test]
fn unanswerable_and_undecodable_requests_are_refused() {
    let frame = request(
        ApiKey::ApiVersions,
        3,
        1,
        "c",
        &ApiVersionsRequest::default(),
    );
    let parsed = RequestFrame::parse(&Bytes::copy_from_slice(&frame[4..])).expect("parse");
    assert!(matches!(
        answer(&parsed, NOT_LEADER),
        Err(crate::proxy::ProxyError::NotAnswerable(api)) if api == "ApiVersions"
    ));
    // A Produce whose topic array claims 2^31-1 elements.
    let mut frame = request(ApiKey::Produce, 3, 1, "c", &ProduceRequest::default());
    let at = frame.len() - 4;
    frame[at..].copy_from_slice(&i32::MAX.to_be_bytes());
    let parsed = RequestFrame::parse(&Bytes::copy_from_slice(&frame[4..])).expect("header");
    assert!(matches!(
        answer(&parsed, NOT_LEADER),
        Err(crate::proxy::ProxyError::Decode(_))
    ));
}
