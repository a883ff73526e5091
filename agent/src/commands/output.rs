//! Printing progress lines on stdout without dying when the reader goes away: `println!`
//! panics on a closed pipe (`kafka-shock rules | head`), and a panic in `inject` must never
//! skip the removal of its rules. Lines that cannot be written are dropped.

use std::io::Write;

/// Writes one line to stdout, ignoring a closed or failing stdout.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
}

/// `println!` that survives a closed stdout.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::commands::output::line(format_args!($($arg)*))
    };
}
pub(crate) use say;
