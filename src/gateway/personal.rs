//! A logged-in ActiveStack socket's subscription to its user's realtime channel
//! (`personal:#<user>`, with `realtime.enabled`): the publications reach the socket as the
//! socket.io event [`SOCKETIO_EVENT`] (`realtime`, `{channel, offset, epoch, data}`), after one
//! `realtimeSubscribed` event (`{channel, recovered, offset, epoch}`) that says whether what
//! follows recovers everything since the position the client gave when it reconnected
//! (`message {reconnect: {reconnectId, realtime: {offset, epoch}}}`).
//!
//! One subscription at a time per socket, made and ended as the socket's user changes (login,
//! logout, a reconnect taking a logged-in session over). A subscription is never dropped half
//! made: the realtime hub holds an entry from its first step, so one no longer wanted is
//! finished and then ended.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::fanout::{Mail, Mailbox};
use crate::realtime::{
    PubMsg, Realtime, RealtimeError, SOCKETIO_EVENT, Sink, StreamPosition, SubId, UserSubscription,
};

/// The event that opens a (re)subscription's publications.
pub const SUBSCRIBED_EVENT: &str = "realtimeSubscribed";

/// Hands the hub's publications to the socket's mailbox (the hub calls it on the worker's
/// event loop: it only queues).
struct ToMailbox(Arc<Mailbox>);

impl Sink for ToMailbox {
    fn publication(&self, channel: &str, publication: &PubMsg) {
        self.0
            .put(Mail::Realtime(channel.into(), publication.clone()));
    }

    fn position_lost(&self, channel: &str) {
        self.0.put(Mail::RealtimeLost(channel.into()));
    }
}

type Subscribing = BoxFuture<'static, (String, Result<UserSubscription, RealtimeError>)>;

/// Where the socket's subscription is.
struct Current {
    user: String,
    channel: String,
    id: SubId,
    /// The last position emitted to the socket.
    position: StreamPosition,
}

pub struct Personal {
    realtime: Realtime,
    sink: Arc<dyn Sink>,
    /// The user the socket belongs to (and where to resume from), if any.
    wanted: Option<(String, Option<StreamPosition>)>,
    subscribing: Option<Subscribing>,
    current: Option<Current>,
}

/// What to emit once a subscription is made.
pub struct Emits(pub Vec<(&'static str, Value)>);

impl Personal {
    pub fn new(realtime: Realtime, mailbox: Arc<Mailbox>) -> Personal {
        Personal {
            realtime,
            sink: Arc::new(ToMailbox(mailbox)),
            wanted: None,
            subscribing: None,
            current: None,
        }
    }

    /// The socket is `user`'s now; `resume` is the position the client last saw (a JSON
    /// `{offset, epoch}`), if it gave one.
    pub fn join(&mut self, user: &str, resume: Option<&Value>) {
        let resume = resume.and_then(|r| serde_json::from_value(r.clone()).ok());
        self.wanted = Some((user.to_string(), resume));
        if self.current.as_ref().is_some_and(|c| c.user == user) {
            return;
        }
        self.end_current();
        self.start();
    }

    /// The socket belongs to nobody now.
    pub fn leave(&mut self) {
        self.wanted = None;
        self.end_current();
    }

    fn end_current(&mut self) {
        if let Some(current) = self.current.take() {
            self.realtime.unsubscribe(&current.channel, current.id);
        }
    }

    /// Starts subscribing the wanted user, unless a subscription is being made (its result
    /// decides what comes next).
    fn start(&mut self) {
        if self.subscribing.is_some() {
            return;
        }
        let Some((user, since)) = self.wanted.clone() else {
            return;
        };
        let realtime = self.realtime.clone();
        let sink = self.sink.clone();
        self.subscribing = Some(Box::pin(async move {
            let result = realtime.subscribe_user(&user, since, sink).await;
            (user, result)
        }));
    }

    /// Resolves when a subscription is made (pending while none is being made): what to emit.
    pub async fn subscribed(&mut self) -> Emits {
        let Some(subscribing) = self.subscribing.as_mut() else {
            return std::future::pending().await;
        };
        let (user, result) = subscribing.await;
        self.subscribing = None;
        let subscription = match result {
            Ok(subscription) => subscription,
            Err(e) => {
                tracing::warn!(
                    user,
                    "cannot subscribe the socket to its realtime channel: {e}"
                );
                return Emits(Vec::new());
            }
        };
        if self
            .wanted
            .as_ref()
            .is_none_or(|(wanted, _)| *wanted != user)
        {
            // Not this socket's user any more: ended, and the right one started.
            self.realtime
                .unsubscribe(&subscription.channel, subscription.id);
            self.start();
            return Emits(Vec::new());
        }
        let UserSubscription {
            channel,
            id,
            recovered,
            publications,
            position,
        } = subscription;
        let mut emits = vec![(
            SUBSCRIBED_EVENT,
            json!({"channel": channel, "recovered": recovered, "offset": position.offset,
                   "epoch": position.epoch}),
        )];
        emits.extend(
            publications
                .iter()
                .map(|p| (SOCKETIO_EVENT, p.socketio_payload(&channel))),
        );
        self.current = Some(Current {
            user,
            channel,
            id,
            position,
        });
        Emits(emits)
    }

    /// A live publication for the socket (from its mailbox): the payload to emit, if it is of
    /// the current subscription.
    pub fn publication(&mut self, channel: &str, publication: &PubMsg) -> Option<Value> {
        let current = self.current.as_mut().filter(|c| c.channel == channel)?;
        if publication.offset > 0 {
            current.position = StreamPosition {
                offset: publication.offset,
                epoch: publication.epoch.to_string(),
            };
        }
        Some(publication.socketio_payload(channel))
    }

    /// The hub dropped the subscription (a gap or a new epoch): subscribe again, recovering
    /// from the last position emitted.
    pub fn position_lost(&mut self, channel: &str) {
        let Some(current) = self.current.take_if(|c| c.channel == channel) else {
            return;
        };
        if let Some((_, since)) = &mut self.wanted {
            *since = Some(current.position);
        }
        self.start();
    }

    /// The socket is gone: its subscription ends, also one still being made.
    pub fn close(mut self) {
        self.end_current();
        if let Some(subscribing) = self.subscribing.take() {
            let realtime = self.realtime.clone();
            tokio::spawn(async move {
                if let (_, Ok(subscription)) = subscribing.await {
                    realtime.unsubscribe(&subscription.channel, subscription.id);
                }
            });
        }
    }
}
