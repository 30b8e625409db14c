//! Centrifugo's client protocol in JSON (centrifugal/protocol `client.proto`, as centrifuge-js
//! 5.x speaks it): commands in, replies and pushes out, error and disconnect codes.
//!
//! A frame is one or more JSON objects separated by `\n` ([`split_frame`]). `bytes` fields
//! (`data`, `info`) are raw embedded JSON, kept as [`RawValue`] and never re-encoded. Zero, false
//! and empty fields are left out of what we send, as proto3 JSON does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Raw JSON as received (`data`, `info`).
pub type Raw = Box<RawValue>;

/// One client command. A command with neither `id` nor method is a pong.
#[derive(Debug)]
pub enum Command {
    /// `{}`: the answer to a server ping.
    Pong,
    /// A command with an id and a method.
    Call { id: u32, method: Method },
    /// A command without an id (only `send` may have none): nothing to answer.
    Send,
    /// An id with no method we know: error 104.
    Unknown { id: u32 },
}

#[derive(Debug)]
pub enum Method {
    Connect(ConnectRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(ChannelRequest),
    Publish(PublishRequest),
    Presence(ChannelRequest),
    PresenceStats(ChannelRequest),
    History(HistoryRequest),
    Refresh(RefreshRequest),
    /// `rpc`, `sub_refresh` and other methods we answer with an error.
    Unsupported(&'static str),
}

/// Why a command could not be read: the connection is closed with 3501 "bad request".
#[derive(Debug, thiserror::Error)]
pub enum BadCommand {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a command must be a JSON object")]
    NotAnObject,
}

/// The wire form of a command: every method optional, the first one present wins.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    id: u32,
    connect: Option<ConnectRequest>,
    subscribe: Option<SubscribeRequest>,
    unsubscribe: Option<ChannelRequest>,
    publish: Option<PublishRequest>,
    presence: Option<ChannelRequest>,
    presence_stats: Option<ChannelRequest>,
    history: Option<HistoryRequest>,
    refresh: Option<RefreshRequest>,
    rpc: Option<serde::de::IgnoredAny>,
    sub_refresh: Option<serde::de::IgnoredAny>,
    send: Option<serde::de::IgnoredAny>,
}

impl Command {
    /// Parses one JSON object of a frame.
    pub fn parse(line: &str) -> Result<Command, BadCommand> {
        if !line.trim_start().starts_with('{') {
            return Err(BadCommand::NotAnObject);
        }
        let w: Wire = serde_json::from_str(line)?;
        let method = if let Some(r) = w.connect {
            Method::Connect(r)
        } else if let Some(r) = w.subscribe {
            Method::Subscribe(r)
        } else if let Some(r) = w.unsubscribe {
            Method::Unsubscribe(r)
        } else if let Some(r) = w.publish {
            Method::Publish(r)
        } else if let Some(r) = w.presence {
            Method::Presence(r)
        } else if let Some(r) = w.presence_stats {
            Method::PresenceStats(r)
        } else if let Some(r) = w.history {
            Method::History(r)
        } else if let Some(r) = w.refresh {
            Method::Refresh(r)
        } else if w.rpc.is_some() {
            Method::Unsupported("rpc")
        } else if w.sub_refresh.is_some() {
            Method::Unsupported("sub_refresh")
        } else if w.send.is_some() {
            return Ok(if w.id == 0 {
                Command::Send
            } else {
                Command::Call {
                    id: w.id,
                    method: Method::Unsupported("send"),
                }
            });
        } else if w.id == 0 {
            return Ok(Command::Pong);
        } else {
            return Ok(Command::Unknown { id: w.id });
        };
        if w.id == 0 {
            // Every method but send needs an id to be answered with.
            return Err(BadCommand::NotAnObject);
        }
        Ok(Command::Call { id: w.id, method })
    }
}

/// The JSON objects of one text frame: separated by `\n`, a trailing `\n` allowed, blank lines
/// skipped.
pub fn split_frame(frame: &str) -> impl Iterator<Item = &str> {
    frame.split('\n').filter(|l| !l.trim().is_empty())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConnectRequest {
    pub token: String,
    pub data: Option<Raw>,
    pub subs: BTreeMap<String, SubscribeRecovery>,
    pub name: String,
    pub version: String,
}

/// `connect.subs[channel]` (and uni_sse's): where the client was in a server-side subscription.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SubscribeRecovery {
    pub recover: bool,
    pub offset: u64,
    pub epoch: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    pub channel: String,
    pub token: String,
    pub recover: bool,
    pub offset: u64,
    pub epoch: String,
    pub positioned: bool,
    pub recoverable: bool,
    pub join_leave: bool,
    pub flag: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChannelRequest {
    pub channel: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    pub channel: String,
    pub data: Option<Raw>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    pub channel: String,
    pub limit: i32,
    pub since: Option<StreamPosition>,
    pub reverse: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    pub token: String,
}

/// A position in a channel's stream.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPosition {
    pub offset: u64,
    pub epoch: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `ClientInfo`: who a connection is (presence, publication info).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientInfo {
    pub user: String,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub conn_info: Option<Raw>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chan_info: Option<Raw>,
}

/// A publication as stored in history and sent to clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
    pub data: Raw,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize)]
pub struct ConnectResult {
    pub client: String,
    pub version: &'static str,
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub ttl: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subs: BTreeMap<String, SubscribeResult>,
    pub ping: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub pong: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// The server version we answer with (`connect.version`, `info`).
pub const VERSION: &str = concat!("activestack-gateway ", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Default, Clone, Serialize)]
pub struct SubscribeResult {
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub ttl: u64,
    #[serde(skip_serializing_if = "is_false")]
    pub recoverable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// The publications, as JSON.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Raw>,
    #[serde(skip_serializing_if = "is_false")]
    pub recovered: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    #[serde(skip_serializing_if = "is_false")]
    pub positioned: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub was_recovering: bool,
}

/// A reply error (`{"id":N,"error":{...}}`), code as Centrifugo's (centrifugal/centrifuge
/// `errors.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ErrorReply {
    pub code: u32,
    pub message: &'static str,
    #[serde(skip_serializing_if = "is_false")]
    pub temporary: bool,
}

impl ErrorReply {
    const fn new(code: u32, message: &'static str) -> ErrorReply {
        ErrorReply {
            code,
            message,
            temporary: false,
        }
    }
    pub const INTERNAL: ErrorReply = ErrorReply {
        code: 100,
        message: "internal server error",
        temporary: true,
    };
    pub const UNAUTHORIZED: ErrorReply = ErrorReply::new(101, "unauthorized");
    pub const UNKNOWN_CHANNEL: ErrorReply = ErrorReply::new(102, "unknown channel");
    pub const PERMISSION_DENIED: ErrorReply = ErrorReply::new(103, "permission denied");
    pub const METHOD_NOT_FOUND: ErrorReply = ErrorReply::new(104, "method not found");
    pub const ALREADY_SUBSCRIBED: ErrorReply = ErrorReply::new(105, "already subscribed");
    pub const LIMIT_EXCEEDED: ErrorReply = ErrorReply::new(106, "limit exceeded");
    pub const BAD_REQUEST: ErrorReply = ErrorReply::new(107, "bad request");
    pub const NOT_AVAILABLE: ErrorReply = ErrorReply::new(108, "not available");
    pub const TOKEN_EXPIRED: ErrorReply = ErrorReply::new(109, "token expired");
    pub const UNRECOVERABLE_POSITION: ErrorReply = ErrorReply::new(112, "unrecoverable position");
}

/// Why the server closes a connection (centrifugal/centrifuge `disconnect.go`). On a websocket
/// it is the close frame's code and reason; on uni_sse a last `{"disconnect":...}` push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Disconnect {
    pub code: u16,
    pub reason: &'static str,
}

impl Disconnect {
    pub const SHUTDOWN: Disconnect = Disconnect {
        code: 3001,
        reason: "shutdown",
    };
    pub const INTERNAL: Disconnect = Disconnect {
        code: 3004,
        reason: "internal server error",
    };
    pub const EXPIRED: Disconnect = Disconnect {
        code: 3005,
        reason: "connection expired",
    };
    pub const INSUFFICIENT_STATE: Disconnect = Disconnect {
        code: 3010,
        reason: "insufficient state",
    };
    pub const NO_PONG: Disconnect = Disconnect {
        code: 3012,
        reason: "no pong",
    };
    pub const INVALID_TOKEN: Disconnect = Disconnect {
        code: 3500,
        reason: "invalid token",
    };
    pub const BAD_REQUEST: Disconnect = Disconnect {
        code: 3501,
        reason: "bad request",
    };
    pub const STALE: Disconnect = Disconnect {
        code: 3502,
        reason: "stale",
    };
    pub const CHANNEL_LIMIT: Disconnect = Disconnect {
        code: 3505,
        reason: "channel limit",
    };
    pub const PERMISSION_DENIED: Disconnect = Disconnect {
        code: 3507,
        reason: "permission denied",
    };
    /// Over the frame size limit: a websocket close code, not a Centrifugo one.
    pub const MESSAGE_TOO_BIG: Disconnect = Disconnect {
        code: 1009,
        reason: "message too big",
    };
}

/// Unsubscribe push code 2500: the client resubscribes with recovery.
pub const UNSUBSCRIBE_INSUFFICIENT_STATE: (u16, &str) = (2500, "insufficient state");

/// `{"id":N,"<method>":<result>}`.
pub fn reply<T: Serialize>(id: u32, method: &str, result: &T) -> String {
    let result = serde_json::to_string(result).unwrap_or_else(|_| "{}".to_string());
    format!("{{\"id\":{id},\"{method}\":{result}}}")
}

/// `{"id":N,"error":{...}}`.
pub fn error_reply(id: u32, error: ErrorReply) -> String {
    let error = serde_json::to_string(&error).unwrap_or_else(|_| "{}".to_string());
    format!("{{\"id\":{id},\"error\":{error}}}")
}

/// A channel name as a JSON string.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// The bare push of a publication (`{"channel":..,"pub":..}`), as uni transports send it; the
/// bidirectional form wraps it in `{"push":..}`.
pub fn pub_push(channel: &str, publication: &RawValue) -> String {
    format!(
        "{{\"channel\":{},\"pub\":{}}}",
        json_string(channel),
        publication.get()
    )
}

/// `{"channel":..,"unsubscribe":{"code":..,"reason":..}}` (bare).
pub fn unsubscribe_push(channel: &str, code: u16, reason: &str) -> String {
    format!(
        "{{\"channel\":{},\"unsubscribe\":{{\"code\":{code},\"reason\":{}}}}}",
        json_string(channel),
        json_string(reason)
    )
}

/// `{"push":<bare>}`.
pub fn wrap_push(bare: &str) -> String {
    format!("{{\"push\":{bare}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batched_frame_is_read_in_order() {
        let frame = "{\"connect\":{\"token\":\"t\",\"name\":\"js\"},\"id\":1}\n{\"subscribe\":{\"channel\":\"personal:#42\"},\"id\":2}\n";
        let commands: Vec<Command> = split_frame(frame)
            .map(|l| Command::parse(l).unwrap())
            .collect();
        assert!(matches!(
            &commands[0],
            Command::Call { id: 1, method: Method::Connect(c) } if c.token == "t"
        ));
        assert!(matches!(
            &commands[1],
            Command::Call { id: 2, method: Method::Subscribe(s) } if s.channel == "personal:#42"
        ));
    }

    #[test]
    fn empty_object_is_a_pong_and_bad_input_is_an_error() {
        assert!(matches!(Command::parse("{}").unwrap(), Command::Pong));
        assert!(matches!(
            Command::parse("{\"id\":3}").unwrap(),
            Command::Unknown { id: 3 }
        ));
        assert!(Command::parse("[1]").is_err());
        assert!(Command::parse("{\"id\":-1}").is_err());
        assert!(Command::parse("{\"subscribe\":{\"channel\":\"a\"}}").is_err());
        assert!(Command::parse("{\"id\":1,\"subscribe\":{\"channel\":5}}").is_err());
    }

    #[test]
    fn results_leave_out_empty_fields() {
        let r = SubscribeResult {
            recoverable: true,
            positioned: true,
            epoch: "ab".into(),
            offset: 7,
            ..SubscribeResult::default()
        };
        assert_eq!(
            reply(2, "subscribe", &r),
            r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"ab","offset":7,"positioned":true}}"#
        );
        assert_eq!(
            reply(2, "subscribe", &SubscribeResult::default()),
            r#"{"id":2,"subscribe":{}}"#
        );
        assert_eq!(
            error_reply(5, ErrorReply::TOKEN_EXPIRED),
            r#"{"id":5,"error":{"code":109,"message":"token expired"}}"#
        );
        let raw = RawValue::from_string(r#"{"data":{"n":1},"offset":3}"#.into()).unwrap();
        assert_eq!(
            wrap_push(&pub_push("personal:#4\"2", &raw)),
            r#"{"push":{"channel":"personal:#4\"2","pub":{"data":{"n":1},"offset":3}}}"#
        );
    }
}
