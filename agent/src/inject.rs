//! `kafka-shock inject`: enforces one fault in one network namespace without Kubernetes,
//! reading the same KafkaFault YAML users `kubectl apply`. It installs the fault's chain,
//! watches the broker's traffic to report what it hits (and, in Connection mode, to cut the
//! connections that carry matching requests), and always takes its rules out again: at the
//! end of the duration, on Ctrl-C or SIGTERM, and after an error. A run killed with SIGKILL
//! leaves a chain whose owner is dead; the next run, `rules` or `clean` removes it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use kafka_shock_agent::event::Event;
use kafka_shock_agent::lease::{CliLease, start_ticks_of_stat};
use kafka_shock_agent::plan::FaultPlan;
use kafka_shock_agent::rules::{Actual, Family, Flow, Layers};
use kafka_shock_agent::sniffer::{Sniffer, SnifferConfig};
use kafka_shock_crds::{ActionType, KafkaFaultSpec};

use crate::capture::Next;
use crate::capture::live::{LiveCapture, LiveOptions};
use crate::clock::since_epoch;
use crate::engine::{Enforcer, is_cli_leftover};
use crate::netns::NetnsTarget;
use crate::output::say;
use crate::topic_probe;

/// How often learned topic ids are folded into the rules when traffic is quiet.
const RELEARN_EVERY: Duration = Duration::from_millis(200);
/// How often the namespace is compared with the fault's rules, so that rules removed or
/// changed by someone else come back.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);
/// Connections cut at most per fault; beyond, matches are reported but not cut.
const MAX_FLOWS: usize = 10_000;

#[derive(Args, Debug)]
pub struct InjectArgs {
    /// The fault: a KafkaFault manifest (as for kubectl apply) or just its spec.
    #[arg(short = 'f', long = "file", value_name = "FAULT.yaml")]
    file: PathBuf,
    /// The broker's network namespace: a name from `ip netns` or a path.
    #[arg(long, value_name = "NAME|PATH", group = "target")]
    netns: Option<String>,
    /// The network namespace of this process (e.g. the broker's JVM).
    #[arg(long, value_name = "PID", group = "target")]
    pid: Option<u32>,
    /// The network namespace of the broker pod with this UID (found in /proc).
    #[arg(long, value_name = "UID", group = "target")]
    pod_uid: Option<String>,
    /// The network namespace of the broker pod with this IP (found in /proc).
    #[arg(long, value_name = "IP", group = "target")]
    pod_ip: Option<IpAddr>,
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

/// This process's lease on the chain it installs.
fn own_lease(name: &str, duration: Option<Duration>) -> anyhow::Result<CliLease> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    Ok(CliLease {
        pid: std::process::id(),
        start_ticks: start_ticks_of_stat(&stat).context("parsing /proc/self/stat")?,
        expires_unix: duration.map_or(0, |duration| {
            since_epoch().as_secs() + duration.as_secs().max(1)
        }),
        name: name.to_owned(),
    })
}

/// A small xorshift generator: the per-request draw of `probability` needs no cryptography.
struct Draw(u64);

impl Draw {
    fn seeded() -> Draw {
        let nanos = since_epoch().subsec_nanos();
        // Never zero: xorshift would stay at zero forever.
        Draw((u64::from(nanos) ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    /// True with `percent`% probability.
    fn hit(&mut self, percent: u8) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 100 < u64::from(percent)
    }
}

fn print_rules(plan: &FaultPlan, flows: &[Flow]) {
    let compiled = plan.compile(flows);
    for family in [Family::V4, Family::V6] {
        let batch = kafka_shock_agent::rules::plan(
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
    let lease = own_lease(&fault.name, duration)?;
    let mut plan = FaultPlan::new(&lease.id(), &fault.spec)?;
    if args.dry_run {
        print_rules(&plan, &[]);
        return Ok(());
    }
    let target = NetnsTarget::from_args(
        args.netns.as_deref(),
        args.pid,
        args.pod_uid.as_deref(),
        args.pod_ip,
    );
    let Some(target) = target else {
        bail!(
            "say where to inject: --netns NAME|PATH, --pid PID, --pod-uid UID or --pod-ip IP \
             (or --dry-run)"
        );
    };
    let netns = target.path()?;
    let enforcer = Enforcer::new(Some(&netns))?;
    // The capture starts first, so a namespace we cannot sniff fails before any rule exists.
    let capture = LiveCapture::start(LiveOptions {
        netns: Some(netns.clone()),
        iface: None,
        ports: fault.spec.ports.clone(),
    })?;
    let outcome = enforce(&enforcer, &netns, &mut plan, &fault, duration, &capture);
    drop(capture);
    let removing = Instant::now();
    let removed = enforcer.remove(|chain| chain.ids.iter().any(|id| id == plan.id()));
    let removal_ms = removing.elapsed().as_millis();
    match (outcome, removed) {
        (Ok(()), Ok(chains)) => {
            let left = enforcer
                .list()?
                .into_iter()
                .filter(|found| found.owned.ids.iter().any(|id| id == plan.id()))
                .count();
            if left > 0 {
                bail!("{left} chain(s) of this fault are still installed; run kafka-shock clean");
            }
            say!(
                "inject: removed {} in {removal_ms} ms; nothing of this fault is left",
                chains.join(", ")
            );
            Ok(())
        }
        (Err(error), Ok(_)) => Err(error.context("the fault failed; its rules were removed")),
        (Ok(()), Err(error)) => {
            Err(anyhow::Error::new(error).context("removing the fault's rules"))
        }
        (Err(error), Err(removal)) => {
            Err(error.context(format!("and removing its rules failed too: {removal}")))
        }
    }
}

fn action_word(spec: &KafkaFaultSpec) -> &'static str {
    match spec.action.type_ {
        ActionType::Reject => "reset",
        ActionType::Drop => "dropped",
        ActionType::Delay => "delayed",
    }
}

/// Asks the broker for the ids of the fault's topics, so that requests naming them by id are
/// hit from the first one; without an answer, ids are learned by sniffing.
fn learn_topic_ids_from_broker(plan: &mut FaultPlan, netns: &Path, ports: &[u16]) {
    if plan.topics().is_empty() {
        return;
    }
    let topics = plan.topics().to_vec();
    let mut last_error = None;
    for &port in ports {
        match topic_probe::topic_ids(netns, port, &topics) {
            Ok(ids) => {
                say!(
                    "inject: the broker named {} topic id(s) for {topics:?}",
                    ids.len()
                );
                plan.learn_topic_ids(ids);
                return;
            }
            Err(error) => last_error = Some(error),
        }
    }
    if let Some(error) = last_error {
        say!("inject: note: topic ids will be learned by sniffing ({error})");
    }
}

fn enforce(
    enforcer: &Enforcer,
    netns: &Path,
    plan: &mut FaultPlan,
    fault: &FaultFile,
    duration: Option<Duration>,
    capture: &LiveCapture,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut flows: BTreeSet<Flow> = BTreeSet::new();
    learn_topic_ids_from_broker(plan, netns, &fault.spec.ports);
    let compiled = plan.compile(&[]);
    let applied = enforcer.install(&compiled, is_cli_leftover)?;
    say!(
        "inject: {} in chain {} ({} backend, {:?} rules, {applied} changes, {} ms)",
        fault.name,
        compiled.v4.name,
        format!("{:?}", enforcer.firewall().backend()).to_lowercase(),
        plan.layers(),
        started.elapsed().as_millis()
    );
    for rule in &compiled.v4.rules {
        say!("  -A {} {}", compiled.v4.name, rule.render());
    }
    for gap in &compiled.exactness.gaps {
        say!("  note: {gap:?}");
    }
    say!(
        "inject: active{}",
        duration
            .map(|d| format!(" for {}s", d.as_secs()))
            .unwrap_or_default()
    );

    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .context("installing signal handlers")?;
    }
    let deadline = duration.map(|duration| started + duration);
    let mut sniffer = Sniffer::new(SnifferConfig {
        report_requests: true,
        ..SnifferConfig::with_broker_ports(fault.spec.ports.iter().copied())
    });
    let mut draw = Draw::seeded();
    let mut last_relearn = Instant::now();
    let mut last_reconcile = Instant::now();
    let verb = action_word(&fault.spec);
    while !interrupted.load(Ordering::Relaxed)
        && deadline.is_none_or(|deadline| Instant::now() < deadline)
    {
        match capture.next(Duration::from_millis(100))? {
            Next::Packet(packet) => drop(sniffer.on_packet(packet.link, &packet.data, packet.ts)),
            Next::Idle => drop(sniffer.tick(since_epoch())),
            Next::End => bail!("the capture in the broker's namespace stopped"),
        }
        let mut changed = false;
        let mut oldest_cut: Option<Duration> = None;
        for request in sniffer.take_requests() {
            if plan.matcher.observe(&request) {
                say!(
                    "inject: {} joined the group; its requests are now hit in the kernel",
                    request.client_id.as_deref().unwrap_or("-")
                );
                changed = true;
            }
            if !plan.matcher.matches(&request) {
                continue;
            }
            if on_match(plan, &request, &mut flows, &mut draw, verb) {
                changed = true;
                oldest_cut = Some(oldest_cut.map_or(request.ts, |oldest| oldest.min(request.ts)));
            }
        }
        if last_relearn.elapsed() >= RELEARN_EVERY {
            last_relearn = Instant::now();
            let ids: Vec<[u8; 16]> = plan
                .topics()
                .iter()
                .flat_map(|topic| sniffer.topic_ids().ids_of(topic))
                .map(|id| *id.as_bytes())
                .collect();
            if plan.learn_topic_ids(ids) {
                say!(
                    "inject: learned topic ids of {:?}; signature rules updated",
                    plan.topics()
                );
                changed = true;
            }
        }
        if changed || last_reconcile.elapsed() >= RECONCILE_EVERY {
            last_reconcile = Instant::now();
            let flows: Vec<Flow> = flows.iter().copied().collect();
            let took = Instant::now();
            let applied = enforcer.install(&plan.compile(&flows), |_| false)?;
            if changed {
                let since_request = oldest_cut
                    .map(|request_ts| {
                        format!(
                            ", {} us after the request",
                            since_epoch().saturating_sub(request_ts).as_micros()
                        )
                    })
                    .unwrap_or_default();
                say!(
                    "inject: rules updated in {} us ({} connection rules{since_request})",
                    took.elapsed().as_micros(),
                    flows.len()
                );
            } else if applied > 0 {
                say!("inject: reconcile: restored the fault's rules ({applied} changes)");
            }
        }
    }
    Ok(())
}

/// Reports a matching request; in Connection mode, draws its probability and records its
/// connection for a rule. Returns whether the rules must change.
fn on_match(
    plan: &FaultPlan,
    request: &Event,
    flows: &mut BTreeSet<Flow>,
    draw: &mut Draw,
    verb: &str,
) -> bool {
    let layers = plan.layers();
    let outcome = if layers == Layers::Signature {
        "signature"
    } else if !draw.hit(plan.probability()) {
        "spared by probability"
    } else {
        let flow = Flow {
            client: request.client,
            broker: request.broker,
        };
        if flows.contains(&flow) {
            "connection already cut"
        } else if flows.len() >= MAX_FLOWS {
            "not cut: too many connection rules"
        } else {
            flows.insert(flow);
            say!("match: {} → {verb} (connection rule)", request.to_line());
            return true;
        }
    };
    say!("match: {} → {verb} ({outcome})", request.to_line());
    false
}
