//! The cluster's status report, typed: what the master answers on its status socket
//! ([`socket`], `cluster.controlSocket`) and on the console, what `activestack-gateway status`
//! prints, and what the tests read. The enums ([`Phase`], [`Role`], [`State`]) are the words
//! of the JSON (`"phase": "running"`, `"role": "gateway"`, `"state": "ready"`).

pub mod socket;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use socket::{StatusCall, StatusSocketError, listen, query_status, serve};

/// A process id, as the operating system numbers it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Pid(pub u32);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where the cluster is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not every slot has had a ready worker yet.
    Starting,
    /// Every slot has a ready worker of the current generation.
    Running,
    /// A reload (SIGHUP, `restart graceful`) is replacing the workers.
    Reloading,
    /// Told to stop: the workers drain or are killed, then the master exits.
    Stopping,
}

/// What a worker process is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// One of the `cluster.workerCount` gateway workers.
    Gateway,
    /// The MongoDB outbox -> NATS relay (`relay.enabled`).
    Relay,
    /// The demo agent (`demo.enabled`).
    Demo,
    /// The hot standby gateway worker (`cluster.standbyWorkers`), in no slot.
    Standby,
}

/// Where a worker process is in its life, as the master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Started, not ready yet (connecting to RabbitMQ...).
    Starting,
    /// Serving (a standby: initialised, able to take a slot).
    Ready,
    /// Told to finish its work and exit.
    Draining,
    /// SIGKILLed; its exit is awaited.
    Killed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Draining => "draining",
            State::Killed => "killed",
        })
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Reloading => "reloading",
            Phase::Stopping => "stopping",
        })
    }
}

/// The state of the cluster, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub master_pid: Pid,
    pub config_path: Option<PathBuf>,
    pub generation: u64,
    pub listen: String,
    /// Where the master answers `GET /metrics` itself (`cluster.metricsAddress`), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    pub phase: Phase,
    pub uptime_ms: u64,
    pub desired_workers: usize,
    /// The workers in slots (gateway workers and the relay): the ones that serve.
    pub workers: Vec<WorkerStatus>,
    /// The standby worker (`cluster.standbyWorkers`, role `standby`), in no slot: usually one,
    /// none while it starts up or is off, for a moment two while a replaced one exits.
    #[serde(default)]
    pub standby: Vec<WorkerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Slot number within its role; none for the standby, which is in no slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<usize>,
    pub role: Role,
    pub pid: Pid,
    pub generation: u64,
    pub state: State,
    pub uptime_ms: u64,
    /// Age of the last heartbeat answer; `None` before the first.
    pub heartbeat_age_ms: Option<u64>,
    /// Measured by the master, bytes.
    pub rss: u64,
    pub heap_used: u64,
    pub heap_total: u64,
    pub clients: u64,
    pub loop_lag_us: u64,
    /// Times this worker's slot has had its worker replaced (for the standby: times it was
    /// restarted after failing).
    pub restarts: u32,
}

/// The status as a table for people.
pub fn render_table(report: &StatusReport) -> String {
    let mut out = format!(
        "master pid {}  phase {}  listen {}  generation {}  uptime {}\nconfig {}\nworkers {} of {}, standby {}\n\n",
        report.master_pid,
        report.phase,
        report.listen,
        report.generation,
        human_ms(report.uptime_ms),
        report
            .config_path
            .as_ref()
            .map_or("(built-in defaults)".into(), |p| p.display().to_string()),
        report.workers.len(),
        report.desired_workers,
        report.standby.len(),
    );
    if let Some(metrics) = &report.metrics {
        out.insert_str(
            out.len() - 1,
            &format!("metrics http://{metrics}/metrics (and /metrics on the listen address)\n"),
        );
    }
    out.push_str(&format!(
        "{:>7} {:>8} {:>4} {:<9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8}\n",
        "SLOT",
        "PID",
        "GEN",
        "STATE",
        "UPTIME",
        "HEARTBEAT",
        "RSS",
        "HEAPUSED",
        "HEAPTOTAL",
        "CLIENTS",
        "LAG",
        "RESTARTS"
    ));
    for w in report.workers.iter().chain(&report.standby) {
        let slot = match (w.role, w.slot) {
            (Role::Gateway, Some(slot)) => slot.to_string(),
            (Role::Gateway, None) => "-".into(),
            (Role::Relay, _) => "relay".into(),
            (Role::Demo, _) => "demo".into(),
            (Role::Standby, _) => "standby".into(),
        };
        out.push_str(&format!(
            "{:>7} {:>8} {:>4} {:<9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8}\n",
            slot,
            w.pid,
            w.generation,
            w.state.to_string(),
            human_ms(w.uptime_ms),
            w.heartbeat_age_ms
                .map_or("-".into(), |ms| format!("{ms}ms ago")),
            human_bytes(w.rss),
            human_bytes(w.heap_used),
            human_bytes(w.heap_total),
            w.clients,
            format!("{:.1}ms", w.loop_lag_us as f64 / 1000.0),
            w.restarts,
        ));
    }
    out
}

fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

fn human_bytes(bytes: u64) -> String {
    format!("{:.1}M", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_words_are_the_documented_ones() {
        let w = WorkerStatus {
            slot: None,
            role: Role::Standby,
            pid: Pid(7),
            generation: 1,
            state: State::Ready,
            uptime_ms: 0,
            heartbeat_age_ms: None,
            rss: 0,
            heap_used: 0,
            heap_total: 0,
            clients: 0,
            loop_lag_us: 0,
            restarts: 0,
        };
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["role"], "standby");
        assert_eq!(json["state"], "ready");
        assert_eq!(json["pid"], 7);
        assert!(
            json.get("slot").is_none(),
            "the standby has no slot: {json}"
        );
        let gateway = WorkerStatus {
            slot: Some(1),
            role: Role::Gateway,
            ..w
        };
        assert_eq!(serde_json::to_value(&gateway).unwrap()["slot"], 1);
        assert_eq!(serde_json::to_value(Phase::Reloading).unwrap(), "reloading");
    }
}
