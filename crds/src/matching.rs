//! Which Kafka requests a fault hits: [`FaultMatch`] and its parts.
//!
//! The match is shared, unchanged, by `KafkaFault` (what the user asks for) and
//! `KafkaFaultInjection` (what the agent enforces), so the CEL rules it carries guard both.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kafka_protocol::messages::ApiKey;
use kube::KubeSchema;
use kube::core::Rule;
use serde::{Deserialize, Serialize};

/// The port Kafka brokers listen on unless told otherwise.
pub const DEFAULT_KAFKA_PORT: u16 = 9092;

/// Serde default for the `ports` of a fault and of an injection.
pub(crate) fn default_ports() -> Vec<u16> {
    vec![DEFAULT_KAFKA_PORT]
}

/// Which requests a fault hits. Every condition that is set must hold; an empty match hits
/// every request on the selected ports.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultMatch {
    /// Kafka APIs to hit, by name as in the Kafka protocol (Produce, Fetch, Metadata,
    /// JoinGroup, ...). Empty means every API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), transform = api_key_name_enum)]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub api_keys: Vec<String>,

    /// The request versions to hit, inclusive. Absent means every version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_versions: Option<ApiVersionRange>,

    /// The client.id of the requests to hit (set exactly one of exact, prefix or regex).
    /// Absent means every client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientIdMatch>,

    /// Topic names: hit requests that touch any of them. Requests that name topics by ID
    /// (Fetch v13+) are resolved by the agent. Empty means any topic, or none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 249), regex(pattern = "^[a-zA-Z0-9._-]+$"))
    )]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(t, t != '.' && t != '..')")
            .message("'.' and '..' are not valid Kafka topic names")
    )]
    pub topics: Vec<String>,

    /// The consumer group id (group.id) of the requests to hit. Requests that carry a group id
    /// (JoinGroup, SyncGroup, Heartbeat, OffsetCommit, ...) match by it; requests that carry
    /// none (Fetch, ListOffsets) match when their client (address and client.id) was seen
    /// in a request of this group, so apiKeys [Fetch] with a groupId starves that group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub group_id: Option<String>,

    /// The transactional.id of the requests to hit. Only transactional requests
    /// (InitProducerId, AddPartitionsToTxn, EndTxn, Produce with transactions, ...) can match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub transactional_id: Option<String>,

    /// Client source addresses to hit, in CIDR notation (10.0.0.0/8, fd00::/8). Empty means
    /// every source.
    #[serde(default, rename = "sourceCIDRs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    #[x_kube(
        merge_strategy = ListMerge::Set,
        validation = Rule::new("self.all(c, isCIDR(c))")
            .message("each entry must be a CIDR such as 10.0.0.0/8 or fd00::/8")
    )]
    pub source_cidrs: Vec<String>,

    /// Client pods to hit, by label, in the fault's namespace (e.g. the other brokers, to cut
    /// one broker off from its followers). The operator resolves it to the selected pods' IP
    /// addresses and keeps them current as pods come and go; they are enforced like
    /// sourceCIDRs (with both set, a source must be in both). While it selects no pod the
    /// fault has no injection and hits nothing. Needs the operator: `kafka-shock inject`
    /// refuses it (use sourceCIDRs there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = crate::selector::non_empty_rule(
            "sourceSelector must set matchLabels or matchExpressions; leave it out to hit every source"
        ),
        validation = crate::selector::operators_rule(),
        validation = crate::selector::values_needed_rule(),
        validation = crate::selector::values_forbidden_rule()
    )]
    pub source_selector: Option<LabelSelector>,
}

/// Why a match with a `sourceSelector` cannot be enforced as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourcesError {
    /// The selector was not resolved to addresses (only the operator can: it lists pods).
    #[error(
        "spec.match.sourceSelector needs the operator, which resolves it to the selected pods' addresses; without Kubernetes, name the sources with spec.match.sourceCIDRs"
    )]
    Unresolved,
    /// The selector selects no pod (within sourceCIDRs, when set): the fault hits nothing.
    #[error(
        "spec.match.sourceSelector selects no pod (with an address, within sourceCIDRs): the fault hits nothing"
    )]
    NoSource,
}

impl FaultMatch {
    /// The match as enforced, given the addresses of the pods `sourceSelector` selects
    /// (`selected`, resolved by the operator): sourceCIDRs become those addresses (the ones
    /// within sourceCIDRs, when it is set), one host each, and the selector is gone. Without a
    /// selector the match is unchanged. An empty selection is an error, never "every source".
    pub fn with_selected_sources(&self, selected: Option<&[String]>) -> Result<Self, SourcesError> {
        if self.source_selector.is_none() {
            return Ok(self.clone());
        }
        let selected = selected.ok_or(SourcesError::Unresolved)?;
        let within: Vec<Cidr> = self
            .source_cidrs
            .iter()
            .filter_map(|cidr| cidr.parse().ok())
            .collect();
        let hosts: std::collections::BTreeSet<String> = selected
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .map(Cidr::host)
            .filter(|host| within.is_empty() || within.iter().any(|c| c.contains(host.addr)))
            .map(|host| host.to_string())
            .collect();
        if hosts.is_empty() {
            return Err(SourcesError::NoSource);
        }
        Ok(Self {
            source_cidrs: hosts.into_iter().collect(),
            source_selector: None,
            ..self.clone()
        })
    }
}

/// An inclusive range of request versions. Either end may be left open.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max")
    .message("min must not be greater than max"))]
pub struct ApiVersionRange {
    /// Lowest version to hit (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min: Option<i16>,
    /// Highest version to hit (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max: Option<i16>,
}

/// How to match the client.id of a request: set exactly one of exact, prefix or regex.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new(
    "(has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + (has(self.regex) ? 1 : 0) == 1"
).message("set exactly one of exact, prefix or regex"))]
pub struct ClientIdMatch {
    /// The whole client.id, byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub exact: Option<String>,
    /// The start of the client.id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub prefix: Option<String>,
    /// A regular expression the client.id must match; it is not anchored, so write ^...$ to
    /// match the whole id. Signature enforcement cannot match regexes. The API server refuses
    /// one that does not compile as RE2 (Go's syntax); the agent compiles it as a Rust regex.
    /// The two agree on the common syntax (classes, \pL, (?i), anchors, repetition; neither has
    /// lookaround or backreferences) and differ on rarities: \Q...\E is RE2 only (the fault is
    /// then marked Valid=False), (?x) is Rust only (the server refuses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = compiles_as_regex())]
    pub regex: Option<String>,
}

/// The CEL rule that makes the API server refuse a regex that does not compile: `matches`
/// compiles its argument, and a pattern that does not compile is an evaluation error, which
/// fails the rule (`x || !x` is true for any regex that compiles, matching or not).
fn compiles_as_regex() -> Rule {
    Rule::new("''.matches(self) || !''.matches(self)")
        .message("must be a regular expression in RE2 syntax")
}

/// Every Kafka API name this build knows, in api-key order: the names `apiKeys` accepts.
pub fn api_key_names() -> impl Iterator<Item = String> {
    ApiKey::iter().map(|key| format!("{key:?}"))
}

/// The API with this protocol name (`"Produce"` is [`ApiKey::Produce`]); names are
/// case-sensitive, as in the Kafka protocol specification.
pub fn api_key_by_name(name: &str) -> Option<ApiKey> {
    ApiKey::iter().find(|key| format!("{key:?}") == name)
}

/// Limits `apiKeys` items to the API names of the kafka-protocol crate, so that the API server
/// rejects a misspelt name at apply time instead of the fault silently matching nothing.
fn api_key_name_enum(schema: &mut schemars::Schema) {
    if let Some(items) = schema.get_mut("items").and_then(|i| i.as_object_mut()) {
        items.insert("enum".into(), api_key_names().collect());
    }
}

/// Why a `sourceCIDRs` entry is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/prefix` part.
    #[error("{0:?} has no /prefix length; write e.g. 10.0.0.0/8 (or 10.0.0.1/32 for one host)")]
    MissingPrefix(String),
    /// The part before the slash is not an IP address.
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    BadAddress(String),
    /// The prefix length is not a number within the address family's width.
    #[error("{0:?} is not a valid prefix length for this address")]
    BadPrefix(String),
}

/// A parsed `sourceCIDRs` entry: an address and how many leading bits of it are significant.
/// Accepts what Kubernetes' CEL `isCIDR()` accepts, host bits included (`10.0.0.1/8`), and
/// shows as written; [`Cidr::network`] is the block as a kernel rule states it. The one CIDR
/// type of kafka-shock: validation, request matching and the rule compiler all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The address as written.
    pub addr: IpAddr,
    /// The number of leading bits that must match.
    pub prefix_len: u8,
}

impl Cidr {
    /// The block of one host: `/32`, or `/128` for IPv6 (an IPv4-mapped IPv6 address is taken
    /// as the IPv4 address it carries, as the packets carrying it are IPv4 on the wire).
    pub fn host(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix_len }
    }

    /// The block in canonical form, as a kernel rule states it: host bits cleared, and an
    /// IPv4-mapped IPv6 block of at least 96 bits as the IPv4 block it maps. Equal blocks then
    /// compare and show equal (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn network(&self) -> Self {
        let (addr, prefix_len) = match self.addr {
            IpAddr::V6(v6) if self.prefix_len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), self.prefix_len - 96),
                None => (self.addr, self.prefix_len),
            },
            other => (other, self.prefix_len),
        };
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(
                mask(u32::from(v4).into(), prefix_len, 32) as u32,
            )),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(mask(v6.into(), prefix_len, 128))),
        };
        Self { addr, prefix_len }
    }

    /// Whether `ip` falls inside this block (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u32::from(net).into(),
                u32::from(ip).into(),
                self.prefix_len,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.into(), ip.into(), self.prefix_len, 128)
            }
            _ => false,
        }
    }
}

/// `bits` (a `width`-bit number) with all but its top `prefix_len` bits cleared.
fn mask(bits: u128, prefix_len: u8, width: u32) -> u128 {
    let ignored = width - u32::from(prefix_len);
    bits.checked_shr(ignored)
        .and_then(|top| top.checked_shl(ignored))
        .unwrap_or(0)
}

/// Compares the top `prefix_len` bits of two `width`-bit numbers.
fn prefix_eq(a: u128, b: u128, prefix_len: u8, width: u32) -> bool {
    let ignored = width - u32::from(prefix_len);
    a.checked_shr(ignored).unwrap_or(0) == b.checked_shr(ignored).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| CidrError::MissingPrefix(s.to_owned()))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(addr.to_owned()))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let bad_prefix = || CidrError::BadPrefix(prefix.to_owned());
        // Like Go's netip.ParsePrefix (behind CEL isCIDR): decimal digits, no leading zero.
        if prefix.is_empty()
            || !prefix.bytes().all(|b| b.is_ascii_digit())
            || (prefix.len() > 1 && prefix.starts_with('0'))
        {
            return Err(bad_prefix());
        }
        let prefix_len: u8 = prefix.parse().map_err(|_| bad_prefix())?;
        if prefix_len > width {
            return Err(bad_prefix());
        }
        Ok(Self { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_every_kafka_api_by_name() {
        assert_eq!(api_key_by_name("Produce"), Some(ApiKey::Produce));
        assert_eq!(api_key_by_name("Fetch"), Some(ApiKey::Fetch));
        assert_eq!(
            api_key_by_name("ConsumerGroupHeartbeat"),
            Some(ApiKey::ConsumerGroupHeartbeat)
        );
        assert_eq!(api_key_by_name("produce"), None);
        assert_eq!(api_key_by_name("Nope"), None);
        assert_eq!(api_key_names().count(), ApiKey::iter().count());
        assert!(api_key_names().all(|name| api_key_by_name(&name).is_some()));
    }

    #[test]
    fn parses_cidrs_like_cel_is_cidr() {
        for ok in [
            "10.0.0.0/8",
            "10.0.0.1/8",
            "0.0.0.0/0",
            "1.2.3.4/32",
            "fd00::/8",
            "::1/128",
        ] {
            let cidr: Cidr = ok.parse().unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(cidr.to_string(), ok);
        }
        let bad = [
            ("10.0.0.0", "no /prefix"),
            ("10.0.0/8", "not an IPv4"),
            ("010.0.0.0/8", "not an IPv4"),
            ("10.0.0.0/33", "prefix length"),
            ("10.0.0.0/08", "prefix length"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/+8", "prefix length"),
            ("fd00::/129", "prefix length"),
            ("nope/8", "not an IPv4"),
        ];
        for (input, reason) in bad {
            let err = input.parse::<Cidr>().expect_err(input).to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn cidr_contains_its_addresses_only() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.255.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.1.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let host: Cidr = "fd00::1/128".parse().unwrap();
        assert!(host.contains("fd00::1".parse().unwrap()));
        assert!(!host.contains("fd00::2".parse().unwrap()));
    }

    #[test]
    fn selected_sources_replace_the_selector_and_never_widen() {
        let selector = LabelSelector {
            match_labels: Some([("app".into(), "kafka".into())].into()),
            ..LabelSelector::default()
        };
        let by_pods = FaultMatch {
            source_selector: Some(selector),
            ..FaultMatch::default()
        };
        let ips = ["10.1.0.7".to_owned(), "fd00::7".into(), "10.1.0.7".into()];
        let resolved = by_pods.with_selected_sources(Some(&ips)).unwrap();
        assert_eq!(resolved.source_cidrs, ["10.1.0.7/32", "fd00::7/128"]);
        assert_eq!(resolved.source_selector, None);
        assert_eq!(
            by_pods.with_selected_sources(Some(&[])),
            Err(SourcesError::NoSource),
            "no pod selected never means every source"
        );
        assert_eq!(
            by_pods.with_selected_sources(None),
            Err(SourcesError::Unresolved)
        );
        let both = FaultMatch {
            source_cidrs: vec!["10.1.0.0/24".into()],
            ..by_pods.clone()
        };
        let resolved = both.with_selected_sources(Some(&ips)).unwrap();
        assert_eq!(resolved.source_cidrs, ["10.1.0.7/32"], "within sourceCIDRs");
        let elsewhere = ["10.2.0.1".to_owned()];
        assert_eq!(
            both.with_selected_sources(Some(&elsewhere)),
            Err(SourcesError::NoSource)
        );
        let plain = FaultMatch::default();
        assert_eq!(plain.with_selected_sources(None).unwrap(), plain);
    }

    #[test]
    fn cidrs_parse_and_mask() {
        let network = |text: &str| text.parse::<Cidr>().unwrap().network().to_string();
        assert_eq!(network("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(
            Cidr::host("fd00::1".parse().unwrap()).to_string(),
            "fd00::1/128"
        );
        assert_eq!(
            Cidr::host("::ffff:10.0.0.1".parse().unwrap()).to_string(),
            "10.0.0.1/32"
        );
        assert_eq!(network("::ffff:10.0.0.1/104"), "10.0.0.0/8");
        assert_eq!(network("fd00::1:2/64"), "fd00::/64");
        assert_eq!(network("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(network("::/0"), "::/0");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("x/8".parse::<Cidr>().is_err());
    }
}
