//! activestack-gateway: a pre-fork cluster supervisor whose workers are a real-time gateway.
//!
//! # Layout
//! - [`config`]: `gateway.properties` -> typed, validated [`config::Config`].
//! - [`supervisor`]: the master process: listen socket, worker processes, heartbeats, watchdog,
//!   memory limits, restart backoff, SIGHUP reloads, the hot standby worker, systemd
//!   notifications.
//! - [`ipc`]: the master <-> worker channel: message types and framing.
//! - [`worker`]: the worker process: inherited listener, accept thread, HTTP, heartbeat answers,
//!   standby and activation, drain.
//! - [`gateway`]: the gateway inside each worker: every client (socket.io v4/v5, socket.io 0.9)
//!   <-> the backend's agent queues on RabbitMQ: the client logic, its framings, one task per
//!   connection, the protocols' codecs, sessions, queues.
//! - [`control`]: the master's local control socket and the `status` report.
//! - [`logging`]: log lines that name their process (`master` / `worker[slot]`) and pid.
//! - [`output`]: the command line's stdout, where a closed pipe is not a crash.
//! - [`tls`]: TLS for clients (`frontend.ssl`): the key and certificate files, checked by the
//!   master, served by the workers.
//! - [`relay`]: the MongoDB outbox -> NATS JetStream message relay and the EVENTS stream set-up.
//! - [`realtime`]: Centrifugo-compatible delivery of the EVENTS stream to users (websocket,
//!   SSE, server API), with history, recovery and presence in Redis.

pub mod config;
pub mod control;
pub mod gateway;
pub mod ipc;
pub mod logging;
pub mod output;
pub mod realtime;
pub mod relay;
pub mod supervisor;
pub mod tls;
pub mod worker;
