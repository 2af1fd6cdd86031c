//! Typed values: [`KvStore::set_as`] / [`KvStore::get_as`] store any serde
//! type with postcard, behind an 8-byte tag naming the type, so that reading
//! a value as another type is a clear error rather than garbage. The
//! encoding ([`encode`], [`decode`]) is shared with the Redis tier, so a
//! value written by one is read by the other.

use super::{KvError, KvStore};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// The FNV-1a hash of the type's name: the tag written before the payload.
pub(crate) fn type_tag<T>() -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.to_le_bytes()
}

/// Why stored bytes are not a `T`.
pub(crate) enum Undecodable {
    /// Stored as another type (or not by a typed write at all).
    WrongType { expected: &'static str },
    /// The tag matches, the payload does not decode.
    Codec(String),
}

/// `value` as a typed payload: its type's tag, then postcard.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_extend(value, type_tag::<T>().to_vec()).map_err(|e| e.to_string())
}

/// The `T` in a payload written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(raw: &[u8]) -> Result<T, Undecodable> {
    let payload = raw
        .strip_prefix(&type_tag::<T>()[..])
        .ok_or(Undecodable::WrongType {
            expected: std::any::type_name::<T>(),
        })?;
    postcard::from_bytes(payload).map_err(|e| Undecodable::Codec(e.to_string()))
}

impl From<Undecodable> for KvError {
    fn from(e: Undecodable) -> Self {
        match e {
            Undecodable::WrongType { expected } => Self::WrongType { expected },
            Undecodable::Codec(msg) => Self::Codec(msg),
        }
    }
}

impl KvStore {
    /// Stores `value` (postcard-encoded, tagged with its type) with an
    /// optional time to live.
    ///
    /// ```
    /// use std::time::Duration;
    /// let store = shardcache::kv::KvStore::new();
    /// store.set_as("perm:user1:doc9", &true, Some(Duration::from_secs(300)))?;
    /// assert_eq!(store.get_as::<bool>("perm:user1:doc9")?, Some(true));
    /// assert!(store.get_as::<u64>("perm:user1:doc9").is_err());
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::Codec`] if serde fails, [`KvError::OutOfMemory`].
    pub fn set_as<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let buf = encode(value).map_err(KvError::Codec)?;
        self.check_len(key, buf.len())?;
        self.cache
            .try_insert_with_expiry(self.full_key(key), Bytes::from(buf), ttl)?;
        Ok(())
    }

    /// Reads a value stored by [`set_as`](Self::set_as); `None` if missing.
    ///
    /// # Errors
    ///
    /// [`KvError::WrongType`] if the value was stored as another type (or by
    /// a plain `SET`), [`KvError::Codec`] if it does not decode.
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, KvError> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        Ok(Some(decode(&raw)?))
    }
}
