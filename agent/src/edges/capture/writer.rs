//! `--write-pcap`: saves the packets of connections that carried a matching request, so they
//! can be opened in Wireshark with their context (Wireshark needs the surrounding segments
//! of a connection to decode a Kafka request).
//!
//! Packets of a connection are held back, in bounded memory, until the connection carries a
//! matching request; from then on they are written as they come. What was held for a
//! connection that never matched is forgotten when the connection ends or the budget runs out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use kafka_shock_agent::wire::packet::parse_frame;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

use super::Packet;

/// A connection, as the unordered pair of its endpoints.
type ConnectionKey = (std::net::SocketAddr, std::net::SocketAddr);

/// Packets held per connection before it matches, and in all.
const HELD_PER_CONNECTION: usize = 512;
const HELD_BYTES_TOTAL: usize = 64 << 20;

/// Writes the packets of matching connections to a pcap file.
pub struct MatchWriter {
    writer: PcapWriter<BufWriter<File>>,
    linktype: u32,
    held: HashMap<ConnectionKey, VecDeque<Packet<'static>>>,
    held_bytes: usize,
    matched: HashSet<ConnectionKey>,
    pub written: u64,
}

fn connection_of(packet: &Packet<'_>) -> Option<ConnectionKey> {
    let segment = parse_frame(packet.link, &packet.data).ok()?;
    let (a, b) = (segment.src, segment.dst);
    Some(if a <= b { (a, b) } else { (b, a) })
}

impl MatchWriter {
    /// Creates `path`, a pcap file of link type `linktype` (the source's).
    pub fn create(path: &Path, linktype: u32) -> std::io::Result<MatchWriter> {
        let header = PcapHeader {
            datalink: DataLink::from(linktype),
            snaplen: kafka_shock_agent::wire::bpf::SNAP_LEN,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(BufWriter::new(File::create(path)?), header)
            .map_err(std::io::Error::other)?;
        Ok(MatchWriter {
            writer,
            linktype,
            held: HashMap::new(),
            held_bytes: 0,
            matched: HashSet::new(),
            written: 0,
        })
    }

    /// Offers one captured packet: written if its connection already matched, else held.
    pub fn offer(&mut self, packet: &Packet<'_>) -> std::io::Result<()> {
        if packet.linktype != self.linktype {
            return Ok(());
        }
        let Some(key) = connection_of(packet) else {
            return Ok(());
        };
        if self.matched.contains(&key) {
            return self.write(packet);
        }
        if self.held_bytes + packet.data.len() > HELD_BYTES_TOTAL {
            self.held.clear();
            self.held_bytes = 0;
        }
        let queue = self.held.entry(key).or_default();
        if queue.len() == HELD_PER_CONNECTION
            && let Some(oldest) = queue.pop_front()
        {
            self.held_bytes -= oldest.data.len();
        }
        self.held_bytes += packet.data.len();
        queue.push_back(packet.detached());
        Ok(())
    }

    /// Marks the connection between `client` and `broker` as matching: what was held for it is
    /// written now, and its later packets as they come.
    pub fn matched(
        &mut self,
        client: std::net::SocketAddr,
        broker: std::net::SocketAddr,
    ) -> std::io::Result<()> {
        let key = if client <= broker {
            (client, broker)
        } else {
            (broker, client)
        };
        if !self.matched.insert(key) {
            return Ok(());
        }
        for packet in self.held.remove(&key).unwrap_or_default() {
            self.held_bytes -= packet.data.len();
            self.write(&packet)?;
        }
        Ok(())
    }

    fn write(&mut self, packet: &Packet<'_>) -> std::io::Result<()> {
        let length = u32::try_from(packet.data.len()).unwrap_or(u32::MAX);
        self.writer
            .write_packet(&PcapPacket::new(packet.ts, length, &packet.data))
            .map_err(std::io::Error::other)?;
        self.written += 1;
        Ok(())
    }

    /// Flushes the file.
    pub fn finish(self) -> std::io::Result<()> {
        use std::io::Write;
        self.writer.into_writer().flush()
    }
}
