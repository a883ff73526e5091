//! `kafka-shock-operator`: turns each KafkaFault into one KafkaFaultInjection per target pod,
//! rolls their statuses up, and serves `/metrics` and `/healthz`.
//!
//! It authenticates from KUBECONFIG or, in a pod, its ServiceAccount. Before watching it checks
//! that the CRDs are installed and its RBAC allows the watches, and exits non-zero saying which
//! is missing otherwise. SIGTERM or SIGINT stops it gracefully: running reconciles finish.
#![forbid(unsafe_code)]

use std::{process::ExitCode, sync::Arc};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use kafka_shock_operator::{controller, metrics, preflight};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

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
}

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("KAFKA_SHOCK_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            error!("operator: {failure:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = metrics::listen(&args.metrics_addr).await?;
    let client = kube::Client::try_default().await.context(
        "no Kubernetes API client: set KUBECONFIG, or run in a pod with a ServiceAccount token",
    )?;
    preflight::check(&client).await?;

    let metrics = Arc::new(metrics::Metrics::default());
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let address = listener.local_addr()?;
    let server = tokio::spawn(metrics::serve(listener, metrics.clone(), async {
        let _ = stopped.await;
    }));
    info!(%address, "serving /metrics and /healthz");

    controller::run(client, metrics, args.concurrency).await;

    let _ = stop_serving.send(());
    server.await??;
    info!("operator: stopped");
    Ok(())
}
