//! The master's decisions without processes: a [`Sim`] plays the shell (it answers spawns,
//! measures, delivers heartbeats and exits as the real processes would, and keeps the armed
//! timers), on tokio's paused clock. Every test also checks the rule that keeps the master from
//! spinning: no timer is ever armed at or before the instant it is armed.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;

use super::*;
use crate::config::{Loaded, MB, MemoryThresholds};

const HEARTBEAT: Duration = Duration::from_millis(100);
const WATCHDOG: Duration = Duration::from_millis(100);
const WORKER_TIMEOUT: Duration = Duration::from_millis(500);
const RESTART_DELAY: Duration = Duration::from_millis(50);
const DRAIN: Duration = Duration::from_millis(3000);

fn config(workers: usize, standby: usize) -> Config {
    let mut c = Config::default();
    c.cluster.worker_count = workers;
    c.cluster.standby_workers = standby;
    c.cluster.heartbeat_interval = HEARTBEAT;
    c.cluster.watchdog_interval = WATCHDOG;
    c.cluster.worker_timeout = WORKER_TIMEOUT;
    c.cluster.worker_restart_delay = RESTART_DELAY;
    c.cluster.max_restart_backoff = 4;
    c.cluster.drain_timeout = DRAIN;
    c.frontend.session_secret = Some("secret".into());
    c
}

/// The shell, played: processes are pids in a table, and they behave as `Sim`'s switches say.
struct Sim {
    state: ClusterState,
    timers: BTreeMap<Timer, Instant>,
    pids: BTreeMap<WorkerId, Pid>,
    next_pid: u32,
    /// Workers that answer heartbeats (all ready ones, unless silenced).
    answering: BTreeSet<WorkerId>,
    /// Places where spawning fails.
    spawn_fails: BTreeSet<Place>,
    /// RSS each worker measures at (default 50 MB).
    rss: BTreeMap<WorkerId, u64>,
    /// Whether a worker told to drain exits at once, and a killed one is reaped at once.
    drains_exit: bool,
    kills_exit: bool,
    /// Times the clock was advanced to a timer: the master's wake-ups.
    wakes: usize,
    /// Processes started so far.
    spawns: usize,
}

impl Sim {
    fn new(config: Config) -> Sim {
        let start = Start {
            config,
            tls: None,
            listen_addr: "127.0.0.1:8080".parse().unwrap(),
            status_socket: PathBuf::from("/tmp/test-status.sock"),
            metrics_addr: None,
            master_pid: Pid(1),
            systemd_watchdog: None,
            rng: fastrand::Rng::with_seed(7),
        };
        let mut sim = Sim {
            state: ClusterState::new(start, Instant::now()),
            timers: BTreeMap::new(),
            pids: BTreeMap::new(),
            next_pid: 100,
            answering: BTreeSet::new(),
            spawn_fails: BTreeSet::new(),
            rss: BTreeMap::new(),
            drains_exit: false,
            kills_exit: true,
            wakes: 0,
            spawns: 0,
        };
        sim.handle(Event::Start);
        sim
    }

    /// Hands `event` to the state, then the events its actions lead to, as the shell does.
    /// Returns the actions of this call.
    fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut queue = VecDeque::from([event]);
        let mut all = Vec::new();
        while let Some(event) = queue.pop_front() {
            let now = Instant::now();
            for action in self.state.handle(event, now) {
                match &action {
                    Action::Arm { timer, at } => {
                        assert!(
                            *at > now,
                            "{timer:?} armed at {at:?}, not after now ({now:?}): the master \
                             would wake at once, and again, and again"
                        );
                        self.timers.insert(*timer, *at);
                    }
                    Action::Disarm(timer) => {
                        self.timers.remove(timer);
                    }
                    Action::Spawn { id, place, .. } => {
                        if self.spawn_fails.contains(place) {
                            let error = SpawnError::Exec {
                                slot: *place,
                                exe: "/nonexistent".into(),
                                source: std::io::Error::other("not there"),
                            };
                            queue.push_back(Event::SpawnFailed { id: *id, error });
                        } else {
                            self.spawns += 1;
                            self.next_pid += 1;
                            let pid = Pid(self.next_pid);
                            self.pids.insert(*id, pid);
                            queue.push_back(Event::Spawned { id: *id, pid });
                        }
                    }
                    Action::Send {
                        id,
                        msg: ToWorker::Heartbeat { seq },
                    } if self.answering.contains(id) => {
                        let msg = ToMaster::HeartbeatAck {
                            seq: *seq,
                            report: Box::default(),
                        };
                        queue.push_back(Event::FromWorker { id: *id, msg });
                    }
                    Action::Send {
                        id,
                        msg: ToWorker::Drain { .. },
                    } if self.drains_exit => queue.push_back(exited(*id, 0)),
                    Action::Kill { id } if self.kills_exit => {
                        queue.push_back(Event::Exited {
                            id: *id,
                            status: Some(ExitStatus::from_raw(9)),
                        });
                    }
                    Action::Measure(ids) => {
                        let rss = ids
                            .iter()
                            .map(|id| (*id, self.rss.get(id).copied().unwrap_or(50 * MB)))
                            .collect();
                        queue.push_back(Event::Measured(rss));
                    }
                    _ => {}
                }
                all.push(action);
            }
        }
        all
    }

    /// Lets `d` pass, waking for every timer that comes due on the way, as the shell would.
    async fn advance(&mut self, d: Duration) -> Vec<Action> {
        let end = Instant::now() + d;
        let mut all = Vec::new();
        while let Some(at) = self.timers.values().min().copied()
            && at <= end
        {
            tokio::time::advance(at - Instant::now()).await;
            self.wakes += 1;
            let due: Vec<Timer> = self
                .timers
                .iter()
                .filter(|(_, t)| **t <= at)
                .map(|(timer, _)| *timer)
                .collect();
            for timer in due {
                self.timers.remove(&timer);
                all.extend(self.handle(Event::Due(timer)));
            }
        }
        tokio::time::advance(end - Instant::now()).await;
        all
    }

    fn ready(&mut self, id: WorkerId) -> Vec<Action> {
        self.answering.insert(id);
        self.handle(Event::FromWorker {
            id,
            msg: ToMaster::Ready,
        })
    }

    /// Ready, and one heartbeat answered (which proves it and resets its place's backoff).
    fn serving(&mut self, id: WorkerId) {
        self.ready(id);
        self.handle(Event::FromWorker {
            id,
            msg: ToMaster::HeartbeatAck {
                seq: 0,
                report: Box::default(),
            },
        });
    }

    fn exit(&mut self, id: WorkerId, code: i32) -> Vec<Action> {
        self.answering.remove(&id);
        self.handle(exited(id, code))
    }

    fn active(&self, slot: usize) -> Option<WorkerId> {
        self.state.slots.get(slot)?.active
    }

    fn successor(&self, slot: usize) -> Option<WorkerId> {
        self.state.slots.get(slot)?.successor
    }

    fn standby(&self) -> Option<WorkerId> {
        self.state.standby.worker
    }

    fn worker(&self, id: WorkerId) -> &Worker {
        &self.state.workers[&id]
    }

    fn failures(&self, place: Place) -> u32 {
        self.state.backoff(place).map_or(0, |b| b.failures)
    }

    /// Starts the cluster and makes every slot's worker serve.
    fn all_serving(&mut self) {
        for slot in 0..self.state.slots.len() {
            let id = self.active(slot).expect("a worker in every slot");
            self.serving(id);
        }
    }
}

fn exited(id: WorkerId, code: i32) -> Event {
    Event::Exited {
        id,
        status: Some(ExitStatus::from_raw(code << 8)),
    }
}

fn spawned(actions: &[Action]) -> Vec<(WorkerId, Place)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Spawn { id, place, .. } => Some((*id, *place)),
            _ => None,
        })
        .collect()
}

fn sent(actions: &[Action], to: WorkerId) -> Vec<&ToWorker> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { id, msg } if *id == to => Some(msg),
            _ => None,
        })
        .collect()
}

fn drained(actions: &[Action], id: WorkerId) -> bool {
    sent(actions, id)
        .iter()
        .any(|m| matches!(m, ToWorker::Drain { .. }))
}

fn killed(actions: &[Action], who: WorkerId) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Kill { id } if *id == who))
}

fn armed_at(actions: &[Action], which: Timer) -> Option<Instant> {
    actions.iter().rev().find_map(|a| match a {
        Action::Arm { timer, at } if *timer == which => Some(*at),
        _ => None,
    })
}

fn exits(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::Exit))
}

fn prepared(config: Config) -> Event {
    Event::Reloaded(Box::new(Ok(Prepared {
        loaded: Loaded {
            config,
            warnings: Vec::new(),
        },
        tls: None,
        listener: None,
    })))
}

const SLOT_0: Place = Place::Slot(SlotId::Gateway(0));
const SLOT_1: Place = Place::Slot(SlotId::Gateway(1));

#[tokio::test(start_paused = true)]
async fn a_dead_worker_is_replaced_at_once_then_under_growing_backoff() {
    let mut sim = Sim::new(config(2, 0));
    sim.all_serving();
    let first = sim.active(1).unwrap();

    // First failure of the slot: 2^0 - 1 = 0, no delay.
    let actions = sim.exit(first, 9);
    let [(second, place)] = spawned(&actions)[..] else {
        panic!("one replacement at once: {actions:?}")
    };
    assert_eq!(place, SLOT_1);
    assert_eq!(sim.failures(SLOT_1), 1);
    assert_eq!(sim.state.slots[1].restarts, 1);

    // It dies before it is ready: the second failure waits up to 1 x workerRestartDelay.
    let actions = sim.exit(second, 1);
    assert!(spawned(&actions).is_empty(), "{actions:?}");
    let due = armed_at(&actions, Timer::Restart(SLOT_1)).expect("a restart timer");
    let delay = due - Instant::now();
    assert!(
        delay > Duration::ZERO && delay <= RESTART_DELAY,
        "{delay:?}"
    );
    assert!(sim.active(1).is_none());

    // Nothing starts before the backoff has passed; then it does, once.
    let early = sim.advance(delay / 2).await;
    assert!(spawned(&early).is_empty(), "{early:?}");
    let on_time = sim.advance(delay - delay / 2).await;
    let [(third, _)] = spawned(&on_time)[..] else {
        panic!("the replacement when the backoff ends: {on_time:?}")
    };

    // The third failure waits up to 3 x the delay.
    let actions = sim.exit(third, 1);
    let due = armed_at(&actions, Timer::Restart(SLOT_1)).unwrap();
    assert!(due - Instant::now() <= RESTART_DELAY * 3);
    assert_eq!(sim.failures(SLOT_1), 3);
    sim.advance(RESTART_DELAY * 3).await;
    let fourth = sim.active(1).expect("replaced after the backoff");

    // Its first heartbeat answer while ready resets the backoff: the next death is replaced
    // at once again.
    sim.serving(fourth);
    assert_eq!(sim.failures(SLOT_1), 0);
    let actions = sim.exit(fourth, 9);
    assert_eq!(spawned(&actions).len(), 1, "{actions:?}");
    assert_eq!(sim.state.slots[1].restarts, 4);
    assert_eq!(sim.failures(SLOT_0), 0, "slot 0 untouched");
}

#[tokio::test(start_paused = true)]
async fn the_ready_standby_takes_a_dead_workers_slot_and_a_new_one_follows_later() {
    let mut sim = Sim::new(config(2, 1));
    assert_eq!(sim.spawns, 2, "no standby before the slots are ready");
    let first = sim.active(0).unwrap();
    sim.serving(first);
    let actions = sim.ready(sim.active(1).unwrap());
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Notify(Notification::Ready(_))))
    );
    // Every slot ready: now the standby starts.
    assert_eq!(spawned(&actions)[..].len(), 1);
    assert_eq!(spawned(&actions)[0].1, Place::Standby);
    let spare = sim.standby().unwrap();
    sim.serving(spare);

    let actions = sim.exit(first, 9);
    assert!(
        spawned(&actions).is_empty(),
        "no process started for the slot"
    );
    assert_eq!(sent(&actions, spare), [&ToWorker::Activate { slot: 0 }]);
    assert_eq!(sim.active(0), Some(spare));
    assert_eq!(sim.worker(spare).place, SLOT_0);
    assert_eq!(sim.state.slots[0].restarts, 1);
    assert!(sim.standby().is_none());
    // The slot got a worker: nothing of its backoff is left to wake for.
    assert!(!sim.timers.contains_key(&Timer::Restart(SLOT_0)));

    // The next standby starts workerRestartDelay later.
    let due = armed_at(&actions, Timer::Restart(Place::Standby)).unwrap();
    assert_eq!(due - Instant::now(), RESTART_DELAY);
    let actions = sim.advance(RESTART_DELAY).await;
    assert_eq!(spawned(&actions).len(), 1);
    assert_eq!(spawned(&actions)[0].1, Place::Standby);
    assert_ne!(sim.standby(), Some(spare));
}

#[tokio::test(start_paused = true)]
async fn a_worker_silent_past_worker_timeout_is_killed_and_replaced() {
    let mut sim = Sim::new(config(2, 0));
    sim.all_serving();
    let hung = sim.active(0).unwrap();
    let fine = sim.active(1).unwrap();
    sim.answering.remove(&hung);

    // Silent for workerTimeout: still there.
    let actions = sim.advance(WORKER_TIMEOUT).await;
    assert!(!killed(&actions, hung));
    // Past it, at the next watchdog tick: SIGKILL, and a replacement at once.
    let actions = sim.advance(WATCHDOG).await;
    assert!(killed(&actions, hung), "{actions:?}");
    assert_eq!(spawned(&actions).len(), 1);
    assert_ne!(sim.active(0), Some(hung));
    assert!(!killed(&actions, fine));
    assert!(!sim.state.workers.contains_key(&hung), "reaped");

    // A worker that never answers at all is caught by the same rule, counted from its start.
    let new = sim.active(0).unwrap();
    let actions = sim.advance(WORKER_TIMEOUT + WATCHDOG).await;
    assert!(killed(&actions, new), "{actions:?}");
}

#[tokio::test(start_paused = true)]
async fn a_worker_over_its_memory_limit_is_replaced_first_then_drained() {
    let mut c = config(1, 0);
    c.cluster.memory_limit = MemoryThresholds {
        rss: Some(100 * MB),
        ..MemoryThresholds::default()
    };
    let mut sim = Sim::new(c);
    sim.all_serving();
    let old = sim.active(0).unwrap();
    // Within its limit once (a worker over it from the start is another case).
    sim.advance(HEARTBEAT).await;
    assert!(matches!(sim.worker(old).state, WorkerState::Ready { .. }));

    sim.rss.insert(old, 150 * MB);
    let actions = sim.advance(HEARTBEAT).await;
    assert!(sim.worker(old).is_recycling());
    let [(new, SLOT_0)] = spawned(&actions)[..] else {
        panic!("a successor for slot 0: {actions:?}")
    };
    assert_eq!(sim.active(0), Some(old), "the old worker serves meanwhile");
    assert_eq!(sim.successor(0), Some(new));
    assert!(!drained(&actions, old));
    assert_eq!(sim.failures(SLOT_0), 0, "a recycle is no failure");

    let actions = sim.ready(new);
    assert!(drained(&actions, old), "{actions:?}");
    assert_eq!(sim.active(0), Some(new));
    assert_eq!(sim.state.slots[0].restarts, 1);
    let kill_at = armed_at(&actions, Timer::Drain(old)).unwrap();
    assert_eq!(kill_at - Instant::now(), DRAIN + DRAIN_GRACE);
}

#[tokio::test(start_paused = true)]
async fn a_sighup_during_a_reload_reads_the_file_again_after_it() {
    let mut sim = Sim::new(config(2, 0));
    sim.all_serving();
    let gen1 = [sim.active(0).unwrap(), sim.active(1).unwrap()];

    let actions = sim.handle(Event::Signal(Signal::Reload));
    assert!(matches!(
        actions[..],
        [
            Action::Notify(Notification::Reloading),
            Action::PrepareReload { .. }
        ]
    ));
    // A second SIGHUP while the file is being read: told to systemd, read again later.
    let actions = sim.handle(Event::Signal(Signal::Reload));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::PrepareReload { .. }))
    );

    let actions = sim.handle(prepared(config(2, 0)));
    assert_eq!(sim.state.generation, 2);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::PrepareReload { .. })),
        "the second read: {actions:?}"
    );
    let gen2: Vec<WorkerId> = spawned(&actions).iter().map(|s| s.0).collect();
    assert_eq!(gen2.len(), 2, "a successor per slot");

    let mut three = config(3, 0);
    three.cluster.drain_timeout = Duration::from_millis(1000);
    let actions = sim.handle(prepared(three));
    assert_eq!(sim.state.generation, 3);
    // The new slot gets a worker; the two slots still replacing theirs wait for their
    // successors.
    assert_eq!(spawned(&actions).len(), 1, "{actions:?}");
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::PrepareReload { .. }))
    );

    // Generation 2 takes over, generation 1 drains, and generation 3 replaces generation 2.
    for (slot, id) in gen2.iter().enumerate() {
        let actions = sim.ready(*id);
        assert!(drained(&actions, gen1[slot]));
        assert_eq!(spawned(&actions).len(), 1, "{actions:?}");
    }
    let gen3: Vec<WorkerId> = (0..3)
        .map(|slot| sim.successor(slot).or(sim.active(slot)).unwrap())
        .collect();
    let mut ready = None;
    for id in gen3 {
        for action in sim.ready(id) {
            if let Action::Notify(Notification::Ready(status)) = action {
                ready = Some(status);
            }
        }
    }
    let status = ready.expect("READY=1 once generation 3 is in every slot");
    assert!(status.contains("3 workers ready") && status.contains("generation 3"));
    assert!(
        sim.state
            .workers
            .values()
            .filter(|w| w.is_live())
            .all(|w| w.generation == 3)
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_fails_changes_nothing() {
    let mut sim = Sim::new(config(2, 0));
    sim.all_serving();
    sim.handle(Event::Signal(Signal::Reload));
    let problem =
        crate::config::Config::parse("cluster.workerTimeout=5s\n", "x.properties".as_ref())
            .unwrap_err();
    let actions = sim.handle(Event::Reloaded(Box::new(Err(problem.into()))));
    assert_eq!(sim.state.generation, 1);
    assert!(spawned(&actions).is_empty());
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Notify(Notification::Ready(s)) if s.starts_with("reload failed, running generation 1")
    )));
}

#[tokio::test(start_paused = true)]
async fn sigttin_adds_a_worker_and_sigttou_drains_one_down_to_one() {
    let mut sim = Sim::new(config(2, 0));
    sim.all_serving();
    let actions = sim.handle(Event::Signal(Signal::MoreWorkers));
    assert_eq!(spawned(&actions)[..].len(), 1);
    assert_eq!(spawned(&actions)[0].1, Place::Slot(SlotId::Gateway(2)));
    let third = sim.active(2).unwrap();
    sim.serving(third);

    let actions = sim.handle(Event::Signal(Signal::FewerWorkers));
    assert!(drained(&actions, third));
    assert_eq!(sim.state.slots.len(), 2);
    let second = sim.active(1).unwrap();
    let actions = sim.handle(Event::Signal(Signal::FewerWorkers));
    assert!(drained(&actions, second));
    let actions = sim.handle(Event::Signal(Signal::FewerWorkers));
    assert!(actions.iter().all(|a| !matches!(a, Action::Send { .. })));
    assert_eq!(sim.state.desired, 1);
    assert_eq!(sim.state.slots.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn sigterm_drains_everyone_then_exits_and_kills_at_the_deadline() {
    // Workers that finish: the master exits when the last one has.
    let mut sim = Sim::new(config(2, 0));
    sim.all_serving();
    let ids = [sim.active(0).unwrap(), sim.active(1).unwrap()];
    let actions = sim.handle(Event::Signal(Signal::Terminate));
    assert!(matches!(actions[0], Action::Notify(Notification::Stopping)));
    assert!(ids.iter().all(|id| drained(&actions, *id)));
    assert!(spawned(&actions).is_empty());
    assert!(!exits(&sim.exit(ids[0], 0)));
    assert!(exits(&sim.exit(ids[1], 0)));

    // Workers that do not: SIGKILL at the deadline, then exit once they are reaped.
    let mut sim = Sim::new(config(2, 0));
    sim.all_serving();
    let ids = [sim.active(0).unwrap(), sim.active(1).unwrap()];
    sim.handle(Event::Signal(Signal::Terminate));
    let actions = sim.advance(DRAIN).await;
    assert!(!ids.iter().any(|id| killed(&actions, *id)));
    let actions = sim.advance(DRAIN_GRACE).await;
    assert!(ids.iter().all(|id| killed(&actions, *id)), "{actions:?}");
    assert!(exits(&actions));
}

#[tokio::test(start_paused = true)]
async fn sigquit_kills_everyone_and_gives_up_on_the_unreapable() {
    let mut sim = Sim::new(config(2, 0));
    sim.all_serving();
    let actions = sim.handle(Event::Signal(Signal::Quit));
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Kill { .. }))
            .count(),
        2
    );
    assert!(exits(&actions), "both reaped: {actions:?}");

    // Processes that never come back from SIGKILL: the master gives up after REAP_WAIT.
    let mut sim = Sim::new(config(2, 0));
    sim.all_serving();
    sim.kills_exit = false;
    let actions = sim.handle(Event::Signal(Signal::Quit));
    assert!(!exits(&actions));
    assert!(!exits(
        &sim.advance(REAP_WAIT - Duration::from_millis(1)).await
    ));
    assert!(exits(&sim.advance(Duration::from_millis(1)).await));
    // And after that, nothing: no timer is left.
    assert!(sim.timers.is_empty(), "{:?}", sim.timers);
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_cannot_be_started_is_retried_under_backoff_never_in_a_loop() {
    // With no backoff configured at all, a start that fails at once (an init message over
    // the frame limit, say) would otherwise be retried in a busy loop.
    let mut c = config(1, 0);
    c.cluster.max_restart_backoff = 0;
    let mut sim = Sim::new(c.clone());
    sim.all_serving();
    let serving = sim.active(0).unwrap();
    sim.spawn_fails.insert(SLOT_0);
    sim.handle(Event::Signal(Signal::Reload));
    let actions = sim.handle(prepared(c));
    assert_eq!(
        spawned(&actions).len(),
        1,
        "one attempt, not a storm: {actions:?}"
    );
    assert_eq!(sim.active(0), Some(serving), "the old worker serves on");
    let due = armed_at(&actions, Timer::Restart(SLOT_0)).unwrap();
    assert_eq!(due - Instant::now(), SPAWN_RETRY_MIN);
    let (wakes, spawns) = (sim.wakes, sim.spawns);
    sim.advance(Duration::from_secs(1)).await;
    // One retry every SPAWN_RETRY_MIN, on the heartbeat and watchdog ticks' instants.
    assert_eq!(sim.spawns, spawns, "every retry failed");
    assert!(sim.wakes - wakes <= 20, "{} wake-ups", sim.wakes - wakes);
    assert_eq!(sim.failures(SLOT_0), 11, "a retry every 100 ms");
}

#[tokio::test(start_paused = true)]
async fn a_config_too_large_for_the_init_message_starts_no_process_and_backs_off() {
    let mut sim = Sim::new(config(1, 0));
    sim.all_serving();
    let serving = sim.active(0).unwrap();
    let mut big = config(1, 0);
    big.frontend.session_secret = Some("x".repeat(2 << 20));
    sim.handle(Event::Signal(Signal::Reload));
    let (spawns, wakes) = (sim.spawns, sim.wakes);
    let actions = sim.handle(prepared(big));
    assert!(
        spawned(&actions).is_empty(),
        "no process for it: {actions:?}"
    );
    let due = armed_at(&actions, Timer::Restart(SLOT_0)).expect("under backoff");
    assert!(due - Instant::now() >= SPAWN_RETRY_MIN);
    sim.advance(Duration::from_secs(2)).await;
    assert_eq!(sim.spawns, spawns);
    assert!(sim.failures(SLOT_0) >= 3, "tried again, later and later");
    assert!(sim.wakes - wakes <= 20 + sim.failures(SLOT_0) as usize);
    assert_eq!(sim.active(0), Some(serving), "the old worker serves on");
    assert!(sim.worker(serving).is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_reloads_replacement_that_dies_before_ready_goes_under_backoff() {
    let mut sim = Sim::new(config(1, 0));
    sim.all_serving();
    let serving = sim.active(0).unwrap();
    sim.handle(Event::Signal(Signal::Reload));
    let actions = sim.handle(prepared(config(1, 0)));
    let [(first, _)] = spawned(&actions)[..] else {
        panic!("{actions:?}")
    };
    // Dies at start (as a worker that cannot read its init would): tried again at once the
    // first time, as any slot's first failure...
    let actions = sim.exit(first, 1);
    let [(second, _)] = spawned(&actions)[..] else {
        panic!("{actions:?}")
    };
    // ...then only after a delay, growing: not ~100 starts a second.
    let actions = sim.exit(second, 1);
    assert!(spawned(&actions).is_empty(), "{actions:?}");
    assert!(armed_at(&actions, Timer::Restart(SLOT_0)).is_some());
    assert_eq!(sim.failures(SLOT_0), 2);
    assert_eq!(sim.active(0), Some(serving));
}

/// "The master never wakes more often than its timers": the three event-loop spins found by the
/// benchmark, each replayed. In each, a place's restart backoff passes while the master cannot
/// act on it yet; a passed instant kept as a wake-up made the loop wake at once, over and over.
/// `Sim::handle` fails any test in which a timer is armed at or before the present, and here
/// the wake-ups are counted too.
mod never_wakes_more_often_than_its_timers {
    use super::*;

    /// c2c1f93: a slot's backoff passed while its successor was starting (the replacement of a
    /// worker over its memory limit from the start, itself over the limit while starting).
    #[tokio::test(start_paused = true)]
    async fn while_a_successor_starts() {
        let mut c = config(1, 0);
        c.cluster.memory_limit.rss = Some(MB);
        // The successor never answers here: long enough not to be taken for hung.
        c.cluster.worker_timeout = Duration::from_secs(10);
        let mut sim = Sim::new(c);
        let first = sim.active(0).unwrap();
        sim.ready(first);
        // Over the limit from its start: replaced at once (first failure), ...
        let actions = sim.advance(HEARTBEAT).await;
        let [(second, _)] = spawned(&actions)[..] else {
            panic!("{actions:?}")
        };
        // ... and the successor, still starting, is over it too: a backoff while it starts.
        let actions = sim.advance(HEARTBEAT).await;
        assert!(sim.worker(second).is_recycling());
        assert_eq!(sim.successor(0), Some(second));
        let due = armed_at(&actions, Timer::Restart(SLOT_0)).expect("a backoff");
        // The backoff passes; the successor is still starting for a second more.
        sim.wakes = 0;
        sim.advance(Duration::from_secs(1)).await;
        assert!(due <= Instant::now());
        // 10 ticks (heartbeat and watchdog coincide) and the backoff's end: nothing else.
        assert_eq!(sim.wakes, 11);
        assert!(!sim.timers.contains_key(&Timer::Restart(SLOT_0)));
    }

    /// 637ede8: the standby activated in a slot whose backoff had passed (the slot's worker
    /// failed twice, so the backoff was more than zero); the event loop spun at 67% of a core
    /// after every activation.
    #[tokio::test(start_paused = true)]
    async fn after_a_standby_activation() {
        let mut sim = Sim::new(config(2, 1));
        sim.all_serving();
        let spare = sim.standby().unwrap();
        sim.serving(spare);
        // Slot 0's worker dies: the standby takes its place at once (a first failure), and a
        // new standby starts workerRestartDelay later.
        let actions = sim.exit(sim.active(0).unwrap(), 9);
        assert_eq!(sim.active(0), Some(spare));
        assert!(spawned(&actions).is_empty());
        let actions = sim.advance(RESTART_DELAY).await;
        let [(next_spare, Place::Standby)] = spawned(&actions)[..] else {
            panic!("{actions:?}")
        };
        // The activated worker dies before its first heartbeat as slot 0's worker: the slot's
        // second failure, so a backoff of more than zero.
        let actions = sim.exit(spare, 9);
        assert!(spawned(&actions).is_empty(), "{actions:?}");
        let due = armed_at(&actions, Timer::Restart(SLOT_0)).expect("a backoff");
        sim.serving(next_spare);
        // The backoff ends: the ready standby takes the slot.
        sim.wakes = 0;
        let actions = sim.advance(due - Instant::now()).await;
        assert_eq!(
            sent(&actions, next_spare),
            [&ToWorker::Activate { slot: 0 }]
        );
        assert_eq!(sim.wakes, 1);
        sim.wakes = 0;
        sim.advance(Duration::from_secs(1)).await;
        // The next standby's start and 10 ticks; nothing for the slot's passed backoff.
        assert!(sim.wakes <= 11, "{} wake-ups", sim.wakes);
        assert!(!sim.timers.contains_key(&Timer::Restart(SLOT_0)));
    }

    /// 5b3edea: the rule made general; the standby's backoff passing while no standby may start
    /// (a reload's workers are not all ready yet) must not wake the master either.
    #[tokio::test(start_paused = true)]
    async fn while_the_standby_waits_for_the_slots() {
        let mut c = config(2, 1);
        // The new workers never answer here: long enough not to be taken for hung.
        c.cluster.worker_timeout = Duration::from_secs(10);
        let mut sim = Sim::new(c.clone());
        sim.spawn_fails.insert(Place::Standby);
        sim.all_serving();
        // The standby could not be started: it is retried after a delay...
        assert!(sim.timers.contains_key(&Timer::Restart(Place::Standby)));
        // ...but a reload comes first: no standby until the new workers are all ready.
        sim.handle(Event::Signal(Signal::Reload));
        let actions = sim.handle(prepared(c));
        let gen2: Vec<WorkerId> = spawned(&actions).iter().map(|s| s.0).collect();
        sim.spawn_fails.clear();
        sim.wakes = 0;
        let actions = sim.advance(Duration::from_secs(1)).await;
        assert!(spawned(&actions).is_empty(), "{actions:?}");
        assert!(sim.wakes <= 11, "{} wake-ups", sim.wakes);
        // Once they are, the standby starts.
        sim.ready(gen2[0]);
        let actions = sim.ready(gen2[1]);
        assert_eq!(spawned(&actions).len(), 1);
        assert_eq!(spawned(&actions)[0].1, Place::Standby);
    }
}

#[tokio::test(start_paused = true)]
async fn restart_immediate_kills_one_worker_every_interval() {
    let mut c = config(3, 0);
    // The replacements never answer here: long enough not to be taken for hung.
    c.cluster.worker_timeout = Duration::from_secs(10);
    let mut sim = Sim::new(c);
    sim.all_serving();
    let command = crate::console::Command::parse("restart immediate 200");
    let actions = sim.handle(Event::Console {
        command,
        reply: Some("r".into()),
    });
    let kills = |actions: &[Action]| {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Kill { .. }))
            .count()
    };
    assert_eq!(kills(&actions), 1);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Answer {
            answer: Answer::Restarting { count: 3, .. },
            ..
        }
    )));
    assert_eq!(kills(&sim.advance(Duration::from_millis(199)).await), 0);
    assert_eq!(kills(&sim.advance(Duration::from_millis(1)).await), 1);
    assert_eq!(kills(&sim.advance(Duration::from_millis(200)).await), 1);
    assert_eq!(kills(&sim.advance(Duration::from_secs(1)).await), 0);
    assert!(!sim.timers.contains_key(&Timer::NextKill));
}

#[tokio::test(start_paused = true)]
async fn a_push_too_large_for_the_channel_is_answered_not_sent() {
    let mut sim = Sim::new(config(1, 0));
    sim.all_serving();
    let id = sim.active(0).unwrap();
    let actions = sim.handle(Event::Console {
        command: crate::console::Command::parse(r#"push * {"a":1}"#),
        reply: Some("r".into()),
    });
    let Some(ToWorker::Push { id: push, .. }) = sent(&actions, id).first().copied().cloned() else {
        panic!("{actions:?}")
    };
    // The shell could not encode it (too large): the console hears so, the worker is fine.
    let big = crate::ipc::IpcError::FrameTooLarge { len: 2 << 20 };
    let msg = ToWorker::Push {
        id: push,
        audience: crate::gateway::Audience::All,
        data: serde_json::json!({}),
    };
    let actions = sim.handle(Event::NotSent {
        id,
        msg,
        why: NotSent::TooLarge(big),
    });
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Answer { answer: Answer::PushFailed { error, .. }, .. } if error.contains("limit")
    )));
    assert!(!killed(&actions, id));
    assert!(sim.worker(id).is_ready());
}

#[tokio::test(start_paused = true)]
async fn status_lists_the_standby_apart_without_a_slot() {
    let mut sim = Sim::new(config(2, 1));
    sim.all_serving();
    sim.serving(sim.standby().unwrap());
    let report = sim.state.status();
    assert_eq!(report.phase, crate::status::Phase::Running);
    let slots: Vec<Option<usize>> = report.workers.iter().map(|w| w.slot).collect();
    assert_eq!(slots, [Some(0), Some(1)]);
    let [standby] = &report.standby[..] else {
        panic!("{report:?}")
    };
    assert_eq!(standby.role, crate::status::Role::Standby);
    assert_eq!(standby.slot, None);
    assert_eq!(standby.state, crate::status::State::Ready);
}

const DEMO: Place = Place::Slot(SlotId::Demo);

#[tokio::test(start_paused = true)]
async fn the_demo_agent_has_a_slot_of_its_own_that_the_standby_never_takes() {
    let mut c = config(1, 1);
    c.demo.enabled = true;
    let mut sim = Sim::new(c.clone());
    let demo_agent = |sim: &Sim| sim.state.demo.as_ref().and_then(|s| s.active);
    let demo = demo_agent(&sim).expect("a demo agent started with the workers");
    assert_eq!(sim.worker(demo).place, DEMO);
    sim.all_serving();
    assert!(!sim.state.ready_sent, "READY waits for the demo agent too");
    sim.serving(demo);
    assert!(sim.state.ready_sent);
    let standby = sim.standby().expect("a standby once every slot is ready");
    sim.serving(standby);

    // It dies: a new demo agent, not the standby (a gateway worker).
    let actions = sim.exit(demo, 1);
    let places: Vec<Place> = spawned(&actions).iter().map(|(_, p)| *p).collect();
    assert_eq!(places, [DEMO]);
    assert_eq!(sim.standby(), Some(standby));
    let second = demo_agent(&sim).expect("its replacement");
    sim.serving(second);

    // demo.enabled=false on a reload: it drains and nothing takes its place.
    sim.handle(Event::Signal(Signal::Reload));
    c.demo.enabled = false;
    let actions = sim.handle(prepared(c));
    assert!(drained(&actions, second));
    assert!(!spawned(&actions).iter().any(|(_, p)| *p == DEMO));
    assert!(sim.state.demo.is_none());
}
