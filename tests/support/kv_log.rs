//! A `KvStore` on a log in memory, and the model of a partial write, for
//! the tests of splice records (`persist_splice*.rs`).

use shardcache::kv::KvStore;
use shardcache::persist::{FileLog, Fsync, MemStorage, RecoveryReport};
use shardcache::MockClock;
use std::time::Duration;

/// A store on `storage` (`Always`, no write delay, no automatic rewrite).
pub(crate) fn open_with(storage: &MemStorage, clock: &MockClock) -> (KvStore, RecoveryReport) {
    let log = FileLog::with_storage(storage.clone(), Fsync::Always)
        .write_delay(Duration::ZERO)
        .rewrite_policy(0, u64::MAX);
    KvStore::builder()
        .clock(clock.clone())
        .build_persistent(log)
        .expect("the log loads")
}

pub(crate) fn open(storage: &MemStorage, clock: &MockClock) -> KvStore {
    open_with(storage, clock).0
}

pub(crate) fn bulk(store: &KvStore, key: &str) -> Option<Vec<u8>> {
    store.get(key).map(|v| v.to_vec())
}

/// Writes `bytes` at `offset`, zero-padding first, as `SETRANGE` does.
pub(crate) fn splice(value: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if value.len() < offset + bytes.len() {
        value.resize(offset + bytes.len(), 0);
    }
    value[offset..offset + bytes.len()].copy_from_slice(bytes);
}
