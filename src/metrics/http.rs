//! The master's own metrics listener (`cluster.metricsAddress`): `GET /metrics` answered with
//! the text the master renders, on an address of its own (a private interface, say, apart from
//! the clients' listen address). Anything else is 404.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::CONTENT_TYPE;

/// How long a scrape waits for the master's text.
pub const ANSWER_WAIT: Duration = Duration::from_secs(5);
/// A connection must send its request head within this long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MetricsListenError {
    #[error("cannot listen on cluster.metricsAddress={addr}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
}

/// A scrape, and where its text goes.
#[derive(Debug)]
pub struct MetricsCall {
    pub reply: oneshot::Sender<String>,
}

/// Binds `addr` (`host:port`; port 0: any free port), non-blocking; the address it got.
pub fn bind(addr: &str) -> Result<(StdTcpListener, SocketAddr), MetricsListenError> {
    let bound = StdTcpListener::bind(addr).and_then(|listener| {
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    });
    bound.map_err(|source| MetricsListenError::Bind {
        addr: addr.to_string(),
        source,
    })
}

/// Answers scrapes until `calls` is closed (the master has stopped).
pub async fn serve(listener: StdTcpListener, calls: mpsc::Sender<MetricsCall>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("cluster.metricsAddress: cannot serve: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    let calls = calls.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| answer(request, calls.clone()));
                        let served = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(e) = served {
                            tracing::debug!("metrics connection: {e}");
                        }
                    });
                }
                Err(e) => tracing::warn!("metrics listener accept failed: {e}"),
            },
            () = calls.closed() => return,
        }
    }
}

async fn answer(
    request: Request<Incoming>,
    calls: mpsc::Sender<MetricsCall>,
) -> Result<Response<Body>, std::convert::Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found: see /metrics\n"));
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n"));
    }
    let (reply, text) = oneshot::channel();
    if calls.send(MetricsCall { reply }).await.is_err() {
        return Ok(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the master is stopping\n",
        ));
    }
    Ok(match tokio::time::timeout(ANSWER_WAIT, text).await {
        Ok(Ok(text)) => exposition(text),
        _ => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the master did not answer in time\n",
        ),
    })
}

/// A 200 with the exposition text.
pub fn exposition(text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
}
