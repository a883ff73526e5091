//! A thread that must set itself up (enter a namespace, bind a queue or a listener) before its
//! caller goes on: the Inline and Proxy enforcers each start one this way, and learn from it
//! either what it bound or why it could not.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

/// The thread and what it said once ready.
pub type Ready<T, E> = (T, JoinHandle<Result<(), E>>);

/// Spawns `body` on a thread named `name` and waits until it sends what it bound (it is ready)
/// or ends (its error is returned; `error` words the other ways it can fail).
pub fn spawn_ready<T, E, F>(
    name: &str,
    body: F,
    error: impl Fn(&str) -> E,
) -> Result<Ready<T, E>, E>
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnOnce(SyncSender<T>) -> Result<(), E> + Send + 'static,
{
    let (ready_tx, ready_rx) = sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || body(ready_tx))
        .map_err(|spawn| error(&spawn.to_string()))?;
    match ready_rx.recv() {
        Ok(ready) => Ok((ready, thread)),
        Err(_) => Err(match thread.join() {
            Ok(Err(failed)) => failed,
            Ok(Ok(())) => error("stopped before it was ready"),
            Err(_) => error("panicked"),
        }),
    }
}
