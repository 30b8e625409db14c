//! A double of the Percero backend (ActiveStack/syncengine), the other side of the gateway's
//! agent queues: it declares and consumes them as Percero does, decodes each request as
//! Percero's Jackson 1.9 decoder would (refusing what Percero refuses, see `classes`), answers
//! as Percero's handlers do, and moves and ends client queues as `RabbitMQPushSyncHelper` does.
//! Each behaviour names the syncengine file it follows (se = `src/main/java/com/percero/`).
//!
//! # Isolation
//! Each double runs in a RabbitMQ vhost of its own (`vhost`), and the cluster under test is
//! pointed at it (`gateway_config`). The gateway publishes to fixed queue names, so on a shared
//! vhost the echo agents and doubles of other test processes would compete for the requests.
//! Here the double is the only consumer: its log is everything the gateway sent, in arrival
//! order, and its state (the client registry, the `UserToken` rows, `eolClients`) is its own.
//! (Doubles sharing `/` with their state in Redis would still lose requests to the echo agents,
//! which answer differently, and could not tell the order of one client's requests.)
//!
//! # How it runs
//! Its own thread with a current-thread tokio runtime and lapin. Like Percero's one Spring
//! listener container (`messageListener-spring-config.xml`: one `rabbit:listener` for every
//! queue, default concurrency 1, prefetch 1, AUTO acknowledge), it takes one request at a time
//! on one channel, and acks it once handled, refused or not. Tests call it through commands
//! that run on that runtime between requests.

pub mod backend;
pub mod classes;
pub mod vhost;

use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use serde_json::{Map, Value, json};

use self::backend::{Backend, has_text, now_ms};
use self::classes::{Decoded, Family};
use super::DEADLINE;

/// The queues Percero declares and listens to: the `rabbit:queue` elements and the one
/// `rabbit:listener` of se resources `spring/messageListener-spring-config.xml`.
pub const AGENT_QUEUES: &[&str] = &[
    "authenticateOAuthCode",
    "authenticate",
    "reauthenticate",
    "42",
    "authenticateOAuthAccessToken",
    "41",
    "authenticateUserAccount",
    "getServiceUsers",
    "getOAuthRequestToken",
    "getRegAppOAuths",
    "getRegisteredApplication",
    "getAllServiceProviders",
    "logoutUser",
    "testCall",
    "validateUserByToken",
    "17",
    "disconnectAuth",
    "connect",
    "reconnect",
    "hibernate",
    "upgradeClient",
    "disconnect",
    "logout",
    "create",
    "update",
    "processTransaction",
    "getChangeWatcher",
    "findById",
    "findByIds",
    "findByExample",
    "countAllByName",
    "getAllByName",
    "runQuery",
    "runProcess",
    "createObject",
    "putObject",
    "removeObject",
    "updatesReceived",
    "deletesReceived",
    "searchByExample",
    "delete",
    "getAccessor",
    "getHistory",
];

/// The one authentication provider the double has (Percero's `AuthProviderRegistry` holds the
/// application's). `authenticate` takes the credential `<account>:<password>` (any password but
/// [`BAD_PASSWORD`]), `authenticateOAuthCode` the code `<account>`, `authenticateOAuthAccessToken`
/// the access token `<account>`. The account's `User.ID` is the account name (Percero makes a
/// random one at the first login and keeps it; tests like to know it).
pub const AUTH_PROVIDER: &str = "percero-double";
pub const BAD_PASSWORD: &str = "wrong";

/// `gateway.rabbitmq.durable`, Percero's default (se/amqp/RabbitMQPushSyncHelper.java:84).
const DURABLE_CLIENT_QUEUES: bool = false;

/// A header that marks the double's own barrier messages (never sent by the gateway).
const BARRIER_HEADER: &str = "x-percero-double-barrier";

/// What the double made of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Decoded as an instance of this class.
    Decoded(&'static str),
    /// Percero would log "Unable to process message" and drop it; the reason.
    Refused(String),
    /// A Percero class the double does not model.
    Unmodelled(String),
    /// One of the double's barriers (see [`Percero::barrier`]).
    Barrier(String),
}

/// One message taken from an agent queue.
#[derive(Debug, Clone)]
pub struct Received {
    /// Arrival order, from 0: within a queue, the order it was published in; across queues,
    /// not (each queue delivers in its own time; [`Percero::trace_publishes`] has that order).
    pub seq: usize,
    pub queue: String,
    pub reply_to: Option<String>,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
    pub outcome: Outcome,
}

impl Received {
    /// Asserts that Percero decoded this request as an instance of `class` (with what it was,
    /// on failure).
    #[track_caller]
    pub fn assert_decoded_as(&self, class: &str) {
        assert_eq!(
            self.class(),
            Some(class),
            "{} on {}: {:?}",
            self.body,
            self.queue,
            self.outcome
        );
    }

    /// The client it came from: its `clientId`, else its replyTo.
    pub fn client_id(&self) -> Option<&str> {
        self.body["clientId"].as_str().or(self.reply_to.as_deref())
    }

    pub fn is_from(&self, client_id: &str) -> bool {
        self.client_id() == Some(client_id) || self.reply_to.as_deref() == Some(client_id)
    }

    pub fn decoded(&self) -> bool {
        matches!(self.outcome, Outcome::Decoded(_))
    }

    pub fn class(&self) -> Option<&'static str> {
        match self.outcome {
            Outcome::Decoded(class) => Some(class),
            _ => None,
        }
    }

    /// Why Percero would refuse it, if it would.
    pub fn refusal(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Refused(reason) => Some(reason),
            _ => None,
        }
    }

    /// The body's `cn`.
    pub fn cn(&self) -> Option<&str> {
        self.body["cn"].as_str()
    }
}

/// A queue's counts, from a passive declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Ready messages (not the ones delivered and unacked).
    pub messages: u32,
    pub consumers: u32,
}

type Reply<T> = mpsc::Sender<T>;

enum Command {
    Push {
        queue: String,
        bodies: Vec<Value>,
        done: Reply<()>,
    },
    RemoveClient {
        client_id: String,
        done: Reply<bool>,
    },
    RenameClient {
        previous: String,
        client_id: String,
        done: Reply<bool>,
    },
    Queue {
        name: String,
        done: Reply<Option<QueueState>>,
    },
    Declare {
        name: String,
        arguments: FieldTable,
        done: Reply<Result<(), String>>,
    },
    Peek {
        name: String,
        done: Reply<Vec<Value>>,
    },
    Barrier {
        queue: String,
        id: String,
        done: Reply<()>,
    },
    Request {
        queue: String,
        body: Value,
        reply_to: String,
        done: Reply<()>,
    },
}

/// The double, seen from a test.
pub struct Percero {
    commands: Option<tokio::sync::mpsc::UnboundedSender<Command>>,
    thread: Option<JoinHandle<()>>,
    log: Arc<Mutex<Vec<Received>>>,
    backend: Arc<Mutex<Backend>>,
    /// Last: the vhost goes once the double has stopped.
    vhost: vhost::Vhost,
}

impl Percero {
    /// A double in a new vhost, its queues declared and consumed.
    pub fn start() -> Percero {
        let vhost = vhost::Vhost::create();
        let log = Arc::new(Mutex::new(Vec::new()));
        let backend = Arc::new(Mutex::new(Backend::new()));
        let (commands, inbox) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let uri = amqp_uri(&vhost);
        let (thread_log, thread_backend) = (log.clone(), backend.clone());
        let thread = std::thread::spawn(move || {
            super::agent::runtime().block_on(async move {
                let double = match Double::connect(&uri, thread_log, thread_backend).await {
                    Ok(double) => double,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let consumers = match double.consume().await {
                    Ok(consumers) => consumers,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                double.run(consumers, inbox).await;
            });
        });
        match ready_rx.recv_timeout(DEADLINE) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the Percero double did not start: {e}"),
            Err(_) => panic!("the Percero double did not start within {DEADLINE:?}"),
        }
        Percero {
            commands: Some(commands),
            thread: Some(thread),
            log,
            backend,
            vhost,
        }
    }

    pub fn vhost(&self) -> &str {
        &self.vhost.name
    }

    /// Config keys that point a cluster at the double: the usual gateway test keys
    /// (`agent::gateway_config`) and the double's vhost. Start the cluster without
    /// `clientQueueExpires` (see [`super::Cluster::start_unset`]), as Percero expects client
    /// queues without arguments.
    pub fn gateway_config(&self) -> String {
        format!(
            "{}gateway.rabbitmq.vhost={}\n",
            super::agent::gateway_config(),
            self.vhost.name
        )
    }

    fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> T {
        let (tx, rx) = mpsc::channel();
        let sender = self.commands.as_ref().expect("the double runs");
        sender
            .send(command(tx))
            .expect("the Percero double is running");
        rx.recv_timeout(DEADLINE)
            .expect("the Percero double answered in time")
    }

    /// Starts recording what is published into the double's vhost, in the order RabbitMQ
    /// takes the publishes: across agent queues, the double's own arrival order is the order
    /// each queue delivered in, not the order the gateway published in.
    pub fn trace_publishes(&self) -> PublishTrace {
        PublishTrace::start(&self.vhost)
    }

    // ----- what it received -----

    /// Everything taken from the agent queues so far, in arrival order (barriers included).
    pub fn received(&self) -> Vec<Received> {
        lock(&self.log).clone()
    }

    /// What came from this client (its `clientId` or replyTo), in arrival order.
    pub fn from(&self, client_id: &str) -> Vec<Received> {
        lock(&self.log)
            .iter()
            .filter(|r| r.is_from(client_id))
            .cloned()
            .collect()
    }

    /// Waits for the first received message that satisfies `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
        super::wait_for(what, || lock(&self.log).iter().find(|r| pred(r)).cloned())
    }

    /// Waits for the first message on `queue` from `client_id` (decoded or refused).
    pub fn wait_request(&self, queue: &str, client_id: &str) -> Received {
        self.wait_for(&format!("a message on {queue} from {client_id}"), |r| {
            r.queue == queue && r.is_from(client_id)
        })
    }

    /// Returns once the double has taken everything that was in `queue` before this call: a
    /// marker goes to the back of the queue, and the double takes messages in queue order.
    pub fn barrier(&self, queue: &str) {
        let id = format!("{:016x}", fastrand::u64(..));
        self.call(|done| Command::Barrier {
            queue: queue.into(),
            id: id.clone(),
            done,
        });
        self.wait_for(&format!("the barrier on {queue}"), |r| {
            r.outcome == Outcome::Barrier(id.clone())
        });
    }

    // ----- what it does when a test asks -----

    /// Publishes `body` to a client queue as `pushSyncResponseToClient` does
    /// (se/amqp/RabbitMQPushSyncHelper.java:199-205); returns once RabbitMQ has it.
    pub fn push(&self, client_id: &str, body: &Value) {
        self.push_all(client_id, vec![body.clone()]);
    }

    /// Several pushes to one queue, in order.
    pub fn push_all(&self, client_id: &str, bodies: Vec<Value>) {
        self.call(|done| Command::Push {
            queue: client_id.into(),
            bodies,
            done,
        });
    }

    /// `RabbitMQPushSyncHelper.removeClient` (se/amqp/RabbitMQPushSyncHelper.java:257-296): unless
    /// the client is in `eolClients`, declares its queue with no arguments, purges it, publishes
    /// the EOL and adds the client to `eolClients`. False if the declare failed (for example 406,
    /// a queue declared with other arguments): then nothing else happens.
    pub fn remove_client(&self, client_id: &str) -> bool {
        self.call(|done| Command::RemoveClient {
            client_id: client_id.into(),
            done,
        })
    }

    /// `RabbitMQPushSyncHelper.renameClient` (se/amqp/RabbitMQPushSyncHelper.java:318-380).
    pub fn rename_client(&self, previous: &str, client_id: &str) -> bool {
        self.call(|done| Command::RenameClient {
            previous: previous.into(),
            client_id: client_id.into(),
            done,
        })
    }

    /// A queue's counts (passive declare); `None` if it does not exist.
    pub fn queue(&self, name: &str) -> Option<QueueState> {
        self.call(|done| Command::Queue {
            name: name.into(),
            done,
        })
    }

    /// Waits until `queue` exists with `messages` ready messages.
    pub fn wait_messages(&self, queue: &str, messages: u32) {
        super::wait_for(&format!("{messages} ready messages in {queue}"), || {
            (self.queue(queue)?.messages == messages).then_some(())
        });
    }

    /// Declares a (non-durable) queue with these arguments, as another program might have.
    pub fn declare(&self, name: &str, arguments: FieldTable) -> Result<(), String> {
        self.call(|done| Command::Declare {
            name: name.into(),
            arguments,
            done,
        })
    }

    /// The ready messages of a queue, left in it (got unacked, then given back).
    pub fn peek(&self, name: &str) -> Vec<Value> {
        self.call(|done| Command::Peek {
            name: name.into(),
            done,
        })
    }

    /// Publishes a request to an agent queue with this replyTo, as the gateway would (for the
    /// double's own tests).
    pub fn request(&self, queue: &str, body: &Value, reply_to: &str) {
        self.call(|done| Command::Request {
            queue: queue.into(),
            body: body.clone(),
            reply_to: reply_to.into(),
            done,
        });
    }

    // ----- its state -----

    /// A login of `account` for `client_id`, as `AuthService2.loginUserAccount` makes it: the
    /// `UserToken` row, as the JSON Percero sends.
    pub fn user_token(&self, account: &str, client_id: &str, device_id: &str) -> Value {
        lock(&self.backend)
            .login_user_account(account, Some(client_id), Some(device_id))
            .to_json()
    }

    pub fn eol_clients(&self) -> Vec<String> {
        lock(&self.backend).eol_clients.iter().cloned().collect()
    }

    pub fn is_logged_in(&self, client_id: &str) -> bool {
        lock(&self.backend).is_logged_in(client_id)
    }

    pub fn is_hibernated(&self, client_id: &str) -> bool {
        lock(&self.backend).is_hibernated(client_id)
    }

    /// The clients registered for a user's device (`findClientByUserIdDeviceId`, nulls left out).
    pub fn device_clients(&self, user_id: &str, device_id: &str) -> Vec<String> {
        lock(&self.backend)
            .find_client_by_user_id_device_id(Some(user_id), Some(device_id))
            .into_iter()
            .flatten()
            .collect()
    }

    /// The token the double issued to this client, if any.
    pub fn token_of(&self, client_id: &str) -> Option<String> {
        lock(&self.backend)
            .user_tokens
            .iter()
            .find(|t| t.client_id.as_deref() == Some(client_id))
            .map(|t| t.token.clone())
    }
}

impl Drop for Percero {
    fn drop(&mut self) {
        // Closing the command channel ends the double's loop.
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The publishes into one vhost, in the broker's order: RabbitMQ's firehose copies each to
/// `amq.rabbitmq.trace` as the publishing channel takes it, and one queue of the trace's own
/// keeps them in that order.
pub struct PublishTrace {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    queue: String,
    _connection: Connection,
}

impl PublishTrace {
    fn start(vhost: &vhost::Vhost) -> PublishTrace {
        vhost.trace_on();
        let runtime = super::agent::runtime();
        let uri = amqp_uri(vhost);
        let (connection, channel, queue) = runtime.block_on(async {
            let connection = super::agent::connect_amqp(&uri)
                .await
                .expect("RabbitMQ for the publish trace");
            let channel = connection.create_channel().await.expect("trace channel");
            let queue = channel
                .queue_declare(
                    "",
                    QueueDeclareOptions {
                        exclusive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("trace queue");
            let queue = queue.name().to_string();
            channel
                .queue_bind(
                    &queue,
                    "amq.rabbitmq.trace",
                    "publish.#",
                    lapin::options::QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("trace binding");
            (connection, channel, queue)
        });
        PublishTrace {
            runtime,
            channel,
            queue,
            _connection: connection,
        }
    }

    /// The queues (routing keys) of the publishes traced so far, oldest first, with the
    /// published bodies as JSON.
    pub fn take(&self) -> Vec<(String, Value)> {
        self.runtime.block_on(async {
            let mut published = Vec::new();
            while let Some(message) = self
                .channel
                .basic_get(&self.queue, BasicGetOptions { no_ack: true })
                .await
                .expect("basic.get on the trace queue")
            {
                let routing_key = message
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("routing_keys").cloned());
                let queue = match routing_key {
                    Some(AMQPValue::FieldArray(keys)) => match keys.as_slice().first() {
                        Some(AMQPValue::LongString(key)) => key.to_string(),
                        other => format!("{other:?}"),
                    },
                    other => format!("{other:?}"),
                };
                let body = serde_json::from_slice(&message.data).unwrap_or(Value::Null);
                published.push((queue, body));
            }
            published
        })
    }
}

fn amqp_uri(vhost: &vhost::Vhost) -> String {
    format!(
        "amqp://guest:guest@127.0.0.1:{}/{}",
        super::agent::RABBITMQ_PORT,
        vhost.uri_path()
    )
}

/// The properties Spring AMQP gives what Percero sends: `RabbitTemplate.send` of a
/// `MessageProperties` (content type JSON, UTF-8, persistent by default) whose `__TypeId__`
/// header `DefaultClassMapper` sets to the class sent (se/amqp/RabbitMQPushSyncHelper.java:
/// 156-197; `JsonMessageConverter` does the same for `convertAndSend`).
fn spring_properties(type_id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "__TypeId__".into(),
        AMQPValue::LongString(type_id.to_string().into()),
    );
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("UTF-8".into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(headers)
}

/// A request as decoded: its class and the properties the message set, read as Java would
/// (a missing property has its field's initial value).
struct Request {
    queue: String,
    reply_to: Option<String>,
    class: &'static str,
    fields: Map<String, Value>,
}

impl Request {
    /// A `String` property: text as is, numbers and booleans as their text, null as null;
    /// missing: the field's initializer (`clientId`, `deviceId` and `existingClientId` are "").
    fn str(&self, name: &str) -> Option<String> {
        match self.fields.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) => None,
            Some(other) => Some(other.to_string()),
            None => matches!(name, "clientId" | "deviceId" | "existingClientId").then(String::new),
        }
    }

    fn strs(&self, name: &str) -> Option<Vec<Option<String>>> {
        match self.fields.get(name) {
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Null => None,
                        other => Some(other.to_string()),
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    fn flag(&self, name: &str) -> Option<bool> {
        match self.fields.get(name)? {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => Some(n.as_i64() != Some(0)),
            Value::String(s) => match s.trim() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    fn client_id(&self) -> String {
        self.str("clientId").unwrap_or_default()
    }
}

/// The double's side: its connection, a publishing channel, the log and the state.
struct Double {
    connection: Connection,
    publish: Channel,
    log: Arc<Mutex<Vec<Received>>>,
    backend: Arc<Mutex<Backend>>,
}

type Consumers = futures::stream::SelectAll<lapin::Consumer>;

impl Double {
    async fn connect(
        uri: &str,
        log: Arc<Mutex<Vec<Received>>>,
        backend: Arc<Mutex<Backend>>,
    ) -> Result<Double, String> {
        let connection = super::agent::connect_amqp(uri)
            .await
            .map_err(|e| format!("RabbitMQ at {uri}: {e}"))?;
        let publish = connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        // Confirms, so that a test's push is in the queue when `push` returns.
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Double {
            connection,
            publish,
            log,
            backend,
        })
    }

    /// Declares the agent queues as Spring's `RabbitAdmin` does for `<rabbit:queue name=..>`:
    /// durable (the schema's default), not exclusive, not auto-delete, no arguments. Then one
    /// consumer per queue on one channel, prefetch 1 each.
    async fn consume(&self) -> Result<Consumers, String> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(|e| e.to_string())?;
        channel
            .basic_qos(1, BasicQosOptions { global: false })
            .await
            .map_err(|e| e.to_string())?;
        let mut consumers = Vec::new();
        for queue in AGENT_QUEUES {
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(queue, options, FieldTable::default())
                .await
                .map_err(|e| format!("declare {queue}: {e}"))?;
            let consumer = channel
                .basic_consume(
                    queue,
                    &format!("percero-{queue}"),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| format!("consume {queue}: {e}"))?;
            consumers.push(consumer);
        }
        Ok(futures::stream::select_all(consumers))
    }

    async fn run(
        self,
        mut consumers: Consumers,
        mut inbox: tokio::sync::mpsc::UnboundedReceiver<Command>,
    ) {
        loop {
            tokio::select! {
                delivery = consumers.next() => match delivery {
                    Some(Ok(delivery)) => {
                        self.on_delivery(&delivery).await;
                        let _ = delivery.ack(lapin::options::BasicAckOptions::default()).await;
                    }
                    Some(Err(e)) => {
                        eprintln!("percero double: consumer failed: {e}");
                        break;
                    }
                    None => break,
                },
                command = inbox.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
            }
        }
        let _ = self.connection.close(200, "the test is over").await;
    }

    async fn on_command(&self, command: Command) {
        match command {
            Command::Push {
                queue,
                bodies,
                done,
            } => {
                for body in bodies {
                    let type_id = body["cn"]
                        .as_str()
                        .unwrap_or("java.lang.String")
                        .to_string();
                    self.send(
                        &queue,
                        body.to_string().as_bytes(),
                        spring_properties(&type_id),
                    )
                    .await;
                }
                let _ = done.send(());
            }
            Command::RemoveClient { client_id, done } => {
                let _ = done.send(self.remove_client(&client_id).await);
            }
            Command::RenameClient {
                previous,
                client_id,
                done,
            } => {
                let _ = done.send(self.rename_client(&previous, &client_id).await);
            }
            Command::Queue { name, done } => {
                let _ = done.send(self.queue_state(&name).await);
            }
            Command::Declare {
                name,
                arguments,
                done,
            } => {
                let result = match self.connection.create_channel().await {
                    Ok(channel) => {
                        let declared = channel
                            .queue_declare(&name, QueueDeclareOptions::default(), arguments)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string());
                        let _ = channel.close(200, "done").await;
                        declared
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = done.send(result);
            }
            Command::Peek { name, done } => {
                let _ = done.send(self.peek(&name).await);
            }
            Command::Request {
                queue,
                body,
                reply_to,
                done,
            } => {
                let properties = BasicProperties::default()
                    .with_reply_to(reply_to.into())
                    .with_content_type("application/json".into());
                self.send(&queue, body.to_string().as_bytes(), properties)
                    .await;
                let _ = done.send(());
            }
            Command::Barrier { queue, id, done } => {
                let mut headers = FieldTable::default();
                headers.insert(BARRIER_HEADER.into(), AMQPValue::LongString(id.into()));
                self.send(
                    &queue,
                    b"{}",
                    BasicProperties::default().with_headers(headers),
                )
                .await;
                let _ = done.send(());
            }
        }
    }

    /// `template.send(routingKey, message)` on the default exchange (not mandatory).
    async fn send(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        let published = self
            .publish
            .basic_publish("", queue, BasicPublishOptions::default(), body, properties)
            .await;
        match published {
            Ok(confirm) => {
                if let Err(e) = confirm.await {
                    eprintln!("percero double: publish to {queue} not confirmed: {e}");
                }
            }
            Err(e) => eprintln!("percero double: cannot publish to {queue}: {e}"),
        }
    }

    /// Sends an answer with the properties Spring gives it.
    async fn answer(&self, reply_to: &str, class: &str, body: &Value) {
        eprintln!("percero -> {reply_to}: {body}");
        self.send(
            reply_to,
            body.to_string().as_bytes(),
            spring_properties(class),
        )
        .await;
    }

    fn record(&self, delivery: &Delivery, outcome: Outcome) {
        let queue = delivery.routing_key.to_string();
        let reply_to = delivery
            .properties
            .reply_to()
            .as_ref()
            .map(ShortString::to_string);
        let body = serde_json::from_slice(&delivery.data).unwrap_or(Value::Null);
        let mut log = lock(&self.log);
        let seq = log.len();
        eprintln!(
            "percero <- {queue} #{seq} (replyTo {reply_to:?}): {} => {outcome:?}",
            String::from_utf8_lossy(&delivery.data)
        );
        log.push(Received {
            seq,
            queue,
            reply_to,
            body,
            outcome,
        });
    }

    // ----- se/amqp/PerceroAgentListener.java onMessage -----

    async fn on_delivery(&self, delivery: &Delivery) {
        let barrier = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(BARRIER_HEADER).cloned());
        if let Some(AMQPValue::LongString(id)) = barrier {
            let id = String::from_utf8_lossy(id.as_bytes()).into_owned();
            return self.record(delivery, Outcome::Barrier(id));
        }
        let (class, fields) = match classes::decode(&delivery.data) {
            Decoded::Request { class, fields } => (class, fields),
            Decoded::Refused(reason) => return self.record(delivery, Outcome::Refused(reason)),
            Decoded::Unmodelled(cn) => return self.record(delivery, Outcome::Unmodelled(cn)),
        };
        self.record(delivery, Outcome::Decoded(class));
        let request = Request {
            queue: delivery.routing_key.to_string(),
            reply_to: delivery
                .properties
                .reply_to()
                .as_ref()
                .map(ShortString::to_string),
            class,
            fields,
        };
        match classes::family(class) {
            Some(Family::Sync) => self.sync_request(&request).await,
            Some(Family::Auth) => self.auth_request(&request).await,
            // Neither SyncRequest nor AuthRequest: ignored.
            None => {}
        }
    }

    /// `handleSyncRequest` and `SyncMessageHandler.run` (se/amqp/handlers/SyncMessageHandler.java):
    /// the handler for the routing key; a failed cast or any exception in it becomes a
    /// `SyncErrorResponse`; a response goes to replyTo with the request's clientId and messageId.
    async fn sync_request(&self, request: &Request) {
        use classes::*;
        let expected = match request.queue.as_str() {
            "connect" => CONNECT_REQUEST,
            "reconnect" => RECONNECT_REQUEST,
            "hibernate" => HIBERNATE_REQUEST,
            "disconnect" => DISCONNECT_REQUEST,
            "logout" => LOGOUT_REQUEST,
            "findById" => FIND_BY_ID_REQUEST,
            // Percero has handlers for more keys; the tests use none of them. Others are
            // "Unknown Message Type": no answer.
            _ => return,
        };
        // DisconnectHandler and LogoutHandler override `run`: errors are logged, nothing sent.
        let silent = matches!(request.queue.as_str(), "disconnect" | "logout");
        let response = if !is_a(request.class, expected) {
            Some(sync_error(&format!(
                "{} cannot be cast to {expected}",
                request.class
            )))
        } else {
            match request.queue.as_str() {
                "connect" => Some(self.connect_handler(request)),
                "reconnect" => Some(self.reconnect_handler(request).await),
                "hibernate" => {
                    let result = lock(&self.backend)
                        .hibernate_client(&request.client_id(), request.str("userId").as_deref());
                    Some(sync_response(
                        "HibernateResponse",
                        json!({"result": result}),
                    ))
                }
                "disconnect" => {
                    // se/amqp/handlers/DisconnectHandler.java
                    lock(&self.backend)
                        .hibernate_client(&request.client_id(), request.str("userId").as_deref());
                    None
                }
                "logout" => {
                    self.logout(request).await;
                    None
                }
                "findById" => {
                    // se/amqp/handlers/FindByIdHandler.java; the double holds no data objects.
                    Some(sync_response("FindByIdResponse", json!({"result": null})))
                }
                _ => None,
            }
        };
        let (Some(mut response), false) = (response, silent) else {
            return;
        };
        let Some(reply_to) = request.reply_to.as_deref().filter(|r| !r.is_empty()) else {
            return;
        };
        response["clientId"] = json!(request.client_id());
        response["correspondingMessageId"] = json!(request.str("messageId"));
        let class = response["cn"].as_str().unwrap_or_default().to_string();
        self.answer(reply_to, &class, &response).await;
    }

    /// se/amqp/handlers/ConnectHandler.java.
    fn connect_handler(&self, request: &Request) -> Value {
        let mut response = connect_response();
        self.authenticate_and_register(request, None, "CONNECT", &mut response);
        response
    }

    /// What ConnectHandler and ReconnectHandler share: `accountHelper.authenticateOAuth` (with
    /// the existing clients on a reconnect) and, for a valid user, `accessManager.registerClient`
    /// and the response's `dataID` and `data`. False: no valid user.
    fn authenticate_and_register(
        &self,
        request: &Request,
        existing: Option<&[Option<String>]>,
        data: &str,
        response: &mut Value,
    ) -> bool {
        let client_id = request.client_id();
        let (user, token, device, client_type) = (
            request.str("userId"),
            request.str("token"),
            request.str("deviceId"),
            request.str("clientType"),
        );
        let mut backend = lock(&self.backend);
        let principal = backend.authenticate_oauth(
            user.as_deref(),
            token.as_deref(),
            &client_id,
            client_type.as_deref(),
            device.as_deref(),
            existing,
        );
        if principal {
            backend.register_client(
                &client_id,
                user.as_deref(),
                device.as_deref(),
                client_type.as_deref(),
            );
            response["dataID"] = json!(backend.data_id);
            response["data"] = json!(data);
        }
        principal
    }

    /// se/amqp/handlers/ReconnectHandler.java. Answers a `ConnectResponse`, as this Percero does.
    async fn reconnect_handler(&self, request: &Request) -> Value {
        let mut response = connect_response();
        let reply_to = request.reply_to.clone().unwrap_or_default();
        let existing = lock(&self.backend).find_client_by_user_id_device_id(
            request.str("userId").as_deref(),
            request.str("deviceId").as_deref(),
        );
        if existing.is_empty() {
            // "Invalid reconnect, no existing client IDs".
            return response;
        }
        let asked: Vec<Option<String>> = match request.strs("existingClientIds") {
            Some(ids) if !ids.is_empty() => ids,
            _ => match request.str("existingClientId") {
                Some(id) if !id.is_empty() => vec![Some(id)],
                // "Unable to find valid existing ClientID in ReconnectRequest".
                _ => return response,
            },
        };
        let matched = asked.iter().any(|id| existing.contains(id));
        let existing = matched.then_some(existing);
        let principal = self.authenticate_and_register(
            request,
            existing.as_deref(),
            "RECONNECT",
            &mut response,
        );
        if !principal {
            return response;
        }
        // `existingClientIds.iterator()` on the null left when no id matched, or
        // `equalsIgnoreCase` on a null id: a NullPointerException, answered as an error.
        let Some(existing) = existing else {
            return sync_error_null();
        };
        for old in existing {
            let Some(old) = old else {
                return sync_error_null();
            };
            if old.eq_ignore_ascii_case(&reply_to) {
                continue;
            }
            self.rename_client(&old, &reply_to).await;
        }
        response
    }

    /// se/amqp/handlers/LogoutHandler.java, `RedisAccessManager.logoutClient` and
    /// `destroyClient` (which ends with `removeClient` and `logoutUser`).
    async fn logout(&self, request: &Request) {
        let destroy = request.flag("pleaseDestroyClient").unwrap_or(false);
        let client = request.str("clientId");
        let destroyed = lock(&self.backend).logout_client(client.as_deref(), destroy);
        if let Some(client_id) = destroyed {
            let user = lock(&self.backend).destroy_client(&client_id);
            self.remove_client(&client_id).await;
            lock(&self.backend).logout_user(user.as_deref(), None, Some(&client_id));
        }
    }

    /// `handleAuthRequest` (se/amqp/PerceroAgentListener.java:276-381): whatever happens, an
    /// answer goes back (a bare `AuthResponse` if no branch made one), with the request's
    /// clientId and messageId.
    async fn auth_request(&self, request: &Request) {
        use classes::*;
        let key = request.queue.as_str();
        let class = request.class;
        let response = if key == "authenticate" && is_a(class, AUTHENTICATION_REQUEST) {
            self.authenticate(request)
        } else if key == "reauthenticate" && is_a(class, REAUTHENTICATION_REQUEST) {
            // se/agents/auth/services/AuthService2.java reauthenticate.
            let token = lock(&self.backend)
                .reauthenticate(request.str("token").as_deref(), Some(&request.client_id()));
            Some(auth_response(
                "AuthenticationResponse",
                json!({"result": token.map(|t| t.to_json())}),
            ))
        } else if matches!(key, "41" | "authenticateOAuthCode") {
            is_a(class, OAUTH_CODE_REQUEST)
                .then(|| self.oauth(request, "code", "AuthenticateOAuthCodeResponse"))
                .flatten()
        } else if matches!(key, "42" | "authenticateOAuthAccessToken") {
            is_a(class, OAUTH_ACCESS_TOKEN_REQUEST)
                .then(|| {
                    self.oauth(
                        request,
                        "accessToken",
                        "AuthenticateOAuthAccessTokenResponse",
                    )
                })
                .flatten()
        } else if key == "disconnectAuth" {
            is_a(class, AUTH_DISCONNECT_REQUEST).then(|| {
                // AuthService.logoutUser.
                let result = lock(&self.backend).logout_user(
                    request.str("userId").as_deref(),
                    request.str("token").as_deref(),
                    Some(&request.client_id()),
                );
                auth_response("DisconnectResponse", json!({"result": result}))
            })
        } else {
            // "Unknown Message Type" (testCall, for one, has no branch).
            None
        };
        let mut response = response.unwrap_or_else(|| auth_response("AuthResponse", json!({})));
        response["clientId"] = json!(request.client_id());
        response["correspondingMessageId"] = json!(request.str("messageId"));
        let Some(reply_to) = request.reply_to.as_deref() else {
            return;
        };
        let class = response["cn"].as_str().unwrap_or_default().to_string();
        self.answer(reply_to, &class, &response).await;
    }

    /// `AuthService2.authenticate`: an unknown provider throws (no response of its own); a
    /// failed login answers the provider's status without a result.
    fn authenticate(&self, request: &Request) -> Option<Value> {
        if request.str("authProvider").as_deref() != Some(AUTH_PROVIDER) {
            return None;
        }
        let credential = request.str("credential").unwrap_or_default();
        let (account, password) = credential.split_once(':').unwrap_or((&credential, ""));
        if account.is_empty() || password == BAD_PASSWORD {
            return Some(auth_response(
                "AuthenticationResponse",
                json!({"message": "Unauthorized", "statusCode": 401, "result": null}),
            ));
        }
        let token = lock(&self.backend).login_user_account(
            account,
            Some(&request.client_id()),
            request.str("deviceId").as_deref(),
        );
        Some(auth_response(
            "AuthenticationResponse",
            json!({"message": "Success", "statusCode": 200, "result": token.to_json()}),
        ))
    }

    /// The OAuth branches (`authService.authenticateOAuthCode` / `..AccessToken`): the user's
    /// token is made for the replyTo client, and comes with the provider's tokens.
    fn oauth(&self, request: &Request, account_field: &str, class: &str) -> Option<Value> {
        if request.str("authProvider").as_deref() != Some(AUTH_PROVIDER) {
            return None;
        }
        let mut response = auth_response(class, json!({}));
        let account = request.str(account_field).filter(|a| has_text(Some(a)));
        if let Some(account) = account {
            let token = lock(&self.backend).login_user_account(
                &account,
                request.reply_to.as_deref(),
                request.str("deviceId").as_deref(),
            );
            response["result"] = token.to_json();
            response["accessToken"] = json!(format!("access-{account}"));
            response["refreshToken"] = json!(format!("refresh-{account}"));
        }
        Some(response)
    }

    // ----- se/amqp/RabbitMQPushSyncHelper.java -----

    async fn remove_client(&self, client_id: &str) -> bool {
        if lock(&self.backend).eol_clients.contains(client_id) {
            return true;
        }
        let Ok(channel) = self.connection.create_channel().await else {
            return false;
        };
        let options = QueueDeclareOptions {
            durable: DURABLE_CLIENT_QUEUES,
            ..QueueDeclareOptions::default()
        };
        if let Err(e) = channel
            .queue_declare(client_id, options, FieldTable::default())
            .await
        {
            eprintln!("percero double: removeClient({client_id}): declare failed: {e}");
            return false;
        }
        let purged = channel
            .queue_purge(client_id, QueuePurgeOptions::default())
            .await;
        let _ = channel.close(200, "done").await;
        if let Err(e) = purged {
            eprintln!("percero double: removeClient({client_id}): purge failed: {e}");
            return false;
        }
        let eol = format!("{{\"EOL\":true, \"clientId\":\"{client_id}\"}}");
        self.send(
            client_id,
            eol.as_bytes(),
            spring_properties("java.lang.String"),
        )
        .await;
        lock(&self.backend)
            .eol_clients
            .insert(client_id.to_string());
        true
    }

    /// Moves every ready message of the previous queue to the new one with basic.get (auto-ack,
    /// as `RabbitTemplate.receive`) and a publish with the same properties, keeps an EOL in the
    /// previous queue, then `removeClient(previous)`.
    async fn rename_client(&self, previous: &str, client_id: &str) -> bool {
        if !has_text(Some(previous)) || !has_text(Some(client_id)) {
            return false;
        }
        if client_id.eq_ignore_ascii_case(previous) {
            return true;
        }
        if let Ok(channel) = self.connection.create_channel().await {
            let mut eol = None;
            loop {
                let got = channel
                    .basic_get(previous, BasicGetOptions { no_ack: true })
                    .await;
                // An error (404: no such queue) closes the channel: stop moving.
                let Ok(Some(message)) = got else { break };
                let delivery = message.delivery;
                // `objectMapper.readTree` of a body that is not JSON throws: the message, got
                // with auto-ack, is lost and the move stops.
                let Ok(node) = serde_json::from_slice::<Value>(&delivery.data) else {
                    break;
                };
                if node.get("EOL").is_some() {
                    eol = Some(delivery);
                } else {
                    self.send(client_id, &delivery.data, delivery.properties.clone())
                        .await;
                }
            }
            if let Some(eol) = eol {
                self.send(previous, &eol.data, eol.properties.clone()).await;
            }
            let _ = channel.close(200, "done").await;
        }
        self.remove_client(previous).await
    }

    async fn queue_state(&self, name: &str) -> Option<QueueState> {
        let channel = self.connection.create_channel().await.ok()?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(name, options, FieldTable::default())
            .await
            .ok()?;
        let _ = channel.close(200, "done").await;
        Some(QueueState {
            messages: queue.message_count(),
            consumers: queue.consumer_count(),
        })
    }

    async fn peek(&self, name: &str) -> Vec<Value> {
        let Ok(channel) = self.connection.create_channel().await else {
            return Vec::new();
        };
        let mut seen = Vec::new();
        while let Ok(Some(message)) = channel
            .basic_get(name, BasicGetOptions { no_ack: false })
            .await
        {
            seen.push(serde_json::from_slice(&message.delivery.data).unwrap_or(Value::Null));
        }
        // Closing the channel gives the unacked messages back, in their places.
        let _ = channel.close(200, "done").await;
        seen
    }
}

/// A `SyncResponse` subclass as its `toJson` writes it (se/agents/sync/vo/SyncResponse.java
/// `retrieveBaseJson`, plus the subclass's fields in `extra`). clientId and
/// correspondingMessageId are set by `sendResponse`.
fn sync_response(class: &str, extra: Value) -> Value {
    let mut response = json!({
        "cn": format!("com.percero.agents.sync.vo.{class}"),
        "clientId": "",
        "timestamp": now_ms(),
        "ids": null,
        "data": null,
        "type": null,
        "correspondingMessageId": null,
        "gatewayMessageId": null,
    });
    if let (Some(map), Value::Object(extra)) = (response.as_object_mut(), extra) {
        map.extend(extra);
    }
    response
}

/// se/agents/sync/vo/ConnectResponse.java, as the handlers start it.
fn connect_response() -> Value {
    sync_response(
        "ConnectResponse",
        json!({"currentTimestamp": now_ms(), "dataID": null}),
    )
}

/// se/agents/sync/vo/SyncErrorResponse.java, for `catch(Exception e)` in
/// `SyncMessageHandler.run`: name and description are the exception's message, code 0
/// (written as text by its `retrieveBaseJson`).
fn sync_error(message: &str) -> Value {
    sync_response(
        "SyncErrorResponse",
        json!({"errorName": message, "errorDesc": message, "errorCode": "0"}),
    )
}

/// The `SyncErrorResponse` of a NullPointerException (its message is null).
fn sync_error_null() -> Value {
    sync_response(
        "SyncErrorResponse",
        json!({"errorName": null, "errorDesc": null, "errorCode": "0"}),
    )
}

/// An `AuthResponse` subclass as Jackson writes it (se/agents/auth/vo/AuthResponse.java: its
/// fields and their initial values, then the subclass's in `extra`).
fn auth_response(class: &str, extra: Value) -> Value {
    let mut response = json!({
        "cn": format!("com.percero.agents.auth.vo.{class}"),
        "clientId": "",
        "deviceId": "",
        "correspondingMessageId": null,
        "message": "OK",
        "statusCode": 200,
    });
    if let (Some(map), Value::Object(extra)) = (response.as_object_mut(), extra) {
        map.extend(extra);
    }
    response
}

/// The device the helpers log in from.
pub const DEVICE: &str = "device-1";

/// Logs `client` (after `message{connect}`) in as `account` through Percero's OAuth-code branch,
/// which every gateway version takes as a login (its answer is an
/// `AuthenticateOAuthCodeResponse`), and waits until Percero has registered the client (the
/// gateway's ConnectRequest went through). Returns the logged-in key and its session.
pub fn log_in(
    percero: &Percero,
    client: &mut super::agent::JsClient,
    account: &str,
) -> (String, Value) {
    log_in_on(percero, client, account, DEVICE)
}

/// [`log_in`] from device `device` (Percero finds a reconnecting client's older clients by
/// device: users of one test must not share a device unless the test means them to).
pub fn log_in_on(
    percero: &Percero,
    client: &mut super::agent::JsClient,
    account: &str,
    device: &str,
) -> (String, Value) {
    let message_id = format!("login-{account}-{:08x}", fastrand::u32(..));
    client.emit(
        "authenticateOAuthCode",
        json!({
            "cn": classes::OAUTH_CODE_REQUEST,
            "authProvider": AUTH_PROVIDER,
            "code": account,
            "deviceId": device,
            "messageId": message_id,
        }),
    );
    let answer = client.push_for(&message_id);
    assert!(answer["result"]["token"].is_string(), "no login: {answer}");
    client.emit(
        "message",
        json!({"ack": {"correspondingMessageId": message_id}}),
    );
    let key = client.wait("gatewayConnectAck", |k| {
        super::keys::read(k.as_str().unwrap_or("")).is_ok_and(|s| super::keys::logged_in(&s))
    });
    let session = super::keys::session(&key);
    let client_id = super::keys::client_id(&session);
    super::wait_for(&format!("Percero to register {client_id}"), || {
        percero.is_logged_in(&client_id).then_some(())
    });
    (key.as_str().unwrap_or_default().to_string(), session)
}
