//! The agent's [`reconcile`] against the mocked API server the operator's controller tests use too
//! (`kafka_shock_daemon::mock`): each test scripts the requests a reconcile must make, in order,
//! answers them, and fails on any other (the reconcile then errs or times out). What is decided is
//! tested in `assignment::decide`; here, what is read and written: the pod the injection names
//! (from the node's pod cache when it passes there, else read), the status by server-side apply
//! (with the reason of a refused injection), the finalizer released under the resourceVersion
//! read, and nothing when nothing changed.
//!
//! The injections name a pod this machine does not have (a random UID, an address of
//! TEST-NET-1), so resolving its network namespace really scans `/proc` and finds nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::core::v1::Pod;
use kafka_shock_agent::assignment::{HostTargets, RESYNC};
use kafka_shock_crds::KafkaFaultInjection;
use kafka_shock_daemon::mock::{ApiServer, api_server};
use kube::runtime::controller::Action;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};

use super::metrics::Metrics;
use super::reconcile::{Context, reconcile};

const INJECTION: &str = "/apis/kafkashock.io/v1alpha1/namespaces/kafka/kafkafaultinjections/reset-orders-kafka-broker-0";
const POD: &str = "/api/v1/namespaces/kafka/pods/kafka-broker-0";
const POD_UID: &str = "6a1d7a52-0000-4000-8000-0000000000ff";

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
            "ownerReferences": [{
                "apiVersion": "kafkashock.io/v1alpha1",
                "kind": "KafkaFault",
                "name": "reset-orders",
                "uid": "6a1d7a52-0000-4000-8000-00000000fa17",
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "faultName": "reset-orders",
            "podName": "kafka-broker-0",
            "podUID": POD_UID,
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

/// The pod the injection names as the API server has it, with `spec` merged in: on this
/// agent's node, with the injection's UID.
fn live_pod(spec: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kafka-broker-0", "namespace": "kafka", "uid": POD_UID},
        "spec": {"nodeName": "ksl-node-1", "containers": [{"name": "kafka"}]},
    });
    merge(&mut pod["spec"], spec);
    pod
}

/// Answers the read of the injection's pod with `pod`, or 404 when `None`.
async fn pod_read(server: &mut ApiServer, pod: Option<Value>) {
    let call = server.expect(Method::GET, POD).await;
    match pod {
        Some(pod) => call.answer(pod),
        None => call.not_found(),
    }
}

/// Runs one reconcile of `injection` against `scenario`, which must see every request.
async fn run<F>(injection: KafkaFaultInjection, scenario: impl FnOnce(ApiServer) -> F) -> Action
where
    F: Future<Output = ()> + Send + 'static,
{
    run_with_cache(injection, None, scenario).await
}

/// [`run`] with `cached` in the agent's cache of its node's pods.
async fn run_with_cache<F>(
    injection: KafkaFaultInjection,
    cached: Option<Value>,
    scenario: impl FnOnce(ApiServer) -> F,
) -> Action
where
    F: Future<Output = ()> + Send + 'static,
{
    let (client, server) = api_server();
    let mut writer = reflector::store::Writer::<Pod>::default();
    if let Some(pod) = cached {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    let ctx = Arc::new(Context::new(
        client,
        "ksl-node-1",
        std::time::Duration::from_secs(30),
        HostTargets::default(),
        writer.as_reader(),
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
        pod_read(&mut server, Some(live_pod(json!({})))).await;
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
    // The pod is read, and nothing else: any other request would fail the reconcile.
    let action = run(paused, |mut server| async move {
        pod_read(&mut server, Some(live_pod(json!({})))).await;
    })
    .await;
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
        pod_read(&mut server, Some(live_pod(json!({})))).await;
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
        // Its pod is gone too: nothing is looked for, and the finalizer still goes.
        pod_read(&mut server, None).await;
        server.expect(Method::PATCH, INJECTION).await.not_found();
    })
    .await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn an_injection_whose_pods_namespace_is_not_on_this_kernel_waits_and_says_why() {
    let applied = stored(json!({}), json!({}));
    let action = run(applied, |mut server| async move {
        pod_read(&mut server, Some(live_pod(json!({})))).await;
        let status = status_applied(&mut server).await;
        assert_eq!(status["phase"], "Pending");
        assert_eq!(status.get("reason"), None);
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
        pod_read(&mut server, Some(live_pod(json!({})))).await;
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

/// Runs one reconcile of the stored injection whose pod reads as `pod`, and returns the
/// status written.
async fn refused_with(pod: Option<Value>) -> Value {
    let (sender, written) = tokio::sync::oneshot::channel();
    let applied = stored(json!({}), json!({}));
    let action = run(applied, |mut server| async move {
        pod_read(&mut server, pod).await;
        let _ = sender.send(status_applied(&mut server).await);
    })
    .await;
    assert_eq!(action, Action::requeue(RESYNC), "looked at again");
    written.await.unwrap()
}

#[tokio::test]
async fn an_injection_that_fails_a_check_against_its_pod_is_failed_with_the_reason() {
    let cases = [
        (
            None,
            "PodNotFound",
            "no pod \"kafka-broker-0\" in namespace \"kafka\"",
        ),
        (
            Some(
                json!({"metadata": {"name": "kafka-broker-0", "namespace": "kafka", "uid": "0000-other"},
                        "spec": {"nodeName": "ksl-node-1"}}),
            ),
            "PodMismatch",
            "has UID \"0000-other\"",
        ),
        (
            Some(live_pod(json!({"nodeName": "ksl-node-2"}))),
            "WrongNode",
            "runs on node \"ksl-node-2\"",
        ),
        (
            Some(live_pod(json!({"hostNetwork": true}))),
            "HostNetwork",
            "(spec.hostNetwork)",
        ),
    ];
    for (pod, reason, says) in cases {
        let status = refused_with(pod).await;
        assert_eq!(status["phase"], "Failed", "{status}");
        assert_eq!(status["reason"], reason, "{status}");
        assert_eq!(status["rulesInstalled"], 0);
        let error = status["lastError"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("{reason}: ")) && error.contains(says),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_injection_its_fault_does_not_control_is_refused() {
    let unowned = stored(json!({}), json!({"ownerReferences": []}));
    let action = run(unowned, |mut server| async move {
        pod_read(&mut server, Some(live_pod(json!({})))).await;
        let status = status_applied(&mut server).await;
        assert_eq!(status["reason"], "NotOwned");
    })
    .await;
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_cached_pod_that_passes_is_not_read_again() {
    let paused = stored(json!({"paused": true}), json!({}));
    let action = run_with_cache(paused, Some(live_pod(json!({}))), |mut server| async move {
        let status = status_applied(&mut server).await;
        assert_eq!(status["phase"], "Paused");
    })
    .await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_cached_pod_that_fails_is_read_again_before_refusing() {
    // The cache still holds the pod before it was recreated; the API server has the new one,
    // which the operator's injection names.
    let stale = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kafka-broker-0", "namespace": "kafka", "uid": "0000-old"},
        "spec": {"nodeName": "ksl-node-1"}});
    let paused = stored(json!({"paused": true}), json!({}));
    let action = run_with_cache(paused, Some(stale), |mut server| async move {
        pod_read(&mut server, Some(live_pod(json!({})))).await;
        let status = status_applied(&mut server).await;
        assert_eq!(status["phase"], "Paused");
        assert_eq!(status.get("reason"), None);
    })
    .await;
    assert_eq!(action, Action::await_change());
}
