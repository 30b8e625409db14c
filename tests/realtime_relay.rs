//! Events entering through the relay: outbox document -> relay -> JetStream stream -> the
//! workers' durable consumer -> Redis -> a centrifuge-js client; and the consumer's handling of
//! malformed and Debezium-style commands. MongoDB is our wire-protocol test server
//! (`tests/mongo_wire`), NATS and Redis are the machine's. The stream, subjects and consumer are
//! this test's own and are deleted at the end.

mod common;
mod mongo_wire;
mod realtime_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use activestack_gateway::relay::{self, RelayConfig, RelayStats};
use bson::{doc, oid::ObjectId};
use common::Cluster;
use mongo_wire::MongoWire;
use realtime_support::*;
use serde_json::json;

const NATS: &str = "nats://127.0.0.1:4222";

/// The publications' data, sorted by their text.
fn data_set(publications: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut data: Vec<serde_json::Value> = publications.iter().map(|p| p["data"].clone()).collect();
    data.sort_by_key(|d| d.to_string());
    data
}

#[test]
fn outbox_documents_reach_their_users_clients_through_the_relay_and_the_consumer() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _runtime = rt.enter(); // jetstream::new spawns its acker task
    let id = unique();
    let wire = rt.block_on(MongoWire::start());
    let cfg = RelayConfig {
        enabled: true,
        mongodb_url: wire.url(),
        database: format!("rt_{id}"),
        nats_url: NATS.to_string(),
        // realtime_keys(id) consumes `rt<id>.>` of `RT_T<id>`.
        subject_prefix: format!("rt{id}"),
        stream: format!("RT_T{id}"),
        dead_letter_subject: format!("dl{id}"),
        dead_letter_stream: format!("DL_RT{id}"),
        ..RelayConfig::default()
    };
    let stats = Arc::new(RelayStats::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let relay_task = rt.spawn(relay::run_with_stats(cfg.clone(), stats.clone(), shutdown));
    let deadline = Instant::now() + DEADLINE;
    while !stats.watching.load(Ordering::Relaxed) {
        assert!(
            Instant::now() < deadline,
            "the relay never watched the outbox"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let cluster = Cluster::start(&realtime_keys(&id));
    let addr = cluster.addr();
    // Deliver policy new: only what is stored once our consumer exists counts.
    cluster.wait_log(&["realtime consumer: consuming", &format!("rt_test_{id}")]);

    let (alice, bob) = (format!("a{id}"), format!("b{id}"));
    let mut a = JsCentrifuge::start(addr, &token(&alice), Some(&format!("personal:#{alice}")));
    let mut b = JsCentrifuge::start(addr, &token(&bob), Some(&format!("personal:#{bob}")));
    a.wait("subscribed", |_| true);
    b.wait("subscribed", |_| true);

    let client = rt
        .block_on(mongodb::Client::with_uri_str(wire.url()))
        .unwrap();
    let outbox = client
        .database(&cfg.database)
        .collection::<bson::Document>(&cfg.outbox_collection);
    let one = ObjectId::new();
    rt.block_on(async {
        outbox
            .insert_one(doc! {"_id": one, "userId": &alice, "data": {"n": 1}})
            .await
            .unwrap();
        outbox
            .insert_one(doc! {"_id": ObjectId::new(), "userIds": [&alice, &bob], "data": {"n": 2}})
            .await
            .unwrap();
    });
    // Two workers pull from the consumer at once: each message gets its offset when it is
    // published, so the two may come in either order (as with two Centrifugo nodes).
    let got = a.publications(2);
    assert_eq!(data_set(&got), [json!({"n": 1}), json!({"n": 2})]);
    assert_eq!(got[1]["offset"], 2);
    let p = b.wait("publication", |_| true);
    assert_eq!(p["data"], json!({"n": 2}), "bob gets only the broadcast");

    // Straight into the stream: a malformed message is logged and acked, a Debezium-style
    // payload (a JSON string) and a repeated idempotency key are handled as Centrifugo does.
    let nats = rt.block_on(async_nats::connect(NATS)).unwrap();
    let js = async_nats::jetstream::new(nats);
    let subject = format!("rt{id}.personal.x");
    let send = |body: String| {
        rt.block_on(async {
            js.publish(subject.clone(), body.into())
                .await
                .unwrap()
                .await
                .unwrap()
        });
    };
    send("{not json".to_string());
    send(json!({"method": "rpc", "payload": {}}).to_string());
    let inner = json!({"channel": format!("personal:#{alice}"), "data": {"n": 3}, "idempotency_key": "same"});
    send(json!({"method": "publish", "payload": inner.to_string()}).to_string());
    send(json!({"method": "publish", "payload": inner}).to_string());
    send(json!({"method": "publish", "payload": {"channel": format!("personal:#{alice}"), "data": {"n": 4}}}).to_string());
    cluster.wait_log(&["realtime consumer: skipped (acked)", "not a command"]);
    cluster.wait_log(&["realtime consumer: skipped (acked)", "is not handled here"]);
    let got = a.publications(2);
    assert_eq!(data_set(&got), [json!({"n": 3}), json!({"n": 4})]);
    publish(addr, &format!("personal:#{alice}"), json!({"n": "marker"}));
    let next = a.wait("publication", |_| true);
    assert_eq!(
        next["data"]["n"], "marker",
        "the repeated key was not published again"
    );

    // Everything was acknowledged.
    let pending = || {
        rt.block_on(async {
            let stream = js.get_stream(&cfg.stream).await.unwrap();
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(&format!("rt_test_{id}")).await.unwrap();
            let info = consumer.info().await.unwrap();
            (info.num_ack_pending, info.num_pending)
        })
    };
    common::wait_for("every message acked", || {
        (pending() == (0, 0)).then_some(())
    });

    let _ = stop.send(true);
    let _ = rt.block_on(relay_task);
    drop(cluster);
    rt.block_on(async {
        let _ = js.delete_stream(&cfg.stream).await;
        let _ = js.delete_stream(&cfg.dead_letter_stream).await;
    });
}
