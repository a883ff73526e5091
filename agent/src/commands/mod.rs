//! The commands of the `kafka-shock` binary, one module each: [`sniff`], [`inject`],
//! [`rules`], [`clean`] and [`agent`] (the node agent on Kubernetes). A command reads its
//! flags, wires the edges to the library, and says what happened ([`output`]); the namespace
//! it acts in is named by the same flags everywhere ([`target`]), and flags that name things
//! refuse names that cannot match ([`values`]).
//!
//! Commands may depend on the edges and the library; nothing depends on them.

pub mod agent;
pub mod clean;
pub mod inject;
pub mod output;
pub mod rules;
pub mod sniff;
pub mod target;
pub mod values;
