//! Reading back what the kernel has: one table of an `iptables-save` text.

use std::collections::BTreeMap;

use super::chain::Table;
use super::names::CHAIN_PREFIX;

/// One rule as iptables-save printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRule {
    /// The rule's arguments exactly as printed after `-A <chain> `, iptables' normalized form;
    /// `-D <chain> <text>` deletes it.
    pub text: String,
    /// The value of its `--comment`, unquoted.
    pub comment: Option<String>,
    /// Its `-j` target.
    pub target: Option<String>,
    /// The end of its lease (`-m time --datestop`), as printed.
    pub datestop: Option<String>,
}

/// A rule of a chain we do not own that jumps to one we do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedJump {
    /// The chain it is in (INPUT, normally).
    pub from: String,
    /// Its rule number in that chain (1 is the first), as `-I <chain> <number>` takes it.
    pub position: usize,
    /// The rule.
    pub rule: SavedRule,
}

/// Our chains in one table of one family, and the rules that jump to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actual {
    /// The table read.
    pub table: Table,
    /// `KSHOCK-*` chains and their rules, in order.
    pub chains: BTreeMap<String, Vec<SavedRule>>,
    /// Rules of other chains whose `-j` target is a `KSHOCK-*` chain, in order.
    pub jumps: Vec<SavedJump>,
}

impl Actual {
    /// The jumps to `chain`.
    pub fn jumps_to<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a SavedJump> + 'a {
        self.jumps
            .iter()
            .filter(move |jump| jump.rule.target.as_deref() == Some(chain))
    }
}

/// Parses `iptables-save` (or `ip6tables-save`) output; only `table` is read (absent: empty),
/// and lines it does not understand are skipped, because a reconcile must go on whatever else
/// the node has installed.
pub fn parse_save(text: &str, table: Table) -> Actual {
    let mut actual = Actual {
        table,
        ..Actual::default()
    };
    let mut in_table = false;
    let mut positions: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix('*') {
            in_table = name == table.name();
        } else if line == "COMMIT" {
            in_table = false;
        } else if !in_table {
        } else if let Some(declaration) = line.strip_prefix(':') {
            let name = declaration.split(' ').next().unwrap_or_default();
            if name.starts_with(CHAIN_PREFIX) {
                actual.chains.entry(name.to_owned()).or_default();
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let Some((chain, text)) = rule.split_once(' ') else {
                continue;
            };
            let rule = saved_rule(text);
            let position = positions.entry(chain.to_owned()).or_default();
            *position += 1;
            if chain.starts_with(CHAIN_PREFIX) {
                actual
                    .chains
                    .entry(chain.to_owned())
                    .or_default()
                    .push(rule);
            } else if rule
                .target
                .as_deref()
                .is_some_and(|target| target.starts_with(CHAIN_PREFIX))
            {
                actual.jumps.push(SavedJump {
                    from: chain.to_owned(),
                    position: *position,
                    rule,
                });
            }
        }
    }
    actual
}

fn saved_rule(text: &str) -> SavedRule {
    let words = split_words(text);
    let after = |flag: &str| {
        words
            .windows(2)
            .find(|pair| pair[0] == flag)
            .map(|pair| pair[1].clone())
    };
    SavedRule {
        text: text.to_owned(),
        comment: after("--comment"),
        target: after("-j"),
        datestop: after("--datestop"),
    }
}

/// Splits a printed rule into words, as iptables-restore would: double quotes group, and a
/// backslash escapes the next character inside them.
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                word.extend(chars.next());
            }
            ' ' | '\t' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            _ => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}
