//! Realtime delivery across a Redis restart (found by bench/chaos): a private Redis of the
//! test's own (the machine's shared one is never restarted), with its append-only file so that
//! the channels' streams survive the restart, as a Redis holding realtime history should be run.
//! A centrifuge-js client subscribed before the outage gets what is published after it, live or
//! recovered from the history, without reconnecting by itself.

mod common;
mod realtime_support;

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Cluster, wait_for};
use realtime_support::*;
use serde_json::{Value, json};

/// A Redis of the test's own, persisted in a temp dir; stopped with SIGTERM (Redis writes its
/// append-only file on the way out).
struct PersistedRedis {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PersistedRedis {
    fn start() -> PersistedRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = PersistedRedis {
            dir: tempfile::tempdir().expect("temp dir"),
            port,
            child: None,
        };
        redis.up();
        redis
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        wait_for("the private Redis to listen", || {
            TcpStream::connect(addr).ok()
        });
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            common::signal_pid(child.id() as i32, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }
}

impl Drop for PersistedRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

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
    let mut redis = PersistedRedis::start();
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
