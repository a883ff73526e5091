//! `kafka-shock agent`: the node agent. It watches the KafkaFaultInjections labelled with its
//! node, enforces each in its pod's network namespace with the same session the CLI uses,
//! reports their status, and releases their finalizer once their rules are gone.
//!
//! Here is the wiring (the watch, `/metrics`, the sweep at start, the stop at SIGTERM);
//! `reconcile.rs` is the thin writer over the pure `assignment::decide`; `metrics.rs` is what
//! the agent counts.
//!
//! Recovery (see `docs/architecture.md`): the agent enforces `expireTime` itself, so a fault
//! ends on time with the operator down; its SIGTERM and SIGINT handlers are installed before
//! it changes anything, and on either it removes everything it installed; on start it sweeps
//! the chains of injections that no longer exist. A SIGKILLed agent leaves its chains in
//! place, but they stop biting when the kernel lease on their jumps (`--lease`) runs out; the
//! finalizer keeps their injection until the agent is back to remove them.
//!
//! A command: it uses the library's `assignment` and the edges' sessions; nothing uses it.

mod metrics;
mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kafka_shock_agent::assignment::{HostTargets, is_orphan};
use kafka_shock_crds::{KafkaFaultInjection, NODE_LABEL, label_value};
use kafka_shock_daemon::http;
use kube::api::ListParams;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{debug, info, warn};

use self::metrics::Metrics;
use self::reconcile::{Context, error_policy, reconcile};
use crate::commands::values::parse_lease;
use crate::edges::enforcer::Enforcer;
use crate::edges::netns::{self, Netns};
use crate::edges::session::worker::Worker;

/// How long reconciles in flight at SIGTERM may take to finish before the agent stops anyway
/// (and then stops their sessions itself).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The node this agent runs on (from the downward API: spec.nodeName).
    #[arg(long)]
    node_name: String,
    /// Where /metrics and /healthz listen: :PORT or HOST:PORT.
    #[arg(long, default_value = ":9090")]
    metrics_addr: String,
    /// How long the kernel keeps an injection's rules biting if this agent dies without
    /// removing them (at least 3s; renewed every third of it).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_lease)]
    lease: Duration,
    /// Enforce injections whose pod uses the node's network namespace (spec.hostNetwork):
    /// their rules act on the node itself. Without it they are refused (reason HostNetwork),
    /// and the node's own namespace is never a target.
    #[arg(long)]
    allow_host_network_targets: bool,
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
    // Signals first: the handlers replace the default (exit at once) before the agent changes
    // anything, and a signal that comes early ends the watch as soon as it starts.
    let shutdown = shutdown_signal()?.shared();
    let listener = http::listen(&args.metrics_addr).await?;
    let listen = listener.local_addr()?;
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
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, metrics.clone(), async {
        let _ = stopped.await;
    }));
    let pods = watch_node_pods(&client, &args.node_name);
    let host = HostTargets {
        allowed: args.allow_host_network_targets,
    };
    let context = Arc::new(Context::new(
        client,
        &args.node_name,
        args.lease,
        host,
        pods,
        metrics.clone(),
    ));
    metrics.watching.store(true, Ordering::Relaxed);
    info!(
        "agent: watching the KafkaFaultInjections of node {} ({selector}); metrics on {listen}",
        args.node_name
    );
    let controller = Controller::new(injections, watcher::Config::default().labels(&selector));
    let store = controller.store();
    let watch = controller
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, context.clone())
        .for_each(|outcome| async move {
            if let Err(error) = outcome {
                debug!(%error, "reconcile");
            }
        });
    // kube's runner waits for the first list before it reconciles anything, and a graceful
    // shutdown that comes before that list never ends; nothing was reconciled then, so the
    // watch is simply dropped. Once listed, reconciles in flight finish (bounded, still).
    let unlisted_at_shutdown = shutdown.clone().then(|()| async move {
        if store.wait_until_ready().now_or_never().is_none() {
            return;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        warn!("reconciles still running {SHUTDOWN_GRACE:?} after the signal; stopping anyway");
    });
    tokio::select! {
        () = watch => {}
        () = unlisted_at_shutdown => {}
    }
    metrics.watching.store(false, Ordering::Relaxed);
    let _ = stop_serving.send(());
    server.await??;
    // SIGTERM: take out everything this agent installed; the injections keep their finalizer,
    // so the next agent puts the rules back or completes a deletion.
    let workers: Vec<(String, Worker)> = context.take_workers();
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

/// The pods of `node`, kept by a watch (field selector spec.nodeName) for the reconciles to
/// check each injection against, without a read per reconcile.
fn watch_node_pods(client: &Client, node: &str) -> Store<Pod> {
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let watch = watcher(Api::<Pod>::all(client.clone()), config)
        .default_backoff()
        .modify(|pod| pod.metadata.managed_fields = None);
    tokio::spawn(
        reflector::reflector(writer, watch).for_each(|event| async move {
            if let Err(error) = event {
                debug!(%error, "watching this node's pods");
            }
        }),
    );
    store
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves at the first of either,
/// also one that came before it is polled.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

/// Removes, in every namespace, the chains this node's agent installed for injections that no
/// longer exist. Returns how many it removed; a namespace that cannot be read is skipped.
fn sweep_orphans(node: &str, live: &HashSet<String>) -> usize {
    let mut swept = 0;
    for namespace in netns::every_namespace() {
        let removed = Netns::open(&namespace)
            .map_err(anyhow::Error::new)
            .and_then(|netns| Enforcer::new(Arc::new(netns)).map_err(anyhow::Error::new))
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
