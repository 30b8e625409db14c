//! One worker process as the master sees it: where it is, where it is in its life, what it last
//! said about itself.

use std::fmt;

use tokio::time::Instant;

use super::place::Place;
use crate::ipc::WorkerReport;
use crate::status::{Pid, State};
use crate::supervisor::memory::MemoryWatch;

/// The master's name for one worker process, given when it decides to start it (before the
/// process, and so its pid, exists). Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u64);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not ready yet.
    Starting,
    /// Serving (the standby: initialised). `proven`: it has answered a heartbeat since, which is
    /// when its place's restart backoff starts over.
    Ready { proven: bool },
    /// Over a memory limit: it keeps serving (`ready`) or starting until its replacement is
    /// ready, then drains.
    Recycling { ready: bool },
    /// Told to finish and exit; SIGKILLed at `kill_at` if it has not.
    Draining { kill_at: Instant },
    /// SIGKILLed; its exit is awaited.
    Killed,
}

impl WorkerState {
    /// As `status` shows it: a recycling worker is still starting or ready.
    pub fn shown(self) -> State {
        match self {
            WorkerState::Starting | WorkerState::Recycling { ready: false } => State::Starting,
            WorkerState::Ready { .. } | WorkerState::Recycling { ready: true } => State::Ready,
            WorkerState::Draining { .. } => State::Draining,
            WorkerState::Killed => State::Killed,
        }
    }
}

#[derive(Debug)]
pub struct Worker {
    pub id: WorkerId,
    /// Known once the process is started (the event after the spawn).
    pub pid: Option<Pid>,
    pub place: Place,
    /// Config generation it was started with; older than the master's = to be replaced.
    pub generation: u64,
    pub state: WorkerState,
    pub started: Instant,
    /// Its last heartbeat answer; none yet.
    pub last_answer: Option<Instant>,
    pub report: WorkerReport,
    /// RSS as the master measured it (once per heartbeat tick).
    pub rss: u64,
    pub memory: MemoryWatch,
    /// Passed a memory check at least once (a worker over its limit from the start is a sign
    /// the limit is too low, not that the worker leaks).
    pub within_limits_once: bool,
    /// Warned that its event loop lags (said once until it recovers).
    pub lag_warned: bool,
}

impl Worker {
    pub fn new(id: WorkerId, place: Place, generation: u64, now: Instant) -> Worker {
        Worker {
            id,
            pid: None,
            place,
            generation,
            state: WorkerState::Starting,
            started: now,
            last_answer: None,
            report: WorkerReport::default(),
            rss: 0,
            memory: MemoryWatch::default(),
            within_limits_once: false,
            lag_warned: false,
        }
    }

    /// Its pid for logs and status (0 before the process exists).
    pub fn pid(&self) -> u32 {
        self.pid.map_or(0, |p| p.0)
    }

    /// Ready, whether or not it is being recycled.
    pub fn is_ready(&self) -> bool {
        matches!(
            self.state,
            WorkerState::Ready { .. } | WorkerState::Recycling { ready: true }
        )
    }

    /// Starting, ready or recycling: alive and expected to answer heartbeats.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            WorkerState::Starting | WorkerState::Ready { .. } | WorkerState::Recycling { .. }
        )
    }

    pub fn is_recycling(&self) -> bool {
        matches!(self.state, WorkerState::Recycling { .. })
    }

    /// The last sign of life: its last answer, or its start before the first (so a worker that
    /// never answers is caught by the same watchdog rule).
    pub fn last_seen(&self) -> Instant {
        self.last_answer.unwrap_or(self.started)
    }
}
