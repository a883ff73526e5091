//! A deterministic fuzz test of the pure core, runnable on stable in CI
//! (cargo-fuzz needs nightly): packets, TCP reassembly, framing and decoding
//! get a large number of generated inputs, from real Kafka conversations
//! mutated the way networks and attackers mutate them to pure random bytes.
//!
//! Every input is generated from its seed alone, so a failure replays with
//! `KSHOCK_FUZZ_SEED=<seed> KSHOCK_FUZZ_ITERS=1`. `KSHOCK_FUZZ_ITERS` sets the
//! number of inputs (the default keeps a debug run well under a minute):
//!
//! ```sh
//! KSHOCK_FUZZ_ITERS=2000000 cargo test --release -p kafka-shock-agent --test fuzz_core -- --nocapture
//! ```
//!
//! Checked for every input: no panic; the sniffer's buffered bytes stay under
//! the bound its configuration implies after every packet; the framer's stay
//! under one frame; the events counter matches the events returned; and when
//! the mutations were only those TCP recovers from (splits, reordering within
//! a message, retransmissions, overlaps), every request is decoded and paired
//! with its response exactly as sent.

mod support;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_shock_agent::decode::{
    REQUEST_PROBE_LEN, decode_request, decode_response, plausible_request_start,
};
use kafka_shock_agent::sniffer::event::Event;
use kafka_shock_agent::sniffer::{Counters, Sniffer, SnifferConfig};
use kafka_shock_agent::wire::frame::{
    BoundaryCheck, FrameEvent, Framer, FramerConfig, FramingCounters,
};
use kafka_shock_agent::wire::packet::LinkType;
use serde_json::Value;
use support::*;

/// Inputs per run when `KSHOCK_FUZZ_ITERS` is unset: ~30-60 s in the debug profile on 2 cores.
const DEFAULT_ITERS: u64 = 25_000;

/// Small limits, so that hostile inputs reach them within a few packets.
fn config() -> SnifferConfig {
    let mut config = SnifferConfig::with_broker_ports([9092]);
    config.reassembly.max_buffered_per_flow = 64 << 10;
    config.reassembly.max_flows = 4;
    config.framer = FramerConfig {
        max_frame: 32 << 10,
        oversized_head: 4 << 10,
    };
    config.max_pending_per_connection = 16;
    config
}

/// What the sniffer may hold at most under `config`: per tracked connection and
/// direction, the out-of-order cap plus one partial frame with its prefix.
fn buffer_bound(config: &SnifferConfig) -> usize {
    let per_direction = config.reassembly.max_buffered_per_flow + config.framer.max_frame + 4;
    config.reassembly.max_flows * 2 * per_direction
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}"))
        })
        .unwrap_or(default)
}

/// One request and its response, size-prefixed, as a client and broker send them.
#[derive(Clone)]
struct Exchange {
    api: &'static str,
    correlation_id: i32,
    request: Vec<u8>,
    response: Vec<u8>,
}

fn exchanges(rng: &mut Rng) -> Vec<Exchange> {
    let count = 1 + rng.below(5);
    (0..count)
        .map(|i| {
            let correlation_id = i as i32 + 1 + rng.below(1000) as i32 * 8;
            if rng.one_in(2) {
                Exchange {
                    api: "Produce",
                    correlation_id,
                    request: produce_request(correlation_id),
                    response: produce_response(correlation_id),
                }
            } else {
                Exchange {
                    api: "Metadata",
                    correlation_id,
                    request: metadata_request(correlation_id),
                    response: metadata_response(correlation_id),
                }
            }
        })
        .collect()
}

/// Segment size for one message: mostly MTU-like, sometimes tiny or huge (GRO).
fn mss(rng: &mut Rng) -> usize {
    match rng.below(6) {
        0 => 1 + rng.below(8),
        1 => 1 + rng.below(200),
        2 => 65_000,
        _ => 1448,
    }
}

/// Reorders, splits, duplicates and overlaps the segments of one message,
/// all of which TCP reassembly must undo.
fn benign_shuffle(rng: &mut Rng, segments: &mut Vec<Segment>) {
    if segments.len() > 1 && rng.one_in(3) {
        for i in (1..segments.len()).rev() {
            segments.swap(i, rng.below(i + 1));
        }
    }
    if !segments.is_empty() && rng.one_in(3) {
        for _ in 0..1 + rng.below(3) {
            let copy = segments[rng.below(segments.len())].clone();
            let at = rng.below(segments.len() + 1);
            segments.insert(at, copy);
        }
    }
    if segments.len() > 1 && rng.one_in(4) {
        // A retransmission that spans the end of one segment and the start of another.
        let first = rng.below(segments.len() - 1);
        let (a, b) = (&segments[first], &segments[first + 1]);
        if b.seq == a.seq.wrapping_add(a.payload.len() as u32) && !a.payload.is_empty() {
            let from = rng.below(a.payload.len());
            let mut payload = a.payload[from..].to_vec();
            payload.extend_from_slice(&b.payload[..rng.below(b.payload.len() + 1)]);
            let overlap = Segment {
                seq: a.seq.wrapping_add(from as u32),
                payload,
                ..a.clone()
            };
            segments.insert(rng.below(segments.len() + 1), overlap);
        }
    }
}

/// Corrupts a size-prefixed frame the ways a hostile or broken peer would.
fn corrupt_frame(rng: &mut Rng, frame: &mut Vec<u8>) {
    match rng.below(9) {
        0 => {
            let size = match rng.below(6) {
                0 => -1 - rng.below(1 << 20) as i32,
                1 => 0,
                2 => rng.below(5) as i32,
                3 => i32::MAX,
                4 => (rng.next_u64() >> 33) as i32,
                _ => (frame.len() as i32 - 4) + rng.below(64) as i32 - 32,
            };
            frame[..4].copy_from_slice(&size.to_be_bytes());
        }
        1 => {
            let key = match rng.below(3) {
                0 => rng.below(100) as i16,
                1 => 999,
                _ => rng.next_u64() as i16,
            };
            frame[4..6].copy_from_slice(&key.to_be_bytes());
        }
        2 => {
            let version = rng.below(40) as i16 - 4;
            frame[6..8].copy_from_slice(&version.to_be_bytes());
        }
        3 => {
            // The body ends early, the prefix saying so.
            let keep = 4 + rng.below(frame.len() - 4);
            frame.truncate(keep);
            let size = (keep - 4) as i32;
            frame[..4].copy_from_slice(&size.to_be_bytes());
        }
        4 => {
            // The body ends early, the prefix unchanged.
            frame.truncate(rng.below(frame.len()));
        }
        5 => {
            let flips = 1 + rng.below(8);
            rng.flip_bits(frame, flips);
        }
        6 => {
            let at = rng.below(frame.len() + 1);
            let len = rng.below(64);
            let junk = rng.bytes(len);
            frame.splice(at..at, junk);
        }
        7 => {
            // A huge claim followed by more than the oversized head.
            frame[..4].copy_from_slice(&(64i32 << 20).to_be_bytes());
            let len = rng.below(8 << 10);
            frame.extend(rng.bytes(len));
        }
        _ => {
            // An element count or string length inside the body set to something absurd.
            if frame.len() > 16 {
                let at = 12 + rng.below(frame.len() - 15);
                let value = [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
                let from = rng.below(4);
                let end = (at + 4).min(frame.len());
                frame[at..end].copy_from_slice(&value[from..from + (end - at)]);
            }
        }
    }
}

/// Breaks a conversation's segments beyond what TCP recovers from.
fn hostile_segments(rng: &mut Rng, segments: &mut Vec<Segment>) {
    for _ in 0..1 + rng.below(6) {
        if segments.is_empty() {
            return;
        }
        let i = rng.below(segments.len());
        match rng.below(9) {
            0 => {
                segments.remove(i);
            }
            1 => {
                let j = rng.below(segments.len());
                segments.swap(i, j);
            }
            2 => {
                let copy = segments[i].clone();
                segments.insert(rng.below(segments.len() + 1), copy);
            }
            3 => segments[i].seq = rng.next_u64() as u32,
            4 => segments[i].seq = segments[i].seq.wrapping_add(rng.below(1 << 17) as u32),
            5 => segments[i].flags ^= [FIN, SYN, RST, ACK, PSH][rng.below(5)],
            6 => {
                let flips = 1 + rng.below(4);
                rng.flip_bits(&mut segments[i].payload, flips);
            }
            7 => {
                let len = segments[i].payload.len();
                segments[i].payload.truncate(rng.below(len + 1));
            }
            _ => segments[i].to_broker = !segments[i].to_broker,
        }
    }
}

/// Wraps a raw IPv4 packet in a random link layer.
fn link_layer(rng: &mut Rng, ip: Vec<u8>) -> (LinkType, Vec<u8>) {
    match rng.below(4) {
        0 => (LinkType::Ethernet, ethernet(&ip)),
        1 => {
            let mut frame = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
            frame.extend(ip);
            (LinkType::LinuxSll, frame)
        }
        2 => {
            let mut frame = vec![
                0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
            ];
            frame.extend(ip);
            (LinkType::LinuxSll2, frame)
        }
        _ => (LinkType::RawIp, ip),
    }
}

const LINKS: [LinkType; 4] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
];

/// One packet as the sniffer gets it.
struct Packet {
    link: LinkType,
    ts: Duration,
    data: Vec<u8>,
}

/// What one input is made of.
enum Input {
    /// A conversation TCP recovers from: all exchanges must decode.
    Recoverable(Vec<Exchange>),
    /// Anything else: only robustness is checked.
    Hostile,
}

/// Generates the input of `seed`: its packets and what they should decode to.
fn generate(seed: u64) -> (Vec<Packet>, Input, Vec<Vec<u8>>) {
    let mut rng = Rng::new(seed);
    let mut frames = Vec::new();
    if rng.one_in(10) {
        return (random_packets(&mut rng), Input::Hostile, frames);
    }
    let hostile = !rng.one_in(3);
    let mut all = Vec::new();
    let mut expected = Vec::new();
    let connections = if hostile { 1 + rng.below(3) } else { 1 };
    for connection in 0..connections {
        let client = addr(&format!("10.77.0.100:{}", 40_000 + connection));
        let mut c = Conversation::open(client, addr("10.77.0.10:9092"), EPOCH);
        if hostile && rng.one_in(4) {
            // Join mid-stream: no handshake seen.
            c.segments.clear();
        }
        let exchanges = exchanges(&mut rng);
        for exchange in &exchanges {
            for (to_broker, message) in [(true, &exchange.request), (false, &exchange.response)] {
                let mut message = message.clone();
                if hostile && rng.one_in(3) {
                    corrupt_frame(&mut rng, &mut message);
                }
                frames.push(message.clone());
                let start = c.segments.len();
                c.send(to_broker, &message, mss(&mut rng));
                let mut segments = c.segments.split_off(start);
                benign_shuffle(&mut rng, &mut segments);
                c.segments.extend(segments);
            }
        }
        if hostile && rng.one_in(8) {
            // More unanswered requests than the sniffer keeps pending.
            for i in 0..20 {
                c.send(true, &metadata_request(10_000 + i), 1448);
            }
        }
        if hostile && rng.one_in(8) {
            // A hole, then more out-of-order bytes than the reassembly cap.
            let start = c.segments.len();
            let flood = rng.bytes(100 << 10);
            c.send(rng.one_in(2), &flood, 8192);
            c.segments.remove(start);
        }
        if rng.one_in(2) {
            c.close();
        }
        if hostile {
            hostile_segments(&mut rng, &mut c.segments);
        } else {
            expected = exchanges;
        }
        all.push(c);
    }
    // Interleave the connections, keeping each one's order.
    let mut packets = Vec::new();
    let mut cursors = vec![0; all.len()];
    let mut ts = EPOCH;
    while let Some(pick) = pick_connection(&mut rng, &all, &cursors) {
        let c = &all[pick];
        let segment = &c.segments[cursors[pick]];
        cursors[pick] += 1;
        let mut ip = c.render(segment);
        ts += Duration::from_micros(50);
        if hostile {
            match rng.below(40) {
                0 => ts += Duration::from_secs(1 + rng.below(400) as u64),
                1 => ts = ts.saturating_sub(Duration::from_secs(rng.below(10) as u64)),
                2 => {
                    let flips = 1 + rng.below(4);
                    let header = ip.len().min(40);
                    rng.flip_bits(&mut ip[..header], flips);
                }
                3 => ip.truncate(rng.below(ip.len() + 1)),
                _ => {}
            }
        }
        let (link, data) = link_layer(&mut rng, ip);
        packets.push(Packet { link, ts, data });
    }
    let input = if hostile {
        Input::Hostile
    } else {
        Input::Recoverable(expected)
    };
    (packets, input, frames)
}

fn pick_connection(rng: &mut Rng, all: &[Conversation], cursors: &[usize]) -> Option<usize> {
    let open: Vec<usize> = (0..all.len())
        .filter(|&i| cursors[i] < all[i].segments.len())
        .collect();
    open.get(rng.below(open.len())).copied()
}

/// Pure noise: random frames, and random TCP segments to the broker port.
fn random_packets(rng: &mut Rng) -> Vec<Packet> {
    let mut ts = EPOCH;
    (0..1 + rng.below(40))
        .map(|_| {
            ts += Duration::from_millis(rng.below(3000) as u64);
            let len = rng.below(300);
            if rng.one_in(2) {
                Packet {
                    link: LINKS[rng.below(4)],
                    ts,
                    data: rng.bytes(len),
                }
            } else {
                let client = addr(&format!("10.77.0.100:{}", 40_000 + rng.below(6)));
                let broker = addr("10.77.0.10:9092");
                let (src, dst) = if rng.one_in(2) {
                    (client, broker)
                } else {
                    (broker, client)
                };
                let flags = rng.next_u64() as u8 & 0x1f;
                let seq = rng.below(4096) as u32;
                let ip = ipv4_tcp(src, dst, seq, 0, flags, &rng.bytes(len));
                let (link, data) = link_layer(rng, ip);
                Packet { link, ts, data }
            }
        })
        .collect()
}

/// Feeds the packets of one input through a sniffer, checking its invariants;
/// returns the sniffer's counters.
fn drive_sniffer(seed: u64, packets: &[Packet], input: &Input) -> Counters {
    let config = config();
    let bound = buffer_bound(&config);
    let mut sniffer = Sniffer::new(config);
    let mut events: Vec<Event> = Vec::new();
    for packet in packets {
        events.extend(sniffer.on_packet(packet.link, &packet.data, packet.ts));
        let buffered = sniffer.buffered_bytes();
        assert!(buffered <= bound, "seed {seed}: {buffered} > {bound} bytes");
    }
    if let Some(last) = packets.last() {
        events.extend(sniffer.tick(last.ts + Duration::from_secs(3)));
    }
    events.extend(sniffer.finish());
    assert_eq!(sniffer.buffered_bytes(), 0, "seed {seed}: left buffered");
    let counters = sniffer.counters();
    assert_eq!(counters.decode.events, events.len() as u64, "seed {seed}");

    if let Input::Recoverable(expected) = input {
        let got: Vec<(&str, i32, bool)> = events
            .iter()
            .map(|e| (&*e.api, e.correlation_id, e.latency_us.is_some()))
            .collect();
        let want: Vec<(&str, i32, bool)> = expected
            .iter()
            .map(|x| (x.api, x.correlation_id, true))
            .collect();
        assert_eq!(got, want, "seed {seed}: {counters:?}");
        for event in &events {
            assert_eq!(event.decode_error, None, "seed {seed}: {event:?}");
            assert_eq!(event.client_id.as_deref(), Some(CLIENT_ID), "seed {seed}");
            assert_eq!(event.topics, [TOPIC], "seed {seed}");
            let records = (event.api == "Produce").then_some(RECORDS as u64);
            assert_eq!(event.records, records, "seed {seed}");
            assert_eq!(event.errors.as_deref(), Some(&[][..]), "seed {seed}");
        }
    }
    counters
}

/// Request boundaries as the sniffer judges them.
struct Requests;

impl BoundaryCheck for Requests {
    fn probe_len(&self) -> usize {
        REQUEST_PROBE_LEN
    }

    fn plausible(&self, probe: &[u8]) -> bool {
        plausible_request_start(probe, 32 << 10)
    }
}

/// Frames the concatenated messages in random chunks, with random resyncs.
fn drive_framer(rng: &mut Rng, seed: u64, frames: &[Vec<u8>]) {
    let config = FramerConfig {
        max_frame: 1 + rng.below(32 << 10),
        oversized_head: rng.below(8 << 10),
    };
    let stream: Vec<u8> = frames.concat();
    let mut framer = Framer::new(config);
    let mut counters = FramingCounters::default();
    let mut out = Vec::new();
    let mut rest = &stream[..];
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(1 + rng.below(rest.len().min(3000)));
        rest = tail;
        if rng.one_in(50) {
            framer.resync(&mut counters);
        }
        let first = out.len();
        framer.push(chunk, &Requests, &mut counters, &mut out);
        // Frames may borrow the chunk: keep their bytes.
        for event in out.iter_mut().skip(first) {
            match event {
                FrameEvent::Frame(bytes) | FrameEvent::Oversized { head: bytes, .. } => {
                    bytes.detach(chunk);
                }
            }
        }
        let limit = config.max_frame.max(REQUEST_PROBE_LEN) + 4;
        let buffered = framer.buffered_bytes();
        assert!(buffered < limit, "seed {seed}: framer holds {buffered}");
    }
    for event in out {
        match event {
            FrameEvent::Frame(frame) => {
                let frame = frame.bytes(&[]);
                assert!(frame.len() <= config.max_frame, "seed {seed}");
                decode_request(frame, frame.len());
            }
            FrameEvent::Oversized { declared, head } => {
                let head = head.bytes(&[]);
                assert!(declared > config.max_frame, "seed {seed}");
                assert!(head.len() <= config.oversized_head, "seed {seed}");
                decode_request(head, declared);
            }
        }
    }
}

/// Decodes each (corrupted) frame as a request and, with random keys and
/// versions, as a response.
fn drive_decoders(rng: &mut Rng, frames: &[Vec<u8>]) {
    for frame in frames {
        let body = Bytes::copy_from_slice(frame.get(4..).unwrap_or_default());
        let declared = if rng.one_in(8) {
            body.len() + rng.below(1 << 20)
        } else {
            body.len()
        };
        decode_request(&body, declared);
        for _ in 0..2 {
            let key = match rng.below(3) {
                0 => rng.below(100) as i16,
                1 => [0, 3][rng.below(2)],
                _ => rng.next_u64() as i16,
            };
            let version = rng.below(24) as i16 - 2;
            decode_response(&body, key, version, declared);
        }
    }
    let len = rng.below(200);
    let noise = Bytes::from(rng.bytes(len));
    decode_request(&noise, noise.len());
    decode_response(
        &noise,
        rng.below(90) as i16,
        rng.below(20) as i16,
        noise.len(),
    );
}

/// What the inputs reached, summed over all of them.
#[derive(Default)]
struct Coverage {
    execs: u64,
    exact: u64,
    counters: BTreeMap<String, u64>,
}

impl Coverage {
    fn add(&mut self, exact: bool, counters: &Counters) {
        self.execs += 1;
        self.exact += u64::from(exact);
        let Ok(Value::Object(fields)) = serde_json::to_value(counters) else {
            return;
        };
        for (name, value) in fields {
            *self.counters.entry(name).or_default() += value.as_u64().unwrap_or(0);
        }
    }

    fn merge(&mut self, other: Coverage) {
        self.execs += other.execs;
        self.exact += other.exact;
        for (name, value) in other.counters {
            *self.counters.entry(name).or_default() += value;
        }
    }
}

/// Runs input `seed` through every target.
fn run_one(seed: u64, coverage: &mut Coverage) {
    let (packets, input, frames) = generate(seed);
    let counters = drive_sniffer(seed, &packets, &input);
    coverage.add(matches!(input, Input::Recoverable(_)), &counters);
    let mut rng = Rng::new(seed ^ 0xf7a3_e000);
    drive_framer(&mut rng, seed, &frames);
    drive_decoders(&mut rng, &frames);
}

#[test]
fn fuzz_the_pure_core() {
    let iters = env_u64("KSHOCK_FUZZ_ITERS", DEFAULT_ITERS);
    let first = env_u64("KSHOCK_FUZZ_SEED", 0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicU64::new(first);
    let total = Mutex::new(Coverage::default());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut coverage = Coverage::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= first + iters {
                        break;
                    }
                    if catch_unwind(AssertUnwindSafe(|| run_one(seed, &mut coverage))).is_err() {
                        panic!(
                            "fuzz input {seed} failed; replay: KSHOCK_FUZZ_SEED={seed} KSHOCK_FUZZ_ITERS=1"
                        );
                    }
                }
                total.lock().expect("coverage").merge(coverage);
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let total = total.into_inner().expect("coverage");
    let packets = total.counters.get("packets").copied().unwrap_or(0);
    eprintln!(
        "fuzz_core: {} execs (seeds {first}..{}; {} checked for exact decoding), {packets} packets, \
         {elapsed:.1} s, {:.0} execs/s, {:.0} packets/s on {workers} threads",
        total.execs,
        first + iters,
        total.exact,
        total.execs as f64 / elapsed,
        packets as f64 / elapsed,
    );
    let reached: Vec<String> = total
        .counters
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    eprintln!("fuzz_core: counters reached: {}", reached.join(" "));
    assert_eq!(total.execs, iters);
}

/// The raw IP packet inside a frame [`link_layer`] wrapped.
fn ip_of(packet: &Packet) -> &[u8] {
    let header = match packet.link {
        LinkType::Ethernet => 14,
        LinkType::LinuxSll => 16,
        LinkType::LinuxSll2 => 20,
        LinkType::RawIp => 0,
    };
    packet.data.get(header..).unwrap_or_default()
}

/// One input through the Inline decider, whose action, probability and budget the seed picks.
/// Checked: no panic; every packet gets exactly one verdict (held ones when released at the
/// end); held packets and bytes never exceed the budget; buffered bytes stay under the bound
/// the configuration implies.
fn run_inline(seed: u64) {
    use kafka_shock_agent::fault::RequestMatcher;
    use kafka_shock_agent::inline::{Action, Decider, InlineConfig};

    let (packets, _, _) = generate(seed);
    let mut rng = Rng::new(seed ^ 0x1e1e);
    let action = match rng.below(3) {
        0 => Action::Drop,
        1 => Action::Reject,
        _ => Action::Delay {
            delay: Duration::from_millis(rng.below(3000) as u64),
            jitter: Duration::from_millis(rng.below(100) as u64),
        },
    };
    let mut config = InlineConfig::new([9092], action, 1 + rng.below(100) as u8);
    config.budget.max_packets = 1 + rng.below(64);
    config.budget.max_bytes = 1 + rng.below(256 << 10);
    config.reassembly.max_flows = 4;
    config.reassembly.max_buffered_per_flow = 64 << 10;
    config.framer = FramerConfig {
        max_frame: 32 << 10,
        oversized_head: 4 << 10,
    };
    config.max_framed_bytes = 48 << 10;
    let bound = config.reassembly.max_flows * config.reassembly.max_buffered_per_flow
        + config.max_framed_bytes
        + config.framer.max_frame
        + 4;
    let matching = if rng.one_in(2) {
        "{}"
    } else {
        "{apiKeys: [Produce, Metadata]}"
    };
    let matcher =
        RequestMatcher::new(&serde_yaml::from_str(matching).expect("match")).expect("matcher");
    let budget = config.budget;
    let mut decider = Decider::new(config, matcher, seed);
    let mut verdicts = vec![0u8; packets.len()];
    let mut out = Vec::new();
    for (id, packet) in packets.iter().enumerate() {
        decider.on_packet(id as u64, ip_of(packet), packet.ts, &mut out);
        if rng.one_in(4) {
            decider.tick(
                packet.ts + Duration::from_millis(rng.below(4000) as u64),
                &mut out,
            );
        }
        let counters = decider.counters();
        assert!(
            counters.held_packets as usize <= budget.max_packets,
            "{counters:?}"
        );
        assert!(
            counters.held_bytes as usize <= budget.max_bytes,
            "{counters:?}"
        );
        assert!(
            counters.buffered_bytes as usize <= bound,
            "{counters:?} over {bound}"
        );
        for release in out.drain(..) {
            verdicts[release.packet as usize] += 1;
        }
    }
    decider.release_all(&mut out);
    for release in out.drain(..) {
        verdicts[release.packet as usize] += 1;
    }
    assert!(
        verdicts.iter().all(|count| *count == 1),
        "every packet gets exactly one verdict: {verdicts:?}"
    );
    assert_eq!(decider.counters().held_packets, 0);
}

#[test]
fn fuzz_the_inline_decider() {
    let iters = env_u64("KSHOCK_FUZZ_ITERS", DEFAULT_ITERS) / 5;
    let first = env_u64("KSHOCK_FUZZ_SEED", 0);
    for seed in first..first + iters {
        if catch_unwind(AssertUnwindSafe(|| run_inline(seed))).is_err() {
            panic!(
                "inline fuzz input {seed} failed; replay: KSHOCK_FUZZ_SEED={seed} KSHOCK_FUZZ_ITERS=5 \
                 cargo test -p kafka-shock-agent --test fuzz_core fuzz_the_inline_decider"
            );
        }
    }
}
