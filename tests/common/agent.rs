//! The gateway's two counterparts in its end-to-end tests: an echo agent (Rust, lapin) answering
//! agent queues on RabbitMQ like the ActiveStack backend, and real socket.io clients (npm
//! `socket.io-client`, driven through `tests/e2e/client.js`). Needs `npm ci --prefix tests/e2e`
//! (scripts/setup.sh does it).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use activestack_gateway::gateway::session::Session;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};

use super::{Cluster, DEADLINE};

pub const SECRET: &str = "gateway-test-secret";

/// The shared RabbitMQ of the test machine.
pub const RABBITMQ_PORT: u16 = 5672;

/// Gateway keys for these tests: a known secret, fast re-sends, fast socket.io heartbeats.
pub fn gateway_config() -> String {
    format!(
        "frontend.session_secret={SECRET}\n\
         frontend.clientMessageResendInterval=300\n\
         gateway.socketio.interval=1\n\
         gateway.socketio.timeout=3\n"
    )
}

// ----- a socket.io client -----

pub struct JsClient {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    pub seen: Vec<Value>,
}

impl JsClient {
    /// A client connected to the cluster; panics if it cannot connect within [`DEADLINE`].
    pub fn connect(cluster: &Cluster) -> JsClient {
        Self::connect_with(cluster, json!({}))
    }

    /// Like [`JsClient::connect`], with more options of tests/e2e/client.js's `connect`
    /// (`reconnection`, `resume`).
    pub fn connect_with(cluster: &Cluster, options: Value) -> JsClient {
        let mut client = Self::spawn();
        let mut command = json!({"op": "connect", "url": format!("http://{}", cluster.addr())});
        if let (Some(command), Value::Object(options)) = (command.as_object_mut(), options) {
            command.extend(options);
        }
        client.send(command);
        client.wait("connect", |_| true);
        client
    }

    /// A client that tries to connect to `addr`; `None` if it is not connected within `within`.
    pub fn try_connect(addr: std::net::SocketAddr, within: Duration) -> Option<JsClient> {
        let mut client = Self::spawn();
        client.send(json!({"op": "connect", "url": format!("http://{addr}")}));
        let event = client.next_matching(Instant::now() + within, |e| {
            e["event"] == "connect" || e["event"] == "connect_error"
        })?;
        (event["event"] == "connect").then_some(client)
    }

    /// A client not connected yet: `send` it a `connect` op (with TLS options, say).
    pub fn spawn() -> JsClient {
        Self::spawn_script(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/client.js"))
    }

    /// A driver of the same commands and events on another client library (the socket.io 0.9
    /// one: `tests/common/legacy.rs`), not connected yet.
    pub fn spawn_script(script: &Path) -> JsClient {
        let mut child = Command::new("node")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node (is tests/e2e installed? npm ci --prefix tests/e2e)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("client <- {line}");
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        JsClient {
            child,
            stdin,
            events,
            seen: Vec::new(),
        }
    }

    /// The node process's pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").expect("write to the client");
    }

    pub fn emit(&mut self, event: &str, data: Value) {
        self.send(json!({"op": "emit", "event": event, "data": data}));
    }

    /// Emits all `events` at once, one after the other without waiting.
    pub fn emit_many(&mut self, events: &[(&str, Value)]) {
        let events: Vec<Value> = events.iter().map(|(e, d)| json!([e, d])).collect();
        self.send(json!({"op": "emit_many", "events": events}));
    }

    /// Takes the first received event (`{event, data}`) that satisfies `pred`, waiting until
    /// `deadline` at most.
    pub fn next_matching(
        &mut self,
        deadline: Instant,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        loop {
            if let Some(i) = self.seen.iter().position(&pred) {
                return Some(self.seen.remove(i));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Ok(v) = self.events.recv_timeout(left) {
                self.seen.push(v);
            }
        }
    }

    /// Everything received so far, taken.
    pub fn drain_events(&mut self) -> Vec<Value> {
        while let Ok(v) = self.events.try_recv() {
            self.seen.push(v);
        }
        std::mem::take(&mut self.seen)
    }

    /// The first event named `event` (not yet taken) whose data satisfies `pred`.
    pub fn wait(&mut self, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let found = self.next_matching(Instant::now() + DEADLINE, |e| {
            e["event"] == event && pred(&e["data"])
        });
        let Some(found) = found else {
            panic!("timed out waiting for event {event}");
        };
        found["data"].clone()
    }

    /// Like [`JsClient::wait`], but gives up (false) after a second.
    pub fn try_wait(&mut self, event: &str, pred: impl Fn(&Value) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        self.next_matching(deadline, |e| e["event"] == event && pred(&e["data"]))
            .is_some()
    }

    pub fn push_for(&mut self, message_id: &str) -> Value {
        self.wait("push", |d| d["correspondingMessageId"] == message_id)
    }

    /// `message {connect}` -> the signed session.
    pub fn gateway_connect(&mut self) -> (String, Session) {
        self.emit("message", json!({"connect": true}));
        let key = self.wait("gatewayConnectAck", |_| true);
        let key = key.as_str().expect("the key is a string").to_string();
        let session = Session::verify(&key, SECRET.as_bytes()).expect("a valid key");
        (key, session)
    }

    pub fn close(&mut self) {
        self.send(json!({"op": "close"}));
        self.wait("disconnect", |_| true);
    }
}

impl Drop for JsClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- the echo agent -----

/// Queues the echo agent answers (`getServiceUsers` deliberately has none: unroutable).
pub const AGENT_QUEUES: &[&str] = &[
    "testCall",
    "authenticate",
    "findById",
    "logout",
    "connect",
    "reconnect",
    "disconnect",
    "disconnectAuth",
    "hibernate",
];

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A lapin connection to `uri` on the current tokio runtime.
pub async fn connect_amqp(uri: &str) -> Result<Connection, lapin::Error> {
    Connection::connect(
        uri,
        ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current()),
    )
    .await
}

pub async fn try_amqp(port: u16) -> Result<Connection, lapin::Error> {
    connect_amqp(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f")).await
}

pub async fn amqp_on(port: u16) -> Connection {
    try_amqp(port)
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ on 127.0.0.1:{port}: {e}"))
}

pub async fn amqp() -> Connection {
    amqp_on(RABBITMQ_PORT).await
}

/// Starts an agent on the shared RabbitMQ; see [`start_agent_on`].
pub fn start_agent() {
    start_agent_on(RABBITMQ_PORT);
}

/// Starts an agent on its own thread, connected to the RabbitMQ on `port`; returns once its
/// queues exist. The agent stops when its connection is lost. It answers every request on the
/// request's replyTo queue, like the ActiveStack backend:
/// - `authenticate` -> an `AuthenticateUserAccountResponse` whose `result` is a UserToken;
/// - `testCall` with `eol: true` -> an `EOL` for the client; with `noReply` -> nothing; with
///   `dropClientId` -> an answer without clientId;
/// - anything else -> `{cn: <request cn>Response, correspondingMessageId, clientId, queue, request}`.
///
/// Several tests may run agents at once: any of them may answer, they hold no state.
pub fn start_agent_on(port: u16) {
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let conn = amqp_on(port).await;
            let channel = conn.create_channel().await.expect("channel");
            let mut streams = Vec::new();
            for queue in AGENT_QUEUES {
                channel
                    .queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default())
                    .await
                    .expect("declare");
                let consumer = channel
                    .basic_consume(
                        queue,
                        "",
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .expect("consume");
                streams.push(consumer);
            }
            let _ = ready_tx.send(());
            let mut all = futures::stream::select_all(streams);
            while let Some(Ok(delivery)) = all.next().await {
                let _ = delivery.ack(BasicAckOptions::default()).await;
                let queue = delivery.routing_key.to_string();
                let Some(reply_to) = delivery.properties.reply_to().clone() else {
                    continue;
                };
                let request: Value = serde_json::from_slice(&delivery.data).unwrap_or_default();
                let Some(reply) = answer(&queue, &request) else {
                    continue;
                };
                let _ = channel
                    .basic_publish(
                        "",
                        reply_to.as_str(),
                        BasicPublishOptions::default(),
                        reply.to_string().as_bytes(),
                        BasicProperties::default(),
                    )
                    .await;
            }
        });
    });
    ready_rx
        .recv_timeout(DEADLINE)
        .expect("the echo agent started");
}

pub fn answer(queue: &str, request: &Value) -> Option<Value> {
    let client_id = request["clientId"].clone();
    let message_id = request["messageId"].clone();
    if request["noReply"] == true {
        return None;
    }
    if queue == "testCall" && request["eol"] == true {
        return Some(json!({"cn": "EOL", "EOL": true, "clientId": client_id}));
    }
    if queue == "authenticate" {
        return Some(json!({
            "cn": "com.percero.agents.auth.vo.AuthenticateUserAccountResponse",
            "correspondingMessageId": message_id,
            "clientId": client_id,
            "result": {
                "cn": "com.percero.agents.auth.vo.UserToken",
                "user": {"ID": request["user"].as_str().unwrap_or("user-1")},
                "token": "token-1",
                "deviceId": request["deviceId"],
                "clientId": client_id,
            }
        }));
    }
    let cn = request["cn"].as_str().unwrap_or(queue);
    let mut reply = json!({
        "cn": format!("{cn}Response"),
        "clientId": client_id,
        "queue": queue,
        "request": request,
    });
    if request["dropClientId"] == true {
        reply["clientId"] = Value::Null;
    }
    if !message_id.is_null() {
        reply["correspondingMessageId"] = message_id;
    }
    Some(reply)
}

/// Ready messages in `queue` (unacked ones are not counted).
pub fn ready_messages(queue: &str) -> u32 {
    runtime().block_on(async {
        let conn = amqp().await;
        let channel = conn.create_channel().await.expect("channel");
        let q = channel
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the queue exists");
        let count = q.message_count();
        let _ = conn.close(200, "bye").await;
        count
    })
}

pub fn wait_ready_messages(queue: &str, want: u32) {
    super::wait_for(&format!("{want} ready messages in {queue}"), || {
        (ready_messages(queue) == want).then_some(())
    });
}
