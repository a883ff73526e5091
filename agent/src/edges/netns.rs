//! Naming, finding and holding network namespaces. A namespace is opened once and held by its
//! file descriptor ([`Netns`]): the descriptor keeps it alive, so a fault's rules can still be
//! removed after every process in it has exited, and it pins it, so a pid reused by another
//! process can never redirect a rule. Everything that acts in a namespace enters it through
//! that descriptor: `setns` on a dedicated OS thread (never on a shared or async worker thread,
//! because `setns` changes the namespace of the calling thread only and nothing else may run
//! there afterwards by accident), or `nsenter --net=/proc/<our pid>/fd/<n>` for iptables.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kafka_shock_agent::assignment::pod_netns::{
    self, Candidate, FoundBy, HostNetns, PodKey, PodNetnsError,
};
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
    #[error(
        "the network namespace at {path} changed while it was being opened (inode {found}, not {wanted}); try again"
    )]
    Changed {
        path: PathBuf,
        wanted: u64,
        found: u64,
    },
    #[error("cannot list /proc to find a pod's network namespace: {0}")]
    ScanProc(std::io::Error),
    #[error(transparent)]
    Pod(#[from] PodNetnsError),
    #[error(
        "{} is the host's own network namespace (pid 1's, or this process's): a fault there acts on the machine itself, its SSH and API server ports included; pass --allow-host-netns if that is what you mean",
        path.display()
    )]
    HostNamespace { path: PathBuf },
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

    /// Opens the namespace once; a pod's is found by scanning `/proc` first (also a
    /// `hostNetwork` pod's, the node's own: whoever acts there checks [`refuse_host_namespace`]).
    pub fn open(&self) -> Result<Netns, NetnsError> {
        let (path, missing) = match self {
            NetnsTarget::PodUid(uid) => {
                return open_pod(&PodKey {
                    uid: Some(uid.clone()),
                    ip: None,
                });
            }
            NetnsTarget::PodIp(ip) => {
                return open_pod(&PodKey {
                    uid: None,
                    ip: Some(*ip),
                });
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
        Netns::open(&path).map_err(|error| if error.vanished() { missing } else { error })
    }
}

/// A network namespace held open by its file descriptor (see the module's comment).
#[derive(Debug)]
pub struct Netns {
    file: File,
    inode: u64,
    /// What it was opened as, for messages.
    origin: PathBuf,
}

impl Netns {
    /// Opens the namespace file at `path` (`/run/netns/NAME`, `/proc/PID/ns/net`, ...).
    pub fn open(path: &Path) -> Result<Netns, NetnsError> {
        let open_error = |source| NetnsError::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(open_error)?;
        let inode = file.metadata().map_err(open_error)?.ino();
        Ok(Netns {
            file,
            inode,
            origin: path.to_owned(),
        })
    }

    /// Opens `path`, which was resolved to the namespace of inode `inode`: fails if a process
    /// exited and its pid was reused in between.
    pub fn open_expecting(path: &Path, inode: u64) -> Result<Netns, NetnsError> {
        let netns = Netns::open(path)?;
        if netns.inode == inode {
            Ok(netns)
        } else {
            Err(NetnsError::Changed {
                path: path.to_owned(),
                wanted: inode,
                found: netns.inode,
            })
        }
    }

    /// This process's own namespace.
    pub fn current() -> Result<Netns, NetnsError> {
        Netns::open(Path::new("/proc/self/ns/net"))
    }

    /// The namespace's inode: two descriptors with the same inode hold the same namespace.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// What it was opened as.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// A path other processes (nsenter) open the same namespace by: this process's descriptor,
    /// which stays valid while we hold it, whatever happens to the process that was in it.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.file.as_raw_fd()
        ))
    }

    /// Moves the calling thread into the namespace. Call it only on a thread made for that
    /// purpose.
    pub fn enter_current_thread(&self) -> Result<(), NetnsError> {
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            path: self.origin.clone(),
            source,
        })
    }
}

impl NetnsError {
    /// Whether the namespace file is gone (its process exited, its name was deleted): not a
    /// failure for a scan of every namespace, which found it a moment earlier.
    pub fn vanished(&self) -> bool {
        matches!(
            self,
            NetnsError::Open { source, .. }
                if matches!(source.kind(), std::io::ErrorKind::NotFound)
                    || source.raw_os_error() == Some(nix::libc::ESRCH)
        )
    }
}

/// `/proc/<pid>/ns/net` of the one namespace that belongs to the pod `wanted` (by UID first,
/// by address else), its inode, which changes when the pod's sandbox is recreated, and which of
/// the two found it. The node's own namespace (a `hostNetwork` pod's) is refused unless
/// `allow_host`.
pub fn find_pod_namespace(
    wanted: &PodKey,
    allow_host: bool,
) -> Result<(PathBuf, u64, FoundBy), NetnsError> {
    let (path, found_by) = find_pod(wanted, allow_host)?;
    let inode = inode_of(&path).map_err(NetnsError::ScanProc)?;
    Ok((path, inode, found_by))
}

/// The inode of the namespace file at `path`: the namespace's identity.
pub fn inode_of(path: &Path) -> std::io::Result<u64> {
    std::fs::metadata(path).map(|metadata| metadata.ino())
}

/// The inodes of the machine's own network namespaces: pid 1's and this process's (they differ
/// when the agent runs in a pod of its own, with hostPID and without hostNetwork). pid 1 is
/// left out when it is hidden from us (a sandbox without hostPID).
pub fn host_namespaces() -> Result<BTreeSet<u64>, NetnsError> {
    let own = namespace_inode("self").map_err(NetnsError::ScanProc)?;
    Ok(namespace_inode("1").ok().into_iter().chain([own]).collect())
}

/// Refuses `netns` when it is the machine's own (pid 1's or ours) and `allow_host` is not set:
/// whoever installs a fault checks this, whatever flag named the namespace (`--pid 1`,
/// `--netns /proc/1/ns/net`, a `hostNetwork` pod's UID or IP).
pub fn refuse_host_namespace(netns: &Netns, allow_host: bool) -> Result<(), NetnsError> {
    let host = HostNetns {
        inodes: host_namespaces()?,
        allowed: allow_host,
    };
    if host.refuses(netns.inode()) {
        return Err(NetnsError::HostNamespace {
            path: netns.origin().to_owned(),
        });
    }
    Ok(())
}

/// Every network namespace file of the machine, one per namespace (deduplicated by inode):
/// this process's, the named ones (`/run/netns`, even with no process in them), and each
/// process's. Where `clean --all` removes every chain of ours and the node agent sweeps its
/// orphans; entries that vanish while being read are skipped, and one that vanishes before it
/// is opened says so ([`NetnsError::vanished`]).
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

/// The one namespace that belongs to the pod `wanted`, opened.
fn open_pod(wanted: &PodKey) -> Result<Netns, NetnsError> {
    let (path, inode, _) = find_pod_namespace(wanted, true)?;
    Netns::open_expecting(&path, inode)
}

/// `/proc/<pid>/ns/net` of the one namespace that belongs to the pod `wanted`, and how.
fn find_pod(wanted: &PodKey, allow_host: bool) -> Result<(PathBuf, FoundBy), NetnsError> {
    let host = HostNetns {
        inodes: host_namespaces()?,
        allowed: allow_host,
    };
    let candidates = scan_namespaces()?;
    let pod = pod_netns::pick(&candidates, wanted, &host)?;
    Ok((
        PathBuf::from(format!("/proc/{}/ns/net", pod.pid)),
        pod.found_by(wanted),
    ))
}

fn namespace_inode(process: impl std::fmt::Display) -> std::io::Result<u64> {
    std::fs::metadata(format!("/proc/{process}/ns/net")).map(|metadata| metadata.ino())
}

/// Every network namespace some process is in, each read through its lowest pid, with the pod
/// UIDs of all its processes (the node's namespace holds every `hostNetwork` pod's). Processes
/// that exit while being read are skipped; their namespace is read through another if any.
fn scan_namespaces() -> Result<Vec<Candidate>, NetnsError> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .map_err(NetnsError::ScanProc)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    for pid in pids {
        let Ok(inode) = namespace_inode(pid) else {
            continue;
        };
        let pod_uid = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|cgroup| pod_netns::pod_uid_from_cgroup(&cgroup));
        let candidate = match index.get(&inode) {
            Some(&at) => &mut candidates[at],
            None => {
                let Some(candidate) = read_candidate(pid, inode) else {
                    continue;
                };
                index.insert(inode, candidates.len());
                candidates.push(candidate);
                candidates.last_mut().expect("just pushed")
            }
        };
        candidate.pod_uids.extend(pod_uid);
    }
    Ok(candidates)
}

/// What `/proc/<pid>` says about its namespace's addresses, or `None` when the process is gone.
/// A missing `if_inet6` (IPv6 disabled) only means no IPv6 addresses.
fn read_candidate(pid: u32, inode: u64) -> Option<Candidate> {
    let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}"));
    let fib_trie = read("net/fib_trie").ok()?;
    let if_inet6 = read("net/if_inet6").unwrap_or_default();
    let ipv4 = pod_netns::ipv4_local_addresses(&fib_trie);
    let ipv6 = pod_netns::ipv6_addresses(&if_inet6);
    Some(Candidate {
        inode,
        pid,
        pod_uids: BTreeSet::new(),
        addresses: ipv4
            .into_iter()
            .map(IpAddr::V4)
            .chain(ipv6.into_iter().map(IpAddr::V6))
            .collect(),
    })
}
