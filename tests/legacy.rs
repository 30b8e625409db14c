//! socket.io 0.9 (protocol revision 1, what the ActiveStack JS and iOS SDKs speak) beside
//! socket.io v4/v5 on the same port, end to end: the real binary as a 2-worker cluster, RabbitMQ,
//! the real npm `socket.io-client@0.9.17` (tests/e2e/legacy_client.js, installed by
//! scripts/setup.sh) and socket.io-client 4 (tests/e2e/client.js), and a bare 0.9 client over a
//! websocket where the library cannot do what a test needs (tests/common/legacy.rs). The
//! backend is the Percero double (tests/common/percero.rs) where what reaches Percero matters,
//! the echo agent (tests/common/agent.rs) elsewhere.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use activestack_gateway::gateway::handshake::LEGACY_SID_MAX_AGE;
use activestack_gateway::gateway::wire::legacy::{self as wire, SidError};
use common::agent::{JsClient, SECRET, gateway_config, start_agent};
use common::percero::{AUTH_PROVIDER, DEVICE, Percero, classes};
use common::recovery::{tcp_sockets, wait_counts, worker_holding_port};
use common::{Cluster, DEADLINE, keys, legacy};
use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The cluster's socket.io heartbeat interval and timeout (`gateway_config`), in seconds.
const INTERVAL_S: u64 = 1;
const TIMEOUT_S: u64 = 3;

fn start() -> Cluster {
    start_agent();
    Cluster::start(&gateway_config())
}

/// A cluster in front of a new Percero double. Fields drop in order: the cluster goes before the
/// double's vhost.
struct Dropin {
    cluster: Cluster,
    percero: Percero,
}

fn start_dropin() -> Dropin {
    let percero = Percero::start();
    let cluster = Cluster::start_unset(
        &["gateway.rabbitmq.clientQueueExpires"],
        &percero.gateway_config(),
    );
    Dropin { cluster, percero }
}

fn runtime() -> tokio::runtime::Runtime {
    common::agent::runtime()
}

// ----- the SDK's flow -----

/// What the ActiveStack JS SDK keeps across its connections (ActiveSDKJavaScript
/// src/ActiveStackClient.js).
#[derive(Clone, Default)]
struct Kept {
    /// The fields of the first gatewayConnectAck's key (`savedAt` left out), copied into every
    /// request; the SDK never updates them from later keys.
    session: Value,
    /// `setCommonParams` after a login: copied into every request that is not an auth one.
    common: Map<String, Value>,
    /// The last gatewayConnectAck after the first one: what the SDK reconnects with.
    reconnect_id: Option<String>,
}

/// The SDK on one socket.io 0.9 connection.
struct Sdk {
    client: JsClient,
    kept: Kept,
}

impl Sdk {
    /// `connect()`: io.connect, then on `connect` `message {connect: {ensureMessageDelivery:
    /// true}}`; `reconnect()` (with what an earlier connection kept): `message {reconnect:
    /// {lastSessionId, reconnectId, ensureMessageDelivery: true}}`. Returns the key it got.
    fn connect(cluster: &Cluster, previous: Option<Kept>) -> (Sdk, String) {
        let mut client = legacy::connect(cluster);
        let request = match &previous {
            None => json!({"connect": {"ensureMessageDelivery": true}}),
            Some(kept) => json!({"reconnect": {
                "lastSessionId": kept.session["clientId"],
                "reconnectId": kept.reconnect_id,
                "ensureMessageDelivery": true,
            }}),
        };
        client.emit("message", request);
        let key = client.wait("gatewayConnectAck", |_| true);
        let key = key.as_str().expect("a key is text").to_string();
        let kept = match previous {
            // `session.clientId == undefined`: the key's fields become the session.
            None => Kept {
                session: keys::session(&json!(key)),
                ..Kept::default()
            },
            Some(kept) => Kept {
                reconnect_id: Some(key.clone()),
                ..kept
            },
        };
        (Sdk { client, kept }, key)
    }

    /// `sendRequest(type, request)`: a new messageId, the request's fields, the common params
    /// unless the request is an auth one, then the session's fields. Returns the messageId.
    fn send_request(&mut self, event: &str, request: Value) -> String {
        let message_id = format!("{:032x}", fastrand::u128(..));
        let mut payload = Map::new();
        payload.insert("messageId".into(), json!(message_id));
        let auth = request["cn"]
            .as_str()
            .is_some_and(|cn| cn.contains("com.percero.agents.auth.vo"));
        if let Value::Object(fields) = request {
            payload.extend(fields);
        }
        if !auth {
            payload.extend(self.kept.common.clone());
        }
        if let Value::Object(session) = &self.kept.session {
            payload.extend(session.clone());
        }
        self.client.emit(event, Value::Object(payload));
        message_id
    }

    /// The `push` answering `message_id`, acked as the SDK acks every push with a
    /// correspondingMessageId (`sendSpecialMessage('ack', ...)`).
    fn answer(&mut self, message_id: &str) -> Value {
        let push = self.client.push_for(message_id);
        self.ack(message_id);
        push
    }

    fn ack(&mut self, message_id: &str) {
        self.client.emit(
            "message",
            json!({"ack": {"correspondingMessageId": message_id}}),
        );
    }

    /// `login` with credentials: an AuthenticationRequest on `authenticate`; on the answer,
    /// `setCommonParams({token, userId, deviceId, sendAck: true})`; the logged-in key that
    /// follows becomes the reconnect id. Returns the AuthenticationRequest's messageId.
    fn log_in(&mut self, account: &str) -> String {
        let message_id = self.send_request(
            "authenticate",
            json!({"cn": classes::AUTHENTICATION_REQUEST, "credential": format!("{account}:pw"),
                   "regAppKey": "", "deviceId": DEVICE, "authProvider": AUTH_PROVIDER}),
        );
        let answer = self.answer(&message_id);
        assert_eq!(
            answer["cn"], "com.percero.agents.auth.vo.AuthenticationResponse",
            "{answer}"
        );
        let token = &answer["result"];
        assert!(token["token"].is_string(), "no login: {answer}");
        self.kept.common = json!({"token": token["token"], "userId": token["user"]["ID"],
                              "deviceId": token["deviceId"], "sendAck": true})
        .as_object()
        .cloned()
        .unwrap_or_default();
        let key = self.client.wait("gatewayConnectAck", |k| {
            keys::read(k.as_str().unwrap_or("")).is_ok_and(|s| keys::logged_in(&s))
        });
        self.kept.reconnect_id = key.as_str().map(str::to_string);
        message_id
    }

    /// `findById` as the SDK's model sends it (after login: common params with `sendAck`).
    fn find_by_id(&mut self) -> Value {
        let message_id = self.send_request(
            "findById",
            json!({"cn": classes::FIND_BY_ID_REQUEST, "theClassName": "com.example.Thing",
                   "theClassId": "1"}),
        );
        assert_eq!(self.client.wait("ack", |_| true), message_id.as_str());
        self.answer(&message_id)
    }
}

/// A v4 client's round trip through Percero (a testCall with an AuthRequest, answered by a bare
/// AuthResponse).
fn v4_round_trip(client: &mut JsClient, message_id: &str) {
    client.emit(
        "testCall",
        json!({"cn": classes::AUTH_REQUEST, "messageId": message_id}),
    );
    client.push_for(message_id);
    client.emit(
        "message",
        json!({"ack": {"correspondingMessageId": message_id}}),
    );
}

/// The JS SDK's whole flow over socket.io 0.9 in front of Percero, with a socket.io 4 client
/// doing its round trips on the same port at the same time.
#[test]
fn the_sdk_flow_over_socket_io_0_9_beside_a_v4_client() {
    let d = start_dropin();
    let vhost = d.percero.vhost().to_string();
    let mut v4 = JsClient::connect(&d.cluster);
    v4.emit("message", json!({"connect": true}));
    v4.wait("gatewayConnectAck", |_| true);

    // connect -> gatewayConnectAck.
    let (mut sdk, key) = Sdk::connect(&d.cluster, None);
    let first_id = keys::client_id(&sdk.kept.session);
    assert_eq!(
        keys::read(&key).map(|s| keys::client_id(&s)),
        Ok(first_id.clone())
    );
    assert!(!keys::logged_in(&sdk.kept.session));

    // A request -> the agent -> a push, held unacked in RabbitMQ until the client's ack; the v4
    // client's round trip in between.
    let message_id = sdk.send_request("testCall", json!({"cn": classes::AUTH_REQUEST}));
    let push = sdk.client.push_for(&message_id);
    assert_eq!(push["cn"], "com.percero.agents.auth.vo.AuthResponse");
    assert_eq!(push["clientId"], first_id.as_str());
    let held = HashMap::from([(first_id.clone(), (0, 1))]);
    wait_counts(&vhost, "the push held unacked", &held);
    v4_round_trip(&mut v4, "v4-1");
    sdk.ack(&message_id);
    let acked = HashMap::from([(first_id.clone(), (0, 0))]);
    wait_counts(&vhost, "the client's ack reaching RabbitMQ", &acked);

    // Login: authenticate -> AuthenticationResponse -> ConnectRequest.
    let login = sdk.log_in("alice");
    let request = d.percero.wait_request("authenticate", &first_id);
    request.assert_decoded_as(classes::AUTHENTICATION_REQUEST);
    assert_eq!(request.body["messageId"], login.as_str());
    let connect = d.percero.wait_request("connect", &first_id);
    connect.assert_decoded_as(classes::CONNECT_REQUEST);
    assert_eq!(connect.body["userId"], "alice");
    common::wait_for("Percero to register the client", || {
        d.percero.is_logged_in(&first_id).then_some(())
    });
    let found = sdk.find_by_id();
    assert_eq!(found["cn"], "com.percero.agents.sync.vo.FindByIdResponse");
    v4_round_trip(&mut v4, "v4-2");

    // The connection is lost (the node process dies); the SDK reconnects with what it kept.
    let Sdk { client, kept } = sdk;
    drop(client);
    d.percero.wait_request("disconnect", &first_id);
    let (mut again, key) = Sdk::connect(&d.cluster, Some(kept));
    let resumed = keys::session(&json!(key));
    let second_id = keys::client_id(&resumed);
    assert_ne!(second_id, first_id);
    assert_eq!(resumed["existingClientId"], first_id.as_str());
    assert_eq!(resumed["userId"], "alice");
    let reconnect = d.percero.wait_request("reconnect", &second_id);
    reconnect.assert_decoded_as(classes::RECONNECT_REQUEST);
    assert_eq!(reconnect.body["existingClientId"], first_id.as_str());
    assert_eq!(reconnect.body["userId"], "alice");
    // Still logged in; the SDK still writes the first clientId, the gateway stamps the new one.
    again.find_by_id();
    let find = d.percero.wait_for("the findById after the reconnect", |r| {
        r.queue == "findById" && r.is_from(&second_id)
    });
    assert_eq!(find.body["clientId"], second_id.as_str());
    v4_round_trip(&mut v4, "v4-3");
    for client in [&mut again.client, &mut v4] {
        assert!(
            !client
                .drain_events()
                .iter()
                .any(|e| e["event"] == "disconnect"),
            "a client was disconnected"
        );
    }
}

/// SIGHUP replaces every worker: a draining worker closes its websockets without a socket.io
/// disconnect, so a 0.9 client with socket.io's own reconnection handshakes again by itself, and
/// the SDK (which reconnects by its own timer after any disconnect) resumes its logged-in
/// session on a new worker.
#[test]
fn a_reload_moves_0_9_clients_to_the_new_workers() {
    let d = start_dropin();
    let (mut sdk, _) = Sdk::connect(&d.cluster, None);
    sdk.log_in("alice");
    let old_id = keys::client_id(&sdk.kept.session);
    let (mut by_itself, _) = legacy::connect_with(&d.cluster, json!({"reconnection": true}));
    by_itself.emit(
        "message",
        json!({"connect": {"ensureMessageDelivery": true}}),
    );
    by_itself.wait("gatewayConnectAck", |_| true);

    d.cluster.signal(nix::sys::signal::Signal::SIGHUP);
    for client in [&mut sdk.client, &mut by_itself] {
        let reason = client.wait("disconnect", |_| true);
        assert_ne!(
            reason, "booted",
            "a socket.io disconnect: clients would not reconnect"
        );
    }
    by_itself.wait("connect", |n| n.as_u64() >= Some(2));
    by_itself.emit(
        "message",
        json!({"connect": {"ensureMessageDelivery": true}}),
    );
    by_itself.wait("gatewayConnectAck", |_| true);

    let Sdk { client, kept } = sdk;
    drop(client);
    let (mut again, key) = Sdk::connect(&d.cluster, Some(kept));
    let session = keys::session(&json!(key));
    assert_eq!(session["existingClientId"], old_id.as_str());
    assert!(keys::logged_in(&session), "{session}");
    d.percero
        .wait_request("reconnect", &keys::client_id(&session))
        .assert_decoded_as(classes::RECONNECT_REQUEST);
    again.find_by_id();
    d.cluster.wait_ready();
}

/// A 0.9 and a v4 client on the same port, each with many requests in flight at once.
#[test]
fn v4_and_0_9_clients_round_trip_side_by_side() {
    let cluster = start();
    let mut old = legacy::connect(&cluster);
    let mut new = JsClient::connect(&cluster);
    let (_, old_session) = old.gateway_connect();
    let (_, new_session) = new.gateway_connect();
    let requests = |prefix: &str| -> Vec<(String, Value)> {
        (0..20)
            .map(|n| {
                let id = format!("{prefix}-{n}");
                let request = json!({"cn": "TestCall", "messageId": id, "sendAck": true});
                (id, request)
            })
            .collect()
    };
    let (old_requests, new_requests) = (requests("old"), requests("new"));
    for (client, requests) in [(&mut old, &old_requests), (&mut new, &new_requests)] {
        let events: Vec<(&str, Value)> = requests
            .iter()
            .map(|(_, r)| ("testCall", r.clone()))
            .collect();
        client.emit_many(&events);
    }
    for (client, requests, session) in [
        (&mut old, &old_requests, &old_session),
        (&mut new, &new_requests, &new_session),
    ] {
        for (id, _) in requests {
            client.wait("ack", |d| d == id.as_str());
            let push = client.push_for(id);
            assert_eq!(push["request"]["clientId"], session.client_id.as_str());
            client.emit("message", json!({"ack": {"correspondingMessageId": id}}));
        }
    }
    // Both count as clients.
    common::wait_for("both clients in the status", || {
        let status = cluster.status()?;
        let total: u64 = common::workers(&status)
            .iter()
            .map(|w| w["clients"].as_u64().unwrap_or(0))
            .sum();
        (total == 2).then_some(())
    });
}

/// Messages longer than a 16-bit websocket length, and text beyond ASCII, both ways.
#[test]
fn large_and_non_ascii_messages_cross_both_ways() {
    let cluster = start();
    let mut client = legacy::connect(&cluster);
    client.gateway_connect();
    let blob = "é€𝄞 ".repeat(20_000);
    client.emit(
        "testCall",
        json!({"cn": "TestCall", "messageId": "big", "blob": blob}),
    );
    let push = client.push_for("big");
    assert_eq!(push["request"]["blob"].as_str(), Some(blob.as_str()));
    client.emit("message", json!({"ack": {"correspondingMessageId": "big"}}));
    // The client's own goodbye (`0::`) ends its session on the server.
    let (_, session) = client.gateway_connect();
    client.close();
    cluster.wait_log(&["connection ended", &session.client_id]);
}

/// The server ends a 0.9 session with `0::` (an EOL for the client): the client sees its
/// disconnect as "booted", after which 0.9 clients do not reconnect by themselves.
#[test]
fn a_server_disconnect_reaches_the_0_9_client() {
    let cluster = start();
    let mut client = legacy::connect(&cluster);
    let (_, session) = client.gateway_connect();
    client.emit("testCall", json!({"eol": true}));
    assert_eq!(client.wait("disconnect", |_| true), "booted");
    cluster.wait_log(&["connection ended", &session.client_id]);
}

// ----- heartbeats -----

/// Idle past the close timeout, and still connected: the server's heartbeats (answered by the
/// client) keep both sides' timers from firing.
#[test]
fn heartbeats_keep_an_idle_0_9_client_connected_past_the_close_timeout() {
    let cluster = start();
    let (mut client, _) = legacy::connect_with(&cluster, json!({"heartbeats": true}));
    client.gateway_connect();
    let past = (TIMEOUT_S + 2 * INTERVAL_S) * 1000;
    let late = client.wait("heartbeat", |ms| ms.as_u64().is_some_and(|ms| ms > past));
    eprintln!("a heartbeat {late} ms after connecting");
    assert!(
        !client
            .drain_events()
            .iter()
            .any(|e| e["event"] == "disconnect"),
        "disconnected while idle"
    );
    client.emit(
        "testCall",
        json!({"cn": "TestCall", "messageId": "after-idle"}),
    );
    client.push_for("after-idle");
}

/// A client that never answers the server's heartbeat is dropped once the heartbeat timeout has
/// passed.
#[test]
fn a_silent_0_9_client_is_dropped_after_the_heartbeat_timeout() {
    let cluster = start();
    let addr = cluster.addr();
    let runtime = runtime();
    let (sid, frames) = runtime.block_on(async {
        let (mut ws, sid) = legacy::open_session(addr).await.expect("a 0.9 session");
        ws.send(legacy::event("message", &json!({"connect": {}})))
            .await
            .expect("send");
        // Read, never answer: the server's heartbeats pile up unanswered until it closes.
        let mut frames = Vec::new();
        let read_all = async {
            while let Some(Ok(frame)) = ws.next().await {
                match frame {
                    Message::Text(text) => frames.push(text.to_string()),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(DEADLINE, read_all)
            .await
            .expect("the server closed the silent client");
        (sid, frames)
    });
    assert!(
        frames
            .iter()
            .any(|f| f.starts_with(r#"5:::{"name":"gatewayConnectAck""#)),
        "{frames:?}"
    );
    assert!(
        frames.iter().any(|f| f == "2::"),
        "no heartbeat: {frames:?}"
    );
    cluster.wait_log(&["connection closed: no heartbeat", &sid]);
}

// ----- the handshake and the sid -----

/// `GET /socket.io/1/` answers `<sid>:<heartbeat timeout>:<close timeout>:websocket`, the sid
/// signed with the session secret; other transports and the client script are not served.
#[test]
fn the_handshake_gives_a_signed_sid_and_offers_websocket_only() {
    let cluster = start();
    let addr = cluster.addr();
    let handshake = runtime()
        .block_on(legacy::handshake(addr))
        .expect("a handshake");
    assert_eq!(handshake.heartbeat_timeout_s, TIMEOUT_S);
    assert_eq!(handshake.close_timeout_s, TIMEOUT_S);
    assert_eq!(handshake.transports, "websocket");
    let now = legacy::now_ms();
    let max_age = LEGACY_SID_MAX_AGE.as_millis() as u64;
    assert_eq!(
        wire::verify_sid(&handshake.sid, SECRET.as_bytes(), now, max_age),
        Ok(())
    );
    assert_eq!(
        wire::verify_sid(&handshake.sid, b"another secret", now, max_age),
        Err(SidError::Forged)
    );
    // A page on another origin gets CORS headers (0.9's handshake did the same).
    let response = raw_get(addr, "/socket.io/1/?t=1", "Origin: http://app.example\r\n");
    assert!(
        response.contains("access-control-allow-origin: http://app.example"),
        "{response}"
    );
    let (status, body) = get(addr, &format!("/socket.io/1/xhr-polling/{}", handshake.sid));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("websocket only"), "{body}");
    let (status, _) = get(addr, "/socket.io/socket.io.js");
    assert_eq!(status, 404, "the client script is not served");
}

/// The handshake and the websocket are two connections that land on any workers: sessions whose
/// websocket reached another worker than their handshake work like any other.
#[test]
fn a_handshake_on_one_worker_and_its_websocket_on_the_other_connect() {
    let cluster = start();
    let addr = cluster.addr();
    let workers = cluster.worker_pids();
    let runtime = runtime();
    let mut attempts = 0;
    loop {
        attempts += 1;
        assert!(
            attempts <= 40,
            "40 sessions had their handshake and websocket on one worker"
        );
        // The handshake on a connection kept open, so that its worker can be found.
        let mut http = TcpStream::connect(addr).expect("connect");
        write!(
            http,
            "GET /socket.io/1/?t={attempts} HTTP/1.1\r\nHost: test\r\n\r\n"
        )
        .expect("write");
        let body = read_one_response(&mut http);
        let handshake = legacy::parse_handshake(&body).expect("a handshake");
        let http_port = http.local_addr().expect("a local address").port();
        let handshake_worker = worker_of(http_port, &workers, addr.port());
        let (_ws, port) = runtime.block_on(async {
            let (mut ws, _) = tokio_tungstenite::connect_async(legacy::url(addr, &handshake.sid))
                .await
                .expect("the websocket");
            let port = match ws.get_ref() {
                tokio_tungstenite::MaybeTlsStream::Plain(tcp) => {
                    tcp.local_addr().expect("a local address").port()
                }
                _ => panic!("a plain websocket"),
            };
            legacy::read_until(&mut ws, "1::").await.expect("connected");
            legacy::gateway_connect(&mut ws)
                .await
                .expect("a gatewayConnectAck");
            (ws, port)
        });
        let websocket_worker = worker_of(port, &workers, addr.port());
        if handshake_worker != websocket_worker {
            eprintln!(
                "attempt {attempts}: handshake on {handshake_worker}, websocket on {websocket_worker}"
            );
            break;
        }
    }
}

/// The worker holding the other end of the connection from local port `port`.
fn worker_of(port: u16, workers: &[i32], listen_port: u16) -> i32 {
    common::wait_for("the worker holding a connection", || {
        worker_holding_port(&tcp_sockets(), &HashSet::from([port]), workers, listen_port)
    })
}

/// A forged or malformed sid is refused (403) before any websocket; an expired one is upgraded
/// and told to handshake again (`7:::1+0`: "client not handshaken", advice "reconnect").
#[test]
fn forged_sids_are_refused_and_expired_ones_told_to_handshake_again() {
    let cluster = start();
    let addr = cluster.addr();
    let now = legacy::now_ms();
    let good = wire::new_sid(SECRET.as_bytes(), now);
    let mut tampered = good.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let cases = [
        ("another secret's", wire::new_sid(b"not the secret", now)),
        ("tampered", tampered),
        ("malformed", "123456789".to_string()),
    ];
    for (what, sid) in cases {
        match tungstenite::connect(legacy::url(addr, &sid)) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{what} sid");
                let body = response.body().as_deref().unwrap_or_default();
                let body = String::from_utf8_lossy(body);
                assert!(
                    body.contains("invalid socket.io session id"),
                    "{what}: {body}"
                );
            }
            Ok(_) => panic!("a websocket with a {what} sid"),
            Err(e) => panic!("{what} sid: {e}"),
        }
    }

    let old = now - LEGACY_SID_MAX_AGE.as_millis() as u64 - 1000;
    let expired = wire::new_sid(SECRET.as_bytes(), old);
    let (mut ws, _) = tungstenite::connect(legacy::url(addr, &expired)).expect("upgraded");
    let first = ws.read().expect("a frame").into_text().expect("text");
    assert_eq!(first.as_str(), "7:::1+0");
    let closed = loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(_)) | Err(_) => break true,
            Ok(tungstenite::Message::Text(text)) => panic!("after the error: {text}"),
            Ok(_) => {}
        }
    };
    assert!(closed);
}

/// One `GET` with extra header lines on a new connection: the whole answer, headers lower-cased.
fn raw_get(addr: std::net::SocketAddr, path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\n{headers}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    format!("{}\r\n\r\n{body}", head.to_ascii_lowercase())
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let response = common::http_get(addr, path).expect("an answer");
    legacy::parse_response(&response).expect("an HTTP answer")
}

/// Reads one HTTP answer with a Content-Length from a kept-alive connection; its body.
fn read_one_response(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "closed before a whole answer: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("a Content-Length");
            if body.len() >= length {
                return body[..length].to_string();
            }
        }
    }
}
