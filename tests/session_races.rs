//! SessionStore under hostile schedules and inputs: `destroy_all_for_user`
//! racing logins and touches (every session whose `create` returned before
//! the call began is gone when it returns), and ids no store hands out
//! (empty, a megabyte long, not base64) found nowhere, without a panic.
#![allow(clippy::unwrap_used)]

use shardcache::adapters::{SessionConfig, SessionId, SessionStore};
use shardcache::MockClock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

#[test]
fn destroy_all_ends_every_session_created_before_it() {
    let store: SessionStore<u32> =
        SessionStore::in_memory(SessionConfig::default().clock(MockClock::new())).unwrap();
    // Ids whose `create` has returned, in order.
    let created: Mutex<Vec<SessionId>> = Mutex::new(Vec::new());
    let (done_tx, done_rx) = mpsc::channel();
    let creators_done = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..2 {
            let (store, created, creators_done) = (&store, &created, &creators_done);
            s.spawn(move || {
                for _ in 0..5_000 {
                    let id = store.create("ann", 0).unwrap();
                    store.touch(id.as_str()).unwrap();
                    created.lock().unwrap().push(id);
                }
                creators_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        let (store, created, creators_done) = (&store, &created, &creators_done);
        s.spawn(move || {
            let mut checked = 0;
            let mut rounds = 0;
            loop {
                let last = creators_done.load(Ordering::SeqCst) == 2;
                // Those before `checked` were gone after an earlier call.
                let before: Vec<SessionId> = created.lock().unwrap()[checked..].to_vec();
                checked += before.len();
                store.destroy_all_for_user("ann").unwrap();
                rounds += 1;
                if let Some(id) = before.iter().find(|id| store.get(id.as_str()).is_some()) {
                    panic!("{id:?}, created before destroy_all_for_user, outlived it");
                }
                if last {
                    break;
                }
            }
            assert!(rounds > 1);
            done_tx.send(()).unwrap();
        });
        if done_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            panic!("no progress in 120 s");
        }
    });
    store.destroy_all_for_user("ann").unwrap();
    assert_eq!(store.count_for_user("ann"), 0);
    assert_eq!(store.count(), 0);
}

#[test]
fn ids_no_store_hands_out_are_found_nowhere() {
    let store: SessionStore<u32> =
        SessionStore::in_memory(SessionConfig::default().clock(MockClock::new())).unwrap();
    let real = store.create("ann", 1).unwrap();
    let long = "A".repeat(1 << 20);
    let prefix = real.as_str()[..21].to_string();
    let longer = format!("{}A", real.as_str());
    for id in [
        "",
        " ",
        "\u{0}",
        "é",
        "../../etc/passwd",
        &long,
        &prefix,
        &longer,
    ] {
        assert!(store.get(id).is_none());
        assert!(!store.touch(id).unwrap());
        assert!(!store.update(id, 2).unwrap());
        assert!(!store.destroy(id).unwrap());
    }
    assert_eq!(store.destroy_all_for_user("").unwrap(), 0);
    assert_eq!(store.count(), 1);
    assert_eq!(store.get(real.as_str()).unwrap().data, 1);
}
