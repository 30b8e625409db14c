//! Starting, replacing, draining and killing workers: what runs in each slot, and the standby.

use super::*;

impl Master {
    /// Starts whatever should run and does not: a worker for an empty slot, a successor for a
    /// worker of an older generation or over its memory limit (the ready standby if there is
    /// one, else a new worker), and the standby. Respects each slot's backoff.
    pub(super) fn reconcile(&mut self) {
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
                let activated = match id {
                    SlotId::Gateway(index) => self.activate_standby(index),
                    SlotId::Relay | SlotId::Standby => false,
                };
                if !activated {
                    self.start_worker(id);
                }
            }
        }
        self.reconcile_standby(now);
    }

    /// Replaces a standby that must not be activated any more (older generation, over its
    /// memory limit, no longer wanted), and starts one where there is none and every slot is
    /// ready, under the standby's own backoff.
    fn reconcile_standby(&mut self, now: Instant) {
        let wanted = self.config.cluster.standby_workers > 0;
        if let Some(pid) = self.standby.active {
            let stale = self
                .workers
                .get(&pid)
                .is_none_or(|w| w.generation < self.generation || w.recycle);
            if stale || !wanted {
                self.standby.active = None;
                let why = match (wanted, self.workers.get(&pid)) {
                    (false, _) => "cluster.standbyWorkers is now 0",
                    (true, Some(w)) if w.recycle => "standby over a memory limit",
                    _ => "standby of an older configuration",
                };
                self.drain(pid, why);
            }
        }
        if self.standby_missing() && self.standby.not_before.is_none_or(|t| t <= now) {
            self.start_worker(SlotId::Standby);
        }
    }

    /// A standby is wanted, there is none, and every slot is ready (so a standby starting never
    /// competes with the slots' own workers for the CPU).
    fn standby_missing(&self) -> bool {
        self.config.cluster.standby_workers > 0 && self.ready_sent && self.standby.active.is_none()
    }

    /// Puts the standby in gateway slot `index` if it is ready, of the current generation and
    /// within its memory limits: it starts accepting at once and is the slot's worker from now
    /// on (the worker it replaces, if any, drains). `false`: no such standby.
    fn activate_standby(&mut self, index: usize) -> bool {
        let generation = self.generation;
        let Some(pid) = self.standby.active else {
            return false;
        };
        let Some(worker) = self.workers.get_mut(&pid) else {
            return false;
        };
        if worker.state != WorkerState::Ready || worker.generation != generation || worker.recycle {
            return false;
        }
        if worker
            .tx
            .try_send(ToWorker::Activate { slot: index })
            .is_err()
        {
            tracing::warn!(
                pid,
                "standby is not reading its messages; not activating it"
            );
            return false;
        }
        let id = SlotId::Gateway(index);
        worker.slot = id;
        // Its slot's backoff resets at its first heartbeat answer as the slot's worker.
        worker.proven = false;
        self.standby.active = None;
        // The next standby starts `workerRestartDelay` later: starting a process takes CPU
        // the activated worker needs now, for the clients the dead one left.
        let next = Instant::now() + self.config.cluster.worker_restart_delay;
        self.standby.not_before = self.standby.not_before.max(Some(next));
        tracing::info!(slot = %id, pid, "standby activated");
        self.take_over(id, pid);
        true
    }

    /// Every slot: the gateway workers' in order, then the relay's.
    pub(super) fn slot_ids(&self) -> Vec<SlotId> {
        let gateways = (0..self.slots.len()).map(SlotId::Gateway);
        gateways
            .chain(self.relay.as_ref().map(|_| SlotId::Relay))
            .collect()
    }

    pub(super) fn slot(&self, id: SlotId) -> Option<&Slot> {
        match id {
            SlotId::Gateway(index) => self.slots.get(index),
            SlotId::Relay => self.relay.as_ref(),
            SlotId::Standby => Some(&self.standby),
        }
    }

    pub(super) fn slot_mut(&mut self, id: SlotId) -> Option<&mut Slot> {
        match id {
            SlotId::Gateway(index) => self.slots.get_mut(index),
            SlotId::Relay => self.relay.as_mut(),
            SlotId::Standby => Some(&mut self.standby),
        }
    }

    pub(super) fn start_worker(&mut self, id: SlotId) {
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
    pub(super) fn adopt(&mut self, slot: SlotId, spawned: Spawned) {
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
            tls: self.tls.clone().map(Box::new),
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
                proven: false,
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
    pub(super) fn schedule_restart(&mut self, index: SlotId, why: &str) {
        let cluster = &self.config.cluster;
        let slot = match index {
            SlotId::Gateway(i) => self.slots.get_mut(i),
            SlotId::Relay => self.relay.as_mut(),
            SlotId::Standby => Some(&mut self.standby),
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
    pub(super) fn detach(&mut self, pid: u32) -> Option<SlotId> {
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

    pub(super) fn drain(&mut self, pid: u32, why: &str) {
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

    pub(super) fn kill(&mut self, pid: u32) {
        if let Some(worker) = self.workers.get_mut(&pid) {
            worker.state = WorkerState::Killed;
            if let Err(e) = kill(Pid::from_raw(pid as i32), NixSignal::SIGKILL) {
                tracing::warn!(pid, "SIGKILL failed: {e}");
            }
        }
    }

    /// A successor that became ready takes over its slot.
    pub(super) fn promote(&mut self, index: SlotId, pid: u32) {
        if self
            .slot(index)
            .is_some_and(|slot| slot.successor == Some(pid))
        {
            self.take_over(index, pid);
        }
    }

    /// `pid` is the slot's worker from now on; the worker it replaces drains.
    fn take_over(&mut self, index: SlotId, pid: u32) {
        let Some(slot) = self.slot_mut(index) else {
            return;
        };
        let old = slot.active.replace(pid);
        if slot.successor == Some(pid) {
            slot.successor = None;
        }
        if let Some(old) = old {
            let why = match self.workers.get(&old) {
                Some(w) if w.recycle => "replaced after crossing a memory limit",
                _ => "replaced by a worker with the new configuration",
            };
            self.drain(old, why);
        }
    }
}
