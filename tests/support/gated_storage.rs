//! A log file whose rewrites stop at a chosen step until the test lets
//! them go on: the real [`FileStorage`] (its lock, its temporary file, its
//! rename), with a gate in front of each step of a rewrite.

use shardcache::persist::{FileRewrite, FileStorage, RewriteTarget, Storage};
use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A step of a rewrite, where the gate can stop it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Its replacement file was just created; nothing is written to it.
    Begin,
    /// Its `n`th write to the replacement: 1 is the header, then one per
    /// record of the snapshot, then one for the records appended meanwhile
    /// (the catch-up).
    Append(usize),
    /// Its swap: fsync, rename over the log, directory fsync.
    Commit,
}

/// Where a rewrite stops, and the test's hold on it.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    moved: Condvar,
}

#[derive(Default)]
struct GateState {
    /// The step the next rewrite stops at (once).
    armed: Option<Step>,
    /// A rewrite stopped there.
    reached: bool,
    /// The test let it go on.
    released: bool,
}

/// The most a rewrite waits at the gate: a test that fails before it lets
/// the rewrite go on does not leave the thread stopped for good.
const GIVE_UP: Duration = Duration::from_secs(30);

impl Gate {
    /// Stops the next rewrite at `step`.
    pub(crate) fn arm(&self, step: Step) {
        let mut state = self.state.lock().expect("gate");
        state.armed = Some(step);
        state.reached = false;
        state.released = false;
    }

    /// On the rewrite's thread: waits here if the gate is armed for `step`.
    fn pass(&self, step: Step) {
        let mut state = self.state.lock().expect("gate");
        if state.armed != Some(step) {
            return;
        }
        state.armed = None;
        state.reached = true;
        self.moved.notify_all();
        let until = Instant::now() + GIVE_UP;
        while !state.released && Instant::now() < until {
            state = self
                .moved
                .wait_timeout(state, Duration::from_millis(50))
                .expect("gate")
                .0;
        }
    }

    /// Waits (at most `within`) until a rewrite stops at the armed step.
    pub(crate) fn wait_reached(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        let mut state = self.state.lock().expect("gate");
        while !state.reached && Instant::now() < until {
            state = self
                .moved
                .wait_timeout(state, Duration::from_millis(10))
                .expect("gate")
                .0;
        }
        state.reached
    }

    /// Whether a rewrite stopped at the armed step.
    pub(crate) fn reached(&self) -> bool {
        self.state.lock().expect("gate").reached
    }

    /// Lets the stopped rewrite go on.
    pub(crate) fn release(&self) {
        self.state.lock().expect("gate").released = true;
        self.moved.notify_all();
    }
}

/// Releases the gate when dropped, so a failing test does not leave the
/// rewrite waiting for it.
pub(crate) struct ReleaseOnDrop(pub(crate) Arc<Gate>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// [`FileStorage`] behind a [`Gate`].
pub(crate) struct GatedStorage {
    file: FileStorage,
    gate: Arc<Gate>,
}

impl GatedStorage {
    /// Opens (and locks) the log at `path`.
    pub(crate) fn open(path: &Path, gate: Arc<Gate>) -> io::Result<Self> {
        Ok(Self {
            file: FileStorage::open(path)?,
            gate,
        })
    }
}

/// The replacement a [`GatedStorage`] rewrite writes.
pub(crate) struct GatedRewrite {
    file: FileRewrite,
    gate: Arc<Gate>,
    appends: usize,
}

impl RewriteTarget for GatedRewrite {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.appends += 1;
        self.gate.pass(Step::Append(self.appends));
        self.file.append(bytes)
    }

    fn len(&self) -> u64 {
        self.file.len()
    }
}

impl Storage for GatedStorage {
    type Rewrite = GatedRewrite;

    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(offset, buf)
    }

    fn preserve(&self) -> io::Result<String> {
        self.file.preserve()
    }

    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        self.file.append(bytes)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.truncate(len)
    }

    fn describe(&self) -> String {
        self.file.describe()
    }

    fn begin_rewrite(&self) -> io::Result<GatedRewrite> {
        let file = self.file.begin_rewrite()?;
        self.gate.pass(Step::Begin);
        Ok(GatedRewrite {
            file,
            gate: self.gate.clone(),
            appends: 0,
        })
    }

    fn commit_rewrite(&self, next: GatedRewrite) -> io::Result<()> {
        self.gate.pass(Step::Commit);
        self.file.commit_rewrite(next.file)
    }

    fn write_summary(&self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_summary(bytes)
    }

    fn read_summary(&self, limit: u64) -> io::Result<Option<Vec<u8>>> {
        self.file.read_summary(limit)
    }
}
