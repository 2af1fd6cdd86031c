//! [`PermissionKey`]: what a decision is about, hashed once with a
//! per-process seed.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

/// What a decision is about: `subject` may do `action` on the resource
/// (`resource_kind`, `resource_id`). Cloning is cheap (one `Arc<str>`).
///
/// ```
/// use shardcache::adapters::PermissionKey;
/// let key = PermissionKey::new("user123", "boxer", "boxer456", "read");
/// assert_eq!(key.subject(), "user123");
/// assert_eq!(key.resource(), ("boxer", "boxer456"));
/// assert_eq!(key.action(), "read");
/// ```
///
/// Building a key makes one allocation (the four parts side by side) and
/// computes its hash once, with a per-process random seed so that crafted
/// ids cannot force collisions: a check then hashes one `u64` and compares
/// one string, not four.
#[derive(Clone)]
pub struct PermissionKey {
    hash: u64,
    /// Where the subject, resource kind and resource id end in `text`.
    ends: [usize; 3],
    text: Arc<str>,
}

impl PermissionKey {
    /// A key for `subject` doing `action` on `resource_kind`/`resource_id`.
    pub fn new(
        subject: impl AsRef<str>,
        resource_kind: impl AsRef<str>,
        resource_id: impl AsRef<str>,
        action: impl AsRef<str>,
    ) -> Self {
        static SEED: OnceLock<ahash::RandomState> = OnceLock::new();
        let parts = [
            subject.as_ref(),
            resource_kind.as_ref(),
            resource_id.as_ref(),
            action.as_ref(),
        ];
        let hash = SEED.get_or_init(ahash::RandomState::new).hash_one(parts);
        let mut ends = [0; 3];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for (i, part) in parts.iter().enumerate() {
            text.push_str(part);
            if let Some(end) = ends.get_mut(i) {
                *end = text.len();
            }
        }
        Self {
            hash,
            ends,
            text: Arc::from(text),
        }
    }

    fn part(&self, from: usize, to: usize) -> &str {
        self.text.get(from..to).unwrap_or_default()
    }

    /// Who asks (a user, a service account...).
    pub fn subject(&self) -> &str {
        self.part(0, self.ends[0])
    }

    /// The resource, as (kind, id).
    pub fn resource(&self) -> (&str, &str) {
        (
            self.part(self.ends[0], self.ends[1]),
            self.part(self.ends[1], self.ends[2]),
        )
    }

    /// What they want to do.
    pub fn action(&self) -> &str {
        self.part(self.ends[2], self.text.len())
    }
}

impl PartialEq for PermissionKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.ends == other.ends
            && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for PermissionKey {}

impl Hash for PermissionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl fmt::Debug for PermissionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, id) = self.resource();
        write!(f, "perm:{kind}:{id}:{}:{}", self.subject(), self.action())
    }
}
