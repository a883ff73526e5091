//! The record `kafka-shock sniff` prints for each request: its JSON form is
//! a contract (field names are fixed), its one-line form is for people.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::json::{JsonWriter, write_rfc3339};

/// One Kafka request, with its response when one was seen.
///
/// Its JSON form (see [`Event::write_json`]) has the fields in this order; the optional ones
/// after `errors` are left out when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When the request was captured, as time since the Unix epoch; printed in RFC 3339.
    pub ts: Duration,
    /// Client address ("ip:port", "[ip]:port" for IPv6).
    pub client: SocketAddr,
    /// Broker address.
    pub broker: SocketAddr,
    /// Client id from the request header.
    pub client_id: Option<String>,
    /// Kafka's api name ("Produce", …), or "Unknown(N)".
    pub api: Cow<'static, str>,
    /// Api version.
    pub api_version: i16,
    /// Correlation id.
    pub correlation_id: i32,
    /// Topic names; a topic id no response resolved stays as its UUID.
    pub topics: Vec<String>,
    /// Produce: total records; otherwise null.
    pub records: Option<u64>,
    /// Request frame size, including the 4-byte size prefix.
    pub request_bytes: u64,
    /// Time from request to response; null when no response was seen.
    pub latency_us: Option<u64>,
    /// Kafka error names in the response; null when no response was seen.
    pub errors: Option<Vec<String>>,
    /// Consumer or share group named by the request.
    pub group_id: Option<String>,
    /// Transactional id named by the request.
    pub transactional_id: Option<String>,
    /// Response frame size, including the prefix, when one was seen.
    pub response_bytes: Option<u64>,
    /// Why the request or its response was not fully decoded.
    pub decode_error: Option<String>,
}

impl Event {
    /// The event as one JSON line (the machine-readable contract).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the event as one JSON object (no newline) to `out` (see [`JsonWriter`], which
    /// `sniff --json` keeps across events).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        JsonWriter::default().write(self, out);
    }

    /// The event as one human line, in the spirit of tcpdump and kcat:
    /// time, client → broker, client id, api and version, topics, records,
    /// latency and errors.
    pub fn to_line(&self) -> String {
        let mut line = format!("{} {} → {}", rfc3339(self.ts), self.client, self.broker);
        let client_id = self.client_id.as_deref().unwrap_or("-");
        let _ = write!(
            line,
            " {client_id} {} v{} #{}",
            self.api, self.api_version, self.correlation_id
        );
        if !self.topics.is_empty() {
            let _ = write!(line, " topics={}", self.topics.join(","));
        }
        if let Some(group) = &self.group_id {
            let _ = write!(line, " group={group}");
        }
        if let Some(txn) = &self.transactional_id {
            let _ = write!(line, " txn={txn}");
        }
        if let Some(records) = self.records {
            let _ = write!(line, " records={records}");
        }
        let _ = write!(line, " {}B", self.request_bytes);
        match self.latency_us {
            Some(us) => {
                let _ = write!(line, " {}.{:03}ms", us / 1000, us % 1000);
            }
            None => line.push_str(" no-response"),
        }
        if let Some(errors) = self.errors.as_ref().filter(|e| !e.is_empty()) {
            let _ = write!(line, " errors={}", errors.join(","));
        }
        if let Some(error) = &self.decode_error {
            let _ = write!(line, " decode-error=\"{error}\"");
        }
        line
    }
}

/// Which events to print, as the CLI's `--api`, `--client-id` and `--topic`
/// say. Each non-empty list must match one of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Api names, case-insensitive ("produce", "Fetch").
    pub apis: Vec<String>,
    /// Exact client ids.
    pub client_ids: Vec<String>,
    /// Exact topic names (or topic id strings).
    pub topics: Vec<String>,
}

impl EventFilter {
    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        let api =
            self.apis.is_empty() || self.apis.iter().any(|a| a.eq_ignore_ascii_case(&event.api));
        let client = self.client_ids.is_empty()
            || event
                .client_id
                .as_ref()
                .is_some_and(|id| self.client_ids.contains(id));
        let topic = self.topics.is_empty() || event.topics.iter().any(|t| self.topics.contains(t));
        api && client && topic
    }
}

/// Formats time since the Unix epoch as RFC 3339 UTC with microseconds.
pub fn rfc3339(since_epoch: Duration) -> String {
    let mut out = Vec::with_capacity(27);
    write_rfc3339(&mut out, since_epoch);
    String::from_utf8(out).unwrap_or_default()
}

/// A request event for other modules' tests: `api` from `client_id` at 10.77.0.100:40000 to
/// 10.77.0.10:9092, naming `topics`, not yet answered.
#[cfg(test)]
pub(crate) fn test_request(api: &str, client_id: &str, topics: &[&str]) -> Event {
    Event {
        ts: Duration::ZERO,
        client: "10.77.0.100:40000".parse().expect("client"),
        broker: "10.77.0.10:9092".parse().expect("broker"),
        client_id: Some(client_id.to_owned()),
        api: api.to_owned().into(),
        api_version: 9,
        correlation_id: 1,
        topics: topics.iter().map(|topic| (*topic).to_owned()).collect(),
        records: None,
        request_bytes: 100,
        latency_us: None,
        errors: None,
        group_id: None,
        transactional_id: None,
        response_bytes: None,
        decode_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            ts: Duration::from_micros(1_700_000_000_123_456),
            client: "[fd00::1]:40000".parse().expect("client"),
            broker: "10.0.0.2:9092".parse().expect("broker"),
            client_id: Some("checkout-svc".into()),
            api: "Produce".into(),
            api_version: 9,
            correlation_id: 17,
            topics: vec!["orders".into()],
            records: Some(3),
            request_bytes: 200,
            latency_us: Some(1234),
            errors: Some(vec!["NOT_LEADER_OR_FOLLOWER".into()]),
            group_id: None,
            transactional_id: None,
            response_bytes: None,
            decode_error: None,
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(
            rfc3339(Duration::from_micros(1_700_000_000_123_456)),
            "2023-11-14T22:13:20.123456Z"
        );
    }

    #[test]
    fn json_has_the_contract_fields() {
        let json: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        let expected = serde_json::json!({
            "ts": "2023-11-14T22:13:20.123456Z", "client": "[fd00::1]:40000", "broker": "10.0.0.2:9092",
            "client_id": "checkout-svc", "api": "Produce", "api_version": 9, "correlation_id": 17,
            "topics": ["orders"], "records": 3, "request_bytes": 200, "latency_us": 1234,
            "errors": ["NOT_LEADER_OR_FOLLOWER"]
        });
        assert_eq!(json, expected);
        let mut unanswered = sample();
        (
            unanswered.latency_us,
            unanswered.errors,
            unanswered.client_id,
        ) = (None, None, None);
        let json: serde_json::Value = serde_json::from_str(&unanswered.to_json()).expect("json");
        assert!(
            json["latency_us"].is_null() && json["errors"].is_null() && json["client_id"].is_null()
        );
    }

    #[test]
    fn json_strings_and_numbers_escape_as_serde_json_does() {
        let awkward = "q\"b\\s/\u{0}\u{8}\u{c}\n\r\t\u{1f}\u{7f}é→😀";
        let mut event = sample();
        event.client_id = Some(awkward.into());
        event.topics = vec![awkward.into(), String::new()];
        event.decode_error = Some(awkward.into());
        (event.api_version, event.correlation_id) = (-1, i32::MIN);
        event.response_bytes = Some(u64::MAX);
        event.ts = Duration::new(253_402_300_799, 999_999_999);
        let json = event.to_json();
        let quoted = serde_json::to_string(awkward).expect("quote");
        assert!(json.contains(&format!("\"client_id\":{quoted},")));
        assert!(json.contains(&format!("\"topics\":[{quoted},\"\"]")));
        assert!(json.contains(&format!("\"decode_error\":{quoted}}}")));
        assert!(json.contains("\"ts\":\"9999-12-31T23:59:59.999999Z\""));
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value["correlation_id"], i32::MIN);
        assert_eq!(value["api_version"], -1);
        assert_eq!(value["response_bytes"], u64::MAX);
        assert_eq!(value["client"], "[fd00::1]:40000");
    }

    #[test]
    fn human_line_and_filter() {
        assert_eq!(
            sample().to_line(),
            "2023-11-14T22:13:20.123456Z [fd00::1]:40000 → 10.0.0.2:9092 checkout-svc Produce v9 #17 \
             topics=orders records=3 200B 1.234ms errors=NOT_LEADER_OR_FOLLOWER"
        );
        let filter = EventFilter {
            apis: vec!["produce".into()],
            topics: vec!["orders".into()],
            ..Default::default()
        };
        assert!(filter.matches(&sample()));
        let other = EventFilter {
            client_ids: vec!["billing".into()],
            ..Default::default()
        };
        assert!(!other.matches(&sample()));
    }
}
