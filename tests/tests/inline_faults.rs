//! Inline (NFQUEUE) enforcement on the lab, against real Kafka and real clients: Delay adds
//! its delay once per matching request and nothing to other traffic, probability is drawn per
//! request, a request whose header straddles segments is matched (where Signature misses
//! it), a killed agent fails open and its leftovers are swept, and hostile traffic through
//! the queue neither stalls it nor grows its memory. Every test checks at its end that the
//! broker's namespace holds no KSHOCK rule.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lab::{Background, FaultFiles, Lab, Stream, kafka_shock_bin};
use serde_json::Value;

fn broker_netns(lab: &Lab) -> String {
    lab.broker_netns()[0].clone()
}

/// How many KSHOCK chains and NFQUEUE rules the broker's namespace holds.
fn kshock_rules(lab: &Lab) -> usize {
    lab.broker_rules()
        .lines()
        .filter(|line| line.starts_with(":KSHOCK-") || line.contains("NFQUEUE"))
        .count()
}

fn kafka_shock(args: &[&str]) -> String {
    lab::stdout(Command::new(kafka_shock_bin().expect("kafka-shock")).args(args))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// The broker's namespace before a test: leftovers of dead runs swept, then nothing of ours.
fn clean_start(lab: &Lab) {
    kafka_shock(&["rules", "--netns", &broker_netns(lab)]);
    assert_eq!(
        kshock_rules(lab),
        0,
        "the broker's namespace holds rules of a live fault:\n{}",
        lab.broker_rules()
    );
}

fn start_inject(lab: &Lab, fault: &Path) -> Background {
    Background::start(
        Command::new(kafka_shock_bin().expect("kafka-shock"))
            .args(["inject", "-f"])
            .arg(fault)
            .args(["--netns", &broker_netns(lab)]),
        Stream::Stdout,
        "inject: active",
        Duration::from_secs(20),
    )
    .expect("inject becomes active")
}

/// Stops `inject` with SIGINT and checks that nothing of it is left.
fn stop_inject(lab: &Lab, inject: Background) -> String {
    let output = inject.interrupt().expect("inject exits 0 on SIGINT");
    assert!(output.contains("nothing of this fault is left"), "{output}");
    assert_eq!(kshock_rules(lab), 0, "rules left:\n{}", lab.broker_rules());
    output
}

/// One kafka-python run of `tests/clients/produce_latency.py`.
struct Latencies {
    acked: u64,
    latencies_ms: Vec<f64>,
}

impl Latencies {
    fn p50(&self) -> f64 {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
    }

    fn max(&self) -> f64 {
        self.latencies_ms.iter().copied().fold(0.0, f64::max)
    }
}

/// Sends `count` records one by one (acks=1, one request in flight) as `client_id`, timing
/// each acknowledgement.
fn produce_latencies(lab: &Lab, topic: &str, client_id: &str, count: u32) -> Latencies {
    let report = lab.python_report(
        "produce_latency.py",
        &[topic, client_id, &count.to_string(), "4000"],
    );
    Latencies {
        acked: report["acked"].as_u64().expect("acked"),
        latencies_ms: report["latencies_ms"]
            .as_array()
            .expect("latencies")
            .iter()
            .filter_map(Value::as_f64)
            .collect(),
    }
}

/// A number after `label` in the inject output's closing `inject: inline:` line.
fn inline_counter(output: &str, label: &str) -> u64 {
    let line = output
        .lines()
        .find(|line| line.starts_with("inject: inline:"))
        .unwrap_or_else(|| panic!("no inline counters in:\n{output}"));
    line.split(',')
        .find(|part| part.trim_start().contains(label))
        .and_then(|part| part.split_whitespace().find_map(|word| word.parse().ok()))
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"))
}

#[test]
fn delay_produce_to_orders_adds_its_delay_once_and_nothing_elsewhere() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    for topic in ["orders", "other"] {
        lab.create_topic(topic, 1, 1).expect("topic");
    }
    let base_orders = produce_latencies(&lab, "orders", "delay-base", 30);
    let base_other = produce_latencies(&lab, "other", "delay-base", 30);
    let scratch = FaultFiles::new("inline-delay");
    // Auto: a Delay can only be Inline.
    let fault = scratch.fault(
        "delay-orders",
        "  match: {apiKeys: [Produce], topics: [orders]}\n  action: {type: Delay, delay: 500ms}\n  duration: 5m\n",
    );
    let inject = start_inject(&lab, &fault);
    let orders = produce_latencies(&lab, "orders", "delay-a", 20);
    let other = produce_latencies(&lab, "other", "delay-a", 20);
    let output = stop_inject(&lab, inject);
    let added_orders = orders.p50() - base_orders.p50();
    let added_other = other.p50() - base_other.p50();
    eprintln!(
        "p50 without the fault: orders {:.1} ms, other {:.1} ms; with it: orders {:.1} ms \
         (+{added_orders:.1}, max {:.1}), other {:.1} ms (+{added_other:.1})",
        base_orders.p50(),
        base_other.p50(),
        orders.p50(),
        orders.max(),
        other.p50()
    );
    assert!(output.contains("Inline"), "Auto must pick Inline: {output}");
    assert_eq!((orders.acked, other.acked), (20, 20), "nothing may fail");
    assert!(
        (450.0..=550.0).contains(&added_orders),
        "produces to orders must take 500 ms ± 50 ms longer, took +{added_orders:.1} ms"
    );
    assert!(
        orders.max() < base_orders.max() + 900.0,
        "a request is delayed once, not twice: max {:.1} ms",
        orders.max()
    );
    assert!(
        added_other.abs() < 20.0,
        "produces to other must be unaffected, took {added_other:+.1} ms"
    );
    assert_eq!(inline_counter(&output, "delayed"), 20, "{output}");
    assert!(output.contains("→ delayed (inline, 500 ms)"), "{output}");
}

#[test]
fn probability_hits_its_share_of_requests() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    lab.create_topic("orders", 1, 1).expect("topic");
    let scratch = FaultFiles::new("inline-probability");
    let fault = scratch.fault(
        "delay-30",
        "  match: {apiKeys: [Produce], topics: [orders]}\n  action: {type: Delay, delay: 40ms, probability: 30}\n  enforcement: Inline\n  duration: 5m\n",
    );
    let inject = start_inject(&lab, &fault);
    let run = produce_latencies(&lab, "orders", "probability", 1000);
    let output = stop_inject(&lab, inject);
    let delayed = run.latencies_ms.iter().filter(|ms| **ms >= 38.0).count();
    let fraction = delayed as f64 / run.latencies_ms.len() as f64;
    let counted = inline_counter(&output, "delayed") as f64 / 1000.0;
    eprintln!(
        "{delayed}/{} produces took ≥ 38 ms ({:.1} %); the engine delayed {:.1} %",
        run.latencies_ms.len(),
        fraction * 100.0,
        counted * 100.0
    );
    assert_eq!(run.acked, 1000);
    assert_eq!(inline_counter(&output, "matched"), 1000, "{output}");
    assert!(
        (0.25..=0.35).contains(&fraction),
        "the client saw {:.1} % delayed",
        fraction * 100.0
    );
    assert!(
        (0.25..=0.35).contains(&counted),
        "the engine delayed {:.1} %",
        counted * 100.0
    );
}

/// Small segments from the client namespace to broker 0 while it lives: a host route whose
/// MTU is locked at 100 bytes (48 bytes of TCP payload with timestamps), and one segment per
/// packet on the client's interface (no GSO super-packet, which the broker's rules would see
/// whole). Both are undone on drop.
struct SmallSegments {
    lab_client: String,
    route: String,
}

impl SmallSegments {
    fn new(lab: &Lab) -> SmallSegments {
        let broker = lab.broker_addrs()[0]
            .split(':')
            .next()
            .expect("broker ip")
            .to_owned();
        let small = SmallSegments {
            lab_client: lab.client_netns().to_owned(),
            route: format!("{broker}/32"),
        };
        small.ip(&[
            "route",
            "replace",
            &small.route,
            "dev",
            "eth0",
            "mtu",
            "lock",
            "100",
        ]);
        small.ip(&["link", "set", "dev", "eth0", "gso_max_segs", "1"]);
        small
    }

    fn ip(&self, args: &[&str]) {
        lab::run(Command::new("ip").args(["-n", &self.lab_client]).args(args))
            .unwrap_or_else(|error| panic!("{error}"));
    }
}

impl Drop for SmallSegments {
    fn drop(&mut self) {
        self.ip(&["route", "del", &self.route]);
        self.ip(&["link", "set", "dev", "eth0", "gso_max_segs", "65535"]);
    }
}

/// How many of `count` records kafka-python delivers as `client_id` (one try each).
fn acked(lab: &Lab, topic: &str, client_id: &str, count: u32) -> u64 {
    produce_latencies(lab, topic, client_id, count).acked
}

#[test]
fn a_header_straddling_segments_is_matched_inline_and_missed_by_signature() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    lab.create_topic("orders", 1, 1).expect("topic");
    // 40 bytes of client id: with 48-byte segments it ends in the request's second segment.
    let client = "straddling-client-id-of-forty-bytes-0001";
    let match_ = format!("  match: {{apiKeys: [Produce], clientId: {{exact: {client}}}}}\n");
    let scratch = FaultFiles::new("inline-straddle");
    let signature = scratch.fault(
        "reset-signature",
        &format!("{match_}  action: {{type: Reject}}\n  enforcement: Signature\n  duration: 5m\n"),
    );
    let inline = scratch.fault(
        "reset-inline",
        &format!("{match_}  action: {{type: Reject}}\n  enforcement: Inline\n  duration: 5m\n"),
    );

    let inject = start_inject(&lab, &signature);
    let signature_whole = acked(&lab, "orders", client, 5);
    let signature_split = {
        let _small = SmallSegments::new(&lab);
        acked(&lab, "orders", client, 5)
    };
    stop_inject(&lab, inject);

    let inject = start_inject(&lab, &inline);
    let inline_split = {
        let _small = SmallSegments::new(&lab);
        acked(&lab, "orders", client, 5)
    };
    let others_split = {
        let _small = SmallSegments::new(&lab);
        acked(&lab, "orders", "someone-else", 5)
    };
    let output = stop_inject(&lab, inject);
    eprintln!(
        "delivered of 5: Signature, whole segments {signature_whole}; Signature, 48-byte \
         segments {signature_split}; Inline, 48-byte segments {inline_split} (another client \
         {others_split})"
    );
    assert_eq!(signature_whole, 0, "Signature resets whole requests");
    assert_eq!(
        signature_split, 5,
        "Signature misses a straddling client id"
    );
    assert_eq!(inline_split, 0, "Inline resets the straddling request");
    assert_eq!(others_split, 5, "Inline leaves other clients alone");
    assert!(inline_counter(&output, "reset") >= 5, "{output}");
}

#[test]
fn a_killed_engine_fails_open_and_its_leftovers_are_swept() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    lab.create_topic("orders", 1, 1).expect("topic");
    let scratch = FaultFiles::new("inline-sigkill");
    let fault = scratch.fault(
        "delay-killed",
        "  match: {apiKeys: [Produce], topics: [orders]}\n  action: {type: Delay, delay: 500ms}\n  duration: 5m\n",
    );
    let inject = start_inject(&lab, &fault);
    let during = produce_latencies(&lab, "orders", "killed", 3);
    assert!(
        during.p50() >= 450.0,
        "the delay is on: {:?}",
        during.latencies_ms
    );
    inject.kill();
    assert!(
        lab.broker_rules().contains("--queue-bypass"),
        "SIGKILL leaves the dead run's queue rule"
    );
    let after = produce_latencies(&lab, "orders", "killed", 20);
    eprintln!(
        "p50 with the engine: {:.1} ms; after SIGKILL, rules still in place: {:.1} ms",
        during.p50(),
        after.p50()
    );
    assert_eq!(after.acked, 20, "clients keep working");
    assert!(
        after.p50() < 100.0,
        "nothing is held any more: {:?}",
        after.latencies_ms
    );
    let swept = kafka_shock(&["clean", "--netns", &broker_netns(&lab)]);
    eprintln!("{swept}");
    assert_eq!(kshock_rules(&lab), 0, "rules left:\n{}", lab.broker_rules());
    assert_eq!(acked(&lab, "orders", "killed", 3), 3);
}

/// Junk thrown at the broker port from the client namespace: a 2 GiB length prefix followed
/// by junk, a valid size with a garbage header, random bytes, and many connections at once.
const HOSTILE: &str = r#"
import os, socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
def throw(payload):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(payload), 1000):
            s.sendall(payload[i:i + 1000])
        s.close()
    except OSError:
        pass
throw(struct.pack(">i", 0x7ffffff0) + os.urandom(200000))
throw(struct.pack(">i", 64) + os.urandom(64) * 50)
throw(struct.pack(">i", -5) + os.urandom(50000))
throw(os.urandom(500000))
held = []
for _ in range(200):
    try:
        s = socket.create_connection((host, port), timeout=2)
        s.sendall(struct.pack(">ihhi", 1 << 20, 0, 9, 1) + os.urandom(2000))
        held.append(s)
    except OSError:
        pass
for s in held:
    s.close()
print("thrown")
"#;

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("process status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn hostile_traffic_never_stalls_the_queue_nor_grows_its_memory() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    for topic in ["orders", "other"] {
        lab.create_topic(topic, 1, 1).expect("topic");
    }
    let scratch = FaultFiles::new("inline-hostile");
    let fault = scratch.fault(
        "delay-hostile",
        "  match: {apiKeys: [Produce], topics: [orders]}\n  action: {type: Delay, delay: 200ms}\n  duration: 5m\n",
    );
    let inject = start_inject(&lab, &fault);
    let pid = inject.pid().expect("inject runs");
    let rss_before = rss_kib(pid);
    let (host, port) = lab
        .bootstrap()
        .split_once(',')
        .map_or(lab.bootstrap(), |(first, _)| first)
        .split_once(':')
        .expect("host:port");
    let mut max_rss = rss_before;
    for _ in 0..3 {
        let thrown = lab::stdout(lab.client("python").args(["-c", HOSTILE, host, port]))
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(thrown.contains("thrown"), "{thrown}");
        max_rss = max_rss.max(rss_kib(pid));
    }
    let other = produce_latencies(&lab, "other", "after-junk", 10);
    let orders = produce_latencies(&lab, "orders", "after-junk", 5);
    max_rss = max_rss.max(rss_kib(pid));
    let output = stop_inject(&lab, inject);
    eprintln!(
        "inject RSS {rss_before} KiB before, at most {max_rss} KiB during 3 rounds of junk; \
         after: other p50 {:.1} ms, orders p50 {:.1} ms",
        other.p50(),
        orders.p50()
    );
    assert_eq!(
        (other.acked, orders.acked),
        (10, 5),
        "the queue still passes traffic"
    );
    assert!(other.p50() < 50.0, "not stalled: {:?}", other.latencies_ms);
    assert!(
        (180.0..=300.0).contains(&orders.p50()),
        "the queue still decides: {:?}",
        orders.latencies_ms
    );
    assert!(
        max_rss < rss_before + 128 * 1024,
        "memory grew from {rss_before} KiB to {max_rss} KiB"
    );
    assert!(inline_counter(&output, "delayed") >= 5, "{output}");
}
