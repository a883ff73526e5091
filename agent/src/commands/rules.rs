//! `kafka-shock rules`: what kafka-shock has installed in a network namespace: every chain of
//! ours, its owner and its rules. Leftovers of dead `inject` runs are swept first, as at the
//! start of every run.

use clap::Args;
use kafka_shock_agent::rules::CliOwner;

use crate::commands::output::say;
use crate::commands::target::TargetArgs;
use crate::edges::enforcer::{Enforcer, is_cli_leftover};

#[derive(Args, Debug)]
pub struct RulesArgs {
    /// Where to look (default: this process's namespace).
    #[command(flatten)]
    target: TargetArgs,
}

/// `rules`: every chain of ours, its owner and its rules. Leftovers of dead CLI runs are
/// swept first, as at the start of every run.
pub fn run(args: RulesArgs) -> anyhow::Result<()> {
    let enforcer = Enforcer::new(args.target.path()?.as_deref())?;
    let swept = enforcer.remove(is_cli_leftover)?;
    if !swept.is_empty() {
        say!("swept leftovers: {}", swept.join(", "));
    }
    let found = enforcer.list()?;
    if found.is_empty() {
        say!("no kafka-shock rules");
    }
    for chain in found {
        let owners: Vec<String> = chain
            .owned
            .ids
            .iter()
            .map(|id| match CliOwner::parse(id) {
                Some(owner) => format!("{} (kafka-shock inject, pid {})", owner.name, owner.pid),
                None => id.clone(),
            })
            .collect();
        say!(
            "{:?} {} owner: {}",
            chain.family,
            chain.owned.name,
            owners.join(", ")
        );
        for jump in &chain.owned.jumps {
            say!("  jump: {jump}");
        }
        for rule in &chain.rules {
            say!("  -A {} {}", chain.owned.name, rule.text);
        }
    }
    Ok(())
}
