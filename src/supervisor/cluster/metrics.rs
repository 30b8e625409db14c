//! The cluster's metrics as Prometheus text: what the master knows itself (workers and their
//! states, restarts, heartbeats, memory, lag) and what the workers report (the counter totals,
//! their clients and gauges). The names are documented in the README ("Metrics").

use super::*;
use crate::metrics::local::{self, Broker, Count, Protocol};
use crate::metrics::{Exposition, Kind, WorkerMetrics};
use crate::status::State;

/// Every family's name starts with this.
const PREFIX: &str = "activestack_";

/// One per-worker gauge: its name, help and value.
type WorkerGauge = (
    &'static str,
    &'static str,
    fn(&Worker, Instant) -> Option<f64>,
);

/// One relay gauge: its name, help and value.
type RelayGauge = (
    &'static str,
    &'static str,
    fn(&crate::metrics::RelayGauges) -> Option<f64>,
);

const WORKER_GAUGES: &[WorkerGauge] = &[
    (
        "worker_heartbeat_age_seconds",
        "Time since the worker last answered a heartbeat (absent before its first answer).",
        |w, now| w.last_answer.map(|at| now.duration_since(at).as_secs_f64()),
    ),
    (
        "worker_uptime_seconds",
        "Time since the worker was started.",
        |w, now| Some(now.duration_since(w.started).as_secs_f64()),
    ),
    (
        "worker_rss_bytes",
        "Resident set size of the worker, measured by the master from /proc.",
        |w, _| Some(w.rss as f64),
    ),
    (
        "worker_heap_used_bytes",
        "Bytes the worker's allocator has handed out and not taken back (jemalloc stats.allocated).",
        |w, _| Some(w.report.heap_used as f64),
    ),
    (
        "worker_heap_total_bytes",
        "Bytes the worker's allocator holds mapped for its data (jemalloc stats.mapped).",
        |w, _| Some(w.report.heap_total as f64),
    ),
    (
        "worker_event_loop_lag_seconds",
        "Worst lateness of the worker's 50 ms event-loop probe timer between its last two \
         heartbeat answers.",
        |w, _| Some(w.report.loop_lag_us as f64 / 1e6),
    ),
    (
        "worker_clients",
        "Open connections of the worker (HTTP, socket.io and realtime).",
        |w, _| Some(w.report.clients as f64),
    ),
];

impl ClusterState {
    /// The whole cluster's metrics, now.
    pub(super) fn render_metrics(&self) -> String {
        let mut text = Exposition::default();
        let now = self.now;
        let name = |family: &str| format!("{PREFIX}{family}");
        let mut workers: Vec<&Worker> = self.workers.values().collect();
        workers.sort_by_key(|w| (w.place, w.started));
        // Workers whose last report still stands: not killed (a killed one's clients are gone).
        let reporting: Vec<&WorkerMetrics> = workers
            .iter()
            .filter(|w| w.state != WorkerState::Killed && w.last_answer.is_some())
            .map(|w| &w.report.metrics)
            .collect();

        text.family(
            &name("build_info"),
            Kind::Gauge,
            "Always 1; the version of the master's binary in its label.",
        );
        text.sample(
            &name("build_info"),
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        text.single(
            &name("master_uptime_seconds"),
            Kind::Gauge,
            "Time since the master started.",
            now.duration_since(self.started).as_secs_f64(),
        );
        text.single(
            &name("config_generation"),
            Kind::Gauge,
            "Configuration generation: 1 at start, one more for every reload applied.",
            self.generation as f64,
        );
        text.single(
            &name("workers_desired"),
            Kind::Gauge,
            "Gateway workers the master keeps running (cluster.workerCount, SIGTTIN/SIGTTOU).",
            self.desired as f64,
        );

        let family = name("workers");
        text.family(
            &family,
            Kind::Gauge,
            "Worker processes by role (gateway, relay, standby) and state (starting, ready, \
             draining, killed).",
        );
        for role in [Role::Gateway, Role::Relay, Role::Standby] {
            for state in [
                State::Starting,
                State::Ready,
                State::Draining,
                State::Killed,
            ] {
                let n = workers
                    .iter()
                    .filter(|w| w.place.role() == role && w.state.shown() == state)
                    .count();
                let state = state.to_string();
                text.sample(
                    &family,
                    &[("role", role_label(role)), ("state", &state)],
                    n as f64,
                );
            }
        }

        let family = name("worker_restarts_total");
        text.family(
            &family,
            Kind::Counter,
            "Times a place (gateway slot, relay, standby) needed a new worker, by role and \
             cause, since the master started.",
        );
        for role in [Role::Gateway, Role::Relay, Role::Standby] {
            for cause in RestartCause::ALL {
                let n = self
                    .restarts_by_cause
                    .get(&(role, cause))
                    .copied()
                    .unwrap_or(0);
                text.sample(
                    &family,
                    &[("role", role_label(role)), ("cause", cause.label())],
                    n as f64,
                );
            }
        }

        for (family, help, value) in WORKER_GAUGES {
            let family = name(family);
            text.family(&family, Kind::Gauge, help);
            for w in &workers {
                if let Some(value) = value(w, now) {
                    let (slot, pid) = (w.place.to_string(), w.pid().to_string());
                    let labels = [("role", role_label(w.place.role())), ("slot", &slot)];
                    text.sample(&family, &[labels[0], labels[1], ("pid", &pid)], value);
                }
            }
        }

        let family = name("clients");
        text.family(
            &family,
            Kind::Gauge,
            "Open client connections of the cluster, by protocol (socketio5: socket.io v5 / \
             engine.io 4; socketio4: socket.io v4 / engine.io 3; socketio09: socket.io 0.9; \
             realtime: Centrifugo clients).",
        );
        for protocol in Protocol::ALL {
            let n: u64 = reporting.iter().map(|m| m.clients.get(protocol)).sum();
            text.sample(&family, &[("protocol", protocol.label())], n as f64);
        }
        text.single(
            &name("pushes_pending"),
            Kind::Gauge,
            "Pushes with a correspondingMessageId written to clients and not acked by them yet.",
            reporting.iter().map(|m| m.pushes_pending).sum::<u64>() as f64,
        );

        self.render_counts(&mut text);

        let family = name("broker_up");
        text.family(
            &family,
            Kind::Gauge,
            "1 if the process is connected to the broker (rabbitmq, redis, nats), 0 if not; \
             absent for a broker the process does not use. role=master: the control channel.",
        );
        let master_pid = self.master_pid.to_string();
        let master = local::brokers();
        for broker in Broker::ALL {
            if let Some(up) = master.get(broker) {
                let labels = [
                    ("broker", broker.label()),
                    ("role", "master"),
                    ("slot", "master"),
                    ("pid", master_pid.as_str()),
                ];
                text.sample(&family, &labels, f64::from(u8::from(up)));
            }
            for w in workers.iter().filter(|w| w.state != WorkerState::Killed) {
                if let Some(up) = w.report.metrics.brokers.get(broker) {
                    let (slot, pid) = (w.place.to_string(), w.pid().to_string());
                    let labels = [
                        ("broker", broker.label()),
                        ("role", role_label(w.place.role())),
                        ("slot", slot.as_str()),
                        ("pid", pid.as_str()),
                    ];
                    text.sample(&family, &labels, f64::from(u8::from(up)));
                }
            }
        }

        let relays: Vec<(&Worker, crate::metrics::RelayGauges)> = workers
            .iter()
            .filter(|w| w.state != WorkerState::Killed)
            .filter_map(|w| Some((*w, w.report.metrics.relay?)))
            .collect();
        let relay_gauges: [RelayGauge; 3] = [
            (
                "relay_in_flight",
                "Relay publishes waiting for their JetStream ack.",
                |g| Some(g.in_flight as f64),
            ),
            (
                "relay_lag_seconds",
                "From the outbox insert of the last document JetStream acknowledged to that \
                 ack (absent before the first).",
                |g| g.lag_ms.map(|ms| ms as f64 / 1000.0),
            ),
            (
                "relay_watching",
                "1 while the relay's change stream on the outbox is open.",
                |g| Some(f64::from(u8::from(g.watching))),
            ),
        ];
        for (family, help, value) in relay_gauges {
            let family = name(family);
            text.family(&family, Kind::Gauge, help);
            for (w, gauges) in &relays {
                if let Some(value) = value(gauges) {
                    let pid = w.pid().to_string();
                    text.sample(&family, &[("pid", &pid)], value);
                }
            }
        }
        text.finish()
    }

    /// The counter totals, one family per [`Count::family`] ([`Count::all`] gives each
    /// family's counts together), every label value written (zeros too, so that a dashboard's
    /// rate() has a series from the start).
    fn render_counts(&self, text: &mut Exposition) {
        let mut current: Option<&str> = None;
        for count in Count::all() {
            let family = format!("{PREFIX}{}_total", count.family());
            if current != Some(count.family()) {
                current = Some(count.family());
                text.family(&family, Kind::Counter, count_help(count));
            }
            let value = self.totals.get(count) as f64;
            match count.label() {
                Some(label) => text.sample(&family, &[label], value),
                None => text.sample(&family, &[], value),
            }
        }
    }
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Gateway => "gateway",
        Role::Relay => "relay",
        Role::Standby => "standby",
        Role::Demo => "demo",
    }
}

fn count_help(count: Count) -> &'static str {
    match count {
        Count::Connections(_) => "Client connections opened, by protocol.",
        Count::Requests => {
            "Client requests published to their agent queue and confirmed by RabbitMQ."
        }
        Count::Pushes => "Backend messages pushed to clients (first sends).",
        Count::PushesResent => "Unacked pushes sent again (frontend.clientMessageResendInterval).",
        Count::PushesAcked => "Pushes the client acked.",
        Count::GatewayErrors(_) => "gatewayError events sent to clients, by error code.",
        Count::AmqpChannelErrors(_) => {
            "Channels RabbitMQ closed with an error, by reply code (the operation that caused \
             it failed, the worker went on)."
        }
        Count::FramesRefused(_) => {
            "Client websocket messages refused and their connection closed, by reason \
             (too_big: over frontend.maxMessageSize; websocket, socketio: protocol errors; \
             binary)."
        }
        Count::RealtimeDeliveries => {
            "Publications handed to realtime subscribers (Centrifugo clients and logged-in \
             socket.io sockets)."
        }
        Count::RealtimeConsumed(_) => {
            "JetStream messages the workers' realtime consumer handled, by result."
        }
        Count::RelayPublished => "Outbox messages JetStream acknowledged to the relay.",
        Count::RelayDuplicates => "Of those, the ones JetStream already had (Nats-Msg-Id).",
        Count::RelayDeadLetters => "Outbox documents the relay published as dead letters.",
        Count::RelayRestarts => "Times the relay started over from its checkpoint after an error.",
    }
}
