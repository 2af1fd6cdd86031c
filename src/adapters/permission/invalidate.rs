//! Revocation: invalidations by key, subject, resource or all, recorded
//! by epoch so that a load overtaken by one is not cached.

use super::index::{Index, Target};
use super::{Inner, PermissionCache, PermissionKey, RECENT_INVALIDATIONS};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl<D: Clone + Send + Sync + 'static> PermissionCache<D> {
    /// Drops the decision for one key. Returns whether one was cached.
    pub fn invalidate(&self, key: &PermissionKey) -> bool {
        let target = Target::Key(key.clone());
        self.inner.invalidate(target, |index| index.take_key(key)) > 0
    }

    /// Drops every cached decision about `subject`, in one call, visiting only
    /// that subject's entries. A load for one of them that was running during
    /// the call is not cached. Returns the number of entries dropped.
    pub fn invalidate_subject(&self, subject: &str) -> usize {
        let target = Target::Subject(Arc::from(subject));
        self.inner
            .invalidate(target, |index| index.take_subject(subject))
    }

    /// Drops every cached decision about the resource `kind`/`id` (any
    /// subject, any action), in one call; see
    /// [`invalidate_subject`](Self::invalidate_subject).
    ///
    /// ```
    /// use shardcache::adapters::{PermissionCache, PermissionKey};
    /// let perms: PermissionCache<bool> = PermissionCache::new();
    /// for user in ["ann", "bob"] {
    ///     perms.check(&PermissionKey::new(user, "doc", "7", "read"), || true);
    /// }
    /// perms.check(&PermissionKey::new("ann", "doc", "8", "read"), || true);
    /// assert_eq!(perms.invalidate_resource("doc", "7"), 2);
    /// assert_eq!(perms.len(), 1);
    /// ```
    pub fn invalidate_resource(&self, kind: &str, id: &str) -> usize {
        let target = Target::Resource(Arc::from(kind), Arc::from(id));
        self.inner
            .invalidate(target, |index| index.take_resource(kind, id))
    }

    /// Drops every cached decision.
    ///
    /// The cache is cleared under the index lock, as the other
    /// invalidations remove their keys: an invalidation that returns while
    /// this one runs has found its decisions in the index and removed them,
    /// or found them gone with the cache already cleared.
    pub fn invalidate_all(&self) {
        self.inner.invalidate(Target::All, |index| {
            let n = index.stamps.len();
            *index = Index {
                recent: std::mem::take(&mut index.recent),
                ..Index::default()
            };
            self.inner.cache.clear();
            (Vec::new(), n)
        });
        self.inner.index.lock().drain(&self.inner.graveyard);
    }
}

impl<D: Clone + Send + Sync + 'static> Inner<D> {
    /// Records an invalidation, takes the matching keys out of the index and
    /// removes them from the cache, all under the index lock.
    pub(super) fn invalidate(
        &self,
        target: Target,
        take: impl FnOnce(&mut Index) -> (Vec<PermissionKey>, usize),
    ) -> usize {
        let mut index = self.index.lock();
        index.drain(&self.graveyard);
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        index.recent.push_back((epoch, target));
        if index.recent.len() > RECENT_INVALIDATIONS {
            index.recent.pop_front();
        }
        let (keys, n) = take(&mut index);
        for key in &keys {
            self.cache.remove(key);
        }
        index.drain(&self.graveyard);
        n
    }
}
