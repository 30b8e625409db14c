//! `/connection/websocket`: Centrifugo's bidirectional JSON protocol over a websocket. This
//! module only moves frames (tokio-tungstenite over the worker's hyper upgrade); the protocol
//! is the [`Session`]'s, so the session can later move onto the gateway's own websocket layer.
//!
//! A text frame holds one or more JSON commands separated by `\n`; replies and pushes that are
//! ready together go out in one frame the same way. Frames over 64 KiB close the connection
//! with 1009 (Centrifugo's `websocket.message_size_limit`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Realtime;
use super::driver::{Conn, origin_allowed, plain, unix_now};
use super::protocol::{self, Command, Disconnect};
use super::session::{Session, Transport};

/// `websocket.message_size_limit`.
pub const MESSAGE_SIZE_LIMIT: usize = 65536;
/// Most queued pushes written in one frame.
const BATCH: usize = 64;

/// Answers the upgrade and runs the connection on a task of its own.
pub async fn handler(
    State(realtime): State<Realtime>,
    mut request: Request<Body>,
) -> Response<Body> {
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(&realtime.config().allowed_origins, origin) {
        tracing::info!(origin, "realtime websocket refused: origin not allowed");
        return plain(StatusCode::FORBIDDEN, "Forbidden");
    }
    let Some(key) = websocket_key(headers) else {
        return plain(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return plain(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MESSAGE_SIZE_LIMIT))
                    .max_frame_size(Some(MESSAGE_SIZE_LIMIT))
                    .read_buffer_size(4096)
                    .write_buffer_size(0);
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                serve(ws, realtime).await;
            }
            Err(e) => tracing::debug!("realtime websocket upgrade failed: {e}"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(accept) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The client's `Sec-WebSocket-Key` if this is a websocket upgrade (version 13).
fn websocket_key(headers: &HeaderMap) -> Option<String> {
    let has = |name: header::HeaderName, value: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(value))
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION)?.as_bytes() != b"13" {
        return None;
    }
    Some(
        headers
            .get(header::SEC_WEBSOCKET_KEY)?
            .to_str()
            .ok()?
            .to_string(),
    )
}

async fn serve<S>(mut ws: WebSocketStream<S>, realtime: Realtime)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let session = Session::new(
        realtime.config().clone(),
        Transport::Bidirectional,
        Instant::now(),
    );
    let mut closing = realtime.closing();
    let mut conn = Conn::new(realtime, session);
    let mut out = Vec::new();
    let disconnect = loop {
        let deadline = conn.deadline();
        let close = tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => frame(&mut conn, text.as_str(), &mut out).await,
                Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                    Ok(text) => frame(&mut conn, text, &mut out).await,
                    Err(_) => {
                        conn.session.bad_frame(Disconnect::BAD_REQUEST);
                        Some(Disconnect::BAD_REQUEST)
                    }
                },
                Some(Ok(Message::Close(_))) | None => break None,
                Some(Ok(_)) => None, // websocket pings are answered by tungstenite
                Some(Err(WsError::Capacity(e))) => {
                    tracing::info!("realtime websocket frame too big: {e}");
                    Some(Disconnect::MESSAGE_TOO_BIG)
                }
                Some(Err(e)) => {
                    tracing::debug!("realtime websocket read failed: {e}");
                    break None;
                }
            },
            Some(delivery) = conn.deliveries.recv() => {
                let mut close = conn.delivery(delivery, &mut out).await;
                // Whatever else is queued goes in the same frame.
                while close.is_none() && out.len() < BATCH {
                    match conn.deliveries.try_recv() {
                        Ok(delivery) => close = conn.delivery(delivery, &mut out).await,
                        Err(_) => break,
                    }
                }
                close
            }
            () = conn.slow.notified() => Some(Disconnect { code: 3008, reason: "slow" }),
            () = sleep_until(deadline) => {
                let step = conn.session.tick(Instant::now(), unix_now());
                conn.run(step, &mut out).await
            }
            () = super::closed(&mut closing) => Some(Disconnect::SHUTDOWN),
        };
        if !out.is_empty() {
            let text = out.join("\n");
            out.clear();
            if ws.send(Message::text(text)).await.is_err() {
                break None;
            }
        }
        if let Some(disconnect) = close {
            break Some(disconnect);
        }
    };
    if let Some(d) = disconnect {
        tracing::debug!(
            code = d.code,
            reason = d.reason,
            "realtime websocket closed"
        );
        let frame = CloseFrame {
            code: CloseCode::from(d.code),
            reason: d.reason.into(),
        };
        let _ = ws.send(Message::Close(Some(frame))).await;
        let _ = ws.flush().await;
    }
    conn.finish().await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One text frame: its commands in order, until one closes the connection.
async fn frame(conn: &mut Conn, text: &str, out: &mut Vec<String>) -> Option<Disconnect> {
    for line in protocol::split_frame(text) {
        let step = match Command::parse(line) {
            Ok(command) => conn.session.command(command, Instant::now(), unix_now()),
            Err(e) => {
                tracing::info!("realtime: bad command ({e}); closing with 3501");
                conn.session.bad_frame(Disconnect::BAD_REQUEST)
            }
        };
        if let Some(close) = conn.run(step, out).await {
            return Some(close);
        }
    }
    None
}
