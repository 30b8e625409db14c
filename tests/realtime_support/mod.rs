//! What the realtime tests share: a cluster config with realtime on, connection tokens, and
//! the real clients: centrifuge-js (`tests/e2e/centrifuge_client.js`), PyPI `cent`
//! (`tests/e2e/cent_client.py`), a raw websocket client (tungstenite) for exact codes, an SSE
//! reader, and raw HTTP for the API's status codes.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

pub const TOKEN_KEY: &str = "realtime-test-jwt-secret";
pub const API_KEY: &str = "realtime-test-api-key";
/// How long one condition may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn unique() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// Realtime keys for a test cluster: its own consumer and stream name, so tests running at once
/// never share them (the stream need not exist for tests that only use the API).
pub fn realtime_keys(id: &str) -> String {
    format!(
        "realtime.enabled=true\n\
         realtime.token.hmacSecretKey={TOKEN_KEY}\n\
         realtime.api.key={API_KEY}\n\
         realtime.nats.stream=RT_T{id}\n\
         realtime.nats.subjects=rt{id}.>\n\
         realtime.nats.consumer=rt_test_{id}\n"
    )
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A valid connection token for `user`, expiring in an hour.
pub fn token(user: &str) -> String {
    token_with(&json!({"sub": user, "exp": now() + 3600}))
}

pub fn token_with(claims: &Value) -> String {
    activestack_gateway::realtime::jwt::sign_hs256(claims, TOKEN_KEY.as_bytes())
}

fn e2e(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e")
        .join(file);
    path.to_string_lossy().into_owned()
}

// ----- the server API -----

/// One API call through PyPI `cent`: `{"result":..}` or `{"error":<class>,"code":..}`.
pub fn cent(addr: SocketAddr, key: &str, method: &str, params: Value) -> Value {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/.venv/bin/python");
    let out = Command::new(python)
        .arg(e2e("cent_client.py"))
        .arg(format!("http://{addr}/api"))
        .arg(key)
        .arg(method)
        .arg(params.to_string())
        .output()
        .expect("run cent (scripts/setup.sh installs it in tests/e2e/.venv)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "cent printed {stdout:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A raw HTTP request; (status, headers+body text). Panics if the server cannot be reached.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    try_http(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// A raw HTTP request; (status, headers+body text), or why the server could not be reached.
/// Status 0: no status line came back.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, response))
}

/// The body of an HTTP response text.
pub fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Publishes through the API (raw HTTP); the result object.
pub fn publish(addr: SocketAddr, channel: &str, data: Value) -> Value {
    let body = json!({"channel": channel, "data": data}).to_string();
    let (status, response) = http(
        addr,
        "POST",
        "/api/publish",
        &[("X-API-Key", API_KEY)],
        &body,
    );
    assert_eq!(status, 200, "{response}");
    let reply: Value = serde_json::from_str(body_of(&response)).unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
    reply["result"].clone()
}

// ----- centrifuge-js -----

pub struct JsCentrifuge {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl JsCentrifuge {
    /// A centrifuge-js client connecting with `token` and subscribing to `channel`.
    pub fn start(addr: SocketAddr, token: &str, channel: Option<&str>) -> JsCentrifuge {
        let mut child = Command::new("node")
            .arg(e2e("centrifuge_client.js"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node (scripts/setup.sh installs tests/e2e)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("centrifuge-js: {line}");
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        let mut client = JsCentrifuge {
            child,
            stdin,
            events,
            seen: Vec::new(),
        };
        client.send(json!({
            "op": "connect",
            "url": format!("ws://{addr}/connection/websocket"),
            "token": token,
            "channel": channel,
        }));
        client
    }

    pub fn send(&mut self, command: Value) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next event named `event` that `check` accepts (others are kept in `seen`).
    pub fn wait(&mut self, event: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.events.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no {event} event within {DEADLINE:?}; seen {:?}", self.seen)
            });
            self.seen.push(e.clone());
            if e["event"] == event && check(&e) {
                return e;
            }
        }
    }

    /// The next `n` publications.
    pub fn publications(&mut self, n: usize) -> Vec<Value> {
        (0..n).map(|_| self.wait("publication", |_| true)).collect()
    }
}

impl Drop for JsCentrifuge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- a raw websocket client -----

pub type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

pub fn ws(addr: SocketAddr) -> Ws {
    let (ws, _) = tungstenite::connect(format!("ws://{addr}/connection/websocket")).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    ws
}

pub fn ws_send(ws: &mut Ws, text: &str) {
    ws.send(tungstenite::Message::text(text.to_string()))
        .unwrap();
}

/// What the server sent next: JSON objects of a text frame, or the close frame's code.
#[derive(Debug)]
pub enum Received {
    Json(Vec<Value>),
    Close(u16, String),
    Gone,
    /// Nothing within the read timeout.
    Timeout,
}

pub fn ws_read(ws: &mut Ws) -> Received {
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let values: Vec<Value> = t
                    .as_str()
                    .split('\n')
                    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
                    .collect();
                // Server pings are answered (we asked nothing).
                if values.iter().all(|v| v == &json!({})) {
                    ws_send(ws, "{}");
                    continue;
                }
                return Received::Json(values);
            }
            Ok(tungstenite::Message::Close(frame)) => {
                return frame.map_or(Received::Close(1005, String::new()), |f| {
                    Received::Close(f.code.into(), f.reason.to_string())
                });
            }
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Received::Timeout;
            }
            Err(_) => return Received::Gone,
        }
    }
}

/// Connects and subscribes to `personal:#<user>` (raw); the subscribe result.
pub fn ws_subscribed(addr: SocketAddr, user: &str) -> (Ws, Value) {
    let mut ws = ws(addr);
    ws_send(
        &mut ws,
        &format!(
            "{}\n{}",
            json!({"id":1,"connect":{"token": token(user)}}),
            json!({"id":2,"subscribe":{"channel": format!("personal:#{user}")}})
        ),
    );
    let mut replies = Vec::new();
    while replies.len() < 2 {
        match ws_read(&mut ws) {
            Received::Json(v) => replies.extend(v),
            other => panic!("{other:?}"),
        }
    }
    assert!(replies[0]["connect"]["client"].is_string(), "{replies:?}");
    (ws, replies[1]["subscribe"].clone())
}

// ----- an SSE reader -----

/// Reads `data:` events of a uni_sse response.
pub struct Sse {
    reader: BufReader<TcpStream>,
}

impl Sse {
    /// `GET /connection/uni_sse?cf_connect=<request>`; checks the status and content type.
    pub fn get(addr: SocketAddr, request: &Value) -> Sse {
        let query: String =
            form_urlencoded::byte_serialize(request.to_string().as_bytes()).collect();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /connection/uni_sse?cf_connect={query} HTTP/1.1\r\nHost: test\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream; charset=utf-8"),
            "{head}"
        );
        Sse { reader }
    }

    /// The next event's JSON (pings `{}` skipped).
    pub fn next(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap();
            assert!(n > 0, "the SSE stream ended");
            if let Some(json) = line.trim_end().strip_prefix("data: ") {
                let v: Value = serde_json::from_str(json).unwrap();
                if v != json!({}) {
                    return v;
                }
            }
        }
    }
}
