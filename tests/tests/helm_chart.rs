//! The Helm chart `charts/kafka-shock` on the lab: it lints, renders, rejects bad values through
//! its values.schema.json, ships exactly the CRDs crdgen wrote, and installs into the lab's real
//! kube-apiserver, whose admission and RBAC then judge every object: the CRDs become
//! Established, the examples pass server-side validation (schema and CEL), an invalid fault is
//! rejected, and each ServiceAccount can do what its part needs and nothing it must not.
//! `helm uninstall` and the namespace's deletion (by the lab's namespace controller) then leave
//! the cluster as it was.
//!
//! The release here never pulls an image (`pullPolicy: Never`): the pods it runs are the
//! end-to-end tests' business (tests/tests/only_a_real_node.rs).

use std::path::PathBuf;
use std::process::{Command, Output};

use lab::{Lab, TempDir, workspace_root};

const RELEASE: &str = "kafka-shock";
const NAMESPACE: &str = "kafka-shock";
const AGENT_SA: &str = "system:serviceaccount:kafka-shock:kafka-shock-agent";
const OPERATOR_SA: &str = "system:serviceaccount:kafka-shock:kafka-shock-operator";
/// The generated CRD files, as crds/ and the chart's crds/ both name them, and their objects.
const CRDS: [(&str, &str); 2] = [
    ("kafkafaults.yaml", "kafkafaults.kafkashock.io"),
    (
        "kafkafaultinjections.yaml",
        "kafkafaultinjections.kafkashock.io",
    ),
];

fn chart() -> PathBuf {
    workspace_root().join("charts/kafka-shock")
}

fn chart_arg() -> String {
    chart().to_string_lossy().into_owned()
}

fn stdout_of(command: &mut Command) -> String {
    lab::stdout(command).unwrap_or_else(|error| panic!("{error}"))
}

fn output_of(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("could not run {command:?}: {error}"))
}

/// Runs a command that must fail and returns its stderr.
fn failure_of(command: &mut Command) -> String {
    let output = output_of(command);
    assert!(
        !output.status.success(),
        "{command:?} succeeded but should have failed; stdout:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_of(command: &mut Command) -> serde_json::Value {
    let text = stdout_of(command);
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error} in:\n{text}"))
}

/// The lab apiserver's version, so `helm template` checks the chart's kubeVersion against it.
fn kube_version(lab: &Lab) -> String {
    let version = json_of(lab.kubectl().args(["get", "--raw", "/version"]));
    version["gitVersion"]
        .as_str()
        .expect("gitVersion")
        .to_owned()
}

/// `helm template` of the chart as the test installs it, with extra `--set` values.
fn render(lab: &Lab, sets: &[&str]) -> String {
    let mut helm = lab.host("helm");
    helm.args(["template", RELEASE, &chart_arg(), "-n", NAMESPACE])
        .args(["--kube-version", &kube_version(lab)]);
    for set in sets {
        helm.args(["--set", set]);
    }
    stdout_of(&mut helm)
}

/// How many rendered documents are of `kind`.
fn count_kind(manifest: &str, kind: &str) -> usize {
    manifest
        .lines()
        .filter(|line| line.strip_prefix("kind: ") == Some(kind))
        .count()
}

#[test]
fn chart_ships_the_generated_crds_byte_for_byte() {
    let lab = Lab::up().expect("lab up");
    let generated: Vec<Vec<u8>> = CRDS
        .iter()
        .map(|(file, _)| {
            let path = workspace_root().join("crds").join(file);
            std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        })
        .collect();
    // The chart's crds/ holds symlinks into crds/; should anyone replace one with a copy, the
    // copy must still be what crdgen wrote.
    for ((file, _), generated) in CRDS.iter().zip(&generated) {
        let in_chart = chart().join("crds").join(file);
        let bytes = std::fs::read(&in_chart)
            .unwrap_or_else(|error| panic!("{}: {error}", in_chart.display()));
        assert!(
            bytes == *generated,
            "{} differs from crds/{file}: link it (ln -sf ../../../crds/{file}) or regenerate",
            in_chart.display()
        );
    }
    // Helm reads through the symlinks: what it would install is each generated file.
    let shown = stdout_of(lab.host("helm").args(["show", "crds", &chart_arg()]));
    for ((file, _), generated) in CRDS.iter().zip(&generated) {
        assert!(
            shown.contains(String::from_utf8_lossy(generated).trim_end()),
            "`helm show crds` lacks crds/{file}"
        );
    }
    // And so does `helm package`: the archive carries the files' contents, not links.
    let out = TempDir::new("helm-package");
    let out_dir = out.path().to_string_lossy().into_owned();
    stdout_of(
        lab.host("helm")
            .args(["package", &chart_arg(), "--destination", &out_dir]),
    );
    let archive = out.path().join("kafka-shock-0.1.0.tgz");
    stdout_of(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(out.path()),
    );
    for ((file, _), generated) in CRDS.iter().zip(&generated) {
        let packaged = out.path().join("kafka-shock/crds").join(file);
        let metadata = std::fs::symlink_metadata(&packaged)
            .unwrap_or_else(|error| panic!("{}: {error}", packaged.display()));
        assert!(
            metadata.is_file(),
            "{} is no plain file",
            packaged.display()
        );
        assert!(
            std::fs::read(&packaged).expect("packaged CRD") == *generated,
            "packaged crds/{file} differs from crds/{file}"
        );
    }
    let listed = stdout_of(Command::new("tar").arg("-tzf").arg(&archive));
    assert!(
        !listed.lines().any(|file| file.ends_with("Dockerfile")),
        "the image recipes (images/) are no part of the chart:\n{listed}"
    );
}

#[test]
fn chart_lints_and_renders() {
    let lab = Lab::up().expect("lab up");
    for sets in [
        vec![],
        vec![
            "agent.privileged=true",
            "metrics.serviceMonitor.enabled=true",
        ],
    ] {
        let mut lint = lab.host("helm");
        lint.args(["lint", &chart_arg(), "--strict"]);
        for set in &sets {
            lint.args(["--set", set]);
        }
        let report = stdout_of(&mut lint);
        assert!(report.contains("0 chart(s) failed"), "{report}");
    }

    let manifest = render(&lab, &[]);
    for (kind, count) in [
        ("Deployment", 1),
        ("DaemonSet", 1),
        ("ServiceAccount", 2),
        ("ClusterRole", 2),
        ("ClusterRoleBinding", 2),
        ("Service", 2),
        ("ServiceMonitor", 0),
        ("ValidatingAdmissionPolicy", 1),
        ("ValidatingAdmissionPolicyBinding", 1),
    ] {
        assert_eq!(
            count_kind(&manifest, kind),
            count,
            "{kind}s in:\n{manifest}"
        );
    }
    for expected in [
        "image: \"ghcr.io/kafka-shock/operator:0.1.0\"",
        "image: \"ghcr.io/kafka-shock/agent:0.1.0\"",
        "- --metrics-addr=:8080",
        "- --node-name=$(NODE_NAME)",
        "add: [\"NET_ADMIN\", \"NET_RAW\", \"SYS_ADMIN\", \"SYS_PTRACE\"]",
    ] {
        assert!(manifest.contains(expected), "no {expected} in:\n{manifest}");
    }

    let monitored = render(&lab, &["metrics.serviceMonitor.enabled=true"]);
    assert_eq!(count_kind(&monitored, "ServiceMonitor"), 2, "{monitored}");
    assert!(monitored.contains("apiVersion: monitoring.coreos.com/v1"));

    let without_agent = render(&lab, &["agent.enabled=false"]);
    assert_eq!(
        count_kind(&without_agent, "DaemonSet"),
        0,
        "{without_agent}"
    );
    assert_eq!(count_kind(&without_agent, "Service"), 1, "{without_agent}");
    assert_eq!(
        count_kind(&without_agent, "ClusterRole"),
        2,
        "{without_agent}"
    );

    let privileged = render(&lab, &["agent.privileged=true"]);
    assert!(privileged.contains("privileged: true"), "{privileged}");
    assert!(!privileged.contains("NET_ADMIN"), "{privileged}");

    // The guard rails reach the operator as flags, and the allowed ports an admission policy
    // of their own; host-network targets reach the agent as its flag.
    let railed = render(
        &lab,
        &[
            "faultNamespaces={kafka,kafka-staging}",
            "allowedPorts={9092,9093}",
            "agent.allowHostNetworkTargets=true",
        ],
    );
    for expected in [
        "- --fault-namespaces=kafka,kafka-staging",
        "- --allowed-ports=9092,9093",
        "- --allow-host-network-targets",
        "name: kafka-shock-allowed-ports",
        "expression: \"[9092, 9093]\"",
    ] {
        assert!(railed.contains(expected), "no {expected} in:\n{railed}");
    }
    assert_eq!(count_kind(&railed, "ValidatingAdmissionPolicy"), 2);
    assert!(
        !manifest.contains("--allow-host-network-targets") && !manifest.contains("--allowed-ports")
    );
    let unguarded = render(
        &lab,
        &["admissionPolicies.enabled=false", "allowedPorts={9092}"],
    );
    assert_eq!(count_kind(&unguarded, "ValidatingAdmissionPolicy"), 0);
    assert_eq!(
        count_kind(&unguarded, "ValidatingAdmissionPolicyBinding"),
        0
    );
    assert!(
        unguarded.contains("- --allowed-ports=9092"),
        "the operator still checks"
    );

    let tagged = render(&lab, &["operator.image.tag=dev", "agent.image.tag=dev"]);
    assert!(
        tagged.contains("ghcr.io/kafka-shock/operator:dev"),
        "{tagged}"
    );
    assert!(tagged.contains("ghcr.io/kafka-shock/agent:dev"), "{tagged}");
}

#[test]
fn values_schema_rejects_bad_values_naming_them() {
    let lab = Lab::up().expect("lab up");
    for (set, names) in [
        (
            "agent.privileged=maybe",
            ["/agent/privileged", "want boolean"],
        ),
        ("agent.enabled=yes", ["/agent/enabled", "want boolean"]),
        (
            "agent.image.pullPolicy=Sometimes",
            [
                "/agent/image/pullPolicy",
                "'Always', 'IfNotPresent', 'Never'",
            ],
        ),
        (
            "operator.metricsPort=0",
            ["/operator/metricsPort", "want 1"],
        ),
        ("operator.replicas=2", ["/operator/replicas", "want 1"]),
        (
            "agent.tolerations[0].operator=Maybe",
            ["/agent/tolerations/0/operator", "'Exists', 'Equal'"],
        ),
        (
            "metrics.serviceMonitor.interval=often",
            ["/metrics/serviceMonitor/interval", "'often'"],
        ),
        (
            "agent.privilged=true",
            ["/agent", "'privilged' not allowed"],
        ),
        ("agent.lease=30 seconds", ["/agent/lease", "'30 seconds'"]),
        ("allowedPorts={0}", ["/allowedPorts/0", "want 1"]),
        (
            "faultNamespaces={Not_A_Namespace}",
            ["/faultNamespaces/0", "does not match pattern"],
        ),
        (
            "admissionPolicies.enabled=maybe",
            ["/admissionPolicies/enabled", "want boolean"],
        ),
        (
            "agent.allowHostNetworkTargets=yes",
            ["/agent/allowHostNetworkTargets", "want boolean"],
        ),
    ] {
        let stderr =
            failure_of(
                lab.host("helm")
                    .args(["template", RELEASE, &chart_arg(), "--set", set]),
            );
        assert!(
            stderr.contains("values don't meet the specifications of the schema"),
            "--set {set}: {stderr}"
        );
        for name in names {
            assert!(stderr.contains(name), "--set {set}: no {name} in {stderr}");
        }
    }
}

/// What the install test must undo, also when it panics: the release, the CRDs it installed
/// (helm uninstall keeps crds/), the namespaces it created.
struct Installed<'a> {
    lab: &'a Lab,
    crds: bool,
    namespaces: Vec<String>,
}

impl Installed<'_> {
    fn uninstall(&mut self) {
        let release = output_of(
            self.lab
                .host("helm")
                .args(["status", RELEASE, "-n", NAMESPACE]),
        );
        if release.status.success() {
            stdout_of(
                self.lab
                    .host("helm")
                    .args(["uninstall", RELEASE, "-n", NAMESPACE]),
            );
        }
        if std::mem::take(&mut self.crds) {
            for (_, crd) in CRDS {
                stdout_of(self.lab.kubectl().args([
                    "delete",
                    "crd",
                    crd,
                    "--ignore-not-found",
                    "--timeout=60s",
                ]));
            }
        }
        for namespace in std::mem::take(&mut self.namespaces) {
            delete_namespace(self.lab, &namespace);
        }
    }
}

impl Drop for Installed<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Best effort: a second panic would abort and hide the first.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.uninstall()));
        } else {
            self.uninstall();
        }
    }
}

/// Deletes a namespace once only what the cluster itself puts in every namespace is left in it
/// (the `default` ServiceAccount, the `kube-root-ca.crt` ConfigMap) and pods still terminating;
/// waits until the lab's namespace controller has finalized it.
fn delete_namespace(lab: &Lab, namespace: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let leftovers = stdout_of(lab.kubectl().args([
            "get",
            "all,secrets,configmaps,serviceaccounts,roles,rolebindings",
            "-n",
            namespace,
            "-o",
            "name",
            "--ignore-not-found",
        ]));
        let unexpected: Vec<&str> = leftovers
            .lines()
            .filter(|object| {
                !object.starts_with("pod/")
                    && *object != "configmap/kube-root-ca.crt"
                    && *object != "serviceaccount/default"
            })
            .collect();
        if unexpected.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "namespace {namespace} still holds:\n{leftovers}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    stdout_of(lab.kubectl().args([
        "delete",
        "namespace",
        namespace,
        "--ignore-not-found",
        "--timeout=120s",
    ]));
}

fn exists(lab: &Lab, args: &[&str]) -> bool {
    output_of(lab.kubectl().arg("get").args(args))
        .status
        .success()
}

/// Server-side dry-run apply of a manifest; Ok(stdout) or Err(stderr).
fn dry_run_apply(lab: &Lab, manifest: &str) -> Result<String, String> {
    lab::stdout_with_input(
        lab.kubectl().args(["apply", "--dry-run=server", "-f", "-"]),
        manifest,
    )
    .map_err(|error| error.to_string())
}

/// `kubectl auth can-i` as a ServiceAccount, in the namespace the brokers live in.
fn can_i(lab: &Lab, user: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((resource, subresource)) => (resource, Some(subresource)),
        None => (resource, None),
    };
    let mut kubectl = lab.kubectl();
    kubectl.args([
        "auth", "can-i", verb, resource, "-n", namespace, "--as", user,
    ]);
    if let Some(subresource) = subresource {
        kubectl.arg(format!("--subresource={subresource}"));
    }
    let output = output_of(&mut kubectl);
    match String::from_utf8_lossy(&output.stdout).trim() {
        "yes" => true,
        "no" => false,
        other => panic!(
            "{kubectl:?}: {other} {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

#[test]
fn chart_installs_on_the_lab_apiserver_with_least_privilege() {
    let lab = Lab::up().expect("lab up");
    let _exclusive = lab::exclusive();
    let release = output_of(lab.host("helm").args(["status", RELEASE, "-n", NAMESPACE]));
    assert!(
        !release.status.success() && !exists(&lab, &["namespace", NAMESPACE]),
        "release {RELEASE} or namespace {NAMESPACE} already in the lab; this test installs its own"
    );
    // Helm skips CRDs that exist: remove only what this test installed.
    let crds_were_there = CRDS.iter().any(|(_, crd)| exists(&lab, &["crd", crd]));
    let mut installed = Installed {
        lab: &lab,
        crds: !crds_were_there,
        namespaces: vec![NAMESPACE.to_owned()],
    };

    let notes = stdout_of(lab.host("helm").args([
        "install",
        RELEASE,
        &chart_arg(),
        "-n",
        NAMESPACE,
        "--create-namespace",
        "--wait=false",
        "--set",
        "agent.image.pullPolicy=Never",
        "--set",
        "operator.image.pullPolicy=Never",
    ]));
    assert!(notes.contains("STATUS: deployed"), "{notes}");
    assert!(notes.contains("kubectl get kf -A -w"), "{notes}");
    assert!(notes.contains("--for=condition=Injected"), "{notes}");
    for (_, crd) in CRDS {
        stdout_of(lab.kubectl().args([
            "wait",
            "--for=condition=Established",
            &format!("crd/{crd}"),
            "--timeout=30s",
        ]));
    }

    // The admission policy that keeps injections the operator's, bound, with no type errors.
    let policy = json_of(lab.kubectl().args([
        "get",
        "validatingadmissionpolicy",
        "kafka-shock-injection-writers",
        "-o",
        "json",
    ]));
    let variables = policy["spec"]["variables"].to_string();
    assert!(
        variables.contains(&format!("'{OPERATOR_SA}'")),
        "{variables}"
    );
    assert!(variables.contains(&format!("'{AGENT_SA}'")), "{variables}");
    assert_eq!(
        policy["status"]["typeChecking"]["expressionWarnings"],
        serde_json::Value::Null,
        "{policy}"
    );
    let binding = json_of(lab.kubectl().args([
        "get",
        "validatingadmissionpolicybinding",
        "kafka-shock-injection-writers",
        "-o",
        "json",
    ]));
    assert_eq!(
        binding["spec"]["validationActions"],
        serde_json::json!(["Deny"])
    );

    // What the apiserver stored, defaults applied.
    let daemonset = json_of(lab.kubectl().args([
        "get",
        "daemonset",
        "kafka-shock-agent",
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ]));
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_ne!(pod["hostNetwork"], true);
    assert_eq!(pod["serviceAccountName"], "kafka-shock-agent");
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    let agent = &pod["containers"][0];
    assert_eq!(
        agent["command"],
        serde_json::json!([
            "kafka-shock",
            "agent",
            "--node-name=$(NODE_NAME)",
            "--metrics-addr=:9090",
            "--lease=30s"
        ])
    );
    assert_eq!(
        agent["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let security = &agent["securityContext"];
    assert_eq!(security["runAsUser"], 0);
    assert_ne!(security["privileged"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        security["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"])
    );
    let mounts = agent["volumeMounts"].as_array().expect("mounts");
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|mount| mount["mountPath"] == path)
            .unwrap_or_else(|| panic!("no mount at {path}: {mounts:?}"))
    };
    assert_eq!(mount("/run/netns")["mountPropagation"], "HostToContainer");
    mount("/run/xtables.lock");
    // hostPID gives the agent the node's processes in its own /proc: no host /proc is mounted.
    let volumes = pod["volumes"].as_array().expect("volumes");
    assert!(
        !volumes
            .iter()
            .any(|volume| volume["hostPath"]["path"] == "/proc"),
        "{volumes:?}"
    );

    let deployment = json_of(lab.kubectl().args([
        "get",
        "deployment",
        "kafka-shock-operator",
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ]));
    let operator = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        operator["args"],
        serde_json::json!(["--metrics-addr=:8080"])
    );
    assert_eq!(operator["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(operator["readinessProbe"]["httpGet"]["path"], "/healthz");
    let security = &operator["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // The privileged variant of the DaemonSet passes the apiserver's validation too.
    let privileged = render(&lab, &["agent.privileged=true"]);
    let agent_only: String = privileged
        .split("\n---\n")
        .filter(|document| document.contains("\nkind: DaemonSet\n"))
        .collect();
    dry_run_apply(&lab, &agent_only).unwrap_or_else(|error| panic!("{error}"));

    // The examples pass the server's schema and CEL validation, in their own namespace.
    for example in ["reset-producer", "blackhole-consumer-group", "dry-run"] {
        let path = workspace_root().join(format!("examples/{example}.yaml"));
        let manifest = std::fs::read_to_string(&path).expect("example");
        let namespace = manifest
            .lines()
            .find_map(|line| line.trim().strip_prefix("namespace: "))
            .expect("example namespace")
            .to_owned();
        if !exists(&lab, &["namespace", &namespace]) {
            stdout_of(lab.kubectl().args(["create", "namespace", &namespace]));
            installed.namespaces.push(namespace);
        }
        // Discovery may trail Established for a moment.
        let mut attempt = 0;
        let applied = loop {
            match dry_run_apply(&lab, &manifest) {
                Err(error) if error.contains("no matches for kind") && attempt < 20 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                result => break result,
            }
        };
        let applied = applied.unwrap_or_else(|error| panic!("{example}: {error}"));
        assert!(applied.contains("(server dry run)"), "{applied}");
    }

    // An invalid fault is rejected with the schema's and CEL's messages.
    let rejected = dry_run_apply(
        &lab,
        "apiVersion: kafkashock.io/v1alpha1
kind: KafkaFault
metadata: {name: invalid, namespace: kafka}
spec:
  selector: {matchLabels: {strimzi.io/cluster: my-cluster}}
  match:
    clientId: {exact: checkout-svc, prefix: checkout-}
  action: {type: Reject, probability: 200}
",
    )
    .expect_err("an invalid fault was accepted");
    for message in [
        "spec.action.probability",
        "less than or equal to 100",
        "spec.match.clientId",
        "set exactly one of exact, prefix or regex",
    ] {
        assert!(rejected.contains(message), "no {message} in {rejected}");
    }

    // Each part's ServiceAccount gets what it needs, and not what it must not have.
    let broker_namespace = lab.pod_namespace().to_owned();
    for (user, verb, resource, allowed) in [
        (
            AGENT_SA,
            "watch",
            "kafkafaultinjections.kafkashock.io",
            true,
        ),
        (
            AGENT_SA,
            "patch",
            "kafkafaultinjections.kafkashock.io/status",
            true,
        ),
        (
            AGENT_SA,
            "update",
            "kafkafaultinjections.kafkashock.io/finalizers",
            true,
        ),
        (AGENT_SA, "get", "pods", true),
        (AGENT_SA, "create", "events.events.k8s.io", true),
        (AGENT_SA, "delete", "pods", false),
        (AGENT_SA, "create", "kafkafaults.kafkashock.io", false),
        (
            AGENT_SA,
            "create",
            "kafkafaultinjections.kafkashock.io",
            false,
        ),
        (
            AGENT_SA,
            "delete",
            "kafkafaultinjections.kafkashock.io",
            false,
        ),
        (AGENT_SA, "get", "secrets", false),
        (
            OPERATOR_SA,
            "create",
            "kafkafaultinjections.kafkashock.io",
            true,
        ),
        (
            OPERATOR_SA,
            "delete",
            "kafkafaultinjections.kafkashock.io",
            true,
        ),
        (
            OPERATOR_SA,
            "patch",
            "kafkafaults.kafkashock.io/status",
            true,
        ),
        (
            OPERATOR_SA,
            "update",
            "kafkafaults.kafkashock.io/finalizers",
            true,
        ),
        (OPERATOR_SA, "list", "nodes", true),
        (OPERATOR_SA, "create", "events", true),
        (OPERATOR_SA, "delete", "pods", false),
        (OPERATOR_SA, "create", "kafkafaults.kafkashock.io", false),
        (OPERATOR_SA, "delete", "kafkafaults.kafkashock.io", false),
        (
            OPERATOR_SA,
            "patch",
            "kafkafaultinjections.kafkashock.io/status",
            false,
        ),
        (OPERATOR_SA, "get", "secrets", false),
    ] {
        assert_eq!(
            can_i(&lab, user, verb, resource, &broker_namespace),
            allowed,
            "{user} {verb} {resource}"
        );
    }

    // Uninstall leaves the lab as it was found.
    installed.uninstall();
    drop(installed);
    let release = output_of(lab.host("helm").args(["status", RELEASE, "-n", NAMESPACE]));
    assert!(!release.status.success(), "release {RELEASE} still there");
    for object in [
        "clusterrole/kafka-shock-agent",
        "clusterrole/kafka-shock-operator",
        "clusterrolebinding/kafka-shock-agent",
        "clusterrolebinding/kafka-shock-operator",
        "validatingadmissionpolicy/kafka-shock-injection-writers",
        "validatingadmissionpolicybinding/kafka-shock-injection-writers",
    ] {
        assert!(!exists(&lab, &[object]), "{object} survived helm uninstall");
    }
    assert!(!exists(&lab, &["namespace", NAMESPACE]));
    if !crds_were_there {
        for (_, crd) in CRDS {
            assert!(!exists(&lab, &["crd", crd]), "{crd} left behind");
        }
    }
}
