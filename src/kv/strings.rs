//! String commands: `GET`, `SET` (and `SETEX`, `PSETEX`, `SETNX`, `GETSET`),
//! `GETDEL`, `GETEX`, `MGET`, `STRLEN`, and the counters `INCR`, `INCRBY`,
//! `DECR`, `DECRBY`, `INCRBYFLOAT`. The commands on part of a value
//! (`APPEND`, `SETRANGE`, `GETRANGE`) are in `partial.rs`; those that write
//! several keys as one step (`MSET`, `MSETNX`, `RENAME`, `COPY`) in
//! `multi.rs`.

use super::expire::Expiry;
use super::longdouble;
use super::parse::parse_i64;
use super::{KvError, KvStore};
use crate::cache::ReadAs;
use crate::{Decision, Ttl};
use bytes::Bytes;

/// `SET`'s `NX` / `XX` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetCondition {
    /// `NX`: only if the key does not exist.
    Nx,
    /// `XX`: only if the key exists.
    Xx,
}

/// The options of `SET`.
///
/// ```
/// use shardcache::kv::{KvStore, SetOptions};
/// let store = KvStore::new();
/// let first = store.set("lock", "me", SetOptions::new().nx().px(30_000))?;
/// let second = store.set("lock", "you", SetOptions::new().nx())?;
/// assert!(first.written && !second.written);
/// # Ok::<(), shardcache::kv::KvError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// `EX`/`PX`/`EXAT`/`PXAT`; `None` clears any expiry unless `keep_ttl`.
    pub expiry: Option<Expiry>,
    /// `KEEPTTL`: keep the existing expiry.
    pub keep_ttl: bool,
    /// `NX` or `XX`.
    pub condition: Option<SetCondition>,
    /// `GET`: return the previous value (filled in [`SetOutcome::previous`] anyway).
    pub get: bool,
}

impl SetOptions {
    /// A plain `SET`.
    pub fn new() -> Self {
        Self::default()
    }
    /// `EX seconds`.
    pub fn ex(mut self, seconds: i64) -> Self {
        self.expiry = Some(Expiry::Ex(seconds));
        self
    }
    /// `PX milliseconds`.
    pub fn px(mut self, millis: i64) -> Self {
        self.expiry = Some(Expiry::Px(millis));
        self
    }
    /// Any [`Expiry`].
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = Some(expiry);
        self
    }
    /// `KEEPTTL`.
    pub fn keep_ttl(mut self) -> Self {
        self.keep_ttl = true;
        self
    }
    /// `NX`.
    pub fn nx(mut self) -> Self {
        self.condition = Some(SetCondition::Nx);
        self
    }
    /// `XX`.
    pub fn xx(mut self) -> Self {
        self.condition = Some(SetCondition::Xx);
        self
    }
    /// `GET`.
    pub fn get(mut self) -> Self {
        self.get = true;
        self
    }
}

/// What a `SET` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOutcome {
    /// Whether the value was stored (false when `NX`/`XX` did not hold).
    pub written: bool,
    /// The value before the command, if there was one.
    pub previous: Option<Bytes>,
}

/// `GETEX`'s option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GetExOption {
    /// Leave the expiry alone (a plain `GET`).
    #[default]
    Keep,
    /// Set this expiry.
    Expire(Expiry),
    /// `PERSIST`: remove the expiry.
    Persist,
}

impl KvStore {
    /// `GET key`.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// assert_eq!(store.get("k"), None);
    /// store.set("k", "v", Default::default())?;
    /// assert_eq!(store.get("k").as_deref(), Some(&b"v"[..]));
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn get(&self, key: &str) -> Option<Bytes> {
        let v = self.with_full_key(key, |k| self.cache.get(k));
        self.count_lookup(v.is_some());
        v
    }

    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT n|KEEPTTL]`.
    ///
    /// # Errors
    ///
    /// [`KvError::Syntax`] for `KEEPTTL` with an expiry,
    /// [`KvError::InvalidExpireTime`] for a zero, negative or overflowing
    /// expiry, [`KvError::OutOfMemory`] when the value does not fit,
    /// [`KvError::StringTooLong`] for a key or value over
    /// [`MAX_STRING_LEN`](super::MAX_STRING_LEN).
    pub fn set(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        opts: SetOptions,
    ) -> Result<SetOutcome, KvError> {
        self.set_as_command(key, value.into(), opts, "set")
    }

    fn set_as_command(
        &self,
        key: &str,
        value: Bytes,
        opts: SetOptions,
        command: &'static str,
    ) -> Result<SetOutcome, KvError> {
        if opts.keep_ttl && opts.expiry.is_some() {
            return Err(KvError::Syntax);
        }
        self.check_len(key, value.len())?;
        let now = self.now();
        let ttl = match opts.expiry {
            Some(e) => self.ttl_for(e.deadline_ms(now.wall, command)?, now, command)?,
            None if opts.keep_ttl => Some(Ttl::Keep),
            None => Some(Ttl::Never),
        };
        Ok(self.cache.compute_at(self.full_key(key), now.tick, |cur| {
            let previous = cur.map(|c| c.value.clone());
            let allowed = match opts.condition {
                Some(SetCondition::Nx) => previous.is_none(),
                Some(SetCondition::Xx) => previous.is_some(),
                None => true,
            };
            let decision = match ttl {
                _ if !allowed => Decision::Nothing,
                Some(ttl) => Decision::Put(value, ttl),
                None => Decision::Remove,
            };
            (
                decision,
                SetOutcome {
                    written: allowed,
                    previous,
                },
            )
        })?)
    }

    /// `SETEX key seconds value`.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn set_ex(&self, key: &str, value: impl Into<Bytes>, seconds: i64) -> Result<(), KvError> {
        self.set_as_command(key, value.into(), SetOptions::new().ex(seconds), "setex")
            .map(drop)
    }

    /// `PSETEX key milliseconds value`.
    ///
    /// # Errors
    ///
    /// As [`set`](Self::set).
    pub fn pset_ex(&self, key: &str, value: impl Into<Bytes>, millis: i64) -> Result<(), KvError> {
        self.set_as_command(key, value.into(), SetOptions::new().px(millis), "psetex")
            .map(drop)
    }

    /// `SETNX key value`: true if the key was set.
    ///
    /// # Errors
    ///
    /// [`KvError::OutOfMemory`].
    pub fn set_nx(&self, key: &str, value: impl Into<Bytes>) -> Result<bool, KvError> {
        Ok(self.set(key, value, SetOptions::new().nx())?.written)
    }

    /// `GETSET key value`: sets the value (clearing any expiry), returns the old one.
    ///
    /// # Errors
    ///
    /// [`KvError::OutOfMemory`].
    pub fn get_set(&self, key: &str, value: impl Into<Bytes>) -> Result<Option<Bytes>, KvError> {
        Ok(self.set(key, value, SetOptions::new().get())?.previous)
    }

    /// `GETDEL key`: removes the key and returns its value.
    pub fn get_del(&self, key: &str) -> Option<Bytes> {
        let v = self.cache.remove(&self.full_key(key));
        self.count_lookup(v.is_some());
        v
    }

    /// `GETEX key [EX|PX|EXAT|PXAT n|PERSIST]`: the value, changing its expiry.
    ///
    /// # Errors
    ///
    /// [`KvError::InvalidExpireTime`] for a zero, negative or overflowing expiry.
    pub fn get_ex(&self, key: &str, option: GetExOption) -> Result<Option<Bytes>, KvError> {
        let now = self.now();
        // Redis looks the key up before validating the time: a missing key is nil either way.
        let change = match option {
            GetExOption::Keep => return Ok(self.get(key)),
            GetExOption::Persist => Ok(Some(Ttl::Never)),
            GetExOption::Expire(e) => e
                .deadline_ms(now.wall, "getex")
                .and_then(|d| self.ttl_for(d, now, "getex")),
        };
        let v = self
            .cache
            .compute_at(self.full_key(key), now.tick, |cur| {
                let Some(cur) = cur else {
                    return (Decision::Nothing, Ok(None));
                };
                let decision = match change {
                    Err(e) => return (Decision::Nothing, Err(e)),
                    Ok(Some(Ttl::Never)) if cur.ttl.is_none() => Decision::Nothing,
                    Ok(Some(ttl)) => Decision::SetTtl(ttl),
                    Ok(None) => Decision::Remove,
                };
                (decision, Ok(Some(cur.value.clone())))
            })??;
        self.count_lookup(v.is_some());
        Ok(v)
    }

    /// `MGET key...`: each key's value, `None` where missing.
    ///
    /// Several keys are read as one step, as Redis runs the command: every
    /// shard they live in is read-locked at once, so a multi-key write
    /// (`MSET`, `RENAME`, `DEL`...) is seen whole or not at all, never half.
    /// Each key found counts as an access, as a `GET` would.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.mset(&[("a", "1"), ("b", "2")])?;
    /// assert_eq!(store.mget(&["a", "c", "b"]), vec![Some("1".into()), None, Some("2".into())]);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn mget<K: AsRef<str>>(&self, keys: &[K]) -> Vec<Option<Bytes>> {
        if let [key] = keys {
            return vec![self.get(key.as_ref())];
        }
        self.read_keys(keys, ReadAs::Access, Bytes::clone)
    }

    /// `STRLEN key`: the value's length, 0 if missing.
    pub fn strlen(&self, key: &str) -> usize {
        let v = self.cache.peek_value(&self.full_key(key));
        self.count_lookup(v.is_some());
        v.map_or(0, |v| v.len())
    }

    /// `INCR key`.
    ///
    /// # Errors
    ///
    /// As [`incr_by`](Self::incr_by).
    pub fn incr(&self, key: &str) -> Result<i64, KvError> {
        self.incr_by(key, 1)
    }

    /// `DECR key`.
    ///
    /// # Errors
    ///
    /// As [`incr_by`](Self::incr_by).
    pub fn decr(&self, key: &str) -> Result<i64, KvError> {
        self.incr_by(key, -1)
    }

    /// `DECRBY key decrement`.
    ///
    /// # Errors
    ///
    /// [`KvError::DecrementOverflow`] for `i64::MIN`; otherwise as [`incr_by`](Self::incr_by).
    pub fn decr_by(&self, key: &str, decrement: i64) -> Result<i64, KvError> {
        let delta = decrement.checked_neg().ok_or(KvError::DecrementOverflow)?;
        self.incr_by(key, delta)
    }

    /// `INCRBY key increment`: adds to the integer stored at `key` (0 if
    /// missing), keeping its expiry, atomically.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// assert_eq!(store.incr_by("n", 5)?, 5);
    /// store.set("n", i64::MAX.to_string(), Default::default())?;
    /// assert_eq!(store.incr("n").unwrap_err().to_string(), "ERR increment or decrement would overflow");
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`KvError::NotInteger`] if the value is not an integer,
    /// [`KvError::Overflow`] if the result leaves `i64`, [`KvError::OutOfMemory`].
    pub fn incr_by(&self, key: &str, increment: i64) -> Result<i64, KvError> {
        self.cache.compute(self.full_key(key), |cur| {
            let old = match cur.map(|c| parse_i64(c.value)) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(e)) => return (Decision::Nothing, Err(e)),
            };
            match old.checked_add(increment) {
                Some(n) => (Decision::Put(Bytes::from(n.to_string()), Ttl::Keep), Ok(n)),
                None => (Decision::Nothing, Err(KvError::Overflow)),
            }
        })?
    }

    /// `INCRBYFLOAT key increment`: adds in 80-bit `long double` as Redis
    /// does on x86-64 and returns the new value as Redis prints it (`%.17Lf`
    /// without trailing zeros), byte for byte.
    ///
    /// ```
    /// use shardcache::kv::{KvStore, Reply};
    /// let store = KvStore::new();
    /// store.set("k", "0.1", Default::default())?;
    /// // As Redis: 0.1 + 0.2 in long double prints as 0.3.
    /// assert_eq!(store.execute(&["INCRBYFLOAT", "k", "0.2"]), Reply::Bulk("0.3".into()));
    /// // The f64 0.2 is 0.2000000000000000111..., which shows at 17 decimals.
    /// store.set("k", "0.1", Default::default())?;
    /// assert_eq!(&store.incr_by_float("k", 0.2)?[..], b"0.30000000000000001");
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    ///
    /// The `f64` increment is taken exactly; through
    /// [`execute`](Self::execute) the increment is parsed as `strtold` does,
    /// so `INCRBYFLOAT k 0.1` adds the `long double` nearest 0.1.
    ///
    /// # Errors
    ///
    /// [`KvError::NotFloat`] if the value is not a number,
    /// [`KvError::NanOrInfinity`] if the result is not finite.
    pub fn incr_by_float(&self, key: &str, increment: f64) -> Result<Bytes, KvError> {
        use rustc_apfloat::{Float, FloatConvert};
        if increment.is_nan() {
            return Err(KvError::NanOrInfinity);
        }
        let double = rustc_apfloat::ieee::Double::from_bits(u128::from(increment.to_bits()));
        self.incr_by_long_double(key, double.convert(&mut false).value)
    }

    pub(super) fn incr_by_long_double(
        &self,
        key: &str,
        increment: longdouble::LongDouble,
    ) -> Result<Bytes, KvError> {
        use rustc_apfloat::Float;
        self.cache.compute(self.full_key(key), |cur| {
            let old = match cur.map(|c| longdouble::parse(c.value)) {
                None => longdouble::LongDouble::ZERO,
                Some(Ok(n)) => n,
                Some(Err(e)) => return (Decision::Nothing, Err(e)),
            };
            let sum = longdouble::add(old, increment);
            if !sum.is_finite() {
                return (Decision::Nothing, Err(KvError::NanOrInfinity));
            }
            let text = Bytes::from(longdouble::format_human(sum));
            (Decision::Put(text.clone(), Ttl::Keep), Ok(text))
        })?
    }
}
