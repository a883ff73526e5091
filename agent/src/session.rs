//! One fault enforced in one network namespace, from its first rule to its last: the engine
//! both `kafka-shock inject` and the node agent drive. It installs the fault's chain, watches
//! the broker's traffic to count what it hits (and, in Connection mode, to cut the connections
//! that carry matching requests), keeps the chain as planned, and takes it out again.
//!
//! The session only says what happens through `log`; the CLI prints those lines, the agent
//! logs them. Whoever holds a session calls [`Session::step`] until it wants the fault gone,
//! then [`Session::stop`], which also runs when the session is dropped early.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kafka_shock_agent::event::Event;
use kafka_shock_agent::inline::{Draw, InlineCounters, Outcome};
use kafka_shock_agent::plan::FaultPlan;
use kafka_shock_agent::rules::{Compiled, Flow, Layers, OwnedChain};
use kafka_shock_agent::sniffer::{Sniffer, SnifferConfig};

use crate::capture::Next;
use crate::capture::live::{LiveCapture, LiveOptions};
use crate::clock::since_epoch;
use crate::engine::Enforcer;
use crate::nfqueue::InlineEnforcer;
use crate::topic_probe;

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
    /// Inline mode: what the engine did (delayed, dropped, reset, failed open, ...).
    pub inline: Option<InlineCounters>,
}

/// A fault with its rules in one namespace.
pub struct Session {
    enforcer: Enforcer,
    plan: FaultPlan,
    capture: Option<LiveCapture>,
    /// Inline mode's engine, which decides every packet in place of the capture.
    inline: Option<InlineEnforcer>,
    sniffer: Sniffer,
    flows: BTreeSet<Flow>,
    draw: Draw,
    verb: &'static str,
    last_relearn: Instant,
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

impl Session {
    /// Starts enforcing `plan` (the fault called `name`) in the namespace at `netns`, on the broker `ports`, sweeping the
    /// chains `is_leftover` condemns on the way. The capture opens before any rule is written,
    /// so a namespace that cannot be watched fails with nothing installed; an install that
    /// fails half-way is taken out again.
    pub fn start(
        name: &str,
        netns: &Path,
        mut plan: FaultPlan,
        ports: &[u16],
        verb: &'static str,
        is_leftover: impl Fn(&OwnedChain) -> bool,
        mut log: Log,
    ) -> anyhow::Result<Session> {
        let started = Instant::now();
        let enforcer = Enforcer::new(Some(netns))?;
        // Inline mode reads its queue instead of a capture.
        let capture = if plan.is_inline() {
            None
        } else {
            Some(LiveCapture::start(LiveOptions {
                netns: Some(netns.to_path_buf()),
                iface: None,
                ports: ports.to_vec(),
            })?)
        };
        learn_topic_ids_from_broker(&mut plan, netns, ports, &mut log);
        // The queue is bound before any rule sends segments to it.
        let inline = if plan.is_inline() {
            Some(InlineEnforcer::start_for(&mut plan, netns)?)
        } else {
            None
        };
        let compiled = plan.compile(&[]);
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
            "inject: {name} in chain {} ({} backend, {:?} rules, {applied} changes, {} ms)",
            compiled.v4.name,
            format!("{:?}", enforcer.firewall().backend()).to_lowercase(),
            plan.layers(),
            install_time.as_millis()
        ));
        for rule in &compiled.v4.rules {
            log(&format!("  -A {} {}", compiled.v4.name, rule.render()));
        }
        for gap in &compiled.exactness.gaps {
            log(&format!("  note: {gap:?}"));
        }
        let sniffer = Sniffer::new(SnifferConfig {
            report_requests: true,
            ..SnifferConfig::with_broker_ports(ports.iter().copied())
        });
        Ok(Session {
            stats: SessionStats {
                rules_installed: rule_count(&compiled),
                install_time,
                ..SessionStats::default()
            },
            enforcer,
            plan,
            capture,
            inline,
            sniffer,
            flows: BTreeSet::new(),
            draw: Draw::new(since_epoch().as_nanos() as u64 ^ u64::from(std::process::id())),
            verb,
            last_relearn: Instant::now(),
            last_reconcile: Instant::now(),
            log,
            removed: false,
        })
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Waits briefly for traffic, matches what arrives, and brings the rules up to date
    /// (new connections to cut, newly learned topic ids, rules someone else removed).
    pub fn step(&mut self) -> anyhow::Result<()> {
        if self.inline.is_some() {
            return self.step_inline();
        }
        let Some(capture) = &self.capture else {
            bail!("the session was stopped");
        };
        match capture.next(STEP_WAIT)? {
            Next::Packet(packet) => {
                drop(self.sniffer.on_packet(packet.link, &packet.data, packet.ts))
            }
            Next::Idle => drop(self.sniffer.tick(since_epoch())),
            Next::End => bail!("the capture in the broker's namespace stopped"),
        }
        let mut changed = false;
        let mut oldest_cut: Option<Duration> = None;
        for request in self.sniffer.take_requests() {
            self.stats.requests_seen += 1;
            if self.plan.matcher.observe(&request) {
                (self.log)(&format!(
                    "inject: {} joined the group; its requests are now hit in the kernel",
                    request.client_id.as_deref().unwrap_or("-")
                ));
                changed = true;
            }
            if !self.plan.matcher.matches(&request) {
                continue;
            }
            self.stats.requests_matched += 1;
            *self
                .stats
                .matched_by_api
                .entry(request.api.clone())
                .or_default() += 1;
            if self.on_match(&request) {
                changed = true;
                oldest_cut = Some(oldest_cut.map_or(request.ts, |oldest| oldest.min(request.ts)));
            }
        }
        if self.last_relearn.elapsed() >= RELEARN_EVERY {
            self.last_relearn = Instant::now();
            let ids: Vec<[u8; 16]> = self
                .plan
                .topics()
                .iter()
                .flat_map(|topic| self.sniffer.topic_ids().ids_of(topic))
                .map(|id| *id.as_bytes())
                .collect();
            if self.plan.learn_topic_ids(ids) {
                (self.log)(&format!(
                    "inject: learned topic ids of {:?}; signature rules updated",
                    self.plan.topics()
                ));
                changed = true;
            }
        }
        if changed || self.last_reconcile.elapsed() >= RECONCILE_EVERY {
            self.reconcile_rules(changed, oldest_cut)?;
        }
        Ok(())
    }

    fn reconcile_rules(
        &mut self,
        changed: bool,
        oldest_cut: Option<Duration>,
    ) -> anyhow::Result<()> {
        self.last_reconcile = Instant::now();
        let flows: Vec<Flow> = self.flows.iter().copied().collect();
        let took = Instant::now();
        let compiled = self.plan.compile(&flows);
        let applied = self.enforcer.install(&compiled, |_| false)?;
        self.stats.rules_installed = rule_count(&compiled);
        if changed {
            let since_request = oldest_cut
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

    /// Reports a matching request; in Connection mode, draws its probability and records its
    /// connection for a rule. Returns whether the rules must change.
    fn on_match(&mut self, request: &Event) -> bool {
        let verb = self.verb;
        let outcome = if self.plan.layers() == Layers::Signature {
            "signature"
        } else if !self.draw.hit(self.plan.probability()) {
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
                (self.log)(&format!(
                    "match: {} → {verb} (connection rule)",
                    request.to_line()
                ));
                return true;
            }
        };
        (self.log)(&format!(
            "match: {} → {verb} ({outcome})",
            request.to_line()
        ));
        false
    }

    /// Takes the fault's chains out of the namespace and checks that none is left.
    pub fn stop(&mut self) -> anyhow::Result<Removal> {
        self.capture = None;
        self.removed = true;
        // The engine stops first, woken through its chain's wake rule; segments arriving after
        // it unbinds pass untouched (`--queue-bypass`) until the rules are gone.
        if let Some(inline) = self.inline.take() {
            match inline.stop() {
                Ok(counters) => {
                    (self.log)(&inline_summary(&counters));
                    self.stats.inline = Some(counters);
                }
                Err(error) => (self.log)(&format!("inject: the inline engine failed: {error}")),
            }
        }
        remove_fault(&self.enforcer, self.plan.id())
    }

    /// Inline mode's step: the engine decides on its own thread; here its hits are reported,
    /// its counters read, and the rules kept as planned.
    fn step_inline(&mut self) -> anyhow::Result<()> {
        std::thread::sleep(STEP_WAIT);
        let Some(inline) = &self.inline else {
            bail!("the session was stopped");
        };
        if inline.is_finished() {
            let error = match self.inline.take().map(InlineEnforcer::stop) {
                Some(Err(error)) => anyhow::Error::new(error),
                _ => anyhow::anyhow!("the inline engine stopped"),
            };
            return Err(error.context("the inline engine in the broker's namespace stopped"));
        }
        let verb = self.verb;
        for hit in inline.take_hits() {
            *self
                .stats
                .matched_by_api
                .entry(hit.request.api.clone())
                .or_default() += 1;
            let outcome = match hit.outcome {
                Outcome::Delayed(hold) => format!("{verb} (inline, {} ms)", hold.as_millis()),
                Outcome::Dropped | Outcome::Reset => format!("{verb} (inline)"),
                Outcome::Spared => format!("{verb} (spared by probability)"),
                Outcome::FailedOpen => "passed (failed open: hold budget full)".to_owned(),
            };
            (self.log)(&format!("match: {} → {outcome}", hit.request.to_line()));
        }
        let counters = inline.counters();
        let before = self.stats.inline.unwrap_or_default();
        if counters.failed_open > before.failed_open {
            (self.log)(&format!(
                "inject: inline: failed open {} more time(s) (hold budget full; traffic let through)",
                counters.failed_open - before.failed_open
            ));
        }
        self.stats.requests_seen = counters.requests_seen;
        self.stats.requests_matched = counters.requests_matched;
        self.stats.inline = Some(counters);
        if self.last_reconcile.elapsed() >= RECONCILE_EVERY {
            self.reconcile_rules(false, None)?;
        }
        Ok(())
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

fn rule_count(compiled: &Compiled) -> usize {
    compiled.v4.rules.len() + compiled.v6.rules.len()
}

/// Asks the broker for the ids of the fault's topics, so that requests naming them by id are
/// hit from the first one; without an answer, ids are learned by sniffing.
fn learn_topic_ids_from_broker(plan: &mut FaultPlan, netns: &Path, ports: &[u16], log: &mut Log) {
    if plan.topics().is_empty() {
        return;
    }
    let topics = plan.topics().to_vec();
    let mut last_error = None;
    for &port in ports {
        match topic_probe::topic_ids(netns, port, &topics) {
            Ok(ids) => {
                log(&format!(
                    "inject: the broker named {} topic id(s) for {topics:?}",
                    ids.len()
                ));
                plan.learn_topic_ids(ids);
                return;
            }
            Err(error) => last_error = Some(error),
        }
    }
    if let Some(error) = last_error {
        log(&format!(
            "inject: note: topic ids will be learned by sniffing ({error})"
        ));
    }
}
