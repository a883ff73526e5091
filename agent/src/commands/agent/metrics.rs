//! The agent's Prometheus metrics, served with `/healthz` by `kafka_shock_daemon::http`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kafka_shock_crds::{InjectionPhase, KafkaFaultInjection};
use kafka_shock_daemon::Exported;
use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::edges::session::SessionStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InjectionLabels {
    pub namespace: String,
    pub injection: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub namespace: String,
    pub injection: String,
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub namespace: String,
    pub injection: String,
    /// Inline: delayed, dropped, reset or failed_open. Proxy: errored, throttled, delayed,
    /// corrupted, duplicated, undecodable or failed_open (requests); proxied, handed_over or
    /// tls_passthrough (connections).
    pub outcome: String,
}

/// Everything the agent counts.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub injections: Family<PhaseLabels, Gauge>,
    pub requests_seen: Family<InjectionLabels, Gauge>,
    pub requests_matched: Family<ApiLabels, Gauge>,
    pub rules_installed: Family<InjectionLabels, Gauge>,
    pub inline_requests: Family<OutcomeLabels, Gauge>,
    pub proxy_requests: Family<OutcomeLabels, Gauge>,
    pub proxy_connections: Family<OutcomeLabels, Gauge>,
    pub apply_seconds: Histogram,
    pub remove_seconds: Histogram,
    /// The watch loop is running (for `/healthz`).
    pub watching: AtomicBool,
    /// Phase last reported per injection UID, for the by-phase gauge.
    phases: Mutex<HashMap<String, InjectionPhase>>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kafkashock_agent");
        let metrics = Metrics {
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            injections: Family::default(),
            requests_seen: Family::default(),
            requests_matched: Family::default(),
            rules_installed: Family::default(),
            inline_requests: Family::default(),
            proxy_requests: Family::default(),
            proxy_connections: Family::default(),
            apply_seconds: latency_histogram(),
            remove_seconds: latency_histogram(),
            watching: AtomicBool::new(false),
            phases: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Injections reconciled",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "injections",
            "Injections of this node, by phase",
            metrics.injections.clone(),
        );
        registry.register(
            "requests_seen",
            "Kafka requests decoded in the pod's namespace by the injection's current session",
            metrics.requests_seen.clone(),
        );
        registry.register(
            "requests_matched",
            "Kafka requests the injection's match selected in its current session, by api",
            metrics.requests_matched.clone(),
        );
        registry.register(
            "rules_installed",
            "Rules the injection has in its pod's namespace",
            metrics.rules_installed.clone(),
        );
        registry.register(
            "inline_requests",
            "Requests an Inline injection's current session delayed, dropped, reset, or let through because its hold budget was full (failed_open)",
            metrics.inline_requests.clone(),
        );
        registry.register(
            "proxy_requests",
            "Requests a Proxy injection's current session errored, throttled, delayed, corrupted, duplicated, could not decode (undecodable), or let through unchanged (failed_open)",
            metrics.proxy_requests.clone(),
        );
        registry.register(
            "proxy_connections",
            "Connections a Proxy injection's current session proxied, handed over (reset to reconnect through the proxy), or passed through unread because they carry TLS (tls_passthrough)",
            metrics.proxy_connections.clone(),
        );
        registry.register(
            "rule_apply_seconds",
            "Time to install an injection's rules",
            metrics.apply_seconds.clone(),
        );
        registry.register(
            "rule_remove_seconds",
            "Time to remove an injection's rules",
            metrics.remove_seconds.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records the phase last reported for the injection `uid` (`None`: it is gone), and sets
    /// the by-phase gauge from all of them.
    pub fn set_phase(&self, uid: &str, phase: Option<InjectionPhase>) {
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        match phase {
            Some(phase) => phases.insert(uid.to_owned(), phase),
            None => phases.remove(uid),
        };
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for phase in phases.values() {
            *counts.entry(format!("{phase:?}")).or_default() += 1;
        }
        self.injections.clear();
        for (phase, count) in counts {
            self.injections
                .get_or_create(&PhaseLabels { phase })
                .set(count);
        }
    }

    /// Copies what the injection's session has seen and done into the gauges.
    pub fn publish(&self, injection: &KafkaFaultInjection, stats: &SessionStats) {
        let namespace = injection.namespace().unwrap_or_default();
        let name = injection.name_any();
        let labels = InjectionLabels {
            namespace: namespace.clone(),
            injection: name.clone(),
        };
        let gauge = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
        self.requests_seen
            .get_or_create(&labels)
            .set(gauge(stats.requests_seen));
        self.rules_installed
            .get_or_create(&labels)
            .set(gauge(stats.rules_installed as u64));
        if let Some(inline) = &stats.inline {
            for (outcome, count) in [
                ("delayed", inline.delayed),
                ("dropped", inline.dropped),
                ("reset", inline.reset),
                ("failed_open", inline.failed_open),
            ] {
                self.inline_requests
                    .get_or_create(&OutcomeLabels {
                        namespace: namespace.clone(),
                        injection: name.clone(),
                        outcome: outcome.to_owned(),
                    })
                    .set(gauge(count));
            }
        }
        if let Some(proxy) = &stats.proxy {
            let c = &proxy.counters;
            let outcome = |outcome: &str| OutcomeLabels {
                namespace: namespace.clone(),
                injection: name.clone(),
                outcome: outcome.to_owned(),
            };
            for (label, count) in [
                ("errored", c.errored),
                ("throttled", c.throttled),
                ("delayed", c.delayed),
                ("corrupted", c.corrupted),
                ("duplicated", c.duplicated),
                ("undecodable", c.undecodable),
                ("failed_open", c.failed_open),
            ] {
                self.proxy_requests
                    .get_or_create(&outcome(label))
                    .set(gauge(count));
            }
            for (label, count) in [
                ("proxied", c.connections),
                ("handed_over", proxy.handed_over),
                ("tls_passthrough", c.passthrough_tls),
            ] {
                self.proxy_connections
                    .get_or_create(&outcome(label))
                    .set(gauge(count));
            }
        }
        for (api, count) in &stats.matched_by_api {
            self.requests_matched
                .get_or_create(&ApiLabels {
                    namespace: namespace.clone(),
                    injection: name.clone(),
                    api: api.clone(),
                })
                .set(gauge(*count));
        }
    }

    /// Drops what the metrics keep about an injection that is going.
    pub fn forget(&self, injection: &KafkaFaultInjection, uid: &str) {
        self.set_phase(uid, None);
        let labels = InjectionLabels {
            namespace: injection.namespace().unwrap_or_default(),
            injection: injection.name_any(),
        };
        self.requests_seen.remove(&labels);
        self.rules_installed.remove(&labels);
    }

    pub fn observe_apply(&self, took: Duration) {
        self.apply_seconds.observe(took.as_secs_f64());
    }

    pub fn observe_remove(&self, took: Duration) {
        self.remove_seconds.observe(took.as_secs_f64());
    }
}

impl Exported for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn health(&self) -> Result<(), &'static str> {
        if self.watching.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("not watching yet")
        }
    }
}
