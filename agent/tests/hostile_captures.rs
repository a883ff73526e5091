//! `kafka-shock sniff` on hostile, corrupt and truncated captures, run as a
//! user would: the real binary on pcap files written here. Whatever the input,
//! the command must end with 0 (input read to its end) or 2 (a clear error),
//! never with a panic, and its memory must stay bounded.

mod support;

use std::io::Write;
use std::time::Duration;

use pcap_file::DataLink;
use serde_json::Value;
use support::*;

/// Peak RSS any run on a small capture may reach: the binary, the 8 MB read
/// buffer of the pcap reader and a few frames.
const SMALL_RUN_RSS_KIB: u64 = 48 * 1024;

fn events_of_api<'a>(events: &'a [Value], api: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["api"] == api).collect()
}

fn assert_baseline_produce(event: &Value) {
    assert_eq!(event["client_id"], CLIENT_ID, "{event}");
    assert_eq!(event["api_version"], PRODUCE_VERSION, "{event}");
    assert_eq!(event["topics"], serde_json::json!([TOPIC]), "{event}");
    assert_eq!(event["records"], RECORDS as u64, "{event}");
}

/// Runs the sniffer on `packets` (raw IP) and checks it ends cleanly, in bounded memory.
fn sniff_packets(dir: &TempDir, name: &str, packets: &[(Duration, Vec<u8>)]) -> Run {
    let path = dir.join(name);
    write_pcap(&path, DataLink::RAW, packets);
    let run = sniff_json(&path);
    run.assert_ok();
    assert!(run.peak_rss_kib() < SMALL_RUN_RSS_KIB, "{name}: {run:?}");
    run
}

#[test]
fn good_capture_decodes_in_raw_ip_and_ethernet() {
    let dir = TempDir::new("good");
    let conversation = good_conversation();
    let raw = conversation.packets();
    let ethernet_packets: Vec<_> = raw.iter().map(|(ts, p)| (*ts, ethernet(p))).collect();
    let ethernet_path = dir.join("ethernet.pcap");
    write_pcap(&ethernet_path, DataLink::ETHERNET, &ethernet_packets);

    for run in [
        sniff_packets(&dir, "raw.pcap", &raw),
        sniff_json(&ethernet_path),
    ] {
        run.assert_ok();
        let events = run.events();
        assert_eq!(events.len(), 2, "{run:?}");
        let produce = events_of_api(&events, "Produce");
        assert_eq!(produce.len(), 1, "{run:?}");
        assert_baseline_produce(produce[0]);
        assert_eq!(produce[0]["errors"], serde_json::json!([]));
        assert!(produce[0]["latency_us"].is_u64());
        let metadata = events_of_api(&events, "Metadata");
        assert_eq!(metadata.len(), 1, "{run:?}");
        assert_eq!(metadata[0]["topics"], serde_json::json!([TOPIC]));
        let counters = run.counters();
        assert_eq!(counters["requests"], 2);
        assert_eq!(counters["responses"], 2);
        assert_eq!(counters["decode_errors"], 0);
    }

    // The human form says the same.
    let path = ethernet_path.to_str().expect("UTF-8 path");
    let human = kafka_shock(&["sniff", "--pcap", path]);
    human.assert_ok();
    let line = human
        .stdout
        .lines()
        .find(|l| l.contains("Produce"))
        .unwrap_or_else(|| panic!("no Produce line: {human:?}"));
    assert!(
        line.contains(CLIENT_ID) && line.contains("topics=orders") && line.contains("records=3"),
        "{line}"
    );
}

#[test]
fn capture_cut_in_the_middle_of_a_packet_warns_and_keeps_what_was_complete() {
    let dir = TempDir::new("truncated");
    let mut c = Conversation::open(addr("10.77.0.100:40000"), addr("10.77.0.10:9092"), EPOCH);
    c.request(&metadata_request(1));
    c.response(&metadata_response(1));
    c.request(&produce_request(2));
    c.response(&produce_response(2));
    // One more Produce, in one packet, whose record the cut goes through.
    let last = produce_request(3);
    c.request(&last);
    let path = dir.join("cut.pcap");
    write_pcap(&path, DataLink::RAW, &c.packets());
    let full = std::fs::read(&path).expect("read pcap");
    std::fs::write(&path, &full[..full.len() - 100]).expect("write pcap");

    let run = sniff_json(&path);
    run.assert_ok();
    assert!(
        run.stderr.contains("warning") && run.stderr.contains("middle of a packet"),
        "{run:?}"
    );
    let events = run.events();
    let produce = events_of_api(&events, "Produce");
    assert_eq!(produce.len(), 1, "only the complete Produce: {run:?}");
    assert_baseline_produce(produce[0]);
    assert_eq!(events_of_api(&events, "Metadata").len(), 1, "{run:?}");

    // Cut inside the last record's header too, and after only the file header.
    let last_record = 16 + 40 + last.len();
    for keep in [full.len() - last_record + 7, 24 + 7, 24] {
        std::fs::write(&path, &full[..keep]).expect("write pcap");
        sniff_json(&path).assert_ok();
    }
}

#[test]
fn bit_flips_in_packets_never_break_the_run() {
    let dir = TempDir::new("flips");
    let good = good_conversation().packets();
    for seed in 0..48 {
        let mut rng = Rng::new(seed);
        let mut packets = good.clone();
        let flips = 1 + rng.below(16);
        for _ in 0..flips {
            let index = rng.below(packets.len());
            rng.flip_bits(&mut packets[index].1, 1);
        }
        let run = sniff_packets(&dir, &format!("flip-{seed}.pcap"), &packets);
        // Every line is still a valid event, whatever got decoded.
        run.events();
    }
}

#[test]
fn bit_flips_anywhere_in_the_file_end_in_0_or_a_clear_error() {
    let dir = TempDir::new("file-flips");
    let path = dir.join("good.pcap");
    write_pcap(&path, DataLink::RAW, &good_conversation().packets());
    let good = std::fs::read(&path).expect("read pcap");
    for seed in 0..48 {
        let mut rng = Rng::new(1000 + seed);
        let mut bytes = good.clone();
        let flips = 1 + rng.below(8);
        rng.flip_bits(&mut bytes, flips);
        std::fs::write(&path, &bytes).expect("write pcap");
        let run = sniff_json(&path);
        match run.code {
            Some(0) => {
                assert!(
                    run.peak_rss_kib() < SMALL_RUN_RSS_KIB,
                    "seed {seed}: {run:?}"
                );
                run.events();
            }
            Some(2) => run.assert_error(path.to_str().expect("UTF-8 path")),
            _ => panic!("seed {seed}: {run:?}"),
        }
    }
}

/// A connection carrying `hostile` bytes then a good Produce, in one stream.
fn hostile_then_good(hostile: &[u8]) -> Vec<(Duration, Vec<u8>)> {
    let mut c = Conversation::open(addr("10.77.0.100:40001"), addr("10.77.0.10:9092"), EPOCH);
    c.request(hostile);
    c.request(&produce_request(42));
    c.response(&produce_response(42));
    c.close();
    c.packets()
}

#[test]
fn hostile_size_prefixes_are_survived_and_the_stream_resynchronises() {
    let dir = TempDir::new("sizes");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("minus-one", (-1i32).to_be_bytes().to_vec()),
        ("i32-min", i32::MIN.to_be_bytes().to_vec()),
        ("zero", 0i32.to_be_bytes().to_vec()),
        ("one", vec![0, 0, 0, 1, 0x7f]),
        ("two", vec![0, 0, 0, 2, 0x7f, 0x7f]),
        ("three", vec![0, 0, 0, 3, 0x7f, 0x7f, 0x7f]),
        ("four", vec![0, 0, 0, 4, 0x7f, 0x7f, 0x7f, 0x7f]),
    ];
    for (name, hostile) in cases {
        let run = sniff_packets(&dir, &format!("{name}.pcap"), &hostile_then_good(&hostile));
        let events = run.events();
        let produce = events_of_api(&events, "Produce");
        assert_eq!(produce.len(), 1, "{name}: {run:?}");
        assert_baseline_produce(produce[0]);
        assert_eq!(produce[0]["correlation_id"], 42, "{name}");
        assert!(produce[0]["latency_us"].is_u64(), "{name}: answered");
        let counters = run.counters();
        let noticed = counters["invalid_sizes"].as_u64().unwrap_or(0)
            + counters["short_frames"].as_u64().unwrap_or(0);
        assert!(noticed >= 1, "{name}: {counters}");
    }
}

#[test]
fn a_2_gib_size_claim_reports_the_header_and_skips_the_body() {
    let dir = TempDir::new("two-gib");
    let mut hostile = i32::MAX.to_be_bytes().to_vec();
    hostile.extend_from_slice(&produce_body(7));
    hostile.extend(Rng::new(7).bytes(200 * 1024));
    let mut c = Conversation::open(addr("10.77.0.100:40002"), addr("10.77.0.10:9092"), EPOCH);
    c.request(&hostile);
    c.close();
    let run = sniff_packets(&dir, "two-gib.pcap", &c.packets());
    let events = run.events();
    assert_eq!(events.len(), 1, "{run:?}");
    let event = &events[0];
    assert_eq!(event["api"], "Produce");
    assert_eq!(event["client_id"], CLIENT_ID);
    assert_eq!(event["correlation_id"], 7);
    assert_eq!(event["request_bytes"], i32::MAX as u64 + 4);
    let error = event["decode_error"].as_str().unwrap_or_default();
    assert!(error.contains("over the size cap"), "{event}");
    assert_eq!(run.counters()["oversized_frames"], 1);
}

#[test]
fn unknown_api_key_and_short_body_are_reported_not_fatal() {
    let dir = TempDir::new("api");
    // Api key 999, a valid v1 header, some body.
    let mut unknown = vec![0x03, 0xe7, 0, 1, 0, 0, 0, 9];
    unknown.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    unknown.extend_from_slice(CLIENT_ID.as_bytes());
    unknown.extend_from_slice(&[1, 2, 3, 4]);
    // A Produce whose frame ends halfway through its body.
    let produce = produce_body(10);
    let short = &produce[..produce.len() / 2];
    let mut hostile = prefixed(&unknown);
    hostile.extend(prefixed(short));
    let run = sniff_packets(&dir, "api.pcap", &hostile_then_good(&hostile));
    let events = run.events();

    let unknown = events_of_api(&events, "Unknown(999)");
    assert_eq!(unknown.len(), 1, "{run:?}");
    assert_eq!(unknown[0]["client_id"], CLIENT_ID);
    assert_eq!(unknown[0]["decode_error"], "unknown api key 999");

    let produce = events_of_api(&events, "Produce");
    assert_eq!(produce.len(), 2, "{run:?}");
    let cut = produce.iter().find(|e| e["correlation_id"] == 10);
    let cut = cut.unwrap_or_else(|| panic!("no cut Produce: {run:?}"));
    assert_eq!(cut["client_id"], CLIENT_ID);
    let error = cut["decode_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("body:"), "{cut}");
    let good = produce.iter().find(|e| e["correlation_id"] == 42);
    assert_baseline_produce(good.unwrap_or_else(|| panic!("no good Produce: {run:?}")));
}

/// A 2 GiB frame claim followed by 100 MiB on the same connection: the framer
/// keeps the head and skips the rest as it arrives, so memory stays flat.
#[test]
fn a_2_gib_claim_with_100_mib_of_junk_stays_far_under_64_mib() {
    const JUNK: usize = 100 << 20;
    const SEGMENT: usize = 60_000;
    let dir = TempDir::new("junk");
    let path = dir.join("junk.pcap");
    let client = addr("10.77.0.100:40003");
    let broker = addr("10.77.0.10:9092");
    let mut c = Conversation::open(client, broker, EPOCH);
    let mut claim = i32::MAX.to_be_bytes().to_vec();
    claim.extend_from_slice(&produce_body(5));
    c.request(&claim);
    let mut seq = c.segments.last().map_or(0, |s| s.seq) + claim.len() as u32;

    let mut writer = pcap_writer(&path, DataLink::RAW);
    for (ts, packet) in c.packets() {
        write_packet(&mut writer, ts, &packet);
    }
    let mut rng = Rng::new(100);
    let mut junk = vec![0; SEGMENT];
    let mut ts = EPOCH + Duration::from_secs(1);
    for _ in 0..JUNK.div_ceil(SEGMENT) {
        rng.fill(&mut junk);
        let packet = ipv4_tcp(client, broker, seq, 7_000_001, ACK, &junk);
        write_packet(&mut writer, ts, &packet);
        seq = seq.wrapping_add(SEGMENT as u32);
        ts += Duration::from_micros(50);
    }
    writer
        .into_writer()
        .into_inner()
        .expect("flush pcap")
        .flush()
        .expect("flush pcap");
    assert!(std::fs::metadata(&path).expect("pcap").len() > JUNK as u64);

    let run = sniff_json(&path);
    run.assert_ok();
    let peak = run.peak_rss_kib();
    eprintln!("2 GiB claim + 100 MiB junk: peak RSS {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB: {run:?}");
    let events = run.events();
    assert_eq!(events.len(), 1, "{run:?}");
    assert_eq!(events[0]["api"], "Produce");
    assert_eq!(events[0]["request_bytes"], i32::MAX as u64 + 4);
    let counters = run.counters();
    assert!(
        counters["bytes"].as_u64().unwrap_or(0) > JUNK as u64,
        "{counters}"
    );
    assert_eq!(counters["oversized_frames"], 1, "{counters}");
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn a_file_that_is_not_a_capture_is_an_error_naming_it() {
    let dir = TempDir::new("not-a-capture");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "these are not packets\n").expect("write");
    let shown = path.to_str().expect("UTF-8 path");
    kafka_shock(&["sniff", "--pcap", shown]).assert_error(&format!("{shown} is not a pcap"));

    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, "").expect("write");
    let shown = empty.to_str().expect("UTF-8 path");
    kafka_shock(&["sniff", "--pcap", shown]).assert_error(shown);
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let dir = TempDir::new("missing");
    let path = dir.join("nothing-here.pcap");
    let shown = path.to_str().expect("UTF-8 path");
    let run = kafka_shock(&["sniff", "--pcap", shown]);
    run.assert_error(shown);
    assert!(run.stderr.contains("No such file"), "{run:?}");
}

#[test]
fn a_missing_network_namespace_is_an_error_saying_so() {
    let run = kafka_shock(&["sniff", "--netns", "does-not-exist"]);
    run.assert_error("\"does-not-exist\" does not exist");
}
