//! The gateway's HTTP side, under `/socket.io/`:
//!
//! - `GET /socket.io/?EIO=4|3&transport=websocket` (an upgrade): a socket.io v5/v4 connection.
//!   Other transports (long-polling) are refused as engine.io refuses them: `400
//!   {"code":0,"message":"Transport unknown"}`.
//! - `GET /socket.io/1/?t=...`: the socket.io 0.9 handshake, answered
//!   `<sid>:<heartbeat timeout>:<close timeout>:websocket` (CORS for the page's origin, or JSONP
//!   with `jsonp=N`, as 0.9 answered it). The sid verifies itself ([`wire::legacy::new_sid`]):
//!   the handshake and the websocket are two connections that may land on different workers.
//! - `GET /socket.io/1/websocket/<sid>` (an upgrade): a socket.io 0.9 connection. A forged or
//!   malformed sid is refused (403); an expired one is upgraded and told to handshake again
//!   (`7:::1+0`, "client not handshaken", advice "reconnect"), as 0.9 did for unknown sids.
//!
//! [`wire::legacy::new_sid`]: super::wire::legacy::new_sid

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::Shared;
use super::connection::{self, Peer};
use super::framing::Framing;
use super::framing::engineio::EngineIo;
use super::framing::legacy::Legacy;
use super::session::random_bytes;
use super::wire::engineio::EioVersion;
use super::wire::{legacy, websocket};

/// How long a socket.io 0.9 sid is good for: the client opens its websocket right after the
/// handshake, and handshakes again whenever it reconnects.
pub const LEGACY_SID_MAX_AGE: Duration = Duration::from_secs(60);

/// Whose a request is.
pub enum Route<B> {
    /// The gateway's, answered.
    Answered(Response<Body>),
    /// Not the gateway's: given back.
    Other(Request<B>),
}

/// The gateway's routes, for the worker's HTTP server.
#[derive(Clone)]
pub struct Handshakes {
    shared: Arc<Shared>,
}

impl Handshakes {
    pub(super) fn new(shared: Arc<Shared>) -> Handshakes {
        Handshakes { shared }
    }

    /// Answers `request` if it is the gateway's (under `/socket.io`); gives it back otherwise.
    pub fn route<B>(&self, request: Request<B>, peer: Option<SocketAddr>) -> Route<B> {
        let path = request.uri().path();
        let Some(rest) = path.strip_prefix("/socket.io") else {
            return Route::Other(request);
        };
        let response = match rest {
            "" | "/" => self.engine_io(request, peer),
            "/1" | "/1/" => self.legacy_handshake(&request),
            _ => match rest.strip_prefix("/1/websocket/") {
                Some(sid) => {
                    let sid = sid.trim_end_matches('/').to_string();
                    self.legacy_websocket(request, &sid, peer)
                }
                None if rest.starts_with("/1/") => {
                    let transport = rest
                        .trim_start_matches("/1/")
                        .split('/')
                        .next()
                        .unwrap_or("");
                    text(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "transport not supported: {transport:?} (this gateway serves websocket only)"
                        ),
                    )
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    format!("no such socket.io resource: {path}"),
                ),
            },
        };
        Route::Answered(response)
    }

    fn engine_io<B>(&self, request: Request<B>, peer: Option<SocketAddr>) -> Response<Body> {
        let query = request.uri().query().unwrap_or("");
        let version = match param(query, "EIO").map(EioVersion::from_query) {
            Some(Ok(version)) => version,
            _ => return engine_io_error(5, "Unsupported protocol version"),
        };
        if param(query, "transport") != Some("websocket") || !is_upgrade(request.headers()) {
            return engine_io_error(0, "Transport unknown");
        }
        let sid = URL_SAFE_NO_PAD.encode(random_bytes::<15>());
        let socketio = &self.shared.socketio;
        let framing = EngineIo::new(version, sid.clone(), socketio.interval, socketio.timeout);
        self.upgrade(request, framing, Peer { sid, addr: peer })
    }

    fn legacy_handshake<B>(&self, request: &Request<B>) -> Response<Body> {
        if request.method() != Method::GET {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "the socket.io 0.9 handshake is a GET".into(),
            );
        }
        let sid = legacy::new_sid(&self.shared.secret, wall_clock_ms());
        let timeout = self.shared.socketio.timeout.as_secs();
        let body = legacy::handshake_body(&sid, timeout, timeout);
        let origin = request.headers().get(header::ORIGIN).cloned();
        let jsonp = request.uri().query().and_then(|q| param(q, "jsonp"));
        let mut response = match jsonp {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                let script = format!("io.j[{n}]({});", serde_json::Value::String(body));
                let mut response = Response::new(Body::from(script));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/javascript"),
                );
                response
            }
            _ => text(StatusCode::OK, body),
        };
        if let Some(origin) = origin {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        response
    }

    fn legacy_websocket<B>(
        &self,
        request: Request<B>,
        sid: &str,
        peer: Option<SocketAddr>,
    ) -> Response<Body> {
        let max_age = LEGACY_SID_MAX_AGE.as_millis() as u64;
        let expired = match legacy::verify_sid(sid, &self.shared.secret, wall_clock_ms(), max_age) {
            Ok(()) => false,
            Err(legacy::SidError::Expired { .. }) => true,
            Err(e) => {
                tracing::debug!(?peer, sid, "socket.io 0.9 websocket refused: {e}");
                return text(
                    StatusCode::FORBIDDEN,
                    format!("invalid socket.io session id: {e}"),
                );
            }
        };
        if !is_upgrade(request.headers()) {
            return text(
                StatusCode::BAD_REQUEST,
                "expected a websocket upgrade".into(),
            );
        }
        let socketio = &self.shared.socketio;
        let framing = Legacy::new(socketio.interval, socketio.timeout, expired);
        self.upgrade(
            request,
            framing,
            Peer {
                sid: sid.to_string(),
                addr: peer,
            },
        )
    }

    /// Answers the websocket handshake and runs the connection on the upgraded socket.
    fn upgrade<B, F: Framing + 'static>(
        &self,
        mut request: Request<B>,
        framing: F,
        peer: Peer,
    ) -> Response<Body> {
        let headers = request.headers();
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            let mut response = text(
                StatusCode::UPGRADE_REQUIRED,
                "websocket version 13 only".into(),
            );
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return response;
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return text(StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key".into());
        };
        let Ok(accept) = HeaderValue::from_str(&websocket::accept_key(key.as_bytes())) else {
            return text(StatusCode::BAD_REQUEST, "bad Sec-WebSocket-Key".into());
        };
        let on_upgrade = hyper::upgrade::on(&mut request);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    connection::run(TokioIo::new(upgraded), framing, shared, peer).await
                }
                Err(e) => tracing::debug!(sid = %peer.sid, "websocket upgrade failed: {e}"),
            }
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}

/// A websocket upgrade request (`Connection: upgrade`, `Upgrade: websocket`).
fn is_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// The value of query parameter `name` (the gateway's parameters need no percent-decoding).
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// An engine.io error answer (engine.io's own codes and messages).
fn engine_io_error(code: u8, message: &str) -> Response<Body> {
    let body = serde_json::json!({"code": code, "message": message}).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        assert_eq!(param("EIO=4&transport=websocket", "EIO"), Some("4"));
        assert_eq!(
            param("EIO=4&transport=websocket", "transport"),
            Some("websocket")
        );
        assert_eq!(param("t=1&jsonp", "jsonp"), Some(""));
        assert_eq!(param("", "EIO"), None);
    }

    #[test]
    fn upgrade_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(!is_upgrade(&headers));
        headers.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(is_upgrade(&headers));
    }
}
