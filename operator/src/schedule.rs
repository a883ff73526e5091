//! When a fault started and when it ends.
//!
//! A fault's clock starts when its first injection is created, and every injection of the fault
//! carries that start in [`START_ANNOTATION`] and the end in `spec.expireTime`. The start is kept
//! on the objects themselves, not only in the fault's status, so that a lost status write or an
//! operator restart cannot move `expireTime`: the agents enforce it, even when the operator is
//! down, and it must not drift on re-reconcile.

use k8s_openapi::jiff::Timestamp;
use kafka_shock_crds::{KafkaFault, KafkaFaultInjection};

/// The annotation on each injection holding when its fault started (RFC 3339), from which its
/// `expireTime` is computed again on every reconcile.
pub const START_ANNOTATION: &str = "kafkashock.io/start-time";

/// When `fault` started: the earliest of its status `startTime` and the start of any of its
/// `injections`. `None` until it is first injected.
pub fn started_at(fault: &KafkaFault, injections: &[KafkaFaultInjection]) -> Option<Timestamp> {
    let from_status = fault
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_deref())
        .and_then(parse_time);
    injections
        .iter()
        .filter_map(injection_start)
        .chain(from_status)
        .min()
}

/// When `fault` ends: its start plus `spec.duration`. `None` when it lasts until deleted or
/// has not started. The controller requeues at this time to report Completed.
pub fn expiry(fault: &KafkaFault, injections: &[KafkaFaultInjection]) -> Option<Timestamp> {
    ends_at(fault, started_at(fault, injections)?)
}

/// `start` plus the fault's duration; `None` without a duration (or past year 9999).
pub(crate) fn ends_at(fault: &KafkaFault, start: Timestamp) -> Option<Timestamp> {
    start.checked_add(fault.spec.duration()?).ok()
}

/// The start an injection was built with, from [`START_ANNOTATION`].
pub(crate) fn injection_start(injection: &KafkaFaultInjection) -> Option<Timestamp> {
    injection
        .metadata
        .annotations
        .as_ref()?
        .get(START_ANNOTATION)
        .and_then(|s| parse_time(s))
}

/// `time` in RFC 3339 (UTC, `Z`, fractional seconds only when not zero), as the status and the
/// injections carry it.
pub fn rfc3339(time: Timestamp) -> String {
    time.to_string()
}

/// `time` cut to whole seconds, as Kubernetes stores times, so that a start written and read
/// back is the same start.
pub(crate) fn whole_seconds(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::tests::fault;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn formats_rfc3339_and_cuts_to_seconds() {
        assert_eq!(rfc3339(at("2025-01-02T03:04:05Z")), "2025-01-02T03:04:05Z");
        assert_eq!(
            rfc3339(at("2025-01-02T03:04:05.25Z")),
            "2025-01-02T03:04:05.25Z"
        );
        assert_eq!(
            whole_seconds(at("2025-01-02T03:04:05.999Z")),
            at("2025-01-02T03:04:05Z")
        );
        assert_eq!(
            parse_time(&rfc3339(at("2025-01-02T03:04:05Z"))),
            Some(at("2025-01-02T03:04:05Z"))
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn start_is_the_earliest_known_and_expiry_adds_the_duration() {
        let mut f = fault("All", None);
        assert_eq!(started_at(&f, &[]), None);
        f.status = Some(kafka_shock_crds::KafkaFaultStatus {
            start_time: Some("2025-01-02T03:04:05Z".into()),
            ..Default::default()
        });
        assert_eq!(started_at(&f, &[]), Some(at("2025-01-02T03:04:05Z")));
        assert_eq!(expiry(&f, &[]), None, "no duration: until deleted");
        f.spec.duration = Some("5m".into());
        assert_eq!(expiry(&f, &[]), Some(at("2025-01-02T03:09:05Z")));
        f.spec.duration = Some("5 minutes".into());
        assert_eq!(expiry(&f, &[]), None, "unreadable: validation reports it");
    }
}
