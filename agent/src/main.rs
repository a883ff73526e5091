//! `kafka-shock`: the command line of kafka-shock's agent on one machine, without Kubernetes.
//! `sniff` decodes a broker's Kafka traffic, live from its network namespace or from a capture.
#![forbid(unsafe_code)]

mod capture;
mod clock;
mod engine;
mod firewall;
mod inject;
mod netns;
mod output;
mod rules_cmd;
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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAFKA_SHOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match Cli::parse().command {
        Command::Sniff(args) => sniff::run(args),
        Command::Inject(args) => inject::run(args),
        Command::Rules(args) => rules_cmd::list(args),
        Command::Clean(args) => rules_cmd::clean(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafka-shock: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
