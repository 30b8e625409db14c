//! The Percero double (tests/common/percero.rs) on its own: its decoder against what
//! syncengine's classes and Jackson 1.9 accept, its client registry, and, on RabbitMQ, its
//! answers and its moving and ending of client queues. The end-to-end tests trust it to refuse
//! and answer as Percero would; these tests are why.

mod common;

use common::percero::backend::Backend;
use common::percero::classes::{self, Decoded, JavaType};
use common::percero::{self, Percero};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};

fn decode(body: &Value) -> Decoded {
    classes::decode(body.to_string().as_bytes())
}

#[track_caller]
fn assert_decoded(body: Value, class: &str) {
    match decode(&body) {
        Decoded::Request { class: got, .. } => assert_eq!(got, class, "{body}"),
        other => panic!("{body} should decode as {class}: {other:?}"),
    }
}

#[track_caller]
fn assert_refused(body: Value, because: &str) {
    match decode(&body) {
        Decoded::Refused(reason) => {
            assert!(reason.starts_with("Unable to process message"), "{reason}");
            assert!(
                reason.contains(because),
                "{body}: {reason} (expected {because:?})"
            );
        }
        other => panic!("{body} should be refused: {other:?}"),
    }
}

// ----- the classes, as read from syncengine -----

#[test]
fn the_classes_have_the_properties_of_their_java_sources() {
    let names = |class: &str| -> Vec<&str> {
        classes::properties(class)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    let sync = [
        "userId",
        "token",
        "sendAck",
        "clientType",
        "clientId",
        "responseChannel",
        "deviceId",
        "regAppKey",
        "svcOauthKey",
        "messageId",
    ];
    for class in [
        classes::CONNECT_REQUEST,
        classes::DISCONNECT_REQUEST,
        classes::HIBERNATE_REQUEST,
    ] {
        assert_eq!(names(class), sync, "{class}");
    }
    let mut reconnect = sync.to_vec();
    reconnect.extend(["existingClientId", "existingClientIds"]);
    assert_eq!(names(classes::RECONNECT_REQUEST), reconnect);
    assert_eq!(
        classes::properties(classes::RECONNECT_REQUEST).last(),
        Some(&("existingClientIds", JavaType::StrArray))
    );
    let auth = [
        "userId",
        "token",
        "clientType",
        "clientId",
        "deviceId",
        "messageId",
        "regAppKey",
        "authProvider",
    ];
    assert_eq!(names(classes::AUTH_DISCONNECT_REQUEST), auth);
    assert!(classes::is_a(
        classes::RECONNECT_REQUEST,
        classes::CONNECT_REQUEST
    ));
    assert!(!classes::is_a(
        classes::CONNECT_REQUEST,
        classes::RECONNECT_REQUEST
    ));
    assert!(classes::source(classes::LOGOUT_REQUEST).ends_with("sync/vo/LogoutRequest.java"));
}

// ----- what Percero takes -----

#[test]
fn requests_as_the_original_gateway_sends_them_decode() {
    // orig/src/service/client.js: populateMessage of a logged-in session; undefined fields are
    // left out by JSON.stringify.
    assert_decoded(
        json!({"cn": classes::CONNECT_REQUEST, "clientId": "c2", "deviceId": "d", "token": "t", "userId": "u"}),
        classes::CONNECT_REQUEST,
    );
    assert_decoded(
        json!({"cn": classes::RECONNECT_REQUEST, "clientId": "c2", "existingClientId": "c1",
               "existingClientIds": ["c0", "c1"], "deviceId": "d", "token": "t", "userId": "u"}),
        classes::RECONNECT_REQUEST,
    );
    // dispose() deletes existingClientId(s) from the DisconnectRequest.
    assert_decoded(
        json!({"cn": classes::DISCONNECT_REQUEST, "clientId": "c2", "deviceId": "d", "token": "t", "userId": "u"}),
        classes::DISCONNECT_REQUEST,
    );
    // The SDK's requests (sdk/src/ActiveStackApi.js, ActiveStackClient.js).
    assert_decoded(
        json!({"messageId": "m", "cn": classes::FIND_BY_ID_REQUEST, "theClassName": "X",
               "theClassId": "1", "regAppKey": "", "clientType": "", "svcOauthKey": "", "clientId": "c"}),
        classes::FIND_BY_ID_REQUEST,
    );
    assert_decoded(
        json!({"messageId": "m", "cn": classes::LOGOUT_REQUEST, "pleaseDestroyClient": false, "clientId": "c"}),
        classes::LOGOUT_REQUEST,
    );
    assert_decoded(
        json!({"messageId": "m", "cn": classes::AUTHENTICATION_REQUEST, "deviceId": "d",
               "authProvider": "p", "credential": "a:b", "clientId": "c"}),
        classes::AUTHENTICATION_REQUEST,
    );
}

#[test]
fn scalars_and_nulls_are_taken_as_jackson_takes_them() {
    // A String takes any scalar: a numeric userId (the original copies `user.ID` as it is).
    assert_decoded(
        json!({"cn": classes::CONNECT_REQUEST, "userId": 42, "token": true, "deviceId": 1.5}),
        classes::CONNECT_REQUEST,
    );
    // Nulls are nulls, for every type.
    assert_decoded(
        json!({"cn": classes::RECONNECT_REQUEST, "userId": null, "existingClientIds": null, "sendAck": null}),
        classes::RECONNECT_REQUEST,
    );
    // Boolean: true/false, integers, "true"/"false"/"".
    for ok in [json!(true), json!(0), json!(7), json!("false"), json!("")] {
        assert_decoded(
            json!({"cn": classes::CONNECT_REQUEST, "sendAck": ok}),
            classes::CONNECT_REQUEST,
        );
    }
    // String[]: an array of scalars, nulls included.
    assert_decoded(
        json!({"cn": classes::RECONNECT_REQUEST, "existingClientIds": ["a", null, 3]}),
        classes::RECONNECT_REQUEST,
    );
    // The order of `cn` does not matter (Jackson buffers until it has the type id).
    assert_decoded(
        json!({"clientId": "c", "cn": classes::HIBERNATE_REQUEST}),
        classes::HIBERNATE_REQUEST,
    );
}

// ----- what Percero refuses -----

#[test]
fn unknown_properties_are_refused() {
    // The rewrite's DisconnectRequest after a reconnect (compat-audit item 5).
    assert_refused(
        json!({"cn": classes::DISCONNECT_REQUEST, "clientId": "c2", "userId": null, "token": null,
               "deviceId": null, "existingClientId": "c1", "existingClientIds": ["c1"]}),
        "Unrecognized field \"existingClientId\" (Class com.percero.agents.sync.vo.DisconnectRequest)",
    );
    // The original's own auth DisconnectRequest and HibernateRequest after a reconnect carry
    // existingClientId(s) too: neither class has them.
    assert_refused(
        json!({"cn": classes::AUTH_DISCONNECT_REQUEST, "clientId": "c2", "existingClientId": "c1"}),
        "Unrecognized field \"existingClientId\"",
    );
    assert_refused(
        json!({"cn": classes::HIBERNATE_REQUEST, "clientId": "c2", "existingClientIds": ["c1"]}),
        "Unrecognized field \"existingClientIds\"",
    );
    // A ConnectRequest has no existingClientId(s) either (only ReconnectRequest does).
    assert_refused(
        json!({"cn": classes::CONNECT_REQUEST, "existingClientIds": ["c1"]}),
        "Unrecognized field \"existingClientIds\"",
    );
    // AuthRequest has no sendAck (SyncRequest does).
    assert_refused(
        json!({"cn": classes::AUTH_REQUEST, "sendAck": true}),
        "Unrecognized field \"sendAck\" (Class com.percero.agents.auth.vo.AuthRequest)",
    );
}

#[test]
fn values_of_the_wrong_kind_are_refused() {
    assert_refused(
        json!({"cn": classes::RECONNECT_REQUEST, "existingClientIds": "c1"}),
        "java.lang.String[] out of VALUE_STRING",
    );
    assert_refused(
        json!({"cn": classes::RECONNECT_REQUEST, "existingClientIds": [["c1"]]}),
        "out of START_ARRAY",
    );
    assert_refused(
        json!({"cn": classes::CONNECT_REQUEST, "userId": {"ID": "u"}}),
        "java.lang.String out of START_OBJECT",
    );
    assert_refused(
        json!({"cn": classes::CONNECT_REQUEST, "token": ["t"]}),
        "java.lang.String out of START_ARRAY",
    );
    assert_refused(
        json!({"cn": classes::CONNECT_REQUEST, "sendAck": "yes"}),
        "java.lang.Boolean out of VALUE_STRING",
    );
    assert_refused(
        json!({"cn": classes::LOGOUT_REQUEST, "pleaseDestroyClient": 1.5}),
        "java.lang.Boolean out of VALUE_NUMBER_FLOAT",
    );
}

#[test]
fn a_message_without_a_class_is_refused() {
    // JsonDecoder: node.get("cn").getTextValue() -> MappedClass.forName.
    assert_refused(json!({"clientId": "c"}), "NullPointerException");
    assert_refused(json!({"cn": 7}), "NullPointerException");
    assert_refused(
        json!([{"cn": classes::CONNECT_REQUEST}]),
        "NullPointerException",
    );
    assert_refused(
        json!({"cn": "TestCall"}),
        "ClassNotFoundException: TestCall",
    );
    match classes::decode(b"{not json") {
        Decoded::Refused(reason) => assert!(reason.contains("JsonParseException"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // A Percero class the double does not model is neither taken nor refused.
    assert_eq!(
        decode(&json!({"cn": "com.percero.agents.sync.vo.PutRequest"})),
        Decoded::Unmodelled("com.percero.agents.sync.vo.PutRequest".into())
    );
}

// ----- the registry -----

#[test]
fn a_reconnect_finds_the_devices_clients_and_moves_the_token() {
    let mut backend = Backend::new();
    let token = backend.login_user_account("u", Some("c1"), Some("d"));
    assert!(backend.authenticate_oauth(Some("u"), Some(&token.token), "c1", None, Some("d"), None));
    backend.register_client("c1", Some("u"), Some("d"), None);
    // The token is for c1 only.
    assert!(!backend.validate_user_by_token(Some("u"), Some(&token.token), Some("c2")));
    let existing = backend.find_client_by_user_id_device_id(Some("u"), Some("d"));
    assert_eq!(existing, vec![Some("c1".to_string())]);
    assert!(backend.authenticate_oauth(
        Some("u"),
        Some(&token.token),
        "c2",
        None,
        Some("d"),
        Some(&existing)
    ));
    assert!(backend.validate_user_by_token(Some("u"), Some(&token.token), Some("c2")));
    // The device keeps its old client too (renames only add to device:<id>).
    assert_eq!(
        backend.find_client_by_user_id_device_id(Some("u"), Some("d")),
        vec![Some("c1".to_string()), Some("c2".to_string())]
    );
    // A user with no client on the device: the inverted hasText test adds a null.
    assert_eq!(
        backend.find_client_by_user_id_device_id(Some("v"), Some("d")),
        vec![Some("c1".to_string()), Some("c2".to_string()), None]
    );
    // Hibernation needs the right user.
    assert!(!backend.hibernate_client("c2", None));
    assert!(backend.hibernate_client("c2", Some("u")));
}

// ----- on RabbitMQ -----

/// A reply queue of the test's own in the double's vhost, and what arrives on it.
fn replies(percero: &Percero, queue: &str, want: usize) -> Vec<Value> {
    common::wait_for(&format!("{want} messages in {queue}"), || {
        let seen = percero.peek(queue);
        (seen.len() >= want).then_some(seen)
    })
}

#[test]
fn login_connect_and_a_refused_request_on_rabbitmq() {
    let percero = Percero::start();
    let client = "0123456789abcdef0123456789abcdef";
    percero
        .declare(client, FieldTable::default())
        .expect("the reply queue");
    percero.request(
        "authenticate",
        &json!({"cn": classes::AUTHENTICATION_REQUEST, "authProvider": percero::AUTH_PROVIDER,
                "credential": "alice:pw", "deviceId": "d", "clientId": client, "messageId": "m1"}),
        client,
    );
    let answer = replies(&percero, client, 1).remove(0);
    assert_eq!(
        answer["cn"], "com.percero.agents.auth.vo.AuthenticationResponse",
        "{answer}"
    );
    assert_eq!(answer["correspondingMessageId"], "m1");
    assert_eq!(answer["statusCode"], 200);
    let token = &answer["result"];
    assert_eq!(token["cn"], "com.percero.agents.auth.vo.UserToken");
    assert_eq!(token["user"]["ID"], "alice");
    assert_eq!(token["clientId"], client);
    assert_eq!(token["deviceId"], "d");
    // A ConnectRequest refused for an unknown property gets no answer, and registers nothing.
    percero.request(
        "connect",
        &json!({"cn": classes::CONNECT_REQUEST, "clientId": client, "userId": "alice",
                "token": token["token"], "deviceId": "d", "existingClientId": "x"}),
        client,
    );
    // A good one is answered with the client registered.
    percero.request(
        "connect",
        &json!({"cn": classes::CONNECT_REQUEST, "clientId": client, "userId": "alice",
                "token": token["token"], "deviceId": "d"}),
        client,
    );
    let answers = replies(&percero, client, 2);
    let received = percero.from(client);
    let connects: Vec<_> = received.iter().filter(|r| r.queue == "connect").collect();
    assert_eq!(connects.len(), 2);
    assert!(connects[0].refusal().is_some());
    assert!(connects[1].decoded());
    let connected = &answers[1];
    assert_eq!(
        connected["cn"], "com.percero.agents.sync.vo.ConnectResponse",
        "{connected}"
    );
    assert_eq!(connected["clientId"], client);
    assert_eq!(connected["data"], "CONNECT");
    assert!(connected["dataID"].is_string());
    assert!(percero.is_logged_in(client));
}

#[test]
fn rename_moves_the_messages_and_remove_leaves_an_eol() {
    let percero = Percero::start();
    let (old, new) = ("old-client-queue", "new-client-queue");
    for queue in [old, new] {
        percero.declare(queue, FieldTable::default()).unwrap();
    }
    percero.push_all(
        old,
        vec![
            json!({"cn": "A", "n": 1}),
            json!({"EOL": true, "clientId": "x"}),
            json!({"cn": "B", "n": 2}),
        ],
    );
    assert!(percero.rename_client(old, new));
    // Moved in order; the EOL found in the old queue stays there, and removeClient purged the
    // queue and published its own EOL.
    let moved = percero.peek(new);
    assert_eq!(
        moved,
        vec![json!({"cn": "A", "n": 1}), json!({"cn": "B", "n": 2})]
    );
    assert_eq!(
        percero.peek(old),
        vec![json!({"EOL": true, "clientId": old})]
    );
    assert!(percero.eol_clients().contains(&old.to_string()));
    // A second removeClient does nothing: the client is in eolClients.
    assert!(percero.remove_client(old));
    assert_eq!(percero.queue(old).map(|q| q.messages), Some(1));

    // A queue declared with arguments cannot be removed: Percero's no-argument declare fails.
    let expiring = "expiring-client-queue";
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongLongInt(600_000));
    percero.declare(expiring, arguments).unwrap();
    assert!(!percero.remove_client(expiring));
    assert_eq!(percero.queue(expiring).map(|q| q.messages), Some(0));
    assert!(!percero.eol_clients().contains(&expiring.to_string()));
}
