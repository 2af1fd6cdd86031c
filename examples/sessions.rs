//! Sessions that survive a restart: create some in a log in a temporary
//! directory, drop the store (as a process exit would), reopen, find them.
//!
//! ```sh
//! cargo run --example sessions
//! ```

use serde::{Deserialize, Serialize};
use shardcache::adapters::{SessionConfig, SessionStore};
use shardcache::persist::Fsync;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    name: String,
    cart_items: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("sessions.log");
    let config = || {
        SessionConfig::default()
            .absolute_timeout(Duration::from_secs(7 * 86_400))
            .idle_timeout(Duration::from_secs(30 * 60))
            .fsync(Fsync::Always)
    };

    let ids = {
        let store: SessionStore<Profile> = SessionStore::open(&path, config())?;
        let mut ids = Vec::new();
        for (user, name) in [("u1", "Ada"), ("u1", "Ada (phone)"), ("u2", "Grace")] {
            let profile = Profile {
                name: name.into(),
                cart_items: 0,
            };
            let id = store.create(user, profile)?;
            println!("created session {id} for {user}");
            ids.push(id);
        }
        store.update(
            ids[0].as_str(),
            Profile {
                name: "Ada".into(),
                cart_items: 3,
            },
        )?;
        store.touch(ids[2].as_str())?;
        println!(
            "{} sessions live; dropping the store (a restart)",
            store.count()
        );
        ids
    };

    let store: SessionStore<Profile> = SessionStore::open(&path, config())?;
    if let Some(report) = store.recovery_report() {
        println!("reopened: replayed {} log records", report.records);
    }
    for id in &ids {
        match store.get(id.as_str()) {
            Some(s) => println!("  {id}: {} {:?}", s.user, s.data),
            None => println!("  {id}: LOST"),
        }
    }
    println!(
        "{} sessions after the restart; u1 has {}",
        store.count(),
        store.count_for_user("u1")
    );
    let ended = store.destroy_all_for_user("u1")?;
    println!(
        "u1 changed their password: {ended} sessions ended, {} left",
        store.count()
    );
    Ok(())
}
