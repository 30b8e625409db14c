//! The worker process: started by the master as `activestack-gateway worker ...` with the shared
//! listen socket and its end of the master channel as inherited file descriptors.
//!
//! Life of a gateway worker, one loop over its [`Phase`]s: read `init` (the config) ->
//! *starting* (RabbitMQ, Redis, socket.io; heartbeats answered meanwhile) -> start accepting,
//! say `ready` -> *serving*, answering every heartbeat with a [`WorkerReport`] -> on `drain`
//! (or SIGTERM) *draining*: stop accepting, finish in-flight requests, close what is left at
//! the drain deadline, exit 0. If the master goes away (end of the channel) the worker exits at
//! once; the kernel also kills it then (parent-death signal), so no worker outlives its master.
//!
//! A *standby* worker (`--standby`, `cluster.standbyWorkers`) says `ready` once its gateway has
//! started but does not accept: it waits in *standby*, answering heartbeats, until the master
//! sends `activate` with the slot it takes (then it accepts and serves like any worker) or tells
//! it to stop. The relay (`--relay`) runs the outbox relay through the same loop: ready at once,
//! serving until told to drain; so does the demo agent (`--demo`, [`crate::demo`]).
//!
//! What each message or signal means in each phase is decided in [`phase`]; the link to the
//! master is [`link`]; what runs (the gateway or the relay) is [`service`].

mod acceptor;
mod http;
mod lag;
mod link;
pub mod memory;
mod phase;
mod scrapes;
mod service;

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::Duration;

use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::ipc::{Channel, IpcError, MAX_FRAME, ToMaster};
use crate::logging::{self, Role};
use link::Link;
use phase::{Phase, Reaction, Stop};
use scrapes::Scrapes;
use service::{DemoService, GatewayService, RelayService, Service};

/// File descriptors the master hands every worker (fixed numbers, set up before exec).
pub const LISTEN_FD: RawFd = 3;
pub const IPC_FD: RawFd = 4;

#[derive(Debug, Clone, Copy)]
pub struct WorkerArgs {
    pub kind: WorkerKind,
    pub listen_fd: RawFd,
    pub ipc_fd: RawFd,
}

/// What a worker process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerKind {
    /// The gateway worker of slot N.
    Gateway { slot: usize },
    /// The standby gateway worker: its slot is unknown until the master activates it.
    Standby,
    /// The outbox relay.
    Relay,
    /// The demo agent.
    Demo,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "file descriptor {fd} ({what}) is not an open socket: workers are started by the master, not by hand"
    )]
    NotInherited { fd: RawFd, what: &'static str },
    #[error("cannot start the worker's event loop")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start accepting connections")]
    Accept(#[source] std::io::Error),
    #[error("cannot listen for signals")]
    Signals(#[source] std::io::Error),
    #[error("the master channel failed")]
    Ipc(#[from] IpcError),
    #[error("cannot start realtime")]
    Realtime(#[from] crate::realtime::RealtimeError),
    #[error("the master closed the channel before sending init")]
    NoInit,
    #[error("the master's first message was not init")]
    NotInit,
    #[error(
        "the master's init message is {len} bytes, over the {MAX_FRAME}-byte frame limit of the \
         master <-> worker channel (is a config value very large?)"
    )]
    InitTooLarge { len: usize },
    #[error("the gateway is not started")]
    NotStarted,
    #[error("frontend.ssl is on but the master sent no TLS key and certificate")]
    NoTlsFiles,
    #[error("cannot serve TLS")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot start the gateway")]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error("the gateway did not start within {0:?}")]
    GatewayTimeout(Duration),
    #[error("the RabbitMQ connection was lost")]
    RabbitLost,
    #[error("the relay stopped")]
    Relay(#[from] crate::relay::RelayError),
    #[error("the relay task failed")]
    RelayTask(#[source] tokio::task::JoinError),
    #[error("the demo agent's task failed")]
    DemoTask(#[source] tokio::task::JoinError),
}

/// Runs the worker until it has drained or its master is gone.
pub fn run(args: WorkerArgs) -> Result<(), WorkerError> {
    let listener = TcpListener::from(inherited_socket(args.listen_fd, "listen socket")?);
    let ipc = StdUnixStream::from(inherited_socket(args.ipc_fd, "master channel")?);
    ipc.set_nonblocking(true).map_err(WorkerError::Runtime)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(WorkerError::Runtime)?;
    let result = runtime.block_on(async {
        let ipc = UnixStream::from_std(ipc).map_err(WorkerError::Runtime)?;
        serve(args, listener, Channel::new(ipc)).await
    });
    // The work is done and the process exits next. Shutting the runtime down would only make
    // the RabbitMQ client's I/O thread, which outlives its closed connection, log errors about
    // a runtime going away.
    std::mem::forget(runtime);
    result
}

/// Takes ownership of an inherited descriptor after checking that it is a socket.
fn inherited_socket(fd: RawFd, what: &'static str) -> Result<OwnedFd, WorkerError> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes into `stat` and only reads `fd`; an invalid fd gives -1, checked.
    let ok = unsafe { libc::fstat(fd, stat.as_mut_ptr()) } == 0;
    // SAFETY: fstat succeeded, so it filled `stat`.
    if !ok || unsafe { stat.assume_init() }.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(WorkerError::NotInherited { fd, what });
    }
    // SAFETY: the fd is open, a socket, and nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The worker's one loop: every message from the master, signal and event of the service, in
/// whatever phase.
async fn serve(
    args: WorkerArgs,
    listener: TcpListener,
    channel: Channel<ToMaster, crate::ipc::ToWorker>,
) -> Result<(), WorkerError> {
    let (mut link, init) = Link::open(channel).await?;
    let role = match args.kind {
        WorkerKind::Relay => Role::Relay,
        WorkerKind::Demo => Role::Demo,
        WorkerKind::Standby => Role::Standby,
        WorkerKind::Gateway { slot } => Role::Worker { slot },
    };
    logging::init(role, init.config.frontend.log_level);
    let generation = init.generation;
    let drain_timeout = init.config.cluster.drain_timeout;
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP]).map_err(WorkerError::Signals)?;
    // Scrapes of `/metrics` this worker took, waiting for the master's text.
    let (metrics_tx, mut metrics_rx) = tokio::sync::mpsc::channel(16);
    let mut scrapes = Scrapes::default();
    let (mut service, mut phase) = if args.kind == WorkerKind::Relay {
        drop(listener); // the relay serves no clients
        let relay = RelayService::start(&init.config);
        link.send(&ToMaster::Ready).await?;
        tracing::info!(generation, "relay ready");
        (Service::Relay(relay), Phase::Serving)
    } else if args.kind == WorkerKind::Demo {
        drop(listener); // the agent serves no clients: it talks to RabbitMQ and NATS
        let demo = DemoService::start(&init.config);
        link.send(&ToMaster::Ready).await?;
        tracing::info!(generation, "demo agent ready");
        (Service::Demo(demo), Phase::Serving)
    } else {
        // The master checked these files before it started us; a failure here is still an
        // error, never plain HTTP in place of TLS.
        let tls = match (init.config.frontend.ssl, init.tls) {
            (false, _) => None,
            (true, Some(files)) => Some(tokio_rustls::TlsAcceptor::from(files.server_config()?)),
            (true, None) => return Err(WorkerError::NoTlsFiles),
        };
        let name = format!("activestack-gateway {role} pid {}", std::process::id());
        let gateway =
            GatewayService::start(*init.config, name, listener, tls, generation, metrics_tx);
        (Service::Gateway(Box::new(gateway)), Phase::Starting)
    };

    loop {
        let deadline = match phase {
            Phase::Draining { deadline } => Some(deadline),
            _ => None,
        };
        let reaction = tokio::select! {
            msg = link.recv() => phase::on_message(phase, msg?),
            Some(signal) = signals.next() => phase::on_signal(phase, signal, drain_timeout),
            Some(ask) = metrics_rx.recv() => {
                if let Some(id) = scrapes.add(ask) {
                    link.send(&ToMaster::Metrics { id }).await?;
                }
                continue;
            }
            event = service.next() => match event {
                service::Event::Started(started) => {
                    started?;
                    if let WorkerKind::Gateway { slot } = args.kind {
                        service.serve(slot)?;
                        link.send(&ToMaster::Ready).await?;
                        tracing::info!(generation, "ready");
                        phase = Phase::Serving;
                    } else {
                        link.send(&ToMaster::Ready).await?;
                        tracing::info!(generation, "standby: ready, not accepting until activated");
                        phase = Phase::Standby;
                    }
                    continue;
                }
                service::Event::Pushed { id, error } => {
                    link.send(&ToMaster::Pushed { id, error }).await?;
                    continue;
                }
                service::Event::Drained => {
                    tracing::info!("drained: all connections closed");
                    break;
                }
                service::Event::RabbitLost => {
                    service.close().await;
                    return Err(WorkerError::RabbitLost);
                }
                service::Event::Finished(result) => {
                    return result;
                }
            },
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                match service {
                    Service::Gateway(_) => tracing::warn!("drain timeout: closing the connections still open"),
                    Service::Relay(_) => {
                        tracing::warn!("the relay did not stop by the drain deadline; exiting");
                        return Ok(());
                    }
                    Service::Demo(_) => {
                        tracing::warn!("the demo agent did not stop by the drain deadline; exiting");
                        return Ok(());
                    }
                }
                break;
            }
        };
        match reaction {
            Reaction::Heartbeat(seq) => {
                let clients = match phase {
                    Phase::Starting => 0,
                    _ => service.clients(),
                };
                link.answer_heartbeat(seq, clients, service.metrics())
                    .await?;
            }
            Reaction::LogLevel(level) => {
                logging::set_level(level);
                tracing::info!(%level, "log level changed");
            }
            Reaction::ResendInterval(ms) => service.set_resend_interval(ms),
            Reaction::MetricsText { id, text } => scrapes.answer(id, text),
            Reaction::Push { id, audience, data } => {
                if let Err(why) = service.push(id, audience, data) {
                    let error = Some(why.to_string());
                    link.send(&ToMaster::Pushed { id, error }).await?;
                }
            }
            Reaction::RefusePush { id, why } => {
                let error = Some(why.to_string());
                link.send(&ToMaster::Pushed { id, error }).await?;
            }
            Reaction::Activate(slot) => {
                logging::set_role(Role::Worker { slot });
                service.serve(slot)?;
                tracing::info!(generation, "activated: the standby now serves slot {slot}");
                phase = Phase::Serving;
            }
            Reaction::Drain { timeout, announce } => {
                let clients = match phase {
                    Phase::Serving => {
                        phase = Phase::Draining {
                            deadline: Instant::now() + timeout,
                        };
                        service.drain(timeout)
                    }
                    _ => service.clients(),
                };
                if announce {
                    link.send(&ToMaster::Draining { clients }).await?;
                }
            }
            Reaction::Stop(stop) => {
                match stop {
                    Stop::MasterGone => tracing::warn!("the master is gone; exiting"),
                    Stop::Quit => tracing::info!("SIGQUIT: exiting now"),
                    Stop::NothingToDrain => {
                        tracing::info!(?phase, "told to stop before serving; exiting");
                        service.close().await;
                    }
                }
                return Ok(());
            }
            Reaction::Ignore(why) => tracing::warn!("{why}"),
            Reaction::Pass(why) => tracing::debug!("{why}"),
        }
    }
    service.close().await;
    Ok(())
}
