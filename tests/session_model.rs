//! SessionStore against a reference model of its documented timeouts, on a
//! mock clock stepped around the millisecond: a session is live until the
//! nearer of its absolute deadline and its idle deadline (last create or
//! touch plus the idle timeout, never past the absolute one), exactly at
//! the deadline it is gone, and a restart (`Fsync::Always`) changes nothing.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use shardcache::adapters::{SessionConfig, SessionId, SessionStore};
use shardcache::persist::Fsync;
use shardcache::{Clock, MockClock};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Get(usize),
    Touch(usize),
    Update(usize, u32),
    Destroy(usize),
    DestroyAll(u8),
    Count(u8),
    Advance(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3).prop_map(Op::Create),
        3 => any::<usize>().prop_map(Op::Get),
        3 => any::<usize>().prop_map(Op::Touch),
        1 => (any::<usize>(), any::<u32>()).prop_map(|(i, d)| Op::Update(i, d)),
        1 => any::<usize>().prop_map(Op::Destroy),
        1 => (0u8..3).prop_map(Op::DestroyAll),
        1 => (0u8..3).prop_map(Op::Count),
        4 => prop_oneof![Just(1u64), Just(999), Just(1_000), 0u64..3_000].prop_map(Op::Advance),
        1 => Just(Op::Reopen),
    ]
}

/// One session as the docs describe it, in wall-clock milliseconds (the
/// wall clock is never stepped here, so it is the steady clock).
#[derive(Debug, Clone)]
struct Model {
    id: SessionId,
    user: u8,
    data: u32,
    created: u64,
    absolute: u64,
    idle_until: u64,
    destroyed: bool,
}

impl Model {
    fn live(&self, now: u64) -> bool {
        !self.destroyed && now < self.absolute.min(self.idle_until)
    }
}

fn open(path: &Path, clock: &MockClock, absolute: u64, idle: Option<u64>) -> SessionStore<u32> {
    let mut config = SessionConfig::default()
        .fsync(Fsync::Always)
        .absolute_timeout(Duration::from_millis(absolute))
        .clock(clock.clone());
    if let Some(idle) = idle {
        config = config.idle_timeout(Duration::from_millis(idle));
    }
    SessionStore::open(path, config).unwrap()
}

fn user(u: u8) -> String {
    format!("user{u}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sessions_match_their_model(
        absolute in prop_oneof![Just(1u64), Just(1_000), 1u64..6_000],
        idle in proptest::option::of(prop_oneof![Just(1u64), Just(1_000), 1u64..4_000]),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.log");
        let clock = MockClock::new();
        let mut store = open(&path, &clock, absolute, idle);
        let mut sessions: Vec<Model> = Vec::new();
        let now = |clock: &MockClock| clock.wall().as_millis() as u64;
        for (i, op) in ops.iter().enumerate() {
            let t = now(&clock);
            let ctx = format!("op {i} {op:?} at {t}");
            let len = sessions.len().max(1);
            let pick = |n: usize| n % len;
            match *op {
                Op::Create(u) => {
                    let id = store.create(&user(u), 0).unwrap();
                    let absolute = t + absolute;
                    sessions.push(Model {
                        id,
                        user: u,
                        data: 0,
                        created: t,
                        absolute,
                        idle_until: idle.map_or(absolute, |idle| t + idle),
                        destroyed: false,
                    });
                }
                Op::Get(n) if !sessions.is_empty() => {
                    let m = &sessions[pick(n)];
                    let got = store.get(m.id.as_str());
                    prop_assert_eq!(got.is_some(), m.live(t), "{}", ctx);
                    if let Some(s) = got {
                        prop_assert_eq!(
                            (s.user, s.data, s.created_at_ms, s.expires_at_ms),
                            (user(m.user), m.data, m.created, m.absolute),
                            "{}",
                            ctx
                        );
                    }
                }
                Op::Touch(n) if !sessions.is_empty() => {
                    let m = &mut sessions[pick(n)];
                    let live = m.live(t);
                    prop_assert_eq!(store.touch(m.id.as_str()).unwrap(), live, "{}", ctx);
                    if live {
                        if let Some(idle) = idle {
                            m.idle_until = (t + idle).min(m.absolute);
                        }
                    }
                }
                Op::Update(n, data) if !sessions.is_empty() => {
                    let m = &mut sessions[pick(n)];
                    let live = m.live(t);
                    prop_assert_eq!(store.update(m.id.as_str(), data).unwrap(), live, "{}", ctx);
                    if live {
                        m.data = data;
                    }
                }
                Op::Destroy(n) if !sessions.is_empty() => {
                    let m = &mut sessions[pick(n)];
                    prop_assert_eq!(store.destroy(m.id.as_str()).unwrap(), m.live(t), "{}", ctx);
                    m.destroyed = true;
                }
                Op::DestroyAll(u) => {
                    let mut live = 0;
                    for m in sessions.iter_mut().filter(|m| m.user == u) {
                        live += usize::from(m.live(t));
                        m.destroyed = true;
                    }
                    prop_assert_eq!(store.destroy_all_for_user(&user(u)).unwrap(), live, "{}", ctx);
                }
                Op::Count(u) => {
                    let of_user = sessions.iter().filter(|m| m.user == u && m.live(t)).count();
                    prop_assert_eq!(store.count_for_user(&user(u)), of_user, "{}", ctx);
                    let all = sessions.iter().filter(|m| m.live(t)).count();
                    prop_assert_eq!(store.count(), all, "{}", ctx);
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::Reopen => {
                    drop(store);
                    store = open(&path, &clock, absolute, idle);
                }
                _ => {}
            }
        }
    }
}
