//! The worker's HTTP side: serves each accepted connection with hyper (over TLS with
//! `frontend.ssl`), counts open connections (the `clients` of heartbeat answers) and closes them
//! gracefully on drain.
//!
//! Routes: `GET /health` -> `{"worker":<slot>,"pid":<pid>,"generation":<n>,"clients":<open>}`;
//! `GET /metrics` -> the whole cluster's metrics, as the master renders them (asked for over
//! the worker's link, see [`crate::metrics`]). The gateway's handshakes ([`crate::gateway::handshake`]) answer `/socket.io/` first.

use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use futures_util::future::{Either, ready};
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;

use super::scrapes::MetricsAsk;
use crate::gateway::handshake::{Handshakes, Route};
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
    /// Scrapes of `/metrics`, to the worker's loop (which asks the master).
    metrics: mpsc::Sender<MetricsAsk>,
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
    /// The gateway's routes, once mounted.
    gateway: Option<Handshakes>,
    /// With `frontend.ssl`: every connection does its TLS handshake before HTTP.
    tls: Option<TlsAcceptor>,
    clients: Arc<Clients>,
    /// Flipped to `true` to ask every connection to finish its request and close.
    closing: watch::Sender<bool>,
    /// `frontend.headerTimeout`.
    header_timeout: Duration,
}

impl HttpServer {
    pub fn new(
        identity: Identity,
        tls: Option<TlsAcceptor>,
        header_timeout: Duration,
        metrics: mpsc::Sender<MetricsAsk>,
    ) -> HttpServer {
        let clients = Arc::new(Clients::default());
        let router = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics_text))
            .with_state(AppState {
                identity,
                clients: clients.clone(),
                metrics,
            });
        HttpServer {
            router,
            gateway: None,
            tls,
            clients,
            closing: watch::Sender::new(false),
            header_timeout,
        }
    }

    /// Mounts the gateway (it answers `/socket.io/`, the rest goes to the router).
    pub fn mount(&mut self, gateway: Handshakes) {
        self.gateway = Some(gateway);
    }

    /// Adds routes beside `/health` (the realtime side's `/connection/*` and `/api/*`).
    pub fn merge(&mut self, router: Router) {
        self.router = std::mem::replace(&mut self.router, Router::new()).merge(router);
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
        let routes = Routes {
            router: TowerToHyperService::new(self.router.clone()),
            gateway: self.gateway.clone(),
            peer: stream.peer_addr().ok(),
            header_timeout: self.header_timeout,
        };
        let closing = self.closing.subscribe();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            let peer = routes.peer;
            let result = match tls {
                None => serve_http(TokioIo::new(stream), routes, closing).await,
                Some(tls) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => serve_http(TokioIo::new(stream), routes, closing).await,
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

/// Where one connection's requests go: the gateway's routes first, then the router.
struct Routes {
    router: TowerToHyperService<Router>,
    gateway: Option<Handshakes>,
    peer: Option<std::net::SocketAddr>,
    header_timeout: Duration,
}

/// Serves HTTP/1.1 (and upgrades: the gateway's websockets) on one connection until it ends, or
/// until a drain has let it finish its request.
async fn serve_http<I>(
    io: I,
    routes: Routes,
    mut closing: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let header_timeout = routes.header_timeout;
    let (first_request, mut requested) = watch::channel(false);
    let service = service_fn(move |request: Request<Incoming>| {
        first_request.send_if_modified(|seen| !std::mem::replace(seen, true));
        let request = match &routes.gateway {
            Some(gateway) => match gateway.route(request, routes.peer) {
                Route::Answered(response) => return Either::Left(ready(Ok(response))),
                Route::Other(request) => request,
            },
            None => request,
        };
        Either::Right(routes.router.call(request))
    });
    // A connection that does not send a whole request head in time is closed: slowloris, and
    // idle keep-alive connections (hyper's timer also runs while it waits for the next head).
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
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

async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        identity: state.identity,
        clients: state.clients.open.load(Ordering::Relaxed),
    })
}

/// The cluster's metrics: this worker asks the master for them.
async fn metrics_text(State(state): State<AppState>) -> axum::response::Response {
    use crate::metrics::http::{ANSWER_WAIT, exposition, plain};
    use hyper::StatusCode;
    let (ask, text) = oneshot::channel();
    if state.metrics.try_send(ask).is_err() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many scrapes at once\n",
        );
    }
    match tokio::time::timeout(ANSWER_WAIT, text).await {
        Ok(Ok(Some(text))) => exposition(text),
        Ok(Ok(None)) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the metrics could not be passed to this worker (too many scrapes at once, or too \
             large for its channel to the master): scrape cluster.metricsAddress\n",
        ),
        _ => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the master did not answer in time\n",
        ),
    }
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
