//! `kafka-shock rules` and `kafka-shock clean`: what kafka-shock has installed in a namespace,
//! and the way out that removes all of it (every KSHOCK chain and the jumps to it, whoever
//! installed them), in one namespace or in every namespace of the machine.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use kafka_shock_agent::lease::CliLease;

use crate::engine::{Enforcer, is_cli_leftover};
use crate::netns::NetnsTarget;
use crate::output::say;

#[derive(Args, Debug)]
pub struct TargetArgs {
    /// A network namespace: a name from `ip netns` or a path.
    #[arg(long, value_name = "NAME|PATH", group = "target")]
    netns: Option<String>,
    /// The network namespace of this process.
    #[arg(long, value_name = "PID", group = "target")]
    pid: Option<u32>,
}

#[derive(Args, Debug)]
pub struct CleanArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Every network namespace of the machine: named ones, and those of every process.
    #[arg(long, conflicts_with_all = ["netns", "pid"])]
    all: bool,
}

impl TargetArgs {
    fn path(&self) -> anyhow::Result<Option<PathBuf>> {
        Ok(
            match NetnsTarget::from_args(self.netns.as_deref(), self.pid, None, None) {
                Some(target) => Some(target.path()?),
                None => None,
            },
        )
    }
}

/// `rules`: every chain of ours, its owner and its rules. Leftovers of dead CLI runs are
/// swept first, as at the start of every run.
pub fn list(args: TargetArgs) -> anyhow::Result<()> {
    let enforcer = Enforcer::new(args.path()?.as_deref())?;
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
            .map(|id| match CliLease::parse(id) {
                Some(lease) => format!("{} (kafka-shock inject, pid {})", lease.name, lease.pid),
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

/// Every network namespace file of the machine, one per namespace (deduplicated by inode):
/// this process's, the named ones, and each process's.
fn all_namespaces() -> Vec<PathBuf> {
    let mut by_inode: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut add = |path: PathBuf| {
        if let Ok(metadata) = std::fs::metadata(&path) {
            by_inode.entry(metadata.ino()).or_insert(path);
        }
    };
    add(PathBuf::from("/proc/self/ns/net"));
    for dir in ["/run/netns", "/proc"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if dir == "/proc" {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                {
                    add(path.join("ns/net"));
                }
            } else {
                add(path);
            }
        }
    }
    by_inode.into_values().collect()
}

/// `clean`: removes every chain of ours.
pub fn clean(args: CleanArgs) -> anyhow::Result<()> {
    let targets = if args.all {
        all_namespaces()
    } else {
        match args.target.path()? {
            Some(path) => vec![path],
            None => bail!("say where to clean: --netns NAME|PATH, --pid PID or --all"),
        }
    };
    let mut failures = 0;
    for target in targets {
        match Enforcer::new(Some(&target)).and_then(|enforcer| enforcer.remove(|_| true)) {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => say!("{}: removed {}", target.display(), removed.join(", ")),
            Err(error) => {
                failures += 1;
                eprintln!("kafka-shock: {}: {error}", target.display());
            }
        }
    }
    if failures > 0 {
        bail!("{failures} namespace(s) could not be cleaned");
    }
    say!("clean: no kafka-shock rules remain");
    Ok(())
}
