//! Where sniffed packets come from: a pcap/pcapng file, or a live libpcap capture (a
//! TPACKET_V3 ring) opened inside a network namespace. Both hand the pure core the same thing: link-layer frames with
//! their capture time. `writer` saves chosen packets back to a pcap file for Wireshark.
//!
//! An edge: it uses the library's link types and capture filter and [`crate::edges::netns`];
//! `sniff` and the session read from it.

pub mod file;
pub mod live;
pub mod writer;

use std::borrow::Cow;
use std::time::Duration;

use kafka_shock_agent::wire::packet::LinkType;

/// One captured frame. A file source lends it from its read buffer (no copy per packet); a
/// live source owns it.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub link: LinkType,
    /// Link-layer pcap type number of `link`, kept for writing the frame back out.
    pub linktype: u32,
    pub data: Cow<'a, [u8]>,
    /// Capture time since the Unix epoch.
    pub ts: Duration,
}

impl Packet<'_> {
    /// The packet with its bytes copied, to keep it past the source's next packet.
    pub fn detached(&self) -> Packet<'static> {
        Packet {
            link: self.link,
            linktype: self.linktype,
            data: Cow::Owned(self.data.to_vec()),
            ts: self.ts,
        }
    }
}

/// What a capture source yields next.
#[derive(Debug)]
pub enum Next<'a> {
    Packet(Packet<'a>),
    /// Nothing arrived within the poll interval (live capture only).
    Idle,
    /// The source has no more packets.
    End,
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a pcap or pcapng capture (it starts with bytes {magic})")]
    NotACapture { path: String, magic: String },
    #[error("{path}: {detail}")]
    Malformed { path: String, detail: String },
    #[error(
        "{path}: link type {linktype} is not supported (Ethernet, Linux cooked SLL/SLL2 and raw IP are)"
    )]
    UnsupportedLinkType { path: String, linktype: u32 },
    #[error(transparent)]
    Netns(#[from] crate::edges::netns::NetnsError),
    #[error("cannot open a capture socket in the namespace: {0}")]
    Socket(std::io::Error),
    #[error("interface {name:?} does not exist in the namespace")]
    NoSuchInterface { name: String },
    #[error("live capture (libpcap): {0}")]
    Pcap(String),
    #[error("the capture thread stopped: {0}")]
    Thread(String),
}
