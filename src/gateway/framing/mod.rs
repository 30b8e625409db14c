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

mod data;
pub mod engineio;
pub mod legacy;

use serde_json::Value;
use tokio::time::Instant;

pub use data::Data;

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
