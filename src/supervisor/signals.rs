//! Signals the master acts on, turned into values for its event loop.

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: re-read the config file, rolling restart.
    Reload,
    /// SIGTERM, SIGINT: drain the workers, exit 0.
    Terminate,
    /// SIGQUIT: kill the workers, exit now.
    Quit,
    /// SIGTTIN: one worker more.
    MoreWorkers,
    /// SIGTTOU: one worker fewer.
    FewerWorkers,
}

pub const HANDLED: [i32; 6] = [SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGTTIN, SIGTTOU];

impl Signal {
    pub fn from_raw(signal: i32) -> Option<Signal> {
        match signal {
            SIGHUP => Some(Signal::Reload),
            SIGTERM | SIGINT => Some(Signal::Terminate),
            SIGQUIT => Some(Signal::Quit),
            SIGTTIN => Some(Signal::MoreWorkers),
            SIGTTOU => Some(Signal::FewerWorkers),
            _ => None,
        }
    }
}
