//! KafkaFault end to end on the lab, with kafka-shock as a cluster runs it: the chart installed
//! with Helm, the operator Deployment and the agent DaemonSet running as pods under the lab's
//! kubelets from images built from this run's release binaries, real Kafka broker pods, real
//! clients, faults applied and removed with kubectl. The agent pod finds the broker pod's
//! network namespace by the pod's UID in the kubelet's cgroups. Also the recovery rules of
//! docs/architecture.md: an agent hung during a delete, the operator down at expiry, orphans
//! swept when a crashed agent's container is restarted, a hung agent's fault ending with its
//! kernel lease, an agent interrupted right after start leaving nothing (the agent as a host
//! process here, to signal it at chosen moments), and faults that are misspelt or dryRun never
//! reaching a rule.

use std::process::Command;
use std::time::{Duration, Instant};

use lab::stack::{BYSTANDER, Stack, TOPIC, VICTIM, reset_fault};
use lab::{Background, Stream, free_loopback_addr};

#[test]
fn apply_hits_one_client_and_delete_recovers_it() {
    let _serial = lab::exclusive();
    let stack = Stack::up(1);
    assert!(
        stack.delivers(TOPIC, VICTIM),
        "the victim works before the fault"
    );

    let applied = Instant::now();
    stack.apply(&reset_fault("reset-checkout", ""));
    stack.wait("kf/reset-checkout", "condition=Injected", "60s");
    println!("apply → Injected in {:?}", applied.elapsed());
    assert!(
        stack.chains() > 0,
        "Injected, so rules are in the namespace"
    );
    assert!(!stack.delivers(TOPIC, VICTIM), "the victim is reset");
    assert!(stack.delivers(TOPIC, BYSTANDER), "another client is not");
    assert!(stack.delivers("payments", VICTIM), "another topic is not");

    // The agent pod on the broker's node found the broker pod's namespace by its UID.
    assert_eq!(
        stack.found_by(&stack.broker_node(0), "reset-checkout-kafka-broker-0"),
        "pod UID in cgroup"
    );

    let table = stack.kubectl(&["get", "kf", "-n", "kafka"]);
    for column in [
        "PHASE",
        "INJECTED",
        "MATCHED",
        "AGE",
        "reset-checkout",
        "Active",
    ] {
        assert!(
            table.contains(column),
            "kubectl get kf lacks {column}:\n{table}"
        );
    }
    let injections = stack.kubectl(&["get", "kfi", "-n", "kafka", "-o", "wide"]);
    assert!(injections.contains("kafka-broker-0"), "{injections}");
    // The agent counts the victim's requests as matched, and the operator rolls them up.
    stack.wait_status_count("reset-checkout", "{.status.matchedRequests}");

    let deleted = Instant::now();
    stack.delete_fault("reset-checkout");
    stack.wait("kf/reset-checkout", "delete", "60s");
    println!("delete → gone in {:?}", deleted.elapsed());
    assert_eq!(stack.chains(), 0, "no rule outlives its fault");
    assert!(!stack.exists("kfi/reset-checkout-kafka-broker-0"));
    assert!(stack.delivers(TOPIC, VICTIM), "the victim works again");
}

#[test]
fn a_proxy_fault_answers_a_kafka_error_through_the_agent_and_reports_it() {
    let _serial = lab::exclusive();
    let stack = Stack::up(1);
    let manifest = format!(
        "apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {{name: proxy-checkout, namespace: kafka}}
spec:
  selector: {{matchLabels: {{app.kubernetes.io/name: kafka}}}}
  match: {{apiKeys: [Produce], topics: [{TOPIC}], clientId: {{exact: {VICTIM}}}}}
  action: {{type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}}
"
    );
    stack.apply(&manifest);
    stack.wait("kf/proxy-checkout", "condition=Injected", "60s");
    let rules = stack.lab.broker_rules();
    assert!(rules.contains("REDIRECT --to-ports"), "{rules}");
    let hit = stack.lab.java_report(&[
        "api",
        "Produce",
        "--topic",
        TOPIC,
        "--client-id",
        VICTIM,
        "--expect",
        "NOT_LEADER_OR_FOLLOWER",
    ]);
    assert_eq!(hit.error(), "NOT_LEADER_OR_FOLLOWER", "{}", hit.result());
    assert!(
        stack.delivers(TOPIC, BYSTANDER),
        "another client is not hit"
    );
    // The agent reports what the proxy did, and the operator sums it.
    stack.wait_status_count("proxy-checkout", "{.status.proxy.erroredRequests}");
    stack.delete_fault("proxy-checkout");
    stack.wait("kf/proxy-checkout", "delete", "60s");
    let rules = stack.lab.broker_rules();
    assert!(
        !rules.contains("KSHOCK") && !rules.contains("REDIRECT"),
        "{rules}"
    );
    assert!(
        stack.delivers(TOPIC, VICTIM),
        "the victim works again, directly"
    );
}

#[test]
fn pause_resume_and_dry_run() {
    let _serial = lab::exclusive();
    let stack = Stack::up(1);
    stack.apply(&reset_fault("paused-reset", ""));
    stack.wait("kf/paused-reset", "condition=Injected", "60s");

    stack.set_paused("paused-reset", true);
    stack.wait("kf/paused-reset", "condition=Paused", "30s");
    stack.wait_for_chains(0, Duration::from_secs(15));
    assert!(stack.delivers(TOPIC, VICTIM), "paused: the victim works");
    assert!(
        stack.exists("kfi/paused-reset-kafka-broker-0"),
        "paused keeps the injection"
    );

    stack.set_paused("paused-reset", false);
    stack.wait("kf/paused-reset", "condition=Injected", "30s");
    assert!(stack.chains() > 0);
    assert!(
        !stack.delivers(TOPIC, VICTIM),
        "resumed: the victim is reset again"
    );
    stack.delete_fault("paused-reset");
    stack.wait("kf/paused-reset", "delete", "60s");

    stack.apply(&reset_fault("dry-reset", "  dryRun: true\n"));
    stack.wait("kf/dry-reset", "condition=Selected", "30s");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stack.chains(), 0, "dryRun installs nothing");
    assert!(
        !stack.exists("kfi/dry-reset-kafka-broker-0"),
        "dryRun dispatches nothing"
    );
    assert!(stack.delivers(TOPIC, VICTIM), "dryRun changes nothing");
    stack.delete_fault("dry-reset");
    stack.wait("kf/dry-reset", "delete", "30s");

    // A misspelt field would make a wider fault (every Produce to orders); kubectl validates
    // strictly by default and the server refuses it, naming the field.
    let misspelt = reset_fault("misspelt-reset", "").replace("clientId:", "clientID:");
    let refused = lab::stdout_with_input(stack.lab.kubectl().args(["apply", "-f", "-"]), &misspelt)
        .expect_err("a misspelt fault must be refused");
    assert!(
        refused
            .to_string()
            .contains("unknown field \"spec.match.clientID\""),
        "{refused}"
    );
    assert!(!stack.exists("kf/misspelt-reset"));
    assert_eq!(stack.chains(), 0, "a refused fault installs nothing");
}

/// Scales the operator Deployment to `replicas` and waits until that many operator pods run.
fn scale_operator(stack: &Stack, replicas: u32) {
    let deployment = format!("deployment/{}", lab::Component::Operator.object_name());
    stack.kubectl(&[
        "scale",
        "-n",
        lab::NAMESPACE,
        &deployment,
        &format!("--replicas={replicas}"),
    ]);
    let selector = format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/component=operator",
        lab::RELEASE
    );
    if replicas == 0 {
        stack.kubectl(&[
            "wait",
            "-n",
            lab::NAMESPACE,
            "--for=delete",
            "pod",
            "-l",
            &selector,
            "--timeout=60s",
        ]);
    } else {
        stack.kubectl(&[
            "rollout",
            "status",
            "-n",
            lab::NAMESPACE,
            &deployment,
            "--timeout=60s",
        ]);
    }
}

#[test]
fn a_fault_expires_on_time_with_the_operator_down() {
    let _serial = lab::exclusive();
    let stack = Stack::up(1);
    stack.apply(&reset_fault("timed-reset", "  duration: 15s\n"));
    stack.wait("kf/timed-reset", "condition=Injected", "60s");
    let expire_time = stack.injection("timed-reset", "kafka-broker-0", "{.spec.expireTime}");
    scale_operator(&stack, 0);
    assert!(!stack.delivers(TOPIC, VICTIM), "active until expiry");

    // The agent alone ends it: rules gone within 2 s of expireTime.
    stack.wait_for_chains(0, Duration::from_secs(25));
    let removed_at = now_unix();
    let expires_at = unix_of(&expire_time);
    assert!(
        removed_at <= expires_at + 2,
        "rules removed at {removed_at}, expireTime {expire_time} ({expires_at})"
    );
    assert!(stack.delivers(TOPIC, VICTIM), "expired: the victim works");
    // The agent reports the expiry itself (its status write follows the rules' removal).
    stack.wait(
        "kfi/timed-reset-kafka-broker-0",
        "jsonpath={.status.phase}=Recovered",
        "30s",
    );

    scale_operator(&stack, 1);
    stack.wait(
        "kf/timed-reset",
        "jsonpath={.status.phase}=Completed",
        "60s",
    );
}

#[test]
fn a_delete_while_the_agent_hangs_waits_for_the_agent() {
    let _serial = lab::exclusive();
    let stack = Stack::up(1);
    stack.apply(&reset_fault("agent-hung", ""));
    stack.wait("kf/agent-hung", "condition=Injected", "60s");
    let frozen = stack.freeze_agent(&stack.broker_node(0));

    stack.delete_fault("agent-hung");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        stack.exists("kf/agent-hung"),
        "the fault waits for its rules to go"
    );
    assert!(stack.chains() > 0, "a hung agent leaves its rules");
    assert!(!stack.delivers(TOPIC, VICTIM), "and they still hold");

    frozen.thaw();
    stack.wait("kf/agent-hung", "delete", "60s");
    assert_eq!(stack.chains(), 0, "the agent, going on, removed them");
    assert!(stack.delivers(TOPIC, VICTIM));
}

#[test]
fn a_crashed_agent_is_restarted_by_its_kubelet_and_sweeps_orphans() {
    let _serial = lab::exclusive();
    let stack = Stack::up(1);
    let node = stack.broker_node(0);
    stack.apply(&reset_fault("orphaned", ""));
    stack.wait("kf/orphaned", "condition=Injected", "60s");
    let restarts = stack.agent_restarts(&node);
    let frozen = stack.freeze_agent(&node);
    // Gone from the API while no agent could act: its rules are orphans. (Only the operator
    // may change an injection but for its status and finalizers, so it is its account that
    // lets go of this one here.)
    stack.delete_fault("orphaned");
    lab::stdout(
        stack
            .product
            .kubectl_as(lab::Component::Operator)
            .expect("the operator's kubeconfig")
            .args(["patch", "kfi", "-n", "kafka", "orphaned-kafka-broker-0"])
            .args(["--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    stack.wait("kf/orphaned", "delete", "60s");
    assert!(
        stack.chains() > 0,
        "the orphan's rules are still in the kernel"
    );

    // SIGKILL: no cleanup. The kubelet starts the container again, and the new agent sweeps.
    frozen.kill();
    stack.wait_for_chains(0, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.agent_restarts(&node) != restarts + 1 {
        assert!(
            Instant::now() < deadline,
            "the kubelet reports no restart of the agent container"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(stack.agent_log(&node).contains("swept orphan chains"));
    assert!(stack.delivers(TOPIC, VICTIM));
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Seconds since the epoch of an RFC 3339 UTC time as the operator writes it
/// (`YYYY-MM-DDTHH:MM:SSZ`).
fn unix_of(text: &str) -> u64 {
    let date = lab::stdout(Command::new("date").args(["-u", "-d", text, "+%s"]))
        .unwrap_or_else(|error| panic!("{error}"));
    date.trim().parse().expect("epoch seconds")
}

#[test]
fn the_ci_chaos_stage_passes_when_the_fault_bites_and_leaves_nothing() {
    let _serial = lab::exclusive();
    let stack = Stack::up(1);
    let stage = lab::workspace_root().join("examples/ci-chaos-stage.sh");
    let fault = lab::workspace_root().join("examples/reset-producer.yaml");
    let probe = |client_id: &str| {
        format!(
            "echo probe | ip netns exec {} kcat -P -b {} -t {TOPIC} -X client.id={client_id} -X message.timeout.ms=3000",
            stack.lab.client_netns(),
            stack.lab.bootstrap()
        )
    };
    let run_stage = |expect_failure: bool, client_id: &str| {
        let mut command = stack.lab.host("bash");
        command.arg(&stage);
        if expect_failure {
            command.arg("--expect-failure");
        }
        command
            .arg(&fault)
            .args(["--", "sh", "-c", &probe(client_id)])
            .env("KUBECONFIG", stack.lab.kubeconfig())
            .output()
            .expect("the stage runs")
    };

    // checkout-svc must fail while the fault is active: the stage passes.
    let bites = run_stage(true, VICTIM);
    assert!(
        bites.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&bites.stdout),
        String::from_utf8_lossy(&bites.stderr)
    );
    assert!(
        !stack.exists("kf/reset-orders-producer"),
        "the stage removed its fault"
    );
    assert_eq!(stack.chains(), 0, "and its rules");

    // A stage claiming the victim still delivers fails, and cleans up just the same.
    let wrong = run_stage(false, VICTIM);
    assert_eq!(
        wrong.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(!stack.exists("kf/reset-orders-producer"));
    assert_eq!(stack.chains(), 0);
    assert!(stack.delivers(TOPIC, VICTIM));
}

#[test]
fn a_hung_agents_fault_stops_biting_within_its_lease_once_deleted() {
    let _serial = lab::exclusive();
    // The agents with a short lease (the next Stack::up puts the chart's default back).
    let lease = Duration::from_secs(6);
    let stack = Stack::up_with(1, &["agent.lease=6s"]);
    let node = stack.broker_node(0);
    stack.apply(&reset_fault("leased-reset", ""));
    stack.wait("kf/leased-reset", "condition=Injected", "60s");
    assert!(
        !stack.delivers_within(TOPIC, VICTIM, 1500),
        "the fault bites"
    );

    // A hung agent renews no lease (its liveness probe restarts it only after 30 s).
    let frozen = stack.freeze_agent(&node);
    let hung = Instant::now();
    stack.delete_fault("leased-reset");
    let mut attempts = 0;
    while !stack.delivers_within(TOPIC, VICTIM, 1500) {
        attempts += 1;
        assert!(
            hung.elapsed() < lease + Duration::from_secs(5),
            "the victim still fails {:?} after the agent hung",
            hung.elapsed()
        );
    }
    let recovered = hung.elapsed();
    eprintln!("agent SIGSTOP → the victim delivers again after {recovered:?} (lease {lease:?})");
    assert!(
        attempts > 0,
        "right after the agent hung the fault must still bite"
    );
    assert!(
        stack.exists("kf/leased-reset"),
        "the deleted fault waits for its agent"
    );
    assert!(
        stack.chains() > 0,
        "nothing removed the chains: the lease ended the fault"
    );
    let listed = stack.rules(0);
    assert!(
        listed.contains(&format!("agent node {node}")) && listed.contains("expired"),
        "{listed}"
    );

    // The agent goes on and completes the deletion.
    frozen.thaw();
    stack.wait("kf/leased-reset", "delete", "60s");
    assert_eq!(stack.chains(), 0);
}

#[test]
fn an_agent_interrupted_right_after_start_leaves_nothing() {
    let _serial = lab::exclusive();
    // The operator and broker 0's agent as host processes, signalled at chosen moments.
    let stack = Stack::installed(1);
    let node = stack.broker_node(0);
    let _operator = stack.product.start_operator().expect("operator starts");
    let first = stack.product.start_agent(&node).expect("agent starts");
    stack.apply(&reset_fault("interrupted-agent", ""));
    stack.wait("kf/interrupted-agent", "condition=Injected", "60s");
    first.interrupt().expect("the agent stops");
    assert_eq!(stack.chains(), 0, "SIGINT removes the agent's rules");

    let (seed, delays) = lab::random_delays(10, Duration::from_millis(2500));
    eprintln!("delays from seed {seed}: {delays:?}");
    let mut enforced = 0;
    for (round, delay) in delays.iter().enumerate() {
        let addr = free_loopback_addr().expect("a free port");
        let mut command = stack
            .product
            .agent_command::<&str>(&node, addr, &[])
            .expect("agent command");
        let agent = Background::start(&mut command, Stream::Stderr, "", Duration::ZERO)
            .expect("agent starts");
        std::thread::sleep(*delay);
        // Before its handlers exist the agent dies of the signal, having changed nothing.
        let said = match agent.interrupt_within(Some(Duration::from_secs(30))) {
            Ok(said) => said,
            Err(lab::LabError::CommandFailed { status, stderr, .. })
                if std::os::unix::process::ExitStatusExt::signal(&status) == Some(2) =>
            {
                stderr
            }
            Err(error) => panic!("round {round} ({delay:?}): {error}"),
        };
        if said.contains(" in chain KSHOCK-") {
            enforced += 1;
        }
        assert_eq!(
            stack.chains(),
            0,
            "round {round}: SIGINT after {delay:?} left rules behind:\n{said}"
        );
    }
    eprintln!("{enforced} of 10 agents had installed the fault's rules when interrupted");
    assert!(
        enforced > 0,
        "no agent got as far as enforcing: the loop proves nothing"
    );
    let _agent = stack.product.start_agent(&node).expect("agent starts");
    stack.wait_for_chains(2, Duration::from_secs(20));
    stack.delete_fault("interrupted-agent");
    stack.wait("kf/interrupted-agent", "delete", "60s");
    assert_eq!(stack.chains(), 0);
}
