//! `kafka-shock inject`: enforces one fault in one network namespace without Kubernetes,
//! reading the same KafkaFault YAML users `kubectl apply`. It installs the fault's chain,
//! watches the broker's traffic to report what it hits (and, in Connection mode, to cut the
//! connections that carry matching requests), and always takes its rules out again: at the
//! end of the duration, on Ctrl-C or SIGTERM, and after an error. A run killed with SIGKILL
//! leaves a chain whose owner is dead; the next run, `rules` or `clean` removes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use kafka_shock_agent::fault::{FaultPlan, PlanError};
use kafka_shock_agent::rules::{Actual, Family, Flow};
use kafka_shock_agent::rules::{CliOwner, start_ticks_of_stat};
use kafka_shock_crds::KafkaFaultSpec;

use crate::commands::output::say;
use crate::commands::target::TargetArgs;
use crate::edges::clock::since_epoch;
use crate::edges::enforcer::is_cli_leftover;
use crate::edges::session::Session;

#[derive(Args, Debug)]
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
}

/// A fault as read from its file: its name and spec.
pub struct FaultFile {
    pub name: String,
    pub spec: KafkaFaultSpec,
}

/// Reads a KafkaFault manifest, or a bare spec, naming the file and field on every error.
pub fn read_fault(path: &Path) -> anyhow::Result<FaultFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let document: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))?;
    let kind = document.get("kind").and_then(serde_yaml::Value::as_str);
    let (name, spec) = match kind {
        Some("KafkaFault") => {
            let name = document
                .get("metadata")
                .and_then(|metadata| metadata.get("name"))
                .and_then(serde_yaml::Value::as_str)
                .map(str::to_owned);
            let spec = document
                .get("spec")
                .cloned()
                .with_context(|| format!("{}: a KafkaFault needs a spec", path.display()))?;
            (name, spec)
        }
        Some(other) => bail!("{}: kind {other:?} is not KafkaFault", path.display()),
        None => (None, document),
    };
    let spec: KafkaFaultSpec = serde_yaml::from_value(spec)
        .with_context(|| format!("{}: invalid spec", path.display()))?;
    let name = name.unwrap_or_else(|| {
        path.file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "fault".into())
    });
    Ok(FaultFile { name, spec })
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

fn print_rules(plan: &FaultPlan, flows: &[Flow]) {
    let compiled = plan.compile(flows);
    for family in [Family::V4, Family::V6] {
        let batch = kafka_shock_agent::rules::diff(
            std::slice::from_ref(compiled.chain(family)),
            &Actual::default(),
        );
        let tool = if family == Family::V4 {
            "iptables"
        } else {
            "ip6tables"
        };
        say!("# {tool}-restore --noflush");
        say!("{}", batch.render().trim_end());
    }
}

pub fn run(args: InjectArgs) -> anyhow::Result<()> {
    let fault = read_fault(&args.file)?;
    let duration = fault.spec.duration();
    let owner = this_owner(&fault.name, duration)?;
    // The whole file is checked, as the API server and the operator would check it.
    fault.spec.validate().map_err(PlanError::Invalid)?;
    let plan = FaultPlan::new(&owner.id(), &fault.spec.terms)?;
    if args.dry_run {
        print_rules(&plan, &[]);
        return Ok(());
    }
    let Some(netns) = args.target.path()? else {
        bail!(
            "say where to inject: --netns NAME|PATH, --pid PID, --pod-uid UID or --pod-ip IP \
             (or --dry-run)"
        );
    };
    let session = Session::start(
        &fault.name,
        &netns,
        plan,
        &fault.spec.terms.ports,
        fault.spec.terms.action.type_.word(),
        is_cli_leftover,
        Box::new(|line: &str| say!("{line}")),
    )?;
    enforce_until_done(session, duration)
}

/// Runs the session until the fault's duration ends, Ctrl-C or SIGTERM, or an error, and always
/// removes its rules.
fn enforce_until_done(mut session: Session, duration: Option<Duration>) -> anyhow::Result<()> {
    let started = Instant::now();
    say!(
        "inject: active{}",
        duration
            .map(|d| format!(" for {}s", d.as_secs()))
            .unwrap_or_default()
    );
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut outcome = Ok(());
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(error) = signal_hook::flag::register(signal, interrupted.clone()) {
            outcome = Err(anyhow::Error::new(error).context("installing signal handlers"));
        }
    }
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
