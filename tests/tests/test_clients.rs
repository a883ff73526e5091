//! The lab's test clients (tests/clients), kept honest: with no fault, every operation of the
//! Java toolkit and of kafka_python_api.py runs against the lab's real broker, succeeds, and
//! sends the Kafka API it is named for, by its own report and by `kafka-shock sniff` in the
//! broker's namespace; `produce`, `consume` and `count` agree on what the topic holds. The
//! tests that inject Kafka errors rely on these clients, so a client that quietly stopped
//! sending its API would make their negative checks pass for the wrong reason.
//! Each operation's time is printed (`--nocapture`): the fault tests' CI budget.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Background, ClientReport, Lab, Stream, TempDir, kafka_shock_bin};
use serde_json::Value;

/// Every API the Java toolkit's `api` operation sends.
const JAVA_APIS: [&str; 20] = [
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "SyncGroup",
    "Heartbeat",
    "LeaveGroup",
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

/// What the Java producer leaves to the broker under transaction version 2 (the lab's Kafka
/// 4.1 default): it adds partitions and offsets to a transaction implicitly, so these are sent
/// by kafka-python only.
const NOT_SENT_BY_JAVA: [&str; 2] = ["AddPartitionsToTxn", "AddOffsetsToTxn"];

/// Errors a healthy broker answers as part of the protocol: a first JoinGroup asks for a
/// member id.
fn normal_errors(api: &str) -> &'static [&'static str] {
    match api {
        "JoinGroup" => &["MEMBER_ID_REQUIRED"],
        _ => &[],
    }
}

/// A name of this run's own, so reruns on a reused lab and other tests' traffic never mix.
fn ours(what: &str) -> String {
    format!("clients-{what}-{}", std::process::id())
}

/// `kafka-shock sniff --json` in broker 0's namespace, writing into `dir`, until dropped.
struct Sniff {
    live: Option<Background>,
    output: std::path::PathBuf,
}

impl Sniff {
    fn start(lab: &Lab, dir: &TempDir) -> Sniff {
        let output = dir.path().join("sniff.json");
        let sniff = kafka_shock_bin().unwrap_or_else(|error| panic!("{error}"));
        let live = Background::start(
            Command::new(sniff)
                .args(["sniff", "--netns", &lab.broker_netns()[0], "--json"])
                .stdout(std::fs::File::create(&output).expect("sniff output file")),
            Stream::Stderr,
            "listening",
            Duration::from_secs(10),
        )
        .expect("sniff starts");
        Sniff {
            live: Some(live),
            output,
        }
    }

    /// Stops the sniffer; per client id, how many requests of each API it decoded.
    fn apis_by_client(mut self) -> BTreeMap<String, BTreeMap<String, u64>> {
        if let Some(live) = self.live.take() {
            live.interrupt().expect("sniff stops cleanly");
        }
        let text = std::fs::read_to_string(&self.output).expect("sniff output");
        let mut by_client: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for line in text.lines() {
            let request: Value = serde_json::from_str(line).expect("sniff prints JSON lines");
            let client = request["client_id"].as_str().unwrap_or_default().to_owned();
            let api = request["api"].as_str().unwrap_or_default().to_owned();
            *by_client.entry(client).or_default().entry(api).or_default() += 1;
        }
        by_client
    }
}

/// The APIs a report says its client sent (`wire.requests`), or a kafka-python report's
/// `requests`.
fn sent_apis(requests: &Value) -> BTreeSet<String> {
    requests
        .as_object()
        .map(|apis| apis.keys().cloned().collect())
        .unwrap_or_default()
}

fn errors_of(result: &Value) -> BTreeSet<String> {
    result["api_errors"]
        .as_object()
        .map(|errors| errors.keys().cloned().collect())
        .unwrap_or_default()
}

/// The first use of a group or transaction coordinator makes the broker create and load its
/// internal topic, answering NOT_COORDINATOR meanwhile: done once, before the timed runs.
fn warm_up_coordinators(lab: &Lab, topic: &str) {
    for api in ["OffsetCommit", "InitProducerId"] {
        let report = lab.java_report(&[
            "api",
            api,
            "--topic",
            topic,
            "--client-id",
            &ours("warm-up"),
        ]);
        assert_eq!(
            report.error(),
            "NONE",
            "warm-up {api}: {:?}",
            report.result()
        );
    }
}

/// Checks that the client sent `api` by its own count and by the sniffer's, and that the
/// sniffer saw exactly the APIs the client says it sent.
fn assert_sent(
    api: &str,
    client_id: &str,
    said: &BTreeSet<String>,
    sniffed: &BTreeMap<String, BTreeMap<String, u64>>,
) {
    let seen = sniffed.get(client_id).cloned().unwrap_or_default();
    let seen_apis: BTreeSet<String> = seen.keys().cloned().collect();
    assert!(
        seen.get(api).copied().unwrap_or(0) >= 1,
        "{client_id}: sniff saw no {api} request, only {seen:?}"
    );
    // A request logged as sent just before the process ended may never have left it, so the
    // sniffer's APIs are a subset of the client's; every one the client did not count is a bug.
    assert!(
        seen_apis.is_subset(said) && said.contains(api),
        "{client_id}: the client says it sent {said:?}, sniff saw {seen:?}"
    );
}

fn print_timings(client: &str, timings: &[(String, u128, u64)]) {
    eprintln!("{client} operations (no fault): wall ms (process), elapsed ms (client's own)");
    for (api, wall, elapsed) in timings {
        eprintln!("  {api:<24} {wall:>6} {elapsed:>6}");
    }
    let total: u128 = timings.iter().map(|(_, wall, _)| wall).sum();
    eprintln!("  total {total} ms");
}

#[test]
fn java_api_operations_send_their_api_and_succeed() {
    let lab = Lab::up().expect("lab up");
    let _exclusive = lab::exclusive();
    let topic = ours("java-api");
    lab.create_topic(&topic, 1, 1).expect("topic");
    warm_up_coordinators(&lab, &topic);
    let dir = TempDir::new("clients-java-api");
    let sniff = Sniff::start(&lab, &dir);
    let mut reports = Vec::new();
    let mut timings = Vec::new();
    for api in JAVA_APIS {
        let (client_id, group, txn) = (
            ours(api),
            ours(&format!("{api}-group")),
            ours(&format!("{api}-txn")),
        );
        let started = Instant::now();
        let report = lab.java_report(&[
            "api",
            api,
            "--topic",
            &topic,
            "--client-id",
            &client_id,
            "--group",
            &group,
            "--transactional-id",
            &txn,
            "--new-topic",
            &ours(&format!("{api}-new")),
        ]);
        let elapsed = report.result()["elapsed_ms"].as_u64().unwrap_or_default();
        timings.push((api.to_owned(), started.elapsed().as_millis(), elapsed));
        reports.push((api, client_id, report));
    }
    let sniffed = sniff.apis_by_client();
    print_timings("Java", &timings);
    for (api, client_id, report) in &reports {
        let result = report.result();
        let unexpected: Vec<String> = errors_of(result)
            .into_iter()
            .filter(|error| !normal_errors(api).contains(&error.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{api}: its responses carried {unexpected:?}: {result}"
        );
        let said = sent_apis(&result["wire"]["requests"]);
        if NOT_SENT_BY_JAVA.contains(api) {
            assert_eq!(report.error(), "NOT_SENT", "{api}: {result}");
            assert!(!said.contains(*api), "{api}: {result}");
            assert!(
                !sniffed
                    .get(client_id)
                    .is_some_and(|seen| seen.contains_key(*api)),
                "{api}: the client says NOT_SENT but sniff saw it: {:?}",
                sniffed.get(client_id)
            );
            continue;
        }
        assert_eq!(report.error(), "NONE", "{api}: {result}");
        assert!(
            result["ok"] == true && result["api_requests"].as_u64() >= Some(1),
            "{api}: {result}"
        );
        assert_sent(api, client_id, &said, &sniffed);
    }
}

#[test]
fn python_api_operations_send_their_api_and_succeed() {
    let lab = Lab::up().expect("lab up");
    let _exclusive = lab::exclusive();
    let topic = ours("python-api");
    lab.create_topic(&topic, 1, 1).expect("topic");
    warm_up_coordinators(&lab, &topic);
    let dir = TempDir::new("clients-python-api");
    let sniff = Sniff::start(&lab, &dir);
    let apis: Vec<&str> = JAVA_APIS
        .into_iter()
        .filter(|api| *api != "ConsumerGroupHeartbeat")
        .collect();
    let mut reports = Vec::new();
    let mut timings = Vec::new();
    for api in apis {
        let client_id = ours(&format!("py-{api}"));
        let started = Instant::now();
        let report = lab.python_report(
            "kafka_python_api.py",
            &[
                api,
                "--topic",
                &topic,
                "--client-id",
                &client_id,
                "--group",
                &ours(&format!("py-{api}-group")),
                "--transactional-id",
                &ours(&format!("py-{api}-txn")),
                "--new-topic",
                &ours(&format!("py-{api}-new")),
            ],
        );
        let elapsed = report["elapsed_ms"].as_u64().unwrap_or_default();
        timings.push((api.to_owned(), started.elapsed().as_millis(), elapsed));
        reports.push((api, client_id, report));
    }
    let sniffed = sniff.apis_by_client();
    print_timings("kafka-python", &timings);
    for (api, client_id, report) in &reports {
        assert_eq!(report["error"], "NONE", "{api}: {report}");
        let unexpected: Vec<String> = errors_of(report)
            .into_iter()
            .filter(|error| !normal_errors(api).contains(&error.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{api}: its responses carried {unexpected:?}: {report}"
        );
        assert_sent(api, client_id, &sent_apis(&report["requests"]), &sniffed);
    }
}

fn ids(report: &ClientReport, kind: &str, field: &str) -> Vec<String> {
    report
        .events(kind)
        .filter_map(|event| event[field].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn produce_consume_and_count_agree_on_what_the_topic_holds() {
    let lab = Lab::up().expect("lab up");
    let _exclusive = lab::exclusive();
    let topic = ours("roundtrip");
    lab.create_topic(&topic, 3, 1).expect("topic");
    let dir = TempDir::new("clients-roundtrip");
    let sniff = Sniff::start(&lab, &dir);
    let (producer, txn_producer, aborting) =
        (ours("producer"), ours("txn-producer"), ours("aborting"));

    let produced = lab.java_report(&[
        "produce",
        "--topic",
        &topic,
        "--count",
        "30",
        "--client-id",
        &producer,
    ]);
    assert_eq!(produced.error(), "NONE", "{}", produced.result());
    assert_eq!(produced.result()["acked"], 30, "{}", produced.result());
    assert_eq!(ids(&produced, "send", "id").len(), 30);
    let committed = lab.java_report(&[
        "produce",
        "--topic",
        &topic,
        "--count",
        "5",
        "--client-id",
        &txn_producer,
        "--transactional-id",
        &ours("txn"),
    ]);
    assert_eq!(committed.error(), "NONE", "{}", committed.result());
    let aborted = lab.java_report(&[
        "produce",
        "--topic",
        &topic,
        "--count",
        "4",
        "--client-id",
        &aborting,
        "--transactional-id",
        &ours("aborted-txn"),
        "--abort",
        "true",
    ]);
    assert_eq!(aborted.error(), "NONE", "{}", aborted.result());

    let count = |isolation: &str, prefix: &str, expected: &str| {
        lab.java_report(&[
            "count",
            "--topic",
            &topic,
            "--isolation",
            isolation,
            "--expect-prefix",
            prefix,
            "--expect-count",
            expected,
            "--client-id",
            &ours("counter"),
        ])
    };
    let everything = count("read_uncommitted", &producer, "30");
    let result = everything.result();
    assert_eq!(
        (
            &result["records"],
            &result["duplicates"],
            &result["missing_count"]
        ),
        (&Value::from(39), &Value::from(0), &Value::from(0)),
        "30 plain, 5 committed and 4 aborted records, each once: {result}"
    );
    let committed_only = count("read_committed", &txn_producer, "5");
    let result = committed_only.result();
    assert_eq!(
        (&result["records"], &result["missing_count"]),
        (&Value::from(35), &Value::from(0)),
        "read_committed skips the aborted transaction: {result}"
    );

    let consumer = ours("consumer");
    let consumed = lab.java_report(&[
        "consume",
        "--topic",
        &topic,
        "--group",
        &ours("group"),
        "--count",
        "35",
        "--isolation",
        "read_committed",
        "--client-id",
        &consumer,
        "--report-records",
        "false",
    ]);
    let result = consumed.result();
    assert_eq!(consumed.error(), "NONE", "{result}");
    assert_eq!(
        (&result["unique"], &result["reread"]),
        (&Value::from(35), &Value::from(0)),
        "{result}"
    );
    assert!(result["commits"].as_u64() >= Some(1), "{result}");
    assert!(
        consumed
            .events("rebalance")
            .any(|event| event["kind"] == "assigned"),
        "the group assigned partitions: {result}"
    );
    assert!(
        result["metrics"]["fetch-throttle-time-max"].is_number(),
        "{result}"
    );

    let sniffed = sniff.apis_by_client();
    let has = |client: &str, apis: &[&str]| {
        let seen = sniffed.get(client).cloned().unwrap_or_default();
        for api in apis {
            assert!(
                seen.contains_key(*api),
                "{client}: sniff saw no {api}: {seen:?}"
            );
        }
    };
    has(&producer, &["Metadata", "InitProducerId", "Produce"]);
    has(
        &txn_producer,
        &["FindCoordinator", "InitProducerId", "Produce", "EndTxn"],
    );
    has(
        &consumer,
        &[
            "FindCoordinator",
            "JoinGroup",
            "SyncGroup",
            "OffsetFetch",
            "Fetch",
            "OffsetCommit",
            "LeaveGroup",
        ],
    );
    has(&ours("counter"), &["ListOffsets", "Fetch"]);
}
