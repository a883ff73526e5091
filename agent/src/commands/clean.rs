//! `kafka-shock clean`: the way out. It removes everything kafka-shock installed (every
//! KSHOCK chain and the jumps to it, whoever installed them), in one network namespace or in
//! every namespace of the machine. With `--all`, a namespace that vanished between the scan
//! and its turn (its last process exited) held nothing any more, and is not a failure.

use std::sync::Arc;

use anyhow::bail;
use clap::Args;

use crate::commands::output::say;
use crate::commands::target::TargetArgs;
use crate::edges::enforcer::Enforcer;
use crate::edges::netns::{Netns, every_namespace};

#[derive(Args, Debug)]
pub struct CleanArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Every network namespace of the machine: named ones, and those of every process.
    #[arg(long, conflicts_with_all = TargetArgs::IDS)]
    all: bool,
}

/// `clean`: removes every chain of ours.
pub fn run(args: CleanArgs) -> anyhow::Result<()> {
    if !args.all {
        let Some(netns) = args.target.open()? else {
            bail!(
                "say where to clean: --netns NAME|PATH, --pid PID, --pod-uid UID, --pod-ip IP or --all"
            );
        };
        let origin = netns.origin().display().to_string();
        let removed = Enforcer::new(Arc::new(netns))?.remove(|_| true)?;
        if !removed.is_empty() {
            say!("{origin}: removed {}", removed.join(", "));
        }
        say!("clean: no kafka-shock rules remain");
        return Ok(());
    }
    let mut failures = 0;
    for path in every_namespace() {
        let netns = match Netns::open(&path) {
            Ok(netns) => netns,
            // Gone since the scan: whatever it held went with it.
            Err(error) if error.vanished() => continue,
            Err(error) => {
                failures += 1;
                eprintln!("kafka-shock: {}: {error}", path.display());
                continue;
            }
        };
        match Enforcer::new(Arc::new(netns)).and_then(|enforcer| enforcer.remove(|_| true)) {
            Ok(removed) if removed.is_empty() => {}
            Ok(removed) => say!("{}: removed {}", path.display(), removed.join(", ")),
            Err(error) => {
                failures += 1;
                eprintln!("kafka-shock: {}: {error}", path.display());
            }
        }
    }
    if failures > 0 {
        bail!("{failures} namespace(s) could not be cleaned");
    }
    say!("clean: no kafka-shock rules remain");
    Ok(())
}
