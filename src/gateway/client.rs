//! One socket.io client: its session, its client queue on RabbitMQ, the pushes it has not acked
//! yet (re-sent until it does), and its disposal.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::{Channel, Consumer};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;
use super::adapter::{self, SocketRef};
use super::events::{self, Kind};
use super::rabbit::{Rabbit, RabbitError, Settle, Unsettled};
use super::session::Session;

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
    #[error(transparent)]
    Rabbit(#[from] RabbitError),
}

/// A push the client has not acked yet: its RabbitMQ delivery, and what to re-send when.
struct Pending {
    delivery: Unsettled,
    message: Value,
    resend_at: Instant,
}

#[derive(Default)]
struct State {
    session: Session,
    /// `connect` (or `reconnect`) received.
    connected: bool,
    /// The client queue is consumed: requests may go out (their answers have somewhere to go).
    subscribed: bool,
    disposed: bool,
    /// This client's consumers: the channel each is on, and its tag.
    subscriptions: Vec<(Arc<Channel>, String)>,
    pending: HashMap<String, Pending>,
    /// When the client's resend loop wakes next; `None`: it is not running.
    resend_wake: Option<Instant>,
}

pub struct Client {
    socket: SocketRef,
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// Wakes the resend loop before its time: a push due earlier (the interval was shortened),
    /// or disposal.
    resend_changed: Notify,
}

impl Client {
    pub fn new(socket: SocketRef, shared: Arc<Shared>) -> Arc<Client> {
        Arc::new(Client {
            socket,
            shared,
            state: Mutex::new(State {
                session: Session::new(),
                ..State::default()
            }),
            resend_changed: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn client_id(&self) -> String {
        self.state().session.client_id.clone()
    }

    fn emit(&self, event: &str, data: &Value) {
        if let Err(e) = self.socket.emit(event, data) {
            tracing::debug!(sid = %self.socket.id, event, "cannot emit: {e}");
        }
    }

    fn send_session(&self) {
        let key = self.state().session.sign(&self.shared.secret);
        self.emit(events::CONNECT_ACK, &Value::String(key));
    }

    fn warn(&self, event: &str, error: &ClientError, message_id: Option<&Value>) {
        tracing::warn!(sid = %self.socket.id, event, "{error}");
        self.emit(
            events::ERROR,
            &json!({"event": event, "messageId": message_id, "error": error_code(error), "message": error.to_string()}),
        );
    }

    // ----- the `message` event -----

    /// `message` with keys `connect`, `reconnect`, `ack`, `hibernate`.
    pub async fn on_message(self: &Arc<Client>, data: Value) {
        let Value::Object(map) = data else {
            return self.warn("message", &ClientError::Malformed("message".into()), None);
        };
        for key in map.keys() {
            if !matches!(key.as_str(), "connect" | "reconnect" | "ack" | "hibernate") {
                tracing::warn!(sid = %self.socket.id, key, "ignoring an unknown message key");
            }
        }
        if let Some(reconnect) = map.get("reconnect") {
            self.reconnect(reconnect).await;
        } else if map.contains_key("connect") {
            self.connect().await;
        }
        if let Some(ack) = map.get("ack") {
            self.client_ack(ack).await;
        }
        if map.contains_key("hibernate") {
            self.hibernate().await;
        }
    }

    /// Declares and consumes the client queue, then sends the session.
    async fn connect(self: &Arc<Client>) {
        let (queues, already) = {
            let mut state = self.state();
            if state.disposed {
                return;
            }
            let already = state.connected;
            state.connected = true;
            let mut queues = vec![state.session.client_id.clone()];
            // The previous client's queue still holds what it did not ack: consume it too.
            queues.extend(state.session.existing_client_id.clone());
            (queues, already)
        };
        if already {
            tracing::warn!(sid = %self.socket.id, "connect on a connected client: sending the session again");
            return self.send_session();
        }
        for queue in queues {
            match self.shared.rabbit.subscribe(&queue).await {
                Ok((channel, consumer)) => {
                    let tag = consumer.tag().to_string();
                    let disposed = {
                        let mut state = self.state();
                        state.subscriptions.push((channel.clone(), tag.clone()));
                        state.disposed
                    };
                    if disposed {
                        // Disposed while subscribing: give it back.
                        let _ = Rabbit::unsubscribe(&channel, &tag).await;
                    }
                    tokio::spawn(self.clone().consume(channel, consumer));
                }
                Err(e) => {
                    tracing::error!(sid = %self.socket.id, queue, "cannot consume the client queue: {e}");
                    self.warn("connect", &ClientError::Rabbit(e), None);
                }
            }
        }
        self.state().subscribed = true;
        tracing::debug!(sid = %self.socket.id, client = %self.client_id(), "client connected");
        self.send_session();
    }

    /// `reconnect {reconnectId}`: takes over a previous session (new clientId, old ones kept).
    async fn reconnect(self: &Arc<Client>, data: &Value) {
        let key = data.get("reconnectId").and_then(Value::as_str);
        let old = match key.map(|k| Session::verify(k, &self.shared.secret)) {
            Some(Ok(old)) => Some(old),
            Some(Err(e)) => {
                tracing::warn!(sid = %self.socket.id, "reconnect refused: {e}");
                self.emit(
                    events::ERROR,
                    &json!({"event": "reconnect", "error": "badReconnectId", "message": e.to_string()}),
                );
                None
            }
            None => {
                self.warn(
                    "reconnect",
                    &ClientError::Malformed("reconnect".into()),
                    None,
                );
                None
            }
        };
        let logged_in = {
            let mut state = self.state();
            if state.connected {
                tracing::warn!(sid = %self.socket.id, "reconnect on a connected client ignored");
                return;
            }
            match old {
                Some(old) if old.client_id != state.session.client_id => {
                    state.session.adopt_existing(old);
                    state.session.logged_in()
                }
                _ => false,
            }
        };
        // Refused keys still get a working, fresh client.
        self.connect().await;
        if logged_in {
            self.join_user_room();
            let request = self.agent_request(events::RECONNECT_REQUEST);
            self.publish_internal(events::RECONNECT_QUEUE, &request)
                .await;
        }
    }

    /// `ack {correspondingMessageId}`: the client has the push; RabbitMQ may forget it.
    async fn client_ack(&self, data: &Value) {
        let Some(id) = data.get("correspondingMessageId").and_then(message_id) else {
            return self.warn("ack", &ClientError::Malformed("ack".into()), None);
        };
        let pending = self.state().pending.remove(&id);
        match pending {
            Some(pending) => {
                if let Err(e) = pending.delivery.settle(Settle::Ack).await {
                    tracing::warn!(sid = %self.socket.id, "cannot ack a delivery: {e}");
                }
            }
            None => tracing::debug!(sid = %self.socket.id, id, "ack for no pending push"),
        }
    }

    async fn hibernate(&self) {
        let request = self.agent_request(events::HIBERNATE_REQUEST);
        self.publish_internal(events::HIBERNATE_QUEUE, &request)
            .await;
    }

    // ----- request events -----

    /// A request event: checked, stamped with the session's clientId, published to the agent
    /// queue named like the event.
    pub async fn on_request(self: &Arc<Client>, event: &str, data: Option<Value>) {
        let message_id = data.as_ref().and_then(|d| d.get("messageId")).cloned();
        let kind = events::kind(event);
        let (connected, logged_in, client_id) = {
            let state = self.state();
            (
                state.subscribed && !state.disposed,
                state.session.logged_in(),
                state.session.client_id.clone(),
            )
        };
        let problem = match (kind, &data) {
            (Kind::Unknown, _) => Some(ClientError::UnknownEvent(event.into())),
            _ if !connected => Some(ClientError::NotConnected(event.into())),
            (Kind::AfterLogin, _) if !logged_in => Some(ClientError::NotLoggedIn(event.into())),
            (_, Some(Value::Object(_))) => None,
            _ => Some(ClientError::Malformed(event.into())),
        };
        if let Some(problem) = problem {
            return self.warn(event, &problem, message_id.as_ref());
        }
        let Some(Value::Object(mut body)) = data else {
            return;
        };
        let send_ack = body.get("sendAck").is_some_and(truthy);
        body.insert("clientId".into(), Value::String(client_id.clone()));
        let bytes = Value::Object(body).to_string();
        match self
            .shared
            .rabbit
            .publish(event, bytes.as_bytes(), Some(&client_id))
            .await
        {
            Ok(()) => {
                if send_ack {
                    self.emit(events::ACK, message_id.as_ref().unwrap_or(&Value::Null));
                }
            }
            Err(e) => {
                tracing::warn!(sid = %self.socket.id, event, "request not delivered: {e}");
                self.warn(event, &ClientError::Rabbit(e), message_id.as_ref());
            }
        }
        if event == "logout" {
            let request = self.agent_request(events::AUTH_DISCONNECT_REQUEST);
            self.publish_internal(events::DISCONNECT_AUTH_QUEUE, &request)
                .await;
            self.log_out();
        }
    }

    /// Puts the socket in its user's room (pushes to the user reach it on any worker).
    fn join_user_room(&self) {
        if let Some(user) = self.state().session.user_id.clone() {
            self.socket.join(adapter::user_room(&user));
        }
    }

    fn log_out(&self) {
        let user = {
            let mut state = self.state();
            let user = state.session.user_id.clone();
            state.session.log_out();
            user
        };
        if let Some(user) = user {
            self.socket.leave(adapter::user_room(&user));
        }
        self.send_session();
    }

    // ----- the client queue -----

    /// One task per client queue, idle nearly all its life: the rare work is boxed, so that the
    /// task itself stays small (inlined, the futures of a delivery and a disposal made it 4 KB).
    async fn consume(self: Arc<Client>, channel: Arc<Channel>, mut consumer: Consumer) {
        while let Some(delivery) = consumer.next().await {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(e) => {
                    tracing::warn!(sid = %self.socket.id, "client queue failed: {e}");
                    break;
                }
            };
            let Delivery {
                delivery_tag, data, ..
            } = delivery;
            let delivery = Unsettled::new(channel.clone(), delivery_tag);
            if self.state().disposed {
                Box::pin(requeue(delivery)).await;
                continue;
            }
            Box::pin(self.on_delivery(delivery, &data)).await;
        }
        tracing::debug!(sid = %self.socket.id, "client queue consumer ended");
        // The queue was deleted or its channel closed: the client cannot get answers any more.
        if !self.state().disposed {
            tracing::warn!(sid = %self.socket.id, "client queue gone: disposing the client");
            Box::pin(self.dispose("client queue closed")).await;
            let _ = self.socket.clone().disconnect();
        }
    }

    async fn on_delivery(self: &Arc<Client>, delivery: Unsettled, data: &[u8]) {
        let message: Value = match serde_json::from_slice(data) {
            Ok(Value::Object(map)) => Value::Object(map),
            _ => {
                tracing::warn!(sid = %self.socket.id, "dropping a client-queue message that is not a JSON object");
                let _ = delivery.settle(Settle::Discard).await;
                return;
            }
        };
        if is_eol(&message) {
            let target = message.get("clientId").and_then(Value::as_str);
            let own = self.client_id();
            let _ = delivery.settle(Settle::Ack).await;
            if target.is_none_or(|t| t == own) {
                tracing::info!(sid = %self.socket.id, client = %own, "EOL: disposing the client");
                self.dispose("EOL").await;
                let _ = self.socket.clone().disconnect();
            } else {
                tracing::debug!(sid = %self.socket.id, "EOL for another client ignored");
            }
            return;
        }
        self.inspect(&message).await;
        self.emit(events::PUSH, &message);
        let Some(id) = message.get("correspondingMessageId").and_then(message_id) else {
            if let Err(e) = delivery.settle(Settle::Ack).await {
                tracing::warn!(sid = %self.socket.id, "cannot ack a delivery: {e}");
            }
            return;
        };
        let resend_at = Instant::now() + self.resend_interval();
        let (old, start, wake) = {
            let mut state = self.state();
            let pending = Pending {
                delivery,
                message,
                resend_at,
            };
            let old = state.pending.insert(id, pending);
            match state.resend_wake {
                None => {
                    state.resend_wake = Some(resend_at);
                    (old, true, false)
                }
                Some(at) => (old, false, resend_at < at),
            }
        };
        if start {
            tokio::spawn(self.clone().resend());
        } else if wake {
            self.resend_changed.notify_one();
        }
        if let Some(old) = old {
            // The same message id again (a redelivery): the newer delivery replaces it.
            let _ = old.delivery.settle(Settle::Ack).await;
        }
    }

    fn resend_interval(&self) -> Duration {
        let ms = self.shared.resend_interval_ms.load(Ordering::Relaxed);
        Duration::from_millis(ms.max(1))
    }

    /// Re-sends each unacked push every resend interval until the client acks it. One loop per
    /// client while it has pushes pending, rather than a timer task per push: a push acked
    /// within the interval (nearly all of them) then costs no task spawn, abort or timer. The
    /// loop ends when nothing is pending at its wake-up, or at disposal.
    async fn resend(self: Arc<Client>) {
        loop {
            let wake = {
                let mut state = self.state();
                let now = Instant::now();
                let interval = self.resend_interval();
                let mut next: Option<Instant> = None;
                if !state.disposed {
                    for pending in state.pending.values_mut() {
                        if pending.resend_at <= now {
                            tracing::debug!(sid = %self.socket.id, "re-sending an unacked push");
                            self.emit(events::PUSH, &pending.message);
                            pending.resend_at = now + interval;
                        }
                        next = Some(next.map_or(pending.resend_at, |n| n.min(pending.resend_at)));
                    }
                }
                state.resend_wake = next;
                match next {
                    Some(next) => next,
                    None => return,
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = self.resend_changed.notified() => {}
            }
        }
    }

    /// Logs the session in or out from what the backend answered.
    async fn inspect(self: &Arc<Client>, message: &Value) {
        let cn = message.get("cn").and_then(Value::as_str).unwrap_or("");
        let short = cn.rsplit('.').next().unwrap_or(cn);
        if short.ends_with("UserToken")
            || (short.starts_with("Authenticate") && short.ends_with("Response"))
        {
            let token_obj = match message.get("result") {
                Some(result @ Value::Object(_)) => result,
                _ => message,
            };
            let user_id = token_obj
                .get("user")
                .and_then(|u| u.get("ID").or_else(|| u.get("id")))
                .and_then(message_id);
            let token = token_obj.get("token").and_then(message_id);
            let (Some(user_id), Some(token)) = (user_id, token) else {
                tracing::debug!(sid = %self.socket.id, cn, "authentication answer without user and token");
                return;
            };
            let (reconnect, previous) = {
                let mut state = self.state();
                let previous = state.session.user_id.replace(user_id.clone());
                state.session.token = Some(token);
                state.session.device_id = token_obj
                    .get("deviceId")
                    .and_then(message_id)
                    .or(state.session.device_id.take());
                (state.session.existing_client_id.is_some(), previous)
            };
            tracing::info!(sid = %self.socket.id, "client logged in");
            if let Some(previous) = previous.filter(|p| *p != user_id) {
                self.socket.leave(adapter::user_room(&previous));
            }
            self.join_user_room();
            let (queue, cn) = if reconnect {
                (events::RECONNECT_QUEUE, events::RECONNECT_REQUEST)
            } else {
                (events::CONNECT_QUEUE, events::CONNECT_REQUEST)
            };
            let request = self.agent_request(cn);
            self.publish_internal(queue, &request).await;
            self.send_session();
        } else if (short == "ConnectResponse" || short == "ReconnectResponse")
            && message.get("clientId").is_none_or(Value::is_null)
        {
            tracing::info!(sid = %self.socket.id, cn, "no clientId in the answer: logging out");
            self.log_out();
        }
    }

    // ----- disposal -----

    /// Once: stops consuming, gives unacked pushes back to RabbitMQ, tells the `disconnect` agent.
    pub async fn dispose(&self, why: &str) {
        let (subscriptions, pending, request) = {
            let mut state = self.state();
            if std::mem::replace(&mut state.disposed, true) {
                return;
            }
            let request = state
                .connected
                .then(|| agent_request_of(&state.session, events::DISCONNECT_REQUEST));
            (
                std::mem::take(&mut state.subscriptions),
                std::mem::take(&mut state.pending),
                request,
            )
        };
        tracing::debug!(sid = %self.socket.id, why, "disposing the client");
        for (channel, tag) in &subscriptions {
            if let Err(e) = Rabbit::unsubscribe(channel, tag).await {
                tracing::debug!(tag, "cannot cancel the consumer: {e}");
            }
        }
        // The resend loop finds the client disposed and ends (and lets the client go).
        self.resend_changed.notify_one();
        for pending in pending.into_values() {
            requeue(pending.delivery).await;
        }
        if let Some(request) = request {
            self.publish_internal(events::DISCONNECT_QUEUE, &request)
                .await;
        }
    }

    fn agent_request(&self, cn: &str) -> Value {
        agent_request_of(&self.state().session, cn)
    }

    /// Publishes a message of the gateway's own (no client to tell if it fails).
    async fn publish_internal(&self, queue: &str, request: &Value) {
        let client_id = self.client_id();
        if let Err(e) = self
            .shared
            .rabbit
            .publish(queue, request.to_string().as_bytes(), Some(&client_id))
            .await
        {
            tracing::warn!(sid = %self.socket.id, queue, "cannot send to the agent: {e}");
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // A client that is never freed keeps its socket (and its buffers) alive: tests wait for
        // this line.
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        tracing::debug!(sid = %self.socket.id, client = %state.session.client_id, "client freed");
    }
}

fn agent_request_of(session: &Session, cn: &str) -> Value {
    let mut map = Map::new();
    map.insert("cn".into(), cn.into());
    map.insert("clientId".into(), session.client_id.clone().into());
    map.insert("userId".into(), session.user_id.clone().into());
    map.insert("token".into(), session.token.clone().into());
    map.insert("deviceId".into(), session.device_id.clone().into());
    if let Some(existing) = &session.existing_client_id {
        map.insert("existingClientId".into(), existing.clone().into());
        map.insert(
            "existingClientIds".into(),
            session.existing_client_ids.clone().into(),
        );
    }
    Value::Object(map)
}

async fn requeue(delivery: Unsettled) {
    if let Err(e) = delivery.settle(Settle::Requeue).await {
        tracing::debug!("cannot give a delivery back: {e}");
    }
}

fn is_eol(message: &Value) -> bool {
    message.get("EOL").is_some_and(truthy)
        || message
            .get("cn")
            .and_then(Value::as_str)
            .is_some_and(|cn| cn == "EOL" || cn.ends_with(".EOL"))
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
        && v.as_str() != Some("")
        && v.as_f64() != Some(0.0)
}

/// A message id (string or number) as text.
fn message_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn error_code(error: &ClientError) -> &'static str {
    match error {
        ClientError::NotConnected(_) => "notConnected",
        ClientError::NotLoggedIn(_) => "notLoggedIn",
        ClientError::Malformed(_) => "malformed",
        ClientError::UnknownEvent(_) => "unknownEvent",
        ClientError::Rabbit(RabbitError::Unroutable { .. }) => "unroutable",
        ClientError::Rabbit(_) => "unavailable",
    }
}
