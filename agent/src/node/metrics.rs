//! The agent's Prometheus metrics, served with `/healthz` by `kafka_shock_daemon::http`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_shock_daemon::Exported;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
    /// delayed, dropped, reset or failed_open.
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
    pub apply_seconds: Histogram,
    pub remove_seconds: Histogram,
    /// The watch loop is running (for `/healthz`).
    pub watching: AtomicBool,
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
            apply_seconds: latency_histogram(),
            remove_seconds: latency_histogram(),
            watching: AtomicBool::new(false),
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
