//! The worker's one RabbitMQ connection ([`crate::amqp`], on the worker's own thread): a
//! publish channel with publisher confirms, a declare channel, and a small fixed pool of
//! consumer channels shared by all clients (RabbitMQ allows at most 2047 channels on a
//! connection; a worker holds far more clients than that). Each client queue is consumed with
//! manual acks and a prefetch of [`PREFETCH`] per consumer (`basic.qos` with `global = false`).
//!
//! One client never takes the others down: RabbitMQ closes a *channel* for an error one
//! operation caused (a 406 on a declare, a 404 on a queue, an access refusal), and such errors
//! end only that operation. Declares run on a channel of their own; a closed channel is replaced
//! by a new one the next time it is needed, and an operation that was queued behind the failed
//! one (it never ran) is tried again on the new channel; a consumer whose channel closed is
//! started again by its client's connection. Only the loss of the connection itself ends the
//! worker ([`Rabbit::lost`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable};
use futures_util::future::Either;
use tokio::sync::watch;

use crate::amqp::{self, AmqpError, ChannelRef, Confirmed, Connection, Consumer};
use crate::config::RabbitMqConfig;

/// Unacknowledged deliveries RabbitMQ hands one client queue's consumer at a time.
pub const PREFETCH: u16 = 10;
/// Consumer channels per worker.
pub const CONSUMER_CHANNELS: usize = 4;
/// How many times an operation that never ran (its channel closed under it) is tried again.
const RETRIES: usize = 3;

pub use crate::amqp::Settle;

#[derive(Debug, thiserror::Error)]
pub enum RabbitError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] AmqpError),
    #[error("RabbitMQ could not route the message to queue {queue:?} (no such queue)")]
    Unroutable { queue: String },
    #[error("RabbitMQ refused the message for queue {queue:?} (nack)")]
    Nacked { queue: String },
}

impl RabbitError {
    /// The worker's RabbitMQ connection is gone (see [`AmqpError::is_connection_lost`]).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, RabbitError::Amqp(e) if e.is_connection_lost())
    }
}

pub struct Rabbit {
    connection: Connection,
    /// The publish channel (confirms on); replaced if RabbitMQ closed it.
    publish: Mutex<ChannelRef>,
    /// Held while a closed channel is replaced (so that it is replaced once).
    reopening: tokio::sync::Mutex<()>,
    /// The channel client queues are declared and deleted on (a failed declare closes it, not
    /// a consumer channel).
    declare: Mutex<ChannelRef>,
    /// The consumer channel pool.
    consumers: Mutex<Vec<ChannelRef>>,
    next: AtomicUsize,
    durable: bool,
    /// Arguments of client queue declares: none by default, as the Node gateway and the backend
    /// declare them (the backend's own declares of a client queue must match them exactly);
    /// `x-expires` with `gateway.rabbitmq.clientQueueExpires`.
    queue_arguments: FieldTable,
}

/// A consumed client queue.
pub struct Subscription {
    connection: Connection,
    pub consumer: Consumer,
}

impl Subscription {
    /// Asks RabbitMQ to stop the consumer. Deliveries already on their way still arrive until
    /// the consumer's stream ends (at the broker's cancel-ok): the caller settles them (they
    /// would stay unacked on the shared channel otherwise).
    pub fn cancel(&self) {
        self.connection
            .cancel(self.consumer.channel, &self.consumer.tag);
    }
}

/// Which of the worker's channels.
#[derive(Clone, Copy)]
enum Role {
    Publish,
    Declare,
    Consumer(usize),
}

impl Rabbit {
    /// Connects and opens the channels. Must run inside a tokio runtime.
    pub async fn connect(config: &RabbitMqConfig, name: &str) -> Result<Rabbit, RabbitError> {
        let options = amqp::Options {
            host: config.host.clone(),
            port: config.port,
            vhost: config.vhost.clone(),
            login: config.login.clone(),
            password: config.password.clone(),
            name: name.to_string(),
            heartbeat: None,
        };
        let connection = Connection::open(&options).await?;
        // Opened together: each is a round trip, and a worker is not ready before they are.
        let publish = open(&connection, Role::Publish);
        let declare = open(&connection, Role::Declare);
        let consumers = futures_util::future::try_join_all(
            (0..CONSUMER_CHANNELS).map(|i| open(&connection, Role::Consumer(i))),
        );
        let (publish, declare, consumers) = futures_util::try_join!(publish, declare, consumers)?;
        tracing::info!(
            host = %config.host,
            port = config.port,
            vhost = %config.vhost,
            "connected to RabbitMQ"
        );
        let mut queue_arguments = FieldTable::default();
        if let Some(expires) = config.client_queue_expires {
            let ms = i64::try_from(expires.as_millis()).unwrap_or(i64::MAX);
            queue_arguments.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
        }
        Ok(Rabbit {
            connection,
            publish: Mutex::new(publish),
            reopening: tokio::sync::Mutex::new(()),
            declare: Mutex::new(declare),
            consumers: Mutex::new(consumers),
            next: AtomicUsize::new(0),
            durable: config.durable,
            queue_arguments,
        })
    }

    /// Resolves when the connection has failed.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.connection.lost()
    }

    /// The current channel of `role`.
    fn current(&self, role: Role) -> ChannelRef {
        let lock = |m: &Mutex<ChannelRef>| *m.lock().unwrap_or_else(|e| e.into_inner());
        match role {
            Role::Publish => lock(&self.publish),
            Role::Declare => lock(&self.declare),
            Role::Consumer(i) => {
                let pool = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
                pool[i % pool.len()]
            }
        }
    }

    /// The channel of `role`, a new one if RabbitMQ closed it.
    async fn channel(&self, role: Role) -> Result<ChannelRef, RabbitError> {
        let current = self.current(role);
        if self.connection.is_open(current) {
            return Ok(current);
        }
        let _reopening = self.reopening.lock().await;
        // Someone else may have replaced it meanwhile.
        let current = self.current(role);
        if self.connection.is_open(current) {
            return Ok(current);
        }
        tracing::warn!(channel = current.id, "reopening a channel RabbitMQ closed");
        let new = open(&self.connection, role).await?;
        match role {
            Role::Publish => *self.publish.lock().unwrap_or_else(|e| e.into_inner()) = new,
            Role::Declare => *self.declare.lock().unwrap_or_else(|e| e.into_inner()) = new,
            Role::Consumer(i) => {
                let mut pool = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
                let len = pool.len();
                pool[i % len] = new;
            }
        }
        Ok(new)
    }

    /// Publishes `body` to the default exchange for `queue` (mandatory) and waits for the
    /// broker's confirm. A message no queue takes comes back as [`RabbitError::Unroutable`].
    /// The frames are queued before this returns (while the publish channel is open; after
    /// RabbitMQ closed it, once it is replaced, in call order): publishes reach RabbitMQ in the
    /// order of the calls.
    pub fn publish(
        self: &Arc<Self>,
        queue: &str,
        body: Vec<u8>,
        reply_to: &str,
    ) -> impl Future<Output = Result<(), RabbitError>> + Send + 'static + use<> {
        let mut properties = AMQPProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_reply_to(reply_to.into());
        if self.durable {
            properties = properties.with_delivery_mode(2);
        }
        let channel = self.current(Role::Publish);
        let queue = queue.to_string();
        let sending = if self.connection.is_open(channel) {
            Either::Left(
                self.connection
                    .publish(channel, &queue, true, properties, &body),
            )
        } else {
            let rabbit = self.clone();
            let queue = queue.clone();
            Either::Right(async move {
                let channel = rabbit.channel(Role::Publish).await.map_err(|e| match e {
                    RabbitError::Amqp(e) => e,
                    other => AmqpError::Protocol(other.to_string()),
                })?;
                rabbit
                    .connection
                    .publish(channel, &queue, true, properties, &body)
                    .await
            })
        };
        async move {
            match sending.await? {
                Confirmed::Ack => Ok(()),
                Confirmed::Returned { code, text } => {
                    tracing::warn!(routing_key = %queue, reply_code = code, reply_text = %text, "RabbitMQ returned an unroutable message");
                    Err(RabbitError::Unroutable { queue })
                }
                Confirmed::Nack => Err(RabbitError::Nacked { queue }),
            }
        }
    }

    /// Declares the client queue `queue` and consumes it (manual acks) on one of the pool's
    /// channels; the consumer's tag is unique (the same queue may be consumed twice on one
    /// channel, by an old client and the one that took it over).
    pub fn subscribe(
        self: &Arc<Self>,
        queue: &str,
    ) -> impl Future<Output = Result<Subscription, RabbitError>> + Send + 'static + use<> {
        let rabbit = self.clone();
        let queue = queue.to_string();
        async move {
            let mut tries = 0;
            loop {
                let channel = rabbit.channel(Role::Declare).await?;
                let declared = rabbit
                    .connection
                    .queue_declare(
                        channel,
                        &queue,
                        rabbit.durable,
                        rabbit.queue_arguments.clone(),
                    )
                    .await;
                match declared {
                    Err(AmqpError::ChannelGone) if tries < RETRIES => tries += 1,
                    other => break other?,
                }
            }
            let index = rabbit.next.fetch_add(1, Ordering::Relaxed);
            let tag = format!(
                "gw-{queue}-{}",
                hex::encode(super::session::random_bytes::<4>())
            );
            let mut tries = 0;
            let consumer = loop {
                let channel = rabbit.channel(Role::Consumer(index)).await?;
                match rabbit.connection.consume(channel, &queue, &tag).await {
                    Err(AmqpError::ChannelGone) if tries < RETRIES => tries += 1,
                    other => break other?,
                }
            };
            Ok(Subscription {
                connection: rabbit.connection.clone(),
                consumer,
            })
        }
    }

    /// Deletes the client queue `queue` if nobody consumes it (a queue an anonymous client
    /// leaves behind), in the background.
    pub fn delete_queue(self: &Arc<Self>, queue: &str) {
        let rabbit = self.clone();
        let queue = queue.to_string();
        tokio::spawn(async move {
            let deleted = match rabbit.channel(Role::Declare).await {
                Ok(channel) => rabbit
                    .connection
                    .queue_delete(channel, &queue, true)
                    .await
                    .map_err(RabbitError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = deleted {
                tracing::debug!(queue, "cannot delete the client queue: {e}");
            }
        });
    }

    /// The handle that settles `delivery`.
    pub fn unsettled(&self, delivery: &amqp::Delivery) -> Unsettled {
        Unsettled {
            connection: self.connection.clone(),
            channel: delivery.channel,
            tag: delivery.tag,
        }
    }

    /// Closes the connection (the broker requeues what is unacked). Waits at most `within`.
    pub async fn close(&self, within: Duration) {
        self.connection.close(within).await;
    }
}

/// Opens a channel for `role` and sets it up.
async fn open(connection: &Connection, role: Role) -> Result<ChannelRef, AmqpError> {
    let channel = connection.channel().await?;
    match role {
        Role::Publish => connection.confirm_select(channel).await?,
        Role::Consumer(_) => connection.qos(channel, PREFETCH).await?,
        Role::Declare => {}
    }
    Ok(channel)
}

/// A delivery not settled yet. [`Unsettled::settle`] takes `self`, so a delivery is settled at
/// most once (a second ack of one tag is a channel error that would close the channel for
/// every client on it); nothing is sent for a channel that closed since (RabbitMQ requeued
/// what it had delivered on it).
pub struct Unsettled {
    connection: Connection,
    channel: ChannelRef,
    tag: u64,
}

impl Unsettled {
    /// Queues the ack, nack or reject; nothing to wait for.
    pub fn settle(self, how: Settle) {
        self.connection.settle(self.channel, self.tag, how);
    }
}

#[cfg(test)]
mod tests {
    //! Against the machine's RabbitMQ (127.0.0.1:5672, guest/guest).
    use super::*;
    use futures_util::StreamExt;

    fn config() -> RabbitMqConfig {
        crate::config::Config::default().gateway.rabbitmq
    }

    fn unique(what: &str) -> String {
        format!(
            "rabbit-test-{what}-{}",
            hex::encode(super::super::session::random_bytes::<6>())
        )
    }

    /// A channel-level error (here: a client queue that exists with other arguments, 406) fails
    /// only the operation that caused it: the connection stays up, and every other publish,
    /// declare and consumer goes on.
    #[tokio::test]
    async fn a_channel_error_fails_only_its_own_operation() {
        let rabbit = Arc::new(Rabbit::connect(&config(), "rabbit test").await.unwrap());
        let lost = rabbit.lost();
        let busy = unique("busy");
        let mut ok = rabbit.subscribe(&busy).await.unwrap();

        // The same name, declared by someone else with x-expires first.
        let other = unique("expires");
        {
            let mut expiring = config();
            expiring.client_queue_expires = Some(Duration::from_secs(60));
            let owner = Arc::new(
                Rabbit::connect(&expiring, "rabbit test owner")
                    .await
                    .unwrap(),
            );
            owner.subscribe(&other).await.unwrap().cancel();
        }
        let refused = rabbit.subscribe(&other).await;
        assert!(
            matches!(&refused, Err(RabbitError::Amqp(e)) if e.to_string().contains("PRECONDITION_FAILED")),
            "a 406 for that queue: {:?}",
            refused.err()
        );

        // Everything else still works on the same connection.
        rabbit.publish(&busy, b"{}".to_vec(), &busy).await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(5), ok.consumer.next())
            .await
            .expect("the earlier consumer still gets messages")
            .expect("a delivery")
            .expect("no error");
        rabbit.unsettled(&delivery).settle(Settle::Ack);
        let again = unique("again");
        rabbit.subscribe(&again).await.unwrap().cancel();
        assert!(!*lost.borrow(), "the connection is not lost");
        ok.cancel();
        rabbit.close(Duration::from_secs(2)).await;
    }

    /// Publishes first polled in order arrive in order.
    #[tokio::test]
    async fn publishes_keep_their_order() {
        let rabbit = Arc::new(
            Rabbit::connect(&config(), "rabbit order test")
                .await
                .unwrap(),
        );
        let queue = unique("order");
        let mut sub = rabbit.subscribe(&queue).await.unwrap();
        let sends: Vec<_> = (0..50)
            .map(|i| rabbit.publish(&queue, format!("{i}").into_bytes(), &queue))
            .collect();
        let mut all = futures_util::stream::FuturesUnordered::new();
        for send in sends {
            all.push(send);
        }
        while let Some(sent) = all.next().await {
            sent.unwrap();
        }
        for i in 0..50 {
            let delivery = sub.consumer.next().await.unwrap().unwrap();
            assert_eq!(delivery.body, format!("{i}").into_bytes());
            rabbit.unsettled(&delivery).settle(Settle::Ack);
        }
        sub.cancel();
        rabbit.close(Duration::from_secs(2)).await;
    }
}
