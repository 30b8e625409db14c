//! Where a worker runs: a *slot* (one of the `cluster.workerCount` gateway workers, the relay or
//! the demo agent) or the *standby* (a gateway worker in no slot, ready to take one). Each has its own restart
//! backoff, so that one crash-looping place never slows the others.

use std::fmt;

use tokio::time::Instant;

use super::worker::WorkerId;
use crate::status::Role;

/// Which slot: one of the `cluster.workerCount` gateway workers, the relay, or the demo agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlotId {
    Gateway(usize),
    Relay,
    /// The demo agent (`demo.enabled`).
    Demo,
}

/// Where a worker process is: in a slot, or the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    Slot(SlotId),
    Standby,
}

impl Place {
    pub fn role(self) -> Role {
        match self {
            Place::Slot(SlotId::Gateway(_)) => Role::Gateway,
            Place::Slot(SlotId::Relay) => Role::Relay,
            Place::Slot(SlotId::Demo) => Role::Demo,
            Place::Standby => Role::Standby,
        }
    }

    /// The slot number within its role, as `status` shows it (the relay's and the demo agent's
    /// slot is 0; the standby has none).
    pub fn index(self) -> Option<usize> {
        match self {
            Place::Slot(SlotId::Gateway(index)) => Some(index),
            Place::Slot(SlotId::Relay | SlotId::Demo) => Some(0),
            Place::Standby => None,
        }
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotId::Gateway(index) => write!(f, "{index}"),
            SlotId::Relay => f.write_str("relay"),
            SlotId::Demo => f.write_str("demo"),
        }
    }
}

/// As logs name it: `slot=0`, `slot=relay`, `slot=demo`, `slot=standby`.
impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Slot(slot) => slot.fmt(f),
            Place::Standby => f.write_str("standby"),
        }
    }
}

/// A place's restart backoff: consecutive failures, and no new worker before `not_before`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestartBackoff {
    /// Consecutive failures, for the delay.
    pub failures: u32,
    /// No new worker for this place before this instant. Only ever in the future: a backoff
    /// that has passed is cleared ([`RestartBackoff::expire`]), so it can never be a wake-up that
    /// has already come.
    pub not_before: Option<Instant>,
}

impl RestartBackoff {
    /// Whether a new worker may start now.
    pub fn open(&self) -> bool {
        self.not_before.is_none()
    }

    /// Forgets a `not_before` that has come.
    pub fn expire(&mut self, now: Instant) {
        if self.not_before.is_some_and(|t| t <= now) {
            self.not_before = None;
        }
    }
}

/// A place for one worker process: its active worker and, while that one is being replaced,
/// its successor (promoted once it is ready; the old worker then drains).
#[derive(Debug, Default)]
pub struct Slot {
    pub active: Option<WorkerId>,
    pub successor: Option<WorkerId>,
    pub backoff: RestartBackoff,
    /// Replacements so far (shown in status).
    pub restarts: u32,
}

/// The standby gateway worker's place (`cluster.standbyWorkers`): at most one worker, started
/// once every slot is ready, activated into a slot that needs a worker.
#[derive(Debug, Default)]
pub struct Standby {
    pub worker: Option<WorkerId>,
    pub backoff: RestartBackoff,
    /// Times it was restarted after failing (shown in status).
    pub restarts: u32,
}
