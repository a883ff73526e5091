//! KafkaFault end to end on the lab: the chart's CRDs and RBAC installed with Helm, the operator
//! and one agent per lab node running with their own ServiceAccounts' tokens (not as admin), real
//! Kafka, real clients, faults applied and removed with kubectl. Also the recovery rules of
//! docs/architecture.md: an agent down during a delete, an operator down at expiry, a broker pod
//! recreated in a new network namespace, orphans swept at agent start, a dead agent's fault
//! ending with its kernel lease, an agent interrupted right after start leaving nothing, and
//! faults that are misspelt or dryRun never reaching a rule.

use std::process::Command;
use std::time::{Duration, Instant};

use lab::{
    Background, Component, Lab, Product, Stream, free_loopback_addr, kafka_shock_bin, lab_script,
    wait_for,
};

const TOPIC: &str = "orders";
const VICTIM: &str = "checkout-svc";
const BYSTANDER: &str = "audit-svc";

/// The lab, the chart, the operator and one agent per node.
struct Stack {
    lab: Lab,
    product: Product,
    operator: Option<Background>,
    agents: Vec<(String, Option<Background>)>,
}

impl Stack {
    fn up() -> Stack {
        let lab = Lab::up().expect("lab up");
        lab.create_topic(TOPIC, 1, 1).expect("topic");
        lab.create_topic("payments", 1, 1).expect("topic");
        let product = Product::install(&lab).expect("chart installed");
        let mut stack = Stack {
            operator: None,
            agents: lab.nodes().into_iter().map(|node| (node, None)).collect(),
            lab,
            product,
        };
        stack.start_operator();
        for index in 0..stack.agents.len() {
            stack.start_agent(index);
        }
        stack
    }

    fn start_operator(&mut self) {
        self.operator = Some(self.product.start_operator().expect("operator starts"));
    }

    fn start_agent(&mut self, index: usize) {
        self.start_agent_with(index, &[]);
    }

    fn start_agent_with(&mut self, index: usize, flags: &[&str]) {
        let node = self.agents[index].0.clone();
        let addr = free_loopback_addr().expect("a free port");
        self.agents[index].1 = Some(
            self.product
                .start_agent_with(&node, addr, flags)
                .expect("agent starts"),
        );
    }

    /// The agent of broker 0's node.
    fn broker_agent(&self) -> usize {
        let node = self.kubectl(&[
            "get",
            "pod",
            "-n",
            "kafka",
            "kafka-broker-0",
            "-o",
            "jsonpath={.spec.nodeName}",
        ]);
        self.agents
            .iter()
            .position(|(name, _)| *name == node)
            .unwrap_or_else(|| panic!("no agent for node {node}"))
    }

    /// Applies [`reset_fault`] `name`, waits until it is Injected, then SIGKILLs the agent of
    /// broker 0's node (its rules stay); returns that agent's index for [`Stack::start_agent`].
    fn inject_then_kill_broker_agent(&mut self, name: &str) -> usize {
        self.apply(&reset_fault(name, ""));
        self.wait(&format!("kf/{name}"), "condition=Injected", "60s");
        let agent = self.broker_agent();
        self.agents[agent].1.take().expect("agent").kill();
        agent
    }

    fn kubectl(&self, args: &[&str]) -> String {
        lab::stdout(self.lab.kubectl().args(args)).unwrap_or_else(|error| panic!("{error}"))
    }

    fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        lab::stdout(self.lab.kubectl().args(args)).map_err(|error| error.to_string())
    }

    fn apply(&self, manifest: &str) {
        lab::stdout_with_input(self.lab.kubectl().args(["apply", "-f", "-"]), manifest)
            .unwrap_or_else(|error| panic!("{error}"));
    }

    fn wait(&self, what: &str, condition: &str, timeout: &str) {
        self.kubectl(&[
            "wait",
            "-n",
            "kafka",
            what,
            &format!("--for={condition}"),
            &format!("--timeout={timeout}"),
        ]);
    }

    /// KSHOCK chains in broker 0's namespace (IPv4 and IPv6).
    fn chains(&self) -> usize {
        self.lab.broker_chains()
    }

    fn wait_for_chains(&self, wanted: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.chains() != wanted {
            assert!(
                Instant::now() < deadline,
                "broker 0's namespace holds {} KSHOCK chains, not {wanted}, after {within:?}",
                self.chains()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether kcat delivers two records to `topic` as `client_id` within 3 s.
    fn delivers(&self, topic: &str, client_id: &str) -> bool {
        self.delivers_within(topic, client_id, 3000)
    }

    /// Whether kcat delivers two records to `topic` as `client_id` within `timeout_ms`.
    fn delivers_within(&self, topic: &str, client_id: &str, timeout_ms: u32) -> bool {
        self.lab.kcat_delivers_within(topic, client_id, timeout_ms)
    }

    /// Waits up to 20 s until the count at `jsonpath` of fault `name`'s status is above 0.
    fn wait_status_count(&self, name: &str, jsonpath: &str) {
        wait_for(
            Duration::from_secs(20),
            &format!("{name}'s {jsonpath} above 0"),
            || {
                let count = self.kubectl(&[
                    "get",
                    "kf",
                    "-n",
                    "kafka",
                    name,
                    "-o",
                    &format!("jsonpath={jsonpath}"),
                ]);
                (count.parse::<u64>().unwrap_or(0) > 0).then_some(())
            },
        );
    }

    /// `kafka-shock rules` in broker 0's namespace.
    fn rules(&self) -> String {
        lab::stdout(Command::new(kafka_shock_bin().expect("kafka-shock")).args([
            "rules",
            "--netns",
            &self.lab.broker_netns()[0],
        ]))
        .unwrap_or_else(|error| panic!("{error}"))
    }

    fn exists(&self, what: &str) -> bool {
        self.try_kubectl(&["get", "-n", "kafka", what, "-o", "name"])
            .is_ok()
    }

    fn set_paused(&self, fault: &str, paused: bool) {
        let patch = format!(r#"{{"spec":{{"paused":{paused}}}}}"#);
        self.kubectl(&[
            "patch",
            "kf",
            "-n",
            "kafka",
            fault,
            "--type=merge",
            "-p",
            &patch,
        ]);
    }

    fn delete_fault(&self, name: &str) {
        self.kubectl(&["delete", "-n", "kafka", "kf", name, "--wait=false"]);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Leave no fault for the next test: with the agents still running, deleting every
        // fault takes its rules out before the processes stop.
        let _ = self.try_kubectl(&["delete", "kf", "--all", "-n", "kafka", "--timeout=30s"]);
    }
}

/// A fault resetting Produce to `orders` from `checkout-svc` on every broker.
fn reset_fault(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {{name: {name}, namespace: kafka}}
spec:
  selector: {{matchLabels: {{app.kubernetes.io/name: kafka}}}}
  match: {{apiKeys: [Produce], topics: [{TOPIC}], clientId: {{exact: {VICTIM}}}}}
  action: {{type: Reject}}
{extra}"
    )
}

#[test]
fn apply_hits_one_client_and_delete_recovers_it() {
    let _serial = lab::exclusive();
    let stack = Stack::up();
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
    let stack = Stack::up();
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
    let stack = Stack::up();
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

#[test]
fn a_fault_expires_on_time_with_the_operator_killed() {
    let _serial = lab::exclusive();
    let mut stack = Stack::up();
    stack.apply(&reset_fault("timed-reset", "  duration: 12s\n"));
    stack.wait("kf/timed-reset", "condition=Injected", "60s");
    let expire_time = stack.kubectl(&[
        "get",
        "kfi",
        "-n",
        "kafka",
        "timed-reset-kafka-broker-0",
        "-o",
        "jsonpath={.spec.expireTime}",
    ]);
    stack.operator.take().expect("operator").kill();
    assert!(!stack.delivers(TOPIC, VICTIM), "active until expiry");

    // The agent alone ends it: rules gone within 2 s of expireTime.
    stack.wait_for_chains(0, Duration::from_secs(20));
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

    stack.start_operator();
    stack.wait(
        "kf/timed-reset",
        "jsonpath={.status.phase}=Completed",
        "60s",
    );
}

#[test]
fn a_delete_while_the_agent_is_down_waits_for_the_agent() {
    let _serial = lab::exclusive();
    let mut stack = Stack::up();
    let agent = stack.inject_then_kill_broker_agent("agent-down");

    stack.delete_fault("agent-down");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        stack.exists("kf/agent-down"),
        "the fault waits for its rules to go"
    );
    assert!(stack.chains() > 0, "a SIGKILLed agent leaves its rules");
    assert!(!stack.delivers(TOPIC, VICTIM), "and they still hold");

    stack.start_agent(agent);
    stack.wait("kf/agent-down", "delete", "60s");
    assert_eq!(stack.chains(), 0, "the returning agent removed them");
    assert!(stack.delivers(TOPIC, VICTIM));
}

#[test]
fn an_agent_sweeps_orphans_at_start_and_removes_its_rules_on_sigterm() {
    let _serial = lab::exclusive();
    let mut stack = Stack::up();
    let agent = stack.inject_then_kill_broker_agent("orphaned");
    // Gone from the API while no agent could act: its rules are orphans. (Only the operator
    // may change an injection but for its status and finalizers, so it is its account that
    // lets go of this one here.)
    stack.delete_fault("orphaned");
    lab::stdout(
        stack
            .product
            .kubectl_as(Component::Operator)
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
    stack.start_agent(agent);
    stack.wait_for_chains(0, Duration::from_secs(10));

    // SIGTERM (here SIGINT, handled alike): the agent takes out what it installed.
    stack.apply(&reset_fault("until-sigterm", ""));
    stack.wait("kf/until-sigterm", "condition=Injected", "60s");
    let installed = stack.chains();
    let said = stack.agents[agent]
        .1
        .take()
        .expect("agent")
        .interrupt()
        .expect("the agent stops cleanly");
    assert!(said.contains("agent: stopped"), "{said}");
    assert_eq!(stack.chains(), 0, "SIGTERM removes the agent's rules");
    // The injection still exists, so the next agent puts its rules back.
    stack.start_agent(agent);
    stack.wait_for_chains(installed, Duration::from_secs(20));
}

#[test]
fn a_recreated_broker_pod_is_injected_again() {
    let _serial = lab::exclusive();
    let stack = Stack::up();
    stack.apply(&reset_fault("follows-pod", ""));
    stack.wait("kf/follows-pod", "condition=Injected", "60s");
    let old_uid = stack.kubectl(&[
        "get",
        "kfi",
        "-n",
        "kafka",
        "follows-pod-kafka-broker-0",
        "-o",
        "jsonpath={.spec.podUID}",
    ]);

    lab::stdout(Command::new(lab_script()).args(["restart-broker", "0"]))
        .unwrap_or_else(|error| panic!("{error}"));
    // A new namespace starts empty; the agent fills it again for the pod's new UID.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let uid = stack.kubectl(&[
            "get",
            "kfi",
            "-n",
            "kafka",
            "follows-pod-kafka-broker-0",
            "-o",
            "jsonpath={.spec.podUID}",
        ]);
        if uid != old_uid && stack.chains() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not re-injected after the pod was recreated"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    stack.wait("kf/follows-pod", "condition=Injected", "60s");
    assert!(
        !stack.delivers(TOPIC, VICTIM),
        "the recreated broker is hit again"
    );
    assert!(stack.delivers(TOPIC, BYSTANDER));
    stack.delete_fault("follows-pod");
    stack.wait("kf/follows-pod", "delete", "60s");
    assert_eq!(stack.chains(), 0);
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
    let stack = Stack::up();
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
fn a_dead_agents_fault_stops_biting_within_its_lease_once_deleted() {
    let _serial = lab::exclusive();
    let mut stack = Stack::up();
    let agent = stack.broker_agent();
    let node = stack.agents[agent].0.clone();
    // The broker's agent again, with a short lease.
    stack.agents[agent]
        .1
        .take()
        .expect("agent")
        .interrupt()
        .expect("the agent stops");
    stack.start_agent_with(agent, &["--lease", "6s"]);
    let lease = Duration::from_secs(6);
    stack.apply(&reset_fault("leased-reset", ""));
    stack.wait("kf/leased-reset", "condition=Injected", "60s");
    assert!(
        !stack.delivers_within(TOPIC, VICTIM, 1500),
        "the fault bites"
    );

    stack.agents[agent].1.take().expect("agent").kill();
    let killed = Instant::now();
    stack.delete_fault("leased-reset");
    let mut attempts = 0;
    while !stack.delivers_within(TOPIC, VICTIM, 1500) {
        attempts += 1;
        assert!(
            killed.elapsed() < lease + Duration::from_secs(5),
            "the victim still fails {:?} after the agent was killed",
            killed.elapsed()
        );
    }
    let recovered = killed.elapsed();
    eprintln!("agent SIGKILL → the victim delivers again after {recovered:?} (lease {lease:?})");
    assert!(recovered < lease + Duration::from_secs(5), "{recovered:?}");
    assert!(
        attempts > 0,
        "right after the kill the fault must still bite"
    );
    assert!(
        stack.exists("kf/leased-reset"),
        "the deleted fault waits for its agent"
    );
    assert!(
        stack.chains() > 0,
        "nothing removed the chains: the lease ended the fault"
    );
    let listed = stack.rules();
    assert!(
        listed.contains(&format!("agent node {node}")) && listed.contains("expired"),
        "{listed}"
    );

    // The agent comes back and completes the deletion.
    stack.start_agent(agent);
    stack.wait("kf/leased-reset", "delete", "60s");
    assert_eq!(stack.chains(), 0);
}

#[test]
fn an_agent_interrupted_right_after_start_leaves_nothing() {
    let _serial = lab::exclusive();
    let mut stack = Stack::up();
    stack.apply(&reset_fault("interrupted-agent", ""));
    stack.wait("kf/interrupted-agent", "condition=Injected", "60s");
    let agent = stack.broker_agent();
    let node = stack.agents[agent].0.clone();
    stack.agents[agent]
        .1
        .take()
        .expect("agent")
        .interrupt()
        .expect("the agent stops");
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
    stack.start_agent(agent);
    stack.wait_for_chains(2, Duration::from_secs(20));
    stack.delete_fault("interrupted-agent");
    stack.wait("kf/interrupted-agent", "delete", "60s");
    assert_eq!(stack.chains(), 0);
}
