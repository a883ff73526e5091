//! One proxied connection on the proxy's thread: the client's socket, an upstream socket to
//! the broker's original destination, and the core's
//! [`Connection`](kafka_shock_agent::proxy::Connection) between them. Bytes read
//! from either side go into the core; what it leaves in its [`Output`] is written out, in
//! order, before the next read. Writes wait for the peer (back-pressure stays per connection:
//! a client that does not read stalls only itself).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use kafka_shock_agent::proxy::{Fault, Hit, Output};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::watch;

use super::{Handover, MAX_CONNECTIONS, Shared, connect_upstream};
use crate::edges::clock::since_epoch;

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 64 << 10;
/// How long the upstream connect may take before the client is let go.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection of the proxy shares on its thread.
pub(super) struct Proxy {
    fault: RefCell<Fault>,
    /// The listener's port: a connection whose original destination is this port was not
    /// redirected, and is not proxied (to itself).
    own_port: u16,
    ports: Vec<u16>,
    active: Cell<usize>,
    /// The local addresses of the upstream connections, as the broker sees their clients.
    upstreams: RefCell<BTreeSet<SocketAddr>>,
    tls_ports: RefCell<BTreeSet<u16>>,
    /// The core's clock: monotonic, on the epoch scale for the reports.
    started: Instant,
    epoch: Duration,
}

impl Proxy {
    pub(super) fn new(fault: Fault, own_port: u16, ports: Vec<u16>) -> Proxy {
        Proxy {
            fault: RefCell::new(fault),
            own_port,
            ports,
            active: Cell::new(0),
            upstreams: RefCell::new(BTreeSet::new()),
            tls_ports: RefCell::new(BTreeSet::new()),
            started: Instant::now(),
            epoch: since_epoch(),
        }
    }

    fn now(&self) -> Duration {
        self.epoch + self.started.elapsed()
    }

    /// Connections proxied now.
    pub(super) fn active(&self) -> usize {
        self.active.get()
    }

    /// The upstream connections' local addresses.
    pub(super) fn upstreams(&self) -> BTreeSet<SocketAddr> {
        self.upstreams.borrow().clone()
    }

    /// Copies the counters out and hands the hits over.
    pub(super) fn publish(&self, shared: &Shared, hits: &SyncSender<Hit>, direct: &Handover) {
        let (counters, taken) = {
            let mut fault = self.fault.borrow_mut();
            (fault.counters(), fault.take_hits())
        };
        for hit in taken {
            // A full channel means nobody reads fast enough: the counters still count.
            let _ = hits.try_send(hit);
        }
        let tls_ports = self.tls_ports.borrow().clone();
        shared.update(|stats| {
            stats.counters = counters;
            stats.handed_over = direct.handed_over();
            stats.active = self.active.get() as u64;
            stats.tls_ports = tls_ports;
        });
    }

    /// A connection the listener accepted: proxied on a task of its own.
    pub(super) fn accepted(
        self: &Rc<Self>,
        accepted: std::io::Result<(TcpStream, SocketAddr)>,
        finishing: &watch::Receiver<bool>,
    ) {
        let Ok((client, peer)) = accepted else {
            return;
        };
        if self.active.get() >= MAX_CONNECTIONS {
            return;
        }
        let Some(broker) = original_destination(&client) else {
            return;
        };
        if broker.port() == self.own_port || !self.ports.contains(&broker.port()) {
            // Not redirected to us from a broker port: nothing to proxy it to.
            return;
        }
        self.active.set(self.active.get() + 1);
        let proxy = self.clone();
        let finishing = finishing.clone();
        tokio::task::spawn_local(async move {
            let mut upstream_addr = None;
            let result = proxy
                .proxy(client, peer, broker, finishing, &mut upstream_addr)
                .await;
            if let Err(error) = result {
                tracing::debug!("proxy: {peer} → {broker}: {error}");
            }
            if let Some(addr) = upstream_addr {
                proxy.upstreams.borrow_mut().remove(&addr);
            }
            proxy.active.set(proxy.active.get() - 1);
        });
    }

    /// Proxies one connection until either side or the core closes it.
    async fn proxy(
        &self,
        client: TcpStream,
        peer: SocketAddr,
        broker: SocketAddr,
        mut finishing: watch::Receiver<bool>,
        upstream_addr: &mut Option<SocketAddr>,
    ) -> std::io::Result<()> {
        let upstream = tokio::time::timeout(CONNECT_TIMEOUT, connect_upstream(broker))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let local = upstream.local_addr()?;
        self.upstreams.borrow_mut().insert(local);
        *upstream_addr = Some(local);
        let _ = client.set_nodelay(true);
        let mut conn = self.fault.borrow_mut().connection(peer, broker);
        let (mut client_in, mut client_out) = client.into_split();
        let (mut broker_in, mut broker_out) = upstream.into_split();
        let mut out = Output::default();
        let (mut client_buf, mut broker_buf) = (vec![0u8; READ_CHUNK], vec![0u8; READ_CHUNK]);
        let (mut client_open, mut broker_open) = (true, true);
        let mut finished = *finishing.borrow();
        if finished {
            conn.finish(&mut out);
        }
        while !conn.is_closed() {
            let deadline = conn
                .next_deadline()
                .map(|at| tokio::time::Instant::now() + at.saturating_sub(self.now()));
            tokio::select! {
                read = client_in.read(&mut client_buf), if client_open => {
                    let read = read.unwrap_or(0);
                    let mut fault = self.fault.borrow_mut();
                    if read == 0 {
                        client_open = false;
                        conn.client_closed(&mut out);
                    } else {
                        let tls = fault.counters().passthrough_tls;
                        conn.from_client(&mut fault, &client_buf[..read], self.now(), &mut out);
                        if fault.counters().passthrough_tls > tls {
                            self.tls_ports.borrow_mut().insert(broker.port());
                        }
                    }
                }
                read = broker_in.read(&mut broker_buf), if broker_open => {
                    let read = read.unwrap_or(0);
                    if read == 0 {
                        broker_open = false;
                        conn.broker_closed(&mut out);
                    } else {
                        let mut fault = self.fault.borrow_mut();
                        conn.from_broker(&mut fault, &broker_buf[..read], self.now(), &mut out);
                    }
                }
                _ = sleep_until(deadline) => conn.tick(self.now(), &mut out),
                changed = finishing.changed(), if !finished => {
                    finished = true;
                    if changed.is_ok() {
                        conn.finish(&mut out);
                    }
                }
            }
            if write_out(&mut out, &mut client_out, &mut broker_out)
                .await
                .is_err()
            {
                break;
            }
            if !client_open && !broker_open {
                break;
            }
        }
        let _ = client_out.shutdown().await;
        let _ = broker_out.shutdown().await;
        drop((client_in, broker_in));
        Ok(())
    }
}

/// Writes what the core left, in its order: the broker's bytes, the client's, then shuts
/// the upstream's write side if asked. A failed write ends the connection.
async fn write_out(
    out: &mut Output,
    client: &mut OwnedWriteHalf,
    broker: &mut OwnedWriteHalf,
) -> std::io::Result<()> {
    if !out.to_broker.is_empty() {
        broker.write_all(&out.to_broker).await?;
        out.to_broker.clear();
    }
    if !out.to_client.is_empty() {
        client.write_all(&out.to_client).await?;
        out.to_client.clear();
    }
    if std::mem::take(&mut out.shutdown_broker) {
        broker.shutdown().await?;
    }
    if std::mem::take(&mut out.close) {
        return Err(std::io::Error::other("closed by the proxy"));
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where the client meant to connect before the redirect (`SO_ORIGINAL_DST`), in its family.
fn original_destination(client: &TcpStream) -> Option<SocketAddr> {
    let socket = SockRef::from(client);
    let local = client.local_addr().ok()?;
    let original = if local.is_ipv4() {
        socket.original_dst_v4()
    } else {
        socket.original_dst_v6()
    };
    original.ok()?.as_socket()
}
