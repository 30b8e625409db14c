//! The master's answers to console commands, typed, and the JSON the console prints for each.

use serde_json::{Value, json};

use super::command::Mode;
use crate::config::LogLevel;
use crate::status::{Pid, StatusReport};

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The command was not carried out, and why.
    Refused(String),
    /// `restart`: `count` workers are being replaced; a graceful restart is a new generation.
    Restarting {
        count: usize,
        mode: Mode,
        generation: Option<u64>,
    },
    /// `shutdown`: the cluster is stopping.
    Stopping(Mode),
    /// `loglevel`: the master and its `workers` are at `level` now.
    LogLevel {
        level: LogLevel,
        workers: usize,
    },
    /// `clientmessageresendinterval`: told to the master's `workers`.
    ResendInterval {
        ms: u64,
        workers: usize,
    },
    /// `clientcount`: open client connections per serving worker.
    ClientCount {
        total: u64,
        workers: Vec<ClientCount>,
    },
    Status(Box<StatusReport>),
    /// `push` `id` went out through worker `via`.
    Pushed {
        id: u64,
        via: Pid,
    },
    /// `push` failed in (or before reaching) worker `via`.
    PushFailed {
        error: String,
        via: Option<Pid>,
    },
}

/// One serving worker's line of `clientcount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCount {
    /// Its slot as logs name it (`0`, `1`...).
    pub slot: String,
    pub pid: Pid,
    pub clients: u64,
}

impl Answer {
    /// Whether the console reports success (exit code 0).
    pub fn ok(&self) -> bool {
        !matches!(self, Answer::Refused(_) | Answer::PushFailed { .. })
    }

    pub fn to_json(&self) -> Value {
        match self {
            Answer::Refused(error) => json!({"ok": false, "error": error}),
            Answer::Restarting {
                count,
                mode,
                generation: None,
            } => json!({"ok": true, "restarting": count, "mode": mode.name()}),
            Answer::Restarting {
                count,
                mode,
                generation: Some(generation),
            } => {
                json!({"ok": true, "restarting": count, "mode": mode.name(), "generation": generation})
            }
            Answer::Stopping(mode) => json!({"ok": true, "stopping": mode.name()}),
            Answer::LogLevel { level, workers } => {
                json!({"ok": true, "loglevel": level.to_string(), "workers": workers})
            }
            Answer::ResendInterval { ms, workers } => {
                json!({"ok": true, "clientMessageResendInterval": ms, "workers": workers})
            }
            Answer::ClientCount { total, workers } => {
                let workers: Vec<Value> = workers
                    .iter()
                    .map(|w| json!({"slot": w.slot, "pid": w.pid, "clients": w.clients}))
                    .collect();
                json!({"ok": true, "total": total, "workers": workers})
            }
            Answer::Status(report) => json!({"ok": true, "status": report}),
            Answer::Pushed { id, via } => json!({"ok": true, "pushed": id, "via": via}),
            Answer::PushFailed { error, via: None } => json!({"ok": false, "error": error}),
            Answer::PushFailed {
                error,
                via: Some(via),
            } => json!({"ok": false, "error": error, "via": via}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_their_json_shapes() {
        assert_eq!(
            Answer::Restarting {
                count: 2,
                mode: Mode::Graceful,
                generation: Some(3)
            }
            .to_json(),
            json!({"ok": true, "restarting": 2, "mode": "graceful", "generation": 3})
        );
        assert_eq!(
            Answer::Stopping(Mode::Immediate).to_json(),
            json!({"ok": true, "stopping": "immediate"})
        );
        assert_eq!(
            Answer::LogLevel {
                level: LogLevel::Trace,
                workers: 2
            }
            .to_json(),
            json!({"ok": true, "loglevel": "trace", "workers": 2})
        );
        let refused = Answer::Refused("wrong shutdown code".into());
        assert_eq!(
            refused.to_json(),
            json!({"ok": false, "error": "wrong shutdown code"})
        );
        assert!(!refused.ok());
        assert_eq!(
            Answer::Pushed { id: 4, via: Pid(9) }.to_json(),
            json!({"ok": true, "pushed": 4, "via": 9})
        );
    }
}
