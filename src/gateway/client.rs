//! One ActiveStack client, whatever framing carries its events (socket.io v4/v5 or socket.io
//! 0.9): its session, its client queue, the pushes it has not acked yet, the login rules and its
//! disposal, as the Node gateway's `src/service/client.js` and `session.js` behave (with the
//! deliberate differences the README lists).
//!
//! The client only decides. What it decides to do (emit to the socket, publish to an agent
//! queue, consume its queue, settle a delivery, close) goes through [`Effects`], which the
//! connection it runs on implements; what happens back (a request event, a delivery from its
//! queue, a publish confirmed, a timer) comes in through its methods. So every rule here is
//! tested without a socket or a broker (see the tests below).
//!
//! Requests the backend answers are published only once the client queue exists: a request that
//! arrives while the queue is being declared waits, in order, and goes out as soon as the queue
//! is consumed (the original registered its request handlers before its queue existed; the
//! answers then had nowhere to go).

use std::time::Duration;

// Pending pushes by the backend's ids (the client only looks them up): a fast hash.
use foldhash::{HashMap, HashMapExt};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::events::{self, ErrorKind, Kind};
use super::forwarded::{Forwarded, text};
use super::framing::Data;
use super::limits::{TokenBucket, Warn, WarnBudget, loggable};
use super::rabbit::{RabbitError, Settle};
use super::session::{Session, SessionError};
use super::wire::json_object::RawObject;
use crate::metrics::{Count, local};

/// What a client can make happen. `D` is the handle of one RabbitMQ delivery (the connection
/// settles it on its channel).
pub trait Effects<D> {
    /// Sends `event` with a JSON value to the socket.
    fn emit(&mut self, event: &str, data: &Value);
    /// Sends `push` with the backend's JSON object exactly as it arrived. `delivery`, if given,
    /// is acked on RabbitMQ once the push has been written to the socket.
    fn push(&mut self, body: &[u8], delivery: Option<D>);
    /// Publishes `body` to the agent queue `queue` (default exchange, mandatory, `replyTo` =
    /// `reply_to`), in order with every other publish; the outcome comes back through
    /// [`Client::on_published`] with `then`.
    fn publish(&mut self, queue: &str, body: Vec<u8>, reply_to: &str, then: Then);
    /// Declares the client queue `queue` and consumes it; the outcome comes back through
    /// [`Client::on_subscribed`].
    fn subscribe(&mut self, queue: &str);
    /// Stops consuming the client queue (what it left unacked the client settles itself), and
    /// deletes the queue once its consumer is gone if `then` says so.
    fn unsubscribe(&mut self, then: AfterCancel);
    fn settle(&mut self, delivery: D, how: Settle);
    /// The socket is one of `user`'s sockets now (pushes to the user reach it, and the user's
    /// realtime publications from `resume` on, the position the client last saw, if it said),
    /// or no longer.
    fn join_user(&mut self, user: &str, resume: Option<&Value>);
    fn leave_user(&mut self, user: &str);
    /// Ends the connection from the server's side (the client logic is done with it).
    fn close(&mut self, why: Close);
}

/// Why the client logic ends its connection. Each is a server-side disconnect the framing
/// announces (socket.io's disconnect packet), after which standard clients do not reconnect by
/// themselves, as with the original's `socket.disconnect()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The client sent `logout`.
    Logout,
    /// The backend sent the client's end of life (EOL) on its queue.
    EndOfLife,
    /// The broker deleted or cancelled the client queue.
    QueueGone,
}

/// What becomes of the client queue once its consumer is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCancel {
    /// Left to the backend (Percero moves its messages on a reconnect, or removes it).
    Keep,
    /// Deleted: the client never logged in, so the backend never knew it and no reconnect can
    /// take its queue over. Anonymous connections leave no queue behind.
    Delete,
}

/// Per-client limits (`frontend.maxRequestsPerSecond`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Request events forwarded per second (burst: one second's worth); 0 = no limit.
    pub requests_per_second: u32,
}

/// What to do once a publish has been confirmed (or has failed).
#[derive(Debug, Clone, PartialEq)]
pub enum Then {
    /// A client's request: tell it if it failed, and `ack` it if it asked (`sendAck`).
    Request {
        event: String,
        message_id: Option<Value>,
        send_ack: bool,
    },
    /// One of the gateway's own messages to the backend: only logged if it failed.
    Internal,
}

/// What a client needs to know of the world for one input.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The secret that signs reconnect keys.
    pub secret: &'a [u8],
    pub now: Instant,
    /// `frontend.clientMessageResendInterval` now.
    pub resend_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0} before `connect`")]
    NotConnected(String),
    #[error("{0} needs a logged-in session")]
    NotLoggedIn(String),
    #[error("the payload of {0} is not a JSON object")]
    Malformed(String),
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    #[error("the client queue is not available: {0}")]
    Queue(String),
    #[error("{0} refused: more than {1} requests a second (frontend.maxRequestsPerSecond)")]
    RateLimited(String, u32),
    #[error(transparent)]
    Rabbit(#[from] RabbitError),
}

impl ClientError {
    /// The `error` code of the `gatewayError` event.
    fn kind(&self) -> ErrorKind {
        match self {
            ClientError::NotConnected(_) => ErrorKind::NotConnected,
            ClientError::NotLoggedIn(_) => ErrorKind::NotLoggedIn,
            ClientError::Malformed(_) => ErrorKind::Malformed,
            ClientError::UnknownEvent(_) => ErrorKind::UnknownEvent,
            ClientError::Queue(_) => ErrorKind::Unavailable,
            ClientError::RateLimited(..) => ErrorKind::RateLimited,
            ClientError::Rabbit(RabbitError::Unroutable { .. }) => ErrorKind::Unroutable,
            ClientError::Rabbit(_) => ErrorKind::Unavailable,
        }
    }
}

/// Where the client queue is.
#[derive(Debug)]
enum Queue {
    /// No `connect` (or `reconnect`) yet.
    None,
    /// Being declared and consumed; publishes wait here, in order.
    Subscribing {
        waiting: Vec<Publish>,
    },
    Subscribed,
    /// The client is done (socket closed, EOL, queue gone, logout).
    Disposed,
}

/// A publish that waits for the client queue.
#[derive(Debug)]
struct Publish {
    queue: String,
    body: Vec<u8>,
    then: Then,
}

/// A push the client has not acked yet: its delivery, and what to send again when.
struct Pending<D> {
    delivery: D,
    body: Vec<u8>,
    resend_at: Instant,
}

pub struct Client<D> {
    session: Session,
    /// The session changed since the client last got its key (`gatewayConnectAck`).
    dirty: bool,
    queue: Queue,
    /// Unacked pushes by their `correspondingMessageId`.
    pending: HashMap<String, Pending<D>>,
    /// The session was logged in at some point (or took over a logged-in one): the backend
    /// knows the client and manages its queue.
    known_to_backend: bool,
    /// `frontend.maxRequestsPerSecond`, if set.
    requests: Option<(TokenBucket, u32)>,
    /// How many of this client's warnings get logged.
    warnings: WarnBudget,
}

impl<D> Client<D> {
    /// A client with a fresh session (a new random client id).
    pub fn new(limits: Limits) -> Client<D> {
        let rate = limits.requests_per_second;
        Client {
            session: Session::new(),
            dirty: true,
            queue: Queue::None,
            pending: HashMap::new(),
            known_to_backend: false,
            requests: (rate > 0).then(|| (TokenBucket::new(rate, rate, Instant::now()), rate)),
            warnings: WarnBudget::default(),
        }
    }

    /// Whether a warning this client caused may be logged (a few per window; the rest are
    /// counted and reported with the next one that is).
    fn may_log(&mut self) -> bool {
        match self.warnings.admit(Instant::now()) {
            Warn::Log => true,
            Warn::LogAfterSuppressing(n) => {
                tracing::warn!(client = %self.session.client_id, suppressed = n, "more warnings about this client were left out of the log");
                true
            }
            Warn::Suppress => false,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.session.client_id
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Disposed: the connection is finished with as soon as its last writes are out.
    pub fn is_disposed(&self) -> bool {
        matches!(self.queue, Queue::Disposed)
    }

    /// When the next unacked push is due to be sent again.
    pub fn next_resend(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.resend_at).min()
    }

    fn warn(
        &mut self,
        effects: &mut impl Effects<D>,
        event: &str,
        error: &ClientError,
        id: Option<&Value>,
    ) {
        let event = loggable(event);
        local::count(Count::GatewayErrors(error.kind()));
        if self.may_log() {
            tracing::warn!(client = %self.session.client_id, event = %event, "{error}");
        }
        effects.emit(
            events::ERROR,
            &json!({"event": event, "messageId": id, "error": error.kind().code(), "message": error.to_string()}),
        );
    }

    /// Sends the session's key if it changed, once the client queue is consumed (before that,
    /// the key would name a queue that may never exist).
    fn send_session(&mut self, ctx: &Context<'_>, effects: &mut impl Effects<D>) {
        if self.dirty && matches!(self.queue, Queue::Subscribed) {
            self.dirty = false;
            let key = self.session.sign_at(ctx.secret, wall_clock_ms());
            effects.emit(events::CONNECT_ACK, &Value::String(key));
        }
    }

    // ----- the `message` event -----

    /// `message` with keys `connect`, `reconnect`, `ack`, `hibernate`.
    pub fn on_message(
        &mut self,
        ctx: &Context<'_>,
        data: Option<Value>,
        effects: &mut impl Effects<D>,
    ) {
        let Some(Value::Object(map)) = data else {
            return self.warn(
                effects,
                "message",
                &ClientError::Malformed("message".into()),
                None,
            );
        };
        for key in map.keys() {
            if !matches!(key.as_str(), "connect" | "reconnect" | "ack" | "hibernate")
                && self.may_log()
            {
                let key = loggable(key);
                tracing::warn!(client = %self.session.client_id, key = %key, "ignoring an unknown message key");
            }
        }
        if let Some(reconnect) = map.get("reconnect") {
            self.reconnect(ctx, reconnect, effects);
        } else if map.contains_key("connect") {
            self.connect(ctx, effects);
        }
        if let Some(ack) = map.get("ack") {
            self.client_ack(ack, effects);
        }
        if map.contains_key("hibernate") {
            let body = self.agent_request(events::HIBERNATE_REQUEST, Existing::Omit);
            self.send_to_agent(events::HIBERNATE_QUEUE, body, Then::Internal, effects);
        }
        self.send_session(ctx, effects);
    }

    /// Declares and consumes the client queue; the session goes out once it is consumed.
    fn connect(&mut self, ctx: &Context<'_>, effects: &mut impl Effects<D>) {
        match self.queue {
            Queue::None => {
                self.queue = Queue::Subscribing {
                    waiting: Vec::new(),
                };
                effects.subscribe(&self.session.client_id);
            }
            Queue::Disposed => {}
            Queue::Subscribing { .. } | Queue::Subscribed => {
                if self.may_log() {
                    tracing::warn!(client = %self.session.client_id, "connect on a connected client: sending the session again");
                }
                self.dirty = true;
                self.send_session(ctx, effects);
            }
        }
    }

    /// `reconnect {reconnectId}`: takes over a previous session (a new client id, the old ones
    /// remembered). A refused key still gets a working, fresh client.
    fn reconnect(&mut self, ctx: &Context<'_>, data: &Value, effects: &mut impl Effects<D>) {
        let old = match data.get("reconnectId").and_then(Value::as_str) {
            Some(key) => match Session::verify(key, ctx.secret) {
                Ok(old) => Some(old),
                Err(e) => {
                    self.refuse_key(&e, effects);
                    None
                }
            },
            None => {
                self.warn(
                    effects,
                    "reconnect",
                    &ClientError::Malformed("reconnect".into()),
                    None,
                );
                None
            }
        };
        if !matches!(self.queue, Queue::None) {
            if self.may_log() {
                tracing::warn!(client = %self.session.client_id, "reconnect on a connected client ignored");
            }
            return;
        }
        if let Some(old) = old.filter(|old| old.client_id != self.session.client_id) {
            self.known_to_backend |= old.logged_in();
            self.session.adopt_existing(old);
            self.dirty = true;
        }
        if let Some(user) = &self.session.user_id {
            effects.join_user(user, data.get("realtime"));
        }
        self.connect(ctx, effects);
        // The backend moves the previous queues' messages into ours (Percero's renameClient):
        // ours must exist first, so this waits for the subscription like any request.
        if self.session.logged_in() && self.session.existing_client_id.is_some() {
            let body = self.agent_request(events::RECONNECT_REQUEST, Existing::Include);
            self.send_to_agent(events::RECONNECT_QUEUE, body, Then::Internal, effects);
        }
    }

    fn refuse_key(&mut self, error: &SessionError, effects: &mut impl Effects<D>) {
        local::count(Count::GatewayErrors(ErrorKind::BadReconnectId));
        if self.may_log() {
            tracing::warn!(client = %self.session.client_id, "reconnect refused: {error}");
        }
        effects.emit(
            events::ERROR,
            &json!({"event": "reconnect", "error": "badReconnectId", "message": error.to_string()}),
        );
    }

    /// `ack {correspondingMessageId}`: the client has the push; RabbitMQ may forget it.
    fn client_ack(&mut self, data: &Value, effects: &mut impl Effects<D>) {
        let Some(id) = data.get("correspondingMessageId").and_then(text) else {
            return self.warn(effects, "ack", &ClientError::Malformed("ack".into()), None);
        };
        match self.pending.remove(&id) {
            Some(pending) => {
                local::count(Count::PushesAcked);
                local::pushes_pending_removed(1);
                effects.settle(pending.delivery, Settle::Ack)
            }
            None => {
                tracing::debug!(client = %self.session.client_id, id, "ack for no pending push")
            }
        }
    }

    /// The queue is consumed (or could not be): the session goes out and what waited is sent.
    pub fn on_subscribed(
        &mut self,
        ctx: &Context<'_>,
        result: Result<(), RabbitError>,
        effects: &mut impl Effects<D>,
    ) {
        let waiting = match std::mem::replace(&mut self.queue, Queue::Subscribed) {
            Queue::Subscribing { waiting } => waiting,
            other => {
                // Disposed meanwhile: the connection gives the consumer back.
                self.queue = other;
                return;
            }
        };
        match result {
            Ok(()) => {
                tracing::debug!(client = %self.session.client_id, "client connected");
                self.send_session(ctx, effects);
                for Publish { queue, body, then } in waiting {
                    effects.publish(&queue, body, &self.session.client_id, then);
                }
            }
            Err(e) => {
                // The client may send `connect` again.
                self.queue = Queue::None;
                tracing::error!(client = %self.session.client_id, "cannot consume the client queue: {e}");
                self.warn(effects, "connect", &ClientError::Queue(e.to_string()), None);
                for publish in waiting {
                    if let Then::Request {
                        event, message_id, ..
                    } = publish.then
                    {
                        let error = ClientError::Queue(e.to_string());
                        self.warn(effects, &event, &error, message_id.as_ref());
                    }
                }
            }
        }
    }

    // ----- request events -----

    /// A request event: checked, stamped with the session's client id, published to the agent
    /// queue named like the event.
    pub fn on_request(
        &mut self,
        ctx: &Context<'_>,
        event: &str,
        data: Option<&Data>,
        effects: &mut impl Effects<D>,
    ) {
        if event == "logout" {
            return self.logout(data.and_then(|d| d.value().ok()), effects);
        }
        let request = data.and_then(|d| RawObject::read(d.as_raw()));
        let message_id = request.as_ref().and_then(|r| r.value("messageId"));
        let connected = self.connected();
        let problem = match (events::kind(event), &request) {
            (Kind::Unknown, _) => Some(ClientError::UnknownEvent(loggable(event).into_owned())),
            _ if !connected => Some(ClientError::NotConnected(event.into())),
            (Kind::AfterLogin, _) if !self.session.logged_in() => {
                Some(ClientError::NotLoggedIn(event.into()))
            }
            (_, Some(_)) => None,
            _ => Some(ClientError::Malformed(event.into())),
        };
        let problem = problem.or_else(|| {
            let (bucket, rate) = self.requests.as_mut()?;
            (!bucket.try_take(ctx.now)).then(|| ClientError::RateLimited(event.into(), *rate))
        });
        if let Some(problem) = problem {
            return self.warn(effects, event, &problem, message_id.as_ref());
        }
        let Some(request) = request else {
            return;
        };
        let send_ack = request.value("sendAck").is_some_and(|v| truthy(&v));
        let then = Then::Request {
            event: event.to_string(),
            message_id,
            send_ack,
        };
        // The request as the client wrote it, with the session's client id (legacy clients
        // keep sending their old one after a reconnect).
        let body = request.to_vec_with("clientId", &self.session.client_id);
        self.send_to_agent(event, body, then, effects);
        self.send_session(ctx, effects);
    }

    /// The request with the session's client id (legacy clients keep sending their old one
    /// after a reconnect).
    fn stamp(&self, mut body: Map<String, Value>) -> Map<String, Value> {
        body.insert(
            "clientId".into(),
            Value::String(self.session.client_id.clone()),
        );
        body
    }

    /// `logout`, as the original: the server closes the socket, which sends the sync
    /// DisconnectRequest (still carrying the user), then the auth DisconnectRequest goes to
    /// `disconnectAuth`, then the client's own request to `logout` if it was logged in and
    /// connected; the session is logged out.
    fn logout(&mut self, data: Option<Value>, effects: &mut impl Effects<D>) {
        let connected = self.connected();
        let logged_in = self.session.logged_in();
        if connected {
            self.send_disconnect_request(effects);
        }
        let body = self.agent_request(events::AUTH_DISCONNECT_REQUEST, Existing::Omit);
        effects.publish(
            events::DISCONNECT_AUTH_QUEUE,
            body,
            &self.session.client_id,
            Then::Internal,
        );
        match data {
            Some(Value::Object(request)) if connected && logged_in => {
                let body = encode(&Value::Object(self.stamp(request)));
                effects.publish("logout", body, &self.session.client_id, Then::Internal);
            }
            _ => {}
        }
        if let Some(user) = self.session.user_id.take() {
            effects.leave_user(&user);
        }
        self.session.log_out();
        tracing::info!(client = %self.session.client_id, "logout: closing the socket");
        self.finish(effects);
        effects.close(Close::Logout);
    }

    /// Publishes now, or once the client queue is consumed if it is being declared.
    fn send_to_agent(
        &mut self,
        queue: &str,
        body: Vec<u8>,
        then: Then,
        effects: &mut impl Effects<D>,
    ) {
        match &mut self.queue {
            Queue::Subscribing { waiting } => waiting.push(Publish {
                queue: queue.to_string(),
                body,
                then,
            }),
            _ => effects.publish(queue, body, &self.session.client_id, then),
        }
    }

    /// A publish was confirmed by the broker, or failed.
    pub fn on_published(
        &mut self,
        then: Then,
        result: Result<(), RabbitError>,
        effects: &mut impl Effects<D>,
    ) {
        if let (Then::Request { .. }, Ok(())) = (&then, &result) {
            local::count(Count::Requests);
        }
        match (then, result) {
            (
                Then::Request {
                    send_ack: true,
                    message_id,
                    ..
                },
                Ok(()),
            ) if !self.is_disposed() => {
                effects.emit(events::ACK, message_id.as_ref().unwrap_or(&Value::Null));
            }
            (
                Then::Request {
                    event, message_id, ..
                },
                Err(e),
            ) if !self.is_disposed() => {
                tracing::warn!(client = %self.session.client_id, event, "request not delivered: {e}");
                self.warn(
                    effects,
                    &event,
                    &ClientError::Rabbit(e),
                    message_id.as_ref(),
                );
            }
            (_, Err(e)) => {
                tracing::warn!(client = %self.session.client_id, "cannot send to the backend: {e}");
            }
            _ => {}
        }
    }

    // ----- the client queue -----

    /// A message from the client queue.
    pub fn on_delivery(
        &mut self,
        ctx: &Context<'_>,
        delivery: D,
        body: Vec<u8>,
        effects: &mut impl Effects<D>,
    ) {
        if self.is_disposed() {
            return effects.settle(delivery, Settle::Requeue);
        }
        // Most messages are only forwarded; the others are read whole.
        let corresponding_id = if let Some(forwarded) = Forwarded::read(&body) {
            forwarded.corresponding_id
        } else {
            let Ok(Value::Object(message)) = serde_json::from_slice(&body) else {
                tracing::warn!(client = %self.session.client_id, "dropping a client-queue message that is not a JSON object");
                return effects.settle(delivery, Settle::Discard);
            };
            if is_eol(&message) {
                effects.settle(delivery, Settle::Ack);
                return self.end_of_life(&message, effects);
            }
            self.inspect(&message, effects);
            message.get("correspondingMessageId").and_then(text)
        };
        self.send_session(ctx, effects);
        local::count(Count::Pushes);
        match corresponding_id {
            None => effects.push(&body, Some(delivery)),
            Some(id) => {
                effects.push(&body, None);
                let pending = Pending {
                    delivery,
                    body,
                    resend_at: ctx.now + ctx.resend_interval,
                };
                match self.pending.insert(id, pending) {
                    // The same message again (a redelivery): the newer one replaces it.
                    Some(older) => effects.settle(older.delivery, Settle::Ack),
                    None => local::pushes_pending_added(1),
                }
            }
        }
    }

    /// An EOL message (acked already): the client is disposed and closed, unless it names
    /// another client.
    fn end_of_life(&mut self, message: &Map<String, Value>, effects: &mut impl Effects<D>) {
        let target = message.get("clientId").and_then(text);
        if target.is_some_and(|t| t != self.session.client_id) {
            tracing::debug!(client = %self.session.client_id, "EOL for another client ignored");
            return;
        }
        tracing::info!(client = %self.session.client_id, "EOL: disposing the client");
        self.dispose(effects);
        effects.close(Close::EndOfLife);
    }

    /// Sends again every unacked push that is due.
    pub fn on_resend_due(&mut self, ctx: &Context<'_>, effects: &mut impl Effects<D>) {
        for pending in self.pending.values_mut() {
            if pending.resend_at <= ctx.now {
                tracing::debug!(client = %self.session.client_id, "re-sending an unacked push");
                local::count(Count::PushesResent);
                effects.push(&pending.body, None);
                pending.resend_at = ctx.now + ctx.resend_interval;
            }
        }
    }

    /// The broker cancelled the consumer (the queue was deleted): no answers can reach the
    /// client any more.
    pub fn on_queue_gone(&mut self, effects: &mut impl Effects<D>) {
        if !self.is_disposed() {
            tracing::warn!(client = %self.session.client_id, "client queue gone: disposing the client");
            self.dispose(effects);
            effects.close(Close::QueueGone);
        }
    }

    /// Logs the session in or out from what the backend answered, by the relative class name as
    /// the original's `processResponse` does.
    fn inspect(&mut self, message: &Map<String, Value>, effects: &mut impl Effects<D>) {
        let Some(cn) = message.get("cn").and_then(Value::as_str) else {
            return;
        };
        match cn.rsplit('.').next().unwrap_or(cn) {
            "UserToken" => self.log_in(Some(message), effects),
            "AuthenticateUserAccountResponse"
            | "AuthenticateOAuthCodeResponse"
            | "AuthenticateOAuthAccessTokenResponse"
            | "AuthenticationResponse" => {
                let token = message.get("result").and_then(Value::as_object);
                self.log_in(token, effects);
            }
            "ConnectResponse" if !message.get("clientId").is_some_and(truthy) => {
                tracing::info!(client = %self.session.client_id, "no clientId in the ConnectResponse: logging out");
                self.log_out(effects);
            }
            "ReconnectResponse" => {
                if !message.get("clientId").is_some_and(truthy) {
                    tracing::info!(client = %self.session.client_id, "no clientId in the ReconnectResponse: logging out");
                    self.log_out(effects);
                }
                self.session.existing_client_id = None;
                self.dirty = true;
            }
            _ => {}
        }
    }

    /// Takes the user, token and device from a UserToken (`token`), then, if the session is
    /// logged in, tells the backend: a ReconnectRequest if it took over an older client, else a
    /// ConnectRequest. As the original, a user without a token logs in, and an answer without a
    /// user still re-announces a session that was logged in already.
    fn log_in(&mut self, token: Option<&Map<String, Value>>, effects: &mut impl Effects<D>) {
        if let Some(token) = token
            && let Some(user) = token.get("user").and_then(Value::as_object)
        {
            let previous = self.session.user_id.clone();
            match user.get("ID").or_else(|| user.get("id")) {
                Some(id) => self.session.user_id = text(id),
                None => {
                    tracing::error!(client = %self.session.client_id, "invalid user in the authentication answer")
                }
            }
            self.session.token = token.get("token").and_then(text);
            self.session.device_id = token.get("deviceId").and_then(text);
            self.dirty = true;
            self.known_to_backend |= self.session.logged_in();
            if previous != self.session.user_id {
                if let Some(previous) = &previous {
                    effects.leave_user(previous);
                }
                if let Some(user) = &self.session.user_id {
                    effects.join_user(user, None);
                }
            }
        }
        if !self.session.logged_in() {
            return;
        }
        tracing::info!(client = %self.session.client_id, "client logged in");
        let (queue, cn, existing) = match &self.session.existing_client_id {
            Some(existing) if *existing != self.session.client_id => (
                events::RECONNECT_QUEUE,
                events::RECONNECT_REQUEST,
                Existing::Include,
            ),
            _ => (
                events::CONNECT_QUEUE,
                events::CONNECT_REQUEST,
                Existing::Omit,
            ),
        };
        let body = self.agent_request(cn, existing);
        self.send_to_agent(queue, body, Then::Internal, effects);
    }

    fn log_out(&mut self, effects: &mut impl Effects<D>) {
        if let Some(user) = self.session.user_id.take() {
            effects.leave_user(&user);
        }
        self.session.log_out();
        self.dirty = true;
    }

    // ----- disposal -----

    /// Once: stops consuming, gives unacked pushes back to RabbitMQ, tells the `disconnect`
    /// agent (if the client ever connected). The socket is closed, or closes, by the caller.
    pub fn dispose(&mut self, effects: &mut impl Effects<D>) {
        let connected = self.connected();
        if self.finish(effects) && connected {
            self.send_disconnect_request(effects);
        }
    }

    /// The sync DisconnectRequest, with the user if logged in (Percero hibernates the client).
    fn send_disconnect_request(&self, effects: &mut impl Effects<D>) {
        let body = self.agent_request(events::DISCONNECT_REQUEST, Existing::Omit);
        effects.publish(
            events::DISCONNECT_QUEUE,
            body,
            &self.session.client_id,
            Then::Internal,
        );
    }

    /// `connect` (or `reconnect`) received, and not disposed since.
    fn connected(&self) -> bool {
        matches!(self.queue, Queue::Subscribing { .. } | Queue::Subscribed)
    }

    /// Marks the client disposed (false if it was already), stops its consumer and requeues
    /// what it has not acked.
    fn finish(&mut self, effects: &mut impl Effects<D>) -> bool {
        match std::mem::replace(&mut self.queue, Queue::Disposed) {
            Queue::Disposed => return false,
            Queue::None => {}
            Queue::Subscribing { .. } | Queue::Subscribed => {
                effects.unsubscribe(if self.known_to_backend {
                    AfterCancel::Keep
                } else {
                    AfterCancel::Delete
                })
            }
        }
        if self.warnings.suppressed() > 0 {
            tracing::warn!(client = %self.session.client_id, suppressed = self.warnings.suppressed(), "more warnings about this client were left out of the log");
        }
        local::pushes_pending_removed(self.pending.len() as u64);
        for (_, pending) in self.pending.drain() {
            effects.settle(pending.delivery, Settle::Requeue);
        }
        true
    }

    /// One of the gateway's own requests: the class name and the session's fields that are set,
    /// as the original's `session.populateMessage` (fields that are not set are left out, as
    /// `JSON.stringify` leaves out `undefined`); the older client ids only where the backend's
    /// class has them (ReconnectRequest: Percero decodes strictly, and no other request class
    /// has those fields).
    fn agent_request(&self, cn: &str, existing: Existing) -> Vec<u8> {
        let s = &self.session;
        let include = matches!(existing, Existing::Include);
        let request = AgentRequest {
            cn,
            client_id: &s.client_id,
            existing_client_id: s.existing_client_id.as_deref().filter(|_| include),
            existing_client_ids: Some(s.existing_client_ids.as_slice())
                .filter(|ids| include && !ids.is_empty()),
            device_id: s.device_id.as_deref(),
            token: s.token.as_deref(),
            user_id: s.user_id.as_deref(),
        };
        // Plain strings: serializing cannot fail.
        serde_json::to_vec(&request).unwrap_or_default()
    }
}

impl<D> Drop for Client<D> {
    /// Pushes still pending (a client dropped without [`Client::dispose`]) no longer are.
    fn drop(&mut self) {
        local::pushes_pending_removed(self.pending.len() as u64);
    }
}

/// Whether a gateway request carries the older client ids.
#[derive(Clone, Copy)]
enum Existing {
    Include,
    Omit,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AgentRequest<'a> {
    cn: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    existing_client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    existing_client_ids: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

fn encode(value: &Value) -> Vec<u8> {
    // A `Value` always serializes.
    serde_json::to_vec(value).unwrap_or_default()
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn is_eol(message: &Map<String, Value>) -> bool {
    message.get("EOL").is_some_and(truthy)
        || message
            .get("cn")
            .and_then(Value::as_str)
            .is_some_and(|cn| cn == "EOL" || cn.ends_with(".EOL"))
}

/// JavaScript's truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => true,
    }
}

#[cfg(test)]
mod tests;
