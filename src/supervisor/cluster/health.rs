//! Heartbeats, the watchdog, memory limits and event-loop lag.

use super::*;
use crate::ipc::WorkerReport;
use crate::supervisor::memory::{Crossing, Usage};

impl ClusterState {
    /// Sends every live worker a heartbeat and asks for everyone's RSS (measured once per tick).
    pub(super) fn on_heartbeat_tick(&mut self) {
        self.ticks.heartbeat = self.now + self.config.cluster.heartbeat_interval;
        self.heartbeat_seq += 1;
        let seq = self.heartbeat_seq;
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for &id in &ids {
            if self
                .workers
                .get(&id)
                .is_some_and(|w| w.state != WorkerState::Killed)
            {
                self.emit(Action::Send {
                    id,
                    msg: ToWorker::Heartbeat { seq },
                });
            }
        }
        if !ids.is_empty() {
            self.emit(Action::Measure(ids));
        }
    }

    /// RSS is checked even for a worker that does not answer.
    pub(super) fn on_measured(&mut self, rss: Vec<(WorkerId, u64)>) {
        for (id, bytes) in rss {
            if let Some(worker) = self.workers.get_mut(&id) {
                worker.rss = bytes;
                self.check_memory(id);
            }
        }
    }

    pub(super) fn on_heartbeat_ack(&mut self, id: WorkerId, report: WorkerReport) {
        let now = self.now;
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        worker.last_answer = Some(now);
        self.totals
            .add_increase(&worker.report.metrics.counts, &report.metrics.counts);
        worker.report = report;
        // The backoff resets only for a worker that got as far as serving: one that answers
        // heartbeats while it waits for RabbitMQ and then fails has not.
        let first = worker.state == WorkerState::Ready { proven: false };
        if first {
            worker.state = WorkerState::Ready { proven: true };
        }
        let place = worker.place;
        self.check_lag(id);
        self.check_memory(id);
        let still_ready = self
            .workers
            .get(&id)
            .is_some_and(|w| matches!(w.state, WorkerState::Ready { .. }));
        if first
            && still_ready
            && let Some(backoff) = self.backoff_mut(place)
        {
            backoff.failures = 0;
        }
    }

    /// Kills workers whose last answer is older than `cluster.workerTimeout`.
    pub(super) fn on_watchdog_tick(&mut self) {
        let now = self.now;
        self.ticks.watchdog = now + self.config.cluster.watchdog_interval;
        let timeout = self.config.cluster.worker_timeout;
        let hung: Vec<(WorkerId, Duration)> = self
            .workers
            .values()
            .filter(|w| w.is_live() && now.duration_since(w.last_seen()) > timeout)
            .map(|w| (w.id, now.duration_since(w.last_seen())))
            .collect();
        for (id, silent) in hung {
            let Some(worker) = self.workers.get(&id) else {
                continue;
            };
            let (place, was_ready) = (worker.place, worker.is_ready());
            tracing::error!(
                slot = %place,
                pid = worker.pid(),
                silent_ms = silent.as_millis() as u64,
                timeout_ms = timeout.as_millis() as u64,
                "worker did not answer heartbeats within cluster.workerTimeout; killing it (SIGKILL)"
            );
            let was_in_place = self.detach(id);
            self.kill(id);
            if let Some(place) = was_in_place {
                self.lost(place, was_ready, RestartCause::Hung);
            }
        }
    }

    /// A drained worker that has not exited by its deadline is SIGKILLed.
    pub(super) fn on_drain_deadline(&mut self, id: WorkerId) {
        if let Some(worker) = self.workers.get(&id)
            && matches!(worker.state, WorkerState::Draining { .. })
        {
            tracing::warn!(
                slot = %worker.place,
                pid = worker.pid(),
                "drained worker did not exit by its deadline; killing it (SIGKILL)"
            );
            self.kill(id);
        }
    }

    pub(super) fn on_systemd_watchdog(&mut self) {
        let now = self.now;
        if let Some((_, period)) = self.ticks.systemd {
            self.ticks.systemd = Some((now + period, period));
        }
        let timeout = self.config.cluster.worker_timeout;
        // A standby serves nobody: it does not make the cluster healthy.
        let healthy = self.workers.values().any(|w| {
            w.is_ready()
                && w.place != Place::Standby
                && w.last_answer
                    .is_some_and(|at| now.duration_since(at) <= timeout)
        });
        if healthy {
            self.emit(Action::Notify(Notification::Watchdog));
        } else {
            tracing::warn!("no healthy worker: not petting the systemd watchdog");
        }
    }

    pub(super) fn check_memory(&mut self, id: WorkerId) {
        let cluster = &self.config.cluster;
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        if !worker.is_live() || worker.rss == 0 {
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
        let (place, pid, fresh) = (worker.place, worker.pid(), !worker.within_limits_once);
        let mut over: Option<Crossing> = None;
        for crossing in crossings {
            match crossing {
                Crossing::WarningCrossed { .. } => tracing::warn!(slot = %place, pid, "{crossing}"),
                Crossing::WarningCleared { .. } => tracing::info!(slot = %place, pid, "{crossing}"),
                Crossing::OverLimit { .. } => over = over.or(Some(crossing)),
            }
        }
        let Some(over) = over else {
            worker.within_limits_once = true;
            return;
        };
        if worker.is_recycling() {
            return;
        }
        worker.state = WorkerState::Recycling {
            ready: worker.is_ready(),
        };
        if fresh {
            // A new worker already over the limit: replacing it would only start another one
            // over the limit. Say so, and slow down through the place's backoff.
            tracing::error!(
                slot = %place,
                pid,
                "{over} from its start: the limit is below what a fresh worker needs; raise it. \
                 Replacing the worker with backoff; it keeps serving until its replacement is ready"
            );
            self.schedule_restart(place, RestartCause::MemoryLimitAtStart, Duration::ZERO);
        } else {
            tracing::error!(
                slot = %place,
                pid,
                "{over}: recycling the worker (replacement first, then drain)"
            );
            self.count_restart(place, RestartCause::MemoryLimit);
        }
    }

    fn check_lag(&mut self, id: WorkerId) {
        let threshold = self.config.cluster.heartbeat_interval;
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        let lag = Duration::from_micros(worker.report.loop_lag_us);
        if lag >= threshold && !worker.lag_warned {
            worker.lag_warned = true;
            tracing::warn!(
                slot = %worker.place,
                pid = worker.pid(),
                lag_ms = lag.as_millis() as u64,
                "worker event loop is stalling (lag above cluster.heartbeatInterval)"
            );
        } else if lag < threshold / 2 && worker.lag_warned {
            worker.lag_warned = false;
            tracing::info!(
                slot = %worker.place,
                pid = worker.pid(),
                lag_ms = lag.as_millis() as u64,
                "worker event loop lag back to normal"
            );
        }
    }
}
