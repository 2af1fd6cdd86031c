//! [`FileLog`](super::FileLog)'s group commit (`Always`) and background
//! writer (`EverySecond`, `Never`).

use super::{LogInner, Storage, MAX_GATHER};
use crate::persist::{Fsync, PersistError};
use crate::sync::{Arc, Ordering};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

impl<S: Storage> LogInner<S> {
    pub(super) fn write_delay(&self) -> Option<Duration> {
        match self.write_delay_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Keeps `result`'s failure for the next `Cache::sync` if this call is
    /// what stopped the log (`was_stopped`: whether it had stopped before):
    /// a background write's failure reaches no caller otherwise.
    fn keep_unreported<T>(&self, was_stopped: bool, result: Result<T, PersistError>) {
        if let Err(e) = result {
            if !was_stopped && self.stopped.load(Ordering::Acquire) {
                self.unreported.lock().get_or_insert(e);
            }
        }
    }

    /// Syncs everything appended so far unless `lsn` is already durable.
    pub(super) fn sync_to(&self, lsn: u64) -> Result<(), PersistError> {
        if self.synced.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let mut rounds = self.rounds.lock();
        loop {
            if self.synced.load(Ordering::Acquire) >= lsn {
                return Ok(());
            }
            if !rounds.leading {
                break;
            }
            self.synced_cv.wait(&mut rounds);
        }
        rounds.leading = true;
        let (batch, last_fsync) = (rounds.batch, rounds.fsync);
        drop(rounds);
        // Whatever happens below (an error, a panicking storage), the next
        // waiter must be able to lead.
        let mut round = RoundGuard {
            log: self,
            covered: None,
        };
        let synced = self.synced.load(Ordering::Acquire);
        self.gather(synced, batch, last_fsync);
        let (target, len, generation) = self.write_out()?;
        let started = std::time::Instant::now();
        if let Err(e) = self.storage.sync() {
            return Err(self.stop(&mut self.writer.lock(), "syncing", e));
        }
        let mut writer = self.writer.lock();
        // A rewrite that swapped the bytes meanwhile set the replacement's
        // lengths itself; `len` is the old bytes' and would cut the new
        // ones at the wrong place after a later failure.
        if writer.generation == generation {
            writer.synced_len = len;
        }
        drop(writer);
        round.covered = Some((target, target.saturating_sub(synced), started.elapsed()));
        Ok(())
    }

    /// Group commit under `Always`: the last fsync covered `batch` records,
    /// about one per writer. Those writers are now appending their next
    /// record; give them up to half an fsync's time to do so, so that one
    /// fsync covers them all rather than the leader's record alone (a
    /// writer woken from the last round needs tens of microseconds to get
    /// here, and the leader, already running, would otherwise always win).
    /// A single writer never waits.
    fn gather(&self, synced: u64, batch: u64, last_fsync: Duration) {
        if self.fsync != Fsync::Always || batch <= 1 {
            return;
        }
        let want = synced + batch.min(MAX_GATHER);
        let deadline = std::time::Instant::now() + last_fsync / 2;
        while self.appended.lock().lsn < want && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
}

/// Ends a group commit round: publishes what it made durable (if it
/// succeeded), hands leadership on and wakes the followers.
struct RoundGuard<'a, S: Storage> {
    log: &'a LogInner<S>,
    /// The last LSN synced, the records covered, the fsync's duration.
    covered: Option<(u64, u64, Duration)>,
}

impl<S: Storage> Drop for RoundGuard<'_, S> {
    fn drop(&mut self) {
        let log = self.log;
        let mut rounds = log.rounds.lock();
        rounds.leading = false;
        if let Some((target, batch, fsync)) = self.covered {
            log.synced.fetch_max(target, Ordering::AcqRel);
            rounds.batch = batch;
            rounds.fsync = fsync;
        }
        drop(rounds);
        log.synced_cv.notify_all();
    }
}

/// The background thread of `EverySecond` and `Never` logs: hands the
/// buffer to the OS every `write_delay` and, for `EverySecond`, fsyncs once
/// a second. It holds a weak reference to the log, upgraded only while it
/// works; [`Flusher::stop`] ends it and waits for it, so that the log's
/// owner drops the log (and releases its file lock) on its own thread.
pub(super) struct Flusher {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Flusher {
    /// Asks the thread to end and waits until it has.
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// Starts the flusher of `log`, or `None` (said on stderr) when no thread
/// could be started: records then wait for the next sync.
pub(super) fn spawn_flusher<S: Storage>(log: std::sync::Weak<LogInner<S>>) -> Option<Flusher> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("shardcache-log".into())
        .spawn(move || {
            let mut last_sync = std::time::Instant::now();
            loop {
                let nap = match log.upgrade() {
                    Some(log) => log.write_delay().unwrap_or(SYNC_EVERY).min(SYNC_EVERY),
                    None => return,
                };
                std::thread::park_timeout(nap);
                if stopped.load(Ordering::Acquire) {
                    return;
                }
                let Some(log) = log.upgrade() else { return };
                // A failure here stops the log (later writes are refused)
                // and is kept for the next explicit sync to report.
                let was_stopped = log.stopped.load(Ordering::Acquire);
                if log.fsync == Fsync::EverySecond && last_sync.elapsed() >= SYNC_EVERY {
                    last_sync = std::time::Instant::now();
                    let lsn = log.appended.lock().lsn;
                    log.keep_unreported(was_stopped, log.sync_to(lsn));
                } else {
                    log.keep_unreported(was_stopped, log.write_out());
                }
            }
        });
    match spawned {
        Ok(thread) => Some(Flusher { stop, thread }),
        Err(e) => {
            eprintln!(
                "shardcache: could not start the log's writer thread ({e}); records are written on sync"
            );
            None
        }
    }
}

/// How often an `EverySecond` log fsyncs.
const SYNC_EVERY: Duration = Duration::from_secs(1);
