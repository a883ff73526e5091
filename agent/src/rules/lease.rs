//! Kernel leases. Every rule that lets traffic into one of our chains from outside (the jumps
//! from INPUT today, a nat redirect tomorrow) is compiled as *leased*: once its owner gives it
//! an end ([`super::Compiled::lease_until`]) it carries `-m time --datestop <UTC>`, and the
//! kernel stops matching it at that second on its own. The owner renews the end every third
//! of the lease; an owner that died (SIGKILL, an agent uninstalled while down) stops renewing,
//! and its fault stops biting within the lease even if nobody ever sweeps its chain.
//!
//! Here: the time match's date text both ways ([`datestop`], [`parse_datestop`]), what a
//! chain's jumps say about its lease ([`ChainLease`]), and the probe that tells whether a
//! namespace's kernel has the time match ([`lease_probe`]). Pure.

use super::chain::{Chain, Rule, Table};
use super::names::{chain_name, sanitise_id};
use crate::civil::{civil_from_days, days_from_civil};

/// Seconds in a day.
const DAY: u64 = 86_400;

/// `unix` (seconds since the epoch, UTC) as `--datestop` takes it and `iptables-save` prints
/// it: `YYYY-MM-DDTHH:MM:SS`. The time match reads it as UTC (no `--kerneltz`).
pub fn datestop(unix: u64) -> String {
    let (year, month, day) = civil_from_days(unix / DAY);
    let seconds = unix % DAY;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// The Unix time of a `--datestop` as `iptables-save` prints it; `None` for anything else.
pub fn parse_datestop(text: &str) -> Option<u64> {
    let (date, time) = text.split_once('T')?;
    let number = |part: &str, len: usize| -> Option<u64> {
        (part.len() == len && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let mut date = date.split('-');
    let (year, month, day) = (
        number(date.next()?, 4)?,
        number(date.next()?, 2)?,
        number(date.next()?, 2)?,
    );
    let mut time = time.split(':');
    let (hour, minute, second) = (
        number(time.next()?, 2)?,
        number(time.next()?, 2)?,
        number(time.next()?, 2)?,
    );
    if date.next().is_some()
        || time.next().is_some()
        || !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let unix = days_from_civil(year, month, day) * DAY + hour * 3600 + minute * 60 + second;
    // A day the month does not have (Feb 30) comes back as another date.
    (datestop(unix) == text).then_some(unix)
}

/// What the jumps into a chain say about how long it bites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainLease {
    /// Nothing jumps into it: it bites nothing.
    NoJump,
    /// A jump carries no lease (its owner could not use the time match): it bites until
    /// removed.
    Unleased,
    /// Every jump carries a lease; the latest ends at this Unix second.
    Until(u64),
}

impl ChainLease {
    /// The lease of a chain whose jumps carry these `--datestop` values (`None`: no time match).
    pub fn of<'a>(datestops: impl IntoIterator<Item = Option<&'a str>>) -> ChainLease {
        let mut lease = ChainLease::NoJump;
        for stop in datestops {
            lease = match (lease, stop.and_then(parse_datestop)) {
                (ChainLease::Unleased, _) | (_, None) => ChainLease::Unleased,
                (ChainLease::Until(until), Some(stop)) => ChainLease::Until(until.max(stop)),
                (ChainLease::NoJump, Some(stop)) => ChainLease::Until(stop),
            };
        }
        lease
    }

    /// For `kafka-shock rules`: "expires in 21 s", "expired 3 s ago", ...
    pub fn describe(self, now_unix: u64) -> String {
        match self {
            ChainLease::NoJump => "no jump into it (it bites nothing)".to_owned(),
            ChainLease::Unleased => "no lease (it bites until removed)".to_owned(),
            // The time match still matches during the second it stops at.
            ChainLease::Until(until) if until >= now_unix => {
                format!("expires in {} s", until - now_unix)
            }
            ChainLease::Until(until) => {
                format!("expired {} s ago (it bites nothing)", now_unix - until)
            }
        }
    }
}

/// A chain whose one rule carries a lease, to try on a namespace before relying on the time
/// match there: applying it fails where the kernel lacks `xt_time`. It carries the fault's id,
/// so should removing it fail, the fault's own removal (or sweep) takes it too. Nothing jumps
/// into it.
pub fn lease_probe(id: &str, until_unix: u64) -> Chain {
    let mut rule = Rule::new(
        &sanitise_id(id),
        Vec::new(),
        vec!["-j".into(), "RETURN".into()],
    )
    .leased();
    rule.lease_until(Some(until_unix));
    Chain {
        table: Table::Filter,
        name: chain_name(&format!("{id}#lease-probe")),
        jumps: Vec::new(),
        rules: vec![rule],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datestops_round_trip_in_utc() {
        assert_eq!(datestop(0), "1970-01-01T00:00:00");
        assert_eq!(datestop(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(datestop(1_796_304_845), "2026-12-03T13:34:05");
        assert_eq!(datestop(2_147_483_647), "2038-01-19T03:14:07");
        for unix in [0, 59, 86_399, 951_868_799, 1_796_304_845, 4_102_444_800] {
            assert_eq!(parse_datestop(&datestop(unix)), Some(unix), "{unix}");
        }
        for bad in [
            "",
            "2026-12-03",
            "2026-02-30T00:00:00",
            "2026-13-01T00:00:00",
            "2026-12-03T24:00:00",
            "2026-12-3T01:00:00",
            "1969-12-31T23:59:59",
            "2026-12-03T01:00:00Z",
        ] {
            assert_eq!(parse_datestop(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_chain_bites_until_its_latest_jump_expires() {
        assert_eq!(ChainLease::of([]), ChainLease::NoJump);
        let (early, late) = ("2026-12-03T13:34:05", "2026-12-03T13:34:35");
        assert_eq!(
            ChainLease::of([Some(early), Some(late)]),
            ChainLease::Until(1_796_304_875)
        );
        assert_eq!(ChainLease::of([Some(early), None]), ChainLease::Unleased);
        assert_eq!(ChainLease::of([Some("garbage")]), ChainLease::Unleased);
        let lease = ChainLease::Until(1_000);
        assert_eq!(lease.describe(979), "expires in 21 s");
        assert_eq!(lease.describe(1_000), "expires in 0 s");
        assert_eq!(lease.describe(1_003), "expired 3 s ago (it bites nothing)");
        assert_eq!(
            ChainLease::Unleased.describe(0),
            "no lease (it bites until removed)"
        );
    }

    #[test]
    fn the_probe_is_one_leased_rule_without_jumps() {
        let probe = lease_probe("cli.1.2.0.f", 1_796_304_845);
        assert!(probe.name.starts_with("KSHOCK-"));
        assert!(probe.jumps.is_empty());
        assert_eq!(
            probe.rules[0].render(),
            format!(
                "-m time --datestop 2026-12-03T13:34:05 -m comment --comment {} -j RETURN",
                probe.rules[0].comment()
            )
        );
    }
}
