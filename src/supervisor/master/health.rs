//! Heartbeats, the watchdog, memory limits and event-loop lag.

use super::*;

impl Master {
    pub(super) fn on_heartbeat_tick(&mut self) {
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
    pub(super) fn on_watchdog_tick(&mut self) {
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

    pub(super) fn on_systemd_watchdog(&self) {
        let timeout = self.config.cluster.worker_timeout;
        let now = Instant::now();
        // A standby serves nobody: it does not make the cluster healthy.
        let healthy = self.workers.values().any(|w| {
            w.state == WorkerState::Ready
                && w.slot != SlotId::Standby
                && w.answered
                && now.duration_since(w.last_seen) <= timeout
        });
        if healthy {
            self.notifier.watchdog();
        } else {
            tracing::warn!("no healthy worker: not petting the systemd watchdog");
        }
    }

    pub(super) fn measure(&mut self, pids: &[u32]) {
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

    pub(super) fn check_memory(&mut self, pid: u32) {
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

    pub(super) fn check_lag(&mut self, pid: u32) {
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
}
