//! The network namespace a command acts in, named the same way by every command: `--netns`,
//! `--pid`, `--pod-uid` or `--pod-ip` (at most one). Declared once here and flattened into
//! each command's flags. The flags are resolved once, to a namespace held by its descriptor,
//! for the whole run: a process that exits, or a pid reused, changes nothing afterwards.

use std::net::IpAddr;

use clap::Args;

use crate::edges::netns::{Netns, NetnsError, NetnsTarget};

/// Which network namespace: at most one of these flags.
/// A command's own alternatives to them (`sniff --pcap`, `clean --all`) conflict with
/// [`TargetArgs::IDS`].
#[derive(Args, Debug, Clone, Default)]
#[group(skip)]
pub struct TargetArgs {
    /// The network namespace: a name from `ip netns` or a path.
    #[arg(long, value_name = "NAME|PATH", group = "target")]
    pub netns: Option<String>,
    /// The network namespace of this process (e.g. the broker's JVM).
    #[arg(long, value_name = "PID", group = "target")]
    pub pid: Option<u32>,
    /// The network namespace of the pod with this UID (found in /proc).
    #[arg(long, value_name = "UID", group = "target")]
    pub pod_uid: Option<String>,
    /// The network namespace of the pod with this IP (found in /proc).
    #[arg(long, value_name = "IP", group = "target")]
    pub pod_ip: Option<IpAddr>,
}

impl TargetArgs {
    /// The argument ids of the flags, for `conflicts_with_all`.
    pub const IDS: [&str; 4] = ["netns", "pid", "pod_uid", "pod_ip"];

    /// The namespace the flags name, if any.
    pub fn target(&self) -> Option<NetnsTarget> {
        let netns = self.netns.as_deref().map(NetnsTarget::from_arg);
        netns
            .or(self.pid.map(NetnsTarget::Process))
            .or(self.pod_uid.clone().map(NetnsTarget::PodUid))
            .or(self.pod_ip.map(NetnsTarget::PodIp))
    }

    /// The namespace the flags name, opened (a pod's is found in `/proc` first); `None` when
    /// no flag is given.
    pub fn open(&self) -> Result<Option<Netns>, NetnsError> {
        self.target().map(|target| target.open()).transpose()
    }
}
