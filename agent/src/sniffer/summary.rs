//! Totals over a capture, per api, per client id and per topic: what a
//! platform engineer asks first ("who sends what, how fast, with which errors").

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::sniffer::event::Event;

/// Distinct names tracked per table; the rest are summed under `(other)`.
const MAX_ROWS: usize = 10_000;
/// Latency buckets per power of two (about 9% resolution).
const SUB_BUCKETS: f64 = 8.0;

/// Latencies as a log-scale histogram: bounded memory, ~9% precise percentiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Latencies {
    buckets: BTreeMap<u32, u64>,
    count: u64,
}

impl Latencies {
    fn add(&mut self, us: u64) {
        let bucket = ((us.max(1) as f64).log2() * SUB_BUCKETS).floor() as u32;
        *self.buckets.entry(bucket).or_default() += 1;
        self.count += 1;
    }

    /// The upper bound of the bucket holding the `q` quantile, in µs.
    fn quantile(&self, q: f64) -> Option<u64> {
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some((f64::from(bucket + 1) / SUB_BUCKETS).exp2().round() as u64);
            }
        }
        None
    }
}

/// Totals for one row of a table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests.
    pub requests: u64,
    /// Request bytes, prefixes included.
    pub bytes: u64,
    /// Produced records.
    pub records: u64,
    /// Responses that carried at least one error.
    pub errors: u64,
    latencies: Latencies,
}

impl Stats {
    fn add(&mut self, event: &Event) {
        self.requests += 1;
        self.bytes = self.bytes.saturating_add(event.request_bytes);
        self.records = self.records.saturating_add(event.records.unwrap_or(0));
        if event.errors.as_ref().is_some_and(|e| !e.is_empty()) {
            self.errors += 1;
        }
        if let Some(us) = event.latency_us {
            self.latencies.add(us);
        }
    }

    /// Median latency in µs (bucket upper bound), if any response was seen.
    pub fn p50_us(&self) -> Option<u64> {
        self.latencies.quantile(0.50)
    }

    /// 99th percentile latency in µs (bucket upper bound).
    pub fn p99_us(&self) -> Option<u64> {
        self.latencies.quantile(0.99)
    }
}

/// Aggregates events for the end-of-capture summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per api name.
    pub by_api: BTreeMap<String, Stats>,
    /// Per client id ("-" when absent).
    pub by_client_id: BTreeMap<String, Stats>,
    /// Per topic.
    pub by_topic: BTreeMap<String, Stats>,
}

impl Summary {
    /// Adds one event to every table it belongs to.
    pub fn add(&mut self, event: &Event) {
        row(&mut self.by_api, &event.api).add(event);
        row(
            &mut self.by_client_id,
            event.client_id.as_deref().unwrap_or("-"),
        )
        .add(event);
        for topic in &event.topics {
            row(&mut self.by_topic, topic).add(event);
        }
    }

    /// The three tables as aligned plain text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (title, table) in [
            ("API", &self.by_api),
            ("CLIENT ID", &self.by_client_id),
            ("TOPIC", &self.by_topic),
        ] {
            render_table(&mut out, title, table);
        }
        out
    }
}

fn row<'a>(table: &'a mut BTreeMap<String, Stats>, name: &str) -> &'a mut Stats {
    let key = if table.contains_key(name) || table.len() < MAX_ROWS {
        name
    } else {
        "(other)"
    };
    table.entry(key.to_owned()).or_default()
}

fn render_table(out: &mut String, title: &str, table: &BTreeMap<String, Stats>) {
    let header = [
        title, "REQUESTS", "BYTES", "RECORDS", "P50", "P99", "ERRORS",
    ];
    let rows: Vec<[String; 7]> = table
        .iter()
        .map(|(name, s)| {
            [
                name.clone(),
                s.requests.to_string(),
                s.bytes.to_string(),
                s.records.to_string(),
                latency(s.p50_us()),
                latency(s.p99_us()),
                s.errors.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (width, cell) in widths.iter_mut().zip(r) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; 7]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i == 0 {
                let _ = write!(text, "{cell:<width$}");
            } else {
                let _ = write!(text, "  {cell:>width$}");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]].map(String::as_str));
    }
    out.push('\n');
}

fn latency(us: Option<u64>) -> String {
    match us {
        None => "-".to_owned(),
        Some(us) if us < 1000 => format!("{us}us"),
        Some(us) => format!("{}.{:01}ms", us / 1000, us % 1000 / 100),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn event(api: &str, topic: &str, latency_us: Option<u64>, errors: &[&str]) -> Event {
        Event {
            ts: Duration::ZERO,
            client: "10.0.0.1:40000".parse().expect("client"),
            broker: "10.0.0.2:9092".parse().expect("broker"),
            client_id: Some("app".into()),
            api: api.to_owned().into(),
            api_version: 9,
            correlation_id: 1,
            topics: vec![topic.into()],
            records: Some(2),
            request_bytes: 100,
            latency_us,
            errors: latency_us.map(|_| errors.iter().map(|e| e.to_string()).collect()),
            group_id: None,
            transactional_id: None,
            response_bytes: None,
            decode_error: None,
        }
    }

    #[test]
    fn aggregates_and_renders() {
        let mut summary = Summary::default();
        for i in 1..=100 {
            summary.add(&event("Produce", "orders", Some(i * 100), &[]));
        }
        summary.add(&event(
            "Fetch",
            "orders",
            Some(5000),
            &["NOT_LEADER_OR_FOLLOWER"],
        ));
        summary.add(&event("Fetch", "payments", None, &[]));
        let produce = &summary.by_api["Produce"];
        assert_eq!(
            (produce.requests, produce.bytes, produce.records),
            (100, 10_000, 200)
        );
        let p50 = produce.p50_us().expect("p50");
        assert!((5000..=5500).contains(&p50), "{p50}");
        let p99 = produce.p99_us().expect("p99");
        assert!((9900..=10_800).contains(&p99), "{p99}");
        assert_eq!(summary.by_api["Fetch"].errors, 1);
        assert_eq!(summary.by_topic["orders"].requests, 101);
        let text = summary.render();
        assert!(text.contains("API"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("Produce") && l.contains("100")),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("payments") && l.contains(" -")),
            "{text}"
        );
    }
}
