//! The journal: what a persistent cache calls for every write.
//!
//! It owns the log and the rules that keep the cache and its log in step:
//!
//! - A write asks [`Journal::admit`] before it changes anything: while the
//!   log is failed, writes are refused (Redis's `MISCONF`), reads go on.
//! - Under a log whose `wait` means "on disk" (`Fsync::Always`), each append
//!   carries an undo record (the key's state before the write). If the log
//!   then fails, every write it had not made durable is undone in memory,
//!   newest first, and its caller gets the error: the cache holds what the
//!   log can reproduce.
//! - A failed log is repaired by a rewrite from the cache's own state (a new
//!   file), tried on [`Journal::sync`] and at most once a second by a
//!   refused write; writes resume once it succeeds. The rewrite is swapped in
//!   only from a snapshot that holds no write the log refused.
//!
//! The journal reaches the cache only through [`Hooks`], which the cache
//! hands it.

use super::{PersistError, RecordRef, RewriteKind, Snapshot, WriteAheadLog};
use crate::flight_waits::{Leader, TrackedLock};
use crate::sync::{Arc, Condvar, Mutex};
use crate::waits::Cycle;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod background;
mod repair;

use background::Background;

/// What the journal needs from the cache it serves.
pub(crate) trait Hooks<K, V>: Send + Sync {
    /// Rewrites `journal`'s log from the cache's live entries, as `kind`
    /// (through [`Journal::rewrite`]).
    fn rewrite(&self, journal: &Journal<K, V>, kind: RewriteKind) -> Result<(), PersistError>;
    /// Applies an undo record (an insert or a removal) without logging it.
    ///
    /// # Errors
    ///
    /// [`Cycle`] if the wait for the key's shard would close a cycle of
    /// waits (see `waits.rs`): the record is not applied.
    fn undo(&self, record: &[u8]) -> Result<(), Cycle>;
}

/// Encodes a record for the cache's key and value types.
pub(crate) type Encoder<K, V> =
    for<'a> fn(&RecordRef<'a, K, V>, &mut Vec<u8>) -> Result<(), PersistError>;

/// The outcome of an append, settled by [`Journal::wait`] once the shard is
/// unlocked.
#[must_use]
pub(crate) enum Ticket {
    /// Nothing was logged.
    None,
    /// Logged as this LSN.
    Lsn(u64),
    /// The log failed; the write is undone by `wait`, which returns this.
    Failed(PersistError),
}

/// How often a refused write may start a repair of a failed log.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Why a write whose record a rollback undid is refused.
const UNDONE: &str = "the log failed before this write was durable, and the write was undone";

/// Why a repair gives up a rewrite before its swap (and takes it again).
const RETAKE: &str = "a write was refused while the repair's snapshot was taken";

pub(crate) struct Journal<K, V> {
    log: Box<dyn WriteAheadLog>,
    /// The log's header fingerprint, for the summaries its rewrites save.
    fingerprint: u64,
    encode: Encoder<K, V>,
    /// Writes keep undo records (the log's `wait` means durable).
    undoable: bool,
    /// Fast check for `admit`; the truth is `state.failed`.
    failed: AtomicBool,
    state: Mutex<State>,
    /// Signalled when a rollback ends.
    settled: Condvar,
    /// The thread applying undo records, while one is: a thread about to
    /// wait for that rollback follows it for a cycle of waits.
    rolling_back_by: Leader,
    hooks: std::sync::OnceLock<Box<dyn Hooks<K, V>>>,
    /// A rewrite (growth or repair) is running on a background thread.
    rewriting: Arc<AtomicBool>,
    /// That thread, and the close that ends it when the cache drops.
    background: Background,
    last_repair: Mutex<Option<Instant>>,
    /// Held for a whole repair: one runs at a time. Its holder is named,
    /// so that a thread about to wait for it follows it for a cycle.
    repairing: TrackedLock,
    /// Held for each rewrite of the log (a compaction, or a repair's
    /// attempt), which reads every shard: one runs at a time (as the log's
    /// own lock has it), and a thread about to wait for it follows its
    /// holder for a cycle.
    one_rewrite: TrackedLock,
    /// The first failure no caller has been told of, for `sync`.
    untold: Mutex<Option<PersistError>>,
}

struct State {
    /// Why the log failed, while it has not been repaired.
    failed: Option<String>,
    /// Undo records of writes not yet known durable, in LSN order.
    pending: Vec<(u64, Vec<u8>)>,
    /// A thread is applying undo records.
    rolling_back: bool,
    /// LSN ranges `(lo, hi]` whose writes a rollback undid. A write whose
    /// fsync was still running when a repair rolled it back may see that
    /// fsync succeed (the log was rewritten from the cache meanwhile, and
    /// counts every LSN so far as durable): this is how its waiter learns
    /// that the write is gone all the same.
    undone: Vec<(u64, u64)>,
    /// Writes refused at their append so far: each was applied in memory
    /// and its undo record pushed (or, with no undo record, kept). A
    /// repair's snapshot taken while this changed may hold such a write's
    /// old state, and is not swapped in.
    refused: u64,
    /// Undo records pushed so far: a rollback that gives a record back
    /// puts it before the ones pushed since it took it.
    pushes: u64,
}

impl State {
    fn was_undone(&self, lsn: u64) -> bool {
        self.undone.iter().any(|&(lo, hi)| lsn > lo && lsn <= hi)
    }
}

impl<K: 'static, V: 'static> Journal<K, V> {
    /// A journal on `log`, whose header carries `fingerprint`.
    pub(crate) fn new(
        log: Box<dyn WriteAheadLog>,
        fingerprint: u64,
        encode: Encoder<K, V>,
    ) -> Self {
        let undoable = log.waits_for_disk();
        Self {
            log,
            fingerprint,
            encode,
            undoable,
            failed: AtomicBool::new(false),
            state: Mutex::new(State {
                failed: None,
                pending: Vec::new(),
                rolling_back: false,
                undone: Vec::new(),
                refused: 0,
                pushes: 0,
            }),
            settled: Condvar::new(),
            rolling_back_by: Arc::new(Mutex::new(None)),
            hooks: std::sync::OnceLock::new(),
            rewriting: Arc::new(AtomicBool::new(false)),
            background: Background::default(),
            last_repair: Mutex::new(None),
            repairing: TrackedLock::new(),
            one_rewrite: TrackedLock::new(),
            untold: Mutex::new(None),
        }
    }

    /// Connects the journal to its cache (once).
    pub(crate) fn set_hooks(&self, hooks: Box<dyn Hooks<K, V>>) {
        let _ = self.hooks.set(hooks);
    }

    /// Whether writes must carry undo records.
    pub(crate) fn undoable(&self) -> bool {
        self.undoable
    }

    pub(crate) fn encode(&self, record: RecordRef<'_, K, V>) -> Result<Vec<u8>, PersistError> {
        let mut out = Vec::new();
        (self.encode)(&record, &mut out)?;
        Ok(out)
    }

    pub(crate) fn encode_into(
        &self,
        record: RecordRef<'_, K, V>,
        out: &mut Vec<u8>,
    ) -> Result<(), PersistError> {
        (self.encode)(&record, out)
    }

    /// Whether a write may proceed (call before changing anything).
    ///
    /// # Errors
    ///
    /// [`PersistError::Refused`] while the log is failed.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<(), PersistError> {
        if !self.failed.load(Ordering::Acquire) {
            if let Err(e) = self.log.health() {
                self.fail(&e);
            } else {
                return Ok(());
            }
        }
        let cause = self.state.lock().failed.clone();
        match cause {
            None => Ok(()),
            Some(cause) => {
                self.repair_in_background();
                Err(self.refused(cause))
            }
        }
    }

    fn refused(&self, cause: String) -> PersistError {
        PersistError::Refused {
            path: self.log.describe(),
            cause,
        }
    }

    /// Marks the log failed (writes are refused until it is repaired).
    fn fail(&self, e: &PersistError) {
        let mut state = self.state.lock();
        if state.failed.is_none() {
            state.failed = Some(e.to_string());
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Appends `record` (call with the key's shard locked, after applying
    /// the write); `undo` restores the key's previous state.
    pub(crate) fn append(&self, record: Option<Vec<u8>>, undo: Option<Vec<u8>>) -> Ticket {
        let Some(record) = record else {
            return Ticket::None;
        };
        if !self.undoable {
            // No undo records to keep in LSN order, so no lock: an append
            // to a buffering log may write the buffer out.
            return match self.log.append(&record) {
                Ok(lsn) => Ticket::Lsn(lsn),
                Err(e) => {
                    // Admitted and applied before the log failed: the write
                    // stays in memory, and the repair (a rewrite from the
                    // cache) logs it; later writes are refused. The log did
                    // not take the record, so the write is not acknowledged
                    // as logged: its caller hears of the failure. Counted
                    // as refused: a repair's snapshot that read the key
                    // before this write is taken again.
                    self.fail(&e);
                    {
                        let mut state = self.state.lock();
                        state.refused = state.refused.wrapping_add(1);
                    }
                    self.report(e);
                    Ticket::None
                }
            };
        }
        let mut state = self.state.lock();
        let result = match &state.failed {
            Some(cause) => Err(self.refused(cause.clone())),
            None => self.log.append(&record),
        };
        match (result, undo) {
            (Ok(lsn), undo) => {
                if let Some(undo) = undo {
                    state.pending.push((lsn, undo));
                    state.pushes = state.pushes.wrapping_add(1);
                }
                Ticket::Lsn(lsn)
            }
            (Err(e), Some(undo)) => {
                state.failed.get_or_insert_with(|| e.to_string());
                self.failed.store(true, Ordering::Release);
                state.pending.push((u64::MAX, undo));
                state.pushes = state.pushes.wrapping_add(1);
                state.refused = state.refused.wrapping_add(1);
                Ticket::Failed(e)
            }
            (Err(e), None) => {
                // No undo (a retain's removal): the write stays, and the
                // repair logs it. Counted, as the refused writes above are:
                // a repair's snapshot may have read the entry before it
                // left, and must then be taken again.
                state.failed.get_or_insert_with(|| e.to_string());
                self.failed.store(true, Ordering::Release);
                state.refused = state.refused.wrapping_add(1);
                drop(state);
                self.keep(e);
                Ticket::None
            }
        }
    }

    /// Settles a ticket (call with no shard locked): waits until the record
    /// is as durable as the log promises. On failure every write not known
    /// durable is undone before this returns, unless a rollback running on
    /// another thread waits for this one (see
    /// [`roll_back`](Self::roll_back)): that rollback undoes them after.
    ///
    /// # Errors
    ///
    /// The log's failure.
    pub(crate) fn wait(self: &Arc<Self>, ticket: Ticket) -> Result<(), PersistError> {
        let result = self.wait_only(ticket);
        if result.is_err() {
            // Refused only where the rollback running on another thread
            // waits for this one: that rollback undoes this write's record
            // once this thread goes on.
            let _ = self.roll_back();
        }
        result
    }

    /// [`wait`](Self::wait) without the rollback, for a caller that holds
    /// shard locks; it calls [`roll_back`](Self::roll_back) after releasing
    /// them.
    pub(crate) fn wait_only(self: &Arc<Self>, ticket: Ticket) -> Result<(), PersistError> {
        let lsn = match ticket {
            Ticket::None => return Ok(()),
            Ticket::Failed(e) => return Err(e),
            Ticket::Lsn(lsn) => lsn,
        };
        match self.log.wait(lsn) {
            Ok(()) => {
                if self.undoable {
                    let durable = self.log.durable_lsn();
                    let mut state = self.state.lock();
                    if state.was_undone(lsn) {
                        return Err(self.refused(UNDONE.into()));
                    }
                    let done = state.pending.partition_point(|(l, _)| *l <= durable);
                    state.pending.drain(..done);
                }
                self.after_write();
                Ok(())
            }
            Err(e) if self.undoable => {
                let state = self.state.lock();
                if state.was_undone(lsn) {
                    // A repair already rolled it back and the log works
                    // again: refused, with no new failure to record.
                    return Err(self.refused(UNDONE.into()));
                }
                if lsn <= self.log.durable_lsn() {
                    // A rewrite made it durable before the failure, which
                    // concerns later records: it stands.
                    drop(state);
                    self.fail_if_still_failed(&e);
                    return Ok(());
                }
                drop(state);
                self.fail_if_still_failed(&e);
                Err(e)
            }
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// Marks the journal failed for `e`, unless the log has been repaired
    /// since `e` happened (a repair rolls back first, so whatever `e` cost
    /// is undone already; failing again would roll back writes made on the
    /// repaired log).
    fn fail_if_still_failed(&self, e: &PersistError) {
        if self.log.health().is_err() {
            self.fail(e);
        }
    }

    fn spawn_rewrite(self: &Arc<Self>, repair: bool) {
        if self.rewriting.swap(true, Ordering::AcqRel) {
            return;
        }
        let journal = Arc::downgrade(self);
        let rewriting = ClearOnDrop(self.rewriting.clone());
        // No thread now (or the cache is being dropped): the closure is
        // dropped unrun, which clears the mark, and a later write asks again.
        self.background.spawn(move || {
            // Cleared however the rewrite ends, a panic included (user
            // code runs in it: `Serialize` impls, a rollback's listener),
            // so that a later write can start the next one.
            let _rewriting = rewriting;
            if let Some(journal) = journal.upgrade() {
                let result = if repair {
                    journal.repair()
                } else {
                    journal.rewrite_now()
                };
                if let Err(e) = result {
                    journal.keep(e);
                }
            }
        });
    }

    fn rewrite_now(&self) -> Result<(), PersistError> {
        match self.hooks.get() {
            Some(hooks) => hooks.rewrite(self, RewriteKind::Compaction),
            None => Ok(()),
        }
    }

    /// Called after each logged write: starts a rewrite if the log asks.
    fn after_write(self: &Arc<Self>) {
        if self.log.wants_rewrite() {
            self.spawn_rewrite(false);
        }
    }

    /// Keeps a failure no caller saw, for the next [`sync`](Self::sync).
    fn keep(&self, e: PersistError) {
        self.untold.lock().get_or_insert(e);
    }

    /// Hands the failure of a write that was refused or undone to the
    /// [`scope`] running on this thread for this journal, if any, or keeps
    /// it for `sync`.
    pub(crate) fn report(&self, e: PersistError) {
        if let Some(e) = report_to_scope(self as *const Self as *const () as usize, e) {
            self.keep(e);
        }
    }

    /// Reports the first untold failure, repairs a failed log, and makes
    /// every logged write durable.
    ///
    /// # Errors
    ///
    /// That failure, a failed repair, or a failed sync;
    /// [`PersistError::InCallback`] from a listener told of one of this
    /// journal's undos (the repair would wait for that undo), or from code
    /// a cache runs under a shard's lock.
    pub(crate) fn sync(&self) -> Result<(), PersistError> {
        self.refuse_in_callback("sync")?;
        let mut untold = self.untold.lock().take();
        // A failure the log met on its own (its background writer): no
        // caller was told of it, so this is the call that reports it.
        if let Some(e) = self.log.take_unreported() {
            untold.get_or_insert(e);
        }
        if let Err(e) = self.log.health() {
            self.fail(&e);
        }
        if self.failed.load(Ordering::Acquire) {
            self.repair()?;
        }
        self.log.sync()?;
        untold.map_or(Ok(()), Err)
    }

    /// The rewrite the cache runs, as `kind`: a compaction, or the repair's
    /// (which only [`repair`](Self::repair) asks for; it rolls back first,
    /// see [`rewrite_clean`](Self::rewrite_clean)).
    ///
    /// A compaction does not run on a failed log, nor while a rollback is
    /// under way: the writes the failure cost are undone by the rollback,
    /// and a snapshot taken before it ends would write them back. The checks
    /// here refuse it early; the log's [`compact`](WriteAheadLog::compact)
    /// refuses it if the log fails after them, before the swap.
    pub(crate) fn rewrite(
        &self,
        kind: RewriteKind,
        snapshot: &mut Snapshot<'_>,
    ) -> Result<(), PersistError> {
        if self.closing() {
            return Err(self.closed_error());
        }
        if kind == RewriteKind::Compaction {
            self.refuse_in_callback("rewrite_log")?;
            // Refused rather than waited for: the rollback calls listeners,
            // which may be what asked for this rewrite.
            let state = self.state.lock();
            if let Some(cause) = &state.failed {
                return Err(self.refused(cause.clone()));
            }
            if state.rolling_back {
                return Err(self.refused(
                    "writes the log failed to keep are being undone; rewrite after".into(),
                ));
            }
            drop(state);
            if let Err(e) = self.log.health() {
                self.fail(&e);
                return Err(e);
            }
        }
        match kind {
            RewriteKind::Compaction => {
                let _one = self
                    .one_rewrite
                    .hold()
                    .map_err(|_| self.cycle_error("rewrite_log"))?;
                self.log.compact(snapshot)
            }
            RewriteKind::Repair => self.rewrite_clean(snapshot),
        }
    }

    /// Why a rewrite stopped: the cache is being dropped. Its replacement
    /// is discarded; the log in use holds every write.
    pub(crate) fn closed_error(&self) -> PersistError {
        self.refused("the cache was dropped; the rewrite stopped".into())
    }

    /// The log's header fingerprint.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Stores the admission summary of the rewrite that just succeeded.
    pub(crate) fn save_summary(&self, summary: &[u8]) -> Result<(), PersistError> {
        self.log.save_summary(summary)
    }
}

thread_local! {
    /// The `Cache::durably` calls running on this thread: the journal each
    /// watches, and the first failure it saw.
    static SCOPES: RefCell<Vec<(usize, Option<PersistError>)>> = const { RefCell::new(Vec::new()) };
}

/// Gives `e` to the innermost scope watching `journal`; hands it back if
/// there is none.
fn report_to_scope(journal: usize, e: PersistError) -> Option<PersistError> {
    SCOPES.with(|scopes| {
        let mut scopes = scopes.borrow_mut();
        match scopes.iter_mut().rev().find(|(j, _)| *j == journal) {
            Some((_, slot)) => {
                slot.get_or_insert(e);
                None
            }
            None => Some(e),
        }
    })
}

/// Runs `f`, collecting the first failure of a write it makes through
/// `journal` on this thread.
pub(crate) fn scope<K, V, R>(
    journal: &Journal<K, V>,
    f: impl FnOnce() -> R,
) -> (R, Option<PersistError>) {
    let id = journal as *const Journal<K, V> as *const () as usize;
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            SCOPES.with(|s| s.borrow_mut().pop());
        }
    }
    SCOPES.with(|s| s.borrow_mut().push((id, None)));
    let guard = Pop;
    let r = f();
    let error = SCOPES.with(|s| s.borrow_mut().last_mut().and_then(|(_, e)| e.take()));
    drop(guard);
    (r, error)
}

/// Clears the flag it holds when dropped: a background rewrite's "running"
/// mark, cleared when the rewrite ends, however it ends.
struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
