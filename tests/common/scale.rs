//! One worker holding many idle clients, its memory at each step: the runs of
//! tests/gateway_scale.rs (socket.io v5 clients) and tests/legacy_scale.rs (socket.io 0.9), with
//! bare clients over one websocket each (`ws.rs`, `legacy.rs`). Numbers only, no assertions on
//! them: they depend on the allocator, the kernel and the machine.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ws::Ws;
use super::{Cluster, DEADLINE};

/// Connections opened at once.
const BATCH: usize = 200;

/// Runs `step` on `count` items in batches of [`BATCH`], `make` giving each its input.
pub async fn batched<I, F>(
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
pub struct Memory {
    /// Resident set size.
    pub rss: u64,
    /// The anonymous part of it (heap, stacks): what grows with clients.
    pub anon: u64,
}

impl Memory {
    pub fn of(pid: i32) -> Memory {
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
pub fn report(step: &str, now: Memory, (since, base): (&str, Memory), clients: usize) {
    let per = |a: u64, b: u64| (a as f64 - b as f64) / clients.max(1) as f64;
    eprintln!(
        "memory: {step:<24} rss {:>7} KiB  anon {:>7} KiB | per client since {since:<12} rss {:>6.0} B  anon {:>6.0} B",
        now.rss / 1024,
        now.anon / 1024,
        per(now.rss, base.rss),
        per(now.anon, base.anon),
    );
}

/// One worker, `clients` idle clients: each opened by `open` (a socket.io session, its socket
/// connected), then given the gateway's `connect` by `connect`. Prints the connect times and the
/// worker's memory at each step (see tests/gateway_scale.rs).
pub fn hold_idle_clients<O, OF, C, CF>(clients: usize, open: O, connect: C)
where
    O: Fn(SocketAddr) -> OF,
    OF: Future<Output = Result<Ws, String>> + Send + 'static,
    C: Fn(Ws) -> CF,
    CF: Future<Output = Result<Ws, String>> + Send + 'static,
{
    hold_clients(clients, open, connect, None)
}

/// The client count of the heavy runs: `GATEWAY_SCALE_CLIENTS`, 10,000 by default.
pub fn count_from_env() -> usize {
    std::env::var("GATEWAY_SCALE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// How one protocol's idle client keeps its session and round-trips a request.
#[derive(Clone, Copy)]
pub struct Chatter {
    /// The server's heartbeat, and the client's answer.
    pub ping: &'static str,
    pub pong: &'static str,
    /// A `testCall` request with this messageId.
    pub request: fn(&str) -> String,
    /// How the push answering it begins.
    pub push: &'static str,
}

/// socket.io v5 (engine.io 4).
pub const V5: Chatter = Chatter {
    ping: "2",
    pong: "3",
    request: |id| format!(r#"42["testCall",{{"cn":"TestCall","messageId":"{id}"}}]"#),
    push: r#"42["push""#,
};

/// socket.io 0.9.
pub const LEGACY: Chatter = Chatter {
    ping: "2::",
    pong: "2::",
    request: |id| {
        format!(r#"5:::{{"name":"testCall","args":[{{"cn":"TestCall","messageId":"{id}"}}]}}"#)
    },
    push: r#"5:::{"name":"push""#,
};

/// socket.io ping interval (seconds) while clients are held through heartbeats.
const PING_INTERVAL: u64 = 5;

/// The ping timeout (seconds) for `clients`: no client reads while the others are opened and
/// connected (about 2 ms each on 2 cores), so the first ping must wait that long for its answer.
fn ping_timeout(clients: usize) -> u64 {
    10.max(clients as u64 / 250)
}

/// Like [`hold_idle_clients`], then every client answers heartbeats for three rounds (the
/// worker must still count all of them) and round-trips one request through the echo agent.
pub fn hold_clients_through_heartbeats<O, OF, C, CF>(
    clients: usize,
    open: O,
    connect: C,
    chatter: Chatter,
) where
    O: Fn(SocketAddr) -> OF,
    OF: Future<Output = Result<Ws, String>> + Send + 'static,
    C: Fn(Ws) -> CF,
    CF: Future<Output = Result<Ws, String>> + Send + 'static,
{
    hold_clients(clients, open, connect, Some(chatter))
}

fn hold_clients<O, OF, C, CF>(clients: usize, open: O, connect: C, chatter: Option<Chatter>)
where
    O: Fn(SocketAddr) -> OF,
    OF: Future<Output = Result<Ws, String>> + Send + 'static,
    C: Fn(Ws) -> CF,
    CF: Future<Output = Result<Ws, String>> + Send + 'static,
{
    let heartbeats = match chatter {
        None => "gateway.socketio.interval=60\ngateway.socketio.timeout=120\n".to_string(),
        Some(_) => {
            super::agent::start_agent();
            format!(
                "gateway.socketio.interval={PING_INTERVAL}\ngateway.socketio.timeout={}\n\
                 gateway.rabbitmq.maxQueueDeclaresPerSecond=5000\n",
                ping_timeout(clients)
            )
        }
    };
    let cluster = Cluster::start(&format!(
        "cluster.workerCount=1\ncluster.drainTimeout=20000\nfrontend.session_secret=s\n\
         cluster.heartbeatInterval=1000\ncluster.workerTimeout=20000\ncluster.watchdogInterval=1000\n\
         frontend.logLevel=info\n{heartbeats}"
    ));
    let addr = cluster.addr();
    let pid = cluster.worker_pids()[0];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let idle = Memory::of(pid);
    report("idle", idle, ("idle", idle), clients);
    let sockets = runtime.block_on(batched("socket.io open", clients, || addr, open));
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
        let worker = &super::workers(&status)[0];
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
    let sockets = match chatter {
        None => sockets,
        Some(chatter) => runtime.block_on(through_heartbeats(&cluster, sockets, chatter)),
    };
    drop(sockets);
    let worker = super::wait_for("every client gone", || {
        let status = cluster.status()?;
        let worker = super::workers(&status).swap_remove(0);
        (worker["clients"].as_u64()? == 0).then_some(worker)
    });
    eprintln!(
        "status: 0 clients; rss {} heap_used {} heap_total {}",
        worker["rss"], worker["heap_used"], worker["heap_total"]
    );
    // What is not given back: leaks, caches, and free memory the allocator keeps.
    report("all clients gone", Memory::of(pid), ("idle", idle), clients);
    // The worker gives its free heap back to the OS (at a heartbeat answer).
    let worker = super::wait_for("free heap given back", || {
        let status = cluster.status()?;
        let worker = super::workers(&status).swap_remove(0);
        let (rss, used) = (worker["rss"].as_u64()?, worker["heap_used"].as_u64()?);
        (rss < 2 * used + (48 << 20)).then_some(worker)
    });
    eprintln!(
        "status: trimmed; rss {} heap_used {} heap_total {}",
        worker["rss"], worker["heap_used"], worker["heap_total"]
    );
    report("after trim", Memory::of(pid), ("idle", idle), clients);
}

/// Every socket answers heartbeats for three rounds, then sends one `testCall` and waits for
/// its push; returns the sockets.
async fn through_heartbeats(cluster: &Cluster, sockets: Vec<Ws>, chatter: Chatter) -> Vec<Ws> {
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
                let mut requested = None;
                loop {
                    tokio::select! {
                        changed = go.changed(), if requested.is_none() => {
                            changed.map_err(|_| "stopped".to_string())?;
                            let id = format!("scale-{i}");
                            ws.send(Message::text((chatter.request)(&id)))
                                .await
                                .map_err(|e| format!("client {i}: send: {e}"))?;
                            requested = Some(id);
                        }
                        frame = ws.next() => match frame {
                            Some(Ok(Message::Text(t))) if t.as_str() == chatter.ping => ws
                                .send(Message::text(chatter.pong))
                                .await
                                .map_err(|e| format!("client {i}: heartbeat: {e}"))?,
                            Some(Ok(Message::Text(t))) if t.starts_with(chatter.push) => {
                                match &requested {
                                    Some(id) if t.contains(id.as_str()) => return Ok::<Ws, String>(ws),
                                    _ => return Err(format!("client {i}: unexpected push {t}")),
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(format!("client {i}: {e}")),
                            None => return Err(format!("client {i}: closed")),
                        },
                    }
                }
            })
        })
        .collect();
    let held = Duration::from_secs(3 * PING_INTERVAL + ping_timeout(clients));
    eprintln!("holding {clients} clients through heartbeats for {held:?}");
    // The scenario's length (heartbeat rounds), not a wait for a condition.
    tokio::time::sleep(held).await;
    let worker = &super::workers(&cluster.status().expect("status"))[0];
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
