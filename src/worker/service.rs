//! What a worker runs: the gateway (socket.io <-> RabbitMQ, with its HTTP server and accept
//! thread), the relay or the demo agent. The worker's loop ([`super::run`]) drives either through the same few
//! calls; every call into the gateway's API is in this file.

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::WorkerError;
use super::acceptor::Acceptor;
use super::http::{HttpServer, Identity};
use super::scrapes::MetricsAsk;
use crate::backoff::Backoff;
use crate::config::Config;
use crate::demo::{self, DemoPage};
use crate::gateway::{Audience, Gateway, GatewayError};
use crate::logging;
use crate::metrics::{self, Broker, Count, RelayGauges, WorkerMetrics};
use crate::realtime::Realtime;
use crate::relay::{self, RelayStats};

/// How long a worker may take to connect to RabbitMQ before it gives up (and is replaced).
const GATEWAY_START_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between RabbitMQ connection attempts while the gateway starts.
const RABBIT_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));

/// Something that happened in the service that the worker's loop acts on.
#[derive(Debug)]
pub enum Event {
    /// The gateway has started (RabbitMQ connected), or could not.
    Started(Result<(), WorkerError>),
    /// Every connection and client has gone after a drain.
    Drained,
    RabbitLost,
    /// The outcome of a push: `None` once it is published.
    Pushed {
        id: u64,
        error: Option<String>,
    },
    /// The relay or the demo agent has stopped.
    Finished(Result<(), WorkerError>),
}

pub enum Service {
    Gateway(Box<GatewayService>),
    Relay(RelayService),
    Demo(DemoService),
}

impl Service {
    /// The next thing that happens in the service. Cancel-safe: it may lose a `select!` and be
    /// asked again.
    pub async fn next(&mut self) -> Event {
        match self {
            Service::Gateway(g) => g.next().await,
            Service::Relay(r) => r.next().await,
            Service::Demo(d) => d.next().await,
        }
    }

    /// What the service counted, for heartbeat answers.
    pub fn metrics(&self) -> WorkerMetrics {
        match self {
            Service::Gateway(g) => {
                metrics::local::snapshot(g.realtime.as_ref().map_or(0, Realtime::clients))
            }
            Service::Relay(r) => r.metrics(),
            Service::Demo(_) => WorkerMetrics::default(),
        }
    }

    /// Open connections and clients, for heartbeat answers.
    pub fn clients(&self) -> u64 {
        match self {
            Service::Gateway(g) => g.clients(),
            Service::Relay(_) | Service::Demo(_) => 0,
        }
    }

    /// Stops taking new work, for at most `timeout`; how many connections are still open.
    pub fn drain(&mut self, timeout: Duration) -> u64 {
        match self {
            Service::Gateway(g) => g.drain(timeout),
            Service::Relay(r) => {
                r.drain();
                0
            }
            Service::Demo(d) => {
                d.drain();
                0
            }
        }
    }

    pub fn set_resend_interval(&self, ms: u64) {
        if let Service::Gateway(g) = self {
            g.set_resend_interval(ms);
        }
    }

    /// Hands a console push on; its outcome comes back as [`Event::Pushed`]. `Err`: this
    /// service does not push.
    pub fn push(
        &mut self,
        id: u64,
        audience: Audience,
        data: serde_json::Value,
    ) -> Result<(), &'static str> {
        match self {
            Service::Gateway(g) => g.push(id, audience, data),
            Service::Relay(_) => Err("the relay does not push"),
            Service::Demo(_) => Err("the demo agent does not push"),
        }
    }

    /// Starts accepting as the worker of gateway slot `slot` (a started gateway only).
    pub fn serve(&mut self, slot: usize) -> Result<(), WorkerError> {
        match self {
            Service::Gateway(g) => g.serve(slot),
            Service::Relay(_) | Service::Demo(_) => Err(WorkerError::NotStarted),
        }
    }

    /// Closes what is still open (the gateway's RabbitMQ and Redis connections).
    pub async fn close(self) {
        if let Service::Gateway(g) = self {
            g.close().await;
        }
    }
}

/// Where the gateway is.
enum Stage {
    Starting(Pin<Box<dyn Future<Output = Result<Gateway, WorkerError>>>>),
    Up {
        gateway: Gateway,
        rabbit_lost: watch::Receiver<bool>,
    },
    /// Its start failed; the process ends next.
    Failed,
}

/// The HTTP side of a serving gateway worker.
struct Serving {
    /// `None` once every accepted connection is being closed.
    server: Option<HttpServer>,
    acceptor: Acceptor,
    /// Accepted connections; `None` once the accept thread has stopped.
    conns: Option<mpsc::Receiver<TcpStream>>,
    /// The connections and clients going away, after a drain.
    closing: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

pub struct GatewayService {
    stage: Stage,
    /// The listen socket, until the worker accepts on it.
    listener: Option<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// `frontend.headerTimeout`.
    header_timeout: Duration,
    /// With `realtime.enabled`: the config realtime starts from once the worker serves (a
    /// standby neither consumes the EVENTS stream nor serves realtime clients).
    realtime_config: Option<Box<Config>>,
    realtime: Option<Realtime>,
    /// With `demo.enabled`: the page served at `/demo`.
    demo_page: Option<DemoPage>,
    generation: u64,
    serving: Option<Serving>,
    /// Scrapes of `/metrics`, for the worker's loop to pass on to the master.
    metrics: mpsc::Sender<MetricsAsk>,
    /// Outcomes of console pushes.
    pushed_tx: mpsc::UnboundedSender<(u64, Option<String>)>,
    pushed_rx: mpsc::UnboundedReceiver<(u64, Option<String>)>,
}

impl GatewayService {
    /// Starts connecting the gateway for `config`; [`Event::Started`] says when it is done.
    pub fn start(
        config: Config,
        name: String,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        generation: u64,
        metrics: mpsc::Sender<MetricsAsk>,
    ) -> GatewayService {
        let header_timeout = config.frontend.header_timeout;
        let realtime_config = config.realtime.enabled.then(|| Box::new(config.clone()));
        let demo_page = config.demo.enabled.then(|| DemoPage::new(&config));
        let start = async move {
            let start = start_gateway(&config, &name);
            match tokio::time::timeout(GATEWAY_START_TIMEOUT, start).await {
                Ok(started) => started.map_err(WorkerError::from),
                Err(_) => Err(WorkerError::GatewayTimeout(GATEWAY_START_TIMEOUT)),
            }
        };
        let (pushed_tx, pushed_rx) = mpsc::unbounded_channel();
        GatewayService {
            stage: Stage::Starting(Box::pin(start)),
            listener: Some(listener),
            tls,
            header_timeout,
            realtime_config,
            realtime: None,
            demo_page,
            generation,
            serving: None,
            metrics,
            pushed_tx,
            pushed_rx,
        }
    }

    fn gateway(&self) -> Option<&Gateway> {
        match &self.stage {
            Stage::Up { gateway, .. } => Some(gateway),
            Stage::Starting(_) | Stage::Failed => None,
        }
    }

    fn serve(&mut self, slot: usize) -> Result<(), WorkerError> {
        let gateway = self.gateway().ok_or(WorkerError::NotStarted)?;
        let identity = Identity {
            worker: slot,
            pid: std::process::id(),
            generation: self.generation,
        };
        let mut server = HttpServer::new(
            identity,
            self.tls.clone(),
            self.header_timeout,
            self.metrics.clone(),
        );
        server.mount(gateway.handshakes());
        if let Some(config) = &self.realtime_config {
            let name = format!("worker{slot}_{}", std::process::id());
            let realtime = Realtime::start(config, &name)?;
            server.merge(realtime.router());
            gateway.attach_realtime(realtime.clone());
            self.realtime = Some(realtime);
        }
        if let Some(page) = &self.demo_page {
            server.merge(page.router());
        }
        let listener = self.listener.take().ok_or(WorkerError::NotStarted)?;
        let (acceptor, conns) = Acceptor::start(listener).map_err(WorkerError::Accept)?;
        self.serving = Some(Serving {
            server: Some(server),
            acceptor,
            conns: Some(conns),
            closing: None,
        });
        Ok(())
    }

    async fn next(&mut self) -> Event {
        let GatewayService {
            stage,
            serving,
            pushed_rx,
            ..
        } = self;
        let (gateway, rabbit_lost) = match stage {
            Stage::Starting(start) => {
                let started = start.as_mut().await;
                return Event::Started(match started {
                    Ok(gateway) => {
                        let rabbit_lost = gateway.rabbit_lost();
                        *stage = Stage::Up {
                            gateway,
                            rabbit_lost,
                        };
                        Ok(())
                    }
                    Err(e) => {
                        *stage = Stage::Failed;
                        Err(e)
                    }
                });
            }
            Stage::Failed => return std::future::pending().await,
            Stage::Up {
                gateway,
                rabbit_lost,
            } => (&*gateway, rabbit_lost),
        };
        loop {
            let (conns, closing) = match serving.as_mut() {
                Some(s) => (s.conns.as_mut(), s.closing.as_mut()),
                None => (None, None),
            };
            tokio::select! {
                conn = maybe(conns.map(|c| c.recv())) => match (conn, serving.as_mut()) {
                    (Some(stream), Some(Serving { server: Some(server), .. })) => server.serve(stream),
                    (_, Some(s)) => {
                        // The accept thread has stopped: every accepted connection is being
                        // served. Then wait for them, and for the socket.io clients, to go.
                        s.conns = None;
                        if let Some(server) = s.server.take() {
                            let idle = gateway.idle();
                            s.closing = Some(Box::pin(async move {
                                server.close_all().await;
                                idle.await;
                            }));
                        }
                    }
                    (_, None) => {}
                },
                () = maybe(closing) => return Event::Drained,
                _ = rabbit_lost.wait_for(|lost| *lost) => return Event::RabbitLost,
                Some((id, error)) = pushed_rx.recv() => return Event::Pushed { id, error },
            }
        }
    }

    fn clients(&self) -> u64 {
        let http = self
            .serving
            .as_ref()
            .and_then(|s| s.server.as_ref())
            .map_or(0, HttpServer::clients);
        http + self.gateway().map_or(0, Gateway::clients)
            + self.realtime.as_ref().map_or(0, Realtime::clients)
    }

    /// Stops accepting; HTTP connections finish their requests, the gateway closes its
    /// clients' connections (they reconnect to other workers).
    fn drain(&mut self, timeout: Duration) -> u64 {
        let Some(serving) = &self.serving else {
            return 0;
        };
        tracing::info!(
            timeout_ms = timeout.as_millis() as u64,
            "draining: no new connections"
        );
        serving.acceptor.stop();
        if let Some(gateway) = self.gateway() {
            gateway.drain();
        }
        if let Some(realtime) = &self.realtime {
            realtime.close(); // its clients get 3001 "shutdown" and reconnect elsewhere
        }
        self.clients()
    }

    fn set_resend_interval(&self, ms: u64) {
        if let Some(gateway) = self.gateway() {
            gateway.set_resend_interval(ms);
            tracing::info!(ms, "client message resend interval changed");
        }
    }

    fn push(
        &mut self,
        id: u64,
        audience: Audience,
        data: serde_json::Value,
    ) -> Result<(), &'static str> {
        let gateway = self.gateway().ok_or("the gateway has not started")?;
        let push = gateway.push(audience, data);
        let pushed = self.pushed_tx.clone();
        tokio::spawn(async move {
            let _ = pushed.send((id, push.await.err()));
        });
        Ok(())
    }

    async fn close(self) {
        if let Some(realtime) = &self.realtime {
            realtime.close();
        }
        if let Stage::Up { gateway, .. } = self.stage {
            gateway.close().await;
        }
    }
}

/// `future`'s output, or never if there is none.
async fn maybe<F: Future>(future: Option<F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Starts the gateway, trying RabbitMQ again while it refuses or drops the connection (a broker
/// being restarted), with a pause doubling from 100 ms up to 1 s; the caller bounds the whole by
/// [`GATEWAY_START_TIMEOUT`]. Giving up at the first refusal instead made a RabbitMQ outage a
/// restart storm whose backoff then kept slots empty long after the broker was back (up to
/// `2^maxRestartBackoff * workerRestartDelay`, 51 s with the defaults).
async fn start_gateway(config: &Config, name: &str) -> Result<Gateway, GatewayError> {
    let mut retry = RABBIT_RETRY;
    let mut attempts = 0u32;
    metrics::local::broker_connected(Broker::RabbitMq, false);
    loop {
        match Gateway::start(config, name).await {
            Err(e @ GatewayError::Rabbit { .. }) => {
                attempts += 1;
                let why = logging::error_chain(&e);
                let delay = retry.next_delay();
                let retry_ms = delay.as_millis() as u64;
                if attempts == 1 {
                    tracing::warn!(retry_ms, "{why}; trying again");
                } else {
                    tracing::debug!(retry_ms, attempts, "{why}; trying again");
                }
                tokio::time::sleep(delay).await;
            }
            other => {
                metrics::local::broker_connected(Broker::RabbitMq, other.is_ok());
                return other;
            }
        }
    }
}

/// The outbox relay as a supervised process's work.
pub struct RelayService {
    task: Task<Result<(), relay::RelayError>>,
    stats: Arc<RelayStats>,
}

impl RelayService {
    pub fn start(config: &Config) -> RelayService {
        let stats = Arc::new(RelayStats::default());
        let (settings, counted) = (config.relay.clone(), stats.clone());
        let task = Task::spawn(|shutdown| relay::run_with_stats(settings, counted, shutdown));
        RelayService { task, stats }
    }

    async fn next(&mut self) -> Event {
        Event::Finished(match self.task.outcome().await {
            Ok(result) => result.map_err(WorkerError::from),
            Err(e) => Err(WorkerError::RelayTask(e)),
        })
    }

    /// The relay's counters and gauges.
    fn metrics(&self) -> WorkerMetrics {
        let stats = self.stats.snapshot();
        let mut metrics = metrics::local::snapshot(0);
        let counts = &mut metrics.counts;
        counts.set(Count::RelayPublished, stats.published);
        counts.set(Count::RelayDuplicates, stats.duplicates);
        counts.set(Count::RelayDeadLetters, stats.dead_lettered);
        counts.set(Count::RelayRestarts, stats.restarts);
        metrics.relay = Some(RelayGauges {
            in_flight: stats.in_flight,
            lag_ms: stats.lag_ms,
            watching: stats.watching,
        });
        metrics
    }

    fn drain(&self) {
        tracing::info!("stopping: finishing in-flight publishes, saving the checkpoint");
        self.task.stop();
    }
}

/// A service's one task (the relay's, the demo agent's), told to stop through a watch channel.
struct Task<T> {
    handle: JoinHandle<T>,
    stop: watch::Sender<bool>,
    /// The outcome was given: asking again waits forever (the worker's loop asks in a
    /// `select!` until it acts on the outcome).
    finished: bool,
}

impl<T: Send + 'static> Task<T> {
    fn spawn<F>(run: impl FnOnce(watch::Receiver<bool>) -> F) -> Task<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (stop, shutdown) = watch::channel(false);
        Task {
            handle: tokio::spawn(run(shutdown)),
            stop,
            finished: false,
        }
    }

    /// The task's outcome, once; cancel-safe.
    async fn outcome(&mut self) -> Result<T, tokio::task::JoinError> {
        if self.finished {
            return std::future::pending().await;
        }
        let outcome = (&mut self.handle).await;
        self.finished = true;
        outcome
    }

    fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// The demo agent as a supervised process's work ([`crate::demo`]).
pub struct DemoService {
    task: Task<()>,
}

impl DemoService {
    pub fn start(config: &Config) -> DemoService {
        let config = config.clone();
        DemoService {
            task: Task::spawn(|shutdown| demo::agent::run(config, shutdown)),
        }
    }

    async fn next(&mut self) -> Event {
        Event::Finished(self.task.outcome().await.map_err(WorkerError::DemoTask))
    }

    fn drain(&self) {
        tracing::info!("stopping: no more requests taken, unanswered ones go back to RabbitMQ");
        self.task.stop();
    }
}
