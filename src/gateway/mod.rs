//! The socket.io <-> RabbitMQ gateway inside a worker.
//!
//! socket.io (protocols v5 and v4) is served at `/socket.io/` on the worker's router, websocket
//! transport only: HTTP long-polling would need sticky sessions across the workers that share the
//! listen socket. Each socket is a [`client::Client`] with a signed [`session::Session`]; requests
//! go to agent queues on the default exchange, answers come back on the client's own queue and
//! are pushed to the socket, re-sent until the client acks them.

pub mod adapter;
pub mod client;
pub mod events;
pub mod rabbit;
pub mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use socketioxide::extract::{Event, TryData};
use socketioxide::{SocketIo, TransportType};
use tokio::sync::watch;

use crate::config::Config;
use adapter::{Adapter, SocketRef};
use client::Client;
use rabbit::{Rabbit, RabbitError};

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
    #[error("cannot set up the socket.io Redis adapter")]
    Adapter(#[source] crate::console::ChannelError),
    #[error("the socket.io Redis adapter did not start: {0}")]
    AdapterInit(String),
}

/// Each websocket's read buffer, allocated up front and kept for the socket's life. Client
/// messages are small; a larger one grows the buffer to its size and takes more reads of this
/// size. The default (4 KiB) was an eighth of an idle client's memory.
const WS_READ_BUFFER: usize = 1024;

/// A socket.io layer of this gateway (its rooms span the cluster through Redis).
pub type SocketIoLayer = socketioxide::layer::SocketIoLayer<Adapter>;

/// Where a push from the console goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Audience {
    /// Every client of the cluster.
    All,
    /// Every socket of one logged-in user, on any worker.
    User(String),
}

/// What every client of this worker shares.
pub struct Shared {
    rabbit: Rabbit,
    secret: Vec<u8>,
    resend_interval_ms: AtomicU64,
    clients: AtomicU64,
    /// Notified whenever a client leaves.
    left: tokio::sync::Notify,
}

pub struct Gateway {
    io: SocketIo<Adapter>,
    layer: SocketIoLayer,
    shared: Arc<Shared>,
}

impl Gateway {
    /// Connects to RabbitMQ and sets socket.io up. Clients are served once the layer is mounted.
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
        let shared = Arc::new(Shared {
            rabbit,
            secret,
            resend_interval_ms: AtomicU64::new(
                config.frontend.client_message_resend_interval.as_millis() as u64,
            ),
            clients: AtomicU64::new(0),
            left: tokio::sync::Notify::new(),
        });
        let socketio = &config.gateway.socketio;
        let adapter = adapter::constructor(&config.gateway.redis).map_err(GatewayError::Adapter)?;
        let (layer, io) = SocketIo::builder()
            .ping_interval(socketio.interval)
            .ping_timeout(socketio.timeout)
            .transports([TransportType::Websocket])
            .ws_read_buffer_size(WS_READ_BUFFER)
            .with_adapter::<Adapter>(adapter)
            .build_layer();
        let ns_shared = shared.clone();
        io.ns("/", async move |socket: SocketRef| {
            on_connection(socket, ns_shared.clone());
        })
        .await
        .map_err(|e| GatewayError::AdapterInit(e.to_string()))?;
        Ok(Gateway { io, layer, shared })
    }

    /// The tower layer to mount on the worker's router (it answers `/socket.io/`).
    pub fn layer(&self) -> SocketIoLayer {
        self.layer.clone()
    }

    /// Emits `push` with `data` to `audience` on every worker (through the Redis adapter).
    pub fn push(
        &self,
        audience: Audience,
        data: Value,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let io = self.io.clone();
        async move {
            let sent = match audience {
                Audience::All => io.emit(events::PUSH, &data).await,
                Audience::User(user) => {
                    io.to(adapter::user_room(&user))
                        .emit(events::PUSH, &data)
                        .await
                }
            };
            sent.map_err(|e| e.to_string())
        }
    }

    /// Connected socket.io clients.
    pub fn clients(&self) -> u64 {
        self.shared.clients.load(Ordering::Relaxed)
    }

    /// `frontend.clientMessageResendInterval` at run time.
    pub fn set_resend_interval(&self, ms: u64) {
        self.shared
            .resend_interval_ms
            .store(ms.max(1), Ordering::Relaxed);
    }

    /// Resolves once no socket.io client is connected (a drain waits for it).
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

    /// Disconnects every client (their unacked pushes go back to RabbitMQ) and closes RabbitMQ.
    pub async fn close(&self) {
        // Local only: through the Redis adapter a plain `disconnect` would reach every worker.
        if let Err(e) = self.io.local().disconnect().await {
            tracing::debug!("disconnecting the socket.io clients: {e}");
        }
        self.shared.rabbit.close().await;
    }
}

fn on_connection(socket: SocketRef, shared: Arc<Shared>) {
    shared.clients.fetch_add(1, Ordering::Relaxed);
    let client = Client::new(socket.clone(), shared.clone());
    tracing::debug!(sid = %socket.id, protocol = ?socket.protocol(), "socket.io client connected");

    // The client holds its socket, and the socket its handlers: handlers holding the client
    // would make a cycle that outlives the connection (socket.io drops only the disconnect
    // handler when a socket closes). So the event handlers hold it weakly, and only the
    // disconnect handler, dropped once it has run, holds it strongly.
    let c = Arc::downgrade(&client);
    socket.on("message", async move |TryData(data): TryData<Value>| {
        let Some(c) = c.upgrade() else { return };
        match data {
            Ok(data) => c.on_message(data).await,
            Err(e) => tracing::warn!("unreadable message event: {e}"),
        }
    });
    let c = Arc::downgrade(&client);
    socket.on_fallback(
        async move |Event(event): Event, TryData(data): TryData<Value>| {
            let Some(c) = c.upgrade() else { return };
            c.on_request(&event, data.ok()).await;
        },
    );
    let c = client;
    socket.on_disconnect(async move |socket: SocketRef| {
        tracing::debug!(sid = %socket.id, "socket.io client disconnected");
        c.dispose("disconnected").await;
        shared.clients.fetch_sub(1, Ordering::Relaxed);
        shared.left.notify_waiters();
    });
}
