//! Worker slots: a place for one worker process (its active worker, its successor while it is
//! being replaced) and that place's restart backoff. The standby worker has a place of its own
//! (its `active` is the standby), so that its restarts back off like any slot's.

use std::fmt;

use tokio::time::Instant;

/// Which place: one of the `cluster.workerCount` gateway workers, the relay, or the standby
/// gateway worker (`cluster.standbyWorkers`) that takes a gateway slot when one needs a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlotId {
    Gateway(usize),
    Relay,
    Standby,
}

impl SlotId {
    /// `gateway`, `relay` or `standby`, as `status` shows it.
    pub fn role(self) -> &'static str {
        match self {
            SlotId::Gateway(_) => "gateway",
            SlotId::Relay => "relay",
            SlotId::Standby => "standby",
        }
    }

    /// The slot number within its role.
    pub fn index(self) -> usize {
        match self {
            SlotId::Gateway(index) => index,
            SlotId::Relay | SlotId::Standby => 0,
        }
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotId::Gateway(index) => write!(f, "{index}"),
            SlotId::Relay => f.write_str("relay"),
            SlotId::Standby => f.write_str("standby"),
        }
    }
}

#[derive(Default)]
pub struct Slot {
    pub active: Option<u32>,
    pub successor: Option<u32>,
    /// Consecutive failures, for the backoff.
    pub failures: u32,
    /// Replacements so far (shown in status).
    pub restarts: u32,
    /// No new worker for this slot before this instant.
    pub not_before: Option<Instant>,
}
