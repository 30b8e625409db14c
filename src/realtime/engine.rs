//! The shared engine in Redis (`gateway.redis.*`): per-channel streams (offset +1 per
//! publication, an epoch, the last `historySize` publications for `historyTtl`), idempotency
//! keys, presence with a TTL, and the fan-out to the workers whose clients hold a channel.
//!
//! As Centrifugo's Redis engine does (centrifugal/centrifuge `broker_redis.go`,
//! `presence_redis.go`): a publication is one Lua script that bumps the offset, appends to the
//! history stream and PUBLISHes the publication on the channel's Redis channel, so history and
//! live delivery never disagree on offsets. Each worker SUBSCRIBEs the Redis channels of the
//! channels its clients hold and hands each publication to its local subscribers through the
//! [`hub`](super::hub). Keys are prefixed with `<gateway.redis.gatewaycontrolqueue>.rt.`, so
//! clusters sharing a Redis but not a control channel are apart (as the socket.io adapter is).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Script, Value as RedisValue};

use super::hub::{Hub, PubMsg};
use crate::config::{NamespaceConfig, RedisConfig};

/// How long offset and epoch outlive a channel's last publication (Centrifugo's
/// `channel.history_meta_ttl`, 720 h).
const META_TTL: Duration = Duration::from_secs(720 * 3600);
/// How long an idempotency key keeps its first result (Centrifugo:
/// `defaultIdempotentResultExpireSeconds`).
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(300);
/// Most publications one recovery returns (`client.recovery_max_publication_limit`).
pub const RECOVERY_LIMIT: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis gave an unreadable answer")]
    Parse(#[from] redis::ParsingError),
    #[error("Redis gave an answer of an unexpected shape: {0}")]
    Shape(&'static str),
    #[error("cannot set up Redis")]
    Setup(#[source] crate::console::channel::ChannelError),
}

/// A publication to make.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    pub channel: &'a str,
    /// The publication JSON without `offset`: `{"data":...,"tags":...}`.
    pub body: &'a str,
    pub idempotency_key: Option<&'a str>,
    /// Leave it out of history (API `skip_history`).
    pub skip_history: bool,
}

/// Where a channel's stream is after a publication (offset 0 and empty epoch: no history).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    pub offset: u64,
    pub epoch: String,
}

/// A slice of a channel's history and the stream's top.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub publications: Vec<PubMsg>,
    pub offset: u64,
    pub epoch: String,
}

/// Which part of the history to read.
#[derive(Debug, Clone, Copy)]
pub enum Range {
    /// Only the top (offset and epoch), no publications.
    Top,
    /// Publications after `offset`, at most `limit` (`None` = all kept), ascending.
    After { offset: u64, limit: Option<usize> },
    /// The oldest `limit` kept (`None` = all), ascending (Centrifugo's history without `since`).
    Oldest { limit: Option<usize> },
    /// The newest `limit` kept, newest first (`reverse` without `since`).
    Newest { limit: Option<usize> },
    /// Publications before `offset`, newest first, at most `limit`.
    Before { offset: u64, limit: Option<usize> },
}

/// The Redis side: one connection for commands, one for the pub/sub fan-out.
#[derive(Clone)]
pub struct Engine {
    commands: ConnectionManager,
    pubsub: ConnectionManager,
    /// Set when the pub/sub connection drops (see [`Engine::keep_pubsub`]).
    pubsub_lost: Arc<PubsubLost>,
    prefix: Arc<str>,
    hub: Arc<Hub>,
}

/// The pub/sub connection dropped, and has not been seen working since.
#[derive(Default)]
struct PubsubLost {
    lost: AtomicBool,
    notify: tokio::sync::Notify,
}

impl PubsubLost {
    fn set(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

static PUBLISH: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, history, idempotency. ARGV: body, size, ttl, meta ttl, new epoch, pub channel,
-- idempotency ttl (0 = none), history (1/0).
if ARGV[7] ~= '0' then
  local previous = redis.call('get', KEYS[3])
  if previous then return {1, previous} end
end
local result = ''
if ARGV[8] == '1' then
  local epoch = redis.call('hget', KEYS[1], 'e')
  if not epoch then
    epoch = ARGV[5]
    redis.call('hset', KEYS[1], 'e', epoch)
    redis.call('del', KEYS[2])
  end
  local offset = redis.call('hincrby', KEYS[1], 's', 1)
  redis.call('expire', KEYS[1], ARGV[4])
  local payload = '{"offset":' .. offset .. ',' .. string.sub(ARGV[1], 2)
  redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[2], offset, 'p', payload)
  redis.call('expire', KEYS[2], ARGV[3])
  redis.call('publish', ARGV[6], epoch .. '\n' .. payload)
  result = offset .. ' ' .. epoch
else
  redis.call('publish', ARGV[6], '\n' .. ARGV[1])
end
if ARGV[7] ~= '0' then redis.call('set', KEYS[3], result, 'EX', ARGV[7]) end
return {0, result}
"#,
    )
});

static HISTORY: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: meta, history. ARGV: mode (top|after|before|oldest|newest), offset, count (-1 = all),
-- new epoch, meta ttl. Returns {top, epoch, id1, pub1, id2, pub2, ...}.
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('hset', KEYS[1], 'e', epoch)
  redis.call('expire', KEYS[1], ARGV[5])
  redis.call('del', KEYS[2])
end
local top = redis.call('hget', KEYS[1], 's') or '0'
local out = {top, epoch}
local mode = ARGV[1]
if mode == 'top' then return out end
local items
local count = tonumber(ARGV[3])
if mode == 'after' then
  local start = tostring(tonumber(ARGV[2]) + 1)
  if count < 0 then items = redis.call('xrange', KEYS[2], start, '+')
  else items = redis.call('xrange', KEYS[2], start, '+', 'COUNT', count) end
elseif mode == 'before' then
  local n = tonumber(ARGV[2]) - 1
  if n < 1 then return out end
  if count < 0 then items = redis.call('xrevrange', KEYS[2], tostring(n), '-')
  else items = redis.call('xrevrange', KEYS[2], tostring(n), '-', 'COUNT', count) end
elseif mode == 'oldest' then
  if count < 0 then items = redis.call('xrange', KEYS[2], '-', '+')
  else items = redis.call('xrange', KEYS[2], '-', '+', 'COUNT', count) end
else
  if count < 0 then items = redis.call('xrevrange', KEYS[2], '+', '-')
  else items = redis.call('xrevrange', KEYS[2], '+', '-', 'COUNT', count) end
end
for _, item in ipairs(items) do
  table.insert(out, item[1])
  table.insert(out, item[2][2])
end
return out
"#,
    )
});

static PRESENCE_GET: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: presence zset, presence info hash. ARGV: now (ms). Drops expired entries first.
local expired = redis.call('zrangebyscore', KEYS[1], '-inf', ARGV[1])
if #expired > 0 then
  redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
  redis.call('hdel', KEYS[2], unpack(expired))
end
return redis.call('hgetall', KEYS[2])
"#,
    )
});

/// A new random epoch (8 letters and digits).
pub fn new_epoch() -> String {
    (0..8).map(|_| fastrand::alphanumeric()).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Engine {
    /// Sets both connections up without touching the network (they connect on first use and
    /// reconnect, re-subscribing, after a failure).
    pub fn new(config: &RedisConfig, hub: Arc<Hub>) -> Result<Engine, EngineError> {
        let prefix: Arc<str> = format!("{}.rt.", config.control_channel).into();
        let settings = || {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(5))
        };
        let client = crate::console::channel::client(config, redis::ProtocolVersion::RESP3)
            .map_err(EngineError::Setup)?;
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), settings())?;
        let route_hub = hub.clone();
        let pubsub_lost = Arc::new(PubsubLost::default());
        let route_lost = pubsub_lost.clone();
        let pub_prefix = format!("{prefix}pub.");
        let pubsub = ConnectionManager::new_lazy_with_config(
            client,
            settings()
                .set_automatic_resubscription()
                .set_push_sender(move |push: PushInfo| {
                    if matches!(push.kind, PushKind::Disconnection) {
                        route_lost.set();
                    }
                    route(push, &pub_prefix, &route_hub);
                    Ok::<(), std::convert::Infallible>(())
                }),
        )?;
        Ok(Engine {
            commands,
            pubsub,
            pubsub_lost,
            prefix,
            hub,
        })
    }

    /// Brings the pub/sub connection back after it dropped, however long Redis is away, until
    /// `closing`. The connection manager tries a few times on its own, then waits for the
    /// next command, which the pub/sub connection may never get: so a PING goes out (every
    /// 100 ms doubling to 2 s) until one is answered, the subscriptions having been made again
    /// first. Then every subscriber recovers what went by meanwhile from the history
    /// ([`Hub::lose_positions`]).
    pub async fn keep_pubsub(&self, mut closing: tokio::sync::watch::Receiver<bool>) {
        loop {
            if !self.pubsub_lost.lost.load(Ordering::SeqCst) {
                tokio::select! {
                    () = self.pubsub_lost.notify.notified() => {}
                    _ = closing.wait_for(|c| *c) => return,
                }
                continue;
            }
            let mut pause =
                crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
            loop {
                let ping = redis::cmd("PING")
                    .query_async::<()>(&mut self.pubsub.clone())
                    .await;
                match ping {
                    Ok(()) => break,
                    Err(e) => tracing::debug!("realtime: Redis pub/sub not back yet: {e}"),
                }
                tokio::select! {
                    () = tokio::time::sleep(pause.next_delay()) => {}
                    _ = closing.wait_for(|c| *c) => return,
                }
            }
            self.pubsub_lost.lost.store(false, Ordering::SeqCst);
            let told = self.hub.lose_positions();
            tracing::info!(
                subscriptions = told,
                "realtime: Redis pub/sub connection back; subscribers recover from the history"
            );
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    fn key(&self, kind: &str, channel: &str) -> String {
        format!("{}{kind}.{channel}", self.prefix)
    }

    /// The Redis channel a channel's publications are published on.
    fn pub_channel(&self, channel: &str) -> String {
        self.key("pub", channel)
    }

    /// Publishes into the channel's history (if `ns` keeps one) and to every subscriber on any
    /// worker. A repeated idempotency key (per channel, 300 s) publishes nothing and gives the
    /// first result.
    pub async fn publish(
        &self,
        ns: &NamespaceConfig,
        publish: &Publish<'_>,
    ) -> Result<Published, EngineError> {
        let history = ns.history() && !publish.skip_history;
        let idempotency = publish
            .idempotency_key
            .filter(|k| !k.is_empty())
            .map(|k| self.key("idem", &format!("{}.{k}", publish.channel)));
        let result: (i64, String) = PUBLISH
            .key(self.key("meta", publish.channel))
            .key(self.key("history", publish.channel))
            .key(idempotency.as_deref().unwrap_or(""))
            .arg(publish.body)
            .arg(ns.history_size.max(1))
            .arg(ns.history_ttl.as_secs().max(1))
            .arg(META_TTL.as_secs())
            .arg(new_epoch())
            .arg(self.pub_channel(publish.channel))
            .arg(if idempotency.is_some() {
                IDEMPOTENCY_TTL.as_secs()
            } else {
                0
            })
            .arg(if history { "1" } else { "0" })
            .invoke_async(&mut self.commands.clone())
            .await?;
        let (_duplicate, text) = result;
        Ok(match text.split_once(' ') {
            Some((offset, epoch)) => Published {
                offset: offset.parse().map_err(|_| EngineError::Shape("offset"))?,
                epoch: epoch.to_string(),
            },
            None => Published::default(),
        })
    }

    /// Reads `range` of the channel's history and its top (creating the epoch of a channel
    /// that has none yet, so that a first subscriber has a position to recover from).
    pub async fn history(&self, channel: &str, range: Range) -> Result<History, EngineError> {
        let (mode, offset, count) = match range {
            Range::Top => ("top", 0, 0),
            Range::After { offset, limit } => ("after", offset, count(limit)),
            Range::Oldest { limit } => ("oldest", 0, count(limit)),
            Range::Newest { limit } => ("newest", 0, count(limit)),
            Range::Before { offset, limit } => ("before", offset, count(limit)),
        };
        let reply: Vec<RedisValue> = HISTORY
            .key(self.key("meta", channel))
            .key(self.key("history", channel))
            .arg(mode)
            .arg(offset)
            .arg(count)
            .arg(new_epoch())
            .arg(META_TTL.as_secs())
            .invoke_async(&mut self.commands.clone())
            .await?;
        let mut items = reply.into_iter();
        let top: String = next(&mut items, "top")?;
        let epoch: String = next(&mut items, "epoch")?;
        let epoch: Arc<str> = epoch.into();
        let mut publications = Vec::new();
        while let Some(id) = items.next() {
            let id: String = redis::from_redis_value(id)?;
            let json: String = next(&mut items, "publication")?;
            let offset = id
                .split('-')
                .next()
                .and_then(|o| o.parse().ok())
                .ok_or(EngineError::Shape("stream id"))?;
            publications.push(PubMsg {
                offset,
                epoch: epoch.clone(),
                json: json.into(),
            });
        }
        Ok(History {
            publications,
            offset: top.parse().map_err(|_| EngineError::Shape("top"))?,
            epoch: epoch.to_string(),
        })
    }

    /// Drops the channel's history; offset and epoch stay (as Centrifugo's `history_remove`).
    pub async fn history_remove(&self, channel: &str) -> Result<(), EngineError> {
        redis::cmd("DEL")
            .arg(self.key("history", channel))
            .query_async::<()>(&mut self.commands.clone())
            .await?;
        Ok(())
    }

    /// Starts receiving the channel's publications on this worker (idempotent).
    pub async fn listen(&self, channel: &str) -> Result<(), EngineError> {
        self.pubsub
            .clone()
            .subscribe(self.pub_channel(channel))
            .await?;
        Ok(())
    }

    /// Stops receiving the channel's publications, unless a subscriber joined meanwhile.
    pub async fn unlisten(&self, channel: &str) -> Result<(), EngineError> {
        let pub_channel = self.pub_channel(channel);
        self.pubsub.clone().unsubscribe(&pub_channel).await?;
        if self.hub.has(channel) {
            self.pubsub.clone().subscribe(pub_channel).await?;
        }
        Ok(())
    }

    /// Adds or refreshes presence entries: `(channel, client id, ClientInfo JSON)`, each kept
    /// for `ttl` unless refreshed.
    pub async fn presence_add(
        &self,
        entries: &[(String, String, String)],
        ttl: Duration,
    ) -> Result<(), EngineError> {
        if entries.is_empty() {
            return Ok(());
        }
        let expires = now_ms() + ttl.as_millis() as u64;
        let mut pipe = redis::pipe();
        for (channel, client, info) in entries {
            let zset = self.key("presence", channel);
            let hash = self.key("presence_info", channel);
            pipe.zadd(&zset, client, expires).ignore();
            pipe.hset(&hash, client, info).ignore();
            // The keys themselves go once no worker refreshes them.
            pipe.pexpire(&zset, ttl.as_millis() as i64).ignore();
            pipe.pexpire(&hash, ttl.as_millis() as i64).ignore();
        }
        pipe.query_async::<()>(&mut self.commands.clone()).await?;
        Ok(())
    }

    pub async fn presence_remove(&self, channel: &str, client: &str) -> Result<(), EngineError> {
        let mut pipe = redis::pipe();
        pipe.zrem(self.key("presence", channel), client).ignore();
        pipe.hdel(self.key("presence_info", channel), client)
            .ignore();
        pipe.query_async::<()>(&mut self.commands.clone()).await?;
        Ok(())
    }

    /// Every live presence entry of the channel: client id -> ClientInfo JSON.
    pub async fn presence(&self, channel: &str) -> Result<Vec<(String, String)>, EngineError> {
        let entries: Vec<(String, String)> = PRESENCE_GET
            .key(self.key("presence", channel))
            .key(self.key("presence_info", channel))
            .arg(now_ms())
            .invoke_async(&mut self.commands.clone())
            .await?;
        Ok(entries)
    }

    /// Writes this worker's node entry (for the API's `info`), kept for `ttl`.
    pub async fn node_alive(
        &self,
        uid: &str,
        json: &str,
        ttl: Duration,
    ) -> Result<(), EngineError> {
        let key = format!("{}nodes", self.prefix);
        let mut pipe = redis::pipe();
        pipe.zadd(&key, uid, now_ms() + ttl.as_millis() as u64)
            .ignore();
        pipe.hset(format!("{key}.info"), uid, json).ignore();
        pipe.query_async::<()>(&mut self.commands.clone()).await?;
        Ok(())
    }

    /// The node entries of every live worker.
    pub async fn nodes(&self) -> Result<Vec<String>, EngineError> {
        let key = format!("{}nodes", self.prefix);
        let entries: Vec<(String, String)> = PRESENCE_GET
            .key(&key)
            .key(format!("{key}.info"))
            .arg(now_ms())
            .invoke_async(&mut self.commands.clone())
            .await?;
        Ok(entries.into_iter().map(|(_, json)| json).collect())
    }

    pub async fn node_gone(&self, uid: &str) -> Result<(), EngineError> {
        let key = format!("{}nodes", self.prefix);
        let mut pipe = redis::pipe();
        pipe.zrem(&key, uid).ignore();
        pipe.hdel(format!("{key}.info"), uid).ignore();
        pipe.query_async::<()>(&mut self.commands.clone()).await?;
        Ok(())
    }
}

fn count(limit: Option<usize>) -> i64 {
    limit.map_or(-1, |n| n as i64)
}

fn next<T: redis::FromRedisValue>(
    items: &mut impl Iterator<Item = RedisValue>,
    what: &'static str,
) -> Result<T, EngineError> {
    let value = items.next().ok_or(EngineError::Shape(what))?;
    Ok(redis::from_redis_value(value)?)
}

/// Hands a publication from Redis to the hub: `<epoch>\n<publication JSON>` on
/// `<prefix>pub.<channel>`.
fn route(push: PushInfo, pub_prefix: &str, hub: &Hub) {
    if !matches!(push.kind, PushKind::Message) {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(channel), Ok(payload)) = (
        redis::from_redis_value::<String>(channel),
        redis::from_redis_value::<String>(payload),
    ) else {
        tracing::warn!("realtime: unreadable message from Redis pub/sub");
        return;
    };
    let Some(channel) = channel.strip_prefix(pub_prefix) else {
        return;
    };
    let Some((epoch, json)) = payload.split_once('\n') else {
        tracing::warn!(channel, "realtime: a publication without its epoch line");
        return;
    };
    hub.deliver(channel, PubMsg::from_redis(epoch, json));
}
