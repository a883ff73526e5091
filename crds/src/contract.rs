//! The contract between the operator and the agents, beyond the two kinds' fields: the labels
//! an agent selects its injections by, the finalizers, the names of injections and the ids
//! the agents' rules carry. Both sides build and read them here, so they cannot drift apart,
//! and the agent needs nothing of the operator.
//!
//! Every name here outlives a release: an upgraded operator must find the injections and an
//! upgraded agent the chains the old ones made, so the tests pin them.

use crate::hash::stable_hash;

/// The label holding the node an injection's pod runs on (through [`label_value`]), so each
/// agent watches only its own.
pub const NODE_LABEL: &str = "kafkashock.io/node";

/// The label holding the name of the KafkaFault an injection belongs to (through
/// [`label_value`]).
pub const FAULT_LABEL: &str = "kafkashock.io/fault";

/// The finalizer that keeps an injection until the agent has removed its rules (or, when its
/// pod or node is gone, until the operator lets it go).
pub const FINALIZER: &str = "kafkashock.io/rules";

/// The finalizer the operator keeps on each KafkaFault until all its injections are gone.
pub const FAULT_FINALIZER: &str = "kafkashock.io/cleanup";

/// Prefix of the ids the agent puts on the rules of an injection ([`rule_id`]); CLI runs use
/// their own (`cli.`), so neither ever sweeps the other's.
const AGENT_ID_PREFIX: &str = "kfi.";

/// The longest name that is also a valid label value and DNS label.
const MAX_NAME: usize = 63;

/// The name of the injection of fault `fault_name` on pod `pod_name`: `<fault>-<pod>` when that
/// is a valid DNS label, else made one (lowercase letters, digits and '-', at most 63 characters)
/// with a hash of the full name appended, so that different pairs keep different names.
pub fn injection_name(fault_name: &str, pod_name: &str) -> String {
    let full = format!("{fault_name}-{pod_name}");
    fit(&full, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
    })
}

/// `value` as a label value: itself when it fits (at most 63 characters of letters, digits,
/// '-', '_' and '.'), else shortened like [`injection_name`]. Fault and node names can be longer
/// than a label allows; whoever selects by [`NODE_LABEL`] or [`FAULT_LABEL`] must use this too.
pub fn label_value(value: &str) -> String {
    fit(value, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
    })
}

/// `text` when it is at most [`MAX_NAME`] bytes of `allowed` characters starting and ending
/// with a letter or digit; else its allowed characters (others become '-'), cut to leave room
/// for '-' and 8 hex digits of the hash of `text`.
fn fit(text: &str, allowed: fn(u8) -> bool) -> String {
    let edges_ok = |s: &str| {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    if text.len() <= MAX_NAME && text.bytes().all(allowed) && edges_ok(text) {
        return text.to_owned();
    }
    let suffix = format!("{:08x}", stable_hash(&[text]) as u32);
    let cleaned: String = text
        .to_ascii_lowercase()
        .bytes()
        .map(|b| if allowed(b) { char::from(b) } else { '-' })
        .take(MAX_NAME - suffix.len() - 1)
        .collect();
    let stem = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if stem.is_empty() {
        suffix
    } else {
        format!("{stem}-{suffix}")
    }
}

/// The id the rules of injection `uid` carry when the agent of `node` installs them. The node
/// is part of it so that agents sharing one kernel (as the lab's do) never sweep each other's.
pub fn rule_id(node: &str, uid: &str) -> String {
    format!("{AGENT_ID_PREFIX}{node}.{uid}")
}

/// The node and injection UID of an agent rule id; `None` for anything else (CLI runs' ids).
/// UIDs hold no '.', node names may.
pub fn parse_rule_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix(AGENT_ID_PREFIX)?;
    let (node, uid) = rest.rsplit_once('.')?;
    (!node.is_empty() && !uid.is_empty()).then_some((node, uid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_that_stay_distinct() {
        assert_eq!(
            injection_name("reset-orders", "broker-0"),
            "reset-orders-broker-0"
        );
        let long_fault = "a-very-long-fault-name-that-someone-wrote-to-explain-everything";
        let a = injection_name(long_fault, "my-cluster-broker-0");
        let b = injection_name(long_fault, "my-cluster-broker-1");
        for name in [&a, &b] {
            assert_eq!(name.len(), 63, "{name}");
            assert!(name.starts_with("a-very-long-fault-name"), "{name}");
        }
        assert_ne!(a, b);
        assert_eq!(
            a,
            injection_name(long_fault, "my-cluster-broker-0"),
            "stable"
        );

        let dotted = injection_name("f", "broker.0");
        assert!(
            dotted.starts_with("f-broker-0-") && dotted.len() == "f-broker-0-".len() + 8,
            "{dotted}"
        );
        assert_ne!(
            dotted,
            injection_name("f", "broker-0"),
            "'.' and '-' must not collide"
        );
        // A cut that ends on '-' or '.' is trimmed before the suffix.
        let cut = injection_name(&format!("{}-x", "a".repeat(53)), "p");
        assert!(!cut.contains("--"), "{cut}");
        assert_eq!(fit("...", |b| b.is_ascii_lowercase()).len(), 8);
        for name in [&a, &b, &dotted, &cut] {
            assert!(
                name.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            );
            assert!(!name.starts_with('-') && !name.ends_with('-'));
        }
    }

    #[test]
    fn label_values_keep_valid_names_and_shorten_long_ones() {
        assert_eq!(
            label_value("ip-10-0-0-1.ec2.internal"),
            "ip-10-0-0-1.ec2.internal"
        );
        assert_eq!(label_value("Node_1"), "Node_1");
        let long = label_value(&"n".repeat(100));
        assert_eq!(long.len(), 63);
        assert_eq!(long, label_value(&"n".repeat(100)));
    }

    #[test]
    fn rule_ids_round_trip_with_dotted_node_names() {
        let id = rule_id("node-1.eu-west.internal", "0b0f6c6e-1b7a");
        assert_eq!(
            parse_rule_id(&id),
            Some(("node-1.eu-west.internal", "0b0f6c6e-1b7a"))
        );
        assert_eq!(parse_rule_id("cli.1.2.3.x"), None);
        assert_eq!(parse_rule_id("kfi.nodeonly"), None);
        assert_eq!(parse_rule_id("kfi..uid"), None);
    }
}
