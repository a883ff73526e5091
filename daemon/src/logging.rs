//! Log lines on standard error, the same way in every kafka-shock process: the filter comes
//! from `KAFKA_SHOCK_LOG`, else `RUST_LOG` (the chart sets it), else the process's default
//! level; lines are text (coloured only on a terminal) or JSON objects.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the process's logger; `default_level` applies when neither variable is set.
pub fn init(default_level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_env("KAFKA_SHOCK_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}
