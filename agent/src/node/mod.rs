//! `kafka-shock agent`: the node agent. It watches the KafkaFaultInjections labelled with its
//! node, enforces each in its pod's network namespace with the same [`Session`] the CLI uses,
//! reports their status, and releases their finalizer once their rules are gone.
//!
//! Recovery (DESIGN.md): the agent enforces `expireTime` itself, so a fault ends on time with
//! the operator down; on SIGTERM it removes everything it installed; on start it sweeps the
//! chains of injections that no longer exist. A SIGKILLed agent leaves its rules in place, and
//! the finalizer keeps their injection until the agent is back to remove them.
//!
//! [`Session`]: crate::session::Session

mod metrics;
mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kafka_shock_agent::assignment::{
    Desired, Tally, desired, fault_spec_of, is_orphan, rule_id, status_for, time_until,
};
use kafka_shock_agent::plan::FaultPlan;
use kafka_shock_agent::pod_netns::{FoundBy, PodKey};
use kafka_shock_crds::injection::{FINALIZER, NODE_LABEL};
use kafka_shock_crds::{
    ActionType, InjectionPhase, KafkaFaultInjection, KafkaFaultInjectionStatus,
};
use kafka_shock_operator::label_value;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use self::metrics::{ApiLabels, ErrorLabels, InjectionLabels, Metrics, OutcomeLabels, PhaseLabels};
use self::worker::{Assignment, Placement, Progress, Worker, remove_leftovers};
use crate::engine::Enforcer;
use crate::netns::{self, find_pod_namespace};
use crate::session::SessionStats;

/// How often an enforced injection is looked at again: its counters go to its status, its
/// pod's namespace is resolved again (a restarted pod has a new one), a dead session restarts.
const RESYNC: Duration = Duration::from_secs(5);
/// Field manager of the agent's status writes.
const MANAGER: &str = "kafka-shock-agent";

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The node this agent runs on (from the downward API: spec.nodeName).
    #[arg(long)]
    node_name: String,
    /// Where /metrics and /healthz listen: :PORT or HOST:PORT.
    #[arg(long, default_value = ":9090")]
    metrics_addr: String,
}

/// Why reconciling one injection failed; the watch loop retries it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the injection has no {0}")]
    Incomplete(&'static str),
    #[error("{0:#}")]
    Enforce(anyhow::Error),
}

impl Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "api",
            Error::Incomplete(_) => "incomplete",
            Error::Enforce(_) => "enforce",
        }
    }
}

/// What reconciles share.
pub struct Context {
    client: Client,
    node: String,
    workers: Mutex<HashMap<String, Worker>>,
    metrics: Arc<Metrics>,
    /// Phase last reported per injection UID, for the by-phase gauge.
    phases: Mutex<HashMap<String, InjectionPhase>>,
}

impl Context {
    fn take_worker(&self, uid: &str) -> Option<Worker> {
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uid)
    }

    fn put_worker(&self, uid: &str, worker: Worker) {
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uid.to_owned(), worker);
    }

    fn set_phase(&self, uid: &str, phase: Option<InjectionPhase>) {
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        match phase {
            Some(phase) => phases.insert(uid.to_owned(), phase),
            None => phases.remove(uid),
        };
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for phase in phases.values() {
            *counts.entry(format!("{phase:?}")).or_default() += 1;
        }
        self.metrics.injections.clear();
        for (phase, count) in counts {
            self.metrics
                .injections
                .get_or_create(&PhaseLabels { phase })
                .set(count);
        }
    }
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(agent(args))
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let listen = metrics::parse_listen_addr(&args.metrics_addr).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} for /metrics"))?;
    let client = Client::try_default()
        .await
        .context("no Kubernetes API to talk to (in-cluster config or KUBECONFIG)")?;
    let injections: Api<KafkaFaultInjection> = Api::all(client.clone());
    let selector = format!("{NODE_LABEL}={}", label_value(&args.node_name));
    let listed = injections
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) if status.code == 404 => anyhow::anyhow!(
                "the KafkaFaultInjection CRD (kafkafaultinjections.kafkashock.io) is not installed; install the chart's CRDs first"
            ),
            other => anyhow::Error::new(other).context("listing this node's KafkaFaultInjections"),
        })?;
    let live: HashSet<String> = listed.items.iter().filter_map(|i| i.uid()).collect();
    let node = args.node_name.clone();
    let swept = tokio::task::spawn_blocking(move || sweep_orphans(&node, &live))
        .await
        .context("sweeping orphans")?;
    info!(
        node = %args.node_name,
        swept,
        "swept chains of injections that no longer exist"
    );

    let metrics = Arc::new(Metrics::new());
    let server = tokio::spawn(metrics::serve(listener, metrics.clone()));
    let context = Arc::new(Context {
        client,
        node: args.node_name.clone(),
        workers: Mutex::new(HashMap::new()),
        metrics: metrics.clone(),
        phases: Mutex::new(HashMap::new()),
    });
    metrics
        .watching
        .store(true, std::sync::atomic::Ordering::Relaxed);
    info!(
        "agent: watching the KafkaFaultInjections of node {} ({selector}); metrics on {listen}",
        args.node_name
    );
    Controller::new(injections, watcher::Config::default().labels(&selector))
        .graceful_shutdown_on(shutdown_signal())
        .run(reconcile, error_policy, context.clone())
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                debug!(%error, "reconcile");
            }
        })
        .await;
    metrics
        .watching
        .store(false, std::sync::atomic::Ordering::Relaxed);
    server.abort();
    // SIGTERM: take out everything this agent installed; the injections keep their finalizer,
    // so the next agent puts the rules back or completes a deletion.
    let workers: Vec<(String, Worker)> = context
        .workers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain()
        .collect();
    let count = workers.len();
    tokio::task::spawn_blocking(move || {
        for (uid, worker) in workers {
            let progress = worker.stop();
            if let Some(error) = progress.error {
                warn!(%uid, %error, "stopping");
            }
        }
    })
    .await
    .context("stopping the sessions")?;
    info!("agent: stopped; removed the rules of {count} injection(s)");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// Removes, in every namespace, the chains this node's agent installed for injections that no
/// longer exist. Returns how many it removed; a namespace that cannot be read is skipped.
fn sweep_orphans(node: &str, live: &HashSet<String>) -> usize {
    let namespaces = match netns::every_namespace() {
        Ok(namespaces) => namespaces,
        Err(error) => {
            warn!(%error, "cannot list network namespaces to sweep");
            return 0;
        }
    };
    let mut swept = 0;
    for namespace in namespaces {
        let removed = Enforcer::new(Some(&namespace))
            .map_err(anyhow::Error::new)
            .and_then(|enforcer| {
                enforcer
                    .remove(|chain| is_orphan(chain, node, live))
                    .map_err(anyhow::Error::new)
            });
        match removed {
            Ok(chains) if !chains.is_empty() => {
                info!(netns = %namespace.display(), ?chains, "swept orphan chains");
                swept += chains.len();
            }
            Ok(_) => {}
            Err(error) => debug!(netns = %namespace.display(), %error, "not swept"),
        }
    }
    swept
}

fn error_policy(injection: Arc<KafkaFaultInjection>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(injection = %injection.name_any(), %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            reason: error.reason().to_owned(),
        })
        .inc();
    Action::requeue(RESYNC)
}

async fn reconcile(
    injection: Arc<KafkaFaultInjection>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let uid = injection.uid().ok_or(Error::Incomplete("metadata.uid"))?;
    let want = match desired(&injection, Timestamp::now()) {
        Ok(want) => want,
        Err(error) => {
            stop_worker(&ctx, &uid).await;
            let status = status_for(
                &injection,
                InjectionPhase::Failed,
                Tally::default(),
                Some(error.to_string()),
            );
            write_status(&ctx, &injection, status).await?;
            return Ok(Action::await_change());
        }
    };
    match want {
        Desired::Deleting => {
            remove_rules(&ctx, &injection, &uid).await?;
            release_finalizer(&ctx, &injection).await?;
            forget(&ctx, &injection, &uid);
            Ok(Action::await_change())
        }
        Desired::Paused | Desired::Expired => {
            let tally = remove_rules(&ctx, &injection, &uid).await?;
            let phase = if want == Desired::Paused {
                InjectionPhase::Paused
            } else {
                InjectionPhase::Recovered
            };
            let status = status_for(&injection, phase, tally, None);
            write_status(&ctx, &injection, status).await?;
            Ok(Action::await_change())
        }
        Desired::Enforce { until } => enforce(&ctx, &injection, &uid, until).await,
    }
}

/// The pod's network namespace as it is now: by pod UID in cgroups, else by pod IP.
async fn resolve(
    injection: &KafkaFaultInjection,
) -> Result<(std::path::PathBuf, u64, FoundBy), Error> {
    let key = PodKey {
        uid: Some(injection.spec.pod_uid.clone()).filter(|uid| !uid.is_empty()),
        ip: injection.spec.pod_ip.parse::<IpAddr>().ok(),
    };
    tokio::task::spawn_blocking(move || find_pod_namespace(&key))
        .await
        .map_err(|error| Error::Enforce(error.into()))?
        .map_err(|error| Error::Enforce(error.into()))
}

async fn enforce(
    ctx: &Arc<Context>,
    injection: &KafkaFaultInjection,
    uid: &str,
    until: Option<Timestamp>,
) -> Result<Action, Error> {
    let requeue = until
        .map(|until| time_until(until, Timestamp::now()).min(RESYNC))
        .unwrap_or(RESYNC)
        .max(Duration::from_millis(100));
    let (netns, inode, found_by) = match resolve(injection).await {
        Ok(found) => found,
        Err(error) => {
            // The pod is not (or no longer) on this node's kernel: nothing can be enforced,
            // and whatever this agent had installed went with the namespace.
            let tally = stop_worker(ctx, uid)
                .await
                .map_or_else(|| tally_kept(injection), |p| tally_of(&p.stats));
            let status = status_for(
                injection,
                InjectionPhase::Pending,
                Tally {
                    rules_installed: 0,
                    ..tally
                },
                Some(format!("the pod's network namespace is not found: {error}")),
            );
            write_status(ctx, injection, status).await?;
            return Ok(Action::requeue(RESYNC));
        }
    };
    let placement = Placement {
        netns,
        netns_inode: inode,
        found_by,
        generation: injection.metadata.generation,
    };
    let current = ctx.take_worker(uid);
    // A running session stays; a failed one stays too (its error reported) until RESYNC has
    // passed, then it is tried again.
    let keep = current.as_ref().is_some_and(|worker| {
        let progress = worker.progress();
        worker.placement == placement
            && (!progress.finished
                || (progress.error.is_some()
                    && progress.ended.is_some_and(|ended| ended.elapsed() < RESYNC)))
    });
    let worker = match current {
        Some(worker) if keep => worker,
        stale => {
            if let Some(worker) = stale {
                let old = worker.placement.clone();
                let progress = stop(ctx, worker).await;
                info!(injection = %injection.name_any(), ?old, error = ?progress.error, "session replaced");
            }
            match start_worker(ctx, injection, uid, placement, until) {
                Ok(worker) => worker,
                Err(error) => {
                    let status = status_for(
                        injection,
                        InjectionPhase::Failed,
                        tally_kept(injection),
                        Some(error.to_string()),
                    );
                    write_status(ctx, injection, status).await?;
                    return Ok(Action::requeue(RESYNC));
                }
            }
        }
    };
    let progress = worker.progress();
    if worker.first_report_of_install(&progress) {
        ctx.metrics.observe_apply(progress.stats.install_time);
    }
    ctx.put_worker(uid, worker);
    publish(ctx, injection, &progress);
    let (phase, error) = match (&progress.error, progress.installed) {
        (Some(error), _) => (InjectionPhase::Failed, Some(error.clone())),
        (None, true) => (InjectionPhase::Active, None),
        (None, false) => (InjectionPhase::Pending, None),
    };
    let status = status_for(injection, phase, tally_of(&progress.stats), error);
    write_status(ctx, injection, status).await?;
    // A session still starting is looked at again soon, so Active shows quickly.
    let requeue = if progress.installed || progress.finished {
        requeue
    } else {
        requeue.min(Duration::from_millis(250))
    };
    Ok(Action::requeue(requeue))
}

fn start_worker(
    ctx: &Arc<Context>,
    injection: &KafkaFaultInjection,
    uid: &str,
    placement: Placement,
    until: Option<Timestamp>,
) -> Result<Worker, Error> {
    let spec = fault_spec_of(injection);
    let plan = FaultPlan::new(&rule_id(&ctx.node, uid), &spec)
        .map_err(|error| Error::Enforce(error.into()))?;
    let name = format!(
        "{}/{}",
        injection.namespace().unwrap_or_default(),
        injection.name_any()
    );
    let verb = match spec.action.type_ {
        ActionType::Reject => "reset",
        ActionType::Drop => "dropped",
        ActionType::Delay => "delayed",
    };
    let log_name = name.clone();
    let log = Box::new(move |line: &str| {
        if line.starts_with("match:") {
            debug!(injection = %log_name, "{line}");
        } else {
            info!(injection = %log_name, "{line}");
        }
    });
    info!(injection = %name, netns = %placement.netns.display(), found_by = %placement.found_by, "enforcing");
    Worker::start(
        placement,
        Assignment {
            name,
            plan,
            ports: spec.ports.clone(),
            verb,
            until: until.map(|until| Instant::now() + time_until(until, Timestamp::now())),
        },
        log,
    )
    .map_err(|error| Error::Enforce(error.into()))
}

async fn stop(ctx: &Arc<Context>, worker: Worker) -> Progress {
    let progress = tokio::task::spawn_blocking(move || worker.stop())
        .await
        .unwrap_or_else(|error| Progress {
            error: Some(format!("the session thread failed: {error}")),
            finished: true,
            ..Progress::default()
        });
    if let Some(took) = progress.removal {
        ctx.metrics.observe_remove(took);
    }
    progress
}

async fn stop_worker(ctx: &Arc<Context>, uid: &str) -> Option<Progress> {
    let worker = ctx.take_worker(uid)?;
    Some(stop(ctx, worker).await)
}

/// Takes the injection's rules out: its session if this agent runs one, and any chain of its
/// rule id left in the pod's namespace (by an agent that restarted, or a session that failed
/// to remove). A namespace that no longer exists holds no rules. Returns what the session
/// did, with no rule left.
async fn remove_rules(
    ctx: &Arc<Context>,
    injection: &KafkaFaultInjection,
    uid: &str,
) -> Result<Tally, Error> {
    let progress = stop_worker(ctx, uid).await;
    let tally = progress
        .as_ref()
        .map_or_else(|| tally_kept(injection), |p| tally_of(&p.stats));
    if let Ok((netns, _, _)) = resolve(injection).await {
        let id = rule_id(&ctx.node, uid);
        let removal = tokio::task::spawn_blocking(move || remove_leftovers(&netns, &id))
            .await
            .map_err(|error| Error::Enforce(error.into()))?
            .map_err(Error::Enforce)?;
        if !removal.chains.is_empty() {
            info!(injection = %injection.name_any(), chains = ?removal.chains, "removed leftover rules");
            ctx.metrics.observe_remove(removal.took);
        }
    }
    Ok(Tally {
        rules_installed: 0,
        ..tally
    })
}

/// A session's numbers, as the status reports them.
fn tally_of(stats: &SessionStats) -> Tally {
    let inline = stats.inline.unwrap_or_default();
    Tally {
        rules_installed: stats.rules_installed,
        matched: stats.requests_matched,
        delayed: inline.delayed,
        dropped: inline.dropped,
        reset: inline.reset,
        failed_open: inline.failed_open,
    }
}

/// The numbers the injection's status already holds, for an injection this agent runs no
/// session for (it restarted): what was hit stays reported.
fn tally_kept(injection: &KafkaFaultInjection) -> Tally {
    injection
        .status
        .as_ref()
        .map_or_else(Tally::default, |status| Tally {
            rules_installed: 0,
            matched: status.matched_requests,
            delayed: status.delayed_requests,
            dropped: status.dropped_requests,
            reset: status.reset_requests,
            failed_open: status.failed_open,
        })
}

/// Copies a session's numbers into the metrics.
fn publish(ctx: &Context, injection: &KafkaFaultInjection, progress: &Progress) {
    let namespace = injection.namespace().unwrap_or_default();
    let name = injection.name_any();
    let labels = InjectionLabels {
        namespace: namespace.clone(),
        injection: name.clone(),
    };
    ctx.metrics
        .requests_seen
        .get_or_create(&labels)
        .set(i64::try_from(progress.stats.requests_seen).unwrap_or(i64::MAX));
    ctx.metrics
        .rules_installed
        .get_or_create(&labels)
        .set(i64::try_from(progress.stats.rules_installed).unwrap_or(i64::MAX));
    if let Some(inline) = &progress.stats.inline {
        for (outcome, count) in [
            ("delayed", inline.delayed),
            ("dropped", inline.dropped),
            ("reset", inline.reset),
            ("failed_open", inline.failed_open),
        ] {
            ctx.metrics
                .inline_requests
                .get_or_create(&OutcomeLabels {
                    namespace: namespace.clone(),
                    injection: name.clone(),
                    outcome: outcome.to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
    for (api, count) in &progress.stats.matched_by_api {
        ctx.metrics
            .requests_matched
            .get_or_create(&ApiLabels {
                namespace: namespace.clone(),
                injection: name.clone(),
                api: api.clone(),
            })
            .set(i64::try_from(*count).unwrap_or(i64::MAX));
    }
}

/// Drops what the agent keeps about an injection that is gone.
fn forget(ctx: &Context, injection: &KafkaFaultInjection, uid: &str) {
    ctx.set_phase(uid, None);
    let labels = InjectionLabels {
        namespace: injection.namespace().unwrap_or_default(),
        injection: injection.name_any(),
    };
    ctx.metrics.requests_seen.remove(&labels);
    ctx.metrics.rules_installed.remove(&labels);
}

/// Writes `status` with server-side apply when it differs from what the object holds.
async fn write_status(
    ctx: &Context,
    injection: &KafkaFaultInjection,
    status: KafkaFaultInjectionStatus,
) -> Result<(), Error> {
    let uid = injection.uid().unwrap_or_default();
    ctx.set_phase(&uid, Some(status.phase));
    if injection.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let namespace = injection
        .namespace()
        .ok_or(Error::Incomplete("metadata.namespace"))?;
    let api: Api<KafkaFaultInjection> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": KafkaFaultInjection::api_version(&()),
        "kind": KafkaFaultInjection::kind(&()),
        "status": status,
    });
    api.patch_status(
        &injection.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Removes the agent's finalizer, guarded by the resourceVersion read, so a concurrent change
/// is retried rather than overwritten.
async fn release_finalizer(ctx: &Context, injection: &KafkaFaultInjection) -> Result<(), Error> {
    if !injection.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let namespace = injection
        .namespace()
        .ok_or(Error::Incomplete("metadata.namespace"))?;
    let remaining: Vec<&String> = injection
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": remaining,
            "resourceVersion": injection.resource_version(),
        }
    });
    let api: Api<KafkaFaultInjection> = Api::namespaced(ctx.client.clone(), &namespace);
    match api
        .patch(
            &injection.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => return Err(error.into()),
    }
    info!(injection = %injection.name_any(), "rules gone; finalizer released");
    Ok(())
}
