//! Expiry commands: `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` (with
//! `NX`/`XX`/`GT`/`LT`), `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`,
//! `PERSIST`, and the [`Expiry`] argument of `SET`/`GETEX`.

use super::{KvError, KvStore};
use crate::wallclock::Now;
use crate::{Decision, Ttl};
use std::time::Duration;

/// An expiry as `SET` and `GETEX` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// `EX seconds`: this many seconds from now.
    Ex(i64),
    /// `PX milliseconds`: this many milliseconds from now.
    Px(i64),
    /// `EXAT unix-seconds`: at this Unix time.
    ExAt(i64),
    /// `PXAT unix-milliseconds`: at this Unix time in milliseconds.
    PxAt(i64),
}

impl Expiry {
    /// The absolute deadline in Unix ms, validated as Redis's
    /// `getExpireMillisecondsOrReply`: the number must be positive and the
    /// deadline must fit in an `i64`.
    pub(crate) fn deadline_ms(self, now_ms: i64, command: &'static str) -> Result<i64, KvError> {
        let invalid = KvError::InvalidExpireTime(command);
        let (n, seconds, relative) = match self {
            Self::Ex(n) => (n, true, true),
            Self::Px(n) => (n, false, true),
            Self::ExAt(n) => (n, true, false),
            Self::PxAt(n) => (n, false, false),
        };
        if n <= 0 {
            return Err(invalid);
        }
        let ms = if seconds {
            n.checked_mul(1000).ok_or(invalid.clone())?
        } else {
            n
        };
        let ms = if relative {
            ms.checked_add(now_ms).ok_or(invalid.clone())?
        } else {
            ms
        };
        Ok(ms)
    }
}

/// The remaining time until `deadline_ms`, or `None` if it has passed.
pub(crate) fn remaining(deadline_ms: i64, now_ms: i64) -> Option<Duration> {
    let left = deadline_ms.checked_sub(now_ms)?;
    (left > 0).then(|| Duration::from_millis(left.unsigned_abs()))
}

impl KvStore {
    /// The [`Ttl`] for a deadline, or `None` when it has already passed (the
    /// key must then be deleted).
    ///
    /// # Errors
    ///
    /// [`KvError::ExpireTooFar`] for a deadline further ahead than entries
    /// can hold (see [`MAX_EXPIRE_MS`]): refused rather than shortened.
    ///
    /// The [`Ttl`] counts from `now`, so a write must apply it at
    /// `now.tick` ([`Cache::compute_at`](crate::Cache::compute_at)) for
    /// the deadline to land on `deadline_ms` exactly.
    pub(crate) fn ttl_for(
        &self,
        deadline_ms: i64,
        now: Now,
        command: &'static str,
    ) -> Result<Option<Ttl>, KvError> {
        let Some(left) = remaining(deadline_ms, now.wall) else {
            return Ok(None);
        };
        // The cache's clock reads the store's age in ms plus one.
        let age = now.tick.saturating_sub(1);
        let room = crate::policy::node::meta::DEADLINE_MAX.saturating_sub(age);
        if u64::try_from(left.as_millis()).unwrap_or(u64::MAX) >= room {
            return Err(KvError::ExpireTooFar(command));
        }
        Ok(Some(Ttl::After(left)))
    }
}

/// The longest expiry a key can have, from the store's creation: 2^40 - 1
/// ms, about 34.8 years. Redis accepts any deadline that fits in an `i64`;
/// a `KvStore` refuses one further ahead with [`KvError::ExpireTooFar`]
/// rather than shortening it.
pub const MAX_EXPIRE_MS: u64 = crate::policy::node::meta::DEADLINE_MAX;

/// The `NX`/`XX`/`GT`/`LT` conditions of the `EXPIRE` family.
///
/// ```
/// use shardcache::kv::{ExpireOptions, KvStore, SetOptions};
/// let store = KvStore::new();
/// store.set("k", "v", SetOptions::new())?;
/// assert!(!store.expire("k", 100, ExpireOptions::new().xx())?); // no TTL yet
/// assert!(store.expire("k", 100, ExpireOptions::new().nx())?);
/// assert!(!store.expire("k", 50, ExpireOptions::new().gt())?);
/// assert!(store.expire("k", 50, ExpireOptions::new().lt())?);
/// # Ok::<(), shardcache::kv::KvError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpireOptions {
    /// Only if the key has no expiry.
    pub nx: bool,
    /// Only if the key has an expiry.
    pub xx: bool,
    /// Only if the new expiry is later than the current one.
    pub gt: bool,
    /// Only if the new expiry is earlier than the current one (none counts as infinite).
    pub lt: bool,
}

impl ExpireOptions {
    /// No condition.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds `NX`.
    pub fn nx(mut self) -> Self {
        self.nx = true;
        self
    }
    /// Adds `XX`.
    pub fn xx(mut self) -> Self {
        self.xx = true;
        self
    }
    /// Adds `GT`.
    pub fn gt(mut self) -> Self {
        self.gt = true;
        self
    }
    /// Adds `LT`.
    pub fn lt(mut self) -> Self {
        self.lt = true;
        self
    }

    pub(crate) fn validate(self) -> Result<(), KvError> {
        if self.nx && (self.xx || self.gt || self.lt) {
            return Err(KvError::NxWithOtherConditions);
        }
        if self.gt && self.lt {
            return Err(KvError::GtAndLt);
        }
        Ok(())
    }

    /// Whether a key whose deadline is `current` (None: no expiry) may get `when`.
    fn allows(self, current: Option<i64>, when: i64) -> bool {
        match current {
            None => !(self.xx || self.gt),
            Some(cur) => !(self.nx || (self.gt && when <= cur) || (self.lt && when >= cur)),
        }
    }
}

impl KvStore {
    /// `EXPIRE key seconds [NX|XX|GT|LT]`: true if the expiry was set (a
    /// deadline in the past deletes the key and also returns true).
    ///
    /// # Errors
    ///
    /// Incompatible options, or a time that overflows (`invalid expire time`).
    pub fn expire(&self, key: &str, seconds: i64, opts: ExpireOptions) -> Result<bool, KvError> {
        self.expire_generic(key, seconds, true, true, opts, "expire")
    }

    /// `PEXPIRE key milliseconds [NX|XX|GT|LT]`.
    ///
    /// # Errors
    ///
    /// As [`expire`](Self::expire).
    pub fn pexpire(&self, key: &str, millis: i64, opts: ExpireOptions) -> Result<bool, KvError> {
        self.expire_generic(key, millis, false, true, opts, "pexpire")
    }

    /// `EXPIREAT key unix-seconds [NX|XX|GT|LT]`.
    ///
    /// # Errors
    ///
    /// As [`expire`](Self::expire).
    pub fn expire_at(
        &self,
        key: &str,
        unix_seconds: i64,
        opts: ExpireOptions,
    ) -> Result<bool, KvError> {
        self.expire_generic(key, unix_seconds, true, false, opts, "expireat")
    }

    /// `PEXPIREAT key unix-milliseconds [NX|XX|GT|LT]`.
    ///
    /// # Errors
    ///
    /// As [`expire`](Self::expire).
    pub fn pexpire_at(
        &self,
        key: &str,
        unix_millis: i64,
        opts: ExpireOptions,
    ) -> Result<bool, KvError> {
        self.expire_generic(key, unix_millis, false, false, opts, "pexpireat")
    }

    /// Redis's `expireGenericCommand`.
    fn expire_generic(
        &self,
        key: &str,
        when: i64,
        seconds: bool,
        relative: bool,
        opts: ExpireOptions,
        command: &'static str,
    ) -> Result<bool, KvError> {
        opts.validate()?;
        let invalid = KvError::InvalidExpireTime(command);
        let when = if seconds {
            when.checked_mul(1000).ok_or(invalid.clone())?
        } else {
            when
        };
        let now = self.now();
        let when = if relative {
            when.checked_add(now.wall).ok_or(invalid)?
        } else {
            when
        };
        self.cache.compute_at(self.full_key(key), now.tick, |cur| {
            let Some(cur) = cur else {
                return (Decision::Nothing, Ok(false));
            };
            let current = cur.ttl.map(|t| {
                now.wall
                    .saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
            });
            if !opts.allows(current, when) {
                return (Decision::Nothing, Ok(false));
            }
            match self.ttl_for(when, now, command) {
                Ok(Some(ttl)) => (Decision::SetTtl(ttl), Ok(true)),
                Ok(None) => (Decision::Remove, Ok(true)),
                Err(e) => (Decision::Nothing, Err(e)),
            }
        })?
    }

    /// `PTTL key`: the remaining time in milliseconds, -1 for a key without
    /// expiry, -2 for a missing key.
    pub fn pttl(&self, key: &str) -> i64 {
        let found = self.cache.ttl(&self.full_key(key));
        self.count_lookup(found.is_some());
        match found {
            None => -2,
            Some(None) => -1,
            Some(Some(t)) => i64::try_from(t.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// `TTL key`: the remaining time in seconds (rounded to nearest), -1 for
    /// a key without expiry, -2 for a missing key.
    ///
    /// ```
    /// let store = shardcache::kv::KvStore::new();
    /// store.set_ex("k", "v", 100)?;
    /// assert_eq!(store.ttl("k"), 100);
    /// assert_eq!(store.ttl("missing"), -2);
    /// # Ok::<(), shardcache::kv::KvError>(())
    /// ```
    pub fn ttl(&self, key: &str) -> i64 {
        match self.pttl(key) {
            ms if ms < 0 => ms,
            ms => (ms + 500) / 1000,
        }
    }

    /// `PEXPIRETIME key`: the Unix time in milliseconds at which the key
    /// expires, -1 for a key without expiry, -2 for a missing key.
    ///
    /// Exactly the deadline a `PXAT`/`PEXPIREAT` set (and `EXAT`/`EXPIREAT`
    /// in milliseconds), as Redis answers, after a restart of a persistent
    /// store too. The store keeps deadlines on its monotonic clock,
    /// converted to and from Unix time (and to and from its log) with an
    /// origin fixed per store; if the system's wall clock is stepped (by
    /// more than 10 ms against the monotonic clock), the origin follows it,
    /// and deadlines set before read back moved by the step (where Redis's
    /// stay and its `PTTL` moves).
    ///
    /// ```
    /// use shardcache::{kv::KvStore, MockClock};
    /// let clock = MockClock::new();
    /// let store = KvStore::builder().clock(clock.clone()).build()?;
    /// assert_eq!(store.pexpire_time("k"), -2);
    /// store.set("k", "v", Default::default())?;
    /// assert_eq!(store.pexpire_time("k"), -1);
    /// store.pexpire_at("k", 1_800_000_000_499, Default::default())?;
    /// assert_eq!(store.pexpire_time("k"), 1_800_000_000_499);
    /// assert_eq!(store.expire_time("k"), 1_800_000_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pexpire_time(&self, key: &str) -> i64 {
        let now = self.now();
        let found = self.cache.deadline(&self.full_key(key));
        self.count_lookup(found.is_some());
        match found {
            None => -2,
            Some(None) => -1,
            Some(Some(deadline)) => now.wall_of(deadline),
        }
    }

    /// `EXPIRETIME key`: the Unix time in seconds (rounded to nearest) at
    /// which the key expires, -1 for a key without expiry, -2 for a missing
    /// key. See [`pexpire_time`](Self::pexpire_time).
    pub fn expire_time(&self, key: &str) -> i64 {
        match self.pexpire_time(key) {
            ms if ms < 0 => ms,
            ms => ms.saturating_add(500) / 1000,
        }
    }

    /// `PERSIST key`: removes the key's expiry; true if it had one.
    ///
    /// # Errors
    ///
    /// None in practice (the entry does not grow); typed for uniformity.
    pub fn persist(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.cache.compute(self.full_key(key), |cur| match cur {
            Some(c) if c.ttl.is_some() => (Decision::SetTtl(Ttl::Never), true),
            _ => (Decision::Nothing, false),
        })?)
    }
}
