//! A reload's blocking part: reading the config file and the TLS files it names, and binding
//! the new listen address (DNS included) when `frontend.host` / `frontend.port` changed. It runs
//! off the master's thread ([`prepare`] in a blocking task); the result comes back to the
//! master as an event, checked before anything changes, so a bad file leaves the current
//! workers serving.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use super::listen::{self, ListenError};
use crate::config::{Config, ConfigError, Loaded, ReloadRefused, WorkerInitError};
use crate::logging::error_chain;
use crate::tls::{TlsError, TlsFiles};

/// A new config, read and checked, ready to be applied.
#[derive(Debug)]
pub struct Prepared {
    pub loaded: Loaded,
    /// Its TLS files (`frontend.ssl`), read and checked.
    pub tls: Option<TlsFiles>,
    /// The new listen socket and its address, if the address changed.
    pub listener: Option<(TcpListener, SocketAddr)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Refused(#[from] ReloadRefused),
    #[error(transparent)]
    WorkerInit(#[from] WorkerInitError),
}

impl ReloadError {
    /// What went wrong, for the log (one line per problem of a config file).
    pub fn describe(&self) -> String {
        match self {
            ReloadError::Config(e) => e.to_string(),
            ReloadError::Tls(e) => error_chain(e),
            ReloadError::Listen(e) => error_chain(e),
            ReloadError::Refused(e) => e.to_string(),
            ReloadError::WorkerInit(e) => error_chain(e),
        }
    }
}

/// Reads the config (`config_arg`, else the default location, as at start) and its TLS files,
/// refuses what `running` must not become (keys lost from the file: [`Config::check_reload`];
/// more than a worker's init message can carry: [`Config::check_worker_init`]), and binds the
/// new address if it is not the running one. Blocking.
pub fn prepare(config_arg: Option<&Path>, running: &Config) -> Result<Prepared, ReloadError> {
    let loaded = Config::resolve(config_arg)?;
    running.check_reload(&loaded.config)?;
    let tls = TlsFiles::load(&loaded.config)?;
    loaded.config.check_worker_init(tls.as_ref())?;
    let front = &loaded.config.frontend;
    let listener = if (front.host.as_str(), front.port)
        != (running.frontend.host.as_str(), running.frontend.port)
    {
        let listener = listen::bind(&front.host, front.port)?;
        let addr = listen::local_addr(&listener, &loaded.config);
        Some((listener, addr))
    } else {
        None
    };
    Ok(Prepared {
        loaded,
        tls,
        listener,
    })
}
