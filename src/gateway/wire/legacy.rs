//! socket.io 0.9 (protocol revision 1), what the ActiveStack JS and iOS SDKs speak
//! (socket.io-client 0.9.9 / 0.9.17): packets, the handshake body, and session ids that any
//! worker can verify.
//!
//! Sources: socket.io 0.9.17 `lib/parser.js`, `lib/manager.js`, `lib/transport.js`,
//! `lib/namespace.js`, and socket.io-client 0.9.17 `lib/parser.js`, `lib/socket.js`,
//! `lib/transport.js`, `lib/transports/websocket.js` (the 0.9.9 client differs from 0.9.17
//! only in whitespace and cross-domain XHR flags there).
//!
//! # Packets
//! `type:id:endpoint[:data]`, one per websocket message (the client's websocket transport sends
//! each packet alone and the server's decodes each message as one packet; the `\u{fffd}`-framed
//! payloads are for the polling transports). `id` is empty or digits, with a `+` when the
//! sender wants the answer's data (below); `endpoint` is the namespace, empty for the default
//! one. Types: 0 disconnect, 1 connect, 2 heartbeat, 3 message, 4 json, 5 event
//! (`{"name":"..","args":[..]}`, `args` left out when empty), 6 ack (`<id>` or
//! `<id>+<args array>`), 7 error (`<reason>+<advice>`, both as indexes: reasons 0 "transport not
//! supported", 1 "client not handshaken", 2 "unauthorized"; advice 0 "reconnect"), 8 noop.
//!
//! Acks: a packet with a plain id (`5:1::..`) is acknowledged by the server itself, before the
//! application sees it, with `6:::1` (`lib/transport.js` `onMessage`); one with `+`
//! (`5:1+::..`, what the client sends for `emit(name, args.., callback)`) is answered by the
//! application's callback with `6:::1+[<args>]` ([`encode_ack`]). An event named `disconnect`
//! is ignored by the server (its default `blacklist`), and refused here with
//! [`LegacyError::ReservedEventName`] so the caller can do the same.
//!
//! # Connecting
//! 1. `GET /socket.io/1/?t=<ms>` (a plain HTTP request, which may reach another worker than
//!    the websocket): the server answers `200 text/plain` with [`handshake_body`]
//!    `<sid>:<heartbeat timeout s>:<close timeout s>:<transports>` (`manager.js`
//!    `handleHandshake`; with `Access-Control-Allow-Origin: <origin>` and
//!    `Access-Control-Allow-Credentials: true` when the request has an `Origin`). The heartbeat
//!    field is empty when the server disables heartbeats; this one never does.
//! 2. `GET /socket.io/1/websocket/<sid>`, upgraded: the server checks the sid ([`verify_sid`];
//!    0.9 dropped handshakes not used within 30 s, `manager.js` `garbageCollection`), then sends
//!    `1::` ([`encode_connect`]): the client fires `connect` only when that arrives
//!    (`transport.js` `onPacket`). For an unknown sid the server sends `7:::1+0` ("client not
//!    handshaken", advice "reconnect": [`encode_error`]) and closes.
//! 3. The client's `0::` ends the session: the server answers `0::` and closes
//!    (`transport.js` `onForcedDisconnect`); the server ends one with `0::` the same way.
//!
//! # Timers
//! - The server sends a heartbeat `2::` `heartbeat interval` s (25 by default) after the
//!   websocket opened and after each heartbeat the client sends, and waits `heartbeat timeout`
//!   s (60) for the client's `2::` after each of its own: if none comes it ends the session
//!   (`transport.js` `setHeartbeatInterval`, `heartbeat`, `setHeartbeatTimeout`,
//!   `onHeartbeatClear`). Only a heartbeat clears that timeout, not other packets. The `close
//!   timeout` (60 s) runs in 0.9 between two polling requests; a closed websocket ends its
//!   session at once, so for this server it is only a value the client uses.
//! - The client answers every `2::` with `2::` and never sends one of its own
//!   (`transport.js` `onHeartbeat`). It closes the transport when no packet at all arrived for
//!   `heartbeat timeout` s (`socket.js` `setHeartbeatTimeout`, reset by every packet), and
//!   again when no data arrived for `close timeout` s (`transport.js` `setCloseTimeout`, reset
//!   on every message). So the server must send something at least every `min(heartbeat
//!   timeout, close timeout)` s: the heartbeat interval must be shorter than both.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{EncodeError, parse_u64, write_json_string, write_json_value, write_u64};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The 0.9 packet types, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Disconnect,
    Connect,
    Heartbeat,
    Message,
    Json,
    Event,
    Ack,
    Error,
    Noop,
}

impl std::fmt::Display for PacketType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PacketType::Disconnect => "disconnect",
            PacketType::Connect => "connect",
            PacketType::Heartbeat => "heartbeat",
            PacketType::Message => "message",
            PacketType::Json => "json",
            PacketType::Event => "event",
            PacketType::Ack => "ack",
            PacketType::Error => "error",
            PacketType::Noop => "noop",
        })
    }
}

/// What a packet's id asks of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckRequest {
    /// No id.
    None,
    /// `<id>`: acknowledge receipt with `6:::<id>` (0.9 servers do it before the application
    /// sees the packet).
    Auto(u64),
    /// `<id>+`: the sender waits for the application's answer, `6:::<id>+[<args>]`.
    Data(u64),
}

/// One packet from a client. JSON values are the client's text, unparsed (the caller
/// deserializes what it needs: `serde_json::from_str(raw.get())`).
#[derive(Debug)]
pub enum Packet<'a> {
    /// `0::[endpoint]`: leave `endpoint`, or the whole session when it is empty.
    Disconnect { endpoint: &'a str },
    /// `1::<endpoint>[:query]`: join a namespace (the default one needs no connect).
    Connect { endpoint: &'a str, query: &'a str },
    /// `2::`: the answer to the server's heartbeat.
    Heartbeat,
    /// `3:[id]:[endpoint]:<text>`.
    Message {
        ack: AckRequest,
        endpoint: &'a str,
        data: &'a str,
    },
    /// `4:[id]:[endpoint]:<JSON>`.
    Json {
        ack: AckRequest,
        endpoint: &'a str,
        data: &'a RawValue,
    },
    /// `5:[id]:[endpoint]:{"name":"..","args":[..]}`.
    Event {
        ack: AckRequest,
        endpoint: &'a str,
        name: Cow<'a, str>,
        /// The arguments, in order (none when the client left `args` out).
        args: Vec<&'a RawValue>,
    },
    /// `6::[endpoint]:<id>[+<args array>]`: the client's answer to a server packet with an id.
    Ack {
        endpoint: &'a str,
        id: u64,
        /// `None` for a plain ack (`6:::<id>`).
        args: Option<Vec<&'a RawValue>>,
    },
    /// `7::[endpoint]:[reason][+advice]`, the reason and advice as the indexes 0.9 sends.
    Error {
        endpoint: &'a str,
        reason: &'a str,
        advice: &'a str,
    },
    /// `8::`.
    Noop,
}

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("a socket.io 0.9 packet has no ':' after its {after}")]
    Shape { after: &'static str },
    #[error("socket.io 0.9 packet type {found:?} is not one of 0-8")]
    UnknownType { found: String },
    #[error("message id {found:?} is not digits with an optional '+'")]
    BadId { found: String },
    #[error("a {packet} packet has a message id, which it cannot carry")]
    UnexpectedId { packet: PacketType },
    #[error("a {packet} packet has no data")]
    MissingData { packet: PacketType },
    #[error("the data of a {packet} packet is not a JSON object")]
    NotAnObject { packet: PacketType },
    #[error("ack data {found:?} is not <id> or <id>+<args>")]
    BadAck { found: String },
    #[error("event name {name:?} is reserved")]
    ReservedEventName { name: String },
    #[error("the data of a {packet} packet is not the JSON it should be")]
    Json {
        packet: PacketType,
        #[source]
        source: serde_json::Error,
    },
}

/// At most this many characters of a bad field are quoted in an error.
const QUOTED: usize = 24;

fn quoted(s: &str) -> String {
    s.chars().take(QUOTED).collect()
}

/// Event data: `{"name":"..","args":[..]}`.
#[derive(Deserialize)]
struct EventData<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    /// Left out (or null) when the event has no arguments.
    #[serde(borrow, default)]
    args: Option<Vec<&'a RawValue>>,
}

/// Decodes one websocket message as a 0.9 packet.
pub fn decode(frame: &str) -> Result<Packet<'_>, LegacyError> {
    let (ty, rest) = frame
        .split_once(':')
        .ok_or(LegacyError::Shape { after: "type" })?;
    let packet = match ty {
        "0" => PacketType::Disconnect,
        "1" => PacketType::Connect,
        "2" => PacketType::Heartbeat,
        "3" => PacketType::Message,
        "4" => PacketType::Json,
        "5" => PacketType::Event,
        "6" => PacketType::Ack,
        "7" => PacketType::Error,
        "8" => PacketType::Noop,
        _ => return Err(LegacyError::UnknownType { found: quoted(ty) }),
    };
    let (id, rest) = rest.split_once(':').ok_or(LegacyError::Shape {
        after: "message id",
    })?;
    let ack = ack_request(id)?;
    // The endpoint has no ':'; the data is everything after the third one (':' included).
    let (endpoint, data) = rest.split_once(':').unwrap_or((rest, ""));
    let json = |source| LegacyError::Json { packet, source };
    if ack != AckRequest::None
        && !matches!(
            packet,
            PacketType::Message | PacketType::Json | PacketType::Event
        )
    {
        return Err(LegacyError::UnexpectedId { packet });
    }
    Ok(match packet {
        PacketType::Disconnect => Packet::Disconnect { endpoint },
        PacketType::Connect => Packet::Connect {
            endpoint,
            query: data,
        },
        PacketType::Heartbeat => Packet::Heartbeat,
        PacketType::Message => Packet::Message {
            ack,
            endpoint,
            data,
        },
        PacketType::Json if data.is_empty() => return Err(LegacyError::MissingData { packet }),
        PacketType::Json => Packet::Json {
            ack,
            endpoint,
            data: serde_json::from_str(data).map_err(json)?,
        },
        PacketType::Event if data.is_empty() => return Err(LegacyError::MissingData { packet }),
        // serde would also read a struct from an array of its fields.
        PacketType::Event if !data.starts_with('{') => {
            return Err(LegacyError::NotAnObject { packet });
        }
        PacketType::Event => {
            let EventData { name, args } = serde_json::from_str(data).map_err(json)?;
            if name == "disconnect" {
                return Err(LegacyError::ReservedEventName {
                    name: name.into_owned(),
                });
            }
            Packet::Event {
                ack,
                endpoint,
                name,
                args: args.unwrap_or_default(),
            }
        }
        PacketType::Ack => {
            let (id, args) = match data.split_once('+') {
                Some((id, args)) => (id, Some(args)),
                None => (data, None),
            };
            let id = parse_u64(id).ok_or_else(|| LegacyError::BadAck {
                found: quoted(data),
            })?;
            let args = match args {
                Some(args) => Some(serde_json::from_str(args).map_err(json)?),
                None => None,
            };
            Packet::Ack { endpoint, id, args }
        }
        PacketType::Error => {
            let (reason, advice) = data.split_once('+').unwrap_or((data, ""));
            Packet::Error {
                endpoint,
                reason,
                advice,
            }
        }
        PacketType::Noop => Packet::Noop,
    })
}

fn ack_request(id: &str) -> Result<AckRequest, LegacyError> {
    if id.is_empty() {
        return Ok(AckRequest::None);
    }
    let bad = || LegacyError::BadId { found: quoted(id) };
    Ok(match id.strip_suffix('+') {
        Some(digits) => AckRequest::Data(parse_u64(digits).ok_or_else(bad)?),
        None => AckRequest::Auto(parse_u64(id).ok_or_else(bad)?),
    })
}

/// Why the server refuses a client, as the index 0.9 sends in an error packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReason {
    TransportNotSupported = 0,
    ClientNotHandshaken = 1,
    Unauthorized = 2,
}

/// What the client should do about an error (0.9 knows one advice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAdvice {
    Reconnect = 0,
}

/// Appends `0::<endpoint>`: the session (empty endpoint) or a namespace ends.
pub fn encode_disconnect(endpoint: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0::");
    out.extend_from_slice(endpoint.as_bytes());
}

/// Appends `1::<endpoint>`: the client is connected (to the default namespace when empty).
pub fn encode_connect(endpoint: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"1::");
    out.extend_from_slice(endpoint.as_bytes());
}

/// Appends `2::`.
pub fn encode_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(b"2::");
}

/// Appends an event whose single argument is `data_json`, copied as is (it must be one JSON
/// value): `5:::{"name":"<name>","args":[<data_json>]}`.
pub fn encode_event(name: &str, data_json: &[u8], out: &mut Vec<u8>) {
    write_event_head(name, out);
    out.extend_from_slice(data_json);
    out.extend_from_slice(b"]}");
}

/// Appends an event whose single argument is `data` serialized; on an error `out` is as it was.
pub fn encode_event_value(
    name: &str,
    data: &impl serde::Serialize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let before = out.len();
    write_event_head(name, out);
    if let Err(e) = write_json_value(data, out) {
        out.truncate(before);
        return Err(e);
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

fn write_event_head(name: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"5:::{\"name\":");
    write_json_string(name, out);
    out.extend_from_slice(b",\"args\":[");
}

/// Appends the answer to a client packet with id `id`: `6:::<id>` (a plain ack) or, with
/// `args_json` (a JSON array, copied as is), `6:::<id>+<args_json>`.
pub fn encode_ack(id: u64, args_json: Option<&[u8]>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"6:::");
    write_u64(id, out);
    if let Some(args) = args_json {
        out.push(b'+');
        out.extend_from_slice(args);
    }
}

/// Appends `7::<endpoint>:<reason>[+<advice>]` (the client drops the connection, and
/// reconnects on `Reconnect` if it was told to reconnect at all).
pub fn encode_error(
    endpoint: &str,
    reason: ErrorReason,
    advice: Option<ErrorAdvice>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"7::");
    out.extend_from_slice(endpoint.as_bytes());
    out.push(b':');
    write_u64(reason as u64, out);
    if let Some(advice) = advice {
        out.push(b'+');
        write_u64(advice as u64, out);
    }
}

/// Appends `8::`.
pub fn encode_noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"8::");
}

/// The body of the answer to `GET /socket.io/1/`: `<sid>:<heartbeat>:<close>:websocket`, the
/// timeouts in seconds (see the module doc for what the client does with each). Only the
/// websocket transport is offered (0.9 sent the transports the server allowed; the original
/// gateway also offered flashsocket).
pub fn handshake_body(sid: &str, heartbeat_timeout_s: u64, close_timeout_s: u64) -> String {
    format!("{sid}:{heartbeat_timeout_s}:{close_timeout_s}:websocket")
}

/// The length of a session id from [`new_sid`]: base64url of 12 random bytes, the 8-byte
/// issue time and a 16-byte tag.
pub const SID_LEN: usize = 48;
const SID_RANDOM: usize = 12;
const SID_BODY: usize = SID_RANDOM + 8;
const SID_RAW: usize = SID_BODY + 16;
/// Keeps these tags apart from anything else the same secret signs.
const SID_DOMAIN: &[u8] = b"activestack-gateway socket.io 0.9 sid\0";
/// How far in the future a session id's issue time may lie (clocks of different hosts).
pub const SID_MAX_SKEW_MS: u64 = 30_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SidError {
    #[error("the session id is not one this gateway issues ({SID_LEN} base64url characters)")]
    Malformed,
    #[error("the session id's signature does not match")]
    Forged,
    #[error("the session id expired ({age_ms} ms old)")]
    Expired { age_ms: u64 },
    #[error("the session id was issued {ahead_ms} ms in the future")]
    FromFuture { ahead_ms: u64 },
}

/// A new session id issued at `now_ms`: random, timestamped and signed with `secret`, so that
/// the worker that gets the websocket can check it without asking the one that issued it. It is
/// URL-safe and has no `:` (the handshake body's separator) or `/` (the websocket path's).
pub fn new_sid(secret: &[u8], now_ms: u64) -> String {
    sid_from(
        crate::gateway::session::random_bytes::<SID_RANDOM>(),
        secret,
        now_ms,
    )
}

fn sid_from(random: [u8; SID_RANDOM], secret: &[u8], now_ms: u64) -> String {
    let mut raw = [0u8; SID_RAW];
    let (body, tag) = raw.split_at_mut(SID_BODY);
    let (random_part, time_part) = body.split_at_mut(SID_RANDOM);
    random_part.copy_from_slice(&random);
    time_part.copy_from_slice(&now_ms.to_be_bytes());
    if let Some(mac) = sid_mac(secret, body) {
        let full = mac.finalize().into_bytes();
        for (t, f) in tag.iter_mut().zip(full.iter()) {
            *t = *f;
        }
    }
    URL_SAFE_NO_PAD.encode(raw)
}

/// The HMAC of a session id's body (`None` would be a key HMAC refuses: it takes any length,
/// and a session id made without one fails to verify).
fn sid_mac(secret: &[u8], body: &[u8]) -> Option<HmacSha256> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(SID_DOMAIN);
    mac.update(body);
    Some(mac)
}

/// Checks a session id from [`new_sid`]: signed with `secret` (compared in constant time),
/// issued at most `max_age_ms` before `now_ms` and at most [`SID_MAX_SKEW_MS`] after it. A valid
/// id can be used more than once within its age: a caller that must refuse replays keeps the
/// ids it has seen.
pub fn verify_sid(sid: &str, secret: &[u8], now_ms: u64, max_age_ms: u64) -> Result<(), SidError> {
    if sid.len() != SID_LEN {
        return Err(SidError::Malformed);
    }
    let mut raw = [0u8; SID_RAW];
    match URL_SAFE_NO_PAD.decode_slice(sid, &mut raw) {
        Ok(SID_RAW) => {}
        _ => return Err(SidError::Malformed),
    }
    let (body, tag) = raw.split_at(SID_BODY);
    let mac = sid_mac(secret, body).ok_or(SidError::Forged)?;
    mac.verify_truncated_left(tag)
        .map_err(|_| SidError::Forged)?;
    let mut issued = [0u8; 8];
    issued.copy_from_slice(body.get(SID_RANDOM..).unwrap_or(&[0; 8]));
    let issued = u64::from_be_bytes(issued);
    if issued > now_ms.saturating_add(SID_MAX_SKEW_MS) {
        return Err(SidError::FromFuture {
            ahead_ms: issued - now_ms,
        });
    }
    let age_ms = now_ms.saturating_sub(issued);
    if age_ms > max_age_ms {
        return Err(SidError::Expired { age_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::wire::test_support::{encoded, for_each_mutation};

    /// A decoded packet as a string, to compare in one assertion (RawValue has no `PartialEq`).
    fn show(frame: &str) -> String {
        let list =
            |args: &[&RawValue]| args.iter().map(|a| a.get()).collect::<Vec<_>>().join(" | ");
        match decode(frame).unwrap_or_else(|e| panic!("{frame:?}: {e}")) {
            Packet::Disconnect { endpoint } => format!("disconnect {endpoint:?}"),
            Packet::Connect { endpoint, query } => format!("connect {endpoint:?} {query:?}"),
            Packet::Heartbeat => "heartbeat".to_owned(),
            Packet::Message {
                ack,
                endpoint,
                data,
            } => format!("message {ack:?} {endpoint:?} {data:?}"),
            Packet::Json {
                ack,
                endpoint,
                data,
            } => format!("json {ack:?} {endpoint:?} {}", data.get()),
            Packet::Event {
                ack,
                endpoint,
                name,
                args,
            } => format!("event {ack:?} {endpoint:?} {name} [{}]", list(&args)),
            Packet::Ack { endpoint, id, args } => format!(
                "ack {endpoint:?} {id} {}",
                args.map_or("plain".to_owned(), |a| format!("[{}]", list(&a)))
            ),
            Packet::Error {
                endpoint,
                reason,
                advice,
            } => format!("error {endpoint:?} {reason:?} {advice:?}"),
            Packet::Noop => "noop".to_owned(),
        }
    }

    #[test]
    fn packets_the_0_9_sources_show() {
        // socket.io 0.9.17 test/parser.test.js, and what socket.io-client 0.9.17's encoder
        // writes for the ActiveStack SDK's calls.
        assert_eq!(show("0::"), r#"disconnect """#);
        assert_eq!(show("0::/woot"), r#"disconnect "/woot""#);
        assert_eq!(show("1::/tobi"), r#"connect "/tobi" """#);
        assert_eq!(show("1::/test:?test=1"), r#"connect "/test" "?test=1""#);
        assert_eq!(show("2::"), "heartbeat");
        assert_eq!(show("3:::woot"), r#"message None "" "woot""#);
        assert_eq!(show("3:5:/tobi"), r#"message Auto(5) "/tobi" """#);
        assert_eq!(show("3:1::a:b:c"), r#"message Auto(1) "" "a:b:c""#);
        assert_eq!(show(r#"4:::"2""#), r#"json None "" "2""#);
        assert_eq!(show(r#"4:1+::{"a":"b"}"#), r#"json Data(1) "" {"a":"b"}"#);
        assert_eq!(show(r#"5:::{"name":"woot"}"#), r#"event None "" woot []"#);
        assert_eq!(
            show(r#"5:1+::{"name":"tobi","args":["a",1]}"#),
            r#"event Data(1) "" tobi ["a" | 1]"#
        );
        assert_eq!(
            show(r#"5:::{"name":"message","args":[{"connect":{"ensureMessageDelivery":true}}]}"#),
            r#"event None "" message [{"connect":{"ensureMessageDelivery":true}}]"#
        );
        assert_eq!(
            show(r#"5:::{"args":[null],"name":"x","extra":1}"#),
            r#"event None "" x [null]"#
        );
        assert_eq!(
            show(r#"5:::{"name":"x","args":null}"#),
            r#"event None "" x []"#
        );
        assert_eq!(show("6:::140"), r#"ack "" 140 plain"#);
        assert_eq!(
            show(r#"6:::12+["woot","wa"]"#),
            r#"ack "" 12 ["woot" | "wa"]"#
        );
        assert_eq!(show("6:::12+[]"), r#"ack "" 12 []"#);
        assert_eq!(show("7:::0"), r#"error "" "0" """#);
        assert_eq!(show("7:::2+0"), r#"error "" "2" "0""#);
        assert_eq!(show("7::/woot:1+0"), r#"error "/woot" "1" "0""#);
        assert_eq!(show("8::"), "noop");
        // More of 0.9.17 test/parser.test.js.
        assert_eq!(show("7:::"), r#"error "" "" """#);
        assert_eq!(show("7::/woot"), r#"error "/woot" "" """#);
        assert_eq!(show("2:::"), "heartbeat");
        assert_eq!(show("3:::\n"), r#"message None "" "\n""#);
        assert_eq!(
            show(r#"5:::{"name":"edwald","args":[{"a": "b"},2,"3"]}"#),
            r#"event None "" edwald [{"a": "b"} | 2 | "3"]"#
        );
        // Where 0.9 shrugs bad JSON off (`6:::1+{"++]` is an ack with no arguments there),
        // this decoder refuses it.
        assert!(matches!(
            decode(r#"6:::1+{"++]"#),
            Err(LegacyError::Json { .. })
        ));
    }

    /// What socket.io-client 0.9.17 (Node 20, websocket transport, the SDK's options) sent to
    /// a scripted server, captured by hand, for the SDK's calls: `emit('message', ..)`, an emit
    /// with a callback, one without arguments, `send`, `json.send`, its heartbeat answer, its
    /// answers to a server event asking for data (`5:7+::..`) and to a message with a plain id
    /// (`3:8::..`), and `disconnect()`.
    #[test]
    fn packets_captured_from_socket_io_client_0_9() {
        let cases = [
            (
                r#"5:::{"name":"message","args":[{"connect":{"ensureMessageDelivery":true}}]}"#,
                r#"event None "" message [{"connect":{"ensureMessageDelivery":true}}]"#,
            ),
            (
                r#"5:1+::{"name":"authenticate","args":[{"cn":"x","messageId":"é\"\n"}]}"#,
                r#"event Data(1) "" authenticate [{"cn":"x","messageId":"é\"\n"}]"#,
            ),
            (r#"5:::{"name":"noargs"}"#, r#"event None "" noargs []"#),
            ("3:::hi", r#"message None "" "hi""#),
            (r#"4:::{"j":1}"#, r#"json None "" {"j":1}"#),
            ("2::", "heartbeat"),
            (r#"6:::7+["ok",1]"#, r#"ack "" 7 ["ok" | 1]"#),
            ("6:::8", r#"ack "" 8 plain"#),
            ("0::", r#"disconnect """#),
        ];
        for (frame, expected) in cases {
            assert_eq!(show(frame), expected);
        }
    }

    /// What that client accepted (it fired `connect`, the `push` handler and the emit's
    /// callback with "authenticated"): the encoders write the same.
    #[test]
    fn encoders_write_what_socket_io_client_0_9_accepted() {
        assert_eq!(encoded(|o| encode_connect("", o)), "1::");
        assert_eq!(encoded(encode_heartbeat), "2::");
        assert_eq!(
            encoded(|o| encode_event("push", br#"{"cn":"x","correspondingMessageId":"m1"}"#, o)),
            r#"5:::{"name":"push","args":[{"cn":"x","correspondingMessageId":"m1"}]}"#
        );
        assert_eq!(
            encoded(|o| encode_ack(1, Some(br#"["authenticated"]"#), o)),
            r#"6:::1+["authenticated"]"#
        );
    }

    #[test]
    fn event_names_are_unescaped() {
        let Packet::Event { name, .. } = decode(r#"5:::{"name":"push"}"#).unwrap() else {
            panic!()
        };
        assert!(matches!(name, Cow::Borrowed("push")));
        let Packet::Event { name, .. } = decode(r#"5:::{"name":"a\"\u00e9"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(name, "a\"é");
    }

    #[test]
    fn malformed_packets() {
        let long_id = format!("5:{}::{{\"name\":\"x\"}}", "9".repeat(10_000));
        let cases: &[(&str, &str)] = &[
            ("", "Shape"),
            ("2", "Shape"),
            ("2:", "Shape"),
            ("9::", "UnknownType"),
            ("::", "UnknownType"),
            ("05::", "UnknownType"),
            ("\u{fffd}5\u{fffd}2::", "UnknownType"),
            ("3:x::a", "BadId"),
            ("3:+::a", "BadId"),
            ("3:1++::a", "BadId"),
            ("3:18446744073709551616::a", "BadId"),
            (&long_id, "BadId"),
            ("2:1::", "UnexpectedId"),
            ("0:1::", "UnexpectedId"),
            ("6:1::1", "UnexpectedId"),
            ("4:::", "MissingData"),
            ("5:::", "MissingData"),
            ("5::", "MissingData"),
            ("6:::", "BadAck"),
            ("6:::x", "BadAck"),
            ("6:::+[]", "BadAck"),
            ("6:::1[]", "BadAck"),
            ("5:::{\"name\":\"disconnect\"}", "ReservedEventName"),
            ("4:::{", "Json"),
            ("5:::{\"args\":[]}", "Json"),
            ("5:::{\"name\":1}", "Json"),
            ("5:::{\"name\":\"x\",\"args\":{}}", "Json"),
            ("5:::[\"x\"]", "NotAnObject"),
            ("5::: {\"name\":\"x\"}", "NotAnObject"),
            ("5:::{\"name\":\"x\"}x", "Json"),
            ("6:::1+", "Json"),
            ("6:::1+{}", "Json"),
        ];
        for (frame, expected) in cases {
            let err = decode(frame).unwrap_err();
            let name = format!("{err:?}");
            assert!(name.starts_with(expected), "{frame:?}: {name}");
        }
        // Errors quote a bounded part of what was wrong.
        let err = decode(&format!("{}::", "x".repeat(10_000))).unwrap_err();
        assert!(err.to_string().len() < 100, "{err}");
    }

    #[test]
    fn encoders() {
        assert_eq!(encoded(|o| encode_disconnect("", o)), "0::");
        assert_eq!(encoded(|o| encode_disconnect("/woot", o)), "0::/woot");
        assert_eq!(encoded(|o| encode_connect("", o)), "1::");
        assert_eq!(encoded(encode_heartbeat), "2::");
        assert_eq!(
            encoded(|o| encode_event("push", br#"{"cn":"x","correspondingMessageId":"1"}"#, o)),
            r#"5:::{"name":"push","args":[{"cn":"x","correspondingMessageId":"1"}]}"#
        );
        assert_eq!(
            encoded(|o| encode_event("we\"ird", b"null", o)),
            r#"5:::{"name":"we\"ird","args":[null]}"#
        );
        assert_eq!(
            encoded(|o| encode_event_value("gatewayConnectAck", &"a;b", o).unwrap()),
            r#"5:::{"name":"gatewayConnectAck","args":["a;b"]}"#
        );
        assert_eq!(encoded(|o| encode_ack(140, None, o)), "6:::140");
        assert_eq!(
            encoded(|o| encode_ack(12, Some(br#"["woot","wa"]"#), o)),
            r#"6:::12+["woot","wa"]"#
        );
        assert_eq!(
            encoded(|o| encode_error(
                "",
                ErrorReason::ClientNotHandshaken,
                Some(ErrorAdvice::Reconnect),
                o
            )),
            "7:::1+0"
        );
        assert_eq!(
            encoded(|o| encode_error("/woot", ErrorReason::Unauthorized, None, o)),
            "7::/woot:2"
        );
        assert_eq!(
            encoded(|o| encode_error("", ErrorReason::TransportNotSupported, None, o)),
            "7:::0"
        );
        assert_eq!(encoded(encode_noop), "8::");
    }

    #[test]
    fn what_we_encode_decodes_back() {
        let out = encoded(|o| encode_event("n\"é", br#"{"a":[1,{"b":null}]}"#, o));
        assert_eq!(show(&out), r#"event None "" n"é [{"a":[1,{"b":null}]}]"#);
        assert_eq!(
            show(&encoded(|o| encode_ack(3, Some(b"[1]"), o))),
            r#"ack "" 3 [1]"#
        );
    }

    #[test]
    fn a_value_that_cannot_be_serialized_leaves_the_buffer_alone() {
        let mut map = std::collections::BTreeMap::new();
        map.insert((1, 2), 3);
        let mut out = b"2::".to_vec();
        assert!(encode_event_value("push", &map, &mut out).is_err());
        assert_eq!(out, b"2::");
    }

    #[test]
    fn the_handshake_body() {
        // socket.io 0.9.17 manager.js handleHandshake: id, heartbeat timeout, close timeout and
        // transports, joined by ':'; the client splits it so (socket.js handshake).
        let sid = new_sid(b"secret", 1);
        let body = handshake_body(&sid, 60, 60);
        assert_eq!(body, format!("{sid}:60:60:websocket"));
        let fields: Vec<&str> = body.split(':').collect();
        assert_eq!(fields, [sid.as_str(), "60", "60", "websocket"]);
    }

    const SECRET: &[u8] = b"test secret";
    const NOW: u64 = 1_764_000_000_000;
    const AGE: u64 = 30_000;

    #[test]
    fn session_ids_verify_where_they_were_not_issued() {
        let sid = new_sid(SECRET, NOW);
        assert_eq!(sid.len(), SID_LEN);
        assert!(
            sid.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{sid}"
        );
        assert_eq!(verify_sid(&sid, SECRET, NOW, AGE), Ok(()));
        assert_eq!(verify_sid(&sid, SECRET, NOW + AGE, AGE), Ok(()));
        assert_eq!(verify_sid(&sid, SECRET, NOW - SID_MAX_SKEW_MS, AGE), Ok(()));
        assert_ne!(new_sid(SECRET, NOW), sid, "the random part differs");
    }

    #[test]
    fn session_ids_that_do_not_verify() {
        let sid = new_sid(SECRET, NOW);
        assert_eq!(
            verify_sid(&sid, SECRET, NOW + AGE + 1, AGE),
            Err(SidError::Expired { age_ms: AGE + 1 })
        );
        assert_eq!(
            verify_sid(&sid, SECRET, NOW - SID_MAX_SKEW_MS - 1, AGE),
            Err(SidError::FromFuture {
                ahead_ms: SID_MAX_SKEW_MS + 1
            })
        );
        assert_eq!(
            verify_sid(&sid, b"other secret", NOW, AGE),
            Err(SidError::Forged)
        );
        // Every single-character change is caught: a forged tag, time or random part, or a
        // character outside the alphabet.
        for at in 0..sid.len() {
            for c in ['A', 'z', '0', '-', '_', '+', '/', ':'] {
                let mut bytes = sid.clone().into_bytes();
                if bytes[at] == c as u8 {
                    continue;
                }
                bytes[at] = c as u8;
                let changed = String::from_utf8(bytes).unwrap();
                let err = verify_sid(&changed, SECRET, NOW, AGE).unwrap_err();
                assert!(
                    matches!(err, SidError::Forged | SidError::Malformed),
                    "{changed}: {err:?}"
                );
            }
        }
        for bad in ["", "abc", &sid[1..], &format!("{sid}A"), &"é".repeat(24)] {
            assert_eq!(
                verify_sid(bad, SECRET, NOW, AGE),
                Err(SidError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_session_id_made_with_a_forged_time_does_not_verify() {
        // Re-signing is the only way to move the time: changing the time bytes alone fails.
        let sid = sid_from([7; SID_RANDOM], SECRET, NOW - 10 * AGE);
        let mut raw = [0u8; SID_RAW];
        URL_SAFE_NO_PAD.decode_slice(&sid, &mut raw).unwrap();
        raw[SID_RANDOM..SID_BODY].copy_from_slice(&NOW.to_be_bytes());
        let moved = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(verify_sid(&moved, SECRET, NOW, AGE), Err(SidError::Forged));
        assert!(matches!(
            verify_sid(&sid, SECRET, NOW, AGE),
            Err(SidError::Expired { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let seeds = [
            r#"5:1+::{"name":"message","args":[{"a":1}]}"#,
            r#"6:::12+["woot"]"#,
            "7::/woot:1+0",
            "1::/test:?a=b",
        ];
        for_each_mutation(
            &seeds,
            b"0123456789:+/,[]{}\"\\ nax\xc3\xa9",
            20_000,
            |text| {
                let _ = decode(text);
                let _ = verify_sid(text, SECRET, NOW, AGE);
            },
        );
    }
}
