//! The session's Proxy mode: what it reports of the proxy (its hits as `match:` lines, the
//! handover, TLS streams it cannot read, its closing summary) and the one check made before a
//! Proxy fault starts: one Proxy fault per broker port in a namespace.

use std::collections::BTreeSet;

use anyhow::bail;
use kafka_shock_agent::fault::FaultPlan;
use kafka_shock_agent::rules::{Family, Table, chain_name};

use crate::edges::enforcer::Enforcer;
use crate::edges::proxy::{ProxyEnforcer, ProxyStats};
use crate::edges::session::{Log, SessionStats};

/// Refuses a Proxy fault on a port another Proxy fault in the namespace already redirects:
/// two redirects of one port would race, and the second proxy would see nothing.
pub(super) fn check_port_is_free(enforcer: &Enforcer, plan: &FaultPlan) -> anyhow::Result<()> {
    let ours = chain_name(plan.id());
    for found in enforcer.list()? {
        if found.table != Table::Nat || found.family != Family::V4 || found.owned.name == ours {
            continue;
        }
        let taken: BTreeSet<u16> = found
            .owned
            .jumps
            .iter()
            .flat_map(|jump| jump_ports(jump))
            .collect();
        if let Some(port) = plan.ports().iter().find(|port| taken.contains(port)) {
            bail!(
                "port {port} already has a Proxy fault ({}, owner {}): one Proxy fault per port; \
                 end that one first, or put both actions' requests in one fault",
                found.owned.name,
                found.owned.ids.join(", ")
            );
        }
    }
    Ok(())
}

/// The ports a printed jump matches (`--dport 9092`, `--dports 9092,9093`).
fn jump_ports(jump: &str) -> Vec<u16> {
    let words: Vec<&str> = jump.split_whitespace().collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "--dport" || pair[0] == "--dports")
        .flat_map(|pair| pair[1].split(','))
        .filter_map(|port| port.parse().ok())
        .collect()
}

/// Tells the proxy's hits and news, and copies its numbers into the session's.
pub(super) fn report(proxy: &ProxyEnforcer, stats: &mut SessionStats, log: &mut Log) {
    for hit in proxy.take_hits() {
        *stats
            .matched_by_api
            .entry(hit.request.api.to_string())
            .or_default() += 1;
        log(&format!(
            "match: {} → {}",
            hit.request.to_line(),
            hit.outcome
        ));
    }
    let now = proxy.stats();
    let before = stats.proxy.clone().unwrap_or_default();
    for port in now.tls_ports.difference(&before.tls_ports) {
        log(&format!(
            "inject: port {port} carries TLS: Proxy can't see its requests (passed through unread)"
        ));
    }
    stats.tls_ports.extend(&now.tls_ports);
    if now.handed_over > before.handed_over {
        log(&format!(
            "inject: handover: {} of {} connection(s) opened before the fault were reset and now reconnect through the proxy",
            now.handed_over, now.direct_at_start
        ));
    }
    if now.counters.failed_open > before.counters.failed_open {
        log(&format!(
            "inject: proxy: failed open {} more time(s) (traffic let through unchanged)",
            now.counters.failed_open - before.counters.failed_open
        ));
    }
    stats.requests_seen = now.counters.requests_seen;
    stats.requests_matched = now.counters.requests_matched;
    stats.proxy = Some(now);
}

/// The proxy's start, as the session tells it.
pub(super) fn started(proxy: &ProxyEnforcer, plan: &FaultPlan) -> String {
    let stats = proxy.stats();
    let handover = match plan.handover() {
        kafka_shock_crds::Handover::Reset => format!(
            "handover Reset: {} connection(s) opened before the fault are reset once the redirect is in",
            stats.direct_at_start
        ),
        kafka_shock_crds::Handover::NewConnectionsOnly => format!(
            "handover NewConnectionsOnly: {} connection(s) opened before the fault are left alone",
            stats.direct_at_start
        ),
    };
    format!(
        "inject: proxy listening on port {} in the broker's namespace; {handover}",
        proxy.port()
    )
}

/// The closing line of a Proxy session.
pub(super) fn summary(stats: &ProxyStats) -> String {
    let c = &stats.counters;
    format!(
        "inject: proxy: {} requests seen, {} matched, {} errored, {} throttled, {} delayed, {} corrupted ({} records), {} duplicated, {} undecodable; {} connections proxied, {} handed over, {} TLS passed through, {} other passed through, {} failed open, {} left open",
        c.requests_seen,
        c.requests_matched,
        c.errored,
        c.throttled,
        c.delayed,
        c.corrupted,
        c.corrupted_records,
        c.duplicated,
        c.undecodable,
        c.connections,
        stats.handed_over,
        c.passthrough_tls,
        c.passthrough_other,
        c.failed_open,
        stats.active
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ports_of_a_printed_jump() {
        assert_eq!(
            jump_ports("-p tcp -m tcp --dport 9092 -m comment --comment \"x\" -j KSHOCK-1"),
            [9092]
        );
        assert_eq!(
            jump_ports("-p tcp -m multiport --dports 9092,9093 -j KSHOCK-1"),
            [9092, 9093]
        );
        assert!(jump_ports("-p udp -j KSHOCK-1").is_empty());
    }
}
