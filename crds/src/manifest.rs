//! [`read_fault`]: the one reading of a KafkaFault file, for the CLI and the tests. It refuses
//! what `kubectl apply --validate=strict` would (the generated schema walked by
//! [`crate::schema_walk`]: unknown fields, types, enums, bounds; a name the server would not
//! take) and then what the operator would (`KafkaFaultSpec::validate`), so a file the CLI
//! accepts is the fault a user would get from the cluster, never a wider one. Pure: it reads
//! text, not files.
//!
//! A file holds a whole KafkaFault manifest, or just its spec (checked as `spec`).

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::CustomResourceExt;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::schema_walk::{FieldError, Problem, check, closest};
use crate::{KafkaFault, KafkaFaultSpec, SpecError};

/// The apiVersion of a KafkaFault manifest.
pub const API_VERSION: &str = "kafkashock.io/v1alpha1";

/// The longest file read as a fault (the API server takes about 3 MiB per object; a fault is
/// a few hundred bytes).
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// A fault as read from a file: what the cluster would store, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultFile {
    /// metadata.name, when the file is a whole manifest.
    pub name: Option<String>,
    /// metadata.namespace, when given.
    pub namespace: Option<String>,
    /// The spec, every default applied.
    pub spec: KafkaFaultSpec,
}

/// Why a file is not a fault to act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    /// Larger than [`MAX_MANIFEST_BYTES`].
    #[error("it is larger than {MAX_MANIFEST_BYTES} bytes; a KafkaFault is a few hundred")]
    TooLarge,
    /// Not YAML.
    #[error("it is not YAML: {0}")]
    Yaml(String),
    /// Zero or several YAML documents.
    #[error("it holds {0} YAML documents; give exactly one KafkaFault")]
    Documents(usize),
    /// Another kind of object.
    #[error("it is a {api_version} {kind}, not a {API_VERSION} KafkaFault")]
    Kind { api_version: String, kind: String },
    /// Fields the API server would refuse.
    #[error("{}", list(.0))]
    Schema(Vec<FieldError>),
    /// A spec the operator would mark Valid=False.
    #[error("{}", list(.0))]
    Spec(Vec<SpecError>),
}

fn list<T: fmt::Display>(problems: &[T]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    format!(
        "{} problem(s), fix them all and try again:\n{}",
        problems.len(),
        lines.join("\n")
    )
}

/// Reads one KafkaFault (or a bare spec) from YAML text, checked as the API server and the
/// operator would check it.
pub fn read_fault(text: &str) -> Result<FaultFile, ReadError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ReadError::TooLarge);
    }
    let mut document = one_document(text)?;
    let root = fault_schema();
    let mut errors = Vec::new();
    let whole = document.get("kind").is_some() || document.get("apiVersion").is_some();
    let (name, namespace, mut spec) = if whole {
        let Value::Object(map) = &mut document else {
            unreachable!("only objects have keys")
        };
        check_kind(map)?;
        let (name, namespace) = check_metadata(map.remove("metadata"), &mut errors);
        check(&mut document, &root, "", &mut errors);
        let spec = document.get_mut("spec").map(Value::take);
        (name, namespace, spec.unwrap_or(Value::Null))
    } else {
        let spec_schema = root
            .properties
            .as_ref()
            .and_then(|properties| properties.get("spec"))
            .cloned()
            .unwrap_or_default();
        check(&mut document, &spec_schema, "spec", &mut errors);
        (None, None, document)
    };
    if !errors.is_empty() {
        return Err(ReadError::Schema(errors));
    }
    let spec = KafkaFaultSpec::deserialize(spec.take()).map_err(|error| {
        // The schema passed, so only a mismatch between the types and their schema gets here.
        ReadError::Schema(vec![FieldError {
            path: "spec".into(),
            problem: Problem::Invalid(error.to_string()),
        }])
    })?;
    spec.validate().map_err(ReadError::Spec)?;
    Ok(FaultFile {
        name,
        namespace,
        spec,
    })
}

/// The openAPIV3Schema of the KafkaFault CRD, as `crdgen` writes it.
fn fault_schema() -> JSONSchemaProps {
    KafkaFault::crd()
        .spec
        .versions
        .into_iter()
        .next()
        .and_then(|version| version.schema)
        .and_then(|schema| schema.open_api_v3_schema)
        .unwrap_or_default()
}

/// The one YAML document of `text`, as JSON (keys that are not strings become strings, as
/// kubectl's YAML reader makes them).
fn one_document(text: &str) -> Result<Value, ReadError> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|error| ReadError::Yaml(error.to_string()))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    if documents.len() != 1 {
        return Err(ReadError::Documents(documents.len()));
    }
    let json = to_json(documents.remove(0)).map_err(ReadError::Yaml)?;
    if json.is_object() {
        Ok(json)
    } else {
        Err(ReadError::Yaml(
            "the document is not a mapping of fields".into(),
        ))
    }
}

fn to_json(value: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Yaml;
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(s) => s,
                    Yaml::Bool(b) => b.to_string(),
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Null => "null".to_owned(),
                    _ => return Err("a mapping key is a list or a mapping".into()),
                };
                map.insert(key, to_json(value)?);
            }
            Value::Object(map)
        }
        Yaml::Tagged(tagged) => to_json(tagged.value)?,
    })
}

fn check_kind(map: &mut Map<String, Value>) -> Result<(), ReadError> {
    let mut text = |key: &str| map.remove(key).and_then(|v| v.as_str().map(str::to_owned));
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if api_version.as_deref() == Some(API_VERSION) && kind.as_deref() == Some("KafkaFault") {
        return Ok(());
    }
    Err(ReadError::Kind {
        api_version: api_version.unwrap_or_else(|| "(no apiVersion)".into()),
        kind: kind.unwrap_or_else(|| "(no kind)".into()),
    })
}

/// Checks `metadata` as the API server would for a namespaced object: only ObjectMeta's
/// fields, with their types, a DNS subdomain name and a DNS label namespace. Returns the name
/// and namespace.
fn check_metadata(
    metadata: Option<Value>,
    errors: &mut Vec<FieldError>,
) -> (Option<String>, Option<String>) {
    let Some(metadata) = metadata.filter(|m| !m.is_null()) else {
        return (None, None);
    };
    let Value::Object(fields) = &metadata else {
        errors.push(FieldError {
            path: "metadata".into(),
            problem: Problem::Invalid("must be of type object".into()),
        });
        return (None, None);
    };
    let known = object_meta_fields();
    for key in fields.keys().filter(|key| !known.contains(key)) {
        errors.push(FieldError {
            path: format!("metadata.{key}"),
            problem: Problem::UnknownField {
                suggestion: closest(key, known.iter().map(String::as_str)).map(str::to_owned),
            },
        });
    }
    let meta = match ObjectMeta::deserialize(&metadata) {
        Ok(meta) => meta,
        Err(error) => {
            errors.push(FieldError {
                path: "metadata".into(),
                problem: Problem::Invalid(error.to_string()),
            });
            return (None, None);
        }
    };
    if let Some(name) = &meta.name
        && let Some(problem) = dns_problem(name, 253, true)
    {
        errors.push(FieldError {
            path: "metadata.name".into(),
            problem,
        });
    }
    if let Some(namespace) = &meta.namespace
        && let Some(problem) = dns_problem(namespace, 63, false)
    {
        errors.push(FieldError {
            path: "metadata.namespace".into(),
            problem,
        });
    }
    (meta.name, meta.namespace)
}

/// Every field of ObjectMeta, by its JSON name: the struct is listed whole (the compiler fails
/// when k8s-openapi adds a field), then serialized.
fn object_meta_fields() -> Vec<String> {
    let every = ObjectMeta {
        annotations: Some(Default::default()),
        creation_timestamp: Some(Time(Timestamp::UNIX_EPOCH)),
        deletion_grace_period_seconds: Some(0),
        deletion_timestamp: Some(Time(Timestamp::UNIX_EPOCH)),
        finalizers: Some(Vec::new()),
        generate_name: Some(String::new()),
        generation: Some(0),
        labels: Some(Default::default()),
        managed_fields: Some(Vec::new()),
        name: Some(String::new()),
        namespace: Some(String::new()),
        owner_references: Some(Vec::new()),
        resource_version: Some(String::new()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
    };
    match serde_json::to_value(every) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Why `text` is not a lowercase RFC 1123 subdomain (`dots`) or label of at most `max`.
fn dns_problem(text: &str, max: usize, dots: bool) -> Option<Problem> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    };
    let well_formed = if dots {
        text.split('.').all(part_ok)
    } else {
        part_ok(text)
    };
    if text.len() > max {
        Some(Problem::Length {
            bound: "at most",
            limit: max as i64,
        })
    } else if !well_formed {
        let what = if dots { "subdomain" } else { "label" };
        Some(Problem::Invalid(format!(
            "{text:?} is not a lowercase RFC 1123 {what}: use a-z, 0-9{} and '-', starting and ending with a letter or digit",
            if dots { ", '.'" } else { "" }
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: kafkashock.io/v1alpha1\nkind: KafkaFault\nmetadata: {name: f, namespace: kafka}\n";

    fn manifest(spec: &str) -> String {
        format!("{HEAD}spec:\n  selector: {{matchLabels: {{app: kafka}}}}\n{spec}")
    }

    fn messages(text: &str) -> String {
        read_fault(text).expect_err("invalid").to_string()
    }

    #[test]
    fn reads_a_manifest_and_a_bare_spec_with_defaults() {
        let file = read_fault(&manifest("  action: {type: Drop}\n  dryRun: true\n")).unwrap();
        assert_eq!(file.name.as_deref(), Some("f"));
        assert_eq!(file.namespace.as_deref(), Some("kafka"));
        assert!(file.spec.dry_run && !file.spec.paused);
        assert_eq!(file.spec.terms.ports, [9092]);
        let bare =
            read_fault("selector: {matchLabels: {app: kafka}}\naction: {type: Reject}\n").unwrap();
        assert_eq!(bare.name, None);
        for example in ["reset-producer", "dry-run", "timed", "delay-metadata"] {
            let path = format!("{}/../examples/{example}.yaml", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            read_fault(&text).unwrap_or_else(|error| panic!("{path}: {error}"));
        }
    }

    #[test]
    fn a_misspelt_field_is_refused_not_dropped() {
        let said = messages(&manifest(
            "  match: {clientID: {exact: x}, apiKeys: [Produce]}\n  action: {type: Reject}\n",
        ));
        assert!(
            said.contains("spec.match.clientID: unknown field; did you mean clientId?"),
            "{said}"
        );
        let bare = messages(
            "selector: {matchLabels: {app: kafka}}\naction: {type: Reject}\ndryrun: true\n",
        );
        assert!(
            bare.contains("spec.dryrun: unknown field; did you mean dryRun?"),
            "{bare}"
        );
        let top = messages(&format!("{HEAD}specs: {{}}\n"));
        assert!(
            top.contains("specs: unknown field; did you mean spec?"),
            "{top}"
        );
        assert!(top.contains("spec: Required value"), "{top}");
        let meta = messages(
            &manifest("  action: {type: Reject}\n").replace("namespace: kafka", "namespce: kafka"),
        );
        assert!(
            meta.contains("metadata.namespce: unknown field; did you mean namespace?"),
            "{meta}"
        );
    }

    #[test]
    fn then_the_spec_is_validated_as_the_operator_does() {
        let said = messages(&manifest(
            "  match: {clientId: {regex: '(?=lookahead)'}}\n  action: {type: Reject}\n",
        ));
        assert!(
            said.contains("spec.match.clientId.regex: invalid regex"),
            "{said}"
        );
        let both = messages(&manifest(
            "  action: {type: Reject, delay: 1s}\n  mode: One\n  value: 2\n",
        ));
        assert!(both.starts_with("2 problem(s)"), "{both}");
    }

    #[test]
    fn names_kinds_and_documents_are_checked() {
        let name = messages(
            &manifest("  action: {type: Reject}\n").replace("name: f", "name: Reset_Orders"),
        );
        assert!(
            name.contains("metadata.name: \"Reset_Orders\" is not a lowercase RFC 1123 subdomain"),
            "{name}"
        );
        let long = "f".repeat(254);
        let too_long = messages(
            &manifest("  action: {type: Reject}\n").replace("name: f", &format!("name: {long}")),
        );
        assert!(
            too_long.contains("metadata.name: should be at most 253"),
            "{too_long}"
        );
        assert_eq!(
            read_fault("apiVersion: v1\nkind: ConfigMap\n").unwrap_err(),
            ReadError::Kind {
                api_version: "v1".into(),
                kind: "ConfigMap".into()
            }
        );
        let two = format!(
            "{}---\n{}",
            manifest("  action: {type: Drop}\n"),
            manifest("  action: {type: Drop}\n")
        );
        assert_eq!(read_fault(&two).unwrap_err(), ReadError::Documents(2));
        assert_eq!(read_fault("").unwrap_err(), ReadError::Documents(0));
        assert!(matches!(read_fault("a: [b"), Err(ReadError::Yaml(_))));
        assert!(matches!(read_fault("- a\n- b\n"), Err(ReadError::Yaml(_))));
        assert_eq!(
            read_fault(&"#".repeat(MAX_MANIFEST_BYTES + 1)).unwrap_err(),
            ReadError::TooLarge
        );
    }

    #[test]
    fn keys_that_are_not_strings_read_as_kubectl_reads_them() {
        let said = messages(&manifest("  action: {type: Reject}\n  true: 1\n"));
        assert!(said.contains("spec.true: unknown field"), "{said}");
    }
}
