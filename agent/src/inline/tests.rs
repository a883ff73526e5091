//! The Inline decisions on real Kafka frames in IPv4/TCP packets: ordering, hold and release
//! timing, per-request probability, the hold budget, straddling headers and hostile input.

use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest};
use kafka_protocol::records::Compression;
use kafka_shock_crds::FaultMatch;

use super::*;
use crate::decode::records::tests::batch;
use crate::sniffer::tests::{request, topic};
use crate::test_rng::Rng;
use crate::wire::packet::tests::ipv4_tcp;

const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const MS: Duration = Duration::from_millis(1);

/// A produce of 3 records to `topic_name` from checkout-svc, size-prefixed.
fn produce(correlation_id: i32, topic_name: &'static str) -> Vec<u8> {
    let body = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic(topic_name))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(3, Compression::None))),
                ]),
        ]);
    request(ApiKey::Produce, 9, correlation_id, "checkout-svc", &body)
}

/// "Produce to orders".
fn produce_orders() -> RequestMatcher {
    let spec: FaultMatch =
        serde_yaml::from_str("{apiKeys: [Produce], topics: [orders]}").expect("match");
    RequestMatcher::new(&spec).expect("matcher")
}

fn delay(ms: u32) -> Action {
    Action::Delay {
        delay: ms * MS,
        jitter: Duration::ZERO,
    }
}

/// One client connection through the queue.
struct Queue {
    decider: Decider,
    client: SocketAddr,
    broker: SocketAddr,
    seq: u32,
    now: Duration,
    next_id: PacketId,
    out: Vec<Release>,
}

impl Queue {
    fn new(action: Action, probability: u8) -> Self {
        let config = InlineConfig::new([9092], action, probability);
        Self::with_config(config)
    }

    fn with_config(config: InlineConfig) -> Self {
        let mut queue = Self {
            decider: Decider::new(config, produce_orders(), 7),
            client: "10.0.0.1:40000".parse().expect("addr"),
            broker: "10.0.0.2:9092".parse().expect("addr"),
            seq: 0xffff_ff00,
            now: Duration::from_secs(1_000),
            next_id: 0,
            out: Vec::new(),
        };
        let syn = queue.raw(queue.seq, SYN, b"");
        queue.seq = queue.seq.wrapping_add(1);
        assert_eq!(queue.take(), vec![(syn, PacketVerdict::Accept)]);
        queue
    }

    /// Queues one segment at `seq`; returns its id.
    fn raw(&mut self, seq: u32, flags: u8, payload: &[u8]) -> PacketId {
        let id = self.next_id;
        self.next_id += 1;
        let ip = ipv4_tcp(self.client, self.broker, seq, flags, payload);
        self.decider.on_packet(id, &ip, self.now, &mut self.out);
        id
    }

    /// Sends `bytes` in segments of `chunk` bytes; returns the segments' ids and seqs.
    fn send(&mut self, bytes: &[u8], chunk: usize) -> Vec<(PacketId, u32)> {
        let mut sent = Vec::new();
        for piece in bytes.chunks(chunk) {
            let seq = self.seq;
            sent.push((self.raw(seq, ACK, piece), seq));
            self.seq = seq.wrapping_add(piece.len() as u32);
        }
        sent
    }

    fn wait(&mut self, by: Duration) {
        self.now += by;
        self.decider.tick(self.now, &mut self.out);
    }

    fn take(&mut self) -> Vec<(PacketId, PacketVerdict)> {
        self.out
            .drain(..)
            .map(|release| (release.packet, release.verdict))
            .collect()
    }
}

fn accepted(ids: impl IntoIterator<Item = PacketId>) -> Vec<(PacketId, PacketVerdict)> {
    ids.into_iter()
        .map(|id| (id, PacketVerdict::Accept))
        .collect()
}

#[test]
fn requests_that_do_not_match_pass_at_once() {
    let mut queue = Queue::new(delay(500), 100);
    let sent = queue.send(&produce(1, "payments"), 40);
    assert!(sent.len() > 3);
    assert_eq!(queue.take(), accepted(sent.iter().map(|(id, _)| *id)));
    let counters = queue.decider.counters();
    assert_eq!(
        (
            counters.requests_seen,
            counters.requests_matched,
            counters.delayed
        ),
        (1, 0, 0)
    );
    assert_eq!(queue.decider.next_release(), None);
}

#[test]
fn delay_holds_the_completing_segment_and_everything_behind_it_in_order() {
    let mut queue = Queue::new(delay(500), 100);
    let sent = queue.send(&produce(1, "orders"), 50);
    let (last, _) = *sent.last().expect("segments");
    // The segments before the last pass: the broker cannot act on a partial request.
    assert_eq!(
        queue.take(),
        accepted(sent[..sent.len() - 1].iter().map(|(id, _)| *id))
    );
    assert_eq!(queue.decider.next_release(), Some(queue.now + 500 * MS));
    // A request to another topic queues behind the held one, as does a bare ACK.
    queue.wait(10 * MS);
    let behind = queue.send(&produce(2, "payments"), 1000);
    let ack = queue.raw(queue.seq, ACK, b"");
    assert!(
        queue.take().is_empty(),
        "everything behind the held request waits"
    );
    let counters = queue.decider.counters();
    assert_eq!((counters.held_packets, counters.delayed), (3, 1));
    queue.wait(489 * MS);
    assert!(queue.take().is_empty(), "not before 500 ms");
    queue.wait(MS);
    let mut order = vec![last];
    order.extend(behind.iter().map(|(id, _)| *id));
    order.push(ack);
    assert_eq!(queue.take(), accepted(order), "released in TCP order");
    assert_eq!(queue.decider.counters().held_packets, 0);
    assert_eq!(queue.decider.counters().held_bytes, 0);
    let hits = queue.decider.take_hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].outcome, Outcome::Delayed(500 * MS));
    assert_eq!(hits[0].request.topics, vec!["orders"]);
}

#[test]
fn each_request_is_held_once_from_its_own_arrival() {
    let mut queue = Queue::new(delay(500), 100);
    let first = queue.send(&produce(1, "orders"), 10_000);
    queue.wait(100 * MS);
    let second = queue.send(&produce(2, "orders"), 10_000);
    queue.wait(400 * MS);
    assert_eq!(queue.take(), accepted([first[0].0]), "first at 500 ms");
    queue.wait(99 * MS);
    assert!(queue.take().is_empty());
    queue.wait(MS);
    assert_eq!(
        queue.take(),
        accepted([second[0].0]),
        "second 500 ms after its own arrival, not 1000"
    );
    assert_eq!(queue.decider.counters().delayed, 2);
}

#[test]
fn jitter_stays_within_its_bound() {
    let mut queue = Queue::new(
        Action::Delay {
            delay: 100 * MS,
            jitter: 50 * MS,
        },
        100,
    );
    let mut holds = Vec::new();
    for id in 0..200 {
        queue.send(&produce(id, "orders"), 10_000);
        let release = queue.decider.next_release().expect("held");
        holds.push(release - queue.now);
        queue.wait(release - queue.now);
        assert_eq!(queue.take().len(), 1);
    }
    assert!(
        holds
            .iter()
            .all(|hold| (100 * MS..=150 * MS).contains(hold))
    );
    assert!(holds.iter().any(|hold| *hold < 110 * MS));
    assert!(holds.iter().any(|hold| *hold > 140 * MS));
}

#[test]
fn a_header_straddling_segments_is_matched_and_drop_blackholes_the_connection() {
    let mut queue = Queue::new(Action::Drop, 100);
    let frame = produce(1, "orders");
    // Size prefix and api key in one segment, the rest of the header in the next.
    let sent = queue.send(&frame[..6], 6);
    let rest = queue.send(&frame[6..], 10_000);
    assert_eq!(
        queue.take(),
        vec![
            (sent[0].0, PacketVerdict::Accept),
            (rest[0].0, PacketVerdict::Drop)
        ]
    );
    // The client's TCP retransmits the dropped segment: dropped again. A retransmission of
    // what passed before still passes.
    let (_, rest_seq) = rest[0];
    let again = queue.raw(rest_seq, ACK, &frame[6..]);
    let old = queue.raw(sent[0].1, ACK, &frame[..6]);
    assert_eq!(
        queue.take(),
        vec![(again, PacketVerdict::Drop), (old, PacketVerdict::Accept)]
    );
    let counters = queue.decider.counters();
    assert_eq!(
        (
            counters.requests_matched,
            counters.dropped,
            counters.packets_dropped
        ),
        (1, 1, 2)
    );
}

#[test]
fn a_request_behind_another_in_one_segment_is_matched_and_reset() {
    let mut queue = Queue::new(Action::Reject, 100);
    let mut both = produce(1, "payments");
    both.extend(produce(2, "orders"));
    let sent = queue.send(&both, 10_000);
    assert_eq!(queue.take(), vec![(sent[0].0, PacketVerdict::Reject)]);
    // Data the client sent before the reset reached it is reset too.
    let after = queue.send(&produce(3, "payments"), 10_000);
    assert_eq!(queue.take(), vec![(after[0].0, PacketVerdict::Reject)]);
    let counters = queue.decider.counters();
    assert_eq!(
        (
            counters.requests_seen,
            counters.requests_matched,
            counters.reset
        ),
        (2, 1, 1)
    );
}

#[test]
fn probability_is_drawn_once_per_request() {
    let mut queue = Queue::new(Action::Drop, 30);
    let mut hit = 0;
    for id in 0..2000 {
        // A fresh connection per request (a drop blackholes its connection).
        queue.client.set_port(20_000 + id as u16);
        queue.seq = 1;
        let syn = queue.raw(0, SYN, b"");
        let sent = queue.send(&produce(id, "orders"), 40);
        let verdicts = queue.take();
        assert_eq!(verdicts.len(), sent.len() + 1);
        assert_eq!(verdicts[0], (syn, PacketVerdict::Accept));
        // Only the completing segment is decided; the others always pass.
        let drops = verdicts
            .iter()
            .filter(|(_, verdict)| *verdict == PacketVerdict::Drop)
            .count();
        assert!(drops <= 1);
        assert!(
            verdicts[..verdicts.len() - 1]
                .iter()
                .all(|(_, verdict)| *verdict == PacketVerdict::Accept)
        );
        hit += drops;
    }
    let fraction = hit as f64 / 2000.0;
    assert!((0.26..=0.34).contains(&fraction), "{fraction}");
    let counters = queue.decider.counters();
    assert_eq!(counters.requests_matched, 2000);
    assert_eq!(counters.dropped, hit as u64);
    let spared = queue
        .decider
        .take_hits()
        .iter()
        .filter(|hit| hit.outcome == Outcome::Spared)
        .count();
    assert_eq!(spared, 2000 - hit);
}

#[test]
fn over_budget_the_connection_fails_open_in_order() {
    let mut config = InlineConfig::new([9092], delay(500), 100);
    config.budget.max_packets = 3;
    let mut queue = Queue::with_config(config);
    let first = queue.send(&produce(1, "orders"), 10_000);
    let behind = queue.send(&produce(2, "payments"), 10_000);
    let more = queue.send(&produce(3, "payments"), 10_000);
    assert!(queue.take().is_empty());
    let over = queue.send(&produce(4, "payments"), 10_000);
    assert_eq!(
        queue.take(),
        accepted([first[0].0, behind[0].0, more[0].0, over[0].0]),
        "held ones first, then the new one"
    );
    let counters = queue.decider.counters();
    assert_eq!((counters.failed_open, counters.held_packets), (1, 0));
    // A held request over budget is reported as failed open.
    let mut config = InlineConfig::new([9092], delay(500), 100);
    config.budget.max_bytes = 10;
    let mut queue = Queue::with_config(config);
    let sent = queue.send(&produce(1, "orders"), 10_000);
    assert_eq!(queue.take(), accepted([sent[0].0]));
    let hits = queue.decider.take_hits();
    assert_eq!(hits[0].outcome, Outcome::FailedOpen);
    assert_eq!(queue.decider.counters().delayed, 0);
}

#[test]
fn releasing_all_lets_every_held_packet_go_in_order() {
    let mut queue = Queue::new(delay(60_000), 100);
    let first = queue.send(&produce(1, "orders"), 10_000);
    let behind = queue.send(&produce(2, "payments"), 10_000);
    assert!(queue.take().is_empty());
    queue.decider.release_all(&mut queue.out);
    assert_eq!(queue.take(), accepted([first[0].0, behind[0].0]));
    assert_eq!(queue.decider.next_release(), None);
}

#[test]
fn hostile_traffic_is_accepted_at_once_with_bounded_memory() {
    let mut rng = Rng(0x1171e);
    let mut queue = Queue::new(delay(500), 100);
    // A 2 GiB length prefix, then junk: skipped as it arrives, never held.
    let mut huge = 0x7fff_fff0_i32.to_be_bytes().to_vec();
    huge.extend(rng.bytes(3000));
    let sent = queue.send(&huge, 1400);
    assert_eq!(queue.take(), accepted(sent.iter().map(|(id, _)| *id)));
    // Random junk, malformed packets and truncated headers on fresh connections.
    for round in 0..300 {
        queue.client.set_port(30_000 + round);
        queue.seq = rng.next() as u32;
        let len = rng.below(3000);
        let junk = rng.bytes(len);
        let sent = queue.send(&junk, 1 + rng.below(1500));
        let bad = queue.next_id;
        queue.next_id += 1;
        let len = rng.below(60);
        let garbage = rng.bytes(len);
        queue
            .decider
            .on_packet(bad, &garbage, queue.now, &mut queue.out);
        let mut expected: Vec<PacketId> = sent.iter().map(|(id, _)| *id).collect();
        expected.push(bad);
        let verdicts = queue.take();
        let ids: Vec<PacketId> = verdicts.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, expected);
        assert!(
            verdicts
                .iter()
                .all(|(_, verdict)| *verdict == PacketVerdict::Accept)
        );
        let counters = queue.decider.counters();
        assert_eq!(counters.held_packets, 0);
        assert!(counters.buffered_bytes < 4 << 20, "{counters:?}");
    }
    // The queue still decides: a real request after all that is held.
    queue.client.set_port(40_001);
    queue.seq = 1;
    queue.raw(0, SYN, b"");
    queue.send(&produce(9, "orders"), 10_000);
    assert_eq!(queue.take().len(), 1, "the SYN");
    assert_eq!(queue.decider.counters().delayed, 1);
}

#[test]
fn partial_frames_over_their_cap_fail_open() {
    let mut config = InlineConfig::new([9092], delay(500), 100);
    config.max_framed_bytes = 1000;
    let mut queue = Queue::with_config(config);
    let frame = produce(1, "orders");
    let mut big = frame.clone();
    // Declare a 500 KiB frame and send 2 KiB of it: over the 1000-byte cap.
    big[..4].copy_from_slice(&(500 * 1024_i32).to_be_bytes());
    big.extend(vec![0u8; 2048]);
    let sent = queue.send(&big, 1000);
    assert_eq!(queue.take(), accepted(sent.iter().map(|(id, _)| *id)));
    let counters = queue.decider.counters();
    assert!(counters.failed_open >= 1);
    assert!(counters.buffered_bytes <= 1000, "{counters:?}");
}
