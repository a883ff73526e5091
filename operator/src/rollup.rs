//! The fault's status, rolled up from its targets and its injections' statuses (written by the
//! agents).
//!
//! A pure function of what the controller read, so an unchanged world gives an unchanged status
//! and no write: each condition keeps its `lastTransitionTime` while its status stays the same,
//! rows are sorted by pod, and times come from the injections, not from the clock.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kafka_shock_crds::{
    FaultPhase, InjectionPhase, KafkaFault, KafkaFaultInjection, KafkaFaultInjectionStatus,
    KafkaFaultStatus, ProxyCounts, TargetMode, TargetStatus, fault::conditions, tls_condition,
    tls_message,
};

use crate::{
    guard_rails::{GuardRails, Invalid, SPEC_INVALID},
    schedule::{ends_at, rfc3339, started_at},
    targets::Target,
};

/// The reason of the Injected condition when an agent reports an injection Failed; the
/// operator's Events key on it.
pub(crate) const INJECTION_FAILED: &str = "InjectionFailed";

/// Whether the fault can be acted on, for the `Valid` condition: its spec (`Err` holds every
/// problem `KafkaFaultSpec::validate` found, joined with "; "; it catches what the API server
/// cannot, e.g. a clientId regex that does not compile), then the installation's `rails`. The
/// controller injects nothing while it is not valid.
pub fn validity(fault: &KafkaFault, rails: &GuardRails) -> Result<(), Invalid> {
    fault
        .spec
        .validate()
        .map_err(|errors| Invalid {
            reason: SPEC_INVALID,
            message: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        })
        .and_then(|()| rails.check(fault))
}

/// The status of `fault` under the installation's `rails`, given the `targets` selected now and
/// the fault's `injections` as stored (with the agents' statuses).
///
/// The phase is the first that applies of:
/// - Failed: the spec is invalid, or outside the rails;
/// - Recovering / Completed: the fault is deleted or its duration is over, and some injection
///   still holds rules / none does;
/// - Failed: an agent reports an injection Failed;
/// - Paused: spec.paused;
/// - Pending: dry run, no target selected, or match.sourceSelector selects no pod (`sources`
///   is `Some` and empty: no injection exists, the fault hits nothing);
/// - Active: every target's injection is Active for its current spec;
/// - Injecting: otherwise.
///
/// The facts are gathered once (`Facts`), and the phase and every condition are read from them
/// (the stage, `Stage`, decides both the phase and the Injected condition).
pub fn roll_up(
    fault: &KafkaFault,
    rails: &GuardRails,
    targets: &[Target],
    injections: &[KafkaFaultInjection],
    now: &Time,
    sources: Option<&[String]>,
) -> KafkaFaultStatus {
    let start = started_at(fault, injections);
    let end = start.and_then(|start| ends_at(fault, start));
    let mut facts = Facts::gather(
        fault,
        rails,
        targets,
        injections,
        end.is_some_and(|end| end <= now.0),
    );
    facts.no_sources = sources.is_some_and(<[String]>::is_empty);
    let (phase, injected) = facts.phase_and_injected();
    let previous = fault.status.as_ref();
    let generation = fault.metadata.generation;
    let conditions = [
        (conditions::SELECTED, facts.selected()),
        (conditions::INJECTED, injected),
        (conditions::RECOVERED, facts.recovered()),
        (conditions::PAUSED, facts.paused()),
        (conditions::VALID, facts.valid()),
    ]
    .into_iter()
    .map(|(type_, state)| condition(previous, type_, state, generation, now))
    .chain(requests_visible(previous, injections, generation, now))
    .collect();

    KafkaFaultStatus {
        phase,
        observed_generation: generation,
        conditions,
        targets: rows(&facts, targets, injections),
        matched_requests: injections
            .iter()
            .filter_map(|i| i.status.as_ref())
            .fold(0, |sum, s| sum.saturating_add(s.matched_requests)),
        proxy: injections
            .iter()
            .filter_map(|i| i.status.as_ref()?.proxy.as_ref())
            .fold(None, |sum: Option<ProxyCounts>, counts| {
                let mut sum = sum.unwrap_or_default();
                sum.add(counts);
                Some(sum)
            }),
        injected_targets: saturate(facts.injected),
        total_targets: saturate(facts.total),
        start_time: start.map(rfc3339),
        expire_time: end.map(rfc3339),
    }
}

/// Everything the status is read from, gathered once from the fault, its targets and its
/// injections.
struct Facts {
    /// Why the fault is not valid: its spec's problems, or the rail it is outside.
    valid: Result<(), Invalid>,
    /// The fault is being deleted.
    deleting: bool,
    /// Its duration is over.
    expired: bool,
    /// spec.paused, spec.dryRun and spec.mode.
    paused: bool,
    dry_run: bool,
    mode: TargetMode,
    /// Pods selected now.
    total: usize,
    /// Of those, the ones whose injection is Active for its current spec.
    injected: usize,
    /// Injections that may still hold rules (also of pods no longer targeted).
    holding: usize,
    /// Injections that have removed their rules for the pause, and all injections.
    paused_injections: usize,
    injections: usize,
    /// `pod: error` for each injection an agent reports Failed.
    failures: Vec<String>,
    /// match.sourceSelector selects no pod.
    no_sources: bool,
}

/// Where the fault stands: the first of these that applies. Both the phase and the Injected
/// condition are read from it.
enum Stage {
    /// The spec is invalid.
    Invalid,
    /// The fault is being deleted.
    Deleted,
    /// Its duration is over.
    Expired,
    /// An agent reports an injection Failed.
    Failed,
    /// spec.paused.
    Paused,
    /// spec.dryRun.
    DryRun,
    /// No pod is selected.
    NoTargets,
    /// match.sourceSelector selects no pod.
    NoSources,
    /// Every target's injection is Active.
    Injected,
    /// Otherwise.
    Injecting,
}

impl Facts {
    fn gather(
        fault: &KafkaFault,
        rails: &GuardRails,
        targets: &[Target],
        injections: &[KafkaFaultInjection],
        expired: bool,
    ) -> Facts {
        let by_pod: BTreeMap<&str, &KafkaFaultInjection> = injections
            .iter()
            .map(|i| (i.spec.pod_name.as_str(), i))
            .collect();
        let in_phase = |phase| {
            injections
                .iter()
                .filter(|i| current_phase(i) == phase)
                .count()
        };
        Facts {
            valid: validity(fault, rails),
            deleting: fault.metadata.deletion_timestamp.is_some(),
            expired,
            paused: fault.spec.paused,
            dry_run: fault.spec.dry_run,
            mode: fault.spec.mode,
            total: targets.len(),
            injected: targets
                .iter()
                .filter_map(|t| by_pod.get(t.pod_name.as_str()))
                .filter(|i| current_phase(i) == InjectionPhase::Active)
                .count(),
            holding: injections.iter().filter(|i| holds_rules(i)).count(),
            paused_injections: in_phase(InjectionPhase::Paused),
            injections: injections.len(),
            failures: injections
                .iter()
                .filter(|i| current_phase(i) == InjectionPhase::Failed)
                .map(|i| {
                    let error = i.status.as_ref().and_then(|s| s.last_error.as_deref());
                    format!("{}: {}", i.spec.pod_name, error.unwrap_or("failed"))
                })
                .collect(),
            no_sources: false,
        }
    }

    /// Deleted or expired: its rules are to go.
    fn ending(&self) -> bool {
        self.deleting || self.expired
    }

    fn stage(&self) -> Stage {
        match () {
            () if self.valid.is_err() => Stage::Invalid,
            () if self.deleting => Stage::Deleted,
            () if self.expired => Stage::Expired,
            () if !self.failures.is_empty() => Stage::Failed,
            () if self.paused => Stage::Paused,
            () if self.dry_run => Stage::DryRun,
            () if self.total == 0 => Stage::NoTargets,
            () if self.no_sources => Stage::NoSources,
            () if self.injected == self.total => Stage::Injected,
            () => Stage::Injecting,
        }
    }

    /// The phase and the Injected condition: one row per stage.
    fn phase_and_injected(&self) -> (FaultPhase, State) {
        let (total, injected) = (self.total, self.injected);
        let recovery = if self.holding > 0 {
            FaultPhase::Recovering
        } else {
            FaultPhase::Completed
        };
        match self.stage() {
            Stage::Invalid => (
                FaultPhase::Failed,
                self.invalid("nothing is injected while the fault is not valid"),
            ),
            Stage::Deleted => (
                recovery,
                no(
                    "FaultDeleted",
                    "the fault is deleted; its rules are removed",
                ),
            ),
            Stage::Expired => (
                recovery,
                no(
                    "FaultExpired",
                    "spec.duration is over; the rules are removed",
                ),
            ),
            Stage::Failed => (
                FaultPhase::Failed,
                no(INJECTION_FAILED, self.failures.join("; ")),
            ),
            Stage::Paused => (
                FaultPhase::Paused,
                no("Paused", "the fault is paused; its rules are removed"),
            ),
            Stage::DryRun => (
                FaultPhase::Pending,
                no(
                    "DryRun",
                    format!("dry run: {total} target pods selected, nothing injected"),
                ),
            ),
            Stage::NoTargets => (
                FaultPhase::Pending,
                no("NoTargets", "no target pod to inject"),
            ),
            Stage::NoSources => (
                FaultPhase::Pending,
                no(
                    "NoSources",
                    "spec.match.sourceSelector selects no pod (with an address, within sourceCIDRs): nothing is injected until one is, the fault never widens to every source",
                ),
            ),
            Stage::Injected => (
                FaultPhase::Active,
                yes(
                    "AllTargetsInjected",
                    format!("{injected} of {total} targets injected"),
                ),
            ),
            Stage::Injecting => (
                FaultPhase::Injecting,
                no(
                    "Injecting",
                    format!("{injected} of {total} targets injected"),
                ),
            ),
        }
    }

    fn selected(&self) -> State {
        match () {
            () if self.valid.is_err() => {
                self.invalid("targets are not selected while the fault is not valid")
            }
            () if self.total == 0 => no(
                "NoTargets",
                "no Running and Ready pod in the fault's namespace matches spec.selector",
            ),
            () => yes(
                "TargetsSelected",
                format!(
                    "{} of the matching pods selected (mode {:?})",
                    self.total, self.mode
                ),
            ),
        }
    }

    fn recovered(&self) -> State {
        match () {
            () if !self.ending() => no(
                "NotEnded",
                "the fault ends when it is deleted or its spec.duration is over",
            ),
            () if self.holding > 0 => no(
                "RemovingRules",
                format!("targets still holding rules: {}", self.holding),
            ),
            () => yes("RulesRemoved", "every rule the fault installed is gone"),
        }
    }

    fn paused(&self) -> State {
        if self.paused {
            yes(
                "Paused",
                format!(
                    "{} of {} targets have removed their rules",
                    self.paused_injections, self.injections
                ),
            )
        } else {
            no("NotPaused", "spec.paused is false")
        }
    }

    fn valid(&self) -> State {
        match &self.valid {
            Ok(()) => yes("SpecValid", "the spec is valid"),
            Err(invalid) => no(invalid.reason, invalid.message.clone()),
        }
    }

    /// A condition that cannot hold while the fault is not valid: the Valid condition's
    /// reason, and `what` with a pointer to it.
    fn invalid(&self, what: &str) -> State {
        let reason = self.valid.as_ref().err().map_or(SPEC_INVALID, |i| i.reason);
        no(reason, format!("{what} (see the Valid condition)"))
    }

    /// The phase and message of a target that has no injection yet.
    fn waiting(&self) -> (InjectionPhase, &'static str) {
        match () {
            () if self.ending() => (
                InjectionPhase::Recovered,
                "the fault has ended; nothing is injected",
            ),
            () if self.dry_run => (
                InjectionPhase::Pending,
                "dry run: selected, nothing injected",
            ),
            () => (
                InjectionPhase::Pending,
                "waiting for its injection to be created",
            ),
        }
    }
}

/// RequestsVisible=False (reason TLS) while any injection's agent reports TLS ports, naming
/// the pods and what still works there.
fn requests_visible(
    previous: Option<&KafkaFaultStatus>,
    injections: &[KafkaFaultInjection],
    generation: Option<i64>,
    now: &Time,
) -> Option<Condition> {
    let mut ports = BTreeSet::new();
    let mut pods = Vec::new();
    for injection in injections {
        let Some(status) = current_status(injection) else {
            continue;
        };
        if !status.tls_ports.is_empty() {
            ports.extend(status.tls_ports.iter().copied());
            pods.push(injection.spec.pod_name.as_str());
        }
    }
    let ports: Vec<u16> = ports.into_iter().collect();
    let message = format!("{}: {}", pods.join(", "), tls_message(&ports));
    let previous = previous.map_or(&[][..], |s| s.conditions.as_slice());
    tls_condition(&ports, message, previous, generation, now)
}

/// One row per injection and per target without one yet, sorted by pod.
fn rows(
    facts: &Facts,
    targets: &[Target],
    injections: &[KafkaFaultInjection],
) -> Vec<TargetStatus> {
    let selected: BTreeSet<&str> = targets.iter().map(|t| t.pod_name.as_str()).collect();
    let mut rows: BTreeMap<&str, TargetStatus> = injections
        .iter()
        .map(|i| {
            (
                i.spec.pod_name.as_str(),
                row(i, selected.contains(i.spec.pod_name.as_str())),
            )
        })
        .collect();
    let (phase, message) = facts.waiting();
    for target in targets {
        rows.entry(&target.pod_name)
            .or_insert_with(|| TargetStatus {
                pod: target.pod_name.clone(),
                node: Some(target.node_name.clone()),
                pod_ip: Some(target.pod_ip.clone()),
                phase,
                rules: 0,
                matched_requests: 0,
                message: Some(message.to_owned()),
                reason: None,
            });
    }
    rows.into_values().collect()
}

/// A condition's status, reason and message.
struct State {
    status: bool,
    reason: &'static str,
    message: String,
}

fn yes(reason: &'static str, message: impl Into<String>) -> State {
    State {
        status: true,
        reason,
        message: message.into(),
    }
}

fn no(reason: &'static str, message: impl Into<String>) -> State {
    State {
        status: false,
        reason,
        message: message.into(),
    }
}

/// The condition `type_` in `state`, keeping the previous `lastTransitionTime` unless its status
/// changed (as Kubernetes' `meta.SetStatusCondition` does), so re-reconciles do not rewrite it.
fn condition(
    previous: Option<&KafkaFaultStatus>,
    type_: &str,
    state: State,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if state.status { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        last_transition_time,
        message: state.message,
        observed_generation: generation,
        reason: state.reason.to_owned(),
        status: status.to_owned(),
        type_: type_.to_owned(),
    }
}

/// The injection's status when it describes its current spec: the agent has seen the latest
/// generation (e.g. after a pod restart re-targeted it), or the generation is unknown.
fn current_status(injection: &KafkaFaultInjection) -> Option<&KafkaFaultInjectionStatus> {
    let status = injection.status.as_ref()?;
    match injection.metadata.generation {
        Some(generation) => (status.observed_generation == Some(generation)).then_some(status),
        None => Some(status),
    }
}

/// The injection's phase for its current spec: Pending until the agent has acted on it (also
/// what the operator's metrics count injections by).
pub fn current_phase(injection: &KafkaFaultInjection) -> InjectionPhase {
    current_status(injection).map_or(InjectionPhase::Pending, |s| s.phase)
}

/// Whether rules may still be installed for the injection, even from an older spec.
fn holds_rules(injection: &KafkaFaultInjection) -> bool {
    injection
        .status
        .as_ref()
        .is_some_and(|s| s.rules_installed > 0 || s.phase == InjectionPhase::Active)
}

/// The status row of one injection; `targeted` is false when its pod is no longer selected.
fn row(injection: &KafkaFaultInjection, targeted: bool) -> TargetStatus {
    let spec = &injection.spec;
    let status = injection.status.as_ref();
    let message = if current_status(injection).is_none() {
        Some(format!("waiting for the agent on node {}", spec.node_name))
    } else if let Some(error) = status.and_then(|s| s.last_error.clone()) {
        Some(error)
    } else if !targeted && holds_rules(injection) {
        Some("no longer targeted; removing its rules".to_owned())
    } else {
        None
    };
    TargetStatus {
        pod: spec.pod_name.clone(),
        node: Some(spec.node_name.clone()),
        pod_ip: Some(spec.pod_ip.clone()),
        phase: current_phase(injection),
        rules: status.map_or(0, |s| s.rules_installed),
        matched_requests: status.map_or(0, |s| s.matched_requests),
        message,
        reason: current_status(injection).and_then(|s| s.reason),
    }
}

fn saturate(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use kafka_shock_crds::{ClientIdMatch, KafkaFaultInjectionStatus};

    use super::*;
    use crate::{
        injections::{injection_changes, time},
        select_targets,
        targets::tests::{fault, pod},
    };

    const START: &str = "2025-01-02T03:04:05Z";

    fn targets(count: usize) -> Vec<Target> {
        let pods: Vec<_> = (0..count).map(|i| pod(&format!("broker-{i}"))).collect();
        select_targets(&fault("All", None), &pods).unwrap()
    }

    /// The fault's injections as stored, each with the agent status `phases[i]`, current for
    /// its generation.
    fn injections(
        fault: &KafkaFault,
        targets: &[Target],
        phases: &[InjectionPhase],
    ) -> Vec<KafkaFaultInjection> {
        let plan = injection_changes(fault, targets, &[], &time(START), None).unwrap();
        plan.create
            .into_iter()
            .zip(phases)
            .enumerate()
            .map(|(n, (mut injection, &phase))| {
                injection.metadata.generation = Some(1);
                injection.status = Some(KafkaFaultInjectionStatus {
                    phase,
                    rules_installed: if phase == InjectionPhase::Active {
                        2
                    } else {
                        0
                    },
                    matched_requests: 10 * (n as u64 + 1),
                    last_error: (phase == InjectionPhase::Failed)
                        .then(|| "no network namespace for the pod".into()),
                    observed_generation: Some(1),
                    ..KafkaFaultInjectionStatus::default()
                });
                injection
            })
            .collect()
    }

    fn find<'a>(status: &'a KafkaFaultStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    /// (status, reason) of condition `type_`.
    fn state(status: &KafkaFaultStatus, type_: &str) -> (String, String) {
        let c = find(status, type_);
        (c.status.clone(), c.reason.clone())
    }

    fn is(value: &str, reason: &str) -> (String, String) {
        (value.to_owned(), reason.to_owned())
    }

    use InjectionPhase::{Active, Failed, Paused, Pending, Recovered};

    #[test]
    fn nothing_selected_is_pending() {
        let f = fault("All", None);
        let status = roll_up(&f, &GuardRails::default(), &[], &[], &time(START), None);
        assert_eq!(status.phase, FaultPhase::Pending);
        assert_eq!(
            state(&status, conditions::SELECTED),
            is("False", "NoTargets")
        );
        assert_eq!(
            state(&status, conditions::INJECTED),
            is("False", "NoTargets")
        );
        assert_eq!(
            state(&status, conditions::RECOVERED),
            is("False", "NotEnded")
        );
        assert_eq!(state(&status, conditions::PAUSED), is("False", "NotPaused"));
        assert_eq!(state(&status, conditions::VALID), is("True", "SpecValid"));
        assert_eq!(status.observed_generation, Some(2));
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
        assert_eq!(
            (
                status.total_targets,
                status.injected_targets,
                status.matched_requests
            ),
            (0, 0, 0)
        );
        assert_eq!((status.start_time, status.expire_time), (None, None));
    }

    #[test]
    fn injecting_until_every_target_is_active() {
        let mut f = fault("All", None);
        f.spec.duration = Some("5m".into());
        let targets = targets(3);
        let stored = injections(&f, &targets[..2], &[Active, Pending]);
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        assert_eq!(status.phase, FaultPhase::Injecting);
        assert_eq!(
            state(&status, conditions::SELECTED),
            is("True", "TargetsSelected")
        );
        assert_eq!(
            state(&status, conditions::INJECTED),
            is("False", "Injecting")
        );
        assert_eq!(
            find(&status, conditions::INJECTED).message,
            "1 of 3 targets injected"
        );
        assert_eq!((status.injected_targets, status.total_targets), (1, 3));
        assert_eq!(status.matched_requests, 30);
        assert_eq!(status.start_time.as_deref(), Some(START));
        assert_eq!(status.expire_time.as_deref(), Some("2025-01-02T03:09:05Z"));
        let rows: Vec<_> = status
            .targets
            .iter()
            .map(|t| (t.pod.as_str(), t.phase, t.rules, t.matched_requests))
            .collect();
        assert_eq!(
            rows,
            [
                ("broker-0", Active, 2, 10),
                ("broker-1", Pending, 0, 20),
                ("broker-2", Pending, 0, 0)
            ]
        );
        assert_eq!(
            status.targets[2].message.as_deref(),
            Some("waiting for its injection to be created")
        );
        assert_eq!(status.targets[0].node.as_deref(), Some("node-broker-0"));
        assert_eq!(status.targets[0].pod_ip.as_deref(), Some("10.0.0.8"));

        let stored = injections(&f, &targets, &[Active, Active, Active]);
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        assert_eq!(status.phase, FaultPhase::Active);
        assert_eq!(
            state(&status, conditions::INJECTED),
            is("True", "AllTargetsInjected")
        );
        assert_eq!(
            (
                status.injected_targets,
                status.total_targets,
                status.matched_requests
            ),
            (3, 3, 60)
        );
        assert!(status.targets.iter().all(|t| t.message.is_none()));
        assert_eq!(status.proxy, None, "no Proxy counts without a proxy");
        // Proxy counts are summed over the injections that report them.
        let mut stored = stored;
        for (n, injection) in stored.iter_mut().take(2).enumerate() {
            let status = injection.status.get_or_insert_with(Default::default);
            status.proxy = Some(ProxyCounts {
                errored_requests: 5 * (n as u64 + 1),
                handed_over_connections: 1,
                ..ProxyCounts::default()
            });
        }
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        let proxy = status.proxy.expect("summed");
        assert_eq!(
            (proxy.errored_requests, proxy.handed_over_connections),
            (15, 2)
        );
    }

    #[test]
    fn a_status_for_an_older_spec_does_not_count() {
        let f = fault("All", None);
        let targets = targets(1);
        let mut stored = injections(&f, &targets, &[Active]);
        // The pod restarted and the injection was re-targeted; the agent has not caught up.
        stored[0].metadata.generation = Some(2);
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        assert_eq!(status.phase, FaultPhase::Injecting);
        assert_eq!(status.injected_targets, 0);
        assert_eq!(status.targets[0].phase, Pending);
        assert_eq!(
            status.targets[0].message.as_deref(),
            Some("waiting for the agent on node node-broker-0")
        );
    }

    #[test]
    fn a_failed_injection_fails_the_fault() {
        let f = fault("All", None);
        let targets = targets(2);
        let stored = injections(&f, &targets, &[Active, Failed]);
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        assert_eq!(status.phase, FaultPhase::Failed);
        assert_eq!(
            state(&status, conditions::INJECTED),
            is("False", "InjectionFailed")
        );
        assert_eq!(
            find(&status, conditions::INJECTED).message,
            "broker-1: no network namespace for the pod"
        );
        assert_eq!(
            status.targets[1].message.as_deref(),
            Some("no network namespace for the pod")
        );
    }

    #[test]
    fn an_invalid_spec_is_failed_with_every_reason() {
        let mut f = fault("All", None);
        f.spec.terms.match_.client_id = Some(ClientIdMatch {
            regex: Some("(".into()),
            ..Default::default()
        });
        f.spec.terms.match_.api_keys = vec!["Produce".into(), "Nope".into()];
        let invalid = validity(&f, &GuardRails::default()).unwrap_err();
        assert_eq!(invalid.reason, "SpecInvalid");
        let reasons = invalid.message;
        assert!(
            reasons.contains("spec.match.clientId.regex: invalid regex"),
            "{reasons}"
        );
        assert!(reasons.contains("spec.match.apiKeys[1]"), "{reasons}");
        assert_eq!(reasons.matches("; ").count(), 1, "{reasons}");
        let status = roll_up(&f, &GuardRails::default(), &[], &[], &time(START), None);
        assert_eq!(status.phase, FaultPhase::Failed);
        assert_eq!(
            state(&status, conditions::VALID),
            is("False", "SpecInvalid")
        );
        assert_eq!(find(&status, conditions::VALID).message, reasons);
        assert_eq!(
            state(&status, conditions::SELECTED),
            is("False", "SpecInvalid")
        );
        assert_eq!(
            state(&status, conditions::INJECTED),
            is("False", "SpecInvalid")
        );
        assert_eq!(
            validity(&fault("All", None), &GuardRails::default()),
            Ok(())
        );
    }

    #[test]
    fn a_fault_outside_the_guard_rails_is_invalid_with_their_reason() {
        let mut f = fault("All", None);
        f.spec.terms.ports = vec![22];
        let rails = GuardRails {
            ports: [9092].into(),
            ..GuardRails::default()
        };
        let targets = targets(1);
        let status = roll_up(&f, &rails, &targets, &[], &time(START), None);
        assert_eq!(status.phase, FaultPhase::Failed);
        assert_eq!(
            state(&status, conditions::VALID),
            is("False", "PortNotAllowed")
        );
        assert_eq!(
            find(&status, conditions::VALID).message,
            "spec.ports: 22 not allowed: this installation allows only ports 9092 (chart value allowedPorts)"
        );
        assert_eq!(
            state(&status, conditions::SELECTED),
            is("False", "PortNotAllowed")
        );
        assert_eq!(
            find(&status, conditions::INJECTED).message,
            "nothing is injected while the fault is not valid (see the Valid condition)"
        );
        f.spec.terms.ports = vec![9092];
        assert_eq!(validity(&f, &rails), Ok(()));
        // A spec error is reported before the rails.
        f.spec.terms.match_.api_keys = vec!["Nope".into()];
        f.spec.terms.ports = vec![22];
        assert_eq!(validity(&f, &rails).unwrap_err().reason, "SpecInvalid");
    }

    #[test]
    fn a_refused_injection_shows_its_reason_on_the_target_and_the_condition() {
        let f = fault("All", None);
        let targets = targets(2);
        let mut stored = injections(&f, &targets, &[Active, Failed]);
        let status = stored[1].status.as_mut().unwrap();
        status.reason = Some(kafka_shock_crds::RefusalReason::HostNetwork);
        status.last_error = Some(
            "HostNetwork: pod kafka/broker-1 uses the node's network namespace (spec.hostNetwork)"
                .into(),
        );
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        assert_eq!(status.phase, FaultPhase::Failed);
        assert_eq!(
            status.targets[1].reason,
            Some(kafka_shock_crds::RefusalReason::HostNetwork)
        );
        assert_eq!(status.targets[0].reason, None);
        assert_eq!(
            find(&status, conditions::INJECTED).message,
            "broker-1: HostNetwork: pod kafka/broker-1 uses the node's network namespace (spec.hostNetwork)"
        );
    }

    #[test]
    fn paused_and_dry_run() {
        let mut f = fault("All", None);
        f.spec.paused = true;
        let targets = targets(2);
        let stored = injections(&f, &targets, &[Paused, Active]);
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        assert_eq!(status.phase, FaultPhase::Paused);
        assert_eq!(state(&status, conditions::PAUSED), is("True", "Paused"));
        assert_eq!(
            find(&status, conditions::PAUSED).message,
            "1 of 2 targets have removed their rules"
        );
        assert_eq!(state(&status, conditions::INJECTED), is("False", "Paused"));

        let mut dry = fault("All", None);
        dry.spec.dry_run = true;
        let status = roll_up(
            &dry,
            &GuardRails::default(),
            &targets,
            &[],
            &time(START),
            None,
        );
        assert_eq!(status.phase, FaultPhase::Pending);
        assert_eq!(
            state(&status, conditions::SELECTED),
            is("True", "TargetsSelected")
        );
        assert_eq!(state(&status, conditions::INJECTED), is("False", "DryRun"));
        assert_eq!(status.total_targets, 2);
        assert_eq!(status.targets.len(), 2);
        assert!(
            status
                .targets
                .iter()
                .all(|t| t.message.as_deref() == Some("dry run: selected, nothing injected"))
        );
    }

    #[test]
    fn expiry_recovers_then_completes() {
        let mut f = fault("All", None);
        f.spec.duration = Some("1m".into());
        let targets = targets(2);
        let after = time("2025-01-02T03:05:05Z");
        let stored = injections(&f, &targets, &[Active, Recovered]);
        assert_eq!(
            roll_up(
                &f,
                &GuardRails::default(),
                &targets,
                &stored,
                &time("2025-01-02T03:05:04Z"),
                None
            )
            .phase,
            FaultPhase::Injecting
        );
        let status = roll_up(&f, &GuardRails::default(), &targets, &stored, &after, None);
        assert_eq!(status.phase, FaultPhase::Recovering);
        assert_eq!(
            state(&status, conditions::RECOVERED),
            is("False", "RemovingRules")
        );
        assert_eq!(
            state(&status, conditions::INJECTED),
            is("False", "FaultExpired")
        );

        let stored = injections(&f, &targets, &[Recovered, Recovered]);
        let status = roll_up(&f, &GuardRails::default(), &targets, &stored, &after, None);
        assert_eq!(status.phase, FaultPhase::Completed);

        // The injections are deleted once it is over; the start kept in the status remains.
        let mut ended = f.clone();
        ended.status = Some(status.clone());
        let gone = roll_up(&ended, &GuardRails::default(), &targets, &[], &after, None);
        assert_eq!(gone.phase, FaultPhase::Completed);
        assert_eq!(gone.expire_time, status.expire_time);
        assert!(
            gone.targets.iter().all(|t| t.phase == Recovered
                && t.message.as_deref() == Some("the fault has ended; nothing is injected")),
            "{:?}",
            gone.targets
        );
        assert_eq!(
            state(&status, conditions::RECOVERED),
            is("True", "RulesRemoved")
        );
        assert_eq!(status.expire_time.as_deref(), Some("2025-01-02T03:05:05Z"));
    }

    #[test]
    fn a_deleted_fault_recovers_and_untargeted_pods_say_so() {
        let mut f = fault("All", None);
        let targets = targets(2);
        let stored = injections(&f, &targets, &[Active, Active]);
        // broker-1 is no longer selected: its row stays until its injection is gone.
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets[..1],
            &stored,
            &time(START),
            None,
        );
        assert_eq!(status.phase, FaultPhase::Active);
        assert_eq!(status.total_targets, 1);
        assert_eq!(status.targets.len(), 2);
        assert_eq!(
            status.targets[1].message.as_deref(),
            Some("no longer targeted; removing its rules")
        );

        f.metadata.deletion_timestamp = Some(time(START));
        let status = roll_up(&f, &GuardRails::default(), &[], &stored, &time(START), None);
        assert_eq!(status.phase, FaultPhase::Recovering);
        assert_eq!(
            state(&status, conditions::INJECTED),
            is("False", "FaultDeleted")
        );
        assert_eq!(
            find(&status, conditions::RECOVERED).message,
            "targets still holding rules: 2"
        );
        let status = roll_up(&f, &GuardRails::default(), &[], &[], &time(START), None);
        assert_eq!(status.phase, FaultPhase::Completed);
        assert_eq!(
            state(&status, conditions::RECOVERED),
            is("True", "RulesRemoved")
        );
    }

    #[test]
    fn re_rolling_an_unchanged_world_changes_nothing() {
        let mut f = fault("All", None);
        f.spec.duration = Some("1h".into());
        let targets = targets(3);
        let stored = injections(&f, &targets, &[Active, Pending, Active]);
        let first = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        assert!(
            first
                .conditions
                .iter()
                .all(|c| c.last_transition_time == time(START))
        );
        f.status = Some(first.clone());
        // Later, same world: the very same status, so the controller writes nothing.
        let again = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time("2025-01-02T03:10:00Z"),
            None,
        );
        assert_eq!(again, first);
        // Also in another order of inputs.
        let mut reversed_stored = stored.clone();
        reversed_stored.reverse();
        let mut reversed_targets = targets.clone();
        reversed_targets.reverse();
        assert_eq!(
            roll_up(
                &f,
                &GuardRails::default(),
                &reversed_targets,
                &reversed_stored,
                &time("2025-01-02T03:11:00Z"),
                None
            ),
            first
        );
        // And the same bytes as written.
        assert_eq!(
            serde_json::to_vec(&again).unwrap(),
            serde_json::to_vec(&first).unwrap()
        );
    }

    #[test]
    fn only_conditions_that_flip_get_a_new_transition_time() {
        let mut f = fault("All", None);
        let targets = targets(2);
        let injecting = injections(&f, &targets, &[Active, Pending]);
        f.status = Some(roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &injecting,
            &time(START),
            None,
        ));

        let later = time("2025-01-02T03:06:00Z");
        let active = injections(&f, &targets, &[Active, Active]);
        let status = roll_up(&f, &GuardRails::default(), &targets, &active, &later, None);
        assert_eq!(status.phase, FaultPhase::Active);
        for c in &status.conditions {
            let want = if c.type_ == conditions::INJECTED {
                &later
            } else {
                &time(START)
            };
            assert_eq!(&c.last_transition_time, want, "{}", c.type_);
        }
        // A new message or reason alone is not a transition.
        f.status = Some(status);
        let one_more = targets_with_new_pod(&targets);
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &one_more,
            &active,
            &time("2025-01-02T03:07:00Z"),
            None,
        );
        let selected = find(&status, conditions::SELECTED);
        assert_eq!(
            selected.message,
            "3 of the matching pods selected (mode All)"
        );
        assert_eq!(selected.last_transition_time, time(START));
        assert_eq!(
            find(&status, conditions::INJECTED).last_transition_time,
            time("2025-01-02T03:07:00Z")
        );
    }

    fn targets_with_new_pod(targets: &[Target]) -> Vec<Target> {
        let mut more = targets.to_vec();
        more.push(Target {
            pod_name: "broker-new".into(),
            ..targets[0].clone()
        });
        more
    }

    #[test]
    fn tls_seen_by_an_agent_makes_requests_not_visible_on_the_fault() {
        let f = fault("All", None);
        let targets = targets(2);
        let mut stored = injections(&f, &targets, &[Active, Active]);
        let plain = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        assert!(
            plain
                .conditions
                .iter()
                .all(|c| c.type_ != "RequestsVisible"),
            "no TLS seen, nothing said"
        );
        stored[1].status.as_mut().unwrap().tls_ports = vec![9094];
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &stored,
            &time(START),
            None,
        );
        assert_eq!(state(&status, "RequestsVisible"), is("False", "TLS"));
        let message = &find(&status, "RequestsVisible").message;
        assert!(
            message.starts_with("broker-1: port 9094 carries TLS")
                && message.contains("an empty match, or only sourceCIDRs or sourceSelector"),
            "{message}"
        );
        assert_eq!(status.phase, FaultPhase::Active, "TLS alone fails nothing");

        let mut again = f.clone();
        again.status = Some(status.clone());
        let later = roll_up(
            &again,
            &GuardRails::default(),
            &targets,
            &stored,
            &time("2025-01-02T03:09:05Z"),
            None,
        );
        assert_eq!(later, status, "an unchanged world rolls up unchanged");
    }

    #[test]
    fn a_source_selector_selecting_no_pod_is_pending_with_no_sources() {
        let f = fault("All", None);
        let targets = targets(2);
        let status = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &[],
            &time(START),
            Some(&[]),
        );
        assert_eq!(status.phase, FaultPhase::Pending);
        assert_eq!(
            state(&status, conditions::INJECTED),
            is("False", "NoSources")
        );
        assert_eq!(
            state(&status, conditions::SELECTED),
            is("True", "TargetsSelected")
        );
        assert!(
            injection_changes(&f, &targets, &[], &time(START), Some(&[]))
                .unwrap()
                .create
                .is_empty(),
            "no injection, never one hitting every source"
        );
        let sourced = injection_changes(
            &f,
            &targets,
            &[],
            &time(START),
            Some(&["10.0.0.11".to_owned()]),
        )
        .unwrap();
        assert!(
            sourced
                .create
                .iter()
                .all(|i| i.spec.source_ips.as_deref() == Some(&["10.0.0.11".to_owned()][..]))
        );
    }
}
