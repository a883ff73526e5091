//! What a hit request gets, per action: the request forwarded held, rewritten or twice, or
//! answered by the proxy (see the module docs of [`super`]).

use std::time::Duration;

use bytes::Bytes;

use super::{Connection, FETCH, Output, PRODUCE, Request, Slot, Stage, Treatment};
use crate::proxy::answer::{ErrorPath, answer, error_path};
use crate::proxy::codec::RequestFrame;
use crate::proxy::fault::{Fault, Memory};
use crate::proxy::rewrite;
use crate::proxy::{Action, CorruptTarget, Outcome};

impl Connection {
    /// Applies the fault's action to a hit request.
    pub(super) fn hit(
        &mut self,
        fault: &mut Fault,
        frame: &[u8],
        request: Request,
        now: Duration,
        out: &mut Output,
    ) -> Outcome {
        let api = request.api_key;
        match fault.config.action {
            Action::Delay { delay, jitter } => {
                let release_at = now + delay + fault.draw.up_to(jitter);
                if self.pass(fault, frame, request, None, release_at, now, out) {
                    fault.counters.delayed += 1;
                    Outcome::Delayed(release_at - now)
                } else {
                    Outcome::FailedOpen
                }
            }
            Action::Error(code) => self.error(fault, frame, request, code, now, out),
            Action::Throttle(time) if request.expects_response => {
                let ms = i32::try_from(time.as_millis()).unwrap_or(i32::MAX);
                let treatment = Some(Treatment::Throttle(ms));
                self.pass(fault, frame, request, treatment, Duration::ZERO, now, out);
                Outcome::Throttled(time)
            }
            Action::Corrupt {
                target: CorruptTarget::Produce,
                fix_crc,
            } if api == PRODUCE => self.corrupt_produce(fault, frame, request, fix_crc, now, out),
            Action::Corrupt {
                target: CorruptTarget::Fetch,
                fix_crc,
            } if api == FETCH => {
                let treatment = Some(Treatment::CorruptFetch { fix_crc });
                self.pass(fault, frame, request, treatment, Duration::ZERO, now, out);
                Outcome::CorruptingResponse
            }
            Action::Duplicate if api == PRODUCE => {
                self.pass(fault, frame, request, None, Duration::ZERO, now, out);
                let mut copy = frame.to_vec();
                let id = self.proxy_id();
                copy[8..12].copy_from_slice(&id.to_be_bytes());
                self.forward(fault, &copy, Duration::ZERO, now, out);
                if request.expects_response {
                    self.slots.push_back(Slot::Swallow { correlation_id: id });
                }
                fault.counters.duplicated += 1;
                Outcome::Duplicated
            }
            _ => {
                self.pass(fault, frame, request, None, Duration::ZERO, now, out);
                Outcome::NotApplicable
            }
        }
    }

    /// Fails a hit request with `code`: answered here, or (Metadata) in the broker's response.
    fn error(
        &mut self,
        fault: &mut Fault,
        frame: &[u8],
        request: Request,
        code: i16,
        now: Duration,
        out: &mut Output,
    ) -> Outcome {
        match error_path(request.api_key) {
            Some(ErrorPath::Inject) => {
                let treatment = Some(Treatment::MetadataError(code));
                self.pass(fault, frame, request, treatment, Duration::ZERO, now, out);
                return Outcome::Errored(code);
            }
            Some(ErrorPath::Answer) => {}
            None => {
                self.pass(fault, frame, request, None, Duration::ZERO, now, out);
                return Outcome::NotApplicable;
            }
        }
        let answered = RequestFrame::parse(&Bytes::copy_from_slice(&frame[4..]))
            .and_then(|parsed| answer(&parsed, code));
        let kept = |answer: &Vec<u8>, memory: &mut Memory| {
            !request.expects_response || memory.try_take(answer.len())
        };
        let Some(answer) = answered.ok().filter(|a| kept(a, &mut self.memory)) else {
            // Undecodable, or no memory left to keep the answer until its turn.
            fault.counters.failed_open += 1;
            self.pass(fault, frame, request, None, Duration::ZERO, now, out);
            return Outcome::FailedOpen;
        };
        fault.counters.errored += 1;
        if request.expects_response {
            self.slots.push_back(Slot::Answer(answer));
            self.flush_ready(out);
            Outcome::Errored(code)
        } else {
            // A broker closes the connection of an acks=0 Produce that failed: the client
            // learns of the error only that way. Requests behind it are not processed.
            self.slots.push_back(Slot::Close);
            self.stage = Stage::Discard;
            self.flush_ready(out);
            Outcome::ErroredClosed(code)
        }
    }

    fn corrupt_produce(
        &mut self,
        fault: &mut Fault,
        frame: &[u8],
        request: Request,
        fix_crc: bool,
        now: Duration,
        out: &mut Output,
    ) -> Outcome {
        let corrupted = RequestFrame::parse(&Bytes::copy_from_slice(&frame[4..])).and_then(|r| {
            rewrite::corrupt_produce(&r, &fault.topic_filter(), fault.corruption(fix_crc))
        });
        match corrupted {
            Ok(Some((bytes, records))) => {
                fault.counters.corrupted += 1;
                fault.counters.corrupted_records += records;
                self.pass(fault, &bytes, request, None, Duration::ZERO, now, out);
                Outcome::Corrupted(records)
            }
            Ok(None) => {
                self.pass(fault, frame, request, None, Duration::ZERO, now, out);
                Outcome::Corrupted(0)
            }
            Err(_) => {
                fault.counters.failed_open += 1;
                self.pass(fault, frame, request, None, Duration::ZERO, now, out);
                Outcome::FailedOpen
            }
        }
    }
}
