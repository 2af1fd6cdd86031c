#![allow(clippy::unwrap_used)]
//! Attacks on the persistence layer: a fault-injecting `Storage`
//! that can fail any mutating call (append, torn append, fsync, truncate,
//! rewrite start, rewrite append, each step of the rewrite commit, the
//! admission summary), checked against a model of acknowledged writes,
//! with a power loss / process crash after every operation.

use shardcache::persist::{FileLog, Fsync, PersistError, RewriteTarget, Storage};
use shardcache::{Cache, Decision, Ttl};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Append,
    Sync,
    Truncate,
    Begin,
    RwAppend,
    CommitFsync,
    CommitRename,
    CommitDir,
    Summary,
}

#[derive(Debug, Default, Clone)]
struct St {
    data: Vec<u8>,
    synced: usize,
    before_rename: Option<(Vec<u8>, usize)>,
    summary: Option<Vec<u8>>,
    calls: u64,
    /// Fail the mutating call with this index (0-based).
    fail_at: Option<u64>,
    sticky: bool,
    /// An append that fails writes this many of its bytes first.
    tear: usize,
    trace: Vec<Kind>,
    failed: Vec<(u64, Kind)>,
}

#[derive(Debug, Clone, Default)]
struct FaultStore {
    st: Arc<Mutex<St>>,
}

impl FaultStore {
    fn fault(&self, kind: Kind) -> bool {
        let mut s = self.st.lock().unwrap();
        let n = s.calls;
        s.calls += 1;
        s.trace.push(kind);
        let hit = match s.fail_at {
            Some(at) if s.sticky => n >= at,
            Some(at) => n == at,
            None => false,
        };
        if hit {
            s.failed.push((n, kind));
        }
        hit
    }
    fn err(kind: Kind) -> io::Error {
        io::Error::new(io::ErrorKind::StorageFull, format!("injected on {kind:?}"))
    }
    /// A fresh storage holding what a power loss leaves.
    fn after_power_loss(&self) -> FaultStore {
        let s = self.st.lock().unwrap();
        let (mut data, synced) = match &s.before_rename {
            Some((d, sy)) => (d.clone(), *sy),
            None => (s.data.clone(), s.synced),
        };
        data.truncate(synced);
        let len = data.len();
        FaultStore {
            st: Arc::new(Mutex::new(St {
                data,
                synced: len,
                summary: s.summary.clone(),
                ..St::default()
            })),
        }
    }
    /// A fresh storage holding what a process crash leaves (the OS has it all).
    fn after_process_crash(&self) -> FaultStore {
        let s = self.st.lock().unwrap();
        let len = s.data.len();
        FaultStore {
            st: Arc::new(Mutex::new(St {
                data: s.data.clone(),
                synced: len,
                summary: s.summary.clone(),
                ..St::default()
            })),
        }
    }
    fn heal(&self) {
        let mut s = self.st.lock().unwrap();
        s.fail_at = None;
    }
    fn arm(&self, at: u64, sticky: bool, tear: usize) {
        let mut s = self.st.lock().unwrap();
        s.fail_at = Some(at);
        s.sticky = sticky;
        s.tear = tear;
        s.calls = 0;
        s.trace.clear();
        s.failed.clear();
    }
}

struct FsRewrite {
    data: Vec<u8>,
    owner: FaultStore,
}

impl RewriteTarget for FsRewrite {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.owner.fault(Kind::RwAppend) {
            let tear = self.owner.st.lock().unwrap().tear.min(bytes.len());
            self.data.extend_from_slice(&bytes[..tear]);
            return Err(FaultStore::err(Kind::RwAppend));
        }
        self.data.extend_from_slice(bytes);
        Ok(())
    }
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

impl Storage for FaultStore {
    type Rewrite = FsRewrite;
    fn size(&self) -> io::Result<u64> {
        Ok(self.st.lock().unwrap().data.len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let s = self.st.lock().unwrap();
        let from = (offset as usize).min(s.data.len());
        let n = buf.len().min(s.data.len() - from);
        buf[..n].copy_from_slice(&s.data[from..from + n]);
        Ok(n)
    }
    fn preserve(&self) -> io::Result<String> {
        Ok("<aside>".into())
    }
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        if self.fault(Kind::Append) {
            let mut s = self.st.lock().unwrap();
            let tear = s.tear.min(bytes.len());
            s.data.extend_from_slice(&bytes[..tear]);
            return Err(Self::err(Kind::Append));
        }
        self.st.lock().unwrap().data.extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        if self.fault(Kind::Sync) {
            return Err(Self::err(Kind::Sync));
        }
        let mut s = self.st.lock().unwrap();
        s.synced = s.data.len();
        s.before_rename = None;
        Ok(())
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        if self.fault(Kind::Truncate) {
            return Err(Self::err(Kind::Truncate));
        }
        let mut s = self.st.lock().unwrap();
        s.data.truncate(len as usize);
        s.synced = s.synced.min(s.data.len());
        Ok(())
    }
    fn describe(&self) -> String {
        "<fault>".into()
    }
    fn begin_rewrite(&self) -> io::Result<FsRewrite> {
        if self.fault(Kind::Begin) {
            return Err(Self::err(Kind::Begin));
        }
        Ok(FsRewrite {
            data: Vec::new(),
            owner: self.clone(),
        })
    }
    fn commit_rewrite(&self, next: FsRewrite) -> io::Result<()> {
        if self.fault(Kind::CommitFsync) {
            return Err(Self::err(Kind::CommitFsync));
        }
        if self.fault(Kind::CommitRename) {
            return Err(Self::err(Kind::CommitRename));
        }
        {
            let mut s = self.st.lock().unwrap();
            let len = next.data.len();
            let old = std::mem::replace(&mut s.data, next.data);
            let old_synced = s.synced;
            // A rename whose directory entry is not durable yet.
            if s.before_rename.is_none() {
                s.before_rename = Some((old, old_synced));
            }
            s.synced = len;
        }
        if !self.fault(Kind::CommitDir) {
            self.st.lock().unwrap().before_rename = None;
        }
        Ok(())
    }
    fn write_summary(&self, bytes: &[u8]) -> io::Result<()> {
        if self.fault(Kind::Summary) {
            return Err(Self::err(Kind::Summary));
        }
        self.st.lock().unwrap().summary = Some(bytes.to_vec());
        Ok(())
    }
    fn read_summary(&self, _limit: u64) -> io::Result<Option<Vec<u8>>> {
        Ok(self.st.lock().unwrap().summary.clone())
    }
}

const KEYS: u32 = 5;

fn open(store: &FaultStore, fsync: Fsync) -> Result<Cache<u32, u64>, PersistError> {
    let log = FileLog::with_storage(store.clone(), fsync)
        .write_delay(Duration::ZERO)
        .rewrite_policy(0, u64::MAX);
    Ok(Cache::builder().max_capacity(1000).build_persistent(log)?.0)
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Insert(u32, u64),
    Remove(u32),
    Incr(u32),
    Ttl(u32),
    Clear,
    Rewrite,
    Sync,
}

fn workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..36u32 {
        let k = (i * 3) % KEYS;
        ops.push(match i % 9 {
            0 | 1 | 5 => Op::Insert(k, u64::from(i) * 100 + u64::from(k)),
            2 => Op::Remove(k),
            3 => Op::Incr(k),
            4 => Op::Ttl(k),
            6 => Op::Rewrite,
            7 => Op::Sync,
            _ if i == 26 => Op::Clear,
            _ => Op::Insert(k, 7),
        });
    }
    ops
}

type Model = BTreeMap<u32, u64>;

/// Runs `op`; returns the result and its effect on the model if acknowledged.
fn run_op(cache: &Cache<u32, u64>, op: Op, model: &Model) -> (Result<(), PersistError>, Model) {
    let mut next = model.clone();
    let r = match op {
        Op::Insert(k, v) => {
            next.insert(k, v);
            cache.durably(|| cache.insert(k, v))
        }
        Op::Remove(k) => {
            next.remove(&k);
            cache.durably(|| {
                cache.remove(&k);
            })
        }
        Op::Incr(k) => {
            // The value it writes depends on memory (which may hold a
            // write of unknown outcome), so the model takes it from there.
            let r = cache.durably(|| {
                let mut wrote = 0;
                let _ = cache.compute(k, |cur| {
                    let n = cur.map_or(1, |c| c.value + 1);
                    wrote = n;
                    (Decision::Put(n, Ttl::Keep), ())
                });
                wrote
            });
            return match r {
                Ok(n) => {
                    next.insert(k, n);
                    (Ok(()), next)
                }
                Err(e) => (Err(e), next),
            };
        }
        Op::Ttl(k) => cache.durably(|| {
            cache.set_ttl(&k, Some(Duration::from_secs(3600)));
        }),
        Op::Clear => {
            next.clear();
            cache.durably(|| cache.clear())
        }
        Op::Rewrite => cache.rewrite_log(),
        Op::Sync => cache.sync(),
    };
    (r, next)
}

fn contents(cache: &Cache<u32, u64>) -> Model {
    (0..KEYS)
        .filter_map(|k| cache.get(&k).map(|v| (k, v)))
        .collect()
}

fn keys_of(op: Op) -> Vec<u32> {
    match op {
        Op::Insert(k, _) | Op::Remove(k) | Op::Incr(k) => vec![k],
        // A TTL change settles nothing about the value.
        Op::Ttl(_) => vec![],
        Op::Clear => (0..KEYS).collect(),
        Op::Rewrite | Op::Sync => vec![],
    }
}

fn check(what: &str, got: &Model, model: &Model, unknown: &[bool]) -> Result<(), String> {
    for k in 0..KEYS {
        if unknown[k as usize] {
            continue;
        }
        if got.get(&k) != model.get(&k) {
            return Err(format!(
                "{what}: key {k}: got {:?}, acknowledged {:?}\n  got {got:?}\n  model {model:?}",
                got.get(&k),
                model.get(&k)
            ));
        }
    }
    Ok(())
}

/// One run: arm the fault at mutating call `at`; run the workload; after
/// every op, check memory and what a crash leaves. Returns violations.
fn one_run(
    fsync: Fsync,
    at: u64,
    sticky: bool,
    tear: usize,
    heal_after: Option<usize>,
) -> Vec<String> {
    let store = FaultStore::default();
    let cache = open(&store, fsync).unwrap();
    store.arm(at, sticky, tear);
    let mut model = Model::new();
    let mut unknown = vec![false; KEYS as usize];
    let mut bad = Vec::new();
    let crash = |store: &FaultStore| match fsync {
        Fsync::Always => store.after_power_loss(),
        _ => store.after_process_crash(),
    };
    for (i, op) in workload().into_iter().enumerate() {
        if heal_after == Some(i) {
            store.heal();
            let _ = cache.sync();
        }
        let (r, next) = run_op(&cache, op, &model);
        match &r {
            Ok(()) => {
                for k in keys_of(op) {
                    unknown[k as usize] = false;
                }
                model = next;
            }
            Err(e) => {
                let refused = matches!(e, PersistError::Refused { .. });
                let unknown_outcome = e.to_string().contains("unknown");
                let buffered_first = fsync != Fsync::Always && !refused;
                if unknown_outcome || buffered_first {
                    for k in keys_of(op) {
                        unknown[k as usize] = true;
                    }
                }
            }
        }
        let ctx = format!(
            "{fsync:?} at={at} sticky={sticky} tear={tear} heal={heal_after:?} op#{i} {op:?} -> {r:?}; failed {:?}",
            store.st.lock().unwrap().failed
        );
        if let Err(e) = check(
            &format!("memory [{ctx}]"),
            &contents(&cache),
            &model,
            &unknown,
        ) {
            bad.push(e);
            return bad;
        }
        let crashed = crash(&store);
        match open(&crashed, Fsync::Always) {
            Ok(c) => {
                if let Err(e) = check(
                    &format!("after crash [{ctx}]"),
                    &contents(&c),
                    &model,
                    &unknown,
                ) {
                    bad.push(e);
                    return bad;
                }
            }
            Err(e) => {
                bad.push(format!("reopen after crash failed [{ctx}]: {e}"));
                return bad;
            }
        }
    }
    // Heal, repair, then check once more.
    store.heal();
    let _ = cache.sync();
    let _ = cache.sync();
    let ctx = format!("{fsync:?} at={at} sticky={sticky} tear={tear} end");
    if let Err(e) = check(
        &format!("memory [{ctx}]"),
        &contents(&cache),
        &model,
        &unknown,
    ) {
        bad.push(e);
    }
    let crashed = crash(&store);
    drop(cache);
    match open(&crashed, Fsync::Always) {
        Ok(c) => {
            if let Err(e) = check(
                &format!("after crash [{ctx}]"),
                &contents(&c),
                &model,
                &unknown,
            ) {
                bad.push(e);
            }
        }
        Err(e) => bad.push(format!("reopen failed [{ctx}]: {e}")),
    }
    bad
}

fn count_calls(fsync: Fsync) -> u64 {
    let store = FaultStore::default();
    let cache = open(&store, fsync).unwrap();
    store.arm(u64::MAX, false, 0);
    let mut model = Model::new();
    for op in workload() {
        let (r, next) = run_op(&cache, op, &model);
        r.unwrap();
        model = next;
    }
    let n = store.st.lock().unwrap().calls;
    println!(
        "{fsync:?}: {n} mutating calls; {:?}",
        store.st.lock().unwrap().trace
    );
    n
}

#[test]
fn every_fault_at_every_call_keeps_acknowledged_writes() {
    let mut all = Vec::new();
    for fsync in [Fsync::Always, Fsync::Never] {
        let n = count_calls(fsync);
        for at in 0..n + 2 {
            for sticky in [false, true] {
                for tear in [0usize, 3, 9] {
                    for heal in [None, Some(20)] {
                        all.extend(one_run(fsync, at, sticky, tear, heal));
                    }
                }
            }
        }
    }
    for v in &all {
        println!("VIOLATION: {v}");
    }
    assert!(all.is_empty(), "{} violations", all.len());
}

// ------------------------------------------------------------------ damage

mod damage {
    use shardcache::kv::KvStore;
    use shardcache::persist::{
        FileLog, Fsync, MemStorage, OnCorruptTail, OnCorruption, PersistError, RecoveryReport,
        Storage,
    };
    use std::collections::BTreeMap;

    pub(crate) type State = BTreeMap<String, Vec<u8>>;

    pub(crate) fn open_bytes(
        bytes: &[u8],
        tail: OnCorruptTail,
        inside: OnCorruption,
    ) -> (MemStorage, Result<(KvStore, RecoveryReport), PersistError>) {
        let storage = MemStorage::new();
        if !bytes.is_empty() {
            Storage::append(&storage, bytes).unwrap();
            Storage::sync(&storage).unwrap();
        }
        let log = FileLog::with_storage(storage.clone(), Fsync::Always)
            .rewrite_policy(0, u64::MAX)
            .on_corrupt_tail(tail)
            .on_corruption(inside);
        let r = KvStore::builder().build_persistent(log);
        (storage, r)
    }

    pub(crate) fn state(store: &KvStore) -> State {
        let mut keys = store.keys("*");
        keys.sort();
        keys.into_iter()
            .filter_map(|k| store.get(&k).map(|v| (k, v.to_vec())))
            .collect()
    }

    /// Record boundaries (offsets where each frame starts), and the end.
    pub(crate) fn frames(bytes: &[u8]) -> Vec<usize> {
        let mut at = 20;
        let mut out = vec![];
        while at + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            out.push(at);
            at += 8 + len;
        }
        out.push(at);
        out
    }

    /// A log exercising every record kind a KvStore writes.
    pub(crate) fn build_log() -> Vec<u8> {
        let storage = MemStorage::new();
        let log = FileLog::with_storage(storage.clone(), Fsync::Always).rewrite_policy(0, u64::MAX);
        let (store, _) = KvStore::builder().build_persistent(log).unwrap();
        let cmds: &[&[&str]] = &[
            &["SET", "a", "hello"],
            &["APPEND", "a", " world"],
            &["SETRANGE", "b", "3", "xyz"],
            &["SETBIT", "c", "9", "1"],
            &["MSET", "d", "1", "e", "2", "f", "3"],
            &["RENAME", "d", "g"],
            &["DEL", "e", "f"],
            &["APPEND", "a", "!"],
            &["SET", "h", "\0\0\0\0"],
            &["EXPIRE", "h", "100000"],
            &["SETBIT", "c", "1", "1"],
            &["SET", "z", "last"],
        ];
        for c in cmds {
            let r = store.execute(c);
            assert!(
                !matches!(r, shardcache::kv::Reply::Error(_)),
                "{c:?}: {r:?}"
            );
        }
        drop(store);
        storage.read_all().unwrap()
    }
}

use damage::*;
use shardcache::persist::{OnCorruptTail, OnCorruption, StopReason};

#[test]
fn damage_at_every_offset_never_drops_good_records_silently() {
    let bytes = build_log();
    let bounds = frames(&bytes);
    assert_eq!(*bounds.last().unwrap(), bytes.len());
    let n = bounds.len() - 1;
    // The state after each prefix of whole records.
    let prefix: Vec<State> = (0..=n)
        .map(|j| {
            let (_, r) = open_bytes(
                &bytes[..bounds[j]],
                OnCorruptTail::Refuse,
                OnCorruption::Refuse,
            );
            state(&r.unwrap().0)
        })
        .collect();
    println!("{n} records, {} bytes; final {:?}", bytes.len(), prefix[n]);
    let record_of = |off: usize| bounds.iter().rposition(|&b| b <= off).unwrap();
    let mut bad = Vec::new();
    type Edit = (String, Vec<u8>, usize, usize);
    let mut edits: Vec<Edit> = Vec::new();
    for off in 20..bytes.len() {
        for (name, f) in [("xor01", 0x01u8), ("xorff", 0xff), ("xor80", 0x80)] {
            let mut b = bytes.clone();
            b[off] ^= f;
            edits.push((format!("{name}@{off}"), b, off, off));
        }
        for zl in [1usize, 4, 8, 13] {
            let mut b = bytes.clone();
            let end = (off + zl).min(b.len());
            if b[off..end].iter().all(|&x| x == 0) {
                continue;
            }
            b[off..end].iter_mut().for_each(|x| *x = 0);
            edits.push((format!("zero{zl}@{off}"), b, off, end - 1));
        }
        // Cut at `off`.
        edits.push((format!("cut@{off}"), bytes[..off].to_vec(), off, off));
        // Cut, then zero fill (as a preallocated file after a crash).
        let mut b = bytes[..off].to_vec();
        b.resize(bytes.len() + 4096, 0);
        edits.push((format!("cutzero@{off}"), b, off, off));
    }
    for (what, b, off, damage_end) in &edits {
        let i = record_of(*off);
        // Whether the damage reaches the last record (then nothing good follows it).
        let last = record_of(*damage_end) == n - 1;
        let cut = what.starts_with("cut");
        for tail in [OnCorruptTail::Truncate, OnCorruptTail::Refuse] {
            for inside in [OnCorruption::Refuse, OnCorruption::SetAside] {
                let (storage, r) = open_bytes(b, tail, inside);
                let ctx = format!("{what} (record {i} of {n}) {tail:?}/{inside:?}");
                match r {
                    Ok((store, report)) => {
                        let got = state(&store);
                        // Which prefix does it match?
                        let j = report.records as usize;
                        if j > n || prefix[j] != got {
                            bad.push(format!("{ctx}: state is not that of the first {j} records: {got:?} report {report:?}"));
                            continue;
                        }
                        if j == n {
                            continue;
                        }
                        if cut {
                            // Records after the cut were never in the file.
                            // Whole records: those whose bytes are all still there (a
                            // cut that zeroes bytes that were zero loses nothing).
                            let whole = (0..n)
                                .take_while(|&k| {
                                    b.len() >= bounds[k + 1]
                                        && b[..bounds[k + 1]] == bytes[..bounds[k + 1]]
                                })
                                .count();
                            let off = &bounds[whole].max(*off);
                            if j != whole {
                                bad.push(format!("{ctx}: a cut at {off} loaded prefix {j}, expected {whole}: {report:?}"));
                            }
                            let kept = *off - bounds[whole.min(n - 1)];
                            let crc_kept = whole < n
                                && kept >= 8
                                && bytes[bounds[whole] + 4..bounds[whole] + 8] != [0, 0, 0, 0];
                            if *off != bounds[whole] && report.stopped_at.is_none() {
                                bad.push(format!(
                                    "{ctx}: torn record {whole} cut with no report: {report:?}"
                                ));
                            }
                            if crc_kept
                                && matches!(report.stopped_at, Some((_, StopReason::StrayBits)))
                            {
                                bad.push(format!("{ctx}: torn record {whole} ({kept} bytes kept, checksum field included) reported as StrayBits: {report:?}"));
                            }
                            continue;
                        }
                        // Records were dropped: they must be reported.
                        let reported = report.stopped_at.is_some() || report.set_aside.is_some();
                        if !reported {
                            bad.push(format!(
                                "{ctx}: loaded prefix {j} of {n} with no report: {report:?}"
                            ));
                        }
                        // Documented: a frame whose checksum field is zero is not
                        // "shaped as a record", so its loss may read as stray bits.
                        let crc_zeroed = j < n && b.len() >= bounds[j] + 8 && {
                            let len =
                                u32::from_le_bytes(b[bounds[j]..bounds[j] + 4].try_into().unwrap())
                                    as usize;
                            b[bounds[j] + 4..bounds[j] + 8] == [0, 0, 0, 0]
                                || len == 0
                                || bounds[j] + 8 + len > b.len()
                        };
                        if let (Some((_, StopReason::StrayBits)), false) =
                            (report.stopped_at, crc_zeroed)
                        {
                            bad.push(format!(
                                "{ctx}: loaded prefix {j} of {n} (records lost) but reported StrayBits \
                                 (\"every record was loaded\"), bytes_discarded {}: {report:?}",
                                report.bytes_discarded
                            ));
                        }
                        // Good records after the damage dropped, without set-aside.
                        if !last && !cut && report.set_aside.is_none() && j <= i {
                            bad.push(format!("{ctx}: good records {}..{n} after the damage dropped without set-aside: {report:?}", i + 1));
                        }
                        if report.set_aside.is_some()
                            && storage.preserved().last().map(|p| p.as_slice())
                                != Some(b.as_slice())
                        {
                            bad.push(format!("{ctx}: set-aside copy is not the damaged file"));
                        }
                        if cut && j < i {
                            bad.push(format!("{ctx}: a cut inside record {i} lost records before it (prefix {j})"));
                        }
                    }
                    Err(PersistError::Corrupt { .. }) => {
                        if storage.read_all().unwrap() != *b {
                            bad.push(format!("{ctx}: Corrupt but the file was modified"));
                        }
                        if cut {
                            bad.push(format!("{ctx}: a plain cut refused as Corrupt"));
                        }
                    }
                    Err(PersistError::CorruptTail { .. }) if tail == OnCorruptTail::Refuse => {
                        if storage.read_all().unwrap() != *b {
                            bad.push(format!("{ctx}: CorruptTail but the file was modified"));
                        }
                    }
                    Err(e) => {
                        // Damage in a record that still frames can decode as garbage.
                        if !matches!(e, PersistError::Decode { .. }) {
                            bad.push(format!("{ctx}: unexpected error {e}"));
                        } else if storage.read_all().unwrap() != *b {
                            bad.push(format!("{ctx}: {e} but the file was modified"));
                        }
                    }
                }
            }
        }
    }
    for v in bad.iter().take(40) {
        println!("VIOLATION: {v}");
    }
    assert!(bad.is_empty(), "{} violations", bad.len());
}

// ------------------------------------------------------------- concurrency

fn open_big(store: &FaultStore, fsync: Fsync) -> Result<Cache<u32, u64>, PersistError> {
    let log = FileLog::with_storage(store.clone(), fsync)
        .write_delay(Duration::ZERO)
        .rewrite_policy(0, u64::MAX);
    Ok(Cache::builder()
        .max_capacity(10_000)
        .build_persistent(log)?
        .0)
}

#[test]
fn concurrent_writers_rewrites_and_faults_keep_acknowledged_writes() {
    const THREADS: u32 = 4;
    const PER: u32 = 4;
    const OPS: u32 = 60;
    let mut bad = Vec::new();
    let mut hit = 0;
    for iter in 0..1500u64 {
        let store = FaultStore::default();
        let cache = open_big(&store, Fsync::Always).unwrap();
        let at = (iter * 7919) % 400;
        let sticky = iter % 3 == 0;
        let tear = (iter % 4) as usize * 5;
        store.arm(at, sticky, tear);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rewriter = {
            let cache = cache.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = cache.rewrite_log();
                    if n % 3 == 0 {
                        let _ = cache.sync();
                    }
                    n += 1;
                    std::thread::yield_now();
                }
            })
        };
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let cache = cache.clone();
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut model: BTreeMap<u32, u64> = BTreeMap::new();
                    let mut unknown: BTreeMap<u32, bool> = BTreeMap::new();
                    for i in 0..OPS {
                        if t == 0 && i == OPS / 2 && iter % 2 == 0 {
                            store.heal();
                        }
                        let k = t * PER + i % PER;
                        let v = u64::from(t) * 1_000_000 + u64::from(i) + 1;
                        let (r, after) = if i % 7 == 3 {
                            (
                                cache.durably(|| {
                                    cache.remove(&k);
                                }),
                                None,
                            )
                        } else {
                            (cache.durably(|| cache.insert(k, v)), Some(v))
                        };
                        match &r {
                            Ok(()) => {
                                match after {
                                    Some(v) => model.insert(k, v),
                                    None => model.remove(&k),
                                };
                                unknown.insert(k, false);
                            }
                            Err(e) => {
                                if e.to_string().contains("unknown") {
                                    unknown.insert(k, true);
                                }
                            }
                        }
                        // Memory holds what was acknowledged.
                        if !unknown.get(&k).copied().unwrap_or(false)
                            && cache.get(&k) != model.get(&k).copied()
                        {
                            return Err(format!(
                                "thread {t} op {i} key {k}: memory {:?}, acknowledged {:?} ({r:?})",
                                cache.get(&k),
                                model.get(&k)
                            ));
                        }
                    }
                    Ok((model, unknown))
                })
            })
            .collect();
        let mut models = Vec::new();
        for h in handles {
            match h.join().unwrap() {
                Ok(m) => models.push(m),
                Err(e) => bad.push(format!(
                    "iter {iter} at={at} sticky={sticky} tear={tear}: {e}"
                )),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        rewriter.join().unwrap();
        let failed = store.st.lock().unwrap().failed.clone();
        hit += usize::from(!failed.is_empty());
        let crashed = store.after_power_loss();
        match open_big(&crashed, Fsync::Always) {
            Ok(c) => {
                for (model, unknown) in &models {
                    for (&k, &u) in unknown {
                        if u {
                            continue;
                        }
                        if c.get(&k) != model.get(&k).copied() {
                            bad.push(format!(
                                "iter {iter} at={at} sticky={sticky} tear={tear}: after power loss key {k}: {:?}, acknowledged {:?}; failed {:?}",
                                c.get(&k),
                                model.get(&k),
                                &failed[..failed.len().min(6)]
                            ));
                        }
                    }
                }
            }
            Err(e) => bad.push(format!("iter {iter}: reopen failed: {e}")),
        }
        drop(cache);
    }
    println!("{hit} of 1500 runs met a fault");
    for v in bad.iter().take(30) {
        println!("VIOLATION: {v}");
    }
    assert!(bad.is_empty(), "{} violations", bad.len());
}

// ------------------------------------------------------- KvStore + faults

fn kv_open(store: &FaultStore, fsync: Fsync) -> shardcache::kv::KvStore {
    let log = FileLog::with_storage(store.clone(), fsync)
        .write_delay(Duration::ZERO)
        .rewrite_policy(0, u64::MAX);
    shardcache::kv::KvStore::builder()
        .build_persistent(log)
        .unwrap()
        .0
}

fn kv_workload() -> Vec<Vec<String>> {
    let w: &[&str] = &[
        "SET a hello",
        "APPEND a _x",
        "SETRANGE b 2 zz",
        "SETBIT c 5 1",
        "MSET d 1 e 2",
        "REWRITE",
        "APPEND a _y",
        "RENAME d f",
        "SETRANGE a 1 QQ",
        "DEL e b",
        "INCR n",
        "APPEND g first",
        "REWRITE",
        "SETBIT c 12 1",
        "APPEND g _second",
        "MSET a A1 h H",
        "SYNC",
        "INCR n",
        "RENAME g b",
        "APPEND b _t",
        "SETRANGE h 4 !",
        "REWRITE",
        "DEL a",
        "APPEND a new",
        "SETBIT a 30 1",
        "SET z end",
    ];
    w.iter()
        .map(|c| c.split(' ').map(String::from).collect())
        .collect()
}

fn kv_state(store: &shardcache::kv::KvStore) -> BTreeMap<String, Vec<u8>> {
    let mut keys = store.keys("*");
    keys.sort();
    keys.into_iter()
        .filter_map(|k| store.get(&k).map(|v| (k, v.to_vec())))
        .collect()
}

#[test]
fn kv_splices_batches_and_rewrites_under_every_fault() {
    use shardcache::kv::Reply;
    let count = {
        let store = FaultStore::default();
        let kv = kv_open(&store, Fsync::Always);
        store.arm(u64::MAX, false, 0);
        for c in kv_workload() {
            match c[0].as_str() {
                "REWRITE" => kv.rewrite_log().unwrap(),
                "SYNC" => kv.sync().unwrap(),
                _ => assert!(!matches!(kv.execute(&c), Reply::Error(_)), "{c:?}"),
            }
        }
        let n = store.st.lock().unwrap().calls;
        n
    };
    let mut bad = Vec::new();
    for fsync in [Fsync::Always, Fsync::Never] {
        for at in 0..count + 2 {
            for sticky in [false, true] {
                for tear in [0usize, 5, 11] {
                    for heal in [None, Some(12)] {
                        let store = FaultStore::default();
                        let kv = kv_open(&store, fsync);
                        let shadow = shardcache::kv::KvStore::builder().build().unwrap();
                        store.arm(at, sticky, tear);
                        let mut doubt = false;
                        for (i, c) in kv_workload().into_iter().enumerate() {
                            if heal == Some(i) {
                                store.heal();
                                let _ = kv.sync();
                            }
                            let ctx = format!("{fsync:?} at={at} sticky={sticky} tear={tear} heal={heal:?} op#{i} {c:?}");
                            match c[0].as_str() {
                                "REWRITE" => {
                                    let _ = kv.rewrite_log();
                                }
                                "SYNC" => {
                                    let _ = kv.sync();
                                }
                                _ => match kv.execute(&c) {
                                    Reply::Error(e) => {
                                        if e.contains("unknown")
                                            || fsync != Fsync::Always && !e.contains("MISCONF")
                                        {
                                            doubt = true;
                                        }
                                        if fsync != Fsync::Always {
                                            // The first failing write may stay in memory.
                                            doubt = true;
                                        }
                                    }
                                    r => {
                                        let s = shadow.execute(&c);
                                        if !doubt && r != s {
                                            bad.push(format!("{ctx}: reply {r:?}, model {s:?}"));
                                        }
                                    }
                                },
                            }
                            if doubt {
                                break;
                            }
                            let want = kv_state(&shadow);
                            if kv_state(&kv) != want {
                                bad.push(format!(
                                    "{ctx}: memory {:?} != acknowledged {want:?}",
                                    kv_state(&kv)
                                ));
                                break;
                            }
                            let crashed = match fsync {
                                Fsync::Always => store.after_power_loss(),
                                _ => store.after_process_crash(),
                            };
                            let re = kv_open(&crashed, Fsync::Always);
                            if kv_state(&re) != want {
                                bad.push(format!(
                                    "{ctx}: after crash {:?} != acknowledged {want:?}; failed {:?}",
                                    kv_state(&re),
                                    store.st.lock().unwrap().failed
                                ));
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    for v in bad.iter().take(30) {
        println!("VIOLATION: {v}");
    }
    assert!(bad.is_empty(), "{} violations", bad.len());
}

/// What two `sync`s said, what a crash left of key 1, and the storage calls
/// that failed.
type BackgroundFailure = (
    Result<(), PersistError>,
    Result<(), PersistError>,
    Option<u64>,
    Vec<(u64, Kind)>,
);

/// Runs: an acknowledged buffered insert, then the background writer's
/// write of it fails (the fault is armed on the first storage call, which is
/// the flusher's `append`). Returns what the next two `sync`s said, and what
/// a process crash after them leaves.
fn background_failure(fsync: Fsync, tear: usize) -> BackgroundFailure {
    let store = FaultStore::default();
    let log = FileLog::with_storage(store.clone(), fsync)
        .write_delay(Duration::from_millis(5))
        .rewrite_policy(0, u64::MAX);
    let cache: Cache<u32, u64> = Cache::builder()
        .max_capacity(100)
        .build_persistent(log)
        .unwrap()
        .0;
    store.arm(0, false, tear);
    assert!(cache.durably(|| cache.insert(1, 11)).is_ok());
    // The background writer (every 5 ms; EverySecond also fsyncs after 1 s) meets the failure.
    std::thread::sleep(Duration::from_millis(1300));
    let failed = store.st.lock().unwrap().failed.clone();
    // Nothing told anyone; a process crash now (1.3 s after the ack, far
    // past the documented ~write-delay process-crash window) loses it.
    let before = open(&store.after_process_crash(), Fsync::Always)
        .unwrap()
        .get(&1);
    println!("{fsync:?} tear={tear}: process crash 1.3 s after the acknowledged insert, before any sync: key 1 = {before:?}");
    let first = cache.sync();
    let second = cache.sync();
    let re = open(&store.after_process_crash(), Fsync::Always).unwrap();
    (first, second, re.get(&1), failed)
}

// `Cache::sync` reports "the first log failure since the last call that no
// caller was told of (a write outside `durably`, or a background write,
// fsync or rewrite)". A failure of a buffering log's background writer
// (`Fsync::Never` / `EverySecond`) used to be repaired silently, the sync
// returning `Ok(())`: the flusher's error was dropped, and the failed log
// found through `health()` was not taken for an untold failure.
#[test]
fn a_background_write_failure_is_reported_by_the_next_sync() {
    let mut bad = Vec::new();
    for fsync in [Fsync::Never, Fsync::EverySecond] {
        for tear in [0usize, 4] {
            let (first, second, after, failed) = background_failure(fsync, tear);
            println!("{fsync:?} tear={tear}: storage failed {failed:?}; sync #1 {first:?}; sync #2 {second:?}; after crash key 1 = {after:?}");
            assert!(!failed.is_empty(), "the injected fault was hit");
            if first.is_ok() {
                bad.push(format!("{fsync:?} tear={tear}: the background {:?} failed, yet the next sync returned Ok", failed[0].1));
            }
            // What held: the repair logged the acknowledged write.
            assert!(second.is_ok());
            assert_eq!(after, Some(11));
        }
    }
    assert!(bad.is_empty(), "{bad:#?}");
}
