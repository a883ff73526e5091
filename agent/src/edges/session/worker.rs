//! One injection being enforced: a [`Session`] on an OS thread of its own (capture, `setns`
//! and `iptables-restore` all block), which the node agent starts, reads and stops. The
//! worker holds the pod's namespace by the descriptor the agent opened when it started it:
//! the agent resolves the pod's namespace again on every reconcile, and a new one (another
//! inode) gets a new worker, but this one always acts where it started.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_shock_agent::assignment::Placement;

use crate::edges::enforcer::Enforcer;
use crate::edges::netns::Netns;
use crate::edges::session::{Log, Removal, Session, SessionSpec, SessionStats, remove_fault};

/// How often the thread copies its session's numbers out for the node agent.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// What the thread has done so far, as the node agent sees it.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The rules are in place.
    pub installed: bool,
    /// The thread has ended (rules removed, or never installed).
    pub finished: bool,
    pub stats: SessionStats,
    /// Why the thread ended early, or why removing failed.
    pub error: Option<String>,
    /// How long removing the rules took, once done.
    pub removal: Option<Duration>,
    /// When the thread ended.
    pub ended: Option<Instant>,
}

struct Shared {
    stop: AtomicBool,
    progress: Mutex<Progress>,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

pub struct Worker {
    pub placement: Placement,
    install_reported: AtomicBool,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What a worker runs: the session to start and when it must end.
pub struct Task {
    pub spec: SessionSpec,
    /// When the rules must go even if nobody says so (the injection's `expireTime`).
    pub until: Option<Instant>,
}

impl Worker {
    /// Starts `task` in the namespace `netns` (the one `placement` names, opened).
    pub fn start(
        placement: Placement,
        netns: Netns,
        task: Task,
        log: Log,
    ) -> std::io::Result<Worker> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            progress: Mutex::new(Progress::default()),
        });
        let thread = {
            let shared = shared.clone();
            let netns = Arc::new(netns);
            std::thread::Builder::new()
                .name(format!("inject-{}", task.spec.name))
                .spawn(move || enforce(&shared, &netns, task, log))?
        };
        Ok(Worker {
            placement,
            install_reported: AtomicBool::new(false),
            shared,
            thread: Some(thread),
        })
    }

    /// True the first time it is asked after the rules went in, so the install time is
    /// counted once per session.
    pub fn first_report_of_install(&self, progress: &Progress) -> bool {
        progress.installed && !self.install_reported.swap(true, Ordering::Relaxed)
    }

    pub fn progress(&self) -> Progress {
        self.shared
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the session, waits for its rules to be removed, and says how it ended. Blocks
    /// for one capture wait plus the removal; call it off the async runtime.
    pub fn stop(mut self) -> Progress {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.progress()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: start the session, step it until told to stop or `until`, remove its rules.
fn enforce(shared: &Shared, netns: &Arc<Netns>, task: Task, log: Log) {
    let Task { spec, until } = task;
    let id = spec.plan.id().to_owned();
    let mut session = match Session::start(netns, spec, |_| false, log) {
        Ok(session) => session,
        Err(error) => {
            shared.update(|progress| {
                progress.error = Some(format!("{error:#}"));
                progress.finished = true;
                progress.ended = Some(Instant::now());
            });
            return;
        }
    };
    shared.update(|progress| {
        progress.installed = true;
        progress.stats = session.stats().clone();
    });
    let mut published = Instant::now();
    let mut failure = None;
    while !shared.stop.load(Ordering::Relaxed) && until.is_none_or(|until| Instant::now() < until) {
        if let Err(error) = session.step() {
            failure = Some(format!("{error:#}"));
            break;
        }
        if published.elapsed() >= PUBLISH_EVERY {
            published = Instant::now();
            shared.update(|progress| progress.stats = session.stats().clone());
        }
    }
    let removal = session.stop();
    drop(session);
    shared.update(|progress| {
        progress.stats.rules_installed = 0;
        progress.installed = false;
        progress.finished = true;
        progress.ended = Some(Instant::now());
        match removal {
            Ok(Removal { took, .. }) => {
                progress.removal = Some(took);
                progress.error = failure;
            }
            Err(error) => {
                progress.error = Some(format!(
                    "{}removing rules of {id}: {error:#}",
                    failure.map(|f| format!("{f}; ")).unwrap_or_default()
                ));
            }
        }
    });
}

/// Removes every chain of rule id `id` from the namespace at `netns` (opened once for it); for
/// injections this agent holds no worker for (it restarted, or the pod moved namespace).
pub fn remove_leftovers(netns: &Path, id: &str) -> anyhow::Result<Removal> {
    let enforcer = Enforcer::new(Arc::new(Netns::open(netns)?))?;
    remove_fault(&enforcer, id)
}
