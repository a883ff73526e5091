//! `kafka-shock sniff` on the lab with real traffic: kcat, Kafka's Java console tools and
//! kafka-python each produce to their own topic with their own client id, and a Java consumer
//! group consumes. What sniff decodes live in the broker's namespace, and from a tcpdump
//! capture of the same run, must agree with what the clients did and with each other.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use lab::{Background, Lab, Stream, TempDir, kafka_shock_bin, workspace_root};
use serde_json::Value;

const RUN: &str = "sniff";

fn topic(client: &str) -> String {
    format!("{RUN}-{client}-{}", std::process::id())
}

fn must(command: &mut Command) -> String {
    lab::stdout(command).unwrap_or_else(|error| panic!("{error}"))
}

fn must_with_input(command: &mut Command, input: &str) -> String {
    lab::stdout_with_input(command, input).unwrap_or_else(|error| panic!("{error}"))
}

fn lines(prefix: &str, count: usize) -> String {
    (0..count).map(|i| format!("{prefix}-{i}\n")).collect()
}

/// The traffic: who produced how many records to which topic, and the consumer group.
struct Traffic {
    produced: BTreeMap<(String, String), u64>,
    group: String,
    group_client: String,
    group_topic: String,
    missing_topic_client: String,
}

fn drive_clients(lab: &Lab) -> Traffic {
    let bootstrap = lab.bootstrap();
    let mut produced = BTreeMap::new();

    let kcat_topic = topic("kcat");
    must_with_input(
        lab.client("kcat").args([
            "-b",
            bootstrap,
            "-t",
            &kcat_topic,
            "-P",
            "-X",
            "client.id=sniff-kcat",
        ]),
        &lines("kcat", 7),
    );
    produced.insert(("sniff-kcat".to_owned(), kcat_topic), 7);

    let java_topic = topic("java");
    must_with_input(
        lab.client("kafka-class").args([
            "org.apache.kafka.tools.ConsoleProducer",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            &java_topic,
            "--producer-property",
            "client.id=sniff-java",
        ]),
        &lines("java", 9),
    );
    produced.insert(("sniff-java".to_owned(), java_topic.clone()), 9);

    let python_topic = topic("python");
    let script = workspace_root().join("tests/clients/kafka_python_roundtrip.py");
    must(lab.client("python").args([
        script.to_str().expect("utf-8 path"),
        bootstrap,
        &python_topic,
        "11",
    ]));
    produced.insert(("kafka-python-smoke".to_owned(), python_topic), 11);

    let group = format!("{RUN}-group-{}", std::process::id());
    let consumed = must(lab.client("kafka-class").args([
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        &java_topic,
        "--group",
        &group,
        "--from-beginning",
        "--max-messages",
        "9",
        "--timeout-ms",
        "30000",
        "--consumer-property",
        "client.id=sniff-group-consumer",
    ]));
    assert_eq!(
        consumed.lines().count(),
        9,
        "the group consumer read: {consumed}"
    );

    // A Metadata request for a topic that does not exist: its response carries an error.
    let _ = lab
        .client("kcat")
        .args([
            "-b",
            bootstrap,
            "-L",
            "-t",
            &topic("no-such-topic"),
            "-X",
            "client.id=sniff-missing",
            "-X",
            "allow.auto.create.topics=false",
        ])
        .output();

    Traffic {
        produced,
        group,
        group_client: "sniff-group-consumer".to_owned(),
        group_topic: java_topic,
        missing_topic_client: "sniff-missing".to_owned(),
    }
}

fn parse_events(ndjson: &str) -> Vec<Value> {
    ndjson
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("bad NDJSON line {line:?}: {error}"))
        })
        .collect()
}

fn str_of<'a>(event: &'a Value, field: &str) -> &'a str {
    event[field].as_str().unwrap_or_default()
}

/// Checks one sniff output (live or from the capture) against the traffic.
fn check_against_traffic(source: &str, events: &[Value], traffic: &Traffic) {
    let contract = [
        "ts",
        "client",
        "broker",
        "client_id",
        "api",
        "api_version",
        "correlation_id",
        "topics",
        "records",
        "request_bytes",
        "latency_us",
        "errors",
    ];
    for event in events {
        for field in contract {
            assert!(
                event.get(field).is_some(),
                "{source}: {field} missing in {event}"
            );
        }
    }

    let mut records: BTreeMap<(String, String), u64> = BTreeMap::new();
    for event in events
        .iter()
        .filter(|event| str_of(event, "api") == "Produce")
    {
        let client_id = str_of(event, "client_id").to_owned();
        for topic in event["topics"].as_array().into_iter().flatten() {
            let key = (
                client_id.clone(),
                topic.as_str().unwrap_or_default().to_owned(),
            );
            *records.entry(key).or_default() += event["records"].as_u64().unwrap_or(0);
        }
    }
    for (key, expected) in &traffic.produced {
        assert_eq!(
            records.get(key),
            Some(expected),
            "{source}: Produce records of {key:?}; all: {records:?}"
        );
    }

    let group_fetches: Vec<&Value> = events
        .iter()
        .filter(|event| {
            str_of(event, "client_id") == traffic.group_client && str_of(event, "api") == "Fetch"
        })
        .collect();
    assert!(
        !group_fetches.is_empty(),
        "{source}: no Fetch from the group consumer"
    );
    let newest_fetch = group_fetches
        .iter()
        .map(|event| event["api_version"].as_i64().unwrap_or(0))
        .max();
    assert!(
        newest_fetch >= Some(13),
        "{source}: Kafka 4 clients fetch by topic id (v13+), saw {newest_fetch:?}"
    );
    assert!(
        group_fetches
            .iter()
            .any(|event| event["topics"] == serde_json::json!([traffic.group_topic])),
        "{source}: no Fetch named its topic: {group_fetches:?}"
    );
    for event in &group_fetches {
        for topic in event["topics"].as_array().into_iter().flatten() {
            assert_eq!(
                topic.as_str(),
                Some(traffic.group_topic.as_str()),
                "{source}: unresolved topic id in {event}"
            );
        }
    }

    let group_apis: BTreeSet<&str> = events
        .iter()
        .filter(|event| {
            event.get("group_id").and_then(Value::as_str) == Some(traffic.group.as_str())
        })
        .map(|event| str_of(event, "api"))
        .collect();
    for api in ["JoinGroup", "SyncGroup", "OffsetCommit"] {
        assert!(
            group_apis.contains(api),
            "{source}: no {api} for the group; saw {group_apis:?}"
        );
    }

    let produce_latencies: Vec<u64> = events
        .iter()
        .filter(|event| str_of(event, "api") == "Produce")
        .filter_map(|event| event["latency_us"].as_u64())
        .collect();
    assert!(
        produce_latencies.len() >= traffic.produced.len()
            && produce_latencies.iter().all(|&us| us < 10_000_000),
        "{source}: Produce latencies {produce_latencies:?}"
    );
    let missing_topic_errors: Vec<&Value> = events
        .iter()
        .filter(|event| {
            str_of(event, "client_id") == traffic.missing_topic_client
                && str_of(event, "api") == "Metadata"
        })
        .filter_map(|event| event.get("errors"))
        .collect();
    assert!(
        missing_topic_errors
            .iter()
            .any(|errors| errors.to_string().contains("UNKNOWN_TOPIC_OR_PARTITION")),
        "{source}: Metadata errors for a missing topic: {missing_topic_errors:?}"
    );
}

/// What identifies a request in both outputs, regardless of capture timing.
fn request_keys(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|event| {
            format!(
                "{} {} {} v{} #{} {} records={}",
                str_of(event, "client"),
                str_of(event, "client_id"),
                str_of(event, "api"),
                event["api_version"],
                event["correlation_id"],
                event["topics"],
                event["records"],
            )
        })
        .collect()
}

#[test]
fn sniff_live_and_from_pcap_agrees_with_real_clients() {
    let lab = Lab::up().expect("lab up");
    let sniff = kafka_shock_bin().expect("kafka-shock binary");
    let broker_netns = lab.broker_netns()[0].clone();
    let dir = TempDir::new("sniff");
    let live_json = dir.path().join("live.ndjson");
    let capture = dir.path().join("capture.pcap");

    let live = Background::start(
        Command::new(&sniff)
            .args(["sniff", "--netns", &broker_netns, "--json"])
            .stdout(std::fs::File::create(&live_json).expect("live output file")),
        Stream::Stderr,
        "listening",
        Duration::from_secs(10),
    )
    .expect("live sniff starts");
    let tcpdump = Background::start(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &broker_netns,
                "tcpdump",
                "-i",
                "eth0",
                "-U",
                "--immediate-mode",
                "-s",
                "0",
                "-w",
            ])
            .arg(&capture)
            .args(["tcp", "port", "9092"]),
        Stream::Stderr,
        "listening on",
        Duration::from_secs(10),
    )
    .expect("tcpdump starts");

    let traffic = drive_clients(&lab);
    // Let both captures take in the last packets before they are stopped: tcpdump runs in
    // immediate mode, and the live sniffer drains its queue before it exits.
    std::thread::sleep(Duration::from_millis(1500));
    tcpdump.interrupt().expect("tcpdump stops");
    live.interrupt().expect("live sniff exits 0 on SIGINT");

    let live_events = parse_events(&std::fs::read_to_string(&live_json).expect("live output"));
    check_against_traffic("live", &live_events, &traffic);

    let from_pcap = must(
        Command::new(&sniff)
            .args(["sniff", "--json", "--pcap"])
            .arg(&capture),
    );
    let pcap_events = parse_events(&from_pcap);
    check_against_traffic("pcap", &pcap_events, &traffic);

    assert_eq!(
        request_keys(&live_events),
        request_keys(&pcap_events),
        "live and pcap decode different requests"
    );
}
