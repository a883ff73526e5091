//! Names and comments that tie kernel rules back to an injection, stable across runs and
//! platforms so that a restarted agent recognises what it installed before (the hash is the
//! contract's, [`kafka_shock_crds::fnv1a64`], pinned by the tests).

use kafka_shock_crds::fnv1a64;

/// The prefix of every chain kafka-shock owns; the sweep removes any chain with it that no
/// live injection wants.
pub const CHAIN_PREFIX: &str = "KSHOCK-";

/// The prefix of every comment kafka-shock writes.
pub const COMMENT_PREFIX: &str = "kshock:";

/// The longest sanitised id a comment carries (xt_comment holds 255 bytes; the prefix and the
/// stamp need the rest).
const MAX_COMMENT_ID: usize = 200;

/// `KSHOCK-` and 12 uppercase hex digits (48 bits) of the hash of the raw id: 19 characters,
/// within iptables' 28, and distinct for ids that differ only in characters the comment
/// sanitiser replaces.
pub fn chain_name(id: &str) -> String {
    let hash = fnv1a64(&[id.as_bytes()]) & 0xFFFF_FFFF_FFFF;
    format!("{CHAIN_PREFIX}{hash:012X}")
}

/// The NFQUEUE number an Inline injection asks for first: 1024 plus a hash of the id, so that two
/// faults in one namespace almost never want the same queue. Binding is what decides: a queue
/// someone else holds is refused by the kernel, and the Inline enforcer tries the next numbers
/// ([`INLINE_QUEUE_TRIES`]).
pub fn inline_queue(id: &str) -> u16 {
    const FIRST: u64 = 1024;
    const SPAN: u64 = 60_000;
    (FIRST + fnv1a64(&[b"queue", id.as_bytes()]) % SPAN) as u16
}

/// How many consecutive queue numbers, from [`inline_queue`], an Inline enforcer tries to bind.
pub const INLINE_QUEUE_TRIES: u16 = 32;

/// The loopback UDP port whose packets the Inline chain of `queue` also queues. The Inline enforcer
/// reads an idle queue blocking (no polling, no latency added); sending one datagram there wakes
/// it, so it can see it was told to stop.
pub fn wake_port(queue: u16) -> u16 {
    40_000 + queue % 20_000
}

/// The packet mark with which the Inline enforcer sends a segment back through the chain of
/// `queue` (NF_REPEAT) to be answered with a TCP reset by that chain's first rule. "KS" in the
/// high half, the queue number in the low half: unique per chain in the namespace, and clear
/// of the low bits kube-proxy and CNIs use.
pub fn reject_mark(queue: u16) -> u32 {
    0x4b53_0000 | u32::from(queue)
}

/// The packet mark of the Proxy's upstream connections (`SO_MARK`), "KP" in the high half,
/// clear of [`reject_mark`]'s range. Those connections go from the proxy to the broker port
/// over loopback and so cross INPUT, where every jump to our filter chains excludes this mark:
/// no fault (another's, or the Proxy fault's own handover reset) hits the proxied traffic
/// twice.
pub const PROXY_MARK: u32 = 0x4b50_0000;

/// The id as a comment may carry it: only `[A-Za-z0-9._:-]` (anything else becomes `_`), at
/// most 200 characters, never empty. iptables-save then prints it without escapes.
pub fn sanitise_id(id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_COMMENT_ID)
        .collect();
    if clean.is_empty() {
        "_".to_owned()
    } else {
        clean
    }
}

/// The comment of one rule: `kshock:<sanitised id>:<8 hex digits>`, the digits hashing the
/// rule's own arguments. It is what reconcile compares, because iptables-save prints comments
/// verbatim but rewrites most other arguments (see [`crate::rules::diff`]).
pub(crate) fn stamp(sanitised_id: &str, args: &[String]) -> String {
    let parts: Vec<&[u8]> = args.iter().map(|arg| arg.as_bytes()).collect();
    let hash = fnv1a64(&parts);
    format!(
        "{COMMENT_PREFIX}{sanitised_id}:{:08x}",
        (hash ^ (hash >> 32)) as u32
    )
}

/// The sanitised id in one of our comments, without the rule stamp.
pub(crate) fn id_of_comment(comment: &str) -> Option<&str> {
    let rest = comment.strip_prefix(COMMENT_PREFIX)?;
    Some(rest.rsplit_once(':').map_or(rest, |(id, _)| id))
}
