//! The three-broker lab: a replication-factor-3 topic is created and used; then `down` leaves
//! nothing of the lab behind (no process, pod, mount, cgroup, namespace, link, iptables rule or
//! changed kernel setting), a second `down` is harmless, and a second `up` works.

use std::collections::BTreeMap;
use std::process::Command;

use lab::{Lab, LabDownGuard};

fn stdout_of(command: &mut Command) -> String {
    lab::stdout(command).unwrap_or_else(|error| panic!("{error}"))
}

/// Every kernel setting (`sysctl -a`) but counters and random values that change on their own,
/// and the per-interface ones (the lab's interfaces come and go).
fn settings() -> BTreeMap<String, String> {
    const CHANGING: [&str; 12] = [
        "fs.dentry-state",
        "fs.file-nr",
        "fs.inode-nr",
        "fs.inode-state",
        "fs.quota.",
        "kernel.ns_last_pid",
        "kernel.pty.nr",
        "kernel.random.",
        "net.netfilter.nf_conntrack_count",
        "net.ipv4.neigh.",
        "net.ipv6.neigh.",
        "kernel.sched_domain.",
    ];
    let interfaces = |key: &str| {
        ["net.ipv4.conf.", "net.ipv6.conf."]
            .iter()
            .any(|prefix| key.starts_with(prefix))
            && !key.contains(".all.")
            && !key.contains(".default.")
    };
    stdout_of(Command::new("sysctl").arg("-a"))
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .filter(|(key, _)| {
            !CHANGING.iter().any(|prefix| key.starts_with(prefix)) && !interfaces(key)
        })
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// Directories outside the lab's state that the kubelets, libcni and containerd's shims
/// create, and which of them exist.
fn host_dirs() -> Vec<(&'static str, bool)> {
    [
        "/var/lib/kubelet",
        "/var/log/containers",
        "/var/log/pods",
        "/var/lib/cni",
        "/run/containerd",
    ]
    .into_iter()
    .map(|dir| (dir, std::path::Path::new(dir).exists()))
    .collect()
}

/// What `down` must leave: nothing of the lab's.
fn assert_nothing_left() {
    let netns = stdout_of(Command::new("ip").args(["netns", "list"]));
    assert!(!netns.contains("ksl-"), "namespaces left: {netns}");
    let links = stdout_of(Command::new("ip").args(["-o", "link", "show"]));
    assert!(!links.contains("ksl-"), "links left: {links}");
    for tool in ["iptables-save", "ip6tables-save"] {
        let rules = stdout_of(&mut Command::new(tool));
        assert!(
            !rules.contains("kafka-shock-lab"),
            "{tool}: rules left: {rules}"
        );
        assert!(
            !rules.contains("KUBE-"),
            "{tool}: Kubernetes chains left: {rules}"
        );
    }
    let processes = stdout_of(Command::new("ps").args(["-eo", "args"]));
    let leftovers: Vec<&str> = processes
        .lines()
        .filter(|line| {
            [
                "kafka.Kafka",
                "kube-apiserver",
                "bin/etcd",
                "kubelet",
                "kube-proxy",
            ]
            .iter()
            .any(|name| line.contains(name))
                || line.starts_with("containerd")
                || line.contains("containerd-shim")
        })
        .collect();
    assert!(leftovers.is_empty(), "processes left: {leftovers:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains("/run/kafka-shock-lab"),
        "mounts left: {mounts}"
    );
    let cgroups = stdout_of(Command::new("find").args([
        "/sys/fs/cgroup",
        "-maxdepth",
        "2",
        "-name",
        "ksl-node-*",
    ]));
    assert!(cgroups.is_empty(), "cgroups left: {cgroups}");
    assert!(!std::path::Path::new("/run/kafka-shock-lab").exists());
}

#[test]
fn three_brokers_replicate_then_down_leaves_nothing_and_up_works_again() {
    let down_on_failure = LabDownGuard;
    Lab::down().expect("lab down");
    let before = settings();
    let dirs = host_dirs();
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
    assert_nothing_left();
    let after = settings();
    let changed: Vec<String> = before
        .iter()
        .filter(|(key, value)| after.get(*key).is_some_and(|now| now != *value))
        .map(|(key, value)| format!("{key}: {value} → {}", after[key]))
        .collect();
    assert!(
        changed.is_empty(),
        "kernel settings left changed: {changed:?}"
    );
    assert_eq!(host_dirs(), dirs, "directories the lab made are gone");
    Lab::down().expect("a second down is harmless");
    assert_nothing_left();

    // And the lab comes up again on the same host (the next tests use it).
    let again = Lab::up_with(3).expect("a second up");
    lab::stdout(again.client("kcat").args(["-b", again.bootstrap(), "-L"]))
        .expect("the brokers answer again");
    std::mem::forget(down_on_failure);
}
