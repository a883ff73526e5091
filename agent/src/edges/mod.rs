//! The I/O edges: everything that touches the machine, kept thin so the decisions stay in the
//! library. Each edge reads or writes one thing and hands what it got to the pure core, or
//! carries out what the core decided:
//! - [`capture`]: packets from a pcap file or a live AF_PACKET socket in a namespace;
//! - [`netns`]: naming, finding (a pod's, by `/proc`) and entering network namespaces;
//! - [`firewall`]: `iptables-save` and `iptables-restore` in a namespace, as argument vectors;
//! - [`enforcer`]: a fault's chains in one namespace: install the diff, remove, sweep;
//! - [`nfqueue`]: the Inline decider fed from an NFQUEUE, its verdicts issued;
//! - [`proxy`]: the Proxy enforcer, a transparent Kafka proxy in the broker's namespace that
//!   feeds the proxy core and writes out what it decides;
//! - [`topic_probe`]: one Metadata request to the broker for the fault's topic ids;
//! - [`session`]: one fault enforced in one namespace from first rule to last, the piece both
//!   `inject` and the node agent drive (and [`session::worker`], a session on its own thread);
//! - [`thread`]: a thread that sets itself up before its caller goes on (both enforcers);
//! - [`clock`]: the wall clock, read here and handed to the core.
//!
//! Edges may use the library and each other; they never depend on the commands, and they do
//! not change what they are handed: what they learn (a bound queue, topic ids) goes back to
//! their caller as a value.

pub mod capture;
pub mod clock;
pub mod enforcer;
pub mod firewall;
pub mod netns;
pub mod nfqueue;
pub mod proxy;
pub mod session;
pub mod thread;
pub mod topic_probe;
