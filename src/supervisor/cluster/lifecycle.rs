//! Signals, reloads (SIGHUP), readiness for systemd, and stopping.

use super::*;
use crate::supervisor::session_secret;

impl ClusterState {
    pub(super) fn on_signal(&mut self, signal: Signal) {
        tracing::info!(?signal, "signal received");
        match (signal, self.phase) {
            (_, Phase::Stopped) => {}
            (Signal::Quit, _) => self.stop_now(),
            (Signal::Terminate, Phase::Stopping { .. }) => {
                tracing::warn!("second stop signal: killing the workers now");
                self.stop_now();
            }
            (Signal::Terminate, Phase::Running) => self.stop_gracefully(),
            (_, Phase::Stopping { .. }) => tracing::info!("stopping: {signal:?} ignored"),
            (Signal::Reload, Phase::Running) => self.reload(),
            (Signal::MoreWorkers, Phase::Running) => {
                self.desired += 1;
                tracing::info!(workers = self.desired, "SIGTTIN: one worker more");
            }
            (Signal::FewerWorkers, Phase::Running) => {
                if self.desired > 1 {
                    self.desired -= 1;
                    tracing::info!(workers = self.desired, "SIGTTOU: one worker fewer");
                } else {
                    tracing::warn!("SIGTTOU: already at one worker; ignored");
                }
            }
        }
    }

    /// SIGHUP: the file is read off the master's thread; a SIGHUP while that runs reads it once
    /// more afterwards (the file may have changed since the first read started).
    fn reload(&mut self) {
        self.emit(Action::Notify(Notification::Reloading));
        match self.reload {
            Reload::Idle => self.prepare_reload(),
            Reload::Preparing { .. } => self.reload = Reload::Preparing { again: true },
        }
    }

    fn prepare_reload(&mut self) {
        self.reload = Reload::Preparing { again: false };
        self.emit(Action::PrepareReload {
            running: Box::new(self.config.clone()),
        });
    }

    pub(super) fn on_reloaded(&mut self, result: Result<Prepared, ReloadError>) {
        let again = matches!(self.reload, Reload::Preparing { again: true });
        self.reload = Reload::Idle;
        if self.phase != Phase::Running {
            return; // stopping: nothing to replace any more
        }
        match result {
            Ok(prepared) => self.apply(prepared),
            Err(e) => self.reload_failed(&e.describe()),
        }
        if again {
            self.prepare_reload();
        }
    }

    /// The new config, checked: from now on every new worker is of the next generation, and
    /// `reconcile` replaces the old ones.
    fn apply(&mut self, prepared: Prepared) {
        let Prepared {
            loaded,
            tls,
            listener,
        } = prepared;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        let mut new = loaded.config;
        session_secret::fill(&mut new, Some(&self.config));
        if let Some((listener, addr)) = listener {
            self.listen_addr = addr;
            tracing::info!(listen = %addr, "listening on the new address");
            self.emit(Action::Listen(listener));
        }
        if new.cluster.control_socket != self.status_socket {
            tracing::warn!(
                "cluster.controlSocket changed to {}; the master keeps listening on {} until it \
                 is restarted",
                new.cluster.control_socket.display(),
                self.status_socket.display()
            );
        }
        if new.cluster.metrics_address != self.config.cluster.metrics_address {
            tracing::warn!(
                "cluster.metricsAddress changed to {}; the master keeps serving metrics on {} \
                 until it is restarted",
                new.cluster.metrics_address.as_deref().unwrap_or("(none)"),
                self.metrics_addr
                    .map_or("the listen address only".into(), |a| a.to_string()),
            );
        }
        self.emit(Action::LogLevel(new.frontend.log_level));
        let (old, now) = (&self.config.cluster, self.now);
        if new.cluster.heartbeat_interval != old.heartbeat_interval {
            self.ticks.heartbeat = now + new.cluster.heartbeat_interval;
        }
        if new.cluster.watchdog_interval != old.watchdog_interval {
            self.ticks.watchdog = now + new.cluster.watchdog_interval;
        }
        self.desired = new.cluster.worker_count;
        self.config = new;
        self.tls = tls;
        self.generation += 1;
        self.config_changed();
        self.ready_sent = false;
        tracing::info!(
            generation = self.generation,
            workers = self.desired,
            "configuration reloaded; replacing workers"
        );
    }

    fn reload_failed(&mut self, why: &str) {
        for line in why.lines() {
            tracing::error!("reload failed: {line}");
        }
        tracing::error!(
            generation = self.generation,
            "the cluster keeps running on its current configuration and workers"
        );
        let first_line = why.lines().next().unwrap_or(why);
        self.emit(Action::Notify(Notification::Ready(format!(
            "reload failed, running generation {}: {first_line}",
            self.generation
        ))));
    }

    /// READY=1 once every slot has a ready worker of the current generation.
    pub(super) fn announce_readiness(&mut self) {
        if self.ready_sent || self.slots.len() != self.desired {
            return;
        }
        let mut slots = self.slots.iter().chain(&self.relay).chain(&self.demo);
        let all_ready = slots.all(|slot| {
            slot.active
                .and_then(|id| self.workers.get(&id))
                .is_some_and(|w| w.is_ready() && w.generation == self.generation)
        });
        if all_ready {
            self.ready_sent = true;
            let status = format!(
                "{} workers ready on {} (generation {})",
                self.desired, self.listen_addr, self.generation
            );
            tracing::info!("{status}");
            self.emit(Action::Notify(Notification::Ready(status)));
        }
    }

    pub(super) fn stop_gracefully(&mut self) {
        let timeout = self.config.cluster.drain_timeout;
        tracing::info!(
            drain_timeout_ms = timeout.as_millis() as u64,
            "stopping: draining all workers"
        );
        self.emit(Action::Notify(Notification::Stopping));
        self.phase = Phase::Stopping {
            deadline: self.now + timeout + DRAIN_GRACE,
            killed: false,
        };
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            self.drain(id, "shutting down");
        }
    }

    pub(super) fn stop_now(&mut self) {
        tracing::info!("stopping now: killing all workers");
        self.emit(Action::Notify(Notification::Stopping));
        self.phase = Phase::Stopping {
            deadline: self.now + REAP_WAIT,
            killed: true,
        };
        self.kills.queue.clear();
        self.kills.next = None;
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }

    pub(super) fn on_stop_deadline(&mut self) {
        match self.phase {
            Phase::Stopping { killed: false, .. } => {
                tracing::warn!(
                    left = self.workers.len(),
                    "drain deadline passed; killing the workers left"
                );
                self.stop_now();
            }
            Phase::Stopping { killed: true, .. } => {
                tracing::error!(
                    left = self.workers.len(),
                    "workers did not exit after SIGKILL; giving up on them"
                );
                self.phase = Phase::Stopped;
                self.emit(Action::Exit);
            }
            Phase::Running | Phase::Stopped => {}
        }
    }
}
