//! What only a real node shows, end to end: kafka-shock deployed with Helm runs as pods under
//! the lab's two kubelets (the operator Deployment, one agent per node from the DaemonSet), from
//! images built from this run's release binaries, next to three Kafka broker pods of a
//! StatefulSet spread over both nodes. A broker pod deleted with kubectl, a rolling restart of
//! the agents, `helm uninstall` during a fault, a node drain and a hung agent killed by its
//! liveness probe each end with the right rules in the right namespaces; metrics are scraped
//! through the chart's Services.

use std::time::{Duration, Instant};

use lab::stack::{BYSTANDER, Stack, TOPIC, VICTIM, reset_fault};
use lab::{Background, Component, NAMESPACE, RELEASE, Stream};

/// Three brokers: every fault has targets on both nodes, so both agents act.
const BROKERS: usize = 3;

/// Polls `check` until it returns true, up to `within`; panics saying `what` otherwise.
fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `GET path` from `addr`, retried for up to 30 s: kube-proxy programs a Service, and the
/// endpoint controller publishes a pod, a moment after they appear.
fn scrape(addr: &str, path: &str) -> String {
    let addr = addr.parse().expect("address");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lab::http_get(addr, path) {
            Ok(body) => return body,
            Err(error) if Instant::now() >= deadline => panic!("GET {addr}{path}: {error}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The lab's other node.
fn other_node(stack: &Stack, node: &str) -> String {
    stack
        .lab
        .nodes()
        .into_iter()
        .find(|candidate| candidate != node)
        .expect("two nodes")
}

#[test]
fn the_nodes_are_ready_and_the_product_runs_from_this_runs_images() {
    let _serial = lab::exclusive();
    let stack = Stack::up(BROKERS);
    let nodes = stack.kubectl(&["get", "nodes", "-o", "wide"]);
    println!("{nodes}");
    for node in stack.lab.nodes() {
        let line = nodes
            .lines()
            .find(|line| line.starts_with(&format!("{node} ")))
            .unwrap_or_else(|| panic!("no node {node}:\n{nodes}"));
        for column in [" Ready ", " v1.34.4 ", "containerd://1."] {
            assert!(line.contains(column), "{node} lacks {column:?}: {line}");
        }
    }
    let workloads = stack.kubectl(&["get", "ds,deploy", "-n", NAMESPACE, "-o", "wide"]);
    println!("{workloads}");
    let ready = |kind: &str, path: &str| {
        stack.kubectl(&[
            "get",
            kind,
            "-n",
            NAMESPACE,
            &match kind {
                "ds" => Component::Agent.object_name(),
                _ => Component::Operator.object_name(),
            },
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(ready("ds", "{.status.numberReady}"), "2", "{workloads}");
    assert_eq!(
        ready("deploy", "{.status.readyReplicas}"),
        "1",
        "{workloads}"
    );

    // Every pod runs the image this run built and imported, not one from elsewhere.
    for component in [Component::Agent, Component::Operator] {
        let (image, id) = stack.product.image(component).expect("deployed image");
        let selector = format!(
            "app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={}",
            match component {
                Component::Agent => "agent",
                Component::Operator => "operator",
            }
        );
        let running = stack.kubectl(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            &selector,
            "-o",
            "jsonpath={range .items[*]}{.status.containerStatuses[0].image} {.status.containerStatuses[0].imageID}{\"\\n\"}{end}",
        ]);
        let expected = match component {
            Component::Agent => 2,
            Component::Operator => 1,
        };
        assert_eq!(running.lines().count(), expected, "{running}");
        for line in running.lines() {
            assert_eq!(line, format!("{image} {id}"), "{component:?}");
        }
    }
}

#[test]
fn a_deleted_broker_pod_is_injected_again_in_its_new_namespace() {
    let _serial = lab::exclusive();
    let stack = Stack::up(BROKERS);
    stack.apply(&reset_fault("follows-pod", ""));
    stack.wait("kf/follows-pod", "condition=Injected", "60s");
    let old_uid = stack.broker_pod(0, "{.metadata.uid}");
    assert_eq!(
        stack.injection("follows-pod", "kafka-broker-0", "{.spec.podUID}"),
        old_uid
    );

    stack.kubectl(&["delete", "pod", "-n", "kafka", "kafka-broker-0"]);
    eventually(
        Duration::from_secs(60),
        "the StatefulSet recreates the pod",
        || {
            let uid = stack.try_kubectl(&[
                "get",
                "pod",
                "-n",
                "kafka",
                "kafka-broker-0",
                "-o",
                "jsonpath={.metadata.uid}",
            ]);
            uid.is_ok_and(|uid| !uid.is_empty() && uid != old_uid)
        },
    );
    stack.wait("pod/kafka-broker-0", "condition=Ready", "120s");
    stack
        .lab
        .refresh_broker_netns()
        .expect("broker namespaces named");
    let new_uid = stack.broker_pod(0, "{.metadata.uid}");

    // A new namespace starts empty; the agent of the pod's node fills it for the new UID.
    eventually(Duration::from_secs(60), "re-injected", || {
        stack.injection("follows-pod", "kafka-broker-0", "{.spec.podUID}") == new_uid
            && stack.lab.broker_chains_of(0) > 0
    });
    stack.wait("kf/follows-pod", "condition=Injected", "60s");
    assert_eq!(
        stack.found_by(&stack.broker_node(0), "follows-pod-kafka-broker-0"),
        "pod UID in cgroup"
    );
    assert!(
        !stack.delivers(TOPIC, VICTIM),
        "the recreated broker is hit again"
    );
    assert!(stack.delivers(TOPIC, BYSTANDER));
    stack.delete_fault("follows-pod");
    stack.wait("kf/follows-pod", "delete", "60s");
    assert_eq!(stack.chains(), 0);
}

#[test]
fn rolling_the_agents_removes_then_restores_their_rules() {
    let _serial = lab::exclusive();
    let stack = Stack::up(BROKERS);
    stack.apply(&reset_fault("survives-rollout", ""));
    stack.wait("kf/survives-rollout", "condition=Injected", "60s");
    let installed = stack.chains();
    let node = stack.broker_node(0);
    let old_pod = stack.agent_pod(&node);
    let mut old_log = Background::start(
        stack
            .lab
            .kubectl()
            .args(["logs", "-f", "-n", NAMESPACE, &old_pod]),
        Stream::Stdout,
        "",
        Duration::ZERO,
    )
    .expect("kubectl logs -f");

    let daemonset = format!("daemonset/{}", Component::Agent.object_name());
    stack.kubectl(&["rollout", "restart", "-n", NAMESPACE, &daemonset]);
    stack.kubectl(&[
        "rollout",
        "status",
        "-n",
        NAMESPACE,
        &daemonset,
        "--timeout=180s",
    ]);
    // SIGTERM: the old pod took its rules out before it went.
    assert!(
        old_log.wait_for(Duration::from_secs(30), |lines| lines
            .iter()
            .any(|line| line.contains("agent: stopped; removed the rules of"))),
        "{old_pod} did not say it removed its rules: {:?}",
        old_log.output()
    );
    assert_ne!(stack.agent_pod(&node), old_pod, "a new agent pod runs");
    // The injections still exist, so the new pods put the rules back.
    stack.wait_for_chains(installed, Duration::from_secs(60));
    assert!(
        !stack.delivers(TOPIC, VICTIM),
        "the fault holds after the rollout"
    );
    stack.delete_fault("survives-rollout");
    stack.wait("kf/survives-rollout", "delete", "60s");
    assert_eq!(stack.chains(), 0);
}

#[test]
fn helm_uninstall_while_a_fault_is_active_leaves_no_rule_in_any_broker() {
    let _serial = lab::exclusive();
    let stack = Stack::up(BROKERS);
    stack.apply(&reset_fault("outlives-release", ""));
    stack.wait("kf/outlives-release", "condition=Injected", "60s");
    for id in 0..BROKERS {
        assert!(
            stack.lab.broker_chains_of(id) > 0,
            "broker {id} is injected"
        );
    }

    lab::stdout(stack.lab.host("helm").args([
        "uninstall",
        RELEASE,
        "-n",
        NAMESPACE,
        "--wait",
        "--timeout=120s",
    ]))
    .unwrap_or_else(|error| panic!("{error}"));
    // Every agent got SIGTERM and took its rules out on the way.
    eventually(Duration::from_secs(60), "no rule in any broker", || {
        stack.chains() == 0
    });
    for id in 0..BROKERS {
        assert_eq!(stack.lab.broker_chains_of(id), 0, "broker {id}");
    }
    assert!(stack.delivers(TOPIC, VICTIM), "the victim works again");

    // Helm leaves custom resources alone: the fault and its injections stay, their finalizers
    // with no operator or agent left to remove them. An admin strips them, as here.
    assert!(stack.exists("kf/outlives-release"));
    for object in ["kfi", "kf"] {
        let names = stack.kubectl(&["get", object, "-n", "kafka", "-o", "name"]);
        for name in names.lines() {
            stack.kubectl(&[
                "patch",
                "-n",
                "kafka",
                name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
    }
    stack.kubectl(&["delete", "kf", "--all", "-n", "kafka", "--timeout=30s"]);
    // The next test's Stack::up installs the release again.
}

/// Uncordons a node when dropped, also when the test panics.
struct Uncordon<'a>(&'a Stack, String);

impl Drop for Uncordon<'_> {
    fn drop(&mut self) {
        let _ = self.0.try_kubectl(&["uncordon", &self.1]);
    }
}

#[test]
fn a_drained_nodes_injection_is_released_and_the_fault_follows_the_broker() {
    let _serial = lab::exclusive();
    let stack = Stack::up(BROKERS);
    stack.apply(&reset_fault("follows-drain", ""));
    stack.wait("kf/follows-drain", "condition=Injected", "60s");
    let drained = stack.broker_node(0);
    let other = other_node(&stack, &drained);
    let old_uid = stack.broker_pod(0, "{.metadata.uid}");

    let _uncordon = Uncordon(&stack, drained.clone());
    stack.kubectl(&[
        "drain",
        &drained,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=180s",
    ]);
    eventually(
        Duration::from_secs(120),
        "the broker's pod runs on the other node",
        || {
            stack
                .try_kubectl(&[
                    "get",
                    "pod",
                    "-n",
                    "kafka",
                    "kafka-broker-0",
                    "-o",
                    "jsonpath={.metadata.uid} {.spec.nodeName} {.status.phase}",
                ])
                .is_ok_and(|state| {
                    let fields: Vec<&str> = state.split(' ').collect();
                    fields.len() == 3
                        && fields[0] != old_uid
                        && fields[1] == other
                        && fields[2] == "Running"
                })
        },
    );
    stack
        .lab
        .refresh_broker_netns()
        .expect("broker namespaces named");

    // The drained node's agent no longer holds the injection; the other node's enforces it in
    // the new pod's namespace.
    eventually(
        Duration::from_secs(60),
        "the injection moved to the other node",
        || {
            stack.injection(
                "follows-drain",
                "kafka-broker-0",
                "{.spec.nodeName} {.status.phase}",
            ) == format!("{other} Active")
                && stack.lab.broker_chains_of(0) > 0
        },
    );
    stack.wait("kf/follows-drain", "condition=Injected", "120s");
    assert_eq!(
        stack.found_by(&other, "follows-drain-kafka-broker-0"),
        "pod UID in cgroup"
    );
    assert!(!stack.delivers(TOPIC, VICTIM), "the fault holds");
    stack.delete_fault("follows-drain");
    stack.wait("kf/follows-drain", "delete", "60s");
    assert_eq!(stack.chains(), 0);
}

/// The Events the kubelet recorded for pod `pod` with reason `reason`.
fn events(stack: &Stack, pod: &str, reason: &str) -> String {
    stack.kubectl(&[
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector",
        &format!("involvedObject.name={pod},reason={reason}"),
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ])
}

#[test]
fn a_hung_agent_is_restarted_by_its_liveness_probe_and_gets_its_rules_back() {
    let _serial = lab::exclusive();
    let stack = Stack::up(BROKERS);
    stack.apply(&reset_fault("survives-hang", ""));
    stack.wait("kf/survives-hang", "condition=Injected", "60s");
    let installed = stack.chains();
    let node = stack.broker_node(0);
    let pod = stack.agent_pod(&node);
    let restarts = stack.agent_restarts(&node);

    let frozen = stack.freeze_agent(&node);
    eventually(
        Duration::from_secs(90),
        "the kubelet kills the agent for its failed liveness probe",
        || events(&stack, &pod, "Killing").contains("failed liveness probe"),
    );
    assert!(events(&stack, &pod, "Unhealthy").contains("Liveness probe failed"));
    // Let it see the kubelet's SIGTERM: it removes its rules and exits; the kubelet starts it
    // again, and the injections bring the rules back.
    frozen.thaw();
    eventually(
        Duration::from_secs(90),
        "the agent container restarted",
        || stack.agent_restarts(&node) == restarts + 1,
    );
    stack.wait_for_chains(installed, Duration::from_secs(60));
    assert!(!stack.delivers(TOPIC, VICTIM), "the fault holds");
}

#[test]
fn metrics_are_scraped_through_the_charts_services() {
    let _serial = lab::exclusive();
    let stack = Stack::up(BROKERS);
    // The operator's Service has a cluster IP: kube-proxy takes the scrape to the pod.
    let service = |component: Component, path: &str| {
        stack.kubectl(&[
            "get",
            "service",
            "-n",
            NAMESPACE,
            &format!("{}-metrics", component.object_name()),
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    let cluster_ip = service(Component::Operator, "{.spec.clusterIP}");
    let scraped = scrape(&format!("{cluster_ip}:8080"), "/metrics");
    assert!(scraped.contains("kafka_shock_operator_"), "{scraped}");

    // The agents' Service is headless: one endpoint per agent pod, each scraped on its own.
    assert_eq!(service(Component::Agent, "{.spec.clusterIP}"), "None");
    let selector = format!(
        "kubernetes.io/service-name={}-metrics",
        Component::Agent.object_name()
    );
    let endpoints = || {
        stack.kubectl(&[
            "get",
            "endpointslices",
            "-n",
            NAMESPACE,
            "-l",
            &selector,
            "-o",
            "jsonpath={range .items[*].endpoints[*]}{.addresses[0]} {.nodeName}{\"\\n\"}{end}",
        ])
    };
    let nodes_of = |listed: &str| {
        let mut nodes: Vec<String> = listed
            .lines()
            .filter_map(|line| line.split_once(' ').map(|(_, node)| node.to_owned()))
            .collect();
        nodes.sort_unstable();
        nodes
    };
    eventually(
        Duration::from_secs(30),
        "one agent endpoint per node",
        || nodes_of(&endpoints()) == stack.lab.nodes(),
    );
    for line in endpoints().lines() {
        let address = line.split(' ').next().expect("address");
        let scraped = scrape(&format!("{address}:9090"), "/metrics");
        assert!(
            scraped.contains("kafkashock_agent_reconciles"),
            "{address}: {scraped}"
        );
        // The kubelet probes the same port: /healthz answers there.
        assert_eq!(scrape(&format!("{address}:9090"), "/healthz").trim(), "ok");
    }
}
