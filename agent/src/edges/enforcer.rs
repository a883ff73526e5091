//! The enforcement edge in one network namespace: makes the kernel hold a fault's chain
//! (reading `iptables-save`, applying only the difference in one `iptables-restore` batch),
//! removes it, and sweeps leftovers. The decisions are the pure core's (`rules::diff`,
//! `rules::sweep`); this module only reads and applies.

use std::collections::HashSet;
use std::path::Path;

use kafka_shock_agent::rules::{
    Actual, CliOwner, Compiled, Family, OwnedChain, SavedRule, diff, owned_chains, parse_save,
    start_ticks_of_stat, sweep,
};

use crate::edges::clock::since_epoch;
use crate::edges::firewall::{Firewall, FirewallError};

/// Both families; a namespace without IPv6 support only has IPv4 rules.
const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// One of our chains as found in the namespace.
#[derive(Debug, Clone)]
pub struct FoundChain {
    pub family: Family,
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

    fn actual(&self, family: Family) -> Result<Actual, FirewallError> {
        Ok(parse_save(&self.firewall.save(family)?))
    }

    /// Every chain of ours in the namespace, per family.
    pub fn list(&self) -> Result<Vec<FoundChain>, FirewallError> {
        let mut found = Vec::new();
        for &family in &self.families {
            let actual = self.actual(family)?;
            for owned in owned_chains(&actual) {
                let rules = actual.chains.get(&owned.name).cloned().unwrap_or_default();
                found.push(FoundChain {
                    family,
                    owned,
                    rules,
                });
            }
        }
        Ok(found)
    }

    /// Makes the namespace hold `compiled`'s chains, sweeping chains `is_leftover` condemns on
    /// the way and leaving every other chain alone. Returns how many operations it applied
    /// (0 when already in sync).
    pub fn install(
        &self,
        compiled: &Compiled,
        is_leftover: impl Fn(&OwnedChain) -> bool,
    ) -> Result<usize, FirewallError> {
        let mut applied = 0;
        for &family in &self.families {
            let actual = self.actual(family)?;
            let chain = compiled.chain(family);
            let mut touch: HashSet<String> = owned_chains(&actual)
                .into_iter()
                .filter(|owned| is_leftover(owned))
                .map(|owned| owned.name)
                .collect();
            touch.insert(chain.name.clone());
            let batch = diff(std::slice::from_ref(chain), &restrict(&actual, &touch));
            if !batch.is_empty() {
                self.firewall.restore(family, &batch.render())?;
                applied += batch.ops.len();
            }
        }
        Ok(applied)
    }

    /// Removes the chains `remove` selects (and the jumps to them); returns their names.
    pub fn remove(
        &self,
        remove: impl Fn(&OwnedChain) -> bool,
    ) -> Result<Vec<String>, FirewallError> {
        let mut removed = Vec::new();
        for &family in &self.families {
            let actual = self.actual(family)?;
            let doomed: HashSet<String> = owned_chains(&actual)
                .into_iter()
                .filter(|owned| remove(owned))
                .map(|owned| owned.name)
                .collect();
            let batch = sweep(&restrict(&actual, &doomed), &HashSet::new());
            if !batch.is_empty() {
                self.firewall.restore(family, &batch.render())?;
            }
            removed.extend(doomed);
        }
        removed.sort();
        removed.dedup();
        Ok(removed)
    }
}
