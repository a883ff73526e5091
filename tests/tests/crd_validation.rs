//! Bad input on the lab's real kube-apiserver, with the generated CRDs installed: a table of
//! invalid KafkaFaults, each a distinct mistake a user makes, must be rejected at apply time
//! with a message naming the offending field; valid faults and every example in `examples/`
//! must be accepted. All of it is `kubectl apply --dry-run=server --validate=strict`, so the
//! server runs its whole admission chain (schema, CEL rules, strict field validation) and
//! stores nothing.
//!
//! Mistakes the server cannot catch, so not in the table:
//! - runtime-only: the operator sets Valid=False. A `match.clientId.regex` that does not
//!   compile: CEL has no "is this a regex" check, and Go's RE2 and Rust's regex syntaxes differ
//!   anyway; `KafkaFaultSpec::validate` compiles it.
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

use lab::{Lab, LabError, TempDir, workspace_root};

const CRD_FILES: [&str; 2] = ["crds/kafkafaults.yaml", "crds/kafkafaultinjections.yaml"];
const CRD_NAMES: [&str; 2] = [
    "crd/kafkafaults.kafkashock.io",
    "crd/kafkafaultinjections.kafkashock.io",
];

/// The lab's broker pods, as the examples select them.
const SELECTOR: &str =
    r#"selector: {matchLabels: {strimzi.io/cluster: lab, strimzi.io/broker-role: "true"}}"#;
const REJECT: &str = "action: {type: Reject}";

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

/// A KafkaFault named `name` in the lab's broker namespace, its spec made of `lines` (each a
/// top-level spec field in YAML flow style).
fn fault_named(name: &str, lines: &[&str]) -> String {
    let mut manifest = format!(
        "apiVersion: kafkashock.io/v1alpha1\nkind: KafkaFault\nmetadata: {{name: {name}, namespace: kafka}}\nspec:\n"
    );
    for line in lines {
        manifest.push_str("  ");
        manifest.push_str(line);
        manifest.push('\n');
    }
    manifest
}

fn fault(lines: &[&str]) -> String {
    fault_named("validation-probe", lines)
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

/// One mistake: what it is, the manifest, the field path the server must name, and a piece of
/// what it must say about it.
struct Mistake {
    what: &'static str,
    manifest: String,
    field: &'static str,
    says: &'static str,
}

fn mistake(what: &'static str, lines: &[&str], field: &'static str, says: &'static str) -> Mistake {
    Mistake {
        what,
        manifest: fault(lines),
        field,
        says,
    }
}

fn mistakes() -> Vec<Mistake> {
    let long_topic = format!("match: {{topics: [{}]}}", "t".repeat(250));
    let long_group = format!("match: {{groupId: {}}}", "g".repeat(256));
    let long_client = format!("match: {{clientId: {{exact: {}}}}}", "c".repeat(256));
    let long_name = "f".repeat(254);
    let delay = "action: {type: Delay, delay: 500ms}";
    let mut table = vec![
        // The selector.
        mistake("no selector", &[REJECT], "spec.selector", "Required value"),
        mistake(
            "an empty selector",
            &["selector: {}", REJECT],
            "spec.selector",
            "an empty selector would target every pod",
        ),
        mistake(
            "a selector with empty matchLabels",
            &["selector: {matchLabels: {}}", REJECT],
            "spec.selector",
            "selector must set matchLabels or matchExpressions",
        ),
        mistake(
            "an unquoted true as a label value",
            &[
                "selector: {matchLabels: {strimzi.io/broker-role: true}}",
                REJECT,
            ],
            "spec.selector.matchLabels.strimzi.io/broker-role",
            "must be of type string",
        ),
        mistake(
            "an unknown matchExpressions operator",
            &[
                "selector: {matchExpressions: [{key: strimzi.io/cluster, operator: Equals, values: [lab]}]}",
                REJECT,
            ],
            "spec.selector.matchExpressions",
            "operator must be In, NotIn, Exists or DoesNotExist",
        ),
        mistake(
            "matchExpressions In without values",
            &[
                "selector: {matchExpressions: [{key: strimzi.io/cluster, operator: In}]}",
                REJECT,
            ],
            "spec.selector.matchExpressions",
            "with operator In or NotIn need values",
        ),
        mistake(
            "matchExpressions Exists with values",
            &[
                "selector: {matchExpressions: [{key: strimzi.io/cluster, operator: Exists, values: [lab]}]}",
                REJECT,
            ],
            "spec.selector.matchExpressions",
            "with operator Exists or DoesNotExist take no values",
        ),
        // Mode and value.
        mistake(
            "an unknown mode",
            &[SELECTOR, "mode: Some", REJECT],
            "spec.mode",
            "Unsupported value: \"Some\"",
        ),
        mistake(
            "mode Fixed without a value",
            &[SELECTOR, "mode: Fixed", REJECT],
            "spec.value",
            "value is required when mode is Fixed or Percent",
        ),
        mistake(
            "mode Percent without a value",
            &[SELECTOR, "mode: Percent", REJECT],
            "spec.value",
            "value is required when mode is Fixed or Percent",
        ),
        mistake(
            "mode Percent above 100",
            &[SELECTOR, "mode: Percent", "value: 101", REJECT],
            "spec.value",
            "value is a percentage (1-100) when mode is Percent",
        ),
        mistake(
            "mode Fixed with value 0",
            &[SELECTOR, "mode: Fixed", "value: 0", REJECT],
            "spec.value",
            "greater than or equal to 1",
        ),
        mistake(
            "a value with mode One",
            &[SELECTOR, "mode: One", "value: 2", REJECT],
            "spec.value",
            "value is only used when mode is Fixed or Percent",
        ),
        // Ports.
        mistake(
            "no ports",
            &[SELECTOR, "ports: []", REJECT],
            "spec.ports",
            "should have at least 1 items",
        ),
        mistake(
            "port 0",
            &[SELECTOR, "ports: [0]", REJECT],
            "spec.ports[0]",
            "greater than or equal to 1",
        ),
        mistake(
            "port 70000",
            &[SELECTOR, "ports: [9092, 70000]", REJECT],
            "spec.ports[1]",
            "less than or equal to 65535",
        ),
        mistake(
            "a port listed twice",
            &[SELECTOR, "ports: [9092, 9093, 9092]", REJECT],
            "spec.ports[2]",
            "Duplicate value: 9092",
        ),
        mistake(
            "ports as a string",
            &[SELECTOR, "ports: \"9092\"", REJECT],
            "spec.ports",
            "must be of type array",
        ),
        // The match.
        mistake(
            "a misspelt API name",
            &[SELECTOR, "match: {apiKeys: [Produse]}", REJECT],
            "spec.match.apiKeys[0]",
            "Unsupported value: \"Produse\"",
        ),
        mistake(
            "an API name in the wrong case",
            &[SELECTOR, "match: {apiKeys: [Fetch, metadata]}", REJECT],
            "spec.match.apiKeys[1]",
            "Unsupported value: \"metadata\"",
        ),
        mistake(
            "apiVersions min above max",
            &[SELECTOR, "match: {apiVersions: {min: 9, max: 3}}", REJECT],
            "spec.match.apiVersions",
            "min must not be greater than max",
        ),
        mistake(
            "a negative apiVersions min",
            &[SELECTOR, "match: {apiVersions: {min: -1}}", REJECT],
            "spec.match.apiVersions.min",
            "greater than or equal to 0",
        ),
        mistake(
            "an apiVersions max beyond int16",
            &[SELECTOR, "match: {apiVersions: {max: 40000}}", REJECT],
            "spec.match.apiVersions.max",
            "less than or equal to 32767",
        ),
        mistake(
            "clientId with exact and prefix",
            &[
                SELECTOR,
                "match: {clientId: {exact: checkout-svc, prefix: checkout-}}",
                REJECT,
            ],
            "spec.match.clientId",
            "set exactly one of exact, prefix or regex",
        ),
        mistake(
            "clientId with none of exact, prefix and regex",
            &[SELECTOR, "match: {clientId: {}}", REJECT],
            "spec.match.clientId",
            "set exactly one of exact, prefix or regex",
        ),
        mistake(
            "clientId as a plain string",
            &[SELECTOR, "match: {clientId: checkout-svc}", REJECT],
            "spec.match.clientId",
            "must be of type object",
        ),
        mistake(
            "an over-long clientId",
            &[SELECTOR, &long_client, REJECT],
            "spec.match.clientId.exact",
            "Too long",
        ),
        mistake(
            "an empty topic name",
            &[SELECTOR, "match: {topics: [orders, \"\"]}", REJECT],
            "spec.match.topics[1]",
            "should be at least 1 chars long",
        ),
        mistake(
            "a topic name over 249 characters",
            &[SELECTOR, &long_topic, REJECT],
            "spec.match.topics[0]",
            "Too long",
        ),
        mistake(
            "a topic name with a space",
            &[SELECTOR, "match: {topics: [orders events]}", REJECT],
            "spec.match.topics[0]",
            "should match '^[a-zA-Z0-9._-]+$'",
        ),
        mistake(
            "the topic name ..",
            &[SELECTOR, "match: {topics: [..]}", REJECT],
            "spec.match.topics",
            "'.' and '..' are not valid Kafka topic names",
        ),
        mistake(
            "topics as a string",
            &[SELECTOR, "match: {topics: orders}", REJECT],
            "spec.match.topics",
            "must be of type array",
        ),
        mistake(
            "an over-long groupId",
            &[SELECTOR, &long_group, REJECT],
            "spec.match.groupId",
            "Too long",
        ),
        mistake(
            "a source address without a prefix length",
            &[
                SELECTOR,
                "match: {sourceCIDRs: [10.0.0.0/8, 10.77.0.100]}",
                REJECT,
            ],
            "spec.match.sourceCIDRs",
            "each entry must be a CIDR such as 10.0.0.0/8",
        ),
        mistake(
            "a CIDR with prefix length 33",
            &[SELECTOR, "match: {sourceCIDRs: [10.0.0.0/33]}", REJECT],
            "spec.match.sourceCIDRs",
            "each entry must be a CIDR such as 10.0.0.0/8",
        ),
        // The action.
        mistake("no action", &[SELECTOR], "spec.action", "Required value"),
        mistake(
            "an unknown action type",
            &[SELECTOR, "action: {type: Kill}"],
            "spec.action.type",
            "Unsupported value: \"Kill\"",
        ),
        mistake(
            "an action without a type",
            &[SELECTOR, "action: {probability: 50}"],
            "spec.action.type",
            "Required value",
        ),
        mistake(
            "Delay without a delay",
            &[SELECTOR, "action: {type: Delay}"],
            "spec.action.delay",
            "delay is required when type is Delay",
        ),
        mistake(
            "Delay with a jitter but no delay",
            &[SELECTOR, "action: {type: Delay, jitter: 100ms}"],
            "spec.action.delay",
            "delay is required when type is Delay",
        ),
        mistake(
            "a delay on Reject",
            &[SELECTOR, "action: {type: Reject, delay: 500ms}"],
            "spec.action.delay",
            "delay is only used when type is Delay",
        ),
        mistake(
            "a jitter on Drop",
            &[SELECTOR, "action: {type: Drop, jitter: 100ms}"],
            "spec.action.jitter",
            "jitter is only used when type is Delay",
        ),
        mistake(
            "probability 0",
            &[SELECTOR, "action: {type: Reject, probability: 0}"],
            "spec.action.probability",
            "greater than or equal to 1",
        ),
        mistake(
            "probability 101",
            &[SELECTOR, "action: {type: Reject, probability: 101}"],
            "spec.action.probability",
            "less than or equal to 100",
        ),
        mistake(
            "probability as a percentage string",
            &[SELECTOR, "action: {type: Reject, probability: 30%}"],
            "spec.action.probability",
            "must be of type integer",
        ),
        mistake(
            "a zero delay",
            &[SELECTOR, "action: {type: Delay, delay: 0ms}"],
            "spec.action.delay",
            "must be greater than zero",
        ),
        mistake(
            "a fractional delay",
            &[SELECTOR, "action: {type: Delay, delay: 1.5s}"],
            "spec.action.delay",
            "should match",
        ),
        mistake(
            "a jitter over a year",
            &[SELECTOR, "action: {type: Delay, delay: 1s, jitter: 9000h}"],
            "spec.action.jitter",
            "must be at most 8760h",
        ),
        // Enforcement.
        mistake(
            "an unknown enforcement",
            &[SELECTOR, REJECT, "enforcement: Kernel"],
            "spec.enforcement",
            "Unsupported value: \"Kernel\"",
        ),
        mistake(
            "Delay with enforcement Signature",
            &[SELECTOR, delay, "enforcement: Signature"],
            "spec.enforcement",
            "action type Delay needs enforcement Inline",
        ),
        mistake(
            "Delay with enforcement Connection",
            &[SELECTOR, delay, "enforcement: Connection"],
            "spec.enforcement",
            "action type Delay needs enforcement Inline",
        ),
        mistake(
            "a clientId regex with enforcement Signature",
            &[
                SELECTOR,
                "match: {clientId: {regex: '^checkout-'}}",
                REJECT,
                "enforcement: Signature",
            ],
            "spec.enforcement",
            "clientId.regex cannot be enforced by Signature",
        ),
        // Proxy enforcement's actions.
        mistake(
            "Error without errorCode",
            &[SELECTOR, "action: {type: Error}"],
            "spec.action.errorCode",
            "errorCode is required when type is Error",
        ),
        mistake(
            "an errorCode that is not a Kafka error name",
            &[SELECTOR, "action: {type: Error, errorCode: NOT_LEADER}"],
            "spec.action.errorCode",
            "Unsupported value: \"NOT_LEADER\"",
        ),
        mistake(
            "errorCode on a Reject",
            &[
                SELECTOR,
                "action: {type: Reject, errorCode: NOT_CONTROLLER}",
            ],
            "spec.action.errorCode",
            "errorCode is only used when type is Error",
        ),
        mistake(
            "Throttle without throttleTime",
            &[SELECTOR, "action: {type: Throttle}"],
            "spec.action.throttleTime",
            "throttleTime is required when type is Throttle",
        ),
        mistake(
            "a throttleTime over an hour",
            &[SELECTOR, "action: {type: Throttle, throttleTime: 2h}"],
            "spec.action.throttleTime",
            "must be at most 1h",
        ),
        mistake(
            "Corrupt without target",
            &[SELECTOR, "action: {type: Corrupt}"],
            "spec.action.target",
            "target (Produce or Fetch) is required when type is Corrupt",
        ),
        mistake(
            "a Corrupt target that is not Produce or Fetch",
            &[SELECTOR, "action: {type: Corrupt, target: Metadata}"],
            "spec.action.target",
            "Unsupported value: \"Metadata\"",
        ),
        mistake(
            "fixCrc on a Duplicate",
            &[SELECTOR, "action: {type: Duplicate, fixCrc: true}"],
            "spec.action.fixCrc",
            "fixCrc is only used when type is Corrupt",
        ),
        mistake(
            "Error with enforcement Inline",
            &[
                SELECTOR,
                "action: {type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}",
                "enforcement: Inline",
            ],
            "spec.enforcement",
            "need enforcement Proxy (or Auto)",
        ),
        mistake(
            "Reject with enforcement Proxy",
            &[SELECTOR, REJECT, "enforcement: Proxy"],
            "spec.action.type",
            "enforcement Proxy answers requests, it does not reset or drop them",
        ),
        mistake(
            "Error on an API the proxy cannot answer",
            &[
                SELECTOR,
                "match: {apiKeys: [Produce, ApiVersions]}",
                "action: {type: Error, errorCode: NOT_LEADER_OR_FOLLOWER}",
            ],
            "spec.match.apiKeys",
            "action type Error can fail only these apiKeys",
        ),
        mistake(
            "Corrupt Fetch on Produce only",
            &[
                SELECTOR,
                "match: {apiKeys: [Produce]}",
                "action: {type: Corrupt, target: Fetch}",
            ],
            "spec.match.apiKeys",
            "action type Corrupt alters the records of its target's API",
        ),
        mistake(
            "Duplicate on Fetch only",
            &[
                SELECTOR,
                "match: {apiKeys: [Fetch]}",
                "action: {type: Duplicate}",
            ],
            "spec.match.apiKeys",
            "action type Duplicate sends Produce requests twice",
        ),
        mistake(
            "handover on a Reject",
            &[SELECTOR, REJECT, "handover: Reset"],
            "spec.handover",
            "handover is only used by Proxy enforcement",
        ),
        mistake(
            "a handover that does not exist",
            &[SELECTOR, "action: {type: Duplicate}", "handover: Drain"],
            "spec.handover",
            "Unsupported value: \"Drain\"",
        ),
        // Durations.
        mistake(
            "a duration in words",
            &[SELECTOR, REJECT, "duration: 5 minutes"],
            "spec.duration",
            "should match '^([0-9]+(ms|s|m|h))+$'",
        ),
        mistake(
            "a duration without a unit",
            &[SELECTOR, REJECT, "duration: \"300\""],
            "spec.duration",
            "should match",
        ),
        mistake(
            "a duration as a number",
            &[SELECTOR, REJECT, "duration: 300"],
            "spec.duration",
            "must be of type string",
        ),
        mistake(
            "a negative duration",
            &[SELECTOR, REJECT, "duration: -5m"],
            "spec.duration",
            "should match",
        ),
        mistake(
            "a zero duration",
            &[SELECTOR, REJECT, "duration: 0m0s"],
            "spec.duration",
            "must be greater than zero",
        ),
        mistake(
            "a duration over a year",
            &[SELECTOR, REJECT, "duration: 9000h"],
            "spec.duration",
            "must be at most 8760h",
        ),
        mistake(
            "a duration in days",
            &[SELECTOR, REJECT, "duration: 2d"],
            "spec.duration",
            "should match",
        ),
        // Flags.
        mistake(
            "paused as yes",
            &[SELECTOR, REJECT, "paused: \"yes\""],
            "spec.paused",
            "must be of type boolean",
        ),
        mistake(
            "dryRun as a string",
            &[SELECTOR, REJECT, "dryRun: \"true\""],
            "spec.dryRun",
            "must be of type boolean",
        ),
        // Unknown fields: with strict field validation the server refuses them rather than
        // silently pruning them (a misspelt field would otherwise be a different fault).
        mistake(
            "an unknown spec field",
            &[SELECTOR, REJECT, "timeout: 5m"],
            "unknown field \"spec.timeout\"",
            "strict decoding error",
        ),
        mistake(
            "clientID for clientId",
            &[SELECTOR, "match: {clientID: {exact: checkout-svc}}", REJECT],
            "unknown field \"spec.match.clientID\"",
            "strict decoding error",
        ),
        mistake(
            "topic for topics",
            &[SELECTOR, "match: {topic: orders}", REJECT],
            "unknown field \"spec.match.topic\"",
            "strict decoding error",
        ),
        mistake(
            "a misspelt jitter",
            &[SELECTOR, "action: {type: Delay, delay: 1s, jiter: 100ms}"],
            "unknown field \"spec.action.jiter\"",
            "strict decoding error",
        ),
    ];
    // The object as a whole.
    table.push(Mistake {
        what: "a name over 253 characters",
        manifest: fault_named(&long_name, &[SELECTOR, REJECT]),
        field: "metadata.name",
        says: "must be no more than 253 characters",
    });
    table.push(Mistake {
        what: "a name with capitals and an underscore",
        manifest: fault_named("Reset_Orders", &[SELECTOR, REJECT]),
        field: "metadata.name",
        says: "RFC 1123 subdomain",
    });
    table.push(Mistake {
        what: "no spec",
        manifest: "apiVersion: kafkashock.io/v1alpha1\nkind: KafkaFault\nmetadata: {name: validation-probe, namespace: kafka}\n".into(),
        field: "spec",
        says: "Required value",
    });
    table
}

#[test]
fn the_apiserver_rejects_each_mistake_naming_its_field() {
    let table = mistakes();
    assert!(table.len() >= 30, "only {} mistakes", table.len());
    let mut wrong = Vec::new();
    for Mistake {
        what,
        manifest,
        field,
        says,
    } in &table
    {
        match dry_run(manifest) {
            Ok(stdout) => wrong.push(format!("{what}: accepted ({})", stdout.trim())),
            Err(stderr) if !stderr.contains(field) || !stderr.contains(says) => wrong.push(
                format!("{what}: rejected without naming {field:?} and saying {says:?}:\n{stderr}"),
            ),
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
