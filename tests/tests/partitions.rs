//! Faults that work where requests cannot be read or are not client traffic, on the
//! three-broker lab (replication listener :9091, KRaft controller listener :9093, a TLS
//! listener :9094 on broker 0), judged with Kafka's own tools:
//! - a TLS port is reported (the CLI's line, the fault's RequestsVisible=False reason TLS),
//!   and a connection-level Reject there resets a TLS client;
//! - resetting the followers' KRaft Fetch to the active controller for 20 s moves the
//!   controller (`kafka-metadata-quorum describe --status`), and clients work afterwards;
//! - a `sourceSelector` partition on the replication listener takes the isolated broker out
//!   of the ISR of the partitions it follows (`kafka-topics --describe`), and it rejoins after.

use std::process::Command;
use std::time::Duration;

use lab::{Background, FaultFiles, Lab, LabError, Product, Stream, kafka_shock_bin, wait_for};

const KAFKA_CLASS: &str = "kafka-class";

/// The three-broker lab, the chart, the operator and one agent per node.
struct Stack {
    lab: Lab,
    _operator: Background,
    _agents: Vec<Background>,
}

impl Stack {
    fn up() -> Stack {
        let lab = Lab::up_with(3).expect("three-broker lab up");
        let product = Product::install(&lab).expect("chart installed");
        let operator = product.start_operator().expect("operator starts");
        let agents = lab
            .nodes()
            .iter()
            .map(|node| product.start_agent(node).expect("agent starts"))
            .collect();
        Stack {
            lab,
            _operator: operator,
            _agents: agents,
        }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        lab::stdout(self.lab.kubectl().args(args)).unwrap_or_else(|error| panic!("{error}"))
    }

    fn apply(&self, manifest: &str) {
        lab::stdout_with_input(self.lab.kubectl().args(["apply", "-f", "-"]), manifest)
            .unwrap_or_else(|error| panic!("{error}"));
    }

    fn delete(&self, fault: &str) {
        self.kubectl(&["delete", "-n", "kafka", "kf", fault, "--timeout=60s"]);
    }
}

/// The KafkaFault `name` on the brokers `brokers` (ids), with the spec lines `spec`.
fn fault_on(name: &str, brokers: &[&str], spec: &str) -> String {
    format!(
        "apiVersion: kafkashock.io/v1alpha1\nkind: KafkaFault\nmetadata: {{name: {name}, namespace: kafka}}\nspec:\n  selector: {{matchExpressions: [{{key: apps.kubernetes.io/pod-index, operator: In, values: [{}]}}]}}\n{spec}",
        brokers.join(", ")
    )
}

/// Runs `kafka-shock inject` of `file` in `netns`, until it says it is active.
fn inject(file: &std::path::Path, netns: &str) -> Background {
    Background::start(
        Command::new(kafka_shock_bin().expect("kafka-shock"))
            .args(["inject", "-f"])
            .arg(file)
            .args(["--netns", netns]),
        Stream::Stdout,
        "inject: active",
        Duration::from_secs(20),
    )
    .expect("inject becomes active")
}

/// kcat's metadata request over TLS to the TLS listener: whether it succeeded, and what it
/// printed (its output, or its errors).
fn tls_metadata(lab: &Lab) -> (bool, String) {
    let ran = lab::stdout(
        lab.client("kcat").args([
            "-b",
            lab.setting("KSHOCK_LAB_TLS_BOOTSTRAP")
                .expect("TLS listener"),
            "-X",
            "security.protocol=ssl",
            "-X",
            &format!(
                "ssl.ca.location={}",
                lab.setting("KSHOCK_LAB_TLS_CERT").expect("TLS certificate")
            ),
            "-L",
            "-m",
            "4",
        ]),
    );
    match ran {
        Ok(stdout) => (true, stdout),
        Err(LabError::CommandFailed { stderr, .. }) => (false, stderr),
        Err(error) => panic!("kcat: {error}"),
    }
}

#[test]
fn a_tls_port_is_reported_and_a_connection_fault_still_resets_tls_clients() {
    let _shared = lab::exclusive();
    let stack = Stack::up();
    let lab = &stack.lab;
    let (works, text) = tls_metadata(lab);
    assert!(
        works && text.contains("ssl://"),
        "control: TLS works: {text}"
    );

    // A request-level fault on the TLS port: the CLI says what it cannot see.
    let files = FaultFiles::new("partitions-tls");
    let request_level = files.fault(
        "metadata-over-tls",
        "  ports: [9094]\n  match: {apiKeys: [Metadata]}\n  action: {type: Reject}\n",
    );
    let mut cli = inject(&request_level, "ksl-broker-0");
    let (works, text) = tls_metadata(lab);
    assert!(
        works,
        "a request-level fault cannot hit TLS requests: {text}"
    );
    assert!(
        cli.wait_for(Duration::from_secs(10), |lines| lines
            .iter()
            .any(|l| l.contains("port 9094 carries TLS")
                && l.contains("connection-level faults still work"))),
        "no TLS line: {:?}",
        cli.output()
    );
    cli.interrupt().expect("inject exits 0");

    // The same through the operator: the fault reports RequestsVisible=False, reason TLS.
    stack.apply(&fault_on(
        "metadata-over-tls",
        &["\"0\""],
        "  ports: [9094]\n  match: {apiKeys: [Metadata]}\n  action: {type: Reject}\n",
    ));
    stack.kubectl(&[
        "wait",
        "-n",
        "kafka",
        "kf/metadata-over-tls",
        "--for=condition=Injected",
        "--timeout=60s",
    ]);
    let yaml = wait_for(
        Duration::from_secs(30),
        "RequestsVisible=False on the fault",
        || {
            let _ = tls_metadata(lab);
            let yaml = stack.kubectl(&[
                "get",
                "kf",
                "-n",
                "kafka",
                "metadata-over-tls",
                "-o",
                "yaml",
            ]);
            (yaml.contains("type: RequestsVisible") && yaml.contains("reason: TLS")).then_some(yaml)
        },
    );
    assert!(
        yaml.contains("kafka-broker-0: port 9094 carries TLS"),
        "{yaml}"
    );
    stack.delete("metadata-over-tls");

    // A connection-level fault (an empty match) resets the TLS client.
    let connection_level = files.fault("reset-tls", "  ports: [9094]\n  action: {type: Reject}\n");
    let cli = inject(&connection_level, "ksl-broker-0");
    let (works, text) = tls_metadata(lab);
    assert!(!works, "a connection-level Reject lets TLS through: {text}");
    // librdkafka's words for a connection reset in the middle of its TLS handshake.
    assert!(
        text.contains("Disconnected") && text.contains("SSL_HANDSHAKE"),
        "the TLS client is not reset during its handshake: {text}"
    );
    cli.interrupt().expect("inject exits 0");
    let (works, text) = tls_metadata(lab);
    assert!(works, "TLS works again after the fault: {text}");
}

/// The active controller's node id, as `kafka-metadata-quorum describe --status` says.
fn quorum_leader(lab: &Lab) -> Option<String> {
    let status = lab::stdout(lab.client(KAFKA_CLASS).args([
        "org.apache.kafka.tools.MetadataQuorumCommand",
        "--bootstrap-server",
        lab.bootstrap(),
        "describe",
        "--status",
    ]))
    .ok()?;
    let line = status.lines().find(|l| l.starts_with("LeaderId:"))?;
    Some(line.trim_start_matches("LeaderId:").trim().to_owned())
}

/// Whether 5 records produced with acks=all to `topic` are consumed back.
fn round_trip(lab: &Lab, topic: &str, tag: &str) -> bool {
    let input: String = (0..5).map(|i| format!("{tag}-{i}\n")).collect();
    let produced = lab::stdout_with_input(
        lab.client("kcat").args([
            "-b",
            lab.bootstrap(),
            "-t",
            topic,
            "-P",
            "-X",
            "acks=all",
            "-X",
            "message.timeout.ms=15000",
        ]),
        &input,
    );
    let consumed = lab::stdout(lab.client("kcat").args([
        "-b",
        lab.bootstrap(),
        "-t",
        topic,
        "-C",
        "-o",
        "beginning",
        "-e",
        "-q",
        "-m",
        "15",
    ]));
    produced.is_ok()
        && consumed.is_ok_and(|out| out.lines().filter(|l| l.starts_with(tag)).count() == 5)
}

#[test]
fn resetting_the_followers_kraft_fetch_moves_the_active_controller() {
    let _shared = lab::exclusive();
    let lab = Lab::up_with(3).expect("three-broker lab up");
    lab.create_topic("quorum-probe", 1, 3).expect("topic");
    assert!(
        round_trip(&lab, "quorum-probe", "before"),
        "control: clients work"
    );
    let leader = wait_for(Duration::from_secs(30), "a quorum leader", || {
        quorum_leader(&lab)
    });
    let id: usize = leader.parse().expect("a node id");
    let followers: Vec<String> = lab
        .broker_addrs()
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != id)
        .map(|(_, addr)| format!("{}/32", addr.split(':').next().expect("broker ip")))
        .collect();
    let port = lab
        .setting("KSHOCK_LAB_CONTROLLER_PORT")
        .expect("controller port");

    let files = FaultFiles::new("partitions-quorum");
    let fault = files.fault(
        "reset-quorum-fetch",
        &format!(
            "  ports: [{port}]\n  match: {{apiKeys: [Fetch], sourceCIDRs: [{}]}}\n  action: {{type: Reject}}\n  duration: 20s\n",
            followers.join(", ")
        ),
    );
    let mut cli = inject(&fault, &format!("ksl-broker-{id}"));
    let moved = wait_for(Duration::from_secs(40), "another active controller", || {
        quorum_leader(&lab).filter(|now| *now != leader)
    });
    assert!(
        cli.wait_for(Duration::from_secs(40), |lines| lines
            .iter()
            .any(|l| l.contains("inject: removed"))),
        "the fault did not end after its 20 s: {:?}",
        cli.output()
    );
    assert!(
        cli.output()
            .iter()
            .any(|l| l.starts_with("match:") && l.contains("Fetch")),
        "no follower Fetch was hit: {:?}",
        cli.output()
    );
    drop(cli);
    eprintln!("active controller moved from {leader} to {moved}");
    assert!(
        wait_for(
            Duration::from_secs(60),
            "clients working after the fault",
            || { round_trip(&lab, "quorum-probe", "after").then_some(true) }
        ),
        "clients work after the fault"
    );
}

/// `kafka-topics --describe` of `topic`: (partition, leader, ISR) per partition.
fn isr(lab: &Lab, topic: &str) -> Vec<(String, String, Vec<String>)> {
    let described = lab::stdout(lab.client(KAFKA_CLASS).args([
        "org.apache.kafka.tools.TopicCommand",
        "--bootstrap-server",
        lab.bootstrap(),
        "--describe",
        "--topic",
        topic,
    ]))
    .unwrap_or_default();
    described
        .lines()
        .filter(|l| l.contains("Partition:"))
        .filter_map(|line| {
            let field = |name: &str| {
                let rest = line.split(&format!("{name}: ")).nth(1)?;
                Some(rest.split_whitespace().next().unwrap_or("").to_owned())
            };
            let isr = field("Isr")?.split(',').map(str::to_owned).collect();
            Some((field("Partition")?, field("Leader")?, isr))
        })
        .collect()
}

/// One record to each of the 3 partitions of `topic`, acknowledged by the leader alone.
fn produce_to_every_partition(lab: &Lab, topic: &str) {
    for partition in ["0", "1", "2"] {
        let _ = lab::stdout_with_input(
            lab.client("kcat").args([
                "-b",
                lab.bootstrap(),
                "-t",
                topic,
                "-p",
                partition,
                "-P",
                "-X",
                "acks=1",
                "-X",
                "message.timeout.ms=5000",
            ]),
            "tick\n",
        );
    }
}

#[test]
fn a_source_selector_partition_takes_the_isolated_broker_out_of_the_isr() {
    let _shared = lab::exclusive();
    let stack = Stack::up();
    let lab = &stack.lab;
    lab.create_topic("replicated-isr", 3, 3).expect("topic");
    let all_in_sync = |rows: &[(String, String, Vec<String>)]| {
        rows.len() == 3 && rows.iter().all(|(_, _, isr)| isr.len() == 3)
    };
    wait_for(Duration::from_secs(30), "every replica in sync", || {
        all_in_sync(&isr(lab, "replicated-isr")).then_some(())
    });
    let port = lab
        .setting("KSHOCK_LAB_REPLICATION_PORT")
        .expect("replication port");

    // Brokers 1 and 2 drop what broker 0 sends to their replication listener: broker 0 can no
    // longer fetch as a follower.
    stack.apply(&fault_on(
        "isolate-broker-0",
        &["\"1\"", "\"2\""],
        &format!(
            "  ports: [{port}]\n  match:\n    sourceSelector: {{matchLabels: {{apps.kubernetes.io/pod-index: \"0\"}}}}\n  action: {{type: Reject}}\n"
        ),
    ));
    stack.kubectl(&[
        "wait",
        "-n",
        "kafka",
        "kf/isolate-broker-0",
        "--for=condition=Injected",
        "--timeout=60s",
    ]);
    let ips = stack.kubectl(&[
        "get",
        "kfi",
        "-n",
        "kafka",
        "-o",
        "jsonpath={.items[*].spec.sourceIPs}",
    ]);
    assert!(
        ips.contains("10.77.0.10") && !ips.contains("10.77.0.11"),
        "{ips}"
    );
    // A follower that is not behind stays in sync however long it is cut off: records keep
    // arriving, so broker 0 falls behind on the partitions it follows.
    let during = wait_for(
        Duration::from_secs(60),
        "broker 0 out of the ISRs it follows",
        || {
            produce_to_every_partition(lab, "replicated-isr");
            let rows = isr(lab, "replicated-isr");
            let followed: Vec<_> = rows.iter().filter(|(_, leader, _)| leader != "0").collect();
            (!followed.is_empty()
                && followed
                    .iter()
                    .all(|(_, _, isr)| !isr.contains(&"0".into())))
            .then_some(rows)
        },
    );
    // Control: the other followers stay in sync; only broker 0 is cut off.
    for (partition, leader, isr) in &during {
        let others: Vec<&str> = ["0", "1", "2"]
            .into_iter()
            .filter(|b| *b != "0" && b != leader)
            .collect();
        assert!(
            others.iter().all(|b| isr.contains(&(*b).to_owned())),
            "partition {partition} (leader {leader}) lost another follower: {isr:?}"
        );
    }
    stack.delete("isolate-broker-0");
    wait_for(
        Duration::from_secs(60),
        "broker 0 back in every ISR",
        || all_in_sync(&isr(lab, "replicated-isr")).then_some(()),
    );
}
