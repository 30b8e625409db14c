//! The report `activestack-gateway status` shows.

use super::*;
use crate::status::{Phase as Shown, WorkerStatus};

impl ClusterState {
    pub(super) fn status(&self) -> StatusReport {
        let now = self.now;
        let ms = |d: Duration| d.as_millis() as u64;
        let phase = match self.phase {
            Phase::Stopping { .. } | Phase::Stopped => Shown::Stopping,
            Phase::Running if !self.ready_sent && self.generation > 1 => Shown::Reloading,
            Phase::Running if !self.ready_sent => Shown::Starting,
            Phase::Running => Shown::Running,
        };
        let mut workers: Vec<&Worker> = self.workers.values().collect();
        workers.sort_by_key(|w| (w.place, w.started));
        // The standby is in no slot: listed apart, so that `workers` is what serves.
        let (standby, workers): (Vec<&Worker>, Vec<&Worker>) =
            workers.into_iter().partition(|w| w.place == Place::Standby);
        let describe = |w: &Worker| WorkerStatus {
            slot: w.place.index(),
            role: w.place.role(),
            pid: Pid(w.pid()),
            generation: w.generation,
            state: w.state.shown(),
            uptime_ms: ms(now.duration_since(w.started)),
            heartbeat_age_ms: w.last_answer.map(|at| ms(now.duration_since(at))),
            rss: w.rss,
            heap_used: w.report.heap_used,
            heap_total: w.report.heap_total,
            clients: w.report.clients,
            loop_lag_us: w.report.loop_lag_us,
            restarts: self.restarts(w.place),
        };
        StatusReport {
            master_pid: self.master_pid,
            config_path: self.config.source.clone(),
            generation: self.generation,
            listen: self.listen_addr.to_string(),
            metrics: self.metrics_addr.map(|a| a.to_string()),
            phase,
            uptime_ms: ms(now.duration_since(self.started)),
            desired_workers: self.desired,
            workers: workers.into_iter().map(describe).collect(),
            standby: standby.into_iter().map(describe).collect(),
        }
    }

    pub(super) fn answer_status(&mut self, call: StatusCall) {
        let report = Box::new(self.status());
        self.emit(Action::Status { call, report });
    }
}
