//! Proxy enforcement's chains: the nat chain that redirects new connections to the proxy's
//! listener, the filter rules that hand the connections opened before it over to the proxy,
//! and the mark that keeps the proxy's own upstream traffic out of every filter chain of ours.

use super::chain::{Chain, Rule, Table};
use super::compile::{jump, sources, target};
use super::names::PROXY_MARK;
use super::spec::{Family, Injection, Verdict};

/// Not the proxy's own upstream traffic (see [`PROXY_MARK`]).
pub(super) fn not_proxied() -> Vec<String> {
    ["-m", "mark", "!", "--mark"]
        .map(String::from)
        .into_iter()
        .chain([format!("{PROXY_MARK:#x}")])
        .collect()
}

/// The first segment of a connection only (SYN without ACK), as iptables-save prints it after
/// the port match `port`. Where conntrack was not tracking a namespace's connections before
/// the fault (no rule needed it), it picks an established one up mid-stream as NEW at its next
/// segment; without this, that segment would be redirected to the proxy, which has no such
/// connection, and the connection would break even under handover NewConnectionsOnly.
fn syn_only(port: &[String]) -> Vec<String> {
    let flags = ["--tcp-flags", "FIN,SYN,RST,ACK", "SYN"].map(String::from);
    if port.starts_with(&["-m".to_owned(), "tcp".to_owned()]) {
        flags.to_vec()
    } else {
        ["-m".to_owned(), "tcp".to_owned()]
            .into_iter()
            .chain(flags)
            .collect()
    }
}

/// Proxy's nat chain: new connections to the broker ports (their SYN, [`syn_only`]), per source
/// CIDR, redirected to the proxy's port (the local address they arrived on, so the proxy learns
/// the original destination from `SO_ORIGINAL_DST`). Jumped to from PREROUTING: connections
/// the namespace opens itself (the proxy's upstream) are never redirected.
pub(super) fn redirect_chain(
    id: &str,
    name: &str,
    family: Family,
    injection: &Injection,
    ports: &[Vec<String>],
    proxy_port: u16,
) -> Chain {
    let redirect = vec![
        "-j".to_owned(),
        "REDIRECT".to_owned(),
        "--to-ports".to_owned(),
        proxy_port.to_string(),
    ];
    let mut rules = Vec::new();
    for source in sources(&injection.source_cidrs, family) {
        for port in ports {
            let mut args = source.clone();
            args.extend(["-p", "tcp"].map(String::from));
            args.extend(port.iter().cloned());
            args.extend(syn_only(port));
            rules.push(Rule::new(id, args, redirect.clone()));
        }
    }
    let jumps = ports
        .iter()
        .map(|port| {
            let mut args = vec!["-p".to_owned(), "tcp".to_owned()];
            args.extend(port.iter().cloned());
            jump(id, args, name)
        })
        .collect();
    Chain {
        table: Table::Nat,
        name: name.to_owned(),
        jumps,
        rules,
    }
}

/// Proxy's handover: segments of established connections to the broker ports from the
/// fault's sources that reach INPUT still addressed to a broker port were not redirected (a
/// redirected one is addressed to the proxy's port by then): they belong to connections
/// opened before the fault, which are reset so their clients reconnect through the proxy.
/// Connections the namespace opens to itself (on `lo`: the broker's requests to its own
/// listener, such as its transaction coordinator's verification) are never redirected, so
/// they are left alone too: resetting them would break them for as long as the fault lasts.
pub(super) fn handover_rules(
    id: &str,
    family: Family,
    injection: &Injection,
    ports: &[Vec<String>],
) -> Vec<Rule> {
    let mut rules = Vec::new();
    for source in sources(&injection.source_cidrs, family) {
        for port in ports {
            let mut args = source.clone();
            args.extend(["!", "-i", "lo", "-p", "tcp"].map(String::from));
            args.extend(port.iter().cloned());
            args.extend(["-m", "conntrack", "--ctstate", "ESTABLISHED"].map(String::from));
            rules.push(Rule::new(id, args, target(Verdict::Reject)));
        }
    }
    rules
}
