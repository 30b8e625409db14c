//! The master's control socket (a named local socket, path `cluster.controlSocket`), used by
//! `activestack-gateway status`.
//!
//! Protocol: the client sends one JSON line (`{"cmd":"status"}`), the master answers one JSON
//! line ([`StatusReport`]) and closes.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use interprocess::ConnectWaitMode;
use interprocess::local_socket::traits::Stream as _;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{
    ConnectOptions, GenericFilePath, ListenerOptions, ToFsName, tokio as ipc,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
}

/// The state of the cluster, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub master_pid: u32,
    pub config_path: Option<PathBuf>,
    pub generation: u64,
    pub listen: String,
    /// `starting`, `running`, `reloading` or `stopping`.
    pub phase: String,
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
    /// Slot number within its role.
    pub slot: usize,
    /// `gateway`, `relay` or `standby`.
    pub role: String,
    pub pid: u32,
    pub generation: u64,
    /// `starting`, `ready`, `draining` or `killed`.
    pub state: String,
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

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket path {path} is not usable")]
    Name {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("another master is already running with control socket {path}")]
    InUse { path: PathBuf },
    #[error("cannot create the control socket {path}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no master answers on {path} (is the cluster running, and is cluster.controlSocket the same?)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the master's answer on {path} could not be read")]
    Answer {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A request from a control client, with where to send the answer.
pub struct ControlCall {
    pub request: Request,
    pub reply: oneshot::Sender<StatusReport>,
}

/// Binds the control socket, refusing to displace a live master's.
pub fn listen(path: &Path) -> Result<ipc::Listener, ControlError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::Listen {
            path: path.to_owned(),
            source,
        })?;
    }
    if path.exists() {
        if connect(path).is_ok() {
            return Err(ControlError::InUse {
                path: path.to_owned(),
            });
        }
        // Left behind by a master that was killed: take the name over.
        let _ = std::fs::remove_file(path);
    }
    let name = path
        .to_fs_name::<GenericFilePath>()
        .map_err(|source| ControlError::Name {
            path: path.to_owned(),
            source,
        })?;
    ListenerOptions::new()
        .name(name)
        .create_tokio()
        .map_err(|source| ControlError::Listen {
            path: path.to_owned(),
            source,
        })
}

/// Answers control clients until `calls` is closed (the master has stopped).
pub async fn serve(listener: ipc::Listener, calls: mpsc::Sender<ControlCall>) {
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok(conn) => {
                    tokio::spawn(answer(conn, calls.clone()));
                }
                Err(e) => tracing::warn!("control socket accept failed: {e}"),
            },
            () = calls.closed() => return,
        }
    }
}

async fn answer(conn: ipc::Stream, calls: mpsc::Sender<ControlCall>) {
    let (read, mut write) = tokio::io::split(conn);
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read);
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line));
    if !matches!(read.await, Ok(Ok(n)) if n > 0) {
        return;
    }
    let request = match serde_json::from_str::<Request>(&line) {
        Ok(request) => request,
        Err(e) => {
            tracing::debug!("bad control request {line:?}: {e}");
            let _ = write.write_all(b"{\"error\":\"unknown request\"}\n").await;
            return;
        }
    };
    let (reply, answer) = oneshot::channel();
    if calls.send(ControlCall { request, reply }).await.is_err() {
        return;
    }
    if let Ok(report) = answer.await
        && let Ok(mut json) = serde_json::to_vec(&report)
    {
        json.push(b'\n');
        let _ = write.write_all(&json).await;
    }
}

fn connect(path: &Path) -> io::Result<interprocess::local_socket::Stream> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    ConnectOptions::new()
        .name(name)
        .wait_mode(ConnectWaitMode::Timeout(Duration::from_secs(2)))
        .connect_sync()
}

/// Asks the master listening on `path` for its status (blocking; for the CLI).
pub fn query_status(path: &Path) -> Result<StatusReport, ControlError> {
    let conn = connect(path).map_err(|source| ControlError::Connect {
        path: path.to_owned(),
        source,
    })?;
    // A master that is stuck must not hang its operator's shell too.
    conn.set_recv_timeout(Some(Duration::from_secs(5)))
        .map_err(|source| ControlError::Connect {
            path: path.to_owned(),
            source,
        })?;
    let answer_err = |source| ControlError::Answer {
        path: path.to_owned(),
        source,
    };
    (&conn)
        .write_all(b"{\"cmd\":\"status\"}\n")
        .map_err(answer_err)?;
    let mut line = String::new();
    BufReader::new(&conn)
        .read_line(&mut line)
        .map_err(answer_err)?;
    serde_json::from_str(&line)
        .map_err(|e| answer_err(io::Error::new(io::ErrorKind::InvalidData, e)))
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
        out.push_str(&format!(
            "{:>7} {:>8} {:>4} {:<9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8}\n",
            if w.role == "gateway" {
                w.slot.to_string()
            } else {
                w.role.clone()
            },
            w.pid,
            w.generation,
            w.state,
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
