//! What all the connections of one Proxy fault share: its configuration, its match (which
//! learns the members of the fault's group from every connection), the probability draw,
//! topic names learned for topic ids, the counters, the hits to report, and the memory budget
//! they all draw from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kafka_shock_crds::FaultMatch;
use uuid::Uuid;

use super::connection::Connection;
use super::corrupt::Corruption;
use super::rewrite::TopicFilter;
use super::{Hit, Outcome, ProxyConfig, ProxyCounters};
use crate::FastMap;
use crate::fault::{MatchError, RequestMatcher};
use crate::inline::Draw;
use crate::sniffer::event::Event;
use crate::wire::reassembly::FlowKey;

/// Hits kept for [`Fault::take_hits`] between two calls; older ones are not reported.
const MAX_HITS: usize = 4096;

/// Whether a decoded request is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// The match does not select it.
    Miss,
    /// Selected, and spared by the probability draw.
    Spared,
    /// Selected and hit.
    Hit,
}

/// One Proxy fault's shared state. The edge keeps it with the fault's connections (one thread,
/// or behind a lock) and passes it to every [`Connection`] call.
pub struct Fault {
    pub(crate) config: ProxyConfig,
    matcher: RequestMatcher,
    /// The fault's `match.topics`, for what an action alters inside a message.
    topics: Vec<String>,
    topic_names: FastMap<Uuid, String>,
    pub(crate) draw: Draw,
    pub(crate) counters: ProxyCounters,
    hits: Vec<Hit>,
    buffered: Arc<AtomicUsize>,
}

impl Fault {
    /// The fault that `spec` selects requests for; `seed` seeds the probability and jitter
    /// draws (any value; tests fix it to replay).
    pub fn new(config: ProxyConfig, spec: &FaultMatch, seed: u64) -> Result<Self, MatchError> {
        Ok(Self {
            config,
            matcher: RequestMatcher::new(spec)?,
            topics: spec.topics.clone(),
            topic_names: FastMap::default(),
            draw: Draw::new(seed),
            counters: ProxyCounters::default(),
            hits: Vec::new(),
            buffered: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Names a topic id (learned from the broker), so requests and responses that name topics
    /// by id only (Produce and Fetch v13+) match the fault's topic names.
    pub fn learn_topic_id(&mut self, id: [u8; 16], name: &str) {
        self.topic_names
            .insert(Uuid::from_bytes(id), name.to_owned());
    }

    /// The state machine of a new proxied connection from `client` to `broker`.
    pub fn connection(&mut self, client: SocketAddr, broker: SocketAddr) -> Connection {
        self.counters.connections += 1;
        Connection::new(
            FlowKey { client, broker },
            Memory::new(self.buffered.clone(), self.config.max_buffered),
        )
    }

    /// The counters so far, with the bytes buffered now.
    pub fn counters(&self) -> ProxyCounters {
        ProxyCounters {
            buffered_bytes: self.buffered.load(Ordering::Relaxed) as u64,
            ..self.counters
        }
    }

    /// The matching requests since the last call, with what they got.
    pub fn take_hits(&mut self) -> Vec<Hit> {
        std::mem::take(&mut self.hits)
    }

    /// Matches `request` and draws its probability.
    pub(crate) fn judge(&mut self, request: &Event) -> Judgement {
        self.counters.requests_seen += 1;
        self.matcher.observe(request);
        if !self.matcher.matches(request) {
            return Judgement::Miss;
        }
        self.counters.requests_matched += 1;
        if self.draw.hit(self.config.probability) {
            Judgement::Hit
        } else {
            Judgement::Spared
        }
    }

    /// Records what a matching request got.
    pub(crate) fn report(&mut self, request: Event, outcome: Outcome) {
        if self.hits.len() < MAX_HITS {
            self.hits.push(Hit { request, outcome });
        }
    }

    /// Whether the fault names topics, so Metadata responses are read for their ids.
    pub(crate) fn names_topics(&self) -> bool {
        !self.topics.is_empty()
    }

    /// The topic ids learned so far, with their names.
    pub fn topic_ids(&self) -> Vec<([u8; 16], String)> {
        self.topic_names
            .iter()
            .map(|(id, name)| (*id.as_bytes(), name.clone()))
            .collect()
    }

    /// The name of a topic id, if learned.
    pub(crate) fn topic_name(&self, id: Uuid) -> Option<String> {
        self.topic_names.get(&id).cloned()
    }

    /// The topics an action alters inside a message.
    pub(crate) fn topic_filter(&self) -> TopicFilter<'_> {
        TopicFilter {
            names: &self.topics,
            ids: &self.topic_names,
        }
    }

    /// How `Corrupt` corrupts.
    pub(crate) fn corruption(&self, fix_crc: bool) -> Corruption {
        Corruption {
            fix_crc,
            max_decompressed: self.config.max_decompressed,
        }
    }
}

/// One connection's share of the fault's memory budget. What it holds is given back when it
/// is dropped, so a connection the edge forgets cannot leak budget.
#[derive(Debug)]
pub(crate) struct Memory {
    total: Arc<AtomicUsize>,
    limit: usize,
    mine: usize,
}

impl Memory {
    fn new(total: Arc<AtomicUsize>, limit: usize) -> Self {
        Self {
            total,
            limit,
            mine: 0,
        }
    }

    /// Takes `n` bytes if the budget has them.
    pub(crate) fn try_take(&mut self, n: usize) -> bool {
        let before = self.total.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.total.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        self.mine += n;
        true
    }

    /// Takes `n` bytes whatever the budget: the one byte a connection keeps before it knows
    /// whether it carries TLS.
    pub(crate) fn take(&mut self, n: usize) {
        self.total.fetch_add(n, Ordering::Relaxed);
        self.mine += n;
    }

    /// Gives `n` bytes back.
    pub(crate) fn give(&mut self, n: usize) {
        let n = n.min(self.mine);
        self.total.fetch_sub(n, Ordering::Relaxed);
        self.mine -= n;
    }

    /// Bytes this connection holds.
    pub(crate) fn held(&self) -> usize {
        self.mine
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.total.fetch_sub(self.mine, Ordering::Relaxed);
    }
}
