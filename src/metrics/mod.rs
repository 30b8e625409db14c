//! Prometheus metrics of the whole cluster, in the text exposition format (version 0.0.4), at
//! `/metrics` on the listen address and on `cluster.metricsAddress`.
//!
//! # Where the numbers come from
//! - Every worker process counts into its own atomics ([`local`]): plain relaxed adds on the
//!   hot paths (a request forwarded, a push written, a frame refused...), no lock, no
//!   allocation. Each heartbeat answer carries a [`WorkerMetrics`] snapshot of them, with the
//!   worker's gauges (clients by protocol, pushes pending, broker connections, the relay's lag).
//! - The master keeps each worker's latest snapshot and the cluster's counter totals: every
//!   snapshot's increase over the same worker's previous one is added to the totals, so a
//!   worker that dies or is replaced never makes a cluster counter go down (its increments
//!   since its last heartbeat answer are all that is lost). The master adds what only it knows:
//!   workers by state, restarts by cause, heartbeat ages, RSS, and renders the text
//!   (`supervisor::cluster::metrics`).
//! - On the listen address a worker accepts the scrape: it asks the master for the text over
//!   its link (`metrics` / `metrics_text`, see [`crate::ipc`]) and answers with it, so a scrape
//!   sees the whole cluster whichever worker takes it. On `cluster.metricsAddress` the master
//!   answers itself ([`http`]).
//!
//! The metric names and what each means are in the README ("Metrics").

pub mod exposition;
pub mod http;
pub mod local;

pub use exposition::{CONTENT_TYPE, Exposition, Kind};
pub use local::{
    Broker, BrokerStates, ChannelErrorCode, ConsumeResult, Count, Counts, FrameRefusal,
    PerProtocol, Protocol, RelayGauges, WorkerMetrics,
};
