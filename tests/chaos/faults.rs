//! The faults, each a loop on a thread of its own for the fault window, recording what it did.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cluster::Cluster;
use crate::services::{Nats, Rabbit, Redis, Server};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault: the baseline.
    None,
    /// SIGKILL a random gateway worker every 2 s.
    KillWorker,
    /// SIGSTOP a random gateway worker and leave it stopped past `cluster.workerTimeout`
    /// (the watchdog kills it), again and again.
    StopWorker,
    /// `cluster.memoryLimit.rss` low enough that loaded workers are recycled.
    MemoryLimit,
    /// 10 SIGHUPs (reloads) over the window.
    Sighup,
    RabbitRestart,
    RedisRestart,
    NatsRestart,
    /// SIGKILL the relay every 3 s.
    RelayKill,
    /// All of the above at once.
    Mixed,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::None,
        Fault::KillWorker,
        Fault::StopWorker,
        Fault::MemoryLimit,
        Fault::Sighup,
        Fault::RabbitRestart,
        Fault::RedisRestart,
        Fault::NatsRestart,
        Fault::RelayKill,
        Fault::Mixed,
    ];

    pub fn tag(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::KillWorker => "kill",
            Fault::StopWorker => "stop",
            Fault::MemoryLimit => "memory",
            Fault::Sighup => "sighup",
            Fault::RabbitRestart => "rabbitmq",
            Fault::RedisRestart => "redis",
            Fault::NatsRestart => "nats",
            Fault::RelayKill => "relay",
            Fault::Mixed => "mixed",
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.tag() == name)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Fault::None => "no fault (baseline)",
            Fault::KillWorker => "SIGKILL a random worker every 2 s",
            Fault::StopWorker => "SIGSTOP a worker past cluster.workerTimeout, again and again",
            Fault::MemoryLimit => {
                "memory-limit recycles (cluster.memoryLimit.rss just above a fresh worker's)"
            }
            Fault::Sighup => "10 SIGHUPs",
            Fault::RabbitRestart => "RabbitMQ restarted",
            Fault::RedisRestart => "Redis restarted",
            Fault::NatsRestart => "NATS restarted",
            Fault::RelayKill => "the relay SIGKILLed every 3 s",
            Fault::Mixed => "all of them at once",
        }
    }

    pub fn has(self, part: Fault) -> bool {
        self == part || (self == Fault::Mixed && part != Fault::None)
    }
}

/// What the fault loops did.
#[derive(Default, Debug)]
pub struct Actions {
    pub workers_killed: u32,
    pub workers_stopped: u32,
    /// Stopped workers the watchdog had not killed within workerTimeout + 5 s.
    pub watchdog_missed: u32,
    /// SIGSTOP -> the stopped worker gone, ms.
    pub stop_to_gone_ms: Vec<u64>,
    pub sighups: u32,
    pub rabbit_restarts: u32,
    pub redis_restarts: u32,
    pub nats_restarts: u32,
    /// Stop -> serving again, ms, per restart.
    pub outage_ms: Vec<(&'static str, u64)>,
    pub relays_killed: u32,
}

impl fmt::Display for Actions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut add = |n: u32, what: &str| {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        add(self.workers_killed, "workers SIGKILLed");
        add(self.workers_stopped, "workers SIGSTOPped");
        add(self.watchdog_missed, "stopped workers the watchdog missed");
        add(self.sighups, "SIGHUPs");
        add(self.rabbit_restarts, "RabbitMQ restarts");
        add(self.redis_restarts, "Redis restarts");
        add(self.nats_restarts, "NATS restarts");
        add(self.relays_killed, "relays SIGKILLed");
        if parts.is_empty() {
            parts.push("nothing".into());
        }
        write!(f, "{}", parts.join(", "))
    }
}

pub struct Servers<'a> {
    pub rabbit: &'a Mutex<Rabbit>,
    pub redis: &'a Mutex<Redis>,
    pub nats: &'a Mutex<Nats>,
}

fn signal(pid: i32, s: Signal) {
    let _ = kill(Pid::from_raw(pid), s);
}

/// Sleeps `d` unless the window ends first; false once it has.
fn pause(d: Duration, end: Instant, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) || Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Instant::now() < end
}

fn pick(pids: &[i32]) -> Option<i32> {
    (!pids.is_empty()).then(|| pids[fastrand::usize(..pids.len())])
}

/// Runs `fault` against `cluster` for `window`; returns what it did.
pub fn run(
    fault: Fault,
    cluster: &Cluster,
    servers: &Servers<'_>,
    window: Duration,
    worker_timeout: Duration,
) -> Actions {
    let actions = Mutex::new(Actions::default());
    let stop = AtomicBool::new(false);
    let end = Instant::now() + window;
    let record = |f: &dyn Fn(&mut Actions)| f(&mut actions.lock().expect("actions"));
    let restarts = |server: &dyn Fn() -> Duration, first: Duration, every: Duration, what| {
        let mut wait = first;
        while pause(wait, end, &stop) {
            let took = server();
            record(&|a| {
                a.outage_ms.push((what, took.as_millis() as u64));
                match what {
                    "rabbitmq" => a.rabbit_restarts += 1,
                    "redis" => a.redis_restarts += 1,
                    _ => a.nats_restarts += 1,
                }
            });
            wait = every;
        }
    };
    std::thread::scope(|s| {
        if fault.has(Fault::KillWorker) {
            s.spawn(|| {
                while pause(Duration::from_secs(2), end, &stop) {
                    if let Some(pid) = pick(&cluster.ready_workers()) {
                        signal(pid, Signal::SIGKILL);
                        record(&|a| a.workers_killed += 1);
                    }
                }
            });
        }
        if fault.has(Fault::StopWorker) {
            s.spawn(|| {
                while pause(Duration::from_millis(1500), end, &stop) {
                    let Some(pid) = pick(&cluster.ready_workers()) else {
                        continue;
                    };
                    signal(pid, Signal::SIGSTOP);
                    let stopped = Instant::now();
                    record(&|a| a.workers_stopped += 1);
                    let limit = worker_timeout + Duration::from_secs(5);
                    while crate::common::alive(pid) && stopped.elapsed() < limit {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if crate::common::alive(pid) {
                        signal(pid, Signal::SIGKILL);
                        signal(pid, Signal::SIGCONT);
                        record(&|a| a.watchdog_missed += 1);
                    } else {
                        let ms = stopped.elapsed().as_millis() as u64;
                        record(&|a| a.stop_to_gone_ms.push(ms));
                    }
                }
            });
        }
        if fault.has(Fault::Sighup) {
            s.spawn(|| {
                let every = window / 11;
                for _ in 0..10 {
                    if !pause(every, end, &stop) {
                        break;
                    }
                    cluster.signal(Signal::SIGHUP);
                    record(&|a| a.sighups += 1);
                }
            });
        }
        if fault.has(Fault::RelayKill) {
            s.spawn(|| {
                while pause(Duration::from_secs(3), end, &stop) {
                    if let Some(pid) = cluster.relay_pid() {
                        signal(pid, Signal::SIGKILL);
                        record(&|a| a.relays_killed += 1);
                    }
                }
            });
        }
        if fault.has(Fault::RabbitRestart) {
            s.spawn(|| {
                let restart = || {
                    servers
                        .rabbit
                        .lock()
                        .expect("rabbit")
                        .restart(Duration::from_secs(2))
                };
                // RabbitMQ takes seconds to boot, and the workers seconds more to be back.
                restarts(&restart, window / 5, Duration::from_secs(20), "rabbitmq");
            });
        }
        if fault.has(Fault::RedisRestart) {
            s.spawn(|| {
                let restart = || {
                    servers
                        .redis
                        .lock()
                        .expect("redis")
                        .restart(Duration::from_secs(1))
                };
                restarts(&restart, window / 6, Duration::from_secs(7), "redis");
            });
        }
        if fault.has(Fault::NatsRestart) {
            s.spawn(|| {
                let restart = || {
                    servers
                        .nats
                        .lock()
                        .expect("nats")
                        .restart(Duration::from_secs(1))
                };
                restarts(&restart, window / 4, Duration::from_secs(7), "nats");
            });
        }
        // The window ends: every loop sees it at its next pause.
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    actions.into_inner().expect("actions")
}
