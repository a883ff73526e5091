//! `kafka-shock sniff`: wires a capture source to the pure decoding core and prints what it
//! decodes, as human lines, NDJSON, and an optional summary table.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use kafka_shock_agent::sniffer::event::{Event, EventFilter};
use kafka_shock_agent::sniffer::json::JsonWriter;
use kafka_shock_agent::sniffer::summary::Summary;
use kafka_shock_agent::sniffer::{Sniffer, SnifferConfig};
use kafka_shock_agent::wire::bpf::MAX_PORTS;

use crate::commands::target::TargetArgs;
use crate::commands::values::{parse_api, parse_topic};
use crate::edges::capture::file::CaptureFile;
use crate::edges::capture::live::{LiveCapture, LiveOptions};
use crate::edges::capture::writer::MatchWriter;
use crate::edges::capture::{Next, Packet};
use crate::edges::clock::since_epoch;

/// How long a live capture waits for a packet before letting the decoder's clock move on.
const LIVE_POLL: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
pub struct SniffArgs {
    /// Read a pcap or pcapng file (Ethernet, Linux cooked SLL/SLL2 or raw IP).
    #[arg(long, value_name = "FILE", conflicts_with_all = TargetArgs::IDS)]
    pcap: Option<PathBuf>,
    /// Capture live in this network namespace.
    #[command(flatten)]
    target: TargetArgs,
    /// Capture only on this interface (in the chosen namespace; default: all).
    #[arg(long, value_name = "IFACE")]
    iface: Option<String>,
    /// Broker port; repeat for several. Traffic to it is requests, from it responses.
    #[arg(long = "port", value_name = "PORT", default_values_t = [9092u16])]
    ports: Vec<u16>,
    /// Print NDJSON, one object per request, instead of human lines.
    #[arg(long)]
    json: bool,
    /// Print a table per API, client id and topic at the end.
    #[arg(long)]
    summary: bool,
    /// Print no per-request lines (with --summary: only the table).
    #[arg(long, short)]
    quiet: bool,
    /// Only requests of this API (e.g. Produce); repeatable. Unknown names are refused.
    #[arg(long = "api", value_name = "API", value_parser = parse_api)]
    apis: Vec<String>,
    /// Only requests with this client id; repeatable.
    #[arg(long = "client-id", value_name = "ID")]
    client_ids: Vec<String>,
    /// Only requests touching this topic; repeatable. Names Kafka refuses are refused.
    #[arg(long = "topic", value_name = "TOPIC", value_parser = parse_topic)]
    topics: Vec<String>,
    /// Write the packets of connections carrying matching requests to this pcap file.
    #[arg(long, value_name = "FILE")]
    write_pcap: Option<PathBuf>,
    /// Stop a live capture after this long (e.g. 10s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Stop after this many matching requests were printed.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Per-connection memory cap for reassembly and framing, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    max_flow_mib: usize,
    /// Print the decoder's counters (JSON) on stderr at the end.
    #[arg(long)]
    stats: bool,
}

/// "500ms", "10s", "2m": what `--duration` takes.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map(|at| text.split_at(at))
        .unwrap_or((text, "s"));
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("{text:?}: unit must be ms, s or m")),
    }
}

enum Source {
    File(CaptureFile),
    Live(LiveCapture),
}

impl Source {
    fn open(args: &SniffArgs) -> anyhow::Result<Source> {
        if let Some(path) = &args.pcap {
            if args.iface.is_some() {
                bail!("--iface applies to live capture, not to --pcap");
            }
            return Ok(Source::File(CaptureFile::open(path)?));
        }
        let netns = match args.target.open()? {
            Some(netns) => Some(Arc::new(netns)),
            None if args.iface.is_some() => None,
            None => bail!(
                "say what to sniff: --pcap FILE, --netns NAME|PATH, --pid PID, --pod-uid UID, \
                 --pod-ip IP or --iface IFACE"
            ),
        };
        let live = LiveCapture::start(LiveOptions {
            netns,
            iface: args.iface.clone(),
            ports: args.ports.clone(),
        })?;
        Ok(Source::Live(live))
    }

    fn next(&mut self) -> anyhow::Result<Next<'_>> {
        Ok(match self {
            Source::File(file) => file.next()?,
            Source::Live(live) => live.next(LIVE_POLL)?,
        })
    }
}

/// Bytes of lines gathered before they are written to stdout.
const OUTPUT_CHUNK: usize = 1 << 16;

/// Where decoded requests go: stdout lines, the summary, the pcap writer.
struct Output {
    stdout: std::io::Stdout,
    /// Lines not written yet, gathered here (a `BufWriter` would copy them once more) and
    /// written when they pass [`OUTPUT_CHUNK`], after every packet's events when `flush_each`
    /// (live capture: someone is watching), and at the end.
    pending: Vec<u8>,
    flush_each: bool,
    /// Writes the JSON lines (`None`: human lines).
    json: Option<JsonWriter>,
    quiet: bool,
    filter: EventFilter,
    summary: Option<Summary>,
    pcap: Option<MatchWriter>,
    printed: u64,
    /// Set once stdout is closed (e.g. piped into `head`): stop quietly.
    closed: bool,
}

impl Output {
    /// Prints (and counts) the events that pass the filter, leaving `events` empty.
    fn emit(&mut self, events: &mut Vec<Event>) -> anyhow::Result<()> {
        // Read in place and dropped together: moving each event out costs a copy.
        let emitted = events.iter().try_for_each(|event| self.emit_one(event));
        events.clear();
        emitted?;
        if self.flush_each {
            self.flush()?;
        }
        Ok(())
    }

    fn emit_one(&mut self, event: &Event) -> anyhow::Result<()> {
        if !self.filter.matches(event) {
            return Ok(());
        }
        if let Some(summary) = &mut self.summary {
            summary.add(event);
        }
        if let Some(pcap) = &mut self.pcap {
            pcap.matched(event.client, event.broker)
                .context("writing --write-pcap")?;
        }
        self.printed += 1;
        if self.quiet || self.closed {
            return Ok(());
        }
        match &mut self.json {
            Some(json) => json.write(event, &mut self.pending),
            None => self.pending.extend_from_slice(event.to_line().as_bytes()),
        }
        self.pending.push(b'\n');
        if self.pending.len() >= OUTPUT_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds `text` and a newline to what is printed.
    fn write_line(&mut self, text: &[u8]) {
        if !self.closed {
            self.pending.extend_from_slice(text);
            self.pending.push(b'\n');
        }
    }

    /// Writes the pending lines to stdout.
    fn flush(&mut self) -> anyhow::Result<()> {
        if self.closed {
            self.pending.clear();
            return Ok(());
        }
        let written = self
            .stdout
            .write_all(&self.pending)
            .and_then(|()| self.stdout.flush());
        self.pending.clear();
        match written {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(error) => Err(error).context("writing to stdout"),
        }
    }
}

impl Drop for Output {
    /// Prints the lines still pending when `run` ends early (a capture found malformed
    /// halfway), as a `BufWriter` would.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

pub fn run(args: SniffArgs) -> anyhow::Result<()> {
    if args.ports.is_empty() || args.ports.len() > MAX_PORTS || args.ports.contains(&0) {
        bail!("--port: give between 1 and {MAX_PORTS} ports, each from 1 to 65535");
    }
    if args.max_flow_mib == 0 || args.max_flow_mib > 1024 {
        bail!("--max-flow-mib must be between 1 and 1024");
    }
    let mut source = Source::open(&args)?;
    if let Source::Live(_) = source {
        // Like tcpdump's "listening on": scripts wait for it before sending traffic.
        eprintln!("sniff: listening for Kafka on ports {:?}", args.ports);
    }
    let mut config = SnifferConfig::with_broker_ports(args.ports.iter().copied());
    config.reassembly.max_buffered_per_flow = args.max_flow_mib << 20;
    config.framer.max_frame = args.max_flow_mib << 20;
    let mut sniffer = Sniffer::new(config);

    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .context("installing signal handlers")?;
    }
    let deadline = args.duration.map(|duration| Instant::now() + duration);
    let mut output = Output {
        stdout: std::io::stdout(),
        pending: Vec::with_capacity(OUTPUT_CHUNK + (OUTPUT_CHUNK >> 2)),
        flush_each: matches!(source, Source::Live(_)),
        json: args.json.then(JsonWriter::default),
        quiet: args.quiet,
        filter: EventFilter {
            apis: args.apis.clone(),
            client_ids: args.client_ids.clone(),
            topics: args.topics.clone(),
        },
        summary: args.summary.then(Summary::default),
        pcap: None,
        printed: 0,
        closed: false,
    };

    let mut events = Vec::new();
    loop {
        if interrupted.load(Ordering::Relaxed)
            || deadline.is_some_and(|deadline| Instant::now() >= deadline)
            || args.count.is_some_and(|count| output.printed >= count)
            || output.closed
        {
            break;
        }
        match source.next()? {
            Next::Packet(packet) => {
                offer_to_pcap(&args, &mut output, &packet)?;
                sniffer.on_packet_into(packet.link, &packet.data, packet.ts, &mut events);
            }
            Next::Idle => sniffer.tick_into(since_epoch(), &mut events),
            Next::End => break,
        }
        output.emit(&mut events)?;
    }
    output.emit(&mut sniffer.finish())?;
    output.flush()?;

    if let Some(summary) = &output.summary {
        let table = summary.render();
        output.write_line(table.as_bytes());
        output.flush()?;
    }
    if let (Some(pcap), Some(path)) = (output.pcap.take(), &args.write_pcap) {
        let written = pcap.written;
        pcap.finish().context("writing --write-pcap")?;
        eprintln!("sniff: wrote {written} packets to {}", path.display());
    }
    if let Source::File(file) = &source
        && file.truncated
    {
        eprintln!(
            "sniff: warning: the capture ends in the middle of a packet; decoded what was complete"
        );
    }
    if let Source::Live(live) = &source
        && live.dropped() > 0
    {
        eprintln!(
            "sniff: warning: {} packets dropped (decoding fell behind, or the capture ring overflowed)",
            live.dropped()
        );
    }
    if args.stats {
        let counters = serde_json::to_string(&sniffer.counters()).unwrap_or_default();
        eprintln!("sniff: counters {counters}");
        eprintln!("sniff: peak_rss_kib {}", peak_rss_kib().unwrap_or(0));
    }
    Ok(())
}

/// Opens the `--write-pcap` file on the first packet (its link type is the source's) and
/// offers the packet to it.
fn offer_to_pcap(args: &SniffArgs, output: &mut Output, packet: &Packet<'_>) -> anyhow::Result<()> {
    let Some(path) = &args.write_pcap else {
        return Ok(());
    };
    if output.pcap.is_none() {
        let writer = MatchWriter::create(path, packet.linktype)
            .with_context(|| format!("creating {}", path.display()))?;
        output.pcap = Some(writer);
    }
    if let Some(writer) = &mut output.pcap {
        writer.offer(packet).context("writing --write-pcap")?;
    }
    Ok(())
}

/// The process's peak resident memory (VmHWM), for `--stats` and the memory-bound tests.
fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
