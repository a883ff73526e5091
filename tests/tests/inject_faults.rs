//! `kafka-shock inject` on the lab, against real Kafka and real clients: the faults hit
//! exactly the requests they describe, other traffic flows, recovery is complete, and no
//! KSHOCK rule outlives a test (each test checks the broker's namespace at its end).
//!
//! And the safety of the CLI: the file is obeyed whole (dryRun and paused install nothing), a
//! SIGKILLed run stops biting within its kernel lease with nothing removing its chain, a
//! `--pid` whose process exits still ends cleanly, a Ctrl-C at any moment after start leaves
//! nothing, and name-valued flags refuse names that cannot match.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lab::{Background, FaultFiles, Lab, Stream, TempDir, kafka_shock_bin};

fn broker_netns(lab: &Lab) -> String {
    lab.broker_netns()[0].clone()
}

/// The broker's namespace before a test: leftovers of earlier runs are swept (as every run
/// of the engine does at start), and then no KSHOCK chain may remain.
fn clean_start(lab: &Lab) {
    lab::stdout(Command::new(kafka_shock_bin().expect("kafka-shock")).args([
        "rules",
        "--netns",
        &broker_netns(lab),
    ]))
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        lab.broker_chains(),
        0,
        "the broker's namespace holds rules of a live fault"
    );
}

fn start_inject(lab: &Lab, fault: &Path) -> Background {
    start_inject_in(fault, &["--netns", &broker_netns(lab)])
}

/// `inject` with the broker's namespace named by `target` (`--netns …` or `--pid …`).
fn start_inject_in(fault: &Path, target: &[&str]) -> Background {
    Background::start(
        Command::new(kafka_shock_bin().expect("kafka-shock"))
            .args(["inject", "-f"])
            .arg(fault)
            .args(target),
        Stream::Stdout,
        "inject: active",
        Duration::from_secs(20),
    )
    .expect("inject becomes active")
}

/// Sends `count` records one by one with kafka-python; returns how many were acknowledged.
fn python_acked(lab: &Lab, topic: &str, client_id: &str, count: u32) -> u64 {
    let report = lab.python_report(
        "produce_count.py",
        &[topic, client_id, &count.to_string(), "2000"],
    );
    report["acked"].as_u64().expect("acked count")
}

/// Whether kcat delivers two records within 3 s.
fn kcat_delivers(lab: &Lab, topic: &str, client_id: &str) -> bool {
    kcat_delivers_within(lab, topic, client_id, 3000)
}

/// Whether kcat delivers two records within `timeout_ms`.
fn kcat_delivers_within(lab: &Lab, topic: &str, client_id: &str, timeout_ms: u32) -> bool {
    lab.kcat_delivers_within(topic, client_id, timeout_ms)
}

/// Whether Kafka's Java console producer (Produce v13: topics by id) delivers three records,
/// one try each.
fn java_delivers(lab: &Lab, topic: &str, client_id: &str) -> bool {
    let client_id = format!("client.id={client_id}");
    let mut producer = lab.client("kafka-class");
    producer.args([
        "org.apache.kafka.tools.ConsoleProducer",
        "--bootstrap-server",
        lab.bootstrap(),
        "--topic",
        topic,
        "--sync",
    ]);
    for property in [
        client_id.as_str(),
        "delivery.timeout.ms=4000",
        "request.timeout.ms=2000",
        "linger.ms=0",
        "retries=0",
    ] {
        producer.args(["--producer-property", property]);
    }
    lab::stdout_with_input(&mut producer, "j1\nj2\nj3\n").is_ok()
}

#[test]
fn reject_produce_to_orders_from_client_a_only() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    for topic in ["orders", "other"] {
        lab.create_topic(topic, 1, 1).expect("topic");
    }
    let scratch = FaultFiles::new("inject-reject");
    let fault = scratch.fault(
        "reset-orders-a",
        "  match: {apiKeys: [Produce], clientId: {prefix: client-a}, topics: [orders]}\n  action: {type: Reject}\n  duration: 5m\n",
    );
    assert_eq!(
        python_acked(&lab, "orders", "client-a", 5),
        5,
        "baseline before the fault"
    );

    let inject = start_inject(&lab, &fault);
    let a_orders = python_acked(&lab, "orders", "client-a", 20);
    let a_other = python_acked(&lab, "other", "client-a", 20);
    let b_orders = python_acked(&lab, "orders", "client-b", 20);
    let kcat_a = kcat_delivers(&lab, "orders", "client-a-kcat");
    let kcat_b = kcat_delivers(&lab, "orders", "client-b-kcat");
    let java_a = java_delivers(&lab, "orders", "client-a-java");
    let java_a_other = java_delivers(&lab, "other", "client-a-java");
    eprintln!(
        "success rates: A→orders {a_orders}/20, A→other {a_other}/20, B→orders {b_orders}/20; \
         kcat A {kcat_a}, kcat B {kcat_b}; Java A→orders {java_a}, Java A→other {java_a_other}"
    );
    assert_eq!(a_orders, 0, "A's produces to orders must fail");
    assert_eq!(a_other, 20, "A's produces to other must succeed");
    assert_eq!(b_orders, 20, "B's produces to orders must succeed");
    assert!(!kcat_a, "kcat (librdkafka) as client-a… must be reset");
    assert!(kcat_b, "kcat as client-b… must deliver");
    assert!(
        !java_a,
        "the Java producer (topic ids) as client-a… must be reset from its first try"
    );
    assert!(
        java_a_other,
        "the Java producer's records to other must be delivered"
    );

    let output = inject.interrupt().expect("inject exits 0 on SIGINT");
    assert!(output.is_empty() || !output.contains("error"), "{output}");
    assert_eq!(lab.broker_chains(), 0, "rules left after the fault ended");
    let ended = Instant::now();
    let mut recovered = python_acked(&lab, "orders", "client-a", 5);
    while recovered < 5 && ended.elapsed() < Duration::from_secs(10) {
        recovered = python_acked(&lab, "orders", "client-a", 5);
    }
    eprintln!("A→orders recovered in {} ms", ended.elapsed().as_millis());
    assert_eq!(
        recovered, 5,
        "A's produces to orders must succeed again within seconds"
    );
}

/// A Java console consumer in `group`, printing each record it reads.
fn java_consumer(lab: &Lab, topic: &str, group: &str, client_id: &str) -> Background {
    Background::start(
        lab.client("kafka-class").args([
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            lab.bootstrap(),
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--consumer-property",
            &format!("client.id={client_id}"),
            "--consumer-property",
            "request.timeout.ms=4000",
        ]),
        Stream::Stdout,
        "",
        Duration::ZERO,
    )
    .expect("consumer starts")
}

fn records_read(consumer: &mut Background, prefix: &str) -> Vec<String> {
    let mut read: Vec<String> = consumer
        .output()
        .iter()
        .filter(|line| line.starts_with(prefix))
        .cloned()
        .collect();
    read.sort();
    read
}

#[test]
fn drop_fetch_for_a_group_stalls_only_that_group_and_loses_nothing() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let run = std::process::id();
    let topic = format!("ledger-{run}");
    lab.create_topic(&topic, 1, 1).expect("topic");
    let (stalled, free) = (format!("billing-{run}"), format!("audit-{run}"));
    let scratch = FaultFiles::new("inject-drop-fetch");
    let fault = scratch.fault(
        "blackhole-billing",
        &format!("  match: {{apiKeys: [Fetch], groupId: {stalled}}}\n  action: {{type: Drop}}\n  duration: 5m\n"),
    );
    let mut inject = start_inject(&lab, &fault);
    let mut billing = java_consumer(&lab, &topic, &stalled, "consumer-billing");
    let mut audit = java_consumer(&lab, &topic, &free, "consumer-audit");
    assert!(
        inject.wait_for(Duration::from_secs(60), |lines| lines.iter().any(
            |line| line.starts_with("match:") && line.contains("consumer-billing Fetch")
        )),
        "the billing consumer's Fetch was never matched: {:?}",
        inject.output()
    );

    let records: Vec<String> = (0..50).map(|i| format!("ledger-{i:02}")).collect();
    lab::stdout_with_input(
        lab.client("kcat")
            .args(["-b", lab.bootstrap(), "-t", &topic, "-P", "-X", "acks=all"]),
        &(records.join("\n") + "\n"),
    )
    .expect("produce the ledger");
    assert!(
        audit.wait_for(Duration::from_secs(30), |lines| lines
            .iter()
            .filter(|l| l.starts_with("ledger-"))
            .count()
            >= 50),
        "the other group's consumer must keep going"
    );
    std::thread::sleep(Duration::from_secs(2));
    let billing_during = records_read(&mut billing, "ledger-").len();
    eprintln!("during the fault: billing read {billing_during}/50, audit read 50/50");
    assert_eq!(billing_during, 0, "the blackholed group must not progress");

    let output = inject.interrupt().expect("inject exits 0");
    assert!(output.contains("consumer-billing"), "{output}");
    assert!(
        !output.contains("consumer-audit Fetch"),
        "the audit group was matched: {output}"
    );
    assert_eq!(lab.broker_chains(), 0, "rules left after the fault ended");
    let removed = Instant::now();
    assert!(
        billing.wait_for(Duration::from_secs(60), |lines| lines
            .iter()
            .filter(|l| l.starts_with("ledger-"))
            .count()
            >= 50),
        "the billing group must catch up after the fault"
    );
    eprintln!(
        "billing caught up {} ms after removal",
        removed.elapsed().as_millis()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        records_read(&mut billing, "ledger-"),
        records,
        "billing lost or duplicated records"
    );
    assert_eq!(
        records_read(&mut audit, "ledger-"),
        records,
        "audit lost or duplicated records"
    );
}

/// The owner pid of every KSHOCK chain in the namespace, as `kafka-shock rules` reports them.
fn rule_owners(lab: &Lab) -> String {
    lab::stdout(Command::new(kafka_shock_bin().expect("kafka-shock")).args([
        "rules",
        "--netns",
        &broker_netns(lab),
    ]))
    .unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn sigkill_then_restart_sweeps_the_leftovers() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let scratch = FaultFiles::new("inject-sigkill");
    let fault = scratch.fault(
        "killed",
        "  match: {apiKeys: [Produce], clientId: {exact: client-k}}\n  action: {type: Reject}\n  duration: 5m\n",
    );
    start_inject(&lab, &fault).kill();
    assert!(
        lab.broker_chains() > 0,
        "SIGKILL leaves the rules of the dead run"
    );
    assert_eq!(
        python_acked(&lab, "orders", "client-k", 3),
        0,
        "and they still hit"
    );

    let restarted = start_inject(&lab, &fault);
    let owners = rule_owners(&lab);
    assert_eq!(
        owners.matches("owner:").count(),
        lab.broker_chains(),
        "{owners}"
    );
    assert_eq!(
        lab.broker_chains(),
        2,
        "only the new run's IPv4 and IPv6 chains: {owners}"
    );
    restarted.interrupt().expect("inject exits 0");
    assert_eq!(lab.broker_chains(), 0);
    assert_eq!(python_acked(&lab, "orders", "client-k", 3), 3);
}

#[test]
fn a_fault_that_expired_while_its_engine_was_dead_is_removed_at_start() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let scratch = FaultFiles::new("inject-expired");
    let fault = scratch.fault(
        "expired",
        "  match: {apiKeys: [Produce], clientId: {exact: client-e}}\n  action: {type: Reject}\n  duration: 2s\n",
    );
    start_inject(&lab, &fault).kill();
    assert!(lab.broker_chains() > 0);
    std::thread::sleep(Duration::from_secs(3));
    let swept = rule_owners(&lab);
    assert!(swept.contains("swept leftovers: KSHOCK-"), "{swept}");
    assert_eq!(lab.broker_chains(), 0);
    assert_eq!(python_acked(&lab, "orders", "client-e", 3), 3);
}

#[test]
fn a_fault_ends_by_itself_at_the_end_of_its_duration() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let scratch = FaultFiles::new("inject-duration");
    let fault = scratch.fault(
        "short",
        "  match: {apiKeys: [Produce], clientId: {exact: client-d}}\n  action: {type: Reject}\n  duration: 3s\n",
    );
    // Named by the broker's process this time, as `--pid` users do.
    let broker = lab.broker_pid(0).to_string();
    let mut inject = start_inject_in(&fault, &["--pid", &broker]);
    assert_eq!(python_acked(&lab, "orders", "client-d", 3), 0);
    assert!(
        inject.wait_for(Duration::from_secs(15), |lines| lines
            .iter()
            .any(|line| line.contains("nothing of this fault is left"))),
        "{:?}",
        inject.output()
    );
    assert_eq!(lab.broker_chains(), 0);
    assert_eq!(python_acked(&lab, "orders", "client-d", 3), 3);
}

/// Whether kcat gets Metadata from the broker's IPv6 address as `client_id`.
fn kcat_metadata_over_ipv6(lab: &Lab, client_id: &str) -> bool {
    let broker = lab.broker_addrs()[0]
        .replace("10.77.0.", "[fd00:77::")
        .replace(":9092", "]:9092");
    lab::stdout(lab.client("kcat").args([
        "-b",
        &broker,
        "-L",
        "-m",
        "3",
        "-X",
        &format!("client.id={client_id}"),
    ]))
    .is_ok_and(|metadata| metadata.contains("brokers:"))
}

#[test]
fn ipv6_clients_are_hit_by_the_ipv6_chain() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    assert!(
        kcat_metadata_over_ipv6(&lab, "v6-client"),
        "baseline over IPv6"
    );
    let scratch = FaultFiles::new("inject-ipv6");
    let fault = scratch.fault(
        "reset-v6",
        "  match: {apiKeys: [Metadata], clientId: {exact: v6-client}}\n  action: {type: Reject}\n  enforcement: Signature\n  duration: 5m\n",
    );
    let inject = start_inject(&lab, &fault);
    let hit = !kcat_metadata_over_ipv6(&lab, "v6-client");
    let spared = kcat_metadata_over_ipv6(&lab, "v6-other");
    let counters = lab::stdout(Command::new("ip").args([
        "netns",
        "exec",
        &broker_netns(&lab),
        "ip6tables",
        "-L",
        "-v",
        "-x",
        "-n",
    ]))
    .unwrap_or_else(|error| panic!("{error}"));
    inject.interrupt().expect("inject exits 0");
    assert!(hit, "Metadata from v6-client over IPv6 must be reset");
    assert!(spared, "another client over IPv6 must get its Metadata");
    assert!(counters.contains("REJECT"), "{counters}");
    assert_eq!(lab.broker_chains(), 0);
}

#[test]
fn clean_all_is_the_way_out_and_dry_run_changes_nothing() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let scratch = FaultFiles::new("inject-clean");
    let fault = scratch.fault(
        "cleaned",
        "  match: {apiKeys: [Produce], clientId: {exact: client-x}}\n  action: {type: Drop}\n  duration: 5m\n",
    );
    let kafka_shock = kafka_shock_bin().expect("kafka-shock");
    let dry_run = lab::stdout(
        Command::new(&kafka_shock)
            .args(["inject", "-f"])
            .arg(&fault)
            .arg("--dry-run"),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        dry_run.contains("-j DROP") && dry_run.contains("COMMIT"),
        "{dry_run}"
    );
    assert_eq!(lab.broker_chains(), 0, "--dry-run installed rules");

    let inject = start_inject(&lab, &fault);
    assert_eq!(lab.broker_chains(), 2);
    let cleaned = lab::stdout(Command::new(&kafka_shock).args(["clean", "--all"]))
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(cleaned.contains("removed KSHOCK-"), "{cleaned}");
    assert_eq!(
        lab.broker_chains(),
        0,
        "clean --all must remove a live fault's rules too"
    );
    inject
        .interrupt()
        .expect("inject still exits 0 when its rules are already gone");
    assert_eq!(lab.broker_chains(), 0);
}

#[test]
fn rules_removed_behind_the_engines_back_come_back() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let scratch = FaultFiles::new("inject-reconcile");
    let fault = scratch.fault(
        "reconciled",
        "  match: {apiKeys: [Produce], clientId: {exact: client-r}}\n  action: {type: Reject}\n  duration: 5m\n",
    );
    let mut inject = start_inject(&lab, &fault);
    let netns = broker_netns(&lab);
    let saved = lab::stdout(Command::new("ip").args(["netns", "exec", &netns, "iptables-save"]))
        .unwrap_or_else(|error| panic!("{error}"));
    let chain = saved
        .lines()
        .find_map(|line| {
            line.strip_prefix(':')
                .filter(|rest| rest.starts_with("KSHOCK-"))
        })
        .and_then(|rest| rest.split(' ').next())
        .expect("the fault's chain")
        .to_owned();
    lab::stdout(Command::new("ip").args(["netns", "exec", &netns, "iptables", "-F", &chain]))
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        python_acked(&lab, "orders", "client-r", 1),
        1,
        "flushed: the fault no longer hits"
    );
    assert!(
        inject.wait_for(Duration::from_secs(10), |lines| lines
            .iter()
            .any(|line| line.contains("reconcile: restored"))),
        "{:?}",
        inject.output()
    );
    assert_eq!(
        python_acked(&lab, "orders", "client-r", 3),
        0,
        "restored: the fault hits again"
    );
    inject.interrupt().expect("inject exits 0");
    assert_eq!(lab.broker_chains(), 0);
}

/// A Reject of Produce from `client_id`, for five minutes.
fn reset_client(
    scratch: &FaultFiles,
    name: &str,
    client_id: &str,
    extra: &str,
) -> std::path::PathBuf {
    scratch.fault(
        name,
        &format!(
            "  match: {{apiKeys: [Produce], clientId: {{exact: {client_id}}}}}\n  action: {{type: Reject}}\n  duration: 5m\n{extra}"
        ),
    )
}

/// Asserts that broker 0's namespace holds no KSHOCK chain for `watch`, looking every 200 ms.
fn stays_without_rules(lab: &Lab, watch: Duration, why: &str) {
    let deadline = Instant::now() + watch;
    while Instant::now() < deadline {
        assert_eq!(lab.broker_chains(), 0, "{why}:\n{}", lab.broker_rules());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_dry_run_or_paused_file_installs_nothing() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    lab.create_topic("orders", 1, 1).expect("topic");
    let netns = broker_netns(&lab);
    // examples/dry-run.yaml as a user runs it: the plan is printed, the kernel is untouched.
    let example = lab::workspace_root().join("examples/dry-run.yaml");
    let printed = lab::stdout(
        Command::new(kafka_shock_bin().expect("kafka-shock"))
            .args(["inject", "-f"])
            .arg(&example)
            .args(["--netns", &netns]),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    assert!(
        printed.contains("dryRun is true") && printed.contains("-j DROP"),
        "{printed}"
    );
    assert!(
        !lab.broker_rules().contains("KSHOCK"),
        "dryRun installed rules"
    );
    // The positive control: the same file, dryRun false, installs its chains.
    let dir = TempDir::new("inject-dry-run-off");
    let live = dir.path().join("live.yaml");
    let text = std::fs::read_to_string(&example).expect("example");
    std::fs::write(&live, text.replace("dryRun: true", "dryRun: false")).expect("write");
    let inject = start_inject(&lab, &live);
    assert_eq!(lab.broker_chains(), 2, "dryRun false installs");
    inject.interrupt().expect("inject exits 0");
    assert_eq!(lab.broker_chains(), 0);

    // A paused file: nothing until the file is no longer paused.
    let scratch = FaultFiles::new("inject-paused");
    let paused = reset_client(&scratch, "paused", "paused-victim", "  paused: true\n");
    let mut inject = Background::start(
        Command::new(kafka_shock_bin().expect("kafka-shock"))
            .args(["inject", "-f"])
            .arg(&paused)
            .args(["--netns", &netns]),
        Stream::Stdout,
        "inject: paused",
        Duration::from_secs(20),
    )
    .expect("inject waits, paused");
    stays_without_rules(
        &lab,
        Duration::from_secs(3),
        "a paused fault installed rules",
    );
    assert!(
        kcat_delivers(&lab, "orders", "paused-victim"),
        "paused: the victim delivers"
    );
    let text = std::fs::read_to_string(&paused).expect("fault");
    std::fs::write(&paused, text.replace("paused: true", "paused: false")).expect("resume");
    assert!(
        inject.wait_for(Duration::from_secs(15), |lines| lines
            .iter()
            .any(|line| line.contains("inject: active"))),
        "not resumed: {:?}",
        inject.output()
    );
    assert!(
        !kcat_delivers(&lab, "orders", "paused-victim"),
        "resumed: the victim is reset"
    );
    inject.interrupt().expect("inject exits 0");
    assert_eq!(lab.broker_chains(), 0);
}

#[test]
fn a_sigkilled_inject_stops_biting_within_its_lease_with_nothing_removing_it() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    lab.create_topic("orders", 1, 1).expect("topic");
    let scratch = FaultFiles::new("inject-lease");
    let fault = reset_client(&scratch, "leased", "lease-victim", "");
    let lease = Duration::from_secs(6);
    let inject = start_inject_in(&fault, &["--netns", &broker_netns(&lab), "--lease", "6s"]);
    assert!(
        !kcat_delivers_within(&lab, "orders", "lease-victim", 1500),
        "the fault bites"
    );
    inject.kill();
    let killed = Instant::now();
    let mut attempts = Vec::new();
    while !kcat_delivers_within(&lab, "orders", "lease-victim", 1500) {
        attempts.push(killed.elapsed());
        assert!(
            killed.elapsed() < lease + Duration::from_secs(5),
            "the victim still fails {:?} after SIGKILL (lease {lease:?})",
            killed.elapsed()
        );
    }
    let recovered = killed.elapsed();
    eprintln!("SIGKILL → the victim delivers again after {recovered:?} (lease {lease:?})");
    assert!(recovered < lease + Duration::from_secs(5), "{recovered:?}");
    assert!(
        !attempts.is_empty(),
        "right after SIGKILL the lease has seconds left: the fault must still bite"
    );
    assert!(
        lab.broker_chains() > 0,
        "the chain is still there: the kernel lease ended the fault"
    );
    let listed = rule_owners(&lab);
    assert!(
        listed.contains("owner pid") && listed.contains("dead") && listed.contains("expired"),
        "{listed}"
    );
    assert!(listed.contains("swept leftovers: KSHOCK-"), "{listed}");
    assert_eq!(lab.broker_chains(), 0);
}

#[test]
fn an_inject_by_pid_ends_cleanly_after_that_process_exited() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    lab.create_topic("orders", 1, 1).expect("topic");
    // A process of the broker's namespace that will exit during the fault.
    let mut holder = Command::new("ip")
        .args(["netns", "exec", &broker_netns(&lab), "sleep", "600"])
        .spawn()
        .expect("sleep in the broker's namespace");
    let pid = holder.id();
    let scratch = FaultFiles::new("inject-pid-exits");
    let fault = scratch.fault(
        "by-pid",
        "  match: {apiKeys: [Produce], clientId: {exact: pid-victim}}\n  action: {type: Reject}\n  duration: 8s\n",
    );
    let mut inject = start_inject_in(&fault, &["--pid", &pid.to_string()]);
    assert!(
        !kcat_delivers_within(&lab, "orders", "pid-victim", 1500),
        "the fault bites"
    );
    holder.kill().expect("kill the process");
    holder.wait().expect("reap it");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} is gone"
    );
    assert!(
        inject.wait_for(Duration::from_secs(30), |lines| lines
            .iter()
            .any(|line| line.contains("nothing of this fault is left"))),
        "{:?}",
        inject.output()
    );
    assert_eq!(lab.broker_chains(), 0);
    assert!(kcat_delivers(&lab, "orders", "pid-victim"));
}

#[test]
fn a_ctrl_c_right_after_start_leaves_nothing_every_time() {
    let _serial = lab::exclusive();
    let lab = Lab::up().expect("lab up");
    clean_start(&lab);
    let scratch = FaultFiles::new("inject-ctrl-c");
    let fault = reset_client(&scratch, "interrupted", "ctrl-c-victim", "");
    let (seed, delays) = lab::random_delays(20, Duration::from_millis(300));
    eprintln!("delays from seed {seed}: {delays:?}");
    let mut installed = 0;
    for (round, delay) in delays.iter().enumerate() {
        let mut child = Command::new(kafka_shock_bin().expect("kafka-shock"))
            .args(["inject", "-f"])
            .arg(&fault)
            .args(["--netns", &broker_netns(&lab)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start inject");
        std::thread::sleep(*delay);
        lab::run(Command::new("kill").args(["-INT", &child.id().to_string()])).expect("SIGINT");
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("round {round}: inject did not exit within 30 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("output");
        let said = String::from_utf8_lossy(&output.stdout);
        // Before its handlers exist the process dies of the signal, having changed nothing.
        let died_of_it = std::os::unix::process::ExitStatusExt::signal(&output.status) == Some(2);
        assert!(
            output.status.success() || died_of_it,
            "round {round} ({delay:?}): {:?}\n{said}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        if said.contains(" in chain KSHOCK-") {
            installed += 1;
        }
        assert_eq!(
            lab.broker_chains(),
            0,
            "round {round}: Ctrl-C after {delay:?} left rules behind:\n{said}"
        );
    }
    eprintln!("{installed} of 20 runs had installed their rules when interrupted");
    assert!(
        installed > 0,
        "no run got as far as installing: the loop proves nothing"
    );
}

#[test]
fn sniff_refuses_an_api_name_that_cannot_match() {
    let lab = Lab::up().expect("lab up");
    let sniff = |api: &str| {
        Command::new(kafka_shock_bin().expect("kafka-shock"))
            .args(["sniff", "--netns", &broker_netns(&lab), "--duration", "1s"])
            .args(["--api", api])
            .output()
            .expect("run sniff")
    };
    let refused = sniff("Prodcue");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("\"Prodcue\" is not a Kafka API name (did you mean Produce?)"),
        "{said}"
    );
    assert!(
        said.contains("Produce, Fetch, ListOffsets, Metadata"),
        "{said}"
    );
    let accepted = sniff("produce");
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
}
