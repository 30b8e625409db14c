//! The master's decisions, apart from their effects: [`ClusterState::handle`] takes one
//! [`Event`] and the time, changes the state, and returns the [`Action`]s to carry out. It does
//! no I/O and reads no clock, so every decision can be tested without processes, sockets or
//! waiting ([`tests`]); the shell ([`super::shell`]) owns the processes, sockets and timers.
//!
//! A *slot* is a place for one worker (there are `cluster.workerCount` of them, and one for the
//! relay with `relay.enabled`, one for the demo agent with `demo.enabled`). Each slot has an *active* worker and, while it is being
//! replaced, a *successor*; the successor is promoted once it is ready and the old worker then
//! drains. So capacity never drops during a reload or a memory recycle. Restart backoff is
//! counted per slot; a worker that dies or cannot be started, before or after it was ready,
//! goes under its slot's backoff.
//!
//! With `cluster.standbyWorkers=1` one more gateway worker runs as the *standby*: initialised
//! (RabbitMQ, Redis, socket.io) but not accepting, and in no slot. When a slot needs a worker
//! (its worker died, hung or failed to start, or is over its memory limit) and the standby is
//! ready and of the current generation, the standby is activated in that slot at once instead
//! of a new worker being started, and a new standby is started (with its own backoff). The
//! standby starts once every slot is ready, and is replaced on every reload.
//!
//! Timers are derived from the state after every event ([`ClusterState::timers`]): the
//! heartbeat, watchdog and systemd ticks, each place's restart backoff, each draining worker's
//! deadline, the stop deadline and the next kill of `restart immediate`. Only instants still to
//! come are armed, so the master never wakes for nothing.
//!
//! What the state does is split by concern: [`workers`] (what runs in each slot, and the
//! standby), [`health`] (heartbeats, watchdog, memory, lag), [`lifecycle`] (signals, reloads,
//! readiness, stop), [`verbs`] (console verbs), [`status`] and [`metrics`] (the Prometheus
//! text).

mod health;
mod lifecycle;
mod messages;
mod metrics;
mod place;
mod status;
mod verbs;
mod worker;
mod workers;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::time::Instant;

pub use place::{Place, SlotId};
pub use worker::WorkerId;

use super::reload::{Prepared, ReloadError};
use super::signals::Signal;
use super::spawn::SpawnError;
use crate::config::{Config, LogLevel};
use crate::console::{Answer, Command, CommandError};
use crate::ipc::{Frame, IpcError, ToMaster, ToWorker};
use crate::metrics::Counts;
use crate::metrics::http::MetricsCall;
use crate::status::Role;
use crate::status::{Pid, StatusCall, StatusReport};
use crate::tls::TlsFiles;
use place::{Slot, Standby};
use worker::{Worker, WorkerState};

/// Past the drain deadline, how long a worker gets to exit by itself before SIGKILL.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// After SIGKILLing everyone at shutdown, how long to wait for the exits to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(2);
/// A start that failed in the master (fork, exec, an init message too large for the channel)
/// is not tried again sooner than this, whatever the backoff says: such a failure comes back at
/// once, so a zero delay (`cluster.workerRestartDelay=0`, or `maxRestartBackoff=0`) would retry
/// in a busy loop.
const SPAWN_RETRY_MIN: Duration = Duration::from_millis(100);

/// Everything that happens to the master, one value at a time.
#[derive(Debug)]
pub enum Event {
    /// The master has started: start the workers.
    Start,
    Signal(Signal),
    /// The process for `id` ([`Action::Spawn`]) runs as `pid`.
    Spawned {
        id: WorkerId,
        pid: Pid,
    },
    /// The process for `id` could not be started.
    SpawnFailed {
        id: WorkerId,
        error: SpawnError,
    },
    FromWorker {
        id: WorkerId,
        msg: ToMaster,
    },
    /// A message for `id` was not queued: the worker does not read (its queue is full), or the
    /// message is too large for the channel.
    NotSent {
        id: WorkerId,
        msg: ToWorker,
        why: NotSent,
    },
    /// The process `id` has exited (`None`: its status could not be read).
    Exited {
        id: WorkerId,
        status: Option<ExitStatus>,
    },
    /// A timer armed with [`Action::Arm`] came due.
    Due(Timer),
    /// The RSS of the workers [`Action::Measure`] named, in bytes (absent: not measurable).
    Measured(Vec<(WorkerId, u64)>),
    /// A console command (parsed or not) and where its answer goes.
    Console {
        command: Result<Command, CommandError>,
        reply: Option<String>,
    },
    /// A request on the status socket.
    Status(StatusCall),
    /// A scrape on `cluster.metricsAddress`.
    Metrics(MetricsCall),
    /// The reload [`Action::PrepareReload`] asked for: the new config read and checked.
    Reloaded(Box<Result<Prepared, ReloadError>>),
}

/// Why a place needed a new worker (the `cause` of `activestack_worker_restarts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RestartCause {
    /// Its worker exited (or was killed) without being told to.
    Exited,
    /// Its worker stopped answering heartbeats (`cluster.workerTimeout`) and was killed.
    Hung,
    /// Its worker could not be started (fork, exec, an init message too large).
    SpawnFailed,
    /// The standby did not read its messages and could not be activated.
    NotActivated,
    /// Its worker crossed a memory limit and was recycled.
    MemoryLimit,
    /// Its new worker was over a memory limit from its start.
    MemoryLimitAtStart,
}

impl RestartCause {
    pub const ALL: [RestartCause; 6] = [
        RestartCause::Exited,
        RestartCause::Hung,
        RestartCause::SpawnFailed,
        RestartCause::NotActivated,
        RestartCause::MemoryLimit,
        RestartCause::MemoryLimitAtStart,
    ];

    /// The `cause` label.
    pub fn label(self) -> &'static str {
        match self {
            RestartCause::Exited => "exited",
            RestartCause::Hung => "hung",
            RestartCause::SpawnFailed => "spawn_failed",
            RestartCause::NotActivated => "not_activated",
            RestartCause::MemoryLimit => "memory_limit",
            RestartCause::MemoryLimitAtStart => "memory_limit_at_start",
        }
    }
}

/// As the logs say it: `worker {cause}; restarting after backoff`.
impl std::fmt::Display for RestartCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RestartCause::Exited => "exited",
            RestartCause::Hung => "hung",
            RestartCause::SpawnFailed => "could not be started",
            RestartCause::NotActivated => "could not be activated",
            RestartCause::MemoryLimit => "over its memory limit",
            RestartCause::MemoryLimitAtStart => "over its memory limit from the start",
        })
    }
}

/// Why the current config cannot be handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InitProblem {
    /// Its init frame would be this long, over [`crate::ipc::MAX_FRAME`].
    TooLarge(usize),
    Encode(String),
}

/// Why a message to a worker was not queued.
#[derive(Debug)]
pub enum NotSent {
    QueueFull,
    TooLarge(IpcError),
}

/// What the shell is to do, in order.
#[derive(Debug)]
pub enum Action {
    /// Start a worker process for `place` and send it `init` (encoded) first.
    Spawn {
        id: WorkerId,
        place: Place,
        init: Frame,
    },
    Send {
        id: WorkerId,
        msg: ToWorker,
    },
    /// SIGKILL the process `id`.
    Kill {
        id: WorkerId,
    },
    Notify(Notification),
    /// Raise [`Event::Due`] at `at` (replacing the timer's earlier instant, if armed).
    Arm {
        timer: Timer,
        at: Instant,
    },
    Disarm(Timer),
    /// Publish a console answer on the Redis channel `reply`.
    Answer {
        reply: String,
        answer: Answer,
    },
    /// Answer a status socket request.
    Status {
        call: StatusCall,
        report: Box<StatusReport>,
    },
    /// Answer a scrape on `cluster.metricsAddress`.
    Metrics {
        call: MetricsCall,
        text: String,
    },
    /// Measure these workers' RSS and report it with [`Event::Measured`].
    Measure(Vec<WorkerId>),
    /// Read the config file and its TLS files, check them against `running` (the config they
    /// would replace), and bind the new address if `frontend.host` / `frontend.port` differ,
    /// off the master's thread; [`Event::Reloaded`] follows.
    PrepareReload {
        running: Box<Config>,
    },
    /// Start new workers on this listen socket from now on.
    Listen(TcpListener),
    /// Set the master's own log level.
    LogLevel(LogLevel),
    /// Every worker is gone: the master exits.
    Exit,
}

/// What systemd is told (`sd_notify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    Ready(String),
    Reloading,
    Stopping,
    Status(String),
    Watchdog,
}

/// The master's timers; each is armed at most once at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// `cluster.heartbeatInterval`: send heartbeats, measure RSS.
    Heartbeat,
    /// `cluster.watchdogInterval`: kill hung workers.
    Watchdog,
    /// Half of systemd's `WatchdogSec`: `WATCHDOG=1` if a worker is healthy.
    SystemdWatchdog,
    /// A place's restart backoff ends.
    Restart(Place),
    /// A draining worker's deadline (plus grace): SIGKILL.
    Drain(WorkerId),
    /// The stop's drain deadline, or after SIGKILLing everyone, the wait for their exits.
    Stop,
    /// `restart immediate`: the next worker to hard-stop.
    NextKill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping {
        deadline: Instant,
        killed: bool,
    },
    /// [`Action::Exit`] given: nothing more to do.
    Stopped,
}

/// A reload's file reads and bind, running off the master's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reload {
    Idle,
    /// `again`: another SIGHUP came meanwhile: read the file once more after this.
    Preparing {
        again: bool,
    },
}

/// The periodic ticks: when each is next due.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    heartbeat: Instant,
    watchdog: Instant,
    /// With systemd's watchdog on: when, and how often.
    systemd: Option<(Instant, Duration)>,
}

/// `restart immediate`: the workers still to hard-stop, one every `gap`.
#[derive(Debug)]
struct Kills {
    queue: VecDeque<WorkerId>,
    gap: Duration,
    next: Option<Instant>,
}

pub struct ClusterState {
    config: Config,
    /// The TLS files of `config` as read and checked when it was loaded (`frontend.ssl`), handed
    /// to every worker started for it: workers never read the files themselves.
    tls: Option<TlsFiles>,
    generation: u64,
    listen_addr: SocketAddr,
    /// The status socket the master listens on (bound at start; a reload does not move it).
    status_socket: PathBuf,
    /// Where the master answers scrapes itself (`cluster.metricsAddress`, bound at start).
    metrics_addr: Option<SocketAddr>,
    /// The cluster's counters: every worker report's increase over the same worker's previous
    /// one, added up (so they never go down when a worker goes).
    totals: Counts,
    /// Restarts since the master started, by role and cause.
    restarts_by_cause: BTreeMap<(Role, RestartCause), u64>,
    desired: usize,
    /// The gateway workers' slots, `desired` of them.
    slots: Vec<Slot>,
    /// The relay's slot, while `relay.enabled`.
    relay: Option<Slot>,
    /// The demo agent's slot, while `demo.enabled`.
    demo: Option<Slot>,
    standby: Standby,
    workers: BTreeMap<WorkerId, Worker>,
    next_id: u64,
    phase: Phase,
    reload: Reload,
    /// READY=1 sent for the current generation.
    ready_sent: bool,
    started: Instant,
    master_pid: Pid,
    ticks: Ticks,
    heartbeat_seq: u64,
    /// Drain timeout for workers older than this generation (`restart graceful MS`).
    restart_drain: Option<(u64, Duration)>,
    kills: Kills,
    /// `push` commands handed to a worker and not confirmed yet: id -> (worker, reply channel).
    pushes: BTreeMap<u64, (WorkerId, Option<String>)>,
    push_seq: u64,
    /// The `init` message of the current generation and config, encoded once for all the
    /// workers started with it (`None`: to be made); `Err`: what makes it unusable.
    init: Option<Result<Frame, InitProblem>>,
    /// The timers the shell has armed, as last told.
    armed: BTreeMap<Timer, Instant>,
    /// For the restart backoff's jitter.
    rng: fastrand::Rng,
    /// While handling one event: its time, and the actions so far.
    now: Instant,
    out: Vec<Action>,
}

/// What the state starts from.
pub struct Start {
    pub config: Config,
    pub tls: Option<TlsFiles>,
    pub listen_addr: SocketAddr,
    pub status_socket: PathBuf,
    pub metrics_addr: Option<SocketAddr>,
    pub master_pid: Pid,
    /// How often to tell systemd `WATCHDOG=1`, if it asks.
    pub systemd_watchdog: Option<Duration>,
    pub rng: fastrand::Rng,
}

impl ClusterState {
    pub fn new(start: Start, now: Instant) -> ClusterState {
        let Start {
            config,
            tls,
            listen_addr,
            status_socket,
            metrics_addr,
            master_pid,
            systemd_watchdog,
            rng,
        } = start;
        let cluster = &config.cluster;
        let ticks = Ticks {
            heartbeat: now + cluster.heartbeat_interval,
            watchdog: now + cluster.watchdog_interval,
            systemd: systemd_watchdog.map(|period| (now + period, period)),
        };
        ClusterState {
            desired: cluster.worker_count,
            tls,
            generation: 1,
            listen_addr,
            status_socket,
            metrics_addr,
            totals: Counts::default(),
            restarts_by_cause: BTreeMap::new(),
            slots: Vec::new(),
            relay: None,
            demo: None,
            standby: Standby::default(),
            workers: BTreeMap::new(),
            next_id: 1,
            phase: Phase::Running,
            reload: Reload::Idle,
            ready_sent: false,
            started: now,
            master_pid,
            ticks,
            heartbeat_seq: 0,
            restart_drain: None,
            kills: Kills {
                queue: VecDeque::new(),
                gap: Duration::ZERO,
                next: None,
            },
            pushes: BTreeMap::new(),
            push_seq: 0,
            init: None,
            armed: BTreeMap::new(),
            rng,
            now,
            out: Vec::new(),
            config,
        }
    }

    /// Handles one event at `now`; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        self.now = now;
        if self.phase != Phase::Stopped {
            self.on_event(event);
            self.settle();
            self.sync_timers();
        } else if let Event::Status(call) = event {
            // Answered to the end: the socket outlives the last worker by a moment.
            self.answer_status(call);
        } else if let Event::Metrics(call) = event {
            let text = self.render_metrics();
            self.emit(Action::Metrics { call, text });
        }
        std::mem::take(&mut self.out)
    }

    fn emit(&mut self, action: Action) {
        self.out.push(action);
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Start => {}
            Event::Signal(signal) => self.on_signal(signal),
            Event::Spawned { id, pid } => self.on_spawned(id, pid),
            Event::SpawnFailed { id, error } => self.on_spawn_failed(id, &error),
            Event::FromWorker { id, msg } => self.on_message(id, msg),
            Event::NotSent { id, msg, why } => self.on_not_sent(id, msg, why),
            Event::Exited { id, status } => self.on_exit(id, status),
            Event::Due(timer) => {
                self.armed.remove(&timer);
                self.on_timer(timer);
            }
            Event::Measured(rss) => self.on_measured(rss),
            Event::Console { command, reply } => self.on_console(command, reply),
            Event::Status(call) => self.answer_status(call),
            Event::Metrics(call) => {
                let text = self.render_metrics();
                self.emit(Action::Metrics { call, text });
            }
            Event::Reloaded(result) => self.on_reloaded(*result),
        }
    }

    fn on_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Heartbeat => self.on_heartbeat_tick(),
            Timer::Watchdog => self.on_watchdog_tick(),
            Timer::SystemdWatchdog => self.on_systemd_watchdog(),
            // The backoff has passed: `settle` starts what it held back.
            Timer::Restart(_) => {}
            Timer::Drain(id) => self.on_drain_deadline(id),
            Timer::Stop => self.on_stop_deadline(),
            Timer::NextKill => self.kill_next(),
        }
    }

    /// After every event: readiness, then whatever should run and does not (or, when stopping,
    /// exit once every worker is gone).
    fn settle(&mut self) {
        // One rule for every place: a backoff that has passed is no backoff.
        let now = self.now;
        for slot in self
            .slots
            .iter_mut()
            .chain(&mut self.relay)
            .chain(&mut self.demo)
        {
            slot.backoff.expire(now);
        }
        self.standby.backoff.expire(now);
        match self.phase {
            Phase::Running => {
                // Readiness first: the standby starts once every slot is ready.
                self.announce_readiness();
                self.reconcile();
            }
            Phase::Stopping { .. } if self.workers.is_empty() => {
                self.phase = Phase::Stopped;
                self.emit(Action::Exit);
            }
            Phase::Stopping { .. } | Phase::Stopped => {}
        }
    }

    /// Every timer that should be armed now, and when.
    fn timers(&self) -> BTreeMap<Timer, Instant> {
        let mut timers = BTreeMap::new();
        if self.phase == Phase::Stopped {
            return timers;
        }
        timers.insert(Timer::Heartbeat, self.ticks.heartbeat);
        timers.insert(Timer::Watchdog, self.ticks.watchdog);
        if let Some((at, _)) = self.ticks.systemd {
            timers.insert(Timer::SystemdWatchdog, at);
        }
        if let Phase::Stopping { deadline, .. } = self.phase {
            timers.insert(Timer::Stop, deadline);
        } else {
            let places = self.slot_ids().into_iter().map(Place::Slot);
            for place in places.chain(std::iter::once(Place::Standby)) {
                if let Some(at) = self.backoff(place).and_then(|b| b.not_before) {
                    timers.insert(Timer::Restart(place), at);
                }
            }
        }
        for worker in self.workers.values() {
            if let WorkerState::Draining { kill_at } = worker.state {
                timers.insert(Timer::Drain(worker.id), kill_at);
            }
        }
        if let Some(at) = self.kills.next {
            timers.insert(Timer::NextKill, at);
        }
        timers
    }

    /// Tells the shell what changed in [`Self::timers`].
    fn sync_timers(&mut self) {
        let wanted = self.timers();
        let gone: Vec<Timer> = self
            .armed
            .keys()
            .filter(|t| !wanted.contains_key(t))
            .copied()
            .collect();
        for timer in gone {
            self.armed.remove(&timer);
            self.emit(Action::Disarm(timer));
        }
        for (timer, at) in wanted {
            if self.armed.get(&timer) != Some(&at) {
                self.armed.insert(timer, at);
                self.emit(Action::Arm { timer, at });
            }
        }
    }
}
