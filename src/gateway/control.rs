//! The Redis control channel (`gateway.redis.gatewaycontrolqueue`): the master subscribes to it
//! and the `console` command publishes to it. A command is either a plain text line (as the
//! original console sent them; no reply) or JSON `{"command": "<line>", "reply": "<channel>"}`,
//! whose answer the master publishes as JSON on the reply channel.
//!
//! Commands: `restart [immediate|graceful] [ms]`, `shutdown CODE [immediate|graceful] [ms]`,
//! `loglevel LEVEL`, `clientmessageresendinterval MS`, `clientcount`, `status`, and
//! `push USERID|* JSON` (emits `push` with the JSON object to one user's sockets or to every
//! client, on every worker).

use std::time::Duration;

use futures_util::StreamExt;
use redis::{AsyncCommands, IntoConnectionInfo, ProtocolVersion, RedisConnectionInfo};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{LogLevel, RedisConfig};

/// Default pause between hard-stopped workers in `restart immediate`.
pub const DEFAULT_RESTART_INTERVAL: Duration = Duration::from_millis(500);
/// Longest pause between two attempts to reach Redis.
const MAX_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unknown command {0:?}")]
    Unknown(String),
    #[error("{0}")]
    Usage(&'static str),
    #[error("no reply within {0:?}")]
    NoReply(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Immediate,
    Graceful,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Restart {
        mode: Mode,
        interval: Option<Duration>,
    },
    Shutdown {
        code: String,
        mode: Mode,
        timeout: Option<Duration>,
    },
    LogLevel(LogLevel),
    ResendInterval(Duration),
    ClientCount,
    Status,
    Push {
        audience: super::Audience,
        data: Value,
    },
}

impl Command {
    /// Parses one command line. The command word and mode are case-insensitive; the shutdown
    /// code is compared as written.
    pub fn parse(line: &str) -> Result<Command, ControlError> {
        let mut words = line.split_whitespace();
        let word = words.next().unwrap_or("").to_ascii_lowercase();
        let rest: Vec<&str> = words.collect();
        let mode = |w: Option<&&str>| match w.map(|w| w.to_ascii_lowercase()) {
            Some(m) if m == "immediate" => Mode::Immediate,
            _ => Mode::Graceful,
        };
        let ms = |w: Option<&&str>, what: &'static str| -> Result<Option<Duration>, ControlError> {
            w.map(|w| {
                w.parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| ControlError::Usage(what))
            })
            .transpose()
        };
        match word.as_str() {
            "restart" => {
                // `restart 500` = graceful, 500 ms.
                let (mode_word, ms_word) = match rest.first() {
                    Some(w) if w.parse::<u64>().is_ok() => (None, rest.first()),
                    _ => (rest.first(), rest.get(1)),
                };
                Ok(Command::Restart {
                    mode: mode(mode_word),
                    interval: ms(ms_word, "usage: restart [immediate|graceful] [ms]")?,
                })
            }
            "shutdown" => {
                const USAGE: &str = "usage: shutdown CODE [immediate|graceful] [ms]";
                let code = rest.first().ok_or(ControlError::Usage(USAGE))?;
                Ok(Command::Shutdown {
                    code: (*code).to_string(),
                    mode: mode(rest.get(1)),
                    timeout: ms(rest.get(2), USAGE)?,
                })
            }
            "loglevel" => {
                let level =
                    rest.first()
                        .and_then(|l| l.parse().ok())
                        .ok_or(ControlError::Usage(
                            "usage: loglevel error|warn|info|debug|trace",
                        ))?;
                Ok(Command::LogLevel(level))
            }
            "clientmessageresendinterval" => {
                const USAGE: &str = "usage: clientmessageresendinterval MS (> 0)";
                match ms(rest.first(), USAGE)? {
                    Some(d) if !d.is_zero() => Ok(Command::ResendInterval(d)),
                    _ => Err(ControlError::Usage(USAGE)),
                }
            }
            "push" => {
                const USAGE: &str = "usage: push USERID|* {JSON object}";
                // The JSON is the rest of the line as written, spaces included.
                let after_word = line.trim_start()[word.len()..].trim_start();
                let (target, json) = after_word
                    .split_once(char::is_whitespace)
                    .ok_or(ControlError::Usage(USAGE))?;
                let data = match serde_json::from_str(json.trim()) {
                    Ok(data @ Value::Object(_)) => data,
                    _ => return Err(ControlError::Usage(USAGE)),
                };
                let audience = match target {
                    "*" => super::Audience::All,
                    user => super::Audience::User(user.to_string()),
                };
                Ok(Command::Push { audience, data })
            }
            "clientcount" => Ok(Command::ClientCount),
            "status" => Ok(Command::Status),
            _ => Err(ControlError::Unknown(word)),
        }
    }

    /// The command as it may be logged (never the shutdown code).
    pub fn redacted(&self) -> String {
        match self {
            Command::Shutdown { mode, timeout, .. } => {
                format!("shutdown *** {mode:?} {timeout:?}")
            }
            other => format!("{other:?}"),
        }
    }
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
    pub command: Result<Command, ControlError>,
    pub reply: Option<String>,
}

/// A client for `gateway.redis.*` speaking `protocol` (the adapter needs RESP3 pushes).
pub(crate) fn client(
    config: &RedisConfig,
    protocol: ProtocolVersion,
) -> Result<redis::Client, ControlError> {
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
    let mut retry = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    tracing::info!(channel, "listening for control commands on Redis");
                    retry = Duration::from_millis(100);
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let payload: String = msg.get_payload().unwrap_or_default();
                        let envelope = Envelope::decode(&payload);
                        let incoming = Incoming {
                            command: Command::parse(&envelope.command),
                            reply: envelope.reply,
                        };
                        if commands.send(incoming).await.is_err() {
                            return;
                        }
                    }
                    tracing::warn!("lost the Redis control channel; reconnecting");
                }
                Err(e) => tracing::warn!("cannot subscribe to the control channel: {e}"),
            },
            Err(e) => tracing::warn!(
                retry_ms = retry.as_millis() as u64,
                "Redis unreachable for the control channel: {e}"
            ),
        }
        if commands.is_closed() {
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
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
    pub async fn connect(config: &RedisConfig) -> Result<Console, ControlError> {
        let client = client(config, ProtocolVersion::RESP2)?;
        let reply = format!(
            "{}.reply.{}",
            config.control_channel,
            hex::encode(super::session::random_bytes::<8>())
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
    pub async fn send(&mut self, line: &str, wait: Duration) -> Result<Value, ControlError> {
        let envelope = Envelope {
            command: line.to_string(),
            reply: Some(self.reply.clone()),
        };
        let json = serde_json::to_string(&envelope).unwrap_or_default();
        let receivers: i64 = self.publisher.publish(&self.channel, json).await?;
        if receivers == 0 {
            return Err(ControlError::Usage(
                "no master listens on the control channel",
            ));
        }
        match tokio::time::timeout(wait, self.replies.next()).await {
            Ok(Some(msg)) => {
                let payload: String = msg.get_payload()?;
                Ok(serde_json::from_str(&payload).unwrap_or(Value::String(payload)))
            }
            _ => Err(ControlError::NoReply(wait)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_with_arguments() {
        assert_eq!(
            Command::parse("RESTART immediate 250").unwrap(),
            Command::Restart {
                mode: Mode::Immediate,
                interval: Some(Duration::from_millis(250))
            }
        );
        assert_eq!(
            Command::parse("restart").unwrap(),
            Command::Restart {
                mode: Mode::Graceful,
                interval: None
            }
        );
        assert_eq!(
            Command::parse("restart 100").unwrap(),
            Command::Restart {
                mode: Mode::Graceful,
                interval: Some(Duration::from_millis(100))
            }
        );
        assert_eq!(
            Command::parse("shutdown PaSs immediate").unwrap(),
            Command::Shutdown {
                code: "PaSs".into(),
                mode: Mode::Immediate,
                timeout: None
            }
        );
        assert!(
            !Command::parse("shutdown PaSs")
                .unwrap()
                .redacted()
                .contains("PaSs")
        );
        assert_eq!(
            Command::parse("loglevel verbose").unwrap(),
            Command::LogLevel(LogLevel::Debug)
        );
        assert_eq!(
            Command::parse("clientmessageresendinterval 1000").unwrap(),
            Command::ResendInterval(Duration::from_secs(1))
        );
        assert_eq!(Command::parse("clientcount").unwrap(), Command::ClientCount);
        assert_eq!(
            Command::parse(r#"PUSH 42 {"cn": "Notice", "text": "a b"}"#).unwrap(),
            Command::Push {
                audience: crate::gateway::Audience::User("42".into()),
                data: serde_json::json!({"cn": "Notice", "text": "a b"})
            }
        );
        assert!(matches!(
            Command::parse(r#"push * {"cn":"Notice"}"#),
            Ok(Command::Push {
                audience: crate::gateway::Audience::All,
                ..
            })
        ));
        assert!(Command::parse("push 42").is_err());
        assert!(Command::parse("push 42 [1]").is_err());
        assert!(Command::parse("push 42 {oops").is_err());
        assert!(Command::parse("loglevel loud").is_err());
        assert!(Command::parse("clientmessageresendinterval 0").is_err());
        assert!(Command::parse("shutdown").is_err());
        assert!(matches!(
            Command::parse("reboot"),
            Err(ControlError::Unknown(_))
        ));
    }

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
