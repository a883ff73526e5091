//! `kafka-shock`: the command line (`sniff`, `inject`, `rules`, `clean`) and the node agent
//! (`agent`). The binary holds the [`commands`] and the I/O [`edges`] they drive; every
//! decision is the library's (`kafka_shock_agent`, the pure core). See `docs/architecture.md`.
#![forbid(unsafe_code)]

mod commands;
mod edges;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use commands::{agent, clean, inject, rules, sniff};

#[derive(Parser)]
#[command(
    name = "kafka-shock",
    version,
    about = "Break Kafka on purpose, at the protocol level"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode Kafka requests and responses, live or from a pcap/pcapng file.
    Sniff(sniff::SniffArgs),
    /// Enforce a KafkaFault (YAML) in a broker's network namespace until it ends.
    Inject(inject::InjectArgs),
    /// Show the rules kafka-shock has installed in a network namespace.
    Rules(rules::RulesArgs),
    /// Remove every rule kafka-shock installed, in one namespace or all of them.
    Clean(clean::CleanArgs),
    /// Run as the node agent: enforce the KafkaFaultInjections of this node (Kubernetes).
    Agent(agent::AgentArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The CLI speaks through its own output and logs only warnings; the agent is a daemon whose
    // logs are its story. KAFKA_SHOCK_LOG, then RUST_LOG (the chart's), override either.
    let default_level = if matches!(cli.command, Command::Agent(_)) {
        "info"
    } else {
        "warn"
    };
    kafka_shock_daemon::logging::init(default_level, kafka_shock_daemon::LogFormat::Text);
    let outcome = match cli.command {
        Command::Sniff(args) => sniff::run(args),
        Command::Inject(args) => inject::run(args),
        Command::Rules(args) => rules::run(args),
        Command::Clean(args) => clean::run(args),
        Command::Agent(args) => agent::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafka-shock: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
