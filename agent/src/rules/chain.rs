//! What the kernel is asked to hold for one injection: its chains, each in a table and jumped
//! to from that table's built-in chain, and their rules as argument vectors with a stamped
//! comment and, for the rules that let traffic into our chains, a kernel lease.

use super::lease::datestop;
use super::names::stamp;

/// One iptables rule as arguments, without the leading `-A <chain>` (or `-I`/`-D`), so the
/// caller can append, insert or delete it. Its comment is `kshock:<id>:<stamp>`, the stamp
/// hashing the other arguments. A *leased* rule (one that lets traffic into our chains from
/// outside) also carries the time match of its lease once given an end; the lease is not part
/// of the stamp, so renewing it is not a change of the rule (see [`crate::rules::diff`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    matches: Vec<String>,
    target: Vec<String>,
    comment: String,
    leased: bool,
    /// The lease's end as `--datestop` states it; `None` until given, or where the kernel
    /// lacks the time match.
    datestop: Option<String>,
}

impl Rule {
    /// `matches`, then the stamped comment, then `target`.
    pub(crate) fn new(sanitised_id: &str, matches: Vec<String>, target: Vec<String>) -> Self {
        let mut content = matches.clone();
        content.extend(target.iter().cloned());
        let comment = stamp(sanitised_id, &content);
        Self {
            matches,
            target,
            comment,
            leased: false,
            datestop: None,
        }
    }

    /// The same rule, leased: it lets traffic into our chains, so it must stop biting when
    /// its owner stops renewing it.
    pub(crate) fn leased(self) -> Self {
        Self {
            leased: true,
            ..self
        }
    }

    /// Ends a leased rule's lease at `until_unix` (or takes it off: `None`); other rules are
    /// left as they are.
    pub(crate) fn lease_until(&mut self, until_unix: Option<u64>) {
        if self.leased {
            self.datestop = until_unix.map(datestop);
        }
    }

    /// The lease's end, as `--datestop` states it.
    pub fn datestop(&self) -> Option<&str> {
        self.datestop.as_deref()
    }

    /// The arguments, one per element: matches, the lease, the comment, the target.
    pub fn args(&self) -> Vec<String> {
        let mut args = self.matches.clone();
        if let Some(stop) = &self.datestop {
            args.extend(["-m", "time", "--datestop", stop].map(String::from));
        }
        args.extend(["-m", "comment", "--comment", &self.comment].map(String::from));
        args.extend(self.target.iter().cloned());
        args
    }

    /// The comment, as iptables-save will print it back (unquoted value).
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// The arguments as one line of iptables-restore input. Only fixed strings, numbers,
    /// addresses, hex and sanitised ids reach it, so the only quoting needed is around
    /// arguments with spaces (the hex strings).
    pub fn render(&self) -> String {
        let quoted: Vec<String> = self
            .args()
            .into_iter()
            .map(|arg| {
                debug_assert!(!arg.contains(['"', '\\', '\'', '\n', '\r']), "{arg:?}");
                if arg.contains(' ') {
                    format!("\"{arg}\"")
                } else {
                    arg
                }
            })
            .collect();
        quoted.join(" ")
    }
}

/// The iptables table a chain of ours lives in. A table has its own chain names, so one
/// injection's chains share the name `KSHOCK-<hash>` across tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Requests are inspected, reset, dropped or queued where they arrive (INPUT).
    #[default]
    Filter,
    /// New connections are redirected before routing (PREROUTING): Proxy enforcement.
    Nat,
}

impl Table {
    /// Every table we own chains in, in the order a removal goes: what lets traffic pass
    /// ends before what diverts it (a Proxy fault's resets stop before its redirect does).
    pub const ALL: [Table; 2] = [Table::Filter, Table::Nat];

    /// Its name, as `iptables -t` and `iptables-restore`'s `*table` line say it.
    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
        }
    }

    /// The built-in chain our jumps live in: INPUT for the filter table (requests arrive at
    /// the broker's netns), PREROUTING for nat (before the routing decision a redirect
    /// changes).
    pub fn jump_from(self) -> &'static str {
        match self {
            Table::Filter => "INPUT",
            Table::Nat => "PREROUTING",
        }
    }
}

/// One of our chains in one family's table, with the rules that send traffic into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The table it lives in.
    pub table: Table,
    /// `KSHOCK-<hash of the injection id>`.
    pub name: String,
    /// Rules for [`Chain::jump_from`] that jump to this chain: one per 15 broker ports.
    pub jumps: Vec<Rule>,
    /// The chain's rules, in order.
    pub rules: Vec<Rule>,
}

impl Chain {
    /// The built-in chain the jumps live in (see [`Table::jump_from`]).
    pub fn jump_from(&self) -> &'static str {
        self.table.jump_from()
    }
}
