//! The Proxy enforcer, the I/O edge of Proxy enforcement: a transparent Kafka proxy on a
//! dedicated OS thread inside the broker's network namespace. The thread enters the namespace,
//! binds a listener on a free port there (IPv4, and IPv6 on the same port), and runs the
//! listener and every proxied connection on a tokio current-thread runtime of its own: sockets
//! belong to the namespace they are made in, so the upstream connections it opens to the
//! broker's own address are the namespace's too, locally originated and never redirected
//! again (the nat redirect hooks PREROUTING only). Each upstream socket carries
//! [`PROXY_MARK`], which every jump to our filter chains excludes, so no fault's filter rule
//! on the broker port (the handover reset included) sees the proxied traffic a second time.
//!
//! Every decision is the pure core's ([`kafka_shock_agent::proxy`]): bytes in, bytes out. The
//! original destination of a redirected connection comes from `SO_ORIGINAL_DST`; a connection
//! that was not redirected to us (someone dialling the listener's port itself) is closed, never
//! proxied to itself.
//!
//! The session installs the redirect after [`ProxyEnforcer::start`] (it needs the port) and
//! removes it before [`ProxyEnforcer::stop`], which then stops accepting, tells each
//! connection to finish (requests already forwarded get their responses, nothing new is
//! forwarded), waits for them up to a bound, and closes what is left. A process killed
//! outright closes every socket: clients reconnect, and the redirect's kernel lease ends it.

mod connection;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_shock_agent::fault::FaultPlan;
use kafka_shock_agent::proxy::{
    Action, CorruptTarget, Fault, Hit, ProxyConfig, ProxyCounters, handover,
};
use kafka_shock_agent::rules::PROXY_MARK;
use kafka_shock_crds::{ActionType, Cidr};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::edges::clock::since_epoch;
use crate::edges::netns::{Netns, NetnsError};
use crate::edges::thread::spawn_ready;

/// Hits kept for the reader of [`ProxyEnforcer::take_hits`]; more are counted, not listed.
const MAX_PENDING_HITS: usize = 1024;
/// How often the thread publishes its counters and hits, and looks at the handover.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
const HANDOVER_EVERY: Duration = Duration::from_secs(1);
/// How long [`ProxyEnforcer::stop`] lets connections deliver the responses they owe.
const FINISH_WAIT: Duration = Duration::from_secs(10);
/// Connections proxied at once; beyond, new ones are refused (the client retries, and is
/// redirected again) rather than letting a flood grow the agent.
const MAX_CONNECTIONS: usize = 4096;
/// The listen backlog.
const BACKLOG: u32 = 1024;

/// Why the proxy could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("the fault's match cannot be evaluated: {0}")]
    Match(String),
    #[error("the proxy's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen in the broker's namespace: {0}")]
    Listen(std::io::Error),
    #[error("the proxy thread could not start or died: {0}")]
    Thread(String),
    #[error("{0} is not an action the proxy carries out")]
    NotProxy(&'static str),
}

/// What the proxy has done so far, as last published (at most [`PUBLISH_EVERY`] old).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// The core's counters (requests, actions, connections, passthroughs).
    pub counters: ProxyCounters,
    /// Connections opened before the fault that were reset by the handover rule, or are gone.
    pub handed_over: u64,
    /// Connections opened before the fault, still direct when the proxy started.
    pub direct_at_start: u64,
    /// Connections proxied now.
    pub active: u64,
    /// Broker ports on which a TLS stream was passed through unread.
    pub tls_ports: BTreeSet<u16>,
}

/// What the proxy needs to start.
pub struct ProxyOptions {
    /// The broker's network namespace, held by descriptor.
    pub netns: Arc<Netns>,
    /// What it does to hit requests, and its bounds.
    pub config: ProxyConfig,
    /// The fault's match.
    pub matching: kafka_shock_crds::FaultMatch,
    /// The broker ports: a connection redirected from another port is not ours.
    pub ports: Vec<u16>,
    /// Topic ids with the names they stand for, learned before the start.
    pub topic_ids: Vec<([u8; 16], String)>,
    /// Whether the connections opened before the fault are reset (handover Reset).
    pub reset_direct: bool,
}

struct Shared {
    stats: Mutex<ProxyStats>,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut ProxyStats)) {
        change(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// A running proxy. Its rules are its caller's: install them (with [`Self::port`]) after
/// start, and remove them before [`Self::stop`].
pub struct ProxyEnforcer {
    port: u16,
    stop: Option<watch::Sender<bool>>,
    shared: Arc<Shared>,
    hits: Receiver<Hit>,
    thread: Option<JoinHandle<Result<(), ProxyError>>>,
}

impl ProxyEnforcer {
    /// Starts the proxy for `plan` in the namespace at `netns`, with the topic ids the plan
    /// learned (each standing for the fault's first topic: matching only asks whether a
    /// request names any of the fault's topics).
    pub fn start_for(plan: &FaultPlan, netns: &Arc<Netns>) -> Result<ProxyEnforcer, ProxyError> {
        let action = proxy_action(plan)?;
        ProxyEnforcer::start(ProxyOptions {
            netns: netns.clone(),
            config: ProxyConfig::new(action, plan.probability()),
            matching: plan.matching().clone(),
            ports: plan.ports().to_vec(),
            topic_ids: plan.topic_ids_named(),
            reset_direct: plan.handover() == kafka_shock_crds::Handover::Reset,
        })
    }

    /// Binds a listener in the namespace and starts proxying what is redirected to it.
    pub fn start(options: ProxyOptions) -> Result<ProxyEnforcer, ProxyError> {
        let shared = Arc::new(Shared {
            stats: Mutex::new(ProxyStats::default()),
        });
        let (hits_tx, hits) = sync_channel(MAX_PENDING_HITS);
        let (stop, stopped) = watch::channel(false);
        let (port, thread) = {
            let shared = shared.clone();
            spawn_ready(
                "kshock-proxy",
                move |ready| run(options, &shared, &ready, &hits_tx, stopped),
                |why| ProxyError::Thread(why.to_owned()),
            )?
        };
        Ok(ProxyEnforcer {
            port,
            stop: Some(stop),
            shared,
            hits,
            thread: Some(thread),
        })
    }

    /// The port the proxy listens on: the redirect must send connections there.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the proxy has done, as last published.
    pub fn stats(&self) -> ProxyStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The matching requests since the last call, with what they got.
    pub fn take_hits(&self) -> Vec<Hit> {
        let mut hits = Vec::new();
        loop {
            match self.hits.try_recv() {
                Ok(hit) => hits.push(hit),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return hits,
            }
        }
    }

    /// Whether the proxy's thread ended (it only does on an error, or when stopped).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops accepting, lets every connection deliver the responses it owes (up to a bound),
    /// closes them and the listener, and returns the final numbers (or why it had stopped).
    pub fn stop(mut self) -> Result<ProxyStats, ProxyError> {
        self.finish()?;
        Ok(self.stats())
    }

    /// What [`ProxyEnforcer::stop`] does, keeping the enforcer, so that the hits of the last
    /// moments can still be taken ([`ProxyEnforcer::take_hits`]) before its numbers are read.
    pub fn finish(&mut self) -> Result<(), ProxyError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), ProxyError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        match thread.join() {
            Ok(result) => result,
            Err(_) => Err(ProxyError::Thread("panicked".to_owned())),
        }
    }
}

impl Drop for ProxyEnforcer {
    fn drop(&mut self) {
        if let Err(error) = self.shut_down() {
            tracing::warn!("proxy: {error}");
        }
    }
}

/// The core's action for the plan's.
fn proxy_action(plan: &FaultPlan) -> Result<Action, ProxyError> {
    let action = plan.action();
    Ok(match action.type_ {
        ActionType::Error => Action::Error(
            action
                .error_code()
                .ok_or(ProxyError::NotProxy("an Error without a known errorCode"))?,
        ),
        ActionType::Throttle => Action::Throttle(action.throttle_time().unwrap_or_default()),
        ActionType::Delay => {
            let (delay, jitter) = plan.delay();
            Action::Delay { delay, jitter }
        }
        ActionType::Corrupt => Action::Corrupt {
            target: match action.target {
                Some(kafka_shock_crds::CorruptTarget::Fetch) => CorruptTarget::Fetch,
                _ => CorruptTarget::Produce,
            },
            fix_crc: action.fix_crc.unwrap_or(false),
        },
        ActionType::Duplicate => Action::Duplicate,
        ActionType::Reject => return Err(ProxyError::NotProxy("Reject")),
        ActionType::Drop => return Err(ProxyError::NotProxy("Drop")),
    })
}

/// The thread: enter the namespace, listen, report the port, proxy until stopped.
fn run(
    options: ProxyOptions,
    shared: &Shared,
    ready: &SyncSender<u16>,
    hits: &SyncSender<Hit>,
    stopped: watch::Receiver<bool>,
) -> Result<(), ProxyError> {
    options.netns.enter_current_thread()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProxyError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listeners = listen().map_err(ProxyError::Listen)?;
        let port = listeners[0]
            .local_addr()
            .map_err(ProxyError::Listen)?
            .port();
        let mut fault = Fault::new(options.config, &options.matching, seed())
            .map_err(|error| ProxyError::Match(error.to_string()))?;
        for (id, name) in &options.topic_ids {
            fault.learn_topic_id(*id, name);
        }
        let sources: Vec<Cidr> = options
            .matching
            .source_cidrs
            .iter()
            .filter_map(|cidr| cidr.parse().ok())
            .collect();
        let direct = Handover::start(&options.ports, &sources, options.reset_direct);
        shared.update(|stats| stats.direct_at_start = direct.at_start());
        // The caller waits for this before writing rules; a closed receiver means it gave up.
        if ready.send(port).is_err() {
            return Ok(());
        }
        let proxy = Rc::new(connection::Proxy::new(fault, port, options.ports));
        serve(&proxy, listeners, stopped, shared, hits, direct).await;
        Ok(())
    })
}

/// Accepts until told to stop, publishing as it goes; then finishes every connection.
async fn serve(
    proxy: &Rc<connection::Proxy>,
    listeners: Vec<TcpListener>,
    mut stopped: watch::Receiver<bool>,
    shared: &Shared,
    hits: &SyncSender<Hit>,
    mut direct: Handover,
) {
    let (finish, finishing) = watch::channel(false);
    let mut publish = tokio::time::interval(PUBLISH_EVERY);
    let mut last_handover = Instant::now();
    loop {
        let v6 = async {
            match listeners.get(1) {
                Some(listener) => listener.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = listeners[0].accept() => proxy.accepted(accepted, &finishing),
            accepted = v6 => proxy.accepted(accepted, &finishing),
            _ = publish.tick() => {
                if last_handover.elapsed() >= HANDOVER_EVERY {
                    last_handover = Instant::now();
                    direct.look(proxy.upstreams());
                }
                proxy.publish(shared, hits, &direct);
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listeners);
    let _ = finish.send(true);
    let deadline = tokio::time::Instant::now() + FINISH_WAIT;
    while proxy.active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    direct.look(proxy.upstreams());
    proxy.publish(shared, hits, &direct);
}

/// The listeners: IPv4 on a free port, and IPv6 (v6only) on the same port where the
/// namespace has IPv6, so each family's redirect reaches a socket of its family.
fn listen() -> std::io::Result<Vec<TcpListener>> {
    let v4 = TcpSocket::new_v4()?;
    v4.bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    let v4 = v4.listen(BACKLOG)?;
    let port = v4.local_addr()?.port();
    let v6 = (|| -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_only_v6(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        socket.listen(BACKLOG as i32)?;
        TcpListener::from_std(socket.into())
    })();
    let mut listeners = vec![v4];
    match v6 {
        Ok(listener) => listeners.push(listener),
        Err(error) => tracing::info!("proxy: no IPv6 listener ({error}); IPv4 only"),
    }
    Ok(listeners)
}

/// A connection to the broker at `to`, from inside the namespace, marked as the proxy's.
async fn connect_upstream(to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let domain = socket2::Domain::for_address(to);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_mark(PROXY_MARK)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    let socket = TcpSocket::from_std_stream(socket.into());
    socket.connect(to).await
}

/// The connections opened before the fault, and which of them were handed over since. With
/// handover Reset, the first look (a second after the start, once the redirect is in) closes the
/// broker's side of each with `ss -K` (the kernel resets the client, which reconnects through
/// the redirect); the handover rule resets those opened between the start and the redirect at
/// their next request. A connection counts once the broker's socket of it is gone (the rule's
/// reset reaches only the client: that socket then lingers until Kafka's idle timeout).
struct Handover {
    ports: Vec<u16>,
    sources: Vec<Cidr>,
    at_start: BTreeSet<handover::Socket>,
    /// Whether the broker's sides are still to be closed (handover Reset, before the first look).
    to_close: bool,
    /// Those of the start that are gone.
    handed: BTreeSet<handover::Socket>,
}

impl Handover {
    fn start(ports: &[u16], sources: &[Cidr], reset: bool) -> Handover {
        let mut handover = Handover {
            ports: ports.to_vec(),
            sources: sources.to_vec(),
            at_start: BTreeSet::new(),
            to_close: reset,
            handed: BTreeSet::new(),
        };
        handover.at_start = handover.established();
        handover
    }

    /// The broker's established connections on the fault's ports, from the fault's sources,
    /// as this thread's namespace shows them.
    fn established(&self) -> BTreeSet<handover::Socket> {
        ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .flat_map(|text| handover::established_to(&text, &self.ports, &self.sources))
            .collect()
    }

    fn at_start(&self) -> u64 {
        self.at_start.len() as u64
    }

    /// Closes the broker's side of every connection of the start (see the type's comment);
    /// `ss` runs from this thread, so in the broker's namespace. One that cannot be closed
    /// (a kernel without socket destruction) is left to the handover rule.
    fn close_direct(&mut self) {
        self.to_close = false;
        for (local, remote) in &self.at_start {
            let closed = std::process::Command::new("ss")
                .args(["-K", "-t", "-n", "state", "established", "src"])
                .arg(local.to_string())
                .arg("dst")
                .arg(remote.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            if !matches!(closed, Ok(status) if status.success()) {
                tracing::debug!(%local, %remote, "ss -K could not close a connection of the start");
            }
        }
    }

    /// Closes what is to be closed, then counts the connections of the start that are gone (the
    /// proxy's own upstream connections, which the broker sees from its own address, are never
    /// among them). Once counted, a connection stays counted.
    fn look(&mut self, upstreams: BTreeSet<SocketAddr>) {
        if self.to_close {
            self.close_direct();
        }
        if self.handed.len() == self.at_start.len() {
            return;
        }
        let now = self.established();
        let handed: Vec<handover::Socket> = self
            .at_start
            .iter()
            .filter(|socket| !now.contains(socket) && !upstreams.contains(&socket.1))
            .copied()
            .collect();
        self.handed.extend(handed);
    }

    /// How many connections of the start were handed over.
    fn handed_over(&self) -> u64 {
        self.handed.len() as u64
    }
}

/// A seed for the probability and jitter draws: different per run.
fn seed() -> u64 {
    let now = since_epoch();
    now.as_secs() ^ (u64::from(now.subsec_nanos()) << 20) ^ (u64::from(std::process::id()) << 44)
}
