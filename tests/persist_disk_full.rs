//! A real full disk: a 1 MiB tmpfs mounted for the test (root only; the
//! test says why and passes without running where mounting is not allowed).
//! Under `Fsync::Always`, every write that was acknowledged survives a
//! restart, every write that was refused is absent, and a removal that was
//! acknowledged stays removed.

use shardcache::adapters::{SessionConfig, SessionStore};
use shardcache::kv::{KvStore, Reply};
use shardcache::persist::{FileLog, Fsync};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mount, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn mounted() -> Option<Tmpfs> {
    match Tmpfs::mount("1m") {
        Ok(fs) => Some(fs),
        Err(why) => {
            println!("skipped: a 1 MiB tmpfs could not be mounted ({why})");
            None
        }
    }
}

fn kv(path: &Path) -> KvStore {
    let log = FileLog::open(path, Fsync::Always).expect("open");
    KvStore::builder().build_persistent(log).expect("load").0
}

#[test]
fn a_full_disk_refuses_writes_and_loses_none_it_acknowledged() {
    let Some(fs) = mounted() else { return };
    let path = fs.path("kv.log");
    let value = "x".repeat(600);
    let mut model = BTreeMap::new();
    let mut refused = 0;
    {
        let store = kv(&path);
        for i in 0..3_000 {
            let key = format!("key{i}");
            match store.execute(&["SET", &key, &value]) {
                r if r == Reply::ok() => {
                    model.insert(key, true);
                }
                Reply::Error(e) => {
                    assert!(e.starts_with("MISCONF"), "{e}");
                    refused += 1;
                }
                other => panic!("SET answered {other:?}"),
            }
        }
        assert!(refused > 0, "the disk filled up");
        // A DEL on a full disk: acknowledged only if it was logged.
        match store.execute(&["DEL", "key0"]) {
            Reply::Integer(1) => {
                model.remove("key0");
            }
            Reply::Error(e) => assert!(e.starts_with("MISCONF"), "{e}"),
            other => panic!("DEL answered {other:?}"),
        }
        assert_eq!(
            store.execute(&["GET", "key1"]),
            Reply::Bulk(value.clone().into()),
            "reads go on"
        );
    }
    let store = kv(&path);
    for i in 0..3_000 {
        let key = format!("key{i}");
        let present = store.execute(&["EXISTS", &key]) == Reply::Integer(1);
        assert_eq!(present, model.contains_key(&key), "{key} after the restart");
    }
    println!(
        "{} SETs acknowledged, {refused} refused; all as acknowledged after the restart",
        model.len()
    );
}

#[test]
fn sessions_on_a_full_disk_are_errors_not_lies() {
    let Some(fs) = mounted() else { return };
    let path = fs.path("sessions.log");
    let open = || SessionStore::<String>::open(&path, SessionConfig::default()).expect("open");
    let data = "d".repeat(800);
    let (created, victim, destroyed) = {
        let store = open();
        let mut created = Vec::new();
        let mut failed = 0;
        for i in 0..2_000 {
            match store.create(&format!("user{}", i % 10), data.clone()) {
                Ok(id) => created.push(id),
                Err(_) => failed += 1,
            }
        }
        assert!(failed > 0, "the disk filled up");
        println!("{} creates acknowledged, {failed} refused", created.len());
        let victim = created[0].clone();
        let destroyed = match store.destroy(victim.as_str()) {
            Ok(was_live) => was_live,
            Err(_) => {
                assert!(store.get(victim.as_str()).is_some(), "still live");
                false
            }
        };
        (created, victim, destroyed)
    };
    let store = open();
    assert_eq!(store.get(victim.as_str()).is_none(), destroyed);
    for id in &created[1..] {
        assert!(
            store.get(id.as_str()).is_some(),
            "an acknowledged create was lost"
        );
    }
    assert_eq!(
        store.count(),
        created.len() - usize::from(destroyed),
        "no refused create came back"
    );
}
