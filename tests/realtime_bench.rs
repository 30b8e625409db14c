//! Realtime benchmark (ignored; `bench/realtime.sh` runs it in release): a 2-worker cluster with
//! realtime on, N connected websocket clients (Centrifugo protocol, each subscribed to its own
//! `personal:#<user>`), and commands published into the JetStream stream at R/s to random
//! users, as the relay does. Measures publish-to-client latency (p50/p99), what was delivered,
//! and the workers' memory per connected client. Writes `bench/results/realtime.{json,md}`.
//! Bounded: every phase stops after a fixed time.

mod common;
mod realtime_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::Cluster;
use futures_util::{SinkExt, StreamExt};
use realtime_support::{realtime_keys, token, unique};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const NATS: &str = "nats://127.0.0.1:4222";
/// How long each rate is sent for.
const SEND_FOR: Duration = Duration::from_secs(5);
/// How long stragglers are waited for after sending stops.
const DRAIN_FOR: Duration = Duration::from_secs(5);
const STEPS: &[usize] = &[1_000, 10_000];
const RATES: &[u64] = &[1_000, 5_000];

fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// RSS of the gateway workers, summed (bytes).
fn workers_rss(cluster: &Cluster) -> u64 {
    cluster
        .worker_pids()
        .iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|kb| kb.parse::<u64>().ok())
                })
                .unwrap_or(0)
                * 1024
        })
        .sum()
}

/// One client: connects, subscribes, then reports each publication's latency (µs).
async fn client(
    addr: std::net::SocketAddr,
    user: String,
    latencies: mpsc::UnboundedSender<u64>,
    ready: Arc<AtomicU64>,
) {
    let url = format!("ws://{addr}/connection/websocket");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        eprintln!("connect failed");
        return;
    };
    let hello = format!(
        "{}\n{}",
        json!({"id":1,"connect":{"token": token(&user)}}),
        json!({"id":2,"subscribe":{"channel": format!("personal:#{user}")}})
    );
    if ws.send(Message::text(hello)).await.is_err() {
        return;
    }
    let mut subscribed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, ws.next()).await {
        let Message::Text(text) = message else {
            continue;
        };
        let now = micros();
        for line in text.as_str().split('\n') {
            if line == "{}" {
                let _ = ws.send(Message::text("{}")).await;
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if v["id"] == 2 && !subscribed {
                subscribed = true;
                ready.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(t) = v["push"]["pub"]["data"]["t"].as_u64() {
                let _ = latencies.send(now.saturating_sub(t));
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[test]
#[ignore = "benchmark: bench/realtime.sh"]
fn realtime_latency_and_memory() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _runtime = rt.enter();
    let id = unique();
    let nats = rt.block_on(async_nats::connect(NATS)).unwrap();
    let js = async_nats::jetstream::new(nats.clone());
    let stream = format!("RT_T{id}");
    rt.block_on(js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("rt{id}.>")],
        max_messages: 1_000_000,
        ..Default::default()
    }))
    .unwrap();
    let cluster = Cluster::start(&format!(
        // Loaded workers must not be taken for hung (the tests' 500 ms timeout).
        "{}frontend.logLevel=warn\ncluster.heartbeatInterval=1000\ncluster.workerTimeout=10000\n",
        realtime_keys(&id)
    ));
    let addr = cluster.addr();
    std::thread::sleep(Duration::from_secs(2)); // the consumers are set up (logs are off)
    let rss_idle = workers_rss(&cluster);
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let ready = Arc::new(AtomicU64::new(0));
    let mut connected = 0usize;
    let mut rows = Vec::new();
    let mut memory = Vec::new();
    for &clients in STEPS {
        let started = Instant::now();
        rt.block_on(async {
            let mut batch = Vec::new();
            for i in connected..clients {
                batch.push(tokio::spawn(client(
                    addr,
                    format!("b{id}u{i}"),
                    tx.clone(),
                    ready.clone(),
                )));
                if batch.len() == 200 {
                    // Let each wave finish its handshake before the next.
                    while ready.load(Ordering::Relaxed) < (i + 1) as u64
                        && started.elapsed() < Duration::from_secs(120)
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    batch.clear();
                }
            }
            while ready.load(Ordering::Relaxed) < clients as u64
                && started.elapsed() < Duration::from_secs(180)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        connected = ready.load(Ordering::Relaxed) as usize;
        let connect_s = started.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_secs(2));
        let rss = workers_rss(&cluster);
        let per_client = (rss.saturating_sub(rss_idle)) as f64 / connected.max(1) as f64;
        println!(
            "{connected} clients connected in {connect_s:.1} s; workers RSS {:.1} MB (idle {:.1} MB): {:.1} KB per client",
            rss as f64 / 1e6,
            rss_idle as f64 / 1e6,
            per_client / 1e3
        );
        memory.push(json!({"clients": connected, "rss": rss, "rss_idle": rss_idle, "bytes_per_client": per_client, "connect_s": connect_s}));
        for &rate in RATES {
            while rx.try_recv().is_ok() {}
            let sent = rt.block_on(async {
                let subject = format!("rt{id}.personal.bench");
                let mut sent = 0u64;
                let start = tokio::time::Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while start.elapsed() < SEND_FOR {
                    tick.tick().await;
                    let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                    while sent < due {
                        let user = format!("b{id}u{}", fastrand::usize(..connected));
                        let body = json!({"method":"publish","payload":{
                            "channel": format!("personal:#{user}"),
                            "data": {"t": micros(), "seq": sent}}});
                        let _ = nats.publish(subject.clone(), body.to_string().into()).await;
                        sent += 1;
                    }
                }
                let _ = nats.flush().await;
                sent
            });
            let mut latencies = Vec::new();
            let deadline = Instant::now() + SEND_FOR + DRAIN_FOR;
            while latencies.len() < sent as usize && Instant::now() < deadline {
                let next = tokio::time::timeout(Duration::from_millis(200), rx.recv());
                if let Ok(Some(l)) = rt.block_on(next) {
                    latencies.push(l);
                }
            }
            latencies.sort_unstable();
            let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
            println!(
                "clients {connected} rate {rate}/s: sent {sent}, delivered {}, p50 {p50:.2} ms, p99 {p99:.2} ms",
                latencies.len()
            );
            rows.push(json!({"clients": connected, "rate": rate, "sent": sent,
                "delivered": latencies.len(), "p50_ms": p50, "p99_ms": p99,
                "max_ms": percentile(&latencies, 1.0)}));
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let results = json!({"rows": rows, "memory": memory, "loadavg": load.trim()});
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("realtime.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
    let mut md = String::from(
        "| clients | events/s | sent | delivered | p50 ms | p99 ms |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} |\n",
            r["clients"],
            r["rate"],
            r["sent"],
            r["delivered"],
            r["p50_ms"].as_f64().unwrap_or(f64::NAN),
            r["p99_ms"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    md.push_str("\n| clients | workers RSS MB | KB per client |\n|---:|---:|---:|\n");
    for m in &memory {
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} |\n",
            m["clients"],
            m["rss"].as_f64().unwrap_or(0.0) / 1e6,
            m["bytes_per_client"].as_f64().unwrap_or(0.0) / 1e3
        ));
    }
    md.push_str(&format!("\nload average at the end: {}\n", load.trim()));
    std::fs::write(dir.join("realtime.md"), &md).unwrap();
    println!("{md}");
    drop(cluster);
    let _ = rt.block_on(js.delete_stream(&stream));
}
