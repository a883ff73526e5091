//! [`reconcile`] against a mocked API server (tower-test, as in controller-rs's fixtures): each
//! test scripts the requests a reconcile must make, in order, answers them, and fails on any
//! other request (the reconcile would wait for an answer forever, so it times out).

use std::{sync::Arc, time::Duration};

use http::Method;
use kafka_shock_crds::{FAULT_FINALIZER, FaultPhase, KafkaFault, fault::conditions};
use kafka_shock_daemon::mock::{ApiServer, api_server};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::{Context, RECOVERY_POLL, RESYNC, reconcile};
use crate::{
    GuardRails,
    metrics::Metrics,
    targets::tests::{fault, pod},
};

const FAULTS: &str = "/apis/kafkashock.io/v1alpha1/namespaces/kafka/kafkafaults";
const INJECTIONS: &str = "/apis/kafkashock.io/v1alpha1/namespaces/kafka/kafkafaultinjections";
const PODS: &str = "/api/v1/namespaces/kafka/pods";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/kafka/events";

/// Answers an Event POST with the Event itself, returning its reason.
async fn event(server: &mut ApiServer) -> String {
    let call = server.expect(Method::POST, EVENTS).await;
    let reason = call.body["reason"].as_str().unwrap().to_owned();
    let body = call.body.clone();
    call.answer(body);
    reason
}

fn context(rails: GuardRails) -> (Arc<Context>, ApiServer) {
    let (client, server) = api_server();
    let context = Context::new(client, Arc::new(Metrics::default()), rails);
    (Arc::new(context), server)
}

/// Runs one reconcile of `fault` against the `scenario`, which must see every request.
async fn run<F>(fault: KafkaFault, scenario: impl FnOnce(ApiServer) -> F) -> Action
where
    F: Future<Output = ()> + Send + 'static,
{
    run_within(GuardRails::default(), fault, scenario).await
}

/// [`run`] with the installation's guard rails `rails`.
async fn run_within<F>(
    rails: GuardRails,
    fault: KafkaFault,
    scenario: impl FnOnce(ApiServer) -> F,
) -> Action
where
    F: Future<Output = ()> + Send + 'static,
{
    let (ctx, server) = context(rails);
    let server = tokio::spawn(scenario(server));
    let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(fault), ctx))
        .await
        .expect("reconcile hung: it made a request the scenario does not answer");
    server.await.expect("the API server scenario failed");
    result.expect("reconcile failed")
}

/// The test fault, stored with the operator's finalizer.
fn finalized(mut fault: KafkaFault) -> KafkaFault {
    fault.metadata.finalizers = Some(vec![FAULT_FINALIZER.into()]);
    fault
}

/// What the API server answers a write of the fault with (the tests do not read it).
fn stored_fault() -> Value {
    serde_json::to_value(finalized(fault("All", None))).unwrap()
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// `injection` as the API server stores it: with a UID, a generation and `status`.
fn stored(mut injection: Value, status: Value) -> Value {
    injection["metadata"]["uid"] = json!(format!("uid-{}", injection["metadata"]["name"]));
    injection["metadata"]["resourceVersion"] = json!("7");
    injection["metadata"]["generation"] = json!(1);
    injection["status"] = status;
    injection
}

#[tokio::test]
async fn a_new_fault_first_gets_the_operators_finalizer() {
    let action = run(fault("All", None), |mut server| async move {
        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders"))
            .await;
        assert_eq!(
            call.body,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [FAULT_FINALIZER]},
            ])
        );
        call.answer(serde_json::to_value(finalized(fault("All", None))).unwrap());
    })
    .await;
    assert_eq!(action, Action::await_change(), "the patch wakes it again");
}

#[tokio::test]
async fn a_valid_fault_creates_one_injection_per_ready_pod_and_reports() {
    let action = run(finalized(fault("All", None)), |mut server| async move {
        let call = server.expect(Method::GET, INJECTIONS).await;
        assert!(
            call.query
                .contains("labelSelector=kafkashock.io%2Ffault%3Dreset-orders"),
            "{}",
            call.query
        );
        call.answer(list("KafkaFaultInjectionList", vec![]));

        let call = server.expect(Method::GET, PODS).await;
        assert!(call.query.contains("labelSelector=app%3Dkafka"), "{}", call.query);
        let mut not_ready = pod("broker-9");
        not_ready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        let pods = [pod("broker-0"), pod("broker-1"), not_ready]
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        call.answer(list("PodList", pods));

        for target in ["broker-0", "broker-1"] {
            let name = format!("reset-orders-{target}");
            let call = server
                .expect(Method::PATCH, &format!("{INJECTIONS}/{name}"))
                .await;
            assert!(
                call.query.contains("fieldManager=kafka-shock-operator")
                    && call.query.contains("force=true"),
                "{}",
                call.query
            );
            let injection = &call.body;
            let metadata = &injection["metadata"];
            assert_eq!(metadata["name"], name.as_str());
            assert_eq!(metadata["finalizers"], json!(["kafkashock.io/rules"]));
            assert_eq!(
                metadata["labels"],
                json!({"kafkashock.io/fault": "reset-orders", "kafkashock.io/node": format!("node-{target}")})
            );
            assert_eq!(
                metadata["ownerReferences"],
                json!([{"apiVersion": "kafkashock.io/v1alpha1", "kind": "KafkaFault", "name": "reset-orders",
                        "uid": "fault-uid-1", "controller": true, "blockOwnerDeletion": true}])
            );
            assert_eq!(injection["spec"]["podUID"], format!("uid-{target}").as_str());
            assert_eq!(injection["spec"]["nodeName"], format!("node-{target}").as_str());
            let body = stored(injection.clone(), Value::Null);
            call.answer(body);
        }

        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
            .await;
        let status = &call.body["status"];
        assert_eq!(status["phase"], "Injecting");
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!((status["totalTargets"].clone(), status["injectedTargets"].clone()), (json!(2), json!(0)));
        assert_eq!(status["targets"].as_array().unwrap().len(), 2);
        assert!(status["startTime"].is_string(), "{status}");
        call.answer(stored_fault());

        assert_eq!(event(&mut server).await, "Selected");
    })
    .await;
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn an_invalid_fault_reports_why_and_creates_nothing() {
    let mut invalid = finalized(fault("All", None));
    invalid.spec.terms.match_.client_id = Some(kafka_shock_crds::ClientIdMatch {
        regex: Some("(unclosed".into()),
        ..Default::default()
    });
    let action = run(invalid, |mut server| async move {
        server
            .expect(Method::GET, INJECTIONS)
            .await
            .answer(list("KafkaFaultInjectionList", vec![]));
        // No pod list, no injection: straight to the status.
        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
            .await;
        let status = &call.body["status"];
        assert_eq!(status["phase"], "Failed");
        let valid = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == conditions::VALID)
            .unwrap();
        assert_eq!(valid["status"], "False");
        assert_eq!(valid["reason"], "SpecInvalid");
        assert!(
            valid["message"]
                .as_str()
                .unwrap()
                .contains("spec.match.clientId.regex: invalid regex"),
            "{valid}"
        );
        call.answer(stored_fault());
        assert_eq!(event(&mut server).await, "SpecInvalid");
    })
    .await;
    assert_eq!(action, Action::requeue(RESYNC));
}

/// The fault being deleted, with two injections the agents have made Active.
fn deleting_with_active_injections() -> (KafkaFault, Vec<Value>) {
    let mut deleting = finalized(fault("All", None));
    deleting.metadata.deletion_timestamp = Some(crate::injections::time("2025-01-02T03:04:05Z"));
    let live = fault("All", None);
    let targets = crate::select_targets(&live, &[pod("broker-0"), pod("broker-1")]).unwrap();
    let now = crate::injections::time("2025-01-02T03:00:00Z");
    let injections = crate::injection_changes(&live, &targets, &[], &now, None)
        .unwrap()
        .create
        .into_iter()
        .map(|i| {
            stored(
                serde_json::to_value(i).unwrap(),
                json!({"phase": "Active", "rulesInstalled": 2, "observedGeneration": 1}),
            )
        })
        .collect();
    (deleting, injections)
}

#[tokio::test]
async fn a_fault_outside_the_guard_rails_loses_its_injections_and_says_why() {
    // Injected before the rails were set (an upgrade of the chart with faultNamespaces).
    let (mut live, injections) = deleting_with_active_injections();
    live.metadata.deletion_timestamp = None;
    let rails = GuardRails {
        namespaces: ["kafka-prod".to_owned()].into(),
        ..GuardRails::default()
    };
    let action = run_within(rails, live, |mut server| async move {
        // No pod list: nothing is selected. The injections go.
        delete_injections_of_live_pods(&mut server, &injections).await;
        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
            .await;
        let status = &call.body["status"];
        assert_eq!(status["phase"], "Failed");
        let valid = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == conditions::VALID)
            .unwrap();
        assert_eq!(valid["reason"], "NamespaceNotAllowed");
        assert_eq!(
            valid["message"],
            "KafkaFaults in namespace kafka are not honoured: this installation honours them only in kafka-prod (chart value faultNamespaces)"
        );
        call.answer(stored_fault());
        assert_eq!(event(&mut server).await, "NamespaceNotAllowed");
    })
    .await;
    assert_eq!(action, Action::requeue(RESYNC));
}

/// The exchanges of taking `injections` out while their pods (broker-0, broker-1) and nodes
/// are still there: the list, a DELETE each (they stay, terminating), a GET of each pod and node.
async fn delete_injections_of_live_pods(server: &mut ApiServer, injections: &[Value]) {
    server
        .expect(Method::GET, INJECTIONS)
        .await
        .answer(list("KafkaFaultInjectionList", injections.to_vec()));
    for injection in injections {
        let name = injection["metadata"]["name"].as_str().unwrap();
        server
            .expect(Method::DELETE, &format!("{INJECTIONS}/{name}"))
            .await
            .answer(terminating(injection.clone()));
    }
    for target in ["broker-0", "broker-1"] {
        server
            .expect(Method::GET, &format!("{PODS}/{target}"))
            .await
            .answer(serde_json::to_value(pod(target)).unwrap());
        server
            .expect(Method::GET, &format!("/api/v1/nodes/node-{target}"))
            .await
            .answer(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{target}")}}));
    }
}

/// The answer to a DELETE of an injection with a finalizer: it stays, marked for deletion.
fn terminating(mut injection: Value) -> Value {
    injection["metadata"]["deletionTimestamp"] = json!("2025-01-02T03:04:06Z");
    injection
}

#[tokio::test]
async fn a_deleted_fault_deletes_its_injections_and_waits_for_the_agents() {
    let (deleting, injections) = deleting_with_active_injections();
    let action = run(deleting, |mut server| async move {
        // Each pod and node is still there, so only its agent may release it.
        delete_injections_of_live_pods(&mut server, &injections).await;
        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
            .await;
        assert_eq!(call.body["status"]["phase"], "Recovering");
        call.answer(stored_fault());
    })
    .await;
    // No PATCH removing the fault's finalizer: it stays until the injections are gone.
    assert_eq!(action, Action::requeue(RECOVERY_POLL));
}

#[tokio::test]
async fn a_deleted_fault_whose_pods_are_gone_releases_everything_and_goes() {
    let (deleting, injections) = deleting_with_active_injections();
    let injections: Vec<Value> = injections.into_iter().map(terminating).collect();
    let action = run(deleting, |mut server| async move {
        server
            .expect(Method::GET, INJECTIONS)
            .await
            .answer(list("KafkaFaultInjectionList", injections.clone()));
        // Already being deleted: not deleted again. Their pods are gone.
        for injection in &injections {
            let target = injection["spec"]["podName"].as_str().unwrap();
            server
                .expect(Method::GET, &format!("{PODS}/{target}"))
                .await
                .not_found();
        }
        for injection in &injections {
            let name = injection["metadata"]["name"].as_str().unwrap();
            let call = server
                .expect(Method::PATCH, &format!("{INJECTIONS}/{name}"))
                .await;
            assert_eq!(
                call.body,
                json!({"metadata": {"finalizers": [], "resourceVersion": "7"}})
            );
            let mut released = injection.clone();
            released["metadata"]["finalizers"] = json!([]);
            call.answer(released);
        }
        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
            .await;
        assert_eq!(
            call.body["status"]["phase"],
            format!("{:?}", FaultPhase::Completed)
        );
        call.answer(stored_fault());
        assert_eq!(event(&mut server).await, "Recovered");
        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders"))
            .await;
        assert_eq!(
            call.body,
            json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": FAULT_FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/0"},
            ])
        );
        call.answer(stored_fault());
    })
    .await;
    assert_eq!(action, Action::await_change());
}

/// The test fault, hitting only the sources labelled `role=follower`.
fn isolating() -> KafkaFault {
    let mut isolating = finalized(fault("All", None));
    isolating.spec.terms.match_.source_selector = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some([("role".into(), "follower".into())].into()),
            ..Default::default()
        },
    );
    isolating
}

/// Answers the reconcile's reads of the injections (none) and of the target pods (broker-0),
/// then the list of the source pods with `sources` (name and address each).
async fn answer_reads_with_sources(server: &mut ApiServer, sources: &[(&str, &str)]) {
    server
        .expect(Method::GET, INJECTIONS)
        .await
        .answer(list("KafkaFaultInjectionList", vec![]));
    let call = server.expect(Method::GET, PODS).await;
    assert!(
        call.query.contains("labelSelector=app%3Dkafka"),
        "{}",
        call.query
    );
    call.answer(list(
        "PodList",
        vec![serde_json::to_value(pod("broker-0")).unwrap()],
    ));
    let call = server.expect(Method::GET, PODS).await;
    assert!(
        call.query.contains("labelSelector=role%3Dfollower"),
        "{}",
        call.query
    );
    let pods = sources
        .iter()
        .map(|(name, ip)| {
            let mut source = serde_json::to_value(pod(name)).unwrap();
            source["metadata"]["labels"]["role"] = json!("follower");
            source["status"]["podIP"] = json!(ip);
            source["status"]["podIPs"] = json!([{"ip": ip}]);
            source
        })
        .collect();
    call.answer(list("PodList", pods));
}

#[tokio::test]
async fn a_source_selector_is_resolved_into_every_injection() {
    let action = run(isolating(), |mut server| async move {
        answer_reads_with_sources(
            &mut server,
            &[("broker-2", "10.0.0.12"), ("broker-1", "10.0.0.11")],
        )
        .await;
        let call = server
            .expect(
                Method::PATCH,
                &format!("{INJECTIONS}/reset-orders-broker-0"),
            )
            .await;
        assert_eq!(
            call.body["spec"]["sourceIPs"],
            json!(["10.0.0.11", "10.0.0.12"])
        );
        assert_eq!(
            call.body["spec"]["match"]["sourceSelector"],
            json!({"matchLabels": {"role": "follower"}}),
            "the terms stay the fault's"
        );
        let body = stored(call.body.clone(), Value::Null);
        call.answer(body);
        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
            .await;
        assert_eq!(call.body["status"]["phase"], "Injecting");
        call.answer(stored_fault());
        assert_eq!(event(&mut server).await, "Selected");
    })
    .await;
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_source_selector_that_selects_no_pod_creates_no_injection_and_says_so() {
    let action = run(isolating(), |mut server| async move {
        answer_reads_with_sources(&mut server, &[]).await;
        // No injection: an empty selection never means every source.
        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
            .await;
        let status = &call.body["status"];
        assert_eq!(status["phase"], "Pending");
        let injected = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == conditions::INJECTED)
            .unwrap();
        assert_eq!(injected["status"], "False");
        assert_eq!(injected["reason"], "NoSources");
        call.answer(stored_fault());
        assert_eq!(event(&mut server).await, "Selected");
    })
    .await;
    assert_eq!(action, Action::requeue(RESYNC));
}
