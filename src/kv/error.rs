//! [`KvError`]: the errors of [`KvStore`](super::KvStore) commands, displayed
//! in Redis's own words so that `execute` replies match a real server's.

/// Why a [`KvStore`](super::KvStore) command failed.
///
/// `Display` gives the exact error line a Redis 7 server sends (without the
/// leading `-`), so a client that matches on Redis's messages keeps working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A value or argument that should be a 64-bit integer is not one.
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// A value or argument that should be a float is not one.
    #[error("ERR value is not a valid float")]
    NotFloat,
    /// `INCR`/`INCRBY`/`DECR` would leave the `i64` range.
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    /// `DECRBY` with `i64::MIN`, which cannot be negated.
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    /// `INCRBYFLOAT` would produce NaN or an infinity.
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    /// A key (with its namespace view's prefix) or string value longer than
    /// [`MAX_STRING_LEN`](super::MAX_STRING_LEN) bytes (512 MiB, Redis's
    /// default `proto-max-bulk-len`), or an `APPEND` or `SETRANGE` that
    /// would make one; nothing is written.
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    StringTooLong,
    /// A negative `SETRANGE` offset.
    #[error("ERR offset is out of range")]
    OffsetOutOfRange,
    /// The write does not fit under `max_memory` even after evicting by the
    /// policy (`noeviction` on a full store, an entry bigger than
    /// `max_memory`, or a multi-key write whose values together weigh more);
    /// the key keeps its old value. A `volatile-*` policy with no expiring
    /// key to evict falls back on any key, where Redis would answer this.
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
    /// Options that do not go together, an unknown option, or a missing argument.
    #[error("ERR syntax error")]
    Syntax,
    /// A zero, negative or overflowing expire time; names the command.
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpireTime(&'static str),
    /// An expiry further ahead than a key can hold (see
    /// [`MAX_EXPIRE_MS`](super::MAX_EXPIRE_MS)), which Redis would accept;
    /// refused rather than shortened. Names the command.
    #[error("ERR expire time in '{0}' command is beyond the supported range (2^40 ms, about 34 years, from the store's start)")]
    ExpireTooFar(&'static str),
    /// `EXPIRE ... NX` with `XX`, `GT` or `LT`.
    #[error("ERR NX and XX, GT or LT options at the same time are not compatible")]
    NxWithOtherConditions,
    /// `EXPIRE ... GT LT`.
    #[error("ERR GT and LT options at the same time are not compatible")]
    GtAndLt,
    /// An `EXPIRE` option that does not exist.
    #[error("ERR Unsupported option {0}")]
    UnsupportedOption(String),
    /// A `SCAN` cursor that is not an unsigned 64-bit integer.
    #[error("ERR invalid cursor")]
    InvalidCursor,
    /// The wrong number of arguments for a known command (named in lowercase).
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    /// A command `execute` does not know, with its first arguments as Redis shows them.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand {
        /// The command name as given.
        name: String,
        /// The first arguments, each quoted and followed by a space.
        args: String,
    },
    /// A key that is not UTF-8 (`KvStore` keys are `String`s).
    #[error("ERR invalid key: keys must be UTF-8")]
    KeyNotUtf8,
    /// [`get_as`](super::KvStore::get_as) found a value stored as another type.
    #[error("WRONGTYPE value was not stored as {expected}")]
    WrongType {
        /// The type that was asked for.
        expected: &'static str,
    },
    /// A `SETBIT`/`GETBIT` offset that is not an integer from 0 to
    /// 2^32 − 1 (the last bit of a 512 MiB value).
    #[error("ERR bit offset is not an integer or out of range")]
    BitOffsetOutOfRange,
    /// A `SETBIT` bit that is not `0` or `1`.
    #[error("ERR bit is not an integer or out of range")]
    BitNotInteger,
    /// A `BITPOS` bit that is an integer other than `0` or `1`.
    #[error("ERR The bit argument must be 1 or 0.")]
    BitNotBinary,
    /// `LCS` with both `IDX` and `LEN`.
    #[error("ERR If you want both the length and indexes, please just use IDX.")]
    LcsIdxAndLen,
    /// `LCS` of values whose table (4 bytes per pair of positions, plus a
    /// row and a column) would be over 512 MiB, Redis's limit on the
    /// command's transient memory.
    #[error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")]
    LcsTooLarge,
    /// `LCS`'s table could not be allocated.
    #[error("ERR Insufficient memory, failed allocating transient memory for LCS")]
    LcsNoMemory,
    /// `RENAME` or `RENAMENX` of a key that does not exist.
    #[error("ERR no such key")]
    NoSuchKey,
    /// `COPY` of a key onto itself.
    #[error("ERR source and destination objects are the same")]
    SameObject,
    /// `COPY ... DB n` with an integer outside the 32-bit range.
    #[error("ERR value is out of range, value must between -2147483648 and 2147483647")]
    NotInt32,
    /// `COPY ... DB n` naming a database other than 0: a store has one
    /// database, as a Redis server started with `databases 1`.
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    /// A typed value could not be encoded or decoded.
    #[error("ERR could not encode or decode the value: {0}")]
    Codec(String),
}

impl<K, V> From<crate::CapacityError<K, V>> for KvError {
    fn from(_: crate::CapacityError<K, V>) -> Self {
        Self::OutOfMemory
    }
}
