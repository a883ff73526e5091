//! Bad input on the lab's real kube-apiserver, with the generated CRDs installed: a table of
//! invalid KafkaFaults ([`lab::manifests::mistakes`]), each a distinct mistake a user makes,
//! must be rejected at apply time with a message naming the offending field; valid faults and
//! every example in `examples/` must be accepted. All of it is `kubectl apply --dry-run=server
//! --validate=strict`, so the server runs its whole admission chain (schema, CEL rules, strict
//! field validation) and stores nothing. The same table goes through `kafka-shock inject
//! --dry-run -f` (the parity test), which must refuse each mistake naming the same field.
//!
//! Mistakes the server cannot catch, so not in the table:
//! - runtime-only: the operator sets Valid=False. A `match.clientId.regex` that RE2 (CEL)
//!   compiles but Rust's regex does not (`\Q...\E`); see the dialect test below.
//! - runtime-only, and not caught by `validate` either: selector label keys and values that no
//!   pod could carry (`matchLabels: {"app name": x}`, a matchExpressions key with a space). The
//!   server stores them as plain strings; listing pods with them fails at run time.
//!
//! Others are not mistakes in the spec but in the world, reported in the status at run time: a
//! selector that matches no pod, a `Fixed` value above the number of selected pods, ports no
//! listener uses, topics, groups or clients that do not exist.
//!
//! Also here: `examples/ci-chaos-stage.sh`, the CI stage users copy. With no operator running,
//! it must refuse bad arguments and bad manifests before touching the cluster, time out clearly
//! waiting for Injected, and delete the fault it applied, also when it is terminated.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lab::manifests::{Mistake, REJECT, SELECTOR, fault, fault_named, mistakes};
use lab::{Lab, LabError, TempDir, kafka_shock_bin, workspace_root};

const CRD_FILES: [&str; 2] = ["crds/kafkafaults.yaml", "crds/kafkafaultinjections.yaml"];
const CRD_NAMES: [&str; 2] = [
    "crd/kafkafaults.kafkashock.io",
    "crd/kafkafaultinjections.kafkashock.io",
];

/// The lab, with the CRDs installed and Established. Installing is idempotent and the CRDs are
/// left in place: other tests may be using them.
fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let lab = Lab::up().expect("lab up");
        let mut apply = lab.kubectl();
        apply.args(["apply", "--server-side", "--force-conflicts"]);
        for file in CRD_FILES {
            apply.arg("-f").arg(workspace_root().join(file));
        }
        lab::stdout(&mut apply).unwrap_or_else(|error| panic!("installing the CRDs: {error}"));
        lab::stdout(
            lab.kubectl()
                .args(["wait", "--for=condition=Established", "--timeout=60s"])
                .args(CRD_NAMES),
        )
        .unwrap_or_else(|error| panic!("the CRDs did not become Established: {error}"));
        lab
    })
}

/// `kubectl apply --dry-run=server --validate=strict` of `manifest`: its stdout when the server
/// accepts it, its stderr when it refuses.
fn dry_run(manifest: &str) -> Result<String, String> {
    let mut attempt = 0;
    loop {
        let mut apply = lab().kubectl();
        apply.args(["apply", "--dry-run=server", "--validate=strict", "-f", "-"]);
        match lab::stdout_with_input(&mut apply, manifest) {
            Ok(stdout) => return Ok(stdout),
            // Discovery may trail Established for a moment.
            Err(LabError::CommandFailed { stderr, .. })
                if stderr.contains("no matches for kind") && attempt < 20 =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(LabError::CommandFailed { stderr, .. }) => return Err(stderr),
            Err(error) => panic!("could not run kubectl: {error}"),
        }
    }
}

#[test]
fn the_apiserver_rejects_each_mistake_naming_its_field() {
    let table = mistakes();
    assert!(table.len() >= 30, "only {} mistakes", table.len());
    let mut wrong = Vec::new();
    for Mistake {
        what,
        manifest,
        path,
        server_says,
    } in &table
    {
        match dry_run(manifest) {
            Ok(stdout) => wrong.push(format!("{what}: accepted ({})", stdout.trim())),
            Err(stderr) if !stderr.contains(path) || !stderr.contains(server_says) => {
                wrong.push(format!(
                    "{what}: rejected without naming {path:?} and saying {server_says:?}:\n{stderr}"
                ))
            }
            Err(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} mistakes were not rejected as expected:\n\n{}",
        wrong.len(),
        table.len(),
        wrong.join("\n\n")
    );
}

/// `kafka-shock inject --dry-run -f FILE`: whether it succeeded, and its stderr.
fn cli_dry_run(dir: &TempDir, manifest: &str) -> (bool, String) {
    let file = dir.path().join("fault.yaml");
    std::fs::write(&file, manifest).expect("write the fault");
    let output = Command::new(kafka_shock_bin().expect("kafka-shock"))
        .args(["inject", "--dry-run", "-f"])
        .arg(&file)
        .output()
        .expect("run kafka-shock");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Whether `said` names the field `path` itself (`path: ...`) or an item of it (`path[1]: ...`).
fn names(said: &str, path: &str) -> bool {
    said.contains(&format!("{path}:")) || said.contains(&format!("{path}["))
}

/// The parity test: every mistake the server refuses, the CLI refuses too, naming the same
/// field. No lab needed, only the binary.
#[test]
fn the_cli_refuses_each_mistake_naming_the_same_field() {
    let dir = TempDir::new("cli-parity");
    let (ok, said) = cli_dry_run(&dir, &fault(&[SELECTOR, REJECT]));
    assert!(ok, "a valid fault must pass: {said}");
    let table = mistakes();
    let mut wrong = Vec::new();
    for Mistake {
        what,
        manifest,
        path,
        ..
    } in &table
    {
        match cli_dry_run(&dir, manifest) {
            (true, _) => wrong.push(format!("{what}: accepted")),
            (false, said) if !names(&said, path) => {
                wrong.push(format!("{what}: refused without naming {path:?}:\n{said}"))
            }
            (false, _) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} mistakes were not refused as the server refuses them:\n\n{}",
        wrong.len(),
        table.len(),
        wrong.join("\n\n")
    );
}

/// Where the server's RE2 and the agent's Rust regex differ, each side as documented in the
/// schema's description of `clientId.regex`; where they agree, both accept.
#[test]
fn regex_dialects_agree_on_the_common_syntax_and_differ_as_documented() {
    let dir = TempDir::new("regex-dialects");
    let with = |regex: &str| {
        fault(&[
            SELECTOR,
            &format!("match: {{clientId: {{regex: '{regex}'}}}}"),
            REJECT,
        ])
    };
    for both in [r"^\pL+-[0-9]+$", "(?i)^checkout", r"^\w{3,8}$"] {
        let manifest = with(both);
        dry_run(&manifest).unwrap_or_else(|stderr| panic!("{both}: the server refused: {stderr}"));
        let (ok, said) = cli_dry_run(&dir, &manifest);
        assert!(ok, "{both}: the CLI refused: {said}");
    }
    // RE2 only: the server takes it, the agent cannot compile it (the fault is Valid=False).
    let quoted = with(r"\Qa.b\E");
    dry_run(&quoted).unwrap_or_else(|stderr| panic!("the server refused \\Q...\\E: {stderr}"));
    let (ok, said) = cli_dry_run(&dir, &quoted);
    assert!(!ok && names(&said, "spec.match.clientId.regex"), "{said}");
    // Rust only: the server refuses it at apply time.
    let verbose = with("(?x) checkout - svc");
    let refused = dry_run(&verbose).expect_err("the server must refuse (?x)");
    assert!(refused.contains("spec.match.clientId.regex"), "{refused}");
    assert!(cli_dry_run(&dir, &verbose).0, "the CLI compiles (?x)");
}

#[test]
fn the_apiserver_accepts_valid_faults() {
    let valid = [
        fault(&[SELECTOR, "action: {type: Drop}"]),
        fault(&[
            "selector: {matchExpressions: [{key: strimzi.io/cluster, operator: In, values: [lab]}, {key: canary, operator: DoesNotExist}]}",
            "mode: Percent",
            "value: 100",
            "ports: [9092, 9093]",
            "match: {apiKeys: [Produce, Fetch, ShareFetch], apiVersions: {min: 3, max: 3}, clientId: {regex: '^checkout-[0-9]+$'}, topics: [orders, orders.v2_dlq-1], groupId: billing, transactionalId: tx-1, sourceCIDRs: [10.77.0.0/24, fd00:77::/64]}",
            "action: {type: Delay, delay: 1m30s, jitter: 0s, probability: 1}",
            "enforcement: Inline",
            "duration: 8760h",
            "paused: true",
        ]),
        fault(&[
            SELECTOR,
            "mode: Fixed",
            "value: 5",
            "match: {clientId: {prefix: batch-}}",
            "action: {type: Reject, probability: 100}",
            "enforcement: Connection",
            "duration: 1h30m",
            "dryRun: true",
        ]),
        fault_named(&"f".repeat(253), &[SELECTOR, REJECT]),
        fault(&[
            SELECTOR,
            "match: {apiKeys: [Produce, Metadata], topics: [orders], clientId: {exact: checkout}}",
            "action: {type: Error, errorCode: NOT_LEADER_OR_FOLLOWER, probability: 50}",
            "handover: NewConnectionsOnly",
        ]),
        fault(&[
            SELECTOR,
            "action: {type: Throttle, throttleTime: 2s}",
            "enforcement: Proxy",
        ]),
        fault(&[
            SELECTOR,
            "match: {apiKeys: [Fetch], topics: [orders]}",
            "action: {type: Corrupt, target: Fetch, fixCrc: true}",
        ]),
        fault(&[SELECTOR, "action: {type: Duplicate}", "handover: Reset"]),
    ];
    for manifest in valid {
        let accepted =
            dry_run(&manifest).unwrap_or_else(|stderr| panic!("{stderr}\nrefused:\n{manifest}"));
        assert!(accepted.contains("(server dry run)"), "{accepted}");
    }
}

fn examples_dir() -> PathBuf {
    workspace_root().join("examples")
}

#[test]
fn every_example_is_accepted_and_targets_the_lab_brokers() {
    let lab = lab();
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).expect("examples/") {
        let path = entry.expect("examples/ entry").path();
        if path.extension().is_none_or(|ext| ext != "yaml") {
            continue;
        }
        let manifest = std::fs::read_to_string(&path).expect("example");
        let accepted = dry_run(&manifest)
            .unwrap_or_else(|stderr| panic!("{} was refused:\n{stderr}", path.display()));
        assert!(accepted.contains("(server dry run)"), "{accepted}");
        // Its selector picks the lab's broker pods in its namespace, and nothing else.
        let applied: serde_json::Value = serde_json::from_str(
            &lab::stdout_with_input(
                lab.kubectl()
                    .args(["apply", "--dry-run=server", "-o", "json", "-f", "-"]),
                &manifest,
            )
            .expect("dry run"),
        )
        .expect("kubectl's JSON");
        let namespace = applied["metadata"]["namespace"]
            .as_str()
            .expect("namespace");
        assert_eq!(namespace, lab.pod_namespace(), "{}", path.display());
        let labels = applied["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap_or_else(|| panic!("{} has no matchLabels", path.display()))
            .iter()
            .map(|(key, value)| format!("{key}={}", value.as_str().expect("label value")))
            .collect::<Vec<_>>()
            .join(",");
        let pods = lab::stdout(
            lab.kubectl()
                .args(["get", "pods", "-n", namespace, "-l", &labels, "-o", "name"]),
        )
        .expect("kubectl get pods");
        let brokers = lab::stdout(lab.kubectl().args([
            "get",
            "pods",
            "-n",
            namespace,
            "-l",
            "app.kubernetes.io/name=kafka",
            "-o",
            "name",
        ]))
        .expect("kubectl get pods");
        assert!(!pods.trim().is_empty(), "{} selects no pod", path.display());
        assert_eq!(pods, brokers, "{} selects other pods", path.display());
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "blackhole-consumer-group.yaml",
            "byzantine-producer.yaml",
            "delay-metadata.yaml",
            "dry-run.yaml",
            "duplicate-produce.yaml",
            "isolate-broker.yaml",
            "leader-election-storm.yaml",
            "probability.yaml",
            "rebalance-storm.yaml",
            "reset-producer.yaml",
            "throttled-client.yaml",
            "timed.yaml",
        ]
    );
}

// examples/ci-chaos-stage.sh

const STAGE_FAULT: &str = "ci-stage-probe";

fn stage_script() -> PathBuf {
    examples_dir().join("ci-chaos-stage.sh")
}

/// The stage script on the lab, with a `KUBECTL` carrying a flag to prove the override.
fn stage(args: &[&str]) -> Command {
    let mut command = lab().host(&stage_script().to_string_lossy());
    command
        .env("KUBECTL", "kubectl --request-timeout=30s")
        .args(args)
        .stdin(Stdio::null());
    command
}

fn output_of(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("could not run {command:?}: {error}"))
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A harmless fault for the stage (it would reset only a client no one runs), in `dir`.
fn stage_fault(dir: &TempDir) -> String {
    let path = dir.path().join("fault.yaml");
    let manifest = fault_named(
        STAGE_FAULT,
        &[
            SELECTOR,
            "match: {clientId: {exact: ci-stage-nobody}}",
            REJECT,
            "duration: 2m",
        ],
    );
    std::fs::write(&path, manifest).expect("write the fault");
    path.to_string_lossy().into_owned()
}

fn stage_fault_exists() -> bool {
    let output = output_of(lab().kubectl().args([
        "get",
        "kafkafault",
        STAGE_FAULT,
        "-n",
        "kafka",
        "--ignore-not-found",
        "-o",
        "name",
    ]));
    assert!(output.status.success(), "{}", stderr_of(&output));
    !output.stdout.is_empty()
}

/// Deletes the stage's fault should a test leave it behind, removing a finalizer no operator
/// is here to process. Whether the script itself removed it is asserted before this runs.
struct RemoveStageFault;

impl Drop for RemoveStageFault {
    fn drop(&mut self) {
        if !stage_fault_exists() {
            return;
        }
        let _ = lab()
            .kubectl()
            .args([
                "patch",
                "kafkafault",
                STAGE_FAULT,
                "-n",
                "kafka",
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ])
            .output();
        let _ = lab()
            .kubectl()
            .args([
                "delete",
                "kafkafault",
                STAGE_FAULT,
                "-n",
                "kafka",
                "--ignore-not-found",
            ])
            .output();
    }
}

/// The stage tests share the fault's one name (and check that it is absent); they must not
/// overlap.
fn stage_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until the stage's fault is gone, for at most `timeout`.
fn stage_fault_gone_within(timeout: Duration) -> bool {
    let start = Instant::now();
    while stage_fault_exists() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

#[test]
fn stage_refuses_bad_arguments_before_touching_the_cluster() {
    let _serial = stage_lock();
    let dir = TempDir::new("ci-stage-args");
    let fault = &stage_fault(&dir);
    let help = output_of(&mut stage(&["--help"]));
    assert!(help.status.success(), "{}", stderr_of(&help));
    let text = String::from_utf8_lossy(&help.stdout);
    for expected in [
        "usage: ci-chaos-stage.sh",
        "--expect-failure",
        "KUBECTL",
        "exit status",
    ] {
        assert!(text.contains(expected), "no {expected} in --help:\n{text}");
    }

    let cases: [(&[&str], &str); 7] = [
        (&[], "no FAULT file given"),
        (&[fault], "no CHECK command given after --"),
        (&[fault, "--"], "no CHECK command given after --"),
        (
            &["--frobnicate", fault, "--", "true"],
            "unknown option --frobnicate",
        ),
        (
            &["--inject-timeout", "5", fault, "--", "true"],
            "5 is not a duration",
        ),
        (&["--recover-timeout"], "--recover-timeout needs a duration"),
        (
            &["/nonexistent/fault.yaml", "--", "true"],
            "is not a readable file",
        ),
    ];
    for (args, says) in cases {
        let output = output_of(&mut stage(args));
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: no {says:?} in:\n{stderr}");
        assert!(
            stderr.contains("usage: "),
            "{args:?}: no usage in:\n{stderr}"
        );
    }
    assert!(!stage_fault_exists(), "a usage error applied the fault");
}

#[test]
fn stage_refuses_a_manifest_that_is_not_one_valid_fault() {
    let _serial = stage_lock();
    let _cleanup = RemoveStageFault;
    let dir = TempDir::new("ci-stage-manifests");
    let marker = dir.path().join("check-ran");
    let check = ["--", "touch", &marker.to_string_lossy()].map(str::to_owned);

    let not_a_fault = dir.path().join("configmap.yaml");
    std::fs::write(
        &not_a_fault,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ci-stage-not-a-fault, namespace: kafka}\n",
    )
    .unwrap();
    let two_faults = dir.path().join("two.yaml");
    std::fs::write(
        &two_faults,
        format!(
            "{}---\n{}",
            fault_named(STAGE_FAULT, &[SELECTOR, REJECT]),
            fault_named("ci-stage-second", &[SELECTOR, REJECT])
        ),
    )
    .unwrap();
    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        fault_named(STAGE_FAULT, &[SELECTOR, "action: {type: Delay}"]),
    )
    .unwrap();

    for (file, status, says) in [
        (
            &not_a_fault,
            2,
            "must hold exactly one KafkaFault; it holds: configmap/ci-stage-not-a-fault",
        ),
        (&two_faults, 2, "must hold exactly one KafkaFault"),
        (&invalid, 3, "spec.action.delay"),
    ] {
        let file = file.to_string_lossy();
        let mut args = vec![file.as_ref()];
        args.extend(check.iter().map(String::as_str));
        let output = output_of(&mut stage(&args));
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(status), "{file}: {stderr}");
        assert!(stderr.contains(says), "{file}: no {says:?} in:\n{stderr}");
        assert!(!marker.exists(), "{file}: the check ran");
    }
    assert!(!stage_fault_exists(), "a refused manifest was applied");
    let configmap = output_of(lab().kubectl().args([
        "get",
        "configmap",
        "ci-stage-not-a-fault",
        "-n",
        "kafka",
        "--ignore-not-found",
        "-o",
        "name",
    ]));
    assert!(configmap.stdout.is_empty(), "the ConfigMap was created");
}

#[test]
fn stage_times_out_clearly_without_an_operator_and_deletes_its_fault() {
    let _serial = stage_lock();
    let _cleanup = RemoveStageFault;
    let dir = TempDir::new("ci-stage-timeout");
    let fault = stage_fault(&dir);
    let marker = dir.path().join("check-ran");
    let started = Instant::now();
    let output = output_of(&mut stage(&[
        "--inject-timeout",
        "3s",
        "--recover-timeout=30s",
        &fault,
        "--",
        "touch",
        &marker.to_string_lossy(),
    ]));
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    for expected in [
        "kafkafault/ci-stage-probe was not Injected within 3s",
        "has no status at all: is the kafka-shock operator running?",
        "deleting kafkafault/ci-stage-probe in namespace kafka",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    assert!(
        !marker.exists(),
        "the check ran although the fault was never injected"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        !stage_fault_exists(),
        "the stage left its fault behind:\n{stderr}"
    );
}

/// Sends SIGTERM to `child` (the stage script, whose trap then removes the fault).
fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn stage_deletes_its_fault_when_terminated() {
    let _serial = stage_lock();
    let _cleanup = RemoveStageFault;
    let dir = TempDir::new("ci-stage-term");
    let fault = stage_fault(&dir);
    let mut child = stage(&[&fault, "--", "true"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the stage");
    let start = Instant::now();
    while !stage_fault_exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stage did not apply its fault"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let it reach its wait for Injected (120 s by default), then interrupt it as a CI runner
    // cancelling the job would.
    std::thread::sleep(Duration::from_secs(1));
    terminate(&child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the stage") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the stage did not end within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("stage output");
    let stderr = stderr_of(&output);
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("terminated"), "{stderr}");
    assert!(
        stage_fault_gone_within(Duration::from_secs(5)),
        "the stage left its fault behind:\n{stderr}"
    );
}
