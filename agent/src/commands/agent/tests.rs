//! The agent's [`reconcile`] against the mocked API server the operator's controller tests use too
//! (`kafka_shock_daemon::mock`): each test scripts the requests a reconcile must make, in order,
//! answers them, and fails on any other (the reconcile then errs or times out). What is decided is
//! tested in `assignment::decide`; here, what is written: the status by server-side apply, the
//! finalizer released under the resourceVersion read, and nothing when nothing changed.
//!
//! The injections name a pod this machine does not have (a random UID, an address of
//! TEST-NET-1), so resolving its network namespace really scans `/proc` and finds nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kafka_shock_agent::assignment::RESYNC;
use kafka_shock_crds::KafkaFaultInjection;
use kafka_shock_daemon::mock::{ApiServer, api_server};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::metrics::Metrics;
use super::reconcile::{Context, reconcile};

const INJECTION: &str = "/apis/kafkashock.io/v1alpha1/namespaces/kafka/kafkafaultinjections/reset-orders-kafka-broker-0";

/// The injection as the API server stores it, with `spec` and `metadata` merged in.
fn stored(spec: Value, metadata: Value) -> KafkaFaultInjection {
    let mut object = json!({
        "apiVersion": "kafkashock.io/v1alpha1",
        "kind": "KafkaFaultInjection",
        "metadata": {
            "name": "reset-orders-kafka-broker-0",
            "namespace": "kafka",
            "uid": "6a1d7a52-0000-4000-8000-00000000c0de",
            "resourceVersion": "7",
            "generation": 3,
            "labels": {"kafkashock.io/node": "ksl-node-1"},
            "finalizers": ["kafkashock.io/rules"],
        },
        "spec": {
            "faultName": "reset-orders",
            "podName": "kafka-broker-0",
            "podUID": "6a1d7a52-0000-4000-8000-0000000000ff",
            "podIP": "192.0.2.77",
            "nodeName": "ksl-node-1",
            "match": {"apiKeys": ["Produce"], "topics": ["orders"]},
            "action": {"type": "Reject"},
        },
    });
    merge(&mut object["spec"], spec);
    merge(&mut object["metadata"], metadata);
    serde_json::from_value(object).unwrap()
}

fn merge(target: &mut Value, patch: Value) {
    if let (Value::Object(target), Value::Object(patch)) = (target, patch) {
        target.extend(patch);
    }
}

/// Runs one reconcile of `injection` against `scenario`, which must see every request.
async fn run<F>(injection: KafkaFaultInjection, scenario: impl FnOnce(ApiServer) -> F) -> Action
where
    F: Future<Output = ()> + Send + 'static,
{
    let (client, server) = api_server();
    let ctx = Arc::new(Context::new(
        client,
        "ksl-node-1",
        std::time::Duration::from_secs(30),
        Arc::new(Metrics::new()),
    ));
    let server = tokio::spawn(scenario(server));
    let result = tokio::time::timeout(Duration::from_secs(30), reconcile(Arc::new(injection), ctx))
        .await
        .expect("reconcile hung: it made a request the scenario does not answer");
    server.await.expect("the API server scenario failed");
    result.expect("reconcile failed")
}

/// Answers a server-side apply of the status, checking it is the agent's, and returns the
/// status written.
async fn status_applied(server: &mut ApiServer) -> Value {
    let call = server
        .expect(Method::PATCH, &format!("{INJECTION}/status"))
        .await;
    assert!(
        call.query.contains("fieldManager=kafka-shock-agent") && call.query.contains("force=true"),
        "{}",
        call.query
    );
    assert_eq!(call.content_type, "application/apply-patch+yaml");
    assert_eq!(call.body["apiVersion"], "kafkashock.io/v1alpha1");
    assert_eq!(call.body["kind"], "KafkaFaultInjection");
    let status = call.body["status"].clone();
    let mut written = serde_json::to_value(stored(json!({}), json!({}))).unwrap();
    written["status"] = status.clone();
    call.answer(written);
    status
}

#[tokio::test]
async fn a_paused_injection_is_reported_paused_by_server_side_apply() {
    let paused = stored(json!({"paused": true}), json!({}));
    let action = run(paused, |mut server| async move {
        let status = status_applied(&mut server).await;
        assert_eq!(status["phase"], "Paused");
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["rulesInstalled"], 0);
        assert_eq!(status["lastError"], Value::Null);
    })
    .await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let mut paused = stored(json!({"paused": true}), json!({}));
    paused.status = Some(kafka_shock_crds::KafkaFaultInjectionStatus {
        phase: kafka_shock_crds::InjectionPhase::Paused,
        observed_generation: Some(3),
        ..Default::default()
    });
    // No request at all: the scenario ends at once, and any request would fail the reconcile.
    let action = run(paused, |_server| async {}).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_deleted_injection_lets_go_of_its_finalizer_under_the_resource_version_read() {
    let deleting = stored(
        json!({}),
        json!({
            "deletionTimestamp": "2026-11-25T12:00:00Z",
            "finalizers": ["kafkashock.io/rules", "other.example/keeper"],
        }),
    );
    let action = run(deleting, |mut server| async move {
        let call = server.expect(Method::PATCH, INJECTION).await;
        assert_eq!(call.content_type, "application/merge-patch+json");
        assert_eq!(
            call.body,
            json!({"metadata": {"finalizers": ["other.example/keeper"], "resourceVersion": "7"}})
        );
        let released = serde_json::to_value(stored(json!({}), json!({"finalizers": []}))).unwrap();
        call.answer(released);
        // No status for an injection that goes.
    })
    .await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_deleted_injection_already_gone_is_done() {
    let deleting = stored(
        json!({}),
        json!({"deletionTimestamp": "2026-11-25T12:00:00Z"}),
    );
    let action = run(deleting, |mut server| async move {
        server.expect(Method::PATCH, INJECTION).await.not_found();
    })
    .await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn an_injection_whose_pod_is_not_on_this_node_waits_and_says_why() {
    let applied = stored(json!({}), json!({}));
    let action = run(applied, |mut server| async move {
        let status = status_applied(&mut server).await;
        assert_eq!(status["phase"], "Pending");
        let error = status["lastError"].as_str().unwrap();
        assert!(
            error.starts_with(
                "the pod's network namespace is not found: no network namespace carries pod UID 6a1d7a52-0000-4000-8000-0000000000ff or address 192.0.2.77"
            ),
            "{error}"
        );
    })
    .await;
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_bad_expire_time_is_reported_failed() {
    let bad = stored(json!({"expireTime": "tomorrow"}), json!({}));
    let action = run(bad, |mut server| async move {
        let status = status_applied(&mut server).await;
        assert_eq!(status["phase"], "Failed");
        assert_eq!(
            status["lastError"],
            "spec.expireTime \"tomorrow\" is not an RFC 3339 time"
        );
    })
    .await;
    assert_eq!(action, Action::await_change());
}
