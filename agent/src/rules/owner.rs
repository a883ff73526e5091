//! Who owns a chain installed by the CLI. `kafka-shock inject` runs without Kubernetes, so the
//! injection id it puts in its rules' comments records the owner process (pid and start time,
//! which together survive pid reuse) and the fault's expiry. Anyone who later finds the chain
//! can tell a live fault from a leftover: the owner is gone, or the fault has expired.
//!
//! (The node agent's rules carry `kafka_shock_crds::rule_id` instead, and are judged by
//! `assignment::is_orphan`.)

/// The owner recorded in a CLI injection id, which reads
/// `cli.<pid>.<start ticks>.<expires unix s, 0 = never>.<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOwner {
    pub pid: u32,
    /// The owner's start time in clock ticks since boot (field 22 of /proc/<pid>/stat).
    pub start_ticks: u64,
    /// When the fault ends, in Unix seconds; 0 when it lasts until stopped.
    pub expires_unix: u64,
    /// The fault's name, sanitised like every id.
    pub name: String,
}

const PREFIX: &str = "cli";

impl CliOwner {
    /// The injection id naming this owner.
    pub fn id(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(63)
            .collect();
        format!(
            "{PREFIX}.{}.{}.{}.{name}",
            self.pid, self.start_ticks, self.expires_unix
        )
    }

    /// The owner an injection id names, when the CLI made it.
    pub fn parse(id: &str) -> Option<CliOwner> {
        let mut parts = id.splitn(5, '.');
        if parts.next()? != PREFIX {
            return None;
        }
        Some(CliOwner {
            pid: parts.next()?.parse().ok()?,
            start_ticks: parts.next()?.parse().ok()?,
            expires_unix: parts.next()?.parse().ok()?,
            name: parts.next()?.to_owned(),
        })
    }

    /// A leftover: its fault expired, or the process that installed it is gone (`alive` says
    /// whether a process with this pid and start time still runs).
    pub fn is_stale(&self, now_unix: u64, alive: impl Fn(u32, u64) -> bool) -> bool {
        (self.expires_unix != 0 && now_unix >= self.expires_unix)
            || !alive(self.pid, self.start_ticks)
    }
}

/// The start time field of a `/proc/<pid>/stat` text (after the parenthesised command name,
/// which may itself hold spaces and parentheses).
pub fn start_ticks_of_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on; start time is field 22.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sanitises_the_name() {
        let owner = CliOwner {
            pid: 4242,
            start_ticks: 987_654,
            expires_unix: 1_800_000_000,
            name: "reset orders/A".into(),
        };
        let id = owner.id();
        assert_eq!(id, "cli.4242.987654.1800000000.reset-orders-A");
        let parsed = CliOwner::parse(&id).expect("parses");
        assert_eq!(parsed.pid, 4242);
        assert_eq!(parsed.name, "reset-orders-A");
        assert_eq!(CliOwner::parse("8c1f-uid-from-kubernetes"), None);
        assert_eq!(CliOwner::parse("cli.x.1.2.n"), None);
    }

    #[test]
    fn stale_when_expired_or_owner_gone() {
        let owner = CliOwner {
            pid: 1,
            start_ticks: 5,
            expires_unix: 100,
            name: "f".into(),
        };
        let alive = |pid: u32, ticks: u64| pid == 1 && ticks == 5;
        assert!(!owner.is_stale(99, alive));
        assert!(owner.is_stale(100, alive), "expired");
        assert!(owner.is_stale(50, |_, _| false), "owner gone");
        let forever = CliOwner {
            expires_unix: 0,
            ..owner
        };
        assert!(!forever.is_stale(u64::MAX, alive));
    }

    #[test]
    fn reads_the_start_time_after_an_odd_command_name() {
        let stat = "77 (a) b (c)) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 50";
        assert_eq!(start_ticks_of_stat(stat), Some(123_456));
        assert_eq!(start_ticks_of_stat("garbage"), None);
    }
}
