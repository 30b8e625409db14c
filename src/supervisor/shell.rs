//! The master's effects: the thin async shell around [`ClusterState`]. It owns the worker
//! processes and their channels, the listen socket, the status socket and the console channel,
//! the timers, and systemd's socket; it turns everything that happens into an [`Event`], hands it
//! to the state, and carries out the [`Action`]s that come back. Nothing here decides anything.
//!
//! Nothing in the loop blocks or waits on a worker: writes to workers go through per-worker
//! queues, exits arrive as events, timers are instants the loop sleeps until, and a reload's file
//! reads and bind run on the blocking pool.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::path::PathBuf;

use futures_util::{Stream, StreamExt};
use nix::sys::signal::{Signal as NixSignal, kill};
use sysinfo::{Pid as SysPid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{Instant, sleep_until};

use super::cluster::{Action, ClusterState, Event, NotSent, Notification, Place, Timer, WorkerId};
use super::notify::Notifier;
use super::reload;
use super::signals::Signal;
use super::spawn::{Spawned, spawn_worker};
use super::{SupervisorError, cluster, listen, session_secret};
use crate::config::Loaded;
use crate::console;
use crate::ipc::{self, Channel, Frame, ToMaster, ToWorker};
use crate::logging::{self, error_chain};
use crate::metrics::{self, http::MetricsCall};
use crate::status::{self, Pid, StatusCall};
use crate::tls::TlsFiles;

/// Frames queued for one worker; a worker that does not read them loses heartbeats, not the
/// master's time.
const TO_WORKER_QUEUE: usize = 64;

/// One worker process: its pid and its message queue.
struct Process {
    pid: Pid,
    frames: mpsc::Sender<Frame>,
}

pub struct Shell {
    /// The binary workers are started from (resolved once, at start).
    exe: PathBuf,
    /// The config file named on the command line, re-read on SIGHUP.
    config_arg: Option<PathBuf>,
    listener: TcpListener,
    notifier: Notifier,
    processes: BTreeMap<WorkerId, Process>,
    /// What the state has armed.
    timers: BTreeMap<Timer, Instant>,
    /// Events from the per-worker tasks and the reload's blocking task.
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    status_rx: mpsc::Receiver<StatusCall>,
    /// Scrapes on `cluster.metricsAddress` (never any without it).
    metrics_rx: mpsc::Receiver<MetricsCall>,
    /// Commands from the Redis control channel, and their answers back to it.
    console_rx: mpsc::Receiver<console::Incoming>,
    console_replies: mpsc::Sender<(String, serde_json::Value)>,
    sys: System,
}

/// Binds the listen and status sockets, subscribes to the console channel, and makes the
/// state the master starts from.
pub fn start(
    loaded: Loaded,
    tls: Option<TlsFiles>,
    config_arg: Option<PathBuf>,
    exe: PathBuf,
) -> Result<(Shell, ClusterState), SupervisorError> {
    let Loaded {
        mut config,
        warnings,
    } = loaded;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    session_secret::fill(&mut config, None);
    let listener = listen::bind(&config.frontend.host, config.frontend.port)?;
    let listen_addr = listen::local_addr(&listener, &config);
    let status_socket = config.cluster.control_socket.clone();
    let socket = status::listen(&status_socket)?;
    let (status_tx, status_rx) = mpsc::channel(16);
    tokio::spawn(status::serve(socket, status_tx));
    let (metrics_tx, metrics_rx) = mpsc::channel(16);
    let metrics_addr = match &config.cluster.metrics_address {
        Some(addr) => {
            let (listener, bound) = metrics::http::bind(addr)?;
            tokio::spawn(metrics::http::serve(listener, metrics_tx));
            Some(bound)
        }
        None => None,
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (console_tx, console_rx) = mpsc::channel(16);
    let (console_replies, replies_rx) = mpsc::channel(16);
    let redis = config.gateway.redis.clone();
    tokio::spawn(console::channel::serve(redis, console_tx, replies_rx));
    tracing::info!(
        listen = %listen_addr,
        tls = tls.is_some(),
        workers = config.cluster.worker_count,
        config = %config.source.as_ref().map_or("(defaults)".into(), |p| p.display().to_string()),
        control = %status_socket.display(),
        metrics = %metrics_addr.map_or("(listen address only)".into(), |a| a.to_string()),
        "master starting"
    );
    let notifier = Notifier::from_env();
    let state = ClusterState::new(
        cluster::Start {
            config,
            tls,
            listen_addr,
            status_socket,
            metrics_addr,
            master_pid: Pid(std::process::id()),
            systemd_watchdog: notifier.watchdog_period(),
            rng: fastrand::Rng::new(),
        },
        Instant::now(),
    );
    let shell = Shell {
        exe,
        config_arg,
        listener,
        notifier,
        processes: BTreeMap::new(),
        timers: BTreeMap::new(),
        events_tx,
        events_rx,
        status_rx,
        metrics_rx,
        console_rx,
        console_replies,
        sys: System::new().map_err(|e| SupervisorError::Sysinfo(e.to_string()))?,
    };
    Ok((shell, state))
}

/// What carrying out one action leads to.
enum Step {
    Done,
    /// An event to hand to the state next (the outcome of a spawn, a measurement...).
    Then(Event),
    Exit,
}

impl Shell {
    /// Runs the master until the state says every worker is gone. `signals` are the signals it
    /// acts on, as values (the process's, or a test's).
    pub async fn run(mut self, mut state: ClusterState, signals: impl Stream<Item = Signal>) {
        let mut signals = std::pin::pin!(signals);
        if self.feed(&mut state, Event::Start) {
            return;
        }
        loop {
            let next = self.timers.values().min().copied();
            let events = tokio::select! {
                Some(signal) = signals.next() => vec![Event::Signal(signal)],
                Some(event) = self.events_rx.recv() => vec![event],
                Some(call) = self.status_rx.recv() => vec![Event::Status(call)],
                Some(call) = self.metrics_rx.recv() => vec![Event::Metrics(call)],
                Some(incoming) = self.console_rx.recv() => vec![Event::Console {
                    command: incoming.command,
                    reply: incoming.reply,
                }],
                () = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.take_due()
                }
            };
            for event in events {
                if self.feed(&mut state, event) {
                    return;
                }
            }
        }
    }

    /// Hands `first` to the state, carries out the actions, and so on with the events they
    /// lead to. `true`: the master is done.
    fn feed(&mut self, state: &mut ClusterState, first: Event) -> bool {
        let mut queue = VecDeque::from([first]);
        while let Some(event) = queue.pop_front() {
            if let Event::Exited { id, .. } = &event {
                self.processes.remove(id);
            }
            for action in state.handle(event, Instant::now()) {
                match self.execute(action) {
                    Step::Done => {}
                    Step::Then(event) => queue.push_back(event),
                    Step::Exit => return true,
                }
            }
        }
        false
    }

    /// The timers that have come, as events (and no longer armed).
    fn take_due(&mut self) -> Vec<Event> {
        let now = Instant::now();
        let due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(timer, _)| *timer)
            .collect();
        for timer in &due {
            self.timers.remove(timer);
        }
        due.into_iter().map(Event::Due).collect()
    }

    fn execute(&mut self, action: Action) -> Step {
        match action {
            Action::Spawn { id, place, init } => return Step::Then(self.spawn(id, place, init)),
            Action::Send { id, msg } => {
                if let Some(event) = self.send(id, msg) {
                    return Step::Then(event);
                }
            }
            Action::Kill { id } => {
                if let Some(process) = self.processes.get(&id)
                    && let Ok(raw) = i32::try_from(process.pid.0)
                    && raw > 0
                    && let Err(e) = kill(nix::unistd::Pid::from_raw(raw), NixSignal::SIGKILL)
                {
                    tracing::warn!(pid = raw, "SIGKILL failed: {e}");
                }
            }
            Action::Notify(notification) => self.notify(notification),
            Action::Arm { timer, at } => {
                self.timers.insert(timer, at);
            }
            Action::Disarm(timer) => {
                self.timers.remove(&timer);
            }
            Action::Answer { reply, answer } => {
                if self
                    .console_replies
                    .try_send((reply, answer.to_json()))
                    .is_err()
                {
                    tracing::warn!("control channel: reply dropped");
                }
            }
            Action::Status { call, report } => {
                let _ = call.reply.send(*report);
            }
            Action::Metrics { call, text } => {
                let _ = call.reply.send(text);
            }
            Action::Measure(ids) => return Step::Then(Event::Measured(self.measure(&ids))),
            Action::PrepareReload { running } => {
                let config_arg = self.config_arg.clone();
                let events = self.events_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let result = reload::prepare(config_arg.as_deref(), &running);
                    let _ = events.send(Event::Reloaded(Box::new(result)));
                });
            }
            Action::Listen(listener) => self.listener = listener,
            Action::LogLevel(level) => logging::set_level(level),
            Action::Exit => return Step::Exit,
        }
        Step::Done
    }

    /// Starts the worker process for `id`; the event saying how that went.
    fn spawn(&mut self, id: WorkerId, place: Place, init: Frame) -> Event {
        match spawn_worker(&self.exe, place, &self.listener) {
            Ok(spawned) => {
                let pid = Pid(spawned.pid);
                self.adopt(id, spawned, init);
                Event::Spawned { id, pid }
            }
            Err(error) => Event::SpawnFailed { id, error },
        }
    }

    /// Wires up a new worker process: its message queue (`init` first), its reader, its exit
    /// watcher.
    fn adopt(&mut self, id: WorkerId, spawned: Spawned, init: Frame) {
        let Spawned {
            mut child,
            pid,
            channel,
        } = spawned;
        let Channel {
            mut sender,
            mut receiver,
        } = Channel::<ToWorker, ToMaster>::new(channel);
        let (frames, mut queue) = mpsc::channel::<Frame>(TO_WORKER_QUEUE);
        let _ = frames.try_send(init);
        tokio::spawn(async move {
            while let Some(frame) = queue.recv().await {
                if sender.send_frame(&frame).await.is_err() {
                    return; // the worker is gone; its exit event follows
                }
            }
        });
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            loop {
                match receiver.recv().await {
                    Ok(Some(msg)) => {
                        if events.send(Event::FromWorker { id, msg }).is_err() {
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
                Ok(status) => Some(status),
                Err(e) => {
                    tracing::warn!(pid, "cannot read the worker's exit status: {e}");
                    None
                }
            };
            let _ = events.send(Event::Exited { id, status });
        });
        self.processes.insert(
            id,
            Process {
                pid: Pid(pid),
                frames,
            },
        );
    }

    /// Queues `msg` for worker `id`; an event if it could not be.
    fn send(&mut self, id: WorkerId, msg: ToWorker) -> Option<Event> {
        let process = self.processes.get(&id)?;
        // Encoded here, not in the writer: a frame over the limit would end the writer, and
        // with it the worker's channel.
        let frame = match ipc::encode(&msg) {
            Ok(frame) => frame,
            Err(e) => {
                let why = NotSent::TooLarge(e);
                return Some(Event::NotSent { id, msg, why });
            }
        };
        match process.frames.try_send(frame) {
            Ok(()) => None,
            Err(TrySendError::Full(_)) => Some(Event::NotSent {
                id,
                msg,
                why: NotSent::QueueFull,
            }),
            Err(TrySendError::Closed(_)) => None, // the worker is gone; its exit event follows
        }
    }

    fn notify(&self, notification: Notification) {
        match notification {
            Notification::Ready(status) => self.notifier.ready(&status),
            Notification::Reloading => self.notifier.reloading(),
            Notification::Stopping => self.notifier.stopping(),
            Notification::Status(status) => self.notifier.status(&status),
            Notification::Watchdog => self.notifier.watchdog(),
        }
    }

    /// The RSS of each of these workers, in one read of the process table.
    fn measure(&mut self, ids: &[WorkerId]) -> Vec<(WorkerId, u64)> {
        let known: Vec<(WorkerId, SysPid)> = ids
            .iter()
            .filter_map(|id| Some((*id, SysPid::from_u32(self.processes.get(id)?.pid.0))))
            .collect();
        let pids: Vec<SysPid> = known.iter().map(|(_, pid)| *pid).collect();
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        known
            .into_iter()
            .filter_map(|(id, pid)| Some((id, self.sys.process(pid)?.memory())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::Config;

    /// The shell driven by signals as values, with worker processes that only sleep: SIGQUIT
    /// from the stream kills them, their exits are reaped, and `run` returns.
    #[tokio::test]
    async fn a_quit_from_the_signal_stream_stops_the_master() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("worker");
        std::fs::write(&exe, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut config = Config::default();
        config.frontend.host = "127.0.0.1".into();
        config.frontend.port = 0;
        config.cluster.worker_count = 2;
        config.cluster.standby_workers = 0;
        config.cluster.control_socket = dir.path().join("status.sock");
        // Nobody listens there: the console channel retries quietly meanwhile.
        config.gateway.redis.port = 1;
        let loaded = Loaded {
            config,
            warnings: Vec::new(),
        };
        let (shell, state) = start(loaded, None, None, exe).unwrap();
        let (signals, stream) = mpsc::unbounded_channel();
        let stream = tokio_stream_of(stream);
        let run = tokio::spawn(shell.run(state, stream));
        // Both started (they never say ready: they are not workers).
        let status = dir.path().join("status.sock");
        let workers = loop {
            let path = status.clone();
            let report = tokio::task::spawn_blocking(move || status::query_status(&path))
                .await
                .unwrap();
            if let Ok(report) = report
                && report.workers.len() == 2
                && report.workers.iter().all(|w| w.pid.0 > 0)
            {
                break report.workers;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        signals.send(Signal::Quit).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(20), run)
            .await
            .expect("the master stops")
            .unwrap();
        for w in workers {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", w.pid.0));
            assert!(stat.is_err(), "worker {} was reaped", w.pid);
        }
    }

    fn tokio_stream_of(mut rx: mpsc::UnboundedReceiver<Signal>) -> impl Stream<Item = Signal> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
