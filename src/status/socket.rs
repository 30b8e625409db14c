//! The master's status socket: a named local socket at `cluster.controlSocket`, used by
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

use super::StatusReport;

/// What a client may ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusSocketError {
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

/// A request from a status client, with where to send the answer.
#[derive(Debug)]
pub struct StatusCall {
    pub request: Request,
    pub reply: oneshot::Sender<StatusReport>,
}

/// Binds the control socket, refusing to displace a live master's.
pub fn listen(path: &Path) -> Result<ipc::Listener, StatusSocketError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StatusSocketError::Listen {
            path: path.to_owned(),
            source,
        })?;
    }
    if path.exists() {
        if connect(path).is_ok() {
            return Err(StatusSocketError::InUse {
                path: path.to_owned(),
            });
        }
        // Left behind by a master that was killed: take the name over.
        let _ = std::fs::remove_file(path);
    }
    let name = path
        .to_fs_name::<GenericFilePath>()
        .map_err(|source| StatusSocketError::Name {
            path: path.to_owned(),
            source,
        })?;
    ListenerOptions::new()
        .name(name)
        .create_tokio()
        .map_err(|source| StatusSocketError::Listen {
            path: path.to_owned(),
            source,
        })
}

/// Answers status clients until `calls` is closed (the master has stopped).
pub async fn serve(listener: ipc::Listener, calls: mpsc::Sender<StatusCall>) {
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok(conn) => {
                    tokio::spawn(answer(conn, calls.clone()));
                }
                Err(e) => tracing::warn!("status socket accept failed: {e}"),
            },
            () = calls.closed() => return,
        }
    }
}

async fn answer(conn: ipc::Stream, calls: mpsc::Sender<StatusCall>) {
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
            tracing::debug!("bad status request {line:?}: {e}");
            let _ = write.write_all(b"{\"error\":\"unknown request\"}\n").await;
            return;
        }
    };
    let (reply, answer) = oneshot::channel();
    if calls.send(StatusCall { request, reply }).await.is_err() {
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
pub fn query_status(path: &Path) -> Result<StatusReport, StatusSocketError> {
    let conn = connect(path).map_err(|source| StatusSocketError::Connect {
        path: path.to_owned(),
        source,
    })?;
    // A master that is stuck must not hang its operator's shell too.
    conn.set_recv_timeout(Some(Duration::from_secs(5)))
        .map_err(|source| StatusSocketError::Connect {
            path: path.to_owned(),
            source,
        })?;
    let answer_err = |source| StatusSocketError::Answer {
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
