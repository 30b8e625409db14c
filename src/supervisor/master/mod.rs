//! The master's state and event loop: slots, workers, heartbeats, watchdog, memory limits,
//! restart backoff, reloads and shutdown.
//!
//! A *slot* is a place for one worker (there are `cluster.workerCount` of them). Each slot has an
//! *active* worker and, while it is being replaced, a *successor*; the successor is promoted once
//! it is ready and the old worker then drains. So capacity never drops during a reload or a
//! memory recycle. Restart backoff is counted per slot.
//!
//! With `cluster.standbyWorkers=1` one more gateway worker runs in *standby*: initialised
//! (RabbitMQ, Redis, socket.io) but not accepting, and in no slot. When a slot needs a worker
//! (its worker died, hung or failed to start, or is over its memory limit) and the standby is
//! ready and of the current generation, the standby is activated in that slot at once instead
//! of a new worker being started, and a new standby is started (with its own backoff). The
//! standby starts once every slot is ready, and is replaced on every reload.
//!
//! This file holds the state and the event loop; what the loop does is split by concern:
//! [`workers`] (what runs in each slot), [`health`] (heartbeats, watchdog, memory, lag),
//! [`lifecycle`] (reload, readiness, stop), [`commands`] (the Redis console) and [`status`].

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use nix::sys::signal::{Signal as NixSignal, kill};
use nix::unistd::Pid;
use signal_hook_tokio::Signals;
use sysinfo::{Pid as SysPid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval, sleep_until};

use super::SupervisorError;
use super::backoff::restart_delay;
use super::listen;
use super::memory::{Crossing, MemoryWatch, Usage};
use super::notify::Notifier;
use super::signals::{HANDLED, Signal};
use super::slot::{Slot, SlotId};
use super::spawn::{Spawned, spawn_worker};
use crate::config::{Config, Loaded};
use crate::control::{self, ControlCall, Request, StatusReport, WorkerStatus};
use crate::gateway;
use crate::ipc::{Channel, ToMaster, ToWorker, WorkerReport};
use crate::logging::{self, error_chain};
use crate::tls::TlsFiles;

mod commands;
mod health;
mod lifecycle;
mod status;
mod workers;

/// Frames queued for one worker; a worker that does not read them loses heartbeats, not the
/// master's time.
const TO_WORKER_QUEUE: usize = 64;
/// Past the drain deadline, how long a worker gets to exit by itself before SIGKILL.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// After SIGKILLing everyone at shutdown, how long to wait for the exits to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// Everything that happens to the master, one value at a time.
enum Event {
    FromWorker {
        pid: u32,
        msg: ToMaster,
    },
    Exited {
        pid: u32,
        status: String,
    },
    /// `restart immediate` on the control channel: hard-stop this worker now.
    Kill {
        pid: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerState {
    Starting,
    Ready,
    Draining,
    Killed,
}

impl WorkerState {
    fn name(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
            WorkerState::Killed => "killed",
        }
    }
}

struct Worker {
    slot: SlotId,
    pid: u32,
    /// Config generation it was started with; older than the master's = to be replaced.
    generation: u64,
    state: WorkerState,
    started: Instant,
    /// Last heartbeat answer (start time until the first one, so a worker that never answers
    /// is caught by the same watchdog rule).
    last_seen: Instant,
    answered: bool,
    /// Answered a heartbeat while ready: its slot's restart backoff has been reset.
    proven: bool,
    report: WorkerReport,
    /// RSS as the master measured it.
    rss: u64,
    memory: MemoryWatch,
    /// Over a memory limit: to be replaced, then drained.
    recycle: bool,
    /// Passed a memory check at least once (a worker over its limit from the start is a sign
    /// the limit is too low, not that the worker leaks).
    ever_within_limits: bool,
    /// Drain deadline (plus grace), after which it is SIGKILLed.
    kill_at: Option<Instant>,
    lag_warned: bool,
    tx: mpsc::Sender<ToWorker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Stopping { deadline: Instant, killed: bool },
}

pub struct Master {
    config: Config,
    /// The TLS files of `config` as read and checked when it was loaded (`frontend.ssl`), handed
    /// to every worker started for it: workers never read the files themselves.
    tls: Option<TlsFiles>,
    config_arg: Option<PathBuf>,
    generation: u64,
    exe: PathBuf,
    listener: TcpListener,
    listen_addr: SocketAddr,
    desired: usize,
    /// The gateway workers' slots, `desired` of them.
    slots: Vec<Slot>,
    /// The relay's slot, while `relay.enabled`.
    relay: Option<Slot>,
    /// The standby worker's place (`cluster.standbyWorkers`): `active` is the standby.
    standby: Slot,
    workers: BTreeMap<u32, Worker>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    control_rx: mpsc::Receiver<ControlCall>,
    phase: Phase,
    /// READY=1 sent for the current generation.
    ready_sent: bool,
    notifier: Notifier,
    started: Instant,
    heartbeat_seq: u64,
    sys: System,
    /// Commands from the Redis control channel, and their answers back to it.
    gateway_rx: mpsc::Receiver<gateway::control::Incoming>,
    gateway_replies: mpsc::Sender<(String, serde_json::Value)>,
    /// Drain timeout for workers older than this generation (`restart graceful MS`).
    restart_drain: Option<(u64, Duration)>,
    /// `push` commands handed to a worker and not confirmed yet: id -> (worker pid, reply channel).
    pushes: BTreeMap<u64, (u32, Option<String>)>,
    push_seq: u64,
}

impl Master {
    pub fn start(
        loaded: Loaded,
        tls: Option<TlsFiles>,
        config_arg: Option<PathBuf>,
        exe: PathBuf,
    ) -> Result<Master, SupervisorError> {
        let Loaded {
            mut config,
            warnings,
        } = loaded;
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        crate::gateway::secret::fill(&mut config, None);
        let listener = listen::bind(&config.frontend.host, config.frontend.port)?;
        let listen_addr = local_addr(&listener, &config);
        let control = control::listen(&config.cluster.control_socket)?;
        let (control_tx, control_rx) = mpsc::channel(16);
        tokio::spawn(control::serve(control, control_tx));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (gateway_tx, gateway_rx) = mpsc::channel(16);
        let (gateway_replies, replies_rx) = mpsc::channel(16);
        let redis = config.gateway.redis.clone();
        tokio::spawn(gateway::control::serve(redis, gateway_tx, replies_rx));
        tracing::info!(
            listen = %listen_addr,
            tls = tls.is_some(),
            workers = config.cluster.worker_count,
            config = %config.source.as_ref().map_or("(defaults)".into(), |p| p.display().to_string()),
            control = %config.cluster.control_socket.display(),
            "master starting"
        );
        Ok(Master {
            desired: config.cluster.worker_count,
            config,
            tls,
            config_arg,
            generation: 1,
            exe,
            listener,
            listen_addr,
            slots: Vec::new(),
            relay: None,
            standby: Slot::default(),
            workers: BTreeMap::new(),
            events_tx,
            events_rx,
            control_rx,
            phase: Phase::Running,
            ready_sent: false,
            notifier: Notifier::from_env(),
            started: Instant::now(),
            heartbeat_seq: 0,
            sys: System::new().map_err(|e| SupervisorError::Sysinfo(e.to_string()))?,
            gateway_rx,
            gateway_replies,
            restart_drain: None,
            pushes: BTreeMap::new(),
            push_seq: 0,
        })
    }

    pub async fn run(mut self) -> Result<(), SupervisorError> {
        let mut signals = Signals::new(HANDLED).map_err(SupervisorError::Signals)?;
        let mut heartbeat = self.ticker(self.config.cluster.heartbeat_interval);
        let mut watchdog = self.ticker(self.config.cluster.watchdog_interval);
        let systemd_period = self.notifier.watchdog_period();
        let mut systemd_watchdog = self.ticker(systemd_period.unwrap_or(Duration::from_secs(3600)));
        self.reconcile();
        loop {
            let wake = self.next_wakeup();
            tokio::select! {
                Some(raw) = signals.next() => {
                    if let Some(signal) = Signal::from_raw(raw) {
                        let (hb, wd) = (self.config.cluster.heartbeat_interval, self.config.cluster.watchdog_interval);
                        self.on_signal(signal);
                        if hb != self.config.cluster.heartbeat_interval { heartbeat = self.ticker(self.config.cluster.heartbeat_interval); }
                        if wd != self.config.cluster.watchdog_interval { watchdog = self.ticker(self.config.cluster.watchdog_interval); }
                    }
                }
                Some(event) = self.events_rx.recv() => self.on_event(event),
                Some(call) = self.control_rx.recv() => self.on_control(call),
                Some(incoming) = self.gateway_rx.recv() => self.on_gateway_command(incoming),
                _ = heartbeat.tick() => self.on_heartbeat_tick(),
                _ = watchdog.tick() => self.on_watchdog_tick(),
                _ = systemd_watchdog.tick(), if systemd_period.is_some() => self.on_systemd_watchdog(),
                () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
            if let Phase::Stopping { .. } = self.phase {
                if self.workers.is_empty() {
                    break;
                }
                self.enforce_stop_deadline();
                if matches!(self.phase, Phase::Stopping { deadline, killed: true } if Instant::now() >= deadline)
                {
                    tracing::error!(
                        left = self.workers.len(),
                        "workers did not exit after SIGKILL; giving up on them"
                    );
                    break;
                }
            } else {
                // Readiness first: the standby starts once every slot is ready.
                self.announce_readiness();
                self.reconcile();
            }
        }
        tracing::info!("master stopped");
        Ok(())
    }

    fn ticker(&self, period: Duration) -> Interval {
        let mut ticks = interval(period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::FromWorker { pid, msg } => self.on_message(pid, msg),
            Event::Exited { pid, status } => self.on_exit(pid, &status),
            Event::Kill { pid } => {
                tracing::info!(pid, "restart immediate: stopping the worker");
                self.kill(pid);
            }
        }
    }

    fn on_message(&mut self, pid: u32, msg: ToMaster) {
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        match msg {
            ToMaster::Ready => {
                if worker.state == WorkerState::Starting {
                    worker.state = WorkerState::Ready;
                }
                let index = worker.slot;
                tracing::info!(slot = %index, pid, "worker ready");
                self.promote(index, pid);
            }
            ToMaster::HeartbeatAck { seq: _, report } => {
                worker.last_seen = Instant::now();
                worker.report = report;
                worker.answered = true;
                // The backoff resets only for a worker that got as far as serving: one that
                // answers heartbeats while it waits for RabbitMQ and then fails has not.
                let first = !worker.proven && worker.state == WorkerState::Ready;
                worker.proven |= first;
                self.check_lag(pid);
                self.measure(&[pid]);
                self.check_memory(pid);
                if first
                    && let Some(w) = self.workers.get(&pid)
                    && !w.recycle
                    && let Some(slot) = self.slot_mut(w.slot)
                {
                    slot.failures = 0;
                }
            }
            ToMaster::Draining { clients } => {
                tracing::debug!(slot = %worker.slot, pid, clients, "worker is draining");
            }
            ToMaster::Pushed { id, error } => self.on_pushed(id, error),
        }
    }

    fn on_exit(&mut self, pid: u32, status: &str) {
        self.forget_pushes_of(pid);
        let was_in_slot = self.detach(pid);
        let Some(worker) = self.workers.remove(&pid) else {
            return;
        };
        let stopping = matches!(self.phase, Phase::Stopping { .. });
        match (worker.state, was_in_slot) {
            (WorkerState::Draining, _) => {
                tracing::info!(slot = %worker.slot, pid, %status, "drained worker exited");
            }
            (WorkerState::Killed, _) => {
                tracing::info!(slot = %worker.slot, pid, %status, "killed worker reaped");
            }
            _ if stopping => {
                tracing::info!(slot = %worker.slot, pid, %status, "worker exited");
            }
            (_, Some(index)) => {
                tracing::error!(slot = %index, pid, %status, "worker exited unexpectedly");
                if self.slot(index).is_some_and(|s| s.active.is_none()) {
                    self.schedule_restart(index, "exited");
                }
            }
            (_, None) => tracing::info!(slot = %worker.slot, pid, %status, "worker exited"),
        }
    }

    fn on_signal(&mut self, signal: Signal) {
        tracing::info!(?signal, "signal received");
        match (signal, self.phase) {
            (Signal::Quit, _) => self.stop_now(),
            (Signal::Terminate, Phase::Stopping { .. }) => {
                tracing::warn!("second stop signal: killing the workers now");
                self.stop_now();
            }
            (Signal::Terminate, Phase::Running) => self.stop_gracefully(),
            (_, Phase::Stopping { .. }) => tracing::info!("stopping: {signal:?} ignored"),
            (Signal::Reload, Phase::Running) => self.reload(),
            (Signal::MoreWorkers, Phase::Running) => {
                self.desired += 1;
                tracing::info!(workers = self.desired, "SIGTTIN: one worker more");
            }
            (Signal::FewerWorkers, Phase::Running) => {
                if self.desired > 1 {
                    self.desired -= 1;
                    tracing::info!(workers = self.desired, "SIGTTOU: one worker fewer");
                } else {
                    tracing::warn!("SIGTTOU: already at one worker; ignored");
                }
            }
        }
    }

    fn on_control(&mut self, call: ControlCall) {
        match call.request {
            Request::Status => {
                let _ = call.reply.send(self.status());
            }
        }
    }

    /// The next instant a timer of ours is due (restart backoff, drain deadlines, stop deadline).
    fn next_wakeup(&self) -> Option<Instant> {
        // Only backoffs still to come: one that has passed was seen by `reconcile`, which
        // started the worker or is waiting for an event (a successor starting, every slot ready
        // for the standby); waking for it again would spin the loop until then.
        let now = Instant::now();
        let restarts = self
            .slots
            .iter()
            .chain(&self.relay)
            .chain(std::iter::once(&self.standby))
            .filter_map(|s| s.not_before)
            .filter(|t| *t > now);
        let drains = self.workers.values().filter_map(|w| w.kill_at);
        let stop = match self.phase {
            Phase::Stopping { deadline, .. } => Some(deadline),
            Phase::Running => None,
        };
        restarts.chain(drains).chain(stop).min()
    }
}

fn local_addr(listener: &TcpListener, config: &Config) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], config.frontend.port)))
}
