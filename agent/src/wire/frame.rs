//! Kafka framing: cuts one reassembled direction of a connection into
//! size-prefixed frames (`int32` big-endian length, then the frame).
//!
//! Memory stays bounded whatever the peer declares: a frame larger than the
//! cap is reported from its first bytes and the rest is skipped as it
//! arrives. After a discontinuity (mid-stream join, skipped hole, bad size)
//! the framer scans for an offset where a plausible frame starts.

use crate::wire::span::Span;

use serde::Serialize;

/// Limits of the framer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramerConfig {
    /// Largest frame buffered whole.
    pub max_frame: usize,
    /// How much of an oversized frame is kept, enough for the request header.
    pub oversized_head: usize,
}

impl Default for FramerConfig {
    fn default() -> Self {
        Self {
            max_frame: 16 * 1024 * 1024,
            oversized_head: 64 * 1024,
        }
    }
}

/// What the framer emits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEvent {
    /// A complete frame, without its size prefix.
    Frame(Span),
    /// A frame over the cap: only its first bytes and its declared size.
    Oversized {
        /// The size the prefix declared (excluding the prefix).
        declared: usize,
        /// The first bytes of the frame.
        head: Span,
    },
}

impl FrameEvent {
    fn bytes_mut(&mut self) -> &mut Span {
        match self {
            FrameEvent::Frame(bytes) | FrameEvent::Oversized { head: bytes, .. } => bytes,
        }
    }
}

/// Decides whether a frame plausibly starts at the beginning of `probe`
/// (which starts with the size prefix and holds at least `probe_len` bytes).
pub trait BoundaryCheck {
    /// Bytes needed to judge a candidate offset.
    fn probe_len(&self) -> usize;
    /// Whether a frame plausibly starts here.
    fn plausible(&self, probe: &[u8]) -> bool;
}

/// Framing counters, exported in the sniffer's statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FramingCounters {
    /// Complete frames emitted.
    pub frames: u64,
    /// Frames over the cap, reported from their head and skipped.
    pub oversized_frames: u64,
    /// Size prefixes that were zero or negative.
    pub invalid_sizes: u64,
    /// Times the framer found a boundary again after losing it.
    pub resyncs: u64,
    /// Bytes discarded while looking for a boundary (or lost in a partial frame).
    pub resync_skipped_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InSync,
    Resyncing,
    Skipping { remaining: usize },
}

/// Frames one direction of one connection.
#[derive(Debug)]
pub struct Framer {
    config: FramerConfig,
    buf: Vec<u8>,
    state: State,
}

impl Framer {
    /// A framer that trusts the first bytes as a frame boundary (SYN seen).
    pub fn new(config: FramerConfig) -> Self {
        Self {
            config,
            buf: Vec::new(),
            state: State::InSync,
        }
    }

    /// Bytes held for frames not yet complete.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Forgets the partial frame and looks for a boundary in the next bytes,
    /// because the stream jumped.
    pub fn resync(&mut self, counters: &mut FramingCounters) {
        counters.resync_skipped_bytes += self.buf.len() as u64;
        self.buf.clear();
        self.state = State::Resyncing;
    }

    /// Feeds the next bytes of the stream; complete frames go to `out`, as
    /// ranges of `data` when they lie in it (see [`Span`]).
    pub fn push(
        &mut self,
        data: &[u8],
        check: &impl BoundaryCheck,
        counters: &mut FramingCounters,
        out: &mut Vec<FrameEvent>,
    ) {
        if self.buf.is_empty() {
            // The usual case, a stream cut at frame boundaries: frame `data` in place and
            // keep only an incomplete tail.
            let used = self.consume(data, check, counters, out);
            self.buf
                .extend_from_slice(data.get(used..).unwrap_or_default());
            return;
        }
        let held = self.buf.len();
        let first = out.len();
        self.buf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf);
        let used = self.consume(&buf, check, counters, out);
        // Frames that began in earlier pushes are copied out of the buffer before it moves on.
        for event in out.iter_mut().skip(first) {
            let bytes = event.bytes_mut();
            if let Span::Within(range) = bytes {
                *bytes = if range.start >= held {
                    Span::Within(range.start - held..range.end - held)
                } else {
                    Span::Owned(buf.get(range.clone()).unwrap_or_default().to_vec())
                };
            }
        }
        self.buf = buf;
        self.buf.drain(..used.min(self.buf.len()));
    }

    /// Frames what it can of `input`; returns how many of its bytes are done with.
    fn consume(
        &mut self,
        input: &[u8],
        check: &impl BoundaryCheck,
        counters: &mut FramingCounters,
        out: &mut Vec<FrameEvent>,
    ) -> usize {
        let mut pos = 0;
        while let Some(avail) = input.get(pos..).filter(|rest| !rest.is_empty()) {
            let consumed = match self.state {
                State::Skipping { remaining } => {
                    let here = remaining.min(avail.len());
                    self.state = match remaining - here {
                        0 => State::InSync,
                        left => State::Skipping { remaining: left },
                    };
                    here
                }
                State::Resyncing => match find_boundary(avail, check) {
                    Ok(offset) => {
                        counters.resyncs += 1;
                        counters.resync_skipped_bytes += offset as u64;
                        self.state = State::InSync;
                        offset
                    }
                    Err(scanned) => {
                        counters.resync_skipped_bytes += scanned as u64;
                        pos += scanned;
                        break;
                    }
                },
                State::InSync => match next_frame(&self.config, avail, counters) {
                    Some((consumed, event, state)) => {
                        out.extend(event.map(|mut event| {
                            if let Span::Within(range) = event.bytes_mut() {
                                *range = range.start + pos..range.end + pos;
                            }
                            event
                        }));
                        self.state = state;
                        consumed
                    }
                    None => break,
                },
            };
            pos += consumed;
        }
        pos
    }
}

/// Cuts the frame at the start of `avail`, if complete. Returns the bytes
/// consumed, what to emit (as a range of `avail`) and the next state, or `None`
/// to wait for more bytes.
fn next_frame(
    config: &FramerConfig,
    avail: &[u8],
    counters: &mut FramingCounters,
) -> Option<(usize, Option<FrameEvent>, State)> {
    let prefix: [u8; 4] = avail.get(..4)?.try_into().ok()?;
    let size = usize::try_from(i32::from_be_bytes(prefix)).unwrap_or(0);
    if size == 0 {
        counters.invalid_sizes += 1;
        counters.resync_skipped_bytes += 1;
        return Some((1, None, State::Resyncing));
    }
    if size <= config.max_frame {
        avail.get(4..4 + size)?;
        counters.frames += 1;
        let event = FrameEvent::Frame(Span::Within(4..4 + size));
        return Some((4 + size, Some(event), State::InSync));
    }
    let keep = config.oversized_head.min(config.max_frame).min(size);
    avail.get(4..4 + keep)?;
    counters.oversized_frames += 1;
    let event = FrameEvent::Oversized {
        declared: size,
        head: Span::Within(4..4 + keep),
    };
    let state = match size - keep {
        0 => State::InSync,
        remaining => State::Skipping { remaining },
    };
    Some((4 + keep, Some(event), state))
}

/// The offset of the first plausible boundary in `avail`, or else how many
/// leading bytes can be discarded for sure (keeping a partial probe).
fn find_boundary(avail: &[u8], check: &impl BoundaryCheck) -> Result<usize, usize> {
    let probe_len = check.probe_len().max(1);
    let candidates = avail.len().saturating_sub(probe_len - 1);
    (0..candidates)
        .find(|&offset| {
            avail
                .get(offset..)
                .is_some_and(|probe| check.plausible(probe))
        })
        .ok_or(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts a boundary where the size is 1..=100 and the next byte is 0xAA.
    struct Marker;

    impl BoundaryCheck for Marker {
        fn probe_len(&self) -> usize {
            5
        }
        fn plausible(&self, probe: &[u8]) -> bool {
            let size = probe
                .get(..4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            matches!(size, Some(1..=100)) && probe.get(4) == Some(&0xAA)
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    /// Pushes `data` with the [`Marker`] check, keeping the frames as owned bytes
    /// so that they outlive `data`.
    fn push(f: &mut Framer, data: &[u8], c: &mut FramingCounters, out: &mut Vec<FrameEvent>) {
        let first = out.len();
        f.push(data, &Marker, c, out);
        for event in out.iter_mut().skip(first) {
            let bytes = event.bytes_mut();
            bytes.detach(data);
        }
    }

    fn frames(events: &[FrameEvent]) -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                FrameEvent::Frame(b) => Some(b.bytes(&[]).to_vec()),
                FrameEvent::Oversized { .. } => None,
            })
            .collect()
    }

    #[test]
    fn several_frames_in_one_chunk_and_one_frame_over_many() {
        let mut stream = frame(&[0xAA, 1]);
        stream.extend(frame(&[0xAA, 2, 3]));
        let (mut c, mut out) = (FramingCounters::default(), Vec::new());
        let mut f = Framer::new(FramerConfig::default());
        push(&mut f, &stream, &mut c, &mut out);
        for byte in &stream {
            push(&mut f, &[*byte], &mut c, &mut out);
        }
        assert_eq!(
            frames(&out),
            vec![
                vec![0xAA, 1],
                vec![0xAA, 2, 3],
                vec![0xAA, 1],
                vec![0xAA, 2, 3]
            ]
        );
        assert_eq!(f.buffered_bytes(), 0);
    }

    #[test]
    fn oversized_frame_keeps_head_and_skips_rest() {
        let config = FramerConfig {
            max_frame: 8,
            oversized_head: 3,
        };
        let mut f = Framer::new(config);
        let (mut c, mut out) = (FramingCounters::default(), Vec::new());
        let mut stream = frame(&[0xAA; 20]);
        stream.extend(frame(&[0xAA, 9]));
        for chunk in stream.chunks(3) {
            push(&mut f, chunk, &mut c, &mut out);
            assert!(f.buffered_bytes() <= 8 + 3);
        }
        assert_eq!(
            out,
            vec![
                FrameEvent::Oversized {
                    declared: 20,
                    head: Span::Owned(vec![0xAA; 3])
                },
                FrameEvent::Frame(Span::Owned(vec![0xAA, 9])),
            ]
        );
        assert_eq!(c.oversized_frames, 1);
    }

    #[test]
    fn bad_sizes_and_discontinuities_resync() {
        let mut f = Framer::new(FramerConfig::default());
        let (mut c, mut out) = (FramingCounters::default(), Vec::new());
        let mut stream = (-5i32).to_be_bytes().to_vec();
        stream.extend([1, 2, 3]);
        stream.extend(frame(&[0xAA, 7]));
        push(&mut f, &stream, &mut c, &mut out);
        assert_eq!(frames(&out), vec![vec![0xAA, 7]]);
        assert_eq!(
            (c.invalid_sizes, c.resyncs, c.resync_skipped_bytes),
            (1, 1, 7)
        );

        push(&mut f, &[0, 0, 0], &mut c, &mut out);
        f.resync(&mut c);
        push(&mut f, &[9, 9], &mut c, &mut out);
        push(&mut f, &frame(&[0xAA, 8]), &mut c, &mut out);
        assert_eq!(frames(&out).last(), Some(&vec![0xAA, 8]));
        assert_eq!(c.resyncs, 2);
    }
}
