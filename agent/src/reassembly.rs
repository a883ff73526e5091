//! TCP reassembly: turns captured segments into the ordered byte stream of
//! each direction of each Kafka connection.
//!
//! The capture is passive, so nothing here can ask for a retransmission: it
//! buffers out-of-order data up to a cap, trims what it already delivered,
//! and when data is lost for good it skips the hole and says so, so that the
//! Kafka framer resynchronises instead of misreading the stream.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::packet::TcpSegment;

/// Identifies one Kafka connection, whichever way its segments travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// The side that is not a broker port.
    pub client: SocketAddr,
    /// The side whose port is one of the broker ports.
    pub broker: SocketAddr,
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
    /// Out-of-order bytes buffered per direction before further ones are dropped.
    pub max_buffered_per_flow: usize,
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
            gap_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(300),
            max_flows: 65_536,
        }
    }
}

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
        bytes: Vec<u8>,
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
    /// Out-of-order bytes dropped because the per-flow cap was reached.
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
    /// Out-of-order segments as (sequence number, bytes).
    pending: Vec<(u32, Vec<u8>)>,
    pending_bytes: usize,
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
        self.to_broker.pending_bytes + self.to_client.pending_bytes
    }
}

/// Per-connection, per-direction TCP reassembly. Pure: time is passed in.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    flows: HashMap<FlowKey, Flow>,
    counters: ReassemblyCounters,
    last_sweep: Duration,
}

impl Reassembler {
    /// Creates a reassembler with the given limits.
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            flows: HashMap::new(),
            counters: ReassemblyCounters::default(),
            last_sweep: Duration::ZERO,
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> &ReassemblyCounters {
        &self.counters
    }

    /// Out-of-order bytes held across all connections (for memory bounds).
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
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= self.config.max_flows {
                self.counters.flows_over_limit += 1;
                return;
            }
            if !seg.flags.syn {
                self.counters.midstream_joins += 1;
            }
            self.flows.insert(key, Flow::default());
        }
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
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
        let cap = self.config.max_buffered_per_flow;
        let emit = Emitter {
            flow: key,
            direction,
            out,
        };
        half.accept(payload_seq, seg.payload, now, cap, &mut self.counters, emit);
        self.skip_stale_gap(key, direction, now, out);
        self.close_if_finished(key, out);
    }

    /// Skips stale holes and expires idle connections; call when time passes
    /// without segments (on_segment already does it).
    pub fn expire_idle(&mut self, now: Duration, out: &mut Vec<StreamEvent>) {
        let period = self.config.gap_timeout.min(self.config.idle_timeout);
        if now.saturating_sub(self.last_sweep) < period {
            return;
        }
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
        let timeout = self.config.gap_timeout;
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        let half = flow.half(direction);
        let stale = half
            .gap_since
            .is_some_and(|since| now.saturating_sub(since) >= timeout);
        if !stale {
            return;
        }
        let Some(next) = half.next_seq else {
            return;
        };
        let Some(first) = half
            .pending
            .iter()
            .map(|(seq, _)| *seq)
            .min_by_key(|seq| seq.wrapping_sub(next))
        else {
            half.gap_since = None;
            return;
        };
        self.counters.gaps_skipped += 1;
        out.push(StreamEvent::Discontinuity {
            flow: key,
            direction,
        });
        half.next_seq = Some(first);
        let emit = Emitter {
            flow: key,
            direction,
            out,
        };
        half.drain(now, &mut self.counters, emit);
        self.close_if_finished(key, out);
    }

    fn close_if_finished(&mut self, key: FlowKey, out: &mut Vec<StreamEvent>) {
        let done = self
            .flows
            .get(&key)
            .is_some_and(|flow| flow.to_broker.finished && flow.to_client.finished);
        if done {
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
    fn data(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.out.push(StreamEvent::Data {
                flow: self.flow,
                direction: self.direction,
                bytes: bytes.to_vec(),
            });
        }
    }
}

impl HalfStream {
    /// Delivers or buffers one segment's payload starting at `seq`.
    fn accept(
        &mut self,
        seq: u32,
        payload: &[u8],
        now: Duration,
        cap: usize,
        counters: &mut ReassemblyCounters,
        mut emit: Emitter<'_>,
    ) {
        let Some(next) = self.next_seq else {
            return;
        };
        if !payload.is_empty() {
            let ahead = seq.wrapping_sub(next) as i32;
            if ahead > 0 {
                self.buffer(seq, payload, now, cap, counters);
            } else {
                let already = ahead.unsigned_abs() as usize;
                if already > 0 {
                    counters.retransmitted += 1;
                }
                if let Some(fresh) = payload.get(already..).filter(|rest| !rest.is_empty()) {
                    counters.bytes += fresh.len() as u64;
                    self.next_seq = Some(next.wrapping_add(len_u32(fresh)));
                    emit.data(fresh);
                }
            }
        }
        self.drain(now, counters, emit);
    }

    fn buffer(
        &mut self,
        seq: u32,
        payload: &[u8],
        now: Duration,
        cap: usize,
        counters: &mut ReassemblyCounters,
    ) {
        if self
            .pending
            .iter()
            .any(|(s, bytes)| *s == seq && bytes.len() >= payload.len())
        {
            counters.retransmitted += 1;
            return;
        }
        if self.pending_bytes.saturating_add(payload.len()) > cap {
            counters.bytes_dropped_over_cap += payload.len() as u64;
            return;
        }
        counters.out_of_order += 1;
        self.pending_bytes += payload.len();
        self.pending.push((seq, payload.to_vec()));
        self.gap_since.get_or_insert(now);
    }

    /// Delivers buffered segments that became in order, trimming overlaps.
    fn drain(&mut self, now: Duration, counters: &mut ReassemblyCounters, mut emit: Emitter<'_>) {
        let before = self.next_seq;
        while let Some(next) = self.next_seq {
            let ready = self
                .pending
                .iter()
                .position(|(seq, _)| seq.wrapping_sub(next) as i32 <= 0);
            let Some(index) = ready else {
                break;
            };
            let (seq, bytes) = self.pending.swap_remove(index);
            self.pending_bytes = self.pending_bytes.saturating_sub(bytes.len());
            let already = next.wrapping_sub(seq) as usize;
            if let Some(fresh) = bytes.get(already..).filter(|rest| !rest.is_empty()) {
                counters.bytes += fresh.len() as u64;
                self.next_seq = Some(next.wrapping_add(len_u32(fresh)));
                emit.data(fresh);
            }
        }
        // A hole that just closed restarts the clock for the next one.
        self.gap_since = match (self.pending.is_empty(), before == self.next_seq) {
            (true, _) => None,
            (false, true) => self.gap_since.or(Some(now)),
            (false, false) => Some(now),
        };
        if let (Some(next), Some(fin)) = (self.next_seq, self.fin_seq)
            && fin.wrapping_sub(next) as i32 <= 0
        {
            self.finished = true;
            self.pending.clear();
            self.pending_bytes = 0;
        }
    }
}

/// Payload lengths are bounded by the capture size; saturate rather than wrap.
fn len_u32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::TcpFlags;

    const CLIENT: &str = "10.0.0.1:40000";
    const BROKER: &str = "10.0.0.2:9092";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn seg(seq: u32, flags: TcpFlags, payload: &[u8]) -> TcpSegment<'_> {
        TcpSegment {
            src: addr(CLIENT),
            dst: addr(BROKER),
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
                StreamEvent::Data { bytes, .. } => bytes.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn run(r: &mut Reassembler, segs: &[TcpSegment<'_>]) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for s in segs {
            r.on_segment(s, Duration::ZERO, &mut out);
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
            max_buffered_per_flow: 4,
            ..ReassemblyConfig::default()
        };
        let mut r = Reassembler::new(config);
        let mut out = run(&mut r, &[syn(0), data(b"abc", 10), data(b"defgh", 20)]);
        assert_eq!(r.counters().bytes_dropped_over_cap, 5);
        assert_eq!(r.buffered_bytes(), 3);
        r.on_segment(&data(b"", 1), Duration::from_secs(10), &mut out);
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

    #[test]
    fn idle_flows_expire() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut out = run(&mut r, &[syn(0)]);
        r.expire_idle(Duration::from_secs(301), &mut out);
        assert_eq!(r.counters().flows_expired, 1);
        assert!(matches!(out.last(), Some(StreamEvent::Closed { .. })));
    }
}
