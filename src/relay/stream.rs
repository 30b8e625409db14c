//! The JetStream side of the set-up: the events stream (`EVENTS`, subjects `events.>`) with the
//! seed's exact settings and the dead-letter stream, created when missing, compared when
//! present. A stream that exists with other settings is reported setting by setting and left as
//! it is: changing or recreating it could drop messages Centrifugo has not read yet.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::RelayError;
use crate::config::RelayConfig;

/// JetStream removes a second message with the same `Nats-Msg-Id` within this window.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What [`ensure_stream`] found or did, per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStatus {
    /// The events stream (`relay.nats.stream`).
    pub events: StreamState,
    /// The dead-letter stream (`relay.nats.deadLetterStream`).
    pub dead_letter: StreamState,
}

/// One stream's state after the set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// It did not exist and was created.
    Created,
    /// It existed with the expected settings.
    Existing,
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamState::Created => "created",
            StreamState::Existing => "already there with the expected settings",
        })
    }
}

/// One setting of an existing stream that is not what the relay needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDifference {
    pub setting: &'static str,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for StreamDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.setting, self.expected, self.actual
        )
    }
}

/// The events stream as the seed creates it: `<prefix>.>`, file storage, limits retention, no
/// limit on messages, bytes, age or message size, a 2-minute duplicate window, 1 replica.
pub fn events_stream_config(cfg: &RelayConfig) -> stream::Config {
    unlimited(&cfg.stream, &cfg.subject_prefix)
}

/// The dead-letter stream: `<deadLetterSubject>.>`, with the same settings as the events stream.
pub fn dead_letter_stream_config(cfg: &RelayConfig) -> stream::Config {
    unlimited(&cfg.dead_letter_stream, &cfg.dead_letter_subject)
}

fn unlimited(name: &str, prefix: &str) -> stream::Config {
    stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_messages: -1,
        max_bytes: -1,
        max_age: Duration::ZERO,
        max_message_size: -1,
        duplicate_window: DUPLICATE_WINDOW,
        num_replicas: 1,
        ..Default::default()
    }
}

/// Connects to `relay.nats.url` and makes sure both streams exist with the expected settings
/// (the `nats-setup` command). A stream with other settings is an error listing the differences.
pub async fn ensure_stream(cfg: &RelayConfig) -> Result<StreamStatus, RelayError> {
    cfg.validate().map_err(RelayError::Config)?;
    let client = super::connect_nats(&cfg.nats_url).await?;
    let js = jetstream::new(client.clone());
    let status = ensure_streams(&js, cfg).await;
    // Best effort: the status is known whether or not the goodbye reaches the server.
    let _ = client.drain().await;
    status
}

/// [`ensure_stream`] on an existing JetStream context.
pub(crate) async fn ensure_streams(
    js: &jetstream::Context,
    cfg: &RelayConfig,
) -> Result<StreamStatus, RelayError> {
    Ok(StreamStatus {
        events: ensure_one(js, events_stream_config(cfg)).await?,
        dead_letter: ensure_one(js, dead_letter_stream_config(cfg)).await?,
    })
}

async fn ensure_one(
    js: &jetstream::Context,
    expected: stream::Config,
) -> Result<StreamState, RelayError> {
    let js_error = |what: &'static str, e: &dyn std::error::Error| RelayError::JetStream {
        what,
        message: format!("stream {}: {e}", expected.name),
    };
    match js.get_stream(&expected.name).await {
        Ok(existing) => {
            let differences = differences(&expected, &existing.cached_info().config);
            if differences.is_empty() {
                Ok(StreamState::Existing)
            } else {
                Err(RelayError::StreamMismatch {
                    stream: expected.name.clone(),
                    differences,
                })
            }
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref js_err)
                    if js_err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            match js.create_stream(expected.clone()).await {
                Ok(_) => {
                    tracing::info!(
                        stream = %expected.name,
                        subjects = ?expected.subjects,
                        "relay: created the JetStream stream"
                    );
                    Ok(StreamState::Created)
                }
                Err(e) => Err(js_error("cannot create the stream", &e)),
            }
        }
        Err(e) => Err(js_error("cannot look up the stream", &e)),
    }
}

/// The settings the relay relies on that differ between `expected` and `actual`.
pub fn differences(expected: &stream::Config, actual: &stream::Config) -> Vec<StreamDifference> {
    let mut out = Vec::new();
    let mut check = |setting: &'static str, e: String, a: String| {
        if e != a {
            out.push(StreamDifference {
                setting,
                expected: e,
                actual: a,
            });
        }
    };
    let mut subjects_e = expected.subjects.clone();
    let mut subjects_a = actual.subjects.clone();
    subjects_e.sort();
    subjects_a.sort();
    check(
        "subjects",
        format!("{subjects_e:?}"),
        format!("{subjects_a:?}"),
    );
    check(
        "storage",
        format!("{:?}", expected.storage),
        format!("{:?}", actual.storage),
    );
    check(
        "retention",
        format!("{:?}", expected.retention),
        format!("{:?}", actual.retention),
    );
    check(
        "max_msgs",
        limit(expected.max_messages),
        limit(actual.max_messages),
    );
    check(
        "max_bytes",
        limit(expected.max_bytes),
        limit(actual.max_bytes),
    );
    check("max_age", age(expected.max_age), age(actual.max_age));
    check(
        "max_msg_size",
        limit(i64::from(expected.max_message_size)),
        limit(i64::from(actual.max_message_size)),
    );
    check(
        "duplicate_window",
        format!("{:?}", expected.duplicate_window),
        format!("{:?}", actual.duplicate_window),
    );
    check(
        "num_replicas",
        expected.num_replicas.max(1).to_string(),
        actual.num_replicas.max(1).to_string(),
    );
    out
}

fn limit(n: i64) -> String {
    if n < 0 {
        "unlimited (-1)".to_string()
    } else {
        n.to_string()
    }
}

fn age(d: Duration) -> String {
    if d.is_zero() {
        "unlimited (0)".to_string()
    } else {
        format!("{d:?}")
    }
}
