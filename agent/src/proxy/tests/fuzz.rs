//! A deterministic fuzz test of the connection state machine, in the style of
//! `tests/fuzz_core.rs`: real conversations, mutated the ways hostile or broken peers mutate
//! them (bit flips, truncations, absurd and 2 GiB size claims, junk, TLS, closes mid-frame),
//! cut into random chunks, interleaved with ticks, closes and the fault's end.
//!
//! Checked for every input: no panic; the bytes buffered over all connections stay within the
//! budget (plus the one byte a connection keeps before it knows whether it is TLS); and, for a
//! fault whose match selects nothing, the proxy is byte-transparent in both directions,
//! whatever the bytes (but for a request frame or response head a stream ends inside). A failing seed replays with
//! `KSHOCK_FUZZ_SEED=<seed> KSHOCK_FUZZ_ITERS=1 cargo test -p kafka-shock-agent --lib proxy::tests::fuzz`.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;
use kafka_shock_crds::FaultMatch;

use super::*;
use crate::proxy::corrupt::tests::batch;
use crate::proxy::{Action, CorruptTarget, Fault, Output, ProxyConfig, ProxyCounters};
use crate::test_rng::Rng;

/// Inputs per run when `KSHOCK_FUZZ_ITERS` is unset (a few seconds in the debug profile).
const DEFAULT_ITERS: u64 = 5000;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A request and its response, size-prefixed.
fn exchange(rng: &mut Rng, id: i32) -> (Vec<u8>, Vec<u8>) {
    let records = || {
        Some(Bytes::from(batch(
            3,
            [Compression::None, Compression::Lz4][id as usize % 2],
        )))
    };
    match rng.below(4) {
        0 => {
            use kafka_protocol::messages::produce_request::{
                PartitionProduceData, TopicProduceData,
            };
            let body = ProduceRequest::default()
                .with_acks([-1, 1, 0][rng.below(3)])
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(topic(["orders", "payments"][rng.below(2)]))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(records()),
                        ]),
                ]);
            let reply = response(ApiKey::Produce, 9, id, &ProduceResponse::default());
            let reply = if body.acks == 0 { Vec::new() } else { reply };
            (request(ApiKey::Produce, 9, id, "fuzz", &body), reply)
        }
        1 => {
            use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
            use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
            let body = FetchRequest::default().with_topics(vec![
                FetchTopic::default()
                    .with_topic(topic("orders"))
                    .with_partitions(vec![FetchPartition::default()]),
            ]);
            let reply = FetchResponse::default().with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(topic("orders"))
                    .with_partitions(vec![PartitionData::default().with_records(records())]),
            ]);
            (
                request(ApiKey::Fetch, 12, id, "fuzz", &body),
                response(ApiKey::Fetch, 12, id, &reply),
            )
        }
        2 => {
            let body = MetadataRequest::default().with_topics(None);
            (
                request(ApiKey::Metadata, 12, id, "fuzz", &body),
                response(ApiKey::Metadata, 12, id, &MetadataResponse::default()),
            )
        }
        _ => {
            let body = HeartbeatRequest::default().with_group_id(GroupId(text("billing")));
            (
                request(ApiKey::Heartbeat, 4, id, "fuzz", &body),
                response(ApiKey::Heartbeat, 4, id, &HeartbeatResponse::default()),
            )
        }
    }
}

/// Breaks a message the ways a hostile or broken peer would.
fn mutate(rng: &mut Rng, message: &mut Vec<u8>) {
    if message.is_empty() {
        return;
    }
    match rng.below(8) {
        0 => {
            let size: i32 = [i32::MAX, -1, i32::MIN, 0, 3, (64 << 20)][rng.below(6)];
            let n = message.len().min(4);
            message[..n].copy_from_slice(&size.to_be_bytes()[..n]);
        }
        1 => {
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(message.len());
                message[at] ^= 1 << rng.below(8);
            }
        }
        2 => message.truncate(rng.below(message.len())),
        3 => {
            let at = rng.below(message.len() + 1);
            let len = rng.below(64);
            let junk = rng.bytes(len);
            message.splice(at..at, junk);
        }
        4 => {
            message.splice(0..0, [0x16, 0x03, 0x01]);
        }
        // An element count deep in the body made absurd.
        5 if message.len() > 20 => {
            let at = 12 + rng.below(message.len() - 15);
            message[at..at + 3].copy_from_slice(&[0x7f, 0xff, 0xff]);
        }
        6 => {
            let len = rng.below(300);
            *message = rng.bytes(len);
        }
        _ => {}
    }
}

fn action(rng: &mut Rng) -> Action {
    match rng.below(6) {
        0 => Action::Error([6, 15, 27][rng.below(3)]),
        1 => Action::Throttle(Duration::from_millis(rng.below(3000) as u64)),
        2 => Action::Delay {
            delay: Duration::from_millis(rng.below(1000) as u64),
            jitter: Duration::from_millis(rng.below(100) as u64),
        },
        3 => Action::Corrupt {
            target: [CorruptTarget::Produce, CorruptTarget::Fetch][rng.below(2)],
            fix_crc: rng.below(2) == 0,
        },
        4 => Action::Duplicate,
        _ => Action::Error(NOT_LEADER),
    }
}

/// One input: returns whether the transparency check applied, and the fault's counters.
fn run(seed: u64) -> (bool, ProxyCounters) {
    let mut rng = Rng(seed);
    let transparent = rng.below(3) == 0;
    // (A fault naming topics reads Metadata responses whole for their topic ids, so the
    // transparent one names a client instead: every response then streams.)
    let matching = if transparent {
        "{clientId: {exact: nothing-matches-this}}"
    } else {
        [
            "{}",
            "{apiKeys: [Produce], topics: [orders]}",
            "{apiKeys: [Fetch, Metadata, Heartbeat]}",
        ][rng.below(3)]
    };
    let mut config = ProxyConfig::new(action(&mut rng), 1 + rng.below(100) as u8);
    // Mostly room for the conversation, sometimes limits it runs into.
    let tight = rng.below(4) == 0;
    let bound = |rng: &mut Rng, roomy: usize| if tight { 1 + rng.below(roomy) } else { roomy };
    config.max_frame = bound(&mut rng, 32 << 10);
    config.max_buffered = bound(&mut rng, 128 << 10);
    config.max_in_flight = bound(&mut rng, 8);
    config.max_decompressed = bound(&mut rng, 64 << 10);
    let (budget, max_frame) = (config.max_buffered, config.max_frame);
    let spec: FaultMatch = serde_yaml::from_str(matching).expect("match");
    let mut fault = Fault::new(config, &spec, seed).expect("fault");
    let connections = 1 + rng.below(3);
    for c in 0..connections {
        let client = format!("10.77.0.100:{}", 40_000 + c).parse().expect("addr");
        let mut conn = fault.connection(client, "10.77.0.10:9092".parse().expect("addr"));
        let (mut requests, mut responses) = (Vec::new(), Vec::new());
        // (bytes of requests, bytes of responses to them) after each exchange: a broker
        // answers only what it was sent, except in a broker that speaks out of turn.
        let mut answerable = vec![(0, usize::MAX)];
        let out_of_turn = rng.below(5) == 0;
        for id in 0..1 + rng.below(12) {
            let (mut request, mut reply) = exchange(&mut rng, id as i32);
            if rng.below(6) == 0 {
                mutate(&mut rng, &mut request);
            }
            if rng.below(8) == 0 {
                mutate(&mut rng, &mut reply);
            }
            requests.extend(request);
            responses.extend(reply);
            answerable.push((requests.len(), responses.len()));
        }
        if !out_of_turn {
            answerable[0].1 = 0;
        }
        let (mut upstream, mut downstream) = (Vec::new(), Vec::new());
        let (mut sent, mut received) = (0, 0);
        let mut now = Duration::from_secs(1_700_000_000);
        let mut out = Output::default();
        let mut ended = false;
        while sent < requests.len() || received < responses.len() {
            match rng.below(10) {
                0..=3 if sent < requests.len() => {
                    let n = 1 + rng.below(requests.len() - sent);
                    conn.from_client(&mut fault, &requests[sent..sent + n], now, &mut out);
                    sent += n;
                }
                4..=7 if received < responses.len() => {
                    let allowed = answerable
                        .iter()
                        .filter(|(sent_by, _)| *sent_by <= sent)
                        .map(|&(_, upto)| upto.min(responses.len()))
                        .max()
                        .unwrap_or(0);
                    if allowed <= received {
                        continue;
                    }
                    let n = 1 + rng.below(allowed - received);
                    conn.from_broker(
                        &mut fault,
                        &responses[received..received + n],
                        now,
                        &mut out,
                    );
                    received += n;
                }
                8 => {
                    now += Duration::from_millis(rng.below(1500) as u64);
                    conn.tick(now, &mut out);
                }
                _ if !transparent && rng.below(20) == 0 && !ended => {
                    ended = true;
                    match rng.below(3) {
                        0 => conn.finish(&mut out),
                        1 => conn.client_closed(&mut out),
                        _ => conn.broker_closed(&mut out),
                    }
                }
                _ => {}
            }
            let buffered = fault.counters().buffered_bytes as usize;
            assert!(
                buffered <= budget + connections,
                "seed {seed}: {buffered} over {budget}"
            );
            upstream.append(&mut out.to_broker);
            downstream.append(&mut out.to_client);
            assert!(
                !transparent || !out.close,
                "seed {seed}: closed a transparent connection"
            );
        }
        now += Duration::from_secs(10);
        conn.tick(now, &mut out);
        upstream.append(&mut out.to_broker);
        if transparent {
            // A request goes on once whole, a response once its size and correlation id are
            // in: a stream that ends inside those keeps them.
            let cut = requests.len() - upstream.len().min(requests.len());
            assert!(
                requests.starts_with(&upstream) && cut < max_frame + 4,
                "seed {seed}: upstream"
            );
            let cut = responses.len() - downstream.len().min(responses.len());
            assert!(
                responses.starts_with(&downstream) && cut < 8,
                "seed {seed}: downstream {downstream:?} of {responses:?}"
            );
        }
        drop(conn);
    }
    assert_eq!(
        fault.counters().buffered_bytes,
        0,
        "seed {seed}: budget given back"
    );
    (transparent, fault.counters())
}

#[test]
fn hostile_streams_never_panic_stay_bounded_and_pass_untouched_when_unmatched() {
    let iters = env_u64("KSHOCK_FUZZ_ITERS", DEFAULT_ITERS);
    let first = env_u64("KSHOCK_FUZZ_SEED", 0);
    let (mut transparent, mut total) = (0, ProxyCounters::default());
    for seed in first..first + iters {
        let Ok((checked, counters)) = std::panic::catch_unwind(|| run(seed)) else {
            panic!(
                "proxy fuzz input {seed} failed; replay: KSHOCK_FUZZ_SEED={seed} KSHOCK_FUZZ_ITERS=1"
            );
        };
        transparent += u64::from(checked);
        let sum = |a: &mut u64, b: u64| *a += b;
        sum(&mut total.requests_seen, counters.requests_seen);
        sum(&mut total.errored, counters.errored);
        sum(&mut total.throttled, counters.throttled);
        sum(&mut total.delayed, counters.delayed);
        sum(&mut total.corrupted, counters.corrupted);
        sum(&mut total.duplicated, counters.duplicated);
        sum(&mut total.undecodable, counters.undecodable);
        sum(&mut total.passthrough_tls, counters.passthrough_tls);
        sum(&mut total.passthrough_other, counters.passthrough_other);
        sum(&mut total.failed_open, counters.failed_open);
        sum(&mut total.out_of_order_closed, counters.out_of_order_closed);
    }
    eprintln!(
        "proxy fuzz: {iters} inputs, {transparent} checked for transparency; reached {total:?}"
    );
    if iters >= DEFAULT_ITERS {
        // The generator reaches every path it is meant to.
        let reached = [
            total.errored,
            total.throttled,
            total.delayed,
            total.corrupted,
            total.duplicated,
            total.undecodable,
            total.passthrough_tls,
            total.passthrough_other,
            total.failed_open,
            total.out_of_order_closed,
        ];
        assert!(reached.iter().all(|&n| n > 0), "{total:?}");
        assert!(transparent > 0);
    }
}
