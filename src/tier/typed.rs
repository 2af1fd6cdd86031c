//! Typed values in the tier: the same tagged postcard encoding as
//! `KvStore::set_as` (shared through `kv::typed`), so either can read what
//! the other wrote.

use super::cache::TieredCache;
use super::error::TierError;
use crate::kv::typed::{self, Undecodable};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

impl TieredCache {
    /// Stores `value` (postcard-encoded behind an 8-byte type tag, the same
    /// encoding as [`KvStore::set_as`](crate::kv::KvStore::set_as)) as [`set`](Self::set) does.
    ///
    /// # Errors
    ///
    /// [`TierError::Codec`] if serde fails; otherwise as [`set`](Self::set).
    pub async fn set_as<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), TierError> {
        let buf = typed::encode(value).map_err(TierError::Codec)?;
        self.set(key, buf, ttl).await
    }

    /// Reads a value stored by [`set_as`](Self::set_as) (here or by a
    /// `KvStore`); `None` if missing.
    ///
    /// # Errors
    ///
    /// [`TierError::WrongType`] if it was stored as another type,
    /// [`TierError::Codec`] if it does not decode; otherwise as [`get`](Self::get).
    pub async fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, TierError> {
        let Some(raw) = self.get(key).await? else {
            return Ok(None);
        };
        match typed::decode(&raw) {
            Ok(v) => Ok(Some(v)),
            Err(Undecodable::WrongType { expected }) => Err(TierError::WrongType { expected }),
            Err(Undecodable::Codec(msg)) => Err(TierError::Codec(msg)),
        }
    }
}
