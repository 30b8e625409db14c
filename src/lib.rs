//! activestack-gateway: a pre-fork cluster supervisor whose workers are a real-time gateway.
//!
//! # Layout
//! - [`config`]: `gateway.properties` -> typed, validated [`config::Config`].
//! - [`supervisor`]: the master process. `cluster` decides (a state machine: events in,
//!   actions out, no I/O: slots, workers, the standby, heartbeats, watchdog, memory limits,
//!   restart backoff, reloads, console verbs); `shell` carries it out (processes, sockets,
//!   timers, signals as a stream, systemd notifications); beside them spawning, the listen
//!   socket, the reload's file reads, the session secret.
//! - [`ipc`]: the master <-> worker channel: message types and framing.
//! - [`worker`]: the worker process: one loop over its phases (starting, standby, serving,
//!   draining) with one link to the master; inherited listener, accept thread, HTTP.
//! - [`gateway`]: the gateway inside each worker: every client (socket.io v4/v5, socket.io 0.9)
//!   <-> the backend's agent queues on RabbitMQ: the client logic, its framings, one task per
//!   connection, the protocols' codecs, sessions, queues.
//! - [`console`]: the operator's console over the Redis control channel: command parsing and
//!   bounds, the shutdown code, typed answers, the `console` command.
//! - [`status`]: the status report (typed, shared by the master, the CLI and the tests) and the
//!   master's status socket (`cluster.controlSocket`).
//! - [`backoff`]: restart delays and doubling retry pauses.
//! - [`logging`]: log lines that name their process (`master` / `worker[slot]`) and pid.
//! - [`metrics`]: Prometheus metrics: each worker's counters (cheap atomics), sent with its
//!   heartbeat answers, added up and rendered by the master, served at `/metrics`.
//! - [`output`]: the command line's stdout, where a closed pipe is not a crash.
//! - [`tls`]: TLS for clients (`frontend.ssl`): the key and certificate files, checked by the
//!   master, served by the workers.
//! - [`relay`]: the MongoDB outbox -> NATS JetStream message relay and the EVENTS stream set-up.
//! - [`realtime`]: Centrifugo-compatible delivery of the EVENTS stream to users (websocket,
//!   SSE, server API), with history, recovery and presence in Redis.
//! - [`demo`]: the demo (`demo.enabled`): an agent standing in for the backend, and the page
//!   the workers serve at `/demo`.

pub mod amqp;
pub mod backoff;
pub mod config;
pub mod console;
pub mod demo;
pub mod gateway;
pub mod ipc;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod realtime;
pub mod relay;
pub mod status;
pub mod supervisor;
pub mod tls;
pub mod worker;

/// jemalloc, for every process of the binary and for the tests: glibc's malloc and free were a
/// quarter of a worker's instructions per round trip (bench/callgrind.sh). Its statistics are
/// the heartbeat's heap figures ([`worker::memory`]).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
