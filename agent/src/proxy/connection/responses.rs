//! The broker's side of a proxied connection: each response is the front slot's; it is
//! streamed to the client as it arrives, swallowed (a duplicate's), or collected whole and
//! rewritten (throttle, Metadata error, corrupted Fetch), and the proxy's own answers follow
//! the responses before them.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use super::{Connection, NO_HEAD, Output, Response, Slot, Stage, Treatment};
use crate::decode::decode_response;
use crate::proxy::fault::Fault;
use crate::proxy::rewrite::{self, Throttle};

impl Connection {
    /// Bytes the broker sent.
    pub fn from_broker(
        &mut self,
        fault: &mut Fault,
        bytes: &[u8],
        now: Duration,
        out: &mut Output,
    ) {
        let mut rest = bytes;
        while !rest.is_empty() && !self.closed {
            rest = match self.response {
                Response::Raw => {
                    out.to_client.extend_from_slice(rest);
                    &[]
                }
                Response::Head {
                    ref mut bytes,
                    ref mut len,
                } => {
                    let n = (bytes.len() - *len).min(rest.len());
                    bytes[*len..*len + n].copy_from_slice(&rest[..n]);
                    *len += n;
                    let head = (*len == bytes.len()).then_some(*bytes);
                    if let Some(head) = head {
                        self.start_response(fault, head, now, out);
                    }
                    &rest[n..]
                }
                Response::Stream {
                    ref mut left,
                    swallow,
                } => {
                    let n = (*left).min(rest.len());
                    if !swallow {
                        out.to_client.extend_from_slice(&rest[..n]);
                    }
                    *left -= n;
                    if *left == 0 {
                        self.end_response(fault, None, out);
                    }
                    &rest[n..]
                }
                Response::Collect {
                    ref mut frame,
                    size,
                } => {
                    let n = (size - frame.len()).min(rest.len());
                    frame.extend_from_slice(&rest[..n]);
                    if frame.len() == size {
                        let frame = std::mem::take(frame);
                        self.end_response(fault, Some(frame), out);
                    }
                    &rest[n..]
                }
            };
        }
    }

    /// A response's size and correlation id are in: check it is the front slot's, and choose
    /// how its body goes.
    fn start_response(
        &mut self,
        fault: &mut Fault,
        head: [u8; 8],
        now: Duration,
        out: &mut Output,
    ) {
        let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let correlation_id = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let Some(front) = self.slots.front_mut() else {
            // Nothing awaits a response: this answers requests passed through byte for byte
            // (or the broker speaks unprompted); the rest of the stream is not followed.
            if self.stage != Stage::Passthrough {
                self.pass_through(fault, now, out);
            }
            self.response = Response::Raw;
            out.to_client.extend_from_slice(&head);
            return;
        };
        let expected = match front {
            Slot::Broker { correlation_id, .. } | Slot::Swallow { correlation_id } => {
                Some(*correlation_id)
            }
            Slot::Answer(_) | Slot::Close => None,
        };
        let body = usize::try_from(size).ok().and_then(|s| s.checked_sub(4));
        let (Some(left), true) = (body, expected == Some(correlation_id)) else {
            return self.lost_order(fault, head, now, out);
        };
        self.response = match front {
            Slot::Swallow { .. } => Response::Stream {
                left,
                swallow: true,
            },
            Slot::Broker { treatment, .. } if treatment.is_some() => {
                let size = left + 4;
                if size <= fault.config.max_frame && self.memory.try_take(size) {
                    let mut frame = Vec::with_capacity(size);
                    frame.extend_from_slice(&head[4..]);
                    Response::Collect { frame, size }
                } else {
                    // Too large to rewrite: it goes as it is.
                    if !matches!(treatment, Some(Treatment::LearnTopicIds)) {
                        fault.counters.failed_open += 1;
                    }
                    *treatment = None;
                    out.to_client.extend_from_slice(&head);
                    Response::Stream {
                        left,
                        swallow: false,
                    }
                }
            }
            _ => {
                out.to_client.extend_from_slice(&head);
                Response::Stream {
                    left,
                    swallow: false,
                }
            }
        };
        if left == 0 {
            let frame = match std::mem::replace(&mut self.response, NO_HEAD) {
                Response::Collect { frame, .. } => Some(frame),
                _ => None,
            };
            self.end_response(fault, frame, out);
        }
    }

    /// The broker's stream does not follow its requests: the proxy stops following it. With
    /// nothing of its own owed to the client (answers, swallowed duplicates, a close), both
    /// directions become a passthrough from here (rewrites still owed are given up); otherwise
    /// the client's responses could not be put in order, and the connection is closed.
    fn lost_order(&mut self, fault: &mut Fault, head: [u8; 8], now: Duration, out: &mut Output) {
        let owes = self
            .slots
            .iter()
            .any(|slot| matches!(slot, Slot::Answer(_) | Slot::Swallow { .. } | Slot::Close));
        if owes || self.client_done {
            fault.counters.out_of_order_closed += 1;
            return self.close(out);
        }
        self.slots.clear();
        if self.stage != Stage::Passthrough {
            self.pass_through(fault, now, out);
        }
        self.response = Response::Raw;
        out.to_client.extend_from_slice(&head);
    }

    /// The front slot's response is complete; `frame` is the whole of it (without its size
    /// prefix) when it was collected to be rewritten.
    fn end_response(&mut self, fault: &mut Fault, frame: Option<Vec<u8>>, out: &mut Output) {
        self.response = NO_HEAD;
        let slot = self.slots.pop_front();
        if let Some(frame) = frame {
            self.memory.give(frame.len());
            let frame = Bytes::from(frame);
            let rewritten = match slot {
                Some(Slot::Broker {
                    api_key,
                    api_version,
                    treatment: Some(treatment),
                    ..
                }) => rewritten(fault, treatment, api_key, api_version, &frame),
                _ => None,
            };
            match rewritten {
                Some(rewritten) => out.to_client.extend_from_slice(&rewritten),
                None => {
                    let size = i32::try_from(frame.len()).unwrap_or(i32::MAX);
                    out.to_client.extend_from_slice(&size.to_be_bytes());
                    out.to_client.extend_from_slice(&frame);
                }
            }
        }
        self.flush_ready(out);
    }

    /// Delivers the answers now at the front, and closes where a close is due.
    pub(super) fn flush_ready(&mut self, out: &mut Output) {
        loop {
            match self.slots.front() {
                Some(Slot::Answer(_)) => {
                    if let Some(Slot::Answer(answer)) = self.slots.pop_front() {
                        self.memory.give(answer.len());
                        out.to_client.extend_from_slice(&answer);
                    }
                }
                Some(Slot::Close) => return self.close(out),
                Some(_) => return,
                None if self.client_done => return self.close(out),
                None => return self.stop_following(),
            }
        }
    }
}

/// A collected response after its treatment, size-prefixed; `None` to send it as it was.
fn rewritten(
    fault: &mut Fault,
    treatment: Treatment,
    api_key: i16,
    api_version: i16,
    frame: &Bytes,
) -> Option<Vec<u8>> {
    let key = ApiKey::try_from(api_key).ok()?;
    match treatment {
        Treatment::Throttle(ms) => match rewrite::throttle(frame, key, api_version, ms) {
            Ok(Throttle::Set(bytes)) => {
                fault.counters.throttled += 1;
                Some(bytes)
            }
            Ok(Throttle::AlreadyThrottled) => {
                fault.counters.throttled += 1;
                None
            }
            Ok(Throttle::NotCarried) => None,
            Err(_) => {
                fault.counters.failed_open += 1;
                None
            }
        },
        Treatment::LearnTopicIds => {
            learn_topic_ids(fault, api_version, frame);
            None
        }
        Treatment::MetadataError(code) => {
            learn_topic_ids(fault, api_version, frame);
            let injected =
                rewrite::inject_metadata_error(frame, api_version, code, &fault.topic_filter());
            match injected {
                Ok(Some((bytes, _))) => {
                    fault.counters.errored += 1;
                    Some(bytes)
                }
                Ok(None) => None,
                Err(_) => {
                    fault.counters.failed_open += 1;
                    None
                }
            }
        }
        Treatment::CorruptFetch { fix_crc } => {
            let corruption = fault.corruption(fix_crc);
            match rewrite::corrupt_fetch(frame, api_version, &fault.topic_filter(), corruption) {
                Ok(Some((bytes, records))) => {
                    fault.counters.corrupted += 1;
                    fault.counters.corrupted_records += records;
                    Some(bytes)
                }
                Ok(None) => None,
                Err(_) => {
                    fault.counters.failed_open += 1;
                    None
                }
            }
        }
    }
}

/// Names the topic ids a Metadata response gives the fault's topics.
fn learn_topic_ids(fault: &mut Fault, api_version: i16, frame: &Bytes) {
    let info = decode_response(frame, ApiKey::Metadata as i16, api_version, frame.len());
    for (id, name) in &info.topic_ids {
        if fault.topic_filter().names.contains(name) {
            fault.learn_topic_id(*id.as_bytes(), name);
        }
    }
}
