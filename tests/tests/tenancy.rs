//! Tenant isolation on the lab's real kube-apiserver (v1.34) with the chart installed, its
//! operator and agents run with their own ServiceAccounts' tokens:
//!
//! - the chart's admission policy: the lab's admin cannot write a KafkaFaultInjection, the
//!   operator's account can, the agents' account changes only status and finalizers;
//! - the agent checks each injection against its live pod: another namespace's pod, a wrong
//!   UID, another node's pod, an injection its fault does not control, a `hostNetwork` pod —
//!   it installs nothing (no rule carrying the injection's id in any lab namespace, polled to
//!   a deadline) and says why in `status.reason`; the operator carries the reason into the
//!   fault's status; `agent.allowHostNetworkTargets` lifts only the `hostNetwork` refusal;
//! - the guard rails `faultNamespaces` and `allowedPorts`: a fault elsewhere, or naming another
//!   port, is refused with a message (by `kubectl apply`, and by the operator's Valid condition);
//! - `kafka-shock inject` refuses the host's own network namespace without `--allow-host-netns`.
//!
//! Every refusal has its positive control in the same test. The `hostNetwork` pods are real
//! pods run by the lab's kubelets (the lab's `pause` image): their process sits in the node's
//! own network namespace with the pod's UID in its cgroup, so the refusal, and its lifting by
//! `agent.allowHostNetworkTargets` (the fault then lands on the node itself), run end to end.
//! The agents here are host processes with the chart's flags, beside the chart installed
//! without its workloads.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lab::{Background, Component, FaultFiles, Lab, Product, kafka_shock_bin, wait_for};
use serde_json::{Value, json};

/// The broker pods' namespace.
const PODS: &str = "kafka";
/// A tenant's namespace, holding no broker.
const TENANT: &str = "kshock-tenant";
/// The chart's policies in the lab's release.
const WRITERS_POLICY: &str = "ValidatingAdmissionPolicy 'kshock-lab-kafka-shock-injection-writers'";
const PORTS_POLICY: &str = "ValidatingAdmissionPolicy 'kshock-lab-kafka-shock-allowed-ports'";

/// The lab (one broker), the chart with its defaults, and this binary's tests one at a time.
fn setup() -> (Lab, Product, std::sync::MutexGuard<'static, ()>) {
    let exclusive = lab::exclusive();
    let lab = Lab::up().unwrap_or_else(|error| panic!("lab up: {error}"));
    let product = Product::install(&lab).unwrap_or_else(|error| panic!("install: {error}"));
    ensure_namespace(&lab, TENANT);
    (lab, product, exclusive)
}

fn ok(command: &mut Command) -> String {
    lab::stdout(command).unwrap_or_else(|error| panic!("{error}"))
}

fn output_of(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("could not run {command:?}: {error}"))
}

/// `kubectl apply` of `manifest` with `kubectl`: Ok(stdout) or Err(stderr).
fn apply_with(kubectl: &mut Command, manifest: &str) -> Result<String, String> {
    lab::stdout_with_input(kubectl.args(["apply", "-f", "-"]), manifest)
        .map_err(|error| error.to_string())
}

fn as_operator(product: &Product) -> Command {
    product
        .kubectl_as(Component::Operator)
        .expect("the operator's kubeconfig")
}

fn as_agent(product: &Product) -> Command {
    product
        .kubectl_as(Component::Agent)
        .expect("the agent's kubeconfig")
}

fn json_of(command: &mut Command) -> Value {
    let text = ok(command.args(["-o", "json"]));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn ensure_namespace(lab: &Lab, namespace: &str) {
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n");
    apply_with(&mut lab.kubectl(), &manifest).unwrap_or_else(|error| panic!("{error}"));
}

/// What a pod is, as an injection names it.
#[derive(Debug, Clone)]
struct PodRef {
    name: String,
    uid: String,
    ip: String,
    node: String,
}

fn pod_ref(lab: &Lab, namespace: &str, name: &str) -> PodRef {
    let pod = json_of(lab.kubectl().args(["get", "pod", name, "-n", namespace]));
    PodRef {
        name: name.into(),
        uid: pod["metadata"]["uid"].as_str().unwrap().into(),
        ip: pod["status"]["podIP"]
            .as_str()
            .unwrap_or("10.77.0.250")
            .into(),
        node: pod["spec"]["nodeName"].as_str().unwrap().into(),
    }
}

/// A hand-written KafkaFaultInjection `name` in `namespace` for `pod` on `node`, controlled by
/// the fault `owner` (name, UID) when given: Reject every Produce on port 9092.
fn injection(
    name: &str,
    namespace: &str,
    pod: &PodRef,
    node: &str,
    owner: Option<(&str, &str)>,
) -> String {
    let owners = owner.map_or_else(String::new, |(fault, uid)| {
        format!(
            "\n  ownerReferences: [{{apiVersion: kafkashock.io/v1alpha1, kind: KafkaFault, name: {fault}, uid: {uid}, controller: true, blockOwnerDeletion: true}}]"
        )
    });
    let fault = owner.map_or("tenancy-owner", |(fault, _)| fault);
    format!(
        "apiVersion: kafkashock.io/v1alpha1
kind: KafkaFaultInjection
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{kafkashock.io/node: {node}, kafkashock.io/fault: {fault}}}
  finalizers: [kafkashock.io/rules]{owners}
spec:
  faultName: {fault}
  podName: {pod_name}
  podUID: {uid}
  podIP: {ip}
  nodeName: {node}
  match: {{apiKeys: [Produce]}}
  action: {{type: Reject}}
",
        pod_name = pod.name,
        uid = pod.uid,
        ip = pod.ip,
    )
}

/// A server-side dry run of `kubectl apply` of `manifest` as the lab's admin: the whole
/// admission chain judges it, nothing is stored.
fn dry_run_apply(lab: &Lab, manifest: &str) -> Result<String, String> {
    lab::stdout_with_input(
        lab.kubectl().args(["apply", "--dry-run=server", "-f", "-"]),
        manifest,
    )
    .map_err(|error| error.to_string())
}

/// Waits until the chart's admission policy refuses what the lab's admin writes: a policy
/// takes a moment to be in force after `helm install`.
fn wait_for_writers_policy(lab: &Lab, manifest: &str) {
    wait_for(Duration::from_secs(30), "the admission policy", || {
        dry_run_apply(lab, manifest)
            .err()
            .filter(|error| error.contains(WRITERS_POLICY))
    });
}

/// Removes the injections a test made, even when it fails: as the operator (the only account
/// the policy lets do it), finalizer first.
struct Injections<'a> {
    product: &'a Product,
    made: Vec<(String, String)>,
}

impl Drop for Injections<'_> {
    fn drop(&mut self) {
        for (namespace, name) in &self.made {
            let _ = as_operator(self.product)
                .args(["patch", "kfi", name, "-n", namespace, "--type=merge"])
                .args(["-p", r#"{"metadata":{"finalizers":null}}"#])
                .output();
            let _ = as_operator(self.product)
                .args(["delete", "kfi", name, "-n", namespace, "--ignore-not-found"])
                .output();
        }
    }
}

#[test]
fn only_the_operator_writes_injections_and_the_agent_only_their_status() {
    let (lab, product, _exclusive) = setup();
    let broker = pod_ref(&lab, PODS, "kafka-broker-0");
    let node = broker.node.clone();
    let manifest = injection("tenancy-written", PODS, &broker, &node, None);
    wait_for_writers_policy(&lab, &manifest);
    let _made = Injections {
        product: &product,
        made: vec![(PODS.into(), "tenancy-written".into())],
    };

    // The lab's admin (a cluster admin) is refused, naming the policy and why.
    let refused = apply_with(&mut lab.kubectl(), &manifest).expect_err("the admin wrote one");
    for says in [
        WRITERS_POLICY,
        "only the kafka-shock operator (system:serviceaccount:kafka-shock-lab:kshock-lab-kafka-shock-operator) writes KafkaFaultInjections",
        "may not CREATE one",
    ] {
        assert!(refused.contains(says), "no {says:?} in {refused}");
    }
    // The operator's account writes the very same object.
    let created = apply_with(&mut as_operator(&product), &manifest).unwrap();
    assert!(created.contains("created"), "{created}");

    // The agent's account reports a status, and may not touch the spec or the labels.
    let status = r#"{"status": {"phase": "Failed", "lastError": "written by the agent"}}"#;
    ok(as_agent(&product)
        .args(["patch", "kfi", "tenancy-written", "-n", PODS])
        .args(["--subresource=status", "--type=merge", "-p", status]));
    for patch in [
        r#"{"spec": {"podName": "kafka-broker-1"}}"#,
        r#"{"metadata": {"labels": {"kafkashock.io/node": "elsewhere"}}}"#,
    ] {
        let output = output_of(
            as_agent(&product)
                .args(["patch", "kfi", "tenancy-written", "-n", PODS])
                .args(["--type=merge", "-p", patch]),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "the agent patched {patch}");
        assert!(
            stderr.contains(WRITERS_POLICY) && stderr.contains("may not UPDATE one"),
            "{stderr}"
        );
    }
    // Nor may the admin write the status, or delete the injection.
    for args in [
        vec![
            "patch",
            "kfi",
            "tenancy-written",
            "-n",
            PODS,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
        vec![
            "delete",
            "kfi",
            "tenancy-written",
            "-n",
            PODS,
            "--wait=false",
        ],
    ] {
        let output = output_of(lab.kubectl().args(&args));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(WRITERS_POLICY),
            "{args:?}: {stderr}"
        );
    }
    let stored = json_of(
        lab.kubectl()
            .args(["get", "kfi", "tenancy-written", "-n", PODS]),
    );
    assert_eq!(stored["spec"]["podName"], "kafka-broker-0");
    assert_eq!(stored["status"]["lastError"], "written by the agent");

    // The operator deletes it; the agent's account lets go of its finalizer, and it is gone.
    ok(as_operator(&product).args([
        "delete",
        "kfi",
        "tenancy-written",
        "-n",
        PODS,
        "--wait=false",
    ]));
    ok(as_agent(&product)
        .args(["patch", "kfi", "tenancy-written", "-n", PODS, "--type=json"])
        .args([
            "-p",
            r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
        ]));
    wait_for(Duration::from_secs(10), "the injection gone", || {
        (!output_of(
            lab.kubectl()
                .args(["get", "kfi", "tenancy-written", "-n", PODS]),
        )
        .status
        .success())
        .then_some(())
    });
}

/// iptables-save and ip6tables-save of every lab namespace: the host's, each broker's and the
/// client's.
fn rules_everywhere(lab: &Lab) -> String {
    let mut namespaces: Vec<Option<String>> = vec![None];
    namespaces.extend(lab.broker_netns().into_iter().map(Some));
    namespaces.push(Some(lab.client_netns().to_owned()));
    let mut all = String::new();
    for namespace in &namespaces {
        for tool in ["iptables-save", "ip6tables-save"] {
            let mut command = match namespace {
                Some(netns) => lab.in_netns(netns, tool),
                None => lab.host(tool),
            };
            all.push_str(&ok(&mut command));
        }
    }
    all
}

/// Asserts, polling until `within` has passed, that no rule in any lab namespace carries the
/// id of an injection in `uids`, and that broker 0 holds no KSHOCK chain.
fn nothing_installed_for(lab: &Lab, uids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let rules = rules_everywhere(lab);
        for uid in uids {
            assert!(
                !rules.contains(uid.as_str()),
                "a rule of injection {uid}:\n{rules}"
            );
        }
        assert_eq!(lab.broker_chains(), 0, "{}", lab.broker_rules());
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn injection_status(lab: &Lab, namespace: &str, name: &str) -> Value {
    json_of(lab.kubectl().args(["get", "kfi", name, "-n", namespace]))
}

/// Waits until injection `name` is Failed with `reason`; returns its lastError and its UID.
fn wait_refused(lab: &Lab, namespace: &str, name: &str, reason: &str) -> (String, String) {
    wait_for(
        Duration::from_secs(30),
        &format!("{name} refused ({reason})"),
        || {
            let stored = injection_status(lab, namespace, name);
            let status = &stored["status"];
            (status["phase"] == "Failed" && status["reason"] == reason).then(|| {
                (
                    status["lastError"].as_str().unwrap_or_default().to_owned(),
                    stored["metadata"]["uid"].as_str().unwrap().to_owned(),
                )
            })
        },
    )
}

/// A real pod `name` in the brokers' namespace on `node` with `hostNetwork: true` and the
/// `labels`, run by that node's kubelet from the lab's own `pause` image: its process sits in
/// the node's network namespace, with the pod's UID in its cgroup. Returns once it is Ready.
fn host_network_pod(lab: &Lab, name: &str, node: &str, labels: &str) -> PodRef {
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {PODS}, labels: {labels}}}
spec:
  nodeName: {node}
  hostNetwork: true
  terminationGracePeriodSeconds: 0
  containers: [{{name: pause, image: {image}, imagePullPolicy: Never}}]
",
        image = lab.pause_image()
    );
    apply_with(&mut lab.kubectl(), &manifest).unwrap_or_else(|error| panic!("{error}"));
    ok(lab.kubectl().args([
        "wait",
        "pod",
        name,
        "-n",
        PODS,
        "--for=condition=Ready",
        "--timeout=60s",
    ]));
    pod_ref(lab, PODS, name)
}

/// Deletes the Pod objects and KafkaFaults a test made, even when it fails.
struct Objects<'a> {
    lab: &'a Lab,
    pods: Vec<&'static str>,
    faults: Vec<(&'static str, &'static str)>,
}

impl Drop for Objects<'_> {
    fn drop(&mut self) {
        for pod in &self.pods {
            let _ = self
                .lab
                .kubectl()
                .args([
                    "delete",
                    "pod",
                    pod,
                    "-n",
                    PODS,
                    "--grace-period=0",
                    "--force",
                    "--ignore-not-found",
                ])
                .output();
        }
        for (namespace, fault) in &self.faults {
            let _ = self
                .lab
                .kubectl()
                .args([
                    "delete",
                    "kf",
                    fault,
                    "-n",
                    namespace,
                    "--ignore-not-found",
                    "--wait=false",
                ])
                .output();
            let _ = self
                .lab
                .kubectl()
                .args(["patch", "kf", fault, "-n", namespace, "--type=merge"])
                .args(["-p", r#"{"metadata":{"finalizers":null}}"#])
                .output();
        }
    }
}

/// A KafkaFault `name` in `namespace` selecting `selector`, with `extra` spec lines.
fn fault_yaml(name: &str, namespace: &str, selector: &str, extra: &str) -> String {
    format!(
        "apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {selector}}}
  match: {{apiKeys: [Produce]}}
  action: {{type: Reject}}
{extra}"
    )
}

#[test]
fn the_agent_acts_only_on_injections_that_match_their_live_pod() {
    let (lab, product, _exclusive) = setup();
    let broker = pod_ref(&lab, PODS, "kafka-broker-0");
    let node = broker.node.clone();
    let other_node = lab
        .nodes()
        .into_iter()
        .find(|n| *n != node)
        .expect("a second lab node");
    let _agents: Vec<Background> = lab
        .nodes()
        .iter()
        .map(|n| product.start_agent(n).expect("agent starts"))
        .collect();
    let objects = Objects {
        lab: &lab,
        pods: vec!["tenancy-hostnet"],
        faults: vec![(PODS, "tenancy-owner")],
    };
    // The fault the injections claim to come from; no operator runs, so it does nothing itself.
    apply_with(
        &mut lab.kubectl(),
        &fault_yaml("tenancy-owner", PODS, "{app: no-such-pod}", ""),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let owner_uid = json_of(
        lab.kubectl()
            .args(["get", "kf", "tenancy-owner", "-n", PODS]),
    )["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = Some(("tenancy-owner", owner_uid.as_str()));
    let host_pod = host_network_pod(&lab, "tenancy-hostnet", &node, "{app: tenancy-hostnet}");
    let wrong_uid = PodRef {
        uid: "0badc0de-0000-4000-8000-000000000000".into(),
        ..broker.clone()
    };

    // Written by the operator's account, as only it may; each fails one check.
    let refused = [
        (
            "tenancy-other-namespace",
            TENANT,
            &broker,
            node.as_str(),
            None,
            "PodNotFound",
            "no pod \"kafka-broker-0\" in namespace \"kshock-tenant\"",
        ),
        (
            "tenancy-wrong-uid",
            PODS,
            &wrong_uid,
            node.as_str(),
            owner,
            "PodMismatch",
            "not the injection's \"0badc0de-",
        ),
        (
            "tenancy-other-node",
            PODS,
            &broker,
            other_node.as_str(),
            owner,
            "WrongNode",
            "runs on node",
        ),
        (
            "tenancy-not-owned",
            PODS,
            &broker,
            node.as_str(),
            None,
            "NotOwned",
            "not controlled by KafkaFault kafka/tenancy-owner",
        ),
        (
            "tenancy-host-network",
            PODS,
            &host_pod,
            node.as_str(),
            owner,
            "HostNetwork",
            "(spec.hostNetwork)",
        ),
    ];
    let mut made = Injections {
        product: &product,
        made: Vec::new(),
    };
    for (name, namespace, pod, on, owner, _, _) in &refused {
        made.made.push((namespace.to_string(), name.to_string()));
        apply_with(
            &mut as_operator(&product),
            &injection(name, namespace, pod, on, *owner),
        )
        .unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    let mut uids = Vec::new();
    for (name, namespace, _, _, _, reason, says) in &refused {
        let (error, uid) = wait_refused(&lab, namespace, name, reason);
        assert!(
            error.starts_with(&format!("{reason}: ")) && error.contains(says),
            "{name}: {error}"
        );
        uids.push(uid);
    }
    // Past the agents' 5 s resync: still nothing of theirs anywhere.
    nothing_installed_for(&lab, &uids, Duration::from_secs(7));

    // Positive control: the injection that matches its pod is enforced, then removed.
    made.made.push((PODS.into(), "tenancy-matching".into()));
    apply_with(
        &mut as_operator(&product),
        &injection("tenancy-matching", PODS, &broker, &node, owner),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    wait_for(
        Duration::from_secs(30),
        "the matching injection Active",
        || {
            let status = injection_status(&lab, PODS, "tenancy-matching")["status"].clone();
            (status["phase"] == "Active" && lab.broker_chains() > 0).then_some(())
        },
    );
    ok(as_operator(&product).args([
        "delete",
        "kfi",
        "tenancy-matching",
        "-n",
        PODS,
        "--wait=false",
    ]));
    wait_for(Duration::from_secs(30), "its rules and itself gone", || {
        let gone = !output_of(
            lab.kubectl()
                .args(["get", "kfi", "tenancy-matching", "-n", PODS]),
        )
        .status
        .success();
        (gone && lab.broker_chains() == 0).then_some(())
    });
    // Deleting the refused ones needs no check: their agents let go of them.
    for (name, namespace, ..) in &refused {
        ok(as_operator(&product).args(["delete", "kfi", name, "-n", namespace, "--wait=false"]));
    }
    for (name, namespace, ..) in &refused {
        wait_for(Duration::from_secs(30), &format!("{name} released"), || {
            (!output_of(lab.kubectl().args(["get", "kfi", name, "-n", namespace]))
                .status
                .success())
            .then_some(())
        });
    }
    drop(objects);
}

/// The fault's status row of `pod`, and the message of its Injected condition.
fn fault_target(lab: &Lab, fault: &str, pod: &str) -> Option<(Value, String)> {
    let stored = json_of(lab.kubectl().args(["get", "kf", fault, "-n", PODS]));
    let status = &stored["status"];
    let row = status["targets"]
        .as_array()?
        .iter()
        .find(|t| t["pod"] == pod)?
        .clone();
    let injected = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Injected")?;
    Some((
        row,
        injected["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[test]
fn a_host_network_pod_is_refused_and_the_fault_says_why_unless_the_chart_allows_it() {
    let (lab, product, _exclusive) = setup();
    let node = pod_ref(&lab, PODS, "kafka-broker-0").node;
    let objects = Objects {
        lab: &lab,
        pods: vec!["tenancy-hostnet-broker"],
        faults: vec![(PODS, "tenancy-hostnet")],
    };
    let pod = host_network_pod(
        &lab,
        "tenancy-hostnet-broker",
        &node,
        "{app: tenancy-hostnet-broker}",
    );
    let _operator = product.start_operator().expect("operator starts");
    let agent = product.start_agent(&node).expect("agent starts");
    apply_with(
        &mut lab.kubectl(),
        &fault_yaml("tenancy-hostnet", PODS, "{app: tenancy-hostnet-broker}", ""),
    )
    .unwrap_or_else(|error| panic!("{error}"));

    let _made = Injections {
        product: &product,
        made: vec![(PODS.into(), "tenancy-hostnet-tenancy-hostnet-broker".into())],
    };
    let (row, injected) = wait_for(
        Duration::from_secs(30),
        "the fault to show HostNetwork",
        || {
            fault_target(&lab, "tenancy-hostnet", &pod.name)
                .filter(|(row, _)| row["reason"] == "HostNetwork")
        },
    );
    assert_eq!(row["phase"], "Failed");
    assert!(
        row["message"]
            .as_str()
            .unwrap()
            .contains("--allow-host-network-targets"),
        "{row}"
    );
    assert!(injected.starts_with("tenancy-hostnet-broker: HostNetwork: pod kafka/tenancy-hostnet-broker uses the node's network namespace"), "{injected}");
    let uid = json_of(lab.kubectl().args([
        "get",
        "kfi",
        "tenancy-hostnet-tenancy-hostnet-broker",
        "-n",
        PODS,
    ]))["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();

    // The chart's agent.allowHostNetworkTargets reaches the agent as its flag, and lifts this
    // refusal only: the real pod's process is found by its UID in the node's namespace, and the
    // fault is installed there, on the node itself, as asked; deleting the fault removes it.
    let allowing = Product::install_with(&lab, &["--set", "agent.allowHostNetworkTargets=true"])
        .expect("upgrade");
    let flags = allowing
        .chart_flags(Component::Agent)
        .expect("the DaemonSet's flags");
    assert_eq!(flags, ["--lease=30s", "--allow-host-network-targets"]);
    agent.kill();
    let metrics = lab::free_loopback_addr().expect("a free port");
    let _allowing_agent = allowing
        .start_agent_with(&node, metrics, &flags)
        .expect("agent starts");
    wait_for(Duration::from_secs(30), "the refusal lifted", || {
        let status =
            injection_status(&lab, PODS, "tenancy-hostnet-tenancy-hostnet-broker")["status"]
                .clone();
        let host_rules = ok(&mut lab.host("iptables-save"));
        (status["phase"] == "Active"
            && status.get("reason").is_none()
            && host_rules.contains(uid.as_str()))
        .then_some(())
    });
    assert_eq!(
        lab.broker_chains(),
        0,
        "only the node's namespace was asked for"
    );
    ok(lab.kubectl().args([
        "delete",
        "kf",
        "tenancy-hostnet",
        "-n",
        PODS,
        "--timeout=60s",
    ]));
    wait_for(Duration::from_secs(30), "the node's rules gone", || {
        (!rules_everywhere(&lab).contains(uid.as_str())).then_some(())
    });
    Product::install(&lab).expect("the chart's defaults back");
    drop(objects);
}

/// The fault's condition `type_` as (status, reason, message).
fn condition(
    lab: &Lab,
    namespace: &str,
    fault: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let stored = json_of(lab.kubectl().args(["get", "kf", fault, "-n", namespace]));
    let found = stored["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .clone();
    let text = |key: &str| found[key].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

/// Puts the chart's defaults back, even when the test fails.
struct Defaults<'a>(&'a Lab);

impl Drop for Defaults<'_> {
    fn drop(&mut self) {
        if let Err(error) = Product::install(self.0) {
            eprintln!("could not put the chart's defaults back: {error}");
        }
    }
}

#[test]
fn faults_outside_the_guard_rails_are_refused_with_a_message() {
    let (lab, _product, _exclusive) = setup();
    let _defaults = Defaults(&lab);
    let objects = Objects {
        lab: &lab,
        pods: vec![],
        faults: vec![
            (PODS, "rails-old-port"),
            (TENANT, "rails-elsewhere"),
            (PODS, "rails-ok"),
            (PODS, "rails-port-22"),
        ],
    };
    let brokers = r#"{strimzi.io/cluster: lab}"#;
    // Applied before the rails were set.
    for manifest in [
        fault_yaml("rails-old-port", PODS, brokers, "  ports: [9093]\n"),
        fault_yaml("rails-elsewhere", TENANT, brokers, ""),
    ] {
        apply_with(&mut lab.kubectl(), &manifest).unwrap_or_else(|error| panic!("{error}"));
    }
    let product = Product::install_with(
        &lab,
        &[
            "--set",
            "allowedPorts={9092}",
            "--set",
            "faultNamespaces={kafka}",
        ],
    )
    .expect("upgrade with guard rails");

    // `kubectl apply` of a fault naming another port fails at once, naming the policy.
    let port_22 = fault_yaml("rails-port-22", PODS, brokers, "  ports: [22, 9092]\n");
    wait_for(Duration::from_secs(30), "the ports policy in force", || {
        dry_run_apply(&lab, &port_22).err()
    });
    let refused = apply_with(&mut lab.kubectl(), &port_22).expect_err("port 22 was accepted");
    for says in [
        PORTS_POLICY,
        "spec.ports: 22 not allowed: this installation allows only ports 9092 (chart value allowedPorts)",
    ] {
        assert!(refused.contains(says), "no {says:?} in {refused}");
    }
    apply_with(
        &mut lab.kubectl(),
        &fault_yaml("rails-ok", PODS, brokers, "  dryRun: true\n"),
    )
    .expect("an allowed port passes");

    // The operator, run with the flags the chart gives it, reports the faults applied before.
    let flags = product
        .chart_flags(Component::Operator)
        .expect("the Deployment's flags");
    assert_eq!(flags, ["--fault-namespaces=kafka", "--allowed-ports=9092"]);
    let metrics = lab::free_loopback_addr().expect("a free port");
    let _operator = product
        .start_operator_with(metrics, &flags)
        .expect("operator starts");
    for (namespace, fault, reason, message) in [
        (
            PODS,
            "rails-old-port",
            "PortNotAllowed",
            "spec.ports: 9093 not allowed: this installation allows only ports 9092 (chart value allowedPorts)",
        ),
        (
            TENANT,
            "rails-elsewhere",
            "NamespaceNotAllowed",
            "KafkaFaults in namespace kshock-tenant are not honoured: this installation honours them only in kafka (chart value faultNamespaces)",
        ),
    ] {
        let (_, _, said) = wait_for(
            Duration::from_secs(30),
            &format!("{fault} {reason}"),
            || {
                condition(&lab, namespace, fault, "Valid")
                    .filter(|(status, why, _)| status == "False" && why == reason)
            },
        );
        assert_eq!(said, message);
        let injections = json_of(lab.kubectl().args([
            "get",
            "kfi",
            "-n",
            namespace,
            "-l",
            &format!("kafkashock.io/fault={fault}"),
        ]));
        assert_eq!(injections["items"], json!([]), "{fault} got injections");
    }
    // Positive control: the fault within the rails is valid and selects the broker.
    let selected = wait_for(Duration::from_secs(30), "rails-ok selected", || {
        condition(&lab, PODS, "rails-ok", "Selected").filter(|(status, _, _)| status == "True")
    });
    assert_eq!(
        condition(&lab, PODS, "rails-ok", "Valid").unwrap().0,
        "True",
        "{selected:?}"
    );
    for (namespace, fault) in [
        (PODS, "rails-old-port"),
        (TENANT, "rails-elsewhere"),
        (PODS, "rails-ok"),
    ] {
        ok(lab
            .kubectl()
            .args(["delete", "kf", fault, "-n", namespace, "--timeout=60s"]));
    }
    drop(objects);
}

/// Runs `kafka-shock` with `args` to its end.
fn kafka_shock(args: &[&str]) -> Output {
    output_of(Command::new(kafka_shock_bin().expect("kafka-shock")).args(args))
}

#[test]
fn inject_refuses_the_hosts_namespace_unless_allowed_and_sniff_only_reads() {
    let _exclusive = lab::exclusive();
    let lab = Lab::up().unwrap_or_else(|error| panic!("lab up: {error}"));
    let files = FaultFiles::new("tenancy-host");
    let fault = files.fault("host-probe", "  ports: [19092]\n  match: {apiKeys: [Produce]}\n  action: {type: Reject}\n  duration: 1s\n");
    let fault = fault.to_str().unwrap();
    // This test runs in the host's namespace, as the CLI does. pid 1's is the host's too on a
    // real machine; a sandbox may hide pid 1 even from root, and then says so.
    let own_pid = std::process::id().to_string();
    let mut host_targets = vec![
        vec!["--pid", own_pid.as_str()],
        vec!["--netns", "/proc/self/ns/net"],
    ];
    if std::fs::metadata("/proc/1/ns/net").is_ok() {
        host_targets.push(vec!["--pid", "1"]);
        host_targets.push(vec!["--netns", "/proc/1/ns/net"]);
    } else {
        let output = kafka_shock(&["inject", "-f", fault, "--pid", "1"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.code() == Some(2) && stderr.contains("cannot open /proc/1/ns/net"),
            "{stderr}"
        );
    }
    for target in &host_targets {
        let output = kafka_shock(&[&["inject", "-f", fault][..], target].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{target:?}: {stderr}");
        assert!(
            stderr.contains("is the host's own network namespace (pid 1's, or this process's)")
                && stderr.contains("pass --allow-host-netns if that is what you mean"),
            "{target:?}: {stderr}"
        );
    }
    let before = rules_everywhere(&lab);
    assert!(!before.contains("host-probe"), "{before}");

    // Positive controls: a broker's namespace needs no flag; sniffing the host only reads.
    let broker = lab.broker_netns()[0].clone();
    for args in [
        vec!["inject", "-f", fault, "--netns", broker.as_str()],
        vec![
            "sniff",
            "--pid",
            own_pid.as_str(),
            "--duration",
            "1s",
            "--summary",
            "-q",
        ],
    ] {
        let output = kafka_shock(&args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The flag lifts the refusal. Shown where the CLI's "host" is the lab's client namespace
    // (the CLI run inside it, naming its own), so no rule ever lands on this machine: refused
    // without the flag, enforced for one second with it.
    let inside_client = |extra: &[&str]| {
        let mut command = lab.in_netns(
            lab.client_netns(),
            kafka_shock_bin().unwrap().to_str().unwrap(),
        );
        output_of(
            command
                .args(["inject", "-f", fault, "--netns", "/proc/self/ns/net"])
                .args(extra),
        )
    };
    let refused = inside_client(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pass --allow-host-netns"), "{stderr}");
    let allowed = inside_client(&["--allow-host-netns"]);
    assert!(
        allowed.status.success(),
        "--allow-host-netns: {}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let rules = rules_everywhere(&lab);
    let after: BTreeSet<&str> = rules.lines().filter(|l| l.contains("KSHOCK")).collect();
    assert!(after.is_empty(), "left behind: {after:?}");
}
