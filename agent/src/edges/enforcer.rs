//! The enforcement edge in one network namespace: makes the kernel hold a fault's chain
//! (reading `iptables-save`, applying only the difference in one `iptables-restore` batch),
//! removes it, and sweeps leftovers. The decisions are the pure core's (`rules::diff`,
//! `rules::sweep`); this module only reads and applies.

use std::collections::HashSet;
use std::path::Path;

use kafka_shock_agent::rules::{
    Actual, Batch, CliOwner, Compiled, Family, OwnedChain, SavedRule, Table, diff, owned_chains,
    parse_save, start_ticks_of_stat, sweep,
};

use crate::edges::clock::since_epoch;
use crate::edges::firewall::{Firewall, FirewallError};

/// Both families; a namespace without IPv6 support only has IPv4 rules.
const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// One of our chains as found in the namespace.
#[derive(Debug, Clone)]
pub struct FoundChain {
    pub family: Family,
    pub table: Table,
    pub owned: OwnedChain,
    pub rules: Vec<SavedRule>,
}

/// Our rules in one namespace.
pub struct Enforcer {
    firewall: Firewall,
    families: Vec<Family>,
}

/// Only the chains named in `names`, and the jumps to them: what a batch may touch, so that a
/// fault never disturbs another live fault's chain.
fn restrict(actual: &Actual, names: &HashSet<String>) -> Actual {
    Actual {
        table: actual.table,
        chains: actual
            .chains
            .iter()
            .filter(|(name, _)| names.contains(*name))
            .map(|(name, rules)| (name.clone(), rules.clone()))
            .collect(),
        jumps: actual
            .jumps
            .iter()
            .filter(|jump| {
                jump.rule
                    .target
                    .as_ref()
                    .is_some_and(|target| names.contains(target))
            })
            .cloned()
            .collect(),
    }
}

/// Whether the process `pid` started at `start_ticks` still runs.
fn process_alive(pid: u32, start_ticks: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| start_ticks_of_stat(&stat))
        == Some(start_ticks)
}

/// A chain the CLI installed whose owner is gone or whose fault expired.
pub fn is_cli_leftover(chain: &OwnedChain) -> bool {
    chain
        .ids
        .iter()
        .filter_map(|id| CliOwner::parse(id))
        .any(|owner| owner.is_stale(since_epoch().as_secs(), process_alive))
}

impl Enforcer {
    /// Our rules in the namespace at `netns` (`None`: this process's namespace).
    pub fn new(netns: Option<&Path>) -> Result<Enforcer, FirewallError> {
        let firewall = Firewall::detect(netns)?;
        let families = FAMILIES
            .into_iter()
            .filter(|family| *family == Family::V4 || firewall.save(*family).is_ok())
            .collect();
        Ok(Enforcer { firewall, families })
    }

    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    /// Every table of ours in `family`, as `iptables-save` printed them (one read).
    fn actual(&self, family: Family) -> Result<[Actual; 2], FirewallError> {
        let text = self.firewall.save(family)?;
        Ok(Table::ALL.map(|table| parse_save(&text, table)))
    }

    fn apply(&self, family: Family, batch: &Batch) -> Result<usize, FirewallError> {
        if batch.is_empty() {
            return Ok(0);
        }
        self.firewall.restore(family, &batch.render())?;
        Ok(batch.ops.len())
    }

    /// Every chain of ours in the namespace, per family and table.
    pub fn list(&self) -> Result<Vec<FoundChain>, FirewallError> {
        let mut found = Vec::new();
        for &family in &self.families {
            for actual in self.actual(family)? {
                for owned in owned_chains(&actual) {
                    let rules = actual.chains.get(&owned.name).cloned().unwrap_or_default();
                    found.push(FoundChain {
                        family,
                        table: actual.table,
                        owned,
                        rules,
                    });
                }
            }
        }
        Ok(found)
    }

    /// Makes the namespace hold `compiled`'s chains, sweeping chains `is_leftover` condemns on
    /// the way and leaving every other chain alone. Tables are changed in the reverse of
    /// [`Table::ALL`], so what diverts traffic (a redirect) is in place before what resets
    /// the connections it has not diverted. Returns how many operations it applied (0 when
    /// already in sync).
    pub fn install(
        &self,
        compiled: &Compiled,
        is_leftover: impl Fn(&OwnedChain) -> bool,
    ) -> Result<usize, FirewallError> {
        let mut applied = 0;
        for &family in &self.families {
            let desired: Vec<_> = compiled.chains(family).into_iter().cloned().collect();
            for actual in self.actual(family)?.iter().rev() {
                let mut touch: HashSet<String> = owned_chains(actual)
                    .into_iter()
                    .filter(|owned| is_leftover(owned))
                    .map(|owned| owned.name)
                    .collect();
                touch.extend(desired.iter().map(|chain| chain.name.clone()));
                applied += self.apply(family, &diff(&desired, &restrict(actual, &touch)))?;
            }
        }
        Ok(applied)
    }

    /// Removes the chains `remove` selects (and the jumps to them), table by table in the
    /// order of [`Table::ALL`]; returns their names.
    pub fn remove(
        &self,
        remove: impl Fn(&OwnedChain) -> bool,
    ) -> Result<Vec<String>, FirewallError> {
        let mut removed = Vec::new();
        for &family in &self.families {
            for actual in self.actual(family)? {
                let doomed: HashSet<String> = owned_chains(&actual)
                    .into_iter()
                    .filter(|owned| remove(owned))
                    .map(|owned| owned.name)
                    .collect();
                self.apply(family, &sweep(&restrict(&actual, &doomed), &HashSet::new()))?;
                removed.extend(doomed);
            }
        }
        removed.sort();
        removed.dedup();
        Ok(removed)
    }
}
