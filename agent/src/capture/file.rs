//! Reading pcap and pcapng files (what tcpdump, tshark and Wireshark write).

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use kafka_shock_agent::packet::LinkType;
use pcap_file::PcapError;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

use super::{CaptureError, Next, Packet};

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];

enum Format {
    Pcap(PcapReader<BufReader<File>>, u32),
    PcapNg(PcapNgReader<BufReader<File>>, Vec<u32>),
}

/// A capture file being read packet by packet, in bounded memory.
pub struct CaptureFile {
    path: String,
    format: Format,
    /// Set when the file ended in the middle of a packet (a capture cut short).
    pub truncated: bool,
}

fn link_of(path: &str, linktype: u32) -> Result<LinkType, CaptureError> {
    LinkType::from_linktype(linktype).ok_or_else(|| CaptureError::UnsupportedLinkType {
        path: path.to_owned(),
        linktype,
    })
}

impl CaptureFile {
    /// Opens `path`, telling pcap from pcapng by its magic number.
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        let shown = path.display().to_string();
        let open_error = |source| CaptureError::Open {
            path: shown.clone(),
            source,
        };
        let mut magic = [0u8; 4];
        let read = File::open(path)
            .and_then(|mut file| file.read(&mut magic))
            .map_err(open_error)?;
        let malformed = |error: PcapError| CaptureError::Malformed {
            path: shown.clone(),
            detail: error.to_string(),
        };
        let reader = BufReader::new(File::open(path).map_err(open_error)?);
        let format = if read == 4 && magic == PCAPNG_MAGIC {
            Format::PcapNg(PcapNgReader::new(reader).map_err(malformed)?, Vec::new())
        } else if read == 4 && PCAP_MAGICS.contains(&magic) {
            let pcap = PcapReader::new(reader).map_err(malformed)?;
            let linktype = u32::from(pcap.header().datalink);
            link_of(&shown, linktype)?;
            Format::Pcap(pcap, linktype)
        } else {
            let magic = magic[..read]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            return Err(CaptureError::NotACapture { path: shown, magic });
        };
        Ok(CaptureFile {
            path: shown,
            format,
            truncated: false,
        })
    }

    /// The next packet, or `Next::End` at the end of the file. A file cut off in the middle of
    /// a packet ends there with `truncated` set, as tcpdump's readers do.
    pub fn next(&mut self) -> Result<Next, CaptureError> {
        loop {
            let outcome = match &mut self.format {
                Format::Pcap(reader, linktype) => match reader.next_packet() {
                    None => return Ok(Next::End),
                    Some(Ok(packet)) => Ok(Some(Packet {
                        link: link_of(&self.path, *linktype)?,
                        linktype: *linktype,
                        data: packet.data.into_owned(),
                        ts: packet.timestamp,
                    })),
                    Some(Err(error)) => Err(error),
                },
                Format::PcapNg(reader, interfaces) => match reader.next_block() {
                    None => return Ok(Next::End),
                    Some(Ok(Block::InterfaceDescription(interface))) => {
                        interfaces.push(u32::from(interface.linktype));
                        Ok(None)
                    }
                    Some(Ok(Block::EnhancedPacket(packet))) => {
                        let linktype =
                            interface_linktype(&self.path, interfaces, packet.interface_id)?;
                        Ok(Some(Packet {
                            link: link_of(&self.path, linktype)?,
                            linktype,
                            data: packet.data.into_owned(),
                            ts: packet.timestamp,
                        }))
                    }
                    Some(Ok(Block::SimplePacket(packet))) => {
                        let linktype = interface_linktype(&self.path, interfaces, 0)?;
                        Ok(Some(Packet {
                            link: link_of(&self.path, linktype)?,
                            linktype,
                            data: packet.data.into_owned(),
                            ts: std::time::Duration::ZERO,
                        }))
                    }
                    Some(Ok(_)) => Ok(None),
                    Some(Err(error)) => Err(error),
                },
            };
            match outcome {
                Ok(Some(packet)) => return Ok(Next::Packet(packet)),
                Ok(None) => continue,
                Err(PcapError::IoError(error)) if error.kind() == ErrorKind::UnexpectedEof => {
                    self.truncated = true;
                    return Ok(Next::End);
                }
                Err(PcapError::IncompleteBuffer) => {
                    self.truncated = true;
                    return Ok(Next::End);
                }
                Err(error) => {
                    return Err(CaptureError::Malformed {
                        path: self.path.clone(),
                        detail: error.to_string(),
                    });
                }
            }
        }
    }
}

fn interface_linktype(path: &str, interfaces: &[u32], id: u32) -> Result<u32, CaptureError> {
    usize::try_from(id)
        .ok()
        .and_then(|index| interfaces.get(index).copied())
        .ok_or_else(|| CaptureError::Malformed {
            path: path.to_owned(),
            detail: format!("a packet names interface {id}, which no interface block describes"),
        })
}
