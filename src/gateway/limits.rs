//! Bounds on what one client, or one worker, may cost: a token bucket for rates (requests per
//! client, queue declares per worker) and a budget for warnings (a client that sends thousands
//! of bad events gets a few log lines and a count, not thousands of lines). Pure: time comes in
//! as an argument, so the rules are tested with made-up instants.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` must be positive.
    pub fn new(rate: u32, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes a token, now or in the future: how long the caller must wait for it (zero if one
    /// was there). Later callers queue behind earlier ones.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A [`TokenBucket`] shared by a worker's connections (`None`: no limit).
#[derive(Debug)]
pub struct SharedRate(Option<Mutex<TokenBucket>>);

impl SharedRate {
    /// `per_second` = 0: no limit. The burst is one second's worth.
    pub fn new(per_second: u32) -> SharedRate {
        SharedRate(
            (per_second > 0)
                .then(|| Mutex::new(TokenBucket::new(per_second, per_second, Instant::now()))),
        )
    }

    /// How long to wait before going ahead.
    pub fn reserve(&self, now: Instant) -> Duration {
        match &self.0 {
            Some(bucket) => bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reserve(now),
            None => Duration::ZERO,
        }
    }
}

/// Warnings logged per client per window before the rest are only counted.
pub const WARNINGS_PER_WINDOW: u32 = 5;
/// The window of [`WarnBudget`].
pub const WARN_WINDOW: Duration = Duration::from_secs(10);

/// What to do with one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warn {
    /// Log it.
    Log,
    /// Log it, and say how many were left out in the window before.
    LogAfterSuppressing(u32),
    /// Only count it.
    Suppress,
}

/// How many warnings one client gets logged: [`WARNINGS_PER_WINDOW`] per [`WARN_WINDOW`], the
/// rest counted and reported with the next one logged.
#[derive(Debug, Clone, Default)]
pub struct WarnBudget {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u32,
}

impl WarnBudget {
    pub fn admit(&mut self, now: Instant) -> Warn {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WARN_WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.logged = 1;
            return match std::mem::take(&mut self.suppressed) {
                0 => Warn::Log,
                n => Warn::LogAfterSuppressing(n),
            };
        }
        if self.logged < WARNINGS_PER_WINDOW {
            self.logged += 1;
            Warn::Log
        } else {
            self.suppressed += 1;
            Warn::Suppress
        }
    }

    /// Warnings counted and not logged yet.
    pub fn suppressed(&self) -> u32 {
        self.suppressed
    }
}

/// At most this many characters of a client's event name go into a log line or an error.
pub const LOGGED_NAME: usize = 64;

/// `name`, cut to [`LOGGED_NAME`] characters (with `…` when cut).
pub fn loggable(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(LOGGED_NAME) {
        None => name.into(),
        Some((at, _)) => format!("{}…", &name[..at]).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start);
        assert!((0..3).all(|_| bucket.try_take(start)));
        assert!(!bucket.try_take(start));
        assert!(!bucket.try_take(start + Duration::from_millis(99)));
        assert!(bucket.try_take(start + Duration::from_millis(100)));
        // Never more than the burst saved up.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.try_take(later)).count(), 3);
    }

    #[test]
    fn reservations_queue_behind_each_other() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 2, start);
        assert_eq!(bucket.reserve(start), Duration::ZERO);
        assert_eq!(bucket.reserve(start), Duration::ZERO);
        let third = bucket.reserve(start);
        let fourth = bucket.reserve(start);
        assert!((third.as_secs_f64() - 0.1).abs() < 1e-9, "{third:?}");
        assert!((fourth.as_secs_f64() - 0.2).abs() < 1e-9, "{fourth:?}");
        assert_eq!(SharedRate::new(0).reserve(start), Duration::ZERO);
    }

    #[test]
    fn warnings_are_logged_a_few_at_a_time_then_counted() {
        let start = Instant::now();
        let mut budget = WarnBudget::default();
        let first: Vec<_> = (0..8).map(|_| budget.admit(start)).collect();
        assert_eq!(&first[..5], &[Warn::Log; 5]);
        assert_eq!(&first[5..], &[Warn::Suppress; 3]);
        assert_eq!(budget.suppressed(), 3);
        assert_eq!(
            budget.admit(start + WARN_WINDOW),
            Warn::LogAfterSuppressing(3)
        );
        assert_eq!(budget.admit(start + WARN_WINDOW), Warn::Log);
    }

    #[test]
    fn long_names_are_cut_for_logs() {
        assert_eq!(loggable("testCall"), "testCall");
        let long = "é".repeat(1000);
        let cut = loggable(&long);
        assert_eq!(cut.chars().count(), LOGGED_NAME + 1);
        assert!(cut.ends_with('…'));
    }
}
