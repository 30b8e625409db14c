//! socket.io 0.9 clients for the tests:
//!
//! - the real one: npm `socket.io-client@0.9.17` (the client the ActiveStack JS SDK loads),
//!   installed in tests/e2e as `socket.io-client-legacy` and driven through
//!   `tests/e2e/legacy_client.js` as a [`JsClient`] (same commands and events as the v4 driver);
//! - a bare one over one websocket (the counterpart of [`super::ws`]), for what the library does
//!   not let a test do: hold thousands of sockets, never answer a heartbeat, or bring a sid of
//!   its own.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::agent::JsClient;
use super::ws::Ws;
use super::{Cluster, DEADLINE};

// ----- the real client -----

fn spawn() -> JsClient {
    JsClient::spawn_script(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/legacy_client.js"),
    )
}

/// A socket.io 0.9 client connected to the cluster (the `connect` event seen); panics if it is
/// not connected within [`DEADLINE`].
pub fn connect(cluster: &Cluster) -> JsClient {
    connect_with(cluster, json!({})).0
}

/// Like [`connect`], with options of tests/e2e/legacy_client.js's `connect` (`reconnection`,
/// `heartbeats`); also gives the local port of the client's websocket.
pub fn connect_with(cluster: &Cluster, options: Value) -> (JsClient, u16) {
    let mut client = spawn();
    let mut command = json!({"op": "connect", "url": format!("http://{}", cluster.addr())});
    if let (Some(command), Value::Object(options)) = (command.as_object_mut(), options) {
        command.extend(options);
    }
    client.send(command);
    let connected = client
        .next_matching(Instant::now() + DEADLINE, |e| {
            e["event"] == "connect" || e["event"] == "error" || e["event"] == "connect_failed"
        })
        .unwrap_or_else(|| panic!("the socket.io 0.9 client did not connect within {DEADLINE:?}"));
    assert_eq!(connected["event"], "connect", "not connected: {connected}");
    let port = connected["localPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no websocket port in {connected}"));
    (client, port)
}

/// A socket.io 0.9 client that tries to connect to `addr`; `None` if it is not connected within
/// `within`. With the websocket's local port.
pub fn try_connect(addr: SocketAddr, within: Duration) -> Option<(JsClient, u16)> {
    let mut client = spawn();
    client.send(json!({"op": "connect", "url": format!("http://{addr}")}));
    let event = client.next_matching(Instant::now() + within, |e| {
        e["event"] == "connect" || e["event"] == "error" || e["event"] == "connect_failed"
    })?;
    let port = event["localPort"].as_u64()?;
    (event["event"] == "connect").then_some((client, u16::try_from(port).ok()?))
}

// ----- a bare client -----

/// What the server answered to the 0.9 handshake.
#[derive(Debug)]
pub struct Handshake {
    pub sid: String,
    pub heartbeat_timeout_s: u64,
    pub close_timeout_s: u64,
    pub transports: String,
}

/// `GET /socket.io/1/?t=...` on a connection of its own; the HTTP status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    parse_response(&response)
}

/// The status and body of a whole `Connection: close` HTTP/1.1 answer (not chunked).
pub fn parse_response(response: &str) -> Result<(u16, String), String> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// The handshake: `<sid>:<heartbeat timeout>:<close timeout>:<transports>`.
pub async fn handshake(addr: SocketAddr) -> Result<Handshake, String> {
    let (status, body) = get(addr, &format!("/socket.io/1/?t={}", now_ms())).await?;
    if status != 200 {
        return Err(format!("handshake answered {status}: {body}"));
    }
    parse_handshake(&body)
}

pub fn parse_handshake(body: &str) -> Result<Handshake, String> {
    let fields: Vec<&str> = body.split(':').collect();
    let [sid, heartbeat, close, transports] = fields[..] else {
        return Err(format!(
            "not <sid>:<heartbeat>:<close>:<transports>: {body:?}"
        ));
    };
    let seconds = |s: &str| {
        s.parse()
            .map_err(|_| format!("not seconds: {s:?} in {body:?}"))
    };
    Ok(Handshake {
        sid: sid.to_string(),
        heartbeat_timeout_s: seconds(heartbeat)?,
        close_timeout_s: seconds(close)?,
        transports: transports.to_string(),
    })
}

/// The websocket URL of a 0.9 session.
pub fn url(addr: SocketAddr, sid: &str) -> String {
    format!("ws://{addr}/socket.io/1/websocket/{sid}")
}

/// Reads frames until one starts with `prefix`, answering the server's heartbeats on the way
/// (as the 0.9 client does).
pub async fn read_until(ws: &mut Ws, prefix: &str) -> Result<String, String> {
    super::ws::read_until_answering(ws, prefix, "2::", "2::").await
}

/// A handshake, then the session's websocket up to the server's `1::`. With the sid.
pub async fn open_session(addr: SocketAddr) -> Result<(Ws, String), String> {
    let handshake = handshake(addr).await?;
    let (mut ws, _) = tokio_tungstenite::connect_async(url(addr, &handshake.sid))
        .await
        .map_err(|e| e.to_string())?;
    read_until(&mut ws, "1::").await?;
    Ok((ws, handshake.sid))
}

/// [`open_session`] without the sid.
pub async fn open(addr: SocketAddr) -> Result<Ws, String> {
    Ok(open_session(addr).await?.0)
}

/// An event packet `5:::{"name":..,"args":[data]}`.
pub fn event(name: &str, data: &Value) -> Message {
    Message::text(format!("5:::{}", json!({"name": name, "args": [data]})))
}

/// The gateway's `connect`, as the SDK sends it, up to its gatewayConnectAck; returns the frame.
pub async fn gateway_connect(ws: &mut Ws) -> Result<String, String> {
    ws.send(event(
        "message",
        &json!({"connect": {"ensureMessageDelivery": true}}),
    ))
    .await
    .map_err(|e| e.to_string())?;
    read_until(ws, r#"5:::{"name":"gatewayConnectAck""#).await
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
