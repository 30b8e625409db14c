//! The two message enums of the master <-> worker channel (format: see the module above).

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::tls::TlsFiles;

/// Messages the master sends to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    Init {
        generation: u64,
        config: Box<Config>,
        /// The TLS key and certificates to serve clients with (`frontend.ssl`), as the master
        /// read and checked them.
        #[serde(default)]
        tls: Option<Box<TlsFiles>>,
    },
    Heartbeat {
        seq: u64,
    },
    Drain {
        timeout_ms: u64,
    },
    /// A standby worker (started with `--standby`, initialised, not accepting) takes gateway
    /// slot `slot`: it starts accepting at once. It sends no answer: it was ready already.
    Activate {
        slot: usize,
    },
    /// Change the log level now (`loglevel` on the control channel).
    LogLevel {
        level: crate::config::LogLevel,
    },
    /// Change `frontend.clientMessageResendInterval` now.
    ResendInterval {
        ms: u64,
    },
    /// Emit `push` with `data` to `audience` across the cluster (`push` on the control channel);
    /// answer with [`ToMaster::Pushed`] carrying the same `id`.
    Push {
        id: u64,
        audience: crate::gateway::Audience,
        data: serde_json::Value,
    },
    /// The answer to [`ToMaster::Metrics`] `id`: the cluster's metrics in the Prometheus text
    /// format (`None`: the text would not fit in a frame; scrape `cluster.metricsAddress`).
    MetricsText {
        id: u64,
        text: Option<String>,
    },
}

/// Messages a worker sends to the master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToMaster {
    Ready,
    HeartbeatAck {
        seq: u64,
        /// Boxed: it is most of the message's size, and other messages are small.
        report: Box<WorkerReport>,
    },
    Draining {
        clients: u64,
    },
    /// The outcome of [`ToWorker::Push`] `id`: `error` is `None` once it is published.
    Pushed {
        id: u64,
        error: Option<String>,
    },
    /// A scrape of `/metrics` reached this worker: the master answers with
    /// [`ToWorker::MetricsText`] carrying the same `id`.
    Metrics {
        id: u64,
    },
}

/// What a worker says about itself in each heartbeat answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Resident set size in bytes, as the worker sees it (the master measures its own too).
    pub rss: u64,
    /// Bytes the allocator has handed out and not taken back.
    pub heap_used: u64,
    /// Bytes the allocator holds from the operating system.
    pub heap_total: u64,
    /// Open client connections.
    pub clients: u64,
    /// Worst lateness of the worker's event-loop probe timer since the last answer, in
    /// microseconds: how long work queued on the loop had to wait.
    pub loop_lag_us: u64,
    /// Its counters and gauges (see [`crate::metrics`]).
    #[serde(default)]
    pub metrics: crate::metrics::WorkerMetrics,
}
