//! Parsing one captured link-layer frame into a TCP segment.
//!
//! Hand-rolled on purpose: the sniffer needs only the addresses, the TCP
//! sequence numbers, the flags and the payload, and every read here is bounds
//! checked so that a hostile or truncated capture yields an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Link-layer header types the sniffer understands (pcap `LINKTYPE_*` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II, with any number of 802.1Q / 802.1ad VLAN tags (LINKTYPE 1).
    Ethernet,
    /// Linux "cooked" capture v1, what `tcpdump -i any` writes (LINKTYPE 113).
    LinuxSll,
    /// Linux "cooked" capture v2 (LINKTYPE 276).
    LinuxSll2,
    /// Raw IP, version taken from the first nibble (LINKTYPE 101, and 228/229).
    RawIp,
}

impl LinkType {
    /// Maps a pcap link type number to the ones this parser supports, so the
    /// CLI can reject a capture it cannot read before feeding it.
    pub fn from_linktype(linktype: u32) -> Option<Self> {
        match linktype {
            1 => Some(Self::Ethernet),
            113 => Some(Self::LinuxSll),
            276 => Some(Self::LinuxSll2),
            101 | 228 | 229 => Some(Self::RawIp),
            _ => None,
        }
    }
}

/// TCP flags the reassembler acts upon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// Connection open: the next byte is sequence number + 1.
    pub syn: bool,
    /// Orderly close of one direction.
    pub fin: bool,
    /// Abortive close of the connection.
    pub rst: bool,
    /// The acknowledgement number is valid.
    pub ack: bool,
    /// The sender pushed data (informational).
    pub psh: bool,
}

impl TcpFlags {
    fn from_byte(byte: u8) -> Self {
        Self {
            fin: byte & 0x01 != 0,
            syn: byte & 0x02 != 0,
            rst: byte & 0x04 != 0,
            psh: byte & 0x08 != 0,
            ack: byte & 0x10 != 0,
        }
    }
}

/// One TCP segment as seen on the wire, borrowing its payload from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Sender address.
    pub src: SocketAddr,
    /// Receiver address.
    pub dst: SocketAddr,
    /// Sequence number of the first payload byte (or of the SYN/FIN).
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// TCP payload; may exceed the MTU when the capture saw GRO/GSO super-segments.
    pub payload: &'a [u8],
}

/// Why a frame did not yield a TCP segment. Most are expected on a busy
/// interface (ARP, UDP, fragments) and are only counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The frame ended before a header it announced.
    #[error("truncated {0} header")]
    Truncated(&'static str),
    /// Not IPv4 or IPv6.
    #[error("unsupported ethertype {0:#06x}")]
    UnsupportedEtherType(u16),
    /// The IP version nibble is neither 4 nor 6.
    #[error("unsupported IP version {0}")]
    UnsupportedIpVersion(u8),
    /// A header length field is inconsistent with the frame.
    #[error("invalid {0} header length")]
    BadHeaderLength(&'static str),
    /// A non-first or non-final IP fragment; reassembling IP fragments is out of scope.
    #[error("IP fragment")]
    Fragment,
    /// An IPv6 extension header that cannot be skipped (e.g. ESP).
    #[error("unsupported IPv6 next header {0}")]
    UnsupportedIpv6Header(u8),
    /// An IP packet that is not TCP.
    #[error("not TCP (IP protocol {0})")]
    NotTcp(u8),
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const MAX_VLAN_TAGS: usize = 4;
const MAX_IPV6_EXTENSIONS: usize = 8;
const IP_PROTO_TCP: u8 = 6;

/// Parses one captured frame of the given link type into a TCP segment.
pub fn parse_frame(link: LinkType, frame: &[u8]) -> Result<TcpSegment<'_>, PacketError> {
    match link {
        LinkType::Ethernet => parse_ethernet(frame),
        LinkType::LinuxSll => {
            let ethertype = read_u16(frame, 14, "SLL")?;
            parse_ethertype(ethertype, rest(frame, 16, "SLL")?)
        }
        LinkType::LinuxSll2 => {
            let ethertype = read_u16(frame, 0, "SLL2")?;
            parse_ethertype(ethertype, rest(frame, 20, "SLL2")?)
        }
        LinkType::RawIp => parse_ip(frame),
    }
}

fn parse_ethernet(frame: &[u8]) -> Result<TcpSegment<'_>, PacketError> {
    let mut ethertype = read_u16(frame, 12, "Ethernet")?;
    let mut offset = 14;
    for _ in 0..MAX_VLAN_TAGS {
        // 802.1Q, 802.1ad and the older QinQ tag.
        if !matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        ethertype = read_u16(frame, offset + 2, "VLAN")?;
        offset += 4;
    }
    parse_ethertype(ethertype, rest(frame, offset, "Ethernet")?)
}

fn parse_ethertype(ethertype: u16, packet: &[u8]) -> Result<TcpSegment<'_>, PacketError> {
    match ethertype {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => parse_ip(packet),
        other => Err(PacketError::UnsupportedEtherType(other)),
    }
}

fn parse_ip(packet: &[u8]) -> Result<TcpSegment<'_>, PacketError> {
    let version = packet.first().ok_or(PacketError::Truncated("IP"))? >> 4;
    match version {
        4 => parse_ipv4(packet),
        6 => parse_ipv6(packet),
        other => Err(PacketError::UnsupportedIpVersion(other)),
    }
}

fn parse_ipv4(packet: &[u8]) -> Result<TcpSegment<'_>, PacketError> {
    let header = packet.get(..20).ok_or(PacketError::Truncated("IPv4"))?;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    // A total length of 0 is what TSO super-packets carry when captured on
    // the sending host; the frame length is the truth then.
    let total_len = match usize::from(read_u16(header, 2, "IPv4")?) {
        0 => packet.len(),
        n => n.min(packet.len()),
    };
    if header_len < 20 || header_len > total_len {
        return Err(PacketError::BadHeaderLength("IPv4"));
    }
    let fragment = read_u16(header, 6, "IPv4")?;
    let more_fragments = fragment & 0x2000 != 0;
    if more_fragments || fragment & 0x1fff != 0 {
        return Err(PacketError::Fragment);
    }
    if header[9] != IP_PROTO_TCP {
        return Err(PacketError::NotTcp(header[9]));
    }
    let src = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
    let dst = Ipv4Addr::new(header[16], header[17], header[18], header[19]);
    let tcp = packet
        .get(header_len..total_len)
        .ok_or(PacketError::BadHeaderLength("IPv4"))?;
    parse_tcp(IpAddr::V4(src), IpAddr::V4(dst), tcp)
}

fn parse_ipv6(packet: &[u8]) -> Result<TcpSegment<'_>, PacketError> {
    let header = packet.get(..40).ok_or(PacketError::Truncated("IPv6"))?;
    let payload_len = usize::from(read_u16(header, 4, "IPv6")?);
    let end = match payload_len {
        0 => packet.len(),
        n => (40 + n).min(packet.len()),
    };
    let src = ipv6_at(header, 8)?;
    let dst = ipv6_at(header, 24)?;
    let mut next = header[6];
    let mut offset = 40;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        let ext_len = match next {
            IP_PROTO_TCP => {
                let tcp = packet
                    .get(offset..end)
                    .ok_or(PacketError::BadHeaderLength("IPv6"))?;
                return parse_tcp(IpAddr::V6(src), IpAddr::V6(dst), tcp);
            }
            // Hop-by-hop, routing, destination options: length in 8-octet units.
            0 | 43 | 60 => (usize::from(byte_at(packet, offset + 1, "IPv6 extension")?) + 1) * 8,
            // Fragment header: only an atomic fragment (offset 0, no more) is whole.
            44 => {
                if read_u16(packet, offset + 2, "IPv6 fragment")? & 0xfff9 != 0 {
                    return Err(PacketError::Fragment);
                }
                8
            }
            // Authentication header: length in 4-octet units, minus 2.
            51 => (usize::from(byte_at(packet, offset + 1, "IPv6 AH")?) + 2) * 4,
            other => return Err(PacketError::UnsupportedIpv6Header(other)),
        };
        next = byte_at(packet, offset, "IPv6 extension")?;
        offset += ext_len;
    }
    Err(PacketError::UnsupportedIpv6Header(next))
}

fn parse_tcp(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> Result<TcpSegment<'_>, PacketError> {
    // A fixed-size header: its fields are read without a bounds check each.
    let header: &[u8; 20] = tcp.first_chunk().ok_or(PacketError::Truncated("TCP"))?;
    let data_offset = usize::from(header[12] >> 4) * 4;
    if data_offset < 20 {
        return Err(PacketError::BadHeaderLength("TCP"));
    }
    let payload = tcp
        .get(data_offset..)
        .ok_or(PacketError::BadHeaderLength("TCP"))?;
    let u16_at = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let u32_at = |at: usize| u32::from(u16_at(at)) << 16 | u32::from(u16_at(at + 2));
    Ok(TcpSegment {
        src: SocketAddr::new(src, u16_at(0)),
        dst: SocketAddr::new(dst, u16_at(2)),
        seq: u32_at(4),
        ack: u32_at(8),
        flags: TcpFlags::from_byte(header[13]),
        payload,
    })
}

fn rest<'a>(data: &'a [u8], offset: usize, what: &'static str) -> Result<&'a [u8], PacketError> {
    data.get(offset..).ok_or(PacketError::Truncated(what))
}

fn byte_at(data: &[u8], offset: usize, what: &'static str) -> Result<u8, PacketError> {
    data.get(offset)
        .copied()
        .ok_or(PacketError::Truncated(what))
}

fn read_u16(data: &[u8], offset: usize, what: &'static str) -> Result<u16, PacketError> {
    let bytes = data
        .get(offset..offset + 2)
        .ok_or(PacketError::Truncated(what))?;
    Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn ipv6_at(data: &[u8], offset: usize) -> Result<Ipv6Addr, PacketError> {
    let bytes: [u8; 16] = data
        .get(offset..offset + 16)
        .and_then(|b| b.try_into().ok())
        .ok_or(PacketError::Truncated("IPv6"))?;
    Ok(Ipv6Addr::from(bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an IPv4/TCP packet (no link header), for tests across the crate.
    pub(crate) fn ipv4_tcp(
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            panic!("IPv4 addresses expected");
        };
        let total = 40 + payload.len();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, IP_PROTO_TCP, 0, 0];
        p[2..4].copy_from_slice(&u16::try_from(total).unwrap_or(0).to_be_bytes());
        p.extend_from_slice(&s.octets());
        p.extend_from_slice(&d.octets());
        p.extend_from_slice(&src.port().to_be_bytes());
        p.extend_from_slice(&dst.port().to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn ethernet(ethertype: u16, vlan: bool, packet: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(packet);
        f
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_ethernet_vlan_ipv4() {
        let ip = ipv4_tcp(
            addr("10.0.0.1:40000"),
            addr("10.0.0.2:9092"),
            7,
            0x18,
            b"hi",
        );
        let mut frame = ethernet(ETHERTYPE_IPV4, true, &ip);
        frame.extend_from_slice(&[0; 6]); // Ethernet padding must be ignored.
        let seg = parse_frame(LinkType::Ethernet, &frame).expect("segment");
        assert_eq!(seg.src, addr("10.0.0.1:40000"));
        assert_eq!(seg.dst, addr("10.0.0.2:9092"));
        assert_eq!(seg.seq, 7);
        assert!(seg.flags.psh && seg.flags.ack && !seg.flags.syn);
        assert_eq!(seg.payload, b"hi");
    }

    #[test]
    fn parses_sll_sll2_and_raw() {
        let ip = ipv4_tcp(addr("10.0.0.1:40000"), addr("10.0.0.2:9092"), 1, 0x02, b"");
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        sll.extend_from_slice(&ip);
        assert!(
            parse_frame(LinkType::LinuxSll, &sll)
                .expect("sll")
                .flags
                .syn
        );
        let mut sll2 = ETHERTYPE_IPV4.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(
            parse_frame(LinkType::LinuxSll2, &sll2).expect("sll2").seq,
            1
        );
        assert_eq!(parse_frame(LinkType::RawIp, &ip).expect("raw").seq, 1);
        assert_eq!(LinkType::from_linktype(228), Some(LinkType::RawIp));
        assert_eq!(LinkType::from_linktype(147), None);
    }

    #[test]
    fn parses_ipv6_with_extension_header() {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 0 /* hop-by-hop */, 64];
        let src: Ipv6Addr = "fd00::1".parse().expect("ip");
        let dst: Ipv6Addr = "fd00::2".parse().expect("ip");
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&[IP_PROTO_TCP, 0, 0, 0, 0, 0, 0, 0]);
        let v4 = ipv4_tcp(addr("1.1.1.1:5000"), addr("2.2.2.2:9092"), 9, 0x10, b"abc");
        p.extend_from_slice(&v4[20..]);
        let len = u16::try_from(p.len() - 40).expect("len");
        p[4..6].copy_from_slice(&len.to_be_bytes());
        let seg = parse_frame(LinkType::RawIp, &p).expect("v6");
        assert_eq!(seg.src.to_string(), "[fd00::1]:5000");
        assert_eq!(seg.dst.port(), 9092);
        assert_eq!(seg.payload, b"abc");
    }

    #[test]
    fn rejects_fragments_and_non_tcp() {
        let mut ip = ipv4_tcp(addr("10.0.0.1:1"), addr("10.0.0.2:2"), 1, 0, b"x");
        ip[6] = 0x20; // more fragments
        assert_eq!(
            parse_frame(LinkType::RawIp, &ip),
            Err(PacketError::Fragment)
        );
        ip[6] = 0x40;
        ip[9] = 17;
        assert_eq!(
            parse_frame(LinkType::RawIp, &ip),
            Err(PacketError::NotTcp(17))
        );
        assert_eq!(
            parse_frame(LinkType::Ethernet, &ethernet(0x0806, false, &[0; 28])),
            Err(PacketError::UnsupportedEtherType(0x0806))
        );
    }

    #[test]
    fn truncated_frames_are_errors() {
        let ip = ipv4_tcp(addr("10.0.0.1:1"), addr("10.0.0.2:2"), 1, 0, b"payload");
        let frame = ethernet(ETHERTYPE_IPV4, true, &ip);
        for len in 0..frame.len() {
            let _ = parse_frame(LinkType::Ethernet, &frame[..len]);
            let _ = parse_frame(LinkType::LinuxSll2, &frame[..len]);
        }
    }
}
