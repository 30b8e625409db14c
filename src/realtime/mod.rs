//! Realtime delivery, Centrifugo-compatible (`realtime.*`): the relay's commands in the `EVENTS`
//! stream reach users' channels (`personal:#<user>`) on every worker, with history, recovery
//! and presence kept in Redis, so Centrifugo's own clients and tools work unchanged.
//!
//! # Layout
//! - [`jwt`]: connection tokens (HS256/384/512, Centrifugo's claim rules).
//! - [`protocol`]: the JSON commands, replies, pushes and codes of Centrifugo's client protocol.
//! - [`channel`]: namespaces and user-limited channels.
//! - [`engine`]: Redis: offsets, epochs, history, idempotency, presence, the fan-out.
//! - [`hub`]: this worker's subscribers per channel, each at its stream position.
//! - [`session`]: one client connection's protocol state machine (no I/O).
//! - `driver`, [`ws`], [`sse`]: run sessions over `/connection/websocket` and
//!   `/connection/uni_sse`.
//! - [`api`]: the server API `/api/*` (what PyPI `cent` calls).
//! - [`consumer`]: the JetStream durable pull consumer of the relay's commands.
//!
//! # For ActiveStack socket.io sessions
//! A logged-in user's sockets get the publications of `personal:#<user>` (the namespace is
//! `relay.messagesNamespace`) as the socket.io event [`SOCKETIO_EVENT`] (`realtime`) with the
//! payload [`PubMsg::socketio_payload`]:
//! `{"channel":"personal:#42","offset":8,"epoch":"aB3dE6gH","data":<the publication's data>}`
//! (`offset` and `epoch` are left out in a namespace without history). A socket that comes
//! back sends the last `{offset, epoch}` it saw; the gateway passes it to
//! [`Realtime::subscribe_user`] as `since` and emits the returned publications before any new
//! one. `recovered: false` means some were lost (too far behind, history expired, new epoch):
//! the application reloads its state.
//!
//! ```ignore
//! let sub = realtime.subscribe_user(&user_id, since, sink.clone()).await?;
//! for p in &sub.publications { socket.emit(SOCKETIO_EVENT, &p.socketio_payload(&sub.channel)) }
//! // ... new publications arrive through `sink` (a `Sink` the socket owns); on logout or
//! // disconnect:
//! realtime.unsubscribe(&sub.channel, sub.id);
//! ```
//! The [`Sink`] is called on the worker's event loop for each publication, in offset order,
//! and must not block (emit, or queue). One hub entry per socket and channel; no task per socket.

pub mod api;
pub mod channel;
pub mod consumer;
mod driver;
pub mod engine;
pub mod hub;
pub mod jwt;
pub mod protocol;
pub mod session;
pub mod sse;
pub mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;

use crate::config::{Config, RealtimeConfig};
use engine::{Engine, EngineError, Range};
use hub::{Hub, Merge};
pub use hub::{PubMsg, Sink, SubId};
pub use protocol::StreamPosition;
use session::{SubscribePlan, Subscribed};

/// The socket.io event that carries a personal publication to an ActiveStack socket.
pub const SOCKETIO_EVENT: &str = "realtime";

#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("realtime engine")]
    Engine(#[from] EngineError),
    #[error("publications came in with a gap while subscribing to {0}; subscribe again")]
    PositionLost(String),
    #[error("channel {0:?} is not in a configured namespace")]
    UnknownChannel(String),
}

/// What [`Realtime::subscribe_user`] gives.
#[derive(Debug)]
pub struct UserSubscription {
    /// `personal:#<user>`.
    pub channel: String,
    /// For [`Realtime::unsubscribe`].
    pub id: SubId,
    /// `true`: `publications` are every one after `since`, nothing missed. `false`: `since`
    /// was not given, or could not be recovered from; `publications` are only those after the
    /// current top.
    pub recovered: bool,
    /// To emit, in order, before any that come through the sink.
    pub publications: Vec<PubMsg>,
    /// The stream's position after `publications` (offset 0, epoch "" without history).
    pub position: StreamPosition,
}

impl PubMsg {
    /// The payload of the [`SOCKETIO_EVENT`] event: `{channel, offset, epoch, data}`.
    pub fn socketio_payload(&self, channel: &str) -> serde_json::Value {
        #[derive(serde::Deserialize)]
        struct Data {
            data: serde_json::Value,
        }
        let data = serde_json::from_str::<Data>(&self.json)
            .map(|d| d.data)
            .unwrap_or(serde_json::Value::Null);
        let mut payload = serde_json::json!({"channel": channel, "data": data});
        if self.offset > 0 {
            payload["offset"] = self.offset.into();
            payload["epoch"] = self.epoch.to_string().into();
        }
        payload
    }
}

/// The realtime side of one worker: started once per worker process (not in a standby until
/// it is activated).
#[derive(Clone)]
pub struct Realtime {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<RealtimeConfig>,
    /// `relay.messagesNamespace`: the namespace of personal channels.
    personal_namespace: String,
    engine: Engine,
    /// (channel, client id) -> ClientInfo JSON, refreshed in Redis every third of the TTL.
    presence: Mutex<HashMap<(String, String), String>>,
    /// Connected Centrifugo clients (websocket and SSE).
    clients: AtomicU64,
    node: Node,
    shutdown: watch::Sender<bool>,
}

/// This worker as the API's `info` shows it.
struct Node {
    uid: String,
    name: String,
    started: std::time::Instant,
}

impl Realtime {
    /// Sets the engine up (Redis is reached lazily) and starts the consumer and the presence
    /// refresher. `name` names this worker in the API's `info`.
    pub fn start(config: &Config, name: &str) -> Result<Realtime, RealtimeError> {
        let hub = Arc::new(Hub::default());
        let engine = Engine::new(&config.gateway.redis, hub)?;
        let realtime = Realtime {
            inner: Arc::new(Inner {
                config: Arc::new(config.realtime.clone()),
                personal_namespace: config.relay.messages_namespace.clone(),
                engine,
                presence: Mutex::new(HashMap::new()),
                clients: AtomicU64::new(0),
                node: Node {
                    uid: session::new_client_id(),
                    name: name.to_string(),
                    started: std::time::Instant::now(),
                },
                shutdown: watch::Sender::new(false),
            }),
        };
        tokio::spawn(realtime.clone().refresh_presence());
        tokio::spawn(consumer::run(realtime.clone()));
        let (engine, closing) = (realtime.inner.engine.clone(), realtime.closing());
        tokio::spawn(async move { engine.keep_pubsub(closing).await });
        tracing::info!(
            consumer = config.realtime.nats_consumer,
            stream = config.realtime.nats_stream,
            "realtime started"
        );
        Ok(realtime)
    }

    /// The routes: `/connection/websocket`, `/connection/uni_sse`, `/api`, `/api/{method}`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/connection/websocket", axum::routing::any(ws::handler))
            .route(
                "/connection/uni_sse",
                axum::routing::get(sse::handler_get).post(sse::handler_post),
            )
            .route("/api", axum::routing::post(api::legacy))
            .route("/api/{method}", axum::routing::post(api::handler))
            .with_state(self.clone())
    }

    pub fn config(&self) -> &Arc<RealtimeConfig> {
        &self.inner.config
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Connected Centrifugo clients on this worker.
    pub fn clients(&self) -> u64 {
        self.inner.clients.load(Ordering::Relaxed)
    }

    pub(crate) fn client_count(&self) -> &AtomicU64 {
        &self.inner.clients
    }

    /// Becomes `true` when [`Realtime::close`] is called.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Stops the consumer and closes every client with 3001 "shutdown".
    pub fn close(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Subscribes `sink` to the personal channel of `user_id`, recovering from `since`.
    pub async fn subscribe_user(
        &self,
        user_id: &str,
        since: Option<StreamPosition>,
        sink: Arc<dyn Sink>,
    ) -> Result<UserSubscription, RealtimeError> {
        let channel = channel::personal(&self.inner.personal_namespace, user_id);
        let ns = channel::namespace(&self.inner.config, &channel)
            .map_err(|_| RealtimeError::UnknownChannel(channel.clone()))?;
        let recoverable = ns.history() && ns.force_recovery;
        let plan = SubscribePlan {
            recover: since.filter(|_| recoverable),
            recoverable,
            presence: false,
            channel,
        };
        let s = self.subscribe(&plan, sink).await?;
        let mut publications = s.publications;
        publications.extend(s.then);
        let position = match publications.last() {
            Some(last) if last.offset > 0 => StreamPosition {
                offset: last.offset,
                epoch: s.epoch.clone(),
            },
            _ if recoverable => StreamPosition {
                offset: s.offset,
                epoch: s.epoch.clone(),
            },
            _ => StreamPosition::default(),
        };
        Ok(UserSubscription {
            channel: plan.channel,
            id: s.sub,
            recovered: s.recovered,
            publications,
            position,
        })
    }

    /// Ends a subscription (of a session or of [`Realtime::subscribe_user`]).
    pub fn unsubscribe(&self, channel: &str, id: SubId) {
        if self.inner.engine.hub().leave(channel, id) {
            let engine = self.inner.engine.clone();
            let channel = channel.to_string();
            tokio::spawn(async move {
                if let Err(e) = engine.unlisten(&channel).await {
                    tracing::debug!(channel, "realtime: cannot stop listening: {e}");
                }
            });
        }
    }

    /// Makes a subscription: joins the hub (pending), listens to the channel, reads the
    /// history the plan needs, and merges what came meanwhile. Recovery is Centrifugo's: every
    /// missed publication in order with `recovered`, or none with the current top.
    pub(crate) async fn subscribe(
        &self,
        plan: &SubscribePlan,
        sink: Arc<dyn Sink>,
    ) -> Result<Subscribed, RealtimeError> {
        let engine = &self.inner.engine;
        let (sub, _first) = engine.hub().join(&plan.channel, sink);
        let result = self.position(plan, sub).await;
        if result.is_err() {
            self.unsubscribe(&plan.channel, sub);
        }
        result
    }

    async fn position(
        &self,
        plan: &SubscribePlan,
        sub: SubId,
    ) -> Result<Subscribed, RealtimeError> {
        let engine = &self.inner.engine;
        engine.listen(&plan.channel).await?;
        if !plan.recoverable {
            let Merge::Live(then) = engine.hub().activate(&plan.channel, sub, None) else {
                return Err(RealtimeError::PositionLost(plan.channel.clone()));
            };
            return Ok(Subscribed {
                sub,
                recovered: false,
                publications: Vec::new(),
                then,
                offset: 0,
                epoch: String::new(),
            });
        }
        let (history, recovered, from) = match &plan.recover {
            Some(since) => {
                let history = engine
                    .history(
                        &plan.channel,
                        Range::After {
                            offset: since.offset,
                            limit: Some(engine::RECOVERY_LIMIT),
                        },
                    )
                    .await?;
                let recovered = recovered(since, &history);
                (history, recovered, since.offset)
            }
            None => {
                let history = engine.history(&plan.channel, Range::Top).await?;
                (history, false, 0)
            }
        };
        let top = history.offset;
        let merge = engine
            .hub()
            .activate(&plan.channel, sub, Some((top, &history.epoch)));
        let Merge::Live(then) = merge else {
            return Err(RealtimeError::PositionLost(plan.channel.clone()));
        };
        Ok(if recovered {
            let mut publications = history.publications;
            publications.extend(then);
            Subscribed {
                sub,
                recovered: true,
                publications,
                then: Vec::new(),
                offset: from,
                epoch: history.epoch,
            }
        } else {
            Subscribed {
                sub,
                recovered: false,
                publications: Vec::new(),
                then,
                offset: top,
                epoch: history.epoch,
            }
        })
    }

    /// Keeps a presence entry (in Redis at once, then refreshed until removed).
    pub(crate) async fn presence_add(&self, channel: &str, client: &str, info: String) {
        let entry = (channel.to_string(), client.to_string(), info.clone());
        self.inner
            .presence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((entry.0.clone(), entry.1.clone()), info);
        if let Err(e) = self
            .inner
            .engine
            .presence_add(&[entry], self.inner.config.presence_ttl)
            .await
        {
            tracing::warn!(
                channel,
                "realtime: cannot add presence (refreshed later): {e}"
            );
        }
    }

    pub(crate) async fn presence_remove(&self, channel: &str, client: &str) {
        self.inner
            .presence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(channel.to_string(), client.to_string()));
        if let Err(e) = self.inner.engine.presence_remove(channel, client).await {
            tracing::warn!(
                channel,
                "realtime: cannot remove presence (it expires): {e}"
            );
        }
    }

    /// This worker's node entry for `info`.
    pub(crate) fn node_json(&self) -> String {
        let (channels, subs) = self.inner.engine.hub().counts();
        let users: std::collections::HashSet<String> = self
            .inner
            .presence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|info| {
                serde_json::from_str::<protocol::ClientInfo>(info)
                    .ok()
                    .map(|i| i.user)
            })
            .collect();
        serde_json::json!({
            "uid": self.inner.node.uid,
            "name": self.inner.node.name,
            "version": protocol::VERSION,
            "num_clients": self.clients(),
            "num_users": users.len(),
            "num_channels": channels,
            "num_subs": subs,
            "uptime": self.inner.node.started.elapsed().as_secs(),
        })
        .to_string()
    }

    /// Every third of the presence TTL: refreshes this worker's presence entries and node
    /// entry, so they outlive it by at most the TTL.
    async fn refresh_presence(self) {
        let ttl = self.inner.config.presence_ttl;
        let every = (ttl / 3).max(Duration::from_millis(100));
        let mut closing = self.closing();
        loop {
            let entries: Vec<(String, String, String)> = self
                .inner
                .presence
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|((ch, client), info)| (ch.clone(), client.clone(), info.clone()))
                .collect();
            for chunk in entries.chunks(1000) {
                if let Err(e) = self.inner.engine.presence_add(chunk, ttl).await {
                    tracing::warn!("realtime: cannot refresh presence: {e}");
                    break;
                }
            }
            let node = self.node_json();
            if let Err(e) = self
                .inner
                .engine
                .node_alive(&self.inner.node.uid, &node, ttl)
                .await
            {
                tracing::debug!("realtime: cannot refresh the node entry: {e}");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = closed(&mut closing) => break,
            }
        }
        let _ = self.inner.engine.node_gone(&self.inner.node.uid).await;
    }
}

/// Resolves once `closing` is `true` (or its sender is gone).
pub(crate) async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

/// Centrifugo's recovery rule (centrifugal/centrifuge `client.go` `isRecovered`): with no
/// publications after `since`, recovered iff it is the top of the same epoch; with some,
/// iff they start right after it, reach the top, and the epoch is the same.
fn recovered(since: &StreamPosition, history: &engine::History) -> bool {
    match (history.publications.first(), history.publications.last()) {
        (None, _) | (_, None) => {
            history.offset == since.offset
                && (since.epoch.is_empty() || since.epoch == history.epoch)
        }
        (Some(first), Some(last)) => {
            first.offset == since.offset + 1
                && last.offset == history.offset
                && since.epoch == history.epoch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(offsets: std::ops::Range<u64>, top: u64) -> engine::History {
        engine::History {
            publications: offsets
                .map(|o| PubMsg::from_redis("e", &format!("{{\"offset\":{o},\"data\":1}}")))
                .collect(),
            offset: top,
            epoch: "e".into(),
        }
    }

    fn at(offset: u64, epoch: &str) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn recovery_is_all_or_nothing() {
        assert!(recovered(&at(5, "e"), &history(6..10, 9)));
        assert!(recovered(&at(9, "e"), &history(0..0, 9)), "nothing missed");
        assert!(!recovered(&at(5, "x"), &history(6..10, 9)), "another epoch");
        assert!(!recovered(&at(3, "e"), &history(6..10, 9)), "trimmed");
        assert!(!recovered(&at(5, "e"), &history(6..9, 9)), "capped");
        assert!(!recovered(&at(5, "e"), &history(0..0, 9)), "expired");
    }

    #[test]
    fn the_socketio_payload_has_channel_offset_epoch_and_data() {
        let p = PubMsg::from_redis("ep", r#"{"offset":8,"data":{"n":8}}"#);
        assert_eq!(
            p.socketio_payload("personal:#42"),
            serde_json::json!({"channel":"personal:#42","offset":8,"epoch":"ep","data":{"n":8}})
        );
    }
}
