//! The worker process: started by the master as `activestack-gateway worker ...` with the shared
//! listen socket and its end of the master channel as inherited file descriptors.
//!
//! Life of a worker: read `init` (the config) -> start the gateway (RabbitMQ, Redis, socket.io)
//! -> start accepting -> say `ready` -> serve, answer every heartbeat with a [`WorkerReport`] ->
//! on `drain` (or SIGTERM) stop accepting, finish in-flight requests, close what is left at the
//! drain deadline, exit 0. If the master goes away (end of the channel) the worker exits at once;
//! the kernel also kills it then (parent-death signal), so no worker outlives its master.
//!
//! A *standby* worker (`--standby`, `cluster.standbyWorkers`) says `ready` once its gateway has
//! started but does not accept: it waits, answering heartbeats, until the master sends `activate`
//! with the slot it takes (then it accepts and serves like any worker) or tells it to stop.

mod acceptor;
mod http;
mod lag;
pub mod memory;
mod relay_process;

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::gateway::{Gateway, GatewayError};
use crate::ipc::{Channel, IpcError, ToMaster, ToWorker, WorkerReport};
use crate::logging::{self, Role};
use crate::realtime::{Realtime, RealtimeError};
use acceptor::Acceptor;
use http::{HttpServer, Identity};
use lag::LagProbe;

/// File descriptors the master hands every worker (fixed numbers, set up before exec).
pub const LISTEN_FD: RawFd = 3;
pub const IPC_FD: RawFd = 4;
/// How long a worker may take to connect to RabbitMQ before it gives up (and is replaced).
const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest pause between RabbitMQ connection attempts while the gateway starts.
const RABBIT_RETRY_MIN: Duration = Duration::from_millis(100);
const RABBIT_RETRY_MAX: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct WorkerArgs {
    pub slot: usize,
    /// Run the outbox relay instead of the gateway.
    pub relay: bool,
    /// Start as the standby gateway worker: `slot` is unknown until the master activates it.
    pub standby: bool,
    pub listen_fd: RawFd,
    pub ipc_fd: RawFd,
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
    #[error("the master's first message was not init")]
    NoInit,
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
    #[error("cannot start realtime")]
    Realtime(#[from] RealtimeError),
    #[error("the relay task failed")]
    RelayTask(#[source] tokio::task::JoinError),
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
        if args.relay {
            drop(listener); // the relay serves no clients
            relay_process::serve(Channel::new(ipc)).await
        } else {
            serve(args, listener, Channel::new(ipc)).await
        }
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

async fn serve(
    args: WorkerArgs,
    listener: TcpListener,
    mut channel: Channel<ToMaster, ToWorker>,
) -> Result<(), WorkerError> {
    let Some(ToWorker::Init {
        generation,
        config,
        tls,
    }) = channel.receiver.recv().await?
    else {
        return Err(WorkerError::NoInit);
    };
    let role = if args.standby {
        Role::Standby
    } else {
        Role::Worker { slot: args.slot }
    };
    logging::init(role, config.frontend.log_level);
    // The master checked these files before it started us; a failure here is still an error,
    // never plain HTTP in place of TLS.
    let tls = match (config.frontend.ssl, tls) {
        (false, _) => None,
        (true, Some(files)) => Some(tokio_rustls::TlsAcceptor::from(files.server_config()?)),
        (true, None) => return Err(WorkerError::NoTlsFiles),
    };
    let (stop_probe, probe_stop) = watch::channel(false);
    let probe = LagProbe::default();
    tokio::spawn(probe.clone().run(probe_stop));
    let name = format!("activestack-gateway {role} pid {}", std::process::id());
    let Some(gateway) = answering(&mut channel, &probe, start_gateway(&config, &name)).await?
    else {
        return Ok(()); // told to stop, or the master is gone, before we ever served
    };
    let mut rabbit_lost = gateway.rabbit_lost();
    let header_timeout = config.frontend.header_timeout;
    // realtime: the settings kept for after a standby's activation.
    let realtime_config = config.realtime.enabled.then(|| (*config).clone());
    let Config { cluster, .. } = *config;

    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP]).map_err(WorkerError::Signals)?;
    let slot = if args.standby {
        channel.sender.send(&ToMaster::Ready).await?;
        tracing::info!(generation, "standby: ready, not accepting until activated");
        let activated = standby(
            &mut channel,
            &probe,
            &gateway,
            &mut signals,
            &mut rabbit_lost,
        )
        .await;
        match activated {
            Ok(Some(slot)) => {
                logging::set_role(Role::Worker { slot });
                slot
            }
            stopped => {
                gateway.close().await;
                let _ = stop_probe.send(true);
                return stopped.map(|_| ());
            }
        }
    } else {
        args.slot
    };
    let mut server = HttpServer::new(
        Identity {
            worker: slot,
            pid: std::process::id(),
            generation,
        },
        tls,
        header_timeout,
    );
    // realtime: started once this worker serves (a standby neither consumes nor serves it).
    let realtime = match &realtime_config {
        Some(config) => {
            let name = format!("worker{slot}_{}", std::process::id());
            Some(Realtime::start(config, &name)?)
        }
        None => None,
    };
    if let Some(realtime) = &realtime {
        server.merge(realtime.router());
    }
    server.mount(gateway.handshakes());
    let (acceptor, mut conns) = Acceptor::start(listener).map_err(WorkerError::Accept)?;
    if args.standby {
        tracing::info!(generation, "activated: the standby now serves slot {slot}");
    } else {
        channel.sender.send(&ToMaster::Ready).await?;
        tracing::info!(generation, "ready");
    }

    // Outcomes of console pushes, back to the master.
    let (pushed_tx, mut pushed_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut drain_deadline: Option<Instant> = None;
    let mut accepting = true;
    let mut closing: Option<Pin<Box<dyn Future<Output = ()>>>> = None;
    let mut server = Some(server);
    loop {
        tokio::select! {
            conn = conns.recv(), if accepting => match (conn, &server) {
                (Some(stream), Some(server)) => server.serve(stream),
                _ => {
                    // The acceptor has stopped: every accepted connection is being served.
                    accepting = false;
                    if let Some(realtime) = &realtime {
                        realtime.close(); // its clients get 3001 "shutdown" and reconnect elsewhere
                    }
                    if let Some(server) = server.take() {
                        // Then wait for the socket.io clients to leave too.
                        let idle = gateway.idle();
                        closing = Some(Box::pin(async move {
                            server.close_all().await;
                            idle.await;
                        }));
                    }
                }
            },
            msg = channel.receiver.recv() => match msg? {
                Some(ToWorker::Heartbeat { seq }) => {
                    let clients = server.as_ref().map_or(0, HttpServer::clients)
                        + gateway.clients()
                        + realtime.as_ref().map_or(0, Realtime::clients);
                    answer_heartbeat(&mut channel, seq, clients, &probe).await?;
                }
                Some(ToWorker::Drain { timeout_ms }) => {
                    start_drain(&acceptor, &gateway, &mut drain_deadline, Duration::from_millis(timeout_ms));
                    let clients = server.as_ref().map_or(0, HttpServer::clients) + gateway.clients();
                    channel.sender.send(&ToMaster::Draining { clients }).await?;
                }
                Some(ToWorker::Push { id, audience, data }) => {
                    let push = gateway.push(audience, data);
                    let pushed = pushed_tx.clone();
                    tokio::spawn(async move {
                        let _ = pushed.send((id, push.await.err()));
                    });
                }
                Some(ToWorker::Init { .. }) => tracing::warn!("ignoring a second init from the master"),
                Some(ToWorker::Activate { slot }) => {
                    tracing::warn!(slot, "ignoring activate: this worker is serving already");
                }
                Some(ToWorker::LogLevel { level }) => set_log_level(level),
                Some(ToWorker::ResendInterval { ms }) => set_resend_interval(&gateway, ms),
                None => {
                    tracing::warn!("the master is gone; exiting");
                    return Ok(());
                }
            },
            Some((id, error)) = pushed_rx.recv() => {
                channel.sender.send(&ToMaster::Pushed { id, error }).await?;
            }
            Some(signal) = signals.next() => match signal {
                SIGQUIT => {
                    tracing::info!("SIGQUIT: exiting now");
                    return Ok(());
                }
                // Reloads are the master's business (a hangup must not kill a worker).
                SIGHUP => tracing::debug!("SIGHUP ignored: send it to the master"),
                _ => start_drain(&acceptor, &gateway, &mut drain_deadline, cluster.drain_timeout),
            },
            () = async { if let Some(c) = closing.as_mut() { c.await } }, if closing.is_some() => {
                tracing::info!("drained: all connections closed");
                break;
            }
            _ = rabbit_lost.wait_for(|lost| *lost) => {
                gateway.close().await;
                return Err(WorkerError::RabbitLost);
            }
            () = tokio::time::sleep_until(drain_deadline.unwrap_or_else(Instant::now)), if drain_deadline.is_some() => {
                tracing::warn!("drain timeout: closing the connections still open");
                break;
            }
        }
    }
    if let Some(realtime) = &realtime {
        realtime.close();
    }
    gateway.close().await;
    let _ = stop_probe.send(true);
    Ok(())
}

/// Stops accepting; HTTP connections finish their requests, the gateway closes its clients'
/// connections (they reconnect to other workers).
fn start_drain(
    acceptor: &Acceptor,
    gateway: &Gateway,
    deadline: &mut Option<Instant>,
    timeout: Duration,
) {
    if deadline.is_none() {
        tracing::info!(
            timeout_ms = timeout.as_millis() as u64,
            "draining: no new connections"
        );
        acceptor.stop();
        gateway.drain();
        *deadline = Some(Instant::now() + timeout);
    }
}

/// A standby worker's wait: its gateway started, heartbeats answered, nothing accepted.
/// `Some(slot)`: activated for that slot. `None`: told to stop (drain, a stop signal, the master
/// gone); a standby has no connections to finish, so it stops at once.
async fn standby(
    channel: &mut Channel<ToMaster, ToWorker>,
    probe: &LagProbe,
    gateway: &Gateway,
    signals: &mut Signals,
    rabbit_lost: &mut watch::Receiver<bool>,
) -> Result<Option<usize>, WorkerError> {
    loop {
        tokio::select! {
            msg = channel.receiver.recv() => match msg? {
                Some(ToWorker::Activate { slot }) => return Ok(Some(slot)),
                Some(ToWorker::Heartbeat { seq }) => {
                    answer_heartbeat(channel, seq, gateway.clients(), probe).await?;
                }
                Some(ToWorker::LogLevel { level }) => set_log_level(level),
                Some(ToWorker::ResendInterval { ms }) => set_resend_interval(gateway, ms),
                Some(ToWorker::Push { id, .. }) => {
                    // The master hands pushes to serving workers only; say no rather than hang.
                    let error = Some("a standby worker does not push".to_string());
                    channel.sender.send(&ToMaster::Pushed { id, error }).await?;
                }
                Some(ToWorker::Init { .. }) => tracing::warn!("ignoring a second init from the master"),
                Some(ToWorker::Drain { .. }) => {
                    tracing::info!("standby: told to stop; exiting");
                    return Ok(None);
                }
                None => {
                    tracing::warn!("the master is gone; exiting");
                    return Ok(None);
                }
            },
            Some(signal) = signals.next() => match signal {
                SIGHUP => tracing::debug!("SIGHUP ignored: send it to the master"),
                _ => {
                    tracing::info!(signal, "standby: stop signal; exiting");
                    return Ok(None);
                }
            },
            _ = rabbit_lost.wait_for(|lost| *lost) => return Err(WorkerError::RabbitLost),
        }
    }
}

fn set_log_level(level: crate::config::LogLevel) {
    logging::set_level(level);
    tracing::info!(%level, "log level changed");
}

fn set_resend_interval(gateway: &Gateway, ms: u64) {
    gateway.set_resend_interval(ms);
    tracing::info!(ms, "client message resend interval changed");
}

async fn answer_heartbeat(
    channel: &mut Channel<ToMaster, ToWorker>,
    seq: u64,
    clients: u64,
    probe: &LagProbe,
) -> Result<(), WorkerError> {
    let report = report(clients, probe);
    channel
        .sender
        .send(&ToMaster::HeartbeatAck { seq, report })
        .await?;
    Ok(())
}

/// This process's heartbeat answer.
fn report(clients: u64, probe: &LagProbe) -> WorkerReport {
    let (heap_used, heap_total) = memory::heap();
    let rss = memory::rss_of(std::process::id()).unwrap_or(0);
    let rss = memory::trim_if_idle_heap(rss, heap_used).unwrap_or(rss);
    WorkerReport {
        rss,
        heap_used,
        heap_total,
        clients,
        loop_lag_us: probe.take_max_us(),
    }
}

/// Starts the gateway, trying RabbitMQ again while it refuses or drops the connection (a broker
/// being restarted), every [`RABBIT_RETRY_MIN`] doubling up to [`RABBIT_RETRY_MAX`]; the caller
/// bounds the whole by [`GATEWAY_START_TIMEOUT`]. Giving up at the first refusal instead made a
/// RabbitMQ outage a restart storm whose backoff then kept slots empty long after the broker
/// was back (up to `2^maxRestartBackoff * workerRestartDelay`, 51 s with the defaults).
async fn start_gateway(config: &Config, name: &str) -> Result<Gateway, GatewayError> {
    let mut delay = RABBIT_RETRY_MIN;
    let mut attempts = 0u32;
    loop {
        match Gateway::start(config, name).await {
            Err(e @ GatewayError::Rabbit { .. }) => {
                attempts += 1;
                let why = logging::error_chain(&e);
                let retry_ms = delay.as_millis() as u64;
                if attempts == 1 {
                    tracing::warn!(retry_ms, "{why}; trying again");
                } else {
                    tracing::debug!(retry_ms, attempts, "{why}; trying again");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RABBIT_RETRY_MAX);
            }
            other => return other,
        }
    }
}

/// Waits for the gateway to start (RabbitMQ connected) while answering the master's heartbeats,
/// so a worker waiting for its broker is not taken for a hung one; gives up after
/// [`GATEWAY_START_TIMEOUT`]. `None`: told to drain, or the master is gone, meanwhile.
async fn answering<T, E>(
    channel: &mut Channel<ToMaster, ToWorker>,
    probe: &LagProbe,
    start: impl Future<Output = Result<T, E>>,
) -> Result<Option<T>, WorkerError>
where
    WorkerError: From<E>,
{
    tokio::pin!(start);
    let deadline = tokio::time::sleep(GATEWAY_START_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            started = &mut start => return Ok(Some(started?)),
            () = &mut deadline => return Err(WorkerError::GatewayTimeout(GATEWAY_START_TIMEOUT)),
            msg = channel.receiver.recv() => match msg? {
                Some(ToWorker::Heartbeat { seq }) => answer_heartbeat(channel, seq, 0, probe).await?,
                Some(ToWorker::LogLevel { level }) => logging::set_level(level),
                Some(ToWorker::Drain { .. }) | None => return Ok(None),
                Some(_) => {}
            },
        }
    }
}
