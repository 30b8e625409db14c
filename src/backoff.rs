//! Waiting between attempts: the master's restart delay and the doubling pause of every retry
//! loop.
//!
//! [`restart_delay`]: after a worker dies, the original gateway's full-jitter exponential
//! backoff, `random() * (2^min(failures, maxRestartBackoff) - 1) * workerRestartDelay`.
//! `failures` counts one worker slot's consecutive failures before this one, so the first restart
//! is immediate and a crash-looping slot never delays the others. It resets when the slot's new
//! worker answers its first heartbeat (healthy, within its memory limits).
//!
//! [`Backoff`]: a pause that doubles from a first value up to a cap, for loops that retry a
//! connection (RabbitMQ while a worker starts, Redis for the console channel, the relay's
//! sessions) and start over after a success.

use std::time::Duration;

/// Doubling pauses between attempts: `first`, `2 * first`, `4 * first`... never more than `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The pause before the next attempt; the one after it is twice as long (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// The pause [`Backoff::next_delay`] will give, without taking it.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// After a success: the next pause is `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// The exponent is capped here whatever the config says, so the factor fits comfortably.
const MAX_EXPONENT: u32 = 30;

/// Delay before restarting a slot that has failed `failures` times in a row; `random` in [0, 1).
pub fn restart_delay(failures: u32, max_backoff: u32, base: Duration, random: f64) -> Duration {
    let exponent = failures.min(max_backoff).min(MAX_EXPONENT);
    let factor = ((1u64 << exponent) - 1) as f64;
    base.mul_f64(random.clamp(0.0, 1.0) * factor)
}

/// The longest delay [`restart_delay`] can give for these settings.
pub fn max_delay(max_backoff: u32, base: Duration) -> Duration {
    restart_delay(max_backoff, max_backoff, base, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(50);

    #[test]
    fn backoff_doubles_up_to_its_cap_and_starts_over_after_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(b.peek(), Duration::from_millis(500));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        let mut huge = Backoff::new(Duration::MAX / 2, Duration::MAX);
        huge.next_delay();
        assert!(
            huge.next_delay() >= Duration::MAX / 2,
            "saturates, never panics"
        );
    }

    #[test]
    fn first_restart_is_immediate() {
        for random in [0.0, 0.5, 0.999] {
            assert_eq!(restart_delay(0, 10, BASE, random), Duration::ZERO);
        }
    }

    #[test]
    fn delay_grows_as_two_to_the_failures_minus_one() {
        assert_eq!(restart_delay(1, 10, BASE, 1.0), BASE);
        assert_eq!(restart_delay(2, 10, BASE, 1.0), BASE * 3);
        assert_eq!(restart_delay(3, 10, BASE, 1.0), BASE * 7);
        assert_eq!(restart_delay(3, 10, BASE, 0.5), BASE * 7 / 2);
    }

    #[test]
    fn exponent_is_capped_by_max_restart_backoff() {
        assert_eq!(restart_delay(50, 10, BASE, 1.0), BASE * 1023);
        assert_eq!(max_delay(10, BASE), Duration::from_millis(51_150));
        assert_eq!(restart_delay(50, 0, BASE, 1.0), Duration::ZERO);
    }

    #[test]
    fn full_jitter_stays_within_bounds() {
        for failures in 0..40 {
            for i in 0..100 {
                let random = f64::from(i) / 100.0;
                let delay = restart_delay(failures, 10, BASE, random);
                assert!(
                    delay <= max_delay(10, BASE),
                    "{failures} {random} {delay:?}"
                );
            }
        }
        // Out-of-range randomness is clamped, never negative or past the bound.
        assert_eq!(restart_delay(3, 10, BASE, -1.0), Duration::ZERO);
        assert_eq!(restart_delay(3, 10, BASE, 7.0), BASE * 7);
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let delay = restart_delay(u32::MAX, u32::MAX, Duration::from_millis(1), 1.0);
        assert_eq!(delay, Duration::from_millis((1 << 30) - 1));
    }
}
