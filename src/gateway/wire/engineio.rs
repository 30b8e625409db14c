//! engine.io v3 (`EIO=3`) and v4 (`EIO=4`) packets, websocket transport only, and the socket.io
//! packets they carry: protocol revision 4 over `EIO=3` (socket.io 1.x/2.x, socket.io-client
//! 2.x) and revision 5 over `EIO=4` (socket.io 3+, socket.io-client 4.x, python-socketio 5).
//!
//! Over a websocket each engine.io packet is one message, `<type digit>[<data>]` (no payload
//! framing, no base64: engine.io-protocol README "WebSocket" in both revisions). A socket.io
//! packet is the data of an engine.io `message` (`4`):
//! `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`, the namespace written only when it is not
//! `/` (socket.io-protocol README "Packet encoding"; the reference decoder is socket.io-parser's
//! `decodeString`). The socket.io encoders here write the engine.io `4` too, so each of their
//! outputs is one whole websocket text payload. Binary packets (socket.io `BINARY_EVENT` /
//! `BINARY_ACK`, sent as a text packet followed by binary websocket messages) are refused with a
//! typed error: no client of the gateway sends binary.
//!
//! # Opening
//! The server's first packet is `open`:
//! `0{"sid":"..","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`.
//! `maxPayload` is new in revision 4, but the reference server (engine.io 6, `lib/socket.ts`
//! `onOpen`) sends it to `EIO=3` clients too, and engine.io-client 3 ignores fields it does not
//! know, so [`encode_open`] writes the same for both. `upgrades` is empty: there is nothing to
//! upgrade to from a websocket.
//!
//! Then, per socket.io revision (socket.io-protocol README, "Connection to a namespace", and its
//! v4 branch):
//! - revision 5 (`EIO=4`): the client MUST send `CONNECT` (`40`, or `40{<auth object>}`); the
//!   server answers `40{"sid":"<socket id>"}` ([`encode_connect`]), or `44{"message":".."}`
//!   ([`encode_connect_error`]). socket.io-client 4 treats a `CONNECT` without `sid` as coming
//!   from a 2.x server and fails. The reference server closes a connection that has joined no
//!   namespace 45 s (`connectTimeout`) after it opened (socket.io `lib/client.ts`).
//! - revision 4 (`EIO=3`): the server sends `40` for `/` right after `open`, unasked
//!   (socket.io 2 `lib/index.js` `onconnection`; socket.io 4 `lib/index.ts` does the same for
//!   protocol 3). The client sends `CONNECT` only for other namespaces, with its query in the
//!   namespace (`0/admin?token=1,`: see [`split_nsp_query`]). A refusal carries a JSON string:
//!   `44"Not authorized"`.
//!
//! # Heartbeats
//! The connection task runs these timers; the rules are:
//! - `EIO=4` (engine.io-protocol README "Heartbeat"): the server sends `ping` (`2`) every
//!   `pingInterval` ms; the client answers `pong` (`3`); if no pong arrives within
//!   `pingTimeout` ms of the ping, the server closes the connection. The reference server
//!   (engine.io 6 `lib/socket.ts`, `schedulePing` / `resetPingTimeout`) arms the next ping when
//!   the pong arrives, and treats a `ping` from a v4 client as an error ("invalid heartbeat
//!   direction") that closes it. The client (engine.io-client 6 `_resetPingTimeout`) closes
//!   when no packet at all arrived for `pingInterval + pingTimeout` ms.
//! - `EIO=3` (engine.io-protocol v3 README "Timeouts"): the client sends `ping` (`2`, data
//!   optional) `pingInterval` ms after the previous pong, and the server answers at once with
//!   `pong` carrying the same data ([`encode_pong`]). The server drops a client from which
//!   nothing arrived for `pingInterval + pingTimeout` ms (engine.io 3.6 `lib/socket.js`
//!   `setPingTimeout`, reset by every packet; engine.io 6 resets it on pings only, and treats
//!   a `pong` from a v3 client as an error). The client (engine.io-client 3 `onHeartbeat`)
//!   closes when nothing arrives within `pingTimeout` ms of its ping.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{EncodeError, parse_u64, write_json_string, write_json_value, write_u64};

/// The engine.io revision a client asked for with the `EIO` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EioVersion {
    /// `EIO=3`: socket.io revision 4 (socket.io-client 1.x / 2.x). The client pings.
    V3,
    /// `EIO=4`: socket.io revision 5 (socket.io-client 3+ , python-socketio 5). The server pings.
    V4,
}

impl EioVersion {
    /// The revision named by the `EIO` query value.
    pub fn from_query(value: &str) -> Result<EioVersion, EioError> {
        match value {
            "3" => Ok(EioVersion::V3),
            "4" => Ok(EioVersion::V4),
            _ => Err(EioError::UnsupportedVersion {
                found: value.chars().take(16).collect(),
            }),
        }
    }

    /// The socket.io protocol revision spoken over this engine.io revision.
    pub fn socketio_revision(self) -> u8 {
        match self {
            EioVersion::V3 => 4,
            EioVersion::V4 => 5,
        }
    }
}

/// One engine.io packet: a websocket text message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EioPacket<'a> {
    /// `0`: only servers send it; data ignored.
    Open,
    /// `1`: the client closes the session.
    Close,
    /// `2[data]` (`2probe` during an upgrade).
    Ping(&'a str),
    /// `3[data]`.
    Pong(&'a str),
    /// `4<data>`: a socket.io packet, for [`decode_sio`].
    Message(&'a str),
    /// `5`: completes an upgrade (not expected on a websocket-only session).
    Upgrade,
    /// `6`.
    Noop,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EioError {
    #[error("EIO={found:?} is not a supported engine.io revision (3 or 4)")]
    UnsupportedVersion { found: String },
    #[error("an empty engine.io packet")]
    Empty,
    #[error("engine.io packet type {found:?} is not one of 0-6")]
    UnknownType { found: char },
    #[error(
        "a binary websocket message ({len} bytes): socket.io binary attachments are not supported"
    )]
    Binary { len: usize },
}

/// Decodes one websocket text message as an engine.io packet.
pub fn decode_eio(text: &str) -> Result<EioPacket<'_>, EioError> {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return Err(EioError::Empty);
    };
    let data = chars.as_str();
    Ok(match first {
        '0' => EioPacket::Open,
        '1' => EioPacket::Close,
        '2' => EioPacket::Ping(data),
        '3' => EioPacket::Pong(data),
        '4' => EioPacket::Message(data),
        '5' => EioPacket::Upgrade,
        '6' => EioPacket::Noop,
        found => return Err(EioError::UnknownType { found }),
    })
}

/// A binary websocket message: in both revisions a socket.io binary attachment (v3 prefixes
/// the engine.io type byte, v4 sends the bytes alone), which this gateway does not take.
pub fn decode_eio_binary(bytes: &[u8]) -> Result<EioPacket<'static>, EioError> {
    Err(EioError::Binary { len: bytes.len() })
}

/// Appends the `open` packet (see the module doc for its fields).
pub fn encode_open(
    sid: &str,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"0{\"sid\":");
    write_json_string(sid, out);
    out.extend_from_slice(b",\"upgrades\":[],\"pingInterval\":");
    write_u64(ping_interval_ms, out);
    out.extend_from_slice(b",\"pingTimeout\":");
    write_u64(ping_timeout_ms, out);
    out.extend_from_slice(b",\"maxPayload\":");
    write_u64(max_payload, out);
    out.push(b'}');
}

/// Appends `close` (`1`).
pub fn encode_close(out: &mut Vec<u8>) {
    out.push(b'1');
}

/// Appends `ping` (`2`): what a v4 server sends every `pingInterval`.
pub fn encode_ping(out: &mut Vec<u8>) {
    out.push(b'2');
}

/// Appends `pong` with `data` (`3<data>`): a v3 server's answer to `ping`, echoing its data.
pub fn encode_pong(data: &str, out: &mut Vec<u8>) {
    out.push(b'3');
    out.extend_from_slice(data.as_bytes());
}

/// Appends `noop` (`6`).
pub fn encode_noop(out: &mut Vec<u8>) {
    out.push(b'6');
}

/// One socket.io packet from a client. JSON values are the client's text, unparsed (the
/// caller deserializes what it needs: `serde_json::from_str(raw.get())`).
#[derive(Debug)]
pub enum SioPacket<'a> {
    /// `0[nsp,][{auth}]`. Over `EIO=3` `nsp` may end in a query: see [`split_nsp_query`].
    Connect {
        nsp: &'a str,
        auth: Option<&'a RawValue>,
    },
    /// `1[nsp,]`.
    Disconnect { nsp: &'a str },
    /// `2[nsp,][id]["name",args...]`.
    Event {
        nsp: &'a str,
        /// The ack id, when the client wants an answer (`encode_ack` with it).
        id: Option<u64>,
        name: Cow<'a, str>,
        /// The arguments after the name, in order.
        args: Vec<&'a RawValue>,
    },
    /// `3[nsp,]<id>[args...]`: the client's answer to a server event that asked for one.
    Ack {
        nsp: &'a str,
        id: u64,
        args: Vec<&'a RawValue>,
    },
    /// `4[nsp,][data]`: only servers send it.
    ConnectError {
        nsp: &'a str,
        data: Option<&'a RawValue>,
    },
}

/// The socket.io packet types, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SioType {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl std::fmt::Display for SioType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SioType::Connect => "CONNECT",
            SioType::Disconnect => "DISCONNECT",
            SioType::Event => "EVENT",
            SioType::Ack => "ACK",
            SioType::ConnectError => "CONNECT_ERROR",
            SioType::BinaryEvent => "BINARY_EVENT",
            SioType::BinaryAck => "BINARY_ACK",
        })
    }
}

/// Event names socket.io's own decoder refuses (socket.io-parser `RESERVED_EVENTS`): the
/// server and client libraries use them for their own events.
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

#[derive(Debug, thiserror::Error)]
pub enum SioError {
    #[error("an empty socket.io packet")]
    Empty,
    #[error("socket.io packet type {found:?} is not one of 0-6")]
    UnknownType { found: char },
    #[error("{packet} packets (binary attachments) are not supported")]
    Binary { packet: SioType },
    #[error("the ack id of a {packet} packet does not fit in 64 bits")]
    IdOverflow { packet: SioType },
    #[error("a {packet} packet has an ack id, which it cannot carry")]
    UnexpectedId { packet: SioType },
    #[error("an ACK packet has no ack id")]
    MissingAckId,
    #[error("a {packet} packet has no payload")]
    MissingPayload { packet: SioType },
    #[error("a {packet} packet has a payload, which it cannot carry")]
    UnexpectedPayload { packet: SioType },
    #[error("the payload of a {packet} packet is not a JSON object")]
    NotAnObject { packet: SioType },
    #[error("the payload of a {packet} packet is not a JSON array")]
    NotAnArray { packet: SioType },
    #[error("an EVENT packet's array is empty (it must start with the event name)")]
    EmptyEvent,
    #[error("an EVENT packet's first element is not a string (the event name)")]
    EventNameNotString,
    #[error("event name {name:?} is reserved")]
    ReservedEventName { name: String },
    #[error("the payload of a {packet} packet is not valid JSON")]
    Json {
        packet: SioType,
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes the socket.io packet in an engine.io message's data.
pub fn decode_sio(text: &str) -> Result<SioPacket<'_>, SioError> {
    let mut chars = text.chars();
    let packet = match chars.next() {
        None => return Err(SioError::Empty),
        Some('0') => SioType::Connect,
        Some('1') => SioType::Disconnect,
        Some('2') => SioType::Event,
        Some('3') => SioType::Ack,
        Some('4') => SioType::ConnectError,
        Some('5') => {
            return Err(SioError::Binary {
                packet: SioType::BinaryEvent,
            });
        }
        Some('6') => {
            return Err(SioError::Binary {
                packet: SioType::BinaryAck,
            });
        }
        Some(found) => return Err(SioError::UnknownType { found }),
    };
    let rest = chars.as_str();
    // The namespace runs from a leading '/' to the first ',' (or the end), as socket.io-parser
    // reads it.
    let (nsp, rest) = if rest.starts_with('/') {
        rest.split_once(',').unwrap_or((rest, ""))
    } else {
        ("/", rest)
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, payload) = rest.split_at_checked(digits).unwrap_or(("", rest));
    let id = match digits {
        "" => None,
        digits => Some(parse_u64(digits).ok_or(SioError::IdOverflow { packet })?),
    };
    if id.is_some() && !matches!(packet, SioType::Event | SioType::Ack) {
        return Err(SioError::UnexpectedId { packet });
    }
    let json = |source| SioError::Json { packet, source };
    Ok(match packet {
        SioType::Connect => SioPacket::Connect {
            nsp,
            auth: match payload {
                "" => None,
                p if p.starts_with('{') => Some(serde_json::from_str(p).map_err(json)?),
                _ => return Err(SioError::NotAnObject { packet }),
            },
        },
        SioType::Disconnect if payload.is_empty() => SioPacket::Disconnect { nsp },
        SioType::Disconnect => return Err(SioError::UnexpectedPayload { packet }),
        SioType::Event => {
            if payload.is_empty() {
                return Err(SioError::MissingPayload { packet });
            }
            if !payload.starts_with('[') {
                return Err(SioError::NotAnArray { packet });
            }
            let EventArray { name, args } = serde_json::from_str(payload).map_err(json)?;
            let name = event_name(name)?;
            SioPacket::Event {
                nsp,
                id,
                name,
                args,
            }
        }
        SioType::Ack => {
            let id = id.ok_or(SioError::MissingAckId)?;
            let args = match payload {
                // The protocol wants an array, but the reference server takes none as no
                // arguments.
                "" => Vec::new(),
                p if p.starts_with('[') => serde_json::from_str(p).map_err(json)?,
                _ => return Err(SioError::NotAnArray { packet }),
            };
            SioPacket::Ack { nsp, id, args }
        }
        SioType::ConnectError => SioPacket::ConnectError {
            nsp,
            data: match payload {
                "" => None,
                p => Some(serde_json::from_str(p).map_err(json)?),
            },
        },
        SioType::BinaryEvent | SioType::BinaryAck => return Err(SioError::Binary { packet }),
    })
}

/// The event name from an event array's first element, checked as socket.io-parser does.
fn event_name(first: Option<&RawValue>) -> Result<Cow<'_, str>, SioError> {
    let first = first.ok_or(SioError::EmptyEvent)?;
    if !first.get().starts_with('"') {
        return Err(SioError::EventNameNotString);
    }
    let Name(name) = serde_json::from_str(first.get()).map_err(|source| SioError::Json {
        packet: SioType::Event,
        source,
    })?;
    if RESERVED_EVENTS.contains(&name.as_ref()) {
        return Err(SioError::ReservedEventName {
            name: name.into_owned(),
        });
    }
    Ok(name)
}

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

/// An event array read in one pass: its first element kept raw, the others as the arguments.
struct EventArray<'a> {
    name: Option<&'a RawValue>,
    args: Vec<&'a RawValue>,
}

impl<'de> Deserialize<'de> for EventArray<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArrayVisitor;
        impl<'de> Visitor<'de> for ArrayVisitor {
            type Value = EventArray<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let name = seq.next_element()?;
                let mut args = Vec::new();
                while let Some(arg) = seq.next_element()? {
                    args.push(arg);
                }
                Ok(EventArray { name, args })
            }
        }
        deserializer.deserialize_seq(ArrayVisitor)
    }
}

/// Splits a revision 4 `CONNECT` namespace from its query: `/admin?token=1` gives `/admin` and
/// `token=1` (socket.io-client 2 appends the `query` option so; socket.io 4 `lib/client.ts`
/// `_parseNamespace` takes it apart for protocol 3 only).
pub fn split_nsp_query(nsp: &str) -> (&str, Option<&str>) {
    match nsp.split_once('?') {
        Some((nsp, query)) => (nsp, Some(query)),
        None => (nsp, None),
    }
}

/// Writes the engine.io `message` type, the socket.io type and the namespace (unless `/`).
fn write_sio_head(packet_type: u8, nsp: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&[b'4', b'0' + packet_type]);
    if !nsp.is_empty() && nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
}

/// Appends the server's `CONNECT` for `nsp`: `40{"sid":"<sid>"}` over `EIO=4`, `40` over
/// `EIO=3` (which has no socket id in it; `sid` is not used).
pub fn encode_connect(nsp: &str, sid: &str, version: EioVersion, out: &mut Vec<u8>) {
    write_sio_head(0, nsp, out);
    if version == EioVersion::V4 {
        out.extend_from_slice(b"{\"sid\":");
        write_json_string(sid, out);
        out.push(b'}');
    }
}

/// Appends `DISCONNECT` for `nsp` (`41`).
pub fn encode_disconnect(nsp: &str, out: &mut Vec<u8>) {
    write_sio_head(1, nsp, out);
}

/// Appends an event whose single argument is `data_json`, copied as is (it must be one JSON
/// value): `42["<name>",<data_json>]`.
pub fn encode_event(nsp: &str, name: &str, data_json: &[u8], out: &mut Vec<u8>) {
    write_sio_head(2, nsp, out);
    out.push(b'[');
    write_json_string(name, out);
    out.push(b',');
    out.extend_from_slice(data_json);
    out.push(b']');
}

/// Appends an event whose single argument is `data` serialized; on an error `out` is as it was.
pub fn encode_event_value(
    nsp: &str,
    name: &str,
    data: &impl serde::Serialize,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let before = out.len();
    write_sio_head(2, nsp, out);
    out.push(b'[');
    write_json_string(name, out);
    out.push(b',');
    if let Err(e) = write_json_value(data, out) {
        out.truncate(before);
        return Err(e);
    }
    out.push(b']');
    Ok(())
}

/// Appends the answer to a client event that carried ack id `id`: `43<id><args_json>`, where
/// `args_json` is a JSON array (the callback's arguments), copied as is.
pub fn encode_ack(nsp: &str, id: u64, args_json: &[u8], out: &mut Vec<u8>) {
    write_sio_head(3, nsp, out);
    write_u64(id, out);
    out.extend_from_slice(args_json);
}

/// Appends `CONNECT_ERROR` refusing `nsp`: `44{"message":"<message>"}` over `EIO=4`,
/// `44"<message>"` over `EIO=3`.
pub fn encode_connect_error(nsp: &str, message: &str, version: EioVersion, out: &mut Vec<u8>) {
    write_sio_head(4, nsp, out);
    match version {
        EioVersion::V4 => {
            out.extend_from_slice(b"{\"message\":");
            write_json_string(message, out);
            out.push(b'}');
        }
        EioVersion::V3 => write_json_string(message, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::wire::test_support::{encoded, for_each_mutation};

    /// A decoded packet as a string, to compare in one assertion (RawValue has no `PartialEq`).
    fn show(packet: &SioPacket) -> String {
        let raw = |v: &Option<&RawValue>| v.map_or("-".to_owned(), |v| v.get().to_owned());
        let list =
            |args: &[&RawValue]| args.iter().map(|a| a.get()).collect::<Vec<_>>().join(" | ");
        match packet {
            SioPacket::Connect { nsp, auth } => format!("connect {nsp} {}", raw(auth)),
            SioPacket::Disconnect { nsp } => format!("disconnect {nsp}"),
            SioPacket::Event {
                nsp,
                id,
                name,
                args,
            } => format!("event {nsp} {id:?} {name} [{}]", list(args)),
            SioPacket::Ack { nsp, id, args } => format!("ack {nsp} {id} [{}]", list(args)),
            SioPacket::ConnectError { nsp, data } => format!("error {nsp} {}", raw(data)),
        }
    }

    fn sio(text: &str) -> String {
        show(&decode_sio(text).unwrap_or_else(|e| panic!("{text:?}: {e}")))
    }

    #[test]
    fn versions_come_from_the_query() {
        assert_eq!(EioVersion::from_query("3"), Ok(EioVersion::V3));
        assert_eq!(EioVersion::from_query("4"), Ok(EioVersion::V4));
        for bad in ["", "2", "5", "04", "4 "] {
            assert!(EioVersion::from_query(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            EioVersion::from_query(&"9".repeat(1000))
                .unwrap_err()
                .to_string()
                .len(),
            "EIO=\"9999999999999999\" is not a supported engine.io revision (3 or 4)".len()
        );
        assert_eq!(EioVersion::V3.socketio_revision(), 4);
        assert_eq!(EioVersion::V4.socketio_revision(), 5);
    }

    #[test]
    fn engineio_packets_of_the_specs() {
        // engine.io-protocol README (v4) and its v3 branch: the websocket sample sessions.
        assert_eq!(decode_eio("2probe"), Ok(EioPacket::Ping("probe")));
        assert_eq!(decode_eio("3probe"), Ok(EioPacket::Pong("probe")));
        assert_eq!(decode_eio("5"), Ok(EioPacket::Upgrade));
        assert_eq!(decode_eio("4hello"), Ok(EioPacket::Message("hello")));
        assert_eq!(
            decode_eio("4HelloWorld"),
            Ok(EioPacket::Message("HelloWorld"))
        );
        assert_eq!(decode_eio("2"), Ok(EioPacket::Ping("")));
        assert_eq!(decode_eio("3"), Ok(EioPacket::Pong("")));
        assert_eq!(decode_eio("1"), Ok(EioPacket::Close));
        assert_eq!(decode_eio("6"), Ok(EioPacket::Noop));
        assert_eq!(decode_eio("0{}"), Ok(EioPacket::Open));
        assert_eq!(decode_eio("4€"), Ok(EioPacket::Message("€")));
        assert_eq!(decode_eio(""), Err(EioError::Empty));
        assert_eq!(decode_eio("7"), Err(EioError::UnknownType { found: '7' }));
        assert_eq!(
            decode_eio("b4AQID"),
            Err(EioError::UnknownType { found: 'b' })
        );
        assert_eq!(decode_eio("é"), Err(EioError::UnknownType { found: 'é' }));
        assert_eq!(
            decode_eio_binary(&[4, 1, 2, 3]),
            Err(EioError::Binary { len: 4 })
        );
    }

    #[test]
    fn the_open_packet() {
        // engine.io-protocol README (v4) "Handshake" example, without upgrades.
        assert_eq!(
            encoded(|o| encode_open("lv_VI97HAXpY6yYWAAAC", 25000, 20000, 1_000_000, o)),
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        let json = encoded(|o| encode_open("a\"b", 1, 2, 3, o));
        let value: serde_json::Value = serde_json::from_str(&json[1..]).unwrap();
        assert_eq!(value["sid"], "a\"b");
    }

    #[test]
    fn engineio_encoders() {
        assert_eq!(encoded(encode_ping), "2");
        assert_eq!(encoded(|o| encode_pong("probe", o)), "3probe");
        assert_eq!(encoded(|o| encode_pong("", o)), "3");
        assert_eq!(encoded(encode_close), "1");
        assert_eq!(encoded(encode_noop), "6");
    }

    #[test]
    fn socketio_packets_of_the_v5_spec() {
        // socket.io-protocol README (revision 5) "Packet encoding" examples, as the client
        // sends them.
        assert_eq!(sio("0"), "connect / -");
        assert_eq!(sio("0/admin,"), "connect /admin -");
        assert_eq!(
            sio(r#"0/admin,{"token":"123"}"#),
            r#"connect /admin {"token":"123"}"#
        );
        assert_eq!(sio(r#"2["foo"]"#), "event / None foo []");
        assert_eq!(sio(r#"2/admin,["bar"]"#), "event /admin None bar []");
        assert_eq!(sio(r#"212["foo"]"#), "event / Some(12) foo []");
        assert_eq!(sio(r#"3/admin,13["bar"]"#), r#"ack /admin 13 ["bar"]"#);
        assert_eq!(sio("1"), "disconnect /");
        assert_eq!(sio("1/admin,"), "disconnect /admin");
        assert_eq!(
            sio(r#"4{"message":"Not authorized"}"#),
            r#"error / {"message":"Not authorized"}"#
        );
        // The sample session.
        assert_eq!(sio(r#"2["hello"]"#), "event / None hello []");
        assert_eq!(
            sio(r#"2/admin,1["tellme"]"#),
            "event /admin Some(1) tellme []"
        );
    }

    #[test]
    fn socketio_packets_of_the_v4_spec() {
        // socket.io-protocol v4 branch "Examples".
        assert_eq!(sio(r#"2["hello",1]"#), "event / None hello [1]");
        assert_eq!(
            sio(r#"2/admin,456["project:delete",123]"#),
            "event /admin Some(456) project:delete [123]"
        );
        assert_eq!(sio("3/admin,456[]"), "ack /admin 456 []");
        assert_eq!(
            sio(r#"4/admin,"Not authorized""#),
            r#"error /admin "Not authorized""#
        );
        assert_eq!(
            sio("0/admin?token=1234&uid=abcd,"),
            "connect /admin?token=1234&uid=abcd -"
        );
        assert_eq!(
            split_nsp_query("/admin?token=1234&uid=abcd"),
            ("/admin", Some("token=1234&uid=abcd"))
        );
        assert_eq!(split_nsp_query("/"), ("/", None));
    }

    /// Messages real clients sent to a scripted server (captured by hand: socket.io-client
    /// 4.8.1 and 2.5.0 under Node 20, python-socketio 5.18.1, websocket transport), as
    /// engine.io text and the socket.io packet inside.
    #[test]
    fn messages_captured_from_real_clients() {
        let cases = [
            // socket.io-client 4.8.1 (EIO=4)
            ("40", "connect / -"),
            (
                r#"42["message",{"connect":{"ensureMessageDelivery":true}}]"#,
                r#"event / None message [{"connect":{"ensureMessageDelivery":true}}]"#,
            ),
            (
                r#"420["authenticate",{"cn":"com.percero.agents.auth.vo.AuthenticationRequest","messageId":"é\"\n"}]"#,
                r#"event / Some(0) authenticate [{"cn":"com.percero.agents.auth.vo.AuthenticationRequest","messageId":"é\"\n"}]"#,
            ),
            (r#"42["noargs"]"#, "event / None noargs []"),
            (r#"4312["ok",1]"#, r#"ack / 12 ["ok" | 1]"#),
            // python-socketio 5.18.1 (EIO=4), connecting with auth
            (r#"40{"token":"abc"}"#, r#"connect / {"token":"abc"}"#),
            (
                r#"421["authenticate",{"cn":"x","messageId":"\u00e9\"\n"}]"#,
                r#"event / Some(1) authenticate [{"cn":"x","messageId":"\u00e9\"\n"}]"#,
            ),
            // socket.io-client 2.5.0 (EIO=3)
            ("41", "disconnect /"),
        ];
        for (text, expected) in cases {
            let EioPacket::Message(inner) = decode_eio(text).unwrap() else {
                panic!("{text}")
            };
            assert_eq!(sio(inner), expected);
        }
        // Their heartbeats: the v4 clients' pong, the v3 client's ping.
        assert_eq!(decode_eio("3"), Ok(EioPacket::Pong("")));
        assert_eq!(decode_eio("2"), Ok(EioPacket::Ping("")));
    }

    /// What those clients accepted from the scripted server (each fired its connect, event and
    /// ack callbacks): the encoders write the same.
    #[test]
    fn encoders_write_what_real_clients_accepted() {
        assert_eq!(
            encoded(|o| encode_open("ENGINEID", 300, 400, 1_000_000, o)),
            r#"0{"sid":"ENGINEID","upgrades":[],"pingInterval":300,"pingTimeout":400,"maxPayload":1000000}"#
        );
        assert_eq!(
            encoded(|o| encode_connect("/", "SOCKETID", EioVersion::V4, o)),
            r#"40{"sid":"SOCKETID"}"#
        );
        assert_eq!(
            encoded(|o| encode_connect("/", "SOCKETID", EioVersion::V3, o)),
            "40"
        );
        assert_eq!(
            encoded(|o| encode_ack("/", 0, br#"["authenticated"]"#, o)),
            r#"430["authenticated"]"#
        );
        assert_eq!(
            encoded(|o| encode_event(
                "/",
                "push",
                br#"{"cn":"x","correspondingMessageId":"m1"}"#,
                o
            )),
            r#"42["push",{"cn":"x","correspondingMessageId":"m1"}]"#
        );
        assert_eq!(encoded(encode_ping), "2");
        assert_eq!(encoded(|o| encode_pong("", o)), "3");
    }

    #[test]
    fn event_arguments_stay_raw_and_names_are_unescaped() {
        let text = r#"2["message",{"connect":{"ensureMessageDelivery":true}}, [1,2] ,"x"]"#;
        let SioPacket::Event { name, args, .. } = decode_sio(text).unwrap() else {
            panic!()
        };
        assert!(matches!(name, Cow::Borrowed("message")));
        let got: Vec<&str> = args.iter().map(|a| a.get()).collect();
        assert_eq!(
            got,
            [
                r#"{"connect":{"ensureMessageDelivery":true}}"#,
                "[1,2]",
                r#""x""#
            ]
        );
        let SioPacket::Event { name, .. } = decode_sio(r#"2["a\"b\u00e9"]"#).unwrap() else {
            panic!()
        };
        assert_eq!(name, "a\"bé");
        // A namespace ends at the first comma, whatever follows.
        assert_eq!(sio(r#"2/a,["b,c"]"#), "event /a None b,c []");
        // An ack id as large as fits.
        assert_eq!(
            sio(r#"218446744073709551615["x"]"#),
            "event / Some(18446744073709551615) x []"
        );
        // An ack with no payload at all is taken as no arguments (the reference server does).
        assert_eq!(sio("37"), "ack / 7 []");
    }

    #[test]
    fn malformed_socketio_packets() {
        let cases: &[(&str, &str)] = &[
            ("", "Empty"),
            ("7", "UnknownType"),
            ("x", "UnknownType"),
            ("51-[\"baz\",{\"_placeholder\":true,\"num\":0}]", "Binary"),
            ("61-15[\"bar\",{\"_placeholder\":true,\"num\":0}]", "Binary"),
            ("218446744073709551616[\"x\"]", "IdOverflow"),
            (&format!("2{}[\"x\"]", "9".repeat(10_000)), "IdOverflow"),
            ("012{}", "UnexpectedId"),
            ("11", "UnexpectedId"),
            ("3[]", "MissingAckId"),
            ("2", "MissingPayload"),
            ("21", "MissingPayload"),
            ("2/admin[\"x\"]", "MissingPayload"),
            ("1{}", "UnexpectedPayload"),
            ("1/admin,x", "UnexpectedPayload"),
            ("0[]", "NotAnObject"),
            ("0\"x\"", "NotAnObject"),
            ("2{\"a\":1}", "NotAnArray"),
            ("2\"foo\"", "NotAnArray"),
            ("31{}", "NotAnArray"),
            ("2[]", "EmptyEvent"),
            ("2[1]", "EventNameNotString"),
            ("2[null,1]", "EventNameNotString"),
            ("2[{\"a\":1}]", "EventNameNotString"),
            ("2[\"disconnect\"]", "ReservedEventName"),
            ("2[\"connect\",{}]", "ReservedEventName"),
            ("2[\"foo\"", "Json"),
            ("2[\"foo\"]x", "Json"),
            ("2[\"foo\",]", "Json"),
            ("0{\"a\":}", "Json"),
            ("0{} {}", "Json"),
            ("31[", "Json"),
            ("4{", "Json"),
            ("2[\"\\ud800\"]", "Json"),
        ];
        for (text, expected) in cases {
            let err = decode_sio(text).unwrap_err();
            let name = format!("{err:?}");
            assert!(name.starts_with(expected), "{text:?}: {name}");
        }
    }

    #[test]
    fn deeply_nested_json_does_not_overflow_the_stack() {
        for text in [
            format!("2[\"x\",{}{}]", "[".repeat(100_000), "]".repeat(100_000)),
            format!("0{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000)),
            format!("2[{}\"x\"{}]", "[".repeat(100_000), "]".repeat(100_000)),
        ] {
            let _ = decode_sio(&text);
        }
    }

    #[test]
    fn socketio_encoders() {
        assert_eq!(
            encoded(|o| encode_connect("/", "wZX3oN0bSVIhsaknAAAI", EioVersion::V4, o)),
            r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#
        );
        assert_eq!(
            encoded(|o| encode_connect("/admin", "-G5j-67EZFp-q59rADQM", EioVersion::V4, o)),
            r#"40/admin,{"sid":"-G5j-67EZFp-q59rADQM"}"#
        );
        assert_eq!(
            encoded(|o| encode_connect("/", "ignored", EioVersion::V3, o)),
            "40"
        );
        assert_eq!(
            encoded(|o| encode_connect("/admin", "x", EioVersion::V3, o)),
            "40/admin,"
        );
        assert_eq!(encoded(|o| encode_disconnect("/", o)), "41");
        assert_eq!(encoded(|o| encode_disconnect("/admin", o)), "41/admin,");
        assert_eq!(
            encoded(|o| encode_event("/", "hey", br#""Jude""#, o)),
            r#"42["hey","Jude"]"#
        );
        assert_eq!(
            encoded(|o| encode_event("/", "push", br#"{"cn":"x","a":[1]}"#, o)),
            r#"42["push",{"cn":"x","a":[1]}]"#
        );
        assert_eq!(
            encoded(|o| encode_event("/", "we\"ird\n", b"1", o)),
            r#"42["we\"ird\n",1]"#
        );
        assert_eq!(
            encoded(|o| encode_event_value("/", "gatewayConnectAck", &"key;sig", o).unwrap()),
            r#"42["gatewayConnectAck","key;sig"]"#
        );
        assert_eq!(encoded(|o| encode_ack("/", 12, b"[]", o)), "4312[]");
        assert_eq!(
            encoded(|o| encode_ack("/admin", 13, br#"["bar"]"#, o)),
            r#"43/admin,13["bar"]"#
        );
        assert_eq!(
            encoded(|o| encode_connect_error("/", "Not authorized", EioVersion::V4, o)),
            r#"44{"message":"Not authorized"}"#
        );
        assert_eq!(
            encoded(|o| encode_connect_error("/admin", "Not authorized", EioVersion::V3, o)),
            r#"44/admin,"Not authorized""#
        );
    }

    #[test]
    fn what_we_encode_decodes_back() {
        let mut out = Vec::new();
        encode_event("/", "n\u{e9}\"", br#"{"a":[1,{"b":null}]}"#, &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let EioPacket::Message(sio_text) = decode_eio(text).unwrap() else {
            panic!()
        };
        assert_eq!(sio(sio_text), r#"event / None né" [{"a":[1,{"b":null}]}]"#);
    }

    #[test]
    fn a_value_that_cannot_be_serialized_leaves_the_buffer_alone() {
        let mut map = std::collections::BTreeMap::new();
        map.insert((1, 2), 3);
        let mut out = b"42[\"previous\"]".to_vec();
        assert!(encode_event_value("/", "push", &map, &mut out).is_err());
        assert_eq!(out, b"42[\"previous\"]");
    }

    #[test]
    fn garbage_never_panics() {
        let seeds = [
            r#"2/admin,12["name",{"a":[1,2,"x"]},null]"#,
            r#"0/x?y=z,{"token":"123"}"#,
            "3/admin,456[]",
            "1/admin,",
        ];
        for_each_mutation(
            &seeds,
            b"0123456789/,[]{}\":-\\ uax\xc3\xa9",
            20_000,
            |text| {
                let _ = decode_sio(text);
                let _ = decode_eio(text);
            },
        );
    }
}
