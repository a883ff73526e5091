//! The guard rails a platform team puts on an installation: the namespaces in which KafkaFaults
//! are honoured, and the ports a fault may name (chart values `faultNamespaces` and
//! `allowedPorts`, operator flags `--fault-namespaces` and `--allowed-ports`; empty means no
//! restriction). A fault outside them is reported `Valid=False` with the reason and gets no
//! injection (those it had are removed); the chart's admission policy also refuses a
//! disallowed port at apply time, so this check is what catches faults applied before the
//! rails were set.

use std::collections::BTreeSet;

use kafka_shock_crds::KafkaFault;
use kube::ResourceExt;

/// The reason of the Valid condition for a spec `KafkaFaultSpec::validate` refuses.
pub const SPEC_INVALID: &str = "SpecInvalid";
/// The reason of the Valid condition for a fault in a namespace not honoured.
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
/// The reason of the Valid condition for a fault naming a port not allowed.
pub const PORT_NOT_ALLOWED: &str = "PortNotAllowed";

/// Where faults are honoured and which ports they may name; empty sets restrict nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardRails {
    /// The namespaces whose KafkaFaults are honoured.
    pub namespaces: BTreeSet<String>,
    /// The ports a fault may name in spec.ports.
    pub ports: BTreeSet<u16>,
}

/// Why a fault is not acted on: the Valid condition's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// [`SPEC_INVALID`], [`NAMESPACE_NOT_ALLOWED`] or [`PORT_NOT_ALLOWED`].
    pub reason: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl GuardRails {
    /// Whether `fault` is within the rails: its namespace first, then its ports.
    pub fn check(&self, fault: &KafkaFault) -> Result<(), Invalid> {
        let namespace = fault.namespace().unwrap_or_default();
        if !self.namespaces.is_empty() && !self.namespaces.contains(&namespace) {
            return Err(Invalid {
                reason: NAMESPACE_NOT_ALLOWED,
                message: format!(
                    "KafkaFaults in namespace {namespace} are not honoured: this installation honours them only in {} (chart value faultNamespaces)",
                    listed(&self.namespaces)
                ),
            });
        }
        let refused: Vec<String> = fault
            .spec
            .terms
            .ports
            .iter()
            .filter(|port| !self.ports.is_empty() && !self.ports.contains(port))
            .map(u16::to_string)
            .collect();
        if !refused.is_empty() {
            return Err(Invalid {
                reason: PORT_NOT_ALLOWED,
                message: format!(
                    "spec.ports: {} not allowed: this installation allows only ports {} (chart value allowedPorts)",
                    refused.join(", "),
                    listed(&self.ports)
                ),
            });
        }
        Ok(())
    }
}

/// "a, b, c".
fn listed<T: ToString>(items: &BTreeSet<T>) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::tests::fault;

    fn rails(namespaces: &[&str], ports: &[u16]) -> GuardRails {
        GuardRails {
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            ports: ports.iter().copied().collect(),
        }
    }

    #[test]
    fn empty_rails_restrict_nothing() {
        let mut any = fault("All", None);
        any.spec.terms.ports = vec![22, 6443];
        assert_eq!(GuardRails::default().check(&any), Ok(()));
    }

    #[test]
    fn a_fault_outside_the_namespaces_is_refused_naming_them() {
        let f = fault("All", None);
        let namespace = f.namespace().unwrap();
        assert_eq!(rails(&[&namespace, "other"], &[]).check(&f), Ok(()));
        let refused = rails(&["kafka-prod", "kafka-staging"], &[]).check(&f);
        assert_eq!(
            refused,
            Err(Invalid {
                reason: NAMESPACE_NOT_ALLOWED,
                message: format!(
                    "KafkaFaults in namespace {namespace} are not honoured: this installation honours them only in kafka-prod, kafka-staging (chart value faultNamespaces)"
                ),
            })
        );
    }

    #[test]
    fn a_fault_naming_a_port_not_allowed_is_refused_naming_it() {
        let mut f = fault("All", None);
        f.spec.terms.ports = vec![9092, 22, 6443];
        let refused = rails(&[], &[9093, 9092]).check(&f).unwrap_err();
        assert_eq!(refused.reason, PORT_NOT_ALLOWED);
        assert_eq!(
            refused.message,
            "spec.ports: 22, 6443 not allowed: this installation allows only ports 9092, 9093 (chart value allowedPorts)"
        );
        f.spec.terms.ports = vec![9093];
        assert_eq!(rails(&[], &[9092, 9093]).check(&f), Ok(()));
    }
}
