//! `kafka-shock inject`: enforces one fault in one network namespace without Kubernetes,
//! reading the same KafkaFault YAML users `kubectl apply`, checked as the API server and the
//! operator check it (`kafka_shock_crds::read_fault`), and obeyed whole: `dryRun` prints the
//! plan and changes nothing, `paused` waits without rules until the file is no longer paused.
//! It installs the fault's chain, watches the broker's traffic to report what it hits (and, in
//! Connection mode, to cut the connections that carry matching requests), and always takes
//! its rules out again: at the end of the duration, on Ctrl-C or SIGTERM (whose handlers are
//! installed before anything changes), and after an error. A run killed with SIGKILL stops
//! biting when the kernel lease on its jumps runs out, and the next run, `rules` or `clean`
//! removes its chain.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use kafka_shock_agent::fault::FaultPlan;
use kafka_shock_agent::rules::{Actual, Family, Flow, Table};
use kafka_shock_agent::rules::{CliOwner, start_ticks_of_stat};
use kafka_shock_crds::manifest::MAX_MANIFEST_BYTES;
use kafka_shock_crds::{FaultFile, read_fault};

use crate::commands::output::say;
use crate::commands::target::TargetArgs;
use crate::commands::values::parse_lease;
use crate::edges::clock::since_epoch;
use crate::edges::enforcer::is_cli_leftover;
use crate::edges::netns::refuse_host_namespace;
use crate::edges::session::{Session, SessionSpec};

/// How often a paused file is read again.
const PAUSED_POLL: Duration = Duration::from_secs(1);
/// How often waits look at the signal flag.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
#[command(after_help = "\
The file is checked as `kubectl apply --validate=strict` and the operator check it:
unknown fields (a misspelt clientID, say) and invalid values are refused, naming the field.

The file is obeyed whole:
  spec.dryRun: true   print the rules it would install and change nothing, as --dry-run does
  spec.paused: true   install nothing and wait; the file is read again every second, and
                      the fault starts once it is no longer paused (Ctrl-C gives up)
  spec.duration       the fault ends by itself after that long (else at Ctrl-C or SIGTERM)

Every jump into the fault's chain carries a kernel lease (the iptables time match), renewed
every third of --lease: if this process dies (SIGKILL), the fault stops biting within the
lease, and the next inject, rules or clean removes its chain.")]
pub struct InjectArgs {
    /// The fault: a KafkaFault manifest (as for kubectl apply) or just its spec.
    #[arg(short = 'f', long = "file", value_name = "FAULT.yaml")]
    file: PathBuf,
    /// The broker's network namespace.
    #[command(flatten)]
    target: TargetArgs,
    /// Print the rules the fault compiles to, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// How long the kernel keeps the fault biting if this process dies without removing it
    /// (at least 3s; renewed every third of it).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_lease)]
    lease: Duration,
    /// Allow the host's own network namespace (pid 1's, or this process's) as the target,
    /// whatever flag names it: a fault there acts on the machine itself.
    #[arg(long)]
    allow_host_netns: bool,
}

/// Reads and checks the fault file (at most [`MAX_MANIFEST_BYTES`]), naming it on every error.
pub fn read_file(path: &Path) -> anyhow::Result<FaultFile> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| {
            file.take(MAX_MANIFEST_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .with_context(|| format!("cannot read {}", path.display()))?;
    read_fault(&text).with_context(|| format!("{} is not a fault to inject", path.display()))
}

/// The fault's name: its metadata.name, else the file's name.
fn name_of(fault: &FaultFile, path: &Path) -> String {
    fault.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "fault".into())
    })
}

/// This process, as the owner of the chain it installs.
fn this_owner(name: &str, duration: Option<Duration>) -> anyhow::Result<CliOwner> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    Ok(CliOwner {
        pid: std::process::id(),
        start_ticks: start_ticks_of_stat(&stat).context("parsing /proc/self/stat")?,
        expires_unix: duration.map_or(0, |duration| {
            since_epoch().as_secs() + duration.as_secs().max(1)
        }),
        name: name.to_owned(),
    })
}

/// The batches the fault would apply in an empty namespace, its jumps leased from now.
fn print_rules(plan: &FaultPlan, flows: &[Flow], lease: Duration) {
    let compiled = plan
        .compile(flows)
        .lease_until(Some((since_epoch() + lease).as_secs()));
    for family in [Family::V4, Family::V6] {
        let chains: Vec<_> = compiled.chains(family).into_iter().cloned().collect();
        let tool = if family == Family::V4 {
            "iptables"
        } else {
            "ip6tables"
        };
        for table in Table::ALL.into_iter().rev() {
            let empty = Actual {
                table,
                ..Actual::default()
            };
            let batch = kafka_shock_agent::rules::diff(&chains, &empty);
            if !batch.is_empty() {
                say!("# {tool}-restore --noflush");
                say!("{}", batch.render().trim_end());
            }
        }
    }
}

pub fn run(args: InjectArgs) -> anyhow::Result<()> {
    // Signals first: Ctrl-C and SIGTERM are ours before anything is changed, so one that comes
    // at any moment from here on still leads to the removal of the rules.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .context("installing signal handlers")?;
    }
    let fault = read_file(&args.file)?;
    if args.dry_run || fault.spec.dry_run {
        return dry_run(&args, &fault);
    }
    let Some(netns) = args.target.open()? else {
        bail!(
            "say where to inject: --netns NAME|PATH, --pid PID, --pod-uid UID or --pod-ip IP \
             (or --dry-run)"
        );
    };
    refuse_host_namespace(&netns, args.allow_host_netns)?;
    let Some(fault) = wait_while_paused(&args.file, fault, &interrupted)? else {
        return Ok(());
    };
    if fault.spec.dry_run {
        return dry_run(&args, &fault);
    }
    let name = name_of(&fault, &args.file);
    let duration = fault.spec.duration();
    let owner = this_owner(&name, duration)?;
    let plan = FaultPlan::new(&owner.id(), &fault.spec.terms)?;
    if interrupted.load(Ordering::Relaxed) {
        say!("inject: interrupted before any rule was installed");
        return Ok(());
    }
    let session = Session::start(
        &Arc::new(netns),
        SessionSpec {
            name,
            plan,
            ports: fault.spec.terms.ports.clone(),
            verb: fault.spec.terms.action.type_.word(),
            lease: Some(args.lease),
        },
        is_cli_leftover,
        Box::new(|line: &str| say!("{line}")),
    )?;
    enforce_until_done(session, duration, &interrupted)
}

/// `--dry-run`, or `dryRun: true` in the file: the rules, and nothing changed.
fn dry_run(args: &InjectArgs, fault: &FaultFile) -> anyhow::Result<()> {
    if !args.dry_run {
        say!(
            "# dryRun is true in {}: these are the rules it would install; nothing is changed",
            args.file.display()
        );
    }
    let owner = this_owner(&name_of(fault, &args.file), fault.spec.duration())?;
    print_rules(
        &FaultPlan::new(&owner.id(), &fault.spec.terms)?,
        &[],
        args.lease,
    );
    Ok(())
}

/// Waits, with no rule installed, while the file says `paused: true`, reading it again (and
/// checking it again) every second. Returns the fault as it reads once no longer paused, or
/// `None` when interrupted first.
fn wait_while_paused(
    path: &Path,
    mut fault: FaultFile,
    interrupted: &AtomicBool,
) -> anyhow::Result<Option<FaultFile>> {
    if fault.spec.paused {
        say!(
            "inject: paused (spec.paused is true in {}): no rules installed; waiting until the file is no longer paused (Ctrl-C gives up)",
            path.display()
        );
    }
    while fault.spec.paused {
        let until = Instant::now() + PAUSED_POLL;
        while Instant::now() < until {
            if interrupted.load(Ordering::Relaxed) {
                say!("inject: interrupted while paused; nothing was installed");
                return Ok(None);
            }
            std::thread::sleep(SIGNAL_POLL);
        }
        fault = read_file(path).context("read again while paused")?;
        if !fault.spec.paused {
            say!("inject: {} is no longer paused", path.display());
        }
    }
    Ok(Some(fault))
}

/// Runs the session until the fault's duration ends, Ctrl-C or SIGTERM, or an error, and always
/// removes its rules.
fn enforce_until_done(
    mut session: Session,
    duration: Option<Duration>,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    say!(
        "inject: active{}",
        duration
            .map(|d| format!(" for {}s", d.as_secs()))
            .unwrap_or_default()
    );
    let mut outcome = Ok(());
    let deadline = duration.map(|duration| started + duration);
    while outcome.is_ok()
        && !interrupted.load(Ordering::Relaxed)
        && deadline.is_none_or(|deadline| Instant::now() < deadline)
    {
        outcome = session.step();
    }
    match (outcome, session.stop()) {
        (Ok(()), Ok(removal)) => {
            say!(
                "inject: removed {} in {} ms; nothing of this fault is left",
                removal.chains.join(", "),
                removal.took.as_millis()
            );
            Ok(())
        }
        (Err(error), Ok(_)) => Err(error.context("the fault failed; its rules were removed")),
        (Ok(()), Err(error)) => Err(error),
        (Err(error), Err(removal)) => {
            Err(error.context(format!("and removing its rules failed too: {removal:#}")))
        }
    }
}
