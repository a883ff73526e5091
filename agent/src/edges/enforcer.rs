//! The enforcement edge in one network namespace: makes the kernel hold a fault's chain
//! (reading `iptables-save`, applying only the difference in one `iptables-restore` batch),
//! removes it, and sweeps leftovers. The decisions are the pure core's (`rules::diff`,
//! `rules::sweep`); this module only reads and applies. It also finds out, once per
//! namespace, whether the kernel there has the time match the rules' leases need.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use kafka_shock_agent::rules::{
    Actual, Batch, CliOwner, Compiled, Family, Op, OwnedChain, SavedRule, Table, diff, lease_probe,
    owned_chains, parse_save, start_ticks_of_stat, sweep,
};

use crate::edges::clock::since_epoch;
use crate::edges::firewall::{Firewall, FirewallError};
use crate::edges::netns::Netns;

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
    netns: Arc<Netns>,
    firewall: Firewall,
    families: Vec<Family>,
}

/// What an install changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Leases renewed.
    pub renewed: usize,
    /// Every other operation (chains created or refilled, jumps inserted or deleted, sweeps).
    pub changed: usize,
}

/// Whether the rules of a namespace can carry a kernel lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseSupport {
    /// The time match works there.
    Available,
    /// It does not; already said.
    Missing,
    /// It does not, and this is the first time this process learns it: say why, once.
    MissingNow(String),
}

/// What this process learned of each namespace (by inode): whether the time match works.
static TIME_MATCH: Mutex<BTreeMap<u64, bool>> = Mutex::new(BTreeMap::new());

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
pub fn process_alive(pid: u32, start_ticks: u64) -> bool {
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
    /// Our rules in the namespace `netns`.
    pub fn new(netns: Arc<Netns>) -> Result<Enforcer, FirewallError> {
        let firewall = Firewall::detect(&netns)?;
        let families = FAMILIES
            .into_iter()
            .filter(|family| *family == Family::V4 || firewall.save(*family).is_ok())
            .collect();
        Ok(Enforcer {
            netns,
            firewall,
            families,
        })
    }

    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    /// Whether leases work in this namespace: tried once per namespace and process, by
    /// applying a chain whose rule carries one (`rules::lease_probe`, under the fault's `id`)
    /// and removing it again. Where the kernel lacks the time match the apply fails and
    /// nothing is left.
    pub fn lease_support(&self, id: &str) -> LeaseSupport {
        let known = TIME_MATCH
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.netns.inode())
            .copied();
        let outcome = match known {
            Some(true) => return LeaseSupport::Available,
            Some(false) => return LeaseSupport::Missing,
            None => self.try_lease(id),
        };
        TIME_MATCH
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.netns.inode(), outcome.is_ok());
        match outcome {
            Ok(()) => LeaseSupport::Available,
            Err(error) => LeaseSupport::MissingNow(error.to_string()),
        }
    }

    fn try_lease(&self, id: &str) -> Result<(), FirewallError> {
        let probe = lease_probe(id, since_epoch().as_secs() + 60);
        let fresh = diff(std::slice::from_ref(&probe), &Actual::default());
        self.firewall.restore(Family::V4, &fresh.render())?;
        self.remove(|chain| chain.name == probe.name).map(drop)
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
    /// the connections it has not diverted. Says what it applied (nothing when
    /// already in sync).
    pub fn install(
        &self,
        compiled: &Compiled,
        is_leftover: impl Fn(&OwnedChain) -> bool,
    ) -> Result<Applied, FirewallError> {
        let mut applied = Applied::default();
        for &family in &self.families {
            let desired: Vec<_> = compiled.chains(family).into_iter().cloned().collect();
            for actual in self.actual(family)?.iter().rev() {
                let mut touch: HashSet<String> = owned_chains(actual)
                    .into_iter()
                    .filter(|owned| is_leftover(owned))
                    .map(|owned| owned.name)
                    .collect();
                touch.extend(desired.iter().map(|chain| chain.name.clone()));
                let batch = diff(&desired, &restrict(actual, &touch));
                let renewed = batch
                    .ops
                    .iter()
                    .filter(|op| matches!(op, Op::Renew { .. }))
                    .count();
                applied.changed += self.apply(family, &batch)? - renewed;
                applied.renewed += renewed;
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
