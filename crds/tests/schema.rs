//! The CRD schema the API server enforces: its CEL rules are present, compile, and accept and
//! reject what `KafkaFaultSpec::validate` does, evaluated client-side with kube's CEL
//! validator (kube-cel). Also checks the examples in the repository's `examples/`.

use std::{fs, path::Path};

use kafka_shock_crds::{KafkaFault, KafkaFaultInjection};
use kube::{
    CustomResourceExt,
    core::cel::{Validator, compile_schema},
};
use serde_json::{Value, json};

fn schema_of(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Value {
    let version = &crd.spec.versions[0];
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("CRD has a schema")).unwrap()
}

/// Every `x-kubernetes-validations` rule in `schema`, with the JSON path of where it sits.
fn rules(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    if let Some(list) = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for rule in list {
            out.push((path.to_owned(), rule["rule"].as_str().unwrap().to_owned()));
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            rules(prop, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        rules(items, &format!("{path}[]"), out);
    }
}

fn fault(spec: Value) -> Value {
    json!({
        "apiVersion": "kafkashock.io/v1alpha1",
        "kind": "KafkaFault",
        "metadata": {"name": "f", "namespace": "kafka"},
        "spec": spec,
    })
}

/// The messages of the CEL rules `object` breaks, each as `path: message`.
fn cel_failures(schema: &Value, object: &Value) -> Vec<String> {
    match Validator::new().validate(schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn schemas_carry_the_expected_cel_rules_and_they_compile() {
    let fault = schema_of(KafkaFault::crd());
    let mut found = Vec::new();
    rules(&fault, "", &mut found);
    let at = |path: &str| -> Vec<&str> {
        found
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    assert_eq!(at(".spec.selector").len(), 4);
    assert!(at(".spec")[0].contains("has(self.value)"));
    assert!(
        at(".spec")
            .iter()
            .any(|r| r.contains("self.enforcement in ['Auto', 'Inline', 'Proxy']"))
    );
    assert!(
        at(".spec")
            .iter()
            .any(|r| r.contains("self.enforcement in ['Auto', 'Proxy']"))
    );
    assert_eq!(at(".spec").len(), 11);
    assert!(
        at(".spec")
            .iter()
            .any(|r| r.contains("self.match.clientId.regex"))
    );
    assert_eq!(at(".spec.action").len(), 10);
    assert_eq!(at(".spec.action.throttleTime").len(), 2);
    assert_eq!(at(".spec.action.delay").len(), 2);
    assert_eq!(at(".spec.action.jitter").len(), 1);
    assert_eq!(at(".spec.duration").len(), 2);
    assert!(at(".spec.match.clientId")[0].contains("== 1"));
    assert!(at(".spec.match.apiVersions")[0].contains("self.min <= self.max"));
    assert!(at(".spec.match.sourceCIDRs")[0].contains("isCIDR"));
    assert!(at(".spec.match.topics")[0].contains("'..'"));
    assert!(at(".spec.match.clientId.regex")[0].contains("''.matches(self)"));
    assert_eq!(at(".spec.match.sourceSelector").len(), 4);
    assert_eq!(found.len(), 41, "{found:#?}");

    let injection = schema_of(KafkaFaultInjection::crd());
    let mut found = Vec::new();
    rules(&injection, "", &mut found);
    assert_eq!(found.iter().filter(|(p, _)| p == ".spec").count(), 8);
    assert!(found.iter().any(|(p, _)| p == ".spec.match.clientId"));
    assert!(found.iter().any(|(p, _)| p == ".spec.action.delay"));

    for schema in [&fault, &injection] {
        let compiled = compile_schema(schema);
        assert!(
            !compiled.has_errors(),
            "{:#?}",
            compiled.compilation_errors()
        );
    }
}

#[test]
fn schema_constrains_what_cel_does_not() {
    let schema = schema_of(KafkaFault::crd());
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["ports"]["items"]["minimum"], 1.0);
    assert_eq!(spec["ports"]["items"]["maximum"], 65535.0);
    assert_eq!(spec["ports"]["default"], json!([9092]));
    assert_eq!(spec["ports"]["x-kubernetes-list-type"], "set");
    assert_eq!(spec["value"]["minimum"], 1.0);
    assert_eq!(
        spec["mode"]["enum"],
        json!(["All", "One", "Fixed", "Percent"])
    );
    assert_eq!(spec["enforcement"]["default"], "Auto");
    assert_eq!(
        spec["action"]["properties"]["probability"]["maximum"],
        100.0
    );
    assert_eq!(spec["action"]["properties"]["probability"]["minimum"], 1.0);
    assert_eq!(spec["action"]["properties"]["probability"]["default"], 100);
    assert_eq!(
        spec["duration"]["pattern"],
        kafka_shock_crds::duration::DURATION_PATTERN
    );
    let api_keys = spec["match"]["properties"]["apiKeys"]["items"]["enum"]
        .as_array()
        .unwrap();
    assert_eq!(
        api_keys.len(),
        kafka_shock_crds::matching::api_key_names().count()
    );
    assert!(api_keys.contains(&json!("Produce")) && api_keys.contains(&json!("ShareFetch")));
    assert_eq!(
        schema["properties"]["spec"]["required"],
        json!(["action", "selector"])
    );
}

#[test]
fn cel_rules_reject_what_validate_rejects() {
    let schema = schema_of(KafkaFault::crd());
    let base = json!({"selector": {"matchLabels": {"app": "kafka"}}, "action": {"type": "Reject"}});
    assert_eq!(
        cel_failures(&schema, &fault(base.clone())),
        Vec::<String>::new()
    );

    let with = |patch: Value| {
        let mut spec = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    };
    let delay = json!({"type": "Delay", "delay": "1s"});
    // (spec, the message the server gives, what validate() reports for the same spec)
    let cases = [
        (
            with(json!({"selector": {}})),
            "selector must set matchLabels or matchExpressions",
            "spec.selector:",
        ),
        (
            with(json!({"selector": {"matchLabels": {}}})),
            "selector must set matchLabels or matchExpressions",
            "spec.selector:",
        ),
        (
            with(json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Equals"}]}})),
            "operator must be In, NotIn, Exists or DoesNotExist",
            "spec.selector.matchExpressions[0]:",
        ),
        (
            with(json!({"selector": {"matchExpressions": [
                {"key": "a", "operator": "Exists"},
                {"key": "b", "operator": "NotIn", "values": []},
            ]}})),
            "with operator In or NotIn need values",
            "spec.selector.matchExpressions[1]:",
        ),
        (
            with(json!({"selector": {"matchExpressions": [
                {"key": "a", "operator": "DoesNotExist", "values": ["x"]},
            ]}})),
            "with operator Exists or DoesNotExist take no values",
            "spec.selector.matchExpressions[0]:",
        ),
        (
            with(json!({"mode": "Fixed"})),
            "value is required when mode is Fixed or Percent",
            "spec.value:",
        ),
        (
            with(json!({"value": 3})),
            "value is only used when mode is Fixed or Percent",
            "spec.value:",
        ),
        (
            with(json!({"mode": "Percent", "value": 101})),
            "value is a percentage (1-100)",
            "spec.value:",
        ),
        (
            with(json!({"match": {"apiVersions": {"min": 4, "max": 2}}})),
            "min must not be greater than max",
            "spec.match.apiVersions:",
        ),
        (
            with(json!({"match": {"clientId": {}}})),
            "set exactly one of exact, prefix or regex",
            "spec.match.clientId:",
        ),
        (
            with(json!({"match": {"clientId": {"exact": "a", "regex": "b"}}})),
            "set exactly one of exact, prefix or regex",
            "spec.match.clientId:",
        ),
        (
            with(json!({"match": {"topics": ["ok", "."]}})),
            "'.' and '..' are not valid Kafka topic names",
            "spec.match.topics[1]:",
        ),
        (
            with(json!({"match": {"sourceCIDRs": ["10.0.0.0/8", "10.0.0.300/8"]}})),
            "each entry must be a CIDR",
            "spec.match.sourceCIDRs[1]:",
        ),
        (
            with(json!({"match": {"sourceCIDRs": ["10.0.0.1"]}})),
            "each entry must be a CIDR",
            "spec.match.sourceCIDRs[0]:",
        ),
        (
            with(json!({"action": {"type": "Delay"}})),
            "delay is required when type is Delay",
            "spec.action.delay:",
        ),
        (
            with(json!({"action": {"type": "Reject", "delay": "1s"}})),
            "delay is only used when type is Delay",
            "spec.action.delay:",
        ),
        (
            with(json!({"action": {"type": "Drop", "jitter": "1s"}})),
            "jitter is only used when type is Delay",
            "spec.action.jitter:",
        ),
        (
            with(json!({"action": {"type": "Delay", "delay": "0s"}})),
            "must be greater than zero",
            "spec.action.delay:",
        ),
        (
            with(json!({"action": {"type": "Delay", "delay": "1s", "jitter": "8761h"}})),
            "must be at most 8760h",
            "spec.action.jitter:",
        ),
        (
            with(json!({"duration": "0m0s"})),
            "must be greater than zero",
            "spec.duration:",
        ),
        (with(json!({"duration": "365d"})), "", "spec.duration:"),
        (
            with(json!({"duration": "9000h"})),
            "must be at most 8760h",
            "spec.duration:",
        ),
        (
            with(json!({"action": delay, "enforcement": "Signature"})),
            "Delay needs enforcement Inline",
            "spec.enforcement:",
        ),
        (
            with(json!({"match": {"clientId": {"regex": "^a"}}, "enforcement": "Signature"})),
            "cannot be enforced by Signature",
            "spec.enforcement:",
        ),
        (
            with(json!({"action": {"type": "Error"}})),
            "errorCode is required when type is Error",
            "spec.action.errorCode:",
        ),
        (
            with(json!({"action": {"type": "Drop", "errorCode": "NOT_CONTROLLER"}})),
            "errorCode is only used when type is Error",
            "spec.action.errorCode:",
        ),
        (
            with(json!({"action": {"type": "Throttle"}})),
            "throttleTime is required when type is Throttle",
            "spec.action.throttleTime:",
        ),
        (
            with(json!({"action": {"type": "Throttle", "throttleTime": "61m"}})),
            "must be at most 1h",
            "spec.action.throttleTime:",
        ),
        (
            with(json!({"action": {"type": "Corrupt"}})),
            "target (Produce or Fetch) is required when type is Corrupt",
            "spec.action.target:",
        ),
        (
            with(json!({"action": {"type": "Duplicate", "target": "Produce"}})),
            "target is only used when type is Corrupt",
            "spec.action.target:",
        ),
        (
            with(json!({"action": {"type": "Duplicate", "fixCrc": false}})),
            "fixCrc is only used when type is Corrupt",
            "spec.action.fixCrc:",
        ),
        (
            with(json!({"action": {"type": "Duplicate"}, "enforcement": "Connection"})),
            "need enforcement Proxy",
            "spec.enforcement:",
        ),
        (
            with(json!({"action": {"type": "Drop"}, "enforcement": "Proxy"})),
            "enforcement Proxy answers requests, it does not reset or drop them",
            "spec.action.type:",
        ),
        (
            with(json!({"match": {"apiKeys": ["Produce", "SaslHandshake"]},
                        "action": {"type": "Error", "errorCode": "NOT_CONTROLLER"}})),
            "action type Error can fail only these apiKeys",
            "spec.match.apiKeys[1]: the proxy cannot answer SaslHandshake",
        ),
        (
            with(json!({"match": {"apiKeys": ["Metadata"]},
                        "action": {"type": "Corrupt", "target": "Produce"}})),
            "action type Corrupt alters the records of its target's API",
            "spec.match.apiKeys:",
        ),
        (
            with(json!({"match": {"apiKeys": ["Fetch"]}, "action": {"type": "Duplicate"}})),
            "action type Duplicate sends Produce requests twice",
            "spec.match.apiKeys:",
        ),
        (
            with(json!({"handover": "NewConnectionsOnly"})),
            "handover is only used by Proxy enforcement",
            "spec.handover:",
        ),
        (
            with(json!({"match": {"clientId": {"regex": "(unclosed"}}})),
            "not a valid regex",
            "spec.match.clientId.regex:",
        ),
    ];
    for (spec, server_says, validate_says) in cases {
        let failures = cel_failures(&schema, &fault(spec.clone()));
        if server_says.is_empty() {
            // A malformed duration is the OpenAPI pattern's to report; CEL stays quiet.
            assert_eq!(failures, Vec::<String>::new(), "{spec}");
        } else {
            assert_eq!(failures.len(), 1, "{spec}: {failures:#?}");
            assert!(failures[0].contains(server_says), "{spec}: {failures:#?}");
        }
        let spec: kafka_shock_crds::KafkaFaultSpec = serde_json::from_value(spec).unwrap();
        let errors = spec.validate().expect_err("validate() agrees");
        assert!(
            errors[0].to_string().starts_with(validate_says),
            "{errors:#?}"
        );
    }
}

#[test]
fn cel_rules_accept_a_rich_valid_fault() {
    let schema = schema_of(KafkaFault::crd());
    let spec = json!({
        "selector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["broker"]}]},
        "mode": "Percent", "value": 100,
        "match": {
            "apiKeys": ["Produce"], "apiVersions": {"min": 9},
            "clientId": {"regex": "^a"}, "topics": ["orders"],
            "sourceCIDRs": ["10.0.0.1/8", "fd00::/8"],
        },
        "action": {"type": "Delay", "delay": "1m30s", "jitter": "0s", "probability": 1},
        "enforcement": "Inline", "duration": "8760h",
    });
    assert_eq!(cel_failures(&schema, &fault(spec)), Vec::<String>::new());
    let selector = json!({"matchLabels": {"app": "kafka"}});
    for proxy in [
        json!({"selector": selector, "match": {"apiKeys": ["Produce", "Metadata"], "topics": ["orders"]},
               "action": {"type": "Error", "errorCode": "NOT_LEADER_OR_FOLLOWER", "probability": 50},
               "handover": "NewConnectionsOnly"}),
        json!({"selector": selector, "action": {"type": "Throttle", "throttleTime": "2s"},
               "enforcement": "Proxy", "handover": "Reset"}),
        json!({"selector": selector, "match": {"apiKeys": ["Fetch"]},
               "action": {"type": "Corrupt", "target": "Fetch", "fixCrc": true}}),
        json!({"selector": selector, "action": {"type": "Duplicate"}}),
        json!({"selector": selector, "action": {"type": "Delay", "delay": "1s"},
               "enforcement": "Proxy"}),
    ] {
        assert_eq!(
            cel_failures(&schema, &fault(proxy.clone())),
            Vec::<String>::new(),
            "{proxy}"
        );
    }
}

#[test]
fn injection_rules_guard_the_copied_match_and_action() {
    let schema = schema_of(KafkaFaultInjection::crd());
    let injection = |action: Value, enforcement: &str| {
        json!({
            "apiVersion": "kafkashock.io/v1alpha1",
            "kind": "KafkaFaultInjection",
            "metadata": {"name": "i", "namespace": "kafka"},
            "spec": {
                "faultName": "f", "podName": "p", "podUID": "u", "podIP": "10.0.0.1",
                "nodeName": "n", "action": action, "enforcement": enforcement,
            },
        })
    };
    let ok = injection(json!({"type": "Delay", "delay": "2s"}), "Inline");
    assert_eq!(cel_failures(&schema, &ok), Vec::<String>::new());
    let bad = injection(json!({"type": "Delay", "delay": "2s"}), "Connection");
    assert!(cel_failures(&schema, &bad)[0].contains("Delay needs enforcement Inline"));
    let bad = injection(json!({"type": "Delay"}), "Inline");
    assert!(cel_failures(&schema, &bad)[0].contains("delay is required"));
}

#[test]
fn examples_parse_validate_and_pass_the_cel_rules() {
    let schema = schema_of(KafkaFault::crd());
    // The examples users copy live at the top of the repository.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "yaml") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let fault: KafkaFault =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        fault
            .spec
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e:#?}", path.display()));
        let raw: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            cel_failures(&schema, &raw),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(
        names,
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
