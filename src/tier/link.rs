//! The link to Redis: the connection in use and its epoch, the tier's
//! health, the queue of invalidations waiting to be replayed, and the time
//! the subscription was last proven live. Operations read it and report
//! failures to it; the background task (`task.rs`) acts on what it holds.

use super::config::Config;
use super::health::{DownReason, HealthState, Verdict};
use super::invalidation::{PendingQueue, Push};
use parking_lot::{Mutex, RwLock};
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// What an operation needs to reach Redis, and what it calls when Redis fails.
pub(crate) struct Link {
    /// The connection in use and its epoch; `None` while down.
    pub(super) conn: RwLock<Option<(u64, MultiplexedConnection)>>,
    pub(crate) health: HealthState,
    pub(super) epoch: AtomicU64,
    /// Wakes the background task when an operation saw Redis fail.
    pub(super) wake: Notify,
    pub(crate) pending: Mutex<PendingQueue>,
    task: Mutex<Option<AbortHandle>>,
    /// The origin of the nanosecond times below.
    base: std::time::Instant,
    /// The send time of the latest own heartbeat received back on the
    /// subscription (or the time the local tier was last cleared on
    /// activation): every invalidation of a write acknowledged before it has
    /// been applied.
    pub(super) fresh_as_of: AtomicU64,
    /// The Redis client id of the data connection last put in use, until
    /// the next activation has closed it in Redis (see `task::fence`).
    pub(super) data_client: Mutex<Option<ClientId>>,
    /// The liveness bound (see [`Config`]).
    liveness_bound: Duration,
    /// The tier went down while its channel was unproven past the bound:
    /// the local entries are not served in degraded mode (they may have
    /// missed invalidations the tier already refused them for). Cleared
    /// when the tier comes back up, after the local tier is cleared.
    distrusted: AtomicBool,
}

impl Link {
    /// For the tier's stats: `Up` to `Down` transitions, why it last went
    /// down, and how many keys wait in the queue.
    pub(crate) fn figures(&self) -> (u64, Option<DownReason>, u64) {
        (
            self.health.downs.load(Ordering::Relaxed),
            self.health.last_down().map(|(r, _)| r),
            self.pending.lock().len() as u64,
        )
    }

    pub(crate) fn new(queue_capacity: usize, liveness_bound: Duration) -> Self {
        Self {
            conn: RwLock::new(None),
            health: HealthState::new_down("not connected yet"),
            epoch: AtomicU64::new(0),
            wake: Notify::new(),
            pending: Mutex::new(PendingQueue::new(queue_capacity)),
            task: Mutex::new(None),
            base: std::time::Instant::now(),
            fresh_as_of: AtomicU64::new(0),
            data_client: Mutex::new(None),
            liveness_bound,
            distrusted: AtomicBool::new(false),
        }
    }

    /// Whether the local entries are refused in degraded mode (see
    /// `distrusted`).
    pub(crate) fn distrusted(&self) -> bool {
        self.distrusted.load(Ordering::Acquire)
    }

    /// The tier is up again with a cleared local tier: its entries may be
    /// served once more.
    pub(super) fn trust(&self) {
        self.distrusted.store(false, Ordering::Release);
    }

    /// Nanoseconds since `base`.
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// An own heartbeat sent at `sent_ns` came back.
    pub(crate) fn heard(&self, sent_ns: u64) {
        self.fresh_as_of.fetch_max(sent_ns, Ordering::AcqRel);
    }

    /// How long the invalidation channel has gone unproven.
    pub(crate) fn unproven_for(&self) -> Duration {
        let fresh = self.fresh_as_of.load(Ordering::Acquire);
        Duration::from_nanos(self.now_ns().saturating_sub(fresh))
    }

    /// The connection to use, or `None` while down (no connect attempt:
    /// callers never pay a connect timeout).
    pub(crate) fn conn(&self) -> Option<(u64, MultiplexedConnection)> {
        if !self.health.is_up() {
            return None;
        }
        self.conn.read().clone()
    }

    /// The connection of `epoch` is unusable: go down (once) and wake the
    /// background task to reconnect.
    pub(crate) fn fail(&self, epoch: u64, reason: DownReason, error: &str) {
        let mut conn = self.conn.write();
        if conn.as_ref().map(|(e, _)| *e) != Some(epoch) {
            return; // a stale connection; the current one is fine or already down
        }
        *conn = None;
        if self.health.is_up() && self.unproven_for() > self.liveness_bound {
            self.distrusted.store(true, Ordering::Release);
        }
        if self.health.set_down(reason, error) {
            self.wake.notify_one();
        }
    }

    /// A call on the connection of `epoch` timed out: one more in the
    /// streak; down if the streak is long enough, otherwise the background
    /// task probes Redis at once (and replays what the call queued).
    pub(crate) fn timed_out(&self, cfg: &Config, epoch: u64) -> Verdict {
        let verdict = self
            .health
            .record_timeout(cfg.timeouts_to_down, cfg.outage_window);
        if verdict == Verdict::GoDown {
            let error = format!(
                "calls timed out (each bound {:?}) with no answer from Redis for {:?}",
                cfg.op_timeout, cfg.outage_window
            );
            self.fail(epoch, DownReason::Timeouts, &error);
        } else {
            self.wake.notify_one();
        }
        verdict
    }

    /// Queues `key` for a delete and invalidation in Redis. `attempted`:
    /// the write was sent and its outcome is unknown, so it is queued even
    /// while up (the background task replays it), and even when the queue
    /// is full. Otherwise `None` if Redis came back up meanwhile (the caller
    /// should send it now).
    pub(crate) fn enqueue(&self, key: &str, attempted: bool) -> Option<Push> {
        let mut q = self.pending.lock();
        if !attempted && self.health.is_up() {
            return None;
        }
        Some(q.push(key, attempted))
    }

    pub(crate) fn set_task(&self, handle: AbortHandle) {
        *self.task.lock() = Some(handle);
    }

    /// Stops the background task (the last handle was dropped).
    pub(crate) fn shutdown(&self) {
        if let Some(h) = self.task.lock().take() {
            h.abort();
        }
    }
}

/// A connection's id in Redis: the server's run (`INFO server`'s `run_id`,
/// new at every start of the server) and the client id within it (which a
/// restarted server hands out again from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientId {
    pub(crate) run: String,
    pub(crate) id: i64,
}

/// Whether `e` means the connection is unusable (as opposed to Redis
/// answering the command with an error).
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    if is_auth_error(e) {
        return true;
    }
    !matches!(
        e.kind(),
        ErrorKind::Server(_)
            | ErrorKind::Extension
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Parse
    )
}

pub(crate) fn is_auth_error(e: &RedisError) -> bool {
    if e.kind() == ErrorKind::AuthenticationFailed {
        return true;
    }
    let text = e.to_string();
    [
        "WRONGPASS",
        "NOAUTH",
        "invalid password",
        "invalid username-password",
    ]
    .iter()
    .any(|m| text.contains(m))
}
