//! Finding a pod's network namespace from what `/proc` says about each namespace: the pod UIDs
//! in its member processes' cgroup paths, and the namespace's local addresses. This works with
//! any container runtime (and with the lab's plain namespaces), because it needs only the
//! kernel's view. Parsing and choosing are pure; the binary's `netns` module reads the files.
//!
//! The machine's own namespace (pid 1's, or the caller's) is never chosen for a pod unless the
//! caller allows it: a `hostNetwork` pod's processes sit there, and a fault installed there acts
//! on the node itself (its SSH, its kubelet, the API server's port).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the kubelet's cgroup drivers name the pod-level cgroup after.
const KUBEPODS: &str = "kubepods";

/// The pod a namespace is looked for: by its UID first, by its IP else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodKey {
    pub uid: Option<String>,
    pub ip: Option<IpAddr>,
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.uid, self.ip) {
            (Some(uid), Some(ip)) => write!(f, "pod UID {uid} or address {ip}"),
            (Some(uid), None) => write!(f, "pod UID {uid}"),
            (None, Some(ip)) => write!(f, "address {ip}"),
            (None, None) => write!(f, "no pod UID or address"),
        }
    }
}

/// One network namespace as scanned: its inode, the process it was read through, the pod UIDs
/// in the cgroups of the processes in it (a pod's own namespace holds its one UID; the node's
/// holds those of every `hostNetwork` pod), and the namespace's local addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub inode: u64,
    pub pid: u32,
    pub pod_uids: BTreeSet<String>,
    pub addresses: BTreeSet<IpAddr>,
}

/// How a namespace was matched to its pod: by the pod UID in a member process's cgroup (the
/// exact key, as the kubelet names pod cgroups), or by the pod's address (the fallback, for
/// namespaces no kubelet made). The agent logs it when it starts enforcing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FoundBy {
    PodUid,
    /// The weaker claim, so that a default never says more than was checked.
    #[default]
    PodIp,
}

impl fmt::Display for FoundBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FoundBy::PodUid => "pod UID in cgroup",
            FoundBy::PodIp => "pod IP",
        })
    }
}

impl Candidate {
    /// How this namespace, chosen by [`pick`] for `wanted`, matched it.
    pub fn found_by(&self, wanted: &PodKey) -> FoundBy {
        let by_uid = wanted.uid.as_deref().is_some_and(|uid| {
            self.pod_uids
                .iter()
                .any(|found| found.eq_ignore_ascii_case(uid))
        });
        if by_uid {
            FoundBy::PodUid
        } else {
            FoundBy::PodIp
        }
    }
}

/// The machine's own network namespaces (by inode: pid 1's and the caller's), and whether a
/// pod found in one of them may be chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNetns {
    pub inodes: BTreeSet<u64>,
    pub allowed: bool,
}

impl HostNetns {
    /// Whether the namespace of `inode` is one of the machine's own.
    pub fn contains(&self, inode: u64) -> bool {
        self.inodes.contains(&inode)
    }

    /// Whether a fault may not be installed in the namespace of `inode`: it is the machine's
    /// own, and that is not allowed.
    pub fn refuses(&self, inode: u64) -> bool {
        self.contains(inode) && !self.allowed
    }
}

/// Why no single namespace could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodNetnsError {
    #[error("no network namespace carries {wanted} ({scanned} namespaces scanned)")]
    NotFound { wanted: PodKey, scanned: usize },
    #[error(
        "{} network namespaces match {wanted} (through processes {pids:?}); name one with --pid",
        pids.len()
    )]
    Ambiguous { wanted: PodKey, pids: Vec<u32> },
    #[error(
        "{wanted} is in the node's own network namespace (through process {pid}): a hostNetwork pod, where a fault would act on the node itself"
    )]
    HostNamespace { wanted: PodKey, pid: u32 },
}

/// The pod UID in a `/proc/<pid>/cgroup` text, for both kubelet cgroup drivers and both cgroup
/// versions: cgroupfs paths hold `.../kubepods/<qos>/pod<uid>/...`, systemd paths hold
/// `kubepods-<qos>-pod<uid with _ for ->.slice`.
pub fn pod_uid_from_cgroup(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .filter(|path| path.contains(KUBEPODS))
        .flat_map(|path| path.split('/'))
        .find_map(pod_uid_of_component)
}

/// The pod UID one cgroup path component names, if it is a pod-level cgroup.
fn pod_uid_of_component(component: &str) -> Option<String> {
    let uid = match component.strip_suffix(".slice") {
        Some(slice) if slice.contains(KUBEPODS) => slice
            .rsplit('-')
            .next()
            .and_then(|last| last.strip_prefix("pod"))?
            .replace('_', "-"),
        Some(_) => return None,
        None => component.strip_prefix("pod")?.to_owned(),
    };
    let looks_like_uid = !uid.is_empty() && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    looks_like_uid.then(|| uid.to_ascii_lowercase())
}

/// The namespace's own IPv4 addresses in a `/proc/<pid>/net/fib_trie` text: the leaves whose
/// entry is "/32 host LOCAL" (the same leaf shows in both the Main and Local tables).
pub fn ipv4_local_addresses(fib_trie: &str) -> BTreeSet<Ipv4Addr> {
    let mut leaf = None;
    let mut addresses = BTreeSet::new();
    for line in fib_trie.lines().map(str::trim) {
        if let Some(address) = line.strip_prefix("|-- ") {
            leaf = address.parse::<Ipv4Addr>().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(address) = leaf
        {
            addresses.insert(address);
        }
    }
    addresses
}

/// The namespace's IPv6 addresses in a `/proc/<pid>/net/if_inet6` text, whose first column is
/// the address as 32 hex digits.
pub fn ipv6_addresses(if_inet6: &str) -> BTreeSet<Ipv6Addr> {
    if_inet6
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|hex| hex.len() == 32)
        .filter_map(|hex| u128::from_str_radix(hex, 16).ok())
        .map(Ipv6Addr::from)
        .collect()
}

/// Chooses the pod's namespace: the one holding a process of the pod's UID, else the one
/// holding the pod IP. The machine's own namespaces never match by IP, because the bridge to
/// the pods may carry an address a pod's could be mistaken for; found by UID (a
/// `hostNetwork` pod), one is refused unless `host.allowed`.
pub fn pick<'a>(
    candidates: &'a [Candidate],
    wanted: &PodKey,
    host: &HostNetns,
) -> Result<&'a Candidate, PodNetnsError> {
    let by_uid = |candidate: &Candidate| {
        wanted.uid.as_deref().is_some_and(|uid| {
            candidate
                .pod_uids
                .iter()
                .any(|found| found.eq_ignore_ascii_case(uid))
        })
    };
    let by_ip = |candidate: &Candidate| {
        !host.contains(candidate.inode)
            && wanted
                .ip
                .is_some_and(|ip| candidate.addresses.contains(&ip))
    };
    let by_uid: Vec<&Candidate> = candidates.iter().filter(|c| by_uid(c)).collect();
    let matches = if by_uid.is_empty() {
        candidates.iter().filter(|c| by_ip(c)).collect()
    } else {
        by_uid
    };
    match matches.as_slice() {
        [only] if host.refuses(only.inode) => Err(PodNetnsError::HostNamespace {
            wanted: wanted.clone(),
            pid: only.pid,
        }),
        [only] => Ok(only),
        [] => Err(PodNetnsError::NotFound {
            wanted: wanted.clone(),
            scanned: candidates.len(),
        }),
        several => Err(PodNetnsError::Ambiguous {
            wanted: wanted.clone(),
            pids: several.iter().map(|c| c.pid).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "3f1c2b4a-9d8e-4f7a-b6c5-1e2d3c4b5a69";

    #[test]
    fn cgroupfs_v1_path() {
        let cgroup = format!(
            "12:pids:/kubepods/burstable/pod{UID}/0123abcd\n\
             11:memory:/kubepods/burstable/pod{UID}/0123abcd\n\
             0::/\n"
        );
        assert_eq!(pod_uid_from_cgroup(&cgroup).as_deref(), Some(UID));
    }

    #[test]
    fn cgroupfs_guaranteed_v2_path() {
        let cgroup = format!("0::/kubepods/pod{UID}/0123abcd\n");
        assert_eq!(pod_uid_from_cgroup(&cgroup).as_deref(), Some(UID));
    }

    #[test]
    fn systemd_v2_path() {
        let cgroup = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-0123abcd.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid_from_cgroup(&cgroup).as_deref(), Some(UID));
    }

    #[test]
    fn systemd_guaranteed_v1_path() {
        let cgroup = format!(
            "3:cpu,cpuacct:/kubepods.slice/kubepods-pod{}.slice/docker-0123abcd.scope\n",
            UID.replace('-', "_")
        );
        assert_eq!(pod_uid_from_cgroup(&cgroup).as_deref(), Some(UID));
    }

    #[test]
    fn no_pod_outside_kubepods() {
        for cgroup in [
            "0::/\n",
            "0::/system.slice/containerd.service\n",
            "0::/kubepods.slice/kubepods-burstable.slice\n",
            "4:memory:/process_api/pod49a2c7c4\n",
            "0::/user.slice/user-pod1.slice\n",
            "",
        ] {
            assert_eq!(pod_uid_from_cgroup(cgroup), None, "{cgroup:?}");
        }
    }

    const FIB_TRIE: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 10.77.0.0/24 2 0 2
        |-- 10.77.0.0
           /24 link UNICAST
        |-- 10.77.0.11
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
     +-- 10.77.0.0/24 2 0 2
        |-- 10.77.0.11
           /32 host LOCAL
        |-- 10.77.0.255
           /32 link BROADCAST
";

    #[test]
    fn fib_trie_local_host_addresses_only() {
        let expected: BTreeSet<Ipv4Addr> = ["10.77.0.11", "127.0.0.1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(ipv4_local_addresses(FIB_TRIE), expected);
    }

    #[test]
    fn if_inet6_addresses() {
        let text = "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n\
                    00000000000000000000000000000001 01 80 10 80       lo\n\
                    fd000000000000000000000000000002 04 40 00 82     eth0\n\
                    garbage\n";
        let expected: BTreeSet<Ipv6Addr> = ["fe80::fc:ff:fe00:1", "::1", "fd00::2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(ipv6_addresses(text), expected);
    }

    fn candidate(inode: u64, pid: u32, pod_uids: &[&str], addresses: &[&str]) -> Candidate {
        Candidate {
            inode,
            pid,
            pod_uids: pod_uids.iter().map(|uid| uid.to_string()).collect(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    fn namespaces() -> Vec<Candidate> {
        vec![
            candidate(1, 1, &[], &["127.0.0.1", "10.77.0.1"]),
            candidate(2, 40, &[UID], &["127.0.0.1", "10.244.0.5"]),
            candidate(3, 70, &[], &["127.0.0.1", "10.77.0.11", "fd00::11"]),
        ]
    }

    /// The machine's own namespace is inode 1 (pid 1's), and no pod may be found in it.
    fn host() -> HostNetns {
        HostNetns {
            inodes: [1].into(),
            allowed: false,
        }
    }

    fn key(uid: Option<&str>, ip: Option<&str>) -> PodKey {
        PodKey {
            uid: uid.map(str::to_owned),
            ip: ip.map(|ip| ip.parse().unwrap()),
        }
    }

    #[test]
    fn picks_by_pod_uid_first() {
        let all = namespaces();
        let wanted = key(Some(&UID.to_uppercase()), Some("10.77.0.11"));
        assert_eq!(pick(&all, &wanted, &host()).unwrap().pid, 40);
    }

    #[test]
    fn picks_by_pod_uid_read_from_fixture_texts() {
        let read = |inode, pid, cgroup: &str, fib_trie: &str| Candidate {
            inode,
            pid,
            pod_uids: pod_uid_from_cgroup(cgroup).into_iter().collect(),
            addresses: ipv4_local_addresses(fib_trie)
                .into_iter()
                .map(IpAddr::V4)
                .collect(),
        };
        let pod_cgroup = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-0123abcd.scope\n",
            UID.replace('-', "_")
        );
        let all = [
            read(1, 1, "0::/init.scope\n", FIB_TRIE),
            read(2, 40, &pod_cgroup, FIB_TRIE),
        ];
        assert_eq!(pick(&all, &key(Some(UID), None), &host()).unwrap().pid, 40);
    }

    #[test]
    fn says_how_it_found_the_namespace() {
        let all = namespaces();
        let by_uid = key(Some(&UID.to_uppercase()), Some("10.77.0.11"));
        assert_eq!(
            pick(&all, &by_uid, &host()).unwrap().found_by(&by_uid),
            FoundBy::PodUid
        );
        let by_ip = key(
            Some("00000000-0000-0000-0000-000000000000"),
            Some("10.77.0.11"),
        );
        assert_eq!(
            pick(&all, &by_ip, &host()).unwrap().found_by(&by_ip),
            FoundBy::PodIp
        );
        assert_eq!(FoundBy::PodUid.to_string(), "pod UID in cgroup");
    }

    #[test]
    fn picks_by_ip_when_no_uid_matches() {
        let all = namespaces();
        let other_uid = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            pick(&all, &key(Some(other_uid), Some("10.77.0.11")), &host())
                .unwrap()
                .pid,
            70
        );
        assert_eq!(
            pick(&all, &key(None, Some("fd00::11")), &host())
                .unwrap()
                .pid,
            70
        );
    }

    #[test]
    fn the_host_never_matches_by_ip() {
        let all = namespaces();
        let wanted = key(None, Some("10.77.0.1"));
        assert_eq!(
            pick(&all, &wanted, &host()),
            Err(PodNetnsError::NotFound { wanted, scanned: 3 })
        );
    }

    #[test]
    fn loopback_is_ambiguous() {
        let all = namespaces();
        let wanted = key(None, Some("127.0.0.1"));
        assert_eq!(
            pick(&all, &wanted, &host()),
            Err(PodNetnsError::Ambiguous {
                wanted,
                pids: vec![40, 70]
            })
        );
    }

    #[test]
    fn unknown_uid_names_what_was_looked_for() {
        let all = namespaces();
        let error = pick(&all, &key(Some("abc"), None), &host()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no network namespace carries pod UID abc (3 namespaces scanned)"
        );
    }

    #[test]
    fn a_pod_whose_processes_sit_in_the_host_namespace_is_refused_unless_allowed() {
        const HOST_POD: &str = "7d2e5c1a-0b3f-4e8d-9c6a-5f4e3d2c1b0a";
        // A hostNetwork pod: its processes are in the node's namespace (inode 1, here read
        // through pid 1), next to other host-network pods'. The node's namespace is also the
        // agent's own (inode 5 in a pod of its own, when the agent runs without hostNetwork).
        let all = vec![
            candidate(1, 1, &["0e1d2c3b-other-host-pod", HOST_POD], &["10.77.0.1"]),
            candidate(2, 40, &[UID], &["10.244.0.5"]),
            candidate(5, 90, &[], &["10.244.0.9"]),
        ];
        let wanted = key(Some(HOST_POD), Some("10.77.0.1"));
        let error = pick(&all, &wanted, &host()).unwrap_err();
        assert_eq!(
            error,
            PodNetnsError::HostNamespace {
                wanted: wanted.clone(),
                pid: 1
            }
        );
        assert_eq!(
            error.to_string(),
            "pod UID 7d2e5c1a-0b3f-4e8d-9c6a-5f4e3d2c1b0a or address 10.77.0.1 is in the node's own network namespace (through process 1): a hostNetwork pod, where a fault would act on the node itself"
        );
        let allowed = HostNetns {
            allowed: true,
            ..host()
        };
        assert_eq!(pick(&all, &wanted, &allowed).unwrap().inode, 1);
        // The agent's own namespace is the machine's too.
        let agent_pod = "4b3a2918-agent";
        let all = vec![candidate(5, 90, &[agent_pod], &["10.244.0.9"])];
        let own = HostNetns {
            inodes: [1, 5].into(),
            allowed: false,
        };
        assert!(matches!(
            pick(&all, &key(Some(agent_pod), None), &own),
            Err(PodNetnsError::HostNamespace { pid: 90, .. })
        ));
        // Other pods are found as before, whether host targets are allowed or not.
        let all = namespaces();
        for host in [host(), allowed] {
            assert_eq!(pick(&all, &key(Some(UID), None), &host).unwrap().pid, 40);
        }
    }

    #[test]
    fn the_host_never_matches_by_ip_even_when_allowed() {
        let all = namespaces();
        let allowed = HostNetns {
            allowed: true,
            ..host()
        };
        assert!(matches!(
            pick(&all, &key(None, Some("10.77.0.1")), &allowed),
            Err(PodNetnsError::NotFound { .. })
        ));
    }

    #[test]
    fn a_pod_uid_in_two_namespaces_is_ambiguous() {
        let all = vec![candidate(2, 40, &[UID], &[]), candidate(3, 70, &[UID], &[])];
        assert!(matches!(
            pick(&all, &key(Some(UID), None), &host()),
            Err(PodNetnsError::Ambiguous { .. })
        ));
    }
}
