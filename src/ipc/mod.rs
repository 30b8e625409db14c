//! The channel between the master and one worker: a Unix socket pair, typed on both ends.
//!
//! # Wire format
//! Each message is one frame: a 4-byte big-endian length `N` (1..=[`MAX_FRAME`]) followed by `N`
//! bytes of UTF-8 JSON holding one message, tagged by its `"type"` field:
//!
//! master -> worker ([`ToWorker`]):
//! - `{"type":"init","generation":3,"config":{...},"tls":{...}}`: first frame, always; the
//!   effective config and, with `frontend.ssl`, the contents of its key and certificate files.
//! - `{"type":"heartbeat","seq":17}`: answer with `heartbeat_ack` carrying the same `seq`.
//! - `{"type":"drain","timeout_ms":10000}`: stop accepting, finish in-flight work, then exit 0;
//!   connections still open after `timeout_ms` are closed. A standby worker exits at once.
//! - `{"type":"activate","slot":1}`: to the standby worker (started with `--standby`): start
//!   accepting, as the worker of slot 1. No answer: it said `ready` already.
//! - `{"type":"log_level","level":"debug"}`, `{"type":"resend_interval","ms":500}`: run-time
//!   settings from the control channel.
//! - `{"type":"push","id":3,"audience":"All"|{"User":"42"},"data":{...}}`: emit `push` across
//!   the cluster; answer with `pushed`.
//! - `{"type":"metrics_text","id":5,"text":"# HELP ..."}`: the answer to `metrics` 5 (`text`
//!   null: too large for a frame).
//!
//! worker -> master ([`ToMaster`]):
//! - `{"type":"ready"}`: the worker accepts connections (a standby: it is initialised and can
//!   be activated).
//! - `{"type":"heartbeat_ack","seq":17,"report":{"rss":..,"heap_used":..,"heap_total":..,
//!   "clients":..,"loop_lag_us":..,"metrics":{"counts":{"requests":12,..},"clients":{..},
//!   "pushes_pending":..,"brokers":{..}}}}`: see [`WorkerReport`] and
//!   [`crate::metrics::WorkerMetrics`].
//! - `{"type":"draining","clients":12}`: the worker stopped accepting and is finishing.
//! - `{"type":"pushed","id":3,"error":null}`: the push `id` went out (or why not).
//! - `{"type":"metrics","id":5}`: a scrape of `/metrics` reached the worker; the master
//!   answers with `metrics_text`.
//!
//! A frame longer than [`MAX_FRAME`] is refused before anything is allocated for it. End of
//! stream on either side means the other process is gone: a worker exits, the master replaces.

mod channel;
mod message;

pub use channel::{Channel, Decoded, Frame, IpcError, Receiver, Sender, decode, encode};
pub use message::{ToMaster, ToWorker, WorkerReport};

/// Largest frame either side accepts (the init frame carries the whole config).
pub const MAX_FRAME: usize = 1 << 20;
