//! Handover: which connections to the broker ports were opened before a Proxy fault and so
//! bypass its redirect. The edge reads `/proc/net/tcp` and `/proc/net/tcp6` from a thread in
//! the broker's network namespace; this module reads the text. The fault's handover Reset rule
//! resets each of these connections at its next segment, and the edge counts those that have
//! gone since as handed over.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use kafka_shock_crds::Cidr;

/// `st` of an established TCP socket in `/proc/net/tcp`.
const ESTABLISHED: &str = "01";

/// One TCP connection as the broker's side of it shows: (local, remote).
pub type Socket = (SocketAddr, SocketAddr);

/// The established connections in a `/proc/net/tcp` or `/proc/net/tcp6` text whose local port
/// is one of `ports` and whose remote address is in `sources` (any, when empty), as the
/// broker's sockets: the connections clients opened to it. Connections the namespace opened to
/// itself (from its own address or loopback) are left out: the handover rule spares them.
/// Lines it cannot read are skipped.
pub fn established_to(text: &str, ports: &[u16], sources: &[Cidr]) -> BTreeSet<Socket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = address(fields.next()?)?;
            let remote = address(fields.next()?)?;
            (fields.next()? == ESTABLISHED).then_some((local, remote))
        })
        .filter(|(local, remote)| {
            ports.contains(&local.port())
                && remote.ip() != local.ip()
                && !remote.ip().is_loopback()
                && (sources.is_empty() || sources.iter().any(|c| c.contains(remote.ip())))
        })
        .collect()
}

/// `0100007F:2384` (the kernel prints each 32-bit word of the address in host byte order).
fn address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes)).to_canonical()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0A004D0A:2384 64004D0A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0A004D0A:2384 65004D0A:9C41 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0A004D0A:9C42 0A004D0A:2384 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 20 4 30 10 -1
   4: 0A004D0A:2384 0A004D0A:9C42 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 20 4 30 10 -1
   5: 0100007F:2384 0100007F:9C45 01 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 20 4 30 10 -1
   6: garbage
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF00000A004D0A:2384 0000000000000000FFFF000064004D0A:9C43 01 00000000:00000000
   1: 000077FD000000000000000002000000:2384 000077FD000000000000000005000000:9C44 01 00000000:00000000
";

    #[test]
    fn reads_the_broker_side_of_established_connections_to_its_ports() {
        let all = established_to(TCP, &[9092], &[]);
        let remotes: Vec<String> = all.iter().map(|(_, r)| r.to_string()).collect();
        // The listener (0A) and both sides of the namespace's connections to itself (its own
        // address, loopback) are left out.
        assert_eq!(remotes, ["10.77.0.100:40000", "10.77.0.101:40001"]);
        assert_eq!(all.iter().next().unwrap().0.to_string(), "10.77.0.10:9092");
        let one: Vec<Cidr> = vec!["10.77.0.101/32".parse().unwrap()];
        assert_eq!(established_to(TCP, &[9092], &one).len(), 1);
        assert!(established_to(TCP, &[9093], &[]).is_empty());
        let v6 = established_to(TCP6, &[9092], &[]);
        let remotes: Vec<String> = v6.iter().map(|(_, r)| r.to_string()).collect();
        assert_eq!(remotes, ["10.77.0.100:40003", "[fd77::5]:40004"]);
    }
}
