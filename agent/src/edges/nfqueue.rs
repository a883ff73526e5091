//! The Inline enforcer, the I/O edge of Inline enforcement: one NFQUEUE read on a dedicated OS
//! thread inside the broker's network namespace, every packet handed to the pure [`Decider`], every
//! verdict it gives issued in its order. Nothing here decides anything.
//!
//! Failing open is layered: the chain's rules carry `--queue-bypass` (no reader, no queueing),
//! the queue is configured fail-open (a full kernel queue accepts rather than drops), and the
//! decider's budget lets held packets go rather than grow. On [`InlineEnforcer::stop`] (or
//! drop) held packets are released in order and the queue is unbound; a process killed
//! outright closes its netlink socket, and the kernel forgets the queue.
//!
//! While nothing is held, the thread blocks in its read: a segment is decided as soon as it is
//! queued, and an idle queue costs no CPU. The nfq crate offers no file descriptor to poll or
//! time out, so to stop a blocked reader [`InlineEnforcer::stop`] sends a datagram to the
//! chain's wake port ([`wake_port`]), which the chain queues too. While packets are held
//! (Delay), it reads without blocking and naps between empty reads, never longer than
//! [`MAX_NAP`] nor past the next held packet's release.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_shock_agent::fault::FaultPlan;
use kafka_shock_agent::fault::RequestMatcher;
use kafka_shock_agent::inline::{
    Action, Decider, Hit, InlineConfig, InlineCounters, PacketId, PacketVerdict, Release,
    SharedCounters,
};
use kafka_shock_agent::rules::{
    INLINE_QUEUE_TRIES, Verdict as RuleVerdict, reject_mark, wake_port,
};
use nfq::{Message, Queue, Verdict};

use crate::edges::clock::since_epoch;
use crate::edges::netns::{Netns, NetnsError};
use crate::edges::thread::spawn_ready;

/// Packets the kernel queues for us at most; beyond, it accepts them (fail-open). Held packets
/// count, so it is well above the decider's hold budget.
const KERNEL_QUEUE_LEN: u32 = 8192;
/// The shortest and longest nap between empty reads.
const MIN_NAP: Duration = Duration::from_micros(20);
const MAX_NAP: Duration = Duration::from_micros(250);
/// Hits kept for the reader of [`InlineEnforcer::take_hits`]; more are counted, not listed.
const MAX_PENDING_HITS: usize = 1024;
/// Packets between two publications of the counters under load.
const PUBLISH_EVERY: u64 = 256;
/// How often the decider's clock is advanced while the reader blocks between packets.
const TICK_EVERY: Duration = Duration::from_millis(100);
/// How long a stop waits for the reader, waking it every [`WAKE_EVERY`].
const STOP_WAIT: Duration = Duration::from_secs(3);
const WAKE_EVERY: Duration = Duration::from_millis(10);

/// Why the Inline enforcer could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("cannot open an NFQUEUE netlink socket (root and nfnetlink_queue are needed): {0}")]
    Open(std::io::Error),
    #[error("cannot bind NFQUEUE {first}..{last}: {source}")]
    Bind {
        first: u16,
        last: u16,
        source: std::io::Error,
    },
    #[error("cannot configure NFQUEUE {queue}: {source}")]
    Configure { queue: u16, source: std::io::Error },
    #[error("reading NFQUEUE {queue}: {source}")]
    Read { queue: u16, source: std::io::Error },
    #[error("issuing a verdict on NFQUEUE {queue}: {source}")]
    Verdict { queue: u16, source: std::io::Error },
    #[error("the NFQUEUE thread could not start or died: {0}")]
    Thread(String),
    #[error("a Kafka-level action is carried out by the proxy, not by Inline enforcement")]
    NotInline,
}

/// What the Inline enforcer needs to start.
pub struct InlineOptions {
    /// The broker's network namespace, held by its descriptor.
    pub netns: Arc<Netns>,
    /// The decisions' configuration.
    pub config: InlineConfig,
    /// The fault's match.
    pub matcher: RequestMatcher,
    /// The first queue number to try ([`kafka_shock_agent::rules::inline_queue`]).
    pub first_queue: u16,
    /// Topic ids with the names they stand for.
    pub topic_ids: Vec<([u8; 16], String)>,
}

/// A running Inline enforcer. Its rules are its caller's: install them (with [`Self::queue`])
/// after start, and remove them after [`Self::stop`], whose wake-up goes through them.
pub struct InlineEnforcer {
    queue: u16,
    netns: Arc<Netns>,
    stop: Arc<AtomicBool>,
    counters: Arc<SharedCounters>,
    hits: Receiver<Hit>,
    thread: Option<JoinHandle<Result<(), InlineError>>>,
}

impl InlineEnforcer {
    /// Starts deciding for `plan` in the namespace at `netns`, from the plan's first queue
    /// choice; the queue it bound is [`Self::queue`], for the caller to point the plan's chain
    /// at. Learned topic ids stand for the fault's first topic: matching only asks whether a
    /// request names any of the fault's topics.
    pub fn start_for(plan: &FaultPlan, netns: &Arc<Netns>) -> Result<InlineEnforcer, InlineError> {
        let action = match plan.verdict() {
            RuleVerdict::Drop => Action::Drop,
            RuleVerdict::Reject => Action::Reject,
            RuleVerdict::Delay => {
                let (delay, jitter) = plan.delay();
                Action::Delay { delay, jitter }
            }
            RuleVerdict::Proxy => return Err(InlineError::NotInline),
        };
        InlineEnforcer::start(InlineOptions {
            netns: netns.clone(),
            config: InlineConfig::new(plan.ports().iter().copied(), action, plan.probability()),
            matcher: plan.matcher.clone(),
            first_queue: plan.queue(),
            topic_ids: plan.topic_ids_named(),
        })
    }

    /// Opens and binds a queue in the namespace (trying [`INLINE_QUEUE_TRIES`] numbers from
    /// `first_queue`, since another fault may hold one) and starts deciding.
    pub fn start(options: InlineOptions) -> Result<InlineEnforcer, InlineError> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(SharedCounters::default());
        let (hits_tx, hits) = sync_channel(MAX_PENDING_HITS);
        let netns = options.netns.clone();
        let (queue, thread) = {
            let stop = stop.clone();
            let counters = counters.clone();
            spawn_ready(
                "kshock-nfqueue",
                move |ready| run(options, &stop, &counters, &ready, &hits_tx),
                |why| InlineError::Thread(why.to_owned()),
            )?
        };
        Ok(InlineEnforcer {
            queue,
            netns,
            stop,
            counters,
            hits,
            thread: Some(thread),
        })
    }

    /// The queue number bound: the chain's rules must send segments there.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// The counters, as last published by the reader thread (at most a few ms old).
    pub fn counters(&self) -> InlineCounters {
        self.counters.load()
    }

    /// The matching requests decided since the last call.
    pub fn take_hits(&self) -> Vec<Hit> {
        let mut hits = Vec::new();
        loop {
            match self.hits.try_recv() {
                Ok(hit) => hits.push(hit),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return hits,
            }
        }
    }

    /// Whether the reader thread ended (it only does on an error, or when stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Releases every held packet in order, unbinds the queue and returns the final counters
    /// (or why the reader had stopped).
    pub fn stop(mut self) -> Result<InlineCounters, InlineError> {
        self.shut_down()?;
        Ok(self.counters.load())
    }

    /// Tells the reader to stop, wakes it while its chain still queues the wake port (so stop
    /// before removing the rules), and waits for it.
    fn shut_down(&mut self) -> Result<(), InlineError> {
        self.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + STOP_WAIT;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                // Left blocked: it holds only its socket, which the process's exit closes.
                return Err(InlineError::Thread(format!(
                    "the reader of NFQUEUE {} did not stop within {STOP_WAIT:?} (is the chain's wake rule gone?)",
                    self.queue
                )));
            }
            wake(&self.netns, wake_port(self.queue));
            std::thread::sleep(WAKE_EVERY);
        }
        match thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(InlineError::Thread("panicked".to_owned())),
        }
    }
}

impl Drop for InlineEnforcer {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            tracing::warn!("inline engine: {error}");
        }
    }
}

/// Sends one datagram to the loopback `port` from inside the namespace `netns`. Best effort:
/// the caller retries until the reader has stopped.
fn wake(netns: &Arc<Netns>, port: u16) {
    let netns = netns.clone();
    let _ = std::thread::spawn(move || -> std::io::Result<()> {
        netns
            .enter_current_thread()
            .map_err(std::io::Error::other)?;
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        socket.send_to(b"kafka-shock: wake", ("127.0.0.1", port))?;
        Ok(())
    })
    .join();
}

/// The reader thread: enter the namespace, bind, then decide until stopped.
fn run(
    options: InlineOptions,
    stop: &AtomicBool,
    counters: &SharedCounters,
    ready: &SyncSender<u16>,
    hits: &SyncSender<Hit>,
) -> Result<(), InlineError> {
    options.netns.enter_current_thread()?;
    let mut queue = Queue::open().map_err(InlineError::Open)?;
    let number = bind(&mut queue, options.first_queue)?;
    let configure = |source| InlineError::Configure {
        queue: number,
        source,
    };
    queue.set_fail_open(number, true).map_err(configure)?;
    queue
        .set_queue_max_len(number, KERNEL_QUEUE_LEN)
        .map_err(configure)?;
    queue.set_nonblocking(true);
    let mut decider = Decider::new(options.config, options.matcher, seed());
    for (id, name) in &options.topic_ids {
        decider.learn_topic_id(*id, name);
    }
    // The caller waits for this before writing rules; a closed receiver means it gave up.
    if ready.send(number).is_err() {
        return Ok(());
    }
    let mut reader = Reader {
        queue,
        number,
        held: HashMap::new(),
        out: Vec::new(),
    };
    let result = reader.decide(&mut decider, stop, counters, hits);
    // Whatever happened, held packets go, in order, and the queue is drained and unbound.
    let finish = reader.finish(&mut decider);
    counters.store(&decider.counters());
    result.and(finish)
}

/// Binds the first free queue number from `first`.
fn bind(queue: &mut Queue, first: u16) -> Result<u16, InlineError> {
    let mut last_error = None;
    for offset in 0..INLINE_QUEUE_TRIES {
        let number = first.wrapping_add(offset).max(1);
        match queue.bind(number) {
            Ok(()) => return Ok(number),
            Err(error) if error.raw_os_error() == Some(nix::libc::EBUSY) => {
                last_error = Some(error);
            }
            Err(error) => {
                return Err(InlineError::Bind {
                    first,
                    last: number,
                    source: error,
                });
            }
        }
    }
    Err(InlineError::Bind {
        first,
        last: first.wrapping_add(INLINE_QUEUE_TRIES - 1),
        source: last_error.unwrap_or_else(|| std::io::Error::from(ErrorKind::AddrInUse)),
    })
}

/// A seed for the probability and jitter draws: different per run.
fn seed() -> u64 {
    let now = since_epoch();
    now.as_secs() ^ (u64::from(now.subsec_nanos()) << 20) ^ (u64::from(std::process::id()) << 44)
}

struct Reader {
    queue: Queue,
    number: u16,
    /// Packets awaiting their verdict, by the decider's id.
    held: HashMap<PacketId, Message>,
    out: Vec<Release>,
}

impl Reader {
    fn decide(
        &mut self,
        decider: &mut Decider,
        stop: &AtomicBool,
        counters: &SharedCounters,
        hits: &SyncSender<Hit>,
    ) -> Result<(), InlineError> {
        // Times handed to the decider: monotonic, but on the epoch scale for the reports.
        let started = Instant::now();
        let epoch = since_epoch();
        let now = || epoch + started.elapsed();
        let mut next_id: PacketId = 0;
        let mut nap = MIN_NAP;
        let mut blocking = false;
        let mut last_tick = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            // Block only when no held packet waits for its release time.
            let idle = self.held.is_empty() && decider.next_release().is_none();
            if idle != blocking {
                self.queue.set_nonblocking(!idle);
                blocking = idle;
            }
            match self.queue.recv() {
                Ok(message) => {
                    let id = next_id;
                    next_id += 1;
                    decider.on_packet(id, message.get_payload(), now(), &mut self.out);
                    self.held.insert(id, message);
                    if blocking && last_tick.elapsed() >= TICK_EVERY {
                        last_tick = Instant::now();
                        decider.tick(now(), &mut self.out);
                    }
                    self.apply()?;
                    nap = MIN_NAP;
                    // A blocked reader may wait long for the next packet: publish now.
                    if blocking || next_id.is_multiple_of(PUBLISH_EVERY) {
                        publish(decider, counters, hits);
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    decider.tick(now(), &mut self.out);
                    self.apply()?;
                    publish(decider, counters, hits);
                    let until_release = decider
                        .next_release()
                        .map_or(nap, |at| at.saturating_sub(now()));
                    std::thread::sleep(nap.min(until_release).max(Duration::from_micros(1)));
                    nap = (nap * 2).min(MAX_NAP);
                }
                Err(error)
                    if error.kind() == ErrorKind::Interrupted
                        || error.raw_os_error() == Some(nix::libc::ENOBUFS) =>
                {
                    // ENOBUFS: the kernel dropped messages for us (they were failed open).
                }
                Err(source) => {
                    return Err(InlineError::Read {
                        queue: self.number,
                        source,
                    });
                }
            }
        }
        publish(decider, counters, hits);
        Ok(())
    }

    /// Issues the decider's verdicts, in its order.
    fn apply(&mut self) -> Result<(), InlineError> {
        for release in self.out.drain(..) {
            let Some(mut message) = self.held.remove(&release.packet) else {
                continue;
            };
            match release.verdict {
                PacketVerdict::Accept => message.set_verdict(Verdict::Accept),
                PacketVerdict::Drop => message.set_verdict(Verdict::Drop),
                PacketVerdict::Reject => {
                    // Back through the chain, whose first rule resets what carries this mark.
                    message.set_nfmark(reject_mark(self.number));
                    message.set_verdict(Verdict::Repeat);
                }
            }
            self.queue
                .verdict(message)
                .map_err(|source| InlineError::Verdict {
                    queue: self.number,
                    source,
                })?;
        }
        Ok(())
    }

    /// Lets held packets go, accepts what is still queued, and unbinds.
    fn finish(&mut self, decider: &mut Decider) -> Result<(), InlineError> {
        self.queue.set_nonblocking(true);
        decider.release_all(&mut self.out);
        let released = self.apply();
        for (_, mut message) in self.held.drain() {
            message.set_verdict(Verdict::Accept);
            let _ = self.queue.verdict(message);
        }
        // Packets queued before the rules went are accepted unread (a bounded number, in
        // case the rules are still there and traffic keeps coming).
        for _ in 0..KERNEL_QUEUE_LEN {
            let Ok(mut message) = self.queue.recv() else {
                break;
            };
            message.set_verdict(Verdict::Accept);
            if self.queue.verdict(message).is_err() {
                break;
            }
        }
        let unbound = self
            .queue
            .unbind(self.number)
            .map_err(|source| InlineError::Configure {
                queue: self.number,
                source,
            });
        released.and(unbound)
    }
}

fn publish(decider: &mut Decider, counters: &SharedCounters, hits: &SyncSender<Hit>) {
    counters.store(&decider.counters());
    for hit in decider.take_hits() {
        // A full channel means nobody reads fast enough: the counters still count.
        let _ = hits.try_send(hit);
    }
}
