//! A rollback whose undo would close a cycle of waits gives its record
//! back, in order, for the next rollback.

use super::super::{Hooks, Journal};
use crate::persist::WriteAheadLog;
use crate::persist::{FaultOn, FileLog, Fsync, MemStorage, PersistError, RewriteKind};
use crate::sync::{Arc, Mutex};
use crate::waits::Cycle;
use std::sync::{OnceLock, Weak};
use std::time::Duration;

/// Undoes by recording; refuses one record once (as a wait that would
/// close a cycle), after a write is refused meanwhile (as one that a
/// concurrent writer pushes while the rollback waits for its shard).
#[derive(Default)]
struct Recorder {
    applied: Mutex<Vec<Vec<u8>>>,
    refuse_once: Mutex<Option<Vec<u8>>>,
    journal: OnceLock<Weak<Journal<u64, u64>>>,
}

impl Hooks<u64, u64> for Arc<Recorder> {
    fn rewrite(&self, _: &Journal<u64, u64>, _: RewriteKind) -> Result<(), PersistError> {
        Ok(())
    }

    fn undo(&self, record: &[u8]) -> Result<(), Cycle> {
        let refuse = {
            let mut once = self.refuse_once.lock();
            once.as_deref() == Some(record) && once.take().is_some()
        };
        if refuse {
            let journal = self.journal.get().and_then(Weak::upgrade).expect("alive");
            let ticket = journal.append(Some(b"w4".to_vec()), Some(b"u4".to_vec()));
            assert!(
                journal.wait_only(ticket).is_err(),
                "refused: the log failed"
            );
            return Err(Cycle);
        }
        self.applied.lock().push(record.to_vec());
        Ok(())
    }
}

#[test]
fn an_undo_refused_as_a_cycle_is_given_back_before_the_newer_records() {
    let storage = MemStorage::new();
    let log = FileLog::with_storage(storage.clone(), Fsync::Always).write_delay(Duration::ZERO);
    log.replay(1, &mut |_| Ok(())).expect("an empty log");
    let journal = Arc::new(Journal::<u64, u64>::new(Box::new(log), 1, |_, _| Ok(())));
    let recorder = Arc::new(Recorder::default());
    let _ = recorder.journal.set(Arc::downgrade(&journal));
    *recorder.refuse_once.lock() = Some(b"u2".to_vec());
    journal.set_hooks(Box::new(recorder.clone()));
    let tickets: Vec<_> = [1, 2, 3]
        .map(|i| journal.append(Some(format!("w{i}").into()), Some(format!("u{i}").into())))
        .into_iter()
        .collect();
    storage.inject(FaultOn::Sync, 0, std::io::ErrorKind::Other, true);
    let last = tickets.into_iter().last().expect("three");
    assert!(journal.wait_only(last).is_err(), "the fsync failed");
    match journal.roll_back() {
        Err(PersistError::InCallback { call: "sync", .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(*recorder.applied.lock(), [b"u3".to_vec()]);
    journal.roll_back().expect("nothing refused now");
    let applied: Vec<String> = recorder
        .applied
        .lock()
        .iter()
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .collect();
    // u4 was pushed while u2 was out: newer, so undone before it.
    assert_eq!(applied, ["u3", "u4", "u2", "u1"]);
}
