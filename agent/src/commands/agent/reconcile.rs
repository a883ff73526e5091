//! The node agent's reconcile of one injection, as a thin writer over the pure
//! `assignment::decide` (kube-rs's `reconcile` / `error_policy` / `Context`, as in the
//! operator's controller): it gathers what the decision needs (the live pod the injection
//! names; the pod's network namespace, found in `/proc` only once the injection passed its
//! checks against that pod; the progress of this agent's session), performs the actions
//! decided (sessions started, replaced or stopped, leftover rules removed, the finalizer
//! released) and writes the status with server-side apply.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kafka_shock_agent::assignment::pod_netns::{PodKey, PodNetnsError};
use kafka_shock_agent::assignment::{
    Act, Decision, HostTargets, NetnsMiss, Observed, PodNetns, RESYNC, SessionView, Start, Tally,
    decide, start_failed, time_until, vet,
};
use kafka_shock_crds::{FINALIZER, KafkaFaultInjection, KafkaFaultInjectionStatus, ProxyCounts};
use kafka_shock_daemon::release_finalizer;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::metrics::Metrics;
use crate::edges::netns::{Netns, NetnsError, find_pod_namespace};
use crate::edges::proxy::ProxyStats;
use crate::edges::session::worker::{Progress, Task, Worker, remove_leftovers};
use crate::edges::session::{SessionSpec, SessionStats};

/// Field manager of the agent's status writes.
const MANAGER: &str = "kafka-shock-agent";

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
    /// The kernel lease of every session's jumps.
    lease: Duration,
    /// Whether a pod in the node's own network namespace may be a target.
    host: HostTargets,
    /// The pods of this node, as a watch keeps them (it may trail the API server).
    pods: Store<Pod>,
    /// The session of each injection this agent enforces, by injection UID.
    workers: Mutex<HashMap<String, Worker>>,
    metrics: Arc<Metrics>,
}

impl Context {
    pub fn new(
        client: Client,
        node: &str,
        lease: Duration,
        host: HostTargets,
        pods: Store<Pod>,
        metrics: Arc<Metrics>,
    ) -> Context {
        Context {
            client,
            node: node.to_owned(),
            lease,
            host,
            pods,
            workers: Mutex::new(HashMap::new()),
            metrics,
        }
    }

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

    /// Every session, for the agent to stop them all (SIGTERM).
    pub fn take_workers(&self) -> Vec<(String, Worker)> {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.drain().collect()
    }
}

/// Logs and counts a failed reconcile, and retries it after [`RESYNC`].
pub fn error_policy(
    injection: Arc<KafkaFaultInjection>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    warn!(injection = %injection.name_any(), %error, "reconcile failed");
    ctx.metrics.failed(error.reason());
    Action::requeue(RESYNC)
}

/// Brings one injection's rules and status in line with what it asks for.
pub async fn reconcile(
    injection: Arc<KafkaFaultInjection>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let uid = injection.uid().ok_or(Error::Incomplete("metadata.uid"))?;
    let pod = read_pod(&ctx, &injection).await?;
    // Nothing is looked for, let alone touched, for an injection that fails its checks.
    let pod_netns = match vet(&injection, pod.as_deref(), &ctx.node, ctx.host) {
        Ok(()) => resolve(&injection, ctx.host).await,
        Err(_) => Err(NetnsMiss::NotLooked),
    };
    let mut worker = ctx.take_worker(&uid);
    let observed = Observed {
        injection: &injection,
        uid: &uid,
        node: &ctx.node,
        now: Timestamp::now(),
        pod: pod.as_deref(),
        host: ctx.host,
        pod_netns,
        session: worker.as_ref().map(session_view),
    };
    let decision = decide(&observed);
    let written = perform(&ctx, &injection, &uid, &mut worker, decision).await;
    if let Some(worker) = worker {
        ctx.put_worker(&uid, worker);
    }
    written
}

/// Performs `decision`'s actions in order, then writes its status. `worker` is the
/// injection's session before, and after.
async fn perform(
    ctx: &Context,
    injection: &KafkaFaultInjection,
    uid: &str,
    worker: &mut Option<Worker>,
    decision: Decision,
) -> Result<Action, Error> {
    let Decision {
        actions,
        mut status,
        mut requeue,
    } = decision;
    for act in actions {
        match act {
            Act::StopSession => {
                if let Some(stopped) = worker.take() {
                    stop(ctx, stopped).await;
                }
            }
            Act::ReplaceSession(start) | Act::StartSession(start) => {
                if let Some(stale) = worker.take() {
                    let old = stale.placement.clone();
                    let progress = stop(ctx, stale).await;
                    info!(injection = %injection.name_any(), ?old, error = ?progress.error, "session replaced");
                }
                match start_worker(injection, *start, ctx.lease) {
                    Ok(started) => *worker = Some(started),
                    Err(error) => {
                        let failed = start_failed(injection, format!("{error:#}"));
                        (status, requeue) = (failed.status, failed.requeue);
                    }
                }
            }
            Act::RemoveLeftovers(netns) => remove_rules_left(ctx, injection, uid, netns).await?,
            Act::ReleaseFinalizer => release(ctx, injection).await?,
            Act::Forget => ctx.metrics.forget(injection, uid),
        }
    }
    if let Some(worker) = worker {
        let progress = worker.progress();
        if worker.first_report_of_install(&progress) {
            ctx.metrics.observe_apply(progress.stats.install_time);
        }
        ctx.metrics.publish(injection, &progress.stats);
    }
    if let Some(status) = status {
        write_status(ctx, injection, status).await?;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// The pod the injection names, in its namespace: from this node's pod cache when it passes
/// the checks there, else as the API server has it now. The cache only ever confirms; a
/// refusal is made on a fresh read (a pod just recreated may not be in the cache yet, and a
/// pod on another node never is).
async fn read_pod(
    ctx: &Context,
    injection: &KafkaFaultInjection,
) -> Result<Option<Arc<Pod>>, Error> {
    let namespace = injection
        .namespace()
        .ok_or(Error::Incomplete("metadata.namespace"))?;
    let name = &injection.spec.pod_name;
    let cached = ctx.pods.get(&ObjectRef::new(name).within(&namespace));
    if let Some(pod) = cached.filter(|pod| vet(injection, Some(pod), &ctx.node, ctx.host).is_ok()) {
        return Ok(Some(pod));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    Ok(pods.get_opt(name).await?.map(Arc::new))
}

/// The pod's network namespace as it is now: by pod UID in cgroups, else by pod IP; the
/// node's own is refused unless `host` allows it.
async fn resolve(
    injection: &KafkaFaultInjection,
    host: HostTargets,
) -> Result<PodNetns, NetnsMiss> {
    let key = PodKey {
        uid: Some(injection.spec.pod_uid.clone()).filter(|uid| !uid.is_empty()),
        ip: injection.spec.pod_ip.parse::<IpAddr>().ok(),
    };
    match tokio::task::spawn_blocking(move || find_pod_namespace(&key, host.allowed)).await {
        Ok(Ok((path, inode, found_by))) => Ok(PodNetns {
            path,
            inode,
            found_by,
        }),
        Ok(Err(error @ NetnsError::Pod(PodNetnsError::HostNamespace { .. }))) => {
            Err(NetnsMiss::Host(error.to_string()))
        }
        Ok(Err(error)) => Err(NetnsMiss::NotFound(error.to_string())),
        Err(error) => Err(NetnsMiss::NotFound(error.to_string())),
    }
}

/// What the decision needs of a worker: where it runs and how it is doing.
fn session_view(worker: &Worker) -> SessionView {
    let progress = worker.progress();
    SessionView {
        placement: worker.placement.clone(),
        installed: progress.installed,
        finished: progress.finished,
        error: progress.error,
        ended_ago: progress.ended.map(|ended| ended.elapsed()),
        tally: tally_of(&progress.stats),
    }
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
        proxy: stats.proxy.as_ref().map(proxy_counts),
        tls_ports: stats.tls_ports.iter().copied().collect(),
    }
}

/// The proxy's numbers as the status reports them.
fn proxy_counts(stats: &ProxyStats) -> ProxyCounts {
    let c = &stats.counters;
    ProxyCounts {
        requests_seen: c.requests_seen,
        errored_requests: c.errored,
        throttled_requests: c.throttled,
        delayed_requests: c.delayed,
        corrupted_requests: c.corrupted,
        duplicated_requests: c.duplicated,
        proxied_connections: c.connections,
        handed_over_connections: stats.handed_over,
        tls_passthroughs: c.passthrough_tls,
        failed_open: c.failed_open,
    }
}

/// Starts the session `start` describes on a thread of its own, holding the pod's namespace
/// by a descriptor opened now (and checked to be the namespace the decision was made for).
fn start_worker(
    injection: &KafkaFaultInjection,
    start: Start,
    lease: Duration,
) -> anyhow::Result<Worker> {
    let Start {
        placement,
        plan,
        until,
    } = start;
    let netns = Netns::open_expecting(&placement.netns.path, placement.netns.inode)?;
    let terms = &injection.spec.terms;
    let name = format!(
        "{}/{}",
        injection.namespace().unwrap_or_default(),
        injection.name_any()
    );
    let log_name = name.clone();
    let log = Box::new(move |line: &str| {
        if line.starts_with("match:") {
            debug!(injection = %log_name, "{line}");
        } else {
            info!(injection = %log_name, "{line}");
        }
    });
    info!(
        injection = %name,
        netns = %placement.netns.path.display(),
        found_by = %placement.netns.found_by,
        "enforcing"
    );
    let task = Task {
        spec: SessionSpec {
            name,
            plan,
            ports: terms.ports.clone(),
            verb: terms.action.type_.word(),
            lease: Some(lease),
        },
        until: until.map(|until| Instant::now() + time_until(until, Timestamp::now())),
    };
    Ok(Worker::start(placement, netns, task, log)?)
}

/// Stops a session (blocking: off the async runtime) and counts how long its removal took.
async fn stop(ctx: &Context, worker: Worker) -> Progress {
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

/// Removes the chains of the injection's rule id left in the namespace at `netns`.
async fn remove_rules_left(
    ctx: &Context,
    injection: &KafkaFaultInjection,
    uid: &str,
    netns: std::path::PathBuf,
) -> Result<(), Error> {
    let id = kafka_shock_crds::rule_id(&ctx.node, uid);
    let removal = tokio::task::spawn_blocking(move || remove_leftovers(&netns, &id))
        .await
        .map_err(|error| Error::Enforce(error.into()))?
        .map_err(Error::Enforce)?;
    if !removal.chains.is_empty() {
        info!(injection = %injection.name_any(), chains = ?removal.chains, "removed leftover rules");
        ctx.metrics.observe_remove(removal.took);
    }
    Ok(())
}

/// Writes `status` with server-side apply when it differs from what the object holds.
async fn write_status(
    ctx: &Context,
    injection: &KafkaFaultInjection,
    status: KafkaFaultInjectionStatus,
) -> Result<(), Error> {
    let uid = injection.uid().unwrap_or_default();
    ctx.metrics.set_phase(&uid, Some(status.phase));
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
async fn release(ctx: &Context, injection: &KafkaFaultInjection) -> Result<(), Error> {
    let namespace = injection
        .namespace()
        .ok_or(Error::Incomplete("metadata.namespace"))?;
    let api: Api<KafkaFaultInjection> = Api::namespaced(ctx.client.clone(), &namespace);
    release_finalizer(&api, injection, FINALIZER).await?;
    info!(injection = %injection.name_any(), "rules gone; finalizer released");
    Ok(())
}
