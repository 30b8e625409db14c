//! The reactivity side of the chaos run: outbox inserts into the MongoDB wire-protocol test
//! server (tests/mongo_wire: MongoDB itself cannot be installed on these machines) that the
//! relay turns into EVENTS messages, and what the stream, the realtime history and the
//! consumer hold at the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId};
use serde_json::{Value, json};

/// Inserts `{_id, userId, data: {id}}` at `per_second` into the outbox, users in turn, until
/// stopped; the data ids of the inserts MongoDB acknowledged, with their user.
pub struct Inserter {
    stop: Arc<AtomicBool>,
    pub inserted: Arc<Mutex<Vec<(String, String)>>>,
    pub failed: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Inserter {
    pub fn start(
        rt: &tokio::runtime::Runtime,
        mongo_url: &str,
        database: &str,
        users: Vec<String>,
        tag: &str,
        per_second: u32,
    ) -> Inserter {
        let stop = Arc::new(AtomicBool::new(false));
        let inserted = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(Mutex::new(0));
        let (url, database, tag) = (mongo_url.to_string(), database.to_string(), tag.to_string());
        let (s, i, f) = (stop.clone(), inserted.clone(), failed.clone());
        let task = rt.spawn(async move {
            let Ok(client) = mongodb::Client::with_uri_str(&url).await else {
                eprintln!("inserter: cannot reach the MongoDB test server");
                return;
            };
            let outbox = client
                .database(&database)
                .collection::<bson::Document>("messages_outbox");
            let period = Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
            let mut tick = tokio::time::interval(period);
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                let user = &users[(n as usize) % users.len()];
                let id = format!("{tag}-o{n}");
                n += 1;
                let d = doc! {"_id": ObjectId::new(), "userId": user, "data": {"id": &id}};
                match outbox.insert_one(d).await {
                    Ok(_) => i.lock().expect("inserted").push((id, user.clone())),
                    Err(_) => *f.lock().expect("failed") += 1,
                }
            }
        });
        Inserter {
            stop,
            inserted,
            failed,
            task,
        }
    }

    pub fn stop(self, rt: &tokio::runtime::Runtime) -> (Vec<(String, String)>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), self.task).await });
        let inserted = std::mem::take(&mut *self.inserted.lock().expect("inserted"));
        let failed = *self.failed.lock().expect("failed");
        (inserted, failed)
    }
}

/// What the EVENTS stream holds: data id -> how many messages carry it.
pub fn stream_contents(
    rt: &tokio::runtime::Runtime,
    nats_url: &str,
    stream: &str,
) -> Result<HashMap<String, u32>, String> {
    rt.block_on(async {
        let client = async_nats::connect(nats_url)
            .await
            .map_err(|e| e.to_string())?;
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(stream).await.map_err(|e| e.to_string())?;
        let info = s.info().await.map_err(|e| e.to_string())?.clone();
        let mut found = HashMap::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            let Ok(m) = s.get_raw_message(seq).await else {
                continue;
            };
            let body: Value = serde_json::from_slice(&m.payload).unwrap_or_default();
            let id = body["payload"]["data"]["id"]
                .as_str()
                .unwrap_or("?")
                .to_string();
            *found.entry(id).or_default() += 1;
        }
        Ok(found)
    })
}

/// The consumer's (pending, ack pending) and the messages in the dead-letter stream.
pub fn consumer_state(
    rt: &tokio::runtime::Runtime,
    nats_url: &str,
    stream: &str,
    consumer: &str,
    dead_letters: &str,
) -> (Option<(u64, usize)>, u64) {
    rt.block_on(async {
        let Ok(client) = async_nats::connect(nats_url).await else {
            return (None, 0);
        };
        let js = async_nats::jetstream::new(client);
        let pending = async {
            let s = js.get_stream(stream).await.ok()?;
            let mut c: async_nats::jetstream::consumer::PullConsumer =
                s.get_consumer(consumer).await.ok()?;
            let info = c.info().await.ok()?;
            Some((info.num_pending, info.num_ack_pending))
        }
        .await;
        let dead = async {
            let mut s = js.get_stream(dead_letters).await.ok()?;
            Some(s.info().await.ok()?.state.messages)
        }
        .await
        .unwrap_or(0);
        (pending, dead)
    })
}

/// Waits until the workers' durable consumer exists (deliver policy new: only what is stored
/// after that is theirs).
pub fn wait_consumer(
    rt: &tokio::runtime::Runtime,
    nats_url: &str,
    stream: &str,
    consumer: &str,
    within: Duration,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        let (state, _) = consumer_state(rt, nats_url, stream, consumer, "none");
        if state.is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// The data ids in `channel`'s realtime history (the gateway's `/api/history`).
pub fn history(addr: SocketAddr, api_key: &str, channel: &str) -> Option<Vec<String>> {
    let body = json!({"channel": channel, "limit": 1000}).to_string();
    let (status, response) = crate::realtime_support::try_http(
        addr,
        "POST",
        "/api/history",
        &[("X-API-Key", api_key)],
        &body,
    )
    .ok()?;
    if status != 200 {
        return None;
    }
    let reply: Value = serde_json::from_str(crate::realtime_support::body_of(&response)).ok()?;
    Some(
        reply["result"]["publications"]
            .as_array()?
            .iter()
            .filter_map(|p| p["data"]["id"].as_str().map(str::to_string))
            .collect(),
    )
}
