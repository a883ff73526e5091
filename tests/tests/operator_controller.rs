//! The operator on the lab's real kube-apiserver, run as a process with a token of the chart's
//! own ServiceAccount (the chart installed without its workloads): what it writes for each
//! KafkaFault (injections, status, Events, metrics), and how faults end. No agent runs; where an
//! agent would act (injection status, removing its finalizer), the test does, with the chart's
//! agent ServiceAccount.
//!
//! Needs root and the lab (three broker pods); fails, never skips, when it cannot run.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Background, Component, Lab, Product, wait_for};
use serde_json::{Value, json};

/// The broker pods' namespace.
const PODS: &str = "kafka";

/// The selector of the lab's three broker pods.
const BROKERS: &str = r#"{matchLabels: {strimzi.io/cluster: lab, strimzi.io/broker-role: "true"}}"#;

/// The lab with three brokers, the chart installed, and this binary's tests one at a time (each
/// runs an operator of its own, and two would both act on every fault).
fn setup() -> (Lab, Product, std::sync::MutexGuard<'static, ()>) {
    let exclusive = lab::exclusive();
    let lab = Lab::up_with(3).unwrap_or_else(|error| panic!("lab up: {error}"));
    let product = Product::install(&lab).unwrap_or_else(|error| panic!("install: {error}"));
    (lab, product, exclusive)
}

/// The operator, and where it serves /metrics and /healthz.
struct Operator {
    process: Background,
    metrics: SocketAddr,
}

impl Operator {
    fn get(&self, path: &str) -> Result<String, lab::LabError> {
        lab::http_get(self.metrics, path)
    }
}

fn start_operator(product: &Product) -> Operator {
    let metrics = lab::free_loopback_addr().expect("a free port");
    let process = product
        .start_operator_on(metrics)
        .unwrap_or_else(|error| panic!("operator: {error}"));
    Operator { process, metrics }
}

fn ok(command: &mut Command) -> String {
    lab::stdout(command).unwrap_or_else(|error| panic!("{error}"))
}

fn json_of(command: &mut Command) -> Value {
    let text = ok(command.args(["-o", "json"]));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn apply(lab: &Lab, manifest: &str) {
    lab::stdout_with_input(lab.kubectl().args(["apply", "-f", "-"]), manifest)
        .unwrap_or_else(|error| panic!("{error}"));
}

/// A KafkaFault in the brokers' namespace: Reject every Produce, with `extra` spec lines.
fn fault_yaml(name: &str, selector: &str, extra: &str) -> String {
    format!(
        "apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {{name: {name}, namespace: {PODS}}}
spec:
  selector: {selector}
  match: {{apiKeys: [Produce]}}
  action: {{type: Reject}}
{extra}"
    )
}

fn fault(lab: &Lab, name: &str) -> Option<Value> {
    let output = lab
        .kubectl()
        .args(["get", "kf", name, "-n", PODS, "-o", "json"])
        .output()
        .expect("kubectl");
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).expect("fault json"))
}

fn injections(lab: &Lab, fault: &str) -> Vec<Value> {
    let list = json_of(lab.kubectl().args([
        "get",
        "kfi",
        "-n",
        PODS,
        "-l",
        &format!("kafkashock.io/fault={fault}"),
    ]));
    list["items"].as_array().cloned().unwrap_or_default()
}

fn condition<'a>(fault: &'a Value, type_: &str) -> &'a Value {
    fault["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// Waits until the fault's status has `phase`, and returns the fault.
fn wait_phase(lab: &Lab, name: &str, phase: &str) -> Value {
    wait_for(Duration::from_secs(30), &format!("{name} {phase}"), || {
        fault(lab, name).filter(|f| f["status"]["phase"] == phase)
    })
}

fn wait_injections(lab: &Lab, name: &str, count: usize) -> Vec<Value> {
    wait_for(
        Duration::from_secs(30),
        &format!("{count} injections of {name}"),
        || Some(injections(lab, name)).filter(|found| found.len() == count),
    )
}

fn pod_names(injections: &[Value]) -> BTreeSet<String> {
    injections
        .iter()
        .map(|i| i["spec"]["podName"].as_str().unwrap().to_owned())
        .collect()
}

/// What the agent writes once the rules of `injection` are in place: phase Active for its
/// current generation. Done with the agent's own ServiceAccount.
fn report_as_agent(product: &Product, injection: &Value, phase: &str, rules: u32) {
    let name = injection["metadata"]["name"].as_str().unwrap();
    let status = json!({"status": {
        "phase": phase,
        "rulesInstalled": rules,
        "matchedRequests": 5,
        "observedGeneration": injection["metadata"]["generation"],
    }});
    ok(product
        .kubectl_as(Component::Agent)
        .unwrap()
        .args(["patch", "kfi", name, "-n", PODS, "--subresource=status"])
        .args(["--type=merge", "-p", &status.to_string()]));
}

/// What the agent does once the rules of a deleted injection are gone: drop its finalizer.
fn release_as_agent(product: &Product, injection: &Value) {
    let name = injection["metadata"]["name"].as_str().unwrap();
    ok(product
        .kubectl_as(Component::Agent)
        .unwrap()
        .args(["patch", "kfi", name, "-n", PODS, "--type=json"])
        .args([
            "-p",
            r#"[{"op": "remove", "path": "/metadata/finalizers"}]"#,
        ]));
}

fn events(lab: &Lab, fault: &str) -> Vec<(String, String)> {
    let list = json_of(
        lab.kubectl()
            .args(["get", "events.v1.events.k8s.io", "-n", PODS]),
    );
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["regarding"]["name"] == fault && e["regarding"]["kind"] == "KafkaFault")
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The value of the first sample of `metric` (with its labels) in a /metrics text.
fn sample(metrics: &str, metric: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(metric)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {metric} in\n{metrics}"))
}

/// Removes the faults a test made, and their injections, even when it fails: it does what the
/// agent would (drop the injections' finalizers), and drops the operator's finalizer if no
/// operator is left to. Injections are changed with the operator's ServiceAccount: the chart's
/// admission policy refuses everyone else, the lab's admin included.
struct Cleanup<'a> {
    lab: &'a Lab,
    product: &'a Product,
    faults: Vec<&'static str>,
}

impl Cleanup<'_> {
    /// kubectl as the operator, to change injections.
    fn as_operator(&self) -> Command {
        self.product
            .kubectl_as(Component::Operator)
            .expect("the operator's kubeconfig")
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let quiet = |command: &mut Command| {
            let _ = command.output();
        };
        for name in &self.faults {
            quiet(self.lab.kubectl().args([
                "delete",
                "kf",
                name,
                "-n",
                PODS,
                "--ignore-not-found",
                "--wait=false",
            ]));
            let deadline = Instant::now() + Duration::from_secs(30);
            while fault(self.lab, name).is_some() && Instant::now() < deadline {
                for injection in injections(self.lab, name) {
                    let injection = injection["metadata"]["name"].as_str().unwrap_or_default();
                    quiet(self.as_operator().args([
                        "patch",
                        "kfi",
                        injection,
                        "-n",
                        PODS,
                        "--type=merge",
                        "-p",
                        r#"{"metadata": {"finalizers": null}}"#,
                    ]));
                }
                if deadline.saturating_duration_since(Instant::now()) < Duration::from_secs(25) {
                    quiet(self.lab.kubectl().args([
                        "patch",
                        "kf",
                        name,
                        "-n",
                        PODS,
                        "--type=merge",
                        "-p",
                        r#"{"metadata": {"finalizers": null}}"#,
                    ]));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            for injection in injections(self.lab, name) {
                let injection = injection["metadata"]["name"].as_str().unwrap_or_default();
                quiet(self.as_operator().args([
                    "patch",
                    "kfi",
                    injection,
                    "-n",
                    PODS,
                    "--type=merge",
                    "-p",
                    r#"{"metadata": {"finalizers": null}}"#,
                ]));
                quiet(self.as_operator().args([
                    "delete",
                    "kfi",
                    injection,
                    "-n",
                    PODS,
                    "--ignore-not-found",
                ]));
            }
        }
    }
}

#[test]
fn a_fault_gets_one_injection_per_ready_pod_and_rolls_up_to_active() {
    let (lab, product, _exclusive) = setup();
    let _cleanup = Cleanup {
        lab: &lab,
        product: &product,
        faults: vec!["op-all"],
    };
    let operator = start_operator(&product);
    assert_eq!(operator.get("/healthz").unwrap(), "ok\n");

    apply(&lab, &fault_yaml("op-all", BROKERS, ""));
    let created = wait_injections(&lab, "op-all", 3);
    let stored = fault(&lab, "op-all").unwrap();
    assert_eq!(
        stored["metadata"]["finalizers"],
        json!(["kafkashock.io/cleanup"]),
        "the operator's own finalizer: the fault stays until its rules are gone"
    );
    let pods = json_of(lab.kubectl().args(["get", "pods", "-n", PODS]));
    for injection in &created {
        let spec = &injection["spec"];
        let pod = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["metadata"]["name"] == spec["podName"])
            .unwrap_or_else(|| panic!("no pod for {spec}"));
        assert_eq!(spec["faultName"], "op-all");
        assert_eq!(spec["podUID"], pod["metadata"]["uid"]);
        assert_eq!(spec["podIP"], pod["status"]["podIP"]);
        assert_eq!(spec["nodeName"], pod["spec"]["nodeName"]);
        assert_eq!(spec["match"]["apiKeys"], json!(["Produce"]));
        assert_eq!(spec["action"]["type"], "Reject");
        assert_eq!(spec["paused"], false);
        let metadata = &injection["metadata"];
        assert_eq!(metadata["labels"]["kafkashock.io/fault"], "op-all");
        assert_eq!(metadata["labels"]["kafkashock.io/node"], spec["nodeName"]);
        assert_eq!(metadata["finalizers"], json!(["kafkashock.io/rules"]));
        assert_eq!(
            metadata["ownerReferences"],
            json!([{
                "apiVersion": "kafkashock.io/v1alpha1",
                "kind": "KafkaFault",
                "name": "op-all",
                "uid": stored["metadata"]["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }])
        );
    }
    // Written with the operator's field manager.
    let managed = json_of(lab.kubectl().args([
        "get",
        "kfi",
        "-n",
        PODS,
        "-l",
        "kafkashock.io/fault=op-all",
        "--show-managed-fields",
    ]));
    for injection in managed["items"].as_array().unwrap() {
        let managers: Vec<&Value> = injection["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["manager"])
            .collect();
        assert_eq!(managers, [&json!("kafka-shock-operator")]);
    }
    assert_eq!(
        pod_names(&created),
        BTreeSet::from(["kafka-broker-0", "kafka-broker-1", "kafka-broker-2"].map(String::from))
    );
    let injecting = wait_phase(&lab, "op-all", "Injecting");
    assert_eq!(injecting["status"]["totalTargets"], 3);
    assert_eq!(injecting["status"]["injectedTargets"], 0);
    assert_eq!(
        injecting["status"]["observedGeneration"],
        injecting["metadata"]["generation"]
    );

    // The agents report their rules in place: the fault rolls up to Active.
    for injection in &created {
        report_as_agent(&product, injection, "Active", 2);
    }
    let active = wait_phase(&lab, "op-all", "Active");
    assert_eq!(condition(&active, "Injected")["status"], "True");
    assert_eq!(active["status"]["injectedTargets"], 3);
    assert_eq!(active["status"]["matchedRequests"], 15);

    // The printer columns.
    let table = ok(lab.kubectl().args(["get", "kf", "op-all", "-n", PODS]));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "INJECTED", "TARGETS", "MATCHED", "AGE"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["op-all", "Active", "3", "3", "15"], "{table}");

    let seen = wait_for(
        Duration::from_secs(10),
        "Selected and Injected events",
        || {
            let seen = events(&lab, "op-all");
            let has = |reason: &str| seen.iter().any(|(_, r)| r == reason);
            (has("Selected") && has("Injected")).then_some(seen)
        },
    );
    assert!(seen.iter().all(|(type_, _)| type_ == "Normal"), "{seen:?}");

    let metrics = operator.get("/metrics").unwrap();
    assert!(sample(&metrics, "kafka_shock_operator_reconciles_total") >= 3.0);
    assert_eq!(
        sample(&metrics, r#"kafka_shock_operator_faults{phase="Active"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"kafka_shock_operator_injections{phase="Active"}"#
        ),
        3.0
    );
    assert!(
        sample(
            &metrics,
            "kafka_shock_operator_reconcile_duration_seconds_count"
        ) >= 3.0
    );
}

#[test]
fn one_and_percent_pick_the_same_pods_after_an_operator_restart() {
    let (lab, product, _exclusive) = setup();
    let _cleanup = Cleanup {
        lab: &lab,
        product: &product,
        faults: vec!["op-one", "op-half"],
    };
    let operator = start_operator(&product);
    apply(&lab, &fault_yaml("op-one", BROKERS, "  mode: One\n"));
    apply(
        &lab,
        &fault_yaml("op-half", BROKERS, "  mode: Percent\n  value: 50\n"),
    );
    let one = wait_injections(&lab, "op-one", 1);
    let half = wait_injections(&lab, "op-half", 2);
    wait_phase(&lab, "op-one", "Injecting");
    wait_phase(&lab, "op-half", "Injecting");

    // SIGINT: a graceful stop, exit status 0.
    let log = operator
        .process
        .interrupt()
        .unwrap_or_else(|error| panic!("operator did not stop cleanly: {error}"));
    assert!(log.contains("operator: stopped"), "{log}");

    let operator = start_operator(&product);
    wait_for(
        Duration::from_secs(20),
        "both faults reconciled again",
        || {
            let metrics = operator.get("/metrics").ok()?;
            (sample(
                &metrics,
                r#"kafka_shock_operator_faults{phase="Injecting"}"#,
            ) == 2.0)
                .then_some(())
        },
    );
    let uids = |injections: &[Value]| -> BTreeSet<String> {
        injections
            .iter()
            .map(|i| i["metadata"]["uid"].as_str().unwrap().to_owned())
            .collect()
    };
    for (name, before) in [("op-one", &one), ("op-half", &half)] {
        let after = injections(&lab, name);
        assert_eq!(pod_names(&after), pod_names(before), "{name} picked others");
        assert_eq!(
            uids(&after),
            uids(before),
            "{name}'s injections were replaced"
        );
    }
}

#[test]
fn pause_and_resume_reach_every_injection() {
    let (lab, product, _exclusive) = setup();
    let _cleanup = Cleanup {
        lab: &lab,
        product: &product,
        faults: vec!["op-pause"],
    };
    let _operator = start_operator(&product);
    apply(&lab, &fault_yaml("op-pause", BROKERS, ""));
    wait_injections(&lab, "op-pause", 3);

    for (paused, phase) in [(true, "Paused"), (false, "Injecting")] {
        ok(lab.kubectl().args([
            "patch",
            "kf",
            "op-pause",
            "-n",
            PODS,
            "--type=merge",
            "-p",
            &json!({"spec": {"paused": paused}}).to_string(),
        ]));
        wait_for(
            Duration::from_secs(20),
            &format!("paused={paused} on every injection"),
            || {
                let all = injections(&lab, "op-pause");
                (all.len() == 3 && all.iter().all(|i| i["spec"]["paused"] == paused)).then_some(())
            },
        );
        let fault = wait_phase(&lab, "op-pause", phase);
        assert_eq!(
            condition(&fault, "Paused")["status"],
            if paused { "True" } else { "False" }
        );
    }
}

#[test]
fn dry_run_selects_and_reports_but_creates_nothing() {
    let (lab, product, _exclusive) = setup();
    let _cleanup = Cleanup {
        lab: &lab,
        product: &product,
        faults: vec!["op-dry"],
    };
    let _operator = start_operator(&product);
    apply(
        &lab,
        &fault_yaml(
            "op-dry",
            BROKERS,
            "  mode: Fixed\n  value: 2\n  dryRun: true\n",
        ),
    );
    let reported = wait_for(Duration::from_secs(30), "the dry run's status", || {
        fault(&lab, "op-dry").filter(|f| condition(f, "Injected")["reason"] == "DryRun")
    });
    let status = &reported["status"];
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["totalTargets"], 2);
    assert_eq!(condition(&reported, "Selected")["status"], "True");
    assert_eq!(
        condition(&reported, "Injected")["message"],
        "dry run: 2 target pods selected, nothing injected"
    );
    let rows = status["targets"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|row| row["message"] == "dry run: selected, nothing injected"),
        "{rows:?}"
    );
    // The status is written after the writes it would have made: none, now or later.
    assert!(injections(&lab, "op-dry").is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert!(injections(&lab, "op-dry").is_empty());
}

#[test]
fn a_short_duration_ends_by_itself() {
    let (lab, product, _exclusive) = setup();
    let _cleanup = Cleanup {
        lab: &lab,
        product: &product,
        faults: vec!["op-short"],
    };
    let _operator = start_operator(&product);
    apply(
        &lab,
        &fault_yaml("op-short", BROKERS, "  mode: One\n  duration: 10s\n"),
    );
    let [injection] = &wait_injections(&lab, "op-short", 1)[..] else {
        unreachable!()
    };
    report_as_agent(&product, injection, "Active", 2);
    let active = wait_phase(&lab, "op-short", "Active");
    let expire = active["status"]["expireTime"].as_str().unwrap().to_owned();
    assert_eq!(injection["spec"]["expireTime"], expire.as_str());

    // At expiry the operator deletes the injection; the agent's finalizer holds it while the
    // agent (here: this test) removes the rules.
    let deleted = wait_for(Duration::from_secs(20), "the injection deleted", || {
        injections(&lab, "op-short")
            .into_iter()
            .find(|i| i["metadata"]["deletionTimestamp"].is_string())
    });
    let recovering = wait_phase(&lab, "op-short", "Recovering");
    assert_eq!(condition(&recovering, "Injected")["reason"], "FaultExpired");
    report_as_agent(&product, &deleted, "Recovered", 0);
    release_as_agent(&product, &deleted);

    let completed = wait_phase(&lab, "op-short", "Completed");
    assert_eq!(condition(&completed, "Recovered")["status"], "True");
    assert_eq!(completed["status"]["expireTime"], expire.as_str());
    assert!(injections(&lab, "op-short").is_empty());
    // Nothing comes back after the end.
    std::thread::sleep(Duration::from_secs(2));
    assert!(injections(&lab, "op-short").is_empty());
    assert!(
        events(&lab, "op-short")
            .iter()
            .any(|(_, reason)| reason == "Recovered")
    );
}

#[test]
fn an_invalid_regex_is_reported_and_injects_nothing() {
    let (lab, product, _exclusive) = setup();
    let _cleanup = Cleanup {
        lab: &lab,
        product: &product,
        faults: vec!["op-invalid"],
    };
    let _operator = start_operator(&product);
    // The API server refuses what RE2 cannot compile; a pattern only RE2 knows (`\Q...\E`)
    // passes it, and the operator, which compiles Rust regexes as the agents do, must refuse it.
    apply(
        &lab,
        &fault_yaml("op-invalid", BROKERS, "").replace(
            "match: {apiKeys: [Produce]}",
            r"match: {apiKeys: [Produce], clientId: {regex: '\Qcheckout.svc\E'}}",
        ),
    );
    let failed = wait_phase(&lab, "op-invalid", "Failed");
    let valid = condition(&failed, "Valid");
    assert_eq!(valid["status"], "False");
    assert_eq!(valid["reason"], "SpecInvalid");
    assert!(
        valid["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.match.clientId.regex: invalid regex"),
        "{valid}"
    );
    assert!(injections(&lab, "op-invalid").is_empty());
    wait_for(Duration::from_secs(10), "a SpecInvalid warning", || {
        events(&lab, "op-invalid")
            .contains(&("Warning".to_owned(), "SpecInvalid".to_owned()))
            .then_some(())
    });
}

#[test]
fn a_deleted_fault_stays_until_the_agents_release_its_injections() {
    let (lab, product, _exclusive) = setup();
    let _cleanup = Cleanup {
        lab: &lab,
        product: &product,
        faults: vec!["op-delete"],
    };
    let _operator = start_operator(&product);
    apply(&lab, &fault_yaml("op-delete", BROKERS, ""));
    for injection in wait_injections(&lab, "op-delete", 3) {
        report_as_agent(&product, &injection, "Active", 2);
    }
    wait_phase(&lab, "op-delete", "Active");

    ok(lab
        .kubectl()
        .args(["delete", "kf", "op-delete", "-n", PODS, "--wait=false"]));
    let terminating = wait_for(Duration::from_secs(20), "every injection deleted", || {
        let all = injections(&lab, "op-delete");
        all.iter()
            .all(|i| i["metadata"]["deletionTimestamp"].is_string())
            .then_some(all)
    });
    assert_eq!(terminating.len(), 3);
    wait_phase(&lab, "op-delete", "Recovering");
    std::thread::sleep(Duration::from_secs(3));
    let held = fault(&lab, "op-delete").expect("the fault must wait for its rules to go");
    assert!(held["metadata"]["deletionTimestamp"].is_string());

    for injection in &terminating {
        report_as_agent(&product, injection, "Recovered", 0);
        release_as_agent(&product, injection);
    }
    wait_for(Duration::from_secs(20), "the fault gone", || {
        fault(&lab, "op-delete").is_none().then_some(())
    });
    assert!(injections(&lab, "op-delete").is_empty());
}

/// A pod of this test's own (not a lab broker) on `node`, run by that node's kubelet from the
/// lab's pause image; returns its IP once it is Running and Ready.
fn create_pod(lab: &Lab, name: &str, node: &str) -> String {
    apply(
        lab,
        &format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {PODS}, labels: {{app: op-extra}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers: [{{name: idle, image: localhost/kafka-shock/pause:lab, imagePullPolicy: Never}}]
"
        ),
    );
    ok(lab.kubectl().args([
        "wait",
        "-n",
        PODS,
        &format!("pod/{name}"),
        "--for=condition=Ready",
        "--timeout=60s",
    ]));
    ok(lab.kubectl().args([
        "get",
        "pod",
        name,
        "-n",
        PODS,
        "-o",
        "jsonpath={.status.podIP}",
    ]))
}

fn delete_pod(lab: &Lab, name: &str) {
    ok(lab.kubectl().args([
        "delete",
        "pod",
        name,
        "-n",
        PODS,
        "--ignore-not-found",
        "--timeout=60s",
    ]));
}

struct PodCleanup<'a>(&'a Lab);

impl Drop for PodCleanup<'_> {
    fn drop(&mut self) {
        delete_pod(self.0, "op-extra-pod");
    }
}

#[test]
fn a_vanished_pod_releases_its_injection_and_a_new_one_is_targeted() {
    let (lab, product, _exclusive) = setup();
    let _pod = PodCleanup(&lab);
    let _cleanup = Cleanup {
        lab: &lab,
        product: &product,
        faults: vec!["op-pod"],
    };
    let node = lab.nodes()[0].clone();
    create_pod(&lab, "op-extra-pod", &node);
    let _operator = start_operator(&product);
    apply(
        &lab,
        &fault_yaml("op-pod", "{matchLabels: {app: op-extra}}", ""),
    );
    let [before] = &wait_injections(&lab, "op-pod", 1)[..] else {
        unreachable!()
    };
    report_as_agent(&product, before, "Active", 2);
    wait_phase(&lab, "op-pod", "Active");

    // The pod vanishes: no agent can remove rules from a namespace that is gone, so the
    // operator releases the injection itself.
    delete_pod(&lab, "op-extra-pod");
    wait_for(Duration::from_secs(20), "the injection released", || {
        injections(&lab, "op-pod").is_empty().then_some(())
    });
    wait_phase(&lab, "op-pod", "Pending");

    // The pod comes back (new UID, new IP): the fault follows it.
    let ip = create_pod(&lab, "op-extra-pod", &node);
    let recreated = json_of(
        lab.kubectl()
            .args(["get", "pod", "op-extra-pod", "-n", PODS]),
    );
    let [after] = &wait_injections(&lab, "op-pod", 1)[..] else {
        unreachable!()
    };
    assert_eq!(after["spec"]["podIP"], ip.as_str());
    assert_eq!(after["spec"]["podUID"], recreated["metadata"]["uid"]);
    assert_ne!(after["spec"]["podUID"], before["spec"]["podUID"]);
}

#[test]
fn the_operator_refuses_to_start_without_its_rights() {
    let (_lab, product, _exclusive) = setup();
    // The agent's ServiceAccount may not list KafkaFaults: the operator must say so and stop.
    let mut operator = Command::new(lab::operator_bin().unwrap());
    operator
        .env(
            "KUBECONFIG",
            product.kubeconfig_for(Component::Agent).unwrap(),
        )
        .arg("--metrics-addr=127.0.0.1:0");
    let output = operator.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("not allowed to list kafkafaults.kafkashock.io"),
        "{stderr}"
    );
}
