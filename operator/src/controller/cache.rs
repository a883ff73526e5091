//! The operator's view of the world it decides from: the pods, the nodes and the injections, in
//! reflector stores fed by the watches that also wake the controller. A reconcile reads them
//! from memory instead of listing them from the API server: with 1,000 faults, two lists per
//! reconcile were most of the operator's requests and most of the API server's work.
//!
//! Only what the decisions read is kept (see [`trim_pod`]), so a cluster's pods cost little
//! memory. A store is as new as the watch event that woke the reconcile, or newer. It can lag
//! behind the operator's own writes, which the reconcile makes good itself: what it writes it
//! keeps from the write's answer; and a deleted fault, which must not let go while an
//! injection remains, lists its injections from the API server (see `sync`).
//!
//! The faults' own store can lag the same way: [`Written`] keeps the status the operator last
//! wrote to each fault, so a reconcile handed the fault as it was before that write neither
//! writes the same status again nor publishes its Events twice.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures::{FutureExt, StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodStatus};
use kafka_shock_crds::{KafkaFault, KafkaFaultInjection, KafkaFaultStatus};
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

/// A watched object, or the watch's error, as the controller's trigger streams take them.
pub type Feed<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// The read side: what a reconcile looks up.
#[derive(Clone)]
pub struct Cache {
    pods: Store<Pod>,
    nodes: Store<PartialObjectMeta<Node>>,
    injections: Store<KafkaFaultInjection>,
}

/// The write side: the watches that fill the [`Cache`], each yielding the objects it touched
/// (applied or deleted) once its store holds them, for the controller's triggers.
pub struct Feeds {
    /// Every pod, trimmed.
    pub pods: Feed<Pod>,
    /// Every node's metadata.
    pub nodes: Feed<PartialObjectMeta<Node>>,
    /// Every KafkaFaultInjection.
    pub injections: Feed<KafkaFaultInjection>,
}

/// The cache and the watches that fill it, all cluster-wide with `config`. Nothing is read
/// until the feeds are polled (by the controller).
pub fn watch(client: &Client, config: &watcher::Config) -> (Cache, Feeds) {
    let (pods, pod_writer) = reflector::store();
    let (nodes, node_writer) = reflector::store();
    let (injections, injection_writer) = reflector::store();
    let feeds = Feeds {
        pods: watcher(Api::<Pod>::all(client.clone()), config.clone())
            .modify(trim_pod)
            .reflect(pod_writer)
            .touched_objects()
            .boxed(),
        nodes: watcher(
            Api::<PartialObjectMeta<Node>>::all(client.clone()),
            config.clone(),
        )
        .modify(|node| node.metadata.managed_fields = None)
        .reflect(node_writer)
        .touched_objects()
        .boxed(),
        injections: watcher(
            Api::<KafkaFaultInjection>::all(client.clone()),
            config.clone(),
        )
        .modify(|injection| injection.metadata.managed_fields = None)
        .reflect(injection_writer)
        .touched_objects()
        .boxed(),
    };
    let cache = Cache {
        pods,
        nodes,
        injections,
    };
    (cache, feeds)
}

/// Keeps of a pod what selecting targets, waking faults and releasing injections read: its
/// identity, labels and deletion; its node and `hostNetwork`; its phase, conditions and IPs.
pub fn trim_pod(pod: &mut Pod) {
    let metadata = &mut pod.metadata;
    metadata.managed_fields = None;
    metadata.annotations = None;
    metadata.owner_references = None;
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        host_network: spec.host_network,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        conditions: status.conditions,
        pod_ip: status.pod_ip,
        pod_ips: status.pod_ips,
        ..PodStatus::default()
    });
}

impl Cache {
    /// Whether every store has been filled by its watch's first list: before that, a missing
    /// pod or injection means nothing, and nothing may be decided.
    pub fn ready(&self) -> bool {
        // Polled once, never awaited: kube's readiness future wakes only its last waiter.
        let ready = |ready: Option<Result<(), _>>| matches!(ready, Some(Ok(())));
        ready(self.pods.wait_until_ready().now_or_never())
            && ready(self.nodes.wait_until_ready().now_or_never())
            && ready(self.injections.wait_until_ready().now_or_never())
    }

    /// The pods of `namespace`.
    pub fn pods_in(&self, namespace: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state_filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
    }

    /// The pod `name` of `namespace`, if the cache holds it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&ObjectRef::new(name).within(namespace))
    }

    /// Whether the node `name` exists.
    pub fn node_exists(&self, name: &str) -> bool {
        self.nodes.get(&ObjectRef::new(name)).is_some()
    }

    /// The injections of `namespace` the fault `fault_name` made (by `spec.faultName`: the
    /// fault label is shortened for long names, so it alone could match another fault's).
    pub fn injections_of(&self, namespace: &str, fault_name: &str) -> Vec<KafkaFaultInjection> {
        self.injections
            .state_filter(|i| {
                i.namespace().as_deref() == Some(namespace) && i.spec.fault_name == fault_name
            })
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect()
    }

    /// A cache holding exactly these objects, ready; for tests.
    #[cfg(test)]
    pub fn filled(
        pods: Vec<Pod>,
        nodes: Vec<PartialObjectMeta<Node>>,
        injections: Vec<KafkaFaultInjection>,
    ) -> Self {
        fn fill<K>(objects: Vec<K>) -> Store<K>
        where
            K: kube::Resource<DynamicType = ()> + Clone + 'static,
        {
            let mut writer = reflector::store::Writer::default();
            writer.apply_watcher_event(&watcher::Event::Init);
            for object in objects {
                writer.apply_watcher_event(&watcher::Event::InitApply(object));
            }
            writer.apply_watcher_event(&watcher::Event::InitDone);
            writer.as_reader()
        }
        Self {
            pods: fill(
                pods.into_iter()
                    .map(|mut pod| {
                        trim_pod(&mut pod);
                        pod
                    })
                    .collect(),
            ),
            nodes: fill(nodes),
            injections: fill(injections),
        }
    }

    /// A cache whose watches have not listed yet; for tests.
    #[cfg(test)]
    pub fn unfilled() -> Self {
        Self {
            pods: reflector::store().0,
            nodes: reflector::store().0,
            injections: reflector::store().0,
        }
    }
}

/// The status this operator last wrote to each fault, by the fault's UID. Only the operator
/// writes a fault's status, so that one is the newest, even when the faults' watch has not
/// delivered it yet. Kept while the operator runs; a restarted operator starts from the
/// statuses it reads.
#[derive(Debug, Default)]
pub struct Written(Mutex<HashMap<String, KafkaFaultStatus>>);

impl Written {
    /// `fault` with the newest status: the one last written, if the fault shows another.
    pub fn newest<'a>(&self, fault: &'a KafkaFault) -> Cow<'a, KafkaFault> {
        let known = fault
            .uid()
            .and_then(|uid| self.statuses().get(&uid).cloned());
        match known {
            Some(status) if fault.status.as_ref() != Some(&status) => {
                let mut newer = fault.clone();
                newer.status = Some(status);
                Cow::Owned(newer)
            }
            _ => Cow::Borrowed(fault),
        }
    }

    /// `status` was written to `fault`.
    pub fn remember(&self, fault: &KafkaFault, status: &KafkaFaultStatus) {
        if let Some(uid) = fault.uid() {
            self.statuses().insert(uid, status.clone());
        }
    }

    /// `fault` is gone.
    pub fn forget(&self, fault: &KafkaFault) {
        if let Some(uid) = fault.uid() {
            self.statuses().remove(&uid);
        }
    }

    fn statuses(&self) -> std::sync::MutexGuard<'_, HashMap<String, KafkaFaultStatus>> {
        // A panic elsewhere leaves the map consistent: every change is one insert or remove.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
