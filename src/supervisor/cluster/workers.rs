//! Starting, replacing, draining and killing workers: what runs in each slot, and the standby.

use super::place::RestartBackoff;
use super::*;
use crate::backoff::restart_delay;
use crate::logging::error_chain;

impl ClusterState {
    /// Starts whatever should run and does not: a worker for an empty slot, a successor for a
    /// worker of an older generation or over its memory limit (the ready standby if there is
    /// one, else a new worker), and the standby. Respects each place's backoff.
    pub(super) fn reconcile(&mut self) {
        while self.slots.len() < self.desired {
            self.slots.push(Slot::default());
        }
        while self.slots.len() > self.desired {
            if let Some(slot) = self.slots.pop() {
                for id in [slot.active, slot.successor].into_iter().flatten() {
                    self.drain(id, "worker count lowered");
                }
            }
        }
        self.reconcile_optional(SlotId::Relay, self.config.relay.enabled);
        self.reconcile_optional(SlotId::Demo, self.config.demo.enabled);
        for slot_id in self.slot_ids() {
            let Some(slot) = self.slot(slot_id) else {
                continue;
            };
            if !slot.backoff.open() || slot.successor.is_some() {
                continue;
            }
            let wanted = match slot.active.and_then(|id| self.workers.get(&id)) {
                None => true,
                Some(w) => w.generation < self.generation || w.is_recycling(),
            };
            if wanted {
                let activated = match slot_id {
                    SlotId::Gateway(index) => self.activate_standby(index),
                    SlotId::Relay | SlotId::Demo => false,
                };
                if !activated {
                    self.start_worker(Place::Slot(slot_id));
                }
            }
        }
        self.reconcile_standby();
    }

    /// Makes or removes the slot of the relay or the demo agent as its `*.enabled` key says;
    /// the workers of a removed slot drain.
    fn reconcile_optional(&mut self, id: SlotId, enabled: bool) {
        let (place, why) = match id {
            SlotId::Relay => (&mut self.relay, "relay.enabled is now false"),
            SlotId::Demo => (&mut self.demo, "demo.enabled is now false"),
            SlotId::Gateway(_) => return,
        };
        match (enabled, place.is_some()) {
            (true, false) => *place = Some(Slot::default()),
            (false, true) => {
                if let Some(slot) = place.take() {
                    for id in [slot.active, slot.successor].into_iter().flatten() {
                        self.drain(id, why);
                    }
                }
            }
            _ => {}
        }
    }

    /// Replaces a standby that must not be activated any more (older generation, over its
    /// memory limit, no longer wanted), and starts one where there is none and every slot is
    /// ready, under the standby's own backoff.
    fn reconcile_standby(&mut self) {
        let wanted = self.config.cluster.standby_workers > 0;
        if let Some(id) = self.standby.worker {
            let why = match self.workers.get(&id) {
                _ if !wanted => Some("cluster.standbyWorkers is now 0"),
                Some(w) if w.is_recycling() => Some("standby over a memory limit"),
                Some(w) if w.generation >= self.generation => None,
                _ => Some("standby of an older configuration"),
            };
            if let Some(why) = why {
                self.standby.worker = None;
                self.drain(id, why);
            }
        }
        // Once every slot is ready, so that a standby starting never competes with the slots'
        // own workers for the CPU.
        if wanted && self.ready_sent && self.standby.worker.is_none() && self.standby.backoff.open()
        {
            self.start_worker(Place::Standby);
        }
    }

    /// Puts the standby in gateway slot `index` if it is ready, of the current generation and
    /// within its memory limits: it starts accepting at once and is the slot's worker from now
    /// on (the worker it replaces, if any, drains). `false`: no such standby.
    fn activate_standby(&mut self, index: usize) -> bool {
        let generation = self.generation;
        let Some(id) = self.standby.worker else {
            return false;
        };
        let Some(worker) = self.workers.get_mut(&id) else {
            return false;
        };
        if !matches!(worker.state, WorkerState::Ready { .. }) || worker.generation != generation {
            return false;
        }
        let slot = SlotId::Gateway(index);
        worker.place = Place::Slot(slot);
        // Its slot's backoff resets at its first heartbeat answer as the slot's worker.
        worker.state = WorkerState::Ready { proven: false };
        let pid = worker.pid();
        self.standby.worker = None;
        // The next standby starts `workerRestartDelay` later: starting a process takes CPU
        // the activated worker needs now, for the clients the dead one left.
        let next = self.now + self.config.cluster.worker_restart_delay;
        let backoff = &mut self.standby.backoff;
        backoff.not_before = backoff.not_before.max(Some(next)).filter(|t| *t > self.now);
        self.emit(Action::Send {
            id,
            msg: ToWorker::Activate { slot: index },
        });
        tracing::info!(slot = %slot, pid, "standby activated");
        self.take_over(slot, id);
        true
    }

    /// Every slot: the gateway workers' in order, then the relay's, then the demo agent's.
    pub(super) fn slot_ids(&self) -> Vec<SlotId> {
        let gateways = (0..self.slots.len()).map(SlotId::Gateway);
        gateways
            .chain(self.relay.as_ref().map(|_| SlotId::Relay))
            .chain(self.demo.as_ref().map(|_| SlotId::Demo))
            .collect()
    }

    pub(super) fn slot(&self, id: SlotId) -> Option<&Slot> {
        match id {
            SlotId::Gateway(index) => self.slots.get(index),
            SlotId::Relay => self.relay.as_ref(),
            SlotId::Demo => self.demo.as_ref(),
        }
    }

    pub(super) fn slot_mut(&mut self, id: SlotId) -> Option<&mut Slot> {
        match id {
            SlotId::Gateway(index) => self.slots.get_mut(index),
            SlotId::Relay => self.relay.as_mut(),
            SlotId::Demo => self.demo.as_mut(),
        }
    }

    pub(super) fn backoff(&self, place: Place) -> Option<&RestartBackoff> {
        match place {
            Place::Slot(id) => self.slot(id).map(|s| &s.backoff),
            Place::Standby => Some(&self.standby.backoff),
        }
    }

    pub(super) fn backoff_mut(&mut self, place: Place) -> Option<&mut RestartBackoff> {
        match place {
            Place::Slot(id) => self.slot_mut(id).map(|s| &mut s.backoff),
            Place::Standby => Some(&mut self.standby.backoff),
        }
    }

    /// Times the place has had its worker replaced.
    pub(super) fn restarts(&self, place: Place) -> u32 {
        match place {
            Place::Slot(id) => self.slot(id).map_or(0, |s| s.restarts),
            Place::Standby => self.standby.restarts,
        }
    }

    pub(super) fn count_restart(&mut self, place: Place, cause: RestartCause) {
        let by_cause = self
            .restarts_by_cause
            .entry((place.role(), cause))
            .or_default();
        *by_cause = by_cause.saturating_add(1);
        let restarts = match place {
            Place::Slot(id) => self.slot_mut(id).map(|s| &mut s.restarts),
            Place::Standby => Some(&mut self.standby.restarts),
        };
        if let Some(restarts) = restarts {
            *restarts = restarts.saturating_add(1);
        }
    }

    /// Asks for a new worker in `place`; it is the place's worker (or successor) from now on.
    pub(super) fn start_worker(&mut self, place: Place) {
        let init = match self.init_frame() {
            Ok(init) => init,
            Err(problem) => {
                // Refused here, before any process: it could only die waiting for its config.
                let error = match problem {
                    InitProblem::TooLarge(len) => SpawnError::InitTooLarge { slot: place, len },
                    InitProblem::Encode(reason) => SpawnError::InitEncode {
                        slot: place,
                        reason,
                    },
                };
                tracing::error!(slot = %place, "{}", error_chain(&error));
                self.schedule_restart(place, RestartCause::SpawnFailed, SPAWN_RETRY_MIN);
                return;
            }
        };
        let id = WorkerId(self.next_id);
        self.next_id += 1;
        self.workers
            .insert(id, Worker::new(id, place, self.generation, self.now));
        match place {
            Place::Slot(slot_id) => {
                if let Some(slot) = self.slot_mut(slot_id) {
                    if slot.active.is_none() {
                        slot.active = Some(id);
                    } else {
                        slot.successor = Some(id);
                    }
                }
            }
            Place::Standby => self.standby.worker = Some(id),
        }
        self.emit(Action::Spawn { id, place, init });
    }

    /// The init frame for a new worker: encoded once per generation and config (a config of
    /// megabytes would otherwise be encoded again at every attempt).
    fn init_frame(&mut self) -> Result<Frame, InitProblem> {
        let generation = self.generation;
        let init = self.init.get_or_insert_with(|| {
            let msg = ToWorker::Init {
                generation,
                config: Box::new(self.config.clone()),
                tls: self.tls.clone().map(Box::new),
            };
            crate::ipc::encode(&msg).map_err(|e| match e {
                IpcError::FrameTooLarge { len } => InitProblem::TooLarge(len),
                other => InitProblem::Encode(error_chain(&other)),
            })
        });
        init.clone()
    }

    /// The config or generation changed: the next worker gets a new init message.
    pub(super) fn config_changed(&mut self) {
        self.init = None;
    }

    pub(super) fn on_spawned(&mut self, id: WorkerId, pid: Pid) {
        let generation = self.generation;
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.pid = Some(pid);
            tracing::info!(slot = %worker.place, pid = pid.0, generation, "worker started");
        }
    }

    pub(super) fn on_spawn_failed(&mut self, id: WorkerId, error: &SpawnError) {
        let place = self.detach(id);
        let Some(worker) = self.workers.remove(&id) else {
            return;
        };
        tracing::error!(slot = %worker.place, "{}", error_chain(error));
        if let Some(place) = place
            && self.phase == Phase::Running
        {
            self.schedule_restart(place, RestartCause::SpawnFailed, SPAWN_RETRY_MIN);
        }
    }

    /// A worker left its place unplanned (it exited, hung, or could not be started): the place
    /// goes under its backoff if that leaves it without a worker, or if the worker never got as
    /// far as ready (a reload's replacement that dies at start would otherwise be started again
    /// at once, over and over).
    pub(super) fn lost(&mut self, place: Place, was_ready: bool, why: RestartCause) {
        let empty = match place {
            Place::Slot(id) => self.slot(id).is_some_and(|s| s.active.is_none()),
            Place::Standby => self.standby.worker.is_none(),
        };
        if empty || !was_ready {
            self.schedule_restart(place, why, Duration::ZERO);
        }
    }

    /// A place's worker failed: the next one starts after the backoff delay (at least `min`).
    pub(super) fn schedule_restart(&mut self, place: Place, why: RestartCause, min: Duration) {
        let cluster = &self.config.cluster;
        let (max_backoff, base) = (cluster.max_restart_backoff, cluster.worker_restart_delay);
        let random = self.rng.f64();
        let now = self.now;
        let Some(backoff) = self.backoff_mut(place) else {
            return;
        };
        let delay = restart_delay(backoff.failures, max_backoff, base, random).max(min);
        backoff.failures = backoff.failures.saturating_add(1);
        let failures = backoff.failures;
        // A zero delay is no backoff at all (and never a wake-up in the past).
        backoff.not_before = (delay > Duration::ZERO).then_some(now + delay);
        self.count_restart(place, why);
        tracing::warn!(
            slot = %place,
            failures,
            delay_ms = delay.as_millis() as u64,
            "worker {why}; restarting after backoff"
        );
        self.emit(Action::Notify(Notification::Status(format!(
            "worker {place} {why}; restarting in {} ms",
            delay.as_millis()
        ))));
    }

    /// Takes a worker out of its place (it no longer counts as the place's worker); the place
    /// it was in, if any.
    pub(super) fn detach(&mut self, id: WorkerId) -> Option<Place> {
        let place = self.workers.get(&id)?.place;
        match place {
            Place::Slot(slot_id) => {
                let slot = self.slot_mut(slot_id)?;
                if slot.active == Some(id) {
                    slot.active = slot.successor.take();
                } else if slot.successor == Some(id) {
                    slot.successor = None;
                } else {
                    return None;
                }
            }
            Place::Standby => {
                if self.standby.worker != Some(id) {
                    return None;
                }
                self.standby.worker = None;
            }
        }
        Some(place)
    }

    pub(super) fn drain(&mut self, id: WorkerId, why: &str) {
        let mut timeout = self.config.cluster.drain_timeout;
        let now = self.now;
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        if let Some((generation, t)) = self.restart_drain
            && worker.generation < generation
        {
            timeout = t;
        }
        if !worker.is_live() {
            return;
        }
        worker.state = WorkerState::Draining {
            kill_at: now + timeout + DRAIN_GRACE,
        };
        tracing::info!(slot = %worker.place, pid = worker.pid(), "draining worker: {why}");
        self.emit(Action::Send {
            id,
            msg: ToWorker::Drain {
                timeout_ms: timeout.as_millis() as u64,
            },
        });
    }

    pub(super) fn kill(&mut self, id: WorkerId) {
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.state = WorkerState::Killed;
            self.emit(Action::Kill { id });
        }
    }

    /// A successor that became ready takes over its slot.
    pub(super) fn promote(&mut self, place: Place, id: WorkerId) {
        if let Place::Slot(slot_id) = place
            && self.slot(slot_id).is_some_and(|s| s.successor == Some(id))
        {
            self.take_over(slot_id, id);
        }
    }

    /// `id` is the slot's worker from now on; the worker it replaces drains.
    fn take_over(&mut self, slot_id: SlotId, id: WorkerId) {
        let Some(slot) = self.slot_mut(slot_id) else {
            return;
        };
        let old = slot.active.replace(id);
        if slot.successor == Some(id) {
            slot.successor = None;
        }
        if let Some(old) = old {
            let why = match self.workers.get(&old) {
                Some(w) if w.is_recycling() => "replaced after crossing a memory limit",
                _ => "replaced by a worker with the new configuration",
            };
            self.drain(old, why);
        }
    }
}
