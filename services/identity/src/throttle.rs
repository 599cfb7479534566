//! Failure counting for sign-in throttling (see `lockout.rs` for what is counted): past a
//! threshold, further attempts for a key are refused for a while, growing with each failure.
//! The counts live in this identity service's memory (per replica).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

pub struct Throttle {
    entries: Mutex<HashMap<String, Entry>>,
    /// Failures allowed in a window before a lock-out.
    allowed: u32,
}

/// Failures are forgotten after this long without a lock-out.
const WINDOW: Duration = Duration::from_secs(15 * 60);
const FIRST_LOCK: Duration = Duration::from_secs(30);
const LONGEST_LOCK: Duration = Duration::from_secs(15 * 60);
const MAX_ENTRIES: usize = 100_000;

impl Throttle {
    pub fn new(allowed: u32) -> Throttle {
        Throttle { entries: Mutex::new(HashMap::new()), allowed }
    }

    /// How long `key` must still wait, if it is locked out.
    pub fn locked(&self, key: &str) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let until = entries.get(key)?.locked_until?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a failure; whether the key is locked out now.
    pub fn failure(&self, key: &str) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(key) {
            entries
                .retain(|_, e| now.duration_since(e.window_start) < WINDOW || e.locked_until.is_some_and(|u| u > now));
            if entries.len() >= MAX_ENTRIES {
                // Still full: counts that locked nothing yet go (a guesser gains a few tries
                // back); the locks in force stay.
                entries.retain(|_, e| e.locked_until.is_some_and(|u| u > now));
            }
            if entries.len() >= MAX_ENTRIES {
                // Every entry is a lock in force: a new key is not counted until one ends, so
                // the table stays bounded.
                return false;
            }
        }
        let entry =
            entries.entry(key.to_owned()).or_insert(Entry { failures: 0, window_start: now, locked_until: None });
        if now.duration_since(entry.window_start) > WINDOW && entry.locked_until.is_none_or(|u| u <= now) {
            *entry = Entry { failures: 0, window_start: now, locked_until: None };
        }
        entry.failures += 1;
        if entry.failures >= self.allowed {
            let doublings = (entry.failures - self.allowed).min(5);
            entry.locked_until = Some(now + (FIRST_LOCK * 2u32.pow(doublings)).min(LONGEST_LOCK));
            return true;
        }
        false
    }

    /// How many keys are locked out now.
    pub fn locked_now(&self) -> usize {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.values().filter(|e| e.locked_until.is_some_and(|until| until > now)).count()
    }

    pub fn success(&self, key: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_the_allowed_failures() {
        let t = Throttle::new(3);
        for _ in 0..2 {
            t.failure("user:alice");
            assert!(t.locked("user:alice").is_none());
        }
        t.failure("user:alice");
        let wait = t.locked("user:alice").unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= FIRST_LOCK);
        t.failure("user:alice");
        assert!(t.locked("user:alice").unwrap() > FIRST_LOCK, "each further failure locks longer");
        assert!(t.locked("user:bob").is_none());
        t.success("user:alice");
        assert!(t.locked("user:alice").is_none());
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_its_locks() {
        let len = |t: &Throttle| t.entries.lock().unwrap().len();
        // Counts that locked nothing make room for new keys.
        let t = Throttle::new(3);
        for i in 0..MAX_ENTRIES + 10 {
            t.failure(&format!("address:{i}"));
        }
        assert!(len(&t) <= MAX_ENTRIES);
        // Locks in force are never dropped to make room.
        let t = Throttle::new(1);
        for i in 0..MAX_ENTRIES + 10 {
            t.failure(&format!("address:{i}"));
        }
        assert_eq!(len(&t), MAX_ENTRIES);
        assert!(t.locked("address:0").is_some() && t.locked("address:99999").is_some());
        assert!(t.locked("address:100005").is_none(), "not counted while the table is full of locks");
    }
}
