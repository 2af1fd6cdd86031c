//! What a [`Session`] can do beside its fields: its deadline on the
//! store's steady clock, its wall-clock fields read at another moment, and
//! the comparisons and debug output of its public fields. The type itself is
//! defined in the `session` module: its path names the log's records.

use super::Session;
use std::fmt;

impl<T> Session<T> {
    /// The absolute deadline on the store's steady clock.
    pub(super) fn deadline(&self) -> u64 {
        shift(self.expires_at_ms, -i128::from(self.skew_ms))
    }

    /// Whether the wall clock has moved more than `by` against the steady
    /// clock since the wall-clock fields were set (`skew`: its lead now).
    /// Those fields are what the log holds, so the absolute deadline the log
    /// holds is then off by as much.
    pub(super) fn set_on_another_wall(&self, skew: i64, by: std::time::Duration) -> bool {
        let moved = (i128::from(skew) - i128::from(self.skew_ms)).unsigned_abs();
        moved > by.as_millis()
    }

    /// The session with its wall-clock fields read at `skew` (the wall
    /// clock's lead over the steady clock now); its deadlines do not move.
    pub(super) fn on_wall(mut self, skew: i64) -> Self {
        let by = i128::from(skew) - i128::from(self.skew_ms);
        self.created_at_ms = shift(self.created_at_ms, by);
        self.expires_at_ms = shift(self.expires_at_ms, by);
        self.skew_ms = skew;
        self
    }
}

/// `ms` moved by `by` milliseconds, saturating.
fn shift(ms: u64, by: i128) -> u64 {
    u64::try_from((i128::from(ms) + by).max(0)).unwrap_or(u64::MAX)
}

impl<T: PartialEq> PartialEq for Session<T> {
    /// Compares the four public fields.
    fn eq(&self, other: &Self) -> bool {
        self.user == other.user
            && self.data == other.data
            && self.created_at_ms == other.created_at_ms
            && self.expires_at_ms == other.expires_at_ms
    }
}

impl<T: Eq> Eq for Session<T> {}

impl<T: fmt::Debug> fmt::Debug for Session<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("data", &self.data)
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_logged_as_its_four_public_fields() {
        let session = Session {
            user: "ann".to_string(),
            data: 7u32,
            created_at_ms: 1_000,
            expires_at_ms: 2_000,
            skew_ms: -5,
        };
        let bytes = postcard::to_allocvec(&session).expect("encode");
        let fields = postcard::to_allocvec(&("ann", 7u32, 1_000u64, 2_000u64)).expect("encode");
        assert_eq!(bytes, fields);
        let back: Session<u32> = postcard::from_bytes(&fields).expect("decode");
        assert_eq!(back, session);
        assert_eq!((back.skew_ms, back.deadline()), (0, 2_000));
    }

    /// Session logs of release 0.1 carry a fingerprint of this path
    /// (`config.rs` spells it out for their migration): where this
    /// compiler prints it so, both spellings agree.
    #[test]
    fn the_type_path_a_log_names_stays() {
        assert_eq!(
            std::any::type_name::<Session<u32>>(),
            "shardcache::adapters::session::Session<u32>"
        );
    }

    #[test]
    fn reading_on_another_wall_clock_moves_the_fields_not_the_deadline() {
        let session = Session {
            user: String::new(),
            data: (),
            created_at_ms: 1_000,
            expires_at_ms: 4_000,
            skew_ms: 0,
        };
        let ahead = session.clone().on_wall(500);
        assert_eq!((ahead.created_at_ms, ahead.expires_at_ms), (1_500, 4_500));
        let behind = ahead.on_wall(-200);
        assert_eq!((behind.created_at_ms, behind.expires_at_ms), (800, 3_800));
        assert_eq!(behind.deadline(), session.deadline());
    }

    #[test]
    fn a_session_knows_when_the_wall_clock_moved_since_its_fields_were_set() {
        let session = Session {
            user: String::new(),
            data: (),
            created_at_ms: 1_000,
            expires_at_ms: 4_000,
            skew_ms: -300,
        };
        let second = std::time::Duration::from_secs(1);
        assert!(!session.set_on_another_wall(-300, second));
        assert!(!session.set_on_another_wall(700, second));
        assert!(!session.set_on_another_wall(-1_300, second));
        assert!(session.set_on_another_wall(701, second));
        assert!(session.set_on_another_wall(-1_301, second));
        assert!(session.set_on_another_wall(i64::MIN, second));
        assert!(session.set_on_another_wall(i64::MAX, second));
    }
}
