//! Faults under load, counted (ignored; `bench/chaos.sh` runs it in release).
//!
//! Load: socket.io v4 and 0.9 clients doing acked round trips through the gateway to an agent
//! on RabbitMQ, outbox inserts that the relay turns into EVENTS messages, and centrifuge-js
//! clients subscribed to the users those documents are for (bench/chaos/clients.js drives the
//! npm clients). Faults, each alone and then all at once: workers SIGKILLed, workers SIGSTOPped
//! past the watchdog's timeout, memory-limit recycles, SIGHUPs, RabbitMQ, Redis and NATS
//! restarted, the relay SIGKILLed. The servers are private ones of this run (the machine's
//! shared RabbitMQ, Redis and NATS are never touched); MongoDB is our wire-protocol test server
//! (tests/mongo_wire), since MongoDB cannot be installed on these machines.
//!
//! Every scenario gets a fresh cluster and fresh clients; after the fault window the faults stop,
//! the clients finish their last requests, and the run waits until what was published has
//! arrived (bounded). Then it counts, per scenario: requests sent, answered, never answered,
//! sends that never reached the backend, answers lost, duplicate pushes (with their reasons),
//! disconnects and reconnects, outbox documents lost or duplicated on their way to EVENTS, and
//! realtime publications lost or duplicated on their way to the clients. Writes
//! `bench/results/chaos.md` and `chaos.json`.
//!
//! Settings (environment): CHAOS_SECONDS (fault window per scenario, 20), CHAOS_FAULTS (`all`,
//! or a comma-separated list of none,kill,stop,memory,sighup,rabbitmq,redis,nats,relay,mixed),
//! CHAOS_V4 (socket.io v4 clients, 20), CHAOS_LEGACY (socket.io 0.9 clients, 10),
//! CHAOS_REALTIME (centrifuge-js clients, 10), CHAOS_INSERTS (outbox inserts per second, 20),
//! CHAOS_THINK_MS (pause between a client's requests, 25), CHAOS_DURABLE (durable client
//! queues and persistent messages, true), CHAOS_VERBOSE.
#![allow(dead_code)] // helpers kept for the bench's next faults

#[path = "../common/mod.rs"]
mod common;
#[path = "../mongo_wire/mod.rs"]
mod mongo_wire;
#[path = "../realtime_support/mod.rs"]
mod realtime_support;

mod agent;
mod cluster;
mod faults;
mod reactivity;
mod services;
mod tally;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use agent::Agent;
use cluster::{Cluster, Settings};
use faults::{Actions, Fault, Servers};
use services::{Nats, Rabbit, Redis, Server, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_activestack-gateway");
const HEARTBEAT_MS: u64 = 500;
const WORKER_TIMEOUT_MS: u64 = 2000;

// ----- small helpers -----

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn load1() -> f64 {
    loadavg()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn say(line: &str) {
    eprintln!("[chaos {}] {line}", chrono_like());
}

fn chrono_like() -> String {
    let s = now_secs();
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

// ----- the clients (bench/chaos/clients.js) -----

struct Clients {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    log: PathBuf,
    last_progress: Value,
}

impl Clients {
    fn start(config: &Value, log: &Path) -> Clients {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/chaos/clients.js");
        let mut child = Command::new("node")
            .arg(script)
            .arg(config.to_string())
            .arg(log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node bench/chaos/clients.js (bench/chaos.sh installs its packages)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        Clients {
            child,
            stdin,
            events,
            log: log.to_path_buf(),
            last_progress: Value::Null,
        }
    }

    fn send(&mut self, op: &str) {
        let _ = writeln!(self.stdin, "{}", json!({"op": op}));
        let _ = self.stdin.flush();
    }

    /// Waits for the control line `event`; false after `within`.
    fn wait(&mut self, event: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v["event"] == event => return true,
                Ok(v) => {
                    if v["event"] == "progress" {
                        self.last_progress = v;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    fn parsed(&self) -> tally::ClientLog {
        tally::ClientLog::parse(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn exit(mut self) {
        self.send("exit");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- one scenario -----

struct Run {
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    wire: mongo_wire::MongoWire,
    rabbit: Mutex<Rabbit>,
    redis: Mutex<Redis>,
    nats: Mutex<Nats>,
    rabbit_url: String,
    rabbit_port: u16,
    redis_port: u16,
    nats_url: String,
    agent: Agent,
    seconds: u64,
    v4: usize,
    legacy: usize,
    realtime: usize,
    inserts: u32,
    think_ms: u64,
    durable: bool,
}

#[derive(Serialize)]
struct Outcome {
    fault: &'static str,
    description: &'static str,
    window_s: u64,
    actions: String,
    load_before: String,
    load_peak_1m: f64,
    socket_io: tally::SocketIo,
    realtime: tally::Realtime,
    /// From the master's log.
    worker_restarts: u64,
    standby_activations: u64,
    recycles: u64,
    relay_restarts: u64,
    watchdog_kills: u64,
    /// The consumer's (pending, ack pending) at the end; dead letters.
    consumer_pending: Option<(u64, usize)>,
    dead_letters: u64,
    /// Answers left in client queues at the end, by queue (the lost ones, if any).
    leftovers: Vec<(String, String)>,
    stop_to_gone_ms: Vec<u64>,
    outage_ms: Vec<(&'static str, u64)>,
    notes: Vec<String>,
    log_dir: String,
}

impl Run {
    fn settings(&self, fault: Fault) -> Settings {
        let _ = fault;
        Settings {
            tag: fault.tag().to_string(),
            port: free_port(),
            rabbit_port: self.rabbit_port,
            redis_port: self.redis_port,
            nats_url: self.nats_url.clone(),
            mongo_url: self.wire.url(),
            durable: self.durable,
            workers: 2,
            heartbeat_ms: HEARTBEAT_MS,
            worker_timeout_ms: WORKER_TIMEOUT_MS,
            extra: Vec::new(),
        }
    }

    /// `cluster.memoryLimit.rss` just above what a fresh worker needs (the standby's RSS, rounded
    /// up, + CHAOS_MEMORY_MARGIN_MB, 1), applied by a reload before the clients come: the workers
    /// are recycled once their clients make them grow.
    fn memory_limit(&self, cluster: &Cluster, settings: &mut Settings) -> Option<String> {
        const MB: u64 = 1024 * 1024;
        // The standby's RSS, once the master has measured it.
        let start = Instant::now();
        let (status, fresh) = loop {
            if let Some(s) = cluster.settled()
                && let Some(rss) = s.standby.first().map(|w| w.rss).filter(|&r| r > 0)
            {
                break (s, rss);
            }
            if start.elapsed() > Duration::from_secs(20) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let limit = fresh.div_ceil(MB) + env_or("CHAOS_MEMORY_MARGIN_MB", 1u64);
        settings
            .extra
            .push(format!("cluster.memoryLimit.rss={limit}"));
        cluster.rewrite(settings);
        cluster.signal(nix::sys::signal::Signal::SIGHUP);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if cluster
                .settled()
                .is_some_and(|s| s.generation > status.generation)
            {
                return Some(format!(
                    "cluster.memoryLimit.rss={limit} MB (a fresh worker: {:.1} MB)",
                    fresh as f64 / MB as f64
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn scenario(&self, fault: Fault) -> Outcome {
        let mut notes = Vec::new();
        let mut settings = self.settings(fault);
        let tag = settings.tag.clone();
        say(&format!("=== {tag}: {}", fault.describe()));
        self.redis.lock().expect("redis").flush();
        let _ = self.agent.take();
        let cluster = Cluster::start(Path::new(BIN), &self.dir, &settings);
        if cluster.wait_settled(Duration::from_secs(90)).is_none() {
            notes.push("the cluster did not settle at the start".into());
        }
        if fault.has(Fault::MemoryLimit) {
            match self.memory_limit(&cluster, &mut settings) {
                Some(limit) => notes.push(limit),
                None => notes.push("the memory limit could not be applied".into()),
            }
        }
        if !reactivity::wait_consumer(
            &self.rt,
            &self.nats_url,
            &settings.stream(),
            &settings.consumer(),
            Duration::from_secs(60),
        ) {
            notes.push("the realtime consumer did not appear".into());
        }
        let addr: SocketAddr = ([127, 0, 0, 1], settings.port).into();
        let users: Vec<String> = (0..self.realtime).map(|i| format!("{tag}rt{i}")).collect();
        let tokens: Vec<Value> = users
            .iter()
            .map(|u| {
                let claims = json!({"sub": u, "exp": now_secs() + 86_400});
                json!({"user": u, "token": activestack_gateway::realtime::jwt::sign_hs256(
                    &claims, cluster::TOKEN_KEY.as_bytes())})
            })
            .collect();
        let config = json!({
            "url": format!("http://{addr}"), "v4": self.v4, "legacy": self.legacy,
            "realtime": tokens, "thinkMs": self.think_ms, "retryMs": 15000, "tag": tag,
        });
        let log = cluster.dir.join("clients.log");
        let mut clients = Clients::start(&config, &log);
        if !clients.wait("ready", Duration::from_secs(90)) {
            notes.push(format!(
                "the clients were not all ready after 90 s: {}",
                clients.last_progress
            ));
        }
        let inserter = reactivity::Inserter::start(
            &self.rt,
            &self.wire.url(),
            &settings.database(),
            users.clone(),
            &tag,
            self.inserts,
        );
        // Warm-up, then the faults.
        std::thread::sleep(Duration::from_secs(2));
        let load_before = loadavg();
        let peak = Mutex::new(load1());
        let window = Duration::from_secs(self.seconds);
        let servers = Servers {
            rabbit: &self.rabbit,
            redis: &self.redis,
            nats: &self.nats,
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        let actions: Actions = std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let l = load1();
                    let mut p = peak.lock().expect("peak");
                    if l > *p {
                        *p = l;
                    }
                    drop(p);
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
            let a = faults::run(
                fault,
                &cluster,
                &servers,
                window,
                Duration::from_millis(WORKER_TIMEOUT_MS),
            );
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            a
        });
        say(&format!("{tag}: faults done: {actions}"));
        if let Some(s) = cluster.status() {
            let workers: Vec<String> = s
                .workers
                .iter()
                .chain(&s.standby)
                .map(|w| {
                    format!(
                        "{:?} {} rss {:.1} MB, {} clients",
                        w.role,
                        w.state,
                        w.rss as f64 / 1048576.0,
                        w.clients
                    )
                })
                .collect();
            notes.push(format!("at the end of the window: {}", workers.join(", ")));
        }

        // Recovery: the cluster as it should be again, then the clients finish.
        if cluster.wait_settled(Duration::from_secs(90)).is_none() {
            notes.push("the cluster did not settle after the faults".into());
        }
        std::thread::sleep(Duration::from_secs(1));
        clients.send("stop");
        let (inserted, insert_failed) = inserter.stop(&self.rt);
        if !clients.wait("drained", Duration::from_secs(90)) {
            notes.push(format!(
                "not every socket.io client had its last answer after 90 s: {}",
                clients.last_progress
            ));
        }
        // Until what was published has arrived: every answer the agent published, every
        // outbox document in EVENTS delivered (bounded).
        let start = Instant::now();
        let inserted_ids: HashSet<&str> = inserted.iter().map(|(id, _)| id.as_str()).collect();
        loop {
            let log = clients.parsed();
            let outstanding = {
                let agent = self.agent.log.lock().expect("agent log");
                log.outstanding(&agent)
            };
            let delivered = log.rt_delivered();
            let undelivered = inserted_ids
                .iter()
                .filter(|id| !delivered.contains(*id))
                .count();
            if (outstanding == 0 && undelivered == 0) || start.elapsed() > Duration::from_secs(45) {
                if outstanding + undelivered > 0 {
                    notes.push(format!(
                        "after 45 s of waiting: {outstanding} answers and {undelivered} publications outstanding"
                    ));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let agent_log = self.agent.take();
        let log = clients.parsed();
        let socket_io = log.socket_io(&agent_log);
        let leftovers = if socket_io.lost > 0 {
            agent::leftovers(&self.rt, &self.rabbit_url, &agent_log.queues)
                .into_iter()
                .filter(|(_, id)| id.starts_with(&tag))
                .collect()
        } else {
            Vec::new()
        };
        let in_events =
            match reactivity::stream_contents(&self.rt, &self.nats_url, &settings.stream()) {
                Ok(c) => c,
                Err(e) => {
                    notes.push(format!("cannot read {}: {e}", settings.stream()));
                    Default::default()
                }
            };
        let delivered = log.rt_delivered();
        let mut history = HashSet::new();
        let missing_users: HashSet<&str> = inserted
            .iter()
            .filter(|(id, _)| !delivered.contains(id.as_str()))
            .map(|(_, u)| u.as_str())
            .collect();
        for user in missing_users {
            if let Some(ids) =
                reactivity::history(addr, cluster::API_KEY, &format!("personal:#{user}"))
            {
                history.extend(ids);
            }
        }
        let realtime = log.realtime(users.len(), &inserted, insert_failed, &in_events, &history);
        let (consumer_pending, dead_letters) = reactivity::consumer_state(
            &self.rt,
            &self.nats_url,
            &settings.stream(),
            &settings.consumer(),
            &settings.dead_letter_stream(),
        );
        let outcome = Outcome {
            fault: fault.tag(),
            description: fault.describe(),
            window_s: self.seconds,
            actions: actions.to_string(),
            load_before,
            load_peak_1m: *peak.lock().expect("peak"),
            worker_restarts: cluster.count_log(&["worker exited unexpectedly"]) as u64,
            standby_activations: cluster.count_log(&["standby activated"]) as u64,
            recycles: cluster.count_log(&["recycling the worker"]) as u64,
            relay_restarts: cluster.count_log(&["relay", "exited unexpectedly"]) as u64,
            watchdog_kills: cluster.count_log(&["did not answer heartbeats"]) as u64,
            consumer_pending,
            dead_letters,
            leftovers,
            stop_to_gone_ms: actions.stop_to_gone_ms.clone(),
            outage_ms: actions.outage_ms.clone(),
            socket_io,
            realtime,
            notes,
            log_dir: cluster.dir.display().to_string(),
        };
        clients.exit();
        cluster.stop();
        say(&format!(
            "{tag}: {} requests, {} answered, {} never answered, {} lost, {} duplicates; outbox {} inserted, {} lost; realtime {} lost, {} duplicated",
            outcome.socket_io.requests,
            outcome.socket_io.answered,
            outcome.socket_io.never_answered,
            outcome.socket_io.lost,
            outcome.socket_io.duplicates,
            outcome.realtime.inserted,
            outcome.realtime.outbox_lost,
            outcome.realtime.lost,
            outcome.realtime.duplicated
        ));
        outcome
    }
}

// ----- the report -----

fn report(outcomes: &[Outcome], run: &Run, started: &str, took: Duration) -> String {
    let mut md = String::new();
    md.push_str("# Faults under load (bench/chaos.sh)\n\n");
    md.push_str(&format!(
        "Run {started}, {} s of faults per scenario, {took:.0?} in all. Load: {} socket.io v4 and {} socket.io 0.9 \
         clients doing acked round trips (think time {} ms), {} centrifuge-js clients, {} outbox inserts/s. \
         2 workers + standby + relay; heartbeat {HEARTBEAT_MS} ms, workerTimeout {WORKER_TIMEOUT_MS} ms; \
         client queues durable: {}. Private RabbitMQ, Redis (append-only file) and NATS; MongoDB is the \
         wire-protocol test server.\n\n",
        run.seconds, run.v4, run.legacy, run.think_ms, run.realtime, run.inserts, run.durable
    ));
    md.push_str("| fault | requests | answered | never answered | never reached backend | lost | duplicate pushes | disconnects / reconnects | outbox docs | lost / dup in EVENTS | realtime lost / dup | realtime disconnects / not recovered | load 1m |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for o in outcomes {
        let s = &o.socket_io;
        let r = &o.realtime;
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} / {} | {} / {} | {} / {} | {:.1} |\n",
            o.fault,
            s.requests,
            s.answered,
            s.never_answered,
            s.never_reached_backend,
            s.lost,
            s.duplicates,
            s.disconnects,
            s.reconnects,
            r.inserted,
            r.outbox_lost,
            r.outbox_duplicated,
            r.lost,
            r.duplicated,
            r.disconnects,
            r.not_recovered,
            o.load_peak_1m
        ));
    }
    md.push_str("\nDuplicate pushes by reason (answer to a re-sent request / request redelivered to the backend / redelivered after a reconnect / gateway re-send on the same connection), and what else happened:\n\n");
    for o in outcomes {
        let s = &o.socket_io;
        md.push_str(&format!(
            "- **{}** ({}): {}. Duplicates {} / {} / {} / {}. Sends {} ({} re-sent without `ack`, {} after a timeout), {} acked; \
             gatewayErrors {:?}; agent: {} renames, {} answers moved, {} forwarded, {} unroutable. \
             Master: {} unexpected worker exits, {} watchdog kills, {} recycles, {} standby activations, {} relay restarts. \
             Realtime: {} recovered, {} not recovered; consumer pending {:?}, dead letters {}.{}{}\n",
            o.fault,
            o.description,
            o.actions,
            s.dup_resent_request,
            s.dup_backend_redelivery,
            s.dup_after_reconnect,
            s.dup_same_connection,
            s.sends,
            s.resent_no_ack,
            s.resent_timeout,
            s.acked,
            s.gateway_errors,
            s.renames,
            s.moved,
            s.forwarded,
            s.unroutable,
            o.worker_restarts,
            o.watchdog_kills,
            o.recycles,
            o.standby_activations,
            o.relay_restarts,
            o.realtime.recovered,
            o.realtime.not_recovered,
            o.consumer_pending,
            o.dead_letters,
            if o.outage_ms.is_empty() {
                String::new()
            } else {
                format!(" Outages (stop -> serving, ms): {:?}.", o.outage_ms)
            },
            if o.notes.is_empty() {
                String::new()
            } else {
                format!(" Notes: {}.", o.notes.join("; "))
            },
        ));
        for e in s.lost_examples.iter().chain(&o.realtime.lost_examples) {
            md.push_str(&format!("  - lost: {e}\n"));
        }
        for (q, id) in o.leftovers.iter().take(10) {
            md.push_str(&format!("  - left in queue {q}: {id}\n"));
        }
    }
    md
}

#[test]
#[ignore = "benchmark: bench/chaos.sh"]
fn faults_under_load() {
    let started_at = Instant::now();
    let started = {
        let out = Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d %H:%M UTC")
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let faults: Vec<Fault> = match std::env::var("CHAOS_FAULTS").as_deref() {
        Err(_) | Ok("all") | Ok("") => Fault::ALL.to_vec(),
        Ok(list) => list
            .split(',')
            .map(|f| Fault::parse(f.trim()).unwrap_or_else(|| panic!("unknown fault {f:?}")))
            .collect(),
    };
    let dir = std::env::temp_dir().join(format!("chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("run dir");
    say(&format!("logs and server data in {}", dir.display()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let wire = {
        let _guard = rt.enter();
        rt.block_on(mongo_wire::MongoWire::start())
    };
    let mut rabbit = Rabbit::new(&dir);
    let mut redis = Redis::new(&dir);
    let mut nats = Nats::new(&dir);
    rabbit.start();
    redis.start();
    nats.start();
    redis.wait_up(Duration::from_secs(20));
    nats.wait_up(Duration::from_secs(20));
    rabbit.wait_up(Duration::from_secs(120));
    say(&format!(
        "private servers up: rabbitmq :{}, redis :{}, nats :{}, mongodb (wire test server) {}",
        rabbit.port(),
        redis.port(),
        nats.port(),
        wire.addr()
    ));
    let durable = env_or("CHAOS_DURABLE", true);
    let agent = {
        let _guard = rt.enter();
        Agent::start(&rt, rabbit.url(), durable)
    };
    let start = Instant::now();
    while !agent.connected_once() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the agent never connected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = Run {
        dir: dir.clone(),
        rabbit_url: rabbit.url(),
        rabbit_port: rabbit.port(),
        redis_port: redis.port(),
        nats_url: nats.url(),
        rabbit: Mutex::new(rabbit),
        redis: Mutex::new(redis),
        nats: Mutex::new(nats),
        wire,
        agent,
        seconds: env_or("CHAOS_SECONDS", 20),
        v4: env_or("CHAOS_V4", 20),
        legacy: env_or("CHAOS_LEGACY", 10),
        realtime: env_or("CHAOS_REALTIME", 10),
        inserts: env_or("CHAOS_INSERTS", 20),
        think_ms: env_or("CHAOS_THINK_MS", 25),
        durable,
        rt,
    };
    let mut outcomes = Vec::new();
    for fault in faults {
        let _guard = run.rt.enter();
        outcomes.push(run.scenario(fault));
    }
    let md = report(&outcomes, &run, &started, started_at.elapsed());
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&results).expect("bench/results");
    std::fs::write(results.join("chaos.md"), &md).expect("chaos.md");
    let json = json!({"started": started, "seconds": run.seconds, "outcomes": outcomes});
    std::fs::write(
        results.join("chaos.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .expect("chaos.json");
    println!("{md}");
    let Run { agent, rt, .. } = run;
    agent.stop(&rt);
}
