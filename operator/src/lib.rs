//! The pure core of kafka-shock's operator: everything the controller decides, as functions of
//! the objects it has read, with no API calls and no async runtime.
//!
//! The controller (`reconcile`) reads a [`KafkaFault`](kafka_shock_crds::KafkaFault), the pods
//! of its namespace and the fault's
//! [`KafkaFaultInjection`](kafka_shock_crds::KafkaFaultInjection)s, then:
//!
//! 1. checks the spec, and the installation's [`GuardRails`] (the namespaces and ports it
//!    honours), with [`validity`];
//! 2. picks the target pods with [`select_targets`] (stable, so reconciles do not flap), and
//!    resolves `match.sourceSelector` to the selected pods' addresses with
//!    [`source_addresses`];
//! 3. turns them into [`InjectionChanges`] with [`injection_changes`] (create, update,
//!    delete), whose objects come from the deterministic builder [`injection_for`];
//! 4. releases the finalizer of injections whose pod or node is gone ([`finalizer_releasable`]);
//! 5. writes the status [`roll_up`] computes from the injections' own statuses, and requeues at
//!    [`expiry`].
//!
//! Keeping these pure (after linkerd's policy-controller index) lets them be tested without an
//! API server, and makes their output depend only on their input, so an unchanged world gives a
//! byte-identical object and no write. [`notices`] (which Events a status change deserves) and
//! [`triggers`] (which faults a pod or node change wakes) are pure too.
//!
//! The I/O edges are apart: [`controller`] (watches, reconcile, writes, Events), [`metrics`]
//! (what `/metrics` serves) and [`preflight`] (the CRDs and RBAC are there); the
//! `kafka-shock-operator` binary wires them up, with the plumbing it shares with the agent
//! (`kafka-shock-daemon`: logging, the HTTP endpoint, finalizer release). The contract with
//! the agents (labels, finalizers, names) is `kafka_shock_crds::contract`; see
//! `docs/architecture.md`.
#![forbid(unsafe_code)]

pub mod controller;
pub mod guard_rails;
pub mod injections;
pub mod metrics;
pub mod notices;
pub mod preflight;
pub mod rollup;
pub mod schedule;
pub mod sources;
pub mod targets;
pub mod triggers;

pub use guard_rails::{GuardRails, Invalid};
pub use injections::{
    InjectionChanges, InjectionError, finalizer_releasable, injection_changes, injection_for,
};
pub use rollup::{current_phase, roll_up, validity};
pub use schedule::{START_ANNOTATION, expiry, rfc3339, started_at};
pub use sources::source_addresses;
pub use targets::{SelectError, Target, select_targets};
