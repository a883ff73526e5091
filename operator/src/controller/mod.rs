//! The controller: the thin I/O around the pure core, in kube-rs controller-rs's manner
//! ([`reconcile`], [`error_policy`], a [`Context`], `kube::runtime::finalizer`).
//!
//! One reconcile of a KafkaFault reads its injections and the pods its selector (and its
//! match.sourceSelector, if any) picks from the [`Cache`] (reflector stores fed by the watches
//! that wake it, so what it reads is never older than what woke it, and costs the API server
//! nothing), lets the pure core decide, and writes only the difference:
//! injections created or changed by server-side apply, deleted, or — when their pod or node
//! is gone, so no agent ever will — released from the agent's finalizer; then the rolled-up
//! status, when it changed, and an Event per transition.
//!
//! An ownerReference alone is not enough: the garbage collector deletes the injections only
//! after the fault is gone (or never, on a cluster without kube-controller-manager, or when the
//! fault is deleted with `--cascade=orphan`), so the fault would vanish while its rules still
//! hold. Each fault carries [`FAULT_FINALIZER`] and is let go only once every one of its
//! injections is gone, that is once the agents have removed its rules: `kubectl delete` of a
//! fault returns when the fault has ended.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kafka_shock_crds::{
    FAULT_FINALIZER, FAULT_LABEL, FINALIZER, KafkaFault, KafkaFaultInjection, KafkaFaultStatus,
    label_value,
};
use kafka_shock_daemon::release_finalizer;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::{
        Controller,
        controller::{self, Action},
        events::{Event, Recorder, Reporter},
        finalizer::{self, finalizer},
        watcher,
    },
};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    GuardRails, InjectionError, SelectError, expiry, finalizer_releasable, injection_changes,
    metrics::Metrics,
    notices::notices,
    roll_up, select_targets,
    sources::{SourcesError, source_addresses},
    triggers::{faults_for_node, faults_for_pod},
    validity,
};

/// The field manager of every write, and the Events' reporting controller.
pub const MANAGER: &str = "kafka-shock-operator";

/// How often a fault is looked at again when nothing changes, to repair what a missed watch
/// event would leave wrong.
const RESYNC: Duration = Duration::from_secs(300);

/// How often a deleted fault checks on its injections while the agents remove the rules; their
/// removal also wakes it through the watch, this is the fallback.
const RECOVERY_POLL: Duration = Duration::from_secs(5);

/// How long after a failed reconcile it is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// How soon a fault reconciled before the [`Cache`] is filled is looked at again.
const CACHE_WAIT: Duration = Duration::from_secs(1);

/// Why a reconcile failed; each is retried after [`RETRY`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The fault's injections cannot be listed.
    #[error("listing the injections of fault {fault}: {source}")]
    ListInjections {
        /// namespace/name of the fault.
        fault: String,
        /// Why.
        source: kube::Error,
    },
    /// An injection cannot be created or changed.
    #[error("applying injection {name}: {source}")]
    ApplyInjection {
        /// The injection's name.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// An injection cannot be deleted.
    #[error("deleting injection {name}: {source}")]
    DeleteInjection {
        /// The injection's name.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// The agent's finalizer cannot be removed from an injection whose pod or node is gone.
    #[error("releasing the finalizer of injection {name} (its pod or node is gone): {source}")]
    ReleaseInjection {
        /// The injection's name.
        name: String,
        /// Why.
        source: kube::Error,
    },
    /// The fault's status cannot be written.
    #[error("writing the status of fault {fault}: {source}")]
    PatchStatus {
        /// namespace/name of the fault.
        fault: String,
        /// Why.
        source: kube::Error,
    },
    /// The targets cannot be picked (reported by validation too).
    #[error(transparent)]
    Select(#[from] SelectError),
    /// match.sourceSelector cannot be resolved (reported by validation too).
    #[error(transparent)]
    Sources(#[from] SourcesError),
    /// The injections cannot be built (the fault lacks server-set metadata).
    #[error(transparent)]
    Injection(#[from] InjectionError),
    /// A deleted fault still has injections whose agents have not removed the rules; not a
    /// failure: [`reconcile`] turns it into a requeue. It is an error only because the
    /// finalizer helper keeps the finalizer on errors.
    #[error("{remaining} injections still hold rules")]
    InjectionsRemain {
        /// How many.
        remaining: usize,
    },
    /// Adding or removing the operator's finalizer failed.
    #[error("finalizer {FAULT_FINALIZER}: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
}

impl Error {
    /// A short, fixed label for the errors metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ListInjections { .. } => "list_injections",
            Self::ApplyInjection { .. } => "apply_injection",
            Self::DeleteInjection { .. } => "delete_injection",
            Self::ReleaseInjection { .. } => "release_injection",
            Self::PatchStatus { .. } => "patch_status",
            Self::Select(_) => "select_targets",
            Self::Sources(_) => "resolve_sources",
            Self::Injection(_) => "build_injection",
            Self::InjectionsRemain { .. } => "injections_remain",
            Self::Finalizer(inner) => match inner.as_ref() {
                finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error) => {
                    error.reason()
                }
                finalizer::Error::AddFinalizer(_) => "add_finalizer",
                finalizer::Error::RemoveFinalizer(_) => "remove_finalizer",
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => "finalizer",
            },
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client, with the operator's identity.
    pub client: Client,
    /// Publishes the Events of [`notices`].
    pub recorder: Recorder,
    /// Counters and gauges for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The namespaces and ports this installation honours faults in and for.
    pub rails: GuardRails,
    /// The pods, nodes and injections, as the watches last saw them.
    pub cache: Cache,
    /// The status last written to each fault.
    pub written: Written,
}

impl Context {
    /// A context whose Events are reported by [`MANAGER`] (instance: `$POD_NAME`, when set).
    pub fn new(client: Client, metrics: Arc<Metrics>, rails: GuardRails, cache: Cache) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            rails,
            cache,
            written: Written::default(),
        }
    }
}

/// Brings one KafkaFault's injections and status in line with the world.
pub async fn reconcile(fault: Arc<KafkaFault>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.cache.ready() {
        // An empty store would read as "no pods": every injection would be deleted.
        debug!(fault = %fault.name_any(), "the cache is not filled yet");
        return Ok(Action::requeue(CACHE_WAIT));
    }
    // Deleted, holding the operator's finalizer: the finalizer helper cleans up, then lets go.
    let letting_go = fault.metadata.deletion_timestamp.is_some()
        && fault.finalizers().iter().any(|f| f == FAULT_FINALIZER);
    if letting_go && ctx.written.was_let_go(&fault) {
        // A copy from before this operator let it go, queued meanwhile: nothing is left to do.
        return Ok(Action::await_change());
    }
    let started = std::time::Instant::now();
    let namespace = fault
        .namespace()
        .ok_or(InjectionError::MissingMetadata("namespace"))?;
    let span = info_span!("reconcile", fault = %fault.name_any(), %namespace);
    let faults: Api<KafkaFault> = Api::namespaced(ctx.client.clone(), &namespace);
    let deleted = fault.clone();
    let result = finalizer(&faults, FAULT_FINALIZER, fault, |event| async {
        match event {
            finalizer::Event::Apply(fault) => apply(&fault, &ctx).await,
            finalizer::Event::Cleanup(fault) => cleanup(&fault, &ctx).await,
        }
    })
    .instrument(span)
    .await;
    ctx.metrics.reconciled(started.elapsed());
    match result {
        Ok(action) => {
            if letting_go {
                // Cleaned up and the finalizer removed: the helper reports either failing.
                ctx.written.let_go(&deleted);
            }
            Ok(action)
        }
        Err(finalizer::Error::RemoveFinalizer(kube::Error::Api(status)))
            if status.is_not_found() =>
        {
            // Gone already: let go by an earlier pass whose copy this was not.
            ctx.written.let_go(&deleted);
            Ok(Action::await_change())
        }
        Err(finalizer::Error::CleanupFailed(Error::InjectionsRemain { remaining })) => {
            debug!(remaining, "deleted fault waits for its agents");
            Ok(Action::requeue(RECOVERY_POLL))
        }
        Err(error) => Err(Error::Finalizer(Box::new(error))),
    }
}

/// Logs and counts a failed reconcile, and retries it after [`RETRY`].
pub fn error_policy(fault: Arc<KafkaFault>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(
        fault = %fault.name_any(),
        namespace = fault.namespace().unwrap_or_default(),
        reason = error.reason(),
        "reconcile failed: {error}"
    );
    ctx.metrics.failed(error.reason());
    Action::requeue(RETRY)
}

/// A live fault: synced, then looked at again when it expires (or at the resync).
async fn apply(fault: &KafkaFault, ctx: &Context) -> Result<Action, Error> {
    let synced = sync(fault, ctx).await?;
    let now = Timestamp::now();
    let until_expiry = synced
        .ends
        .filter(|end| *end > now)
        .and_then(|end| Duration::try_from(end.duration_since(now)).ok())
        // Timers fire late, never early; the margin keeps "now" past the end when it does.
        .map(|left| left + Duration::from_millis(50));
    Ok(Action::requeue(
        until_expiry.map_or(RESYNC, |left| left.min(RESYNC)),
    ))
}

/// A deleted fault: its injections are deleted, and it goes once none remains.
async fn cleanup(fault: &KafkaFault, ctx: &Context) -> Result<Action, Error> {
    let synced = sync(fault, ctx).await?;
    if synced.remaining > 0 {
        return Err(Error::InjectionsRemain {
            remaining: synced.remaining,
        });
    }
    ctx.metrics.forget(&key(fault));
    info!(fault = %fault.name_any(), "every injection is gone; releasing the fault");
    Ok(Action::await_change())
}

/// What one pass over a fault left.
struct Synced {
    /// Injections still stored (also those being deleted).
    remaining: usize,
    /// When the fault ends, if it has a duration and has started.
    ends: Option<Timestamp>,
}

/// The one pass of the pure core over a fault: read, decide, write the difference.
async fn sync(fault: &KafkaFault, ctx: &Context) -> Result<Synced, Error> {
    let newest = ctx.written.newest(fault);
    let fault = newest.as_ref();
    let name = fault.name_any();
    let namespace = fault
        .namespace()
        .ok_or(InjectionError::MissingMetadata("namespace"))?;
    let injections: Api<KafkaFaultInjection> = Api::namespaced(ctx.client.clone(), &namespace);
    let deleting = fault.metadata.deletion_timestamp.is_some();
    let existing = if deleting {
        // Let go only of what the API server says: the cache may not hold yet an injection
        // written moments ago, and a fault let go too early would strand its rules.
        list_injections(fault, &injections).await?
    } else {
        ctx.cache.injections_of(&namespace, &name)
    };

    let now = Time(Timestamp::now());
    let valid = validity(fault, &ctx.rails).is_ok();
    let (targets, sources) = if valid && !deleting {
        let pods = ctx.cache.pods_in(&namespace);
        let sources = source_addresses(fault, pods.iter().map(AsRef::as_ref))?;
        (
            select_targets(fault, pods.iter().map(AsRef::as_ref))?,
            sources,
        )
    } else {
        (Vec::new(), None)
    };
    let changes = injection_changes(fault, &targets, &existing, &now, sources.as_deref())?;

    let mut stored: BTreeMap<String, KafkaFaultInjection> =
        existing.into_iter().map(|i| (i.name_any(), i)).collect();
    let apply = PatchParams::apply(MANAGER).force();
    for desired in changes.create.iter().chain(&changes.update) {
        let injection = desired.name_any();
        let written = injections
            .patch(&injection, &apply, &Patch::Apply(desired))
            .await
            .map_err(|source| Error::ApplyInjection {
                name: injection.clone(),
                source,
            })?;
        stored.insert(injection, written);
    }
    for injection in &changes.delete {
        match injections.delete(injection, &DeleteParams::default()).await {
            Ok(either) => match either.left() {
                Some(terminating) => stored.insert(injection.clone(), terminating),
                None => stored.remove(injection),
            },
            Err(kube::Error::Api(status)) if status.is_not_found() => stored.remove(injection),
            Err(source) => {
                return Err(Error::DeleteInjection {
                    name: injection.clone(),
                    source,
                });
            }
        };
    }
    release_orphans(&injections, &namespace, &mut stored, &ctx.cache).await?;

    let current: Vec<KafkaFaultInjection> = stored.into_values().collect();
    let status = roll_up(
        fault,
        &ctx.rails,
        &targets,
        &current,
        &now,
        sources.as_deref(),
    );
    if fault.status.as_ref() != Some(&status) {
        write_status(fault, &status, ctx).await?;
        ctx.written.remember(fault, &status);
    }
    ctx.metrics.observe(&key(fault), status.phase, &current);
    Ok(Synced {
        remaining: current.len(),
        ends: expiry(fault, &current),
    })
}

/// The fault's injections, listed from the API server.
async fn list_injections(
    fault: &KafkaFault,
    injections: &Api<KafkaFaultInjection>,
) -> Result<Vec<KafkaFaultInjection>, Error> {
    let name = fault.name_any();
    let listed = injections
        .list(&ListParams::default().labels(&format!("{FAULT_LABEL}={}", label_value(&name))))
        .await
        .map_err(|source| Error::ListInjections {
            fault: key(fault),
            source,
        })?;
    // The label is shortened for long names, so it alone could match another fault's.
    Ok(listed
        .items
        .into_iter()
        .filter(|i| i.spec.fault_name == name)
        .collect())
}

/// Removes the agent's finalizer from the deleted injections in `stored` that no agent can
/// ever release, because their pod or node is gone (as the cache, once filled, has seen: a
/// pod or node it lacks was deleted). Each release is guarded by the resourceVersion read.
async fn release_orphans(
    injections: &Api<KafkaFaultInjection>,
    namespace: &str,
    stored: &mut BTreeMap<String, KafkaFaultInjection>,
    cache: &Cache,
) -> Result<(), Error> {
    let orphans: Vec<String> = stored
        .iter()
        .filter(|(_, injection)| {
            let pod = cache.pod(namespace, &injection.spec.pod_name);
            let node_exists = cache.node_exists(&injection.spec.node_name);
            finalizer_releasable(injection, pod.as_deref(), node_exists)
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in orphans {
        let Some(injection) = stored.get(&name) else {
            continue;
        };
        match release_finalizer(injections, injection, FINALIZER).await {
            Ok(Some(released)) if released.finalizers().is_empty() => {
                stored.remove(&name);
            }
            Ok(Some(released)) => {
                stored.insert(name.clone(), released);
            }
            Ok(None) => {
                stored.remove(&name);
            }
            Err(source) => return Err(Error::ReleaseInjection { name, source }),
        }
        info!(injection = %name, "released: its pod or node is gone, so no agent holds its rules");
    }
    Ok(())
}

/// Writes `status` to the fault's status subresource and publishes the Events of the change.
async fn write_status(
    fault: &KafkaFault,
    status: &KafkaFaultStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let faults: Api<KafkaFault> =
        Api::namespaced(ctx.client.clone(), &fault.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    faults
        .patch_status(
            &fault.name_any(),
            &params,
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(|source| Error::PatchStatus {
            fault: key(fault),
            source,
        })?;
    let reference = fault.object_ref(&());
    for notice in notices(fault.status.as_ref(), status) {
        let event = Event {
            type_: notice.type_,
            reason: notice.reason.into(),
            note: Some(notice.note),
            action: notice.action.into(),
            secondary: None,
        };
        // An Event is a courtesy: losing one must not fail or repeat the reconcile.
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            warn!(fault = %fault.name_any(), "could not publish Event {}: {error}", event.reason);
        }
    }
    Ok(())
}

/// namespace/name, as logs and metrics name a fault.
fn key(fault: &KafkaFault) -> String {
    format!(
        "{}/{}",
        fault.namespace().unwrap_or_default(),
        fault.name_any()
    )
}

/// Runs the controller until SIGTERM or SIGINT: KafkaFaults, the injections they own, and the
/// pods and nodes that decide their targets; faults outside `rails` are reported, not injected.
pub async fn run(client: Client, metrics: Arc<Metrics>, concurrency: u16, rails: GuardRails) {
    // The initial lists may come from the API server's watch cache (no quorum read of etcd per
    // list): the watches that follow bring the stores up to date, and a deleted fault lets go
    // only after listing its injections from the API server itself (see `sync`).
    let config = watcher::Config::default().any_semantic();
    let controller = Controller::new(Api::<KafkaFault>::all(client.clone()), config.clone());
    let faults = controller.store();
    let faults_of_pod = faults.clone();
    // One watch each of injections, pods and nodes fills the cache and wakes the faults.
    let (cache, feeds) = cache::watch(&client, &config);
    let context = Arc::new(Context::new(client, metrics, rails, cache));
    let controller = controller
        .owns_stream(feeds.injections)
        .watches_stream(feeds.pods, move |pod| {
            faults_for_pod(
                &pod.metadata,
                faults_of_pod.state().iter().map(AsRef::as_ref),
            )
        })
        .watches_stream(feeds.nodes, move |_node| {
            faults_for_node(faults.state().iter().map(AsRef::as_ref))
        })
        .with_config(controller::Config::default().concurrency(concurrency))
        .shutdown_on_signal();
    // Not "once the caches are filled": the fault cache's readiness wakes only one waiter, and
    // that must be the controller. The preflight has shown the watches are allowed.
    info!("operator: watching KafkaFaults, their injections, pods and nodes");
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((fault, _)) => debug!(fault = %fault.name, "reconciled"),
                // Failed reconciles are logged by error_policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(error) => warn!("controller: {error}"),
            }
        })
        .await;
}

pub mod cache;
#[cfg(test)]
mod tests;

pub use cache::{Cache, Written};
