//! The ActiveStack gateway inside a worker: every client connection <-> the backend's agent
//! queues on RabbitMQ.
//!
//! - [`client`]: one ActiveStack client's logic (session, client queue, unacked pushes, login
//!   rules, disposal), whatever carries its events; [`session`] its signed reconnect key,
//!   [`events`] the event and queue names, [`forwarded`] the client-queue messages it only
//!   passes on.
//! - [`framing`]: the ways its events travel: socket.io v4/v5 over engine.io, socket.io 0.9.
//! - [`connection`]: one task per connection, driving a framing and a client over a websocket.
//! - [`handshake`]: the HTTP side: websocket upgrades for each framing, the socket.io 0.9
//!   handshake.
//! - [`rabbit`]: the worker's RabbitMQ connection; [`fanout`]: pushes across workers (Redis).
//! - [`wire`]: the protocols' codecs (no I/O).
//!
//! Transports are websocket only, as the Node gateway's: HTTP long-polling would need sticky
//! sessions across the workers that share the listen socket.

pub mod client;
pub mod connection;
pub mod events;
pub mod fanout;
pub mod forwarded;
pub mod framing;
pub mod handshake;
pub mod limits;
pub mod personal;
pub mod rabbit;
pub mod session;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, watch};

use crate::config::{Config, SocketIoConfig};
use fanout::{Fanout, Registry};
use rabbit::{Rabbit, RabbitError};

/// The `maxPayload` an engine.io open packet advertises (clients do not send more per
/// message than this; the server's real limit is `frontend.maxMessageSize`).
pub const MAX_PAYLOAD_ADVERTISED: u64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "frontend.session_secret is empty: workers need the secret that signs reconnect keys (the master passes one)"
    )]
    NoSessionSecret,
    #[error("cannot connect to RabbitMQ at {host}:{port}")]
    Rabbit {
        host: String,
        port: u16,
        #[source]
        source: RabbitError,
    },
    #[error("cannot set up the Redis push channel")]
    Fanout(#[source] crate::console::ChannelError),
}

/// Where a push from the console goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Audience {
    /// Every client of the cluster.
    All,
    /// Every socket of one logged-in user, on any worker.
    User(String),
}

/// What every connection of this worker shares.
pub struct Shared {
    rabbit: Arc<Rabbit>,
    secret: Vec<u8>,
    resend_interval_ms: AtomicU64,
    /// Connections running.
    clients: AtomicU64,
    /// Notified whenever a connection ends.
    left: Notify,
    registry: Arc<Registry>,
    /// Flipped to `true` when the worker drains: every connection closes.
    draining: watch::Sender<bool>,
    /// `frontend.maxMessageSize`: the longest websocket message a client may send.
    max_message: usize,
    /// Per-client limits.
    limits: client::Limits,
    /// `gateway.rabbitmq.maxQueueDeclaresPerSecond`, for the whole worker.
    declares: Arc<limits::SharedRate>,
    socketio: SocketIoConfig,
    /// The worker's realtime side, once it serves (`realtime.enabled`): logged-in sockets get
    /// their user's publications.
    realtime: std::sync::OnceLock<crate::realtime::Realtime>,
}

impl Shared {
    fn resend_interval(&self) -> Duration {
        Duration::from_millis(self.resend_interval_ms.load(Ordering::Relaxed).max(1))
    }
}

pub struct Gateway {
    shared: Arc<Shared>,
    fanout: Fanout,
}

impl Gateway {
    /// Connects to RabbitMQ and starts listening for pushes. Clients are served once
    /// [`Gateway::handshakes`] is mounted.
    pub async fn start(config: &Config, name: &str) -> Result<Gateway, GatewayError> {
        let secret = match config.frontend.session_secret.as_deref() {
            Some(s) if !s.is_empty() => s.as_bytes().to_vec(),
            _ => return Err(GatewayError::NoSessionSecret),
        };
        let rabbit_config = &config.gateway.rabbitmq;
        let rabbit = Rabbit::connect(rabbit_config, name)
            .await
            .map_err(|source| GatewayError::Rabbit {
                host: rabbit_config.host.clone(),
                port: rabbit_config.port,
                source,
            })?;
        let registry = Arc::new(Registry::default());
        let fanout =
            Fanout::start(&config.gateway.redis, registry.clone()).map_err(GatewayError::Fanout)?;
        let shared = Arc::new(Shared {
            rabbit: Arc::new(rabbit),
            secret,
            resend_interval_ms: AtomicU64::new(
                config.frontend.client_message_resend_interval.as_millis() as u64,
            ),
            clients: AtomicU64::new(0),
            left: Notify::new(),
            registry,
            draining: watch::Sender::new(false),
            max_message: config.frontend.max_message_size,
            limits: client::Limits {
                requests_per_second: config.frontend.max_requests_per_second,
            },
            declares: Arc::new(limits::SharedRate::new(
                config.gateway.rabbitmq.max_queue_declares_per_second,
            )),
            socketio: config.gateway.socketio.clone(),
            realtime: std::sync::OnceLock::new(),
        });
        Ok(Gateway { shared, fanout })
    }

    /// The HTTP side, for the worker's server: it answers `/socket.io/`.
    pub fn handshakes(&self) -> handshake::Handshakes {
        handshake::Handshakes::new(self.shared.clone())
    }

    /// Emits `push` with `data` to `audience` on every worker (through Redis).
    pub fn push(
        &self,
        audience: Audience,
        data: Value,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let push = self.fanout.push(audience, data);
        async move { push.await.map_err(|e| crate::logging::error_chain(&e)) }
    }

    /// Gives logged-in sockets (connected from now on) their user's realtime publications.
    pub fn attach_realtime(&self, realtime: crate::realtime::Realtime) {
        if self.shared.realtime.set(realtime).is_err() {
            tracing::warn!("realtime attached to the gateway twice; the first one is kept");
        }
    }

    /// Connected clients.
    pub fn clients(&self) -> u64 {
        self.shared.clients.load(Ordering::Relaxed)
    }

    /// `frontend.clientMessageResendInterval` at run time.
    pub fn set_resend_interval(&self, ms: u64) {
        self.shared
            .resend_interval_ms
            .store(ms.max(1), Ordering::Relaxed);
    }

    /// Closes every connection (a transport close, so that clients reconnect by themselves to
    /// another worker): each tells the backend its client is gone and gives its unacked pushes
    /// back first.
    pub fn drain(&self) {
        self.shared.draining.send_replace(true);
    }

    /// Resolves once no client is connected.
    pub fn idle(&self) -> impl Future<Output = ()> + 'static {
        let shared = self.shared.clone();
        async move {
            loop {
                let left = shared.left.notified();
                if shared.clients.load(Ordering::Relaxed) == 0 {
                    return;
                }
                left.await;
            }
        }
    }

    /// Becomes `true` when the RabbitMQ connection has failed.
    pub fn rabbit_lost(&self) -> watch::Receiver<bool> {
        self.shared.rabbit.lost()
    }

    /// Drains what is left (bounded by the connections' linger) and closes RabbitMQ.
    pub async fn close(&self) {
        self.drain();
        let bound = connection::LINGER + Duration::from_secs(1);
        if tokio::time::timeout(bound, self.idle()).await.is_err() {
            tracing::warn!(
                clients = self.clients(),
                "closing RabbitMQ with connections still finishing"
            );
        }
        self.shared.rabbit.close(Duration::from_secs(2)).await;
    }
}
