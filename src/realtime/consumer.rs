//! The JetStream consumer: every worker pulls from one durable consumer of its own name
//! (`realtime.nats.consumer`, deliver policy new, ack wait 30 s, `realtime.nats.maxAckPending`),
//! as Centrifugo's `nats_jetstream` consumer does (centrifugal/centrifugo
//! `internal/consuming/nats_jetstream.go`), so each message is handled by one worker.
//!
//! A message is the relay's command `{"method":"publish"|"broadcast","payload":{..}}` (the
//! payload may be a JSON string holding JSON; with a `centrifugo-method` header the whole body
//! is the payload). It is acked once the publication is in the channel's history. Malformed
//! commands, other methods and non-retryable API errors are logged and acked (Centrifugo does
//! the same). Internal errors (Redis unreachable) are naked with a backoff from 1 s doubling to
//! 30 s; after `realtime.nats.maxDeliver` deliveries the message is published as a dead letter
//! `{reason, subject, stream_sequence, message}` to `<realtime.nats.deadLetterSubject>.<consumer>`
//! and terminated (Centrifugo retries forever).

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::DeliverPolicy, consumer::pull};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::Realtime;
use super::api::{self, PublishRequest};
use crate::metrics::{Broker, ConsumeResult, Count, local};

/// JetStream's ack wait for our consumer (Centrifugo's).
const ACK_WAIT: Duration = Duration::from_secs(30);
/// First and longest pause before the consumer is set up again after a failure.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Header naming the method, the body then being the bare request (Centrifugo's
/// `method_header`).
const METHOD_HEADER: &str = "centrifugo-method";

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Published (or nothing to do): ack.
    Done,
    /// Not usable, will never be: log and ack.
    Skip(String),
    /// A transient failure: try again later.
    Retry(String),
}

/// What to tell JetStream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Ack,
    /// Redeliver after this delay.
    Nak(Duration),
    /// Give up: dead letter with this reason, then terminate.
    DeadLetter(String),
}

/// The decision for a message delivered `delivered` times (1 = the first time).
pub fn decide(outcome: Outcome, delivered: i64, max_deliver: u32) -> Action {
    match outcome {
        Outcome::Done | Outcome::Skip(_) => Action::Ack,
        Outcome::Retry(reason) if delivered >= i64::from(max_deliver) => {
            Action::DeadLetter(format!("{reason} (given up after {delivered} deliveries)"))
        }
        Outcome::Retry(_) => {
            let step = (delivered.max(1) - 1).min(5) as u32;
            Action::Nak((Duration::from_secs(1) * 2u32.pow(step)).min(Duration::from_secs(30)))
        }
    }
}

#[derive(Deserialize)]
struct CommandMessage {
    method: String,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
}

/// Handles one message body (with the `centrifugo-method` header's value, if any).
pub async fn handle(realtime: &Realtime, method_header: Option<&str>, body: &[u8]) -> Outcome {
    let (method, payload) = match method_header.filter(|m| !m.is_empty()) {
        Some(method) => match serde_json::from_slice::<Box<RawValue>>(body) {
            Ok(payload) => (method.to_string(), payload),
            Err(e) => return Outcome::Skip(format!("the body is not JSON: {e}")),
        },
        None => match serde_json::from_slice::<CommandMessage>(body) {
            Ok(CommandMessage {
                method,
                payload: Some(payload),
            }) => (method, payload),
            Ok(_) => return Outcome::Skip("the command has no payload".to_string()),
            Err(e) => return Outcome::Skip(format!("not a command {{method, payload}}: {e}")),
        },
    };
    // Debezium style: the payload as a JSON string holding the JSON.
    let payload = if payload.get().starts_with('"') {
        match serde_json::from_str::<String>(payload.get())
            .ok()
            .and_then(|text| RawValue::from_string(text).ok())
        {
            Some(inner) => inner,
            None => return Outcome::Skip("the payload string does not hold JSON".to_string()),
        }
    } else {
        payload
    };
    let request: PublishRequest = match serde_json::from_str(payload.get()) {
        Ok(r) => r,
        Err(e) => return Outcome::Skip(format!("bad {method} payload: {e}")),
    };
    let channels: Vec<&str> = match method.as_str() {
        "publish" => vec![request.channel.as_str()],
        "broadcast" if !request.channels.is_empty() => {
            request.channels.iter().map(String::as_str).collect()
        }
        "broadcast" => return Outcome::Skip("broadcast without channels".to_string()),
        other => return Outcome::Skip(format!("method {other:?} is not handled here")),
    };
    let Some(data) = request.data.as_deref() else {
        return Outcome::Skip(format!("{method} without data"));
    };
    let mut failed = None;
    for channel in channels {
        match api::publish(realtime, channel, data, &request).await {
            Ok(_) => {}
            Err(e) if e.is_internal() => {
                failed = Some(format!("publishing to {channel}: {}", e.message))
            }
            Err(e) => tracing::warn!(
                channel,
                code = e.code,
                "realtime consumer: not published (not retried): {}",
                e.message
            ),
        }
    }
    match failed {
        Some(reason) => Outcome::Retry(reason),
        None => Outcome::Done,
    }
}

/// Runs the consumer until the realtime side closes, setting it up again after failures.
pub async fn run(realtime: Realtime) {
    let mut closing = realtime.closing();
    let mut retry = RETRY_MIN;
    loop {
        let session = consume(&realtime);
        let result = tokio::select! {
            result = session => result,
            () = super::closed(&mut closing) => return,
        };
        match result {
            Ok(()) => retry = RETRY_MIN,
            Err(e) => {
                tracing::warn!(
                    retry_ms = retry.as_millis() as u64,
                    "realtime consumer: {e}; trying again"
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = super::closed(&mut closing) => return,
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("cannot connect to NATS")]
    Connect(#[from] async_nats::ConnectError),
    #[error("JetStream stream: {0}")]
    Stream(String),
    #[error("JetStream consumer: {0}")]
    Consumer(String),
    #[error("the message stream ended")]
    Ended,
}

async fn consume(realtime: &Realtime) -> Result<(), ConsumeError> {
    let config = realtime.config().clone();
    let connected = async_nats::ConnectOptions::new()
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => local::broker_connected(Broker::Nats, true),
                async_nats::Event::Disconnected => local::broker_connected(Broker::Nats, false),
                _ => {}
            }
        })
        .connect(&config.nats_url)
        .await;
    local::broker_connected(Broker::Nats, connected.is_ok());
    let client = connected?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(&config.nats_stream)
        .await
        .map_err(|e| ConsumeError::Stream(format!("{}: {e}", config.nats_stream)))?;
    let mut consumer_config = pull::Config {
        durable_name: Some(config.nats_consumer.clone()),
        deliver_policy: DeliverPolicy::New,
        ack_wait: ACK_WAIT,
        max_ack_pending: config.nats_max_ack_pending,
        ..Default::default()
    };
    // One subject as `filter_subject`: `filter_subjects` needs nats-server 2.10.
    match config.nats_subjects.as_slice() {
        [one] => consumer_config.filter_subject = one.clone(),
        many => consumer_config.filter_subjects = many.to_vec(),
    }
    let consumer = stream
        .get_or_create_consumer(&config.nats_consumer, consumer_config)
        .await
        .map_err(|e| ConsumeError::Consumer(format!("{}: {e}", config.nats_consumer)))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| ConsumeError::Consumer(e.to_string()))?;
    tracing::info!(
        consumer = config.nats_consumer,
        stream = config.nats_stream,
        "realtime consumer: consuming"
    );
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("realtime consumer: {e}");
                continue;
            }
        };
        let method = message
            .headers
            .as_ref()
            .and_then(|h| h.get(METHOD_HEADER))
            .map(|v| v.as_str().to_string());
        let outcome = handle(realtime, method.as_deref(), &message.payload).await;
        let (delivered, sequence) = message
            .info()
            .map(|i| (i.delivered, i.stream_sequence))
            .unwrap_or((1, 0));
        let mut result = match &outcome {
            Outcome::Done => ConsumeResult::Published,
            Outcome::Skip(_) => ConsumeResult::Skipped,
            Outcome::Retry(_) => ConsumeResult::Retried,
        };
        if let Outcome::Skip(reason) = &outcome {
            tracing::warn!(
                subject = message.subject.as_str(),
                sequence,
                "realtime consumer: skipped (acked): {reason}"
            );
        }
        let action = decide(outcome, delivered, config.nats_max_deliver);
        if matches!(action, Action::DeadLetter(_)) {
            result = ConsumeResult::DeadLettered;
        }
        local::count(Count::RealtimeConsumed(result));
        let ack = match action {
            Action::Ack => message.ack().await,
            Action::Nak(delay) => {
                tracing::warn!(
                    subject = message.subject.as_str(),
                    sequence,
                    delivered,
                    delay_ms = delay.as_millis() as u64,
                    "realtime consumer: not published yet; redelivered later"
                );
                message.ack_with(AckKind::Nak(Some(delay))).await
            }
            Action::DeadLetter(reason) => {
                dead_letter(&js, &config, &message, sequence, &reason).await;
                message.ack_with(AckKind::Term).await
            }
        };
        if let Err(e) = ack {
            tracing::warn!("realtime consumer: cannot acknowledge: {e}");
        }
    }
    Err(ConsumeError::Ended)
}

async fn dead_letter(
    js: &jetstream::Context,
    config: &crate::config::RealtimeConfig,
    message: &jetstream::Message,
    sequence: u64,
    reason: &str,
) {
    let body = serde_json::from_slice::<serde_json::Value>(&message.payload)
        .unwrap_or_else(|_| String::from_utf8_lossy(&message.payload).into());
    let letter = serde_json::json!({
        "reason": reason,
        "subject": message.subject.as_str(),
        "stream_sequence": sequence,
        "message": body,
    });
    let subject = format!("{}.{}", config.dead_letter_subject, config.nats_consumer);
    tracing::error!(subject, "realtime consumer: dead letter: {letter}");
    match js.publish(subject.clone(), letter.to_string().into()).await {
        Ok(ack) => {
            if let Err(e) = ack.await {
                tracing::error!(
                    subject,
                    "realtime consumer: the dead letter was not stored: {e}"
                );
            }
        }
        Err(e) => tracing::error!(
            subject,
            "realtime consumer: cannot publish the dead letter: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_back_off_then_dead_letter() {
        let retry = || Outcome::Retry("redis down".into());
        assert_eq!(decide(retry(), 1, 5), Action::Nak(Duration::from_secs(1)));
        assert_eq!(decide(retry(), 2, 5), Action::Nak(Duration::from_secs(2)));
        assert_eq!(decide(retry(), 4, 5), Action::Nak(Duration::from_secs(8)));
        assert!(matches!(decide(retry(), 5, 5), Action::DeadLetter(r) if r.contains("redis down")));
        assert_eq!(decide(retry(), 9, 20), Action::Nak(Duration::from_secs(30)));
        assert_eq!(decide(Outcome::Skip("bad".into()), 1, 5), Action::Ack);
        assert_eq!(decide(Outcome::Done, 7, 5), Action::Ack);
    }
}
