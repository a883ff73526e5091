//! What the rule compiler is asked to enforce. The CLI and the agent map a user's KafkaFault
//! onto these plain types, so the compiler never sees Kubernetes objects.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

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
    /// Sources the fault applies to; empty means any source.
    pub source_cidrs: Vec<IpCidr>,
    /// Which kinds of rule the chain holds.
    pub layers: Layers,
}

/// The kinds of rule a chain holds. The caller maps the fault's enforcement onto it: Signature
/// → [`Layers::Signature`], Connection → [`Layers::Connection`], Auto → [`Layers::Both`] when
/// the signature is not exact (see [`crate::rules::Exactness`]), Inline → [`Layers::Inline`].
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
    /// Hold the request, then let it through: only an Inline chain can (the kernel's rules
    /// cannot wait), so signature and connection rules of a Delay are left out
    /// ([`crate::rules::Gap::DelayNeedsInline`]).
    Delay,
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

/// An IPv4 or IPv6 network, kept in canonical form (host bits cleared) so that equal networks
/// compare and render equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpCidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `address` or `address/prefix`.
    #[error("{0:?} is not an IP address or CIDR")]
    Syntax(String),
    /// A prefix longer than the address.
    #[error("prefix /{prefix} is longer than the address ({max} bits)")]
    Prefix {
        /// The prefix asked for.
        prefix: u8,
        /// The address length in bits.
        max: u8,
    },
}

impl IpCidr {
    /// The network of `addr` with `prefix` bits (host bits are cleared).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let network = addr.to_canonical();
        let max = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            return Err(CidrError::Prefix { prefix, max });
        }
        let network = match network {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Ok(Self { network, prefix })
    }

    /// The family of the network.
    pub fn family(&self) -> Family {
        Family::of(self.network)
    }
}

impl FromStr for IpCidr {
    type Err = CidrError;

    /// `10.0.0.0/8`, `fd00::/64`, or a bare address (a host network).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| syntax())?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let host_prefix = match addr.to_canonical() {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        Self::new(addr, prefix.unwrap_or(host_prefix))
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}
