//! A document checked against a CRD's structural schema, as the API server checks it under
//! `kubectl apply --validate=strict`: unknown fields (with a suggestion), types, enums,
//! bounds, lengths, patterns, list sizes, set duplicates and required fields, each reported
//! with the path of the field at fault.
//!
//! The schema walked is the generated one ([`crate::crd_files`] writes the same), so the CLI
//! refuses what the server refuses without a second, hand-written list of fields. The CEL
//! rules are not evaluated here: `validate` makes each of their checks in Rust. Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

/// Enum values listed in full in a message; longer enums get a suggestion and a count.
const LISTED_VALUES: usize = 8;

/// One field the schema refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where, as the API server writes it: `spec.match.topics[1]`, `spec.selector.matchLabels.app`.
    pub path: String,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A field the schema does not have; with the known field it most likely meant.
    UnknownField { suggestion: Option<String> },
    /// A required field is absent.
    Required,
    /// The value has the wrong JSON type.
    Type {
        expected: String,
        found: &'static str,
    },
    /// A value outside the enum.
    Unsupported {
        value: String,
        supported: Vec<String>,
    },
    /// A number below `minimum` or above `maximum`.
    OutOfRange { bound: &'static str, limit: String },
    /// A string of the wrong length, in characters.
    Length { bound: &'static str, limit: i64 },
    /// A string not matching the schema's pattern.
    Pattern(String),
    /// A list of the wrong size.
    Items { bound: &'static str, limit: i64 },
    /// The same value twice in a set.
    Duplicate(String),
    /// Anything else, said in words.
    Invalid(String),
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path)?;
        match &self.problem {
            Problem::UnknownField { suggestion: None } => write!(f, "unknown field"),
            Problem::UnknownField {
                suggestion: Some(known),
            } => write!(f, "unknown field; did you mean {known}?"),
            Problem::Required => write!(f, "Required value"),
            Problem::Type { expected, found } => {
                write!(f, "must be of type {expected}, not {found}")
            }
            Problem::Unsupported { value, supported } => {
                write!(f, "Unsupported value: {value}")?;
                if supported.len() <= LISTED_VALUES {
                    write!(f, ": supported values: {}", supported.join(", "))
                } else {
                    let near = closest(
                        value.trim_matches('"'),
                        supported.iter().map(|s| s.trim_matches('"')),
                    );
                    if let Some(near) = near {
                        write!(f, "; did you mean \"{near}\"?")?;
                    }
                    write!(f, " ({} values are supported)", supported.len())
                }
            }
            Problem::OutOfRange { bound, limit } => {
                write!(f, "should be {bound} or equal to {limit}")
            }
            Problem::Length { bound, limit } => {
                write!(f, "should be {bound} {limit} characters long")
            }
            Problem::Pattern(pattern) => write!(f, "should match '{pattern}'"),
            Problem::Items { bound, limit } => write!(f, "should have {bound} {limit} items"),
            Problem::Duplicate(value) => write!(f, "Duplicate value: {value}"),
            Problem::Invalid(what) => write!(f, "{what}"),
        }
    }
}

/// Checks `value` at `path` against `schema`, appending what is wrong to `errors`. Nulls of
/// non-nullable fields are removed, as the API server prunes them before defaulting, so that
/// the value then reads like the stored object.
pub fn check(
    value: &mut Value,
    schema: &JSONSchemaProps,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if value.is_null() {
        if schema.nullable != Some(true) && schema.type_.is_some() {
            errors.push(type_error(path, schema, value));
        }
        return;
    }
    match schema.type_.as_deref() {
        Some("object") => check_object(value, schema, path, errors),
        Some("array") => check_array(value, schema, path, errors),
        Some("string") => check_string(value, schema, path, errors),
        Some("integer") => check_number(value, schema, path, true, errors),
        Some("number") => check_number(value, schema, path, false, errors),
        Some("boolean") if !value.is_boolean() => errors.push(type_error(path, schema, value)),
        _ => {}
    }
}

fn type_error(path: &str, schema: &JSONSchemaProps, value: &Value) -> FieldError {
    FieldError {
        path: path.to_owned(),
        problem: Problem::Type {
            expected: schema.type_.clone().unwrap_or_default(),
            found: json_type(value),
        },
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_object(
    value: &mut Value,
    schema: &JSONSchemaProps,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Value::Object(map) = value else {
        errors.push(type_error(path, schema, value));
        return;
    };
    let empty = BTreeMap::new();
    let properties = schema.properties.as_ref().unwrap_or(&empty);
    let additional = match &schema.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(schema)) => Some(schema.as_ref()),
        _ => None,
    };
    let open = schema.x_kubernetes_preserve_unknown_fields == Some(true)
        || matches!(
            schema.additional_properties,
            Some(JSONSchemaPropsOrBool::Bool(true))
        );
    // Pruned like the server: a null where the schema does not allow one is no value at all.
    map.retain(|key, child| {
        !child.is_null()
            || properties
                .get(key)
                .or(additional)
                .is_none_or(|schema| schema.nullable == Some(true))
    });
    for (key, child) in map.iter_mut() {
        let child_path = join(path, key);
        match properties.get(key).or(additional) {
            Some(child_schema) => check(child, child_schema, &child_path, errors),
            None if open => {}
            None => errors.push(FieldError {
                path: child_path,
                problem: Problem::UnknownField {
                    suggestion: closest(key, properties.keys().map(String::as_str))
                        .map(str::to_owned),
                },
            }),
        }
    }
    for required in schema.required.iter().flatten() {
        if !map.contains_key(required) {
            errors.push(FieldError {
                path: join(path, required),
                problem: Problem::Required,
            });
        }
    }
}

fn check_array(
    value: &mut Value,
    schema: &JSONSchemaProps,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Value::Array(items) = value else {
        errors.push(type_error(path, schema, value));
        return;
    };
    let count = i64::try_from(items.len()).unwrap_or(i64::MAX);
    if let Some(min) = schema.min_items.filter(|min| count < *min) {
        errors.push(FieldError {
            path: path.to_owned(),
            problem: Problem::Items {
                bound: "at least",
                limit: min,
            },
        });
    }
    if let Some(max) = schema.max_items.filter(|max| count > *max) {
        errors.push(FieldError {
            path: path.to_owned(),
            problem: Problem::Items {
                bound: "at most",
                limit: max,
            },
        });
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item_schema)) = &schema.items {
        for (index, item) in items.iter_mut().enumerate() {
            check(item, item_schema, &format!("{path}[{index}]"), errors);
        }
    }
    if schema.x_kubernetes_list_type.as_deref() == Some("set") {
        for (index, item) in items.iter().enumerate() {
            if items[..index].contains(item) {
                errors.push(FieldError {
                    path: format!("{path}[{index}]"),
                    problem: Problem::Duplicate(item.to_string()),
                });
            }
        }
    }
}

fn check_enum(
    value: &Value,
    schema: &JSONSchemaProps,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> bool {
    let Some(allowed) = &schema.enum_ else {
        return true;
    };
    if allowed.iter().any(|json| json.0 == *value) {
        return true;
    }
    errors.push(FieldError {
        path: path.to_owned(),
        problem: Problem::Unsupported {
            value: value.to_string(),
            supported: allowed.iter().map(|json| json.0.to_string()).collect(),
        },
    });
    false
}

fn check_string(value: &Value, schema: &JSONSchemaProps, path: &str, errors: &mut Vec<FieldError>) {
    let Value::String(text) = value else {
        errors.push(type_error(path, schema, value));
        return;
    };
    if !check_enum(value, schema, path, errors) {
        return;
    }
    let chars = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
    let mut problem = None;
    if let Some(max) = schema.max_length.filter(|max| chars > *max) {
        problem = Some(Problem::Length {
            bound: "at most",
            limit: max,
        });
    } else if let Some(min) = schema.min_length.filter(|min| chars < *min) {
        problem = Some(Problem::Length {
            bound: "at least",
            limit: min,
        });
    } else if let Some(pattern) = &schema.pattern
        && regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(text))
    {
        problem = Some(Problem::Pattern(pattern.clone()));
    }
    if let Some(problem) = problem {
        errors.push(FieldError {
            path: path.to_owned(),
            problem,
        });
    }
}

fn check_number(
    value: &Value,
    schema: &JSONSchemaProps,
    path: &str,
    integer: bool,
    errors: &mut Vec<FieldError>,
) {
    let Value::Number(number) = value else {
        errors.push(type_error(path, schema, value));
        return;
    };
    if integer && number.is_f64() {
        errors.push(type_error(path, schema, value));
        return;
    }
    if !check_enum(value, schema, path, errors) {
        return;
    }
    let Some(x) = number.as_f64() else { return };
    let out = match (schema.minimum, schema.maximum) {
        (Some(min), _) if x < min => Some(("greater than", min)),
        (_, Some(max)) if x > max => Some(("less than", max)),
        _ => None,
    };
    if let Some((bound, limit)) = out {
        errors.push(FieldError {
            path: path.to_owned(),
            problem: Problem::OutOfRange {
                bound,
                limit: format!("{limit}"),
            },
        });
    }
}

/// `path.key`, or `key` at the root.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The known name `wrong` most likely meant: the same but for case, else the nearest within
/// two edits (or a third of its length, for long names).
pub fn closest<'a>(wrong: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = wrong.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for name in known {
        let distance = if name.to_lowercase() == lower {
            0
        } else {
            edit_distance(&lower, &name.to_lowercase())
        };
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, name));
        }
    }
    let limit = (wrong.chars().count() / 3).max(2);
    best.filter(|(distance, _)| *distance <= limit)
        .map(|(_, name)| name)
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;
    use crate::KafkaFault;

    fn spec_schema() -> JSONSchemaProps {
        let crd = KafkaFault::crd();
        let root = crd.spec.versions[0]
            .schema
            .clone()
            .and_then(|s| s.open_api_v3_schema)
            .expect("schema");
        root.properties.expect("properties")["spec"].clone()
    }

    /// The messages for `spec`, each `path: problem`.
    fn problems(mut spec: Value) -> Vec<String> {
        let mut errors = Vec::new();
        check(&mut spec, &spec_schema(), "spec", &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    fn valid() -> Value {
        json!({"selector": {"matchLabels": {"app": "kafka"}}, "action": {"type": "Reject"}})
    }

    fn with(patch: &[(&str, Value)]) -> Value {
        let mut spec = valid();
        for (key, value) in patch {
            spec[*key] = value.clone();
        }
        spec
    }

    #[test]
    fn a_valid_spec_passes_and_nulls_are_pruned() {
        assert_eq!(problems(valid()), Vec::<String>::new());
        let mut spec = with(&[("mode", Value::Null), ("duration", Value::Null)]);
        let mut errors = Vec::new();
        check(&mut spec, &spec_schema(), "spec", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(spec.get("mode").is_none(), "a null mode is pruned");
        assert_eq!(spec["duration"], Value::Null, "duration is nullable");
    }

    #[test]
    fn unknown_fields_are_named_with_a_suggestion() {
        let spec = with(&[(
            "match",
            json!({"clientID": {"exact": "x"}, "apiKeys": ["Produce"], "topic": "orders"}),
        )]);
        assert_eq!(
            problems(spec),
            [
                "spec.match.clientID: unknown field; did you mean clientId?",
                "spec.match.topic: unknown field; did you mean topics?",
            ]
        );
        assert_eq!(
            problems(with(&[("timeout", json!("5m"))])),
            ["spec.timeout: unknown field"]
        );
        let action = json!({"type": "Delay", "delay": "1s", "jiter": "1ms"});
        assert_eq!(
            problems(with(&[("action", action)])),
            ["spec.action.jiter: unknown field; did you mean jitter?"]
        );
    }

    #[test]
    fn types_enums_bounds_lengths_patterns_and_sets() {
        let cases: [(&str, Value, &str); 12] = [
            (
                "mode",
                json!("Some"),
                "spec.mode: Unsupported value: \"Some\": supported values: \"All\", \"One\", \"Fixed\", \"Percent\"",
            ),
            (
                "ports",
                json!("9092"),
                "spec.ports: must be of type array, not string",
            ),
            (
                "ports",
                json!([]),
                "spec.ports: should have at least 1 items",
            ),
            (
                "ports",
                json!([0]),
                "spec.ports[0]: should be greater than or equal to 1",
            ),
            (
                "ports",
                json!([9092, 70000]),
                "spec.ports[1]: should be less than or equal to 65535",
            ),
            (
                "ports",
                json!([9092, 9093, 9092]),
                "spec.ports[2]: Duplicate value: 9092",
            ),
            (
                "value",
                json!(1.5),
                "spec.value: must be of type integer, not number",
            ),
            (
                "duration",
                json!("5 minutes"),
                "spec.duration: should match '^([0-9]+(ms|s|m|h))+$'",
            ),
            (
                "paused",
                json!("yes"),
                "spec.paused: must be of type boolean, not string",
            ),
            (
                "match",
                json!({"apiKeys": ["Produse"]}),
                "spec.match.apiKeys[0]: Unsupported value: \"Produse\"; did you mean \"Produce\"?",
            ),
            (
                "match",
                json!({"topics": [""]}),
                "spec.match.topics[0]: should be at least 1 characters long",
            ),
            (
                "match",
                json!({"groupId": "g".repeat(256)}),
                "spec.match.groupId: should be at most 255 characters long",
            ),
        ];
        for (field, value, want) in cases {
            let got = problems(with(&[(field, value.clone())]));
            assert_eq!(got.len(), 1, "{field}: {value}: {got:?}");
            assert!(
                got[0].starts_with(want),
                "{field}: {value}:\n{}\nnot\n{want}",
                got[0]
            );
        }
        let label = json!({"matchLabels": {"strimzi.io/broker-role": true}});
        assert_eq!(
            problems(with(&[("selector", label)])),
            [
                "spec.selector.matchLabels.strimzi.io/broker-role: must be of type string, not boolean"
            ]
        );
    }

    #[test]
    fn required_fields_are_named() {
        assert_eq!(
            problems(json!({"selector": {"matchLabels": {"a": "b"}}, "action": {}})),
            ["spec.action.type: Required value"]
        );
        assert_eq!(
            problems(json!({})),
            [
                "spec.action: Required value",
                "spec.selector: Required value"
            ]
        );
    }

    #[test]
    fn closest_prefers_case_then_few_edits() {
        let known = ["clientId", "topics", "groupId"];
        assert_eq!(closest("CLIENTID", known.into_iter()), Some("clientId"));
        assert_eq!(closest("topis", known.into_iter()), Some("topics"));
        assert_eq!(closest("nothing-like-it", known.into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
