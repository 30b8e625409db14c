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
    let cluster = Cluster::start(
        "cluster.workerCount=1\ncluster.drainTimeout=20000\nfrontend.session_secret=s\n\
         cluster.heartbeatInterval=1000\ncluster.workerTimeout=20000\ncluster.watchdogInterval=1000\n\
         frontend.logLevel=info\ngateway.socketio.interval=60\ngateway.socketio.timeout=120\n",
    );
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
