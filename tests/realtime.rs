//! Realtime delivery end to end: a 2-worker cluster with `realtime.enabled`, real Redis, and
//! real clients only: centrifuge-js 5 (npm `centrifuge` over `ws`), PyPI `cent`, a raw
//! websocket client for exact codes, an SSE reader. Each test has its own users, channels and
//! consumer; the Redis keys are under the cluster's own control channel.

mod common;
mod realtime_support;

use std::net::SocketAddr;

use common::{Cluster, signal_pid, wait_for};
use nix::sys::signal::Signal;
use realtime_support::*;
use serde_json::{Value, json};

fn start(extra: &str) -> (Cluster, SocketAddr) {
    let cluster = Cluster::start(&format!("{}{extra}", realtime_keys(&unique())));
    let addr = cluster.addr();
    (cluster, addr)
}

#[test]
fn cent_publishes_and_reads_history_presence_and_info() {
    let (cluster, addr) = start("");
    let channel = format!("personal:#cent{}", unique());
    let first = cent(
        addr,
        API_KEY,
        "publish",
        json!({"channel": channel, "data": {"n": 1}}),
    );
    assert_eq!(first["result"]["offset"], 1, "{first}");
    let epoch = first["result"]["epoch"].as_str().unwrap().to_string();
    assert!(!epoch.is_empty());
    let second = cent(
        addr,
        API_KEY,
        "publish",
        json!({"channel": channel, "data": {"n": 2}, "idempotency_key": "k1"}),
    );
    assert_eq!(second["result"]["offset"], 2);
    // The same idempotency key: not published again, the first result.
    let again = cent(
        addr,
        API_KEY,
        "publish",
        json!({"channel": channel, "data": {"n": 3}, "idempotency_key": "k1"}),
    );
    assert_eq!(again["result"], second["result"]);

    let history = cent(
        addr,
        API_KEY,
        "history",
        json!({"channel": channel, "limit": -1}),
    );
    let pubs = history["result"]["publications"].as_array().unwrap();
    assert_eq!(pubs.len(), 2, "{history}");
    assert_eq!(pubs[0]["data"], json!({"n": 1}));
    assert_eq!(pubs[1]["offset"], 2);
    assert_eq!(history["result"]["offset"], 2);
    assert_eq!(history["result"]["epoch"], epoch);
    // No limit: only the top (Centrifugo's rule).
    let top = cent(addr, API_KEY, "history", json!({"channel": channel}));
    assert_eq!(top["result"]["publications"], json!([]));
    assert_eq!(top["result"]["offset"], 2);
    // Since offset 1 of the epoch: the second only; another epoch: 112.
    let since = cent(
        addr,
        API_KEY,
        "history",
        json!({"channel": channel, "limit": 10, "since": {"offset": 1, "epoch": epoch}}),
    );
    assert_eq!(since["result"]["publications"].as_array().unwrap().len(), 1);
    let other = cent(
        addr,
        API_KEY,
        "history",
        json!({"channel": channel, "limit": 10, "since": {"offset": 1, "epoch": "nope"}}),
    );
    assert_eq!(other["code"], 112, "{other}");

    let broadcast = cent(
        addr,
        API_KEY,
        "broadcast",
        json!({"channels": [channel, "nowhere:1"], "data": {"n": 4}}),
    );
    let responses = broadcast["result"]["responses"].as_array().unwrap();
    assert_eq!(responses[0]["result"]["offset"], 3, "{broadcast}");
    assert_eq!(responses[1]["error"]["code"], 102);

    let unknown = cent(
        addr,
        API_KEY,
        "publish",
        json!({"channel": "chat:1", "data": {}}),
    );
    assert_eq!(
        unknown,
        json!({"error": "CentApiResponseError", "code": 102})
    );
    let stats = cent(addr, API_KEY, "presence_stats", json!({"channel": channel}));
    assert_eq!(stats["result"], json!({"num_clients": 0, "num_users": 0}));
    let info = cent(addr, API_KEY, "info", json!({}));
    assert!(
        !info["result"]["nodes"].as_array().unwrap().is_empty(),
        "{info}"
    );

    // A wrong key: cent's unauthorized error, nothing published.
    let refused = cent(
        addr,
        "wrong",
        "publish",
        json!({"channel": channel, "data": {}}),
    );
    assert_eq!(refused["error"], "CentUnauthorizedError", "{refused}");
    let top = cent(addr, API_KEY, "history", json!({"channel": channel}));
    assert_eq!(top["result"]["offset"], 3, "nothing changed");
    cluster.wait_log(&["realtime API: refused, bad or missing API key (401)"]);
}

#[test]
fn the_api_answers_with_centrifugos_statuses() {
    let (_cluster, addr) = start("");
    let channel = format!("personal:#raw{}", unique());
    let body = json!({"channel": channel, "data": {"x": 1}}).to_string();
    let (status, response) = http(addr, "POST", "/api/publish", &[("X-API-Key", "bad")], &body);
    assert_eq!((status, body_of(&response)), (401, ""));
    let (status, _) = http(addr, "POST", "/api/publish", &[], &body);
    assert_eq!(status, 401);
    let (status, response) = http(
        addr,
        "POST",
        "/api/publish",
        &[("Authorization", &format!("apikey {API_KEY}"))],
        &body,
    );
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        serde_json::from_str::<Value>(body_of(&response)).unwrap()["result"]["offset"],
        1
    );
    let (status, response) = http(
        addr,
        "POST",
        "/api/publish",
        &[("X-API-Key", API_KEY)],
        "{not json",
    );
    assert_eq!((status, body_of(&response)), (400, "Bad Request"));
    let (status, _) = http(addr, "GET", "/api/publish", &[("X-API-Key", API_KEY)], "");
    assert_eq!(status, 405);
    let (status, response) = http(
        addr,
        "POST",
        "/api/publish",
        &[("X-API-Key", API_KEY)],
        &json!({"channel": channel}).to_string(),
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(body_of(&response)).unwrap()["error"]["code"],
        107,
        "no data"
    );
}

#[test]
fn centrifuge_js_gets_its_users_publications_only_and_recovers_what_it_missed() {
    let (_cluster, addr) = start("");
    let (alice, bob) = (format!("alice{}", unique()), format!("bob{}", unique()));
    let (a_channel, b_channel) = (format!("personal:#{alice}"), format!("personal:#{bob}"));
    let mut a1 = JsCentrifuge::start(addr, &token(&alice), Some(&a_channel));
    let mut a2 = JsCentrifuge::start(addr, &token(&alice), Some(&a_channel));
    let mut b = JsCentrifuge::start(addr, &token(&bob), Some(&b_channel));
    for client in [&mut a1, &mut a2, &mut b] {
        let subscribed = client.wait("subscribed", |_| true);
        assert_eq!(subscribed["recoverable"], true, "{subscribed}");
    }
    publish(addr, &a_channel, json!({"to": "alice"}));
    for client in [&mut a1, &mut a2] {
        let p = client.wait("publication", |_| true);
        assert_eq!(p["data"], json!({"to": "alice"}));
        assert_eq!(p["offset"], 1);
    }
    // Bob's next publication is his own marker, never Alice's.
    publish(addr, &b_channel, json!({"to": "bob"}));
    let p = b.wait("publication", |_| true);
    assert_eq!(p["data"], json!({"to": "bob"}));

    // A client away while 50 are published gets exactly those 50, in order, recovered.
    a1.send(json!({"op": "disconnect"}));
    a1.wait("disconnected", |_| true);
    for n in 0..50 {
        publish(addr, &a_channel, json!({"n": n}));
    }
    a1.send(json!({"op": "reconnect"}));
    let subscribed = a1.wait("subscribed", |_| true);
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    assert_eq!(subscribed["wasRecovering"], true);
    let missed = a1.publications(50);
    let ns: Vec<i64> = missed
        .iter()
        .map(|p| p["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, (0..50).collect::<Vec<_>>());
    let offsets: Vec<u64> = missed
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (2..52).collect::<Vec<_>>());
    // And then live again, with no duplicate in between.
    publish(addr, &a_channel, json!({"n": "live"}));
    let live = a1.wait("publication", |_| true);
    assert_eq!(live["data"]["n"], "live");
    assert_eq!(live["offset"], 52);
    // a2 stayed connected: all 51 live.
    let all = a2.publications(51);
    assert_eq!(all.last().unwrap()["offset"], 52);
}

#[test]
fn a_client_away_past_the_history_is_not_recovered() {
    let (_cluster, addr) = start("realtime.namespace.personal.historySize=10\n");
    let user = format!("far{}", unique());
    let channel = format!("personal:#{user}");
    let mut client = JsCentrifuge::start(addr, &token(&user), Some(&channel));
    client.wait("subscribed", |_| true);
    publish(addr, &channel, json!({"n": 0}));
    client.wait("publication", |_| true);
    client.send(json!({"op": "disconnect"}));
    client.wait("disconnected", |_| true);
    for n in 1..=15 {
        publish(addr, &channel, json!({"n": n}));
    }
    client.send(json!({"op": "reconnect"}));
    let subscribed = client.wait("subscribed", |_| true);
    assert_eq!(subscribed["recovered"], false, "{subscribed}");
    assert_eq!(subscribed["wasRecovering"], true);
    assert_eq!(subscribed["offset"], 16, "the current top");
    // None of the 15 was replayed: the next publication is the new one.
    publish(addr, &channel, json!({"n": "new"}));
    let next = client.wait("publication", |_| true);
    assert_eq!(next["data"]["n"], "new", "{:?}", client.seen);
    assert_eq!(next["offset"], 17);
}

#[test]
fn bad_tokens_and_bad_frames_get_centrifugos_codes() {
    let (cluster, addr) = start("");
    let connect = |token: &str| json!({"id": 1, "connect": {"token": token}}).to_string();
    let expect_close = |text: &str, code: u16| {
        let mut ws = ws(addr);
        ws_send(&mut ws, text);
        match ws_read(&mut ws) {
            Received::Close(c, _) => assert_eq!(c, code, "{text}"),
            other => panic!("{text}: expected close {code}, got {other:?}"),
        }
    };
    let forged = activestack_gateway::realtime::jwt::sign_hs256(
        &json!({"sub": "42", "exp": now() + 60}),
        b"not the secret",
    );
    expect_close(&connect(&forged), 3500);
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"sub":"42"}"#));
    expect_close(&connect(&none), 3500);
    expect_close(&connect(&token_with(&json!({"sub": 42}))), 3500);
    expect_close(
        &json!({"id": 1, "subscribe": {"channel": "personal:#42"}}).to_string(),
        3501,
    );
    expect_close("{not json", 3501);
    expect_close(&"x".repeat(70_000), 1009);
    cluster.wait_log(&["realtime connect refused: invalid token"]);

    // Expired: error 109 (the client fetches a new token), not a close.
    let mut ws = ws(addr);
    ws_send(
        &mut ws,
        &connect(&token_with(&json!({"sub": "42", "exp": now() - 5}))),
    );
    let Received::Json(reply) = ws_read(&mut ws) else {
        panic!("a reply")
    };
    assert_eq!(
        reply[0],
        json!({"id": 1, "error": {"code": 109, "message": "token expired"}})
    );

    // Another user's channel: 103, and the connection stays.
    let mut ws = ws_subscribed(addr, &format!("me{}", unique())).0;
    ws_send(
        &mut ws,
        &json!({"id": 3, "subscribe": {"channel": "personal:#someone_else"}}).to_string(),
    );
    let Received::Json(reply) = ws_read(&mut ws) else {
        panic!("a reply")
    };
    assert_eq!(reply[0]["error"]["code"], 103);
}

#[test]
fn an_sse_reader_gets_its_publications_and_recovers_in_the_connect_push() {
    let (_cluster, addr) = start("");
    let user = format!("sse{}", unique());
    let channel = format!("personal:#{user}");
    let request = json!({"token": token(&user), "subs": {channel.clone(): {}}});
    let mut sse = Sse::get(addr, &request);
    let connect = sse.next();
    let sub = &connect["connect"]["subs"][&channel];
    assert_eq!(sub["recoverable"], true, "{connect}");
    let epoch = sub["epoch"].as_str().unwrap().to_string();
    publish(addr, &channel, json!({"n": 1}));
    let p = sse.next();
    assert_eq!(
        p,
        json!({"channel": channel, "pub": {"offset": 1, "data": {"n": 1}}})
    );
    drop(sse);
    publish(addr, &channel, json!({"n": 2}));
    publish(addr, &channel, json!({"n": 3}));
    let request = json!({"token": token(&user),
        "subs": {channel.clone(): {"recover": true, "offset": 1, "epoch": epoch}}});
    let mut sse = Sse::get(addr, &request);
    let connect = sse.next();
    let sub = &connect["connect"]["subs"][&channel];
    assert_eq!(sub["recovered"], true, "{connect}");
    assert_eq!(sub["offset"], 1);
    let pubs: Vec<&Value> = sub["publications"].as_array().unwrap().iter().collect();
    assert_eq!(pubs.len(), 2);
    assert_eq!(pubs[1]["data"], json!({"n": 3}));

    // A forged token: HTTP 200 and one disconnect push.
    let mut sse = Sse::get(addr, &json!({"token": "a.b.c"}));
    assert_eq!(
        sse.next(),
        json!({"disconnect": {"code": 3500, "reason": "invalid token"}})
    );
}

#[test]
fn presence_spans_the_workers_and_drops_a_killed_workers_clients() {
    let (cluster, addr) = start("realtime.presenceTtl=2\n");
    let users: Vec<String> = (0..8).map(|i| format!("p{i}u{}", unique())).collect();
    let mut clients: Vec<Ws> = users.iter().map(|u| ws_subscribed(addr, u).0).collect();
    let stats = |user: &str| {
        cent(
            addr,
            API_KEY,
            "presence_stats",
            json!({"channel": format!("personal:#{user}")}),
        )["result"]["num_clients"]
            .as_u64()
            .unwrap()
    };
    for user in &users {
        assert_eq!(stats(user), 1, "{user}: seen from whichever worker answers");
    }
    let presence = cent(
        addr,
        API_KEY,
        "presence",
        json!({"channel": format!("personal:#{}", users[0])}),
    );
    let entry = presence["result"]["presence"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(entry["user"], users[0].as_str());

    let pid = cluster.worker_pids()[0];
    signal_pid(pid, Signal::SIGKILL);
    wait_for("the worker to die", || (!common::alive(pid)).then_some(()));
    // The killed worker's clients see their connection end; the others stay.
    let mut gone = Vec::new();
    for (i, ws) in clients.iter_mut().enumerate() {
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
                .unwrap();
        }
        if matches!(ws_read(ws), Received::Gone | Received::Close(..)) {
            gone.push(i);
        }
    }
    assert!(
        !gone.is_empty() && gone.len() < users.len(),
        "clients on both workers: {gone:?}"
    );
    wait_for("the killed worker's users to leave presence", || {
        gone.iter().all(|&i| stats(&users[i]) == 0).then_some(())
    });
    for (i, user) in users.iter().enumerate() {
        if !gone.contains(&i) {
            assert_eq!(stats(user), 1, "{user} is on the live worker");
        }
    }
}
