//! What websocket and SSE connections share: running a [`Session`]'s steps against the engine,
//! and the connection's [`Sink`] (a bounded queue to the connection's task).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::Realtime;
use super::hub::{PubMsg, Sink};
use super::protocol::{self, Disconnect};
use super::session::{Session, Step, SubscribePlan};
use crate::metrics::{Count, Protocol, local};

/// Publications queued for one connection before it counts as slow (closed with 3008).
const QUEUE: usize = 1024;

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the hub hands a connection's task.
pub enum Delivery {
    Publication(String, PubMsg),
    PositionLost(String),
}

/// The hub's side of a connection's queue.
pub struct ConnSink {
    tx: mpsc::Sender<Delivery>,
    /// Notified when the queue is full: the client does not read fast enough.
    slow: Arc<Notify>,
}

impl Sink for ConnSink {
    fn publication(&self, channel: &str, publication: &PubMsg) {
        let delivery = Delivery::Publication(channel.to_string(), publication.clone());
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(delivery) {
            self.slow.notify_one();
        }
    }

    fn position_lost(&self, channel: &str) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self
            .tx
            .try_send(Delivery::PositionLost(channel.to_string()))
        {
            self.slow.notify_one();
        }
    }
}

/// One connection's session, its sink and its queue.
pub struct Conn {
    pub realtime: Realtime,
    pub session: Session,
    pub sink: Arc<dyn Sink>,
    pub deliveries: mpsc::Receiver<Delivery>,
    pub slow: Arc<Notify>,
    /// Every subscription made and not yet left, whatever state the session ends in (a close
    /// drops the session's own list), for [`Conn::finish`].
    held: Vec<(String, super::hub::SubId)>,
}

impl Conn {
    pub fn new(realtime: Realtime, session: Session) -> Conn {
        let (tx, deliveries) = mpsc::channel(QUEUE);
        let slow = Arc::new(Notify::new());
        realtime
            .client_count()
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        local::count(Count::Connections(Protocol::Realtime));
        Conn {
            realtime,
            session,
            sink: Arc::new(ConnSink {
                tx,
                slow: slow.clone(),
            }),
            deliveries,
            slow,
            held: Vec::new(),
        }
    }

    /// Runs `step`, adding what to send to `out`; `Some` when the connection is to be closed.
    pub async fn run(&mut self, step: Step, out: &mut Vec<String>) -> Option<Disconnect> {
        match step {
            Step::None => None,
            Step::Reply(reply) => {
                out.push(reply);
                None
            }
            Step::Close(reply, disconnect) => {
                out.extend(reply);
                Some(disconnect)
            }
            Step::Subscribe { id, plan } => {
                let result = self.subscribe(&plan).await;
                let step = self.session.subscribe_done(id, &plan, result);
                Box::pin(self.run(step, out)).await
            }
            Step::Connect { id, subs } => {
                let mut results = Vec::with_capacity(subs.len());
                for plan in subs {
                    let result = self.subscribe(&plan).await;
                    results.push((plan, result));
                }
                let step = self.session.connect_done(id, results, unix_now());
                Box::pin(self.run(step, out)).await
            }
            Step::Unsubscribe { id, channel, sub } => {
                if let Some(sub) = sub {
                    self.held.retain(|(_, id)| *id != sub);
                    self.realtime.unsubscribe(&channel, sub);
                    if let Some(client) = self.session.client() {
                        let client = client.to_string();
                        self.realtime.presence_remove(&channel, &client).await;
                    }
                }
                out.push(Session::unsubscribe_reply(id));
                None
            }
        }
    }

    async fn subscribe(&mut self, plan: &SubscribePlan) -> Result<super::session::Subscribed, ()> {
        match self.realtime.subscribe(plan, self.sink.clone()).await {
            Ok(s) => {
                self.held.push((plan.channel.clone(), s.sub));
                if plan.presence
                    && let (Some(client), Some(info)) =
                        (self.session.client(), self.session.info_json())
                {
                    let client = client.to_string();
                    self.realtime
                        .presence_add(&plan.channel, &client, info)
                        .await;
                }
                Ok(s)
            }
            Err(e) => {
                tracing::warn!(channel = plan.channel, "realtime subscribe failed: {e}");
                Err(())
            }
        }
    }

    /// A delivery from the hub: the push to send, or a step.
    pub async fn delivery(
        &mut self,
        delivery: Delivery,
        out: &mut Vec<String>,
    ) -> Option<Disconnect> {
        match delivery {
            Delivery::Publication(channel, publication) => {
                if self.session.subscribed(&channel).is_some() {
                    let raw =
                        serde_json::value::RawValue::from_string(publication.json.to_string());
                    if let Ok(raw) = raw {
                        out.push(self.session.push(&protocol::pub_push(&channel, &raw)));
                    }
                }
                None
            }
            Delivery::PositionLost(channel) => {
                let step = self.session.position_lost(&channel);
                self.run(step, out).await
            }
        }
    }

    /// The next time the session's timers need a tick.
    pub fn deadline(&self) -> Option<Instant> {
        let timers = self.session.next_deadline();
        let expiry = self.session.expiry_close_at().map(|at| {
            Instant::now() + std::time::Duration::from_secs(at.saturating_sub(unix_now()))
        });
        match (timers, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Leaves every subscription and presence entry.
    pub async fn finish(self) {
        let client = self.session.client().map(str::to_string);
        for (channel, sub) in self.held {
            self.realtime.unsubscribe(&channel, sub);
            if let Some(client) = &client {
                self.realtime.presence_remove(&channel, client).await;
            }
        }
        self.realtime
            .client_count()
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Is a request from `origin` allowed (`realtime.allowedOrigins`)? No `Origin` header is
/// always allowed; with an empty list only that is.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    match origin {
        None => true,
        Some(origin) => allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin)),
    }
}

/// A short plain-text answer (refused requests).
pub fn plain(
    status: axum::http::StatusCode,
    text: &'static str,
) -> axum::http::Response<axum::body::Body> {
    let mut response = axum::http::Response::new(axum::body::Body::from(text));
    *response.status_mut() = status;
    response
}
