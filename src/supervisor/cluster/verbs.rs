//! What the console may ask of the master ([`Verb`]s) and the answers it gets.

use super::*;
use crate::console::{ClientCount, Mode, Verb};
use crate::gateway::Audience;

impl ClusterState {
    /// A command from the Redis control channel ([`crate::console`]).
    pub(super) fn on_console(
        &mut self,
        command: Result<Command, CommandError>,
        reply: Option<String>,
    ) {
        let verb = command.and_then(|command| {
            tracing::info!(command = %command.redacted(), "control command");
            command.authorize(self.config.frontend.shutdown_code.as_deref())
        });
        let answer = match verb {
            Ok(verb) => match self.on_verb(verb, &reply) {
                Some(answer) => answer,
                None => return, // answered later (a push, when the worker confirms)
            },
            Err(CommandError::WrongCode) => {
                tracing::warn!("control channel: shutdown refused (wrong or no shutdown code)");
                Answer::Refused(CommandError::WrongCode.to_string())
            }
            Err(e) => {
                tracing::warn!("control channel: {e}");
                Answer::Refused(e.to_string())
            }
        };
        self.answer(reply, answer);
    }

    /// Carries out `verb`; its answer, or `None` if it comes later.
    fn on_verb(&mut self, verb: Verb, reply: &Option<String>) -> Option<Answer> {
        Some(match verb {
            Verb::RestartImmediate { interval } => {
                let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
                let count = ids.len();
                self.kills.queue.extend(ids);
                self.kills.gap = interval;
                if self.kills.next.is_none() {
                    self.kill_next();
                }
                Answer::Restarting {
                    count,
                    mode: Mode::Immediate,
                    generation: None,
                }
            }
            Verb::RestartGraceful { drain } => {
                self.generation += 1;
                self.config_changed();
                self.ready_sent = false;
                self.restart_drain = drain.map(|t| (self.generation, t));
                Answer::Restarting {
                    count: self.workers.len(),
                    mode: Mode::Graceful,
                    generation: Some(self.generation),
                }
            }
            Verb::Stop { mode, drain } => {
                if let Some(t) = drain {
                    self.config.cluster.drain_timeout = t;
                    self.config_changed();
                }
                match mode {
                    Mode::Immediate => self.stop_now(),
                    Mode::Graceful => self.stop_gracefully(),
                }
                Answer::Stopping(mode)
            }
            Verb::LogLevel(level) => {
                self.emit(Action::LogLevel(level));
                self.config.frontend.log_level = level;
                self.config_changed();
                let workers = self.tell_every_worker(ToWorker::LogLevel { level });
                Answer::LogLevel { level, workers }
            }
            Verb::ResendInterval(interval) => {
                self.config.frontend.client_message_resend_interval = interval;
                self.config_changed();
                let ms = interval.as_millis() as u64;
                let workers = self.tell_every_worker(ToWorker::ResendInterval { ms });
                Answer::ResendInterval { ms, workers }
            }
            Verb::ClientCount => {
                // The standby serves nobody: as in status, the workers are the slots'.
                let workers: Vec<ClientCount> = self
                    .workers
                    .values()
                    .filter(|w| w.place != Place::Standby)
                    .map(|w| ClientCount {
                        slot: w.place.to_string(),
                        pid: Pid(w.pid()),
                        clients: w.report.clients,
                    })
                    .collect();
                let total: u64 = workers.iter().map(|w| w.clients).sum();
                tracing::info!(total, "client count");
                Answer::ClientCount { total, workers }
            }
            Verb::Status => Answer::Status(Box::new(self.status())),
            Verb::Push { audience, data } => match self.push(audience, data) {
                Some((id, worker)) => {
                    // Answered when the worker confirms (or exits).
                    self.pushes.insert(id, (worker, reply.clone()));
                    return None;
                }
                None => {
                    let error = "no gateway worker is ready".to_string();
                    tracing::warn!("control channel: push failed: {error}");
                    Answer::PushFailed { error, via: None }
                }
            },
        })
    }

    /// Sends `msg` to every worker; how many.
    fn tell_every_worker(&mut self, msg: ToWorker) -> usize {
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for &id in &ids {
            self.emit(Action::Send {
                id,
                msg: msg.clone(),
            });
        }
        ids.len()
    }

    /// `restart immediate`: hard-stops the next worker still there, then waits `gap` for the
    /// one after (no wait between them if `gap` is zero).
    pub(super) fn kill_next(&mut self) {
        self.kills.next = None;
        while let Some(id) = self.kills.queue.pop_front() {
            let Some(worker) = self.workers.get(&id) else {
                continue; // gone meanwhile
            };
            tracing::info!(pid = worker.pid(), "restart immediate: stopping the worker");
            self.kill(id);
            if !self.kills.gap.is_zero() {
                if !self.kills.queue.is_empty() {
                    self.kills.next = Some(self.now + self.kills.gap);
                }
                return;
            }
        }
    }

    fn answer(&mut self, reply: Option<String>, answer: Answer) {
        if let Some(reply) = reply {
            self.emit(Action::Answer { reply, answer });
        }
    }

    /// Hands a `push` to one ready gateway worker (it publishes it to every worker over Redis).
    /// Returns the push id and the worker.
    fn push(&mut self, audience: Audience, data: serde_json::Value) -> Option<(u64, WorkerId)> {
        let worker = self
            .workers
            .values()
            .find(|w| matches!(w.place, Place::Slot(SlotId::Gateway(_))) && w.is_ready())?;
        let (worker, place, pid) = (worker.id, worker.place, worker.pid());
        self.push_seq += 1;
        let id = self.push_seq;
        tracing::info!(id, slot = %place, pid, "push handed to a worker");
        self.emit(Action::Send {
            id: worker,
            msg: ToWorker::Push { id, audience, data },
        });
        Some((id, worker))
    }

    /// A worker's answer to a push: the console gets it now.
    pub(super) fn on_pushed(&mut self, id: u64, error: Option<String>) {
        let Some((worker, reply)) = self.pushes.remove(&id) else {
            return;
        };
        let via = Pid(self.workers.get(&worker).map_or(0, Worker::pid));
        let answer = match error {
            None => Answer::Pushed { id, via },
            Some(error) => {
                tracing::warn!(id, pid = via.0, "push failed: {error}");
                Answer::PushFailed {
                    error,
                    via: Some(via),
                }
            }
        };
        self.answer(reply, answer);
    }

    /// A worker exited: the pushes it had not confirmed are answered as failed.
    pub(super) fn forget_pushes_of(&mut self, worker: WorkerId) {
        let lost: Vec<u64> = self
            .pushes
            .iter()
            .filter(|(_, (w, _))| *w == worker)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.on_pushed(id, Some("the worker exited before confirming".into()));
        }
    }
}
