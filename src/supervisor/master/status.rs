//! The report `activestack-gateway status` shows.

use super::*;

impl Master {
    pub(super) fn status(&self) -> StatusReport {
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
        // The standby is in no slot: listed apart, so that `workers` is what serves.
        let (standby, workers): (Vec<&Worker>, Vec<&Worker>) =
            workers.into_iter().partition(|w| w.slot == SlotId::Standby);
        let describe = |w: &Worker| WorkerStatus {
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
        };
        StatusReport {
            master_pid: std::process::id(),
            config_path: self.config.source.clone(),
            generation: self.generation,
            listen: self.listen_addr.to_string(),
            phase: phase.into(),
            uptime_ms: ms(now.duration_since(self.started)),
            desired_workers: self.desired,
            workers: workers.into_iter().map(describe).collect(),
            standby: standby.into_iter().map(describe).collect(),
        }
    }
}
