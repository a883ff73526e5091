//! One fault enforced in one network namespace, from its first rule to its last: what both
//! `kafka-shock inject` and the node agent drive. It installs the fault's chain, follows the
//! broker's traffic in its [`Mode`], keeps the chain as planned, and takes it out again.
//!
//! The session only says what happens through `log`; the CLI prints those lines, the agent
//! logs them. Whoever holds a session calls [`Session::step`] until it wants the fault gone,
//! then [`Session::stop`], which also runs when the session is dropped early. [`worker`] runs
//! a session on an OS thread of its own, for the node agent.
//!
//! The session owns the fault's plan and is the only one to change it: what the edges learn
//! (the queue the Inline enforcer bound, the topic ids the broker named) comes back to it as
//! values and is handed to the plan here.
//!
//! It holds its namespace by descriptor from start to stop, and renews the kernel lease on its
//! jumps (a Proxy fault's nat redirect among them) every third of the lease, so that if its
//! process dies the fault stops biting within the lease although nobody removes its chain.
//!
//! It drives the other edges (capture, enforcer, nfqueue, proxy, topic probe) and the
//! library's sniffer and plan; `inject` and the node agent hold sessions.

mod proxy_mode;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kafka_shock_agent::fault::FaultPlan;
use kafka_shock_agent::inline::{Draw, InlineCounters, Outcome};
use kafka_shock_agent::rules::{Family, Flow, Layers, OwnedChain, datestop};
use kafka_shock_agent::sniffer::event::Event;
use kafka_shock_agent::sniffer::{Notice, Sniffer, SnifferConfig};
use kafka_shock_crds::tls_message;

use crate::edges::capture::Next;
use crate::edges::capture::live::{LiveCapture, LiveOptions};
use crate::edges::clock::since_epoch;
use crate::edges::enforcer::{Enforcer, LeaseSupport};
use crate::edges::netns::Netns;
use crate::edges::nfqueue::InlineEnforcer;
use crate::edges::proxy::{ProxyEnforcer, ProxyStats};
use crate::edges::topic_probe;

/// How often learned topic ids are folded into the rules when traffic is quiet.
const RELEARN_EVERY: Duration = Duration::from_millis(200);
/// How often the namespace is compared with the fault's rules, so that rules removed or
/// changed by someone else come back.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);
/// Connections cut at most per fault; beyond, matches are reported but not cut.
const MAX_FLOWS: usize = 10_000;
/// How long one step waits for a packet before doing its periodic work.
const STEP_WAIT: Duration = Duration::from_millis(100);

/// Where a line of the session's story goes.
pub type Log = Box<dyn FnMut(&str) + Send>;

/// The shortest kernel lease: renewals every third of it must get through a busy node.
pub const MIN_LEASE: Duration = Duration::from_secs(3);

/// What a session enforces.
pub struct SessionSpec {
    /// The fault's name, for messages.
    pub name: String,
    pub plan: FaultPlan,
    /// The broker ports.
    pub ports: Vec<u16>,
    /// What a hit is called ("reset", "dropped", "delayed").
    pub verb: &'static str,
    /// How long the kernel keeps the fault's jumps without a renewal; `None`: no lease.
    pub lease: Option<Duration>,
}

/// The lease on the session's jumps: when it ends, and how it is kept going.
struct Lease {
    length: Duration,
    /// The end last given (Unix seconds).
    until: u64,
    renewed: Instant,
}

impl Lease {
    fn new(length: Duration) -> Lease {
        Lease {
            length,
            until: lease_end(length),
            renewed: Instant::now(),
        }
    }

    /// Gives a later end when a third of the lease has passed; says whether it did.
    fn renew_if_due(&mut self) -> bool {
        if self.renewed.elapsed() < self.length / 3 {
            return false;
        }
        self.until = lease_end(self.length);
        self.renewed = Instant::now();
        true
    }
}

/// The Unix second a lease of `length` taken now ends at (rounded up).
fn lease_end(length: Duration) -> u64 {
    let end = since_epoch() + length;
    end.as_secs() + u64::from(end.subsec_nanos() > 0)
}

/// What a session has seen and done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Requests decoded on the broker ports.
    pub requests_seen: u64,
    /// Requests the fault's match selected.
    pub requests_matched: u64,
    /// Matched requests by Kafka api name.
    pub matched_by_api: BTreeMap<String, u64>,
    /// Rules in the fault's chains (both families).
    pub rules_installed: usize,
    /// How long the first install took.
    pub install_time: Duration,
    /// Inline mode: what the Inline enforcer did (delayed, dropped, reset, failed open, ...).
    pub inline: Option<InlineCounters>,
    /// Proxy mode: what the proxy did (errored, throttled, ..., connections handed over).
    pub proxy: Option<ProxyStats>,
    /// Broker ports on which a client's stream began with a TLS record (Watch and Proxy
    /// modes): the requests there cannot be read.
    pub tls_ports: BTreeSet<u16>,
}

/// How a session follows the broker's traffic.
enum Mode {
    /// Signature and Connection: the kernel's rules act; a capture of the broker's traffic
    /// feeds the sniffer, whose requests are matched to report hits, learn the fault's group
    /// members and topic ids, and (Connection) name the connections to cut.
    Watch(Box<Watch>),
    /// Inline: every segment goes through the NFQUEUE the Inline enforcer decides; its hits
    /// and counters are read here.
    Inline(InlineEnforcer),
    /// Proxy: new connections to the broker ports are redirected to a transparent Kafka proxy
    /// in the namespace, which forwards or answers each request; its hits and counters are
    /// read here.
    Proxy(ProxyEnforcer),
}

/// Watch mode's state.
struct Watch {
    capture: LiveCapture,
    sniffer: Sniffer,
    /// The connections caught carrying a matching request, each cut by a rule of its own.
    flows: BTreeSet<Flow>,
    /// Connection mode's per-request probability draw.
    draw: Draw,
    last_relearn: Instant,
}

/// A fault with its rules in one namespace.
pub struct Session {
    enforcer: Enforcer,
    plan: FaultPlan,
    /// `None` where the kernel has no time match, or no lease was asked for.
    lease: Option<Lease>,
    /// `None` once stopped, or once the Inline enforcer died.
    mode: Option<Mode>,
    verb: &'static str,
    last_reconcile: Instant,
    stats: SessionStats,
    log: Log,
    removed: bool,
}

/// What removing a session's rules did.
#[derive(Debug)]
pub struct Removal {
    /// The chains taken out.
    pub chains: Vec<String>,
    pub took: Duration,
}

/// What one step found that the rules must follow.
#[derive(Debug, Default)]
struct Changes {
    /// The rules must be compiled again (a new connection to cut, a new group member, new
    /// topic ids).
    rules: bool,
    /// When the oldest request whose connection is newly cut was seen.
    oldest_cut: Option<Duration>,
}

impl Session {
    /// Starts enforcing `spec` in the namespace `netns`, sweeping the chains `is_leftover`
    /// condemns on the way. The capture opens before any rule is written, so a namespace that
    /// cannot be watched fails with nothing installed; an install that fails half-way is taken
    /// out again.
    pub fn start(
        netns: &Arc<Netns>,
        spec: SessionSpec,
        is_leftover: impl Fn(&OwnedChain) -> bool,
        mut log: Log,
    ) -> anyhow::Result<Session> {
        let SessionSpec {
            name,
            mut plan,
            ports,
            verb,
            lease,
        } = spec;
        let started = Instant::now();
        let enforcer = Enforcer::new(netns.clone())?;
        if plan.is_proxy() {
            proxy_mode::check_port_is_free(&enforcer, &plan)?;
        }
        let mode = start_mode(netns, &mut plan, &ports, &mut log)?;
        let lease = lease.and_then(|length| match enforcer.lease_support(plan.id()) {
            LeaseSupport::Available => Some(Lease::new(length)),
            LeaseSupport::Missing => None,
            LeaseSupport::MissingNow(why) => {
                log(&format!(
                    "inject: note: no kernel lease in this namespace (the iptables time match is refused: {why}); the rules go only when removed"
                ));
                None
            }
        });
        let compiled = plan
            .compile(&[])
            .lease_until(lease.as_ref().map(|l| l.until));
        let applied = match enforcer.install(&compiled, is_leftover) {
            Ok(applied) => applied,
            Err(error) => {
                return Err(match remove_fault(&enforcer, plan.id()) {
                    Ok(_) => anyhow::Error::new(error).context("installing the fault's rules"),
                    Err(removal) => anyhow::Error::new(error).context(format!(
                        "installing the fault's rules (and removing the partial install: {removal:#})"
                    )),
                });
            }
        };
        let install_time = started.elapsed();
        log(&format!(
            "inject: {name} in chain {} ({} backend, {:?} rules, {} changes, {} ms)",
            compiled.v4.name,
            format!("{:?}", enforcer.firewall().backend()).to_lowercase(),
            plan.layers(),
            applied.changed,
            install_time.as_millis()
        ));
        for chain in compiled.chains(Family::V4) {
            for rule in &chain.rules {
                let table = chain.table.name();
                log(&format!("  -t {table} -A {} {}", chain.name, rule.render()));
            }
        }
        for gap in &compiled.exactness.gaps {
            log(&format!("  note: {gap:?}"));
        }
        if let Some(lease) = &lease {
            log(&format!(
                "inject: kernel lease of {} s, renewed every {} s: should this process die, the fault stops biting by {} UTC",
                lease.length.as_secs(),
                (lease.length / 3).as_secs_f32(),
                datestop(lease.until)
            ));
        }
        Ok(Session {
            stats: SessionStats {
                rules_installed: compiled.rule_count(),
                install_time,
                ..SessionStats::default()
            },
            enforcer,
            plan,
            lease,
            mode: Some(mode),
            verb,
            last_reconcile: Instant::now(),
            log,
            removed: false,
        })
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Follows the traffic for a moment in the session's mode, then brings the rules up to
    /// date (new connections to cut, newly learned topic ids, rules someone else removed).
    pub fn step(&mut self) -> anyhow::Result<()> {
        let changes = match &mut self.mode {
            None => bail!("the session was stopped"),
            Some(Mode::Watch(watch)) => {
                watch.step(&mut self.plan, &mut self.stats, &mut self.log, self.verb)?
            }
            Some(Mode::Inline(inline)) => {
                std::thread::sleep(STEP_WAIT);
                if inline.is_finished() {
                    return Err(self.inline_died());
                }
                report_inline(inline, &mut self.stats, &mut self.log, self.verb);
                Changes::default()
            }
            Some(Mode::Proxy(proxy)) => {
                std::thread::sleep(STEP_WAIT);
                if proxy.is_finished() {
                    return Err(self.proxy_died());
                }
                proxy_mode::report(proxy, &mut self.stats, &mut self.log);
                Changes::default()
            }
        };
        let renew = self.lease.as_mut().is_some_and(Lease::renew_if_due);
        if changes.rules || renew || self.last_reconcile.elapsed() >= RECONCILE_EVERY {
            self.reconcile_rules(changes)?;
        }
        Ok(())
    }

    /// Why the Inline enforcer's thread ended, once it has: the session has no mode left.
    fn inline_died(&mut self) -> anyhow::Error {
        let error = match self.mode.take() {
            Some(Mode::Inline(inline)) => inline.stop().err().map(anyhow::Error::new),
            _ => None,
        };
        error
            .unwrap_or_else(|| anyhow::anyhow!("the inline engine stopped"))
            .context("the inline engine in the broker's namespace stopped")
    }

    /// Why the proxy's thread ended, once it has: the session has no mode left.
    fn proxy_died(&mut self) -> anyhow::Error {
        let error = match self.mode.take() {
            Some(Mode::Proxy(proxy)) => proxy.stop().err().map(anyhow::Error::new),
            _ => None,
        };
        error
            .unwrap_or_else(|| anyhow::anyhow!("the proxy stopped"))
            .context("the proxy in the broker's namespace stopped")
    }

    /// Makes the namespace hold the rules for what is known now, and says why they changed.
    fn reconcile_rules(&mut self, changes: Changes) -> anyhow::Result<()> {
        self.last_reconcile = Instant::now();
        let flows: Vec<Flow> = match &self.mode {
            Some(Mode::Watch(watch)) => watch.flows.iter().copied().collect(),
            _ => Vec::new(),
        };
        let took = Instant::now();
        let compiled = self
            .plan
            .compile(&flows)
            .lease_until(self.lease.as_ref().map(|lease| lease.until));
        let applied = self.enforcer.install(&compiled, |_| false)?.changed;
        self.stats.rules_installed = compiled.rule_count();
        if changes.rules {
            let since_request = changes
                .oldest_cut
                .map(|request_ts| {
                    format!(
                        ", {} us after the request",
                        since_epoch().saturating_sub(request_ts).as_micros()
                    )
                })
                .unwrap_or_default();
            (self.log)(&format!(
                "inject: rules updated in {} us ({} connection rules{since_request})",
                took.elapsed().as_micros(),
                flows.len()
            ));
        } else if applied > 0 {
            (self.log)(&format!(
                "inject: reconcile: restored the fault's rules ({applied} changes)"
            ));
        }
        Ok(())
    }

    /// Takes the fault's chains out of the namespace and checks that none is left.
    pub fn stop(&mut self) -> anyhow::Result<Removal> {
        self.removed = true;
        let mut mode = self.mode.take();
        // The Inline enforcer stops first, woken through its chain's wake rule; segments
        // arriving after it unbinds pass untouched (`--queue-bypass`) until the rules are gone.
        if let Some(Mode::Inline(inline)) = mode.take_if(|mode| matches!(mode, Mode::Inline(_))) {
            match inline.stop() {
                Ok(counters) => {
                    (self.log)(&inline_summary(&counters));
                    self.stats.inline = Some(counters);
                }
                Err(error) => (self.log)(&format!("inject: the inline engine failed: {error}")),
            }
        }
        // The redirect goes first: new connections reach the broker directly while the
        // proxy's connections deliver the responses they owe and close.
        let removal = remove_fault(&self.enforcer, self.plan.id());
        if let Some(Mode::Proxy(mut proxy)) = mode {
            let finished = proxy.finish();
            // The hits since the last step, and those of requests answered while finishing.
            proxy_mode::report(&proxy, &mut self.stats, &mut self.log);
            match finished {
                Ok(()) => {
                    let stats = proxy.stats();
                    (self.log)(&proxy_mode::summary(&stats));
                    self.stats.proxy = Some(stats);
                }
                Err(error) => (self.log)(&format!("inject: the proxy failed: {error}")),
            }
        }
        removal
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.removed
            && let Err(error) = self.stop()
        {
            (self.log)(&format!(
                "inject: removing the fault's rules failed: {error:#}"
            ));
        }
    }
}

impl Watch {
    fn new(capture: LiveCapture, ports: &[u16]) -> Watch {
        let sniffer = Sniffer::new(SnifferConfig {
            report_requests: true,
            ..SnifferConfig::with_broker_ports(ports.iter().copied())
        });
        Watch {
            capture,
            sniffer,
            flows: BTreeSet::new(),
            draw: Draw::new(since_epoch().as_nanos() as u64 ^ u64::from(std::process::id())),
            last_relearn: Instant::now(),
        }
    }

    /// Waits briefly for traffic, matches the requests it completes against the plan, and
    /// says what the rules must follow.
    fn step(
        &mut self,
        plan: &mut FaultPlan,
        stats: &mut SessionStats,
        log: &mut Log,
        verb: &str,
    ) -> anyhow::Result<Changes> {
        match self.capture.next(STEP_WAIT)? {
            Next::Packet(packet) => {
                drop(self.sniffer.on_packet(packet.link, &packet.data, packet.ts))
            }
            Next::Idle => drop(self.sniffer.tick(since_epoch())),
            Next::End => bail!("the capture in the broker's namespace stopped"),
        }
        for Notice::Tls { broker } in self.sniffer.take_notices() {
            if stats.tls_ports.insert(broker.port()) {
                log(&format!("inject: {}", tls_message(&[broker.port()])));
            }
        }
        let mut changes = Changes::default();
        for request in self.sniffer.take_requests() {
            stats.requests_seen += 1;
            if plan.matcher.observe(&request) {
                log(&format!(
                    "inject: {} joined the group; its requests are now hit in the kernel",
                    request.client_id.as_deref().unwrap_or("-")
                ));
                changes.rules = true;
            }
            if !plan.matcher.matches(&request) {
                continue;
            }
            stats.requests_matched += 1;
            *stats
                .matched_by_api
                .entry(request.api.to_string())
                .or_default() += 1;
            if self.on_match(plan, &request, log, verb) {
                changes.rules = true;
                let oldest = changes.oldest_cut.map_or(request.ts, |t| t.min(request.ts));
                changes.oldest_cut = Some(oldest);
            }
        }
        if self.last_relearn.elapsed() >= RELEARN_EVERY {
            self.last_relearn = Instant::now();
            let ids: Vec<[u8; 16]> = plan
                .topics()
                .iter()
                .flat_map(|topic| self.sniffer.topic_ids().ids_of(topic))
                .map(|id| *id.as_bytes())
                .collect();
            if plan.learn_topic_ids(ids) {
                log(&format!(
                    "inject: learned topic ids of {:?}; signature rules updated",
                    plan.topics()
                ));
                changes.rules = true;
            }
        }
        Ok(changes)
    }

    /// Reports a matching request; in Connection mode, draws its probability and records its
    /// connection for a rule. Returns whether the rules must change.
    fn on_match(&mut self, plan: &FaultPlan, request: &Event, log: &mut Log, verb: &str) -> bool {
        let outcome = if plan.layers() == Layers::Signature {
            "signature"
        } else if !self.draw.hit(plan.probability()) {
            "spared by probability"
        } else {
            let flow = Flow {
                client: request.client,
                broker: request.broker,
            };
            if self.flows.contains(&flow) {
                "connection already cut"
            } else if self.flows.len() >= MAX_FLOWS {
                "not cut: too many connection rules"
            } else {
                self.flows.insert(flow);
                log(&format!(
                    "match: {} → {verb} (connection rule)",
                    request.to_line()
                ));
                return true;
            }
        };
        log(&format!(
            "match: {} → {verb} ({outcome})",
            request.to_line()
        ));
        false
    }
}

/// Inline mode's report: the Inline enforcer decides on its own thread; here its hits are
/// told and its counters read.
fn report_inline(inline: &InlineEnforcer, stats: &mut SessionStats, log: &mut Log, verb: &str) {
    for hit in inline.take_hits() {
        *stats
            .matched_by_api
            .entry(hit.request.api.to_string())
            .or_default() += 1;
        let outcome = match hit.outcome {
            Outcome::Delayed(hold) => format!("{verb} (inline, {} ms)", hold.as_millis()),
            Outcome::Dropped | Outcome::Reset => format!("{verb} (inline)"),
            Outcome::Spared => format!("{verb} (spared by probability)"),
            Outcome::FailedOpen => "passed (failed open: hold budget full)".to_owned(),
        };
        log(&format!("match: {} → {outcome}", hit.request.to_line()));
    }
    let counters = inline.counters();
    let before = stats.inline.unwrap_or_default();
    if counters.failed_open > before.failed_open {
        log(&format!(
            "inject: inline: failed open {} more time(s) (hold budget full; traffic let through)",
            counters.failed_open - before.failed_open
        ));
    }
    stats.requests_seen = counters.requests_seen;
    stats.requests_matched = counters.requests_matched;
    stats.inline = Some(counters);
}

/// Removes every chain carrying the injection id `id` from the namespace `enforcer` works in,
/// then reads the namespace again to check that none is left.
pub fn remove_fault(enforcer: &Enforcer, id: &str) -> anyhow::Result<Removal> {
    let removing = Instant::now();
    let chains = enforcer
        .remove(|chain| chain.ids.iter().any(|own| own == id))
        .context("removing the fault's rules")?;
    let took = removing.elapsed();
    let left = enforcer
        .list()?
        .into_iter()
        .filter(|found| found.owned.ids.iter().any(|own| own == id))
        .count();
    if left > 0 {
        bail!("{left} chain(s) of this fault are still installed; run kafka-shock clean");
    }
    Ok(Removal { chains, took })
}

/// The closing line of an Inline session.
fn inline_summary(counters: &InlineCounters) -> String {
    format!(
        "inject: inline: {} requests seen, {} matched, {} delayed, {} dropped, {} reset, {} failed open ({} packets)",
        counters.requests_seen,
        counters.requests_matched,
        counters.delayed,
        counters.dropped,
        counters.reset,
        counters.failed_open,
        counters.packets
    )
}

/// What reads the fault's traffic, started before any rule is written: the capture (Watch), the
/// queue (Inline) or the proxy's listener (Proxy), which the plan learns its port or queue from;
/// the topic ids the broker names are learned in between.
fn start_mode(
    netns: &Arc<Netns>,
    plan: &mut FaultPlan,
    ports: &[u16],
    log: &mut Log,
) -> anyhow::Result<Mode> {
    // Inline mode reads its queue, Proxy mode its proxy, instead of a capture.
    let capture = if plan.is_inline() || plan.is_proxy() {
        None
    } else {
        Some(LiveCapture::start(LiveOptions {
            netns: Some(netns.clone()),
            iface: None,
            ports: ports.to_vec(),
        })?)
    };
    if let Some(ids) = probe_topic_ids(plan.topics(), netns, ports, log) {
        plan.learn_topic_ids(ids);
    }
    Ok(match capture {
        Some(capture) => Mode::Watch(Box::new(Watch::new(capture, ports))),
        // The proxy listens before any rule redirects a connection to it.
        None if plan.is_proxy() => {
            let proxy = ProxyEnforcer::start_for(plan, netns)?;
            plan.set_proxy_port(proxy.port());
            log(&proxy_mode::started(&proxy, plan));
            Mode::Proxy(proxy)
        }
        // The queue is bound before any rule sends segments to it.
        None => {
            let inline = InlineEnforcer::start_for(plan, netns)?;
            plan.set_queue(inline.queue());
            Mode::Inline(inline)
        }
    })
}

/// Asks the broker for the ids of the fault's `topics`, so that requests naming them by id
/// are hit from the first one; `None` when there is nothing to ask or no port answered (ids
/// are then learned by sniffing).
fn probe_topic_ids(
    topics: &[String],
    netns: &Arc<Netns>,
    ports: &[u16],
    log: &mut Log,
) -> Option<Vec<[u8; 16]>> {
    if topics.is_empty() {
        return None;
    }
    let mut last_error = None;
    for &port in ports {
        match topic_probe::topic_ids(netns, port, topics) {
            Ok(ids) => {
                log(&format!(
                    "inject: the broker named {} topic id(s) for {topics:?}",
                    ids.len()
                ));
                return Some(ids);
            }
            Err(error) => last_error = Some(error),
        }
    }
    if let Some(error) = last_error {
        log(&format!(
            "inject: note: topic ids will be learned by sniffing ({error})"
        ));
    }
    None
}
