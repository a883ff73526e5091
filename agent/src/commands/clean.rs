//! `kafka-shock clean`: the way out. It removes everything kafka-shock installed (every
//! KSHOCK chain and the jumps to it, whoever installed them), in one network namespace or in
//! every namespace of the machine.

use anyhow::bail;
use clap::Args;

use crate::commands::output::say;
use crate::commands::target::TargetArgs;
use crate::edges::enforcer::Enforcer;
use crate::edges::netns::every_namespace;

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
    let targets = if args.all {
        every_namespace()
    } else {
        match args.target.path()? {
            Some(path) => vec![path],
            None => bail!(
                "say where to clean: --netns NAME|PATH, --pid PID, --pod-uid UID, --pod-ip IP or --all"
            ),
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
