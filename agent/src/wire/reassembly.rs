//! TCP reassembly: turns captured segments into the ordered byte stream of
//! each direction of each Kafka connection.
//!
//! The capture is passive, so nothing here can ask for a retransmission: it
//! buffers out-of-order data up to a cap, trims what it already delivered,
//! and when data is lost for good it skips the hole and says so, so that the
//! Kafka framer resynchronises instead of misreading the stream.
//!
//! Out-of-order data sits in an ordered map keyed by stream offset, with
//! overlaps trimmed on insert, so hostile reordering costs O(log n) per
//! segment; each segment is charged its bookkeeping as well as its payload,
//! so that floods of tiny segments hit the cap in memory terms.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use std::time::Duration;

use serde::Serialize;

use crate::FastMap;
use crate::wire::packet::TcpSegment;
use crate::wire::span::Span;

/// Identifies one Kafka connection, whichever way its segments travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey {
    /// The side that is not a broker port.
    pub client: SocketAddr,
    /// The side whose port is one of the broker ports.
    pub broker: SocketAddr,
}

impl Hash for FlowKey {
    /// An IPv4 pair is hashed as one number: every packet looks its connection
    /// up, and hashing two `SocketAddr`s field by field showed in profiles.
    fn hash<H: Hasher>(&self, state: &mut H) {
        match (self.client, self.broker) {
            (SocketAddr::V4(client), SocketAddr::V4(broker)) => state.write_u128(
                u128::from(client.ip().to_bits()) << 64
                    | u128::from(broker.ip().to_bits()) << 32
                    | u128::from(client.port()) << 16
                    | u128::from(broker.port()),
            ),
            (client, broker) => {
                client.hash(state);
                broker.hash(state);
            }
        }
    }
}

/// Which way bytes travel on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Requests.
    ToBroker,
    /// Responses.
    ToClient,
}

/// Limits that keep memory and staleness bounded on hostile or lossy captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// TCP ports on which brokers listen; they decide which side is the client.
    pub broker_ports: BTreeSet<u16>,
    /// Memory for out-of-order data per direction, payload plus
    /// [`SEGMENT_OVERHEAD`] per segment, before further segments are dropped.
    pub max_buffered_per_flow: usize,
    /// Out-of-order segments buffered per direction before further ones are dropped.
    pub max_segments_per_flow: usize,
    /// How long a hole may stay unfilled before it is skipped.
    pub gap_timeout: Duration,
    /// How long a connection may stay silent before it is forgotten.
    pub idle_timeout: Duration,
    /// Connections tracked at once; new ones beyond it are ignored and counted.
    pub max_flows: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            broker_ports: BTreeSet::from([9092]),
            max_buffered_per_flow: 16 * 1024 * 1024,
            max_segments_per_flow: 65_536,
            gap_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(300),
            max_flows: 65_536,
        }
    }
}

/// Bookkeeping that one buffered segment costs besides its payload (its map
/// entry, `Vec` header and allocator rounding), charged against
/// [`ReassemblyConfig::max_buffered_per_flow`].
pub const SEGMENT_OVERHEAD: usize = 64;

/// What the reassembler reports, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next in-order bytes of one direction.
    Data {
        /// Connection.
        flow: FlowKey,
        /// Direction of the bytes.
        direction: Direction,
        /// The bytes.
        bytes: Span,
    },
    /// The bytes that follow do not continue the previous ones (the capture
    /// joined mid-stream or a hole was skipped): the reader must resynchronise.
    Discontinuity {
        /// Connection.
        flow: FlowKey,
        /// Direction that jumped.
        direction: Direction,
    },
    /// The connection ended (FIN both ways, RST, or idle expiry).
    Closed {
        /// Connection.
        flow: FlowKey,
    },
}

/// Reassembly counters, exported as-is in the sniffer's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReassemblyCounters {
    /// Segments seen on broker ports.
    pub segments: u64,
    /// Payload bytes delivered in order.
    pub bytes: u64,
    /// Segments seen on no broker port (ignored).
    pub non_broker_segments: u64,
    /// Segments that arrived ahead of a hole and were buffered.
    pub out_of_order: u64,
    /// Segments that carried already-delivered bytes (wholly or partly).
    pub retransmitted: u64,
    /// Holes skipped after the gap timeout.
    pub gaps_skipped: u64,
    /// Out-of-order bytes dropped because a per-flow cap (memory or segments)
    /// was reached.
    pub bytes_dropped_over_cap: u64,
    /// Connections forgotten after the idle timeout.
    pub flows_expired: u64,
    /// Connections first seen without their SYN.
    pub midstream_joins: u64,
    /// Connections ignored because `max_flows` were already tracked.
    pub flows_over_limit: u64,
    /// Connections closed by FIN.
    pub flows_finished: u64,
    /// Connections closed by RST.
    pub flows_reset: u64,
}

#[derive(Debug, Default)]
struct HalfStream {
    /// Sequence number of the next byte to deliver; `None` until the first segment.
    next_seq: Option<u32>,
    /// Stream offset of `next_seq` (bytes delivered or skipped so far). Pending
    /// data is keyed by stream offset, so sequence wraparound is dealt with
    /// once, where a segment is placed, and keys stay valid as delivery advances.
    next_offset: u64,
    /// Out-of-order data by stream offset; entries are non-empty and never overlap.
    pending: BTreeMap<u64, Vec<u8>>,
    /// Memory charged for `pending`: payload plus [`SEGMENT_OVERHEAD`] per entry.
    pending_cost: usize,
    /// When the oldest still-open hole was first seen.
    gap_since: Option<Duration>,
    /// Sequence number of the FIN, once seen.
    fin_seq: Option<u32>,
    finished: bool,
}

#[derive(Debug, Default)]
struct Flow {
    to_broker: HalfStream,
    to_client: HalfStream,
    last_seen: Duration,
}

impl Flow {
    fn half(&mut self, direction: Direction) -> &mut HalfStream {
        match direction {
            Direction::ToBroker => &mut self.to_broker,
            Direction::ToClient => &mut self.to_client,
        }
    }

    fn buffered_bytes(&self) -> usize {
        self.to_broker.pending_cost + self.to_client.pending_cost
    }

    /// FIN seen and delivered both ways.
    fn finished(&self) -> bool {
        self.to_broker.finished && self.to_client.finished
    }
}

/// Per-connection, per-direction TCP reassembly. Pure: time is passed in.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    flows: FastMap<FlowKey, Flow>,
    counters: ReassemblyCounters,
    last_sweep: Duration,
}

impl Reassembler {
    /// Creates a reassembler with the given limits.
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            flows: FastMap::default(),
            counters: ReassemblyCounters::default(),
            last_sweep: Duration::ZERO,
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> &ReassemblyCounters {
        &self.counters
    }

    /// Memory held for out-of-order data across all connections, payload plus
    /// [`SEGMENT_OVERHEAD`] per segment (for memory bounds).
    pub fn buffered_bytes(&self) -> usize {
        self.flows.values().map(Flow::buffered_bytes).sum()
    }

    /// Which side of a segment is the broker, or `None` when neither port is.
    pub fn classify(&self, seg: &TcpSegment<'_>) -> Option<(FlowKey, Direction)> {
        let ports = &self.config.broker_ports;
        if ports.contains(&seg.dst.port()) {
            Some((
                FlowKey {
                    client: seg.src,
                    broker: seg.dst,
                },
                Direction::ToBroker,
            ))
        } else if ports.contains(&seg.src.port()) {
            Some((
                FlowKey {
                    client: seg.dst,
                    broker: seg.src,
                },
                Direction::ToClient,
            ))
        } else {
            None
        }
    }

    /// Feeds one segment seen at `now` and appends what it produced to `out`.
    pub fn on_segment(&mut self, seg: &TcpSegment<'_>, now: Duration, out: &mut Vec<StreamEvent>) {
        self.expire_idle(now, out);
        let Some((key, direction)) = self.classify(seg) else {
            self.counters.non_broker_segments += 1;
            return;
        };
        self.counters.segments += 1;
        if seg.flags.rst {
            if self.flows.remove(&key).is_some() {
                self.counters.flows_reset += 1;
                out.push(StreamEvent::Closed { flow: key });
            }
            return;
        }
        if seg.flags.syn && self.is_new_connection(&key, direction, seg.seq) {
            self.flows.remove(&key);
            out.push(StreamEvent::Closed { flow: key });
        }
        let tracked = self.flows.len();
        let flow = match self.flows.entry(key) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                if tracked >= self.config.max_flows {
                    self.counters.flows_over_limit += 1;
                    return;
                }
                if !seg.flags.syn {
                    self.counters.midstream_joins += 1;
                }
                entry.insert(Flow::default())
            }
        };
        flow.last_seen = now;
        let half = flow.half(direction);
        let payload_seq = if seg.flags.syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        if half.next_seq.is_none() {
            half.next_seq = Some(payload_seq);
            if !seg.flags.syn {
                out.push(StreamEvent::Discontinuity {
                    flow: key,
                    direction,
                });
            }
        }
        if seg.flags.fin {
            half.fin_seq = Some(payload_seq.wrapping_add(len_u32(seg.payload)));
        }
        let mut emit = Emitter {
            flow: key,
            direction,
            out,
        };
        let limits = &self.config;
        half.accept(
            payload_seq,
            seg.payload,
            now,
            limits,
            &mut self.counters,
            &mut emit,
        );
        half.skip_stale_gap(now, limits.gap_timeout, &mut self.counters, &mut emit);
        if flow.finished() {
            self.flows.remove(&key);
            self.counters.flows_finished += 1;
            out.push(StreamEvent::Closed { flow: key });
        }
    }

    /// Skips stale holes and expires idle connections; call when time passes
    /// without segments (on_segment already does it).
    pub fn expire_idle(&mut self, now: Duration, out: &mut Vec<StreamEvent>) {
        // Checked at every segment, swept once a period.
        let period = self.config.gap_timeout.min(self.config.idle_timeout);
        if now.saturating_sub(self.last_sweep) >= period {
            self.sweep(now, out);
        }
    }

    #[inline(never)]
    fn sweep(&mut self, now: Duration, out: &mut Vec<StreamEvent>) {
        self.last_sweep = now;
        let idle = self.config.idle_timeout;
        let mut expired: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, flow)| now.saturating_sub(flow.last_seen) >= idle)
            .map(|(key, _)| *key)
            .collect();
        expired.sort();
        for key in expired {
            self.flows.remove(&key);
            self.counters.flows_expired += 1;
            out.push(StreamEvent::Closed { flow: key });
        }
        let mut keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        keys.sort();
        for key in keys {
            for direction in [Direction::ToBroker, Direction::ToClient] {
                self.skip_stale_gap(key, direction, now, out);
            }
        }
    }

    /// Closes every connection, e.g. at the end of a capture file.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        let mut keys: Vec<FlowKey> = self.flows.drain().map(|(key, _)| key).collect();
        keys.sort();
        out.extend(keys.into_iter().map(|flow| StreamEvent::Closed { flow }));
    }

    fn is_new_connection(&self, key: &FlowKey, direction: Direction, seq: u32) -> bool {
        let Some(flow) = self.flows.get(key) else {
            return false;
        };
        let half = match direction {
            Direction::ToBroker => &flow.to_broker,
            Direction::ToClient => &flow.to_client,
        };
        // A client SYN on a known connection is a reused port unless it is a
        // retransmission of the SYN already seen.
        direction == Direction::ToBroker
            && half.next_seq.is_some()
            && half.next_seq != Some(seq.wrapping_add(1))
    }

    fn skip_stale_gap(
        &mut self,
        key: FlowKey,
        direction: Direction,
        now: Duration,
        out: &mut Vec<StreamEvent>,
    ) {
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        let mut emit = Emitter {
            flow: key,
            direction,
            out,
        };
        let timeout = self.config.gap_timeout;
        flow.half(direction)
            .skip_stale_gap(now, timeout, &mut self.counters, &mut emit);
        if flow.finished() {
            self.flows.remove(&key);
            self.counters.flows_finished += 1;
            out.push(StreamEvent::Closed { flow: key });
        }
    }
}

struct Emitter<'a> {
    flow: FlowKey,
    direction: Direction,
    out: &'a mut Vec<StreamEvent>,
}

impl Emitter<'_> {
    fn data(&mut self, bytes: Span) {
        self.out.push(StreamEvent::Data {
            flow: self.flow,
            direction: self.direction,
            bytes,
        });
    }

    fn discontinuity(&mut self) {
        self.out.push(StreamEvent::Discontinuity {
            flow: self.flow,
            direction: self.direction,
        });
    }
}

impl HalfStream {
    /// Delivers or buffers one segment's payload starting at `seq`.
    fn accept(
        &mut self,
        seq: u32,
        payload: &[u8],
        now: Duration,
        limits: &ReassemblyConfig,
        counters: &mut ReassemblyCounters,
        emit: &mut Emitter<'_>,
    ) {
        let Some(next) = self.next_seq else {
            return;
        };
        if !payload.is_empty() {
            let ahead = seq.wrapping_sub(next) as i32;
            if ahead > 0 {
                let start = self.next_offset + u64::from(ahead.unsigned_abs());
                self.buffer(start, payload, now, limits, counters);
            } else {
                let already = ahead.unsigned_abs() as usize;
                if already > 0 {
                    counters.retransmitted += 1;
                }
                if let Some(fresh) = payload.get(already..).filter(|rest| !rest.is_empty()) {
                    self.advance(fresh, counters);
                    emit.data(Span::Within(already..payload.len()));
                }
            }
        }
        self.drain(now, counters, emit);
    }

    /// Buffers the part of `payload` (at stream offset `start`) that is not
    /// buffered yet. Entries overlapping either end are kept and the new data
    /// trimmed to them; entries wholly inside it are replaced by it, so each
    /// segment adds at most one entry and costs O(log n) plus what it replaces.
    fn buffer(
        &mut self,
        start: u64,
        payload: &[u8],
        now: Duration,
        limits: &ReassemblyConfig,
        counters: &mut ReassemblyCounters,
    ) {
        let mut from = start;
        let mut to = start + payload.len() as u64;
        let (mut replaced, mut replaced_cost) = (0, 0);
        // Entries never overlap, so those overlapping the new data are the
        // last ones starting before its end, walking back until one ends
        // before its start.
        for (&key, bytes) in self.pending.range(..to).rev() {
            let end = key + bytes.len() as u64;
            if end <= start {
                break;
            }
            if end > to {
                to = key;
            } else if key < start {
                from = end;
            } else {
                replaced += 1;
                replaced_cost += bytes.len() + SEGMENT_OVERHEAD;
            }
        }
        if from >= to {
            counters.retransmitted += 1;
            return;
        }
        let fresh = &payload[offset_len(from - start)..offset_len(to - start)];
        let cost = self.pending_cost - replaced_cost + fresh.len() + SEGMENT_OVERHEAD;
        if cost > limits.max_buffered_per_flow
            || self.pending.len() - replaced >= limits.max_segments_per_flow
        {
            counters.bytes_dropped_over_cap += fresh.len() as u64;
            return;
        }
        if replaced > 0 {
            while let Some((&key, _)) = self.pending.range(from..to).next() {
                self.pending.remove(&key);
            }
        }
        counters.out_of_order += 1;
        self.pending_cost = cost;
        self.pending.insert(from, fresh.to_vec());
        self.gap_since.get_or_insert(now);
    }

    /// Delivers buffered segments that became in order, trimming overlaps.
    fn drain(&mut self, now: Duration, counters: &mut ReassemblyCounters, emit: &mut Emitter<'_>) {
        let before = self.next_offset;
        while let Some(entry) = self.pending.first_entry()
            && *entry.key() <= self.next_offset
        {
            let (key, mut bytes) = entry.remove_entry();
            self.pending_cost -= bytes.len() + SEGMENT_OVERHEAD;
            let already = offset_len(self.next_offset - key);
            if already < bytes.len() {
                bytes.drain(..already);
                self.advance(&bytes, counters);
                emit.data(Span::Owned(bytes));
            }
        }
        // A hole that just closed restarts the clock for the next one.
        self.gap_since = match (self.pending.is_empty(), before == self.next_offset) {
            (true, _) => None,
            (false, true) => self.gap_since.or(Some(now)),
            (false, false) => Some(now),
        };
        if let (Some(next), Some(fin)) = (self.next_seq, self.fin_seq)
            && fin.wrapping_sub(next) as i32 <= 0
        {
            self.finished = true;
            self.pending.clear();
            self.pending_cost = 0;
        }
    }

    /// Skips the hole before the first buffered segment when it has stayed
    /// open for `timeout`, and delivers what follows it.
    fn skip_stale_gap(
        &mut self,
        now: Duration,
        timeout: Duration,
        counters: &mut ReassemblyCounters,
        emit: &mut Emitter<'_>,
    ) {
        let stale = self
            .gap_since
            .is_some_and(|since| now.saturating_sub(since) >= timeout);
        if !stale {
            return;
        }
        let Some(&first) = self.pending.keys().next() else {
            self.gap_since = None;
            return;
        };
        counters.gaps_skipped += 1;
        emit.discontinuity();
        self.skip_to(first);
        self.drain(now, counters, emit);
    }

    /// Moves the next expected byte past `fresh`, which is being delivered.
    fn advance(&mut self, fresh: &[u8], counters: &mut ReassemblyCounters) {
        let len = len_u32(fresh);
        counters.bytes += u64::from(len);
        self.next_seq = self.next_seq.map(|next| next.wrapping_add(len));
        self.next_offset += u64::from(len);
    }

    /// Gives up on the hole before stream offset `offset`.
    fn skip_to(&mut self, offset: u64) {
        let skipped = (offset - self.next_offset) as u32;
        self.next_seq = self.next_seq.map(|next| next.wrapping_add(skipped));
        self.next_offset = offset;
    }
}

/// Payload lengths are bounded by the capture size; saturate rather than wrap.
fn len_u32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

/// A distance between stream offsets within one segment or buffered entry.
fn offset_len(distance: u64) -> usize {
    usize::try_from(distance).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::packet::TcpFlags;

    use std::net::{Ipv4Addr, SocketAddrV4};

    const CLIENT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000));
    const BROKER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9092));

    fn seg(seq: u32, flags: TcpFlags, payload: &[u8]) -> TcpSegment<'_> {
        TcpSegment {
            src: CLIENT,
            dst: BROKER,
            seq,
            ack: 0,
            flags,
            payload,
        }
    }

    fn data(payload: &[u8], seq: u32) -> TcpSegment<'_> {
        seg(
            seq,
            TcpFlags {
                ack: true,
                ..TcpFlags::default()
            },
            payload,
        )
    }

    fn syn(seq: u32) -> TcpSegment<'static> {
        seg(
            seq,
            TcpFlags {
                syn: true,
                ..TcpFlags::default()
            },
            b"",
        )
    }

    fn stream(events: &[StreamEvent]) -> Vec<u8> {
        events
            .iter()
            .flat_map(|e| match e {
                StreamEvent::Data { bytes, .. } => bytes.bytes(&[]).to_vec(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Feeds `seg`, keeping what it delivered as owned bytes so that the
    /// events outlive the segment.
    fn feed(r: &mut Reassembler, seg: &TcpSegment<'_>, now: Duration, out: &mut Vec<StreamEvent>) {
        let from = out.len();
        r.on_segment(seg, now, out);
        for event in &mut out[from..] {
            if let StreamEvent::Data { bytes, .. } = event {
                bytes.detach(seg.payload);
            }
        }
    }

    fn run(r: &mut Reassembler, segs: &[TcpSegment<'_>]) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for s in segs {
            feed(r, s, Duration::ZERO, &mut out);
        }
        out
    }

    #[test]
    fn in_order_after_syn_has_no_discontinuity() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let out = run(&mut r, &[syn(99), data(b"abc", 100), data(b"def", 103)]);
        assert_eq!(stream(&out), b"abcdef");
        assert!(
            !out.iter()
                .any(|e| matches!(e, StreamEvent::Discontinuity { .. }))
        );
        assert_eq!(r.counters().midstream_joins, 0);
    }

    #[test]
    fn reorders_trims_retransmissions_and_wraps() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let base = u32::MAX - 3;
        let out = run(
            &mut r,
            &[
                syn(base.wrapping_sub(1)),
                data(b"ghij", base.wrapping_add(6)),
                data(b"abcd", base),
                data(b"abcd", base),
                data(b"cdefgh", base.wrapping_add(2)),
                data(b"ij", base.wrapping_add(8)),
            ],
        );
        assert_eq!(stream(&out), b"abcdefghij");
        assert_eq!(r.counters().out_of_order, 1);
        assert!(r.counters().retransmitted >= 2);
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn midstream_join_is_a_discontinuity() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let out = run(&mut r, &[data(b"xyz", 5000)]);
        assert!(matches!(
            out.first(),
            Some(StreamEvent::Discontinuity { .. })
        ));
        assert_eq!(stream(&out), b"xyz");
        assert_eq!(r.counters().midstream_joins, 1);
    }

    #[test]
    fn cap_drops_and_gap_timeout_skips() {
        let config = ReassemblyConfig {
            max_buffered_per_flow: 4 + SEGMENT_OVERHEAD,
            ..ReassemblyConfig::default()
        };
        let mut r = Reassembler::new(config);
        let mut out = run(&mut r, &[syn(0), data(b"abc", 10), data(b"defgh", 20)]);
        assert_eq!(r.counters().bytes_dropped_over_cap, 5);
        assert_eq!(r.buffered_bytes(), 3 + SEGMENT_OVERHEAD);
        feed(&mut r, &data(b"", 1), Duration::from_secs(10), &mut out);
        assert_eq!(r.counters().gaps_skipped, 1);
        assert_eq!(stream(&out), b"abc");
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn rst_discards_and_fin_both_ways_closes() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let rst = seg(
            1,
            TcpFlags {
                rst: true,
                ..TcpFlags::default()
            },
            b"",
        );
        let out = run(&mut r, &[syn(0), data(b"later", 50), rst]);
        assert!(matches!(out.last(), Some(StreamEvent::Closed { .. })));
        assert_eq!(r.buffered_bytes(), 0);

        let fin = seg(
            1,
            TcpFlags {
                fin: true,
                ack: true,
                ..TcpFlags::default()
            },
            b"bye",
        );
        let mut back = fin.clone();
        (back.src, back.dst, back.seq) = (fin.dst, fin.src, 500);
        let out = run(&mut r, &[syn(0), fin, back]);
        assert_eq!(stream(&out), b"byebye");
        assert!(matches!(out.last(), Some(StreamEvent::Closed { .. })));
        assert_eq!(r.counters().flows_finished, 1);
    }

    /// One byte per segment: a hole at `seq` 1, then `n` bytes beyond it in
    /// reverse order, then the hole. Quadratic buffering would take minutes.
    #[test]
    fn reverse_order_tiny_segments_reassemble() {
        const N: usize = 200_000;
        let config = ReassemblyConfig {
            max_segments_per_flow: N,
            ..ReassemblyConfig::default()
        };
        let mut r = Reassembler::new(config);
        let sent: Vec<u8> = (0..=N).map(|i| (i % 251) as u8).collect();
        let mut out = run(&mut r, &[syn(0)]);
        for (i, byte) in sent.iter().enumerate().skip(1).rev() {
            feed(
                &mut r,
                &data(std::slice::from_ref(byte), 1 + i as u32),
                Duration::ZERO,
                &mut out,
            );
        }
        assert_eq!(r.buffered_bytes(), N * (1 + SEGMENT_OVERHEAD));
        feed(&mut r, &data(&sent[..1], 1), Duration::ZERO, &mut out);
        assert!(stream(&out) == sent, "reassembled stream differs");
        assert_eq!(r.counters().out_of_order, N as u64);
        assert_eq!(r.counters().bytes_dropped_over_cap, 0);
        assert_eq!(r.buffered_bytes(), 0);
    }

    /// Tiny segments are charged their bookkeeping, and past either cap they
    /// are dropped without stalling the stream once the sender retransmits.
    #[test]
    fn tiny_segments_are_bounded_by_the_overhead_aware_caps() {
        const N: usize = 10_000;
        let sent: Vec<u8> = (0..=N).map(|i| (i % 256) as u8).collect();
        for (config, kept) in [
            (
                ReassemblyConfig {
                    max_buffered_per_flow: 64 * 1024,
                    ..ReassemblyConfig::default()
                },
                64 * 1024 / (1 + SEGMENT_OVERHEAD),
            ),
            (
                ReassemblyConfig {
                    max_segments_per_flow: 100,
                    ..ReassemblyConfig::default()
                },
                100,
            ),
        ] {
            let cap = config.max_buffered_per_flow;
            let mut r = Reassembler::new(config);
            let mut out = run(&mut r, &[syn(0)]);
            for (i, byte) in sent.iter().enumerate().skip(1) {
                feed(
                    &mut r,
                    &data(std::slice::from_ref(byte), 1 + i as u32),
                    Duration::ZERO,
                    &mut out,
                );
                assert!(r.buffered_bytes() <= cap, "{}", r.buffered_bytes());
            }
            assert_eq!(r.buffered_bytes(), kept * (1 + SEGMENT_OVERHEAD));
            assert_eq!(r.counters().bytes_dropped_over_cap, (N - kept) as u64);
            feed(&mut r, &data(&sent[..1], 1), Duration::ZERO, &mut out);
            assert!(stream(&out) == sent[..=kept], "delivered the kept prefix");
            feed(
                &mut r,
                &data(&sent[kept + 1..], 2 + kept as u32),
                Duration::ZERO,
                &mut out,
            );
            assert!(stream(&out) == sent, "retransmission fills the rest");
            assert_eq!(r.buffered_bytes(), 0);
        }
    }

    use crate::test_rng::Rng;

    #[test]
    fn overlapping_duplicates_in_random_order_across_wraparound() {
        const LEN: usize = 20_000;
        let mut rng = Rng(7);
        for round in 0..20 {
            let sent: Vec<u8> = (0..LEN).map(|_| rng.next() as u8).collect();
            let base = u32::MAX - 5_000 - rng.below(10_000) as u32;
            // A tiling of the whole stream, then overlapping and duplicate extras.
            let mut ranges = Vec::new();
            let mut at = 0;
            while at < LEN {
                let end = (at + 1 + rng.below(300)).min(LEN);
                ranges.push((at, end));
                at = end;
            }
            for _ in 0..ranges.len() {
                let start = rng.below(LEN);
                ranges.push((start, (start + 1 + rng.below(900)).min(LEN)));
                let duplicate = ranges[rng.below(ranges.len())];
                ranges.push(duplicate);
            }
            for i in (1..ranges.len()).rev() {
                ranges.swap(i, rng.below(i + 1));
            }
            let mut r = Reassembler::new(ReassemblyConfig::default());
            let mut out = run(&mut r, &[syn(base.wrapping_sub(1))]);
            for &(start, end) in &ranges {
                let seq = base.wrapping_add(start as u32);
                feed(
                    &mut r,
                    &data(&sent[start..end], seq),
                    Duration::ZERO,
                    &mut out,
                );
            }
            assert!(stream(&out) == sent, "round {round}: stream differs");
            assert!(
                !out.iter()
                    .any(|e| matches!(e, StreamEvent::Discontinuity { .. })),
                "round {round}"
            );
            assert_eq!(r.buffered_bytes(), 0, "round {round}");
            assert_eq!(r.counters().bytes, LEN as u64, "round {round}");
        }
    }

    #[test]
    fn idle_flows_expire() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut out = run(&mut r, &[syn(0)]);
        r.expire_idle(Duration::from_secs(301), &mut out);
        assert_eq!(r.counters().flows_expired, 1);
        assert!(matches!(out.last(), Some(StreamEvent::Closed { .. })));
    }
}
