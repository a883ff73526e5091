//! `kafka-shock rules`: what kafka-shock has installed in a network namespace: every chain of
//! ours, who owns it (a live or dead `inject`, or a node's agent), how long its kernel lease
//! lets it bite, and its rules. Then the leftovers of dead `inject` runs are swept, as at the
//! start of every run.

use std::sync::Arc;

use clap::Args;
use kafka_shock_agent::rules::CliOwner;
use kafka_shock_crds::parse_rule_id;

use crate::commands::output::say;
use crate::commands::target::TargetArgs;
use crate::edges::clock::since_epoch;
use crate::edges::enforcer::{Enforcer, is_cli_leftover, process_alive};
use crate::edges::netns::Netns;

#[derive(Args, Debug)]
pub struct RulesArgs {
    /// Where to look (default: this process's namespace).
    #[command(flatten)]
    target: TargetArgs,
}

/// Who an id in a chain's comments says owns it.
fn owner_of(id: &str) -> String {
    if let Some(owner) = CliOwner::parse(id) {
        let state = if process_alive(owner.pid, owner.start_ticks) {
            "alive"
        } else {
            "dead"
        };
        format!(
            "{} (kafka-shock inject, owner pid {} {state})",
            owner.name, owner.pid
        )
    } else if let Some((node, uid)) = parse_rule_id(id) {
        format!("agent node {node} (injection {uid})")
    } else {
        id.to_owned()
    }
}

/// `rules`: every chain of ours, its owner, its lease and its rules; then the leftovers of
/// dead CLI runs are swept.
pub fn run(args: RulesArgs) -> anyhow::Result<()> {
    let netns = match args.target.open()? {
        Some(netns) => netns,
        None => Netns::current()?,
    };
    let enforcer = Enforcer::new(Arc::new(netns))?;
    let found = enforcer.list()?;
    if found.is_empty() {
        say!("no kafka-shock rules");
    }
    let now = since_epoch().as_secs();
    for chain in found {
        let owners: Vec<String> = chain.owned.ids.iter().map(|id| owner_of(id)).collect();
        say!(
            "{:?} {} {} owner: {}; {}",
            chain.family,
            chain.table.name(),
            chain.owned.name,
            owners.join(", "),
            chain.owned.lease.describe(now)
        );
        for jump in &chain.owned.jumps {
            say!("  jump: {jump}");
        }
        for rule in &chain.rules {
            say!("  -A {} {}", chain.owned.name, rule.text);
        }
    }
    let swept = enforcer.remove(is_cli_leftover)?;
    if !swept.is_empty() {
        say!("swept leftovers: {}", swept.join(", "));
    }
    Ok(())
}
