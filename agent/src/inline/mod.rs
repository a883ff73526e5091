//! Inline enforcement's decisions: every segment a client sends to the broker comes through
//! an NFQUEUE, and this pure state machine says what happens to it, with the whole stream in
//! view — so a request is matched exactly even when its header straddles segments or it is
//! not the first request in its segment, and it can be held (Delay), which no kernel rule can.
//!
//! Packets (raw IP, as NFQUEUE hands them over) and time go in; [`Release`]s come out: which
//! packet gets which verdict, now. The I/O edge only reads the queue and issues the verdicts
//! in the order given. The stream is rebuilt by the sniffer's own reassembler, framer and
//! decoder, and requests are matched by the same [`RequestMatcher`] Connection mode uses.
//!
//! What a hit request gets, decided on the segment that completes it (until then the broker
//! cannot act on it, so earlier segments pass at once and TCP never stalls on a request that
//! is still arriving):
//! - **Delay**: that segment and everything behind it on the connection is held, in order,
//!   until the request's time has come (`delay` plus a uniform draw up to `jitter`), then
//!   accepted. Each request is held once from its own arrival; a request queued behind a
//!   held one waits for it but is not delayed twice. Retransmissions the client's TCP sends
//!   meanwhile are held behind too, so the broker never sees the stream out of order.
//! - **Drop**: that segment is dropped, and so is every later segment carrying bytes at or
//!   beyond it (the client's retransmissions): the connection is blackholed from that
//!   request on, as TCP makes any dropped segment do.
//! - **Reject**: the same segments are answered with a TCP reset (the edge re-marks them for
//!   the chain's REJECT rule), which kills the connection and every request in flight on it.
//!
//! Probability is drawn once per request. Memory is bounded: held packets and bytes by a
//! [`Budget`] — beyond it the connection's held packets are let go at once, in order, and
//! the new one accepted ("failed open", counted) —, reassembly and framing by their
//! configurations, and partial frames in total by [`InlineConfig::max_framed_bytes`].
//!
//! It depends on [`crate::wire`], [`crate::decode`], [`crate::sniffer`] and [`crate::fault`]
//! (the matcher); only the binary's NFQUEUE edge drives it.

mod counters;
mod draw;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use uuid::Uuid;

pub use counters::{InlineCounters, SharedCounters};
pub use draw::Draw;

use crate::FastMap;
use crate::decode::decode_request;
use crate::fault::RequestMatcher;
use crate::sniffer::event::Event;
use crate::sniffer::{RequestBoundary, request_event};
use crate::wire::frame::{FrameEvent, Framer, FramerConfig, FramingCounters};
use crate::wire::packet::{LinkType, TcpSegment, parse_frame};
use crate::wire::reassembly::{Direction, FlowKey, Reassembler, ReassemblyConfig, StreamEvent};

/// The edge's handle on one queued packet (NFQUEUE's packet id, or any unique number).
pub type PacketId = u64;

/// What the kernel is told to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketVerdict {
    /// Let it through (NF_ACCEPT).
    Accept,
    /// Discard it (NF_DROP); TCP will retransmit it.
    Drop,
    /// Send it back through the chain with the reset mark (NF_REPEAT), which answers the
    /// client with a TCP reset.
    Reject,
}

/// One verdict to issue now. Releases come in the order they must be issued, which keeps
/// every connection's segments in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The packet.
    pub packet: PacketId,
    /// Its verdict.
    pub verdict: PacketVerdict,
}

/// What a hit request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Blackhole the connection from the request on.
    Drop,
    /// Reset the connection at the request.
    Reject,
    /// Hold the request for `delay` plus a uniform draw in `0..=jitter`.
    Delay {
        /// The hold.
        delay: Duration,
        /// The largest random extra.
        jitter: Duration,
    },
}

/// What packets may be held at once, over all connections; beyond it, the decider fails open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Packets held. Each pins a receive buffer in the edge, so keep it modest.
    pub max_packets: usize,
    /// Bytes of IP packets held.
    pub max_bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_packets: 1024,
            max_bytes: 16 << 20,
        }
    }
}

/// Everything that decides what the decider does and bounds its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineConfig {
    /// Broker ports and TCP limits (only the client→broker direction is fed).
    pub reassembly: ReassemblyConfig,
    /// Requests up to `max_frame` are decided on their whole frame; larger ones on their
    /// head (the request header: api, version, client id), since their body is not buffered.
    pub framer: FramerConfig,
    /// Bytes of partial frames held over all connections; beyond it the connection being
    /// fed forgets its partial frame (that request passes undecided, counted as failed open).
    pub max_framed_bytes: usize,
    /// What a hit request gets.
    pub action: Action,
    /// Percent of matching requests hit, drawn per request (1..=100).
    pub probability: u8,
    /// Held packets.
    pub budget: Budget,
}

impl InlineConfig {
    /// Limits sized for an agent in the data path: small enough that hostile traffic cannot
    /// grow it much, large enough for real producers (1 MiB requests are decided whole).
    pub fn new(ports: impl IntoIterator<Item = u16>, action: Action, probability: u8) -> Self {
        Self {
            reassembly: ReassemblyConfig {
                broker_ports: ports.into_iter().collect(),
                max_buffered_per_flow: 256 << 10,
                max_segments_per_flow: 1024,
                max_flows: 4096,
                ..ReassemblyConfig::default()
            },
            framer: FramerConfig {
                max_frame: 1 << 20,
                oversized_head: 64 << 10,
            },
            max_framed_bytes: 64 << 20,
            action,
            probability,
            budget: Budget::default(),
        }
    }
}

/// What happened to a matching request, for reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Held for this long.
    Delayed(Duration),
    /// Its segments dropped.
    Dropped,
    /// Its connection reset.
    Reset,
    /// Not hit: the probability draw spared it.
    Spared,
    /// Hit, but let through because the hold budget was full.
    FailedOpen,
}

/// A matching request and what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The request.
    pub request: Event,
    /// What it got.
    pub outcome: Outcome,
}

/// Hits kept for [`Decider::take_hits`] between two calls; older ones are not reported.
const MAX_HITS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Held {
    packet: PacketId,
    bytes: usize,
    /// Not before this time; zero for a packet that only waits for the ones ahead of it.
    release_at: Duration,
}

/// A connection cut by Drop or Reject: payload at or beyond `seq` gets `verdict`.
#[derive(Debug, Clone, Copy)]
struct Cut {
    seq: u32,
    verdict: PacketVerdict,
}

struct Connection {
    requests: Framer,
    cut: Option<Cut>,
    held: VecDeque<Held>,
    /// The reassembler forgot it; the entry stays only until its held packets are out.
    closed: bool,
}

impl Connection {
    fn new(framer: FramerConfig) -> Self {
        Self {
            requests: Framer::new(framer),
            cut: None,
            held: VecDeque::new(),
            closed: false,
        }
    }
}

/// What the requests completed by one packet call for.
#[derive(Debug, Default)]
struct Completed {
    /// Requests hit.
    hits: Vec<Event>,
    /// Matching requests the draw spared.
    spared: Vec<Event>,
    /// When the latest hit request may go (Delay).
    release_at: Duration,
}

/// The decisions of one Inline fault in one network namespace.
pub struct Decider {
    config: InlineConfig,
    matcher: RequestMatcher,
    reassembler: Reassembler,
    connections: FastMap<FlowKey, Connection>,
    /// Connections with held packets.
    holding: BTreeSet<FlowKey>,
    topic_names: FastMap<Uuid, String>,
    draw: Draw,
    counters: InlineCounters,
    framing: FramingCounters,
    held_packets: usize,
    held_bytes: usize,
    framed_bytes: usize,
    hits: Vec<Hit>,
    stream: Vec<StreamEvent>,
    frames: Vec<FrameEvent>,
}

impl Decider {
    /// A decider for the fault `matcher` describes; `seed` seeds the probability and jitter
    /// draws (any value; tests fix it to replay).
    pub fn new(config: InlineConfig, matcher: RequestMatcher, seed: u64) -> Self {
        Self {
            reassembler: Reassembler::new(config.reassembly.clone()),
            config,
            matcher,
            connections: FastMap::default(),
            holding: BTreeSet::new(),
            topic_names: FastMap::default(),
            draw: Draw::new(seed),
            counters: InlineCounters::default(),
            framing: FramingCounters::default(),
            held_packets: 0,
            held_bytes: 0,
            framed_bytes: 0,
            hits: Vec::new(),
            stream: Vec::new(),
            frames: Vec::new(),
        }
    }

    /// Names a topic id (learned from the broker), so requests that name topics by id only
    /// (Produce and Fetch v13+) match the fault's topic names.
    pub fn learn_topic_id(&mut self, id: [u8; 16], name: &str) {
        self.topic_names
            .insert(Uuid::from_bytes(id), name.to_owned());
    }

    /// The counters so far, with the current held packets and bytes.
    pub fn counters(&self) -> InlineCounters {
        InlineCounters {
            held_packets: self.held_packets as u64,
            held_bytes: self.held_bytes as u64,
            buffered_bytes: (self.framed_bytes + self.reassembler.buffered_bytes()) as u64,
            ..self.counters
        }
    }

    /// The matching requests decided since the last call, with what they got.
    pub fn take_hits(&mut self) -> Vec<Hit> {
        std::mem::take(&mut self.hits)
    }

    /// When [`Decider::tick`] must next run to release held packets on time.
    pub fn next_release(&self) -> Option<Duration> {
        self.holding
            .iter()
            .filter_map(|flow| self.connections.get(flow)?.held.front())
            .map(|held| held.release_at)
            .min()
    }

    /// Decides the queued packet `packet` (a raw IP packet) arriving at `now`, and releases
    /// held packets whose time has come; verdicts to issue go to `out`, in order.
    pub fn on_packet(
        &mut self,
        packet: PacketId,
        ip: &[u8],
        now: Duration,
        out: &mut Vec<Release>,
    ) {
        self.counters.packets += 1;
        match parse_frame(LinkType::RawIp, ip) {
            Ok(segment) => self.on_segment(packet, ip.len(), &segment, now, out),
            Err(_) => {
                self.counters.packets_unparsed += 1;
                out.push(accept(packet));
            }
        }
        self.release_due(now, out);
    }

    /// Lets time pass: releases what is due and forgets idle connections.
    pub fn tick(&mut self, now: Duration, out: &mut Vec<Release>) {
        let mut stream = std::mem::take(&mut self.stream);
        self.reassembler.expire_idle(now, &mut stream);
        self.handle(&mut stream, &[], now);
        self.stream = stream;
        self.release_due(now, out);
    }

    /// Lets every held packet go, in order (the Inline enforcer is stopping).
    pub fn release_all(&mut self, out: &mut Vec<Release>) {
        for flow in std::mem::take(&mut self.holding) {
            if let Some(connection) = self.connections.get_mut(&flow) {
                for held in connection.held.drain(..) {
                    out.push(accept(held.packet));
                }
            }
        }
        self.connections.retain(|_, connection| !connection.closed);
        self.held_packets = 0;
        self.held_bytes = 0;
    }

    fn on_segment(
        &mut self,
        packet: PacketId,
        bytes: usize,
        segment: &TcpSegment<'_>,
        now: Duration,
        out: &mut Vec<Release>,
    ) {
        let Some((flow, Direction::ToBroker)) = self.reassembler.classify(segment) else {
            // Responses are not queued; if some are, they only pass.
            out.push(accept(packet));
            return;
        };
        if let Some(cut) = self.connections.get(&flow).and_then(|c| c.cut)
            && carries_from(segment, cut.seq)
        {
            match cut.verdict {
                PacketVerdict::Drop => self.counters.packets_dropped += 1,
                PacketVerdict::Reject => self.counters.packets_reset += 1,
                PacketVerdict::Accept => {}
            }
            out.push(Release {
                packet,
                verdict: cut.verdict,
            });
            return;
        }
        let mut stream = std::mem::take(&mut self.stream);
        self.reassembler.on_segment(segment, now, &mut stream);
        let completed = self.handle(&mut stream, segment.payload, now);
        self.stream = stream;
        for request in completed.spared {
            self.report(request, Outcome::Spared);
        }
        if completed.hits.is_empty() {
            self.pass(flow, packet, bytes, Duration::ZERO, out);
            return;
        }
        let requests = completed.hits.len() as u64;
        match self.config.action {
            Action::Drop | Action::Reject => {
                let (verdict, outcome) = if self.config.action == Action::Drop {
                    self.counters.dropped += requests;
                    self.counters.packets_dropped += 1;
                    (PacketVerdict::Drop, Outcome::Dropped)
                } else {
                    self.counters.reset += requests;
                    self.counters.packets_reset += 1;
                    (PacketVerdict::Reject, Outcome::Reset)
                };
                let connection = self
                    .connections
                    .entry(flow)
                    .or_insert_with(|| Connection::new(self.config.framer));
                connection.cut = Some(Cut {
                    seq: segment.seq,
                    verdict,
                });
                // Whatever is held on the connection was sent before; it goes first.
                self.flush(flow, out);
                out.push(Release { packet, verdict });
                for request in completed.hits {
                    self.report(request, outcome);
                }
            }
            Action::Delay { .. } => {
                let held = self.pass(flow, packet, bytes, completed.release_at, out);
                let outcome = if held {
                    self.counters.delayed += requests;
                    Outcome::Delayed(completed.release_at.saturating_sub(now))
                } else {
                    Outcome::FailedOpen
                };
                for request in completed.hits {
                    self.report(request, outcome);
                }
            }
        }
    }

    /// Accepts the packet, or holds it when it must wait (its own release time, or packets
    /// held ahead of it on the connection). Over budget, the connection's held packets and
    /// this one are let go now, in order. Returns whether the packet is held.
    fn pass(
        &mut self,
        flow: FlowKey,
        packet: PacketId,
        bytes: usize,
        release_at: Duration,
        out: &mut Vec<Release>,
    ) -> bool {
        let waits = self
            .connections
            .get(&flow)
            .is_some_and(|connection| !connection.held.is_empty());
        if !waits && release_at.is_zero() {
            out.push(accept(packet));
            return false;
        }
        let budget = self.config.budget;
        if self.held_packets >= budget.max_packets || self.held_bytes + bytes > budget.max_bytes {
            self.counters.failed_open += 1;
            self.flush(flow, out);
            out.push(accept(packet));
            return false;
        }
        let framer = self.config.framer;
        let connection = self
            .connections
            .entry(flow)
            .or_insert_with(|| Connection::new(framer));
        connection.held.push_back(Held {
            packet,
            bytes,
            release_at,
        });
        self.held_packets += 1;
        self.held_bytes += bytes;
        self.holding.insert(flow);
        true
    }

    /// Lets the held packets of `flow` go now, in order.
    fn flush(&mut self, flow: FlowKey, out: &mut Vec<Release>) {
        let Some(connection) = self.connections.get_mut(&flow) else {
            return;
        };
        for held in connection.held.drain(..) {
            self.held_packets -= 1;
            self.held_bytes -= held.bytes;
            out.push(accept(held.packet));
        }
        self.holding.remove(&flow);
        if connection.closed {
            self.connections.remove(&flow);
        }
    }

    /// Releases, per connection in order, the held packets whose time has come.
    fn release_due(&mut self, now: Duration, out: &mut Vec<Release>) {
        if self.next_release().is_none_or(|next| next > now) {
            return;
        }
        let mut emptied = Vec::new();
        for flow in &self.holding {
            let Some(connection) = self.connections.get_mut(flow) else {
                emptied.push(*flow);
                continue;
            };
            while let Some(held) = connection.held.front().filter(|h| h.release_at <= now) {
                self.held_packets -= 1;
                self.held_bytes -= held.bytes;
                out.push(accept(held.packet));
                connection.held.pop_front();
            }
            if connection.held.is_empty() {
                emptied.push(*flow);
            }
        }
        for flow in emptied {
            self.holding.remove(&flow);
            if self.connections.get(&flow).is_some_and(|c| c.closed) {
                self.connections.remove(&flow);
            }
        }
    }

    /// Frames and decides what the reassembler delivered (emptying `stream`); `payload` is
    /// that of the segment just fed, which in-order data borrows from.
    fn handle(
        &mut self,
        stream: &mut Vec<StreamEvent>,
        payload: &[u8],
        now: Duration,
    ) -> Completed {
        let mut completed = Completed::default();
        for item in stream.drain(..) {
            match item {
                StreamEvent::Data {
                    flow,
                    direction: Direction::ToBroker,
                    bytes,
                } => self.on_data(flow, bytes.bytes(payload), now, &mut completed),
                StreamEvent::Data { .. } => {}
                StreamEvent::Discontinuity { flow, .. } => {
                    if let Some(connection) = self.connections.get_mut(&flow) {
                        self.framed_bytes -= connection.requests.buffered_bytes();
                        connection.requests.resync(&mut self.framing);
                    } else {
                        let mut connection = Connection::new(self.config.framer);
                        connection.requests.resync(&mut self.framing);
                        self.connections.insert(flow, connection);
                    }
                }
                StreamEvent::Closed { flow } => {
                    let Some(connection) = self.connections.get_mut(&flow) else {
                        continue;
                    };
                    self.framed_bytes -= connection.requests.buffered_bytes();
                    if connection.held.is_empty() {
                        self.connections.remove(&flow);
                    } else {
                        // A new connection on the same addresses starts afresh.
                        connection.requests = Framer::new(self.config.framer);
                        connection.cut = None;
                        connection.closed = true;
                    }
                }
            }
        }
        completed
    }

    fn on_data(&mut self, flow: FlowKey, bytes: &[u8], now: Duration, completed: &mut Completed) {
        let framer = self.config.framer;
        let connection = self
            .connections
            .entry(flow)
            .or_insert_with(|| Connection::new(framer));
        connection.closed = false;
        let before = connection.requests.buffered_bytes();
        let check = RequestBoundary {
            max_frame: framer.max_frame,
        };
        let mut frames = std::mem::take(&mut self.frames);
        connection
            .requests
            .push(bytes, &check, &mut self.framing, &mut frames);
        self.framed_bytes = self.framed_bytes + connection.requests.buffered_bytes() - before;
        if self.framed_bytes > self.config.max_framed_bytes {
            // Too much held in partial frames: this connection's request passes undecided.
            self.framed_bytes -= connection.requests.buffered_bytes();
            connection.requests.resync(&mut self.framing);
            self.counters.failed_open += 1;
        }
        for frame in frames.drain(..) {
            let (frame, declared) = match &frame {
                FrameEvent::Frame(span) => {
                    let frame = span.bytes(bytes);
                    (frame, frame.len())
                }
                FrameEvent::Oversized { declared, head } => (head.bytes(bytes), *declared),
            };
            self.on_request(flow, frame, declared, now, completed);
        }
        self.frames = frames;
    }

    fn on_request(
        &mut self,
        flow: FlowKey,
        frame: &[u8],
        declared: usize,
        now: Duration,
        completed: &mut Completed,
    ) {
        let Some(info) = decode_request(frame, declared) else {
            self.counters.short_frames += 1;
            return;
        };
        self.counters.requests_seen += 1;
        let names = &self.topic_names;
        let request = request_event(info, flow, now, declared, |id| names.get(&id).cloned());
        self.matcher.observe(&request);
        if !self.matcher.matches(&request) {
            return;
        }
        self.counters.requests_matched += 1;
        if !self.draw.hit(self.config.probability) {
            completed.spared.push(request);
            return;
        }
        if let Action::Delay { delay, jitter } = self.config.action {
            let release_at = now + delay + self.draw.up_to(jitter);
            completed.release_at = completed.release_at.max(release_at);
        }
        completed.hits.push(request);
    }

    fn report(&mut self, request: Event, outcome: Outcome) {
        if self.hits.len() < MAX_HITS {
            self.hits.push(Hit { request, outcome });
        }
    }
}

fn accept(packet: PacketId) -> Release {
    Release {
        packet,
        verdict: PacketVerdict::Accept,
    }
}

/// Whether the segment carries payload at or beyond sequence number `seq` (wrapping).
fn carries_from(segment: &TcpSegment<'_>, seq: u32) -> bool {
    let len = u32::try_from(segment.payload.len()).unwrap_or(u32::MAX);
    len > 0 && (segment.seq.wrapping_add(len).wrapping_sub(seq) as i32) > 0
}
