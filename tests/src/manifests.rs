//! The KafkaFault manifests the validation tests share: a table of mistakes a user makes
//! ([`mistakes`]), each refused by the lab's real API server (`crd_validation`) and by
//! `kafka-shock inject` (the parity test) naming the same field, and the helpers that write
//! them.

/// The lab's broker pods, as the examples select them.
pub const SELECTOR: &str =
    r#"selector: {matchLabels: {strimzi.io/cluster: lab, strimzi.io/broker-role: "true"}}"#;
/// The simplest action.
pub const REJECT: &str = "action: {type: Reject}";

/// A KafkaFault named `name` in the lab's broker namespace, its spec made of `lines` (each a
/// top-level spec field in YAML flow style).
pub fn fault_named(name: &str, lines: &[&str]) -> String {
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

/// [`fault_named`] `validation-probe`.
pub fn fault(lines: &[&str]) -> String {
    fault_named("validation-probe", lines)
}

/// One mistake: what it is, the manifest, the path of the field at fault (which both the API
/// server and `kafka-shock inject` must name), and a piece of what the server says about it.
pub struct Mistake {
    pub what: &'static str,
    pub manifest: String,
    pub path: &'static str,
    pub server_says: &'static str,
}

fn mistake(what: &'static str, lines: &[&str], path: &'static str, says: &'static str) -> Mistake {
    Mistake {
        what,
        manifest: fault(lines),
        path,
        server_says: says,
    }
}

/// Every mistake, each a distinct one a user makes.
pub fn mistakes() -> Vec<Mistake> {
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
        // Regexes that do not compile (CEL compiles them with RE2; the CLI with Rust's regex).
        mistake(
            "a clientId regex with an unclosed group",
            &[SELECTOR, "match: {clientId: {regex: '^(checkout'}}", REJECT],
            "spec.match.clientId.regex",
            "missing closing )",
        ),
        mistake(
            "a clientId regex with a lookahead",
            &[
                SELECTOR,
                "match: {clientId: {regex: '^(?=checkout)'}}",
                REJECT,
            ],
            "spec.match.clientId.regex",
            "invalid or unsupported Perl syntax",
        ),
        mistake(
            "a clientId regex with a backreference",
            &[SELECTOR, "match: {clientId: {regex: '(a)\\1'}}", REJECT],
            "spec.match.clientId.regex",
            "invalid escape sequence",
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
            "spec.timeout",
            "unknown field \"spec.timeout\"",
        ),
        mistake(
            "clientID for clientId",
            &[SELECTOR, "match: {clientID: {exact: checkout-svc}}", REJECT],
            "spec.match.clientID",
            "unknown field \"spec.match.clientID\"",
        ),
        mistake(
            "topic for topics",
            &[SELECTOR, "match: {topic: orders}", REJECT],
            "spec.match.topic",
            "unknown field \"spec.match.topic\"",
        ),
        mistake(
            "a misspelt jitter",
            &[SELECTOR, "action: {type: Delay, delay: 1s, jiter: 100ms}"],
            "spec.action.jiter",
            "unknown field \"spec.action.jiter\"",
        ),
    ];
    // The object as a whole.
    table.push(Mistake {
        what: "a name over 253 characters",
        manifest: fault_named(&long_name, &[SELECTOR, REJECT]),
        path: "metadata.name",
        server_says: "must be no more than 253 characters",
    });
    table.push(Mistake {
        what: "a name with capitals and an underscore",
        manifest: fault_named("Reset_Orders", &[SELECTOR, REJECT]),
        path: "metadata.name",
        server_says: "RFC 1123 subdomain",
    });
    table.push(Mistake {
        what: "no spec",
        manifest: "apiVersion: kafkashock.io/v1alpha1\nkind: KafkaFault\nmetadata: {name: validation-probe, namespace: kafka}\n".into(),
        path: "spec",
        server_says: "Required value",
    });
    table
}
