//! Reloads (SIGHUP), readiness for systemd, and stopping.

use super::*;

impl Master {
    pub(super) fn reload(&mut self) {
        self.notifier.reloading();
        let loaded = match Config::resolve(self.config_arg.as_deref()) {
            Ok(loaded) => loaded,
            Err(e) => return self.reload_failed(&e.to_string()),
        };
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        if let Err(e) = self.config.check_reload(&loaded.config) {
            return self.reload_failed(&e.to_string());
        }
        // Checked before anything changes, so a bad file leaves the current workers serving.
        let tls = match TlsFiles::load(&loaded.config) {
            Ok(tls) => tls,
            Err(e) => return self.reload_failed(&error_chain(&e)),
        };
        if let Err(e) = loaded.config.check_worker_init(tls.as_ref()) {
            return self.reload_failed(&error_chain(&e));
        }
        let mut new = loaded.config;
        crate::gateway::secret::fill(&mut new, Some(&self.config));
        let (old_front, new_front) = (&self.config.frontend, &new.frontend);
        if (&old_front.host, old_front.port) != (&new_front.host, new_front.port) {
            match listen::bind(&new_front.host, new_front.port) {
                Ok(listener) => {
                    self.listen_addr = local_addr(&listener, &new);
                    self.listener = listener;
                    tracing::info!(listen = %self.listen_addr, "listening on the new address");
                }
                Err(e) => return self.reload_failed(&error_chain(&e)),
            }
        }
        if new.cluster.control_socket != self.config.cluster.control_socket {
            tracing::warn!(
                "cluster.controlSocket changed; the master keeps {} until it is restarted",
                self.config.cluster.control_socket.display()
            );
        }
        logging::set_level(new.frontend.log_level);
        self.desired = new.cluster.worker_count;
        self.config = new;
        self.tls = tls;
        self.generation += 1;
        self.ready_sent = false;
        tracing::info!(
            generation = self.generation,
            workers = self.desired,
            "configuration reloaded; replacing workers"
        );
    }

    pub(super) fn reload_failed(&mut self, why: &str) {
        for line in why.lines() {
            tracing::error!("reload failed: {line}");
        }
        tracing::error!(
            generation = self.generation,
            "the cluster keeps running on its current configuration and workers"
        );
        let first_line = why.lines().next().unwrap_or(why);
        self.notifier.ready(&format!(
            "reload failed, running generation {}: {first_line}",
            self.generation
        ));
    }

    /// READY=1 once every slot has a ready worker of the current generation.
    pub(super) fn announce_readiness(&mut self) {
        if self.ready_sent || self.slots.len() != self.desired {
            return;
        }
        let all_ready = self.slots.iter().chain(&self.relay).all(|slot| {
            slot.active
                .and_then(|pid| self.workers.get(&pid))
                .is_some_and(|w| w.state == WorkerState::Ready && w.generation == self.generation)
        });
        if all_ready {
            self.ready_sent = true;
            let status = format!(
                "{} workers ready on {} (generation {})",
                self.desired, self.listen_addr, self.generation
            );
            tracing::info!("{status}");
            self.notifier.ready(&status);
        }
    }

    pub(super) fn stop_gracefully(&mut self) {
        let timeout = self.config.cluster.drain_timeout;
        tracing::info!(
            drain_timeout_ms = timeout.as_millis() as u64,
            "stopping: draining all workers"
        );
        self.notifier.stopping();
        self.phase = Phase::Stopping {
            deadline: Instant::now() + timeout + DRAIN_GRACE,
            killed: false,
        };
        let pids: Vec<u32> = self.workers.keys().copied().collect();
        for pid in pids {
            self.drain(pid, "shutting down");
        }
    }

    pub(super) fn stop_now(&mut self) {
        tracing::info!("stopping now: killing all workers");
        self.notifier.stopping();
        self.phase = Phase::Stopping {
            deadline: Instant::now() + REAP_WAIT,
            killed: true,
        };
        let pids: Vec<u32> = self.workers.keys().copied().collect();
        for pid in pids {
            self.kill(pid);
        }
    }

    pub(super) fn enforce_stop_deadline(&mut self) {
        if let Phase::Stopping {
            deadline,
            killed: false,
        } = self.phase
            && Instant::now() >= deadline
        {
            tracing::warn!(
                left = self.workers.len(),
                "drain deadline passed; killing the workers left"
            );
            self.stop_now();
        }
    }
}
