//! Live capture through libpcap (the `pcap` crate), on a capture thread of its own: the thread
//! enters the target network namespace with `setns` on the descriptor the namespace is held by
//! (which must not touch any other thread), then opens the capture there. libpcap receives
//! through a memory-mapped TPACKET_V3 ring (not in immediate mode: whole blocks of packets per
//! wake-up instead of a system call per packet) with the broker-port BPF filter attached in the
//! kernel, so only TCP to or from the broker ports is copied out.
//!
//! Packets reach the caller in batches (one contiguous buffer per ring block read) through a
//! bounded channel; when the caller falls behind, packets are dropped and counted rather than
//! queued without limit, and so are the ring's own drops (libpcap's `ps_drop`).

use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use kafka_shock_agent::wire::bpf::SNAP_LEN;
use kafka_shock_agent::wire::packet::LinkType;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use pcap::{Active, Capture};

use super::{CaptureError, Next, Packet};

/// How often the capture thread checks whether it should stop.
const POLL: Duration = Duration::from_millis(200);
/// The ring's block timeout: a block holding packets is handed over at the latest this long
/// after its first packet, so a quiet connection's request is seen within it.
const BLOCK_TIMEOUT_MS: i32 = 10;
/// The kernel ring (libpcap's buffer size).
const RING_BYTES: i32 = 8 << 20;
/// Packet bytes waiting for the decoder; beyond it packets are dropped and counted.
const QUEUE_BYTES: usize = 16 << 20;
/// Batches waiting for the decoder.
const QUEUE_BATCHES: usize = 1024;

/// Where and what to capture.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The namespace to capture in, held by its descriptor; `None` is the current one.
    pub netns: Option<Arc<crate::edges::netns::Netns>>,
    /// Only this interface (by name, in the target namespace); `None` is every interface.
    pub iface: Option<String>,
    pub ports: Vec<u16>,
}

/// The packets of one read of the ring, in one buffer.
struct Batch {
    data: Vec<u8>,
    packets: Vec<(Range<usize>, Duration)>,
}

/// A running live capture. Dropping it stops and joins the capture thread.
pub struct LiveCapture {
    batches: Receiver<Result<Batch, CaptureError>>,
    link: LinkType,
    linktype: u32,
    current: Option<Batch>,
    /// The next packet of `current`.
    at: usize,
    queued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// What the capture thread shares with its owner.
struct Shared {
    stop: Arc<AtomicBool>,
    /// Packets dropped: by the decoder falling behind, plus the kernel ring's.
    dropped: Arc<AtomicU64>,
    /// Packet bytes in the channel.
    queued: Arc<AtomicUsize>,
}

impl LiveCapture {
    /// Starts capturing; returns once the capture is open in the namespace, or with the reason
    /// it could not be (no such namespace or interface, no permission).
    pub fn start(options: LiveOptions) -> Result<LiveCapture, CaptureError> {
        let (ready_tx, ready_rx) = sync_channel(1);
        let (batch_tx, batches) = sync_channel(QUEUE_BATCHES);
        let shared = Shared {
            stop: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicU64::new(0)),
            queued: Arc::new(AtomicUsize::new(0)),
        };
        let (stop, dropped, queued) = (
            shared.stop.clone(),
            shared.dropped.clone(),
            shared.queued.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("kshock-capture".into())
            .spawn(move || match open(&options) {
                Ok(capture) => {
                    let linktype = capture.get_datalink().0 as u32;
                    let _ = ready_tx.send(Ok(linktype));
                    capture_loop(capture, &batch_tx, &shared);
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            })
            .map_err(CaptureError::Socket)?;
        let linktype = match ready_rx.recv() {
            Ok(Ok(linktype)) => linktype,
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Err(CaptureError::Thread(
                    "it ended before opening the capture".into(),
                ));
            }
        };
        let link =
            LinkType::from_linktype(linktype).ok_or_else(|| CaptureError::UnsupportedLinkType {
                path: "the live capture".to_owned(),
                linktype,
            })?;
        Ok(LiveCapture {
            batches,
            link,
            linktype,
            current: None,
            at: 0,
            queued,
            stop,
            dropped,
            thread: Some(thread),
        })
    }

    /// The next packet, `Idle` when none came within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Result<Next<'_>, CaptureError> {
        let exhausted = self
            .current
            .as_ref()
            .is_none_or(|batch| self.at >= batch.packets.len());
        if exhausted {
            self.current = None;
            match self.batches.recv_timeout(timeout) {
                Ok(Ok(batch)) => {
                    self.queued.fetch_sub(batch.data.len(), Ordering::Relaxed);
                    self.current = Some(batch);
                    self.at = 0;
                }
                Ok(Err(error)) => return Err(error),
                Err(RecvTimeoutError::Timeout) => return Ok(Next::Idle),
                Err(RecvTimeoutError::Disconnected) => return Ok(Next::End),
            }
        }
        let Some(batch) = &self.current else {
            return Ok(Next::Idle);
        };
        let (range, ts) = batch.packets[self.at].clone();
        self.at += 1;
        Ok(Next::Packet(Packet {
            link: self.link,
            linktype: self.linktype,
            data: batch.data[range].into(),
            ts,
        }))
    }

    /// Packets dropped: because the decoder fell behind, or by the kernel ring.
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

/// The libpcap filter passing TCP to or from any of `ports` (IPv4 and IPv6).
fn port_filter(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|port| format!("tcp port {port}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

fn pcap_error(error: pcap::Error) -> CaptureError {
    CaptureError::Pcap(error.to_string())
}

/// Runs on the capture thread: enters the namespace, then opens and filters the capture there.
fn open(options: &LiveOptions) -> Result<Capture<Active>, CaptureError> {
    if let Some(netns) = &options.netns {
        netns.enter_current_thread()?;
    }
    let device = options.iface.as_deref().unwrap_or("any");
    if let Some(name) = &options.iface
        && nix::net::if_::if_nametoindex(name.as_str()).is_err()
    {
        return Err(CaptureError::NoSuchInterface { name: name.clone() });
    }
    let mut capture = Capture::from_device(device)
        .map_err(pcap_error)?
        .promisc(false)
        .snaplen(SNAP_LEN as i32)
        .buffer_size(RING_BYTES)
        .timeout(BLOCK_TIMEOUT_MS)
        .immediate_mode(false)
        .open()
        .map_err(pcap_error)?;
    capture
        .filter(&port_filter(&options.ports), true)
        .map_err(pcap_error)?;
    capture.setnonblock().map_err(pcap_error)
}

fn capture_loop(
    mut capture: Capture<Active>,
    batches: &SyncSender<Result<Batch, CaptureError>>,
    shared: &Shared,
) {
    let poll_ms = PollTimeout::try_from(POLL).unwrap_or(PollTimeout::NONE);
    let mut kernel_dropped = 0u64;
    let mut ring_reads = 0u32;
    while !shared.stop.load(Ordering::Relaxed) {
        let mut batch = Batch {
            data: Vec::new(),
            packets: Vec::new(),
        };
        let read = capture.dispatch(None, |packet| {
            let start = batch.data.len();
            batch.data.extend_from_slice(packet.data);
            let ts = Duration::from_secs(u64::try_from(packet.header.ts.tv_sec).unwrap_or(0))
                + Duration::from_micros(u64::try_from(packet.header.ts.tv_usec).unwrap_or(0));
            batch.packets.push((start..batch.data.len(), ts));
        });
        match read {
            Ok(0) => {
                let mut fds = [PollFd::new(capture.as_fd(), PollFlags::POLLIN)];
                if let Err(errno) = poll(&mut fds, poll_ms)
                    && errno != nix::errno::Errno::EINTR
                {
                    let _ = batches.send(Err(CaptureError::Socket(errno.into())));
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(error) => {
                let _ = batches.send(Err(pcap_error(error)));
                return;
            }
        }
        ring_reads = ring_reads.wrapping_add(1);
        if ring_reads.is_multiple_of(64) {
            kernel_dropped = count_kernel_drops(&mut capture, kernel_dropped, shared);
        }
        if !hand_over(batch, batches, shared) {
            return;
        }
    }
    count_kernel_drops(&mut capture, kernel_dropped, shared);
}

/// Adds the ring's drops since `before` to the shared count; returns the ring's total.
fn count_kernel_drops(capture: &mut Capture<Active>, before: u64, shared: &Shared) -> u64 {
    let Ok(stats) = capture.stats() else {
        return before;
    };
    let now = u64::from(stats.dropped);
    shared
        .dropped
        .fetch_add(now.saturating_sub(before), Ordering::Relaxed);
    now.max(before)
}

/// Sends `batch` to the decoder, or counts its packets dropped when the queue is full.
/// `false` once the decoder is gone.
fn hand_over(
    batch: Batch,
    batches: &SyncSender<Result<Batch, CaptureError>>,
    shared: &Shared,
) -> bool {
    let (bytes, packets) = (batch.data.len(), batch.packets.len() as u64);
    if shared.queued.load(Ordering::Relaxed) + bytes > QUEUE_BYTES {
        shared.dropped.fetch_add(packets, Ordering::Relaxed);
        return true;
    }
    shared.queued.fetch_add(bytes, Ordering::Relaxed);
    match batches.try_send(Ok(batch)) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            shared.queued.fetch_sub(bytes, Ordering::Relaxed);
            shared.dropped.fetch_add(packets, Ordering::Relaxed);
            true
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_names_every_broker_port() {
        assert_eq!(port_filter(&[9092]), "tcp port 9092");
        assert_eq!(port_filter(&[9092, 9093]), "tcp port 9092 or tcp port 9093");
    }
}
