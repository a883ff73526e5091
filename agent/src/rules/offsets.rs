//! Where a Kafka request's bytes sit in an IP packet, and the xt_u32 and xt_string arguments
//! that find them. Offsets are from the start of the IP header, which is where both matches
//! count from in the INPUT hook.
//!
//! A request frame starts with `int32 size, int16 api_key, int16 api_version, int32
//! correlation_id, int16 client_id length, client_id bytes` (request header v1 and v2; the
//! client id is never compact, even in flexible versions), so the client id starts 14 bytes
//! into the TCP payload. The payload itself starts after:
//! - IPv4: a 20..=60 byte IP header and a 20..=60 byte TCP header: 40..=120;
//! - IPv6: a 40 byte IP header (the u32 test requires TCP as the next header, so there are no
//!   extension headers) and a 20..=60 byte TCP header: 60..=100.

use std::ops::RangeInclusive;

use super::spec::Family;

/// The longest pattern xt_string takes: iptables 1.8.9 refuses a 128-byte `--hex-string`
/// ("STRING too long"; `XT_STRING_MAX_PATTERN_SIZE` is 128 including room for a NUL).
pub(crate) const MAX_PATTERN: usize = 127;

/// Offset of the client id's int16 length in a request frame.
const CLIENT_ID_AT: usize = 12;

/// Offset of the client id's bytes (and of the fixed header's end) in a request frame.
const CLIENT_ID_BYTES_AT: usize = 14;

/// How long a client id is assumed to be, at most, when the signature does not fix it; only
/// used to bound the search for fields after it.
const ASSUMED_CLIENT_ID_MAX: usize = 256;

/// How far into the request body (after the client id) topics, group and transactional ids
/// are looked for. The first topic of every request kind sits well within it (Produce puts it
/// after the transactional id, acks and timeout; Fetch after about 30 bytes of settings), but
/// later topics of a request naming many partitions can lie beyond it.
pub(crate) const BODY_WINDOW: usize = 512;

/// Where the TCP payload can start in a packet of `family`.
fn payload_start(family: Family) -> RangeInclusive<usize> {
    match family {
        Family::V4 => 40..=120,
        Family::V6 => 60..=100,
    }
}

/// What the 32-bit word at payload offset 4 (`api_key << 16 | api_version`) must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiWord {
    /// This key, versions in the inclusive range.
    Key { key: i16, versions: (i16, i16) },
    /// Any non-negative key, versions in the inclusive range.
    AnyKey { versions: (i16, i16) },
}

/// The xt_u32 program that accepts a segment starting a Kafka request with the given api word:
/// an unfragmented (or first-fragment) packet whose TCP payload holds at least 8 bytes
/// (xt_u32 fails any read past the packet, which is how an empty payload is refused), starts
/// with a plausible frame size (10 bytes, the smallest header, up to `i32::MAX`), and then the
/// api word. `@` moves to the TCP header (IPv4: by the IHL nibble; IPv6: fixed 40), then to
/// the payload by the TCP data-offset nibble (`>>26&0x3C` is that nibble times 4).
pub(crate) fn request_head(family: Family, word: ApiWord) -> String {
    let first = match family {
        // Bytes 6-7: flags and fragment offset; the offset must be 0.
        Family::V4 => "4&0x1FFF=0",
        // Byte 6: next header; TCP, with no extension header.
        Family::V6 => "4>>8&0xFF=6",
    };
    let at = |offset: usize| match family {
        Family::V4 => format!("0>>22&0x3C@12>>26&0x3C@{offset}"),
        // The fixed IPv6 header is folded into the `@` offset: 40 + payload offset.
        Family::V6 => format!("52>>26&0x3C@{}", 40 + offset),
    };
    let word_test = match word {
        ApiWord::Key { key, versions } => {
            let base = (key as u32) << 16;
            format!(
                "={:#010X}:{:#010X}",
                base | versions.0 as u32,
                base | versions.1 as u32
            )
        }
        ApiWord::AnyKey { versions } => format!("&0x8000FFFF={:#X}:{:#X}", versions.0, versions.1),
    };
    format!("{first}&&{}=0xA:0x7FFFFFFF&&{}{word_test}", at(0), at(4))
}

/// One xt_string search: `pattern` must lie wholly within `[from, to)` of the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StringMatch {
    pub pattern: Vec<u8>,
    pub from: usize,
    pub to: usize,
}

impl StringMatch {
    /// The match arguments. The pattern is always hex (`|00 0c 63 …|`), whatever its bytes,
    /// so quotes, spaces, newlines, `--` and non-UTF-8 never reach iptables as text.
    pub fn args(&self) -> Vec<String> {
        let hex: Vec<String> = self.pattern.iter().map(|b| format!("{b:02x}")).collect();
        [
            "-m".to_owned(),
            "string".to_owned(),
            "--algo".to_owned(),
            "bm".to_owned(),
            "--hex-string".to_owned(),
            format!("|{}|", hex.join(" ")),
            "--from".to_owned(),
            self.from.to_string(),
            "--to".to_owned(),
            self.to.min(usize::from(u16::MAX)).to_string(),
        ]
        .into()
    }
}

/// How much is known of the client id's length, to place the fields after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientIdLen {
    pub min: usize,
    pub max: usize,
}

impl ClientIdLen {
    pub const UNKNOWN: Self = Self {
        min: 0,
        max: ASSUMED_CLIENT_ID_MAX,
    };
}

/// The client id is exactly `id`: its int16 length and bytes, at the fixed header offset.
pub(crate) fn client_id_exact(family: Family, id: &[u8]) -> Option<StringMatch> {
    let pattern = int16_string(id)?;
    Some(at_header_offset(family, CLIENT_ID_AT, pattern))
}

/// The client id starts with `prefix`: the length (2 unknown bytes) is skipped, so the prefix
/// bytes are searched from 14 bytes after the earliest payload start to 14 bytes after the
/// latest, plus the prefix.
pub(crate) fn client_id_prefix(family: Family, prefix: &[u8]) -> Option<StringMatch> {
    fits(prefix.len()).then(|| at_header_offset(family, CLIENT_ID_BYTES_AT, prefix.to_vec()))
}

fn at_header_offset(family: Family, offset: usize, pattern: Vec<u8>) -> StringMatch {
    let payload = payload_start(family);
    StringMatch {
        from: payload.start() + offset,
        to: payload.end() + offset + pattern.len(),
        pattern,
    }
}

/// A pattern somewhere in the request body: from the earliest place the body can start to
/// [`BODY_WINDOW`] bytes after the latest.
pub(crate) fn in_body(family: Family, client_id: ClientIdLen, pattern: Vec<u8>) -> StringMatch {
    let payload = payload_start(family);
    StringMatch {
        from: payload.start() + CLIENT_ID_BYTES_AT + client_id.min,
        to: payload.end() + CLIENT_ID_BYTES_AT + client_id.max + BODY_WINDOW + pattern.len(),
        pattern,
    }
}

/// The two encodings of a string field: int16 length (non-flexible versions) and compact
/// unsigned-varint length + 1 (flexible versions); `None` when either is too long for
/// xt_string.
pub(crate) fn string_encodings(bytes: &[u8]) -> Option<[Vec<u8>; 2]> {
    let int16 = int16_string(bytes)?;
    let mut compact = Vec::with_capacity(bytes.len() + 3);
    let mut rest = bytes.len() + 1;
    while rest >= 0x80 {
        compact.push((rest as u8 & 0x7F) | 0x80);
        rest >>= 7;
    }
    compact.push(rest as u8);
    compact.extend_from_slice(bytes);
    fits(compact.len()).then_some([int16, compact])
}

fn int16_string(bytes: &[u8]) -> Option<Vec<u8>> {
    if !fits(bytes.len() + 2) {
        return None;
    }
    let len = u16::try_from(bytes.len()).ok()?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    Some(out)
}

fn fits(pattern_len: usize) -> bool {
    pattern_len <= MAX_PATTERN
}
