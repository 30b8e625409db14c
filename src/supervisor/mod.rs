//! The master: binds the listen socket, starts and supervises the workers.
//!
//! One task owns all cluster state ([`master::Master`]) and handles one value at a time: a signal,
//! a worker's message or exit, a control request, a timer tick. Nothing in it sleeps or waits on
//! a worker: writes to workers go through per-worker queues, exits arrive as events, restarts and
//! deadlines are instants the loop wakes up for.

mod backoff;
mod listen;
mod master;
mod memory;
mod notify;
mod signals;
mod slot;
mod spawn;

use std::io;
use std::path::PathBuf;

pub use backoff::{max_delay, restart_delay};
pub use listen::ListenError;
pub use spawn::SpawnError;

use crate::config::Loaded;
use crate::control::ControlError;
use crate::tls::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("cannot find this program's own path to start workers from")]
    CurrentExe(#[source] io::Error),
    #[error("cannot listen for signals")]
    Signals(#[source] io::Error),
    #[error("cannot read process information: {0}")]
    Sysinfo(String),
    #[error("cannot start the master's event loop")]
    Runtime(#[source] io::Error),
}

/// Runs the cluster until it is told to stop. `config_arg` is the file named on the command line,
/// re-read on SIGHUP (none: the default location, as at start). `tls`: the TLS files `loaded`
/// names, already read and checked ([`TlsFiles::load`]), if `frontend.ssl` is on.
pub fn run(
    loaded: Loaded,
    tls: Option<TlsFiles>,
    config_arg: Option<PathBuf>,
) -> Result<(), SupervisorError> {
    // Resolved once, now: if the binary is replaced on disk, new workers start from the new one.
    let exe = std::env::current_exe().map_err(SupervisorError::CurrentExe)?;
    // One thread: the kernel's parent-death signal is tied to the thread that forked each worker.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SupervisorError::Runtime)?;
    runtime.block_on(async move {
        let master = master::Master::start(loaded, tls, config_arg, exe)?;
        master.run().await
    })
}
