//! ActiveStack sockets and realtime: a logged-in socket.io client gets its user's `personal`
//! publications as the `realtime` event, on whichever worker it is, and a socket that comes back
//! with its reconnect key and the last position it saw recovers exactly what it missed. Real
//! npm socket.io-client, the echo agent on RabbitMQ, real Redis.

mod common;
mod realtime_support;

use activestack_gateway::gateway::session::Session;
use common::Cluster;
use common::agent::{JsClient, SECRET, gateway_config, start_agent};
use serde_json::{Value, json};

fn start() -> Cluster {
    start_agent();
    let id = realtime_support::unique();
    Cluster::start(&format!(
        "{}{}",
        gateway_config(),
        realtime_support::realtime_keys(&id)
    ))
}

/// `message{connect}`, then a login as `user` through the echo agent; the logged-in key.
fn logged_in(cluster: &Cluster, user: &str) -> (JsClient, String) {
    let mut client = JsClient::connect(cluster);
    client.gateway_connect();
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
    (client, key.as_str().unwrap().to_string())
}

/// The next `n` `realtime` events.
fn publications(client: &mut JsClient, n: usize) -> Vec<Value> {
    (0..n).map(|_| client.wait("realtime", |_| true)).collect()
}

#[test]
fn a_logged_in_socket_gets_its_users_publications_and_recovers_after_a_reconnect() {
    let cluster = start();
    let addr = cluster.addr();
    let user = format!("rt-user-{}", realtime_support::unique());
    let channel = format!("personal:#{user}");
    let (mut client, key) = logged_in(&cluster, &user);
    let (mut other, _) = logged_in(&cluster, &format!("{user}-other"));
    let subscribed = client.wait("realtimeSubscribed", |_| true);
    assert_eq!(subscribed["channel"], channel.as_str());
    assert_eq!(subscribed["recovered"], false);
    other.wait("realtimeSubscribed", |_| true);

    for n in 0..3 {
        realtime_support::publish(addr, &channel, json!({"n": n}));
    }
    let live = publications(&mut client, 3);
    let ns: Vec<_> = live.iter().map(|p| p["data"]["n"].clone()).collect();
    assert_eq!(ns, [json!(0), json!(1), json!(2)]);
    assert!(live.iter().all(|p| p["channel"] == channel.as_str()));
    let last = live.last().unwrap().clone();

    // Away: five more are published; back with the key and the last position seen.
    client.close();
    for n in 3..8 {
        realtime_support::publish(addr, &channel, json!({"n": n}));
    }
    let mut back = JsClient::connect(&cluster);
    back.emit(
        "message",
        json!({"reconnect": {"reconnectId": key,
               "realtime": {"offset": last["offset"], "epoch": last["epoch"]}}}),
    );
    let subscribed = back.wait("realtimeSubscribed", |_| true);
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    let recovered = publications(&mut back, 5);
    let ns: Vec<_> = recovered.iter().map(|p| p["data"]["n"].clone()).collect();
    assert_eq!(ns, [json!(3), json!(4), json!(5), json!(6), json!(7)]);
    let offsets: Vec<u64> = recovered
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    let first = last["offset"].as_u64().unwrap() + 1;
    assert_eq!(offsets, (first..first + 5).collect::<Vec<_>>());

    // Live again, no duplicate; the other user saw none of it.
    realtime_support::publish(addr, &channel, json!({"n": 8}));
    assert_eq!(publications(&mut back, 1)[0]["data"]["n"], 8);
    assert!(!back.try_wait("realtime", |_| true), "no duplicate");
    assert!(
        !other.try_wait("realtime", |_| true),
        "another user's socket got nothing"
    );
}

#[test]
fn a_socket_away_past_the_history_is_told_it_did_not_recover() {
    let cluster = start();
    let user = format!("rt-user-{}", realtime_support::unique());
    let channel = format!("personal:#{user}");
    let (mut client, key) = logged_in(&cluster, &user);
    client.wait("realtimeSubscribed", |_| true);
    realtime_support::publish(cluster.addr(), &channel, json!({"n": 0}));
    let seen = publications(&mut client, 1).remove(0);
    client.close();
    let mut back = JsClient::connect(&cluster);
    // A position from another epoch cannot be recovered from.
    back.emit(
        "message",
        json!({"reconnect": {"reconnectId": key,
               "realtime": {"offset": seen["offset"], "epoch": "not-the-epoch"}}}),
    );
    let subscribed = back.wait("realtimeSubscribed", |_| true);
    assert_eq!(subscribed["recovered"], false, "{subscribed}");
    assert!(!back.try_wait("realtime", |_| true), "nothing replayed");
}
