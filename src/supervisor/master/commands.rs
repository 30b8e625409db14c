//! Commands from the Redis control channel (`console`).

use super::*;

impl Master {
    /// A command from the Redis control channel (see [`gateway::control`]).
    pub(super) fn on_gateway_command(&mut self, incoming: gateway::control::Incoming) {
        use gateway::control::{Command, DEFAULT_RESTART_INTERVAL, Mode};
        use serde_json::json;
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
                        let workers: Vec<_> = self
                            .workers
                            .values()
                            .map(|w| json!({"slot": w.slot.to_string(), "pid": w.pid, "clients": w.report.clients}))
                            .collect();
                        let total: u64 = self.workers.values().map(|w| w.report.clients).sum();
                        tracing::info!(total, "client count");
                        json!({"ok": true, "total": total, "workers": workers})
                    }
                    Command::Status => json!({"ok": true, "status": self.status()}),
                }
            }
        };
        if let Some(reply) = incoming.reply
            && self.gateway_replies.try_send((reply, answer)).is_err()
        {
            tracing::warn!("control channel: reply dropped");
        }
    }
}
