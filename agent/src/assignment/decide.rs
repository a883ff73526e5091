//! The node agent's reconcile of one injection, decided: from what the agent observed — the
//! injection, the clock, where the pod's network namespace is now, how the session it runs
//! for the injection is doing — to the actions to take (start, replace or stop the session,
//! remove leftover rules, release the finalizer) and the status to report. The reconcile in
//! the binary gathers these inputs, performs the actions and writes the status, as the
//! operator's controller does with its own pure core.
//!
//! What it guarantees (see `docs/architecture.md`): deletion, then expiry, then pause win
//! over enforcing; a deleted injection lets go of its finalizer only after the rules are out;
//! an injection that fails a check against its live pod ([`vet`](super::vet())), or whose pod
//! is in the node's own network namespace, is Failed with the reason, and its session (rules)
//! stopped — only deletion and expiry, which take rules out, come before the checks; a pod
//! whose namespace changed (restarted) or whose injection changed gets a new session; a
//! session that failed is reported Failed and kept until [`RESYNC`] has passed, then retried.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kafka_shock_crds::{
    FINALIZER, InjectionPhase, KafkaFaultInjection, KafkaFaultInjectionStatus, RefusalReason,
    rule_id,
};

use super::pod_netns::FoundBy;
use super::vet::{HOST_NETWORK_HINT, HostTargets, Refusal, vet};
use super::{Desired, Tally, conditions_for, desired, status_for, time_until};
use crate::fault::{FaultPlan, PlanError};

/// How often an enforced injection is looked at again: its counters go to its status, its
/// pod's namespace is resolved again (a restarted pod has a new one), a dead session restarts.
pub const RESYNC: Duration = Duration::from_secs(5);
/// How soon a session still starting is looked at again, so that Active shows quickly.
const STARTING: Duration = Duration::from_millis(250);
/// The shortest wait before looking again (an expiry due at once).
const SOONEST: Duration = Duration::from_millis(100);

/// A network namespace as resolved now: its file and inode (a new inode is a new namespace,
/// e.g. a restarted pod's), and how it was matched to the pod (for the agent's log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNetns {
    pub path: PathBuf,
    pub inode: u64,
    pub found_by: FoundBy,
}

/// Why the pod's network namespace is not at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsMiss {
    /// Not looked for: the injection failed its checks against the pod ([`vet`]).
    NotLooked,
    /// No single namespace is the pod's (e.g. the pod is not on this kernel), and why.
    NotFound(String),
    /// The pod's namespace is the node's own (or the agent's), and host targets are not
    /// allowed.
    Host(String),
}

impl std::fmt::Display for NetnsMiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetnsMiss::NotLooked => f.write_str("not looked for"),
            NetnsMiss::NotFound(why) | NetnsMiss::Host(why) => f.write_str(why),
        }
    }
}

/// Where and for which spec a session enforces: when either changes, it is replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub netns: PodNetns,
    /// The injection's metadata.generation the session was started for.
    pub generation: Option<i64>,
}

/// How the agent's session for the injection is doing, as last published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionView {
    pub placement: Placement,
    /// The rules are in place.
    pub installed: bool,
    /// The session has ended (rules removed, or never installed).
    pub finished: bool,
    /// Why it ended early, or why removing its rules failed.
    pub error: Option<String>,
    /// How long ago it ended, once it has.
    pub ended_ago: Option<Duration>,
    /// What it has done so far.
    pub tally: Tally,
}

/// Everything one decision is made from.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub injection: &'a KafkaFaultInjection,
    /// The injection's metadata.uid.
    pub uid: &'a str,
    /// The node this agent runs on.
    pub node: &'a str,
    pub now: Timestamp,
    /// The pod of the injection's spec.podName in its namespace, as read now; `None` when
    /// there is none.
    pub pod: Option<&'a Pod>,
    /// Whether a pod in the node's network namespace may be a target.
    pub host: HostTargets,
    /// The pod's network namespace, or why it is not at hand (looked for only when the
    /// injection passes [`vet`]).
    pub pod_netns: Result<PodNetns, NetnsMiss>,
    /// The session this agent runs for the injection, if any.
    pub session: Option<SessionView>,
}

/// A session to start.
#[derive(Debug, Clone)]
pub struct Start {
    pub placement: Placement,
    /// The injection's terms, planned under the agent's rule id.
    pub plan: FaultPlan,
    /// When the session must end on its own (`expireTime`), even if the agent hears nothing.
    pub until: Option<Timestamp>,
}

/// One thing to do, in the order given.
#[derive(Debug, Clone)]
pub enum Act {
    /// Stop the session; its rules go with it.
    StopSession,
    /// Stop the session (its namespace or spec changed, or it failed long enough ago), then
    /// start this one.
    ReplaceSession(Box<Start>),
    /// Start this session.
    StartSession(Box<Start>),
    /// Remove the chains of the injection's rule id from the namespace at this path: left by
    /// an agent that restarted, or by a session that failed to remove them.
    RemoveLeftovers(PathBuf),
    /// Remove the agent's finalizer: the rules are gone.
    ReleaseFinalizer,
    /// Drop what the agent keeps about the injection (metrics, phase): it is going.
    Forget,
}

/// What to do about one injection, and what to report.
#[derive(Debug, Clone)]
pub struct Decision {
    pub actions: Vec<Act>,
    /// The status to write (when it differs from the stored one); `None` when the injection
    /// is going.
    pub status: Option<KafkaFaultInjectionStatus>,
    /// When to look again; `None`: when the injection changes.
    pub requeue: Option<Duration>,
}

/// The decision for what `observed` shows, its status with its conditions as of now.
pub fn decide(observed: &Observed) -> Decision {
    let mut decision = choose(observed);
    if let Some(status) = decision.status.as_mut() {
        status.conditions = conditions_for(status, observed.injection, observed.now);
    }
    decision
}

/// The actions and status for what `observed` shows.
fn choose(observed: &Observed) -> Decision {
    let injection = observed.injection;
    let stop = observed.session.as_ref().map(|_| Act::StopSession);
    let want = match desired(injection, observed.now) {
        Ok(want) => want,
        Err(error) => {
            return Decision {
                actions: stop.into_iter().collect(),
                status: Some(status_for(
                    injection,
                    InjectionPhase::Failed,
                    Tally::default(),
                    Some(error.to_string()),
                )),
                requeue: None,
            };
        }
    };
    match want {
        Desired::Deleting => delete(observed),
        Desired::Expired => taken_out(observed, InjectionPhase::Recovered),
        Desired::Paused | Desired::Enforce { .. } => match refusal(observed) {
            Some(refusal) => refuse(observed, &refusal),
            None => match want {
                Desired::Enforce { until } => enforce(observed, until),
                _ => taken_out(observed, InjectionPhase::Paused),
            },
        },
    }
}

/// Removing the leftovers of the injection's rule id where the pod's namespace is now, if it
/// was looked for.
fn leftovers(observed: &Observed) -> Option<Act> {
    observed
        .pod_netns
        .as_ref()
        .ok()
        .map(|netns| Act::RemoveLeftovers(netns.path.clone()))
}

/// A deleted injection: rules out, then the finalizer released.
fn delete(observed: &Observed) -> Decision {
    let stop = observed.session.as_ref().map(|_| Act::StopSession);
    let holds_finalizer = observed
        .injection
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER);
    let release = holds_finalizer.then_some(Act::ReleaseFinalizer);
    Decision {
        actions: [stop, leftovers(observed), release, Some(Act::Forget)]
            .into_iter()
            .flatten()
            .collect(),
        status: None,
        requeue: None,
    }
}

/// An injection whose rules are to be out (paused or expired), reported in `phase`.
fn taken_out(observed: &Observed, phase: InjectionPhase) -> Decision {
    let stop = observed.session.as_ref().map(|_| Act::StopSession);
    Decision {
        actions: [stop, leftovers(observed)].into_iter().flatten().collect(),
        status: Some(status_for(
            observed.injection,
            phase,
            figures_after_stop(observed),
            None,
        )),
        requeue: None,
    }
}

/// Why the agent must not act on the injection: a failed check against its pod, or the pod's
/// namespace found to be the node's own.
fn refusal(observed: &Observed) -> Option<Refusal> {
    let vetted = vet(
        observed.injection,
        observed.pod,
        observed.node,
        observed.host,
    );
    vetted.err().or_else(|| match &observed.pod_netns {
        Err(NetnsMiss::Host(why)) => Some(Refusal::new(
            RefusalReason::HostNamespace,
            format!("{why}; {HOST_NETWORK_HINT}"),
        )),
        _ => None,
    })
}

/// A refused injection: Failed with the reason, its session (and so its rules) stopped, looked
/// at again after [`RESYNC`] (its pod may come into line, e.g. once the operator has
/// re-targeted it).
fn refuse(observed: &Observed, refusal: &Refusal) -> Decision {
    let mut status = status_for(
        observed.injection,
        InjectionPhase::Failed,
        figures_after_stop(observed),
        Some(refusal.last_error()),
    );
    status.reason = Some(refusal.reason);
    Decision {
        actions: observed
            .session
            .as_ref()
            .map(|_| Act::StopSession)
            .into_iter()
            .collect(),
        status: Some(status),
        requeue: Some(RESYNC),
    }
}

/// An injection to enforce until `until`: keep its session, or (re)start one where the pod's
/// namespace is now.
fn enforce(observed: &Observed, until: Option<Timestamp>) -> Decision {
    let injection = observed.injection;
    let stop = observed.session.as_ref().map(|_| Act::StopSession);
    let netns = match &observed.pod_netns {
        Ok(netns) => netns.clone(),
        Err(error) => {
            // The pod is not (or no longer) on this node's kernel: nothing can be enforced,
            // and whatever this agent had installed went with the namespace.
            return Decision {
                actions: stop.into_iter().collect(),
                status: Some(status_for(
                    injection,
                    InjectionPhase::Pending,
                    figures_after_stop(observed),
                    Some(format!("the pod's network namespace is not found: {error}")),
                )),
                requeue: Some(RESYNC),
            };
        }
    };
    let placement = Placement {
        netns,
        generation: injection.metadata.generation,
    };
    let requeue = until
        .map_or(RESYNC, |until| time_until(until, observed.now).min(RESYNC))
        .max(SOONEST);
    if let Some(session) = observed.session.as_ref().filter(|s| keeps(s, &placement)) {
        let (phase, error) = match (&session.error, session.installed) {
            (Some(error), _) => (InjectionPhase::Failed, Some(error.clone())),
            (None, true) => (InjectionPhase::Active, None),
            (None, false) => (InjectionPhase::Pending, None),
        };
        let settled = session.installed || session.finished;
        return Decision {
            actions: Vec::new(),
            status: Some(status_for(injection, phase, session.tally.clone(), error)),
            requeue: Some(if settled {
                requeue
            } else {
                requeue.min(STARTING)
            }),
        };
    }
    let id = rule_id(observed.node, observed.uid);
    let planned = injection
        .spec
        .enforced_terms()
        .map_err(PlanError::from)
        .and_then(|terms| FaultPlan::new(&id, &terms));
    match planned {
        Ok(plan) => {
            let start = Box::new(Start {
                placement,
                plan,
                until,
            });
            let act = match stop {
                Some(_) => Act::ReplaceSession(start),
                None => Act::StartSession(start),
            };
            Decision {
                actions: vec![act],
                // A new session has done nothing yet.
                status: Some(status_for(
                    injection,
                    InjectionPhase::Pending,
                    Tally::default(),
                    None,
                )),
                requeue: Some(requeue.min(STARTING)),
            }
        }
        Err(error) => Decision {
            actions: stop.into_iter().collect(),
            status: failed_status(injection, error.to_string()),
            requeue: Some(RESYNC),
        },
    }
}

/// Whether the session stays: it enforces the current spec where the pod's namespace is now
/// (the same inode: the session holds its namespace by descriptor, so another path to the
/// same namespace changes nothing), and it still runs, or it failed less than [`RESYNC`] ago
/// (its error stays reported until it is tried again).
fn keeps(session: &SessionView, placement: &Placement) -> bool {
    let failed_recently = session.error.is_some()
        && session
            .ended_ago
            .is_some_and(|ended_ago| ended_ago < RESYNC);
    let same_place = session.placement.netns.inode == placement.netns.inode
        && session.placement.generation == placement.generation;
    same_place && (!session.finished || failed_recently)
}

/// The figures to report once the session (if any) is stopped: what it did, else what the
/// status already says; no rule is left either way.
fn figures_after_stop(observed: &Observed) -> Tally {
    let figures = observed.session.as_ref().map_or_else(
        || Tally::reported(observed.injection.status.as_ref()),
        |session| session.tally.clone(),
    );
    Tally {
        rules_installed: 0,
        ..figures
    }
}

/// Failed, with `error` and the figures already reported.
fn failed_status(
    injection: &KafkaFaultInjection,
    error: String,
) -> Option<KafkaFaultInjectionStatus> {
    Some(status_for(
        injection,
        InjectionPhase::Failed,
        Tally::reported(injection.status.as_ref()),
        Some(error),
    ))
}

/// The decision once a session the agent was told to start could not even start (no thread):
/// reported Failed, tried again after [`RESYNC`].
pub fn start_failed(injection: &KafkaFaultInjection, error: String) -> Decision {
    let status = failed_status(injection, error).map(|mut status| {
        // The TLS ports reported stay, and so does the condition that says so.
        let previous = injection.status.as_ref();
        status.conditions = previous.map(|s| s.conditions.clone()).unwrap_or_default();
        status
    });
    Decision {
        actions: Vec::new(),
        status,
        requeue: Some(RESYNC),
    }
}

#[cfg(test)]
mod tests;
