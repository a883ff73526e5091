//! `kafka-shock-operator`: turns each KafkaFault into one KafkaFaultInjection per target pod,
//! rolls their statuses up, and serves `/metrics` and `/healthz`.
//!
//! It authenticates from KUBECONFIG or, in a pod, its ServiceAccount. Before watching it checks
//! that the CRDs are installed and its RBAC allows the watches, and exits non-zero saying which
//! is missing otherwise. SIGTERM or SIGINT stops it gracefully: running reconciles finish.
#![forbid(unsafe_code)]

use std::{process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::Parser;
use kafka_shock_daemon::{LogFormat, http, logging};
use kafka_shock_operator::{GuardRails, controller, metrics, preflight};
use tracing::{error, info};

/// The kafka-shock operator: KafkaFault -> target pods -> one KafkaFaultInjection per pod.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Where to serve /metrics and /healthz: :PORT (every interface) or HOST:PORT.
    #[arg(long, default_value = ":8080")]
    metrics_addr: String,

    /// Log lines as human-readable text or as JSON objects. The filter comes from
    /// KAFKA_SHOCK_LOG, else RUST_LOG, else "info".
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// How many KafkaFaults are reconciled at once (0: no limit).
    #[arg(long, default_value_t = 16)]
    concurrency: u16,

    /// Honour KafkaFaults only in these namespaces (comma-separated; none given: every
    /// namespace). A fault elsewhere is reported Valid=False (NamespaceNotAllowed).
    #[arg(long, value_name = "NAMESPACE,...", value_delimiter = ',')]
    fault_namespaces: Vec<String>,

    /// Allow faults to name only these ports in spec.ports (comma-separated; none given: any
    /// port). A fault naming another is reported Valid=False (PortNotAllowed).
    #[arg(long, value_name = "PORT,...", value_delimiter = ',')]
    allowed_ports: Vec<u16>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    logging::init("info", args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            error!("operator: {failure:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = http::listen(&args.metrics_addr).await?;
    let client = kube::Client::try_default().await.context(
        "no Kubernetes API client: set KUBECONFIG, or run in a pod with a ServiceAccount token",
    )?;
    preflight::check(&client).await?;

    let metrics = Arc::new(metrics::Metrics::default());
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let address = listener.local_addr()?;
    let server = tokio::spawn(http::serve(listener, metrics.clone(), async {
        let _ = stopped.await;
    }));
    info!(%address, "serving /metrics and /healthz");

    let rails = GuardRails {
        namespaces: args.fault_namespaces.into_iter().collect(),
        ports: args.allowed_ports.into_iter().collect(),
    };
    if rails != GuardRails::default() {
        info!(
            namespaces = ?rails.namespaces,
            ports = ?rails.ports,
            "guard rails: faults are honoured only within these"
        );
    }
    controller::run(client, metrics, args.concurrency, rails).await;

    let _ = stop_serving.send(());
    server.await??;
    info!("operator: stopped");
    Ok(())
}
