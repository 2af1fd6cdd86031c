//! The secondary index (subject → keys, resource → keys) and the ring of
//! recent invalidations, all guarded by one mutex.

use super::PermissionKey;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

pub(super) type KeySet = HashSet<PermissionKey>;

/// The secondary index; every field is guarded by `Inner::index`.
#[derive(Default)]
pub(super) struct Index {
    /// The stamp of each indexed key's current incarnation.
    pub(super) stamps: HashMap<PermissionKey, u64>,
    pub(super) by_subject: HashMap<Arc<str>, KeySet>,
    pub(super) by_resource: HashMap<Arc<str>, HashMap<Arc<str>, KeySet>>,
    /// The latest invalidations, by epoch.
    pub(super) recent: VecDeque<(u64, Target)>,
}

impl Index {
    pub(super) fn register(&mut self, key: &PermissionKey, stamp: u64) {
        if self.stamps.insert(key.clone(), stamp).is_some() {
            return;
        }
        let subject = key.subject();
        match self.by_subject.get_mut(subject) {
            Some(set) => set.insert(key.clone()),
            None => self
                .by_subject
                .entry(Arc::from(subject))
                .or_default()
                .insert(key.clone()),
        };
        let (kind, id) = key.resource();
        let ids = match self.by_resource.get_mut(kind) {
            Some(ids) => ids,
            None => self.by_resource.entry(Arc::from(kind)).or_default(),
        };
        match ids.get_mut(id) {
            Some(set) => set.insert(key.clone()),
            None => ids.entry(Arc::from(id)).or_default().insert(key.clone()),
        };
    }

    /// Unindexes `key` if its indexed incarnation is `stamp`.
    pub(super) fn forget(&mut self, key: &PermissionKey, stamp: u64) {
        if self.stamps.get(key) == Some(&stamp) {
            self.unindex(key);
        }
    }

    pub(super) fn unindex(&mut self, key: &PermissionKey) -> bool {
        if self.stamps.remove(key).is_none() {
            return false;
        }
        let subject = key.subject();
        if let Some(set) = self.by_subject.get_mut(subject) {
            set.remove(key);
            if set.is_empty() {
                self.by_subject.remove(subject);
            }
        }
        let (kind, id) = key.resource();
        if let Some(ids) = self.by_resource.get_mut(kind) {
            if let Some(set) = ids.get_mut(id) {
                set.remove(key);
                if set.is_empty() {
                    ids.remove(id);
                }
            }
            if ids.is_empty() {
                self.by_resource.remove(kind);
            }
        }
        true
    }

    pub(super) fn drain(&mut self, graveyard: &Mutex<Vec<(PermissionKey, u64)>>) {
        let gone = std::mem::take(&mut *graveyard.lock());
        for (key, stamp) in &gone {
            self.forget(key, *stamp);
        }
    }

    pub(super) fn take_key(&mut self, key: &PermissionKey) -> (Vec<PermissionKey>, usize) {
        let n = usize::from(self.unindex(key));
        (vec![key.clone()], n)
    }

    /// Unindexes every one of `keys` (all indexed), for `take_subject` and
    /// `take_resource`.
    pub(super) fn unindex_all(&mut self, keys: Vec<PermissionKey>) -> (Vec<PermissionKey>, usize) {
        keys.iter().for_each(|k| {
            self.unindex(k);
        });
        let n = keys.len();
        (keys, n)
    }

    pub(super) fn take_subject(&mut self, subject: &str) -> (Vec<PermissionKey>, usize) {
        let keys: Vec<_> = self
            .by_subject
            .get(subject)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        self.unindex_all(keys)
    }

    pub(super) fn take_resource(&mut self, kind: &str, id: &str) -> (Vec<PermissionKey>, usize) {
        let keys: Vec<_> = self
            .by_resource
            .get(kind)
            .and_then(|ids| ids.get(id))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        self.unindex_all(keys)
    }

    /// Whether an invalidation after epoch `since` (up to `now`) covers `key`,
    /// or may have: when the ring no longer reaches back to `since`.
    pub(super) fn invalidated_since(&self, key: &PermissionKey, since: u64, now: u64) -> bool {
        if now == since {
            return false;
        }
        match self.recent.front() {
            Some((oldest, _)) if *oldest <= since + 1 => self
                .recent
                .iter()
                .filter(|(epoch, _)| *epoch > since)
                .any(|(_, target)| target.matches(key)),
            _ => true,
        }
    }
}

/// What an invalidation covered.
pub(super) enum Target {
    Key(PermissionKey),
    Subject(Arc<str>),
    Resource(Arc<str>, Arc<str>),
    All,
}

impl Target {
    pub(super) fn matches(&self, key: &PermissionKey) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::Subject(s) => **s == *key.subject(),
            Self::Resource(kind, id) => (&**kind, &**id) == key.resource(),
            Self::All => true,
        }
    }
}
