//! The value parsers of flags that name things or durations, so that a command refuses a name
//! that can never match (`sniff --api Prodcue`) before it starts, listing the valid ones,
//! instead of running quietly with a filter that hits nothing.

use std::time::Duration;

use kafka_shock_crds::schema_walk::closest;
use kafka_shock_crds::{api_key_names, parse_duration, topic_name_problem};

use crate::edges::session::MIN_LEASE;

/// `--api`: a Kafka API name, as the protocol spells it (case does not matter); the name is
/// given back as spelt there.
pub fn parse_api(text: &str) -> Result<String, String> {
    let names: Vec<String> = api_key_names().collect();
    if let Some(name) = names.iter().find(|name| name.eq_ignore_ascii_case(text)) {
        return Ok(name.clone());
    }
    let hint = closest(text, names.iter().map(String::as_str))
        .map(|near| format!(" (did you mean {near}?)"))
        .unwrap_or_default();
    Err(format!(
        "{text:?} is not a Kafka API name{hint}; the API names are: {}",
        names.join(", ")
    ))
}

/// `--topic`: a name Kafka would accept for a topic (topic ids are written in the same
/// characters).
pub fn parse_topic(text: &str) -> Result<String, String> {
    match topic_name_problem(text) {
        None => Ok(text.to_owned()),
        Some(problem) => Err(format!("{text:?} is not a Kafka topic name: {problem}")),
    }
}

/// `--lease`: a duration as a fault writes one (`30s`, `2m`), at least [`MIN_LEASE`].
pub fn parse_lease(text: &str) -> Result<Duration, String> {
    let lease = parse_duration(text).map_err(|error| error.to_string())?;
    if lease < MIN_LEASE {
        return Err(format!(
            "{text} is too short: a lease is renewed every third of it, so give at least {}s",
            MIN_LEASE.as_secs()
        ));
    }
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_names_are_checked_and_listed() {
        assert_eq!(parse_api("Produce"), Ok("Produce".into()));
        assert_eq!(parse_api("produce"), Ok("Produce".into()));
        let error = parse_api("Prodcue").unwrap_err();
        assert!(
            error.starts_with("\"Prodcue\" is not a Kafka API name (did you mean Produce?)"),
            "{error}"
        );
        assert!(
            error.contains("Produce, Fetch, ListOffsets, Metadata"),
            "{error}"
        );
        assert!(parse_api("").is_err());
    }

    #[test]
    fn topics_follow_kafka_rules() {
        assert_eq!(parse_topic("orders.v2_dlq-1"), Ok("orders.v2_dlq-1".into()));
        assert!(
            parse_topic("orders events")
                .unwrap_err()
                .contains("only ASCII letters")
        );
        assert!(parse_topic("..").is_err());
    }

    #[test]
    fn leases_have_a_floor() {
        assert_eq!(parse_lease("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_lease("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_lease("2s").unwrap_err().contains("at least 3s"));
        assert!(parse_lease("thirty").is_err());
    }
}
