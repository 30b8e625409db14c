//! The backend of the chaos run: an agent on the private RabbitMQ that answers the gateway's
//! requests as the ActiveStack backend (Percero) does, and records what it received and what
//! it published, so that the run can say which answers never reached their client.
//!
//! - `authenticate` -> an `AuthenticateUserAccountResponse` with a UserToken (logs the client
//!   in); `testCall` -> `TestCallResponse`; both carry the request's `correspondingMessageId`
//!   and `attempt`, and go to the request's replyTo queue (the client queue).
//! - `connect` -> `ConnectResponse`; `reconnect` (ReconnectRequest) -> the previous queues'
//!   ready messages are moved into the new one, as Percero's `renameClient` does, then a
//!   `ConnectResponse`. Unlike Percero it neither purges the old queue nor puts an EOL there:
//!   answers still on their way to an old queue are forwarded to the client's newest queue
//!   instead, and what is left in old queues at the end is counted (as lost).
//! - `disconnect`, `disconnectAuth`, `hibernate`, `logout`: acknowledged, nothing else.
//!
//! At least once: a request is acked to RabbitMQ only once its answer is confirmed (published
//! and routed), so a request in flight when RabbitMQ goes away is answered again after it comes
//! back. An answer counts as *published to a client queue* once RabbitMQ confirmed it without
//! returning it (mandatory).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The agent queues it declares and consumes.
const QUEUES: &[&str] = &[
    "authenticate",
    "testCall",
    "connect",
    "reconnect",
    "disconnect",
    "disconnectAuth",
    "hibernate",
    "logout",
];

/// One request of a client: its messageId and attempt number.
pub type RequestKey = (String, u32);

#[derive(Default)]
pub struct AgentLog {
    /// Requests received, and how often (more than once: redelivered after a broker restart).
    pub received: HashMap<RequestKey, u32>,
    /// Answers confirmed and routed, and how often; the queue of the last one.
    pub published: HashMap<RequestKey, (u32, String)>,
    /// Answers RabbitMQ returned (no such queue) or did not confirm.
    pub unroutable: HashMap<RequestKey, u32>,
    pub publish_failed: u64,
    /// ReconnectRequests handled, messages moved to the new queue, answers forwarded from an
    /// old queue to the newest.
    pub renames: u64,
    pub moved: u64,
    pub forwarded: u64,
    /// Connections to RabbitMQ made (more than one: it was restarted).
    pub connections: u64,
    /// Every client queue an answer went to or was moved from.
    pub queues: HashSet<String>,
}

pub struct Agent {
    pub log: Arc<Mutex<AgentLog>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    pub fn start(rt: &tokio::runtime::Runtime, url: String, durable: bool) -> Agent {
        let log = Arc::new(Mutex::new(AgentLog::default()));
        let (stop, stopped) = watch::channel(false);
        let task = rt.spawn(run(url, durable, log.clone(), stopped));
        Agent { log, stop, task }
    }

    /// What it recorded since the last call.
    pub fn take(&self) -> AgentLog {
        std::mem::take(&mut *self.log.lock().expect("agent log"))
    }

    pub fn connected_once(&self) -> bool {
        self.log.lock().expect("agent log").connections > 0
    }

    pub fn stop(self, rt: &tokio::runtime::Runtime) {
        let _ = self.stop.send(true);
        let _ =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), self.task).await });
    }
}

struct State {
    durable: bool,
    log: Arc<Mutex<AgentLog>>,
    /// Old client queue -> the newest queue of the same client.
    moved_to: Mutex<HashMap<String, String>>,
}

async fn run(
    url: String,
    durable: bool,
    log: Arc<Mutex<AgentLog>>,
    mut stop: watch::Receiver<bool>,
) {
    let state = Arc::new(State {
        durable,
        log,
        moved_to: Mutex::new(HashMap::new()),
    });
    while !*stop.borrow() {
        match session(&url, &state, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing_line(&format!("agent: {e}; connecting again"));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

fn tracing_line(line: &str) {
    if std::env::var_os("CHAOS_VERBOSE").is_some() {
        eprintln!("{line}");
    }
}

async fn session(
    url: &str,
    state: &Arc<State>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), lapin::Error> {
    let conn = Connection::connect(
        url,
        ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current()),
    )
    .await?;
    let publisher = conn.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consumer = conn.create_channel().await?;
    consumer.basic_qos(200, BasicQosOptions::default()).await?;
    let mut streams = Vec::new();
    for queue in QUEUES {
        let options = QueueDeclareOptions {
            durable: state.durable,
            ..QueueDeclareOptions::default()
        };
        consumer
            .queue_declare(queue, options, FieldTable::default())
            .await?;
        streams.push(
            consumer
                .basic_consume(
                    queue,
                    "",
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?,
        );
    }
    state.log.lock().expect("agent log").connections += 1;
    tracing_line("agent: consuming");
    let mut all = futures::stream::select_all(streams);
    loop {
        tokio::select! {
            next = all.next() => match next {
                Some(Ok(delivery)) => handle(state, &conn, &publisher, delivery).await?,
                Some(Err(e)) => return Err(e),
                None => return Err(lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                    lapin::ConnectionState::Closed,
                ))),
            },
            _ = stop.changed() => {
                let _ = conn.close(200, "done").await;
                return Ok(());
            }
        }
    }
}

fn properties(durable: bool) -> BasicProperties {
    let p = BasicProperties::default().with_content_type("application/json".into());
    if durable { p.with_delivery_mode(2) } else { p }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn handle(
    state: &Arc<State>,
    conn: &Connection,
    publisher: &Channel,
    delivery: Delivery,
) -> Result<(), lapin::Error> {
    let queue = delivery.routing_key.to_string();
    let body: Value = serde_json::from_slice(&delivery.data).unwrap_or_default();
    let reply_to = delivery
        .properties
        .reply_to()
        .as_ref()
        .map(|q| q.to_string())
        .or_else(|| text(&body["clientId"]));
    match queue.as_str() {
        "authenticate" | "testCall" => {
            let Some(reply_to) = reply_to else {
                return delivery.ack(BasicAckOptions::default()).await.map(|_| ());
            };
            let id = text(&body["messageId"]).unwrap_or_default();
            let attempt = body["attempt"].as_u64().unwrap_or(0) as u32;
            let key = (id.clone(), attempt);
            *state
                .log
                .lock()
                .expect("agent log")
                .received
                .entry(key.clone())
                .or_default() += 1;
            let answer = if queue == "authenticate" {
                let user = text(&body["user"]).unwrap_or_else(|| "user".into());
                json!({
                    "cn": "com.percero.agents.auth.vo.AuthenticateUserAccountResponse",
                    "correspondingMessageId": id, "attempt": attempt, "clientId": reply_to,
                    "result": {"cn": "com.percero.agents.auth.vo.UserToken", "user": {"ID": user},
                               "token": format!("token-{user}"), "deviceId": body["deviceId"],
                               "clientId": reply_to},
                })
            } else {
                json!({"cn": "TestCallResponse", "correspondingMessageId": id,
                       "attempt": attempt, "clientId": reply_to})
            };
            let target = newest(state, &reply_to);
            if target != reply_to {
                state.log.lock().expect("agent log").forwarded += 1;
            }
            let confirm = publisher
                .basic_publish(
                    "",
                    &target,
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    answer.to_string().as_bytes(),
                    properties(state.durable),
                )
                .await?;
            let state = state.clone();
            tokio::spawn(async move {
                let outcome = confirm.await;
                let settle = {
                    let mut log = state.log.lock().expect("agent log");
                    match outcome {
                        Ok(Confirmation::Ack(None)) => {
                            let entry = log.published.entry(key).or_insert((0, String::new()));
                            entry.0 += 1;
                            entry.1 = target.clone();
                            log.queues.insert(target);
                            true
                        }
                        Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(_)) => {
                            *log.unroutable.entry(key).or_default() += 1;
                            true
                        }
                        Ok(Confirmation::NotRequested) | Err(_) => {
                            // The connection went: the request comes again (if it was kept).
                            log.publish_failed += 1;
                            false
                        }
                    }
                };
                if settle {
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
            });
            Ok(())
        }
        "connect" => {
            if let Some(reply_to) = reply_to {
                connect_response(state, publisher, &reply_to).await?;
            }
            delivery.ack(BasicAckOptions::default()).await.map(|_| ())
        }
        "reconnect" => {
            if let Some(new) = text(&body["clientId"]).or(reply_to) {
                let mut old: Vec<String> = body["existingClientIds"]
                    .as_array()
                    .map(|ids| ids.iter().filter_map(text).collect())
                    .unwrap_or_default();
                old.extend(text(&body["existingClientId"]));
                old.sort();
                old.dedup();
                old.retain(|q| *q != new);
                rename(state, conn, publisher, &old, &new).await?;
                connect_response(state, publisher, &new).await?;
            }
            delivery.ack(BasicAckOptions::default()).await.map(|_| ())
        }
        _ => delivery.ack(BasicAckOptions::default()).await.map(|_| ()),
    }
}

/// The newest queue of the client whose queue was `queue`.
fn newest(state: &State, queue: &str) -> String {
    let moved = state.moved_to.lock().expect("moved_to");
    let mut at = queue.to_string();
    for _ in 0..64 {
        match moved.get(&at) {
            Some(next) if *next != at => at = next.clone(),
            _ => break,
        }
    }
    at
}

async fn connect_response(
    state: &State,
    publisher: &Channel,
    client_id: &str,
) -> Result<(), lapin::Error> {
    let body = json!({"cn": "com.percero.agents.sync.vo.ConnectResponse", "clientId": client_id});
    // Not counted: no correspondingMessageId, the client does not wait for it (nor do we, for
    // its confirm).
    let _confirm = publisher
        .basic_publish(
            "",
            client_id,
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            properties(state.durable),
        )
        .await?;
    Ok(())
}

/// Percero's renameClient: every ready message of each old queue goes to `new` (get, publish,
/// confirm, then ack the get), and from now on answers for an old queue go to `new`.
async fn rename(
    state: &State,
    conn: &Connection,
    publisher: &Channel,
    old: &[String],
    new: &str,
) -> Result<(), lapin::Error> {
    {
        let mut moved = state.moved_to.lock().expect("moved_to");
        for q in old {
            moved.insert(q.clone(), new.to_string());
        }
    }
    // Answers published to an old queue before the map changed are in it once confirmed.
    publisher.wait_for_confirms().await?;
    let mut count = 0;
    for q in old {
        // A missing queue (404) closes the channel: one channel per queue.
        let getter = conn.create_channel().await?;
        loop {
            let Ok(Some(message)) = getter.basic_get(q, BasicGetOptions { no_ack: false }).await
            else {
                break;
            };
            let delivery = message.delivery;
            let confirm = publisher
                .basic_publish(
                    "",
                    new,
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &delivery.data,
                    delivery.properties.clone(),
                )
                .await?
                .await?;
            if matches!(confirm, Confirmation::Ack(None)) {
                getter
                    .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                    .await?;
                count += 1;
            } else {
                let _ = getter
                    .basic_nack(
                        delivery.delivery_tag,
                        BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        },
                    )
                    .await;
                break;
            }
        }
        let _ = getter.close(200, "done").await;
    }
    let mut log = state.log.lock().expect("agent log");
    log.renames += 1;
    log.moved += count;
    log.queues.extend(old.iter().cloned());
    log.queues.insert(new.to_string());
    Ok(())
}

/// Ready messages left in `queues` (answers that never reached a client), by messageId; the
/// queues are only looked at (passive declare, get and nack).
pub fn leftovers(
    rt: &tokio::runtime::Runtime,
    url: &str,
    queues: &HashSet<String>,
) -> Vec<(String, String)> {
    rt.block_on(async {
        let Ok(conn) = Connection::connect(
            url,
            ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio::current()),
        )
        .await
        else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for q in queues {
            let Ok(channel) = conn.create_channel().await else {
                break;
            };
            // Messages got and not acked come back when the channel closes.
            while let Ok(Some(m)) = channel
                .basic_get(q, BasicGetOptions { no_ack: false })
                .await
            {
                let body: Value = serde_json::from_slice(&m.delivery.data).unwrap_or_default();
                found.push((
                    q.clone(),
                    text(&body["correspondingMessageId"])
                        .unwrap_or_else(|| body["cn"].as_str().unwrap_or("?").to_string()),
                ));
            }
            let _ = channel.close(200, "done").await;
        }
        let _ = conn.close(200, "done").await;
        found
    })
}
