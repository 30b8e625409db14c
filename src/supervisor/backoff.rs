//! Restart delay after a worker dies: the original gateway's full-jitter exponential backoff,
//! `random() * (2^min(failures, maxRestartBackoff) - 1) * workerRestartDelay`.
//!
//! `failures` counts one worker slot's consecutive failures before this one, so the first restart
//! is immediate and a crash-looping slot never delays the others. It resets when the slot's new
//! worker answers its first heartbeat (healthy, within its memory limits).

use std::time::Duration;

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
