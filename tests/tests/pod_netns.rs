//! `kafka-shock sniff --pod-ip/--pod-uid` on the lab: the namespace is found by scanning
//! `/proc`, as the node agent finds a pod's. The lab's brokers are pods the kubelets run, so the
//! broker pod's UID is in its processes' cgroup paths (`/<node>/kubepods/<qos>/pod<UID>/…`) and
//! its IP on its namespace's interface: each finds the broker, and an unknown one finds nothing.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lab::{Background, Lab, Stream, TempDir, kafka_shock_bin};
use serde_json::Value;

/// No lab namespace has this address: the lab's pods are numbered from the bottom of 10.77.0.0/24.
const NO_SUCH_POD_IP: &str = "10.77.0.250";

fn broker_ip(lab: &Lab) -> String {
    let addr = lab.broker_addrs()[0].clone();
    let (ip, _port) = addr.rsplit_once(':').expect("broker address is ip:port");
    ip.to_owned()
}

fn sniff_output(args: &[&str]) -> Output {
    let sniff = kafka_shock_bin().expect("kafka-shock binary");
    Command::new(&sniff)
        .arg("sniff")
        .args(args)
        .output()
        .expect("kafka-shock runs")
}

fn assert_exit_2_saying(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(expected),
        "stderr should say {expected:?}: {stderr}"
    );
}

fn broker_uid(lab: &Lab) -> String {
    let uid = lab::stdout(lab.kubectl().args([
        "get",
        "pod",
        "-n",
        lab.pod_namespace(),
        "kafka-broker-0",
        "-o",
        "jsonpath={.metadata.uid}",
    ]))
    .unwrap_or_else(|error| panic!("{error}"));
    assert!(!uid.trim().is_empty(), "the broker's Pod has a UID");
    uid.trim().to_owned()
}

#[test]
fn sniff_by_pod_ip_decodes_the_brokers_produce() {
    let _exclusive = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    let pod_ip = broker_ip(&lab);
    sniff_decodes_the_brokers_produce(&lab, &["--pod-ip", &pod_ip], "ip");
}

#[test]
fn sniff_by_pod_uid_decodes_the_brokers_produce() {
    let _exclusive = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    let uid = broker_uid(&lab);
    sniff_decodes_the_brokers_produce(&lab, &["--pod-uid", &uid], "uid");
}

/// Sniffs the namespace `find` names (`--pod-ip IP`, `--pod-uid UID`) for 4 s while kcat
/// produces three records, and checks the sniffer decoded them.
fn sniff_decodes_the_brokers_produce(lab: &Lab, find: &[&str], name: &str) {
    let topic = format!("pod-netns-{name}-{}", std::process::id());
    lab.create_topic(&topic, 1, 1).expect("topic created");
    let dir = TempDir::new("pod-netns");
    let json = dir.path().join("sniff.ndjson");

    let started = Instant::now();
    let live = Background::start(
        Command::new(kafka_shock_bin().expect("kafka-shock binary"))
            .arg("sniff")
            .args(find)
            .args(["--duration", "4s", "--json"])
            .stdout(std::fs::File::create(&json).expect("sniff output file")),
        Stream::Stderr,
        "listening",
        Duration::from_secs(10),
    )
    .unwrap_or_else(|error| {
        panic!("sniff {find:?} finds the broker's namespace and starts: {error}")
    });
    lab::stdout_with_input(
        lab.client("kcat").args([
            "-b",
            lab.bootstrap(),
            "-t",
            &topic,
            "-P",
            "-X",
            "client.id=pod-netns-kcat",
        ]),
        "one\ntwo\nthree\n",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    // --duration ends the capture; SIGINT after it only reaps the exited process.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(started.elapsed()));
    live.interrupt().expect("sniff exits 0");

    let output = std::fs::read_to_string(&json).expect("sniff output");
    let produced: u64 = output
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("NDJSON line"))
        .filter(|event| {
            event["api"] == "Produce"
                && event["client_id"] == "pod-netns-kcat"
                && event["topics"] == serde_json::json!([topic])
        })
        .map(|event| event["records"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(produced, 3, "Produce records decoded; output: {output}");
}

#[test]
fn sniff_by_unknown_pod_ip_says_nothing_has_it() {
    let _exclusive = lab::exclusive();
    Lab::up().expect("lab up");
    let output = sniff_output(&["--pod-ip", NO_SUCH_POD_IP, "--duration", "1s"]);
    assert_exit_2_saying(
        &output,
        &format!("no network namespace carries address {NO_SUCH_POD_IP}"),
    );
    assert_exit_2_saying(&output, "namespaces scanned");
}

#[test]
fn sniff_by_unknown_pod_uid_says_nothing_carries_it() {
    let _exclusive = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    // A UID of the right shape that no pod has: the broker's, reversed.
    let uid: String = broker_uid(&lab).chars().rev().collect();
    let output = sniff_output(&["--pod-uid", &uid, "--duration", "1s"]);
    assert_exit_2_saying(
        &output,
        &format!("no network namespace carries pod UID {uid}"),
    );
}
