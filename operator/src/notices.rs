//! Which Kubernetes Events a change of a fault's status deserves.
//!
//! Events are for people running `kubectl describe kf`, so they mark transitions only — targets
//! selected, every target injected, every rule removed, the spec found invalid, an agent
//! failing — never a re-reconcile of an unchanged world. Deciding this from the previous and
//! the new status keeps it pure: the controller only publishes what comes out.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kafka_shock_crds::{KafkaFaultStatus, fault::conditions};
use kube::runtime::events::EventType;

use crate::guard_rails::{NAMESPACE_NOT_ALLOWED, PORT_NOT_ALLOWED, SPEC_INVALID};
use crate::rollup::INJECTION_FAILED;

/// One Event to publish about a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Normal for progress, Warning for what needs a person.
    pub type_: EventType,
    /// Why, in UpperCamelCase (the Event's reason).
    pub reason: &'static str,
    /// What the operator did (the Event's action).
    pub action: &'static str,
    /// The human-readable detail.
    pub note: String,
}

/// The Events for going from `previous` (None: the fault has no status yet) to `next`.
pub fn notices(previous: Option<&KafkaFaultStatus>, next: &KafkaFaultStatus) -> Vec<Notice> {
    let before = |type_| previous.and_then(|status| find(status, type_));
    let mut notices = Vec::new();
    let mut became = |type_,
                      want: &str,
                      type_of_event,
                      reason,
                      action,
                      note: fn(&Condition, &KafkaFaultStatus) -> String| {
        let Some(now) = find(next, type_).filter(|c| c.status == want) else {
            return;
        };
        if before(type_).is_none_or(|c| c.status != want) {
            notices.push(Notice {
                type_: type_of_event,
                reason,
                action,
                note: note(now, next),
            });
        }
    };
    // The Valid condition's own reason: the spec, or which guard rail.
    let invalid = match find(next, conditions::VALID).map(|c| c.reason.as_str()) {
        Some(NAMESPACE_NOT_ALLOWED) => NAMESPACE_NOT_ALLOWED,
        Some(PORT_NOT_ALLOWED) => PORT_NOT_ALLOWED,
        _ => SPEC_INVALID,
    };
    became(
        conditions::VALID,
        "False",
        EventType::Warning,
        invalid,
        "Validate",
        |c, _| c.message.clone(),
    );
    became(
        conditions::SELECTED,
        "True",
        EventType::Normal,
        "Selected",
        "Select",
        |c, status| {
            let pods: Vec<&str> = status.targets.iter().map(|t| t.pod.as_str()).collect();
            format!("{}: {}", c.message, pods.join(", "))
        },
    );
    became(
        conditions::INJECTED,
        "True",
        EventType::Normal,
        "Injected",
        "Inject",
        |c, _| c.message.clone(),
    );
    became(
        conditions::RECOVERED,
        "True",
        EventType::Normal,
        "Recovered",
        "Recover",
        |c, _| c.message.clone(),
    );
    if let Some(now) = failed(next)
        && previous
            .and_then(failed)
            .is_none_or(|c| c.message != now.message)
    {
        notices.push(Notice {
            type_: EventType::Warning,
            reason: INJECTION_FAILED,
            action: "Inject",
            note: now.message.clone(),
        });
    }
    notices
}

fn find<'a>(status: &'a KafkaFaultStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The Injected condition when it says an agent failed.
fn failed(status: &KafkaFaultStatus) -> Option<&Condition> {
    find(status, conditions::INJECTED).filter(|c| c.reason == INJECTION_FAILED)
}

#[cfg(test)]
mod tests {
    use kafka_shock_crds::{ClientIdMatch, InjectionPhase, KafkaFaultInjectionStatus};

    use super::*;
    use crate::{
        GuardRails,
        injections::{injection_changes, time},
        roll_up, select_targets,
        targets::tests::{fault, pod},
    };

    fn reasons(notices: &[Notice]) -> Vec<&'static str> {
        notices.iter().map(|n| n.reason).collect()
    }

    #[test]
    fn a_fault_announces_each_step_once() {
        let now = time("2025-01-02T03:04:05Z");
        let mut f = fault("All", None);
        let pods = [pod("broker-0"), pod("broker-1")];
        let targets = select_targets(&f, &pods).unwrap();

        let selected = roll_up(&f, &GuardRails::default(), &targets, &[], &now, None);
        let first = notices(None, &selected);
        assert_eq!(reasons(&first), ["Selected"]);
        assert_eq!(first[0].type_, EventType::Normal);
        assert_eq!(
            first[0].note,
            "2 of the matching pods selected (mode All): broker-0, broker-1"
        );
        assert!(
            notices(Some(&selected), &selected).is_empty(),
            "no change, no event"
        );

        f.status = Some(selected.clone());
        let mut injections = injection_changes(&f, &targets, &[], &now, None)
            .unwrap()
            .create;
        for injection in &mut injections {
            injection.status = Some(KafkaFaultInjectionStatus {
                phase: InjectionPhase::Active,
                rules_installed: 1,
                ..Default::default()
            });
        }
        let injected = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &injections,
            &now,
            None,
        );
        assert_eq!(reasons(&notices(Some(&selected), &injected)), ["Injected"]);

        f.status = Some(injected.clone());
        f.metadata.deletion_timestamp = Some(now.clone());
        let recovered = roll_up(&f, &GuardRails::default(), &[], &[], &now, None);
        let last = notices(Some(&injected), &recovered);
        assert_eq!(reasons(&last), ["Recovered"]);
        assert_eq!(last[0].note, "every rule the fault installed is gone");
    }

    #[test]
    fn failures_are_warnings_on_transition() {
        let now = time("2025-01-02T03:04:05Z");
        let mut f = fault("All", None);
        f.spec.terms.match_.client_id = Some(ClientIdMatch {
            regex: Some("(".into()),
            ..Default::default()
        });
        let invalid = roll_up(&f, &GuardRails::default(), &[], &[], &now, None);
        let warned = notices(None, &invalid);
        assert_eq!(reasons(&warned), ["SpecInvalid"]);
        assert_eq!(warned[0].type_, EventType::Warning);
        assert!(
            warned[0].note.contains("clientId.regex"),
            "{}",
            warned[0].note
        );
        assert!(notices(Some(&invalid), &invalid).is_empty());

        let f = fault("All", None);
        let targets = select_targets(&f, &[pod("broker-0")]).unwrap();
        let mut injections = injection_changes(&f, &targets, &[], &now, None)
            .unwrap()
            .create;
        injections[0].status = Some(KafkaFaultInjectionStatus {
            phase: InjectionPhase::Failed,
            last_error: Some("no network namespace for the pod".into()),
            ..Default::default()
        });
        let pending = roll_up(&f, &GuardRails::default(), &targets, &[], &now, None);
        let failed = roll_up(
            &f,
            &GuardRails::default(),
            &targets,
            &injections,
            &now,
            None,
        );
        let warned = notices(Some(&pending), &failed);
        assert_eq!(reasons(&warned), ["InjectionFailed"]);
        assert_eq!(warned[0].note, "broker-0: no network namespace for the pod");
        assert!(notices(Some(&failed), &failed).is_empty());
    }
}
