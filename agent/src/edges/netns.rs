//! Naming and entering network namespaces. Entering happens on a dedicated OS thread, never
//! on a shared or async worker thread, because `setns` changes the namespace of the calling
//! thread only and nothing else may run there afterwards by accident.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kafka_shock_agent::assignment::pod_netns::{self, Candidate, FoundBy, PodKey, PodNetnsError};
use nix::sched::{CloneFlags, setns};

/// Why a namespace could not be named or entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "network namespace {name:?} does not exist ({path} is missing); `ip netns list` shows the named ones"
    )]
    NoSuchNamespace { name: String, path: PathBuf },
    #[error("process {0} does not exist, so it has no network namespace")]
    NoSuchProcess(u32),
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot enter the network namespace {path} (root or CAP_SYS_ADMIN is needed): {source}"
    )]
    Enter { path: PathBuf, source: nix::Error },
    #[error("cannot list /proc to find a pod's network namespace: {0}")]
    ScanProc(std::io::Error),
    #[error(transparent)]
    Pod(#[from] PodNetnsError),
}

/// Where a command-line namespace points: a name from `ip netns`, a path, a process's, or the
/// namespace of a pod found by its UID or IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsTarget {
    Named(String),
    Path(PathBuf),
    Process(u32),
    PodUid(String),
    PodIp(IpAddr),
}

impl NetnsTarget {
    /// `--netns` takes a name (looked up in /run/netns) or a path (anything with a slash).
    pub fn from_arg(arg: &str) -> NetnsTarget {
        if arg.contains('/') {
            NetnsTarget::Path(PathBuf::from(arg))
        } else {
            NetnsTarget::Named(arg.to_owned())
        }
    }

    /// The namespace file, checked to exist; a pod's is found by scanning `/proc`.
    pub fn path(&self) -> Result<PathBuf, NetnsError> {
        let (path, missing) = match self {
            NetnsTarget::PodUid(uid) => {
                return find_pod(&PodKey {
                    uid: Some(uid.clone()),
                    ip: None,
                })
                .map(|(path, _)| path);
            }
            NetnsTarget::PodIp(ip) => {
                return find_pod(&PodKey {
                    uid: None,
                    ip: Some(*ip),
                })
                .map(|(path, _)| path);
            }
            NetnsTarget::Named(name) => {
                let path = Path::new("/run/netns").join(name);
                let error = NetnsError::NoSuchNamespace {
                    name: name.clone(),
                    path: path.clone(),
                };
                (path, error)
            }
            NetnsTarget::Path(path) => {
                let error = NetnsError::NoSuchNamespace {
                    name: path.display().to_string(),
                    path: path.clone(),
                };
                (path.clone(), error)
            }
            NetnsTarget::Process(pid) => (
                PathBuf::from(format!("/proc/{pid}/ns/net")),
                NetnsError::NoSuchProcess(*pid),
            ),
        };
        if path.exists() {
            Ok(path)
        } else {
            Err(missing)
        }
    }
}

/// `/proc/<pid>/ns/net` of the one namespace that belongs to the pod `wanted` (by UID first,
/// by address else), its inode, which changes when the pod's sandbox is recreated, and which of
/// the two found it.
pub fn find_pod_namespace(wanted: &PodKey) -> Result<(PathBuf, u64, FoundBy), NetnsError> {
    let (path, found_by) = find_pod(wanted)?;
    let inode = std::fs::metadata(&path)
        .map_err(NetnsError::ScanProc)?
        .ino();
    Ok((path, inode, found_by))
}

/// Every network namespace file of the machine, one per namespace (deduplicated by inode):
/// this process's, the named ones (`/run/netns`, even with no process in them), and each
/// process's. Where `clean --all` removes every chain of ours and the node agent sweeps its
/// orphans; entries that vanish while being read are skipped.
pub fn every_namespace() -> Vec<PathBuf> {
    let mut by_inode: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut add = |path: PathBuf| {
        if let Ok(metadata) = std::fs::metadata(&path) {
            by_inode.entry(metadata.ino()).or_insert(path);
        }
    };
    add(PathBuf::from("/proc/self/ns/net"));
    for dir in ["/run/netns", "/proc"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if dir == "/proc" {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                {
                    add(path.join("ns/net"));
                }
            } else {
                add(path);
            }
        }
    }
    by_inode.into_values().collect()
}

/// `/proc/<pid>/ns/net` of the one namespace that belongs to the pod `wanted`, and how.
fn find_pod(wanted: &PodKey) -> Result<(PathBuf, FoundBy), NetnsError> {
    // The CLI and the agent run in the host's namespace, so ours stands in for pid 1's when
    // pid 1 is hidden from us (as in a sandbox without hostPID).
    let host_inode = namespace_inode("1")
        .or_else(|_| namespace_inode("self"))
        .map_err(NetnsError::ScanProc)?;
    let candidates = scan_namespaces()?;
    let pod = pod_netns::pick(&candidates, wanted, host_inode)?;
    Ok((
        PathBuf::from(format!("/proc/{}/ns/net", pod.pid)),
        pod.found_by(wanted),
    ))
}

fn namespace_inode(process: impl std::fmt::Display) -> std::io::Result<u64> {
    std::fs::metadata(format!("/proc/{process}/ns/net")).map(|metadata| metadata.ino())
}

/// Every network namespace some process is in, each read through its lowest pid. Processes
/// that exit while being read are skipped; their namespace is read through another if any.
fn scan_namespaces() -> Result<Vec<Candidate>, NetnsError> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map_err(NetnsError::ScanProc)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    for pid in pids {
        let Ok(inode) = namespace_inode(pid) else {
            continue;
        };
        if seen.contains(&inode) {
            continue;
        }
        if let Some(candidate) = read_candidate(pid, inode) {
            seen.insert(inode);
            candidates.push(candidate);
        }
    }
    Ok(candidates)
}

/// What `/proc/<pid>` says about its namespace, or `None` when the process is gone. A missing
/// cgroup or `if_inet6` (IPv6 disabled) only means no pod UID or no IPv6 addresses.
fn read_candidate(pid: u32, inode: u64) -> Option<Candidate> {
    let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}"));
    let fib_trie = read("net/fib_trie").ok()?;
    let if_inet6 = read("net/if_inet6").unwrap_or_default();
    let ipv4 = pod_netns::ipv4_local_addresses(&fib_trie);
    let ipv6 = pod_netns::ipv6_addresses(&if_inet6);
    Some(Candidate {
        inode,
        pid,
        pod_uid: read("cgroup")
            .ok()
            .and_then(|cgroup| pod_netns::pod_uid_from_cgroup(&cgroup)),
        addresses: ipv4
            .into_iter()
            .map(IpAddr::V4)
            .chain(ipv6.into_iter().map(IpAddr::V6))
            .collect(),
    })
}

/// Moves the calling thread into the namespace at `path`. Call it only on a thread made for
/// that purpose.
pub fn enter_current_thread(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_owned(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        path: path.to_owned(),
        source,
    })
}
