//! The worker's HTTP side: serves each accepted connection with hyper (over TLS with
//! `frontend.ssl`), counts open connections (the `clients` of heartbeat answers) and closes them
//! gracefully on drain.
//!
//! Routes: `GET /health` -> `{"worker":<slot>,"pid":<pid>,"generation":<n>,"clients":<open>}`.
//! The socket.io gateway ([`crate::gateway`]) is mounted beside it at `/socket.io/`.

use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::get;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::tls::HANDSHAKE_TIMEOUT;

/// Who this worker is, as `/health` tells it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Identity {
    pub worker: usize,
    pub pid: u32,
    pub generation: u64,
}

#[derive(Clone)]
struct AppState {
    identity: Identity,
    clients: Arc<Clients>,
}

#[derive(Serialize)]
struct Health {
    #[serde(flatten)]
    identity: Identity,
    clients: u64,
}

/// Open connections, and a way to wait until there are none.
#[derive(Default)]
struct Clients {
    open: AtomicU64,
    gone: Notify,
}

pub struct HttpServer {
    router: Router,
    /// With `frontend.ssl`: every connection does its TLS handshake before HTTP.
    tls: Option<TlsAcceptor>,
    clients: Arc<Clients>,
    /// Flipped to `true` to ask every connection to finish its request and close.
    closing: watch::Sender<bool>,
}

impl HttpServer {
    pub fn new(identity: Identity, tls: Option<TlsAcceptor>) -> HttpServer {
        let clients = Arc::new(Clients::default());
        let router = Router::new()
            .route("/health", get(health))
            .with_state(AppState {
                identity,
                clients: clients.clone(),
            });
        HttpServer {
            router,
            tls,
            clients,
            closing: watch::Sender::new(false),
        }
    }

    /// Adds routes beside `/health` (the realtime side's `/connection/*` and `/api/*`).
    pub fn merge(&mut self, router: Router) {
        self.router = std::mem::replace(&mut self.router, Router::new()).merge(router);
    }

    /// Mounts the socket.io gateway (it answers `/socket.io/`, passes the rest on).
    pub fn mount(&mut self, layer: crate::gateway::SocketIoLayer) {
        self.router = std::mem::replace(&mut self.router, Router::new()).layer(layer);
    }

    /// Open connections right now.
    pub fn clients(&self) -> u64 {
        self.clients.open.load(Ordering::Relaxed)
    }

    /// Serves one accepted connection on a task of its own (the TLS handshake too, so a slow
    /// client never holds up the others).
    pub fn serve(&self, stream: StdTcpStream) {
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("cannot serve an accepted connection: {e}");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        // Counted from the accept: a connection still in its handshake is open, and a drain
        // waits for it like for any other.
        let guard = ClientGuard::new(self.clients.clone());
        let router = TowerToHyperService::new(self.router.clone());
        let closing = self.closing.subscribe();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => serve_http(TokioIo::new(stream), router, closing).await,
                Some(tls) => {
                    let peer = stream.peer_addr().ok();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve_http(TokioIo::new(stream), router, closing).await,
                        Ok(Err(e)) => {
                            tracing::debug!(?peer, "TLS handshake failed: {e}");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(
                                ?peer,
                                timeout_ms = HANDSHAKE_TIMEOUT.as_millis() as u64,
                                "TLS handshake timed out"
                            );
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection ended with an error: {e}");
            }
            drop(guard);
        });
    }

    /// Asks every connection to finish its current request and close; resolves once all have.
    pub async fn close_all(self) {
        self.closing.send_replace(true);
        loop {
            let gone = self.clients.gone.notified();
            if self.clients() == 0 {
                return;
            }
            gone.await;
        }
    }
}

/// Serves HTTP/1.1 (and upgrades: socket.io's websockets) on one connection until it ends, or
/// until a drain has let it finish its request.
async fn serve_http<I>(
    io: I,
    router: TowerToHyperService<Router>,
    mut closing: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (first_request, mut requested) = watch::channel(false);
    let service = service_fn(move |request: Request<Incoming>| {
        first_request.send_if_modified(|seen| !std::mem::replace(seen, true));
        if request.headers().contains_key(header::UPGRADE) {
            router.call(detach_head(request))
        } else {
            router.call(request)
        }
    });
    let conn = http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    // On drain, a connection finishes the request it is on and closes. One accepted just before
    // the drain has not sent its request yet (a client's connect and write race our accept, or
    // it is still in its TLS handshake): closing it now would fail a request the client already
    // sent, so it is served first. The worker's drain deadline bounds the wait.
    let drained = async {
        let _ = closing.wait_for(|closing| *closing).await;
        let _ = requested.wait_for(|seen| *seen).await;
    };
    tokio::select! {
        result = conn.as_mut() => result,
        () = drained => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// The request with a head that owns its bytes. hyper parses the URI and header values as slices
/// of the connection's read buffer (8 KiB at least), so whoever keeps the head keeps that whole
/// buffer. socket.io keeps a websocket's request head for as long as the socket lives: copied,
/// it costs the size of the head instead.
fn detach_head<B>(request: Request<B>) -> Request<B> {
    let (mut parts, body) = request.into_parts();
    // All header values in one allocation, each value a slice of it.
    let mut values = Vec::with_capacity(parts.headers.values().map(|v| v.len()).sum());
    for value in parts.headers.values() {
        values.extend_from_slice(value.as_bytes());
    }
    let values = Bytes::from(values);
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    let mut at = 0;
    for (name, value) in &parts.headers {
        let end = at + value.len();
        // The bytes were a valid value already: the check cannot fail.
        let mut copy =
            HeaderValue::from_maybe_shared(values.slice(at..end)).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
        at = end;
    }
    parts.headers = headers;
    if let Ok(uri) =
        Uri::from_maybe_shared(Bytes::copy_from_slice(parts.uri.to_string().as_bytes()))
    {
        parts.uri = uri;
    }
    Request::from_parts(parts, body)
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        identity: state.identity,
        clients: state.clients.open.load(Ordering::Relaxed),
    })
}

/// Counts one open connection for as long as it lives.
struct ClientGuard(Arc<Clients>);

impl ClientGuard {
    fn new(clients: Arc<Clients>) -> ClientGuard {
        clients.open.fetch_add(1, Ordering::Relaxed);
        ClientGuard(clients)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.gone.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_head_is_the_same_head() {
        let mut request = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header(header::UPGRADE, "websocket")
            .header("x-custom", "one")
            .header("x-custom", "two")
            .header(header::HOST, "example.com:8080")
            .body(())
            .unwrap();
        let mut secret = HeaderValue::from_static("token");
        secret.set_sensitive(true);
        request.headers_mut().insert(header::COOKIE, secret);
        request
            .headers_mut()
            .insert("x-empty", HeaderValue::from_static(""));
        let (uri, headers) = (request.uri().clone(), request.headers().clone());

        let detached = detach_head(request);
        assert_eq!(detached.uri(), &uri);
        assert_eq!(detached.headers(), &headers);
        let all =
            |h: &HeaderMap, name: &str| -> Vec<_> { h.get_all(name).iter().cloned().collect() };
        assert_eq!(
            all(detached.headers(), "x-custom"),
            all(&headers, "x-custom")
        );
        assert!(detached.headers()[header::COOKIE].is_sensitive());
    }
}
