//! Running test code under a time limit, and reading a panic's message:
//! for the tests of code that could deadlock, where a hang must fail the
//! test rather than stall the run. Included with `#[path]`.

#![allow(dead_code)] // each includer uses a different part

use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on a thread of its own; `Err(())` if it has not returned
/// after `secs` seconds (the thread is left behind, hung).
pub(crate) fn bounded<R: Send + 'static>(
    secs: u64,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).map_err(drop)
}

/// A panic's message (empty if it is neither a `String` nor a `&str`).
pub(crate) fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
