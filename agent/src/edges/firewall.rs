//! Running iptables inside a target network namespace: `iptables-save` to read what is there,
//! `iptables-restore --noflush` to apply one batch. Commands are spawned through `nsenter
//! --net=/proc/<our pid>/fd/<n>`, the descriptor we hold the namespace by, with an argument
//! vector, never through a shell, and the batch goes in on stdin, so nothing a user wrote can
//! become a command. Each runs in a process group of its own, so a Ctrl-C at the terminal
//! reaches kafka-shock (which then removes its rules) but never kills an iptables-restore
//! half-way. The namespace's backend (nf_tables or legacy) is detected once and used for every
//! call, as kube-proxy does.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;

use kafka_shock_agent::rules::Family;

use crate::edges::netns::Netns;

/// Which kernel interface the namespace's rules live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

/// Why iptables could not be run or refused a batch.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run {program}: {source} (is iptables installed?)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// iptables in one network namespace.
#[derive(Debug, Clone)]
pub struct Firewall {
    netns: Arc<Netns>,
    backend: Backend,
}

fn program(family: Family, backend: Backend, tool: &str) -> String {
    let base = match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    };
    let flavour = match backend {
        Backend::Nft => "nft",
        Backend::Legacy => "legacy",
    };
    format!("{base}-{flavour}-{tool}")
}

/// Counts rules and our own chains in an `iptables-save` text: the backend the namespace
/// already uses is the one holding rules.
fn weight(save: &str) -> (usize, usize) {
    let ours = save
        .lines()
        .filter(|line| line.starts_with(":KSHOCK-"))
        .count();
    let rules = save.lines().filter(|line| line.starts_with("-A ")).count();
    (ours, rules)
}

impl Firewall {
    /// iptables for the namespace `netns`, with the backend that namespace already uses (our
    /// chains first, then any rules; nf_tables when it is empty).
    pub fn detect(netns: &Arc<Netns>) -> Result<Firewall, FirewallError> {
        let probe = |backend| Firewall {
            netns: netns.clone(),
            backend,
        };
        let nft = probe(Backend::Nft).save(Family::V4).ok();
        // Reading legacy tables creates them in the namespace, which then makes every nft
        // iptables call warn; look only when the namespace already has legacy tables.
        let legacy = probe(Backend::Legacy)
            .has_legacy_tables()
            .then(|| probe(Backend::Legacy).save(Family::V4).ok())
            .flatten();
        let backend = match (nft, legacy) {
            (Some(nft), Some(legacy)) if weight(&legacy) > weight(&nft) => Backend::Legacy,
            (Some(_), _) => Backend::Nft,
            (None, Some(_)) => Backend::Legacy,
            (None, None) => {
                // Report the nf_tables failure, the default backend's.
                probe(Backend::Nft).save(Family::V4)?;
                Backend::Nft
            }
        };
        Ok(probe(backend))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns.fd_path().display()))
            .arg(program)
            .process_group(0);
        command
    }

    fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, FirewallError> {
        let spawn_error = |source| FirewallError::Spawn {
            program: program.to_owned(),
            source,
        };
        let mut child = self
            .command(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).map_err(spawn_error)?;
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(FirewallError::Failed {
                program: program.to_owned(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// Whether the namespace has any legacy (x_tables) IPv4 table, from its
    /// /proc/net/ip_tables_names, which lists them without creating any.
    fn has_legacy_tables(&self) -> bool {
        self.run("cat", &["/proc/net/ip_tables_names"], None)
            .is_ok_and(|names| !names.trim().is_empty())
    }

    /// Every table the namespace has, as `iptables-save` prints them (a table never used,
    /// like nat before a Proxy fault, is absent rather than created).
    pub fn save(&self, family: Family) -> Result<String, FirewallError> {
        self.run(&program(family, self.backend, "save"), &[], None)
    }

    /// Applies one batch (of one table) atomically, leaving every rule it does not name alone.
    pub fn restore(&self, family: Family, batch: &str) -> Result<(), FirewallError> {
        self.run(
            &program(family, self.backend, "restore"),
            &["--noflush"],
            Some(batch),
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_tool_of_each_family_and_backend() {
        assert_eq!(
            program(Family::V4, Backend::Nft, "save"),
            "iptables-nft-save"
        );
        assert_eq!(
            program(Family::V6, Backend::Legacy, "restore"),
            "ip6tables-legacy-restore"
        );
    }

    #[test]
    fn our_chains_outweigh_other_rules() {
        let ours = ":KSHOCK-AB - [0:0]\n-A INPUT -j KSHOCK-AB\n";
        let busy = "-A INPUT -j ACCEPT\n-A INPUT -j ACCEPT\n-A FORWARD -j DROP\n";
        assert!(weight(ours) > weight(busy));
        assert!(weight(busy) > weight(""));
    }
}
