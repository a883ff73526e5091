//! Reading pcap and pcapng files (what tcpdump, tshark and Wireshark write).

use std::borrow::Cow;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use kafka_shock_agent::wire::packet::LinkType;
use pcap_file::PcapError;
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::{Block, PcapNgParser};

use super::{CaptureError, Next, Packet};

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
/// Bytes read from the file at a time; the buffer starts this large and stays small enough
/// to live in a core's L2 cache, where the kernel copies to and the parsers read from (1 MiB
/// cost a fifth more system time reading a capture than 256 KiB on a 1 MiB-L2 EPYC).
const READ_SIZE: usize = 1 << 18;
/// Largest record (packet or block) held whole, as pcap-file's own reader: one that does not
/// fit means a corrupt or cut capture, and ends it as truncated.
const MAX_RECORD: usize = 8_000_000;

/// The file's bytes, read in chunks into one reused buffer that packets are lent from.
struct Input {
    file: File,
    buf: Vec<u8>,
    /// Bytes `start..end` of `buf` are read but not parsed yet.
    start: usize,
    end: usize,
}

impl Input {
    fn pending(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// Reads more of the file after the pending bytes. `false` at the end of the file, or when
    /// the pending bytes already fill the largest buffer allowed.
    fn fill(&mut self) -> std::io::Result<bool> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_RECORD {
                return Ok(false);
            }
            let grown = (self.buf.len() * 2).clamp(READ_SIZE, MAX_RECORD);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(read) => {
                    self.end += read;
                    return Ok(read > 0);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Parses the next record with `parse` (which returns the bytes it used and what it made
    /// of them), reading more of the file as it asks. Also returns where in `buf` the bytes
    /// given to `parse` started. `None` at a clean end of file; a file ending inside a record
    /// is `IncompleteBuffer`.
    fn parse<T>(
        &mut self,
        mut parse: impl FnMut(&[u8]) -> Result<(usize, T), PcapError>,
    ) -> Result<Option<(usize, T)>, PcapError> {
        if self.start == self.end && !self.fill().map_err(PcapError::IoError)? {
            return Ok(None);
        }
        loop {
            match parse(self.pending()) {
                Ok((used, value)) => {
                    let base = self.start;
                    self.start += used.min(self.end - self.start);
                    return Ok(Some((base, value)));
                }
                Err(PcapError::IncompleteBuffer) => {
                    if !self.fill().map_err(PcapError::IoError)? {
                        return Err(PcapError::IncompleteBuffer);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Where a parsed packet's bytes are.
enum Data {
    /// At this range of the bytes the record was parsed from (the usual case).
    Lent(Range<usize>),
    /// Copied by the parser.
    Owned(Vec<u8>),
}

impl Data {
    fn locate(src: &[u8], data: Cow<'_, [u8]>) -> Data {
        let offset = (data.as_ptr() as usize).checked_sub(src.as_ptr() as usize);
        match (offset, &data) {
            (Some(at), Cow::Borrowed(_)) if at + data.len() <= src.len() => {
                Data::Lent(at..at + data.len())
            }
            _ => Data::Owned(data.into_owned()),
        }
    }
}

/// One parsed record, holding no borrow of the buffer.
enum Record {
    Packet {
        linktype: Result<u32, CaptureError>,
        ts: Duration,
        data: Data,
    },
    Interface(u32),
    Other,
}

enum Format {
    Pcap(PcapParser, u32),
    PcapNg(PcapNgParser, Vec<u32>),
}

/// A capture file being read packet by packet, in bounded memory.
pub struct CaptureFile {
    path: String,
    input: Input,
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

fn used(src: &[u8], rest: &[u8]) -> usize {
    src.len() - rest.len()
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
        let mut input = Input {
            file: File::open(path).map_err(open_error)?,
            buf: vec![0; READ_SIZE],
            start: 0,
            end: 0,
        };
        // A header cut short reads as pcap-file's readers report it.
        let cut_short = |error| match error {
            PcapError::IncompleteBuffer => PcapError::IoError(ErrorKind::UnexpectedEof.into()),
            other => other,
        };
        let header_missing = || PcapError::IoError(ErrorKind::UnexpectedEof.into());
        let format = if read == 4 && magic == PCAPNG_MAGIC {
            let parser = input
                .parse(|src| PcapNgParser::new(src).map(|(rest, p)| (used(src, rest), p)))
                .and_then(|parser| parser.ok_or_else(header_missing))
                .map_err(cut_short)
                .map_err(malformed)?
                .1;
            Format::PcapNg(parser, Vec::new())
        } else if read == 4 && PCAP_MAGICS.contains(&magic) {
            let parser = input
                .parse(|src| PcapParser::new(src).map(|(rest, p)| (used(src, rest), p)))
                .and_then(|parser| parser.ok_or_else(header_missing))
                .map_err(cut_short)
                .map_err(malformed)?
                .1;
            let linktype = u32::from(parser.header().datalink);
            link_of(&shown, linktype)?;
            Format::Pcap(parser, linktype)
        } else {
            let magic = magic[..read]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            return Err(CaptureError::NotACapture { path: shown, magic });
        };
        Ok(CaptureFile {
            path: shown,
            input,
            format,
            truncated: false,
        })
    }

    /// The next packet, or `Next::End` at the end of the file. A file cut off in the middle of
    /// a packet ends there with `truncated` set, as tcpdump's readers do.
    pub fn next(&mut self) -> Result<Next<'_>, CaptureError> {
        loop {
            let path = &self.path;
            let outcome = match &mut self.format {
                Format::Pcap(parser, linktype) => self.input.parse(|src| {
                    let (rest, packet) = parser.next_packet(src)?;
                    let record = Record::Packet {
                        linktype: Ok(*linktype),
                        ts: packet.timestamp,
                        data: Data::locate(src, packet.data),
                    };
                    Ok((used(src, rest), record))
                }),
                Format::PcapNg(parser, interfaces) => self.input.parse(|src| {
                    let (rest, block) = parser.next_block(src)?;
                    let record = match block {
                        Block::InterfaceDescription(interface) => {
                            Record::Interface(u32::from(interface.linktype))
                        }
                        Block::EnhancedPacket(packet) => Record::Packet {
                            linktype: interface_linktype(path, interfaces, packet.interface_id),
                            ts: packet.timestamp,
                            data: Data::locate(src, packet.data),
                        },
                        Block::SimplePacket(packet) => Record::Packet {
                            linktype: interface_linktype(path, interfaces, 0),
                            ts: Duration::ZERO,
                            data: Data::locate(src, packet.data),
                        },
                        _ => Record::Other,
                    };
                    if let Record::Interface(linktype) = record {
                        interfaces.push(linktype);
                    }
                    Ok((used(src, rest), record))
                }),
            };
            match outcome {
                Ok(None) => return Ok(Next::End),
                Ok(Some((base, Record::Packet { linktype, ts, data }))) => {
                    let linktype = linktype?;
                    let link = link_of(&self.path, linktype)?;
                    let data = match data {
                        Data::Lent(range) => Cow::Borrowed(
                            self.input
                                .buf
                                .get(base + range.start..base + range.end)
                                .unwrap_or_default(),
                        ),
                        Data::Owned(bytes) => Cow::Owned(bytes),
                    };
                    return Ok(Next::Packet(Packet {
                        link,
                        linktype,
                        data,
                        ts,
                    }));
                }
                Ok(Some(_)) => continue,
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
