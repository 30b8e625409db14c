//! One worker holds many idle socket.io clients, each with its own client queue consumed over
//! the worker's single RabbitMQ connection (RabbitMQ allows 2047 channels per connection: this
//! only works because consumers share a small channel pool). The 10,000-client run is heavy
//! (about 30 s of both cores in a debug build) and would starve the timing-sensitive tests that
//! run beside it, so it is `#[ignore]`d: `bench/gateway.sh` runs it.
//!
//! Both runs print the worker's memory (`memory:` lines, read by `bench/gateway.sh`): idle, with
//! every socket.io socket open but before `connect`, after every client's `connect` (client
//! queue declared and consumed), and once every client has gone again. Numbers only, no
//! assertions on them: they depend on the allocator, the kernel and the machine.

mod common;

use std::time::{Duration, Instant};

use common::ws::{self, Ws};
use common::{Cluster, DEADLINE};

/// Connections opened at once.
const BATCH: usize = 200;

/// The gateway's `connect`, up to its gatewayConnectAck.
async fn connect(mut ws: Ws) -> Result<Ws, String> {
    ws::gateway_connect(&mut ws).await?;
    Ok(ws)
}

/// Runs `step` on `count` items in batches of [`BATCH`], `make` giving each its input.
async fn batched<I, F>(
    what: &str,
    count: usize,
    mut make: impl FnMut() -> I,
    step: impl Fn(I) -> F,
) -> Vec<Ws>
where
    F: Future<Output = Result<Ws, String>> + Send + 'static,
{
    let started = Instant::now();
    let mut done = Vec::with_capacity(count);
    while done.len() < count {
        let batch: Vec<_> = (0..BATCH.min(count - done.len()))
            .map(|_| tokio::spawn(step(make())))
            .collect();
        for task in batch {
            match task.await {
                Ok(Ok(ws)) => done.push(ws),
                Ok(Err(e)) => panic!("{what}: client {} failed: {e}", done.len()),
                Err(e) => panic!("{what}: client task: {e}"),
            }
        }
        assert!(
            started.elapsed() < DEADLINE * 6,
            "{what}: only {} clients in {:?}",
            done.len(),
            started.elapsed()
        );
    }
    eprintln!("{what}: {count} clients in {:?}", started.elapsed());
    done
}

/// What the kernel says about one process's memory.
#[derive(Clone, Copy)]
struct Memory {
    /// Resident set size.
    rss: u64,
    /// The anonymous part of it (heap, stacks): what grows with clients.
    anon: u64,
}

impl Memory {
    fn of(pid: i32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Memory {
            rss: kib("VmRSS:"),
            anon: kib("RssAnon:"),
        }
    }
}

/// Prints one `memory:` line: the step's numbers, and the growth per client since `base`.
fn report(step: &str, now: Memory, (since, base): (&str, Memory), clients: usize) {
    let per = |a: u64, b: u64| (a as f64 - b as f64) / clients.max(1) as f64;
    eprintln!(
        "memory: {step:<24} rss {:>7} KiB  anon {:>7} KiB | per client since {since:<12} rss {:>6.0} B  anon {:>6.0} B",
        now.rss / 1024,
        now.anon / 1024,
        per(now.rss, base.rss),
        per(now.anon, base.anon),
    );
}

#[test]
fn one_worker_holds_more_clients_than_a_connection_has_channels() {
    hold_idle_clients(2_500);
}

/// `GATEWAY_SCALE_CLIENTS` clients (default 10,000) connect to one worker, stay connected
/// through three socket.io heartbeat rounds (answering every ping), and each round-trips one
/// request through the echo agent. A process may hold at most `ulimit -Hn` descriptors: the
/// worker needs one per client and so does this test, which bounds the count on a machine.
#[test]
#[ignore = "heavy: run by bench/gateway.sh"]
fn one_worker_holds_many_idle_clients_through_heartbeats() {
    let clients = std::env::var("GATEWAY_SCALE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    hold_idle_clients_with(clients, Hold::ThroughHeartbeats);
}

fn hold_idle_clients(clients: usize) {
    hold_idle_clients_with(clients, Hold::Idle);
}

/// What the clients do once connected.
#[derive(Clone, Copy, PartialEq)]
enum Hold {
    /// Nothing: memory is read at once.
    Idle,
    /// Answer socket.io pings for three heartbeat rounds, then round-trip once each.
    ThroughHeartbeats,
}

/// socket.io ping interval and timeout (seconds) of the heartbeat run.
const PING_INTERVAL: u64 = 5;
const PING_TIMEOUT: u64 = 10;

fn hold_idle_clients_with(clients: usize, hold: Hold) {
    let heartbeats = match hold {
        Hold::Idle => "gateway.socketio.interval=60\ngateway.socketio.timeout=120\n".to_string(),
        Hold::ThroughHeartbeats => {
            common::agent::start_agent();
            format!(
                "gateway.socketio.interval={PING_INTERVAL}\ngateway.socketio.timeout={PING_TIMEOUT}\n\
                 gateway.rabbitmq.maxQueueDeclaresPerSecond=5000\n"
            )
        }
    };
    let cluster = Cluster::start(&format!(
        "cluster.workerCount=1\ncluster.drainTimeout=20000\nfrontend.session_secret=s\n\
         cluster.heartbeatInterval=1000\ncluster.workerTimeout=20000\ncluster.watchdogInterval=1000\n\
         frontend.logLevel=info\n{heartbeats}"
    ));
    let url = ws::url(cluster.addr());
    let pid = cluster.worker_pids()[0];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idle = Memory::of(pid);
    report("idle", idle, ("idle", idle), clients);
    let sockets = runtime.block_on(batched("socket.io open", clients, || url.clone(), ws::open));
    let open = Memory::of(pid);
    report("socket.io sockets open", open, ("idle", idle), clients);
    let mut sockets = sockets.into_iter();
    let sockets = runtime.block_on(batched(
        "gateway connect",
        clients,
        || sockets.next().expect("one socket per client"),
        connect,
    ));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = cluster.status().expect("status");
        let worker = &common::workers(&status)[0];
        let seen = worker["clients"].as_u64().unwrap_or(0);
        if seen >= clients as u64 {
            eprintln!(
                "status: {seen} clients; rss {} heap_used {} heap_total {}",
                worker["rss"], worker["heap_used"], worker["heap_total"]
            );
            break;
        }
        assert!(Instant::now() < deadline, "status shows {seen} clients");
        std::thread::sleep(Duration::from_millis(100));
    }
    let connected = Memory::of(pid);
    report("after connect", connected, ("sockets open", open), clients);
    report("total", connected, ("idle", idle), clients);
    let sockets = match hold {
        Hold::Idle => sockets,
        Hold::ThroughHeartbeats => runtime.block_on(through_heartbeats(&cluster, sockets)),
    };
    drop(sockets);
    let worker = common::wait_for("every client gone", || {
        let status = cluster.status()?;
        let worker = common::workers(&status).swap_remove(0);
        (worker["clients"].as_u64()? == 0).then_some(worker)
    });
    eprintln!(
        "status: 0 clients; rss {} heap_used {} heap_total {}",
        worker["rss"], worker["heap_used"], worker["heap_total"]
    );
    // What is not given back: leaks, caches, and free memory the allocator keeps.
    report("all clients gone", Memory::of(pid), ("idle", idle), clients);
    // The worker gives its free heap back to the OS (at a heartbeat answer).
    let worker = common::wait_for("free heap given back", || {
        let status = cluster.status()?;
        let worker = common::workers(&status).swap_remove(0);
        let (rss, used) = (worker["rss"].as_u64()?, worker["heap_used"].as_u64()?);
        (rss < 2 * used + (48 << 20)).then_some(worker)
    });
    eprintln!(
        "status: trimmed; rss {} heap_used {} heap_total {}",
        worker["rss"], worker["heap_used"], worker["heap_total"]
    );
    report("after trim", Memory::of(pid), ("idle", idle), clients);
}

/// Every socket answers pings for three heartbeat rounds (the worker must still count all of
/// them), then sends one `testCall` and waits for its push; returns the sockets.
async fn through_heartbeats(cluster: &Cluster, sockets: Vec<Ws>) -> Vec<Ws> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let clients = sockets.len();
    let (go, wait) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, mut ws)| {
            let mut go = wait.clone();
            tokio::spawn(async move {
                // Pings only, until told to round-trip.
                loop {
                    tokio::select! {
                        changed = go.changed() => {
                            changed.map_err(|_| "stopped".to_string())?;
                            break;
                        }
                        frame = ws.next() => match frame {
                            Some(Ok(Message::Text(t))) if t.as_str() == "2" => ws
                                .send(Message::text("3"))
                                .await
                                .map_err(|e| format!("client {i}: pong: {e}"))?,
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(format!("client {i}: {e}")),
                            None => return Err(format!("client {i}: closed while idle")),
                        },
                    }
                }
                let id = format!("scale-{i}");
                ws.send(Message::text(format!(
                    r#"42["testCall",{{"cn":"TestCall","messageId":"{id}"}}]"#
                )))
                .await
                .map_err(|e| format!("client {i}: send: {e}"))?;
                let push = ws::read_until(&mut ws, r#"42["push""#).await?;
                if !push.contains(&id) {
                    return Err(format!("client {i}: push for another request: {push}"));
                }
                Ok::<Ws, String>(ws)
            })
        })
        .collect();
    let held = Duration::from_secs(3 * PING_INTERVAL + PING_TIMEOUT);
    eprintln!("holding {clients} clients through heartbeats for {held:?}");
    tokio::time::sleep(held).await;
    let worker = &common::workers(&cluster.status().expect("status"))[0];
    let still = worker["clients"].as_u64().unwrap_or(0);
    eprintln!("status: {still} clients after {held:?} of heartbeats");
    assert_eq!(still, clients as u64, "clients lost during heartbeats");
    let started = Instant::now();
    go.send(true).expect("clients listening");
    let mut back = Vec::with_capacity(clients);
    for task in tasks {
        match task.await {
            Ok(Ok(ws)) => back.push(ws),
            Ok(Err(e)) => panic!("{e}"),
            Err(e) => panic!("client task: {e}"),
        }
    }
    eprintln!("round trip: {clients} clients in {:?}", started.elapsed());
    back
}
