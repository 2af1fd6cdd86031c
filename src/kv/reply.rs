//! [`Reply`]: a command's answer, shaped like RESP.

use super::KvError;
use bytes::Bytes;
use std::borrow::Cow;

/// The reply to one [`execute`](super::KvStore::execute)d command, mirroring
/// the RESP types a Redis server answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A simple string such as `OK`.
    Status(Cow<'static, str>),
    /// An error line, e.g. `ERR syntax error`.
    Error(String),
    /// An integer.
    Integer(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// The null bulk string (a missing value).
    Nil,
    /// An array of replies.
    Array(Vec<Reply>),
}

impl Reply {
    /// The `OK` status.
    pub const fn ok() -> Self {
        Self::Status(Cow::Borrowed("OK"))
    }

    /// A bulk reply if `value` is present, otherwise [`Reply::Nil`].
    pub fn from_option(value: Option<Bytes>) -> Self {
        value.map_or(Self::Nil, Self::Bulk)
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_))
    }
}

impl From<KvError> for Reply {
    /// The error's text as Redis sends it, which must stay one RESP line:
    /// CR and LF (from an argument it quotes) trimmed from the ends, and
    /// made spaces within.
    fn from(e: KvError) -> Self {
        let text = e.to_string();
        Self::Error(text.trim_matches(['\r', '\n']).replace(['\r', '\n'], " "))
    }
}

impl From<i64> for Reply {
    fn from(n: i64) -> Self {
        Self::Integer(n)
    }
}

impl From<bool> for Reply {
    fn from(b: bool) -> Self {
        Self::Integer(i64::from(b))
    }
}

impl From<usize> for Reply {
    fn from(n: usize) -> Self {
        Self::Integer(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
