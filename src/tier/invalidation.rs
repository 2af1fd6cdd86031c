//! Invalidation: the pub/sub message format, per-key generations that stop
//! a slow read from refilling the local tier with a value deleted meanwhile,
//! and the bounded queue of deletes kept while Redis is down.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// `"<instance id, 16 hex digits>:<key>"`: the payload published on the prefix's channel.
pub(crate) fn encode(instance: u64, key: &str) -> Vec<u8> {
    let mut out = format!("{instance:016x}:").into_bytes();
    out.extend_from_slice(key.as_bytes());
    out
}

/// The sender and key of a payload; `None` if it is not one of ours.
pub(crate) fn decode(payload: &[u8]) -> Option<(u64, &str)> {
    let id = payload.get(..16)?;
    if payload.get(16) != Some(&b':') {
        return None;
    }
    let id = u64::from_str_radix(std::str::from_utf8(id).ok()?, 16).ok()?;
    let key = std::str::from_utf8(payload.get(17..)?).ok()?;
    Some((id, key))
}

/// `"<instance id, 16 hex digits>!<send time, ns>"`: a heartbeat the
/// instance publishes on its own channel and must receive back on its
/// subscription (other instances, and older versions, ignore it).
pub(crate) fn encode_heartbeat(instance: u64, sent_ns: u64) -> Vec<u8> {
    format!("{instance:016x}!{sent_ns}").into_bytes()
}

/// The sender and send time of a heartbeat payload.
pub(crate) fn decode_heartbeat(payload: &[u8]) -> Option<(u64, u64)> {
    let id = payload.get(..16)?;
    if payload.get(16) != Some(&b'!') {
        return None;
    }
    let id = u64::from_str_radix(std::str::from_utf8(id).ok()?, 16).ok()?;
    let sent = std::str::from_utf8(payload.get(17..)?).ok()?.parse().ok()?;
    Some((id, sent))
}

const STRIPES: usize = 1024;

/// Striped invalidation counters. A reader notes its key's stripe before
/// asking Redis, inserts what Redis returned, and removes it again if the
/// stripe moved meanwhile; writers and the subscriber bump the stripe
/// before dropping the local copy. So a value read before a delete is never
/// left in the local tier after it. A whole-tier clear bumps `all`, which
/// every key's generation includes.
///
/// A write bumps its key's stripe when it starts and again when its reply
/// is in, before it touches the local copy. A `set` keeps its copy only if
/// the stripe moved by its own end alone in between. Two writes of one key
/// from this instance that overlap may reach Redis in either order; one
/// of them ends second, and its end bump either came before the other's
/// check (which then drops its copy) or comes after the other's copy is in
/// place (and the later write drops it, or replaces it and fails its own
/// check). Either way no copy outlives a write Redis applied after it.
#[derive(Debug)]
pub(crate) struct Generations {
    stripes: Box<[AtomicU64]>,
    all: AtomicU64,
}

impl Generations {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            all: AtomicU64::new(0),
        }
    }

    fn stripe(&self, key: &str) -> &AtomicU64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        &self.stripes[(h as usize) % STRIPES]
    }

    pub(crate) fn current(&self, key: &str) -> u64 {
        let all = self.all.load(Ordering::Acquire);
        self.stripe(key).load(Ordering::Acquire).wrapping_add(all)
    }

    /// Every key's generation moves (call before clearing the local tier).
    pub(crate) fn bump_all(&self) {
        self.all.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn bump(&self, key: &str) {
        self.stripe(key).fetch_add(1, Ordering::AcqRel);
    }
}

/// What [`PendingQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued.
    Added,
    /// Already queued.
    Duplicate,
    /// The queue is full: dropped.
    Full,
}

/// Keys to delete (and announce) in Redis once it is back: distinct, in
/// arrival order. Writes never sent take at most `capacity` places; a write
/// whose bytes were sent takes one beyond it if need be (see
/// [`push`](Self::push)), so these exceed `capacity` by at most the writes
/// in flight when Redis stopped answering.
#[derive(Debug)]
pub(crate) struct PendingQueue {
    order: VecDeque<String>,
    set: HashSet<String>,
    capacity: usize,
}

impl PendingQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::new(),
            set: HashSet::new(),
            capacity,
        }
    }

    /// Queues `key` unless it is already queued or the queue is full.
    /// `sent`: the write's bytes went out and its outcome is unknown, so its
    /// delete is queued even past the capacity: Redis may still apply the
    /// write, after a newer one from another instance, and only the delete
    /// undoes that. (A write never sent can be refused instead: it was not
    /// applied anywhere.)
    pub(crate) fn push(&mut self, key: &str, sent: bool) -> Push {
        if self.set.contains(key) {
            return Push::Duplicate;
        }
        if self.order.len() >= self.capacity && !sent {
            return Push::Full;
        }
        self.set.insert(key.to_string());
        self.order.push_back(key.to_string());
        Push::Added
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Up to `n` keys from the front; they stay queued until [`Self::ack`].
    pub(crate) fn peek(&self, n: usize) -> Vec<String> {
        self.order.iter().take(n).cloned().collect()
    }

    /// Removes the `n` front keys once they were replayed.
    pub(crate) fn ack(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(k) = self.order.pop_front() {
                self.set.remove(&k);
            }
        }
    }
}

/// A random id for this instance, named in its messages.
pub(crate) fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let m = encode(0xabc, "perm:a:b");
        assert_eq!(decode(&m), Some((0xabc, "perm:a:b")));
        assert_eq!(decode(b"junk"), None);
        assert_eq!(decode(b"0000000000000001:"), Some((1, "")));
        let hb = encode_heartbeat(0xabc, 12_345);
        assert_eq!(decode(&hb), None);
        assert_eq!(decode_heartbeat(&hb), Some((0xabc, 12_345)));
        assert_eq!(decode_heartbeat(&m), None);
    }

    #[test]
    fn queue_is_bounded_and_distinct() {
        let mut q = PendingQueue::new(2);
        assert_eq!(q.push("a", false), Push::Added);
        assert_eq!(q.push("a", false), Push::Duplicate);
        assert_eq!(q.push("b", false), Push::Added);
        assert_eq!(q.push("c", false), Push::Full);
        // A sent write's delete is never dropped.
        assert_eq!(q.push("c", true), Push::Added);
        assert_eq!(q.push("d", false), Push::Full);
        assert_eq!(q.peek(10), vec!["a", "b", "c"]);
        q.ack(2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.push("d", false), Push::Added);
    }
}
