//! `/connection/uni_sse`: Centrifugo's unidirectional SSE transport. One connect request
//! (`GET ?cf_connect=<JSON>` or a `POST` with the JSON body), then a `text/event-stream` of
//! bare pushes: the connect push first (server-side subscriptions and their recovery inside),
//! then `data: {"channel":..,"pub":..}` per publication and `data: {}` pings; a close is a last
//! `data: {"disconnect":{..}}` (connect failures too: HTTP 200 and that one push).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Request, Response, StatusCode, header};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Realtime;
use super::driver::{Conn, origin_allowed, plain, unix_now};
use super::protocol::{Command, ConnectRequest, Disconnect, Method};
use super::session::{Session, Transport};

/// `uni_sse.max_request_body_size`.
const MAX_BODY: usize = 65536;

pub async fn handler_get(
    State(realtime): State<Realtime>,
    request: Request<Body>,
) -> Response<Body> {
    let json = request
        .uri()
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "cf_connect")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "{}".to_string());
    start(realtime, request.headers(), json.as_bytes())
}

pub async fn handler_post(
    State(realtime): State<Realtime>,
    request: Request<Body>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    start(realtime, &parts.headers, &bytes)
}

fn start(realtime: Realtime, headers: &HeaderMap, json: &[u8]) -> Response<Body> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(&realtime.config().allowed_origins, origin) {
        tracing::info!(origin, "realtime SSE refused: origin not allowed");
        return plain(StatusCode::FORBIDDEN, "Forbidden");
    }
    let request: ConnectRequest = match serde_json::from_slice::<Option<ConnectRequest>>(json) {
        Ok(request) => request.unwrap_or_default(),
        Err(e) => {
            tracing::info!("realtime SSE: bad connect request: {e}");
            return plain(StatusCode::BAD_REQUEST, "Bad Request");
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(serve(realtime, request, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    for (name, value) in [
        ("content-type", "text/event-stream; charset=utf-8"),
        (
            "cache-control",
            "private, no-cache, no-store, must-revalidate, max-age=0",
        ),
        ("pragma", "no-cache"),
        ("expire", "0"),
        ("x-accel-buffering", "no"),
        ("connection", "keep-alive"),
    ] {
        h.insert(name, header::HeaderValue::from_static(value));
    }
    response
}

fn event(json: &str) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

async fn serve(realtime: Realtime, request: ConnectRequest, tx: mpsc::Sender<Bytes>) {
    if tx.send(Bytes::from_static(b"\r\n")).await.is_err() {
        return;
    }
    let session = Session::new(
        realtime.config().clone(),
        Transport::Unidirectional,
        Instant::now(),
    );
    let mut closing = realtime.closing();
    let mut conn = Conn::new(realtime, session);
    let mut out = Vec::new();
    let connect = Command::Call {
        id: 1,
        method: Method::Connect(request),
    };
    let step = conn.session.command(connect, Instant::now(), unix_now());
    let mut close = conn.run(step, &mut out).await;
    loop {
        for item in out.drain(..) {
            if tx.send(event(&item)).await.is_err() {
                conn.finish().await;
                return;
            }
        }
        if let Some(d) = close {
            let push = format!(
                "{{\"disconnect\":{}}}",
                serde_json::to_string(&d).unwrap_or_default()
            );
            let _ = tx.send(event(&push)).await;
            break;
        }
        let deadline = conn.deadline();
        close = tokio::select! {
            Some(delivery) = conn.deliveries.recv() => conn.delivery(delivery, &mut out).await,
            () = conn.slow.notified() => Some(Disconnect { code: 3008, reason: "slow" }),
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let step = conn.session.tick(Instant::now(), unix_now());
                conn.run(step, &mut out).await
            }
            () = tx.closed() => break,
            () = super::closed(&mut closing) => Some(Disconnect::SHUTDOWN),
        };
    }
    conn.finish().await;
}
