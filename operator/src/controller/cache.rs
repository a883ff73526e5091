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
//! writes the same status again nor publishes its Events twice; and which deleted faults it has
//! let go, so a copy from before that does not list their injections and remove the finalizer
//! a second time (a 404, and a failed reconcile, for each of a thousand faults deleted at once).

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
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

/// What this operator last did to each fault, by the fault's UID: the status it wrote, or that
/// it let the deleted fault go. Only the operator writes a fault's status, so that one is the
/// newest, even when the faults' watch has not delivered it yet; a fault let go has no
/// injection left and loses its finalizer once, whatever older copies the store still hands
/// out. Kept while the operator runs; a restarted operator starts from what it reads.
#[derive(Debug, Default)]
pub struct Written(Mutex<HashMap<String, Last>>);

/// The last thing the operator did to one fault.
#[derive(Debug, Clone)]
enum Last {
    /// It wrote this status (boxed: most faults of a mass deletion are only let go).
    Status(Box<KafkaFaultStatus>),
    /// It let the deleted fault go (removed its finalizer) at this instant.
    LetGo(Instant),
}

/// How long a fault let go is remembered: far longer than a stale copy takes to leave the
/// controller's queue, short enough that a day of churn costs no memory.
const LET_GO_KEPT: Duration = Duration::from_secs(600);

impl Written {
    /// `fault` with the newest status: the one last written, if the fault shows another.
    pub fn newest<'a>(&self, fault: &'a KafkaFault) -> Cow<'a, KafkaFault> {
        let known = fault.uid().and_then(|uid| match self.lasts().get(&uid) {
            Some(Last::Status(status)) => Some(KafkaFaultStatus::clone(status)),
            _ => None,
        });
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
            self.lasts()
                .insert(uid, Last::Status(Box::new(status.clone())));
        }
    }

    /// `fault` was let go: every injection gone, its finalizer removed.
    pub fn let_go(&self, fault: &KafkaFault) {
        self.let_go_at(fault, Instant::now());
    }

    fn let_go_at(&self, fault: &KafkaFault, now: Instant) {
        let mut lasts = self.lasts();
        lasts.retain(|_, last| match last {
            Last::LetGo(at) => now.saturating_duration_since(*at) < LET_GO_KEPT,
            Last::Status(_) => true,
        });
        if let Some(uid) = fault.uid() {
            lasts.insert(uid, Last::LetGo(now));
        }
    }

    /// Whether `fault` was let go already (then a copy of it is older than that).
    pub fn was_let_go(&self, fault: &KafkaFault) -> bool {
        fault
            .uid()
            .is_some_and(|uid| matches!(self.lasts().get(&uid), Some(Last::LetGo(_))))
    }

    fn lasts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Last>> {
        // A panic elsewhere leaves the map consistent: every change is one insert or retain.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::tests::fault;

    fn with_uid(uid: &str) -> KafkaFault {
        let mut fault = fault("All", None);
        fault.metadata.uid = Some(uid.into());
        fault
    }

    #[test]
    fn a_fault_let_go_is_remembered_for_a_while_then_forgotten() {
        let written = Written::default();
        let (old, new) = (with_uid("old"), with_uid("new"));
        let start = Instant::now();
        written.let_go_at(&old, start);
        assert!(written.was_let_go(&old));
        assert!(!written.was_let_go(&new));
        // Another fault let go after the first has been kept long enough drops the first.
        written.let_go_at(&new, start + LET_GO_KEPT);
        assert!(!written.was_let_go(&old));
        assert!(written.was_let_go(&new));
    }

    #[test]
    fn letting_a_fault_go_replaces_its_status() {
        let written = Written::default();
        let fault = with_uid("a");
        written.remember(&fault, &KafkaFaultStatus::default());
        assert!(!written.was_let_go(&fault));
        written.let_go(&fault);
        assert!(written.was_let_go(&fault));
        assert!(matches!(written.newest(&fault), Cow::Borrowed(_)));
    }
}
