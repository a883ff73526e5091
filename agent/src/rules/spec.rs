//! What the rule compiler is asked to enforce. The CLI and the agent map a user's KafkaFault
//! onto these plain types, so the compiler never sees Kubernetes objects.

use std::net::{IpAddr, SocketAddr};

use kafka_shock_crds::Cidr;

/// One fault in one network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// The caller's id (a Kubernetes UID or an id the CLI made up). It may hold anything: the
    /// chain name is a hash of it and the rule comments carry a sanitised copy.
    pub id: String,
    /// Broker ports (the TCP destination port of requests). Empty means every TCP port.
    pub ports: Vec<u16>,
    /// What to match on the wire.
    pub signature: Signature,
    /// What happens to a matching segment.
    pub verdict: Verdict,
    /// Percent of matching segments hit, 1..=100 (0 is treated as 1, above 100 as 100).
    /// Applies to signature rules only: a connection rule exists because the sniffer already
    /// decided, per request, to hit that flow.
    pub probability: u8,
    /// Sources the fault applies to; empty means any source. Rules state each as its network
    /// ([`Cidr::network`]).
    pub source_cidrs: Vec<Cidr>,
    /// Which kinds of rule the chain holds.
    pub layers: Layers,
}

/// The kinds of rule a chain holds. The caller maps the fault's enforcement onto it: Signature
/// → [`Layers::Signature`], Connection → [`Layers::Connection`], Auto → [`Layers::Both`] when
/// the signature is not exact (see [`crate::rules::Exactness`]), Inline → [`Layers::Inline`],
/// Proxy → [`Layers::Proxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layers {
    /// Rules on the request bytes only.
    Signature,
    /// One rule per flow the sniffer caught, only.
    Connection,
    /// Flow rules first, then the signature rules.
    Both,
    /// Every segment to the broker ports goes to this NFQUEUE number, where the agent decides
    /// per packet with the whole stream in view (`--queue-bypass`: traffic flows untouched
    /// when nobody reads the queue).
    Inline {
        /// The queue number; see [`crate::rules::inline_queue`].
        queue: u16,
    },
    /// New connections to the broker ports (per source CIDR) are redirected to the proxy
    /// listening on `port` in the namespace (a nat chain jumped to from PREROUTING), and,
    /// with `reset_established`, the connections that are not (opened before the fault) are
    /// reset once at their next segment, so their clients reconnect through the proxy. The
    /// proxy's own upstream connections carry [`crate::rules::PROXY_MARK`], which every jump
    /// to our filter chains excludes.
    Proxy {
        /// The proxy's listening port.
        port: u16,
        /// Reset the connections not redirected (handover Reset).
        reset_established: bool,
    },
}

impl Layers {
    pub(crate) fn signature(self) -> bool {
        matches!(self, Self::Signature | Self::Both)
    }

    pub(crate) fn connection(self) -> bool {
        matches!(self, Self::Connection | Self::Both)
    }
}

/// What a request must look like on the wire. Every present condition must hold; lists are
/// alternatives (any api key of `api_keys`, any topic of `topics` or `topic_ids`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// Api keys; empty means any api.
    pub api_keys: Vec<i16>,
    /// Inclusive version range; `None` means any version.
    pub api_versions: Option<(i16, i16)>,
    /// The request header's client id.
    pub client_id: Option<ClientIdPattern>,
    /// Topic names, as raw bytes.
    pub topics: Vec<Vec<u8>>,
    /// Topic ids of `topics`, learned by the sniffer from Metadata responses; Produce v13+ and
    /// Fetch v13+ name topics by id only.
    pub topic_ids: Vec<[u8; 16]>,
    /// Consumer or share group id.
    pub group_id: Option<Vec<u8>>,
    /// Transactional id.
    pub transactional_id: Option<Vec<u8>>,
}

/// How the client id must look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdPattern {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// Starting with these bytes.
    Prefix(Vec<u8>),
    /// A regular expression; the kernel cannot evaluate it (Connection or Inline only).
    Regex(String),
}

/// What happens to a matching segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A TCP reset: the client sees the connection die at once.
    Reject,
    /// A blackhole: the client's TCP retransmits until it gives up or times out.
    Drop,
    /// Hold the request, then let it through: only an Inline chain or the proxy can (the
    /// kernel's rules cannot wait), so signature and connection rules of a Delay are left out
    /// ([`crate::rules::Gap::DelayNeedsInline`]).
    Delay,
    /// What the proxy does per request (a Kafka error, a throttle, a corruption, a
    /// duplicate): only a Proxy chain carries it, so other rules of it are left out
    /// ([`crate::rules::Gap::NeedsProxy`]).
    Proxy,
}

/// A TCP connection the sniffer saw carry a matching request; Connection mode cuts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    /// The client's end (source of requests).
    pub client: SocketAddr,
    /// The broker's end (destination of requests).
    pub broker: SocketAddr,
}

/// IPv4 or IPv6: each has its own table (iptables or ip6tables) and chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// iptables.
    V4,
    /// ip6tables.
    V6,
}

impl Family {
    /// The family of an address; IPv4-mapped IPv6 addresses count as IPv4, as the packets
    /// carrying them are IPv4 on the wire.
    pub fn of(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
}
