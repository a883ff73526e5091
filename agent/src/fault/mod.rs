//! One fault made enforceable in one network namespace. [`FaultPlan`] (`plan.rs`) turns a
//! fault's terms (`kafka_shock_crds::FaultTerms`: ports, match, action, enforcement) into what
//! the rule compiler and the Inline decider take, and chooses the enforcement (Auto); the
//! [`RequestMatcher`] (`matcher.rs`) evaluates the fault's match on decoded requests, with the
//! stream context kernel rules lack.
//!
//! "Plan" means this and nothing else: the rules' desired-vs-actual comparison is
//! `rules::diff`, the operator's create/update/delete list is its `InjectionChanges`.
//!
//! Pure. It may depend on [`crate::rules`] (what it compiles to) and on
//! [`crate::sniffer::event`] (what it matches); the Inline decider, the node agent's
//! decisions and the binary's session depend on it.

mod matcher;
mod plan;

pub use matcher::{MatchError, RequestMatcher};
pub use plan::{FaultPlan, PlanError};
