//! How ActiveStack events travel on one websocket. The client logic ([`super::client`]) exists
//! once; each framing is one way of carrying its events, with its own handshake and heartbeat:
//!
//! - [`engineio`]: engine.io v3/v4 with socket.io protocol v4/v5 (socket.io-client 2.x to 4.x,
//!   python-socketio), at `/socket.io/?EIO=3|4&transport=websocket`.
//! - [`legacy`]: socket.io 0.9 (protocol revision 1, the ActiveStack JS and iOS SDKs), at
//!   `/socket.io/1/websocket/<sid>` after the `/socket.io/1/` handshake.
//!
//! A framing writes whole websocket frames into the connection's output buffer; the connection
//! ([`super::connection`]) owns the socket, the timers and the client.

pub mod engineio;
pub mod legacy;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::Instant;

/// What one text message from the client carried.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// An event for the client logic: `message`, a request, `logout`... and its first argument.
    Event { name: String, data: Option<Data> },
    /// Nothing for the client logic (a heartbeat, a namespace connect, a noop).
    Nothing,
    /// The client says goodbye (its own disconnect packet).
    Close,
}

/// An event's argument as the client wrote it (valid JSON): the client logic reads as much of it
/// as it needs (a request is forwarded without being built as a `Value`).
#[derive(Debug)]
pub struct Data(Box<RawValue>);

impl Data {
    /// The argument `raw` (`what`, for the error): refused if it holds a number no `Value` can
    /// hold (beyond f64, `1e999`: valid JSON no client library writes), as when arguments were
    /// read into `Value`s.
    pub fn read(raw: &RawValue, what: &dyn std::fmt::Display) -> Result<Data, FramingError> {
        if may_overflow(raw.get()) {
            let mut reader = serde_json::Deserializer::from_str(raw.get());
            Checked::deserialize(&mut reader).map_err(|e| FramingError(format!("{what}: {e}")))?;
        }
        Ok(Data(raw.to_owned()))
    }

    /// A value the framing made itself (a socket.io 0.9 text message is a string).
    pub fn of(value: &Value) -> Data {
        // A `Value` always serializes.
        let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        Data(RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// The whole value (an error for what JSON allows and `Value` cannot hold: a number out of
    /// range).
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

/// Whether JSON text may hold a number beyond f64: an exponent (a digit, then `e` or `E`) or
/// more than 300 digits in a row. Most requests have neither, and are not read a second time.
fn may_overflow(text: &str) -> bool {
    let mut digits = 0;
    for &b in text.as_bytes() {
        if b.is_ascii_digit() {
            digits += 1;
            if digits > 300 {
                return true;
            }
        } else {
            if digits > 0 && (b | 0x20) == b'e' {
                return true;
            }
            digits = 0;
        }
    }
    false
}

/// Reads a whole JSON value, building nothing: serde_json checks every number's range as it
/// reads it (skipping a value checks nothing).
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// The same JSON value (tests compare what a framing read).
impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        match (self.value(), other.value()) {
            (Ok(a), Ok(b)) => a == b,
            _ => self.0.get() == other.0.get(),
        }
    }
}

#[cfg(test)]
mod data_tests {
    use super::*;

    fn read(text: &str) -> Result<Data, FramingError> {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        Data::read(&raw, &"event \"x\"")
    }

    #[test]
    fn a_number_beyond_f64_is_refused_wherever_it_is() {
        for text in [
            "1e999",
            r#"{"a":[1,{"b":-2.5E+400}]}"#,
            &format!("[{}]", "9".repeat(400)),
            &format!(r#"{{"{}":1e309}}"#, "k"),
        ] {
            let e = read(text).err().unwrap_or_else(|| panic!("{text} taken"));
            assert!(e.to_string().contains("number out of range"), "{e}");
            assert!(e.to_string().starts_with("event \"x\": "), "{e}");
        }
    }

    #[test]
    fn everything_else_is_taken_as_written() {
        for text in [
            r#"{"cn":"TestCall","messageId":"c1-5e"}"#,
            r#"{"n":1e300,"m":-2.5E-400,"s":"1e999","k":123456}"#,
            &format!("[{}]", "9".repeat(300)),
            &format!("[0.{}]", "9".repeat(400)),
            "null",
        ] {
            let data = read(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(data.as_raw().get(), text);
        }
    }
}

/// Why a client message could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FramingError(pub String);

/// The client stopped answering heartbeats.
#[derive(Debug, thiserror::Error)]
#[error("no heartbeat from the client within {timeout_ms} ms")]
pub struct Silent {
    pub timeout_ms: u64,
}

pub trait Framing: Send {
    /// `engine.io v4`, `socket.io 0.9`...: for logs and status.
    fn name(&self) -> &'static str;
    /// Which protocol it is, for the metrics.
    fn protocol(&self) -> crate::metrics::Protocol;
    /// Written once the websocket is open. An error refuses the client (after what was
    /// written, which tells it why).
    fn open(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<(), FramingError>;
    /// One text message from the client (anything written in answer goes to `out`).
    fn receive(
        &mut self,
        text: &str,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Received, FramingError>;
    /// An event whose data is JSON bytes, copied as they are (the backend's pushes).
    fn event_raw(&self, name: &str, json: &[u8], out: &mut Vec<u8>);
    /// An event whose data is a JSON value.
    fn event(&self, name: &str, data: &Value, out: &mut Vec<u8>);
    /// The server ends the session (after which standard clients do not reconnect by
    /// themselves).
    fn disconnect(&self, out: &mut Vec<u8>);
    /// When the heartbeat needs attention next.
    fn heartbeat_due(&self) -> Instant;
    /// The heartbeat came due: write a ping if one is due, or say the client is gone.
    fn heartbeat(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<(), Silent>;
}

/// The text payloads of the server frames in a buffer (tests only: server frames are unmasked).
#[cfg(test)]
fn texts(out: &[u8]) -> Vec<String> {
    let mut rest = out;
    let mut texts = Vec::new();
    while !rest.is_empty() {
        let (len, at) = match rest[1] & 0x7f {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        texts.push(String::from_utf8(rest[at..at + len].to_vec()).unwrap());
        rest = &rest[at + len..];
    }
    texts
}
