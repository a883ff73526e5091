//! One proxied connection, as a sans-I/O state machine: bytes from the client and from the
//! broker in, bytes for each side (and when to shut or close) out, time in for held requests.
//!
//! Requests are cut into frames, decoded by the sniffer's decoder into the same
//! [`Event`](crate::sniffer::event::Event) Inline matches, judged by the [`Fault`], and forwarded in
//! the order they came, held (Delay), rewritten (Corrupt), sent twice (Duplicate) or answered
//! by the proxy (Error). A broker answers a connection's requests in order, so responses need
//! no correlation-id lookup: every request that expects a response gets a [`Slot`] in a queue,
//! and each response the broker sends is the front slot's. The client gets its responses in
//! request order too: the proxy's own answers wait in their slot behind responses still in
//! flight before them, and the response to a duplicate is swallowed. A Produce with acks=0
//! expects nothing and gets no slot; failing one closes the connection, as a broker does.
//!
//! Whatever the proxy cannot follow becomes a byte-for-byte passthrough instead of a buffer
//! or a guess: a stream that starts with a TLS record; a frame whose size prefix is negative
//! or over the cap (hostile 2 GiB claims included); a request that does not decode far enough
//! to know whether it is answered; SASL handshakes v0 (raw tokens follow); a memory or
//! in-flight bound. From then on client bytes go upstream as they come, and once the
//! responses to the requests before are delivered, broker bytes go to the client as they come.
//! Responses not rewritten are streamed as they arrive, never buffered whole.

mod actions;
mod responses;

use std::collections::VecDeque;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

use super::Outcome;
use super::fault::{Fault, Judgement, Memory};
use crate::decode::decode_request;
use crate::sniffer::request_event;
use crate::wire::reassembly::FlowKey;

const PRODUCE: i16 = ApiKey::Produce as i16;
const FETCH: i16 = ApiKey::Fetch as i16;
const METADATA: i16 = ApiKey::Metadata as i16;
const SASL_HANDSHAKE: i16 = ApiKey::SaslHandshake as i16;
const SASL_AUTHENTICATE: i16 = ApiKey::SaslAuthenticate as i16;
/// The first bytes of a TLS handshake record: content type 22, protocol major version 3.
const TLS_RECORD: [u8; 2] = [0x16, 0x03];
/// Correlation ids of the duplicates the proxy sends: counted down from the top of the int32
/// range, far from the ids clients count up from zero (the broker answers in order anyway).
const PROXY_IDS: std::ops::RangeInclusive<i32> = 0x4000_0000..=i32::MAX;

/// What one call leaves for the edge to do, in this order: write `to_broker` upstream and
/// `to_client` to the client, then shut or close. The edge empties it between calls.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Bytes for the broker.
    pub to_broker: Vec<u8>,
    /// Bytes for the client.
    pub to_client: Vec<u8>,
    /// No more bytes go to the broker: shut the upstream write side after `to_broker`.
    pub shutdown_broker: bool,
    /// The connection is over: close both sides after writing what is above.
    pub close: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing seen yet: the first two bytes tell TLS from Kafka.
    Start,
    /// Requests are framed and decided.
    Kafka,
    /// Client bytes go upstream as they come.
    Passthrough,
    /// Client bytes are dropped: the connection closes once the client has its responses.
    Discard,
}

/// A request held until its time (Delay), or behind one.
struct Held {
    bytes: Vec<u8>,
    release_at: Duration,
}

/// What happens to a response before the client gets it.
#[derive(Debug, Clone, Copy)]
enum Treatment {
    Throttle(i32),
    MetadataError(i16),
    CorruptFetch {
        fix_crc: bool,
    },
    /// A Metadata response, read for the ids of the fault's topics and sent as it was: clients
    /// of Kafka 4 name topics by id in Produce and Fetch v13+.
    LearnTopicIds,
}

/// What the client awaits, in request order.
enum Slot {
    /// The broker's next response, delivered after `treatment`.
    Broker {
        correlation_id: i32,
        api_key: i16,
        api_version: i16,
        treatment: Option<Treatment>,
    },
    /// The broker's next response answers a duplicate: swallowed.
    Swallow { correlation_id: i32 },
    /// The proxy's answer, sent when everything before it has been.
    Answer(Vec<u8>),
    /// The connection closes here.
    Close,
}

/// Where the broker's stream is.
enum Response {
    /// Reading a response's size prefix and correlation id.
    Head { bytes: [u8; 8], len: usize },
    /// Passing (or swallowing) the rest of a response as it arrives.
    Stream { left: usize, swallow: bool },
    /// Collecting a whole response (without its prefix) to rewrite it.
    Collect { frame: Vec<u8>, size: usize },
    /// Everything goes to the client as it comes.
    Raw,
}

const NO_HEAD: Response = Response::Head {
    bytes: [0; 8],
    len: 0,
};

/// What a decoded request needs for its slot.
#[derive(Debug, Clone, Copy)]
struct Request {
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    expects_response: bool,
}

/// One proxied connection (see the module docs).
pub struct Connection {
    flow: FlowKey,
    stage: Stage,
    /// A request frame still arriving, size prefix included.
    pending: Vec<u8>,
    held: VecDeque<Held>,
    slots: VecDeque<Slot>,
    response: Response,
    next_proxy_id: i32,
    /// The client sent its last byte, or the fault ended: no new request is taken.
    client_done: bool,
    closed: bool,
    memory: Memory,
}

impl Connection {
    pub(crate) fn new(flow: FlowKey, memory: Memory) -> Self {
        Self {
            flow,
            stage: Stage::Start,
            pending: Vec::new(),
            held: VecDeque::new(),
            slots: VecDeque::new(),
            response: NO_HEAD,
            next_proxy_id: *PROXY_IDS.end(),
            client_done: false,
            closed: false,
            memory,
        }
    }

    /// Whether the connection is over (the edge closed it, or was told to).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// When [`Connection::tick`] must next run to forward held requests on time.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.held.front().map(|held| held.release_at)
    }

    /// Bytes the client sent, at `now` (time since the Unix epoch, as the sniffer's).
    pub fn from_client(
        &mut self,
        fault: &mut Fault,
        bytes: &[u8],
        now: Duration,
        out: &mut Output,
    ) {
        if self.closed || self.client_done {
            return;
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            rest = match self.stage {
                Stage::Start => self.start(fault, rest, now, out),
                Stage::Kafka => self.frame_requests(fault, rest, now, out),
                Stage::Passthrough => {
                    self.forward(fault, rest, Duration::ZERO, now, out);
                    &[]
                }
                Stage::Discard => &[],
            };
        }
        self.release_due(now, out);
    }

    /// Lets time pass: forwards the held requests whose time has come, in order.
    pub fn tick(&mut self, now: Duration, out: &mut Output) {
        self.release_due(now, out);
    }

    /// The client sent its last byte: held requests go now (they were sent before the end),
    /// and so does a request cut short by the end; the upstream write side is shut, and the
    /// connection closes once the responses owed are delivered.
    pub fn client_closed(&mut self, out: &mut Output) {
        // The broker sees the bytes it would have seen, a partial request included.
        let pending = std::mem::take(&mut self.pending);
        self.memory.give(pending.len());
        self.flush_held(out);
        out.to_broker.extend_from_slice(&pending);
        self.wind_down(out);
        if !self.closed {
            out.shutdown_broker = true;
        }
    }

    /// The broker closed its side: no response still owed can come, so the connection closes.
    pub fn broker_closed(&mut self, out: &mut Output) {
        self.close(out);
    }

    /// The fault ends: held requests go now, no new request is forwarded (a client request
    /// still arriving is dropped, and retried by the client on a direct connection), and the
    /// connection closes once the responses to the forwarded ones are delivered.
    pub fn finish(&mut self, out: &mut Output) {
        self.wind_down(out);
    }

    fn wind_down(&mut self, out: &mut Output) {
        if self.closed {
            return;
        }
        self.client_done = true;
        self.stage = Stage::Discard;
        self.memory.give(self.pending.len());
        self.pending = Vec::new();
        self.flush_held(out);
        self.flush_ready(out);
    }

    /// The first bytes: TLS is passed through, anything else is framed as Kafka.
    fn start<'a>(
        &mut self,
        fault: &mut Fault,
        rest: &'a [u8],
        now: Duration,
        out: &mut Output,
    ) -> &'a [u8] {
        let first = match (self.pending.first(), rest) {
            (Some(&a), [b, ..]) => [a, *b],
            (None, [a, b, ..]) => [*a, *b],
            (None, [a]) => {
                self.memory.take(1);
                self.pending.push(*a);
                return &[];
            }
            _ => return rest,
        };
        if first == TLS_RECORD {
            fault.counters.passthrough_tls += 1;
            self.stage = Stage::Passthrough;
            self.follow_raw(out);
            let pending = std::mem::take(&mut self.pending);
            self.memory.give(pending.len());
            self.forward(fault, &pending, Duration::ZERO, now, out);
        } else {
            self.stage = Stage::Kafka;
        }
        rest
    }

    /// Frames requests from `rest`: whole frames in place while nothing is pending, the rest
    /// into `pending`. Returns what is left of `rest` (when the stage changed).
    fn frame_requests<'a>(
        &mut self,
        fault: &mut Fault,
        rest: &'a [u8],
        now: Duration,
        out: &mut Output,
    ) -> &'a [u8] {
        if self.pending.is_empty()
            && let Some(prefix) = rest.get(..4)
        {
            let Some(len) = frame_len(prefix, fault.config.max_frame) else {
                self.pass_through(fault, now, out);
                return rest;
            };
            if let Some(frame) = rest.get(..len) {
                self.on_request(fault, frame, now, out);
                return &rest[len..];
            }
        }
        let want = match self.pending.get(..4) {
            Some(prefix) => frame_len(prefix, fault.config.max_frame).unwrap_or(4),
            None => 4,
        };
        let n = (want - self.pending.len()).min(rest.len());
        if !self.memory.try_take(n) {
            self.pass_through(fault, now, out);
            return rest;
        }
        self.pending.extend_from_slice(&rest[..n]);
        let rest = &rest[n..];
        if self.pending.len() == 4 && frame_len(&self.pending, fault.config.max_frame).is_none() {
            self.pass_through(fault, now, out);
            return rest;
        }
        let complete = self.pending.len() >= 4
            && frame_len(&self.pending[..4], fault.config.max_frame) == Some(self.pending.len());
        if complete {
            let frame = std::mem::take(&mut self.pending);
            self.memory.give(frame.len());
            self.on_request(fault, &frame, now, out);
        }
        rest
    }

    /// Client bytes go upstream as they come from now on; the partial frame goes first.
    fn pass_through(&mut self, fault: &mut Fault, now: Duration, out: &mut Output) {
        fault.counters.passthrough_other += 1;
        self.stage = Stage::Passthrough;
        let pending = std::mem::take(&mut self.pending);
        self.memory.give(pending.len());
        self.forward(fault, &pending, Duration::ZERO, now, out);
        self.stop_following();
    }

    /// In passthrough, once no response is owed or under way, the broker's bytes go to the
    /// client as they come.
    fn stop_following(&mut self) {
        let between = matches!(self.response, Response::Head { len: 0, .. });
        if self.stage == Stage::Passthrough && self.slots.is_empty() && between {
            self.response = Response::Raw;
        }
    }

    /// From now on the broker's bytes go to the client as they come, starting with the part
    /// of a response head already read (a broker speaking before the client did).
    fn follow_raw(&mut self, out: &mut Output) {
        if let Response::Head { bytes, len } = &self.response {
            out.to_client.extend_from_slice(&bytes[..*len]);
        }
        self.response = Response::Raw;
    }

    /// Decides one whole request frame (size prefix included).
    fn on_request(&mut self, fault: &mut Fault, frame: &[u8], now: Duration, out: &mut Output) {
        if self.slots.len() >= fault.config.max_in_flight {
            self.pass_through(fault, now, out);
            self.forward(fault, frame, Duration::ZERO, now, out);
            return;
        }
        let body = &frame[4..];
        let Some(info) = decode_request(body, body.len()) else {
            // Not even a header: whether the broker answers it is unknown.
            fault.counters.undecodable += 1;
            self.forward(fault, frame, Duration::ZERO, now, out);
            self.pass_through(fault, now, out);
            return;
        };
        let request = Request {
            api_key: info.api_key,
            api_version: info.api_version,
            correlation_id: info.correlation_id,
            expects_response: info.expects_response,
        };
        if info.error.is_some() {
            fault.counters.undecodable += 1;
            self.forward(fault, frame, Duration::ZERO, now, out);
            if request.api_key == PRODUCE {
                // Its acks, and so whether it is answered, are unknown.
                self.pass_through(fault, now, out);
            } else {
                self.expect(request, None);
            }
            return;
        }
        if matches!(request.api_key, SASL_HANDSHAKE | SASL_AUTHENTICATE) {
            // Authentication is never faulted; after a v0 handshake, tokens follow unframed.
            self.pass(fault, frame, request, None, Duration::ZERO, now, out);
            if request.api_key == SASL_HANDSHAKE && request.api_version == 0 {
                self.pass_through(fault, now, out);
            }
            return;
        }
        let event = request_event(info, self.flow, now, body.len(), |id| fault.topic_name(id));
        match fault.judge(&event) {
            Judgement::Miss => {
                self.pass(fault, frame, request, None, Duration::ZERO, now, out);
            }
            Judgement::Spared => {
                self.pass(fault, frame, request, None, Duration::ZERO, now, out);
                fault.report(event, Outcome::Spared);
            }
            Judgement::Hit => {
                let outcome = self.hit(fault, frame, request, now, out);
                fault.report(event, outcome);
            }
        }
    }

    /// Forwards `frame` (at `release_at` at the earliest) and awaits its response, if any.
    /// Returns whether it is held.
    #[allow(clippy::too_many_arguments)]
    fn pass(
        &mut self,
        fault: &mut Fault,
        frame: &[u8],
        request: Request,
        treatment: Option<Treatment>,
        release_at: Duration,
        now: Duration,
        out: &mut Output,
    ) -> bool {
        let held = self.forward(fault, frame, release_at, now, out);
        let learn = request.api_key == METADATA && fault.names_topics();
        let treatment = treatment.or(learn.then_some(Treatment::LearnTopicIds));
        self.expect(request, treatment);
        held
    }

    fn expect(&mut self, request: Request, treatment: Option<Treatment>) {
        if request.expects_response {
            self.slots.push_back(Slot::Broker {
                correlation_id: request.correlation_id,
                api_key: request.api_key,
                api_version: request.api_version,
                treatment,
            });
        }
    }

    /// Sends `bytes` upstream now, or holds them: until `release_at`, or behind what is held.
    /// Over the memory budget, what is held goes now, in order, and `bytes` after it (failed
    /// open). Returns whether `bytes` is held.
    fn forward(
        &mut self,
        fault: &mut Fault,
        bytes: &[u8],
        release_at: Duration,
        now: Duration,
        out: &mut Output,
    ) -> bool {
        if bytes.is_empty() || (self.held.is_empty() && release_at <= now) {
            out.to_broker.extend_from_slice(bytes);
            return false;
        }
        if !self.memory.try_take(bytes.len()) {
            fault.counters.failed_open += 1;
            self.flush_held(out);
            out.to_broker.extend_from_slice(bytes);
            return false;
        }
        self.held.push_back(Held {
            bytes: bytes.to_vec(),
            release_at,
        });
        true
    }

    fn release_due(&mut self, now: Duration, out: &mut Output) {
        while let Some(held) = self.held.front().filter(|h| h.release_at <= now) {
            out.to_broker.extend_from_slice(&held.bytes);
            self.memory.give(held.bytes.len());
            self.held.pop_front();
        }
    }

    fn flush_held(&mut self, out: &mut Output) {
        for held in self.held.drain(..) {
            out.to_broker.extend_from_slice(&held.bytes);
            self.memory.give(held.bytes.len());
        }
    }

    fn close(&mut self, out: &mut Output) {
        if self.closed {
            return;
        }
        self.closed = true;
        out.close = true;
        self.pending = Vec::new();
        self.held.clear();
        self.slots.clear();
        self.response = Response::Raw;
        self.memory.give(self.memory.held());
    }

    fn proxy_id(&mut self) -> i32 {
        let id = self.next_proxy_id;
        self.next_proxy_id = if id == *PROXY_IDS.start() {
            *PROXY_IDS.end()
        } else {
            id - 1
        };
        id
    }
}

/// The size of the frame whose size prefix is `prefix`, prefix included, or `None` when it is
/// negative or over `max_frame`.
fn frame_len(prefix: &[u8], max_frame: usize) -> Option<usize> {
    let size = i32::from_be_bytes(prefix.get(..4)?.try_into().ok()?);
    usize::try_from(size)
        .ok()
        .filter(|&size| size <= max_frame)
        .map(|size| size + 4)
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("flow", &self.flow)
            .field("stage", &self.stage)
            .field("pending", &self.pending.len())
            .field("held", &self.held.len())
            .field("slots", &self.slots.len())
            .field("closed", &self.closed)
            .finish()
    }
}
