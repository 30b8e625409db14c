//! The message relay: documents inserted into the MongoDB outbox collection are published to
//! NATS JetStream as commands Centrifugo's `nats_jetstream` consumer runs; plus the set-up of
//! the `EVENTS` stream ([`ensure_stream`]).
//!
//! # Outbox documents (also in `docs/outbox.md`)
//! - `{_id, userId: "u1", data: <any>}` -> subject `<prefix>.<namespace>.u1`, body
//!   `{"method":"publish","payload":{"channel":"<namespace>:#u1","data":..,"idempotency_key":"<_id>"}}`.
//! - `{_id, userIds: ["u1","u2"], data}` -> subject `<prefix>.<namespace>.broadcast`, body
//!   `{"method":"broadcast","payload":{"channels":["<namespace>:#u1",..],"data":..,
//!   "idempotency_key":"<_id>"}}` (one user in `userIds` is a publish, as above).
//! - `{_id, command: {method, payload}}` -> a ready-made command, published as is to
//!   `<prefix>.<namespace>.command` (`payload.idempotency_key` = `_id` unless given).
//!
//! `data` is converted from BSON to relaxed extended JSON. `_id` becomes text (an ObjectId as
//! hex) and is both the `Nats-Msg-Id` header and the idempotency key. Anything else (none or
//! several of `userId`/`userIds`/`command`, wrong types, no `data`, a user id that cannot be a
//! subject token) is a dead letter: `{"reason","collection","id","document"}` published to
//! `<relay.nats.deadLetterSubject>.<collection>` (default `relay.deadletter.messages_outbox`),
//! kept by its own stream (`RELAY_DEADLETTER`), outside `events.>` so Centrifugo never sees it;
//! the relay goes on.
//!
//! # Delivery
//! At least once, duplicates removed by JetStream (`Nats-Msg-Id`, 2-minute window) and by
//! Centrifugo (idempotency key). At most `relay.maxInFlight` publishes wait for their ack at
//! once. The checkpoint (change-stream resume token + last published `_id`, see
//! [`checkpoint`]) is saved in MongoDB only for publishes JetStream acknowledged, with all
//! before them; a restart resumes from it. A resume token MongoDB no longer accepts
//! (ChangeStreamHistoryLost, InvalidResumeToken) is logged and the relay catches up from the
//! collection (`_id > lastId`, in `_id` order) and then watches from an operation time taken
//! before that read, so nothing falls in between. MongoDB or NATS down: retried with a backoff
//! from 100 ms doubling to 5 s.

pub mod checkpoint;
pub mod outbox;
mod pump;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

pub use crate::config::RelayConfig;
pub use stream::{StreamDifference, StreamState, StreamStatus, ensure_stream};

/// Why the relay (or the stream set-up) stopped or had to start over.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("invalid relay settings: {0}")]
    Config(String),
    #[error("MongoDB: {what}")]
    Mongo {
        what: &'static str,
        #[source]
        source: mongodb::error::Error,
    },
    #[error("cannot connect to NATS at {url}")]
    NatsConnect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("JetStream: {what}: {message}")]
    JetStream { what: &'static str, message: String },
    #[error(
        "JetStream stream {stream} exists with other settings than the relay needs (it is left \
         as it is; fix or delete it by hand): {}",
        differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    StreamMismatch {
        stream: String,
        differences: Vec<StreamDifference>,
    },
    #[error(
        "MongoDB gave no operationTime: the relay needs a replica set (change streams do not \
         work on a standalone server)"
    )]
    NotReplicaSet,
    #[error("the checkpoint cannot be written: {0}")]
    Checkpoint(String),
    #[error("the change stream ended (the outbox collection was dropped or renamed?)")]
    ChangeStreamEnded,
}

impl RelayError {
    /// Errors that retrying cannot fix: the relay stops with them.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            RelayError::Config(_) | RelayError::StreamMismatch { .. }
        )
    }
}

/// Counters of a running relay, cheap to read from anywhere (`Arc` it, pass it to
/// [`run_with_stats`]).
#[derive(Debug)]
pub struct RelayStats {
    /// Messages JetStream acknowledged (duplicates included).
    pub published: AtomicU64,
    /// Of those, the ones JetStream said it already had (`Nats-Msg-Id` seen before).
    pub duplicates: AtomicU64,
    /// Dead letters JetStream acknowledged.
    pub dead_lettered: AtomicU64,
    /// Publishes waiting for their ack now.
    pub in_flight: AtomicU64,
    /// Documents published by catching up from the collection.
    pub caught_up: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Times the relay started over after an error.
    pub restarts: AtomicU64,
    /// Times the resume token was refused (history lost) and the relay caught up.
    pub history_lost: AtomicU64,
    /// The change stream is open: inserts from now on are relayed.
    pub watching: AtomicBool,
    /// From the outbox insert of the last document JetStream acknowledged to that ack, in ms
    /// ([`NO_LAG`]: none yet). The insert time is the change event's `wallTime` (MongoDB 6+),
    /// else the `_id`'s ObjectId time (whole seconds; documents read in a catch-up).
    pub lag_ms: AtomicU64,
}

/// [`RelayStats::lag_ms`] before any document was acknowledged.
pub const NO_LAG: u64 = u64::MAX;

/// A copy of [`RelayStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RelayStatsSnapshot {
    pub published: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub in_flight: u64,
    pub caught_up: u64,
    pub checkpoints: u64,
    pub restarts: u64,
    pub history_lost: u64,
    pub watching: bool,
    pub lag_ms: Option<u64>,
}

impl Default for RelayStats {
    fn default() -> RelayStats {
        RelayStats {
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            caught_up: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            history_lost: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            lag_ms: AtomicU64::new(NO_LAG),
        }
    }
}

impl RelayStats {
    pub fn snapshot(&self) -> RelayStatsSnapshot {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        RelayStatsSnapshot {
            published: get(&self.published),
            duplicates: get(&self.duplicates),
            dead_lettered: get(&self.dead_lettered),
            in_flight: get(&self.in_flight),
            caught_up: get(&self.caught_up),
            checkpoints: get(&self.checkpoints),
            restarts: get(&self.restarts),
            history_lost: get(&self.history_lost),
            watching: self.watching.load(Ordering::Relaxed),
            lag_ms: Some(self.lag_ms.load(Ordering::Relaxed)).filter(|ms| *ms != NO_LAG),
        }
    }

    fn add(n: &AtomicU64, by: u64) {
        n.fetch_add(by, Ordering::Relaxed);
    }
}

/// Runs the relay until `shutdown` becomes true (or its sender is dropped): then finishes the
/// in-flight publishes, saves the checkpoint and returns `Ok`. Returns an error only for what
/// retrying cannot fix ([`RelayError::is_fatal`]); everything else is logged and retried.
pub async fn run(cfg: RelayConfig, shutdown: watch::Receiver<bool>) -> Result<(), RelayError> {
    run_with_stats(cfg, Arc::new(RelayStats::default()), shutdown).await
}

/// [`run`], counting into `stats`.
pub async fn run_with_stats(
    cfg: RelayConfig,
    stats: Arc<RelayStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    pump::run(cfg, stats, shutdown).await
}

/// A NATS connection that logs its disconnects and reconnects (it reconnects by itself).
pub(crate) async fn connect_nats(url: &str) -> Result<async_nats::Client, RelayError> {
    let connected = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    crate::metrics::local::broker_connected(crate::metrics::Broker::Nats, false);
                    tracing::warn!("relay: disconnected from NATS; reconnecting")
                }
                async_nats::Event::Connected => {
                    crate::metrics::local::broker_connected(crate::metrics::Broker::Nats, true);
                    tracing::info!("relay: connected to NATS")
                }
                other => tracing::debug!(event = %other, "relay: NATS event"),
            }
        })
        .connect(url)
        .await;
    crate::metrics::local::broker_connected(crate::metrics::Broker::Nats, connected.is_ok());
    connected.map_err(|source| RelayError::NatsConnect {
        url: url.to_string(),
        source,
    })
}
