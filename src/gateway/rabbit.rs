//! The worker's one RabbitMQ connection: a publish channel with publisher confirms, and a small
//! fixed pool of consumer channels shared by all clients (RabbitMQ allows at most 2047 channels on
//! a connection; a worker holds far more clients than that). Each client queue is consumed with
//! manual acks and a prefetch of [`PREFETCH`] per consumer (`basic.qos` with `global = false`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;

use lapin::message::BasicReturnMessage;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, DeliveryTag, FieldTable};
use lapin::uri::{AMQPAuthority, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::watch;

use crate::config::RabbitMqConfig;

/// Unacknowledged deliveries RabbitMQ hands one client queue's consumer at a time.
pub const PREFETCH: u16 = 10;
/// Consumer channels per worker.
pub const CONSUMER_CHANNELS: usize = 4;
/// Client queues declared on one declare channel before it is replaced by a new one. lapin
/// remembers every queue declared on a channel until the channel closes (for its topology
/// recovery, which we do not use), about 1 KB each, and client queues are never deleted by us
/// (they expire): a channel that declared them all would grow with every client ever served.
const DECLARES_PER_CHANNEL: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum RabbitError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ could not route the message to queue {queue:?} (no such queue)")]
    Unroutable { queue: String },
    #[error("RabbitMQ refused the message for queue {queue:?} (nack)")]
    Nacked { queue: String },
}

pub struct Rabbit {
    connection: Connection,
    publish: Channel,
    /// The consumer channel pool; a channel RabbitMQ closed (a channel error) is replaced.
    consumers: std::sync::Mutex<Vec<Arc<Channel>>>,
    next: AtomicUsize,
    /// The channel client queues are declared on (also keeps a failed declare, which closes its
    /// channel, away from the consumers).
    declare: tokio::sync::Mutex<Declare>,
    durable: bool,
    /// `x-expires` of client queues (`gateway.rabbitmq.clientQueueExpires`): a queue nobody
    /// consumes, declares or reads for this long is deleted with what it holds. A client
    /// reconnecting within it gets the pushes it had not acked; without it, every client that
    /// ever disconnected would leave a queue behind forever.
    queue_expires_ms: i64,
    lost: watch::Receiver<bool>,
}

impl Rabbit {
    /// Connects and opens the channels. Must run inside a tokio runtime.
    pub async fn connect(config: &RabbitMqConfig, name: &str) -> Result<Rabbit, RabbitError> {
        let uri = AMQPUri {
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: config.login.clone(),
                    password: config.password.clone(),
                },
                host: config.host.clone(),
                port: config.port,
            },
            vhost: config.vhost.clone(),
            ..AMQPUri::default()
        };
        let properties = ConnectionProperties::default()
            .with_connection_name(name.into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let connection = Connection::connect_uri(uri, properties).await?;
        let (lost_tx, lost) = watch::channel(false);
        let mut events = Box::pin(connection.events_listener());
        tokio::spawn(async move {
            // Ends when the connection (and so the event stream) is gone, or on its first error.
            while let Some(event) = events.next().await {
                match event {
                    lapin::Event::Error(e) => {
                        tracing::error!("RabbitMQ connection lost: {e}");
                        break;
                    }
                    lapin::Event::ConnectionBlocked(why) => {
                        tracing::warn!("RabbitMQ blocks publishing: {why}");
                    }
                    lapin::Event::ConnectionUnblocked => tracing::info!("RabbitMQ unblocked"),
                    _ => {}
                }
            }
            lost_tx.send_replace(true);
        });
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        // Opened together: each is a round trip, and a worker is not ready before they are.
        let consumers = futures_util::future::try_join_all((0..CONSUMER_CHANNELS).map(|_| async {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(PREFETCH, BasicQosOptions { global: false })
                .await?;
            Ok::<_, lapin::Error>(Arc::new(channel))
        }))
        .await?;
        tracing::info!(
            host = %config.host,
            port = config.port,
            vhost = %config.vhost,
            "connected to RabbitMQ"
        );
        Ok(Rabbit {
            connection,
            publish,
            consumers: std::sync::Mutex::new(consumers),
            next: AtomicUsize::new(0),
            declare: tokio::sync::Mutex::new(Declare::default()),
            durable: config.durable,
            queue_expires_ms: i64::try_from(config.client_queue_expires.as_millis())
                .unwrap_or(i64::MAX),
            lost,
        })
    }

    /// Resolves when the connection has failed.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Publishes `body` to the default exchange for `queue` (mandatory) and waits for the
    /// broker's confirm. A message no queue takes comes back as [`RabbitError::Unroutable`].
    pub async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        reply_to: Option<&str>,
    ) -> Result<(), RabbitError> {
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into());
        if let Some(reply_to) = reply_to {
            properties = properties.with_reply_to(reply_to.into());
        }
        if self.durable {
            properties = properties.with_delivery_mode(2);
        }
        let confirm = self
            .publish
            .basic_publish(
                "",
                queue,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned)) => {
                log_returned(&returned);
                Err(RabbitError::Unroutable {
                    queue: queue.to_string(),
                })
            }
            Confirmation::Nack(_) => Err(RabbitError::Nacked {
                queue: queue.to_string(),
            }),
        }
    }

    /// Declares the client queue `queue` and starts consuming it (manual acks) on one of the
    /// pool's channels. Returns that channel and the consumer (its tag is unique: the same queue
    /// may be consumed twice on one channel, by an old client and the one that took it over).
    pub async fn subscribe(&self, queue: &str) -> Result<(Arc<Channel>, Consumer), RabbitError> {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(self.queue_expires_ms),
        );
        self.declare_channel()
            .await?
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    durable: self.durable,
                    auto_delete: false,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        let channel = self.consumer_channel().await?;
        let tag = format!(
            "gw-{queue}-{}",
            hex::encode(super::session::random_bytes::<4>())
        );
        let consumer = channel
            .basic_consume(
                queue,
                &tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }

    /// The declare channel, a new one after [`DECLARES_PER_CHANNEL`] declares or if RabbitMQ has
    /// closed it. The old one closes once its last declare has finished (lapin closes a channel
    /// when its last handle is dropped), and lapin forgets what was declared on it.
    async fn declare_channel(&self) -> Result<Channel, RabbitError> {
        let mut declare = self.declare.lock().await;
        let current = declare
            .channel
            .as_ref()
            .filter(|c| c.status().connected() && declare.declared < DECLARES_PER_CHANNEL);
        let channel = match current {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.connection.create_channel().await?;
                declare.channel = Some(channel.clone());
                declare.declared = 0;
                channel
            }
        };
        declare.declared += 1;
        Ok(channel)
    }

    /// The next channel of the pool, reopened first if RabbitMQ has closed it.
    async fn consumer_channel(&self) -> Result<Arc<Channel>, RabbitError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % CONSUMER_CHANNELS;
        let current = self
            .consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(index)
            .cloned();
        if let Some(channel) = current.filter(|c| c.status().connected()) {
            return Ok(channel);
        }
        tracing::warn!(index, "reopening a closed consumer channel");
        let channel = Arc::new(self.connection.create_channel().await?);
        channel
            .basic_qos(PREFETCH, BasicQosOptions { global: false })
            .await?;
        let mut pool = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = pool.get_mut(index) {
            *slot = channel.clone();
        }
        Ok(channel)
    }

    /// Stops the consumer `tag` (what it left unacked must be nacked by the caller).
    pub async fn unsubscribe(channel: &Channel, tag: &str) -> Result<(), RabbitError> {
        channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Err(e) = self.connection.close(200, "worker stopping").await {
            tracing::debug!("closing the RabbitMQ connection: {e}");
        }
    }
}

/// What to tell RabbitMQ about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with: RabbitMQ forgets it.
    Ack,
    /// Not handled here: back to its queue, for the next consumer.
    Requeue,
    /// Unusable: dropped without requeueing.
    Discard,
}

/// A delivery not settled yet: the channel it came on and its tag. Settled on the channel
/// directly, not through lapin's `Acker`, which hands each ack to lapin's internal RPC task,
/// which spawns a task that sends it: two task hops and a spawn per ack on the hot path.
/// [`Unsettled::settle`] takes `self`, so a delivery is settled at most once (a second ack of
/// one tag is a channel error that would close the channel for every client on it).
pub struct Unsettled {
    channel: Arc<Channel>,
    tag: DeliveryTag,
}

impl Unsettled {
    pub fn new(channel: Arc<Channel>, tag: DeliveryTag) -> Unsettled {
        Unsettled { channel, tag }
    }

    pub async fn settle(self, how: Settle) -> Result<(), RabbitError> {
        // As lapin's `Acker` does: a closed channel's deliveries went back to their queues
        // (and a reopened channel reusing its id must not see these tags).
        if !self.channel.status().connected() {
            return Ok(());
        }
        match how {
            Settle::Ack => {
                self.channel
                    .basic_ack(self.tag, BasicAckOptions::default())
                    .await?
            }
            Settle::Requeue => {
                let options = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                self.channel.basic_nack(self.tag, options).await?
            }
            Settle::Discard => {
                let options = BasicRejectOptions { requeue: false };
                self.channel.basic_reject(self.tag, options).await?
            }
        }
        Ok(())
    }
}

/// The current declare channel and how many queues were declared on it.
#[derive(Default)]
struct Declare {
    channel: Option<Channel>,
    declared: usize,
}

fn log_returned(returned: &BasicReturnMessage) {
    tracing::warn!(
        routing_key = %returned.delivery.routing_key,
        reply_code = returned.reply_code,
        reply_text = %returned.reply_text,
        "RabbitMQ returned an unroutable message"
    );
}
