//! How much of its buffers' memory a [`FileLog`](super::FileLog) keeps
//! once their records are written out (or dropped).
//!
//! The log appends to one buffer while the other is written, and swaps them
//! (see `write_out`), so both keep their allocations: a steady stream of
//! records then costs no allocation at all. But a buffer also kept the
//! allocation of the largest batch it ever held, so one 200 MiB record
//! pinned 200 MiB for the life of the log. An emptied buffer now keeps at
//! most [`KEEP`] bytes.

/// The capacity an emptied buffer keeps, at most: four times the size at
/// which the appends hand a buffer over themselves (1 MiB, `WRITE_AT`), so
/// the batches of ordinary load keep their allocation and only an unusually
/// large one (a large record, a long stall) gives its memory back.
pub(super) const KEEP: usize = 4 << 20;

/// Empties `buf` (its records were written out, or dropped) and gives back
/// whatever of its allocation is over [`KEEP`].
pub(super) fn empty(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > KEEP {
        buf.shrink_to(KEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{FileLog, Fsync, MemStorage, WriteAheadLog};

    /// The capacities of the log's two buffers: the one appends go to and
    /// the one being written.
    fn capacities(log: &FileLog<MemStorage>) -> (usize, usize) {
        let appending = log.inner.appended.lock().buf.capacity();
        let writing = log.inner.writer.lock().spare.capacity();
        (appending, writing)
    }

    fn append_and_write(log: &FileLog<MemStorage>, payload: &[u8]) {
        let lsn = log.append(payload).expect("append");
        log.wait(lsn).expect("write and sync");
    }

    #[test]
    fn a_large_record_does_not_pin_its_buffer() {
        let log = FileLog::with_storage(MemStorage::new(), Fsync::Always);
        append_and_write(&log, &vec![7u8; 32 << 20]);
        let (appending, writing) = capacities(&log);
        assert!(
            appending <= KEEP && writing <= KEEP,
            "after a 32 MiB record the buffers hold {appending} and {writing} bytes"
        );
        // The other buffer, swapped in for the next batch, stays bounded
        // too, and a large record after a small one as well.
        append_and_write(&log, b"small");
        append_and_write(&log, &vec![8u8; 16 << 20]);
        append_and_write(&log, b"small");
        let (appending, writing) = capacities(&log);
        assert!(
            appending <= KEEP && writing <= KEEP,
            "the buffers hold {appending} and {writing} bytes"
        );
    }

    #[test]
    fn ordinary_batches_keep_their_allocation() {
        let log = FileLog::with_storage(MemStorage::new(), Fsync::Always);
        append_and_write(&log, &vec![1u8; 1 << 20]);
        append_and_write(&log, &vec![2u8; 1 << 20]);
        let (appending, writing) = capacities(&log);
        assert!(
            appending >= 1 << 20 && writing >= 1 << 20,
            "1 MiB batches: the buffers hold {appending} and {writing} bytes"
        );
    }

    #[test]
    fn emptying_keeps_at_most_keep() {
        let mut buf = Vec::with_capacity(KEEP * 3);
        buf.extend_from_slice(&[0u8; 1000]);
        empty(&mut buf);
        assert!(buf.is_empty());
        assert_eq!(buf.capacity(), KEEP);
        let mut small = Vec::with_capacity(1000);
        small.push(1u8);
        empty(&mut small);
        assert_eq!(small.capacity(), 1000);
    }
}
