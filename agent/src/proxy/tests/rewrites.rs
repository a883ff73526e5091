//! Rewrites round-trip: throttle on every api and version, Metadata errors, and corruption of
//! Produce requests and Fetch responses, everything not targeted left as it was.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{self, *};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::Compression;

use super::*;
use crate::FastMap;
use crate::proxy::codec::RequestFrame;
use crate::proxy::corrupt::tests::{batch, decode};
use crate::proxy::rewrite::{
    Throttle, TopicFilter, corrupt_fetch, corrupt_produce, inject_metadata_error, throttle,
};

const LEADER_NOT_AVAILABLE: i16 = 5;
/// An unmistakable throttle time: its four bytes are all different and none is zero.
const THROTTLE_MS: i32 = 0x0102_0304;

/// Whether `after` is `before` with four zero bytes replaced by `THROTTLE_MS`, and nothing
/// else changed.
fn only_throttle_changed(before: &[u8], after: &[u8]) -> bool {
    before.len() == after.len()
        && (0..before.len().saturating_sub(3)).any(|k| {
            before[..k] == after[..k]
                && before[k..k + 4] == [0; 4]
                && after[k..k + 4] == THROTTLE_MS.to_be_bytes()
                && before[k + 4..] == after[k + 4..]
        })
}

macro_rules! throttle_every_api {
    ($($key:ident: $request:ident, $response:ident;)*) => {
        /// Throttles the default response of every api at every version; returns the
        /// (api, version) pairs set and those that carry no throttle time.
        fn throttle_every_default() -> (Vec<(ApiKey, i16)>, Vec<(ApiKey, i16)>) {
            let (mut set, mut not_carried) = (Vec::new(), Vec::new());
            $(for v in message_versions::<messages::$response>() {
                let body = messages::$response::default();
                if body.compute_size(v).is_err() {
                    continue;
                }
                let frame = response(ApiKey::$key, v, 7, &body);
                let frame = Bytes::copy_from_slice(&frame[4..]);
                match throttle(&frame, ApiKey::$key, v, THROTTLE_MS) {
                    Ok(Throttle::Set(after)) => {
                        assert!(only_throttle_changed(&frame, &after[4..]), "{} v{v}", stringify!($key));
                        set.push((ApiKey::$key, v));
                    }
                    Ok(Throttle::NotCarried) => not_carried.push((ApiKey::$key, v)),
                    other => panic!("{} v{v}: {other:?}", stringify!($key)),
                }
            })*
            (set, not_carried)
        }
    };
}
crate::decode::for_each_api!(throttle_every_api);

#[test]
fn throttle_sets_only_the_field_on_every_api_and_version() {
    let (set, not_carried) = throttle_every_default();
    for v in versions(ApiKey::Produce) {
        assert!(set.contains(&(ApiKey::Produce, v)), "Produce v{v}");
    }
    for v in versions(ApiKey::Fetch) {
        assert!(set.contains(&(ApiKey::Fetch, v)), "Fetch v{v}");
    }
    for (key, first) in [
        (ApiKey::Metadata, 3),
        (ApiKey::Heartbeat, 1),
        (ApiKey::ApiVersions, 1),
        (ApiKey::JoinGroup, 2),
    ] {
        for v in versions(key) {
            let list = if v >= first { &set } else { &not_carried };
            assert!(list.contains(&(key, v)), "{key:?} v{v}");
        }
    }
    assert!(
        not_carried.contains(&(ApiKey::SaslHandshake, 1)),
        "no field at all"
    );
    assert!(set.len() > 250, "{} api versions throttled", set.len());
}

#[test]
fn throttle_keeps_a_real_fetch_response_and_a_longer_broker_throttle() {
    let partition = PartitionData::default()
        .with_partition_index(3)
        .with_high_watermark(1000)
        .with_records(Some(Bytes::from(batch(4, Compression::Lz4))));
    let body = FetchResponse::default()
        .with_session_id(99)
        .with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(topic("orders"))
                .with_partitions(vec![partition]),
        ]);
    let frame = response(ApiKey::Fetch, 12, 7, &body);
    let frame = Bytes::copy_from_slice(&frame[4..]);
    let Ok(Throttle::Set(after)) = throttle(&frame, ApiKey::Fetch, 12, 2000) else {
        panic!("not set");
    };
    let (id, decoded): (i32, FetchResponse) = decode_response(ApiKey::Fetch, 12, &after);
    assert_eq!(id, 7);
    assert_eq!(decoded, body.clone().with_throttle_time_ms(2000));
    let slower = response(ApiKey::Fetch, 12, 7, &body.with_throttle_time_ms(5000));
    let slower = Bytes::copy_from_slice(&slower[4..]);
    assert_eq!(
        throttle(&slower, ApiKey::Fetch, 12, 2000),
        Ok(Throttle::AlreadyThrottled)
    );
}

fn metadata(v: i16) -> MetadataResponse {
    let partitions = [0, 1].map(|index| {
        MetadataResponsePartition::default()
            .with_partition_index(index)
            .with_leader_id(1.into())
            .with_replica_nodes(vec![1.into()])
            .with_isr_nodes(vec![1.into()])
    });
    let topic = |name: &'static str, id: Uuid| {
        let t = MetadataResponseTopic::default()
            .with_name(Some(topic(name)))
            .with_partitions(partitions.to_vec());
        if v >= 10 { t.with_topic_id(id) } else { t }
    };
    let mut body = MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(1.into())
                .with_host(text("10.77.0.11"))
                .with_port(9092),
        ])
        .with_topics(vec![
            topic("orders", ORDERS_ID),
            topic("payments", PAYMENTS_ID),
        ]);
    if v >= 1 {
        body = body.with_controller_id(1.into());
    }
    if v >= 2 {
        body = body.with_cluster_id(Some(text("lab")));
    }
    body
}

#[test]
fn metadata_errors_go_into_the_matched_topics_of_the_brokers_response() {
    let ids = FastMap::default();
    for v in versions(ApiKey::Metadata) {
        let original = metadata(v);
        let frame = response(ApiKey::Metadata, v, 7, &original);
        let frame = Bytes::copy_from_slice(&frame[4..]);
        let names = ["orders".to_owned()];
        let only_orders = TopicFilter {
            names: &names,
            ids: &ids,
        };
        let (after, errored) = inject_metadata_error(&frame, v, LEADER_NOT_AVAILABLE, &only_orders)
            .expect("rewrite")
            .expect("orders is in the response");
        assert_eq!(errored, 1);
        let (_, decoded): (i32, MetadataResponse) = decode_response(ApiKey::Metadata, v, &after);
        let mut want = original.clone();
        want.topics[0].error_code = LEADER_NOT_AVAILABLE;
        want.topics[0].partitions.clear();
        assert_eq!(
            decoded, want,
            "v{v}: brokers, cluster and payments untouched"
        );
        let every = TopicFilter {
            names: &[],
            ids: &ids,
        };
        let (_, errored) = inject_metadata_error(&frame, v, LEADER_NOT_AVAILABLE, &every)
            .expect("rewrite")
            .expect("topics");
        assert_eq!(errored, 2, "v{v}: no topic filter, every topic");
        let absent = ["shipping".to_owned()];
        let none = TopicFilter {
            names: &absent,
            ids: &ids,
        };
        assert_eq!(inject_metadata_error(&frame, v, 5, &none), Ok(None));
    }
    // From v12 a topic may come back by id alone; the learned name selects it.
    let mut by_id = metadata(13);
    by_id.topics[0].name = None;
    let frame = response(ApiKey::Metadata, 13, 7, &by_id);
    let frame = Bytes::copy_from_slice(&frame[4..]);
    let learned: FastMap<Uuid, String> = [(ORDERS_ID, "orders".to_owned())].into_iter().collect();
    let names = ["orders".to_owned()];
    let filter = TopicFilter {
        names: &names,
        ids: &learned,
    };
    let (_, errored) = inject_metadata_error(&frame, 13, 5, &filter)
        .expect("rewrite")
        .expect("by id");
    assert_eq!(errored, 1);
}

fn produce_request(v: i16, codec: Compression) -> ProduceRequest {
    let topics = named_topics(v).map(|(name, id)| {
        TopicProduceData::default()
            .with_name(name)
            .with_topic_id(id)
            .with_partition_data(vec![
                PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(batch(3, codec)))),
            ])
    });
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(topics.to_vec())
}

fn named_topics(v: i16) -> [(TopicName, Uuid); 2] {
    if v >= 13 {
        [(topic(""), ORDERS_ID), (topic(""), PAYMENTS_ID)]
    } else {
        [
            (topic("orders"), Uuid::nil()),
            (topic("payments"), Uuid::nil()),
        ]
    }
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn records(field: &Option<Bytes>) -> &[u8] {
    field.as_deref().expect("records")
}

#[test]
fn corrupt_produce_alters_only_the_matched_topics_values() {
    let learned: FastMap<Uuid, String> = [(ORDERS_ID, "orders".to_owned())].into_iter().collect();
    let names = ["orders".to_owned()];
    let orders = TopicFilter {
        names: &names,
        ids: &learned,
    };
    for v in versions(ApiKey::Produce) {
        for (i, fix_crc) in [false, true].into_iter().enumerate() {
            let codec = CODECS[(v as usize + i) % CODECS.len()];
            let body = produce_request(v, codec);
            let frame = request(ApiKey::Produce, v, 11, "checkout-svc", &body);
            let parsed = RequestFrame::parse(&Bytes::copy_from_slice(&frame[4..])).expect("parse");
            let corruption = crate::proxy::corrupt::Corruption {
                fix_crc,
                max_decompressed: 1 << 20,
            };
            let (after, count) = corrupt_produce(&parsed, &orders, corruption)
                .expect("rewrite")
                .expect("corrupted");
            assert_eq!(count, 2, "v{v} {codec:?}: two non-null values");
            // The header is kept verbatim.
            assert_eq!(after[4..4 + parsed.header.len()], parsed.header[..]);
            let mut rest = Bytes::copy_from_slice(&after[4 + parsed.header.len()..]);
            let decoded = ProduceRequest::decode(&mut rest, v).expect("decode");
            let was = &body.topic_data;
            let now = &decoded.topic_data;
            assert_eq!(
                records(&now[1].partition_data[0].records),
                records(&was[1].partition_data[0].records),
                "v{v}: payments byte for byte"
            );
            let orders_now = records(&now[0].partition_data[0].records);
            if fix_crc {
                let values: Vec<_> = decode(orders_now)
                    .expect("a valid CRC")
                    .into_iter()
                    .map(|r| r.value)
                    .collect();
                let inverted = |s: &str| Some(s.bytes().map(|b| !b).collect::<Bytes>());
                assert_eq!(values, [inverted("value-0"), inverted("value-1"), None]);
            } else {
                assert!(decode(orders_now).is_err(), "v{v} {codec:?}: stale CRC");
            }
            let mut same = decoded.clone();
            same.topic_data[0].partition_data[0].records = was[0].partition_data[0].records.clone();
            assert_eq!(same, body, "v{v}: nothing else changed");
        }
    }
}

#[test]
fn corrupt_fetch_alters_only_the_matched_topics_values() {
    let names = ["orders".to_owned()];
    let learned: FastMap<Uuid, String> = [(ORDERS_ID, "orders".to_owned())].into_iter().collect();
    let orders = TopicFilter {
        names: &names,
        ids: &learned,
    };
    for v in versions(ApiKey::Fetch) {
        let codec = CODECS[v as usize % CODECS.len()];
        let topics = named_topics(v).map(|(name, id)| {
            // Two batches and the start of a third, as a broker cuts at max bytes.
            let mut bytes = batch(3, codec);
            bytes.extend(batch(2, Compression::None));
            bytes.extend_from_slice(&batch(2, codec)[..30]);
            FetchableTopicResponse::default()
                .with_topic(name)
                .with_topic_id(id)
                .with_partitions(vec![
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_high_watermark(5)
                        .with_records(Some(Bytes::from(bytes))),
                ])
        });
        let body = FetchResponse::default().with_responses(topics.to_vec());
        let frame = response(ApiKey::Fetch, v, 9, &body);
        let frame = Bytes::copy_from_slice(&frame[4..]);
        let corruption = crate::proxy::corrupt::Corruption {
            fix_crc: true,
            max_decompressed: 1 << 20,
        };
        let (after, count) = corrupt_fetch(&frame, v, &orders, corruption)
            .expect("rewrite")
            .expect("corrupted");
        assert_eq!(count, 4, "v{v}");
        let (id, decoded): (i32, FetchResponse) = decode_response(ApiKey::Fetch, v, &after);
        assert_eq!(id, 9);
        let was = &body.responses;
        let now = &decoded.responses;
        assert_eq!(now[1], was[1], "v{v}: payments untouched");
        let orders_now = records(&now[0].partitions[0].records);
        assert!(
            orders_now.ends_with(&batch(2, codec)[..30]),
            "v{v}: the tail kept"
        );
        assert_eq!(now[0].partitions[0].high_watermark, 5);
    }
}
