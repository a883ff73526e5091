//! The lab smoke test: every real client round-trips through the broker from the client
//! namespace, and the lab is a real Kubernetes cluster: its nodes are kubelets that report
//! Ready, the broker runs as a pod whose logs and shell kubectl reaches through its kubelet.

use std::process::Command;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use lab::{Lab, workspace_root};

fn stdout_of(command: &mut Command) -> String {
    lab::stdout(command).unwrap_or_else(|error| panic!("{error}"))
}

fn with_stdin(command: &mut Command, input: &str) -> String {
    lab::stdout_with_input(command, input).unwrap_or_else(|error| panic!("{error}"))
}

fn messages(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

fn unique_topic(client: &str) -> String {
    format!("smoke-{client}-{}", std::process::id())
}

#[test]
fn kcat_produces_and_consumes() {
    let lab = Lab::up().expect("lab up");
    let topic = unique_topic("kcat");
    let sent = messages("kcat", 20);
    with_stdin(
        lab.client("kcat")
            .args(["-b", lab.bootstrap(), "-t", &topic, "-P", "-X", "acks=all"]),
        &(sent.join("\n") + "\n"),
    );
    let received = stdout_of(lab.client("kcat").args([
        "-b",
        lab.bootstrap(),
        "-t",
        &topic,
        "-C",
        "-o",
        "beginning",
        "-c",
        "20",
        "-e",
        "-q",
    ]));
    assert_eq!(received.lines().collect::<Vec<_>>(), sent);
}

#[test]
fn java_console_tools_produce_and_consume() {
    let lab = Lab::up().expect("lab up");
    let topic = unique_topic("java");
    let sent = messages("java", 20);
    with_stdin(
        lab.client("kafka-class").args([
            "org.apache.kafka.tools.ConsoleProducer",
            "--bootstrap-server",
            lab.bootstrap(),
            "--topic",
            &topic,
        ]),
        &(sent.join("\n") + "\n"),
    );
    let received = stdout_of(lab.client("kafka-class").args([
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server",
        lab.bootstrap(),
        "--topic",
        &topic,
        "--from-beginning",
        "--max-messages",
        "20",
        "--timeout-ms",
        "30000",
    ]));
    assert_eq!(received.lines().collect::<Vec<_>>(), sent);
}

#[test]
fn java_perf_tool_produces() {
    let lab = Lab::up().expect("lab up");
    let topic = unique_topic("perf");
    let report = stdout_of(lab.client("kafka-class").args([
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        &topic,
        "--num-records",
        "2000",
        "--record-size",
        "100",
        "--throughput",
        "-1",
        "--producer-props",
        &format!("bootstrap.servers={}", lab.bootstrap()),
        "acks=all",
    ]));
    assert!(
        report.contains("2000 records sent"),
        "unexpected perf report: {report}"
    );
}

#[test]
fn python_client_produces_and_consumes() {
    let lab = Lab::up().expect("lab up");
    let topic = unique_topic("python");
    let script = workspace_root().join("tests/clients/kafka_python_roundtrip.py");
    let report = stdout_of(lab.client("python").args([
        script.to_str().expect("utf-8 path"),
        lab.bootstrap(),
        &topic,
        "20",
    ]));
    let report: serde_json::Value = serde_json::from_str(&report).expect("json report");
    assert_eq!(report["consumed"], serde_json::json!(messages("py", 20)));
}

#[test]
fn kubectl_shows_the_lab_nodes_and_broker_pods() {
    let lab = Lab::up().expect("lab up");
    let listing = stdout_of(
        lab.kubectl()
            .args(["get", "nodes,pods", "-A", "-o", "wide"]),
    );
    for node in lab.nodes() {
        assert!(listing.contains(&node), "{node} missing from:\n{listing}");
    }
    let broker_ip = lab.broker_addrs()[0].split(':').next().map(str::to_owned);
    let pod_line = listing
        .lines()
        .find(|line| line.contains("pod/kafka-broker-0"))
        .unwrap_or_else(|| panic!("no broker pod in:\n{listing}"));
    assert!(pod_line.contains("Running"), "{pod_line}");
    assert!(
        pod_line.contains(broker_ip.as_deref().unwrap_or("?")),
        "{pod_line}"
    );
}

#[test]
fn the_nodes_are_kubelets_with_containerd_and_kubectl_reaches_the_pods() {
    let lab = Lab::up().expect("lab up");
    let nodes = stdout_of(lab.kubectl().args(["get", "nodes", "-o", "json"]));
    let nodes: serde_json::Value = serde_json::from_str(&nodes).expect("json");
    let items = nodes["items"].as_array().expect("nodes");
    assert_eq!(items.len(), lab.nodes().len());
    for node in items {
        let info = &node["status"]["nodeInfo"];
        assert_eq!(info["kubeletVersion"], "v1.34.4", "{info}");
        assert!(
            info["containerRuntimeVersion"]
                .as_str()
                .is_some_and(|runtime| runtime.starts_with("containerd://")),
            "{info}"
        );
        let ready = node["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .any(|condition| condition["type"] == "Ready" && condition["status"] == "True");
        assert!(ready, "{} is not Ready", node["metadata"]["name"]);
    }
    // Logs and exec go through the apiserver to the pod's kubelet, then its containerd.
    let logs = stdout_of(
        lab.kubectl()
            .args(["logs", "-n", lab.pod_namespace(), "kafka-broker-0"]),
    );
    assert!(logs.contains("Kafka Server started"), "{logs}");
    let user = stdout_of(lab.kubectl().args([
        "exec",
        "-n",
        lab.pod_namespace(),
        "kafka-broker-0",
        "--",
        "id",
        "-u",
    ]));
    assert_eq!(user.trim(), "1001", "the broker runs as its image's user");
    // On the host, the broker's processes sit in the kubelet's cgroup of the pod.
    let uid = stdout_of(lab.kubectl().args([
        "get",
        "pod",
        "-n",
        lab.pod_namespace(),
        "kafka-broker-0",
        "-o",
        "jsonpath={.metadata.uid}",
    ]));
    let in_pod = format!("pod{uid}/");
    let pod_processes = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|cgroup| {
                cgroup
                    .lines()
                    .any(|line| line.contains("/kubepods/") && line.contains(&in_pod))
            })
        })
        .count();
    assert!(pod_processes >= 2, "the pod's sandbox and broker processes");
}

#[tokio::test]
async fn kube_client_sees_ready_broker_pods() {
    let lab = Lab::up().expect("lab up");
    let client = lab.kube_client().await.expect("kube client");
    let pods: Api<Pod> = Api::namespaced(client, lab.pod_namespace());
    let listed = pods
        .list(&ListParams::default().labels("strimzi.io/broker-role=true"))
        .await
        .expect("list pods");
    assert_eq!(listed.items.len(), lab.brokers());
    for pod in listed.items {
        let status = pod.status.expect("pod status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .any(|condition| condition.type_ == "Ready" && condition.status == "True");
        assert!(ready, "pod is not Ready");
        let pod_ip = status.pod_ip.expect("pod IP");
        assert!(
            lab.broker_addrs()
                .iter()
                .any(|addr| addr.starts_with(&format!("{pod_ip}:"))),
            "pod IP {pod_ip} is no broker address"
        );
        assert!(pod.spec.and_then(|spec| spec.node_name).is_some());
    }
}

#[test]
fn helm_runs() {
    let lab = Lab::up().expect("lab up");
    let version = stdout_of(lab.host("helm").args(["version", "--short"]));
    assert!(version.starts_with("v3."), "helm version: {version}");
}

#[test]
fn apiserver_rejects_unauthenticated_requests() {
    let lab = Lab::up().expect("lab up");
    let url = format!("{}/api/v1/namespaces", lab.apiserver());
    for extra in [vec![], vec!["-H", "Authorization: Bearer not-a-lab-token"]] {
        let code = stdout_of(
            Command::new("curl")
                .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
                .args(&extra)
                .arg(&url),
        );
        assert_eq!(code, "401", "curl {extra:?} {url}");
    }
    let authorized = stdout_of(lab.kubectl().args(["get", "--raw", "/version"]));
    assert!(
        authorized.contains("\"gitVersion\": \"v1.34"),
        "{authorized}"
    );
}

/// The pid of every daemon the lab started on the host, by its pid file under the lab's state.
fn lab_daemons(lab: &Lab) -> Vec<(String, String)> {
    let state = std::path::PathBuf::from(lab.setting("KSHOCK_LAB_STATE").expect("state dir"));
    let mut daemons = Vec::new();
    let mut dirs = vec![state];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("state dir").flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("containerd") {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "pid") {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                daemons.push((path.display().to_string(), pid.trim().to_owned()));
            }
        }
    }
    daemons.sort();
    daemons
}

#[test]
fn up_on_a_running_lab_restarts_nothing() {
    let lab = Lab::up().expect("lab up");
    let before = lab_daemons(&lab);
    let names = before
        .iter()
        .map(|(file, _)| file.as_str())
        .collect::<Vec<_>>();
    for daemon in ["apiserver.pid", "kubelet.pid", "kube-proxy.pid"] {
        assert!(
            names.iter().any(|name| name.ends_with(daemon)),
            "no {daemon} in {names:?}"
        );
    }
    // kube-proxy exits when its config file is written, even unchanged: a second `up` used to
    // write it and then fail waiting for kube-proxy's health, taking the whole lab down.
    lab.up_again().expect("lab.sh up on a running lab");
    assert_eq!(lab_daemons(&lab), before, "the same daemons, same pids");
    for (file, pid) in &before {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{file}: pid {pid} is gone"
        );
    }
    let healthz = format!(
        "http://{}:10256/healthz",
        lab.setting("KSHOCK_LAB_HOST_IP").expect("host ip")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Watched for 10 s, polled: a kube-proxy that saw its config change exits within a second.
    while std::time::Instant::now() < deadline {
        let status = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &healthz])
            .status();
        assert!(
            status.is_ok_and(|status| status.success()),
            "kube-proxy unhealthy after the second up"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
