//! Warnings that repeat with every request (a service or the database down) are written at most
//! once a second per place in the code, each with the count of those left out since the one
//! before (`suppressed`), so an outage is seen in the log without flooding it. Nothing the audit
//! table records goes through here.
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// At most one line in this many milliseconds per place.
const INTERVAL_MS: u64 = 1000;

/// One place's allowance: when its next line may be written, and how many were left out.
pub struct Limiter {
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Limiter {
    pub const fn new() -> Limiter {
        Limiter { next_ms: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// `Some(lines left out since the last)` when a line may be written now; `None` (and one
    /// more left out) otherwise.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(now_ms())
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self.next_ms.compare_exchange(next, now + INTERVAL_MS, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

/// `tracing::warn!` at most once a second from this place, with `suppressed` = the lines left
/// out since the last one.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMITER: $crate::ratelimit::Limiter = $crate::ratelimit::Limiter::new();
        if let Some(suppressed) = LIMITER.admit() {
            tracing::warn!(suppressed, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_with_the_count_of_the_rest() {
        let limiter = Limiter::new();
        assert_eq!(limiter.admit_at(5), Some(0), "the first is written");
        for now in [6, 500, 1004] {
            assert_eq!(limiter.admit_at(now), None, "within the second: left out");
        }
        assert_eq!(limiter.admit_at(1005), Some(3), "the next says how many were left out");
        assert_eq!(limiter.admit_at(1006), None);
        assert_eq!(limiter.admit_at(9000), Some(1));
        assert_eq!(limiter.admit_at(9001), None);
    }
}
