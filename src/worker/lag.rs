//! Event-loop lag probe: a timer that should fire every [`PROBE_PERIOD`]; how late it fires is how
//! long any task on this loop had to wait for the thread. The worst value since the last read is
//! reported in each heartbeat answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

pub const PROBE_PERIOD: Duration = Duration::from_millis(50);

/// Worst lag seen since the last [`LagProbe::take_max_us`].
#[derive(Clone, Default)]
pub struct LagProbe {
    max_us: Arc<AtomicU64>,
}

impl LagProbe {
    /// Runs the probe until `stop` changes or is dropped.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(PROBE_PERIOD);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                scheduled = ticks.tick() => {
                    let late = Instant::now().saturating_duration_since(scheduled);
                    let late_us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
                    self.max_us.fetch_max(late_us, Ordering::Relaxed);
                }
                _ = stop.changed() => return,
            }
        }
    }

    pub fn take_max_us(&self) -> u64 {
        self.max_us.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_blocked_loop_shows_as_lag() {
        let probe = LagProbe::default();
        let (_stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(probe.clone().run(stop));
        tokio::time::sleep(PROBE_PERIOD * 2).await;
        assert!(probe.take_max_us() < 1_000);
        // The clock jumps 300 ms without the loop running, as if a task held the thread.
        tokio::time::advance(Duration::from_millis(300)).await;
        tokio::time::sleep(PROBE_PERIOD).await;
        assert!(probe.take_max_us() >= 200_000);
        task.abort();
    }
}
