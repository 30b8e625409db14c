//! The client's rules, driven without a socket or a broker: every effect is recorded.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;

const SECRET: &[u8] = b"client test secret";

/// One recorded effect (deliveries are plain numbers here).
#[derive(Debug, Clone, PartialEq)]
enum Did {
    Emit(String, Value),
    Push(Value, Option<u32>),
    Publish(String, Value),
    Subscribe(String),
    Unsubscribe(AfterCancel),
    Settle(u32, Settle),
    Join(String, Option<Value>),
    Leave(String),
    Close(Close),
}

#[derive(Default)]
struct Recorder {
    did: Vec<Did>,
    /// The `then` of every publish, in order, to confirm them.
    thens: Vec<Then>,
}

impl Effects<u32> for Recorder {
    fn emit(&mut self, event: &str, data: &Value) {
        self.did.push(Did::Emit(event.into(), data.clone()));
    }
    fn push(&mut self, body: &[u8], delivery: Option<u32>) {
        let body = serde_json::from_slice(body).unwrap();
        self.did.push(Did::Push(body, delivery));
    }
    fn publish(&mut self, queue: &str, body: Vec<u8>, reply_to: &str, then: Then) {
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["clientId"], reply_to, "replyTo is the client id");
        self.did.push(Did::Publish(queue.into(), body));
        self.thens.push(then);
    }
    fn subscribe(&mut self, queue: &str) {
        self.did.push(Did::Subscribe(queue.into()));
    }
    fn unsubscribe(&mut self, then: AfterCancel) {
        self.did.push(Did::Unsubscribe(then));
    }
    fn settle(&mut self, delivery: u32, how: Settle) {
        self.did.push(Did::Settle(delivery, how));
    }
    fn join_user(&mut self, user: &str, resume: Option<&Value>) {
        self.did.push(Did::Join(user.into(), resume.cloned()));
    }
    fn leave_user(&mut self, user: &str) {
        self.did.push(Did::Leave(user.into()));
    }
    fn close(&mut self, why: Close) {
        self.did.push(Did::Close(why));
    }
}

impl Recorder {
    fn take(&mut self) -> Vec<Did> {
        std::mem::take(&mut self.did)
    }

    fn publishes(&self) -> Vec<(String, Value)> {
        self.did
            .iter()
            .filter_map(|d| match d {
                Did::Publish(q, b) => Some((q.clone(), b.clone())),
                _ => None,
            })
            .collect()
    }

    fn emitted(&self, event: &str) -> Vec<Value> {
        self.did
            .iter()
            .filter_map(|d| match d {
                Did::Emit(e, v) if e == event => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    /// The session of the last key sent.
    fn last_session(&self) -> Session {
        let key = self
            .emitted("gatewayConnectAck")
            .pop()
            .expect("a key was sent");
        Session::verify(key.as_str().unwrap(), SECRET).expect("a valid key")
    }
}

struct Harness {
    client: Client<u32>,
    fx: Recorder,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            client: Client::new(Limits::default()),
            fx: Recorder::default(),
            now: Instant::now(),
        }
    }

    fn ctx(&self) -> Context<'static> {
        Context {
            secret: SECRET,
            now: self.now,
            resend_interval: Duration::from_millis(1000),
        }
    }

    fn message(&mut self, data: Value) {
        let ctx = self.ctx();
        self.client.on_message(&ctx, Some(data), &mut self.fx);
    }

    fn request(&mut self, event: &str, data: Value) {
        let ctx = self.ctx();
        self.client
            .on_request(&ctx, event, Some(&Data::of(&data)), &mut self.fx);
    }

    fn subscribed(&mut self, result: Result<(), RabbitError>) {
        let ctx = self.ctx();
        self.client.on_subscribed(&ctx, result, &mut self.fx);
    }

    fn deliver(&mut self, tag: u32, body: Value) {
        let ctx = self.ctx();
        let bytes = serde_json::to_vec(&body).unwrap();
        self.client.on_delivery(&ctx, tag, bytes, &mut self.fx);
    }

    /// `connect`, queue consumed.
    fn connected() -> Harness {
        let mut h = Harness::new();
        h.message(json!({"connect": {"ensureMessageDelivery": true}}));
        h.subscribed(Ok(()));
        h.fx.take();
        h
    }

    fn logged_in(user: Value) -> Harness {
        let mut h = Harness::connected();
        h.deliver(
            1,
            json!({"cn": "com.percero.agents.auth.vo.AuthenticationResponse",
                   "result": {"user": {"ID": user}, "token": "tok", "deviceId": "dev"}}),
        );
        h.fx.take();
        h
    }
}

#[test]
fn connect_consumes_the_queue_and_sends_the_key_once_consumed() {
    let mut h = Harness::new();
    h.message(json!({"connect": true}));
    let id = h.client.client_id().to_string();
    assert_eq!(h.fx.take(), vec![Did::Subscribe(id.clone())]);
    h.subscribed(Ok(()));
    assert_eq!(h.fx.last_session().client_id, id);
    // A second connect sends the key again and declares nothing.
    h.fx.take();
    h.message(json!({"connect": true}));
    assert!(!h.fx.did.iter().any(|d| matches!(d, Did::Subscribe(_))));
    assert_eq!(h.fx.emitted("gatewayConnectAck").len(), 1);
}

#[test]
fn requests_sent_before_the_queue_exists_wait_for_it_in_order() {
    let mut h = Harness::new();
    h.message(json!({"connect": true}));
    h.request("testCall", json!({"messageId": "a"}));
    h.request("testCall", json!({"messageId": "b"}));
    assert!(
        h.fx.publishes().is_empty(),
        "nothing before the queue exists"
    );
    h.subscribed(Ok(()));
    let ids: Vec<_> =
        h.fx.publishes()
            .iter()
            .map(|(_, b)| b["messageId"].clone())
            .collect();
    assert_eq!(ids, vec![json!("a"), json!("b")]);
}

#[test]
fn requests_before_connect_are_refused() {
    let mut h = Harness::new();
    h.request("testCall", json!({"messageId": "a"}));
    assert_eq!(h.fx.emitted("gatewayError")[0]["error"], "notConnected");
    assert!(h.fx.publishes().is_empty());
}

#[test]
fn a_failed_subscription_tells_the_client_and_its_waiting_requests() {
    let mut h = Harness::new();
    h.message(json!({"connect": true}));
    h.request("testCall", json!({"messageId": "a"}));
    h.subscribed(Err(RabbitError::Nacked { queue: "q".into() }));
    let errors = h.fx.emitted("gatewayError");
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["event"], "connect");
    assert_eq!(errors[1]["messageId"], "a");
    assert!(h.fx.publishes().is_empty());
    // It may connect again.
    h.fx.take();
    h.message(json!({"connect": true}));
    assert!(matches!(h.fx.did[0], Did::Subscribe(_)));
}

/// The original's `processResponse`: exactly these relative class names log in, the user from
/// `user` (UserToken) or `result.user` (the Authenticate* answers).
#[test]
fn exactly_the_originals_answers_log_in() {
    let logs_in = [
        json!({"cn": "com.percero.agents.auth.vo.UserToken", "user": {"ID": "u1"}, "token": "t", "deviceId": "d"}),
        json!({"cn": "com.percero.agents.auth.vo.AuthenticateUserAccountResponse", "result": {"user": {"ID": "u1"}, "token": "t", "deviceId": "d"}}),
        json!({"cn": "com.percero.agents.auth.vo.AuthenticateOAuthCodeResponse", "result": {"user": {"id": "u1"}, "token": "t", "deviceId": "d"}}),
        json!({"cn": "com.percero.agents.auth.vo.AuthenticateOAuthAccessTokenResponse", "result": {"user": {"ID": "u1"}, "token": "t", "deviceId": "d"}}),
        json!({"cn": "com.percero.agents.auth.vo.AuthenticationResponse", "result": {"user": {"ID": "u1"}, "token": "t", "deviceId": "d"}}),
    ];
    for answer in logs_in {
        let mut h = Harness::connected();
        h.deliver(7, answer.clone());
        let publishes = h.fx.publishes();
        assert_eq!(publishes.len(), 1, "{answer}");
        let (queue, request) = &publishes[0];
        assert_eq!(queue, "connect");
        assert_eq!(
            request,
            &json!({"cn": "com.percero.agents.sync.vo.ConnectRequest", "clientId": h.client.client_id(),
                    "userId": "u1", "token": "t", "deviceId": "d"})
        );
        assert!(h.fx.did.contains(&Did::Join("u1".into(), None)));
        assert_eq!(h.fx.last_session().user_id.as_deref(), Some("u1"));
    }
    let does_not = [
        json!({"cn": "com.x.FooUserToken", "user": {"ID": "u1"}, "token": "t"}),
        json!({"cn": "com.percero.agents.auth.vo.AuthenticateBasicOAuthResponse", "result": {"user": {"ID": "u1"}, "token": "t"}}),
        json!({"cn": "com.percero.agents.auth.vo.AuthenticationResponse", "user": {"ID": "u1"}, "token": "t"}),
    ];
    for answer in does_not {
        let mut h = Harness::connected();
        h.deliver(7, answer.clone());
        assert!(h.fx.publishes().is_empty(), "{answer}");
        h.request("findById", json!({}));
        assert_eq!(
            h.fx.emitted("gatewayError")[0]["error"],
            "notLoggedIn",
            "{answer}"
        );
    }
}

#[test]
fn a_user_without_a_token_and_a_numeric_id_log_in() {
    let mut h = Harness::connected();
    h.deliver(1, json!({"cn": "UserToken", "user": {"ID": 42}}));
    let (_, request) = &h.fx.publishes()[0];
    assert_eq!(request["userId"], "42");
    assert!(
        request.get("token").is_none(),
        "unset fields are left out: {request}"
    );
    h.request("findById", json!({"messageId": "f"}));
    assert_eq!(h.fx.publishes()[1].0, "findById");
}

#[test]
fn a_reconnect_key_takes_the_old_session_over_once_the_queue_exists() {
    let mut old = Harness::logged_in(json!("u1"));
    old.message(json!({"connect": true}));
    let key = old.fx.emitted("gatewayConnectAck").pop().unwrap();
    let old_id = old.client.client_id().to_string();

    let mut h = Harness::new();
    h.message(json!({"reconnect": {"reconnectId": key, "lastSessionId": "x", "ensureMessageDelivery": true}}));
    assert!(
        h.fx.publishes().is_empty(),
        "the ReconnectRequest waits for the queue"
    );
    h.subscribed(Ok(()));
    let (queue, request) = &h.fx.publishes()[0];
    assert_eq!(queue, "reconnect");
    assert_eq!(request["existingClientId"], old_id);
    assert_eq!(request["existingClientIds"], json!([old_id]));
    assert_eq!(request["userId"], "u1");
    let session = h.fx.last_session();
    assert_eq!(session.existing_client_id.as_deref(), Some(old_id.as_str()));
    assert_ne!(session.client_id, old_id);
}

#[test]
fn a_bad_reconnect_key_gets_a_fresh_working_client() {
    let mut h = Harness::new();
    h.message(json!({"reconnect": {"reconnectId": "nonsense"}}));
    assert_eq!(h.fx.emitted("gatewayError")[0]["error"], "badReconnectId");
    h.subscribed(Ok(()));
    let session = h.fx.last_session();
    assert_eq!(session.existing_client_id, None);
    assert!(h.fx.publishes().is_empty());
}

#[test]
fn a_reconnect_response_forgets_the_older_client() {
    let mut old = Harness::logged_in(json!("u1"));
    old.message(json!({"connect": true}));
    let key = old.fx.emitted("gatewayConnectAck").pop().unwrap();
    let mut h = Harness::new();
    h.message(json!({"reconnect": {"reconnectId": key}}));
    h.subscribed(Ok(()));
    h.deliver(3, json!({"cn": "com.percero.agents.sync.vo.ReconnectResponse", "clientId": h.client.client_id()}));
    assert_eq!(h.fx.last_session().existing_client_id, None);
    h.fx.take();
    h.deliver(
        4,
        json!({"cn": "UserToken", "user": {"ID": "u1"}, "token": "t"}),
    );
    assert_eq!(
        h.fx.publishes()[0].0,
        "connect",
        "a ConnectRequest, not a ReconnectRequest"
    );
}

#[test]
fn an_empty_client_id_in_a_connect_or_reconnect_response_logs_out() {
    for cn in [
        "ConnectResponse",
        "com.percero.agents.sync.vo.ReconnectResponse",
    ] {
        let mut h = Harness::logged_in(json!("u1"));
        h.deliver(3, json!({"cn": cn, "clientId": ""}));
        assert!(h.fx.did.contains(&Did::Leave("u1".into())));
        h.request("findById", json!({}));
        assert_eq!(
            h.fx.emitted("gatewayError")[0]["error"],
            "notLoggedIn",
            "{cn}"
        );
    }
}

/// The original closes the socket on `logout`: its disposal sends the sync DisconnectRequest,
/// still with the user; then the auth DisconnectRequest; then the client's logout request.
#[test]
fn logout_closes_and_tells_the_backend_in_the_originals_order() {
    let mut h = Harness::logged_in(json!("u1"));
    h.deliver(9, json!({"cn": "X", "correspondingMessageId": "m"}));
    h.fx.take();
    h.request(
        "logout",
        json!({"cn": "com.percero.agents.sync.vo.LogoutRequest", "messageId": "l"}),
    );
    let queues: Vec<_> = h.fx.publishes().into_iter().map(|(q, _)| q).collect();
    assert_eq!(queues, ["disconnect", "disconnectAuth", "logout"]);
    let publishes = h.fx.publishes();
    assert_eq!(publishes[0].1["userId"], "u1");
    assert_eq!(publishes[0].1["token"], "tok");
    assert_eq!(
        publishes[1].1["cn"],
        "com.percero.agents.auth.vo.DisconnectRequest"
    );
    assert_eq!(publishes[1].1["userId"], "u1");
    assert!(h.fx.did.contains(&Did::Settle(9, Settle::Requeue)));
    assert!(h.fx.did.contains(&Did::Unsubscribe(AfterCancel::Keep)));
    assert_eq!(h.fx.did.last(), Some(&Did::Close(Close::Logout)));
    // Disposed once: the socket's closing sends nothing more.
    h.fx.take();
    h.client.dispose(&mut h.fx);
    assert!(h.fx.did.is_empty());
}

#[test]
fn logout_before_login_or_connect_sends_what_the_original_sends() {
    let mut h = Harness::new();
    h.request("logout", json!({}));
    let queues: Vec<_> = h.fx.publishes().into_iter().map(|(q, _)| q).collect();
    assert_eq!(queues, ["disconnectAuth"]);
    let mut h = Harness::connected();
    h.request("logout", json!({}));
    let queues: Vec<_> = h.fx.publishes().into_iter().map(|(q, _)| q).collect();
    assert_eq!(queues, ["disconnect", "disconnectAuth"]);
}

#[test]
fn the_disconnect_request_has_only_the_fields_percero_decodes() {
    let mut old = Harness::logged_in(json!("u1"));
    old.message(json!({"connect": true}));
    let key = old.fx.emitted("gatewayConnectAck").pop().unwrap();
    let mut h = Harness::new();
    h.message(json!({"reconnect": {"reconnectId": key}}));
    h.subscribed(Ok(()));
    h.fx.take();
    h.client.dispose(&mut h.fx);
    let (queue, request) = &h.fx.publishes()[0];
    assert_eq!(queue, "disconnect");
    let keys: Vec<_> = request.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["cn", "clientId", "deviceId", "token", "userId"]);
}

#[test]
fn no_disconnect_request_for_a_client_that_never_connected() {
    let mut h = Harness::new();
    h.client.dispose(&mut h.fx);
    assert!(h.fx.did.is_empty());
}

#[test]
fn eol_disposes_its_own_client_and_is_acked_for_another() {
    let mut h = Harness::connected();
    h.deliver(1, json!({"EOL": true, "clientId": "someone-else"}));
    assert_eq!(h.fx.take(), vec![Did::Settle(1, Settle::Ack)]);
    let own = h.client.client_id().to_string();
    h.deliver(2, json!({"EOL": true, "clientId": own}));
    let did = h.fx.take();
    assert_eq!(did[0], Did::Settle(2, Settle::Ack));
    assert!(did.contains(&Did::Unsubscribe(AfterCancel::Delete)));
    assert!(
        matches!(&did[..], [.., Did::Publish(q, _), Did::Close(Close::EndOfLife)] if q == "disconnect")
    );
}

#[test]
fn pushes_are_acked_when_written_or_when_the_client_acks() {
    let mut h = Harness::connected();
    h.deliver(1, json!({"cn": "PushUpdateResponse"}));
    assert_eq!(
        h.fx.take(),
        vec![Did::Push(json!({"cn": "PushUpdateResponse"}), Some(1))]
    );
    h.deliver(2, json!({"cn": "R", "correspondingMessageId": 5}));
    assert_eq!(
        h.fx.take(),
        vec![Did::Push(
            json!({"cn": "R", "correspondingMessageId": 5}),
            None
        )]
    );
    assert_eq!(
        h.client.next_resend(),
        Some(h.now + Duration::from_millis(1000))
    );
    h.message(json!({"ack": {"correspondingMessageId": "5"}}));
    assert_eq!(h.fx.take(), vec![Did::Settle(2, Settle::Ack)]);
    assert_eq!(h.client.next_resend(), None);
}

#[test]
fn unacked_pushes_are_sent_again_every_interval() {
    let mut h = Harness::connected();
    h.deliver(2, json!({"cn": "R", "correspondingMessageId": "m"}));
    h.fx.take();
    h.now += Duration::from_millis(999);
    let ctx = h.ctx();
    h.client.on_resend_due(&ctx, &mut h.fx);
    assert!(h.fx.take().is_empty());
    h.now += Duration::from_millis(1);
    let ctx = h.ctx();
    h.client.on_resend_due(&ctx, &mut h.fx);
    assert_eq!(h.fx.take().len(), 1);
    assert_eq!(
        h.client.next_resend(),
        Some(h.now + Duration::from_millis(1000))
    );
    // A redelivery of the same message replaces the older delivery (acked).
    h.deliver(3, json!({"cn": "R", "correspondingMessageId": "m"}));
    assert!(h.fx.did.contains(&Did::Settle(2, Settle::Ack)));
}

#[test]
fn what_is_not_a_json_object_is_dropped_without_requeue() {
    let mut h = Harness::connected();
    let ctx = h.ctx();
    h.client.on_delivery(&ctx, 1, b"[1,2]".to_vec(), &mut h.fx);
    h.client
        .on_delivery(&ctx, 2, b"not json".to_vec(), &mut h.fx);
    assert_eq!(
        h.fx.take(),
        vec![
            Did::Settle(1, Settle::Discard),
            Did::Settle(2, Settle::Discard)
        ]
    );
}

#[test]
fn send_ack_is_answered_once_the_broker_confirms() {
    let mut h = Harness::connected();
    h.request(
        "testCall",
        json!({"messageId": "m1", "sendAck": true, "clientId": "forged"}),
    );
    assert_eq!(h.fx.publishes()[0].1["clientId"], h.client.client_id());
    assert!(h.fx.emitted("ack").is_empty());
    let then = h.fx.thens.remove(0);
    h.client.on_published(then, Ok(()), &mut h.fx);
    assert_eq!(h.fx.emitted("ack"), vec![json!("m1")]);
    h.request(
        "getServiceUsers",
        json!({"messageId": "m2", "sendAck": true}),
    );
    let then = h.fx.thens.remove(0);
    let unroutable = RabbitError::Unroutable {
        queue: "getServiceUsers".into(),
    };
    h.client.on_published(then, Err(unroutable), &mut h.fx);
    assert_eq!(h.fx.emitted("gatewayError")[0]["error"], "unroutable");
    assert_eq!(h.fx.emitted("ack").len(), 1);
}

#[test]
fn bad_requests_get_a_gateway_error() {
    let mut h = Harness::connected();
    h.request("rm -rf", json!({}));
    h.request("findById", json!({"messageId": 3}));
    h.request("testCall", json!([1]));
    let codes: Vec<_> =
        h.fx.emitted("gatewayError")
            .iter()
            .map(|e| e["error"].clone())
            .collect();
    assert_eq!(
        codes,
        [
            json!("unknownEvent"),
            json!("notLoggedIn"),
            json!("malformed")
        ]
    );
    assert_eq!(h.fx.emitted("gatewayError")[1]["messageId"], 3);
}

#[test]
fn a_queue_deleted_by_the_broker_disposes_and_closes() {
    let mut h = Harness::connected();
    h.client.on_queue_gone(&mut h.fx);
    let did = h.fx.take();
    assert!(did.contains(&Did::Unsubscribe(AfterCancel::Delete)));
    assert_eq!(did.last(), Some(&Did::Close(Close::QueueGone)));
    h.deliver(5, json!({"cn": "late"}));
    assert_eq!(h.fx.take(), vec![Did::Settle(5, Settle::Requeue)]);
}

/// The backend manages the queues of clients it knows (logged in, or taking a logged-in session
/// over); an anonymous client's queue goes with it.
#[test]
fn only_queues_the_backend_knows_outlive_their_client() {
    let mut h = Harness::connected();
    h.client.dispose(&mut h.fx);
    assert!(h.fx.did.contains(&Did::Unsubscribe(AfterCancel::Delete)));

    let mut h = Harness::logged_in(json!("u1"));
    h.client.dispose(&mut h.fx);
    assert!(h.fx.did.contains(&Did::Unsubscribe(AfterCancel::Keep)));

    let mut old = Harness::logged_in(json!("u1"));
    old.message(json!({"connect": true}));
    let key = old.fx.emitted("gatewayConnectAck").pop().unwrap();
    let mut h = Harness::new();
    h.message(json!({"reconnect": {"reconnectId": key}}));
    h.subscribed(Ok(()));
    h.client.dispose(&mut h.fx);
    assert!(h.fx.did.contains(&Did::Unsubscribe(AfterCancel::Keep)));
}

#[tokio::test(start_paused = true)]
async fn requests_over_the_clients_rate_are_refused() {
    let mut h = Harness::new();
    h.client = Client::new(Limits {
        requests_per_second: 3,
    });
    h.message(json!({"connect": true}));
    h.subscribed(Ok(()));
    h.fx.take();
    for i in 0..5 {
        h.request("testCall", json!({"messageId": i}));
    }
    assert_eq!(h.fx.publishes().len(), 3);
    let errors = h.fx.emitted("gatewayError");
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["error"], "rateLimited");
    assert_eq!(errors[0]["messageId"], 3);
    h.fx.take();
    h.now += Duration::from_secs(1);
    h.request("testCall", json!({"messageId": "later"}));
    assert_eq!(h.fx.publishes().len(), 1);
}

#[test]
fn a_long_event_name_is_cut_in_the_error() {
    let mut h = Harness::connected();
    let name = "x".repeat(10_000);
    h.request(&name, json!({}));
    let error = &h.fx.emitted("gatewayError")[0];
    assert!(error["event"].as_str().unwrap().len() < 100, "{error}");
    assert!(error["message"].as_str().unwrap().len() < 150, "{error}");
}

/// A socket that takes a logged-in session over is that user's socket at once: pushes to the
/// user reach it, and it resumes the user's realtime channel from where the client says.
#[test]
fn a_reconnected_logged_in_socket_joins_its_user() {
    let mut old = Harness::logged_in(json!("u1"));
    old.message(json!({"connect": true}));
    let key = old.fx.emitted("gatewayConnectAck").pop().unwrap();
    let mut h = Harness::new();
    let resume = json!({"offset": 7, "epoch": "e"});
    h.message(json!({"reconnect": {"reconnectId": key, "realtime": resume}}));
    assert!(
        h.fx.did.contains(&Did::Join("u1".into(), Some(resume))),
        "{:?}",
        h.fx.did
    );
}
