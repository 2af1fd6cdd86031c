//! [`KvStore::execute`]: Redis-style argument lists parsed into calls to the
//! typed methods, answered with a [`Reply`]. Parsing follows Redis 7's order
//! of checks (arity, then options, then numbers), so errors match too.

use super::expire::{ExpireOptions, Expiry};
use super::keys::ScanOptions;
use super::longdouble;
use super::parse::parse_i64;
use super::strings::{GetExOption, SetCondition, SetOptions};
use super::{KvError, KvStore, Reply};
use bytes::Bytes;
use std::borrow::Cow;

type Args<'a> = [&'a [u8]];
type Handler = fn(&KvStore, &Args<'_>) -> Result<Reply, KvError>;

/// A command's name, arity (as Redis: negative means "at least") and handler.
struct Spec {
    name: &'static str,
    arity: i32,
    run: Handler,
}

const COMMANDS: &[Spec] = &[
    Spec {
        name: "get",
        arity: 2,
        run: |s, a| Ok(Reply::from_option(s.get(key(a[1])?))),
    },
    Spec {
        name: "set",
        arity: -3,
        run: set,
    },
    Spec {
        name: "setex",
        arity: 4,
        run: |s, a| setex(s, a, "setex"),
    },
    Spec {
        name: "psetex",
        arity: 4,
        run: |s, a| setex(s, a, "psetex"),
    },
    Spec {
        name: "setnx",
        arity: 3,
        run: |s, a| Ok(s.set_nx(key(a[1])?, bytes(a[2]))?.into()),
    },
    Spec {
        name: "getset",
        arity: 3,
        run: |s, a| Ok(Reply::from_option(s.get_set(key(a[1])?, bytes(a[2]))?)),
    },
    Spec {
        name: "getdel",
        arity: 2,
        run: |s, a| Ok(Reply::from_option(s.get_del(key(a[1])?))),
    },
    Spec {
        name: "getex",
        arity: -2,
        run: getex,
    },
    Spec {
        name: "mget",
        arity: -2,
        run: |s, a| {
            Ok(Reply::Array(
                s.mget(&keys(&a[1..])?)
                    .into_iter()
                    .map(Reply::from_option)
                    .collect(),
            ))
        },
    },
    Spec {
        name: "mset",
        arity: -3,
        run: |s, a| super::multi::mset(s, a, "mset").map(|_| Reply::ok()),
    },
    Spec {
        name: "msetnx",
        arity: -3,
        run: |s, a| super::multi::mset(s, a, "msetnx").map(Reply::from),
    },
    Spec {
        name: "rename",
        arity: 3,
        run: |s, a| super::multi::rename(s, a, false),
    },
    Spec {
        name: "renamenx",
        arity: 3,
        run: |s, a| super::multi::rename(s, a, true),
    },
    Spec {
        name: "copy",
        arity: -3,
        run: super::multi::copy,
    },
    Spec {
        name: "append",
        arity: 3,
        run: |s, a| Ok(s.append(key(a[1])?, a[2])?.into()),
    },
    Spec {
        name: "getrange",
        arity: 4,
        run: getrange,
    },
    Spec {
        name: "substr",
        arity: 4,
        run: getrange,
    },
    Spec {
        name: "setrange",
        arity: 4,
        run: setrange,
    },
    Spec {
        name: "lcs",
        arity: -3,
        run: super::lcs::command,
    },
    Spec {
        name: "setbit",
        arity: 4,
        run: super::bits::setbit,
    },
    Spec {
        name: "getbit",
        arity: 3,
        run: super::bits::getbit,
    },
    Spec {
        name: "bitcount",
        arity: -2,
        run: super::bits::bitcount,
    },
    Spec {
        name: "bitpos",
        arity: -3,
        run: super::bits::bitpos,
    },
    Spec {
        name: "strlen",
        arity: 2,
        run: |s, a| Ok(s.strlen(key(a[1])?).into()),
    },
    Spec {
        name: "incr",
        arity: 2,
        run: |s, a| Ok(s.incr(key(a[1])?)?.into()),
    },
    Spec {
        name: "decr",
        arity: 2,
        run: |s, a| Ok(s.decr(key(a[1])?)?.into()),
    },
    Spec {
        name: "incrby",
        arity: 3,
        run: |s, a| Ok(s.incr_by(key(a[1])?, parse_i64(a[2])?)?.into()),
    },
    Spec {
        name: "decrby",
        arity: 3,
        run: |s, a| Ok(s.decr_by(key(a[1])?, parse_i64(a[2])?)?.into()),
    },
    Spec {
        name: "incrbyfloat",
        arity: 3,
        run: |s, a| {
            let k = key(a[1])?;
            Ok(Reply::Bulk(
                s.incr_by_long_double(k, longdouble::parse(a[2])?)?,
            ))
        },
    },
    Spec {
        name: "del",
        arity: -2,
        run: |s, a| Ok(s.del(&keys(&a[1..])?).into()),
    },
    Spec {
        name: "unlink",
        arity: -2,
        run: |s, a| Ok(s.del(&keys(&a[1..])?).into()),
    },
    Spec {
        name: "exists",
        arity: -2,
        run: |s, a| Ok(s.exists(&keys(&a[1..])?).into()),
    },
    Spec {
        name: "touch",
        arity: -2,
        run: |s, a| Ok(s.touch(&keys(&a[1..])?).into()),
    },
    Spec {
        name: "expire",
        arity: -3,
        run: |s, a| expire(s, a, KvStore::expire),
    },
    Spec {
        name: "pexpire",
        arity: -3,
        run: |s, a| expire(s, a, KvStore::pexpire),
    },
    Spec {
        name: "expireat",
        arity: -3,
        run: |s, a| expire(s, a, KvStore::expire_at),
    },
    Spec {
        name: "pexpireat",
        arity: -3,
        run: |s, a| expire(s, a, KvStore::pexpire_at),
    },
    Spec {
        name: "ttl",
        arity: 2,
        run: |s, a| Ok(s.ttl(key(a[1])?).into()),
    },
    Spec {
        name: "pttl",
        arity: 2,
        run: |s, a| Ok(s.pttl(key(a[1])?).into()),
    },
    Spec {
        name: "expiretime",
        arity: 2,
        run: |s, a| Ok(s.expire_time(key(a[1])?).into()),
    },
    Spec {
        name: "pexpiretime",
        arity: 2,
        run: |s, a| Ok(s.pexpire_time(key(a[1])?).into()),
    },
    Spec {
        name: "persist",
        arity: 2,
        run: |s, a| Ok(s.persist(key(a[1])?)?.into()),
    },
    Spec {
        name: "keys",
        arity: 2,
        run: |s, a| Ok(key_array(s.keys_glob(a[1]))),
    },
    Spec {
        name: "scan",
        arity: -2,
        run: scan,
    },
    Spec {
        name: "dbsize",
        arity: 1,
        run: |s, _| Ok(s.dbsize().into()),
    },
    Spec {
        name: "flushdb",
        arity: -1,
        run: flushdb,
    },
    Spec {
        name: "randomkey",
        arity: 1,
        run: |s, _| Ok(Reply::from_option(s.random_key().map(Bytes::from))),
    },
    Spec {
        name: "info",
        arity: -1,
        run: |s, a| {
            let sections: Vec<String> = a[1..]
                .iter()
                .map(|x| String::from_utf8_lossy(c_str(x)).into_owned())
                .collect();
            let sections: Vec<&str> = sections.iter().map(String::as_str).collect();
            Ok(Reply::Bulk(Bytes::from(s.info(&sections))))
        },
    },
    Spec {
        name: "type",
        arity: 2,
        run: |s, a| Ok(Reply::Status(Cow::Borrowed(s.key_type(key(a[1])?)))),
    },
];

impl KvStore {
    /// Runs one Redis command given as its arguments (name first), through
    /// the same typed methods, and returns the reply a Redis server would send.
    ///
    /// ```
    /// use shardcache::kv::{KvStore, Reply};
    /// let store = KvStore::new();
    /// assert_eq!(store.execute(&["SET", "k", "v", "EX", "10"]), Reply::ok());
    /// assert_eq!(store.execute(&["TTL", "k"]), Reply::Integer(10));
    /// assert_eq!(store.execute(&["INCR", "k"]), Reply::Error("ERR value is not an integer or out of range".into()));
    /// assert_eq!(store.execute(&["GET"]), Reply::Error("ERR wrong number of arguments for 'get' command".into()));
    /// ```
    pub fn execute<A: AsRef<[u8]>>(&self, args: &[A]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
        // A write the append-only log could not keep was not applied: say so
        // as Redis does while it cannot write its AOF (reads go on).
        match self.cache.durably(|| self.dispatch(&args)) {
            Ok(reply) => reply.unwrap_or_else(Reply::from),
            // This write alone was refused; the log is healthy.
            Err(e @ crate::persist::PersistError::TooLarge { .. }) => {
                Reply::Error(format!("ERR {e}"))
            }
            Err(e) => Reply::Error(format!("MISCONF Errors writing to the AOF file: {e}")),
        }
    }

    fn dispatch(&self, args: &Args<'_>) -> Result<Reply, KvError> {
        let Some(name) = args.first() else {
            return Err(unknown(b"", &[]));
        };
        let lower = name.to_ascii_lowercase();
        let spec = COMMANDS
            .iter()
            .find(|c| c.name.as_bytes() == lower)
            .ok_or_else(|| unknown(name, &args[1..]))?;
        let n = i32::try_from(args.len()).unwrap_or(i32::MAX);
        if (spec.arity > 0 && n != spec.arity) || n < spec.arity.abs() {
            return Err(KvError::WrongArity(spec.name));
        }
        (spec.run)(self, args)
    }
}

/// An argument as Redis reads it as a C string (to print it in an error,
/// or to compare it with `strcasecmp`): up to its first NUL byte.
fn c_str(arg: &[u8]) -> &[u8] {
    arg.iter()
        .position(|&c| c == 0)
        .map_or(arg, |end| &arg[..end])
}

/// An option name (or `SCAN`'s `TYPE`, `FLUSHDB`'s mode, an `INFO`
/// section) as Redis compares it, with `strcasecmp` on the C string: up to
/// the first NUL byte, lowercased. So `EX\0` and `nx\0junk` are `EX` and
/// `NX` to Redis. Command names, keys, values, patterns and numbers are
/// read whole (a number with a NUL in it is not a number), except `SCAN`'s
/// cursor (see [`parse_cursor`]).
pub(super) fn option(arg: &[u8]) -> Vec<u8> {
    c_str(arg).to_ascii_lowercase()
}

/// Redis's unknown-command error: the name and the first arguments, quoted,
/// each cut so the list stays near 128 bytes, newlines blanked.
fn unknown(name: &[u8], args: &Args<'_>) -> KvError {
    let cut = |b: &[u8], max: usize| {
        let b = c_str(b);
        String::from_utf8_lossy(&b[..b.len().min(max)]).replace(['\r', '\n'], " ")
    };
    let mut list = Vec::new();
    for a in args {
        if list.len() >= 128 {
            break;
        }
        list.push(b'\'');
        let a = c_str(a);
        list.extend_from_slice(&a[..a.len().min(128 - (list.len() - 1))]);
        list.extend_from_slice(b"' ");
    }
    KvError::UnknownCommand {
        name: cut(name, 128),
        args: cut(&list, usize::MAX),
    }
}

pub(super) fn key(b: &[u8]) -> Result<&str, KvError> {
    std::str::from_utf8(b).map_err(|_| KvError::KeyNotUtf8)
}

fn keys<'a>(args: &Args<'a>) -> Result<Vec<&'a str>, KvError> {
    args.iter().map(|a| key(a)).collect()
}

pub(super) fn bytes(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

fn key_array(keys: Vec<String>) -> Reply {
    Reply::Array(
        keys.into_iter()
            .map(|k| Reply::Bulk(Bytes::from(k)))
            .collect(),
    )
}

/// The options `SET` (and, with `set = false`, `GETEX`) accept, as Redis's
/// `parseExtendedStringArgumentsOrReply`: option names are C strings
/// ([`option`]); conflicting options are a syntax error; a repeated expiry
/// option keeps the last value. The expiry's number is parsed only once all
/// options are known, as Redis does.
fn parse_string_options<'a>(
    args: &Args<'a>,
    set: bool,
) -> Result<(SetOptions, bool, RawExpiry<'a>), KvError> {
    let mut o = SetOptions::new();
    let mut persist = false;
    let mut expiry: RawExpiry<'a> = None;
    let mut i = 0;
    while i < args.len() {
        let opt = option(args[i]);
        let next = args.get(i + 1);
        let other_expiry = expiry.as_ref().is_some_and(|(kind, _)| *kind != opt);
        match (opt.as_slice(), next) {
            (b"nx", _) if set && o.condition != Some(SetCondition::Xx) => {
                o.condition = Some(SetCondition::Nx)
            }
            (b"xx", _) if set && o.condition != Some(SetCondition::Nx) => {
                o.condition = Some(SetCondition::Xx)
            }
            (b"get", _) if set => o.get = true,
            (b"keepttl", _) if set && expiry.is_none() => o.keep_ttl = true,
            (b"persist", _) if !set && expiry.is_none() => persist = true,
            (b"ex" | b"px" | b"exat" | b"pxat", Some(n))
                if !o.keep_ttl && !persist && !other_expiry =>
            {
                expiry = Some((opt, n));
                i += 1;
            }
            _ => return Err(KvError::Syntax),
        }
        i += 1;
    }
    Ok((o, persist, expiry))
}

/// An expiry option and its still unparsed number.
type RawExpiry<'a> = Option<(Vec<u8>, &'a [u8])>;

fn parse_expiry(raw: RawExpiry<'_>) -> Result<Option<Expiry>, KvError> {
    let Some((kind, n)) = raw else {
        return Ok(None);
    };
    let n = parse_i64(n)?;
    Ok(Some(match kind.as_slice() {
        b"ex" => Expiry::Ex(n),
        b"px" => Expiry::Px(n),
        b"exat" => Expiry::ExAt(n),
        _ => Expiry::PxAt(n),
    }))
}

fn set(s: &KvStore, a: &Args<'_>) -> Result<Reply, KvError> {
    let (mut opts, _, raw) = parse_string_options(&a[3..], true)?;
    opts.expiry = parse_expiry(raw)?;
    let out = s.set(key(a[1])?, bytes(a[2]), opts)?;
    Ok(match (opts.get, out.written) {
        (true, _) => Reply::from_option(out.previous),
        (false, true) => Reply::ok(),
        (false, false) => Reply::Nil,
    })
}

fn setex(s: &KvStore, a: &Args<'_>, command: &'static str) -> Result<Reply, KvError> {
    let n = parse_i64(a[2])?;
    let k = key(a[1])?;
    if command == "setex" {
        s.set_ex(k, bytes(a[3]), n)?;
    } else {
        s.pset_ex(k, bytes(a[3]), n)?;
    }
    Ok(Reply::ok())
}

fn getex(s: &KvStore, a: &Args<'_>) -> Result<Reply, KvError> {
    let (_, persist, raw) = parse_string_options(&a[2..], false)?;
    let k = key(a[1])?;
    let expiry = match parse_expiry(raw) {
        // As Redis: a missing key is nil before the number is looked at.
        Err(_) if !s.cache.contains_key(&s.full_key(k)) => return Ok(Reply::from_option(s.get(k))),
        other => other?,
    };
    let option = match (expiry, persist) {
        (Some(e), _) => GetExOption::Expire(e),
        (None, true) => GetExOption::Persist,
        (None, false) => GetExOption::Keep,
    };
    Ok(Reply::from_option(s.get_ex(k, option)?))
}

/// `GETRANGE` and `SUBSTR`: both positions are parsed before the key is
/// looked up, as Redis does.
fn getrange(s: &KvStore, a: &Args<'_>) -> Result<Reply, KvError> {
    let (start, end) = (parse_i64(a[2])?, parse_i64(a[3])?);
    Ok(Reply::Bulk(s.get_range(key(a[1])?, start, end)))
}

/// `SETRANGE`: the offset is checked (an integer, not negative) before the
/// key is looked at.
fn setrange(s: &KvStore, a: &Args<'_>) -> Result<Reply, KvError> {
    let offset = parse_i64(a[2])?;
    if offset < 0 {
        return Err(KvError::OffsetOutOfRange);
    }
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    Ok(s.set_range(key(a[1])?, offset, a[3])?.into())
}

type ExpireFn = fn(&KvStore, &str, i64, ExpireOptions) -> Result<bool, KvError>;

fn expire(s: &KvStore, a: &Args<'_>, f: ExpireFn) -> Result<Reply, KvError> {
    let mut opts = ExpireOptions::new();
    for opt in &a[3..] {
        match option(opt).as_slice() {
            b"nx" => opts.nx = true,
            b"xx" => opts.xx = true,
            b"gt" => opts.gt = true,
            b"lt" => opts.lt = true,
            _ => {
                return Err(KvError::UnsupportedOption(
                    String::from_utf8_lossy(c_str(opt)).into_owned(),
                ));
            }
        }
    }
    opts.validate()?;
    let when = parse_i64(a[2])?;
    Ok(f(s, key(a[1])?, when, opts)?.into())
}

/// A `SCAN` cursor as Redis 7.0 reads it, with `strtoul` on the C string:
/// optional sign, decimal digits, up to the first NUL byte (so `5\0x` is 5,
/// and an empty cursor, or one starting with NUL, is 0).
fn parse_cursor(b: &[u8]) -> Result<u64, KvError> {
    let b = c_str(b);
    if b.is_empty() {
        return Ok(0);
    }
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let text = std::str::from_utf8(digits).map_err(|_| KvError::InvalidCursor)?;
    if text.is_empty() || !text.bytes().all(|c| c.is_ascii_digit()) {
        return Err(KvError::InvalidCursor);
    }
    let n: u64 = text.parse().map_err(|_| KvError::InvalidCursor)?;
    Ok(if neg { n.wrapping_neg() } else { n })
}

fn scan(s: &KvStore, a: &Args<'_>) -> Result<Reply, KvError> {
    let cursor = parse_cursor(a[1])?;
    let mut count = ScanOptions::new().count;
    let mut pattern = None;
    let mut type_ok = true;
    let mut i = 2;
    while i < a.len() {
        let Some(value) = a.get(i + 1) else {
            return Err(KvError::Syntax);
        };
        match option(a[i]).as_slice() {
            b"count" => {
                let n = parse_i64(value)?;
                if n < 1 {
                    return Err(KvError::Syntax);
                }
                count = usize::try_from(n).unwrap_or(usize::MAX);
            }
            b"match" => pattern = Some(*value),
            b"type" => type_ok = option(value) == b"string",
            _ => return Err(KvError::Syntax),
        }
        i += 2;
    }
    let (next, mut batch) = s.scan_glob(cursor, count, pattern);
    if !type_ok {
        batch.clear();
    }
    Ok(Reply::Array(vec![
        Reply::Bulk(Bytes::from(next.to_string())),
        key_array(batch),
    ]))
}

fn flushdb(s: &KvStore, a: &Args<'_>) -> Result<Reply, KvError> {
    match a.get(1).map(|m| option(m)) {
        _ if a.len() > 2 => return Err(KvError::Syntax),
        Some(m) if m != b"async" && m != b"sync" => return Err(KvError::Syntax),
        _ => {}
    }
    s.flushdb();
    Ok(Reply::ok())
}
