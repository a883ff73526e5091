//! Live capture: an AF_PACKET socket opened inside the target network namespace, on a capture
//! thread of its own (it enters the namespace with `setns` on the descriptor the namespace is
//! held by, which must not touch any other thread). A kernel BPF filter passes only TCP to or from the broker ports. Packets reach
//! the caller through a bounded channel; when the caller falls behind, packets are dropped
//! and counted rather than queued without limit.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use kafka_shock_agent::wire::bpf::{SNAP_LEN, broker_port_filter};
use kafka_shock_agent::wire::packet::LinkType;
use nix::errno::Errno;
use nix::net::if_::if_nametoindex;
use nix::sys::socket::{ControlMessageOwned, LinkAddr, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeVal;
use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use super::{CaptureError, Next, Packet};
use crate::edges::clock::since_epoch;
use crate::edges::netns::Netns;

/// pcap's LINKTYPE_RAW: a `SOCK_DGRAM` packet socket delivers packets from the IP header on.
const LINKTYPE_RAW: u32 = 101;
/// `PACKET_OUTGOING` in sockaddr_ll: loopback shows each packet once out and once in.
const PACKET_OUTGOING: u8 = 4;
const ETH_P_ALL: u16 = 0x0003;
/// How often the capture thread checks whether it should stop.
const POLL: Duration = Duration::from_millis(200);
/// Packets waiting for the decoder; more are dropped and counted.
const QUEUE_PACKETS: usize = 8192;

/// Where and what to capture.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The namespace to capture in, held by its descriptor; `None` is the current one.
    pub netns: Option<Arc<Netns>>,
    /// Only this interface (by name, in the target namespace); `None` is every interface.
    pub iface: Option<String>,
    pub ports: Vec<u16>,
}

/// A running live capture. Dropping it stops and joins the capture thread.
pub struct LiveCapture {
    packets: Receiver<Result<Packet<'static>, CaptureError>>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl LiveCapture {
    /// Starts capturing; returns once the socket is open in the namespace, or with the reason
    /// it could not be (no such namespace or interface, no permission).
    pub fn start(options: LiveOptions) -> Result<LiveCapture, CaptureError> {
        let (ready_tx, ready_rx) = sync_channel(1);
        let (packet_tx, packets) = sync_channel(QUEUE_PACKETS);
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, dropped) = (stop.clone(), dropped.clone());
            std::thread::Builder::new()
                .name("kshock-capture".into())
                .spawn(move || match open(&options) {
                    Ok(opened) => {
                        let _ = ready_tx.send(Ok(()));
                        capture_loop(opened, &packet_tx, &stop, &dropped);
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                    }
                })
                .map_err(CaptureError::Socket)?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(LiveCapture {
                packets,
                stop,
                dropped,
                thread: Some(thread),
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(CaptureError::Thread(
                "it ended before opening the socket".into(),
            )),
        }
    }

    /// The next packet, `Idle` when none came within `timeout`.
    pub fn next(&self, timeout: Duration) -> Result<Next<'static>, CaptureError> {
        match self.packets.recv_timeout(timeout) {
            Ok(Ok(packet)) => Ok(Next::Packet(packet)),
            Ok(Err(error)) => Err(error),
            Err(RecvTimeoutError::Timeout) => Ok(Next::Idle),
            Err(RecvTimeoutError::Disconnected) => Ok(Next::End),
        }
    }

    /// Packets dropped because the decoder fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Opened {
    socket: Socket,
    only_ifindex: Option<usize>,
    loopback_ifindex: Option<usize>,
}

/// Runs on the capture thread: enters the namespace, then opens and filters the socket there.
fn open(options: &LiveOptions) -> Result<Opened, CaptureError> {
    if let Some(netns) = &options.netns {
        netns.enter_current_thread()?;
    }
    let protocol = Protocol::from(i32::from(ETH_P_ALL.to_be()));
    let socket =
        Socket::new(Domain::PACKET, Type::DGRAM, Some(protocol)).map_err(CaptureError::Socket)?;
    let filter: Vec<SockFilter> = broker_port_filter(&options.ports)
        .into_iter()
        .map(|op| SockFilter::new(op.code, op.jt, op.jf, op.k))
        .collect();
    socket
        .attach_filter(&filter)
        .map_err(CaptureError::Socket)?;
    socket
        .set_read_timeout(Some(POLL))
        .map_err(CaptureError::Socket)?;
    // Kernel receive timestamps: latencies must not include how late the decoder woke up.
    setsockopt(&socket, sockopt::ReceiveTimestamp, &true)
        .map_err(|errno| CaptureError::Socket(errno.into()))?;
    let only_ifindex = match &options.iface {
        Some(name) => Some(
            if_nametoindex(name.as_str())
                .map(|index| index as usize)
                .map_err(|_| CaptureError::NoSuchInterface { name: name.clone() })?,
        ),
        None => None,
    };
    let loopback_ifindex = if_nametoindex("lo").ok().map(|index| index as usize);
    Ok(Opened {
        socket,
        only_ifindex,
        loopback_ifindex,
    })
}

fn capture_loop(
    opened: Opened,
    packets: &SyncSender<Result<Packet<'static>, CaptureError>>,
    stop: &AtomicBool,
    dropped: &AtomicU64,
) {
    let mut buffer = vec![0u8; SNAP_LEN as usize];
    let fd = opened.socket.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let (len, from, kernel_ts) = match receive(fd, &mut buffer) {
            Ok(received) => received,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(errno) => {
                let _ = packets.send(Err(CaptureError::Socket(errno.into())));
                return;
            }
        };
        let ifindex = from.map(|addr| addr.ifindex());
        let pkttype = from.map(|addr| addr.pkttype());
        if opened
            .only_ifindex
            .is_some_and(|only| ifindex != Some(only))
        {
            continue;
        }
        if pkttype == Some(PACKET_OUTGOING)
            && ifindex.is_some()
            && ifindex == opened.loopback_ifindex
        {
            continue;
        }
        let packet = Packet {
            link: LinkType::RawIp,
            linktype: LINKTYPE_RAW,
            data: buffer[..len.min(buffer.len())].to_vec().into(),
            ts: kernel_ts.unwrap_or_else(since_epoch),
        };
        match packets.try_send(Ok(packet)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// One packet: its length, where it came from, and when the kernel received it.
fn receive(
    fd: std::os::fd::RawFd,
    buffer: &mut [u8],
) -> nix::Result<(usize, Option<LinkAddr>, Option<Duration>)> {
    let mut control = nix::cmsg_space!(TimeVal);
    let mut slices = [std::io::IoSliceMut::new(buffer)];
    let message = recvmsg::<LinkAddr>(fd, &mut slices, Some(&mut control), MsgFlags::empty())?;
    let kernel_ts = message.cmsgs()?.find_map(|cmsg| match cmsg {
        ControlMessageOwned::ScmTimestamp(tv) => {
            let micros = u64::try_from(tv.tv_usec()).unwrap_or(0);
            Some(
                Duration::from_secs(u64::try_from(tv.tv_sec()).unwrap_or(0))
                    + Duration::from_micros(micros),
            )
        }
        _ => None,
    });
    Ok((message.bytes, message.address, kernel_ts))
}
