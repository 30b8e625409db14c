//! Realtime delivery across a Redis restart (found by bench/chaos): a private Redis of the
//! test's own (the machine's shared one is never restarted), with its append-only file so that
//! the channels' streams survive the restart, as a Redis holding realtime history should be run.
//! A centrifuge-js client subscribed before the outage gets what is published after it, live or
//! recovered from the history, without reconnecting by itself.

mod common;
mod realtime_support;

use std::net::SocketAddr;
use std::time::Duration;

use common::private_redis::{Persistence, PrivateRedis};
use common::{Cluster, wait_for};
use realtime_support::*;
use serde_json::{Value, json};

/// Publishes through the API until Redis takes it (the API answers an error while it is down).
fn publish_when_up(addr: SocketAddr, channel: &str, data: Value) -> Value {
    let body = json!({"channel": channel, "data": data}).to_string();
    wait_for("a publish Redis takes", || {
        let (status, response) = http(
            addr,
            "POST",
            "/api/publish",
            &[("X-API-Key", API_KEY)],
            &body,
        );
        let reply: Value = serde_json::from_str(body_of(&response)).ok()?;
        (status == 200 && reply.get("error").is_none()).then(|| reply["result"].clone())
    })
}

#[test]
fn a_subscriber_gets_what_is_published_after_redis_restarts() {
    let mut redis = PrivateRedis::start(Persistence::AppendOnly);
    let cluster = Cluster::start(&format!(
        "{}cluster.workerCount=1\ngateway.redis.port={}\n",
        realtime_keys(&unique()),
        redis.port
    ));
    let addr = cluster.addr();
    let user = format!("r{}", unique());
    let channel = format!("personal:#{user}");
    let mut client = JsCentrifuge::start(addr, &token(&user), Some(&channel));
    client.wait("subscribed", |_| true);
    publish_when_up(addr, &channel, json!({"n": "before"}));
    client.wait("publication", |p| p["data"]["n"] == "before");

    // Down for longer than the Redis client's own few reconnect attempts.
    redis.down();
    std::thread::sleep(Duration::from_secs(3));
    redis.up();

    // Published once Redis is back: the subscriber gets it, live or (its position lost while
    // the worker was not listening) recovered from the history, in order, none lost.
    let first = publish_when_up(addr, &channel, json!({"n": "after-1"}));
    let second = publish_when_up(addr, &channel, json!({"n": "after-2"}));
    assert_eq!(
        first["offset"], 2,
        "the stream survived the restart: {first}"
    );
    assert_eq!(second["offset"], 3);
    let got = client.wait("publication", |p| p["data"]["n"] == "after-1");
    assert_eq!(got["offset"], 2);
    let got = client.wait("publication", |p| p["data"]["n"] == "after-2");
    assert_eq!(got["offset"], 3);
    // Nothing came twice.
    let seen: Vec<&Value> = client
        .seen
        .iter()
        .filter(|e| e["event"] == "publication")
        .map(|e| &e["offset"])
        .collect();
    assert_eq!(seen, [&json!(1), &json!(2), &json!(3)], "{:?}", client.seen);
}
