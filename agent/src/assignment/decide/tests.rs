//! [`decide`] on the situations the end-to-end tests drive through a real API server and real
//! namespaces (apply, pause, expiry, deletion, a restarted pod, a dead session, an injection
//! refused against its pod), and on those they cannot reach cheaply (a bad expireTime, a spec
//! the agent refuses, a session failing again and again, a pod changed under a running
//! session, a hostNetwork pod's namespace).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kafka_shock_crds::{
    ActionType, FINALIZER, InjectionPhase, KafkaFaultInjection, KafkaFaultInjectionStatus,
    RefusalReason,
};

use super::*;
use crate::assignment::tests::{at, injection, pod};
use crate::rules::Layers;

const NOW: &str = "2026-11-25T12:00:00Z";
const UID: &str = "0b0f6c6e-uid";

fn netns(inode: u64) -> PodNetns {
    PodNetns {
        path: PathBuf::from(format!("/proc/{inode}/ns/net")),
        inode,
        found_by: FoundBy::PodUid,
    }
}

/// The live pod of the test injection, for [`observed`] to borrow.
static POD: std::sync::LazyLock<Pod> = std::sync::LazyLock::new(pod);

/// What the agent observes of `injection` at [`NOW`]: its pod is live on this node, its
/// pod's namespace is the one of inode 4026, and it runs `session`.
fn observed(injection: &KafkaFaultInjection, session: Option<SessionView>) -> Observed<'_> {
    Observed {
        injection,
        uid: UID,
        node: "ksl-node-1",
        now: at(NOW),
        pod: Some(&POD),
        host: HostTargets::default(),
        pod_netns: Ok(netns(4026)),
        session,
    }
}

/// A session in the namespace of `inode`, for generation 3 of the injection.
fn session(inode: u64) -> SessionView {
    SessionView {
        placement: Placement {
            netns: netns(inode),
            generation: Some(3),
        },
        installed: true,
        finished: false,
        error: None,
        ended_ago: None,
        tally: Tally {
            rules_installed: 4,
            matched: 17,
            ..Tally::default()
        },
    }
}

/// A session that ended with `error`, `ago`.
fn failed(ago: Duration) -> SessionView {
    SessionView {
        installed: false,
        finished: true,
        error: Some("the capture in the broker's namespace stopped".into()),
        ended_ago: Some(ago),
        ..session(4026)
    }
}

/// The actions, as short words the tests compare.
fn acts(decision: &Decision) -> Vec<String> {
    decision
        .actions
        .iter()
        .map(|act| match act {
            Act::StopSession => "stop".to_owned(),
            Act::ReplaceSession(start) => format!("replace in {}", start.placement.netns.inode),
            Act::StartSession(start) => format!("start in {}", start.placement.netns.inode),
            Act::RemoveLeftovers(path) => format!("remove leftovers in {}", path.display()),
            Act::ReleaseFinalizer => "release".to_owned(),
            Act::Forget => "forget".to_owned(),
        })
        .collect()
}

fn reported(decision: &Decision) -> &KafkaFaultInjectionStatus {
    decision.status.as_ref().expect("a status to report")
}

#[test]
fn apply_starts_a_session_in_the_pods_namespace() {
    let applied = injection(None, false);
    let decision = decide(&observed(&applied, None));
    assert_eq!(acts(&decision), ["start in 4026"]);
    let Act::StartSession(start) = &decision.actions[0] else {
        unreachable!()
    };
    assert_eq!(start.plan.id(), format!("kfi.ksl-node-1.{UID}"));
    assert_eq!(start.plan.verdict(), crate::rules::Verdict::Reject);
    assert_eq!(start.placement.generation, Some(3));
    assert_eq!(start.until, None);
    let status = reported(&decision);
    assert_eq!(status.phase, InjectionPhase::Pending);
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!((status.rules_installed, status.matched_requests), (0, 0));
    assert_eq!(
        decision.requeue,
        Some(Duration::from_millis(250)),
        "Active shows soon"
    );
}

#[test]
fn a_running_session_is_kept_and_reported() {
    let applied = injection(None, false);
    let mut starting = session(4026);
    starting.installed = false;
    let decision = decide(&observed(&applied, Some(starting)));
    assert!(decision.actions.is_empty());
    assert_eq!(reported(&decision).phase, InjectionPhase::Pending);
    assert_eq!(decision.requeue, Some(Duration::from_millis(250)));

    let decision = decide(&observed(&applied, Some(session(4026))));
    assert!(decision.actions.is_empty());
    let status = reported(&decision);
    assert_eq!(status.phase, InjectionPhase::Active);
    assert_eq!((status.rules_installed, status.matched_requests), (4, 17));
    assert_eq!(status.last_error, None);
    assert_eq!(decision.requeue, Some(RESYNC));
}

#[test]
fn an_enforced_injection_is_looked_at_again_at_its_expiry() {
    let timed = injection(Some("2026-11-25T12:00:02Z"), false);
    let decision = decide(&observed(&timed, Some(session(4026))));
    assert_eq!(decision.requeue, Some(Duration::from_secs(2)));
    let due = injection(Some("2026-11-25T12:00:00.010Z"), false);
    let decision = decide(&observed(&due, Some(session(4026))));
    assert_eq!(
        decision.requeue,
        Some(Duration::from_millis(100)),
        "never a busy loop"
    );
    let decision = decide(&observed(&timed, None));
    let Act::StartSession(start) = &decision.actions[0] else {
        panic!("{:?}", decision.actions)
    };
    assert_eq!(
        start.until,
        Some(at("2026-11-25T12:00:02Z")),
        "the session ends on its own"
    );
}

#[test]
fn pause_stops_the_session_and_keeps_its_figures() {
    let paused = injection(None, true);
    let decision = decide(&observed(&paused, Some(session(4026))));
    assert_eq!(
        acts(&decision),
        ["stop", "remove leftovers in /proc/4026/ns/net"]
    );
    let status = reported(&decision);
    assert_eq!(status.phase, InjectionPhase::Paused);
    assert_eq!((status.rules_installed, status.matched_requests), (0, 17));
    assert_eq!(decision.requeue, None, "until the injection changes");

    // No session here (the agent restarted): leftovers go, and the figures reported stay.
    let mut known = injection(None, true);
    known.status = Some(KafkaFaultInjectionStatus {
        matched_requests: 40,
        rules_installed: 4,
        ..KafkaFaultInjectionStatus::default()
    });
    let decision = decide(&observed(&known, None));
    assert_eq!(acts(&decision), ["remove leftovers in /proc/4026/ns/net"]);
    let status = reported(&decision);
    assert_eq!((status.rules_installed, status.matched_requests), (0, 40));
}

#[test]
fn expiry_recovers_even_when_paused() {
    let expired = injection(Some(NOW), true);
    let decision = decide(&observed(&expired, Some(session(4026))));
    assert_eq!(
        acts(&decision),
        ["stop", "remove leftovers in /proc/4026/ns/net"]
    );
    assert_eq!(reported(&decision).phase, InjectionPhase::Recovered);
    assert_eq!(decision.requeue, None);
}

#[test]
fn deletion_removes_the_rules_then_releases_the_finalizer() {
    let mut deleting = injection(Some("2026-11-25T11:00:00Z"), true);
    deleting.metadata.deletion_timestamp = Some(Time(at(NOW)));
    deleting.metadata.finalizers = Some(vec!["other/keeper".into(), FINALIZER.into()]);
    let decision = decide(&observed(&deleting, Some(session(4026))));
    assert_eq!(
        acts(&decision),
        [
            "stop",
            "remove leftovers in /proc/4026/ns/net",
            "release",
            "forget"
        ]
    );
    assert!(
        decision.status.is_none(),
        "a deleted injection gets no status"
    );
    assert_eq!(decision.requeue, None);

    // The pod's namespace is gone, with the rules in it; the finalizer is not ours to hold.
    deleting.metadata.finalizers = Some(vec!["other/keeper".into()]);
    let gone = Observed {
        pod_netns: Err(NetnsMiss::NotFound(
            "no network namespace carries pod UID x".into(),
        )),
        ..observed(&deleting, None)
    };
    assert_eq!(acts(&decide(&gone)), ["forget"]);
}

#[test]
fn a_pod_in_a_new_namespace_gets_a_new_session() {
    let applied = injection(None, false);
    // The pod restarted: its namespace has a new inode.
    let decision = decide(&observed(&applied, Some(session(1111))));
    assert_eq!(acts(&decision), ["replace in 4026"]);
    assert_eq!(reported(&decision).phase, InjectionPhase::Pending);
    assert_eq!(
        reported(&decision).matched_requests,
        0,
        "a new session counts anew"
    );
    // The injection changed (new generation): same namespace, new session.
    let mut edited = injection(None, false);
    edited.metadata.generation = Some(4);
    let decision = decide(&observed(&edited, Some(session(4026))));
    assert_eq!(acts(&decision), ["replace in 4026"]);
    let Act::ReplaceSession(start) = &decision.actions[0] else {
        unreachable!()
    };
    assert_eq!(start.placement.generation, Some(4));
}

#[test]
fn another_path_to_the_same_namespace_keeps_the_session() {
    // The pod's lowest pid exited; its namespace (same inode) is now read through another.
    let applied = injection(None, false);
    let moved = Observed {
        pod_netns: Ok(PodNetns {
            path: PathBuf::from("/proc/9999/ns/net"),
            inode: 4026,
            found_by: FoundBy::PodUid,
        }),
        ..observed(&applied, Some(session(4026)))
    };
    let decision = decide(&moved);
    assert_eq!(acts(&decision), Vec::<String>::new());
    assert_eq!(reported(&decision).phase, InjectionPhase::Active);
}

#[test]
fn a_pod_namespace_not_found_stops_the_session_and_says_why() {
    let applied = injection(None, false);
    let lost = Observed {
        pod_netns: Err(NetnsMiss::NotFound(
            "no network namespace carries pod UID x (12 namespaces scanned)".into(),
        )),
        ..observed(&applied, Some(session(4026)))
    };
    let decision = decide(&lost);
    assert_eq!(acts(&decision), ["stop"]);
    let status = reported(&decision);
    assert_eq!(status.phase, InjectionPhase::Pending);
    assert_eq!(
        status.last_error.as_deref(),
        Some(
            "the pod's network namespace is not found: no network namespace carries pod UID x (12 namespaces scanned)"
        )
    );
    assert_eq!((status.rules_installed, status.matched_requests), (0, 17));
    assert_eq!(decision.requeue, Some(RESYNC));
}

#[test]
fn a_session_that_died_is_failed_then_retried_after_the_resync() {
    let applied = injection(None, false);
    let decision = decide(&observed(&applied, Some(failed(Duration::from_secs(1)))));
    assert!(decision.actions.is_empty(), "kept until RESYNC has passed");
    let status = reported(&decision);
    assert_eq!(status.phase, InjectionPhase::Failed);
    assert_eq!(
        status.last_error.as_deref(),
        Some("the capture in the broker's namespace stopped")
    );
    assert_eq!(decision.requeue, Some(RESYNC));

    let decision = decide(&observed(&applied, Some(failed(RESYNC))));
    assert_eq!(acts(&decision), ["replace in 4026"]);
    assert_eq!(reported(&decision).phase, InjectionPhase::Pending);
    assert_eq!(reported(&decision).last_error, None);

    // A session that ended without an error (its `until` came) is replaced at once.
    let ended = SessionView {
        error: None,
        ..failed(Duration::from_millis(10))
    };
    assert_eq!(
        acts(&decide(&observed(&applied, Some(ended)))),
        ["replace in 4026"]
    );
}

#[test]
fn a_bad_expire_time_fails_the_injection() {
    let bad = injection(Some("tomorrow"), false);
    let decision = decide(&observed(&bad, Some(session(4026))));
    assert_eq!(acts(&decision), ["stop"]);
    let status = reported(&decision);
    assert_eq!(status.phase, InjectionPhase::Failed);
    assert_eq!(
        status.last_error.as_deref(),
        Some("spec.expireTime \"tomorrow\" is not an RFC 3339 time")
    );
    assert_eq!(decision.requeue, None, "until the injection is fixed");
}

#[test]
fn terms_the_agent_refuses_fail_with_their_field() {
    let mut refused = injection(None, false);
    refused.spec.terms.action.type_ = ActionType::Delay;
    refused.spec.terms.action.delay = Some("500ms".into());
    refused.spec.terms.enforcement = kafka_shock_crds::Enforcement::Signature;
    let decision = decide(&observed(&refused, Some(session(1111))));
    assert_eq!(acts(&decision), ["stop"]);
    let status = reported(&decision);
    assert_eq!(status.phase, InjectionPhase::Failed);
    let error = status.last_error.as_deref().unwrap();
    assert!(
        error.contains("spec.enforcement: Signature cannot delay"),
        "{error}"
    );
    assert_eq!(decision.requeue, Some(RESYNC));
}

#[test]
fn the_plan_of_an_injection_is_its_terms() {
    let mut inline = injection(None, false);
    inline.spec.terms.enforcement = kafka_shock_crds::Enforcement::Inline;
    let decision = decide(&observed(&inline, None));
    let Act::StartSession(start) = &decision.actions[0] else {
        panic!("{:?}", decision.actions)
    };
    assert!(matches!(start.plan.layers(), Layers::Inline { .. }));
    assert_eq!(start.plan.ports(), [9092]);
    assert_eq!(start.plan.topics(), ["orders"]);
}

#[test]
fn a_session_that_cannot_start_is_failed_and_retried() {
    let mut known = injection(None, false);
    known.status = Some(KafkaFaultInjectionStatus {
        matched_requests: 9,
        ..KafkaFaultInjectionStatus::default()
    });
    let decision = start_failed(&known, "no thread".into());
    assert!(decision.actions.is_empty());
    assert_eq!(reported(&decision).phase, InjectionPhase::Failed);
    assert_eq!(reported(&decision).matched_requests, 9);
    assert_eq!(decision.requeue, Some(RESYNC));
}

/// The test injection's pod, recreated: a new UID under the same name.
fn recreated_pod() -> Pod {
    let mut pod = pod();
    pod.metadata.uid = Some("11111111-2222-4333-8444-555555555555".into());
    pod
}

#[test]
fn a_pod_changed_under_a_running_session_stops_it_and_says_which_check_failed() {
    let applied = injection(None, false);
    let recreated = recreated_pod();
    let changed = Observed {
        pod: Some(&recreated),
        pod_netns: Err(NetnsMiss::NotLooked),
        ..observed(&applied, Some(session(4026)))
    };
    let decision = decide(&changed);
    assert_eq!(
        acts(&decision),
        ["stop"],
        "no rule stays, none is installed"
    );
    let status = reported(&decision);
    assert_eq!(status.phase, InjectionPhase::Failed);
    assert_eq!(status.reason, Some(RefusalReason::PodMismatch));
    let error = status.last_error.as_deref().unwrap();
    assert!(
        error.starts_with("PodMismatch: pod kafka/kafka-broker-0 has UID"),
        "{error}"
    );
    assert_eq!((status.rules_installed, status.matched_requests), (0, 17));
    assert_eq!(decision.requeue, Some(RESYNC), "looked at again");

    // Without a session, nothing is started.
    let never = Observed {
        pod: None,
        pod_netns: Err(NetnsMiss::NotLooked),
        ..observed(&applied, None)
    };
    let decision = decide(&never);
    assert!(decision.actions.is_empty());
    assert_eq!(reported(&decision).reason, Some(RefusalReason::PodNotFound));

    // Back in line (the operator re-targeted it): enforced again, the reason gone.
    let decision = decide(&observed(&applied, None));
    assert_eq!(acts(&decision), ["start in 4026"]);
    assert_eq!(reported(&decision).reason, None);
}

#[test]
fn a_refused_injection_is_still_deleted_and_expires() {
    let recreated = recreated_pod();
    let mut deleting = injection(None, false);
    deleting.metadata.deletion_timestamp = Some(Time(at(NOW)));
    deleting.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let refused = |injection| Observed {
        pod: Some(&recreated),
        pod_netns: Err(NetnsMiss::NotLooked),
        ..observed(injection, Some(session(4026)))
    };
    assert_eq!(
        acts(&decide(&refused(&deleting))),
        ["stop", "release", "forget"]
    );
    let expired = injection(Some(NOW), false);
    let decision = decide(&refused(&expired));
    assert_eq!(acts(&decision), ["stop"]);
    assert_eq!(reported(&decision).phase, InjectionPhase::Recovered);
    assert_eq!(reported(&decision).reason, None);
    // A pause comes after the checks: the fault shows why it would not inject.
    let paused = injection(None, true);
    let decision = decide(&refused(&paused));
    assert_eq!(reported(&decision).phase, InjectionPhase::Failed);
    assert_eq!(reported(&decision).reason, Some(RefusalReason::PodMismatch));
}

#[test]
fn a_pod_found_in_the_nodes_own_namespace_is_refused() {
    let applied = injection(None, false);
    let host = Observed {
        pod_netns: Err(NetnsMiss::Host(
            "pod UID x is in the node's own network namespace (through process 1): a hostNetwork pod, where a fault would act on the node itself".into(),
        )),
        ..observed(&applied, Some(session(4026)))
    };
    let decision = decide(&host);
    assert_eq!(acts(&decision), ["stop"]);
    let status = reported(&decision);
    assert_eq!(status.phase, InjectionPhase::Failed);
    assert_eq!(status.reason, Some(RefusalReason::HostNamespace));
    let error = status.last_error.as_deref().unwrap();
    assert!(
        error.starts_with("HostNamespace: pod UID x is in the node's own network namespace")
            && error.ends_with("(chart value agent.allowHostNetworkTargets)"),
        "{error}"
    );
}

#[test]
fn a_host_network_pod_is_refused_before_its_namespace_is_looked_for() {
    let applied = injection(None, false);
    let mut host_pod = pod();
    host_pod.spec.as_mut().unwrap().host_network = Some(true);
    let refused = Observed {
        pod: Some(&host_pod),
        pod_netns: Err(NetnsMiss::NotLooked),
        ..observed(&applied, None)
    };
    let decision = decide(&refused);
    assert!(decision.actions.is_empty());
    assert_eq!(reported(&decision).reason, Some(RefusalReason::HostNetwork));

    let allowed = Observed {
        pod: Some(&host_pod),
        host: HostTargets { allowed: true },
        ..observed(&applied, None)
    };
    assert_eq!(acts(&decide(&allowed)), ["start in 4026"]);
}

#[test]
fn tls_seen_by_the_session_is_reported_as_requests_not_visible_and_stays_put() {
    let mut applied = injection(None, false);
    let mut tls = session(4026);
    tls.tally.tls_ports = vec![9094];
    let decision = decide(&observed(&applied, Some(tls.clone())));
    let status = reported(&decision);
    assert_eq!(status.tls_ports, [9094]);
    let [condition] = status.conditions.as_slice() else {
        panic!("{:?}", status.conditions)
    };
    assert_eq!(
        (condition.type_.as_str(), condition.status.as_str()),
        ("RequestsVisible", "False")
    );
    assert_eq!(condition.reason, "TLS");
    assert!(
        condition.message.contains("port 9094 carries TLS")
            && condition
                .message
                .contains("connection-level faults still work"),
        "{}",
        condition.message
    );
    assert_eq!(condition.last_transition_time, Time(at(NOW)));

    // Written back and decided again later: unchanged, so nothing is written.
    applied.status = Some(status.clone());
    let mut later = observed(&applied, Some(tls));
    later.now = at("2026-11-25T12:05:00Z");
    assert_eq!(reported(&decide(&later)), status);
    // A session that could not restart keeps what was seen.
    let failed = start_failed(&applied, "no thread".into());
    assert_eq!(reported(&failed).conditions, status.conditions);
    // Without TLS, no condition.
    let plain = decide(&observed(&injection(None, false), Some(session(4026))));
    assert!(reported(&plain).conditions.is_empty());
}

#[test]
fn a_source_selector_is_enforced_by_the_operators_addresses_and_an_empty_one_hits_nothing() {
    let mut isolate = injection(None, false);
    isolate.spec.terms.match_.source_selector = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some([("app".into(), "kafka".into())].into()),
            ..Default::default()
        },
    );
    isolate.spec.source_ips = Some(vec!["10.77.0.11".into(), "10.77.0.12".into()]);
    let decision = decide(&observed(&isolate, None));
    let Act::StartSession(start) = &decision.actions[0] else {
        panic!("{:?}", decision.actions)
    };
    assert_eq!(
        start.plan.matching().source_cidrs,
        ["10.77.0.11/32", "10.77.0.12/32"]
    );

    for unresolved in [Some(vec![]), None] {
        isolate.spec.source_ips = unresolved;
        let decision = decide(&observed(&isolate, None));
        assert!(decision.actions.is_empty(), "nothing is enforced");
        let status = reported(&decision);
        assert_eq!(status.phase, InjectionPhase::Failed);
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("spec.match.sourceSelector")),
            "{status:?}"
        );
    }
}
