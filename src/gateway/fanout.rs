//! Pushes that reach clients on every worker of every host sharing the cluster's Redis: the
//! console's `push USER|* JSON` today. A push is published once on the Redis channel
//! `<gateway.redis.gatewaycontrolqueue>.push`; every worker subscribes to it and hands the push
//! to its own connections: every one (`*`), or the sockets of one logged-in user.
//!
//! Inside a worker, each connection has a [`Mailbox`]: a queue that holds nothing (and allocates
//! nothing) until a push is waiting, and a wake-up for its task. The [`Registry`] maps users to
//! their connections' mailboxes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use super::Audience;
use crate::config::RedisConfig;
use crate::console::channel::{self, ChannelError};
use crate::metrics::{Broker, local};
use crate::realtime::PubMsg;

/// Longest pause between two attempts to reach Redis.
const MAX_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    #[error("cannot publish the push on Redis")]
    Redis(#[from] redis::RedisError),
    #[error("no worker listens for pushes on Redis channel {0:?}")]
    NoListener(String),
}

/// What other tasks hand a connection.
#[derive(Debug, Clone)]
pub enum Mail {
    /// A `push` with this JSON object (the console's).
    Push(Arc<[u8]>),
    /// A publication of the socket's realtime channel.
    Realtime(String, PubMsg),
    /// The realtime hub dropped the socket's subscription of this channel.
    RealtimeLost(String),
}

/// One connection's incoming mail.
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<Vec<Mail>>,
    arrived: Notify,
}

impl Mailbox {
    pub(crate) fn put(&self, mail: Mail) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(mail);
        self.arrived.notify_one();
    }

    /// Resolves once a push is waiting (at once if one is).
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// The mail waiting, oldest first.
    pub fn take(&self) -> Vec<Mail> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// This worker's connections, and which user each belongs to.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    mailboxes: HashMap<u64, Arc<Mailbox>>,
    users: HashMap<String, Vec<u64>>,
}

/// A connection's place in the registry; leaving it (drop) forgets the connection.
pub struct Membership {
    registry: Arc<Registry>,
    id: u64,
    pub mailbox: Arc<Mailbox>,
    user: Option<String>,
}

impl Registry {
    pub fn join(self: &Arc<Self>) -> Membership {
        let mailbox = Arc::new(Mailbox::default());
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        inner.mailboxes.insert(id, mailbox.clone());
        Membership {
            registry: self.clone(),
            id,
            mailbox,
            user: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `body` to every local connection of `audience`; returns how many.
    pub fn deliver(&self, audience: &Audience, body: Arc<[u8]>) -> usize {
        let inner = self.lock();
        let mut count = 0;
        let mut put = |id: &u64| {
            if let Some(mailbox) = inner.mailboxes.get(id) {
                mailbox.put(Mail::Push(body.clone()));
                count += 1;
            }
        };
        match audience {
            Audience::All => inner.mailboxes.keys().for_each(&mut put),
            Audience::User(user) => inner.users.get(user).into_iter().flatten().for_each(put),
        }
        count
    }
}

impl Membership {
    /// The connection now belongs to `user` (or to nobody).
    pub fn set_user(&mut self, user: Option<&str>) {
        if self.user.as_deref() == user {
            return;
        }
        let mut inner = self.registry.lock();
        if let Some(old) = self.user.take() {
            remove_user(&mut inner, &old, self.id);
        }
        if let Some(user) = user {
            inner
                .users
                .entry(user.to_string())
                .or_default()
                .push(self.id);
            self.user = Some(user.to_string());
        }
    }
}

fn remove_user(inner: &mut Inner, user: &str, id: u64) {
    if let Some(ids) = inner.users.get_mut(user) {
        ids.retain(|i| *i != id);
        if ids.is_empty() {
            inner.users.remove(user);
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        inner.mailboxes.remove(&self.id);
        if let Some(user) = self.user.take() {
            remove_user(&mut inner, &user, self.id);
        }
    }
}

/// What travels on the Redis channel.
#[derive(Serialize, Deserialize)]
struct Wire {
    audience: Audience,
    data: Value,
}

/// The Redis side: publishes pushes, and delivers what arrives to the local registry.
pub struct Fanout {
    channel: String,
    publisher: redis::aio::ConnectionManager,
}

impl Fanout {
    /// Starts listening on Redis (in the background, reconnecting) for pushes to `registry`.
    /// Never fails for Redis being down: pushes wait for it to come back.
    pub fn start(config: &RedisConfig, registry: Arc<Registry>) -> Result<Fanout, ChannelError> {
        let channel = format!("{}.push", config.control_channel);
        let client = channel::client(config, redis::ProtocolVersion::RESP2)?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let publisher =
            redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), manager)?;
        local::broker_connected(Broker::Redis, false);
        tokio::spawn(listen(client, channel.clone(), Arc::downgrade(&registry)));
        Ok(Fanout { channel, publisher })
    }

    /// Publishes `data` for `audience` on every worker.
    pub fn push(
        &self,
        audience: Audience,
        data: Value,
    ) -> impl Future<Output = Result<(), FanoutError>> + Send + 'static {
        let mut publisher = self.publisher.clone();
        let channel = self.channel.clone();
        async move {
            let wire = serde_json::to_string(&Wire { audience, data }).unwrap_or_default();
            let receivers: i64 = publisher.publish(&channel, wire).await?;
            if receivers == 0 {
                return Err(FanoutError::NoListener(channel));
            }
            Ok(())
        }
    }
}

/// Subscribes to the push channel and delivers what arrives, reconnecting with backoff, until
/// the worker's registry is gone.
async fn listen(client: redis::Client, channel: String, registry: std::sync::Weak<Registry>) {
    let mut retry = Duration::from_millis(100);
    while registry.strong_count() > 0 {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    tracing::debug!(channel, "listening for pushes on Redis");
                    local::broker_connected(Broker::Redis, true);
                    retry = Duration::from_millis(100);
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let Some(registry) = registry.upgrade() else {
                            return;
                        };
                        deliver(&registry, message.get_payload_bytes());
                    }
                    local::broker_connected(Broker::Redis, false);
                    tracing::warn!(channel, "lost the Redis push channel; reconnecting");
                }
                Err(e) => tracing::warn!(channel, "cannot subscribe to the push channel: {e}"),
            },
            Err(e) => tracing::warn!(
                retry_ms = retry.as_millis() as u64,
                "Redis unreachable for pushes: {e}"
            ),
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

fn deliver(registry: &Registry, payload: &[u8]) {
    let wire: Wire = match serde_json::from_slice(payload) {
        Ok(wire) => wire,
        Err(e) => return tracing::warn!("unreadable push on the Redis push channel: {e}"),
    };
    let body: Arc<[u8]> = serde_json::to_vec(&wire.data).unwrap_or_default().into();
    let count = registry.deliver(&wire.audience, body);
    tracing::debug!(count, "push handed to local clients");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_reach_every_mailbox_or_one_users() {
        let registry = Arc::new(Registry::default());
        let mut a = registry.join();
        let mut b = registry.join();
        let c = registry.join();
        a.set_user(Some("u1"));
        b.set_user(Some("u1"));
        assert_eq!(
            registry.deliver(&Audience::User("u1".into()), b"{}"[..].into()),
            2
        );
        assert_eq!(registry.deliver(&Audience::All, b"{}"[..].into()), 3);
        b.set_user(Some("u2"));
        assert_eq!(
            registry.deliver(&Audience::User("u1".into()), b"{}"[..].into()),
            1
        );
        assert_eq!(a.mailbox.take().len(), 3);
        assert_eq!(c.mailbox.take().len(), 1);
        drop(a);
        assert_eq!(
            registry.deliver(&Audience::User("u1".into()), b"{}"[..].into()),
            0
        );
        assert!(
            !registry.lock().users.contains_key("u1"),
            "no empty user entries kept"
        );
    }
}
