//! The three-broker lab: a replication-factor-3 topic is created and used; then `down`
//! leaves no namespace, link, rule or process of the lab behind.

use std::process::Command;

use lab::{Lab, LabDownGuard};

fn stdout_of(command: &mut Command) -> String {
    lab::stdout(command).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn three_brokers_replicate_then_down_leaves_nothing() {
    let _down = LabDownGuard;
    let lab = Lab::up_with(3).expect("three-broker lab up");
    assert_eq!(lab.broker_addrs().len(), 3);
    assert_eq!(lab.broker_netns().len(), 3);

    lab.create_topic("replicated", 3, 3).expect("create topic");
    let metadata =
        stdout_of(
            lab.client("kcat")
                .args(["-b", lab.bootstrap(), "-L", "-t", "replicated"]),
        );
    let partitions: Vec<&str> = metadata
        .lines()
        .filter(|line| line.contains("partition "))
        .collect();
    assert_eq!(partitions.len(), 3, "{metadata}");
    for partition in partitions {
        let (replicas, isrs) = partition
            .split_once("replicas: ")
            .and_then(|(_, rest)| rest.split_once(", isrs: "))
            .unwrap_or_else(|| panic!("unexpected kcat line: {partition}"));
        assert_eq!(replicas.split(',').count(), 3, "{partition}");
        assert_eq!(
            isrs.trim().split(',').count(),
            3,
            "not fully in sync: {partition}"
        );
    }

    let input: String = (0..30).map(|i| format!("key-{i}:value-{i}\n")).collect();
    lab::stdout_with_input(
        lab.client("kcat").args([
            "-b",
            lab.bootstrap(),
            "-t",
            "replicated",
            "-P",
            "-X",
            "acks=all",
            "-K:",
        ]),
        &input,
    )
    .expect("kcat produces with acks=all");

    let consumed = stdout_of(lab.client("kcat").args([
        "-b",
        lab.bootstrap(),
        "-t",
        "replicated",
        "-C",
        "-o",
        "beginning",
        "-c",
        "30",
        "-e",
        "-q",
    ]));
    let mut values: Vec<&str> = consumed.lines().collect();
    values.sort_unstable();
    let mut expected: Vec<String> = (0..30).map(|i| format!("value-{i}")).collect();
    expected.sort_unstable();
    assert_eq!(values, expected);

    Lab::down().expect("lab down");
    let netns = stdout_of(Command::new("ip").args(["netns", "list"]));
    assert!(!netns.contains("ksl-"), "namespaces left: {netns}");
    let links = stdout_of(Command::new("ip").args(["-o", "link", "show"]));
    assert!(!links.contains("ksl-"), "links left: {links}");
    let rules = stdout_of(&mut Command::new("iptables-save"));
    assert!(!rules.contains("kafka-shock-lab"), "rules left: {rules}");
    let processes = stdout_of(Command::new("ps").args(["-eo", "args"]));
    let leftovers: Vec<&str> = processes
        .lines()
        .filter(|line| {
            line.contains("kafka.Kafka")
                || line.contains("kube-apiserver")
                || line.contains("bin/etcd")
        })
        .collect();
    assert!(leftovers.is_empty(), "processes left: {leftovers:?}");
}
