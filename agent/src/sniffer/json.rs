//! An [`Event`]'s JSON line, written by hand because it is the per-request cost of
//! `sniff --json`, in the exact form serde_json gives.
//!
//! A [`JsonWriter`] also remembers what consecutive events share: the date and time down to
//! the second, and the last connection's two addresses. Formatting those was most of a line's
//! cost, and a capture's events come thousands a second from a few connections.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::event::Event;
use crate::civil::civil_from_days;

/// Writes events as JSON objects, reusing the text consecutive events share.
#[derive(Debug, Default)]
pub struct JsonWriter {
    /// The whole second since the epoch that `second_text` spells, as
    /// `YYYY-MM-DDTHH:MM:SS.`.
    second: Option<u64>,
    second_text: Digits,
    /// The connection that `flow_text` spells, as `"client":"…","broker":"…"`.
    flow: Option<(SocketAddr, SocketAddr)>,
    flow_text: Vec<u8>,
}

impl JsonWriter {
    /// Appends `event` as one JSON object (no newline) to `out`, its fields in the order of
    /// [`Event`]'s, the optional ones after `errors` left out when absent.
    pub fn write(&mut self, event: &Event, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ts\":\"");
        self.timestamp(out, event.ts);
        out.extend_from_slice(b"\",");
        self.addresses(out, event.client, event.broker);
        out.extend_from_slice(b",\"client_id\":");
        write_opt_str(out, event.client_id.as_deref());
        out.extend_from_slice(b",\"api\":");
        write_json_str(out, &event.api);
        out.extend_from_slice(b",\"api_version\":");
        write_integer(out, i64::from(event.api_version));
        out.extend_from_slice(b",\"correlation_id\":");
        write_integer(out, i64::from(event.correlation_id));
        out.extend_from_slice(b",\"topics\":");
        write_str_list(out, &event.topics);
        out.extend_from_slice(b",\"records\":");
        write_opt_u64(out, event.records);
        out.extend_from_slice(b",\"request_bytes\":");
        write_u64(out, event.request_bytes);
        out.extend_from_slice(b",\"latency_us\":");
        write_opt_u64(out, event.latency_us);
        out.extend_from_slice(b",\"errors\":");
        match &event.errors {
            Some(errors) => write_str_list(out, errors),
            None => out.extend_from_slice(b"null"),
        }
        let optional = [
            (&b",\"group_id\":"[..], event.group_id.as_deref()),
            (b",\"transactional_id\":", event.transactional_id.as_deref()),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                out.extend_from_slice(name);
                write_json_str(out, value);
            }
        }
        if let Some(bytes) = event.response_bytes {
            out.extend_from_slice(b",\"response_bytes\":");
            write_u64(out, bytes);
        }
        if let Some(error) = &event.decode_error {
            out.extend_from_slice(b",\"decode_error\":");
            write_json_str(out, error);
        }
        out.push(b'}');
    }

    /// [`write_rfc3339`], the date and time down to the second reused from the last call.
    fn timestamp(&mut self, out: &mut Vec<u8>, since_epoch: Duration) {
        let secs = since_epoch.as_secs();
        if self.second != Some(secs) {
            self.second = Some(secs);
            self.second_text = second_text(secs);
        }
        out.extend_from_slice(self.second_text.as_bytes());
        write_micros(out, since_epoch.subsec_micros());
    }

    /// `"client":"…","broker":"…"`, reused from the last call for the same connection.
    fn addresses(&mut self, out: &mut Vec<u8>, client: SocketAddr, broker: SocketAddr) {
        if self.flow != Some((client, broker)) {
            self.flow = Some((client, broker));
            let text = &mut self.flow_text;
            text.clear();
            text.extend_from_slice(b"\"client\":\"");
            write_socket_addr(text, client);
            text.extend_from_slice(b"\",\"broker\":\"");
            write_socket_addr(text, broker);
            text.push(b'"');
        }
        out.extend_from_slice(&self.flow_text);
    }
}

/// A JSON string as serde_json writes it: `"`, `\\` and control characters escaped, the
/// rest (non-ASCII included) as is.
fn write_json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        // The usual name or id: nothing to escape, one copy.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", byte);
        } else {
            out.extend_from_slice(escape);
        }
        plain = at + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

fn write_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => write_json_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_opt_u64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(value) => write_u64(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_str_list(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_json_str(out, item);
    }
    out.push(b']');
}

/// `ip:port` (IPv4, digits written directly) or `[ip]:port` (IPv6, via `Display`).
fn write_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            let mut text = Digits::default();
            for (index, octet) in v4.ip().octets().into_iter().enumerate() {
                if index > 0 {
                    text.push(b'.');
                }
                text.number(u64::from(octet), 1);
            }
            text.push(b':');
            text.number(u64::from(v4.port()), 1);
            out.extend_from_slice(text.as_bytes());
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn write_integer(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

/// The decimal digits of 0 to 99, two by two.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The two digits of `value` (0 to 99).
fn pair(value: u64) -> [u8; 2] {
    let at = (value % 100) as usize * 2;
    [PAIRS[at], PAIRS[at + 1]]
}

/// `value` in decimal, two digits at a time (these are most of a line's characters): the
/// digits at the start of the block, and how many there are.
fn decimal(value: u64) -> ([u8; 20], usize) {
    let digits = decimal_len(value);
    let mut text = [0u8; 20];
    let mut end = digits;
    let mut rest = value;
    while rest >= 100 {
        text[end - 2..end].copy_from_slice(&pair(rest));
        end -= 2;
        rest /= 100;
    }
    if rest >= 10 {
        text[..2].copy_from_slice(&pair(rest));
    } else {
        text[0] = b'0' + rest as u8;
    }
    (text, digits)
}

/// [`decimal`] appended to `out`. The digits are copied as one fixed-size block and the
/// excess cut, which is cheaper than a copy of their variable length.
fn write_u64(out: &mut Vec<u8>, value: u64) {
    let (text, digits) = decimal(value);
    let len = out.len() + digits;
    out.extend_from_slice(&text);
    out.truncate(len);
}

/// How many decimal digits `value` has.
fn decimal_len(value: u64) -> usize {
    let mut digits = 1;
    let mut bound = 10u64;
    while digits < 20 && value >= bound {
        digits += 1;
        bound = bound.saturating_mul(10);
    }
    digits
}

/// Microseconds (below a million) as six digits, then the `Z` of UTC.
fn write_micros(out: &mut Vec<u8>, micros: u32) {
    let micros = u64::from(micros);
    let [a, b] = pair(micros / 10_000);
    let [c, d] = pair(micros / 100);
    let [e, f] = pair(micros);
    out.extend_from_slice(&[a, b, c, d, e, f, b'Z']);
}

/// A short text built on the stack (addresses, the date), appended in one copy.
#[derive(Debug, Clone, Copy)]
struct Digits {
    bytes: [u8; 48],
    len: usize,
}

impl Default for Digits {
    fn default() -> Self {
        Self {
            bytes: [0; 48],
            len: 0,
        }
    }
}

impl Digits {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// `value` in decimal ([`decimal`]), zero-padded to at least `width` digits.
    fn number(&mut self, value: u64, width: usize) {
        let (text, digits) = decimal(value);
        for _ in digits..width {
            self.push(b'0');
        }
        for &digit in &text[..digits] {
            self.push(digit);
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// Appends `since_epoch` as RFC 3339 UTC with microseconds to `out`.
pub(super) fn write_rfc3339(out: &mut Vec<u8>, since_epoch: Duration) {
    out.extend_from_slice(second_text(since_epoch.as_secs()).as_bytes());
    write_micros(out, since_epoch.subsec_micros());
}

/// `YYYY-MM-DDTHH:MM:SS.` of `secs` since the Unix epoch.
fn second_text(secs: u64) -> Digits {
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let parts = [
        (year, 4, b'-'),
        (month, 2, b'-'),
        (day, 2, b'T'),
        (rem / 3600, 2, b':'),
        (rem % 3600 / 60, 2, b':'),
        (rem % 60, 2, b'.'),
    ];
    let mut text = Digits::default();
    for (value, width, separator) in parts {
        text.number(value, width);
        text.push(separator);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sniffer::event::test_request;

    #[test]
    fn numbers_are_written_as_display_writes_them() {
        let mut values = vec![0, 1, 9, 10, 99, 100, 101, 999, 1000, 65_535, u64::MAX];
        values.extend((0..20).map(|digits| 10u64.pow(digits)));
        values.extend((1..20).map(|digits| 10u64.pow(digits) - 1));
        for value in values {
            let mut out = Vec::new();
            write_u64(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
        for (value, width) in [(0, 1), (7, 2), (12, 2), (2026, 4), (99, 4), (65_535, 1)] {
            let mut text = Digits::default();
            text.number(value, width);
            assert_eq!(text.as_bytes(), format!("{value:0width$}").as_bytes());
        }
        for micros in [0, 7, 10, 99_999, 100_000, 123_456, 999_999] {
            let mut out = Vec::new();
            write_micros(&mut out, micros);
            assert_eq!(out, format!("{micros:06}Z").as_bytes());
        }
    }

    #[test]
    fn a_reused_writer_writes_what_a_fresh_one_does() {
        let mut events = Vec::new();
        for (ts, client) in [
            (1_700_000_000_123_456, "10.0.0.1:1"),
            (1_700_000_000_999_999, "10.0.0.1:1"),
            (1_700_000_001_000_000, "10.0.0.1:1"),
            (1_700_000_001_000_001, "[fd00::1]:40000"),
            (86_399_999_999, "10.0.0.1:1"),
            (1_700_000_001_000_001, "10.0.0.1:2"),
        ] {
            let mut event = test_request("Produce", "c", &["t"]);
            event.ts = Duration::from_micros(ts);
            event.client = client.parse().expect("client");
            events.push(event);
        }
        let mut writer = JsonWriter::default();
        for event in &events {
            let (mut reused, mut fresh) = (Vec::new(), Vec::new());
            writer.write(event, &mut reused);
            JsonWriter::default().write(event, &mut fresh);
            assert_eq!(
                String::from_utf8(reused).expect("utf-8"),
                String::from_utf8(fresh).expect("utf-8")
            );
        }
    }
}
