//! The plumbing kafka-shock's two long-running processes — the operator and the node agent —
//! share, written once: how they log ([`logging`]), where and how they serve `/metrics` and
//! `/healthz` ([`http`]), and how they let go of a finalizer ([`finalizer`]).
//!
//! Nothing here knows about faults: what the processes decide lives in `kafka-shock-crds` (the
//! contract), the operator's and the agent's own pure cores. Only the two binaries depend on
//! this crate.
#![forbid(unsafe_code)]

pub mod finalizer;
pub mod http;
pub mod logging;

pub use finalizer::release_finalizer;
pub use http::{Exported, HttpError, listen, listen_addr, serve};
pub use logging::LogFormat;
