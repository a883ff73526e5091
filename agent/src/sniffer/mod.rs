//! The sniffer: captured packets in, Kafka request events out.
//!
//! A pure state machine (time comes with each packet) that chains packet
//! parsing, TCP reassembly, framing and decoding, pairs each request with its
//! response by correlation id, and emits one [`Event`] per request, when its
//! response arrives or when it can no longer arrive. [`event`] is what one request
//! looks like (and how `sniff` prints it), [`json`] writes its JSON lines; [`summary`] is
//! `sniff --summary`'s table.
//!
//! It depends on [`crate::wire`] and [`crate::decode`]. The fault's matcher reads its
//! events, the Inline decider reuses its request decoding, and the binary's `sniff` and
//! session feed it packets.

pub mod event;
pub mod json;
pub mod summary;

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::FastMap;
use uuid::Uuid;

use crate::decode::{
    REQUEST_PROBE_LEN, RequestInfo, TopicIds, TopicRef, api_name, decode_request, decode_response,
    plausible_request_start, response_correlation_id,
};
use crate::sniffer::event::Event;
use crate::wire::frame::{BoundaryCheck, FrameEvent, Framer, FramerConfig, FramingCounters};
use crate::wire::packet::{LinkType, PacketError, TcpSegment, parse_frame};
use crate::wire::reassembly::{
    Direction, FlowKey, Reassembler, ReassemblyConfig, ReassemblyCounters, StreamEvent,
};

/// Everything that bounds the sniffer's memory and decides what it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnifferConfig {
    /// Broker ports and TCP limits.
    pub reassembly: ReassemblyConfig,
    /// Frame size cap.
    pub framer: FramerConfig,
    /// Requests awaiting a response per connection; the oldest is reported
    /// unanswered beyond it.
    pub max_pending_per_connection: usize,
    /// Also report each request the moment it is decoded (see `take_requests`), for
    /// enforcement that must act before the response, or when no response will come.
    pub report_requests: bool,
}

impl Default for SnifferConfig {
    fn default() -> Self {
        Self {
            reassembly: ReassemblyConfig::default(),
            framer: FramerConfig::default(),
            max_pending_per_connection: 4096,
            report_requests: false,
        }
    }
}

impl SnifferConfig {
    /// The defaults, listening for brokers on `ports`.
    pub fn with_broker_ports(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut config = Self::default();
        config.reassembly.broker_ports = ports.into_iter().collect();
        config
    }
}

/// Decoding-level counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DecodeCounters {
    /// Frames offered to the sniffer.
    pub packets: u64,
    /// Frames that were not TCP over IP (ARP, UDP, …).
    pub packets_not_tcp: u64,
    /// IP fragments (not reassembled).
    pub ip_fragments: u64,
    /// Frames whose headers were truncated or inconsistent.
    pub packets_malformed: u64,
    /// Request frames decoded (fully or not).
    pub requests: u64,
    /// Response frames paired with their request.
    pub responses: u64,
    /// Requests or responses not fully decoded.
    pub decode_errors: u64,
    /// Frames too short to carry a correlation id.
    pub short_frames: u64,
    /// Responses whose correlation id matched no pending request.
    pub unmatched_responses: u64,
    /// Pending requests evicted because a connection had too many.
    pub pending_evicted: u64,
    /// Requests reported without a response (connection closed, evicted, end of input).
    pub unanswered: u64,
    /// Events emitted.
    pub events: u64,
}

/// All counters, flattened into one JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Packet and Kafka-level counters.
    #[serde(flatten)]
    pub decode: DecodeCounters,
    /// TCP reassembly counters.
    #[serde(flatten)]
    pub reassembly: ReassemblyCounters,
    /// Kafka framing counters.
    #[serde(flatten)]
    pub framing: FramingCounters,
}

struct PendingRequest {
    /// Boxed: an event is some 300 bytes, which the map would otherwise move in and out.
    event: Box<Event>,
    api_key: i16,
    api_version: i16,
}

/// Requests awaiting their response on one connection, oldest first.
#[derive(Default)]
struct Pending {
    order: VecDeque<i32>,
    by_id: FastMap<i32, PendingRequest>,
}

impl Pending {
    fn take(&mut self, correlation_id: i32) -> Option<PendingRequest> {
        let request = self.by_id.remove(&correlation_id)?;
        if self.order.front() == Some(&correlation_id) {
            self.order.pop_front();
        }
        Some(request)
    }

    fn pop_oldest(&mut self) -> Option<PendingRequest> {
        while let Some(id) = self.order.pop_front() {
            if let Some(request) = self.by_id.remove(&id) {
                return Some(request);
            }
        }
        None
    }

    fn insert(&mut self, correlation_id: i32, request: PendingRequest) -> Option<PendingRequest> {
        // Answered requests leave stale ids behind; compact them now and then.
        if self.order.len() > 2 * self.by_id.len() + 64 {
            let by_id = &self.by_id;
            self.order.retain(|id| by_id.contains_key(id));
        }
        self.order.push_back(correlation_id);
        self.by_id.insert(correlation_id, request)
    }
}

/// The event of a request decoded from a frame of `declared` bytes on `flow` at `ts`, without
/// its response; `name_of` names the topic ids it knows (the others stay as UUIDs). Shared by
/// the sniffer and the Inline decider, so that both report and match requests alike.
pub(crate) fn request_event(
    info: RequestInfo,
    flow: FlowKey,
    ts: Duration,
    declared: usize,
    name_of: impl Fn(Uuid) -> Option<String>,
) -> Event {
    // The names move into the event (a request's topics are mostly names).
    let topics = info
        .topics
        .into_iter()
        .map(|topic| match topic {
            TopicRef::Name(name) => name,
            TopicRef::Id(id) => name_of(id).unwrap_or_else(|| id.to_string()),
        })
        .collect();
    Event {
        ts,
        client: flow.client,
        broker: flow.broker,
        client_id: info.client_id,
        api: api_name(info.api_key),
        api_version: info.api_version,
        correlation_id: info.correlation_id,
        topics,
        records: info.records,
        request_bytes: declared as u64 + 4,
        latency_us: None,
        errors: None,
        group_id: info.group_id,
        transactional_id: info.transactional_id,
        response_bytes: None,
        decode_error: info.error.map(|e| e.to_string()),
    }
}

/// Requests resynchronise on a plausible request header.
pub(crate) struct RequestBoundary {
    /// The largest frame a plausible size prefix may declare.
    pub(crate) max_frame: usize,
}

impl BoundaryCheck for RequestBoundary {
    fn probe_len(&self) -> usize {
        REQUEST_PROBE_LEN
    }

    fn plausible(&self, probe: &[u8]) -> bool {
        plausible_request_start(probe, self.max_frame)
    }
}

/// Responses resynchronise on the correlation id of a pending request.
struct ResponseBoundary<'a> {
    pending: &'a Pending,
}

impl BoundaryCheck for ResponseBoundary<'_> {
    fn probe_len(&self) -> usize {
        8
    }

    fn plausible(&self, probe: &[u8]) -> bool {
        let size = probe
            .get(..4)
            .and_then(response_correlation_id)
            .unwrap_or(0);
        let correlation_id = probe.get(4..).and_then(response_correlation_id);
        size >= 4 && correlation_id.is_some_and(|id| self.pending.by_id.contains_key(&id))
    }
}

struct Connection {
    requests: Framer,
    responses: Framer,
    pending: Pending,
    /// The client has sent its first bytes (which tell TLS from Kafka).
    started: bool,
    /// The client's stream began with a TLS record: nothing on it is framed.
    tls: bool,
}

/// Whether `first`, the first bytes a client sent, begin a TLS record: a content type
/// (change_cipher_spec 20, alert 21, handshake 22, application_data 23) then protocol version
/// 3.0-3.4. As a Kafka size prefix that would be over 335 MB, which no request is.
fn starts_tls_record(first: &[u8]) -> bool {
    let pattern: [fn(u8) -> bool; 3] =
        [|b| (0x14..=0x17).contains(&b), |b| b == 0x03, |b| b <= 0x04];
    !first.is_empty() && first.iter().zip(pattern).all(|(&b, ok)| ok(b))
}

/// Something the sniffer tells once, apart from the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A client's stream to `broker` began with a TLS record: the requests on that port
    /// cannot be read. Told once per broker port.
    Tls { broker: SocketAddr },
}

/// The state of `flow`, created on first use.
fn connection(
    connections: &mut FastMap<FlowKey, Connection>,
    framer: FramerConfig,
    flow: FlowKey,
) -> &mut Connection {
    connections.entry(flow).or_insert_with(|| Connection {
        requests: Framer::new(framer),
        responses: Framer::new(framer),
        pending: Pending::default(),
        started: false,
        tls: false,
    })
}

/// The sniffer. Feed it packets in capture order; collect the events.
pub struct Sniffer {
    config: SnifferConfig,
    reassembler: Reassembler,
    connections: FastMap<FlowKey, Connection>,
    topic_ids: TopicIds,
    counters: DecodeCounters,
    framing: FramingCounters,
    fresh_requests: Vec<Event>,
    /// What the reassembler reported for the packet being handled, kept for its capacity.
    stream: Vec<StreamEvent>,
    /// The frames cut from the data being handled, kept for its capacity.
    frames: Vec<FrameEvent>,
    /// Broker ports a TLS stream was seen on, and the notices not taken yet.
    tls_ports: BTreeSet<u16>,
    notices: Vec<Notice>,
}

/// Decoded requests kept for `take_requests` between two calls; older ones are dropped.
const MAX_FRESH_REQUESTS: usize = 4096;

impl Sniffer {
    /// A sniffer with the given limits and broker ports.
    pub fn new(config: SnifferConfig) -> Self {
        Self {
            reassembler: Reassembler::new(config.reassembly.clone()),
            config,
            connections: FastMap::default(),
            topic_ids: TopicIds::default(),
            counters: DecodeCounters::default(),
            framing: FramingCounters::default(),
            fresh_requests: Vec::new(),
            stream: Vec::new(),
            frames: Vec::new(),
            tls_ports: BTreeSet::new(),
            notices: Vec::new(),
        }
    }

    /// Feeds one captured link-layer frame, captured at `ts` (time since the
    /// Unix epoch, as pcap records it). Frames that are not TCP are counted.
    pub fn on_packet(&mut self, link: LinkType, frame: &[u8], ts: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        self.on_packet_into(link, frame, ts, &mut events);
        events
    }

    /// [`Sniffer::on_packet`], appending the events to `events`: a caller feeding a whole
    /// capture keeps one vector rather than receiving one per packet.
    pub fn on_packet_into(
        &mut self,
        link: LinkType,
        frame: &[u8],
        ts: Duration,
        events: &mut Vec<Event>,
    ) {
        self.counters.packets += 1;
        match parse_frame(link, frame) {
            Ok(segment) => self.on_segment_into(&segment, ts, events),
            Err(error) => {
                match error {
                    PacketError::Fragment => self.counters.ip_fragments += 1,
                    PacketError::UnsupportedEtherType(_)
                    | PacketError::UnsupportedIpVersion(_)
                    | PacketError::NotTcp(_) => self.counters.packets_not_tcp += 1,
                    PacketError::Truncated(_)
                    | PacketError::BadHeaderLength(_)
                    | PacketError::UnsupportedIpv6Header(_) => self.counters.packets_malformed += 1,
                }
                self.tick_into(ts, events);
            }
        }
    }

    /// Feeds one TCP segment captured at `ts`.
    pub fn on_segment(&mut self, segment: &TcpSegment<'_>, ts: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        self.on_segment_into(segment, ts, &mut events);
        events
    }

    fn on_segment_into(&mut self, segment: &TcpSegment<'_>, ts: Duration, events: &mut Vec<Event>) {
        let mut stream = std::mem::take(&mut self.stream);
        self.reassembler.on_segment(segment, ts, &mut stream);
        self.handle(&mut stream, segment.payload, ts, events);
        self.stream = stream;
    }

    /// Lets time pass without packets (a quiet live capture), so that stale
    /// holes are skipped and idle connections reported.
    pub fn tick(&mut self, now: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        self.tick_into(now, &mut events);
        events
    }

    /// [`Sniffer::tick`], appending the events to `events` (as [`Sniffer::on_packet_into`]).
    pub fn tick_into(&mut self, now: Duration, events: &mut Vec<Event>) {
        let mut stream = Vec::new();
        self.reassembler.expire_idle(now, &mut stream);
        self.handle(&mut stream, &[], now, events);
    }

    /// Ends the input: every request still pending is reported unanswered.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut stream = Vec::new();
        self.reassembler.finish(&mut stream);
        let mut events = Vec::new();
        self.handle(&mut stream, &[], Duration::ZERO, &mut events);
        let mut rest = Vec::new();
        let mut keys: Vec<FlowKey> = self.connections.keys().copied().collect();
        keys.sort();
        for key in keys {
            self.close(key, &mut rest);
        }
        self.counters.events += rest.len() as u64;
        events.append(&mut rest);
        events
    }

    /// The requests decoded since the last call, without their responses (only with
    /// `report_requests`).
    pub fn take_requests(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.fresh_requests)
    }

    /// What the sniffer noticed since the last call (a TLS port, once per port).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Topic ids learned so far from responses.
    pub fn topic_ids(&self) -> &TopicIds {
        &self.topic_ids
    }

    /// All counters so far.
    pub fn counters(&self) -> Counters {
        Counters {
            decode: self.counters.clone(),
            reassembly: self.reassembler.counters().clone(),
            framing: self.framing.clone(),
        }
    }

    /// Bytes held in reassembly and framing buffers (for memory bounds).
    pub fn buffered_bytes(&self) -> usize {
        let framed: usize = self
            .connections
            .values()
            .map(|c| c.requests.buffered_bytes() + c.responses.buffered_bytes())
            .sum();
        self.reassembler.buffered_bytes() + framed
    }

    /// Handles what the reassembler reported (and empties `stream`); `payload` is that of
    /// the segment just fed, which in-order data borrows from.
    fn handle(
        &mut self,
        stream: &mut Vec<StreamEvent>,
        payload: &[u8],
        ts: Duration,
        events: &mut Vec<Event>,
    ) {
        let before = events.len();
        for item in stream.drain(..) {
            match item {
                StreamEvent::Data {
                    flow,
                    direction,
                    bytes,
                } => self.on_data(flow, direction, bytes.bytes(payload), ts, events),
                StreamEvent::Discontinuity { flow, direction } => {
                    let connection = connection(&mut self.connections, self.config.framer, flow);
                    match direction {
                        Direction::ToBroker => connection.requests.resync(&mut self.framing),
                        Direction::ToClient => connection.responses.resync(&mut self.framing),
                    }
                }
                StreamEvent::Closed { flow } => self.close(flow, events),
            }
        }
        self.counters.events += (events.len() - before) as u64;
    }

    fn on_data(
        &mut self,
        flow: FlowKey,
        direction: Direction,
        bytes: &[u8],
        ts: Duration,
        events: &mut Vec<Event>,
    ) {
        let max_frame = self.config.framer.max_frame;
        let mut frames = std::mem::take(&mut self.frames);
        let connection = connection(&mut self.connections, self.config.framer, flow);
        if direction == Direction::ToBroker && !connection.started && !bytes.is_empty() {
            connection.started = true;
            connection.tls = starts_tls_record(&bytes[..bytes.len().min(3)]);
            if connection.tls && self.tls_ports.insert(flow.broker.port()) {
                self.notices.push(Notice::Tls {
                    broker: flow.broker,
                });
            }
        }
        if connection.tls {
            self.frames = frames;
            return;
        }
        match direction {
            Direction::ToBroker => {
                let check = RequestBoundary { max_frame };
                connection
                    .requests
                    .push(bytes, &check, &mut self.framing, &mut frames);
            }
            Direction::ToClient => {
                let check = ResponseBoundary {
                    pending: &connection.pending,
                };
                connection
                    .responses
                    .push(bytes, &check, &mut self.framing, &mut frames);
            }
        }
        let mut pairing = Pairing {
            config: &self.config,
            topic_ids: &mut self.topic_ids,
            counters: &mut self.counters,
            fresh_requests: &mut self.fresh_requests,
            pending: &mut connection.pending,
            flow,
            ts,
            events,
        };
        for frame in frames.drain(..) {
            let (frame, declared) = match &frame {
                FrameEvent::Frame(frame) => {
                    let frame = frame.bytes(bytes);
                    (frame, frame.len())
                }
                FrameEvent::Oversized { declared, head } => (head.bytes(bytes), *declared),
            };
            match direction {
                Direction::ToBroker => pairing.on_request(frame, declared),
                Direction::ToClient => pairing.on_response(frame, declared),
            }
        }
        self.frames = frames;
    }

    fn close(&mut self, flow: FlowKey, events: &mut Vec<Event>) {
        let Some(mut connection) = self.connections.remove(&flow) else {
            return;
        };
        while let Some(request) = connection.pending.pop_oldest() {
            self.counters.unanswered += 1;
            events.push(*request.event);
        }
    }
}

/// What handling the frames of one connection needs, borrowed from the [`Sniffer`] with
/// that connection's pending requests, so that the connection is looked up once.
struct Pairing<'a> {
    config: &'a SnifferConfig,
    topic_ids: &'a mut TopicIds,
    counters: &'a mut DecodeCounters,
    fresh_requests: &'a mut Vec<Event>,
    pending: &'a mut Pending,
    flow: FlowKey,
    ts: Duration,
    events: &'a mut Vec<Event>,
}

impl Pairing<'_> {
    fn on_request(&mut self, frame: &[u8], declared: usize) {
        let flow = self.flow;
        let Some(info) = decode_request(frame, declared) else {
            self.counters.short_frames += 1;
            return;
        };
        self.counters.requests += 1;
        if info.error.is_some() {
            self.counters.decode_errors += 1;
        }
        let (api_key, api_version, expects_response) =
            (info.api_key, info.api_version, info.expects_response);
        let correlation_id = info.correlation_id;
        let topic_ids = &*self.topic_ids;
        let event = request_event(info, flow, self.ts, declared, |id| {
            topic_ids.resolve(flow.broker, id).map(str::to_owned)
        });
        if self.config.report_requests && self.fresh_requests.len() < MAX_FRESH_REQUESTS {
            self.fresh_requests.push(event.clone());
        }
        if !expects_response {
            self.events.push(event);
            return;
        }
        let max_pending = self.config.max_pending_per_connection.max(1);
        let request = PendingRequest {
            event: Box::new(event),
            api_key,
            api_version,
        };
        let before = self.events.len();
        self.events.extend(
            self.pending
                .insert(correlation_id, request)
                .map(|p| *p.event),
        );
        let mut evicted = 0;
        while self.pending.by_id.len() > max_pending {
            self.events
                .extend(self.pending.pop_oldest().map(|p| *p.event));
            evicted += 1;
        }
        self.counters.pending_evicted += evicted;
        self.counters.unanswered += (self.events.len() - before) as u64;
    }

    fn on_response(&mut self, frame: &[u8], declared: usize) {
        let Some(correlation_id) = response_correlation_id(frame) else {
            self.counters.short_frames += 1;
            return;
        };
        let Some(request) = self.pending.take(correlation_id) else {
            self.counters.unmatched_responses += 1;
            return;
        };
        self.counters.responses += 1;
        let info = decode_response(frame, request.api_key, request.api_version, declared);
        for (id, name) in &info.topic_ids {
            self.topic_ids.learn(self.flow.broker, *id, name);
        }
        let mut event = request.event;
        event.latency_us =
            Some(u64::try_from(self.ts.saturating_sub(event.ts).as_micros()).unwrap_or(u64::MAX));
        event.errors = Some(info.errors);
        event.response_bytes = Some(declared as u64 + 4);
        if let Some(error) = info.error {
            self.counters.decode_errors += 1;
            event
                .decode_error
                .get_or_insert_with(|| format!("response {error}"));
        }
        self.events.push(*event);
    }
}

#[cfg(test)]
pub(crate) mod tests;
