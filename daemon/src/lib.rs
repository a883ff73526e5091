//! The plumbing kafka-shock's two long-running processes — the operator and the node agent —
//! share, written once: how they log ([`logging`]), where and how they serve `/metrics` and
//! `/healthz` ([`http`]), and how they let go of a finalizer ([`finalizer`]); and, for their
//! tests only (feature `mock`), the mocked API server their reconciles are tested against.
//!
//! Nothing here knows about faults: what the processes decide lives in `kafka-shock-crds` (the
//! contract), the operator's and the agent's own pure cores. Only the two binaries depend on
//! this crate.
#![forbid(unsafe_code)]

pub mod finalizer;
pub mod http;
pub mod logging;
#[cfg(feature = "mock")]
pub mod mock;

pub use finalizer::release_finalizer;
pub use http::{Exported, HttpError, listen, listen_addr, serve};
pub use logging::LogFormat;
