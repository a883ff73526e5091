//! [`reconcile`] against a mocked API server (tower-test, as in controller-rs's fixtures): each
//! test fills the [`Cache`] (the pods, nodes and injections the watches would have seen),
//! scripts the requests a reconcile must make, in order, answers them, and fails on any other
//! request (the reconcile would wait for an answer forever, so it times out).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use http::Method;
use k8s_openapi::api::core::v1::{Node, Pod};
use kafka_shock_crds::KafkaFaultInjection;
use kafka_shock_crds::{FAULT_FINALIZER, FaultPhase, KafkaFault, fault::conditions};
use kafka_shock_daemon::mock::{ApiServer, Call, api_server};
use kube::{core::PartialObjectMeta, runtime::controller::Action};
use serde_json::{Value, json};

use super::{CACHE_WAIT, Cache, Context, RECOVERY_POLL, RESYNC, reconcile};
use crate::{
    GuardRails,
    metrics::Metrics,
    targets::tests::{fault, pod},
};

const FAULTS: &str = "/apis/kafkashock.io/v1alpha1/namespaces/kafka/kafkafaults";
const INJECTIONS: &str = "/apis/kafkashock.io/v1alpha1/namespaces/kafka/kafkafaultinjections";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/kafka/events";

/// Answers an Event POST with the Event itself, returning its reason.
async fn event(server: &mut ApiServer) -> String {
    let call = server.expect(Method::POST, EVENTS).await;
    let reason = call.body["reason"].as_str().unwrap().to_owned();
    let body = call.body.clone();
    call.answer(body);
    reason
}

/// The nodes `pods` run on.
fn nodes(pods: &[Pod]) -> Vec<PartialObjectMeta<Node>> {
    pods.iter()
        .filter_map(|pod| pod.spec.as_ref()?.node_name.clone())
        .map(|node| {
            let mut meta = PartialObjectMeta::<Node>::default();
            meta.metadata.name = Some(node);
            meta
        })
        .collect()
}

/// The cache of a cluster with `pods` (and their nodes) and `injections`.
fn cache(pods: Vec<Pod>, injections: &[Value]) -> Cache {
    let nodes = nodes(&pods);
    let injections = injections
        .iter()
        .map(|i| serde_json::from_value::<KafkaFaultInjection>(i.clone()).unwrap())
        .collect();
    Cache::filled(pods, nodes, injections)
}

/// The brokers broker-0 and broker-1, Running and Ready, and broker-9, Running but not Ready.
fn brokers() -> Vec<Pod> {
    let mut not_ready = pod("broker-9");
    not_ready
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .status = "False".into();
    vec![pod("broker-0"), pod("broker-1"), not_ready]
}

/// Runs one reconcile of `fault` in a cluster without pods against the `scenario`, which must
/// see every request.
async fn run<F>(fault: KafkaFault, scenario: impl FnOnce(ApiServer) -> F) -> Action
where
    F: Future<Output = ()> + Send + 'static,
{
    run_within(GuardRails::default(), cache(vec![], &[]), fault, scenario).await
}

/// [`run`] with the installation's guard rails `rails`, in the cluster `cache` holds.
async fn run_within<F>(
    rails: GuardRails,
    cache: Cache,
    fault: KafkaFault,
    scenario: impl FnOnce(ApiServer) -> F,
) -> Action
where
    F: Future<Output = ()> + Send + 'static,
{
    let (ctx, server) = context(rails, cache);
    run_in(ctx, server, fault, scenario).await
}

/// A context with the installation's guard rails `rails`, in the cluster `cache` holds, and the
/// mocked API server its client talks to.
fn context(rails: GuardRails, cache: Cache) -> (Arc<Context>, ApiServer) {
    let (client, server) = api_server();
    let metrics = Arc::new(Metrics::default());
    (
        Arc::new(Context::new(client, metrics, rails, cache)),
        server,
    )
}

/// One reconcile of `fault` with `ctx`, whose client `server` answers as `scenario` says.
async fn run_in<F>(
    ctx: Arc<Context>,
    server: ApiServer,
    fault: KafkaFault,
    scenario: impl FnOnce(ApiServer) -> F,
) -> Action
where
    F: Future<Output = ()> + Send + 'static,
{
    let server = tokio::spawn(scenario(server));
    let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(fault), ctx))
        .await
        .expect("reconcile hung: it made a request the scenario does not answer");
    server.await.expect("the API server scenario failed");
    result.expect("reconcile failed")
}

/// The JSON patch of the test fault's finalizers, which must be `body`.
async fn finalizer_patch(server: &mut ApiServer, body: Value) -> Call {
    let call = server
        .expect(Method::PATCH, &format!("{FAULTS}/reset-orders"))
        .await;
    assert_eq!(call.body, body);
    call
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
        let add = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FAULT_FINALIZER]},
        ]);
        let call = finalizer_patch(&mut server, add).await;
        call.answer(serde_json::to_value(finalized(fault("All", None))).unwrap());
    })
    .await;
    assert_eq!(action, Action::await_change(), "the patch wakes it again");
}

/// What a reconcile wrote: the injections as stored, and the fault's status.
#[derive(Default)]
struct Recorded {
    injections: Vec<Value>,
    status: Value,
}

/// The exchanges of a new fault's reconcile in the cluster of [`brokers`]: no request reads
/// anything (the pods and injections come from the cache); an injection is applied for each
/// Ready pod, the status written, and the Event of the selection published.
async fn first_injection(mut server: ApiServer, written: Arc<Mutex<Recorded>>) {
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
        assert_eq!(
            injection["spec"]["podUID"],
            format!("uid-{target}").as_str()
        );
        assert_eq!(
            injection["spec"]["nodeName"],
            format!("node-{target}").as_str()
        );
        let body = stored(injection.clone(), Value::Null);
        written.lock().unwrap().injections.push(body.clone());
        call.answer(body);
    }

    let call = server
        .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
        .await;
    let status = &call.body["status"];
    assert_eq!(status["phase"], "Injecting");
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(
        (
            status["totalTargets"].clone(),
            status["injectedTargets"].clone()
        ),
        (json!(2), json!(0))
    );
    assert_eq!(status["targets"].as_array().unwrap().len(), 2);
    assert!(status["startTime"].is_string(), "{status}");
    written.lock().unwrap().status = status.clone();
    call.answer(stored_fault());

    assert_eq!(event(&mut server).await, "Selected");
}

/// The first reconcile of the test fault in the cluster of [`brokers`] ([`first_injection`]):
/// what it returned, and what it wrote.
async fn first_reconcile() -> (Action, Recorded) {
    let written = Arc::new(Mutex::new(Recorded::default()));
    let cluster = cache(brokers(), &[]);
    let scenario = |server| first_injection(server, written.clone());
    let action = run_within(
        GuardRails::default(),
        cluster,
        finalized(fault("All", None)),
        scenario,
    )
    .await;
    let recorded = std::mem::take(&mut *written.lock().unwrap());
    (action, recorded)
}

#[tokio::test]
async fn a_valid_fault_creates_one_injection_per_ready_pod_and_reports() {
    let (action, _) = first_reconcile().await;
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn an_unchanged_world_costs_no_request() {
    let (_, Recorded { injections, status }) = first_reconcile().await;

    // The watches then show what it wrote: reconciled again, it reads and writes nothing.
    let mut synced = finalized(fault("All", None));
    synced.status = Some(serde_json::from_value(status).unwrap());
    let cluster = cache(brokers(), &injections);
    let action = run_within(GuardRails::default(), cluster, synced, |_server| async {}).await;
    assert_eq!(action, Action::requeue(RESYNC));
}

#[tokio::test]
async fn nothing_is_decided_before_the_cache_is_filled() {
    // An empty store would read as "no pods": the fault's injections would be deleted.
    let (ctx, _server) = context(GuardRails::default(), Cache::unfilled());
    let action = reconcile(Arc::new(finalized(fault("All", None))), ctx)
        .await
        .expect("a requeue, not an error");
    assert_eq!(action, Action::requeue(CACHE_WAIT));
}

#[tokio::test]
async fn an_invalid_fault_reports_why_and_creates_nothing() {
    let mut invalid = finalized(fault("All", None));
    invalid.spec.terms.match_.client_id = Some(kafka_shock_crds::ClientIdMatch {
        regex: Some("(unclosed".into()),
        ..Default::default()
    });
    let action = run(invalid, |mut server| async move {
        // No injection: straight to the status.
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
    let cluster = cache(brokers(), &injections);
    let action = run_within(rails, cluster, live, |mut server| async move {
        // Nothing is selected. The injections go; their pods and nodes are there, so only
        // their agents may release them.
        delete_each(&mut server, &injections).await;
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

/// A DELETE of each of `injections`; they stay, terminating (the agents' finalizer).
async fn delete_each(server: &mut ApiServer, injections: &[Value]) {
    for injection in injections {
        let name = injection["metadata"]["name"].as_str().unwrap();
        server
            .expect(Method::DELETE, &format!("{INJECTIONS}/{name}"))
            .await
            .answer(terminating(injection.clone()));
    }
}

/// The list a deleted fault makes of its injections: from the API server, not the cache.
async fn list_injections(server: &mut ApiServer, injections: &[Value]) {
    let call = server.expect(Method::GET, INJECTIONS).await;
    assert!(
        call.query
            .contains("labelSelector=kafkashock.io%2Ffault%3Dreset-orders"),
        "{}",
        call.query
    );
    call.answer(list("KafkaFaultInjectionList", injections.to_vec()));
}

/// The answer to a DELETE of an injection with a finalizer: it stays, marked for deletion.
fn terminating(mut injection: Value) -> Value {
    injection["metadata"]["deletionTimestamp"] = json!("2025-01-02T03:04:06Z");
    injection
}

#[tokio::test]
async fn a_deleted_fault_deletes_its_injections_and_waits_for_the_agents() {
    let (deleting, injections) = deleting_with_active_injections();
    // The cache has not seen the injections yet: the list from the API server counts.
    let cluster = cache(brokers(), &[]);
    let action = run_within(
        GuardRails::default(),
        cluster,
        deleting,
        |mut server| async move {
            list_injections(&mut server, &injections).await;
            // Each pod and node is still there, so only its agent may release it.
            delete_each(&mut server, &injections).await;
            let call = server
                .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
                .await;
            assert_eq!(call.body["status"]["phase"], "Recovering");
            call.answer(stored_fault());
        },
    )
    .await;
    // No PATCH removing the fault's finalizer: it stays until the injections are gone.
    assert_eq!(action, Action::requeue(RECOVERY_POLL));
}

/// A deleted fault whose injections' pods are gone, and a context whose cache holds their
/// nodes only: `(fault, its injections as listed, ctx, the API server of ctx's client)`.
fn deleted_with_pods_gone() -> (KafkaFault, Vec<Value>, Arc<Context>, ApiServer) {
    let (deleting, injections) = deleting_with_active_injections();
    let injections: Vec<Value> = injections.into_iter().map(terminating).collect();
    let nodes_only = Cache::filled(vec![], nodes(&brokers()), vec![]);
    let (ctx, server) = context(GuardRails::default(), nodes_only);
    (deleting, injections, ctx, server)
}

/// The requests that let a deleted fault go once its pods are gone: the list, each injection
/// released (already being deleted: not deleted again), the Completed status and its Event,
/// then the PATCH removing the fault's finalizer, answered `finalizer_removed`.
async fn lets_everything_go(
    mut server: ApiServer,
    injections: Vec<Value>,
    finalizer_removed: impl FnOnce(Call),
) {
    list_injections(&mut server, &injections).await;
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
    let remove = json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": FAULT_FINALIZER},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ]);
    finalizer_removed(finalizer_patch(&mut server, remove).await);
}

/// A deleted fault whose pods are gone is let go (the finalizer removal answered
/// `finalizer_removed`); then a copy of it from before that, still queued (a thousand faults
/// deleted at once leave many), makes no list and no second finalizer removal, which would
/// find it gone. (Any request would fail: ctx's API server is gone with the first scenario.)
async fn lets_go_once(finalizer_removed: impl FnOnce(Call) + Send + 'static) {
    let (deleting, injections, ctx, server) = deleted_with_pods_gone();
    let scenario = |server| lets_everything_go(server, injections, finalizer_removed);
    let action = run_in(ctx.clone(), server, deleting.clone(), scenario).await;
    assert_eq!(action, Action::await_change());
    let action = run_in(ctx, api_server().1, deleting, |_| async {}).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_deleted_fault_whose_pods_are_gone_releases_everything_and_goes() {
    lets_go_once(|call| call.answer(stored_fault())).await;
}

#[tokio::test]
async fn a_fault_gone_before_its_finalizer_is_removed_is_let_go_not_failed() {
    // Let go by a pass this operator did not see succeed: the removal finds it gone.
    lets_go_once(Call::not_found).await;
}

#[tokio::test]
async fn a_fault_older_than_the_status_written_to_it_gets_no_second_write() {
    // The injections are in place (the cache shows them) and the status is written once...
    let (_, Recorded { injections, .. }) = first_reconcile().await;

    let (ctx, mut server) = context(GuardRails::default(), cache(brokers(), &injections));
    let stale = finalized(fault("All", None));
    let writes = tokio::spawn(async move {
        let call = server
            .expect(Method::PATCH, &format!("{FAULTS}/reset-orders/status"))
            .await;
        call.answer(stored_fault());
        assert_eq!(event(&mut server).await, "Selected");
        // ... then the server goes: any further request fails the reconcile below.
    });
    let first = reconcile(Arc::new(stale.clone()), ctx.clone());
    assert_eq!(first.await.unwrap(), Action::requeue(RESYNC));
    writes.await.unwrap();
    // ... and the watch hands the fault over again as it was before that write.
    let again = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(stale), ctx));
    assert_eq!(again.await.unwrap().unwrap(), Action::requeue(RESYNC));
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

/// The cluster of the target broker-0 and the source pods `sources` (name and address each),
/// labelled `role=follower` only.
fn cluster_with_sources(sources: &[(&str, &str)]) -> Cache {
    let mut pods = vec![pod("broker-0")];
    for (name, ip) in sources {
        let mut source = pod(name);
        // Only a source: the fault's selector (app=kafka) does not pick it as a target.
        source.metadata.labels = Some([("role".into(), "follower".into())].into());
        let status = source.status.get_or_insert_default();
        status.pod_ip = Some((*ip).into());
        status.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP { ip: (*ip).into() }]);
        pods.push(source);
    }
    cache(pods, &[])
}

/// One reconcile of [`isolating`] in `cluster`, against `scenario`.
async fn run_isolating<F>(cluster: Cache, scenario: impl FnOnce(ApiServer) -> F) -> Action
where
    F: Future<Output = ()> + Send + 'static,
{
    run_within(GuardRails::default(), cluster, isolating(), scenario).await
}

#[tokio::test]
async fn a_source_selector_is_resolved_into_every_injection() {
    let cluster = cluster_with_sources(&[("broker-2", "10.0.0.12"), ("broker-1", "10.0.0.11")]);
    let action = run_isolating(cluster, |mut server| async move {
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
    let action = run_isolating(cluster_with_sources(&[]), |mut server| async move {
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
