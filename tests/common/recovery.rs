//! The gateway when things break under it, end to end, for any socket.io client library
//! ([`Library`]): the real binary, real socket.io clients, the echo agent of `agent.rs`, and real
//! RabbitMQ. The scenarios are run by tests/gateway_recovery.rs (socket.io-client 4) and
//! tests/legacy_recovery.rs (socket.io-client 0.9).
//!
//! - [`a_worker_killed_mid_conversation`]: a worker SIGKILLed in the middle of its logged-in
//!   clients' conversations: what the clients acked stays acked, what they had not acked goes
//!   back to their queues and reaches them when they reconnect with their reconnect keys (the
//!   backend double, as Percero, moves the old queue's messages on the ReconnectRequest). Uses
//!   the double's vhost on the shared RabbitMQ (and `rabbitmqctl` to read the unacked counts,
//!   which a passive declare does not give).
//! - [`rabbitmq_restarted_under_load`]: a private RabbitMQ node of the test's own (the machine's
//!   shared broker is never restarted), stopped and started again while clients do round trips;
//!   the cluster must recover by itself.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::agent::{self, JsClient, gateway_config, start_agent_on};
use super::keys;
use super::percero::{self, Percero};
use super::{Cluster, DEADLINE, legacy};

// ----- the client library -----

/// The socket.io client library a scenario drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// npm socket.io-client 4 (tests/e2e/client.js).
    SocketIo4,
    /// npm socket.io-client 0.9.17, what the ActiveStack SDKs speak (tests/e2e/legacy_client.js).
    SocketIo09,
}

impl Library {
    /// A client connected to the cluster, and the local port of its websocket when the client
    /// has other connections to the gateway (0.9's handshake is a request of its own, which may
    /// go to another worker and stay open; `None`: every connection of the client's process to
    /// the gateway is its socket's). Panics if it is not connected within [`DEADLINE`].
    pub fn connect(self, cluster: &Cluster) -> (JsClient, Option<u16>) {
        match self {
            Library::SocketIo4 => (JsClient::connect(cluster), None),
            Library::SocketIo09 => {
                let (client, port) = legacy::connect_with(cluster, json!({}));
                (client, Some(port))
            }
        }
    }

    /// A connected client whose library reconnects by itself (its own reconnection, short
    /// delays), as it does after a dying server's close and never after a socket.io disconnect.
    pub fn connect_reconnecting(self, cluster: &Cluster) -> JsClient {
        let options = json!({"reconnection": true});
        match self {
            Library::SocketIo4 => JsClient::connect_with(cluster, options),
            Library::SocketIo09 => legacy::connect_with(cluster, options).0,
        }
    }

    /// A client that tries to connect to `addr`; `None` if it is not connected within `within`.
    pub fn try_connect(self, addr: SocketAddr, within: Duration) -> Option<JsClient> {
        match self {
            Library::SocketIo4 => JsClient::try_connect(addr, within),
            Library::SocketIo09 => legacy::try_connect(addr, within).map(|(client, _)| client),
        }
    }
}

// ----- which worker holds a client -----

/// Inodes of the sockets process `pid` has open.
pub fn socket_inodes(pid: i32) -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    fds.filter_map(|fd| {
        let link = std::fs::read_link(fd.ok()?.path()).ok()?;
        let link = link.to_str()?;
        link.strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

/// The TCP sockets of this network namespace: (local port, remote port, inode).
pub fn tcp_sockets() -> Vec<(u16, u16, u64)> {
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    Some((
                        port(fields.get(1)?)?,
                        port(fields.get(2)?)?,
                        fields.get(9)?.parse().ok()?,
                    ))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The worker (of `workers`) holding the socket.io connection of the node process `client`:
/// the one from local port `websocket_port` if given, else any it has.
pub fn worker_holding(
    client: i32,
    websocket_port: Option<u16>,
    workers: &[i32],
    listen_port: u16,
) -> Option<i32> {
    let sockets = tcp_sockets();
    let local_ports: HashSet<u16> = match websocket_port {
        Some(port) => HashSet::from([port]),
        None => {
            let mine = socket_inodes(client);
            sockets
                .iter()
                .filter(|(_, remote, inode)| *remote == listen_port && mine.contains(inode))
                .map(|(local, _, _)| *local)
                .collect()
        }
    };
    worker_holding_port(&sockets, &local_ports, workers, listen_port)
}

/// The worker (of `workers`) holding the other end of a connection from one of `local_ports`.
pub fn worker_holding_port(
    sockets: &[(u16, u16, u64)],
    local_ports: &HashSet<u16>,
    workers: &[i32],
    listen_port: u16,
) -> Option<i32> {
    workers.iter().copied().find(|&worker| {
        let theirs = socket_inodes(worker);
        sockets.iter().any(|(local, remote, inode)| {
            *local == listen_port && local_ports.contains(remote) && theirs.contains(inode)
        })
    })
}

// ----- RabbitMQ's own counts -----

/// (ready, unacked) of every queue of `vhost` on the shared RabbitMQ, by name.
pub fn queue_counts(vhost: &str) -> Option<HashMap<String, (u64, u64)>> {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-p",
            vhost,
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let number = |s: &str| -> Option<u64> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let name = fields.next()?.to_string();
                Some((name, (number(fields.next()?)?, number(fields.next()?)?)))
            })
            .collect(),
    )
}

/// Waits until each queue of `want` in `vhost` has exactly its (ready, unacked) counts.
pub fn wait_counts(vhost: &str, what: &str, want: &HashMap<String, (u64, u64)>) {
    let mut last = HashMap::new();
    let start = Instant::now();
    loop {
        if let Some(counts) = queue_counts(vhost) {
            last = want
                .keys()
                .map(|q| (q.clone(), counts.get(q).copied()))
                .collect::<HashMap<_, _>>();
            if want.iter().all(|(q, c)| last.get(q) == Some(&Some(*c))) {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "{what}: queues never reached (ready, unacked) {want:?}; last seen {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ----- test 1: a worker killed mid-conversation -----

/// Requests each client makes (and gets answered) before the kill: the even ones it acks.
const FIRST: usize = 6;
/// Requests each client makes right before the kill; it acks none of them.
const SECOND: usize = 4;
const CLIENTS: usize = 4;

struct Conversation {
    client: JsClient,
    websocket_port: Option<u16>,
    key: String,
    queue: String,
    worker: i32,
    acked: Vec<String>,
    unacked: Vec<String>,
}

fn id(client: usize, phase: &str, n: usize) -> String {
    format!("c{client}-{phase}{n}")
}

/// A request the echo agent answers.
fn request(client: &mut JsClient, message_id: &str) {
    client.emit(
        "testCall",
        json!({"cn": "TestCall", "messageId": message_id, "sendAck": true}),
    );
}

/// A request Percero answers (a FindByIdResponse), with `sendAck` (a sync request has it).
fn find_by_id(client: &mut JsClient, message_id: &str) {
    client.emit(
        "findById",
        json!({"cn": "com.percero.agents.sync.vo.FindByIdRequest", "theClassName": "Thing",
               "theClassId": "1", "messageId": message_id, "sendAck": true}),
    );
}

fn ack(client: &mut JsClient, message_id: &str) {
    client.emit(
        "message",
        json!({"ack": {"correspondingMessageId": message_id}}),
    );
}

/// A worker killed mid-conversation loses no acked or unacked message (see the module doc).
pub fn a_worker_killed_mid_conversation(library: Library) {
    let percero = Percero::start();
    let vhost = percero.vhost().to_string();
    let cluster = Cluster::start_unset(
        &["gateway.rabbitmq.clientQueueExpires"],
        &percero.gateway_config(),
    );
    let listen_port = cluster.addr().port();
    let workers = cluster.worker_pids();

    let mut conversations: Vec<Conversation> = (0..CLIENTS)
        .map(|i| {
            let (mut client, websocket_port) = library.connect(&cluster);
            client.emit("message", json!({"connect": true}));
            client.wait("gatewayConnectAck", |_| true);
            let (key, session) = percero::log_in_on(
                &percero,
                &mut client,
                &format!("user{i}"),
                &format!("device{i}"),
            );
            let mut conversation = Conversation {
                client,
                websocket_port,
                key,
                queue: keys::client_id(&session),
                worker: 0,
                acked: Vec::new(),
                unacked: Vec::new(),
            };
            for n in 0..FIRST {
                let message_id = id(i, "a", n);
                find_by_id(&mut conversation.client, &message_id);
                assert_eq!(conversation.client.wait("ack", |_| true), message_id);
                let push = conversation.client.push_for(&message_id);
                assert_eq!(push["cn"], "com.percero.agents.sync.vo.FindByIdResponse");
                if n % 2 == 0 {
                    ack(&mut conversation.client, &message_id);
                    conversation.acked.push(message_id);
                } else {
                    conversation.unacked.push(message_id);
                }
            }
            conversation.worker = super::wait_for("the worker holding the client", || {
                worker_holding(
                    conversation.client.pid(),
                    conversation.websocket_port,
                    &workers,
                    listen_port,
                )
            });
            conversation
        })
        .collect();

    // Every client ack has reached RabbitMQ; the rest are delivered and unacked.
    let before: HashMap<String, (u64, u64)> = conversations
        .iter()
        .map(|c| (c.queue.clone(), (0, c.unacked.len() as u64)))
        .collect();
    wait_counts(&vhost, "client acks reaching RabbitMQ", &before);

    // The worker holding the most clients dies in the middle of the next requests: each is
    // confirmed by RabbitMQ (the gateway's `ack`), their answers are in flight, pushed or not.
    let victim = *workers
        .iter()
        .max_by_key(|&&w| conversations.iter().filter(|c| c.worker == w).count())
        .expect("workers");
    for (i, c) in conversations.iter_mut().enumerate() {
        for n in 0..SECOND {
            find_by_id(&mut c.client, &id(i, "b", n));
        }
    }
    for (i, c) in conversations.iter_mut().enumerate() {
        for n in 0..SECOND {
            let message_id = id(i, "b", n);
            c.client.wait("ack", |d| d == message_id.as_str());
            c.unacked.push(message_id);
        }
    }
    super::signal_pid(victim, Signal::SIGKILL);
    let (killed, survived): (Vec<_>, Vec<_>) =
        conversations.into_iter().partition(|c| c.worker == victim);
    assert!(!killed.is_empty(), "the victim held no client");
    eprintln!(
        "killed worker {victim} holding {} clients; {} clients on the other worker",
        killed.len(),
        survived.len()
    );

    // What the killed worker's clients had not acked is back in their queues, ready; what they
    // acked is not. The other worker's clients still hold theirs, unacked.
    let after: HashMap<String, (u64, u64)> = killed
        .iter()
        .map(|c| (c.queue.clone(), (c.unacked.len() as u64, 0)))
        .chain(
            survived
                .iter()
                .map(|c| (c.queue.clone(), (0, c.unacked.len() as u64))),
        )
        .collect();
    wait_counts(&vhost, "unacked pushes back in the client queues", &after);

    // The master replaces the worker.
    super::wait_for("a replacement worker", || {
        let now = cluster.worker_pids();
        (!now.contains(&victim) && now.len() == workers.len()).then_some(())
    });

    // The killed worker's clients come back with their reconnect keys and get exactly what they
    // had not acked: Percero moves it from the old queue on their ReconnectRequest.
    let mut reconnected = Vec::new();
    for mut old in killed {
        old.client.wait("disconnect", |_| true);
        let (mut client, _) = library.connect(&cluster);
        client.emit("message", json!({"reconnect": {"reconnectId": old.key}}));
        let new = keys::session(&client.wait("gatewayConnectAck", |_| true));
        assert_eq!(new["existingClientId"], old.queue.as_str());
        for message_id in &old.unacked {
            let push = client.push_for(message_id);
            assert_eq!(push["clientId"], old.queue.as_str());
            ack(&mut client, message_id);
        }
        reconnected.push((old, client));
    }
    // The surviving clients ack what they hold (pushed, or re-sent until acked).
    let mut survived = survived;
    for c in &mut survived {
        for message_id in c.unacked.clone() {
            c.client.push_for(&message_id);
            ack(&mut c.client, &message_id);
        }
    }
    // The old queues hold only the EOL Percero leaves there (removeClient).
    let empty: HashMap<String, (u64, u64)> = reconnected
        .iter()
        .map(|(old, _)| (old.queue.clone(), (1, 0)))
        .chain(survived.iter().map(|c| (c.queue.clone(), (0, 0))))
        .collect();
    wait_counts(&vhost, "every push acked", &empty);

    // Nothing acked came back (a redelivered push would be pushed and left unacked above).
    for (old, client) in &mut reconnected {
        for event in client.drain_events() {
            let id = event["data"]["correspondingMessageId"]
                .as_str()
                .unwrap_or("");
            assert!(
                !(event["event"] == "push" && old.acked.iter().any(|a| a == id)),
                "an acked push was redelivered: {event}"
            );
        }
    }
    // No ack went wrong: a double or unknown ack would close a consumer channel.
    for needle in [
        "cannot settle a delivery",
        "reopening a closed consumer channel",
        "client queue gone",
    ] {
        assert_eq!(cluster.count_log(&[needle]), 0, "{needle}");
    }
}

// ----- test 2: RabbitMQ restarted under load -----

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// Writes a private RabbitMQ node's files into `dir`: no plugins, an empty env file, and a
/// config listening on 127.0.0.1:`port` that lets guest in.
pub fn write_rabbitmq_files(dir: &Path, port: u16) {
    std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("plugins file");
    std::fs::write(dir.join("rabbitmq-env.conf"), "").expect("env file");
    std::fs::write(
        dir.join("rabbitmq.conf"),
        format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"),
    )
    .expect("config file");
}

/// The command that runs a private RabbitMQ node out of `dir` (see [`write_rabbitmq_files`]),
/// in a process group of its own; the caller sets its output and spawns it. Straight to the
/// server script: /usr/sbin's wrapper would `su rabbitmq` and read /etc/rabbitmq. HOME holds the
/// node's own Erlang cookie.
pub fn rabbitmq_server(dir: &Path, node: &str, port: u16, dist_port: u16) -> Command {
    let path = |name: &str| dir.join(name);
    let mut command = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
    command
        .env("HOME", dir)
        .env("RABBITMQ_NODENAME", node)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", dist_port.to_string())
        .env("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf"))
        .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
        .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
        .env("RABBITMQ_LOG_BASE", path("log"))
        .env("RABBITMQ_PID_FILE", path("rabbitmq.pid"))
        .env_remove("ERL_FLAGS")
        .process_group(0);
    command
}

/// A RabbitMQ node of this test's own, in a temp dir, on free ports; killed when dropped.
pub struct PrivateBroker {
    dir: tempfile::TempDir,
    node: String,
    pub port: u16,
    dist_port: u16,
    server: Option<Child>,
}

impl PrivateBroker {
    pub fn new() -> PrivateBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut dist_port = free_port();
        while dist_port == port {
            dist_port = free_port();
        }
        write_rabbitmq_files(dir.path(), port);
        PrivateBroker {
            node: format!("gwtest-{}@localhost", std::process::id()),
            dir,
            port,
            dist_port,
            server: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the node (in a process group of its own) without waiting for it.
    pub fn start(&mut self) {
        let out = std::fs::File::create(self.path("server.out")).expect("server.out");
        let err = out.try_clone().expect("server.out");
        let server = rabbitmq_server(self.dir.path(), &self.node, self.port, self.dist_port)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start rabbitmq-server");
        self.server = Some(server);
    }

    /// Waits until the node takes AMQP connections; panics (with its output) after `within`.
    pub fn wait_up(&mut self, within: Duration) {
        let start = Instant::now();
        let runtime = agent::runtime();
        loop {
            let up = TcpListener::bind(("127.0.0.1", self.port)).is_err()
                && runtime.block_on(async {
                    match agent::try_amqp(self.port).await {
                        Ok(conn) => {
                            let _ = conn.close(200, "up").await;
                            true
                        }
                        Err(_) => false,
                    }
                });
            if up {
                return;
            }
            let exited = self
                .server
                .as_mut()
                .is_none_or(|s| s.try_wait().ok().flatten().is_some());
            if exited || start.elapsed() > within {
                let out = std::fs::read_to_string(self.path("server.out")).unwrap_or_default();
                let tail: Vec<&str> = out.lines().rev().take(30).collect();
                panic!(
                    "the private RabbitMQ node {} did not come up within {within:?} (exited: {exited}); its output ends with:\n{}",
                    self.node,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the node as an operator would (SIGTERM: RabbitMQ shuts down in order; what
    /// `rabbitmqctl stop` does, without starting an Erlang CLI node) and waits for it to exit;
    /// SIGKILL after a deadline.
    pub fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let beam = std::fs::read_to_string(self.path("rabbitmq.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        let group = server.id() as i32;
        match beam {
            Some(beam) => super::signal_pid(beam, Signal::SIGTERM),
            None => {
                let _ =
                    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), Signal::SIGTERM);
            }
        }
        let start = Instant::now();
        loop {
            let beam_gone = beam.is_none_or(|b| !super::alive(b));
            if beam_gone && server.try_wait().ok().flatten().is_some() {
                break;
            }
            if start.elapsed() > DEADLINE {
                let _ =
                    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), Signal::SIGKILL);
                let _ = server.wait();
                panic!("the private RabbitMQ node did not stop within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.path("rabbitmq.pid"));
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let group = nix::unistd::Pid::from_raw(server.id() as i32);
            let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
            let _ = server.wait();
        }
    }
}

/// Clients doing round trips without end (a new client whenever theirs is lost), each outcome
/// recorded with its time.
struct RoundTrips {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<(Instant, bool)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl RoundTrips {
    fn start(library: Library, addr: SocketAddr, clients: usize) -> RoundTrips {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|t| {
                let (stop, outcomes) = (stop.clone(), outcomes.clone());
                std::thread::spawn(move || {
                    let record = |ok| outcomes.lock().unwrap().push((Instant::now(), ok));
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let Some(mut client) = library.try_connect(addr, Duration::from_secs(5))
                        else {
                            record(false);
                            continue;
                        };
                        let failed =
                            |e: &Value| e["event"] == "disconnect" || e["event"] == "gatewayError";
                        client.emit("message", json!({"connect": true}));
                        let within = || Instant::now() + Duration::from_secs(5);
                        let connected = client.next_matching(within(), |e| {
                            e["event"] == "gatewayConnectAck" || failed(e)
                        });
                        if connected.is_none_or(|e| e["event"] != "gatewayConnectAck") {
                            record(false);
                            continue;
                        }
                        while !stop.load(Ordering::Relaxed) {
                            n += 1;
                            let message_id = format!("load{t}-{n}");
                            request(&mut client, &message_id);
                            let answer = client.next_matching(within(), |e| {
                                (e["event"] == "push"
                                    && e["data"]["correspondingMessageId"] == message_id.as_str())
                                    || failed(e)
                            });
                            if answer.is_some_and(|e| e["event"] == "push") {
                                ack(&mut client, &message_id);
                                record(true);
                                client.drain_events(); // the `ack` of the request
                            } else {
                                record(false);
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        RoundTrips {
            stop,
            outcomes,
            threads,
        }
    }

    /// Successful round trips after `since`, and the time of the first.
    fn ok_since(&self, since: Instant) -> (usize, Option<Instant>) {
        let outcomes = self.outcomes.lock().unwrap();
        let ok: Vec<Instant> = outcomes
            .iter()
            .filter(|(at, ok)| *ok && *at > since)
            .map(|(at, _)| *at)
            .collect();
        (ok.len(), ok.first().copied())
    }

    fn failures(&self) -> usize {
        self.outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, ok)| !ok)
            .count()
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("a round-trip thread");
        }
    }
}

/// RabbitMQ restarted under load: the cluster recovers by itself (see the module doc).
pub fn rabbitmq_restarted_under_load(library: Library) {
    let test_start = Instant::now();
    let mut broker = PrivateBroker::new();
    broker.start();
    broker.wait_up(Duration::from_secs(40));
    let boot = test_start.elapsed();
    start_agent_on(broker.port);
    // The shipped heartbeat and restart backoff (the harness's fast ones would hide how long a
    // slot can wait for its next worker after many failed starts).
    let mut cluster = Cluster::start(&format!(
        "{}gateway.rabbitmq.host=127.0.0.1\ngateway.rabbitmq.port={}\n\
         cluster.heartbeatInterval=1000\ncluster.workerTimeout=5000\n\
         cluster.workerRestartDelay=50\ncluster.maxRestartBackoff=10\n",
        gateway_config(),
        broker.port
    ));
    let master = cluster.pid();
    let addr = cluster.addr();
    let workers_before = cluster.worker_pids();

    let load = RoundTrips::start(library, addr, 2);
    // And one client left to its library's own reconnection, as applications leave it.
    let mut resuming = library.connect_reconnecting(&cluster);
    let (first_key, session) = resuming.gateway_connect();
    let old = session.client_id;
    let loaded = Instant::now();
    super::wait_for("round trips before the restart", || {
        (load.ok_since(loaded).0 >= 10).then_some(())
    });

    // Restart the broker: its queues (not durable) are gone with it.
    let stopping = Instant::now();
    broker.stop();
    let stopped = stopping.elapsed();
    // A worker that lost RabbitMQ closes its websockets as a dying server does, without a
    // socket.io disconnect (after which a client would not reconnect by itself).
    let reason = resuming.wait("disconnect", |_| true);
    assert!(
        reason != "io server disconnect" && reason != "booted",
        "the gateway disconnected the client ({reason}): it will not reconnect by itself"
    );
    // Every worker that lost RabbitMQ exits (and is replaced by workers that cannot connect
    // until the broker is back).
    super::wait_for("the workers that lost RabbitMQ gone", || {
        workers_before
            .iter()
            .all(|&pid| !super::alive(pid))
            .then_some(())
    });
    // The outage: until each slot has also had a replacement worker fail to start (RabbitMQ
    // still down), and for longer than a worker's start timeout (10 s; a worker that keeps
    // trying RabbitMQ fails to start no sooner), so that restart backoff has its say.
    super::wait_for(
        "a failed start in every slot while RabbitMQ is down",
        || {
            let failed = (0..workers_before.len()).all(|slot| {
                let slot = format!("slot={slot} ");
                cluster.count_log(&["worker exited unexpectedly", &slot]) >= 2
            });
            (failed && stopping.elapsed() >= Duration::from_secs(10)).then_some(())
        },
    );
    let restarting = Instant::now();
    broker.start();
    broker.wait_up(Duration::from_secs(40));
    let up = Instant::now();
    let reboot = up - restarting;
    start_agent_on(broker.port);

    // The cluster recovers by itself: every worker ready again, the clients' round trips work.
    let ready = cluster.wait_ready();
    let workers_after = super::workers(&ready);
    let all_ready = up.elapsed();
    let first_ok = super::wait_for("a load round trip after the restart", || {
        load.ok_since(up).1
    });
    super::wait_for("both load clients back", || {
        (load.ok_since(first_ok).0 >= 10).then_some(())
    });
    let failures = load.failures();
    load.finish();
    // The client left to its library is back by itself and resumes its session.
    resuming.wait("connect", |n| n.as_u64() >= Some(2));
    resuming.emit("message", json!({"reconnect": {"reconnectId": first_key}}));
    let key = resuming.wait("gatewayConnectAck", |_| true);
    let resumed = keys::session(&key);
    assert_eq!(resumed["existingClientId"], old.as_str(), "{resumed}");
    request(&mut resuming, "resumed");
    resuming.push_for("resumed");
    ack(&mut resuming, "resumed");

    // Fresh clients connect and round-trip.
    for n in 0..4 {
        let (mut client, _) = library.connect(&cluster);
        client.gateway_connect();
        let message_id = format!("after-{n}");
        request(&mut client, &message_id);
        client.push_for(&message_id);
        ack(&mut client, &message_id);
    }

    let restarts: u64 = workers_after
        .iter()
        .map(|w| w["restarts"].as_u64().unwrap_or(0))
        .sum();
    let outage = (up - stopping).as_secs();
    eprintln!(
        "TIMING first boot {boot:?}; stop {stopped:?}; reboot {reboot:?}; broker down for {:?}; \
         broker up -> all workers ready {all_ready:?}; broker up -> first round trip {:?}; \
         stop -> first round trip {:?}; {failures} failed round trips; worker restarts {restarts}; \
         test {:?}",
        up - stopping,
        first_ok.saturating_duration_since(up),
        first_ok - stopping,
        test_start.elapsed()
    );

    // A starting worker keeps trying RabbitMQ (every second at most) for up to 10 s: once the
    // broker is back the slots are served again at once, not after their restart backoff
    // (which a restart storm during the outage would have driven up to many seconds).
    assert!(
        all_ready < Duration::from_secs(5),
        "the workers took {all_ready:?} after RabbitMQ was back to be ready"
    );
    assert!(
        cluster.master.try_wait().is_ok_and(|exit| exit.is_none()),
        "the master exited"
    );
    assert_eq!(cluster.pid(), master);
    assert_eq!(workers_after.len(), workers_before.len());
    for w in &workers_after {
        assert!(!workers_before.contains(&(w["pid"].as_i64().unwrap_or(0) as i32)));
    }
    // No restart storm: per slot, the worker that lost RabbitMQ, one per 10 s of outage (a
    // worker gives up after trying for 10 s), and slack.
    let bound = workers_after.len() as u64 * (3 + outage / 10);
    assert!(
        restarts <= bound,
        "{restarts} worker restarts for a {outage} s outage (at most {bound})"
    );
    broker.stop();
}
