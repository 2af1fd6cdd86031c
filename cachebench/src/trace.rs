//! Key streams: trace-file readers (ARC and plain text, optionally zstd
//! compressed) and seeded synthetic generators.
//!
//! Everything is streamed: a trace is never held in memory as a whole.

mod synthetic;

use synthetic::Synthetic;
pub(crate) use synthetic::Zipf;

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Seed used by every synthetic generator, so runs are reproducible.
pub(crate) const SEED: u64 = 0x5eed_cace;

/// Default number of requests produced by a synthetic generator when no
/// `--limit` is given.
pub(crate) const DEFAULT_SYNTHETIC_LEN: u64 = 1_000_000;

/// An error while reading a trace, naming the file and (when known) the line.
#[derive(Debug)]
pub(crate) struct TraceError {
    /// The trace file (or synthetic spec) that failed.
    pub(crate) file: String,
    /// 1-based line number, if the error concerns one line.
    pub(crate) line: Option<u64>,
    /// What went wrong.
    pub(crate) msg: String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}: line {}: {}", self.file, l, self.msg),
            None => write!(f, "{}: {}", self.file, self.msg),
        }
    }
}

impl std::error::Error for TraceError {}

/// Format of a trace file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// ARC traces: `start nblocks ignore reqno`, expanding to `nblocks` keys.
    Arc,
    /// One key per line; non-numeric keys are hashed.
    Plain,
}

/// What to replay: a file or a synthetic generator.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TraceSpec {
    /// A trace file with its format.
    File {
        /// Path to the file (`.zst` means zstd-compressed).
        path: PathBuf,
        /// How its lines are parsed.
        format: Format,
    },
    /// `zipf:S:N`: Zipf with exponent `S` over `N` keys.
    Zipf {
        /// Exponent.
        s: f64,
        /// Number of distinct keys.
        n: u64,
    },
    /// Zipf hot set plus periodic one-off sequential scans larger than the cache.
    Scan,
    /// Keys cycling over 1.2x the cache size.
    Loop,
    /// Two phases: the Zipf hot set moves to new keys half-way through.
    Shift,
}

impl TraceSpec {
    /// Parses a `--trace` argument. Synthetic names win over file names;
    /// `format` overrides the file-name based detection.
    pub(crate) fn parse(arg: &str, format: Option<Format>) -> Result<Self, String> {
        let mut parts = arg.split(':');
        match parts.next().unwrap_or("") {
            "zipf" if arg.starts_with("zipf:") => {
                let s = parts.next().ok_or("zipf trace needs `zipf:S:N`")?;
                let n = parts.next().ok_or("zipf trace needs `zipf:S:N`")?;
                if parts.next().is_some() {
                    return Err(format!("`{arg}`: expected `zipf:S:N`"));
                }
                let s: f64 = s
                    .parse()
                    .map_err(|_| format!("`{arg}`: bad Zipf exponent `{s}`"))?;
                let n: u64 = n
                    .parse()
                    .map_err(|_| format!("`{arg}`: bad key count `{n}`"))?;
                if !(s.is_finite() && s >= 0.0) || n == 0 {
                    return Err(format!("`{arg}`: need S >= 0 and N >= 1"));
                }
                Ok(Self::Zipf { s, n })
            }
            "scan" if arg == "scan" => Ok(Self::Scan),
            "loop" if arg == "loop" => Ok(Self::Loop),
            "shift" if arg == "shift" => Ok(Self::Shift),
            _ => {
                let path = PathBuf::from(arg);
                let format = format.unwrap_or_else(|| detect_format(&path));
                Ok(Self::File { path, format })
            }
        }
    }

    /// Short human-readable name.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::File { path, .. } => path.display().to_string(),
            Self::Zipf { s, n } => format!("zipf:{s}:{n}"),
            Self::Scan => "scan".into(),
            Self::Loop => "loop".into(),
            Self::Shift => "shift".into(),
        }
    }

    /// Opens the key stream for a cache of `capacity` entries. At most
    /// `limit` keys are produced (synthetic traces default to
    /// [`DEFAULT_SYNTHETIC_LEN`]). `progress` receives bytes read (files) or
    /// keys produced (synthetic).
    pub(crate) fn open(
        &self,
        capacity: u64,
        limit: Option<u64>,
        progress: Arc<AtomicU64>,
    ) -> Result<KeyStream, TraceError> {
        let inner: Box<dyn Iterator<Item = Result<u64, TraceError>> + Send> = match self {
            Self::File { path, format } => Box::new(FileTrace::open(path, *format, progress)?),
            _ => {
                let len = limit.unwrap_or(DEFAULT_SYNTHETIC_LEN);
                Box::new(Synthetic::new(self, capacity, len, progress).map(Ok))
            }
        };
        Ok(KeyStream {
            inner,
            remaining: limit.unwrap_or(u64::MAX),
        })
    }

    /// Total for the progress bar: file size in bytes, or number of keys.
    pub(crate) fn progress_total(&self, limit: Option<u64>) -> Option<u64> {
        match self {
            Self::File { path, .. } => std::fs::metadata(path).ok().map(|m| m.len()),
            _ => Some(limit.unwrap_or(DEFAULT_SYNTHETIC_LEN)),
        }
    }
}

/// `arc` if the file name contains `.lis`, else `plain`.
pub(crate) fn detect_format(path: &Path) -> Format {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.contains(".lis") {
        Format::Arc
    } else {
        Format::Plain
    }
}

/// A bounded stream of keys (or trace errors).
pub(crate) struct KeyStream {
    inner: Box<dyn Iterator<Item = Result<u64, TraceError>> + Send>,
    remaining: u64,
}

impl Iterator for KeyStream {
    type Item = Result<u64, TraceError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.inner.next()
    }
}

/// A reader that counts the bytes passing through it.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Streaming reader for ARC and plain traces.
pub(crate) struct FileTrace {
    reader: Box<dyn BufRead + Send>,
    name: String,
    format: Format,
    line_no: u64,
    buf: Vec<u8>,
    /// Pending plain key.
    plain: Option<u64>,
    /// Pending ARC expansion: next key and one past the last.
    next: u64,
    end: u64,
    done: bool,
}

impl FileTrace {
    /// Opens `path`, decompressing zstd when the name ends in `.zst`.
    pub(crate) fn open(
        path: &Path,
        format: Format,
        progress: Arc<AtomicU64>,
    ) -> Result<Self, TraceError> {
        let name = path.display().to_string();
        let err = |msg: String| TraceError {
            file: name.clone(),
            line: None,
            msg,
        };
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let counted = Counting {
            inner: file,
            count: progress,
        };
        let reader: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "zst") {
            Box::new(
                zstd::stream::read::Decoder::new(counted)
                    .map_err(|e| err(format!("cannot start zstd decoder: {e}")))?,
            )
        } else {
            Box::new(counted)
        };
        Ok(Self::from_reader(
            Box::new(BufReader::with_capacity(1 << 16, reader)),
            name,
            format,
        ))
    }

    /// Wraps any buffered reader; `name` is used in error messages.
    pub(crate) fn from_reader(
        reader: Box<dyn BufRead + Send>,
        name: String,
        format: Format,
    ) -> Self {
        Self {
            reader,
            name,
            format,
            line_no: 0,
            buf: Vec::new(),
            plain: None,
            next: 0,
            end: 0,
            done: false,
        }
    }

    fn error(&self, msg: String) -> TraceError {
        TraceError {
            file: self.name.clone(),
            line: Some(self.line_no),
            msg,
        }
    }

    /// Reads lines until one yields keys; returns `Ok(false)` at end of file.
    fn refill(&mut self) -> Result<bool, TraceError> {
        loop {
            self.buf.clear();
            self.line_no += 1;
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| self.error(format!("read error: {e}")))?;
            if n == 0 {
                return Ok(false);
            }
            let line = self.buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            match self.format {
                Format::Plain => {
                    self.plain = Some(parse_plain(line));
                    return Ok(true);
                }
                Format::Arc => {
                    let (start, count) = parse_arc(line).map_err(|m| self.error(m))?;
                    if count == 0 {
                        continue;
                    }
                    let end = start.checked_add(count).ok_or_else(|| {
                        self.error(format!("start {start} + nblocks {count} overflows u64"))
                    })?;
                    self.next = start;
                    self.end = end;
                    return Ok(true);
                }
            }
        }
    }
}

impl FileTrace {
    /// The next request as `(first key, keys)`: an ARC line's blocks, or
    /// one plain key. For readers that keep requests whole (the trace's own
    /// iterator yields the keys one by one).
    pub(crate) fn next_request(&mut self) -> Option<Result<(u64, u64), TraceError>> {
        if let Some(k) = self.plain.take() {
            return Some(Ok((k, 1)));
        }
        if self.next < self.end {
            let r = (self.next, self.end - self.next);
            self.next = self.end;
            return Some(Ok(r));
        }
        if self.done {
            return None;
        }
        match self.refill() {
            Ok(true) => self.next_request(),
            Ok(false) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Parses one plain-text key: a decimal u64, or a hash of the bytes.
pub(crate) fn parse_plain(line: &[u8]) -> u64 {
    if let Some(k) = std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()) {
        return k;
    }
    let mut h = DefaultHasher::new();
    line.hash(&mut h);
    h.finish()
}

/// Parses an ARC line `start nblocks ignore reqno` into `(start, nblocks)`.
pub(crate) fn parse_arc(line: &[u8]) -> Result<(u64, u64), String> {
    let text = std::str::from_utf8(line).map_err(|_| "line is not valid UTF-8".to_string())?;
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    if fields.len() != 4 {
        return Err(format!(
            "expected 4 fields `start nblocks ignore reqno`, found {}: `{text}`",
            fields.len()
        ));
    }
    let num = |i: usize, what: &str| -> Result<u64, String> {
        fields[i]
            .parse::<u64>()
            .map_err(|_| format!("{what} `{}` is not a non-negative integer", fields[i]))
    };
    let start = num(0, "start")?;
    let count = num(1, "nblocks")?;
    num(2, "third field")?;
    num(3, "reqno")?;
    Ok((start, count))
}

impl Iterator for FileTrace {
    type Item = Result<u64, TraceError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(k) = self.plain.take() {
                return Some(Ok(k));
            }
            if self.next < self.end {
                let k = self.next;
                self.next += 1;
                return Some(Ok(k));
            }
            if self.done {
                return None;
            }
            match self.refill() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, format: Format) -> Vec<Result<u64, TraceError>> {
        FileTrace::from_reader(
            Box::new(io::Cursor::new(text.as_bytes().to_vec())),
            "t.lis".into(),
            format,
        )
        .collect()
    }

    fn ok(text: &str, format: Format) -> Vec<u64> {
        read(text, format)
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()
            .expect("valid trace")
    }

    #[test]
    fn arc_expands_blocks() {
        assert_eq!(ok("10 3 0 1\n", Format::Arc), vec![10, 11, 12]);
        assert_eq!(
            ok("10 3 0 1\n\n7 1 0 2\n5 0 0 3\n1 2 0 4", Format::Arc),
            vec![10, 11, 12, 7, 1, 2]
        );
    }

    #[test]
    fn requests_stay_whole() {
        let mut t = FileTrace::from_reader(
            Box::new(io::Cursor::new(
                b"10 3 0 1\n\n7 1 0 2\n5 0 0 3\n1 2 0 4".to_vec(),
            )),
            "t.lis".into(),
            Format::Arc,
        );
        let mut v = Vec::new();
        while let Some(r) = t.next_request() {
            v.push(r.expect("valid"));
        }
        assert_eq!(v, [(10, 3), (7, 1), (1, 2)]);
        let mut t = FileTrace::from_reader(
            Box::new(io::Cursor::new(b"4\n4\nx 1\n".to_vec())),
            "t".into(),
            Format::Plain,
        );
        let keys: Vec<(u64, u64)> = std::iter::from_fn(|| t.next_request())
            .map(|r| r.expect("valid"))
            .collect();
        assert_eq!(keys.len(), 3);
        assert_eq!(&keys[..2], [(4, 1), (4, 1)]);
        let mut t = FileTrace::from_reader(
            Box::new(io::Cursor::new(b"10 3 0 1\n11 x 0 2\n".to_vec())),
            "t.lis".into(),
            Format::Arc,
        );
        assert!(t.next_request().is_some_and(|r| r.is_ok()));
        let e = t.next_request().expect("an error").expect_err("malformed");
        assert_eq!(e.line, Some(2));
        assert!(t.next_request().is_none());
    }

    #[test]
    fn arc_malformed_names_line() {
        let r = read("10 3 0 1\n11 x 0 2\n", Format::Arc);
        assert_eq!(r.len(), 4);
        let e = r[3].as_ref().expect_err("malformed");
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().contains("t.lis: line 2"), "{e}");
        let r = read("1 2 3\n", Format::Arc);
        assert_eq!(r[0].as_ref().expect_err("short").line, Some(1));
    }

    #[test]
    fn plain_keys_and_hashes() {
        let v = ok("5\n  6 \n\nabc\n5\nabc\n", Format::Plain);
        assert_eq!(v.len(), 5);
        assert_eq!(&v[..2], &[5, 6]);
        assert_eq!(v[1 + 1], v[4]);
        assert_eq!(v[3], 5);
    }

    #[test]
    fn format_detection() {
        assert_eq!(detect_format(Path::new("/x/OLTP.lis.zst")), Format::Arc);
        assert_eq!(detect_format(Path::new("keys.txt")), Format::Plain);
        assert_eq!(
            TraceSpec::parse("zipf:0.9:100", None),
            Ok(TraceSpec::Zipf { s: 0.9, n: 100 })
        );
        assert!(TraceSpec::parse("zipf:a:100", None).is_err());
    }

    #[test]
    fn synthetic_lengths() {
        let p = Arc::new(AtomicU64::new(0));
        for spec in ["scan", "loop", "shift", "zipf:1.0:50"] {
            let spec = TraceSpec::parse(spec, None).expect("spec");
            let n = spec.open(100, Some(1234), p.clone()).expect("open").count();
            assert_eq!(n, 1234);
        }
    }
}
