//! The server HTTP API, as Centrifugo's (`POST /api/<method>`, and the legacy `POST /api` with
//! `{"method","params"}` lines): publish, broadcast, history, history_remove, presence,
//! presence_stats, info, batch. `X-API-Key`, else `Authorization: apikey <key>`, else
//! `?api_key=`; a wrong key is 401 with an empty body, unparsable JSON 400 `Bad Request`, and
//! API errors HTTP 200 `{"error":{"code","message"}}` (what PyPI `cent` expects).

use std::collections::{BTreeMap, HashSet};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode, Uri, header};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::Realtime;
use super::channel::{self, ChannelError};
use super::engine::{Publish, Published, Range};
use super::protocol::{self, ClientInfo, ErrorReply, Publication, Raw, StreamPosition};

/// An API error: code and message as Centrifugo's (the client protocol's codes).
pub type ApiError = ErrorReply;

impl ErrorReply {
    fn json(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }

    /// Transient (Redis down): worth retrying.
    pub fn is_internal(&self) -> bool {
        self.code == ErrorReply::INTERNAL.code
    }
}

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> ApiError {
        match e {
            ChannelError::BadName => ApiError::BAD_REQUEST,
            ChannelError::UnknownNamespace => ApiError::UNKNOWN_CHANNEL,
        }
    }
}

/// `publish`'s request (and, with `channels`, `broadcast`'s).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    pub channel: String,
    pub channels: Vec<String>,
    pub data: Option<Raw>,
    pub b64data: Option<String>,
    pub skip_history: bool,
    pub tags: BTreeMap<String, String>,
    pub idempotency_key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HistoryRequest {
    channel: String,
    limit: Option<i64>,
    since: Option<StreamPosition>,
    reverse: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChannelRequest {
    channel: String,
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    if !content_type.is_empty() {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
    }
    r
}

fn authorized(realtime: &Realtime, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(key) = realtime
        .config()
        .api_key
        .as_deref()
        .filter(|k| !k.is_empty())
    else {
        return false;
    };
    let given = if let Some(v) = headers.get("x-api-key") {
        v.to_str().ok().map(str::to_string)
    } else if let Some(v) = headers.get(header::AUTHORIZATION) {
        v.to_str().ok().and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("apikey")
                .then(|| rest.trim().to_string())
        })
    } else {
        uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "api_key")
                .map(|(_, v)| v.into_owned())
        })
    };
    // Compare without an early exit on the first differing byte.
    given.is_some_and(|g| {
        g.len() == key.len()
            && g.bytes()
                .zip(key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

/// `POST /api/<method>`.
pub async fn handler(
    State(realtime): State<Realtime>,
    Path(method): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response<Body> {
    if !authorized(&realtime, &headers, &uri) {
        tracing::info!(
            method,
            "realtime API: refused, bad or missing API key (401)"
        );
        return response(StatusCode::UNAUTHORIZED, "", Body::empty());
    }
    let Ok(params) = serde_json::from_slice::<Value>(&body) else {
        tracing::info!(method, "realtime API: the body is not JSON (400)");
        return response(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "Bad Request",
        );
    };
    if !is_method(&method) {
        return response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "Not Found",
        );
    }
    let reply = call(&realtime, &method, params).await;
    response(StatusCode::OK, "application/json", reply.to_string())
}

/// The legacy `POST /api`: one `{"method","params"}` per line, one reply per line.
pub async fn legacy(
    State(realtime): State<Realtime>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response<Body> {
    if !authorized(&realtime, &headers, &uri) {
        tracing::info!("realtime API: refused, bad or missing API key (401)");
        return response(StatusCode::UNAUTHORIZED, "", Body::empty());
    }
    #[derive(Deserialize)]
    struct Legacy {
        method: String,
        #[serde(default)]
        params: Value,
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return response(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "Bad Request",
        );
    };
    let mut replies = Vec::new();
    for line in protocol::split_frame(text) {
        let Ok(command) = serde_json::from_str::<Legacy>(line) else {
            return response(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                "Bad Request",
            );
        };
        replies.push(
            call(&realtime, &command.method, command.params)
                .await
                .to_string(),
        );
    }
    response(StatusCode::OK, "application/json", replies.join("\n"))
}

fn is_method(method: &str) -> bool {
    matches!(
        method,
        "publish"
            | "broadcast"
            | "history"
            | "history_remove"
            | "presence"
            | "presence_stats"
            | "info"
            | "batch"
            | "subscribe"
            | "unsubscribe"
            | "disconnect"
            | "refresh"
            | "channels"
            | "rpc"
    )
}

/// One API call: `{"result":..}` or `{"error":..}`.
pub async fn call(realtime: &Realtime, method: &str, params: Value) -> Value {
    let outcome = match method {
        "batch" => Ok(batch(realtime, params).await),
        _ => one(realtime, method, params).await,
    };
    match outcome {
        Ok(result) => json!({"result": result}),
        Err(e) => {
            tracing::info!(
                method,
                code = e.code,
                "realtime API call failed: {}",
                e.message
            );
            json!({"error": e.json()})
        }
    }
}

async fn batch(realtime: &Realtime, params: Value) -> Value {
    let commands = params
        .get("commands")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut replies = Vec::new();
    for command in commands {
        let Some((method, params)) = command.as_object().and_then(|o| o.iter().next()) else {
            replies.push(json!({"error": ApiError::BAD_REQUEST.json()}));
            continue;
        };
        let method = method.clone();
        let reply = match Box::pin(one(realtime, &method, params.clone())).await {
            Ok(result) => json!({ method: result }),
            Err(e) => json!({"error": e.json()}),
        };
        replies.push(reply);
    }
    json!({ "replies": replies })
}

fn parse<T: for<'de> Deserialize<'de>>(params: Value) -> Result<T, ApiError> {
    serde_json::from_value(params).map_err(|_| ApiError::BAD_REQUEST)
}

async fn one(realtime: &Realtime, method: &str, params: Value) -> Result<Value, ApiError> {
    match method {
        "publish" => {
            let request: PublishRequest = parse(params)?;
            let data = data(&request)?;
            let published = publish(realtime, &request.channel, &data, &request).await?;
            Ok(published_json(&published))
        }
        "broadcast" => {
            let request: PublishRequest = parse(params)?;
            if request.channels.is_empty() {
                return Err(ApiError::BAD_REQUEST);
            }
            let data = data(&request)?;
            let mut responses = Vec::new();
            for channel in &request.channels {
                responses.push(match publish(realtime, channel, &data, &request).await {
                    Ok(p) => json!({"result": published_json(&p)}),
                    Err(e) => json!({"error": e.json()}),
                });
            }
            Ok(json!({ "responses": responses }))
        }
        "history" => history(realtime, parse(params)?).await,
        "history_remove" => {
            let request: ChannelRequest = parse(params)?;
            let ns = channel::namespace(realtime.config(), &request.channel)?;
            if !ns.history() {
                return Err(ApiError::NOT_AVAILABLE);
            }
            realtime
                .engine()
                .history_remove(&request.channel)
                .await
                .map_err(internal)?;
            Ok(json!({}))
        }
        "presence" | "presence_stats" => {
            let request: ChannelRequest = parse(params)?;
            let ns = channel::namespace(realtime.config(), &request.channel)?;
            if !ns.presence {
                return Err(ApiError::NOT_AVAILABLE);
            }
            let entries = realtime
                .engine()
                .presence(&request.channel)
                .await
                .map_err(internal)?;
            let infos: Vec<(String, Value)> = entries
                .into_iter()
                .filter_map(|(client, info)| Some((client, serde_json::from_str(&info).ok()?)))
                .collect();
            if method == "presence" {
                let map: serde_json::Map<String, Value> = infos.into_iter().collect();
                Ok(json!({ "presence": map }))
            } else {
                let users: HashSet<&str> = infos
                    .iter()
                    .filter_map(|(_, i)| i.get("user").and_then(Value::as_str))
                    .collect();
                Ok(json!({"num_clients": infos.len(), "num_users": users.len()}))
            }
        }
        "info" => {
            let nodes = realtime.engine().nodes().await.map_err(internal)?;
            let mut nodes: Vec<Value> = nodes
                .iter()
                .filter_map(|n| serde_json::from_str(n).ok())
                .collect();
            if nodes.is_empty() {
                // This worker has not written its entry yet.
                nodes.push(serde_json::from_str(&realtime.node_json()).unwrap_or_default());
            }
            Ok(json!({ "nodes": nodes }))
        }
        _ => Err(ApiError::NOT_AVAILABLE),
    }
}

fn internal(e: super::engine::EngineError) -> ApiError {
    tracing::warn!("realtime API: {e}");
    ApiError::INTERNAL
}

/// The publication data: `data` (JSON) or `b64data` (must decode to JSON here: we keep data
/// as raw JSON, as a `json` publication data format would).
fn data(request: &PublishRequest) -> Result<Raw, ApiError> {
    if let Some(data) = &request.data {
        if data.get() == "null" {
            return Err(ApiError::BAD_REQUEST);
        }
        return Ok(data.clone());
    }
    let b64 = request.b64data.as_deref().ok_or(ApiError::BAD_REQUEST)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| ApiError::BAD_REQUEST)?;
    let text = String::from_utf8(bytes).map_err(|_| ApiError::BAD_REQUEST)?;
    RawValue::from_string(text).map_err(|_| ApiError::BAD_REQUEST)
}

fn published_json(p: &Published) -> Value {
    if p.offset == 0 {
        json!({})
    } else {
        json!({"offset": p.offset, "epoch": p.epoch})
    }
}

/// Publishes `data` to `channel` with the request's options (API, and the consumer).
pub async fn publish(
    realtime: &Realtime,
    channel: &str,
    data: &RawValue,
    request: &PublishRequest,
) -> Result<Published, ApiError> {
    let ns = channel::namespace(realtime.config(), channel)?;
    let body = serde_json::to_string(&Publication {
        offset: 0,
        data: data.to_owned(),
        info: None::<ClientInfo>,
        tags: request.tags.clone(),
    })
    .map_err(|_| ApiError::INTERNAL)?;
    let publish = Publish {
        channel,
        body: &body,
        idempotency_key: (!request.idempotency_key.is_empty()).then_some(&request.idempotency_key),
        skip_history: request.skip_history,
    };
    realtime
        .engine()
        .publish(ns, &publish)
        .await
        .map_err(internal)
}

async fn history(realtime: &Realtime, request: HistoryRequest) -> Result<Value, ApiError> {
    let ns = channel::namespace(realtime.config(), &request.channel)?;
    if !ns.history() {
        return Err(ApiError::NOT_AVAILABLE);
    }
    // Centrifugo: no limit (or 0) gives only the top; -1 gives every publication kept.
    let limit = match request.limit.unwrap_or(0) {
        0 => Some(0),
        n if n < 0 => None,
        n => Some(n as usize),
    };
    let range = match (&request.since, request.reverse) {
        (_, _) if limit == Some(0) => Range::Top,
        (Some(since), false) => Range::After {
            offset: since.offset,
            limit,
        },
        (Some(since), true) => {
            if since.offset == 0 {
                return Err(ApiError::BAD_REQUEST);
            }
            Range::Before {
                offset: since.offset,
                limit,
            }
        }
        (None, false) => Range::Oldest { limit },
        (None, true) => Range::Newest { limit },
    };
    let history = realtime
        .engine()
        .history(&request.channel, range)
        .await
        .map_err(internal)?;
    if let Some(since) = &request.since
        && !since.epoch.is_empty()
        && since.epoch != history.epoch
    {
        return Err(ApiError::UNRECOVERABLE_POSITION);
    }
    let publications: Vec<Value> = history
        .publications
        .iter()
        .filter_map(|p| serde_json::from_str(&p.json).ok())
        .collect();
    Ok(json!({
        "publications": publications,
        "epoch": history.epoch,
        "offset": history.offset,
    }))
}
