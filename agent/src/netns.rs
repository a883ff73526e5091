//! Naming and entering network namespaces. Entering happens on a dedicated OS thread, never
//! on a shared or async worker thread, because `setns` changes the namespace of the calling
//! thread only and nothing else may run there afterwards by accident.

use std::fs::File;
use std::path::{Path, PathBuf};

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
}

/// Where a command-line namespace points: a name from `ip netns`, a path, or a process's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsTarget {
    Named(String),
    Path(PathBuf),
    Process(u32),
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

    /// The namespace file, checked to exist.
    pub fn path(&self) -> Result<PathBuf, NetnsError> {
        let (path, missing) = match self {
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
