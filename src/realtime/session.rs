//! One Centrifugo client connection's protocol state, independent of its transport: commands in,
//! [`Step`]s out (a reply to send, a close, or work for the engine whose result comes back
//! through a `*_done` method); timers through [`Session::next_deadline`] and [`Session::tick`].
//! Nothing here does I/O, so every rule is unit-tested with explicit clocks.
//!
//! Rules are Centrifugo's (centrifugal/centrifuge `client.go`; `shared/reference/centrifugo.md`
//! §1): connect first (anything else before it, or a second connect, closes with 3501); an
//! expired token is error 109, any other bad token closes with 3500; pings every 25 s, answered
//! with `{}` within 8 s on bidirectional transports (else 3012), an unasked-for pong closes with
//! 3501; no connect within 10 s closes with 3502; an expiring connection not refreshed closes
//! with 3005 25 s after its expiry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;

use super::channel::{self, ChannelError};
use super::hub::{PubMsg, SubId};
use super::jwt::{self, TokenError};
use super::protocol::{
    self, ClientInfo, Command, ConnectRequest, ConnectResult, Disconnect, ErrorReply, Method,
    StreamPosition, SubscribeRecovery, SubscribeRequest, SubscribeResult,
};
use crate::config::RealtimeConfig;

/// `client.ping_interval`.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
/// `client.pong_timeout`.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(8);
/// `client.stale_close_delay`.
pub const STALE_CLOSE_DELAY: Duration = Duration::from_secs(10);
/// `client.expired_close_delay`.
pub const EXPIRED_CLOSE_DELAY: u64 = 25;
/// `client.channel_limit`.
pub const CHANNEL_LIMIT: usize = 128;

/// Which kind of transport the session is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/connection/websocket`: commands and pongs from the client.
    Bidirectional,
    /// `/connection/uni_sse`: one connect request, server-side subscriptions only, no pongs.
    Unidirectional,
}

/// What the transport does next.
#[derive(Debug)]
pub enum Step {
    /// Nothing to send.
    None,
    /// Send this reply.
    Reply(String),
    /// Send the reply, if any, then close with this code.
    Close(Option<String>, Disconnect),
    /// Subscribe these channels server-side, then call [`Session::connect_done`].
    Connect { id: u32, subs: Vec<SubscribePlan> },
    /// Subscribe, then call [`Session::subscribe_done`].
    Subscribe { id: u32, plan: SubscribePlan },
    /// Drop the subscription, then send the reply.
    Unsubscribe {
        id: u32,
        channel: String,
        sub: Option<SubId>,
    },
}

/// A subscription to make.
#[derive(Debug, Clone)]
pub struct SubscribePlan {
    pub channel: String,
    /// History and recovery are on for it.
    pub recoverable: bool,
    /// The client asked to recover from here.
    pub recover: Option<StreamPosition>,
    /// Keep presence for it.
    pub presence: bool,
}

/// What the engine made of a [`SubscribePlan`].
#[derive(Debug, Clone)]
pub struct Subscribed {
    pub sub: SubId,
    pub recovered: bool,
    /// Publications for the reply (the recovered ones).
    pub publications: Vec<PubMsg>,
    /// Publications to push after the reply.
    pub then: Vec<PubMsg>,
    /// The reply's offset: the client's own if recovered, else the stream's top.
    pub offset: u64,
    pub epoch: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    Subscribing,
    Subscribed(SubId),
}

#[derive(Debug)]
struct Sub {
    state: SubState,
    /// Made from the token (or uni_sse's request): a lost position closes the connection.
    server_side: bool,
}

#[derive(Debug)]
enum Ping {
    /// The next ping is due at this time.
    Due(Instant),
    /// A ping was sent; its pong is due by then.
    AwaitingPong(Instant),
}

#[derive(Debug)]
struct Connected {
    client: String,
    user: String,
    info: Option<Box<RawValue>>,
    /// Unix seconds.
    expires_at: Option<u64>,
    subs: HashMap<String, Sub>,
    ping: Ping,
}

#[derive(Debug)]
enum State {
    /// Waiting for connect until the stale deadline.
    Connecting {
        stale_at: Instant,
    },
    /// Connect is being done (server-side subscriptions).
    Connecting2(Box<Connected>),
    Connected(Box<Connected>),
    /// Closed; the client id is kept for the clean-up of its presence.
    Closed {
        client: Option<String>,
    },
}

pub struct Session {
    config: Arc<RealtimeConfig>,
    transport: Transport,
    state: State,
}

/// What a client is, for presence.
pub fn client_info(user: &str, client: &str, info: Option<&RawValue>) -> String {
    let info = ClientInfo {
        user: user.to_string(),
        client: client.to_string(),
        conn_info: info.map(|i| i.to_owned()),
        chan_info: None,
    };
    serde_json::to_string(&info).unwrap_or_default()
}

/// A new client id (a random UUID v4, as Centrifugo's).
pub fn new_client_id() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Session {
    pub fn new(config: Arc<RealtimeConfig>, transport: Transport, now: Instant) -> Session {
        Session {
            config,
            transport,
            state: State::Connecting {
                stale_at: now + STALE_CLOSE_DELAY,
            },
        }
    }

    /// The client id, once connected.
    pub fn client(&self) -> Option<&str> {
        match &self.state {
            State::Connected(c) | State::Connecting2(c) => Some(&c.client),
            State::Closed { client } => client.as_deref(),
            State::Connecting { .. } => None,
        }
    }

    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Connected(c) | State::Connecting2(c) => Some(&c.user),
            _ => None,
        }
    }

    /// The ClientInfo JSON of this connection, for presence.
    pub fn info_json(&self) -> Option<String> {
        match &self.state {
            State::Connected(c) | State::Connecting2(c) => {
                Some(client_info(&c.user, &c.client, c.info.as_deref()))
            }
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// The subscription id of `channel` if subscribed (to check a delivery is still wanted).
    pub fn subscribed(&self, channel: &str) -> Option<SubId> {
        match &self.state {
            State::Connected(c) => match c.subs.get(channel)?.state {
                SubState::Subscribed(id) => Some(id),
                SubState::Subscribing => None,
            },
            _ => None,
        }
    }

    /// Every subscription made, for clean-up when the connection ends.
    pub fn subscriptions(&self) -> Vec<(String, SubId)> {
        match &self.state {
            State::Connected(c) | State::Connecting2(c) => c
                .subs
                .iter()
                .filter_map(|(ch, s)| match s.state {
                    SubState::Subscribed(id) => Some((ch.clone(), id)),
                    SubState::Subscribing => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn close(&mut self, reply: Option<String>, disconnect: Disconnect) -> Step {
        let client = self.client().map(str::to_string);
        self.state = State::Closed { client };
        Step::Close(reply, disconnect)
    }

    /// A frame that could not be read, or was too big.
    pub fn bad_frame(&mut self, disconnect: Disconnect) -> Step {
        self.close(None, disconnect)
    }

    /// One command from the client.
    pub fn command(&mut self, command: Command, now: Instant, unix: u64) -> Step {
        if self.is_closed() {
            return Step::None;
        }
        match command {
            Command::Pong => self.pong(now),
            Command::Send => Step::None,
            Command::Unknown { id } => self.when_connected(|_| {
                Step::Reply(protocol::error_reply(id, ErrorReply::METHOD_NOT_FOUND))
            }),
            Command::Call { id, method } => match method {
                Method::Connect(request) => self.connect(id, request, now, unix),
                Method::Subscribe(request) => self.subscribe(id, request),
                Method::Unsubscribe(request) => self.unsubscribe(id, request.channel),
                Method::Refresh(request) => self.refresh(id, &request.token, unix),
                Method::Publish(r) => {
                    self.read_only(id, &r.channel, |_| ErrorReply::PERMISSION_DENIED)
                }
                Method::History(r) => self.read_only(id, &r.channel, |ns| {
                    if ns.history() {
                        ErrorReply::PERMISSION_DENIED
                    } else {
                        ErrorReply::NOT_AVAILABLE
                    }
                }),
                Method::Presence(r) | Method::PresenceStats(r) => {
                    self.read_only(id, &r.channel, |ns| {
                        if ns.presence {
                            ErrorReply::PERMISSION_DENIED
                        } else {
                            ErrorReply::NOT_AVAILABLE
                        }
                    })
                }
                Method::Unsupported(_) => self.when_connected(|_| {
                    Step::Reply(protocol::error_reply(id, ErrorReply::METHOD_NOT_FOUND))
                }),
            },
        }
    }

    /// Runs `f` if connected; anything before connect closes with 3501.
    fn when_connected(&mut self, f: impl FnOnce(&mut Connected) -> Step) -> Step {
        match &mut self.state {
            State::Connected(c) => f(c),
            _ => self.close(None, Disconnect::BAD_REQUEST),
        }
    }

    /// Client-side publish, history and presence: our namespaces grant none of them to
    /// subscribers (Centrifugo's `allow_*_for_subscriber` are off), so the answer is an error.
    fn read_only(
        &mut self,
        id: u32,
        channel: &str,
        error: impl FnOnce(&crate::config::NamespaceConfig) -> ErrorReply,
    ) -> Step {
        let config = self.config.clone();
        self.when_connected(|_| {
            let e = match channel::namespace(&config, channel) {
                Ok(ns) => error(ns),
                Err(ChannelError::BadName) => ErrorReply::BAD_REQUEST,
                Err(ChannelError::UnknownNamespace) => ErrorReply::UNKNOWN_CHANNEL,
            };
            Step::Reply(protocol::error_reply(id, e))
        })
    }

    fn connect(&mut self, id: u32, request: ConnectRequest, now: Instant, unix: u64) -> Step {
        if !matches!(self.state, State::Connecting { .. }) {
            return self.close(None, Disconnect::BAD_REQUEST);
        }
        if request.token.is_empty() {
            // No credentials, no connect proxy, no anonymous access.
            return self.close(None, Disconnect::BAD_REQUEST);
        }
        let secret = self.config.hmac_secret_key.as_deref().unwrap_or("");
        let claims = match jwt::verify(&request.token, secret.as_bytes(), unix) {
            Ok(claims) => claims,
            Err(TokenError::Expired) => {
                tracing::info!("realtime connect refused: token expired (109)");
                return self.connect_error(id, ErrorReply::TOKEN_EXPIRED);
            }
            Err(e) => {
                tracing::info!("realtime connect refused: {e} (3500)");
                return self.close(None, Disconnect::INVALID_TOKEN);
            }
        };
        let mut channels = claims.channels.clone();
        if self.transport == Transport::Unidirectional {
            // uni_sse: requested channels the user may join become server-side subscriptions;
            // others are ignored silently; an unknown namespace closes with 3501.
            for channel in request.subs.keys() {
                match channel::namespace(&self.config, channel) {
                    Ok(ns) if channel::may_subscribe(ns, channel, &claims.user) => {
                        if !channels.contains(channel) {
                            channels.push(channel.clone());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return self.close(None, Disconnect::BAD_REQUEST),
                }
            }
        }
        if channels.len() > CHANNEL_LIMIT {
            return self.close(None, Disconnect::CHANNEL_LIMIT);
        }
        let mut plans = Vec::new();
        let mut subs = HashMap::new();
        for channel in channels {
            let ns = match channel::namespace(&self.config, &channel) {
                Ok(ns) => ns,
                Err(ChannelError::UnknownNamespace) => {
                    return self.connect_error(id, ErrorReply::UNKNOWN_CHANNEL);
                }
                Err(ChannelError::BadName) => {
                    return self.connect_error(id, ErrorReply::BAD_REQUEST);
                }
            };
            let recoverable = ns.history() && ns.force_recovery;
            let recover = request
                .subs
                .get(&channel)
                .filter(|r| r.recover && recoverable)
                .map(|r: &SubscribeRecovery| StreamPosition {
                    offset: r.offset,
                    epoch: r.epoch.clone(),
                });
            subs.insert(
                channel.clone(),
                Sub {
                    state: SubState::Subscribing,
                    server_side: true,
                },
            );
            plans.push(SubscribePlan {
                channel,
                recoverable,
                recover,
                presence: ns.presence,
            });
        }
        let first_ping = match self.transport {
            // The first ping at random in [P/2, P], so reconnect storms do not ping together.
            Transport::Bidirectional | Transport::Unidirectional => {
                let half = PING_INTERVAL / 2;
                now + half + half.mul_f64(fastrand::f64())
            }
        };
        self.state = State::Connecting2(Box::new(Connected {
            client: new_client_id(),
            user: claims.user,
            info: claims.info,
            expires_at: claims.expires_at,
            subs,
            ping: Ping::Due(first_ping),
        }));
        Step::Connect { id, subs: plans }
    }

    /// A failed connect: an error reply on bidirectional transports (the client decides to
    /// retry); on uni ones, which cannot reply, a disconnect (an expired token as 3005
    /// "connection expired", anything else as 3501).
    fn connect_error(&mut self, id: u32, error: ErrorReply) -> Step {
        match self.transport {
            Transport::Bidirectional => Step::Reply(protocol::error_reply(id, error)),
            Transport::Unidirectional if error == ErrorReply::TOKEN_EXPIRED => {
                self.close(None, Disconnect::EXPIRED)
            }
            Transport::Unidirectional => self.close(None, Disconnect::BAD_REQUEST),
        }
    }

    /// The server-side subscriptions are made (each `Ok`, or `Err` if it failed): the connect
    /// reply (uni transports send it as the first push, without `id`).
    pub fn connect_done(
        &mut self,
        id: u32,
        results: Vec<(SubscribePlan, Result<Subscribed, ()>)>,
        unix: u64,
    ) -> Step {
        let State::Connecting2(mut c) =
            std::mem::replace(&mut self.state, State::Closed { client: None })
        else {
            return Step::None;
        };
        let mut subs = BTreeMap::new();
        let mut then = Vec::new();
        for (plan, result) in results {
            match result {
                Ok(s) => {
                    if let Some(sub) = c.subs.get_mut(&plan.channel) {
                        sub.state = SubState::Subscribed(s.sub);
                    }
                    for p in &s.then {
                        then.push(protocol::pub_push(&plan.channel, &raw(p)));
                    }
                    subs.insert(plan.channel.clone(), subscribe_result(&plan, s));
                }
                Err(()) => {
                    // Centrifugo fails the connect when a server-side subscription fails.
                    self.state = State::Connecting2(c);
                    return self.close(
                        Some(protocol::error_reply(id, ErrorReply::INTERNAL)),
                        Disconnect::INTERNAL,
                    );
                }
            }
        }
        let (expires, ttl) = match c.expires_at {
            Some(at) => (true, at.saturating_sub(unix).max(1)),
            None => (false, 0),
        };
        let result = ConnectResult {
            client: c.client.clone(),
            version: protocol::VERSION,
            expires,
            ttl,
            subs,
            ping: PING_INTERVAL.as_secs() as u32,
            pong: self.transport == Transport::Bidirectional,
            session: match self.transport {
                Transport::Unidirectional => c.client.clone(),
                Transport::Bidirectional => String::new(),
            },
            node: String::new(),
        };
        tracing::debug!(
            client = c.client,
            user = c.user,
            "realtime client connected"
        );
        self.state = State::Connected(c);
        let reply = match self.transport {
            Transport::Bidirectional => protocol::reply(id, "connect", &result),
            Transport::Unidirectional => {
                let body = serde_json::to_string(&result).unwrap_or_default();
                format!("{{\"connect\":{body}}}")
            }
        };
        if then.is_empty() {
            return Step::Reply(reply);
        }
        let then = then.into_iter().map(|p| self.push(&p));
        Step::Reply(
            std::iter::once(reply)
                .chain(then)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    /// A push in this transport's form (wrapped on bidirectional ones).
    pub fn push(&self, bare: &str) -> String {
        match self.transport {
            Transport::Bidirectional => protocol::wrap_push(bare),
            Transport::Unidirectional => bare.to_string(),
        }
    }

    fn subscribe(&mut self, id: u32, request: SubscribeRequest) -> Step {
        if request.channel.is_empty() {
            return self.close(None, Disconnect::BAD_REQUEST);
        }
        let config = self.config.clone();
        let transport = self.transport;
        self.when_connected(|c| {
            let error = |e| Step::Reply(protocol::error_reply(id, e));
            if transport == Transport::Unidirectional {
                return error(ErrorReply::METHOD_NOT_FOUND);
            }
            let ns = match channel::namespace(&config, &request.channel) {
                Ok(ns) => ns,
                Err(ChannelError::BadName) => return error(ErrorReply::LIMIT_EXCEEDED),
                Err(ChannelError::UnknownNamespace) => return error(ErrorReply::UNKNOWN_CHANNEL),
            };
            if c.subs.contains_key(&request.channel) {
                return error(ErrorReply::ALREADY_SUBSCRIBED);
            }
            if c.subs.len() >= CHANNEL_LIMIT {
                return error(ErrorReply::LIMIT_EXCEEDED);
            }
            if !channel::may_subscribe(ns, &request.channel, &c.user) {
                tracing::info!(
                    user = c.user,
                    channel = request.channel,
                    "realtime subscribe refused: permission denied (103)"
                );
                return error(ErrorReply::PERMISSION_DENIED);
            }
            let recoverable = ns.history() && ns.force_recovery;
            let recover = (recoverable && request.recover).then(|| StreamPosition {
                offset: request.offset,
                epoch: request.epoch.clone(),
            });
            c.subs.insert(
                request.channel.clone(),
                Sub {
                    state: SubState::Subscribing,
                    server_side: false,
                },
            );
            Step::Subscribe {
                id,
                plan: SubscribePlan {
                    channel: request.channel,
                    recoverable,
                    recover,
                    presence: ns.presence,
                },
            }
        })
    }

    /// The subscription is made (or failed): the reply, and pushes after it.
    pub fn subscribe_done(
        &mut self,
        id: u32,
        plan: &SubscribePlan,
        result: Result<Subscribed, ()>,
    ) -> Step {
        let State::Connected(c) = &mut self.state else {
            return Step::None;
        };
        match result {
            Ok(s) => {
                if let Some(sub) = c.subs.get_mut(&plan.channel) {
                    sub.state = SubState::Subscribed(s.sub);
                }
                let then: Vec<String> = s
                    .then
                    .iter()
                    .map(|p| protocol::wrap_push(&protocol::pub_push(&plan.channel, &raw(p))))
                    .collect();
                let reply = protocol::reply(id, "subscribe", &subscribe_result(plan, s));
                Step::Reply(
                    std::iter::once(reply)
                        .chain(then)
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            }
            Err(()) => {
                c.subs.remove(&plan.channel);
                Step::Reply(protocol::error_reply(id, ErrorReply::INTERNAL))
            }
        }
    }

    fn unsubscribe(&mut self, id: u32, channel: String) -> Step {
        self.when_connected(|c| {
            let sub = match c.subs.remove(&channel) {
                Some(Sub {
                    state: SubState::Subscribed(sub),
                    ..
                }) => Some(sub),
                _ => None,
            };
            Step::Unsubscribe { id, channel, sub }
        })
    }

    /// The reply to an unsubscribe once done.
    pub fn unsubscribe_reply(id: u32) -> String {
        format!("{{\"id\":{id},\"unsubscribe\":{{}}}}")
    }

    /// The hub dropped `channel`'s subscription after a gap: a client-side subscription is
    /// told to resubscribe with recovery (unsubscribe push 2500); a server-side one closes the
    /// connection with 3010, and the client reconnects with recovery.
    pub fn position_lost(&mut self, channel: &str) -> Step {
        let State::Connected(c) = &mut self.state else {
            return Step::None;
        };
        match c.subs.remove(channel) {
            Some(Sub {
                server_side: false, ..
            }) => {
                let (code, reason) = protocol::UNSUBSCRIBE_INSUFFICIENT_STATE;
                Step::Reply(self.push(&protocol::unsubscribe_push(channel, code, reason)))
            }
            Some(Sub {
                server_side: true, ..
            }) => self.close(None, Disconnect::INSUFFICIENT_STATE),
            None => Step::None,
        }
    }

    fn refresh(&mut self, id: u32, token: &str, unix: u64) -> Step {
        if token.is_empty() {
            return self.close(None, Disconnect::BAD_REQUEST);
        }
        let secret = self.config.hmac_secret_key.clone().unwrap_or_default();
        let State::Connected(c) = &mut self.state else {
            return self.close(None, Disconnect::BAD_REQUEST);
        };
        match jwt::verify(token, secret.as_bytes(), unix) {
            Ok(claims) if claims.user == c.user => {
                c.expires_at = claims.expires_at;
                let reply = match claims.expires_at {
                    Some(at) => format!(
                        "{{\"id\":{id},\"refresh\":{{\"expires\":true,\"ttl\":{}}}}}",
                        at.saturating_sub(unix).max(1)
                    ),
                    None => format!("{{\"id\":{id},\"refresh\":{{}}}}"),
                };
                Step::Reply(reply)
            }
            Err(TokenError::Expired) => self.close(None, Disconnect::EXPIRED),
            _ => self.close(None, Disconnect::INVALID_TOKEN),
        }
    }

    fn pong(&mut self, now: Instant) -> Step {
        match &mut self.state {
            State::Connected(c) if matches!(c.ping, Ping::AwaitingPong(_)) => {
                c.ping = Ping::Due(now + PING_INTERVAL);
                Step::None
            }
            // An unasked-for pong, or one before connect.
            _ => self.close(None, Disconnect::BAD_REQUEST),
        }
    }

    /// When [`Session::tick`] has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Connecting { stale_at } => Some(*stale_at),
            State::Connected(c) => Some(match c.ping {
                Ping::Due(at) | Ping::AwaitingPong(at) => at,
            }),
            State::Connecting2(_) | State::Closed { .. } => None,
        }
    }

    /// The unix time at which the connection expires and is closed if not refreshed.
    pub fn expiry_close_at(&self) -> Option<u64> {
        match &self.state {
            State::Connected(c) => c.expires_at.map(|at| at + EXPIRED_CLOSE_DELAY),
            _ => None,
        }
    }

    /// Time has passed: a ping to send, or a close (stale, no pong, expired).
    pub fn tick(&mut self, now: Instant, unix: u64) -> Step {
        if let Some(at) = self.expiry_close_at()
            && unix >= at
        {
            return self.close(None, Disconnect::EXPIRED);
        }
        let transport = self.transport;
        match &mut self.state {
            State::Connecting { stale_at } if now >= *stale_at => {
                self.close(None, Disconnect::STALE)
            }
            State::Connected(c) => match c.ping {
                Ping::Due(at) if now >= at => {
                    c.ping = match transport {
                        Transport::Bidirectional => Ping::AwaitingPong(now + PONG_TIMEOUT),
                        Transport::Unidirectional => Ping::Due(now + PING_INTERVAL),
                    };
                    Step::Reply("{}".to_string())
                }
                Ping::AwaitingPong(at) if now >= at => self.close(None, Disconnect::NO_PONG),
                _ => Step::None,
            },
            _ => Step::None,
        }
    }
}

/// A publication's JSON as a raw value (it came from our own script: valid JSON).
fn raw(p: &PubMsg) -> Box<RawValue> {
    RawValue::from_string(p.json.to_string()).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

fn subscribe_result(plan: &SubscribePlan, s: Subscribed) -> SubscribeResult {
    if !plan.recoverable {
        return SubscribeResult::default();
    }
    SubscribeResult {
        recoverable: true,
        positioned: true,
        epoch: s.epoch,
        offset: s.offset,
        recovered: s.recovered,
        was_recovering: plan.recover.is_some(),
        publications: s.publications.iter().map(raw).collect(),
        ..SubscribeResult::default()
    }
}

#[cfg(test)]
mod tests;
