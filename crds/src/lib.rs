//! The API of kafka-shock (group `kafkashock.io`, version `v1alpha1`).
//!
//! - [`KafkaFault`] is what users apply: which broker pods, which Kafka requests, what to do.
//! - [`KafkaFaultInjection`] is what the operator writes for the agent on a node: one fault on
//!   one pod, with everything needed to enforce it.
//!
//! The API server checks what it can through the CRD schema and CEL rules derived here;
//! [`KafkaFaultSpec::validate`] checks the same and what the server cannot (CIDRs, API names,
//! durations). [`read_fault`] is the one reading of a fault file: the generated schema walked
//! as the server walks it ([`schema_walk`]), then `validate`. The checked-in CRD YAML is written by the `crdgen` binary from
//! [`crd_files`], and a test fails when it drifts.
//!
//! [`contract`] holds what the operator and the agents agree on beyond the fields (labels,
//! finalizers, names, rule ids, the stable [`hash`]). This crate depends on nothing else of
//! kafka-shock; the operator and the agent build on it. See `docs/architecture.md`.
#![forbid(unsafe_code)]

pub mod action;
pub mod contract;
pub mod crdgen;
pub mod duration;
pub mod fault;
pub mod hash;
pub mod injection;
pub mod kafka_errors;
pub mod manifest;
pub mod matching;
pub mod schema_walk;
pub mod selector;
pub mod terms;
pub mod validate;

pub use action::{Action, ActionType, CorruptTarget, Enforcement, Handover};
pub use contract::{
    FAULT_FINALIZER, FAULT_LABEL, FINALIZER, NODE_LABEL, injection_name, label_value,
    parse_rule_id, rule_id,
};
pub use crdgen::{CrdFile, RenderError, crd_files};
pub use duration::{DurationError, parse_duration};
pub use fault::{
    FaultPhase, KafkaFault, KafkaFaultSpec, KafkaFaultStatus, TargetMode, TargetStatus,
};
pub use hash::{fnv1a64, stable_hash};
pub use injection::{
    InjectionPhase, KafkaFaultInjection, KafkaFaultInjectionSpec, KafkaFaultInjectionStatus,
    ProxyCounts, REQUESTS_VISIBLE, RefusalReason, TLS_REASON, tls_condition, tls_message,
};
pub use manifest::{FaultFile, ReadError, read_fault};
pub use matching::{ApiVersionRange, Cidr, ClientIdMatch, FaultMatch, SourcesError, api_key_names};
pub use selector::{SelectorError, parse_selector};
pub use terms::FaultTerms;
pub use validate::{SpecError, topic_name_problem};
