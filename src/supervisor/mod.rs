//! The master: binds the listen socket, starts and supervises the workers.
//!
//! Decisions apart from effects: [`cluster::ClusterState`] holds every slot, worker and timer
//! and decides, one [`cluster::Event`] at a time, what to do ([`cluster::Action`]s), without
//! any I/O; [`shell::Shell`] owns the processes, sockets and timers, carries the actions out and
//! feeds what happens back as events. Signals reach the shell as values, from a stream.

mod cluster;
mod listen;
mod memory;
mod notify;
mod open_files;
mod reload;
mod session_secret;
mod shell;
mod signals;
mod spawn;

use std::io;
use std::path::PathBuf;

use futures_util::StreamExt;
use signal_hook_tokio::Signals;

pub use listen::ListenError;
pub use signals::Signal;
pub use spawn::SpawnError;

use crate::config::Loaded;
use crate::status::StatusSocketError;
use crate::tls::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    StatusSocket(#[from] StatusSocketError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::http::MetricsListenError),
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
    // Before any worker starts: they inherit it.
    open_files::raise_for_workers();
    // One thread: the kernel's parent-death signal is tied to the thread that forked each worker.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SupervisorError::Runtime)?;
    runtime.block_on(async move {
        let (shell, state) = shell::start(loaded, tls, config_arg, exe)?;
        let signals = Signals::new(signals::HANDLED).map_err(SupervisorError::Signals)?;
        let signals = signals.filter_map(|raw| std::future::ready(Signal::from_raw(raw)));
        shell.run(state, signals).await;
        tracing::info!("master stopped");
        Ok(())
    })
}
