//! Names and comments that tie kernel rules back to an injection, stable across runs and
//! platforms so that a restarted agent recognises what it installed before.

/// The prefix of every chain kafka-shock owns; the sweep removes any chain with it that no
/// live injection wants.
pub const CHAIN_PREFIX: &str = "KSHOCK-";

/// The prefix of every comment kafka-shock writes.
pub const COMMENT_PREFIX: &str = "kshock:";

/// The longest sanitised id a comment carries (xt_comment holds 255 bytes; the prefix and the
/// stamp need the rest).
const MAX_COMMENT_ID: usize = 200;

/// FNV-1a, 64 bits: tiny, stable and written out here, so chain names never change with a
/// dependency's or the standard library's hasher.
pub(crate) fn fnv1a64(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            // A separator, so that ["ab", "c"] and ["a", "bc"] differ.
            hash = (hash ^ 0xff).wrapping_mul(PRIME);
        }
        for &byte in *part {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
    }
    hash
}

/// `KSHOCK-` and 12 uppercase hex digits (48 bits) of the hash of the raw id: 19 characters,
/// within iptables' 28, and distinct for ids that differ only in characters the comment
/// sanitiser replaces.
pub fn chain_name(id: &str) -> String {
    let hash = fnv1a64(&[id.as_bytes()]) & 0xFFFF_FFFF_FFFF;
    format!("{CHAIN_PREFIX}{hash:012X}")
}

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
/// verbatim but rewrites most other arguments (see [`crate::rules::plan`]).
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
