//! The operator's Prometheus metrics, served with `/healthz` by `kafka_shock_daemon::http`.
//!
//! Counters say how hard the controller works and why it fails; gauges say where the faults and
//! their injections are, so a dashboard shows "3 faults Active, 1 Recovering" without listing
//! objects. The gauges are kept per fault and moved by differences, so a reconcile costs the
//! same whatever the number of faults.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use crate::rollup::current_phase;
use kafka_shock_crds::{FaultPhase, InjectionPhase, KafkaFaultInjection};
use kafka_shock_daemon::Exported;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

/// What one fault last contributed to the gauges.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tally {
    fault: Option<FaultPhase>,
    injections: HashMap<InjectionPhase, i64>,
}

/// The operator's metrics, registered under the prefix `kafka_shock_operator`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ReasonLabel, Counter>,
    duration: Histogram,
    injections: Family<PhaseLabel, Gauge>,
    faults: Family<PhaseLabel, Gauge>,
    tallies: Mutex<HashMap<String, Tally>>,
}

const INJECTION_PHASES: [InjectionPhase; 5] = [
    InjectionPhase::Pending,
    InjectionPhase::Active,
    InjectionPhase::Paused,
    InjectionPhase::Recovered,
    InjectionPhase::Failed,
];

const FAULT_PHASES: [FaultPhase; 7] = [
    FaultPhase::Pending,
    FaultPhase::Injecting,
    FaultPhase::Active,
    FaultPhase::Paused,
    FaultPhase::Recovering,
    FaultPhase::Completed,
    FaultPhase::Failed,
];

fn label(phase: impl std::fmt::Debug) -> PhaseLabel {
    PhaseLabel {
        phase: format!("{phase:?}"),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kafka_shock_operator");
        let reconciles = Counter::default();
        registry.register(
            "reconciles",
            "KafkaFault reconciles run",
            reconciles.clone(),
        );
        let errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "KafkaFault reconciles that failed, by reason",
            errors.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register_with_unit(
            "reconcile_duration",
            "How long one KafkaFault reconcile takes",
            Unit::Seconds,
            duration.clone(),
        );
        let injections = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "injections",
            "KafkaFaultInjections of the faults this operator reconciles, by phase",
            injections.clone(),
        );
        let faults = Family::<PhaseLabel, Gauge>::default();
        registry.register("faults", "KafkaFaults, by phase", faults.clone());
        // Every phase shows from the start, at zero, so queries need no `or vector(0)`.
        for phase in INJECTION_PHASES {
            injections.get_or_create_owned(&label(phase));
        }
        for phase in FAULT_PHASES {
            faults.get_or_create_owned(&label(phase));
        }
        Self {
            registry,
            reconciles,
            errors,
            duration,
            injections,
            faults,
            tallies: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Counts one reconcile that took `elapsed`.
    pub fn reconciled(&self, elapsed: Duration) {
        self.reconciles.inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts one failed reconcile.
    pub fn failed(&self, reason: &'static str) {
        self.errors.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Records that fault `key` (namespace/name) is in `phase` with `injections`.
    pub fn observe(&self, key: &str, phase: FaultPhase, injections: &[KafkaFaultInjection]) {
        let mut now = Tally {
            fault: Some(phase),
            ..Tally::default()
        };
        for injection in injections {
            *now.injections.entry(current_phase(injection)).or_default() += 1;
        }
        self.replace(key, now);
    }

    /// Drops fault `key` from the gauges: it is gone.
    pub fn forget(&self, key: &str) {
        self.replace(key, Tally::default());
    }

    fn replace(&self, key: &str, now: Tally) {
        let mut tallies = self
            .tallies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = if now == Tally::default() {
            tallies.remove(key).unwrap_or_default()
        } else {
            tallies
                .insert(key.to_owned(), now.clone())
                .unwrap_or_default()
        };
        if let Some(phase) = before.fault {
            self.faults.get_or_create(&label(phase)).dec();
        }
        if let Some(phase) = now.fault {
            self.faults.get_or_create(&label(phase)).inc();
        }
        for phase in INJECTION_PHASES {
            let change = now.injections.get(&phase).copied().unwrap_or(0)
                - before.injections.get(&phase).copied().unwrap_or(0);
            if change != 0 {
                self.injections.get_or_create(&label(phase)).inc_by(change);
            }
        }
    }

    /// The metrics in the OpenMetrics text format, as `/metrics` serves them.
    #[cfg(test)]
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

impl Exported for Metrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}

#[cfg(test)]
mod tests {
    use kafka_shock_crds::KafkaFaultInjectionStatus;

    use super::*;
    use crate::{
        injections::{injection_changes, time},
        select_targets,
        targets::tests::{fault, pod},
    };

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    }

    #[test]
    fn counts_and_gauges_follow_the_faults() {
        let metrics = Metrics::default();
        metrics.reconciled(Duration::from_millis(3));
        metrics.reconciled(Duration::from_millis(5));
        metrics.failed("apply_injection");

        let f = fault("All", None);
        let now = time("2025-01-02T03:04:05Z");
        let targets = select_targets(&f, &[pod("broker-0"), pod("broker-1")]).unwrap();
        let mut injections = injection_changes(&f, &targets, &[], &now, None)
            .unwrap()
            .create;
        metrics.observe("kafka/a", FaultPhase::Injecting, &injections);
        metrics.observe("kafka/b", FaultPhase::Injecting, &injections[..1]);
        injections[0].status = Some(KafkaFaultInjectionStatus {
            phase: InjectionPhase::Active,
            ..Default::default()
        });
        metrics.observe("kafka/a", FaultPhase::Injecting, &injections);

        let text = metrics.encode().unwrap();
        assert_eq!(
            line(&text, "kafka_shock_operator_reconciles_total"),
            "kafka_shock_operator_reconciles_total 2"
        );
        assert_eq!(
            line(&text, "kafka_shock_operator_reconcile_errors_total{"),
            r#"kafka_shock_operator_reconcile_errors_total{reason="apply_injection"} 1"#
        );
        assert_eq!(
            line(
                &text,
                "kafka_shock_operator_reconcile_duration_seconds_count"
            ),
            "kafka_shock_operator_reconcile_duration_seconds_count 2"
        );
        assert_eq!(
            line(&text, r#"kafka_shock_operator_injections{phase="Pending"}"#),
            r#"kafka_shock_operator_injections{phase="Pending"} 2"#
        );
        assert_eq!(
            line(&text, r#"kafka_shock_operator_injections{phase="Active"}"#),
            r#"kafka_shock_operator_injections{phase="Active"} 1"#
        );
        assert_eq!(
            line(&text, r#"kafka_shock_operator_faults{phase="Injecting"}"#),
            r#"kafka_shock_operator_faults{phase="Injecting"} 2"#
        );

        metrics.observe("kafka/a", FaultPhase::Active, &injections);
        metrics.forget("kafka/b");
        let text = metrics.encode().unwrap();
        for (prefix, want) in [
            (r#"kafka_shock_operator_faults{phase="Injecting"}"#, " 0"),
            (r#"kafka_shock_operator_faults{phase="Active"}"#, " 1"),
            (r#"kafka_shock_operator_faults{phase="Failed"}"#, " 0"),
            (r#"kafka_shock_operator_injections{phase="Pending"}"#, " 1"),
        ] {
            assert!(
                line(&text, prefix).ends_with(want),
                "{prefix}{want} in\n{text}"
            );
        }
    }
}
