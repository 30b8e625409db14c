//! Commands from the Redis control channel (`console`).

use super::*;

impl Master {
    /// A command from the Redis control channel (see [`gateway::control`]).
    pub(super) fn on_gateway_command(&mut self, incoming: gateway::control::Incoming) {
        use gateway::control::{Command, DEFAULT_RESTART_INTERVAL, Mode};
        use serde_json::json;
        let reply = incoming.reply;
        let answer = match incoming.command {
            Err(e) => {
                tracing::warn!("control channel: {e}");
                json!({"ok": false, "error": e.to_string()})
            }
            Ok(command) => {
                tracing::info!(command = %command.redacted(), "control command");
                match command {
                    Command::Restart {
                        mode: Mode::Immediate,
                        interval,
                    } => {
                        let pids: Vec<u32> = self.workers.keys().copied().collect();
                        let gap = interval.unwrap_or(DEFAULT_RESTART_INTERVAL);
                        let events = self.events_tx.clone();
                        let count = pids.len();
                        tokio::spawn(async move {
                            for (i, pid) in pids.into_iter().enumerate() {
                                if i > 0 {
                                    tokio::time::sleep(gap).await;
                                }
                                if events.send(Event::Kill { pid }).is_err() {
                                    return;
                                }
                            }
                        });
                        json!({"ok": true, "restarting": count, "mode": "immediate"})
                    }
                    Command::Restart {
                        mode: Mode::Graceful,
                        interval,
                    } => {
                        self.generation += 1;
                        self.ready_sent = false;
                        self.restart_drain = interval.map(|t| (self.generation, t));
                        json!({"ok": true, "restarting": self.workers.len(), "mode": "graceful", "generation": self.generation})
                    }
                    Command::Shutdown {
                        code,
                        mode,
                        timeout,
                    } => {
                        let expected = self.config.frontend.shutdown_code.as_deref().unwrap_or("");
                        let matches = !expected.is_empty()
                            && code.len() == expected.len()
                            && code
                                .bytes()
                                .zip(expected.bytes())
                                .fold(0, |acc, (a, b)| acc | (a ^ b))
                                == 0;
                        if !matches {
                            tracing::warn!(
                                "control channel: shutdown refused (wrong or no shutdown code)"
                            );
                            json!({"ok": false, "error": "wrong shutdown code"})
                        } else {
                            if let Some(t) = timeout {
                                self.config.cluster.drain_timeout = t;
                            }
                            match mode {
                                Mode::Immediate => self.stop_now(),
                                Mode::Graceful => self.stop_gracefully(),
                            }
                            json!({"ok": true, "stopping": format!("{mode:?}").to_lowercase()})
                        }
                    }
                    Command::LogLevel(level) => {
                        logging::set_level(level);
                        self.config.frontend.log_level = level;
                        for worker in self.workers.values() {
                            let _ = worker.tx.try_send(ToWorker::LogLevel { level });
                        }
                        json!({"ok": true, "loglevel": level.to_string(), "workers": self.workers.len()})
                    }
                    Command::ResendInterval(interval) => {
                        self.config.frontend.client_message_resend_interval = interval;
                        let ms = interval.as_millis() as u64;
                        for worker in self.workers.values() {
                            let _ = worker.tx.try_send(ToWorker::ResendInterval { ms });
                        }
                        json!({"ok": true, "clientMessageResendInterval": ms, "workers": self.workers.len()})
                    }
                    Command::ClientCount => {
                        // The standby serves nobody: as in status, the workers are the slots'.
                        let serving =
                            || self.workers.values().filter(|w| w.slot != SlotId::Standby);
                        let workers: Vec<_> = serving()
                            .map(|w| json!({"slot": w.slot.to_string(), "pid": w.pid, "clients": w.report.clients}))
                            .collect();
                        let total: u64 = serving().map(|w| w.report.clients).sum();
                        tracing::info!(total, "client count");
                        json!({"ok": true, "total": total, "workers": workers})
                    }
                    Command::Status => json!({"ok": true, "status": self.status()}),
                    Command::Push { audience, data } => match self.push(audience, data) {
                        Ok((id, pid)) => {
                            // Answered when the worker confirms (or exits).
                            self.pushes.insert(id, (pid, reply));
                            return;
                        }
                        Err(error) => {
                            tracing::warn!("control channel: push failed: {error}");
                            json!({"ok": false, "error": error})
                        }
                    },
                }
            }
        };
        self.reply(reply, answer);
    }

    fn reply(&self, reply: Option<String>, answer: serde_json::Value) {
        if let Some(reply) = reply
            && self.gateway_replies.try_send((reply, answer)).is_err()
        {
            tracing::warn!("control channel: reply dropped");
        }
    }

    /// Hands a `push` to one ready gateway worker (the Redis adapter spreads it to the others).
    /// Returns the push id and the worker's pid.
    fn push(
        &mut self,
        audience: gateway::Audience,
        data: serde_json::Value,
    ) -> Result<(u64, u32), String> {
        let worker = self
            .workers
            .values()
            .find(|w| matches!(w.slot, SlotId::Gateway(_)) && w.state == WorkerState::Ready)
            .ok_or("no gateway worker is ready")?;
        self.push_seq += 1;
        let id = self.push_seq;
        let msg = ToWorker::Push { id, audience, data };
        if worker.tx.try_send(msg).is_err() {
            return Err(format!("worker {} is not reading", worker.pid));
        }
        tracing::info!(id, slot = %worker.slot, pid = worker.pid, "push handed to a worker");
        Ok((id, worker.pid))
    }

    /// A worker's answer to a push: the console gets it now.
    pub(super) fn on_pushed(&mut self, id: u64, error: Option<String>) {
        let Some((pid, reply)) = self.pushes.remove(&id) else {
            return;
        };
        let answer = match error {
            None => serde_json::json!({"ok": true, "pushed": id, "via": pid}),
            Some(error) => {
                tracing::warn!(id, pid, "push failed: {error}");
                serde_json::json!({"ok": false, "error": error, "via": pid})
            }
        };
        self.reply(reply, answer);
    }

    /// A worker exited: the pushes it had not confirmed are answered as failed.
    pub(super) fn forget_pushes_of(&mut self, pid: u32) {
        let lost: Vec<u64> = self
            .pushes
            .iter()
            .filter(|(_, (p, _))| *p == pid)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.on_pushed(id, Some("the worker exited before confirming".into()));
        }
    }
}
