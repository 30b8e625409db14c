//! The message relay end to end: the real `mongodb` driver against our wire-protocol test
//! server (`tests/mongo_wire`) or a real MongoDB (`MONGODB_URL`), and the machine's real NATS
//! (127.0.0.1:4222, JetStream). Every test uses its own streams and subjects and deletes them.

mod mongo_wire;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use activestack_gateway::relay::{self, RelayConfig, RelayError, RelayStats, StreamState};
use async_nats::jetstream::{self, stream};
use bson::{Document, doc, oid::ObjectId};
use mongo_wire::MongoWire;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

const NATS: &str = "127.0.0.1:4222";
const DEADLINE: Duration = Duration::from_secs(60);

/// Waits until `check` holds, failing after [`DEADLINE`] with `what`.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn unique() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// Where MongoDB is for a test.
enum Mongo {
    Wire(MongoWire),
    Real(String),
}

struct Env {
    mongo: Mongo,
    cfg: RelayConfig,
    client: mongodb::Client,
    js: jetstream::Context,
}

impl Env {
    /// Our wire server (`real == false`) or the real MongoDB at `MONGODB_URL`, which the
    /// `*_real_mongodb` tests (ignored unless asked for) need.
    async fn new(real: bool) -> Env {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "activestack_gateway=info".into()),
            )
            .with_test_writer()
            .try_init();
        let mongo = if real {
            match std::env::var("MONGODB_URL") {
                Ok(url) if !url.is_empty() => Mongo::Real(url),
                _ => panic!("this test needs a real MongoDB: set MONGODB_URL (a replica set)"),
            }
        } else {
            Mongo::Wire(MongoWire::start().await)
        };
        let url = match &mongo {
            Mongo::Wire(w) => w.url(),
            Mongo::Real(url) => url.clone(),
        };
        let id = unique();
        let cfg = RelayConfig {
            enabled: true,
            mongodb_url: url.clone(),
            database: format!("relay_test_{id}"),
            nats_url: format!("nats://{NATS}"),
            subject_prefix: format!("t{id}"),
            stream: format!("EVENTS_T{id}"),
            dead_letter_subject: format!("dl{id}"),
            dead_letter_stream: format!("DEADLETTER_T{id}"),
            max_in_flight: 64,
            ..RelayConfig::default()
        };
        let client = mongodb::Client::with_uri_str(&url).await.unwrap();
        let nats = async_nats::connect(NATS).await.unwrap_or_else(|e| {
            panic!("NATS with JetStream must run on {NATS} (scripts/setup.sh starts it): {e}")
        });
        Env {
            mongo,
            cfg,
            client,
            js: jetstream::new(nats),
        }
    }

    fn wire(&self) -> Option<&MongoWire> {
        match &self.mongo {
            Mongo::Wire(w) => Some(w),
            Mongo::Real(_) => None,
        }
    }

    fn outbox(&self) -> mongodb::Collection<Document> {
        self.client
            .database(&self.cfg.database)
            .collection(&self.cfg.outbox_collection)
    }

    fn start(&self, cfg: RelayConfig) -> Relay {
        let stats = Arc::new(RelayStats::default());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(relay::run_with_stats(cfg, stats.clone(), shutdown));
        Relay { stats, stop, task }
    }

    /// Starts a relay and waits until it watches the outbox.
    async fn start_watching(&self, cfg: RelayConfig) -> Relay {
        let r = self.start(cfg);
        let stats = r.stats.clone();
        wait_for("the relay to watch the outbox", || {
            let s = stats.clone();
            async move { s.watching.load(Ordering::Relaxed) }
        })
        .await;
        r
    }

    /// Inserts `n` valid messages (every third one to two users), returns their ids.
    async fn insert(&self, n: usize) -> Vec<ObjectId> {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = ObjectId::new();
            let d = if i % 3 == 2 {
                doc! {"_id": id, "userIds": ["alice", "bob"], "data": {"n": i as i64}}
            } else {
                doc! {"_id": id, "userId": format!("u{}", i % 5), "data": {"n": i as i64}}
            };
            self.outbox().insert_one(d).await.unwrap();
            ids.push(id);
        }
        ids
    }

    async fn count(&self, name: &str) -> u64 {
        match self.js.get_stream(name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    }

    async fn wait_count(&self, name: &str, n: u64) {
        wait_for(&format!("{n} messages in {name}"), || async {
            self.count(name).await >= n
        })
        .await;
        assert_eq!(
            self.count(name).await,
            n,
            "more messages than expected in {name}"
        );
    }

    /// Every message of a stream: (subject, Nats-Msg-Id, JSON body).
    async fn messages(&self, name: &str) -> Vec<(String, String, serde_json::Value)> {
        let mut s = self.js.get_stream(name).await.unwrap();
        let state = s.info().await.unwrap().state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            let Ok(m) = s.get_raw_message(seq).await else {
                continue;
            };
            let id = m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.to_string())
                .unwrap_or_default();
            out.push((
                m.subject.to_string(),
                id,
                serde_json::from_slice(&m.payload).unwrap(),
            ));
        }
        out
    }

    /// Exactly `ids`, each once, in the events stream.
    async fn assert_exactly(&self, ids: &[ObjectId]) {
        self.wait_count(&self.cfg.stream, ids.len() as u64).await;
        let got = self.messages(&self.cfg.stream).await;
        let got_ids: Vec<&str> = got.iter().map(|(_, id, _)| id.as_str()).collect();
        let unique: HashSet<&str> = got_ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            got_ids.len(),
            "duplicate Msg-Ids in the stream"
        );
        let want: HashSet<String> = ids.iter().map(|id| id.to_hex()).collect();
        let got: HashSet<String> = unique.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            got, want,
            "the stream does not hold exactly the inserted documents"
        );
    }

    async fn cleanup(self) {
        for name in [&self.cfg.stream, &self.cfg.dead_letter_stream] {
            let _ = self.js.delete_stream(name).await;
        }
        if let Mongo::Real(_) = self.mongo {
            let _ = self.client.database(&self.cfg.database).drop().await;
        }
    }
}

struct Relay {
    stats: Arc<RelayStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), RelayError>>,
}

impl Relay {
    async fn stop(self) {
        self.stop.send_replace(true);
        let r = tokio::time::timeout(DEADLINE, self.task).await;
        r.expect("relay did not stop").unwrap().unwrap();
    }

    fn kill(self) {
        self.task.abort();
    }

    async fn wait_published(&self, n: u64) {
        let stats = self.stats.clone();
        wait_for(&format!("{n} acknowledged publishes"), || {
            let s = stats.clone();
            async move { s.published.load(Ordering::Relaxed) >= n }
        })
        .await;
    }
}

// ---- stream set-up ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_is_created_with_the_seeds_settings_and_a_mismatch_is_reported() {
    let env = Env::new(false).await;
    let status = relay::ensure_stream(&env.cfg).await.unwrap();
    assert_eq!(status.events, StreamState::Created);
    assert_eq!(status.dead_letter, StreamState::Created);
    let status = relay::ensure_stream(&env.cfg).await.unwrap();
    assert_eq!(status.events, StreamState::Existing);

    let mut s = env.js.get_stream(&env.cfg.stream).await.unwrap();
    let c = s.info().await.unwrap().config.clone();
    assert_eq!(c.subjects, vec![format!("{}.>", env.cfg.subject_prefix)]);
    assert_eq!(c.storage, stream::StorageType::File);
    assert_eq!(c.retention, stream::RetentionPolicy::Limits);
    assert_eq!(c.max_messages, -1);
    assert_eq!(c.max_bytes, -1);
    assert_eq!(c.max_age, Duration::ZERO);
    assert_eq!(c.max_message_size, -1);
    assert_eq!(c.duplicate_window, Duration::from_secs(120));
    assert_eq!(c.num_replicas, 1);

    // A stream of that name with other settings: reported, left as it is.
    let other = RelayConfig {
        stream: format!("{}_OTHER", env.cfg.stream),
        subject_prefix: format!("{}o", env.cfg.subject_prefix),
        ..env.cfg.clone()
    };
    env.js
        .create_stream(stream::Config {
            name: other.stream.clone(),
            subjects: vec![format!("{}.>", other.subject_prefix)],
            storage: stream::StorageType::Memory,
            duplicate_window: Duration::from_secs(30),
            max_messages: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = relay::ensure_stream(&other).await.unwrap_err();
    let RelayError::StreamMismatch {
        stream,
        differences,
    } = &err
    else {
        panic!("expected a mismatch, got {err}");
    };
    assert_eq!(stream, &other.stream);
    let settings: Vec<&str> = differences.iter().map(|d| d.setting).collect();
    assert_eq!(
        settings,
        ["storage", "max_msgs", "duplicate_window"],
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("storage: expected File, found Memory"),
        "{text}"
    );
    assert!(
        text.contains("duplicate_window: expected 120s, found 30s"),
        "{text}"
    );
    // The relay refuses to run against it.
    let (_stop, shutdown) = watch::channel(false);
    let run = tokio::time::timeout(DEADLINE, relay::run(other.clone(), shutdown)).await;
    assert!(matches!(run, Ok(Err(RelayError::StreamMismatch { .. }))));
    let info = env
        .js
        .get_stream(&other.stream)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(
        info.config.storage,
        stream::StorageType::Memory,
        "must not be changed"
    );
    let _ = env.js.delete_stream(&other.stream).await;
    let _ = env.js.delete_stream(&other.dead_letter_stream).await;
    env.cleanup().await;
}

// ---- scenarios, each against the wire server and a real MongoDB ----

async fn inserts_are_published(env: Env) {
    let r = env.start_watching(env.cfg.clone()).await;
    let ids = env.insert(30).await;
    env.assert_exactly(&ids).await;
    let ns = &env.cfg.messages_namespace;
    let prefix = &env.cfg.subject_prefix;
    for (i, (subject, msg_id, body)) in env.messages(&env.cfg.stream).await.iter().enumerate() {
        let id = ids[i].to_hex();
        assert_eq!(msg_id, &id);
        assert_eq!(body["payload"]["idempotency_key"], id.as_str());
        assert_eq!(body["payload"]["data"]["n"], i as i64);
        if i % 3 == 2 {
            assert_eq!(subject, &format!("{prefix}.{ns}.broadcast"));
            assert_eq!(body["method"], "broadcast");
            assert_eq!(
                body["payload"]["channels"],
                serde_json::json!([format!("{ns}:#alice"), format!("{ns}:#bob")])
            );
        } else {
            let user = format!("u{}", i % 5);
            assert_eq!(subject, &format!("{prefix}.{ns}.{user}"));
            assert_eq!(body["method"], "publish");
            assert_eq!(body["payload"]["channel"], format!("{ns}:#{user}"));
        }
    }
    r.stop().await;
    env.cleanup().await;
}

async fn abrupt_stop_and_restart(env: Env) {
    let r = env.start_watching(env.cfg.clone()).await;
    let mut ids = env.insert(100).await;
    r.wait_published(40).await;
    r.kill();
    ids.extend(env.insert(50).await);
    let r = env.start(env.cfg.clone());
    ids.extend(env.insert(50).await);
    env.assert_exactly(&ids).await;
    r.stop().await;
    // Nothing more arrives after a clean stop and a restart from the saved checkpoint.
    let r = env.start_watching(env.cfg.clone()).await;
    ids.extend(env.insert(5).await);
    env.assert_exactly(&ids).await;
    r.stop().await;
    env.cleanup().await;
}

async fn malformed_documents_are_dead_lettered(env: Env) {
    let r = env.start_watching(env.cfg.clone()).await;
    let good = |n: i32| doc! {"_id": ObjectId::new(), "userId": "u1", "data": {"n": n}};
    let bad = [
        doc! {"_id": ObjectId::new(), "data": {"n": 1}},
        doc! {"_id": ObjectId::new(), "userId": 42, "data": {}},
        doc! {"_id": ObjectId::new(), "userId": "a b", "data": {}},
        doc! {"_id": ObjectId::new(), "userId": "u1"},
    ];
    let mut ids = Vec::new();
    for (i, b) in bad.iter().enumerate() {
        let g = good(i as i32);
        ids.push(g.get_object_id("_id").unwrap());
        env.outbox().insert_one(g).await.unwrap();
        env.outbox().insert_one(b.clone()).await.unwrap();
    }
    env.assert_exactly(&ids).await;
    env.wait_count(&env.cfg.dead_letter_stream, bad.len() as u64)
        .await;
    let letters = env.messages(&env.cfg.dead_letter_stream).await;
    let subject = format!(
        "{}.{}",
        env.cfg.dead_letter_subject, env.cfg.outbox_collection
    );
    let reasons = [
        "none of userId",
        "userId must be a string",
        "cannot be used",
        "data is missing",
    ];
    for ((subj, msg_id, body), (b, reason)) in letters.iter().zip(bad.iter().zip(reasons)) {
        let id = b.get_object_id("_id").unwrap().to_hex();
        assert_eq!(subj, &subject);
        assert_eq!(msg_id, &format!("deadletter-{id}"));
        assert_eq!(body["id"], id.as_str());
        assert!(body["reason"].as_str().unwrap().contains(reason), "{body}");
        assert_eq!(body["document"]["_id"]["$oid"], id.as_str());
    }
    assert_eq!(r.stats.dead_lettered.load(Ordering::Relaxed), 4);
    r.stop().await;
    env.cleanup().await;
}

/// A TCP proxy to NATS that can be cut (open connections closed, new ones refused) and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (up2, cut2) = (up.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let mut cut = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(NATS).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            up,
            cut,
            task,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|n| *n += 1);
    }
}

async fn nats_outage(env: Env) {
    relay::ensure_stream(&env.cfg).await.unwrap();
    let proxy = Proxy::start().await;
    let cfg = RelayConfig {
        nats_url: format!("nats://127.0.0.1:{}", proxy.port),
        ..env.cfg.clone()
    };
    let r = env.start_watching(cfg).await;
    let mut ids = env.insert(60).await;
    r.wait_published(20).await;
    proxy.cut();
    ids.extend(env.insert(60).await);
    let stats = r.stats.clone();
    wait_for("the relay to notice the outage", || {
        let s = stats.clone();
        async move { s.restarts.load(Ordering::Relaxed) >= 1 }
    })
    .await;
    let before = env.count(&env.cfg.stream).await;
    assert!(
        before < ids.len() as u64,
        "everything got through a cut proxy?"
    );
    proxy.restore();
    ids.extend(env.insert(30).await);
    env.assert_exactly(&ids).await;
    r.stop().await;
    env.cleanup().await;
}

macro_rules! both {
    ($scenario:ident, $wire:ident, $real:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $wire() {
            $scenario(Env::new(false).await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[ignore = "needs a real MongoDB replica set: set MONGODB_URL and run with --run-ignored"]
        async fn $real() {
            $scenario(Env::new(true).await).await;
        }
    };
}

both!(
    inserts_are_published,
    inserts_are_published_in_order_with_ids,
    inserts_are_published_real_mongodb
);
both!(
    abrupt_stop_and_restart,
    abrupt_stop_and_restart_loses_and_duplicates_nothing,
    abrupt_stop_and_restart_real_mongodb
);
both!(
    malformed_documents_are_dead_lettered,
    malformed_documents_are_dead_lettered_and_the_relay_goes_on,
    malformed_documents_are_dead_lettered_real_mongodb
);
both!(
    nats_outage,
    nats_outage_loses_and_duplicates_nothing,
    nats_outage_real_mongodb
);

// ---- needing the wire server's hooks ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lost_catches_up_from_the_collection() {
    let env = Env::new(false).await;
    let r = env.start_watching(env.cfg.clone()).await;
    let mut ids = env.insert(20).await;
    env.assert_exactly(&ids).await;
    r.stop().await;
    ids.extend(env.insert(25).await);
    env.wire().unwrap().lose_history();
    let r = env.start_watching(env.cfg.clone()).await;
    ids.extend(env.insert(15).await);
    env.assert_exactly(&ids).await;
    assert_eq!(r.stats.history_lost.load(Ordering::Relaxed), 1);
    assert_eq!(r.stats.caught_up.load(Ordering::Relaxed), 25);
    // History lost while running (the driver's automatic resume is refused).
    env.wire().unwrap().lose_history();
    env.wire().unwrap().drop_connections();
    ids.extend(env.insert(10).await);
    env.assert_exactly(&ids).await;
    r.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_mongodb_connections_lose_nothing() {
    let env = Env::new(false).await;
    let r = env.start_watching(env.cfg.clone()).await;
    let mut ids = env.insert(40).await;
    env.wire().unwrap().drop_connections();
    ids.extend(env.insert(40).await);
    env.wire().unwrap().drop_connections();
    ids.extend(env.insert(10).await);
    env.assert_exactly(&ids).await;
    r.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn seed_config_toml_is_read_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        r#"
[logging]
level = "debug"

[storage]
database_url = "mongodb://db:27017/?replicaSet=rs0"
database_name = "seed"
messages_outbox_collection_name = "outbox"

[nats]
url = "nats://nats:4222"
subject = "events.>"
messages_namespace = "personal"
"#,
    )
    .unwrap();
    let c = RelayConfig::from_seed_toml(&path).unwrap();
    assert!(c.enabled);
    assert_eq!(c.mongodb_url, "mongodb://db:27017/?replicaSet=rs0");
    assert_eq!(c.database, "seed");
    assert_eq!(c.outbox_collection, "outbox");
    assert_eq!(c.nats_url, "nats://nats:4222");
    assert_eq!(c.subject_prefix, "events");
    assert_eq!(c.stream, "EVENTS");
    assert_eq!(c.messages_namespace, "personal");
    assert_eq!(c.log_level.as_deref(), Some("debug"));
    std::fs::write(&path, "[storage]\ndatabase_url = 1\n").unwrap();
    let err = RelayConfig::from_seed_toml(&path).unwrap_err().to_string();
    assert!(err.contains("config.toml"), "{err}");
}

/// One quick measurement: inserts per second and insert-to-ack latency.
/// `cargo nextest run --test relay --run-ignored only relay_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn relay_throughput() {
    let real = std::env::var("MONGODB_URL").is_ok();
    let env = Env::new(real).await;
    let r = env.start_watching(env.cfg.clone()).await;
    // Latency: one insert at a time, until its message arrives on a core NATS subscription.
    let nats = async_nats::connect(NATS).await.unwrap();
    let mut sub = nats
        .subscribe(format!("{}.>", env.cfg.subject_prefix))
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let mut latencies = Vec::new();
    for _ in 0..200u64 {
        let t = Instant::now();
        env.insert(1).await;
        let got = tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut sub)).await;
        assert!(matches!(got, Ok(Some(_))), "no message");
        latencies.push(t.elapsed());
    }
    drop(sub);
    latencies.sort();
    // Throughput: a burst of inserts from 4 tasks.
    let n = 4000u64;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let coll = env.outbox();
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 4 {
                let d = doc! {"_id": ObjectId::new(), "userId": "u", "data": {"n": i as i64}};
                coll.insert_one(d).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let inserted = t.elapsed();
    r.wait_published(200 + n).await;
    let relayed = t.elapsed();
    println!(
        "relay: latency insert->message on NATS p50 {:?} p99 {:?} max {:?}; {n} inserts in {:?} ({:.0}/s), \
         all relayed after {:?} ({:.0}/s)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1],
        inserted,
        n as f64 / inserted.as_secs_f64(),
        relayed,
        n as f64 / relayed.as_secs_f64(),
    );
    r.stop().await;
    env.cleanup().await;
}

/// The `relay` command as a real process: SIGKILLed mid-stream and started again from its
/// checkpoint, nothing is lost and nothing is twice in the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_process_sigkilled_mid_stream_loses_and_duplicates_nothing() {
    let env = Env::new(false).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("gateway.properties");
    let c = &env.cfg;
    std::fs::write(
        &conf,
        format!(
            "relay.enabled=true\nrelay.mongodb.url={}\nrelay.mongodb.database={}\n\
             relay.nats.url={}\nrelay.nats.subjectPrefix={}\nrelay.nats.stream={}\n\
             relay.nats.deadLetterSubject={}\nrelay.nats.deadLetterStream={}\n\
             relay.maxInFlight={}\n",
            c.mongodb_url,
            c.database,
            c.nats_url,
            c.subject_prefix,
            c.stream,
            c.dead_letter_subject,
            c.dead_letter_stream,
            c.max_in_flight
        ),
    )
    .unwrap();
    let spawn = || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_activestack-gateway"))
            .arg("relay")
            .arg(&conf)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let watching = Arc::new(AtomicBool::new(false));
        let (seen, stderr) = (watching.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("{line}");
                if line.contains("watching the outbox") {
                    seen.store(true, Ordering::Relaxed);
                }
            }
        });
        (child, watching)
    };

    let (mut first, watching) = spawn();
    wait_for("the relay process to watch the outbox", || {
        let w = watching.clone();
        async move { w.load(Ordering::Relaxed) }
    })
    .await;
    let mut ids = env.insert(100).await;
    wait_for("some messages published", || async {
        env.count(&env.cfg.stream).await >= 30
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    ids.extend(env.insert(50).await);

    let (mut second, _) = spawn();
    ids.extend(env.insert(50).await);
    env.assert_exactly(&ids).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(second.wait().unwrap().code(), Some(0));
    env.cleanup().await;
}
