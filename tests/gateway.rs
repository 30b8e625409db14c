//! The gateway end to end: the real binary, RabbitMQ, an echo agent (Rust, lapin) answering agent
//! queues like the ActiveStack backend, and real socket.io clients (npm `socket.io-client`, driven
//! through `tests/e2e/client.js`; both in `tests/common/agent.rs`). Needs RabbitMQ on
//! localhost:5672 and `npm ci --prefix tests/e2e` (scripts/setup.sh does both).

mod common;

use std::process::Command;
use std::time::Instant;

use activestack_gateway::gateway::session::Session;
use common::agent::{JsClient, SECRET, gateway_config, start_agent, wait_ready_messages};
use common::percero::{self, Percero};
use common::private_redis::{Persistence, PrivateRedis};
use common::{Cluster, DEADLINE, keys};
use serde_json::{Value, json};

fn start() -> Cluster {
    start_agent();
    Cluster::start(&gateway_config())
}

// ----- tests -----

#[test]
fn connect_gets_a_signed_session_and_counts_the_client() {
    let cluster = start();
    let mut client = JsClient::connect(&cluster);
    let (_, session) = client.gateway_connect();
    assert_eq!(session.client_id.len(), 32);
    assert!(!session.logged_in());
    common::wait_for("the client in the status", || {
        let status = cluster.status()?;
        let total: u64 = common::workers(&status)
            .iter()
            .map(|w| w["clients"].as_u64().unwrap_or(0))
            .sum();
        (total >= 1).then_some(())
    });
    // connect again: the same session again.
    let (_, again) = client.gateway_connect();
    assert_eq!(again.client_id, session.client_id);
}

#[test]
fn request_push_resend_and_client_ack_reach_rabbitmq() {
    let cluster = start();
    let mut client = JsClient::connect(&cluster);
    let (_, session) = client.gateway_connect();
    // Logged in: its queue outlives it (an anonymous client's is deleted with it).
    log_in(&mut client);
    client.emit(
        "testCall",
        json!({"cn": "TestCall", "messageId": "m1", "sendAck": true, "clientId": "spoofed"}),
    );
    assert_eq!(client.wait("ack", |_| true), "m1");
    let push = client.push_for("m1");
    assert_eq!(push["cn"], "TestCallResponse");
    // The gateway stamped the session's clientId over the client's.
    assert_eq!(push["request"]["clientId"], session.client_id.as_str());
    // Not acked: re-sent.
    client.push_for("m1");
    client.emit("message", json!({"ack": {"correspondingMessageId": "m1"}}));
    // Once acked nothing goes back to the queue when the client leaves.
    client.close();
    // The DisconnectRequest's answer is the only message left in the client queue.
    wait_ready_messages(&session.client_id, 1);
}

#[test]
fn a_request_many_times_the_websocket_read_buffer_goes_through() {
    let cluster = start();
    let mut client = JsClient::connect(&cluster);
    client.gateway_connect();
    let blob = "x".repeat(50_000);
    client.emit(
        "testCall",
        json!({"cn": "TestCall", "messageId": "big", "blob": blob}),
    );
    let push = client.push_for("big");
    assert_eq!(push["request"]["blob"].as_str(), Some(blob.as_str()));
}

#[test]
fn a_client_that_leaves_is_freed() {
    let cluster = start();
    let mut client = JsClient::connect(&cluster);
    let (_, session) = client.gateway_connect();
    // Unacked: its re-send timer holds the client too, until the client leaves.
    client.emit("testCall", json!({"cn": "TestCall", "messageId": "m1"}));
    client.push_for("m1");
    client.close();
    cluster.wait_log(&["connection ended", &session.client_id]);
}

/// As in production: the unacked push goes back to the old client's queue when its socket
/// goes, and the Percero backend's renameClient moves it to the new queue when the ReconnectRequest
/// reaches it (the gateway itself only consumes its own queue). Against the Percero double, in
/// a vhost of its own, with client queues declared as Percero expects (no arguments).
#[test]
fn unacked_push_survives_a_reconnect() {
    let percero = Percero::start();
    let cluster = Cluster::start_unset(
        &["gateway.rabbitmq.clientQueueExpires"],
        &percero.gateway_config(),
    );
    let mut first = JsClient::connect(&cluster);
    first.emit("message", json!({"connect": true}));
    first.wait("gatewayConnectAck", |_| true);
    let (key, old) = percero::log_in(&percero, &mut first, "alice");
    let old_id = keys::client_id(&old);
    first.emit(
        "testCall",
        json!({"cn": "com.percero.agents.auth.vo.AuthRequest", "messageId": "keep"}),
    );
    first.push_for("keep");
    first.close();
    drop(first);
    // Given back to the old queue.
    percero.wait_messages(&old_id, 1);

    let mut second = JsClient::connect(&cluster);
    second.emit("message", json!({"reconnect": {"reconnectId": key}}));
    let new = keys::session(&second.wait("gatewayConnectAck", |_| true));
    assert_ne!(keys::client_id(&new), old_id);
    assert_eq!(new["existingClientId"], old_id.as_str());
    let push = second.push_for("keep");
    assert_eq!(push["clientId"], old_id.as_str());
    second.emit(
        "message",
        json!({"ack": {"correspondingMessageId": "keep"}}),
    );
    percero.wait_messages(&keys::client_id(&new), 0);
}

#[test]
fn tampered_or_missing_reconnect_keys_are_refused_with_a_fresh_session() {
    let cluster = start();
    let mut client = JsClient::connect(&cluster);
    let (key, _) = client.gateway_connect();
    let (data, sig) = key.split_once(';').unwrap();
    let forged = format!("{}A;{sig}", &data[..data.len() - 1]);

    let mut other = JsClient::connect(&cluster);
    other.emit("message", json!({"reconnect": {"reconnectId": forged}}));
    let error = other.wait("gatewayError", |_| true);
    assert_eq!(error["error"], "badReconnectId");
    let fresh = other.wait("gatewayConnectAck", |_| true);
    let fresh = Session::verify(fresh.as_str().unwrap(), SECRET.as_bytes()).unwrap();
    assert_eq!(fresh.existing_client_id, None);
}

#[test]
fn login_flow_unlocks_login_only_events() {
    let cluster = start();
    let mut client = JsClient::connect(&cluster);
    client.gateway_connect();
    client.emit("findById", json!({"messageId": "f0"}));
    let error = client.wait("gatewayError", |_| true);
    assert_eq!(error["error"], "notLoggedIn");

    client.emit(
        "authenticate",
        json!({"messageId": "a1", "deviceId": "dev-1"}),
    );
    let push = client.push_for("a1");
    assert_eq!(push["result"]["token"], "token-1");
    client.emit("message", json!({"ack": {"correspondingMessageId": "a1"}}));
    let key = client.wait("gatewayConnectAck", |_| true);
    let session = Session::verify(key.as_str().unwrap(), SECRET.as_bytes()).unwrap();
    assert_eq!(session.user_id.as_deref(), Some("user-1"));
    assert_eq!(session.token.as_deref(), Some("token-1"));
    assert_eq!(session.device_id.as_deref(), Some("dev-1"));
    // The gateway told the `connect` agent.
    let connect = client.wait("push", |d| d["queue"] == "connect");
    assert_eq!(
        connect["request"]["cn"],
        "com.percero.agents.sync.vo.ConnectRequest"
    );
    assert_eq!(connect["request"]["userId"], "user-1");

    client.emit("findById", json!({"cn": "FindById", "messageId": "f1"}));
    client.push_for("f1");

    // A reconnect with that key is logged in and tells the `reconnect` agent.
    let mut again = JsClient::connect(&cluster);
    again.emit("message", json!({"reconnect": {"reconnectId": key}}));
    let reconnect = again.wait("push", |d| d["queue"] == "reconnect");
    assert_eq!(
        reconnect["request"]["existingClientId"],
        session.client_id.as_str()
    );
}

#[test]
fn bad_requests_are_warned_and_harm_no_one() {
    let cluster = start();
    let mut bystander = JsClient::connect(&cluster);
    bystander.gateway_connect();
    let mut client = JsClient::connect(&cluster);

    client.emit("testCall", json!({"messageId": "early"}));
    assert_eq!(
        client.wait("gatewayError", |_| true)["error"],
        "notConnected"
    );
    client.emit("message", json!("garbage"));
    assert_eq!(client.wait("gatewayError", |_| true)["error"], "malformed");
    client.gateway_connect();
    client.emit("testCall", json!(42));
    assert_eq!(client.wait("gatewayError", |_| true)["error"], "malformed");
    client.send(json!({"op": "emit_raw", "event": "testCall"}));
    assert_eq!(client.wait("gatewayError", |_| true)["error"], "malformed");
    client.emit("noSuchEvent", json!({}));
    assert_eq!(
        client.wait("gatewayError", |_| true)["error"],
        "unknownEvent"
    );
    client.emit("getServiceUsers", json!({"messageId": "u1"}));
    let error = client.wait("gatewayError", |_| true);
    assert_eq!(error["error"], "unroutable");
    assert_eq!(error["messageId"], "u1");

    bystander.emit("testCall", json!({"cn": "TestCall", "messageId": "b1"}));
    bystander.push_for("b1");
}

#[test]
fn eol_disposes_the_client() {
    let cluster = start();
    let mut client = JsClient::connect(&cluster);
    let (_, session) = client.gateway_connect();
    // Logged in: the backend knows the client, and its queue outlives it.
    log_in(&mut client);
    client.emit("testCall", json!({"eol": true}));
    client.wait("disconnect", |_| true);
    // Disposal told the `disconnect` agent, whose answer lands in the client queue.
    wait_ready_messages(&session.client_id, 1);
}

/// Logs `client` in through the echo agent; returns the logged-in session and its key.
fn log_in(client: &mut JsClient) -> (String, Session) {
    log_in_as(client, "user-1")
}

fn log_in_as(client: &mut JsClient, user: &str) -> (String, Session) {
    client.emit(
        "authenticate",
        json!({"messageId": "login", "deviceId": "dev-1", "user": user}),
    );
    client.push_for("login");
    client.emit(
        "message",
        json!({"ack": {"correspondingMessageId": "login"}}),
    );
    let key = client.wait("gatewayConnectAck", |k| {
        Session::verify(k.as_str().unwrap_or(""), SECRET.as_bytes()).is_ok_and(|s| s.logged_in())
    });
    let key = key.as_str().unwrap().to_string();
    let session = Session::verify(&key, SECRET.as_bytes()).unwrap();
    (key, session)
}

fn session_of(key: &Value) -> Session {
    Session::verify(key.as_str().expect("a key"), SECRET.as_bytes()).expect("a valid key")
}

#[test]
fn an_expired_reconnect_key_is_refused() {
    let cluster = start();
    let week_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 8 * 24 * 3600 * 1000;
    let old = Session {
        client_id: "0123456789abcdef0123456789abcdef".into(),
        user_id: Some("user-1".into()),
        token: Some("token-1".into()),
        ..Session::default()
    };
    let key = old.sign_at(SECRET.as_bytes(), week_ago);
    let mut client = JsClient::connect(&cluster);
    client.emit("message", json!({"reconnect": {"reconnectId": key}}));
    let error = client.wait("gatewayError", |_| true);
    assert_eq!(error["error"], "badReconnectId");
    assert!(error["message"].as_str().unwrap().contains("expired"));
    let fresh = session_of(&client.wait("gatewayConnectAck", |_| true));
    assert!(!fresh.logged_in());
    assert_eq!(fresh.existing_client_id, None);
}

/// `logout` as the original: the server ends the session (a socket.io disconnect, after which
/// the client does not reconnect by itself). What reaches the backend, in which order, is in
/// tests/dropin.rs.
#[test]
fn logout_closes_the_socket_and_a_connect_response_without_client_id_logs_out() {
    let cluster = start();
    let mut client = JsClient::connect(&cluster);
    client.gateway_connect();
    log_in(&mut client);
    client.emit("logout", json!({"cn": "Logout", "messageId": "out"}));
    assert_eq!(client.wait("disconnect", |_| true), "io server disconnect");

    let mut client = JsClient::connect(&cluster);
    client.gateway_connect();
    log_in(&mut client);
    client.emit(
        "testCall",
        json!({"cn": "com.percero.agents.sync.vo.Connect", "dropClientId": true}),
    );
    let out = session_of(&client.wait("gatewayConnectAck", |k| !session_of(k).logged_in()));
    assert_eq!(out.user_id, None);
    client.emit("findById", json!({"messageId": "f"}));
    assert_eq!(
        client.wait("gatewayError", |_| true)["error"],
        "notLoggedIn"
    );
}

#[test]
fn hibernate_reaches_its_agent() {
    let cluster = start();
    let mut client = JsClient::connect(&cluster);
    client.gateway_connect();
    client.emit("message", json!({"hibernate": true}));
    let push = client.wait("push", |d| d["queue"] == "hibernate");
    assert_eq!(
        push["request"]["cn"],
        "com.percero.agents.sync.vo.HibernateRequest"
    );
}

/// socket.io protocol v4 (Engine.IO 3, socket.io 2.x clients) over websocket; no polling.
#[test]
fn engine_io_v3_websocket_handshake_and_no_polling() {
    let cluster = start();
    let addr = cluster.addr();
    let (mut ws, _) =
        tungstenite::connect(format!("ws://{addr}/socket.io/?EIO=3&transport=websocket"))
            .expect("websocket handshake");
    let open = ws.read().expect("open packet").into_text().unwrap();
    assert!(open.starts_with("0{"), "{open}");
    assert!(open.contains("pingInterval"), "{open}");
    // socket.io v4 protocol: the server connects the default namespace by itself.
    let connect = ws.read().expect("connect packet").into_text().unwrap();
    assert!(connect.starts_with("40"), "{connect}");
    ws.send(tungstenite::Message::text(
        r#"42["message",{"connect":true}]"#,
    ))
    .unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "no gatewayConnectAck");
        let frame = ws.read().expect("frame").into_text().unwrap();
        if frame.starts_with(r#"42["gatewayConnectAck""#) {
            break;
        }
    }
    let polling = common::http_get(addr, "/socket.io/?EIO=4&transport=polling");
    assert!(
        !polling.as_deref().unwrap_or("").contains("\"sid\""),
        "polling must be refused: {polling:?}"
    );
}

/// Closes the RabbitMQ connection of the worker with this pid (by its connection name).
fn close_rabbitmq_connection_of(worker_pid: i32) -> bool {
    let out = Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl");
    let listing = String::from_utf8_lossy(&out.stdout);
    let needle = format!("pid {worker_pid}\"");
    let Some(line) = listing.lines().find(|l| l.contains(&needle)) else {
        return false;
    };
    let conn = line.split('\t').next().unwrap_or("").to_string();
    Command::new("rabbitmqctl")
        .args(["close_connection", &conn, "test: connection lost"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_worker_that_loses_rabbitmq_is_replaced() {
    let cluster = start();
    let before = cluster.worker_pids();
    let victim = before[0];
    common::wait_for("the worker's RabbitMQ connection closed", || {
        close_rabbitmq_connection_of(victim).then_some(())
    });
    cluster.wait_log(&["RabbitMQ connection lost"]);
    common::wait_for("a replacement worker", || {
        let now = cluster.worker_pids();
        (!now.contains(&victim) && now.len() == before.len()).then_some(())
    });
    // Every worker serves again.
    for _ in 0..4 {
        let mut client = JsClient::connect(&cluster);
        client.gateway_connect();
        client.emit("testCall", json!({"cn": "TestCall", "messageId": "again"}));
        client.push_for("again");
    }
}

/// Connected clients per gateway worker pid, as the workers last reported them.
fn clients_per_worker(cluster: &Cluster) -> Option<Vec<(u64, u64)>> {
    let status = cluster.status()?;
    common::workers(&status)
        .iter()
        .map(|w| Some((w["pid"].as_u64()?, w["clients"].as_u64()?)))
        .collect()
}

/// Connects clients one by one (each through `prepare` after `message {connect}`), noting the
/// worker each lands on, until both workers hold at least one. Returns (worker pid, client).
fn clients_on_every_worker(
    cluster: &Cluster,
    prepare: impl Fn(&mut JsClient),
) -> Vec<(u64, JsClient)> {
    let mut clients = Vec::new();
    let mut workers = std::collections::BTreeSet::new();
    let mut before = common::wait_for("client counts", || clients_per_worker(cluster));
    while workers.len() < 2 {
        assert!(clients.len() < 12, "12 connections all went to one worker");
        let mut client = JsClient::connect(cluster);
        client.gateway_connect();
        prepare(&mut client);
        let (pid, after) = common::wait_for("the new client counted", || {
            let now = clients_per_worker(cluster)?;
            let grown = now
                .iter()
                .find(|(pid, n)| before.iter().any(|(p, b)| p == pid && n > b))?;
            Some((grown.0, now.clone()))
        });
        workers.insert(pid);
        clients.push((pid, client));
        before = after;
    }
    clients
}

#[test]
fn a_draining_worker_disconnects_only_its_own_clients() {
    start_agent();
    let cluster = Cluster::start(&gateway_config());
    let clients = clients_on_every_worker(&cluster, |_| {});
    // SIGTTOU: one worker fewer; the master drains the last slot's worker.
    let status = cluster.wait_ready();
    let leaving = common::workers(&status)[1]["pid"].as_u64().expect("a pid");
    cluster.signal(nix::sys::signal::Signal::SIGTTOU);
    common::wait_for("the drained worker to exit", || {
        (!common::alive(leaving as i32)).then_some(())
    });
    for (pid, mut client) in clients {
        if pid == leaving {
            client.wait("disconnect", |_| true);
        } else {
            client.emit(
                "testCall",
                json!({"cn": "TestCall", "messageId": "still-here"}),
            );
            client.push_for("still-here");
            assert!(
                !client
                    .drain_events()
                    .iter()
                    .any(|e| e["event"] == "disconnect"),
                "a client of the staying worker was disconnected"
            );
        }
    }
}

#[test]
fn console_push_reaches_a_users_sockets_on_every_worker() {
    start_agent();
    let cluster = Cluster::start(&gateway_config());
    cluster.wait_log(&["listening for control commands on Redis"]);
    let user = format!("user-{}", fastrand::u64(..));
    let mut mine: Vec<JsClient> = clients_on_every_worker(&cluster, |client| {
        log_in_as(client, &user);
    })
    .into_iter()
    .map(|(_, client)| client)
    .collect();
    let mut stranger = JsClient::connect(&cluster);
    stranger.gateway_connect();
    log_in_as(&mut stranger, "someone-else");

    let console = |line: &str| -> Value {
        let out = Command::new(common::BIN)
            .arg("console")
            .arg(&cluster.config)
            .arg(line)
            .output()
            .expect("run the console");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let answer = console(&format!(r#"push {user} {{"cn":"Notice","text":"to you"}}"#));
    assert_eq!(answer["ok"], true, "{answer}");
    for client in &mut mine {
        client.wait("push", |d| d["text"] == "to you");
    }
    let answer = console(r#"push * {"cn":"Notice","text":"to all"}"#);
    assert_eq!(answer["ok"], true, "{answer}");
    for client in mine.iter_mut().chain([&mut stranger]) {
        client.wait("push", |d| d["text"] == "to all");
    }
    // The stranger never got the user's push.
    assert!(
        !stranger
            .drain_events()
            .iter()
            .any(|e| e["event"] == "push" && e["data"]["text"] == "to you")
    );
    let answer = console("push someone {not json");
    assert_eq!(answer["ok"], false, "{answer}");
}

#[test]
fn broadcasts_work_again_after_redis_restarts() {
    let mut redis = PrivateRedis::start(Persistence::None);
    let cluster = Cluster::start(&format!(
        "{}gateway.redis.port={}\n",
        gateway_config(),
        redis.port
    ));
    cluster.wait_log(&["listening for control commands on Redis"]);
    let mut client = JsClient::connect(&cluster);
    client.gateway_connect();
    let push = |text: &str| {
        Command::new(common::BIN)
            .arg("console")
            .arg(&cluster.config)
            .arg(format!(r#"push * {{"text":"{text}"}}"#))
            .output()
            .is_ok_and(|out| out.status.success())
    };
    assert!(push("before"));
    client.wait("push", |d| d["text"] == "before");

    redis.restart();
    // The master's control channel and the workers' adapter both find Redis again by themselves.
    common::wait_for("two control-channel subscriptions", || {
        (cluster.count_log(&["listening for control commands on Redis"]) >= 2).then_some(())
    });
    let mut n = 0;
    common::wait_for("a push after the restart", || {
        n += 1;
        let text = format!("after-{n}");
        (push(&text) && client.try_wait("push", |d| d["text"] == text.as_str())).then_some(())
    });
}
