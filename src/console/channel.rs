//! The Redis control channel (`gateway.redis.gatewaycontrolqueue`): the master subscribes to it
//! and the `console` command publishes to it. A command is either a plain text line (as the
//! original console sent them; no reply) or JSON `{"command": "<line>", "reply": "<channel>"}`,
//! whose answer the master publishes as JSON on the reply channel. The commands:
//! [`super::command`].

use std::time::Duration;

use futures_util::StreamExt;
use redis::{AsyncCommands, IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use super::command::{Command, CommandError};
use crate::backoff::Backoff;
use crate::config::RedisConfig;
use crate::metrics::{Broker, local};
/// Longest pause between two attempts to reach Redis.
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("no master listens on the control channel")]
    NoMaster,
    #[error("no reply within {0:?}")]
    NoReply(Duration),
}

/// What travels on the control channel.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

impl Envelope {
    pub fn decode(payload: &str) -> Envelope {
        serde_json::from_str(payload).unwrap_or_else(|_| Envelope {
            command: payload.to_string(),
            reply: None,
        })
    }
}

/// A command for the master, and where to send the answer.
pub struct Incoming {
    pub command: Result<Command, CommandError>,
    pub reply: Option<String>,
}

/// A client for `gateway.redis.*` speaking `protocol`.
pub fn client(
    config: &RedisConfig,
    protocol: ProtocolVersion,
) -> Result<redis::Client, ChannelError> {
    let mut settings = RedisConnectionInfo::default().set_protocol(protocol);
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    let info = (config.host.as_str(), config.port)
        .into_connection_info()?
        .set_redis_settings(settings);
    Ok(redis::Client::open(info)?)
}

/// The master's side: subscribes (and re-subscribes after failures, with backoff) and hands
/// each command to `commands`; publishes what arrives on `replies`. Ends when the master drops
/// `commands`. The master runs on whether Redis is up or not.
pub async fn serve(
    config: RedisConfig,
    commands: mpsc::Sender<Incoming>,
    mut replies: mpsc::Receiver<(String, Value)>,
) {
    let client = match client(&config, ProtocolVersion::RESP2) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("control channel disabled: {e}");
            return;
        }
    };
    let channel = config.control_channel.clone();
    local::broker_connected(Broker::Redis, false);
    let publisher_client = client.clone();
    tokio::spawn(async move {
        let mut conn = None;
        while let Some((reply_to, answer)) = replies.recv().await {
            if conn.is_none() {
                conn = publisher_client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| tracing::warn!("cannot reply on Redis: {e}"))
                    .ok();
            }
            if let Some(c) = conn.as_mut() {
                let sent: Result<i64, _> = c.publish(&reply_to, answer.to_string()).await;
                if let Err(e) = sent {
                    tracing::warn!("cannot reply on Redis: {e}");
                    conn = None;
                }
            }
        }
    });
    let mut retry = RETRY;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    tracing::info!(channel, "listening for control commands on Redis");
                    local::broker_connected(Broker::Redis, true);
                    retry.reset();
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let payload: String = msg.get_payload().unwrap_or_default();
                        // Off the master's event loop: a push carries up to a megabyte of
                        // JSON, and decoding, parsing and sizing it is CPU time the loop's
                        // heartbeats and watchdog must not wait for.
                        let Ok(incoming) = tokio::task::spawn_blocking(move || {
                            let envelope = Envelope::decode(&payload);
                            Incoming {
                                command: Command::parse(&envelope.command),
                                reply: envelope.reply,
                            }
                        })
                        .await
                        else {
                            continue;
                        };
                        if commands.send(incoming).await.is_err() {
                            return;
                        }
                    }
                    local::broker_connected(Broker::Redis, false);
                    tracing::warn!("lost the Redis control channel; reconnecting");
                }
                Err(e) => tracing::warn!("cannot subscribe to the control channel: {e}"),
            },
            Err(e) => tracing::warn!(
                retry_ms = retry.peek().as_millis() as u64,
                "Redis unreachable for the control channel: {e}"
            ),
        }
        if commands.is_closed() {
            return;
        }
        tokio::time::sleep(retry.next_delay()).await;
    }
}

/// The console's side: publishes one command and waits for its answer.
pub struct Console {
    channel: String,
    reply: String,
    publisher: redis::aio::MultiplexedConnection,
    replies: redis::aio::PubSubStream,
}

impl Console {
    pub async fn connect(config: &RedisConfig) -> Result<Console, ChannelError> {
        let client = client(config, ProtocolVersion::RESP2)?;
        let reply = format!(
            "{}.reply.{}",
            config.control_channel,
            hex::encode(crate::gateway::session::random_bytes::<8>())
        );
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&reply).await?;
        Ok(Console {
            channel: config.control_channel.clone(),
            reply,
            publisher: client.get_multiplexed_async_connection().await?,
            replies: pubsub.into_on_message(),
        })
    }

    /// Sends `line` and returns the master's answer.
    pub async fn send(&mut self, line: &str, wait: Duration) -> Result<Value, ChannelError> {
        let envelope = Envelope {
            command: line.to_string(),
            reply: Some(self.reply.clone()),
        };
        let json = serde_json::to_string(&envelope).unwrap_or_default();
        let receivers: i64 = self.publisher.publish(&self.channel, json).await?;
        if receivers == 0 {
            return Err(ChannelError::NoMaster);
        }
        match tokio::time::timeout(wait, self.replies.next()).await {
            Ok(Some(msg)) => {
                let payload: String = msg.get_payload()?;
                Ok(serde_json::from_str(&payload).unwrap_or(Value::String(payload)))
            }
            _ => Err(ChannelError::NoReply(wait)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_and_json_envelopes_decode() {
        let plain = Envelope::decode("clientcount");
        assert_eq!(plain.command, "clientcount");
        assert_eq!(plain.reply, None);
        let json = Envelope::decode(r#"{"command":"status","reply":"gateway.reply.1"}"#);
        assert_eq!(json.command, "status");
        assert_eq!(json.reply.as_deref(), Some("gateway.reply.1"));
    }
}
