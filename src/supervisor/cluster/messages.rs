//! What workers tell the master, what could not be told to them, and how they end.

use super::*;
use crate::logging::error_chain;

impl ClusterState {
    pub(super) fn on_message(&mut self, id: WorkerId, msg: ToMaster) {
        let Some(worker) = self.workers.get_mut(&id) else {
            return;
        };
        match msg {
            ToMaster::Ready => {
                worker.state = match worker.state {
                    WorkerState::Starting => WorkerState::Ready { proven: false },
                    WorkerState::Recycling { .. } => WorkerState::Recycling { ready: true },
                    other => other,
                };
                let place = worker.place;
                tracing::info!(slot = %place, pid = worker.pid(), "worker ready");
                self.promote(place, id);
            }
            ToMaster::HeartbeatAck { seq: _, report } => self.on_heartbeat_ack(id, *report),
            ToMaster::Draining { clients } => {
                tracing::debug!(slot = %worker.place, pid = worker.pid(), clients, "worker is draining");
            }
            ToMaster::Pushed { id, error } => self.on_pushed(id, error),
            ToMaster::Metrics { id: scrape } => {
                let text = Some(self.render_metrics());
                self.emit(Action::Send {
                    id,
                    msg: ToWorker::MetricsText { id: scrape, text },
                });
            }
        }
    }

    pub(super) fn on_not_sent(&mut self, id: WorkerId, msg: ToWorker, why: NotSent) {
        let Some(worker) = self.workers.get(&id) else {
            return;
        };
        let (place, pid) = (worker.place, worker.pid());
        if let NotSent::TooLarge(e) = &why {
            // Refused before it was written: the worker's channel is intact.
            tracing::error!(slot = %place, pid, "message not sent to the worker: {}", error_chain(e));
        }
        match msg {
            ToWorker::Heartbeat { .. } => {
                tracing::debug!(slot = %place, pid, "heartbeat not queued: the worker is not reading");
            }
            ToWorker::Activate { .. } => {
                // Activated on the assumption that it reads its messages; it does not, so it
                // is of no use in the slot: out, and the slot gets another worker.
                tracing::warn!(
                    slot = %place,
                    pid,
                    "the standby is not reading its messages; killing it instead of activating it"
                );
                let was_in_place = self.detach(id);
                self.kill(id);
                if let Some(place) = was_in_place {
                    self.lost(place, false, RestartCause::NotActivated);
                }
            }
            ToWorker::Push { id: push, .. } => {
                let error = match why {
                    NotSent::QueueFull => format!("worker {pid} is not reading"),
                    NotSent::TooLarge(e) => error_chain(&e),
                };
                self.on_pushed(push, Some(error));
            }
            ToWorker::MetricsText {
                id: scrape,
                text: Some(_),
            } if matches!(why, NotSent::TooLarge(_)) => {
                // The scrape gets a 503 that says to use cluster.metricsAddress.
                self.emit(Action::Send {
                    id,
                    msg: ToWorker::MetricsText {
                        id: scrape,
                        text: None,
                    },
                });
            }
            ToWorker::MetricsText { .. } => {}
            other => tracing::warn!(slot = %place, pid, ?why, "not sent to the worker: {other:?}"),
        }
    }

    pub(super) fn on_exit(&mut self, id: WorkerId, status: Option<ExitStatus>) {
        self.forget_pushes_of(id);
        let was_in_place = self.detach(id);
        let Some(worker) = self.workers.remove(&id) else {
            return;
        };
        let status = status.map_or_else(|| "unknown status".to_string(), |s| s.to_string());
        let (place, pid) = (worker.place, worker.pid());
        let stopping = !matches!(self.phase, Phase::Running);
        match (worker.state, was_in_place) {
            (WorkerState::Draining { .. }, _) => {
                tracing::info!(slot = %place, pid, %status, "drained worker exited");
            }
            (WorkerState::Killed, _) => {
                tracing::info!(slot = %place, pid, %status, "killed worker reaped");
            }
            _ if stopping => tracing::info!(slot = %place, pid, %status, "worker exited"),
            (_, Some(place)) => {
                tracing::error!(slot = %place, pid, %status, "worker exited unexpectedly");
                self.lost(place, worker.is_ready(), RestartCause::Exited);
            }
            (_, None) => tracing::info!(slot = %place, pid, %status, "worker exited"),
        }
    }
}
