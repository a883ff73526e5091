//! The lab harness: brings up kafka-shock's local lab (a real Kubernetes cluster on this host
//! with two kubelets, real Kafka brokers as pods, real clients) through `tests/lab/lab.sh`, and
//! hands tests what they need: broker addresses and network namespaces, a kube `Client`, "run
//! this in the client namespace", "create a topic", the product deployed as pods. The shell
//! script stays the one owner of the lab's resources, so a test that crashes leaves nothing
//! `lab.sh down` cannot remove.
#![forbid(unsafe_code)]

mod background;
mod clients;
mod error;
mod lab;
pub mod manifests;
mod product;
pub mod stack;

pub use background::{Background, Stream};
pub use clients::ClientReport;

pub use error::LabError;
pub use lab::{
    FaultFiles, Lab, LabDownGuard, TempDir, exclusive, kafka_shock_bin, lab_script,
    product_bin_dir, random_delays, run, stdout, stdout_with_input, wait_for, workspace_root,
};
pub use product::{
    AGENT_READY, Component, NAMESPACE, OPERATOR_READY, Product, RELEASE, free_loopback_addr,
    http_get, operator_bin,
};
