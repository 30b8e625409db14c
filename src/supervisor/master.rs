//! The master's state and event loop: slots, workers, heartbeats, watchdog, memory limits,
//! restart backoff, reloads and shutdown.
//!
//! A *slot* is a place for one worker (there are `cluster.workerCount` of them). Each slot has an
//! *active* worker and, while it is being replaced, a *successor*; the successor is promoted once
//! it is ready and the old worker then drains. So capacity never drops during a reload or a
//! memory recycle. Restart backoff is counted per slot.

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
}

impl Master {
    pub fn start(
        loaded: Loaded,
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
            workers = config.cluster.worker_count,
            config = %config.source.as_ref().map_or("(defaults)".into(), |p| p.display().to_string()),
            control = %config.cluster.control_socket.display(),
            "master starting"
        );
        Ok(Master {
            desired: config.cluster.worker_count,
            config,
            config_arg,
            generation: 1,
            exe,
            listener,
            listen_addr,
            slots: Vec::new(),
            relay: None,
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
                self.reconcile();
                self.announce_readiness();
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

    // ----- reconciling slots with what should run -----

    /// Starts whatever should run and does not: a worker for an empty slot, a successor for a
    /// worker of an older generation or over its memory limit. Respects each slot's backoff.
    fn reconcile(&mut self) {
        let now = Instant::now();
        while self.slots.len() < self.desired {
            self.slots.push(Slot::default());
        }
        while self.slots.len() > self.desired {
            if let Some(slot) = self.slots.pop() {
                for pid in [slot.active, slot.successor].into_iter().flatten() {
                    self.drain(pid, "worker count lowered");
                }
            }
        }
        match (self.config.relay.enabled, self.relay.is_some()) {
            (true, false) => self.relay = Some(Slot::default()),
            (false, true) => {
                if let Some(slot) = self.relay.take() {
                    for pid in [slot.active, slot.successor].into_iter().flatten() {
                        self.drain(pid, "relay.enabled is now false");
                    }
                }
            }
            _ => {}
        }
        for id in self.slot_ids() {
            let Some(slot) = self.slot(id) else { continue };
            if slot.not_before.is_some_and(|t| t > now) || slot.successor.is_some() {
                continue;
            }
            let wanted = match slot.active.and_then(|pid| self.workers.get(&pid)) {
                None => true,
                Some(w) => w.generation < self.generation || w.recycle,
            };
            if wanted {
                self.start_worker(id);
            }
        }
    }

    /// Every slot: the gateway workers' in order, then the relay's.
    fn slot_ids(&self) -> Vec<SlotId> {
        let gateways = (0..self.slots.len()).map(SlotId::Gateway);
        gateways
            .chain(self.relay.as_ref().map(|_| SlotId::Relay))
            .collect()
    }

    fn slot(&self, id: SlotId) -> Option<&Slot> {
        match id {
            SlotId::Gateway(index) => self.slots.get(index),
            SlotId::Relay => self.relay.as_ref(),
        }
    }

    fn slot_mut(&mut self, id: SlotId) -> Option<&mut Slot> {
        match id {
            SlotId::Gateway(index) => self.slots.get_mut(index),
            SlotId::Relay => self.relay.as_mut(),
        }
    }

    fn start_worker(&mut self, id: SlotId) {
        let slot_failed = match spawn_worker(&self.exe, id, &self.listener) {
            Ok(spawned) => {
                let pid = spawned.pid;
                self.adopt(id, spawned);
                if let Some(slot) = self.slot_mut(id) {
                    slot.not_before = None;
                    if slot.active.is_none() {
                        slot.active = Some(pid);
                    } else {
                        slot.successor = Some(pid);
                    }
                }
                false
            }
            Err(e) => {
                tracing::error!(slot = %id, "{}", error_chain(&e));
                true
            }
        };
        if slot_failed {
            self.schedule_restart(id, "could not be started");
        }
    }

    /// Wires up a new worker process: its message queue, its reader, its exit watcher.
    fn adopt(&mut self, slot: SlotId, spawned: Spawned) {
        let Spawned {
            mut child,
            pid,
            channel,
        } = spawned;
        let Channel {
            mut sender,
            mut receiver,
        } = Channel::<ToWorker, ToMaster>::new(channel);
        let (tx, mut rx) = mpsc::channel::<ToWorker>(TO_WORKER_QUEUE);
        let init = ToWorker::Init {
            generation: self.generation,
            config: Box::new(self.config.clone()),
        };
        let _ = tx.try_send(init);
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if sender.send(&msg).await.is_err() {
                    return; // the worker is gone; its exit event follows
                }
            }
        });
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            loop {
                match receiver.recv().await {
                    Ok(Some(msg)) => {
                        if events.send(Event::FromWorker { pid, msg }).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        // Usually a killed worker's reset; its exit event tells the story.
                        tracing::debug!(pid, "worker channel: {}", error_chain(&e));
                        return;
                    }
                }
            }
        });
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("unknown status ({e})"),
            };
            let _ = events.send(Event::Exited { pid, status });
        });
        let now = Instant::now();
        tracing::info!(slot = %slot, pid, generation = self.generation, "worker started");
        self.workers.insert(
            pid,
            Worker {
                slot,
                pid,
                generation: self.generation,
                state: WorkerState::Starting,
                started: now,
                last_seen: now,
                answered: false,
                report: WorkerReport::default(),
                rss: 0,
                memory: MemoryWatch::default(),
                recycle: false,
                ever_within_limits: false,
                kill_at: None,
                lag_warned: false,
                tx,
            },
        );
    }

    /// A slot's worker failed: the next one starts after the backoff delay.
    fn schedule_restart(&mut self, index: SlotId, why: &str) {
        let cluster = &self.config.cluster;
        let slot = match index {
            SlotId::Gateway(i) => self.slots.get_mut(i),
            SlotId::Relay => self.relay.as_mut(),
        };
        let Some(slot) = slot else {
            return;
        };
        let delay = restart_delay(
            slot.failures,
            cluster.max_restart_backoff,
            cluster.worker_restart_delay,
            fastrand::f64(),
        );
        slot.failures = slot.failures.saturating_add(1);
        slot.restarts = slot.restarts.saturating_add(1);
        slot.not_before = Some(Instant::now() + delay);
        tracing::warn!(
            slot = %index,
            failures = slot.failures,
            delay_ms = delay.as_millis() as u64,
            "worker {why}; restarting after backoff"
        );
        self.notifier.status(&format!(
            "worker {index} {why}; restarting in {} ms",
            delay.as_millis()
        ));
    }

    /// Takes a worker out of its slot (it no longer counts as the slot's worker).
    fn detach(&mut self, pid: u32) -> Option<SlotId> {
        let index = self.workers.get(&pid)?.slot;
        let slot = self.slot_mut(index)?;
        if slot.active == Some(pid) {
            slot.active = slot.successor.take();
            Some(index)
        } else if slot.successor == Some(pid) {
            slot.successor = None;
            Some(index)
        } else {
            None
        }
    }

    fn drain(&mut self, pid: u32, why: &str) {
        let mut timeout = self.config.cluster.drain_timeout;
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        if let Some((generation, t)) = self.restart_drain
            && worker.generation < generation
        {
            timeout = t;
        }
        if matches!(worker.state, WorkerState::Draining | WorkerState::Killed) {
            return;
        }
        worker.state = WorkerState::Draining;
        worker.kill_at = Some(Instant::now() + timeout + DRAIN_GRACE);
        let _ = worker.tx.try_send(ToWorker::Drain {
            timeout_ms: timeout.as_millis() as u64,
        });
        tracing::info!(slot = %worker.slot, pid, "draining worker: {why}");
    }

    fn kill(&mut self, pid: u32) {
        if let Some(worker) = self.workers.get_mut(&pid) {
            worker.state = WorkerState::Killed;
            if let Err(e) = kill(Pid::from_raw(pid as i32), NixSignal::SIGKILL) {
                tracing::warn!(pid, "SIGKILL failed: {e}");
            }
        }
    }

    // ----- events -----

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
                let first = !worker.answered;
                worker.answered = true;
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
        }
    }

    /// A successor that became ready takes over its slot; the worker it replaces drains.
    fn promote(&mut self, index: SlotId, pid: u32) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        if slot.successor != Some(pid) {
            return;
        }
        let old = slot.active.replace(pid);
        slot.successor = None;
        if let Some(old) = old {
            let why = match self.workers.get(&old) {
                Some(w) if w.recycle => "replaced after crossing a memory limit",
                _ => "replaced by a worker with the new configuration",
            };
            self.drain(old, why);
        }
    }

    fn on_exit(&mut self, pid: u32, status: &str) {
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

    // ----- timers -----

    fn on_heartbeat_tick(&mut self) {
        self.heartbeat_seq += 1;
        let seq = self.heartbeat_seq;
        let pids: Vec<u32> = self.workers.keys().copied().collect();
        self.measure(&pids);
        for pid in pids {
            if let Some(worker) = self.workers.get(&pid) {
                if worker.state == WorkerState::Killed {
                    continue;
                }
                if worker.tx.try_send(ToWorker::Heartbeat { seq }).is_err() {
                    tracing::debug!(
                        slot = %worker.slot,
                        pid,
                        "heartbeat not queued: the worker is not reading"
                    );
                }
            }
            // RSS is checked even for a worker that does not answer.
            self.check_memory(pid);
        }
    }

    /// Kills workers whose last answer is older than `cluster.workerTimeout`, and drained
    /// workers past their deadline.
    fn on_watchdog_tick(&mut self) {
        let now = Instant::now();
        let timeout = self.config.cluster.worker_timeout;
        let mut hung = Vec::new();
        let mut overdue = Vec::new();
        for worker in self.workers.values() {
            match worker.state {
                WorkerState::Starting | WorkerState::Ready
                    if now.duration_since(worker.last_seen) > timeout =>
                {
                    hung.push((
                        worker.pid,
                        worker.slot,
                        now.duration_since(worker.last_seen),
                    ));
                }
                WorkerState::Draining if worker.kill_at.is_some_and(|t| now >= t) => {
                    overdue.push((worker.pid, worker.slot));
                }
                _ => {}
            }
        }
        for (pid, slot, silent) in hung {
            tracing::error!(
                slot = %slot,
                pid,
                silent_ms = silent.as_millis() as u64,
                timeout_ms = timeout.as_millis() as u64,
                "worker did not answer heartbeats within cluster.workerTimeout; killing it (SIGKILL)"
            );
            let was_in_slot = self.detach(pid);
            self.kill(pid);
            if let Some(index) = was_in_slot
                && self.slot(index).is_some_and(|s| s.active.is_none())
            {
                self.schedule_restart(index, "hung");
            }
        }
        for (pid, slot) in overdue {
            tracing::warn!(
                slot = %slot,
                pid,
                "drained worker did not exit by its deadline; killing it (SIGKILL)"
            );
            self.kill(pid);
        }
    }

    fn on_systemd_watchdog(&self) {
        let timeout = self.config.cluster.worker_timeout;
        let now = Instant::now();
        let healthy = self.workers.values().any(|w| {
            w.state == WorkerState::Ready
                && w.answered
                && now.duration_since(w.last_seen) <= timeout
        });
        if healthy {
            self.notifier.watchdog();
        } else {
            tracing::warn!("no healthy worker: not petting the systemd watchdog");
        }
    }

    /// The next instant a timer of ours is due (restart backoff, drain deadlines, stop deadline).
    fn next_wakeup(&self) -> Option<Instant> {
        let restarts = self
            .slots
            .iter()
            .chain(&self.relay)
            .filter_map(|s| s.not_before);
        let drains = self.workers.values().filter_map(|w| w.kill_at);
        let stop = match self.phase {
            Phase::Stopping { deadline, .. } => Some(deadline),
            Phase::Running => None,
        };
        restarts.chain(drains).chain(stop).min()
    }

    // ----- memory -----

    fn measure(&mut self, pids: &[u32]) {
        let sys_pids: Vec<SysPid> = pids.iter().map(|&pid| SysPid::from_u32(pid)).collect();
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&sys_pids),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        for &pid in pids {
            if let (Some(worker), Some(process)) = (
                self.workers.get_mut(&pid),
                self.sys.process(SysPid::from_u32(pid)),
            ) {
                worker.rss = process.memory();
            }
        }
    }

    fn check_memory(&mut self, pid: u32) {
        let cluster = &self.config.cluster;
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        if !matches!(worker.state, WorkerState::Starting | WorkerState::Ready) || worker.rss == 0 {
            return;
        }
        let usage = Usage {
            rss: worker.rss,
            heap_total: worker.report.heap_total,
            heap_used: worker.report.heap_used,
        };
        let crossings = worker
            .memory
            .check(usage, &cluster.memory_warning, &cluster.memory_limit);
        let (slot, fresh) = (worker.slot, !worker.ever_within_limits);
        let mut over: Option<Crossing> = None;
        for crossing in crossings {
            match crossing {
                Crossing::WarningCrossed { .. } => tracing::warn!(slot = %slot, pid, "{crossing}"),
                Crossing::WarningCleared { .. } => tracing::info!(slot = %slot, pid, "{crossing}"),
                Crossing::OverLimit { .. } => over = over.or(Some(crossing)),
            }
        }
        let Some(over) = over else {
            worker.ever_within_limits = true;
            return;
        };
        if worker.recycle {
            return;
        }
        worker.recycle = true;
        if fresh {
            // A new worker already over the limit: replacing it would only start another one
            // over the limit. Say so, and slow down through the slot's backoff.
            tracing::error!(
                slot = %slot,
                pid,
                "{over} from its start: the limit is below what a fresh worker needs; raise it. \
                 Replacing the worker with backoff; it keeps serving until its replacement is ready"
            );
            self.schedule_restart(slot, "over its memory limit from the start");
        } else {
            tracing::error!(
                slot = %slot,
                pid,
                "{over}: recycling the worker (replacement first, then drain)"
            );
            if let Some(slot) = self.slot_mut(slot) {
                slot.restarts = slot.restarts.saturating_add(1);
            }
        }
    }

    fn check_lag(&mut self, pid: u32) {
        let threshold = self.config.cluster.heartbeat_interval;
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        let lag = Duration::from_micros(worker.report.loop_lag_us);
        if lag >= threshold && !worker.lag_warned {
            worker.lag_warned = true;
            tracing::warn!(
                slot = %worker.slot,
                pid,
                lag_ms = lag.as_millis() as u64,
                "worker event loop is stalling (lag above cluster.heartbeatInterval)"
            );
        } else if lag < threshold / 2 && worker.lag_warned {
            worker.lag_warned = false;
            tracing::info!(
                slot = %worker.slot,
                pid,
                lag_ms = lag.as_millis() as u64,
                "worker event loop lag back to normal"
            );
        }
    }

    // ----- reload, shutdown, readiness -----

    fn reload(&mut self) {
        self.notifier.reloading();
        let loaded = match Config::resolve(self.config_arg.as_deref()) {
            Ok(loaded) => loaded,
            Err(e) => return self.reload_failed(&e.to_string()),
        };
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        if let Some(why) = super::unsupported(&loaded.config) {
            return self.reload_failed(&why);
        }
        let mut new = loaded.config;
        crate::gateway::secret::fill(&mut new, Some(&self.config));
        let (old_front, new_front) = (&self.config.frontend, &new.frontend);
        if (&old_front.host, old_front.port) != (&new_front.host, new_front.port) {
            match listen::bind(&new_front.host, new_front.port) {
                Ok(listener) => {
                    self.listen_addr = local_addr(&listener, &new);
                    self.listener = listener;
                    tracing::info!(listen = %self.listen_addr, "listening on the new address");
                }
                Err(e) => return self.reload_failed(&error_chain(&e)),
            }
        }
        if new.cluster.control_socket != self.config.cluster.control_socket {
            tracing::warn!(
                "cluster.controlSocket changed; the master keeps {} until it is restarted",
                self.config.cluster.control_socket.display()
            );
        }
        logging::set_level(new.frontend.log_level);
        self.desired = new.cluster.worker_count;
        self.config = new;
        self.generation += 1;
        self.ready_sent = false;
        tracing::info!(
            generation = self.generation,
            workers = self.desired,
            "configuration reloaded; replacing workers"
        );
    }

    fn reload_failed(&mut self, why: &str) {
        for line in why.lines() {
            tracing::error!("reload failed: {line}");
        }
        tracing::error!(
            generation = self.generation,
            "the cluster keeps running on its current configuration and workers"
        );
        let first_line = why.lines().next().unwrap_or(why);
        self.notifier.ready(&format!(
            "reload failed, running generation {}: {first_line}",
            self.generation
        ));
    }

    /// READY=1 once every slot has a ready worker of the current generation.
    fn announce_readiness(&mut self) {
        if self.ready_sent || self.slots.len() != self.desired {
            return;
        }
        let all_ready = self.slots.iter().chain(&self.relay).all(|slot| {
            slot.active
                .and_then(|pid| self.workers.get(&pid))
                .is_some_and(|w| w.state == WorkerState::Ready && w.generation == self.generation)
        });
        if all_ready {
            self.ready_sent = true;
            let status = format!(
                "{} workers ready on {} (generation {})",
                self.desired, self.listen_addr, self.generation
            );
            tracing::info!("{status}");
            self.notifier.ready(&status);
        }
    }

    fn stop_gracefully(&mut self) {
        let timeout = self.config.cluster.drain_timeout;
        tracing::info!(
            drain_timeout_ms = timeout.as_millis() as u64,
            "stopping: draining all workers"
        );
        self.notifier.stopping();
        self.phase = Phase::Stopping {
            deadline: Instant::now() + timeout + DRAIN_GRACE,
            killed: false,
        };
        let pids: Vec<u32> = self.workers.keys().copied().collect();
        for pid in pids {
            self.drain(pid, "shutting down");
        }
    }

    fn stop_now(&mut self) {
        tracing::info!("stopping now: killing all workers");
        self.notifier.stopping();
        self.phase = Phase::Stopping {
            deadline: Instant::now() + REAP_WAIT,
            killed: true,
        };
        let pids: Vec<u32> = self.workers.keys().copied().collect();
        for pid in pids {
            self.kill(pid);
        }
    }

    fn enforce_stop_deadline(&mut self) {
        if let Phase::Stopping {
            deadline,
            killed: false,
        } = self.phase
            && Instant::now() >= deadline
        {
            tracing::warn!(
                left = self.workers.len(),
                "drain deadline passed; killing the workers left"
            );
            self.stop_now();
        }
    }

    /// A command from the Redis control channel (see [`gateway::control`]).
    fn on_gateway_command(&mut self, incoming: gateway::control::Incoming) {
        use gateway::control::{Command, DEFAULT_RESTART_INTERVAL, Mode};
        use serde_json::json;
        let answer = match incoming.command {
            Err(e) => {
                tracing::warn!("control channel: {e}");
                json!({"ok": false, "error": e.to_string()})
            }
            Ok(command) => {
                tracing::info!(command = %command.redacted(), "control command");
                match command {
                    Command::Restart {
                        mode: Mode::Immediate,
                        interval,
                    } => {
                        let pids: Vec<u32> = self.workers.keys().copied().collect();
                        let gap = interval.unwrap_or(DEFAULT_RESTART_INTERVAL);
                        let events = self.events_tx.clone();
                        let count = pids.len();
                        tokio::spawn(async move {
                            for (i, pid) in pids.into_iter().enumerate() {
                                if i > 0 {
                                    tokio::time::sleep(gap).await;
                                }
                                if events.send(Event::Kill { pid }).is_err() {
                                    return;
                                }
                            }
                        });
                        json!({"ok": true, "restarting": count, "mode": "immediate"})
                    }
                    Command::Restart {
                        mode: Mode::Graceful,
                        interval,
                    } => {
                        self.generation += 1;
                        self.ready_sent = false;
                        self.restart_drain = interval.map(|t| (self.generation, t));
                        json!({"ok": true, "restarting": self.workers.len(), "mode": "graceful", "generation": self.generation})
                    }
                    Command::Shutdown {
                        code,
                        mode,
                        timeout,
                    } => {
                        let expected = self.config.frontend.shutdown_code.as_deref().unwrap_or("");
                        let matches = !expected.is_empty()
                            && code.len() == expected.len()
                            && code
                                .bytes()
                                .zip(expected.bytes())
                                .fold(0, |acc, (a, b)| acc | (a ^ b))
                                == 0;
                        if !matches {
                            tracing::warn!(
                                "control channel: shutdown refused (wrong or no shutdown code)"
                            );
                            json!({"ok": false, "error": "wrong shutdown code"})
                        } else {
                            if let Some(t) = timeout {
                                self.config.cluster.drain_timeout = t;
                            }
                            match mode {
                                Mode::Immediate => self.stop_now(),
                                Mode::Graceful => self.stop_gracefully(),
                            }
                            json!({"ok": true, "stopping": format!("{mode:?}").to_lowercase()})
                        }
                    }
                    Command::LogLevel(level) => {
                        logging::set_level(level);
                        self.config.frontend.log_level = level;
                        for worker in self.workers.values() {
                            let _ = worker.tx.try_send(ToWorker::LogLevel { level });
                        }
                        json!({"ok": true, "loglevel": level.to_string(), "workers": self.workers.len()})
                    }
                    Command::ResendInterval(interval) => {
                        self.config.frontend.client_message_resend_interval = interval;
                        let ms = interval.as_millis() as u64;
                        for worker in self.workers.values() {
                            let _ = worker.tx.try_send(ToWorker::ResendInterval { ms });
                        }
                        json!({"ok": true, "clientMessageResendInterval": ms, "workers": self.workers.len()})
                    }
                    Command::ClientCount => {
                        let workers: Vec<_> = self
                            .workers
                            .values()
                            .map(|w| json!({"slot": w.slot.to_string(), "pid": w.pid, "clients": w.report.clients}))
                            .collect();
                        let total: u64 = self.workers.values().map(|w| w.report.clients).sum();
                        tracing::info!(total, "client count");
                        json!({"ok": true, "total": total, "workers": workers})
                    }
                    Command::Status => json!({"ok": true, "status": self.status()}),
                }
            }
        };
        if let Some(reply) = incoming.reply
            && self.gateway_replies.try_send((reply, answer)).is_err()
        {
            tracing::warn!("control channel: reply dropped");
        }
    }

    fn status(&self) -> StatusReport {
        let now = Instant::now();
        let ms = |d: Duration| d.as_millis() as u64;
        let phase = match self.phase {
            Phase::Stopping { .. } => "stopping",
            Phase::Running if !self.ready_sent && self.generation > 1 => "reloading",
            Phase::Running if !self.ready_sent => "starting",
            Phase::Running => "running",
        };
        let mut workers: Vec<&Worker> = self.workers.values().collect();
        workers.sort_by_key(|w| (w.slot, w.started));
        StatusReport {
            master_pid: std::process::id(),
            config_path: self.config.source.clone(),
            generation: self.generation,
            listen: self.listen_addr.to_string(),
            phase: phase.into(),
            uptime_ms: ms(now.duration_since(self.started)),
            desired_workers: self.desired,
            workers: workers
                .into_iter()
                .map(|w| WorkerStatus {
                    slot: w.slot.index(),
                    role: w.slot.role().into(),
                    pid: w.pid,
                    generation: w.generation,
                    state: w.state.name().into(),
                    uptime_ms: ms(now.duration_since(w.started)),
                    heartbeat_age_ms: w.answered.then(|| ms(now.duration_since(w.last_seen))),
                    rss: w.rss,
                    heap_used: w.report.heap_used,
                    heap_total: w.report.heap_total,
                    clients: w.report.clients,
                    loop_lag_us: w.report.loop_lag_us,
                    restarts: self.slot(w.slot).map_or(0, |s| s.restarts),
                })
                .collect(),
        }
    }
}

fn local_addr(listener: &TcpListener, config: &Config) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], config.frontend.port)))
}
