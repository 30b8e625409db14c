//! The gateway as a drop-in replacement for the Node ActiveStack gateway in front of the Percero
//! backend: real socket.io clients (npm socket.io-client 4, tests/e2e/client.js, and a bare
//! websocket client where a library cannot do what the test needs), the real binary as a
//! cluster, RabbitMQ, and the Percero double of tests/common/percero.rs in a vhost of its own.
//! Each test is one behaviour of the original (ActiveStack/gateway, "orig/") or one thing Percero
//! needs (ActiveStack/syncengine, "se/"), named in /work/shared/reference/compat-audit.md.
//!
//! The cluster runs without `gateway.rabbitmq.clientQueueExpires`: the original declared client
//! queues with no arguments, and Percero's own declares of them have none.

mod common;

use std::time::Instant;

use common::agent::JsClient;
use common::keys;
use common::percero::{AUTH_PROVIDER, DEVICE, Percero, Received, classes, log_in};
use common::{Cluster, DEADLINE};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};

const QUEUE_EXPIRES: &str = "gateway.rabbitmq.clientQueueExpires";

/// The cluster and its backend. Fields drop in order: the cluster goes before the double's vhost.
struct Dropin {
    cluster: Cluster,
    percero: Percero,
}

fn start() -> Dropin {
    start_with("")
}

/// A cluster in front of a new Percero double, with `extra` keys over the usual ones.
fn start_with(extra: &str) -> Dropin {
    let percero = Percero::start();
    let config = merge(&percero.gateway_config(), extra);
    let cluster = Cluster::start_unset(&[QUEUE_EXPIRES], &config);
    Dropin { cluster, percero }
}

/// `base` with the keys `extra` sets replaced by its lines.
fn merge(base: &str, extra: &str) -> String {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    let replaced: Vec<String> = extra.lines().map(key).collect();
    let kept: String = base
        .lines()
        .filter(|line| !replaced.contains(&key(line)))
        .map(|line| format!("{line}\n"))
        .collect();
    format!("{kept}{extra}")
}

/// A socket.io client after `message{connect}`, and its session.
fn connect(d: &Dropin) -> (JsClient, Value) {
    let mut client = JsClient::connect(&d.cluster);
    client.emit("message", json!({"connect": true}));
    let key = client.wait("gatewayConnectAck", |_| true);
    (client, keys::session(&key))
}

/// A new socket.io client resuming the session of `key` as the SDK does; its new key and
/// session.
fn reconnect(d: &Dropin, key: &str) -> (JsClient, String, Value) {
    let mut client = JsClient::connect(&d.cluster);
    client.emit(
        "message",
        json!({"reconnect": {"lastSessionId": null, "reconnectId": key, "ensureMessageDelivery": true}}),
    );
    let key = client.wait("gatewayConnectAck", |_| true);
    let session = keys::session(&key);
    (
        client,
        key.as_str().unwrap_or_default().to_string(),
        session,
    )
}

fn ack(client: &mut JsClient, message_id: &str) {
    client.emit(
        "message",
        json!({"ack": {"correspondingMessageId": message_id}}),
    );
}

/// An after-login request (findById, as the SDK sends it). `Ok(answer)` if it went to Percero
/// and came back, `Err(gatewayError code)` if the gateway refused it.
fn find_by_id(client: &mut JsClient) -> Result<Value, String> {
    let id = format!("find-{:08x}", fastrand::u32(..));
    client.emit(
        "findById",
        json!({"cn": classes::FIND_BY_ID_REQUEST, "theClassName": "com.example.Thing",
               "theClassId": "1", "regAppKey": "", "clientType": "", "svcOauthKey": "",
               "messageId": id}),
    );
    let event = client.next_matching(Instant::now() + DEADLINE, |e| {
        (e["event"] == "push" && e["data"]["correspondingMessageId"] == id.as_str())
            || (e["event"] == "gatewayError"
                && (e["data"]["messageId"] == id.as_str() || e["data"]["event"] == "findById"))
    });
    let event = event.expect("an answer or a gatewayError for findById");
    if event["event"] == "push" {
        ack(client, &id);
        Ok(event["data"].clone())
    } else {
        Err(event["data"]["error"].as_str().unwrap_or("?").to_string())
    }
}

/// A testCall round trip (Percero answers an AuthRequest on a key it has no branch for with a
/// bare AuthResponse: se/amqp/PerceroAgentListener.java:363-379).
fn round_trip(client: &mut JsClient, message_id: &str) -> Value {
    client.emit(
        "testCall",
        json!({"cn": classes::AUTH_REQUEST, "messageId": message_id}),
    );
    let answer = client.push_for(message_id);
    ack(client, message_id);
    answer
}

fn no_disconnect(client: &mut JsClient) -> bool {
    !client
        .drain_events()
        .iter()
        .any(|e| e["event"] == "disconnect")
}

/// Percero takes `request` (it decodes).
#[track_caller]
fn decoded(request: &Received) {
    assert!(
        request.decoded(),
        "Percero does not take {} on {}: {:?}",
        request.body,
        request.queue,
        request.outcome
    );
}

/// The JSON fields of `body` whose value is null.
fn nulls(body: &Value) -> Vec<String> {
    body.as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_null())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// A userId as text or as a number (Percero's String property takes both).
fn user_id_is(value: &Value, want: &str) -> bool {
    match value {
        Value::String(s) => s == want,
        Value::Number(n) => n.to_string() == want,
        _ => false,
    }
}

// ----- login as the original (compat-audit items 3, 13, 14) -----

/// An answer of Percero's auth agent carrying `token` (an `AuthResponse` subclass, the user
/// under `result`: se/agents/auth/vo/*Response.java).
fn auth_answer(class: &str, token: &Value, client_id: &str, message_id: &str) -> Value {
    let mut answer = json!({
        "cn": format!("com.percero.agents.auth.vo.{class}"),
        "clientId": client_id,
        "deviceId": "",
        "correspondingMessageId": message_id,
        "message": "OK",
        "statusCode": 200,
        "result": token,
    });
    if class.contains("OAuth") {
        answer["accessToken"] = json!("access");
        answer["refreshToken"] = json!("refresh");
    }
    answer
}

/// orig/src/service/client.js:264-279 logs in on exactly these relative class names: the first
/// with the user at the top level (`logUserInWithUserToken`), the others under `result`.
#[test]
fn each_login_answer_of_the_original_logs_in() {
    let d = start();
    let mut problems = Vec::new();
    for variant in [
        "UserToken",
        "AuthenticateUserAccountResponse",
        "AuthenticateOAuthCodeResponse",
        "AuthenticateOAuthAccessTokenResponse",
        "AuthenticationResponse",
    ] {
        let (mut client, session) = connect(&d);
        let client_id = keys::client_id(&session);
        let account = format!("user-{variant}");
        let message_id = format!("login-{variant}");
        let token = if variant == "AuthenticationResponse" {
            // What Percero answers to `authenticate`, the SDK's login
            // (se/agents/auth/services/AuthService2.java authenticate).
            client.emit(
                "authenticate",
                json!({"cn": classes::AUTHENTICATION_REQUEST, "authProvider": AUTH_PROVIDER,
                       "credential": format!("{account}:secret"), "deviceId": DEVICE,
                       "messageId": message_id}),
            );
            let answer = client.push_for(&message_id);
            ack(&mut client, &message_id);
            answer["result"].clone()
        } else {
            let token = d.percero.user_token(&account, &client_id, DEVICE);
            if variant == "UserToken" {
                d.percero.push(&client_id, &token);
                client.wait("push", |p| p["cn"] == token["cn"]);
            } else {
                let answer = auth_answer(variant, &token, &client_id, &message_id);
                d.percero.push(&client_id, &answer);
                client.push_for(&message_id);
                ack(&mut client, &message_id);
            }
            token
        };
        let forwarded = find_by_id(&mut client);
        d.percero.barrier("connect");
        let connect = d
            .percero
            .from(&client_id)
            .into_iter()
            .find(|r| r.queue == "connect");
        match (&forwarded, &connect) {
            (Ok(answer), Some(connect)) => {
                let body = &connect.body;
                let wanted = user_id_is(&body["userId"], &account)
                    && body["token"] == token["token"]
                    && body["deviceId"] == DEVICE
                    && connect.class() == Some(classes::CONNECT_REQUEST);
                if !wanted {
                    problems.push(format!(
                        "{variant}: ConnectRequest {body} ({:?})",
                        connect.outcome
                    ));
                }
                if answer["cn"] != "com.percero.agents.sync.vo.FindByIdResponse" {
                    problems.push(format!("{variant}: findById answered {answer}"));
                }
            }
            _ => problems.push(format!(
                "{variant}: not logged in: findById -> {forwarded:?}, ConnectRequest -> {:?}",
                connect.map(|c| c.body)
            )),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The original's `isLoggedIn` is `!!userId` (orig/src/service/session.js:173-175): a login
/// answer with a user and no token still logs in, and sends a ConnectRequest without a token.
#[test]
fn a_user_id_without_a_token_still_logs_in() {
    let d = start();
    let (mut client, session) = connect(&d);
    let client_id = keys::client_id(&session);
    let mut token = d.percero.user_token("tokenless", &client_id, DEVICE);
    token.as_object_mut().unwrap().remove("token");
    d.percero.push(
        &client_id,
        &auth_answer(
            "AuthenticateUserAccountResponse",
            &token,
            &client_id,
            "login",
        ),
    );
    client.push_for("login");
    ack(&mut client, "login");
    let forwarded = find_by_id(&mut client);
    assert!(
        forwarded.is_ok(),
        "a user without a token is not logged in: findById -> {forwarded:?}"
    );
    let connect = d.percero.wait_request("connect", &client_id);
    connect.assert_decoded_as(classes::CONNECT_REQUEST);
    assert_eq!(connect.body["userId"], "tokenless");
    assert!(
        connect.body["token"].is_null(),
        "no token to send: {}",
        connect.body
    );
}

/// The original copies `user.ID` as it is (orig/src/service/client.js:310-311), so a numeric id
/// logs in, is in the key, and a key the original signed with it reconnects
/// (compat-audit item 14).
#[test]
fn a_numeric_user_id_logs_in_and_its_keys_reconnect() {
    let d = start();
    let (mut a, session) = connect(&d);
    let a_id = keys::client_id(&session);
    let mut token = d.percero.user_token("42", &a_id, DEVICE);
    token["user"]["ID"] = json!(42);
    d.percero.push(&a_id, &token);
    let key = client_logged_in(&mut a);
    assert!(find_by_id(&mut a).is_ok(), "not logged in by user.ID 42");
    let connect = d.percero.wait_request("connect", &a_id);
    decoded(&connect);
    assert!(
        user_id_is(&connect.body["userId"], "42"),
        "{}",
        connect.body
    );
    // The gateway's own key after that login, and one the original would have signed (userId
    // a number, as JSON.stringify wrote it).
    let original = keys::sign(&json!({
        "clientId": a_id,
        "deviceId": DEVICE,
        "token": token["token"],
        "userId": 42,
    }));
    for (which, key) in [
        ("the gateway's key", &key),
        ("the original's key", &original),
    ] {
        let (mut b, _, session) = reconnect(&d, key);
        let b_id = keys::client_id(&session);
        assert_eq!(
            session["existingClientId"], a_id,
            "{which}: not resumed: {session}"
        );
        assert!(
            user_id_is(&session["userId"], "42"),
            "{which}: not logged in: {session}"
        );
        assert!(find_by_id(&mut b).is_ok(), "{which}: findById refused");
        let request = d.percero.wait_request("reconnect", &b_id);
        assert!(request.decoded(), "{which}: {:?}", request.outcome);
        assert!(
            user_id_is(&request.body["userId"], "42"),
            "{which}: {}",
            request.body
        );
    }
}

/// Waits for the gatewayConnectAck of a logged-in session; the key.
fn client_logged_in(client: &mut JsClient) -> String {
    let key = client.wait("gatewayConnectAck", |k| {
        keys::read(k.as_str().unwrap_or("")).is_ok_and(|s| keys::logged_in(&s))
    });
    key.as_str().unwrap_or_default().to_string()
}

/// The original switches on the exact relative class name (orig/src/service/client.js:264-300):
/// `FooUserToken`, `AuthenticateBasicOAuthResponse` (which Percero does send, for
/// `authenticateBasicOAuth`) or any other `Authenticate*Response` log nobody in.
#[test]
fn an_answer_that_only_looks_like_a_login_does_not_log_in() {
    let d = start();
    let mut problems = Vec::new();
    for class in [
        "FooUserToken",
        "AuthenticateBasicOAuthResponse",
        "AuthenticateFooResponse",
    ] {
        let (mut client, session) = connect(&d);
        let client_id = keys::client_id(&session);
        let mut token = d
            .percero
            .user_token(&format!("user-{class}"), &client_id, DEVICE);
        let message_id = format!("login-{class}");
        let answer = if class.ends_with("UserToken") {
            token["cn"] = json!(format!("com.percero.agents.auth.vo.{class}"));
            token["correspondingMessageId"] = json!(message_id);
            token
        } else {
            auth_answer(class, &token, &client_id, &message_id)
        };
        d.percero.push(&client_id, &answer);
        client.push_for(&message_id);
        ack(&mut client, &message_id);
        let forwarded = find_by_id(&mut client);
        d.percero.barrier("connect");
        let connects = d
            .percero
            .from(&client_id)
            .into_iter()
            .filter(|r| r.queue == "connect" || r.queue == "reconnect")
            .count();
        if forwarded.as_ref().err().map(String::as_str) != Some("notLoggedIn") || connects > 0 {
            problems.push(format!(
                "{class} logged in: findById -> {forwarded:?}, {connects} Connect/ReconnectRequests"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ----- one client never takes a worker down (item 2) -----

fn swarm_status(swarm: &mut JsClient) -> Value {
    swarm.send(json!({"op": "swarm_status"}));
    swarm.wait("swarm_status", |_| true)
}

fn counts(status: &Value, field: &str) -> Vec<u64> {
    status[field]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default()
}

/// Panics if a swarm socket was disconnected.
fn assert_swarm_connected(status: &Value, when: &str) {
    let disconnects: u64 = counts(status, "disconnects").iter().sum();
    assert_eq!(
        disconnects, 0,
        "{when}: {disconnects} of the 50 clients on the worker were disconnected"
    );
}

/// A reconnect key whose previous queue someone declared with other arguments (a Node gateway
/// with other settings, or `x-expires` from an older rewrite) must not cost the worker's other
/// clients anything: no disconnect, no lost round trip, the same worker process.
#[test]
fn one_client_never_takes_a_worker_down() {
    let d = start_with("cluster.workerCount=1\n");
    let pid = d.cluster.worker_pids()[0];
    let mut swarm = JsClient::spawn();
    swarm.send(json!({
        "op": "swarm",
        "url": format!("http://{}", d.cluster.addr()),
        "count": 50,
        "prefix": "swarm",
        "request": {"cn": classes::AUTH_REQUEST},
    }));
    swarm.wait("swarm_ready", |_| true);
    for round in 0..3 {
        let old = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongLongInt(120_000));
        d.percero.declare(&old, arguments).expect("the old queue");
        let key = keys::sign(&json!({
            "clientId": old,
            "deviceId": DEVICE,
            "token": "some-token",
            "userId": "someone",
        }));
        let (mut client, _, session) = reconnect(&d, &key);
        assert_eq!(session["existingClientId"], old.as_str());
        // The reconnected client works, and nobody else noticed.
        let message_id = format!("alive-{round}");
        client.emit(
            "testCall",
            json!({"cn": classes::AUTH_REQUEST, "messageId": message_id}),
        );
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert_swarm_connected(&swarm_status(&mut swarm), &format!("reconnect {round}"));
            let pushed = client.next_matching(
                Instant::now() + std::time::Duration::from_millis(100),
                |e| {
                    e["event"] == "push"
                        && e["data"]["correspondingMessageId"] == message_id.as_str()
                },
            );
            if pushed.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "reconnect {round}: no answer to its testCall"
            );
        }
        ack(&mut client, &message_id);
    }
    // Every client keeps round-tripping after the last of them.
    let after = counts(&swarm_status(&mut swarm), "done");
    common::wait_for("five more round trips for each of the 50", || {
        let status = swarm_status(&mut swarm);
        assert_swarm_connected(&status, "after the reconnects");
        let done = counts(&status, "done");
        done.iter()
            .zip(&after)
            .all(|(now, then)| *now >= then + 5)
            .then_some(())
    });
    swarm.send(json!({"op": "swarm_stop"}));
    let status = common::wait_for("every round trip in flight to complete", || {
        let status = swarm_status(&mut swarm);
        let inflight = status["inflight"].as_array()?.iter().any(|v| v == true);
        (!inflight).then_some(status)
    });
    assert_swarm_connected(&status, "at the end");
    assert_eq!(status["errors"], 0, "gatewayErrors in the swarm: {status}");
    assert_eq!(
        d.cluster.worker_pids(),
        vec![pid],
        "the worker was replaced"
    );
}

// ----- queues the backend can manage (items 4, 9, 10) -----

/// Percero's `removeClient` declares the client queue with no arguments, purges it and sends
/// the EOL (se/amqp/RabbitMQPushSyncHelper.java:257-296). That works on the gateway's queue,
/// and the EOL ends the client as the original did (orig/src/service/client.js:396-414).
#[test]
fn a_client_queue_is_one_percero_can_remove() {
    let d = start();
    let (mut client, session) = connect(&d);
    let client_id = keys::client_id(&session);
    assert!(
        d.percero.remove_client(&client_id),
        "Percero's no-argument declare of the client queue failed: the gateway declared it with \
         arguments"
    );
    assert!(d.percero.eol_clients().contains(&client_id));
    client.wait("disconnect", |_| true);
    let disconnect = d.percero.wait_request("disconnect", &client_id);
    disconnect.assert_decoded_as(classes::DISCONNECT_REQUEST);
}

/// After a reconnect the previous clientId's queue is Percero's business: `renameClient` moves
/// its messages with basic.get and leaves the EOL in it (se/amqp/RabbitMQPushSyncHelper.java:
/// 336-357). The new socket consumes only its own queue (orig/src/service/client.js:513-517).
#[test]
fn after_a_reconnect_the_old_queue_is_left_to_percero() {
    let d = start();
    let (mut a, _) = connect(&d);
    let (key, session) = log_in(&d.percero, &mut a, "alice");
    let a_id = keys::client_id(&session);
    a.close();
    d.percero.wait_request("disconnect", &a_id);

    let (mut b, _, session) = reconnect(&d, &key);
    let b_id = keys::client_id(&session);
    assert_eq!(session["existingClientId"], a_id.as_str());
    let request = d.percero.wait_request("reconnect", &b_id);
    decoded(&request);
    // The double handles one request at a time: past the barrier, the rename is done.
    d.percero.barrier("reconnect");
    let old = d
        .percero
        .queue(&a_id)
        .expect("the old queue is still there");
    assert_eq!(
        old.consumers, 0,
        "the new socket consumes the previous client's queue"
    );
    let eol = json!({"EOL": true, "clientId": a_id});
    assert_eq!(
        d.percero.peek(&a_id),
        vec![eol.clone()],
        "Percero's EOL is in the old queue (its removeClient worked)"
    );
    // The new socket works, and the EOL stays where it is.
    round_trip(&mut b, "after-rename");
    assert_eq!(d.percero.peek(&a_id), vec![eol]);
    assert_eq!(d.percero.queue(&a_id).map(|q| q.consumers), Some(0));
    assert!(no_disconnect(&mut b), "the new socket was disconnected");
}

// ----- requests as Percero decodes them (items 5, 8, 11, 12) -----

/// The original deletes existingClientId(s) from the DisconnectRequest and leaves out what the
/// session does not have (orig/src/service/client.js:66-75; JSON.stringify drops undefined).
/// Percero's DisconnectRequest has no such fields and refuses unknown ones (item 5).
#[test]
fn a_reconnected_clients_disconnect_request_is_one_percero_takes() {
    let d = start();
    let (mut a, _) = connect(&d);
    let (key, session) = log_in(&d.percero, &mut a, "alice");
    let a_id = keys::client_id(&session);
    a.close();
    let first = d.percero.wait_request("disconnect", &a_id);
    decoded(&first);

    let (mut b, _, session) = reconnect(&d, &key);
    let b_id = keys::client_id(&session);
    d.percero.wait_request("reconnect", &b_id);
    b.close();
    let last = d.percero.wait_request("disconnect", &b_id);
    let body = &last.body;
    assert!(
        last.decoded(),
        "Percero refuses the DisconnectRequest: {:?}\n{body}",
        last.outcome
    );
    assert!(
        body.get("existingClientId").is_none() && body.get("existingClientIds").is_none(),
        "{body}"
    );
    assert_eq!(nulls(body), Vec::<String>::new(), "null fields in {body}");
    assert_eq!(body["userId"], "alice");
    assert_eq!(body["deviceId"], DEVICE);
    // Percero hibernated the client (se/amqp/handlers/DisconnectHandler.java).
    common::wait_for("Percero to hibernate the client", || {
        d.percero.is_hibernated(&b_id).then_some(())
    });
}

/// `logout` as the original (orig/src/service/gateway.js:121-124,145 and client.js:121,
/// 133-139, 595-602): the gateway closes the socket; disposal sends the DisconnectRequest while
/// the session is still logged in (session.logout() acts on the next tick), then the `logout`
/// listener the client registered sends the auth DisconnectRequest, then the request itself
/// goes to `logout` (an after-login event, sent because the session is still logged in).
#[test]
fn logout_closes_the_socket_and_tells_percero_in_the_originals_order() {
    let d = start();
    let (mut client, _) = connect(&d);
    let (_, session) = log_in(&d.percero, &mut client, "alice");
    let client_id = keys::client_id(&session);
    // The order the gateway published in, as RabbitMQ took it: the three go to three queues,
    // which deliver each in its own time (the double's arrival order was seen to differ).
    let trace = d.percero.trace_publishes();
    client.emit(
        "logout",
        json!({"cn": classes::LOGOUT_REQUEST, "pleaseDestroyClient": false,
               "messageId": "bye", "clientId": client_id}),
    );
    let reason = client.wait("disconnect", |_| true);
    assert_ne!(
        reason, "io client disconnect",
        "the server closes the socket"
    );
    let in_order = ["disconnect", "disconnectAuth", "logout"];
    for queue in in_order {
        d.percero.wait_request(queue, &client_id);
    }
    let published: Vec<String> = trace
        .take()
        .into_iter()
        .filter(|(queue, body)| {
            body["clientId"] == client_id.as_str() && in_order.contains(&queue.as_str())
        })
        .map(|(queue, _)| queue)
        .collect();
    assert_eq!(published, in_order);
    let mut sent: Vec<_> = d
        .percero
        .from(&client_id)
        .into_iter()
        .filter(|r| in_order.contains(&r.queue.as_str()))
        .collect();
    sent.sort_by_key(|r| in_order.iter().position(|q| *q == r.queue));
    let queues: Vec<&str> = sent.iter().map(|r| r.queue.as_str()).collect();
    assert_eq!(queues, in_order, "each reached Percero once: {sent:#?}");
    let classes_sent: Vec<_> = sent.iter().map(|r| r.class()).collect();
    assert_eq!(
        classes_sent,
        [
            Some(classes::DISCONNECT_REQUEST),
            Some(classes::AUTH_DISCONNECT_REQUEST),
            Some(classes::LOGOUT_REQUEST)
        ],
        "{sent:#?}"
    );
    for request in &sent[..2] {
        assert_eq!(request.body["userId"], "alice", "{}", request.body);
        assert_eq!(request.body["token"], session["token"], "{}", request.body);
    }
}

/// Not logged in, the original still closes the socket and sends both DisconnectRequests, but
/// not the LogoutRequest (an after-login event: orig/src/service/client.js:595-602).
#[test]
fn logout_before_login_closes_the_socket_without_a_logout_request() {
    let d = start();
    let (mut client, session) = connect(&d);
    let client_id = keys::client_id(&session);
    client.emit(
        "logout",
        json!({"cn": classes::LOGOUT_REQUEST, "messageId": "bye"}),
    );
    client.wait("disconnect", |_| true);
    let disconnect = d.percero.wait_request("disconnect", &client_id);
    decoded(&disconnect);
    let auth = d.percero.wait_request("disconnectAuth", &client_id);
    auth.assert_decoded_as(classes::AUTH_DISCONNECT_REQUEST);
    d.percero.barrier("logout");
    assert!(
        !d.percero
            .from(&client_id)
            .iter()
            .any(|r| r.queue == "logout"),
        "a LogoutRequest was sent for a session that is not logged in"
    );
}

/// A ReconnectResponse ends the reconnect: the original forgets existingClientId
/// (orig/src/service/client.js:289-299), so a later login sends a ConnectRequest (item 11).
#[test]
fn a_reconnect_response_clears_the_existing_client_id() {
    let d = start();
    let (mut a, _) = connect(&d);
    let (key, session) = log_in(&d.percero, &mut a, "alice");
    let a_id = keys::client_id(&session);
    a.close();
    let (mut b, _, session) = reconnect(&d, &key);
    let b_id = keys::client_id(&session);
    let first = d.percero.wait_request("reconnect", &b_id);
    // A Percero that answers reconnects with a ReconnectResponse (this one sends a
    // ConnectResponse: se/amqp/handlers/ReconnectHandler.java).
    d.percero.push(
        &b_id,
        &json!({"cn": "com.percero.agents.sync.vo.ReconnectResponse", "clientId": b_id,
                "timestamp": 1, "ids": null, "data": "RECONNECT", "type": null,
                "correspondingMessageId": null, "gatewayMessageId": null,
                "currentTimestamp": 1, "dataID": "d"}),
    );
    b.wait("push", |p| {
        p["cn"] == "com.percero.agents.sync.vo.ReconnectResponse"
    });
    let (_, again) = log_in(&d.percero, &mut b, "alice");
    d.percero
        .wait_for("the Connect/ReconnectRequest of the second login", |r| {
            r.is_from(&b_id)
                && r.seq > first.seq
                && (r.queue == "connect" || r.queue == "reconnect")
        });
    d.percero.barrier("connect");
    d.percero.barrier("reconnect");
    let keys_after: Vec<Value> = b
        .drain_events()
        .into_iter()
        .filter(|e| e["event"] == "gatewayConnectAck")
        .map(|e| keys::session(&e["data"]))
        .chain([again])
        .collect();
    for key in &keys_after {
        assert_eq!(
            key.get("existingClientId"),
            None,
            "the key still has existingClientId: {key}"
        );
    }
    let later: Vec<_> = d
        .percero
        .from(&b_id)
        .into_iter()
        .filter(|r| r.seq > first.seq && (r.queue == "connect" || r.queue == "reconnect"))
        .collect();
    assert_eq!(
        later.iter().map(|r| r.queue.as_str()).collect::<Vec<_>>(),
        ["connect"],
        "{later:#?}"
    );
    decoded(&later[0]);
    assert_ne!(a_id, b_id);
}

/// `!response.clientId` logs out, and "" is SyncResponse's default clientId
/// (orig/src/service/client.js:282,292; se/agents/sync/vo/SyncResponse.java) (item 12).
#[test]
fn an_empty_client_id_in_a_connect_or_reconnect_response_logs_out() {
    let d = start();
    let mut problems = Vec::new();
    for class in ["ConnectResponse", "ReconnectResponse"] {
        let (mut client, _) = connect(&d);
        let (_, session) = log_in(&d.percero, &mut client, &format!("user-{class}"));
        let client_id = keys::client_id(&session);
        d.percero.push(
            &client_id,
            &json!({"cn": format!("com.percero.agents.sync.vo.{class}"), "clientId": "",
                    "timestamp": 1, "ids": null, "data": null, "type": null,
                    "correspondingMessageId": null, "gatewayMessageId": null,
                    "currentTimestamp": 1, "dataID": null}),
        );
        client.wait("push", |p| p["clientId"] == "");
        let forwarded = find_by_id(&mut client);
        if forwarded.as_ref().err().map(String::as_str) != Some("notLoggedIn") {
            problems.push(format!(
                "{class} with clientId \"\" left the session logged in: findById -> {forwarded:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

// ----- no push is ever lost (item 6) -----

/// socket.io 0.9 in the original wrote to the Node socket, which buffers without limit
/// (orig/src/service/client.js:426-432): a client that stops reading for a while still gets
/// every push, in order, and nothing is left in its queue.
#[test]
fn no_push_is_lost_to_a_client_that_stops_reading() {
    const PUSHES: usize = 400;
    // Heartbeats far apart: a client that reads nothing for 3 s must not time out.
    let d = start_with("gateway.socketio.interval=10\ngateway.socketio.timeout=20\n");
    let runtime = common::agent::runtime();
    let (mut ws, frame) = runtime.block_on(async {
        let mut ws = common::ws::open(common::ws::url(d.cluster.addr()))
            .await
            .expect("socket.io open");
        let frame = common::ws::gateway_connect(&mut ws)
            .await
            .expect("gatewayConnectAck");
        (ws, frame)
    });
    let ack: Value = serde_json::from_str(&frame[2..]).expect("a socket.io event");
    let client_id = keys::client_id(&keys::session(&ack[1]));
    let blob = "x".repeat(20_000);
    let pushes = (0..PUSHES)
        .map(|seq| {
            json!({"cn": "com.percero.agents.sync.vo.PushUpdateResponse", "clientId": client_id,
                   "seq": seq, "blob": blob})
        })
        .collect();
    d.percero.push_all(&client_id, pushes);
    // The scenario itself: the client reads nothing for 3 s.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let seen = runtime.block_on(async {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while seen.len() < PUSHES {
            let next =
                tokio::time::timeout_at(deadline, common::ws::read_until(&mut ws, r#"42["push""#));
            let Ok(Ok(frame)) = next.await else { break };
            let event: Value = serde_json::from_str(&frame[2..]).expect("a socket.io event");
            seen.push(event[1]["seq"].as_u64().unwrap_or(u64::MAX));
        }
        seen
    });
    assert_eq!(
        seen.len(),
        PUSHES,
        "{} of {PUSHES} pushes arrived",
        seen.len()
    );
    let in_order: Vec<u64> = (0..PUSHES as u64).collect();
    assert_eq!(seen, in_order, "the pushes came out of order");
    d.percero.wait_messages(&client_id, 0);
}

// ----- a reload never loses a client -----

/// SIGHUP replaces every worker. Clients that reconnect by themselves and resume like the SDK
/// (sdk/src/ActiveStackClient.js:49-55: `message{reconnect:{reconnectId}}` with the last key)
/// all come back, logged in, and Percero hears of every old client (its DisconnectRequest) and
/// every new one (its ReconnectRequest).
#[test]
fn a_reload_never_loses_a_client() {
    let d = start();
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut client =
            JsClient::connect_with(&d.cluster, json!({"reconnection": true, "resume": true}));
        client.emit("message", json!({"connect": true}));
        client.wait("gatewayConnectAck", |_| true);
        let (_, session) = log_in(&d.percero, &mut client, &format!("user-{i}"));
        clients.push((client, keys::client_id(&session)));
    }
    d.cluster.signal(nix::sys::signal::Signal::SIGHUP);
    for (client, old) in &mut clients {
        client.wait("disconnect", |_| true);
        client.wait("connect", |n| n.as_u64() >= Some(2));
        let key = client.wait("gatewayConnectAck", |k| {
            keys::read(k.as_str().unwrap_or(""))
                .is_ok_and(|s| s["existingClientId"] == old.as_str())
        });
        let session = keys::session(&key);
        assert!(keys::logged_in(&session), "{session}");
        let new = keys::client_id(&session);
        let disconnect = d.percero.wait_request("disconnect", old);
        decoded(&disconnect);
        let reconnect = d.percero.wait_request("reconnect", &new);
        decoded(&reconnect);
    }
    d.cluster.wait_ready();
}

// ----- unacked pushes survive any number of reconnects -----

/// A push the client never acks is given back to its queue when the socket goes, and Percero's
/// renameClient carries it to the next client at each ReconnectRequest: after three reconnects
/// it reaches the last socket, and once acked nothing is left but the old queues' EOLs.
#[test]
fn unacked_pushes_survive_any_number_of_reconnects() {
    let d = start();
    let (mut client, _) = connect(&d);
    let (mut key, session) = log_in(&d.percero, &mut client, "alice");
    let mut ids = vec![keys::client_id(&session)];
    d.percero.push(
        &ids[0],
        &json!({"cn": "com.percero.agents.sync.vo.PushUpdateResponse", "clientId": ids[0],
                "correspondingMessageId": "keep"}),
    );
    client.push_for("keep");
    for _ in 0..3 {
        client.close();
        // A push can only be moved once it is back in a queue (ready, not held by a consumer).
        common::wait_for("the unacked push back in a client queue", || {
            ids.iter().find(|queue| {
                d.percero
                    .peek(queue)
                    .iter()
                    .any(|m| m["correspondingMessageId"] == "keep")
            })
        });
        let (next, next_key, session) = reconnect(&d, &key);
        client = next;
        key = next_key;
        let id = keys::client_id(&session);
        assert_eq!(session["existingClientId"], ids.last().unwrap().as_str());
        assert!(keys::logged_in(&session), "{session}");
        let request = d.percero.wait_request("reconnect", &id);
        decoded(&request);
        let push = client.push_for("keep");
        assert_eq!(push["clientId"], ids[0].as_str());
        ids.push(id);
    }
    ack(&mut client, "keep");
    d.percero.barrier("reconnect");
    let last = ids.last().unwrap();
    d.percero.wait_messages(last, 0);
    for old in &ids[..ids.len() - 1] {
        let left = d.percero.peek(old);
        assert!(
            left.iter().all(|m| m.get("EOL").is_some()),
            "queue {old} still holds {left:?}"
        );
    }
}

// ----- pipelined requests (item 7) -----

/// The original registers the request events inside `connect` (orig/src/service/client.js:
/// 164-172): a request sent right after it, without waiting for the gatewayConnectAck, goes
/// through.
#[test]
fn a_request_right_after_connect_is_forwarded() {
    let d = start();
    let mut client = JsClient::connect(&d.cluster);
    client.emit_many(&[
        ("message", json!({"connect": true})),
        (
            "testCall",
            json!({"cn": classes::AUTH_REQUEST, "messageId": "piped"}),
        ),
    ]);
    let key = client.wait("gatewayConnectAck", |_| true);
    let client_id = keys::client_id(&keys::session(&key));
    let answer = client.next_matching(Instant::now() + DEADLINE, |e| {
        (e["event"] == "push" && e["data"]["correspondingMessageId"] == "piped")
            || e["event"] == "gatewayError"
    });
    let answer = answer.expect("an answer or an error");
    assert_eq!(
        answer["event"], "push",
        "the pipelined request was refused: {answer}"
    );
    let request = d.percero.wait_request("testCall", &client_id);
    decoded(&request);
    assert_eq!(
        answer["data"]["cn"],
        "com.percero.agents.auth.vo.AuthResponse"
    );
}
