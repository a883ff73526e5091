//! From an [`Injection`] (and the flows the sniffer caught) to the rules of its chains.

use std::collections::BTreeSet;
use std::net::IpAddr;

use kafka_shock_crds::Cidr;

use super::chain::{Chain, Rule, Table};
use super::names::{chain_name, reject_mark, sanitise_id, wake_port};
use super::offsets::{self, ApiWord, ClientIdLen, StringMatch};
use super::proxy_chains::{handover_rules, not_proxied, redirect_chain};
use super::spec::{ClientIdPattern, Family, Flow, Injection, Layers, Signature, Verdict};

/// The most ports one `multiport` match takes.
const MULTIPORT_MAX: usize = 15;

/// Why the signature rules match other than exactly the requests the signature describes.
/// Rules of the signature never hit a request the signature does not describe, except by the
/// coincidences noted on the `…Anywhere` gaps: when a condition cannot be expressed, its rules
/// are left out (they under-match), never widened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    /// A regex client id cannot be evaluated by the kernel: no signature rules at all.
    ClientIdRegex,
    /// The client id (exact: with its int16 length) is longer than an xt_string pattern
    /// ([`offsets::MAX_PATTERN`] bytes): no signature rules at all.
    ClientIdTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A topic name too long for an xt_string pattern: requests for it are not matched
    /// (and none at all if every topic is too long).
    TopicTooLong {
        /// Its index in [`Signature::topics`].
        index: usize,
    },
    /// Topics are named but no topic id is known yet; Produce v13+ and Fetch v13+ name topics
    /// by id only, so those requests are not matched until the sniffer learns the ids.
    NoTopicIdsYet,
    /// Topics are searched only in the first [`offsets::BODY_WINDOW`] bytes after the client id
    /// (assumed ≤ 256 bytes unless given exactly); a topic named further into a request is
    /// missed. A string anywhere in that window equal to the encoded name also matches.
    TopicsWithinWindow,
    /// The group id is matched as bytes anywhere in the body window, not at its field: a
    /// request whose other fields (say a topic of the same name) hold the same bytes matches
    /// too, and request kinds that carry no group id (Fetch, Produce) never match.
    GroupIdAnywhere,
    /// The group id is too long for an xt_string pattern: no signature rules at all.
    GroupIdTooLong,
    /// As [`Gap::GroupIdAnywhere`], for the transactional id.
    TransactionalIdAnywhere,
    /// The transactional id is too long for an xt_string pattern: no signature rules at all.
    TransactionalIdTooLong,
    /// Delay cannot be done by kernel rules: no signature or connection rules at all.
    DelayNeedsInline,
    /// A Kafka-level action (an error, a throttle, ...) is the proxy's to carry out: no
    /// signature or connection rules at all.
    NeedsProxy,
}

impl Gap {
    /// Whether this gap leaves the signature with no rules at all.
    pub fn disables_signature(&self) -> bool {
        matches!(
            self,
            Self::ClientIdRegex
                | Self::ClientIdTooLong { .. }
                | Self::GroupIdTooLong
                | Self::TransactionalIdTooLong
                | Self::DelayNeedsInline
                | Self::NeedsProxy
        )
    }
}

/// What the signature rules cannot express exactly; Auto mode adds Connection rules as a
/// backstop when this is not exact. (Every signature rule also shares the limit of matching
/// on segments: a request straddling segments, or not first in its segment, is missed.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exactness {
    /// The gaps, in the order the compiler found them.
    pub gaps: Vec<Gap>,
}

impl Exactness {
    /// Whether the signature rules match exactly what the signature says.
    pub fn is_exact(&self) -> bool {
        self.gaps.is_empty()
    }

    /// Whether the signature compiles to no rules at all, so only Connection (or Inline)
    /// enforcement can carry the fault.
    pub fn signature_disabled(&self) -> bool {
        self.gaps.iter().any(Gap::disables_signature)
    }
}

/// The chains of one injection, per family, and what their signature cannot express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The iptables chain (filter table).
    pub v4: Chain,
    /// The ip6tables chain (filter table).
    pub v6: Chain,
    /// Proxy: the nat chains that redirect new connections to the proxy, IPv4 then IPv6.
    pub nat: Option<(Chain, Chain)>,
    /// What the signature rules cannot express exactly.
    pub exactness: Exactness,
}

impl Compiled {
    /// The chain of `family`.
    pub fn chain(&self, family: Family) -> &Chain {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Every chain of `family`, whatever its table.
    pub fn chains(&self, family: Family) -> Vec<&Chain> {
        let nat = self.nat.as_ref().map(|(v4, v6)| match family {
            Family::V4 => v4,
            Family::V6 => v6,
        });
        std::iter::once(self.chain(family)).chain(nat).collect()
    }

    /// How many rules the chains hold, jumps left out.
    pub fn rule_count(&self) -> usize {
        [Family::V4, Family::V6]
            .into_iter()
            .flat_map(|family| self.chains(family))
            .map(|chain| chain.rules.len())
            .sum()
    }

    /// The same chains with every leased rule's lease ending at `until_unix` (`None`: no lease,
    /// where the kernel has no time match). The owner gives a later end every third of its
    /// lease; the kernel ends the fault at the last one given.
    pub fn lease_until(mut self, until_unix: Option<u64>) -> Compiled {
        let nat = self.nat.iter_mut().flat_map(|(v4, v6)| [v4, v6]);
        for chain in [&mut self.v4, &mut self.v6].into_iter().chain(nat) {
            for rule in chain.jumps.iter_mut().chain(chain.rules.iter_mut()) {
                rule.lease_until(until_unix);
            }
        }
        self
    }
}

/// Compiles an injection into one chain per family: first a rule per flow of that family
/// (when [`Injection::layers`] include Connection), then the signature rules (when they
/// include Signature), each signature rule one combination of source CIDR × api key × topic
/// encoding × group id encoding × transactional id encoding. Both chains exist even when
/// empty, so that rules can later be added without touching the jumps.
pub fn compile(injection: &Injection, flows: &[Flow]) -> Compiled {
    let id = sanitise_id(&injection.id);
    let name = chain_name(&injection.id);
    let ports = port_matches(&injection.ports);
    let (alternatives, mut exactness) = SignatureParts::of(&injection.signature);
    let held = match (injection.verdict, injection.layers) {
        (Verdict::Delay, Layers::Inline { .. } | Layers::Proxy { .. }) => true,
        (Verdict::Delay, _) => {
            exactness.gaps.push(Gap::DelayNeedsInline);
            true
        }
        (Verdict::Proxy, Layers::Proxy { .. }) => true,
        (Verdict::Proxy, _) => {
            exactness.gaps.push(Gap::NeedsProxy);
            true
        }
        _ => false,
    };
    let chain = |family: Family| {
        let mut rules = Vec::new();
        match injection.layers {
            Layers::Inline { queue } => {
                rules.extend(inline_rules(&id, family, injection, &ports, queue));
            }
            Layers::Proxy {
                reset_established: true,
                ..
            } => rules.extend(handover_rules(&id, family, injection, &ports)),
            // Nothing the kernel can do alone; see Gap::DelayNeedsInline and Gap::NeedsProxy.
            _ if held => {}
            layers if layers.connection() => {
                rules.extend(connection_rules(&id, family, injection.verdict, flows));
            }
            _ => {}
        }
        if injection.layers.signature() && !held {
            let sources = sources(&injection.source_cidrs, family);
            for source in &sources {
                for port in &ports {
                    for matches in alternatives.matches(family) {
                        let mut args = source.clone();
                        args.extend(["-p", "tcp"].map(String::from));
                        args.extend(port.iter().cloned());
                        args.extend(matches);
                        args.extend(probability(injection.probability));
                        rules.push(Rule::new(&id, args, target(injection.verdict)));
                    }
                }
            }
        }
        let mut jumps: Vec<Rule> = ports
            .iter()
            .map(|port| {
                let mut args = vec!["-p".to_owned(), "tcp".to_owned()];
                args.extend(port.iter().cloned());
                args.extend(not_proxied());
                jump(&id, args, &name)
            })
            .collect();
        if let (Layers::Inline { queue }, Family::V4) = (injection.layers, family) {
            jumps.push(jump(&id, wake_match(queue), &name));
        }
        Chain {
            table: Table::Filter,
            name: name.clone(),
            jumps,
            rules,
        }
    };
    let nat = match injection.layers {
        Layers::Proxy { port, .. } => Some((
            redirect_chain(&id, &name, Family::V4, injection, &ports, port),
            redirect_chain(&id, &name, Family::V6, injection, &ports, port),
        )),
        _ => None,
    };
    Compiled {
        v4: chain(Family::V4),
        v6: chain(Family::V6),
        nat,
        exactness,
    }
}

/// A rule that sends traffic into our chain `name` from the built-in chain of its table:
/// leased, whatever the table (a filter chain's faults and a nat chain's redirect alike stop
/// biting when the owner stops renewing them).
pub(super) fn jump(id: &str, matches: Vec<String>, name: &str) -> Rule {
    Rule::new(id, matches, vec!["-j".to_owned(), name.to_owned()]).leased()
}

/// The port matches: `--dport` for one port, `multiport` for up to 15, one match per 15
/// ports beyond; a single empty match (any port) when no port is given.
fn port_matches(ports: &[u16]) -> Vec<Vec<String>> {
    let ports: Vec<u16> = ports
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if ports.is_empty() {
        return vec![Vec::new()];
    }
    ports
        .chunks(MULTIPORT_MAX)
        .map(|chunk| match chunk {
            [port] => ["-m", "tcp", "--dport"]
                .map(String::from)
                .into_iter()
                .chain([port.to_string()])
                .collect(),
            _ => {
                let list: Vec<String> = chunk.iter().map(u16::to_string).collect();
                ["-m", "multiport", "--dports"]
                    .map(String::from)
                    .into_iter()
                    .chain([list.join(",")])
                    .collect()
            }
        })
        .collect()
}

/// `-s <network>` per source CIDR of `family` (each in canonical form, so equal blocks make
/// one rule); one empty source (any) when none is given; none at all when sources are given
/// but none of this family.
pub(super) fn sources(cidrs: &[Cidr], family: Family) -> Vec<Vec<String>> {
    if cidrs.is_empty() {
        return vec![Vec::new()];
    }
    cidrs
        .iter()
        .map(Cidr::network)
        .filter(|cidr| Family::of(cidr.addr) == family)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|cidr| vec!["-s".to_owned(), cidr.to_string()])
        .collect()
}

/// The Inline chain: first (Reject only) the reset of segments the agent re-marked for it,
/// which come back through the chain by NF_REPEAT; then every segment to the broker ports,
/// per source CIDR, to the queue. `--queue-bypass` lets traffic through untouched while no
/// agent reads the queue, so a dead agent fails open.
fn inline_rules(
    id: &str,
    family: Family,
    injection: &Injection,
    ports: &[Vec<String>],
    queue: u16,
) -> Vec<Rule> {
    let mut rules = Vec::new();
    if family == Family::V4 {
        // The Inline enforcer's wake-up call (see `wake_port`), from loopback only.
        rules.push(Rule::new(id, wake_match(queue), queue_target(queue)));
    }
    if injection.verdict == Verdict::Reject {
        let args = ["-p", "tcp", "-m", "mark", "--mark"]
            .map(String::from)
            .into_iter()
            .chain([format!("{:#x}", reject_mark(queue))])
            .collect();
        rules.push(Rule::new(id, args, target(Verdict::Reject)));
    }
    for source in sources(&injection.source_cidrs, family) {
        for port in ports {
            let mut args = source.clone();
            args.extend(["-p", "tcp"].map(String::from));
            args.extend(port.iter().cloned());
            rules.push(Rule::new(id, args, queue_target(queue)));
        }
    }
    rules
}

fn probability(percent: u8) -> Vec<String> {
    let percent = percent.clamp(1, 100);
    if percent == 100 {
        return Vec::new();
    }
    let fraction = format!("{:.5}", f64::from(percent) / 100.0);
    [
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        &fraction,
    ]
    .map(String::from)
    .into()
}

/// A datagram from loopback to the Inline enforcer's wake port (see `wake_port`).
fn wake_match(queue: u16) -> Vec<String> {
    [
        "-s",
        "127.0.0.1/32",
        "-d",
        "127.0.0.1/32",
        "-p",
        "udp",
        "-m",
        "udp",
        "--dport",
    ]
    .map(String::from)
    .into_iter()
    .chain([wake_port(queue).to_string()])
    .collect()
}

/// To the Inline enforcer's queue; with no reader bound, past it untouched (`--queue-bypass`).
fn queue_target(queue: u16) -> Vec<String> {
    ["-j", "NFQUEUE", "--queue-num"]
        .map(String::from)
        .into_iter()
        .chain([queue.to_string(), "--queue-bypass".to_owned()])
        .collect()
}

pub(super) fn target(verdict: Verdict) -> Vec<String> {
    match verdict {
        Verdict::Reject => vec!["-j", "REJECT", "--reject-with", "tcp-reset"],
        Verdict::Drop => vec!["-j", "DROP"],
        // Never asked for: compile leaves Delay to the Inline chain or the proxy.
        Verdict::Delay | Verdict::Proxy => vec!["-j", "ACCEPT"],
    }
    .into_iter()
    .map(String::from)
    .collect()
}

/// A rule per distinct flow of `family`, matching its exact 4-tuple.
fn connection_rules(id: &str, family: Family, verdict: Verdict, flows: &[Flow]) -> Vec<Rule> {
    let host = |ip: IpAddr| {
        let ip = ip.to_canonical();
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        format!("{ip}/{bits}")
    };
    flows
        .iter()
        .filter(|flow| {
            Family::of(flow.client.ip()) == family && Family::of(flow.broker.ip()) == family
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|flow| {
            let args = vec![
                "-s".to_owned(),
                host(flow.client.ip()),
                "-d".to_owned(),
                host(flow.broker.ip()),
                "-p".to_owned(),
                "tcp".to_owned(),
                "-m".to_owned(),
                "tcp".to_owned(),
                "--sport".to_owned(),
                flow.client.port().to_string(),
                "--dport".to_owned(),
                flow.broker.port().to_string(),
            ];
            Rule::new(id, args, target(verdict))
        })
        .collect()
}

/// The expressible parts of a signature, family-independent: each list holds alternatives
/// (any one must match), and every list must be matched.
struct SignatureParts {
    /// Api words; empty means the signature matches nothing.
    words: Vec<ApiWord>,
    client_id: ClientId,
    /// Alternatives for the topic; `None` means any topic.
    topics: Option<Vec<Vec<u8>>>,
    group_ids: Option<Vec<Vec<u8>>>,
    transactional_ids: Option<Vec<Vec<u8>>>,
    /// A condition could not be expressed: no rules.
    disabled: bool,
}

enum ClientId {
    Any,
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
}

impl SignatureParts {
    fn of(signature: &Signature) -> (Self, Exactness) {
        let mut gaps = Vec::new();
        let versions = match signature.api_versions {
            None => Some((0, i16::MAX)),
            Some((min, max)) => {
                let min = min.max(0);
                (min <= max).then_some((min, max))
            }
        };
        let words = match versions {
            None => Vec::new(),
            Some(versions) if signature.api_keys.is_empty() => vec![ApiWord::AnyKey { versions }],
            Some(versions) => signature
                .api_keys
                .iter()
                .filter(|key| **key >= 0)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|&key| ApiWord::Key { key, versions })
                .collect(),
        };
        let client_id = match &signature.client_id {
            None => ClientId::Any,
            Some(ClientIdPattern::Regex(_)) => {
                gaps.push(Gap::ClientIdRegex);
                ClientId::Any
            }
            Some(ClientIdPattern::Exact(id)) if id.len() + 2 > offsets::MAX_PATTERN => {
                gaps.push(Gap::ClientIdTooLong { len: id.len() });
                ClientId::Any
            }
            Some(ClientIdPattern::Prefix(prefix)) if prefix.len() > offsets::MAX_PATTERN => {
                gaps.push(Gap::ClientIdTooLong { len: prefix.len() });
                ClientId::Any
            }
            Some(ClientIdPattern::Exact(id)) => ClientId::Exact(id.clone()),
            Some(ClientIdPattern::Prefix(prefix)) if prefix.is_empty() => ClientId::Any,
            Some(ClientIdPattern::Prefix(prefix)) => ClientId::Prefix(prefix.clone()),
        };
        let topics = if signature.topics.is_empty() && signature.topic_ids.is_empty() {
            None
        } else {
            let mut alternatives = Vec::new();
            for (index, topic) in signature.topics.iter().enumerate() {
                match offsets::string_encodings(topic) {
                    Some(encodings) => alternatives.extend(encodings),
                    None => gaps.push(Gap::TopicTooLong { index }),
                }
            }
            if !signature.topics.is_empty() && signature.topic_ids.is_empty() {
                gaps.push(Gap::NoTopicIdsYet);
            }
            alternatives.extend(signature.topic_ids.iter().map(|id| id.to_vec()));
            gaps.push(Gap::TopicsWithinWindow);
            Some(dedup(alternatives))
        };
        let mut string_field = |value: &Option<Vec<u8>>, anywhere: Gap, too_long: Gap| {
            let value = value.as_ref()?;
            match offsets::string_encodings(value) {
                Some(encodings) => {
                    gaps.push(anywhere);
                    Some(dedup(encodings.into()))
                }
                None => {
                    gaps.push(too_long);
                    Some(Vec::new())
                }
            }
        };
        let group_ids = string_field(
            &signature.group_id,
            Gap::GroupIdAnywhere,
            Gap::GroupIdTooLong,
        );
        let transactional_ids = string_field(
            &signature.transactional_id,
            Gap::TransactionalIdAnywhere,
            Gap::TransactionalIdTooLong,
        );
        let exactness = Exactness { gaps };
        let parts = Self {
            words,
            client_id,
            topics,
            group_ids,
            transactional_ids,
            disabled: exactness.signature_disabled(),
        };
        (parts, exactness)
    }

    /// Every combination of alternatives, as match arguments for `family`: the u32 test
    /// first (cheap, and it guards the string searches), then the string searches.
    fn matches(&self, family: Family) -> Vec<Vec<String>> {
        if self.disabled {
            return Vec::new();
        }
        let (client_id, client_id_len) = match &self.client_id {
            ClientId::Any => (None, ClientIdLen::UNKNOWN),
            ClientId::Exact(id) => (
                offsets::client_id_exact(family, id),
                ClientIdLen {
                    min: id.len(),
                    max: id.len(),
                },
            ),
            ClientId::Prefix(prefix) => (
                offsets::client_id_prefix(family, prefix),
                ClientIdLen {
                    min: prefix.len(),
                    ..ClientIdLen::UNKNOWN
                },
            ),
        };
        let in_body = |alternatives: &Option<Vec<Vec<u8>>>| -> Vec<Option<StringMatch>> {
            match alternatives {
                None => vec![None],
                Some(patterns) => patterns
                    .iter()
                    .map(|pattern| Some(offsets::in_body(family, client_id_len, pattern.clone())))
                    .collect(),
            }
        };
        let (topics, groups, transactions) = (
            in_body(&self.topics),
            in_body(&self.group_ids),
            in_body(&self.transactional_ids),
        );
        let mut out = Vec::new();
        for word in &self.words {
            for topic in &topics {
                for group in &groups {
                    for transaction in &transactions {
                        let mut args: Vec<String> = vec![
                            "-m".to_owned(),
                            "u32".to_owned(),
                            "--u32".to_owned(),
                            offsets::request_head(family, *word),
                        ];
                        for search in [&client_id, topic, group, transaction]
                            .into_iter()
                            .flatten()
                        {
                            args.extend(search.args());
                        }
                        out.push(args);
                    }
                }
            }
        }
        out
    }
}

/// Removes repeated alternatives, keeping the first of each.
fn dedup(patterns: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut seen = BTreeSet::new();
    patterns
        .into_iter()
        .filter(|pattern| seen.insert(pattern.clone()))
        .collect()
}
