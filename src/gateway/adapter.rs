//! The socket.io Redis adapter: rooms and broadcasts span every worker of every host that shares
//! the same Redis and control channel (`gateway.redis.*`).
//!
//! socketioxide-redis does the protocol; this module gives it a [`Driver`] that keeps working
//! through Redis outages. The crate's own driver connects once and gives up: a worker started
//! while Redis is down would have no `/` namespace at all (socketioxide registers a namespace only
//! once its adapter has subscribed), and one that lost Redis would never hear broadcasts again.
//! Here the connection is a [`ConnectionManager`] (lazy, reconnecting, re-subscribing), and a
//! subscription that cannot be made yet is retried in the background, so the worker serves its
//! own clients whatever Redis does; only cross-worker broadcasts wait for Redis.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, FromRedisValue, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::sync::mpsc;

use crate::config::RedisConfig;
use crate::console::channel::{self, ChannelError};

/// The adapter every namespace of a worker uses.
pub type Adapter = CustomRedisAdapter<socketioxide::adapter::Emitter, PubSub>;
/// A socket.io socket of this gateway.
pub type SocketRef = socketioxide::extract::SocketRef<Adapter>;

/// Longest pause between two attempts to subscribe while Redis is unreachable.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The room of every socket of one logged-in user (all their devices, on any worker).
pub fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// The adapter's state for [`socketioxide::SocketIoBuilder::with_adapter`]. Its Redis channels
/// are prefixed with the control channel's name, so clusters that share a Redis but not a control
/// channel do not see each other's broadcasts.
pub fn constructor(config: &RedisConfig) -> Result<RedisAdapterCtr<PubSub>, ChannelError> {
    let prefix = format!("{}.socket.io", config.control_channel);
    Ok(RedisAdapterCtr::new_with_driver(
        PubSub::new(config)?,
        RedisAdapterConfig::new().with_prefix(prefix),
    ))
}

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// Redis pub/sub for the adapter over one reconnecting RESP3 connection.
#[derive(Clone)]
pub struct PubSub {
    connection: ConnectionManager,
    handlers: Handlers,
}

impl PubSub {
    /// Sets the connection up without touching the network (it connects on first use).
    fn new(config: &RedisConfig) -> Result<PubSub, ChannelError> {
        let handlers = Handlers::default();
        let routes = handlers.clone();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(MAX_RETRY)
            .set_automatic_resubscription()
            .set_push_sender(move |push: PushInfo| {
                route(push, &routes);
                Ok::<(), std::convert::Infallible>(())
            });
        let client = channel::client(config, redis::ProtocolVersion::RESP3)?;
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(PubSub {
            connection,
            handlers,
        })
    }
}

/// Hands a published message to the stream subscribed to its channel.
fn route(push: PushInfo, handlers: &Handlers) {
    if !matches!(push.kind, PushKind::Message) {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(channel), Ok(payload)) = (
        String::from_redis_value(channel),
        Vec::<u8>::from_redis_value(payload),
    ) else {
        tracing::warn!("unreadable message from the Redis adapter channel");
        return;
    };
    let handlers = handlers.read().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = handlers.get(&channel)
        && tx.try_send((channel, payload)).is_err()
    {
        tracing::warn!("socket.io adapter: a Redis message was dropped (its reader is behind)");
    }
}

impl Driver for PubSub {
    type Error = redis::RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        self.connection
            .clone()
            .publish::<_, _, redis::Value>(chan, val)
            .await?;
        Ok(())
    }

    /// Never fails: while Redis is unreachable the subscription is retried in the background
    /// (until it is made, or until nobody reads the stream any more).
    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (tx, rx) = mpsc::channel(size);
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(chan.clone(), tx.clone());
        let mut connection = self.connection.clone();
        tokio::spawn(async move {
            let mut retry = Duration::from_millis(100);
            loop {
                match connection.subscribe(&chan).await {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(
                        channel = chan,
                        retry_ms = retry.as_millis() as u64,
                        "socket.io adapter cannot subscribe on Redis yet: {e}"
                    ),
                }
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
            }
        });
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&chan);
        self.connection.clone().unsubscribe(chan).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(count)
    }
}
