//! Kafka's error names, as clients log them (`NOT_LEADER_OR_FOLLOWER`), read from the one table
//! there is (kafka-protocol's), and the APIs a Proxy fault's `Error` action can fail. They are
//! part of the API: the CRD's schema lists the names `errorCode` accepts and its CEL rules the
//! APIs, and [`crate::validate`] names an API the proxy cannot answer. The agent's proxy core
//! asserts that it answers exactly [`PROXY_ERROR_APIS`].

use std::sync::OnceLock;

use kafka_protocol::error::ResponseError;

/// The APIs whose requests an `Error` action can fail, by Kafka's names: every one the proxy
/// answers with a response of its own, and Metadata, whose response it rewrites.
pub const PROXY_ERROR_APIS: &[&str] = &[
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "Heartbeat",
    "LeaveGroup",
    "SyncGroup",
    "DescribeGroups",
    "CreateTopics",
    "DeleteTopics",
    "InitProducerId",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "EndTxn",
    "TxnOffsetCommit",
    "ConsumerGroupHeartbeat",
];

/// Beyond the highest code Kafka has assigned (133 in kafka-protocol 0.18), with room to grow.
const MAX_ERROR_CODE: i16 = 1024;

/// Kafka's name of an error code as the Java client logs it ("NOT_LEADER_OR_FOLLOWER"), or
/// `UNKNOWN(N)`; `None` for no error.
pub fn error_name(code: i16) -> Option<String> {
    match ResponseError::try_from_code(code)? {
        ResponseError::Unknown(code) => Some(format!("UNKNOWN({code})")),
        known => Some(screaming_snake(&known.to_string())),
    }
}

/// Every error Kafka names, with its code (NONE, which is no error, left out), in code order.
pub fn errors() -> &'static [(String, i16)] {
    static ERRORS: OnceLock<Vec<(String, i16)>> = OnceLock::new();
    ERRORS.get_or_init(|| {
        (-1..=MAX_ERROR_CODE)
            .filter_map(|code| Some((error_name(code)?, code)))
            .filter(|(name, _)| !name.starts_with("UNKNOWN("))
            .collect()
    })
}

/// The code of a Kafka error name ("NOT_LEADER_OR_FOLLOWER" is 6); `None` for an unknown name
/// and for NONE.
pub fn error_code(name: &str) -> Option<i16> {
    errors()
        .iter()
        .find(|(known, _)| known == name)
        .map(|&(_, code)| code)
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    let mut previous_lower = false;
    for c in camel.chars() {
        if c.is_ascii_uppercase() && previous_lower {
            out.push('_');
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Limits `errorCode` to the names [`errors`] knows, so the API server refuses a misspelt
/// error at apply time.
pub(crate) fn error_name_enum(schema: &mut schemars::Schema) {
    let names: Vec<serde_json::Value> = errors()
        .iter()
        .map(|(name, _)| name.clone().into())
        .collect();
    schema.insert("enum".into(), names.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        assert_eq!(error_name(0), None);
        assert_eq!(error_name(6).as_deref(), Some("NOT_LEADER_OR_FOLLOWER"));
        assert_eq!(error_name(-1).as_deref(), Some("UNKNOWN_SERVER_ERROR"));
        assert_eq!(error_name(9999).as_deref(), Some("UNKNOWN(9999)"));
        assert_eq!(error_code("NOT_LEADER_OR_FOLLOWER"), Some(6));
        assert_eq!(error_code("REBALANCE_IN_PROGRESS"), Some(27));
        assert_eq!(error_code("COORDINATOR_NOT_AVAILABLE"), Some(15));
        assert_eq!(error_code("CORRUPT_MESSAGE"), Some(2));
        assert_eq!(error_code("NONE"), None);
        assert_eq!(error_code("not_leader_or_follower"), None);
        assert_eq!(error_code("UNKNOWN(9999)"), None);
        assert!(errors().len() > 130, "{}", errors().len());
        for (name, code) in errors() {
            assert_eq!(error_name(*code).as_deref(), Some(name.as_str()));
        }
    }
}
