//! Desired vs actual: the iptables-restore batch (for `--noflush`) that turns what the kernel
//! has into what the injections want, as plain data rendered once and applied by the caller.
//!
//! # How chains are compared
//!
//! iptables-save prints rules in a normalized form, not as they were written: `u32` programs
//! in lowercase hex with every number rewritten, hex strings without spaces, probabilities as
//! `0.29999999981`, implicit `-m tcp` added, matches reordered. Comparing arguments would
//! either need a model of every extension's printer or flap on every reconcile. Instead every
//! rule carries `--comment kshock:<id>:<stamp>`, the stamp hashing the rule's own arguments,
//! and comments come back verbatim. A chain is in sync when its rules' comments are the
//! desired comments, in the same order; a jump is in sync when a jump of the right built-in
//! chain carries the desired comment. Any change to a rule (ports, verdict, probability,
//! topics, a new flow) changes a stamp or the count, so the chain is flushed and refilled in
//! the same atomic batch. A rule edited by hand in place, comment kept, is not noticed;
//! anything else (a rule added, removed or reordered) is.
//!
//! # How a lease is renewed
//!
//! A jump's lease (`--datestop`) is not in its stamp: a jump whose comment is right but whose
//! lease ends at another second is renewed in place, by [`Op::Renew`]: the new jump inserted at
//! the old one's rule number, then the old one deleted by its text, in the same atomic batch.
//! The jump keeps its place among the chain's rules, and at no moment is the fault's chain
//! jumped to twice or not at all. Renewals come first in the batch, while the rule numbers
//! read from `iptables-save` still hold (each keeps the chain's length).

use std::collections::HashSet;
use std::fmt;

use super::chain::{Chain, Rule, Table};
use super::lease::ChainLease;
use super::names::id_of_comment;
use super::save::Actual;

/// One line of an iptables-restore batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `:CHAIN - [0:0]`: create a chain that does not exist.
    Declare(String),
    /// `-F CHAIN`.
    Flush(String),
    /// `-A CHAIN <rule>`.
    Append(String, Rule),
    /// `-I CHAIN <rule>`: insert at the top, ahead of whatever accepts traffic.
    Insert(String, Rule),
    /// `-I CHAIN <position> <rule>` then `-D CHAIN <old>`: a jump with a new lease, in the
    /// place of the old one.
    Renew {
        /// The built-in chain holding the jump (INPUT, or nat PREROUTING).
        chain: String,
        /// The old jump's rule number.
        position: usize,
        /// The old jump, as iptables-save printed it.
        old: String,
        /// The jump with its new lease.
        rule: Rule,
    },
    /// `-D CHAIN <text>`, with the rule as iptables-save printed it.
    Delete(String, String),
    /// `-X CHAIN`.
    DeleteChain(String),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Declare(chain) => write!(f, ":{chain} - [0:0]"),
            Self::Flush(chain) => write!(f, "-F {chain}"),
            Self::Append(chain, rule) => write!(f, "-A {chain} {}", rule.render()),
            Self::Insert(chain, rule) => write!(f, "-I {chain} {}", rule.render()),
            Self::Renew {
                chain,
                position,
                old,
                rule,
            } => write!(
                f,
                "-I {chain} {position} {}\n-D {chain} {old}",
                rule.render()
            ),
            Self::Delete(chain, text) => write!(f, "-D {chain} {text}"),
            Self::DeleteChain(chain) => write!(f, "-X {chain}"),
        }
    }
}

/// The changes to one table of one family, in the order they must run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The table they change.
    pub table: Table,
    /// The operations.
    pub ops: Vec<Op>,
}

impl Batch {
    /// Whether there is nothing to change (the reconcile applies nothing).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The text for `iptables-restore --noflush` (empty for an empty batch, so that nothing
    /// is applied by mistake).
    pub fn render(&self) -> String {
        if self.is_empty() {
            return String::new();
        }
        let mut text = format!("*{}\n", self.table.name());
        for op in &self.ops {
            text.push_str(&op.to_string());
            text.push('\n');
        }
        text.push_str("COMMIT\n");
        text
    }
}

/// The batch that makes `actual` (one table of one family) hold exactly the `desired` chains
/// of that table and their jumps, and no other `KSHOCK-*` chain; desired chains of other
/// tables are left to their own table's diff. Order: create missing chains; renew leases;
/// delete jumps nobody wants; refill chains whose rules differ; insert missing jumps; then
/// remove unwanted chains (their jumps, flush, delete).
pub fn diff(desired: &[Chain], actual: &Actual) -> Batch {
    let mut declare = Vec::new();
    let mut renew = Vec::new();
    let mut unjump = Vec::new();
    let mut fill = Vec::new();
    let mut jump = Vec::new();
    let desired: Vec<&Chain> = desired
        .iter()
        .filter(|chain| chain.table == actual.table)
        .collect();
    for chain in &desired {
        let existing = actual.chains.get(&chain.name);
        if existing.is_none() {
            declare.push(Op::Declare(chain.name.clone()));
        }
        let in_sync = existing.is_some_and(|rules| {
            rules
                .iter()
                .map(|rule| rule.comment.as_deref())
                .eq(chain.rules.iter().map(|rule| Some(rule.comment())))
        });
        if !in_sync {
            if existing.is_some() {
                fill.push(Op::Flush(chain.name.clone()));
            }
            fill.extend(
                chain
                    .rules
                    .iter()
                    .map(|rule| Op::Append(chain.name.clone(), rule.clone())),
            );
        }
        let mut wanted: Vec<&Rule> = chain.jumps.iter().collect();
        for saved in actual.jumps_to(&chain.name) {
            let matching = wanted.iter().position(|rule| {
                saved.from == chain.jump_from()
                    && saved.rule.comment.as_deref() == Some(rule.comment())
            });
            match matching.map(|index| wanted.remove(index)) {
                Some(rule) if saved.rule.datestop.as_deref() != rule.datestop() => {
                    renew.push(Op::Renew {
                        chain: saved.from.clone(),
                        position: saved.position,
                        old: saved.rule.text.clone(),
                        rule: rule.clone(),
                    });
                }
                Some(_) => {}
                None => unjump.push(Op::Delete(saved.from.clone(), saved.rule.text.clone())),
            }
        }
        jump.extend(
            wanted
                .into_iter()
                .map(|rule| Op::Insert(chain.jump_from().to_owned(), rule.clone())),
        );
    }
    let keep: HashSet<String> = desired.iter().map(|chain| chain.name.clone()).collect();
    let mut ops = declare;
    ops.extend(renew);
    ops.extend(unjump);
    ops.extend(fill);
    ops.extend(jump);
    ops.extend(sweep(actual, &keep).ops);
    Batch {
        table: actual.table,
        ops,
    }
}

/// The batch that removes every `KSHOCK-*` chain not in `keep`, with the jumps to it: what the
/// agent runs at start (nothing is wanted until the injections are read), and `clean`.
pub fn sweep(actual: &Actual, keep: &HashSet<String>) -> Batch {
    let mut ops = Vec::new();
    for name in actual.chains.keys().filter(|name| !keep.contains(*name)) {
        ops.extend(
            actual
                .jumps_to(name)
                .map(|jump| Op::Delete(jump.from.clone(), jump.rule.text.clone())),
        );
        ops.push(Op::Flush(name.clone()));
        ops.push(Op::DeleteChain(name.clone()));
    }
    Batch {
        table: actual.table,
        ops,
    }
}

/// One of our chains as found in the kernel, for `kafka-shock rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedChain {
    /// The chain name.
    pub name: String,
    /// The sanitised injection ids its rules' and jumps' comments name, sorted.
    pub ids: Vec<String>,
    /// How many rules it holds.
    pub rules: usize,
    /// The jumps to it, as `<from chain> <rule as printed>`.
    pub jumps: Vec<String>,
    /// How long its jumps let traffic in.
    pub lease: ChainLease,
}

/// Our chains in `actual`, by name.
pub fn owned_chains(actual: &Actual) -> Vec<OwnedChain> {
    actual
        .chains
        .iter()
        .map(|(name, rules)| {
            let jumps: Vec<_> = actual.jumps_to(name).collect();
            let mut ids: Vec<String> = rules
                .iter()
                .chain(jumps.iter().map(|jump| &jump.rule))
                .filter_map(|rule| id_of_comment(rule.comment.as_deref()?))
                .map(str::to_owned)
                .collect();
            ids.sort();
            ids.dedup();
            OwnedChain {
                name: name.clone(),
                ids,
                rules: rules.len(),
                lease: ChainLease::of(jumps.iter().map(|jump| jump.rule.datestop.as_deref())),
                jumps: jumps
                    .iter()
                    .map(|jump| format!("{} {}", jump.from, jump.rule.text))
                    .collect(),
            }
        })
        .collect()
}
