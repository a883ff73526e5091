//! `kafka-shock`: the command line of kafka-shock's agent on one machine, without Kubernetes.
//! `sniff` decodes a broker's Kafka traffic, live from its network namespace or from a capture.
#![forbid(unsafe_code)]

mod capture;
mod clock;
mod engine;
mod firewall;
mod inject;
mod netns;
mod nfqueue;
mod node;
mod output;
mod rules_cmd;
mod session;
mod sniff;
mod topic_probe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Rules(rules_cmd::TargetArgs),
    /// Remove every rule kafka-shock installed, in one namespace or all of them.
    Clean(rules_cmd::CleanArgs),
    /// Run as the node agent: enforce the KafkaFaultInjections of this node (Kubernetes).
    Agent(node::AgentArgs),
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
        Command::Rules(args) => rules_cmd::list(args),
        Command::Clean(args) => rules_cmd::clean(args),
        Command::Agent(args) => node::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafka-shock: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
