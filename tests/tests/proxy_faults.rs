//! Proxy enforcement on the lab, against a real broker and real clients (Kafka's Java client,
//! kafka-python, curl over TLS): a transparent proxy in the broker's namespace answers matched
//! requests with Kafka errors, throttles, corrupts and duplicates them, and the clients' own
//! reports say what they saw. Every test starts from a namespace without KSHOCK rules and
//! checks at its end that no nat rule, listener or proxied connection is left.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use lab::{Background, ClientReport, FaultFiles, Lab, Stream, TempDir, kafka_shock_bin};
use serde_json::Value;

fn broker_netns(lab: &Lab) -> String {
    lab.broker_netns()[0].clone()
}

fn kafka_shock(args: &[&str]) -> String {
    lab::stdout(Command::new(kafka_shock_bin().expect("kafka-shock")).args(args))
        .unwrap_or_else(|error| panic!("{error}"))
}

/// A name of this run's own, so reruns on a reused lab never mix.
fn ours(what: &str) -> String {
    format!("proxy-{what}-{}", std::process::id())
}

/// Our rules (filter and nat) and listeners other than the broker's in broker 0's namespace.
fn leftovers(lab: &Lab) -> Vec<String> {
    let mut left: Vec<String> = lab
        .broker_rules()
        .lines()
        .filter(|line| line.contains("KSHOCK-") || line.contains("REDIRECT"))
        .map(str::to_owned)
        .collect();
    let listeners =
        lab::stdout(lab.in_netns(&broker_netns(lab), "ss").args(["-Htln"])).unwrap_or_default();
    left.extend(
        listeners
            .lines()
            .filter(|line| !line.contains(":9092 ") && !line.contains(":9093 "))
            .map(|line| format!("listener: {line}")),
    );
    left
}

/// The broker's namespace before a test: leftovers of dead runs swept, then nothing of ours.
/// The lab to this test alone, with no fault's rule left, and a new one-partition topic
/// `ours(name)`.
fn lab_with_topic(name: &str) -> (MutexGuard<'static, ()>, Lab, String) {
    let serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let topic = ours(name);
    lab.create_topic(&topic, 1, 1).expect("topic");
    (serial, lab, topic)
}

/// The Java client's one Produce request to `topic` as `client`, with `more` flags.
fn api_produce(lab: &Lab, topic: &str, client: &str, more: &[&str]) -> ClientReport {
    let mut args = vec!["api", "Produce", "--topic", topic, "--client-id", client];
    args.extend_from_slice(more);
    lab.java_report(&args)
}

fn clean_start(lab: &Lab) {
    kafka_shock(&["rules", "--netns", &broker_netns(lab)]);
    assert_eq!(leftovers(lab), Vec::<String>::new(), "a live fault's rules");
}

/// A running `kafka-shock inject` of a Proxy fault.
struct Inject(Background);

impl Inject {
    fn start(lab: &Lab, fault: &Path) -> Inject {
        let inject = Background::start(
            Command::new(kafka_shock_bin().expect("kafka-shock"))
                .args(["inject", "-f"])
                .arg(fault)
                .args(["--netns", &broker_netns(lab)]),
            Stream::Stdout,
            "inject: active",
            Duration::from_secs(20),
        )
        .expect("inject becomes active");
        Inject(inject)
    }

    fn pid(&self) -> u32 {
        self.0.pid().expect("inject runs")
    }

    /// Stops it with SIGINT and checks that nothing of it is left.
    fn stop(self, lab: &Lab) -> String {
        let output = self.0.interrupt().expect("inject exits 0 on SIGINT");
        assert!(output.contains("nothing of this fault is left"), "{output}");
        assert!(
            output.contains("inject: proxy:") && output.contains(" 0 left open"),
            "{output}"
        );
        assert_eq!(leftovers(lab), Vec::<String>::new(), "{output}");
        output
    }
}

/// A number before `label` in the closing `inject: proxy:` line.
fn proxy_counter(output: &str, label: &str) -> u64 {
    let line = output
        .lines()
        .find(|line| line.starts_with("inject: proxy:"))
        .unwrap_or_else(|| panic!("no proxy counters in:\n{output}"));
    line.split([',', ';'])
        .find(|part| part.trim_start().contains(label))
        .and_then(|part| part.split_whitespace().find_map(|word| word.parse().ok()))
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"))
}

/// A Java client running in the background while a fault comes and goes.
struct Client(Background);

impl Client {
    fn start(lab: &Lab, args: &[&str], ready: &str) -> Client {
        Client(
            Background::start(
                &mut lab.java_client(args),
                Stream::Stdout,
                ready,
                Duration::from_secs(60),
            )
            .unwrap_or_else(|error| panic!("kafka-client {args:?}: {error}")),
        )
    }

    /// Waits for its result line and reads its report.
    fn report(mut self, timeout: Duration) -> ClientReport {
        let done = self.0.wait_for(timeout, |lines| {
            lines
                .iter()
                .any(|line| line.contains("\"event\":\"result\""))
        });
        let lines: Vec<String> = self
            .0
            .output()
            .iter()
            .filter(|line| line.starts_with('{'))
            .cloned()
            .collect();
        assert!(done, "no result within {timeout:?}:\n{}", lines.join("\n"));
        ClientReport::parse(&lines.join("\n")).unwrap_or_else(|error| panic!("{error}"))
    }
}

fn count(result: &Value, key: &str) -> u64 {
    result[key].as_u64().unwrap_or(0)
}

fn errors_in(result: &Value, key: &str) -> BTreeMap<String, u64> {
    result[key]
        .as_object()
        .map(|errors| {
            errors
                .iter()
                .map(|(name, count)| (name.clone(), count.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn not_leader_on_one_producer_is_retried_and_every_record_lands_exactly_once() {
    let (_serial, lab, topic) = lab_with_topic("orders");
    let (hit, spared) = (ours("checkout"), ours("billing"));
    let scratch = FaultFiles::new("proxy-nlf");
    let fault = scratch.fault(
        "nlf",
        &format!(
            "  match: {{apiKeys: [Produce], topics: [{topic}], clientId: {{exact: {hit}}}}}\n  action: {{type: Error, errorCode: NOT_LEADER_OR_FOLLOWER, probability: 50}}\n  duration: 10s\n"
        ),
    );
    let inject = Inject::start(&lab, &fault);
    let started = Instant::now();
    let produce = |client: &str| {
        Client::start(
            &lab,
            &[
                "produce",
                "--topic",
                &topic,
                "--count",
                "80",
                "--interval-ms",
                "100",
                "--client-id",
                client,
                // Delivery outlasts the fault with room to spare: under a 50 % error rate an
                // idempotent producer's first batches back off exponentially (up to 1 s a
                // try) and can wait on unresolved sequences, so on a loaded machine 15 s
                // (the default) could expire a batch before the fault's end let it through.
                "--timeout-ms",
                "40000",
            ],
            "",
        )
    };
    let (hit_run, spared_run) = (produce(&hit), produce(&spared));
    let (hit_run, spared_run) = (
        hit_run.report(Duration::from_secs(90)),
        spared_run.report(Duration::from_secs(90)),
    );
    // The fault ends by itself at its duration.
    let output = inject.0.interrupt().unwrap_or_default();
    assert!(started.elapsed() >= Duration::from_secs(8), "{output}");
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    let hit_result = hit_run.result();
    let produce_errors = errors_in(hit_result, "produce_errors");
    eprintln!(
        "hit producer: acked {}, produce_errors {produce_errors:?}; spared: {:?}",
        count(hit_result, "acked"),
        errors_in(spared_run.result(), "produce_errors")
    );
    assert_eq!(hit_run.error(), "NONE", "{hit_result}");
    assert_eq!(count(hit_result, "acked"), 80, "{hit_result}");
    assert!(
        produce_errors
            .get("NOT_LEADER_OR_FOLLOWER")
            .copied()
            .unwrap_or(0)
            >= 3,
        "the producer saw the retriable error: {hit_result}"
    );
    assert!(
        hit_run.events("log").any(|event| event["message"]
            .as_str()
            .unwrap_or_default()
            .contains("NOT_LEADER_OR_FOLLOWER")),
        "the producer logged it"
    );
    assert!(
        count(hit_result, "metadata_responses") >= 2,
        "it refreshed its metadata"
    );
    assert_eq!(spared_run.error(), "NONE");
    assert!(
        errors_in(spared_run.result(), "produce_errors").is_empty(),
        "another client is never hit: {}",
        spared_run.result()
    );
    let counted = lab.java_report(&[
        "count",
        "--topic",
        &topic,
        "--expect-prefix",
        &hit,
        "--expect-count",
        "80",
    ]);
    let counted = counted.result();
    assert_eq!(
        (
            count(counted, "duplicates"),
            count(counted, "missing_count")
        ),
        (0, 0),
        "every record exactly once: {counted}"
    );
    assert!(output.contains("→ NOT_LEADER_OR_FOLLOWER"), "{output}");
    assert!(output.contains("spared by probability"), "{output}");
}

/// One API's error, the client that must see it, and how.
struct ApiCase {
    api: &'static str,
    error: &'static str,
    /// Extra arguments for the Java client (`api NAME ...`), or `None` for kafka-python.
    java: Option<&'static [&'static str]>,
}

const fn java(api: &'static str, error: &'static str) -> ApiCase {
    ApiCase {
        api,
        error,
        java: Some(&[]),
    }
}

/// Every API an Error can fail, with an error its client throws (tests/clients/README.md).
const API_CASES: [ApiCase; 20] = [
    java("Produce", "TOPIC_AUTHORIZATION_FAILED"),
    java("Fetch", "TOPIC_AUTHORIZATION_FAILED"),
    java("ListOffsets", "TOPIC_AUTHORIZATION_FAILED"),
    java("Metadata", "TOPIC_AUTHORIZATION_FAILED"),
    java("OffsetCommit", "GROUP_AUTHORIZATION_FAILED"),
    java("OffsetFetch", "GROUP_AUTHORIZATION_FAILED"),
    java("FindCoordinator", "GROUP_AUTHORIZATION_FAILED"),
    java("JoinGroup", "GROUP_AUTHORIZATION_FAILED"),
    java("SyncGroup", "GROUP_AUTHORIZATION_FAILED"),
    java("Heartbeat", "REBALANCE_IN_PROGRESS"),
    java("LeaveGroup", "UNKNOWN_MEMBER_ID"),
    java("DescribeGroups", "GROUP_AUTHORIZATION_FAILED"),
    java("CreateTopics", "TOPIC_AUTHORIZATION_FAILED"),
    java("DeleteTopics", "TOPIC_AUTHORIZATION_FAILED"),
    java("InitProducerId", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"),
    ApiCase {
        api: "AddPartitionsToTxn",
        error: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        java: None,
    },
    ApiCase {
        api: "AddOffsetsToTxn",
        error: "GROUP_AUTHORIZATION_FAILED",
        java: None,
    },
    java("EndTxn", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"),
    java("TxnOffsetCommit", "GROUP_AUTHORIZATION_FAILED"),
    java("ConsumerGroupHeartbeat", "GROUP_AUTHORIZATION_FAILED"),
];

/// `kafka-shock sniff --json` in broker 0's namespace, until stopped.
fn start_sniff(lab: &Lab, dir: &TempDir) -> (Background, std::path::PathBuf) {
    let output = dir.path().join("sniff.json");
    let sniff = Background::start(
        Command::new(kafka_shock_bin().expect("kafka-shock"))
            .args([
                "sniff",
                "--netns",
                &broker_netns(lab),
                "--iface",
                "eth0",
                "--json",
            ])
            .stdout(std::fs::File::create(&output).expect("sniff output file")),
        Stream::Stderr,
        "listening",
        Duration::from_secs(10),
    )
    .expect("sniff starts");
    (sniff, output)
}

#[test]
fn every_answerable_api_gets_exactly_the_injected_error_and_sniff_decodes_it() {
    let (_serial, lab, topic) = lab_with_topic("api");
    let scratch = FaultFiles::new("proxy-apis");
    let dir = TempDir::new("proxy-apis-sniff");
    let (sniff, sniffed) = start_sniff(&lab, &dir);
    let mut wrong = Vec::new();
    let started = Instant::now();
    for case in &API_CASES {
        let client_id = format!("{}-{}", ours("api"), case.api);
        // A fault's name is a lowercase RFC 1123 subdomain.
        let fault = scratch.fault(
            &case.api.to_lowercase(),
            &format!(
                "  match: {{apiKeys: [{}], clientId: {{exact: {client_id}}}}}\n  action: {{type: Error, errorCode: {}}}\n  duration: 5m\n",
                case.api, case.error
            ),
        );
        let inject = Inject::start(&lab, &fault);
        let common = [
            "--topic",
            topic.as_str(),
            "--client-id",
            client_id.as_str(),
            "--expect",
            case.error,
        ];
        let seen = match case.java {
            Some(extra) => {
                let mut args = vec!["api", case.api];
                args.extend(common);
                args.extend(extra.iter().copied());
                let report = lab.java_report(&args);
                let result = report.result().clone();
                (report.error().to_owned(), result)
            }
            None => {
                let mut args = vec![case.api];
                args.extend(common);
                let result = lab.python_report("kafka_python_api.py", &args);
                (
                    result["error"].as_str().unwrap_or_default().to_owned(),
                    result,
                )
            }
        };
        let output = inject.stop(&lab);
        if seen.0 != case.error {
            wrong.push(format!(
                "{}: the client saw {} ({})",
                case.api, seen.0, seen.1
            ));
        }
        if !output.contains(&format!("{} v", case.api))
            || !output.contains(&format!("→ {}", case.error))
        {
            wrong.push(format!("{}: inject reported no hit:\n{output}", case.api));
        }
    }
    eprintln!(
        "{} APIs in {:.1} s",
        API_CASES.len(),
        started.elapsed().as_secs_f64()
    );
    sniff.interrupt().expect("sniff stops");
    let text = std::fs::read_to_string(&sniffed).expect("sniff output");
    for case in &API_CASES {
        let client_id = format!("{}-{}", ours("api"), case.api);
        let decoded = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .any(|request| {
                request["client_id"] == client_id.as_str()
                    && request["api"] == case.api
                    && request["errors"]
                        .as_array()
                        .is_some_and(|errors| errors.iter().any(|error| error == case.error))
            });
        if !decoded {
            wrong.push(format!(
                "{}: sniff decoded no response with {}",
                case.api, case.error
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn rebalance_in_progress_on_heartbeats_makes_the_consumer_rejoin_then_consume() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let topic = ours("billing-events");
    let group = ours("billing");
    lab.create_topic(&topic, 1, 1).expect("topic");
    let producer = ours("billing-producer");
    let produced = lab.java_report(&[
        "produce",
        "--topic",
        &topic,
        "--count",
        "20",
        "--client-id",
        &producer,
    ]);
    assert_eq!(produced.error(), "NONE");
    let scratch = FaultFiles::new("proxy-heartbeat");
    let fault = scratch.fault(
        "rebalance",
        &format!(
            "  match: {{apiKeys: [Heartbeat], groupId: {group}}}\n  action: {{type: Error, errorCode: REBALANCE_IN_PROGRESS}}\n  duration: 6s\n"
        ),
    );
    let dir = TempDir::new("proxy-heartbeat-sniff");
    let (sniff, sniffed) = start_sniff(&lab, &dir);
    let inject = Inject::start(&lab, &fault);
    let consumed = lab.java_report(&[
        "consume",
        "--topic",
        &topic,
        "--group",
        &group,
        // It reads the 20 records at once, then stays in the group (heartbeating every 300 ms)
        // until 5 s pass without records: the fault's 6 s see its heartbeats.
        "--idle-ms",
        "5000",
        "--duration-ms",
        "40000",
        "--config",
        "heartbeat.interval.ms=300",
    ]);
    let output = inject.0.interrupt().unwrap_or_default();
    sniff.interrupt().expect("sniff stops");
    let result = consumed.result();
    let rebalances = consumed.events("rebalance").count();
    let client_joins = result["wire"]["requests"]["JoinGroup"]
        .as_u64()
        .unwrap_or(0);
    let joins = std::fs::read_to_string(&sniffed)
        .expect("sniff output")
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|request| request["api"] == "JoinGroup")
        .count();
    eprintln!(
        "{rebalances} rebalance events, {client_joins} JoinGroups sent, {joins} sniffed; {result}"
    );
    assert!(output.contains("→ REBALANCE_IN_PROGRESS"), "{output}");
    // The first join takes two JoinGroups (MEMBER_ID_REQUIRED, then the join): a third is the
    // rejoin the errored heartbeats forced.
    assert!(client_joins >= 3, "the consumer rejoined: {result}");
    assert!(joins >= 3, "sniff saw the rejoin's JoinGroup ({joins})");
    assert_eq!(
        count(result, "unique"),
        20,
        "then it consumed normally: {result}"
    );
    assert_eq!(leftovers(&lab), Vec::<String>::new());
}

#[test]
fn throttle_on_fetch_makes_the_consumer_wait_about_two_seconds() {
    let (_serial, lab, topic) = lab_with_topic("throttled");
    let client = ours("slow-consumer");
    let scratch = FaultFiles::new("proxy-throttle");
    let fault = scratch.fault(
        "throttle",
        &format!(
            "  match: {{apiKeys: [Fetch], clientId: {{exact: {client}}}}}\n  action: {{type: Throttle, throttleTime: 2s}}\n  duration: 5m\n"
        ),
    );
    let inject = Inject::start(&lab, &fault);
    let consumed = lab.java_report(&[
        "consume",
        "--topic",
        &topic,
        "--client-id",
        &client,
        "--duration-ms",
        "8000",
    ]);
    let output = inject.stop(&lab);
    let result = consumed.result();
    let throttle = result["metrics"]["fetch-throttle-time-max"]
        .as_f64()
        .unwrap_or(0.0);
    let gap = result["wire"]["max_gap_ms"]["Fetch"]
        .as_f64()
        .unwrap_or(0.0);
    eprintln!("fetch throttle max {throttle} ms, fetch gap {gap} ms");
    assert_eq!(throttle, 2000.0, "{result}");
    assert!(
        (1800.0..=4000.0).contains(&gap),
        "the fetch gap shows the throttle: {gap}"
    );
    assert!(proxy_counter(&output, "throttled") >= 2, "{output}");
}

/// Produces `count` records as `client` (acks=all, retries on unless `extra` says).
fn produce(lab: &Lab, topic: &str, client: &str, count: u32, extra: &[&str]) -> ClientReport {
    let count = count.to_string();
    let mut args = vec![
        "produce",
        "--topic",
        topic,
        "--count",
        &count,
        "--client-id",
        client,
    ];
    args.extend(extra);
    lab.java_report(&args)
}

/// What `consume` without a group read of `topic`: its records' values.
fn values(lab: &Lab, topic: &str, extra: &[&str]) -> (ClientReport, Vec<String>) {
    let mut args = vec![
        "consume",
        "--topic",
        topic,
        "--idle-ms",
        "3000",
        "--duration-ms",
        "20000",
    ];
    args.extend(extra);
    let report = lab.java_report(&args);
    let values = report
        .events("record")
        .map(|record| record["value"].as_str().unwrap_or_default().to_owned())
        .collect();
    (report, values)
}

#[test]
fn corrupt_produce_and_fetch_with_and_without_a_fixed_crc() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let scratch = FaultFiles::new("proxy-corrupt");
    let (stored, other) = (ours("corrupt-stored"), ours("corrupt-other"));
    for topic in [&stored, &other] {
        lab.create_topic(topic, 1, 1).expect("topic");
    }
    // Produce, CRC left stale: the broker's check refuses the batch.
    let fault = scratch.fault(
        "produce-stale",
        &format!("  match: {{topics: [{stored}]}}\n  action: {{type: Corrupt, target: Produce}}\n  duration: 5m\n"),
    );
    let inject = Inject::start(&lab, &fault);
    let refused = lab.java_report(&[
        "api",
        "Produce",
        "--topic",
        &stored,
        "--expect",
        "CORRUPT_MESSAGE",
    ]);
    let control = produce(&lab, &other, &ours("clean"), 5, &[]);
    let output = inject.stop(&lab);
    assert_eq!(refused.error(), "CORRUPT_MESSAGE", "{}", refused.result());
    assert_eq!(control.error(), "NONE", "other topics are untouched");
    assert!(proxy_counter(&output, "corrupted") >= 1, "{output}");
    // Produce, CRC fixed: the altered values are stored as if valid; the other topic's not.
    let fault = scratch.fault(
        "produce-fixed",
        &format!("  match: {{topics: [{stored}]}}\n  action: {{type: Corrupt, target: Produce, fixCrc: true}}\n  duration: 5m\n"),
    );
    let inject = Inject::start(&lab, &fault);
    let writer = ours("byzantine");
    let written = produce(&lab, &stored, &writer, 5, &[]);
    let control = produce(&lab, &other, &writer, 5, &[]);
    inject.stop(&lab);
    assert_eq!((written.error(), control.error()), ("NONE", "NONE"));
    let (_, stored_values) = values(&lab, &stored, &[]);
    let (_, other_values) = values(&lab, &other, &[]);
    assert_eq!(stored_values.len(), 5, "{stored_values:?}");
    assert!(
        stored_values
            .iter()
            .all(|value| !value.starts_with(&writer)),
        "stored corrupted: {stored_values:?}"
    );
    assert!(
        other_values
            .iter()
            .filter(|value| value.starts_with(&writer))
            .count()
            == 5,
        "the other topic holds what was sent: {other_values:?}"
    );
    // Fetch, CRC stale: a consumer checking CRCs fails; CRC fixed: it reads altered values.
    let fetched = ours("corrupt-fetched");
    lab.create_topic(&fetched, 1, 1).expect("topic");
    let sent = produce(&lab, &fetched, &writer, 5, &[]);
    assert_eq!(sent.error(), "NONE");
    for (fix_crc, name) in [(false, "fetch-stale"), (true, "fetch-fixed")] {
        let fault = scratch.fault(
            name,
            &format!("  match: {{topics: [{fetched}]}}\n  action: {{type: Corrupt, target: Fetch, fixCrc: {fix_crc}}}\n  duration: 5m\n"),
        );
        let inject = Inject::start(&lab, &fault);
        let (report, seen) = values(&lab, &fetched, &["--check-crcs", "true"]);
        let (_, clean) = values(&lab, &other, &[]);
        inject.stop(&lab);
        assert_eq!(clean.len(), 10, "the other topic reads clean: {clean:?}");
        if fix_crc {
            assert_eq!(report.error(), "NONE", "{}", report.result());
            assert_eq!(seen.len(), 5);
            assert!(
                seen.iter().all(|value| !value.starts_with(&writer)),
                "{seen:?}"
            );
        } else {
            let poll_errors = report.result()["poll_errors"].to_string();
            assert!(
                report.error() != "NONE"
                    && (poll_errors.contains("KafkaException") || poll_errors.contains("CORRUPT")),
                "the consumer's CRC check caught it: {}",
                report.result()
            );
        }
    }
}

#[test]
fn duplicate_produce_doubles_a_plain_producers_records_and_not_an_idempotent_ones() {
    let (_serial, lab, topic) = lab_with_topic("dup");
    let scratch = FaultFiles::new("proxy-duplicate");
    let fault = scratch.fault(
        "duplicate",
        &format!("  match: {{apiKeys: [Produce], topics: [{topic}]}}\n  action: {{type: Duplicate}}\n  duration: 5m\n"),
    );
    let (plain, safe) = (ours("plain"), ours("idempotent"));
    let inject = Inject::start(&lab, &fault);
    let plain_run = produce(
        &lab,
        &topic,
        &plain,
        20,
        &["--idempotence", "false", "--acks", "all"],
    );
    let safe_run = produce(&lab, &topic, &safe, 20, &[]);
    let output = inject.stop(&lab);
    assert_eq!((plain_run.error(), safe_run.error()), ("NONE", "NONE"));
    let plain_count = lab.java_report(&[
        "count",
        "--topic",
        &topic,
        "--expect-prefix",
        &plain,
        "--expect-count",
        "20",
    ]);
    let safe_count = lab.java_report(&[
        "count",
        "--topic",
        &topic,
        "--expect-prefix",
        &safe,
        "--expect-count",
        "20",
    ]);
    let duplicated = |report: &ClientReport, prefix: &str| {
        report.result()["repeated"]
            .as_object()
            .map_or(0, |repeated| {
                repeated
                    .keys()
                    .filter(|value| value.starts_with(prefix))
                    .count()
            })
    };
    eprintln!(
        "plain: {}; idempotent: {}",
        plain_count.result(),
        safe_count.result()
    );
    assert_eq!(count(plain_count.result(), "missing_count"), 0);
    assert!(
        duplicated(&plain_count, &plain) >= 15,
        "a plain producer's records appear twice: {}",
        plain_count.result()
    );
    assert_eq!(count(safe_count.result(), "missing_count"), 0);
    assert_eq!(
        duplicated(&safe_count, &safe),
        0,
        "the broker deduplicates an idempotent producer's: {}",
        safe_count.result()
    );
    assert!(proxy_counter(&output, "duplicated") >= 2, "{output}");
}

#[test]
fn failed_offset_commits_make_a_group_reread_records_and_lose_none() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let topic = ours("commits");
    let group = ours("committers");
    lab.create_topic(&topic, 1, 1).expect("topic");
    let producer = ours("commit-producer");
    assert_eq!(produce(&lab, &topic, &producer, 50, &[]).error(), "NONE");
    let scratch = FaultFiles::new("proxy-commit");
    let fault = scratch.fault(
        "commit",
        &format!("  match: {{apiKeys: [OffsetCommit], groupId: {group}}}\n  action: {{type: Error, errorCode: REBALANCE_IN_PROGRESS}}\n  duration: 4s\n"),
    );
    let inject = Inject::start(&lab, &fault);
    let consumed = lab.java_report(&[
        "consume",
        "--topic",
        &topic,
        "--group",
        &group,
        "--count",
        "50",
        "--idle-ms",
        "10000",
        "--duration-ms",
        "40000",
        "--config",
        "max.poll.records=5",
    ]);
    let output = inject.0.interrupt().unwrap_or_default();
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    let result = consumed.result();
    eprintln!("{result}");
    assert!(output.contains("→ REBALANCE_IN_PROGRESS"), "{output}");
    assert!(
        !errors_in(result, "commit_errors").is_empty(),
        "commits failed: {result}"
    );
    assert_eq!(count(result, "unique"), 50, "nothing lost: {result}");
    assert!(
        count(result, "reread") >= 1,
        "at-least-once duplicates: {result}"
    );
}

#[test]
fn handover_moves_an_existing_producer_onto_the_proxy_unless_new_connections_only() {
    let (_serial, lab, topic) = lab_with_topic("handover");
    let scratch = FaultFiles::new("proxy-handover");
    for (handover, moved) in [("Reset", true), ("NewConnectionsOnly", false)] {
        let producer = ours(&format!("long-lived-{handover}"));
        let fault = scratch.fault(
            &handover.to_lowercase(),
            &format!("  match: {{apiKeys: [Produce], clientId: {{exact: {producer}}}}}\n  action: {{type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}}\n  handover: {handover}\n  duration: 4s\n"),
        );
        // Connected (and producing) before the fault starts.
        let running = Client::start(
            &lab,
            &[
                "produce",
                "--topic",
                &topic,
                "--count",
                "120",
                "--interval-ms",
                "100",
                "--client-id",
                &producer,
            ],
            "\"event\":\"send\"",
        );
        let inject = Inject::start(&lab, &fault);
        // A new connection of the same client id gets the error either way (positive control).
        let fresh = api_produce(
            &lab,
            &topic,
            &producer,
            &["--expect", "NOT_LEADER_OR_FOLLOWER"],
        );
        let report = running.report(Duration::from_secs(60));
        let output = inject.0.interrupt().unwrap_or_default();
        assert_eq!(
            fresh.error(),
            "NOT_LEADER_OR_FOLLOWER",
            "{}",
            fresh.result()
        );
        let errors = errors_in(report.result(), "produce_errors");
        eprintln!("{handover}: produce_errors {errors:?}");
        assert_eq!(report.error(), "NONE", "{}", report.result());
        if moved {
            assert!(
                errors.contains_key("NOT_LEADER_OR_FOLLOWER"),
                "moved onto the proxy: {}",
                report.result()
            );
            // Every connection of the start (the producer's bootstrap and broker connections)
            // was handed over, and counted.
            let number_before = |marker: &str| -> Option<u64> {
                let before = &output[..output.find(marker)?];
                before.split_whitespace().last()?.parse().ok()
            };
            let at_start = number_before(" connection(s) opened before the fault are reset")
                .unwrap_or_else(|| panic!("no handover line: {output}"));
            assert!(at_start >= 1, "{output}");
            assert_eq!(number_before(" handed over,"), Some(at_start), "{output}");
        } else {
            assert!(errors.is_empty(), "left alone: {}", report.result());
            assert!(output.contains("left alone"), "{output}");
        }
        assert_eq!(leftovers(&lab), Vec::<String>::new());
    }
}

#[test]
fn after_sigterm_or_expiry_nothing_is_left_and_clients_work_directly() {
    let (_serial, lab, topic) = lab_with_topic("recovery");
    let scratch = FaultFiles::new("proxy-recovery");
    let client = ours("recovering");
    let fault = scratch.fault(
        "recover",
        &format!("  match: {{apiKeys: [Produce], clientId: {{exact: {client}}}}}\n  action: {{type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}}\n  duration: 5s\n"),
    );
    // SIGTERM while a consumer holds a proxied connection.
    let inject = Inject::start(&lab, &fault);
    let hit = api_produce(
        &lab,
        &topic,
        &client,
        &["--expect", "NOT_LEADER_OR_FOLLOWER"],
    );
    assert_eq!(hit.error(), "NOT_LEADER_OR_FOLLOWER");
    lab::run(Command::new("kill").args(["-TERM", &inject.pid().to_string()])).expect("kill");
    let output = inject.0.interrupt().unwrap_or_default();
    assert!(output.contains("nothing of this fault is left"), "{output}");
    assert_eq!(leftovers(&lab), Vec::<String>::new(), "{output}");
    let direct = lab.java_report(&["api", "Produce", "--topic", &topic, "--client-id", &client]);
    assert_eq!(direct.error(), "NONE", "works directly after SIGTERM");
    // Expiry: the fault ends by itself after its duration.
    let inject = Inject::start(&lab, &fault);
    let started = Instant::now();
    let mut inject = inject.0;
    assert!(
        inject.wait_for(Duration::from_secs(20), |lines| lines
            .iter()
            .any(|l| l.contains("nothing of this fault is left"))),
        "the fault ended at its duration: {:?}",
        inject.output()
    );
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    let direct = lab.java_report(&["api", "Produce", "--topic", &topic, "--client-id", &client]);
    assert_eq!(direct.error(), "NONE", "works directly after expiry");
}

/// SIGKILL leaves the redirect to a port nobody listens on any more: new connections are
/// refused until the kernel lease on the nat jump ends, then reach the broker directly with
/// nothing removing the rules; the next `rules` run sweeps them.
#[test]
fn after_sigkill_the_lease_on_the_redirect_ends_redirection() {
    let (_serial, lab, topic) = lab_with_topic("leased");
    let scratch = FaultFiles::new("proxy-sigkill");
    let client = ours("killed-owner");
    let fault = scratch.fault(
        "killed",
        &format!("  match: {{apiKeys: [Produce], clientId: {{exact: {client}}}}}\n  action: {{type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}}\n  duration: 5m\n"),
    );
    let lease = Duration::from_secs(6);
    let inject = Background::start(
        Command::new(kafka_shock_bin().expect("kafka-shock"))
            .args(["inject", "-f"])
            .arg(&fault)
            .args(["--netns", &broker_netns(&lab), "--lease", "6s"]),
        Stream::Stdout,
        "inject: active",
        Duration::from_secs(20),
    )
    .expect("inject becomes active");
    assert!(
        !lab.kcat_delivers_within(&topic, &client, 1500),
        "positive control: the fault bites"
    );
    inject.kill();
    let killed = Instant::now();
    let mut refused = 0;
    while !lab.kcat_delivers_within(&topic, &client, 1500) {
        refused += 1;
        assert!(
            killed.elapsed() < lease + Duration::from_secs(5),
            "no direct connection {:?} after SIGKILL (lease {lease:?})",
            killed.elapsed()
        );
    }
    let recovered = killed.elapsed();
    eprintln!(
        "SIGKILL → a new connection reaches the broker after {recovered:?} (lease {lease:?})"
    );
    assert!(
        refused > 0,
        "right after SIGKILL the lease has seconds left: the redirect must still divert"
    );
    let rules = lab.broker_rules();
    assert!(
        rules.contains("REDIRECT"),
        "the nat rule is still there: the kernel lease ended the redirection\n{rules}"
    );
    let listed = kafka_shock(&["rules", "--netns", &broker_netns(&lab)]);
    assert!(
        listed.contains("nat") && listed.contains("expired"),
        "{listed}"
    );
    assert_eq!(leftovers(&lab), Vec::<String>::new(), "{listed}");
}

#[test]
fn other_faults_rules_never_hit_the_proxys_upstream_and_it_is_not_redirected_again() {
    let (_serial, lab, topic) = lab_with_topic("upstream");
    let scratch = FaultFiles::new("proxy-upstream");
    let reset_client = ours("reset-me");
    // A Signature fault resetting one client's Produce requests on the same port.
    let reject = scratch.fault(
        "reject",
        &format!("  match: {{apiKeys: [Produce], clientId: {{exact: {reset_client}}}}}\n  action: {{type: Reject}}\n  enforcement: Signature\n  duration: 5m\n"),
    );
    let rejecting = Inject::start(&lab, &reject);
    let before = api_produce(&lab, &topic, &reset_client, &["--timeout-ms", "5000"]);
    assert_ne!(
        before.error(),
        "NONE",
        "positive control: the reset hits it directly"
    );
    // A Proxy fault on the same port for someone else: now every new connection is proxied,
    // and the upstream connection carrying reset-me's requests bears the proxy's mark.
    let proxy = scratch.fault(
        "proxy",
        &format!("  match: {{apiKeys: [Produce], clientId: {{exact: {}}}}}\n  action: {{type: Error, errorCode: NOT_CONTROLLER}}\n  duration: 5m\n", ours("nobody")),
    );
    let proxying = Inject::start(&lab, &proxy);
    let through = api_produce(&lab, &topic, &reset_client, &["--timeout-ms", "10000"]);
    let output = proxying.0.interrupt().expect("inject stops");
    rejecting.0.interrupt().expect("inject stops");
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    assert_eq!(
        through.error(),
        "NONE",
        "the other fault's rule did not hit the proxied request: {}",
        through.result()
    );
    // Had the upstream been redirected again, it would have reached the proxy's own port and
    // been closed: the request went through, over one proxied connection per client one.
    assert!(
        proxy_counter(&output, "connections proxied") >= 1,
        "{output}"
    );
    assert!(proxy_counter(&output, "requests seen") >= 1, "{output}");
}

#[test]
fn a_tls_stream_on_a_proxied_port_passes_through_intact() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let dir = TempDir::new("proxy-tls");
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    lab::run(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=broker",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )
    .expect("openssl cert");
    let page = dir.path().join("index.html");
    std::fs::write(&page, "kafka-shock tls passthrough\n").expect("page");
    // A TLS server on a port of the broker's namespace, standing in for a TLS listener.
    let server = Background::start(
        lab.in_netns(&broker_netns(&lab), "openssl")
            .args(["s_server", "-quiet", "-accept", "9443", "-WWW", "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(dir.path()),
        Stream::Stderr,
        "",
        Duration::from_secs(5),
    )
    .expect("s_server");
    std::thread::sleep(Duration::from_millis(500));
    let scratch = FaultFiles::new("proxy-tls");
    let fault = scratch.fault(
        "tls",
        "  ports: [9443]\n  action: {type: Error, errorCode: NOT_CONTROLLER}\n  duration: 5m\n",
    );
    let inject = Inject::start(&lab, &fault);
    let broker_ip = lab.broker_addrs()[0]
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let fetched = lab::stdout(
        lab.client("curl")
            .args(["-sk", "--max-time", "10"])
            .arg(format!("https://{broker_ip}:9443/index.html")),
    );
    let output = inject.stop_allowing_listener(&lab, 9443);
    server.kill();
    assert_eq!(
        fetched.expect("curl through the proxy"),
        "kafka-shock tls passthrough\n"
    );
    assert!(
        output.contains("port 9443 carries TLS: Proxy can't see its requests"),
        "{output}"
    );
    assert_eq!(proxy_counter(&output, "TLS passed through"), 1, "{output}");
}

impl Inject {
    /// As [`Inject::stop`], with a listener of the test's own on `port` still up.
    fn stop_allowing_listener(self, lab: &Lab, port: u16) -> String {
        let output = self.0.interrupt().expect("inject exits 0 on SIGINT");
        assert!(output.contains("nothing of this fault is left"), "{output}");
        let left: Vec<String> = leftovers(lab)
            .into_iter()
            .filter(|line| !line.contains(&format!(":{port} ")))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "{output}");
        output
    }
}

/// Resident memory of process `pid`, in KiB, from /proc (not self-reported).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn hostile_traffic_through_the_proxy_neither_panics_nor_grows_nor_stalls_others() {
    let (_serial, lab, topic) = lab_with_topic("hostile");
    let scratch = FaultFiles::new("proxy-hostile");
    let victim = ours("victim");
    let fault = scratch.fault(
        "hostile",
        &format!("  match: {{apiKeys: [Produce], clientId: {{exact: {victim}}}}}\n  action: {{type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}}\n  duration: 5m\n"),
    );
    let inject = Inject::start(&lab, &fault);
    let pid = inject.pid();
    let before = rss_kib(pid);
    let script = lab::workspace_root().join("tests/clients/hostile_proxy_flood.py");
    let mut flood = Background::start(
        lab.client("python")
            .arg(&script)
            .arg(lab.bootstrap())
            .args(["--connections", "200", "--seconds", "15"]),
        Stream::Stdout,
        "\"holding\"",
        Duration::from_secs(60),
    )
    .expect("the flood holds its connections");
    let during = rss_kib(pid);
    // While the 200 connections are held: another client, and the fault's own.
    let other = lab.java_report(&[
        "api",
        "Produce",
        "--topic",
        &topic,
        "--client-id",
        &ours("bystander"),
    ]);
    let victim_run = api_produce(
        &lab,
        &topic,
        &victim,
        &["--expect", "NOT_LEADER_OR_FOLLOWER"],
    );
    let during = during.max(rss_kib(pid));
    assert!(
        flood.wait_for(Duration::from_secs(30), |lines| lines
            .iter()
            .any(|l| l.contains("\"result\""))),
        "{:?}",
        flood.output()
    );
    let held = flood
        .output()
        .iter()
        .find(|l| l.contains("\"holding\""))
        .cloned()
        .unwrap_or_default();
    let output = inject.stop(&lab);
    eprintln!("flood: {held}; inject RSS {before} KiB before, at most {during} KiB during it");
    assert!(held.contains("\"connections\": 200"), "{held}");
    assert_eq!(
        other.error(),
        "NONE",
        "other connections keep working: {}",
        other.result()
    );
    assert_eq!(
        victim_run.error(),
        "NOT_LEADER_OR_FOLLOWER",
        "the fault still works"
    );
    assert!(
        during < before + 300 * 1024,
        "bounded memory: {before} → {during} KiB"
    );
    assert!(!output.contains("panicked"), "{output}");
    assert!(
        proxy_counter(&output, "other passed through") >= 1,
        "{output}"
    );
}
