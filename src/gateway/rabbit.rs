//! The worker's one RabbitMQ connection: a publish channel with publisher confirms, and a small
//! fixed pool of consumer channels shared by all clients (RabbitMQ allows at most 2047 channels on
//! a connection; a worker holds far more clients than that). Each client queue is consumed with
//! manual acks and a prefetch of [`PREFETCH`] per consumer (`basic.qos` with `global = false`).
//!
//! One client never takes the others down: RabbitMQ closes a *channel* for an error one
//! operation caused (a 406 on a declare, a 404 on a queue, an access refusal), and such errors
//! end only that operation. Declares run on a channel of their own; a closed channel is replaced
//! by a new one the next time it is needed; a consumer whose channel closed is started again by
//! its client's connection. Only the loss of the connection itself ends the worker
//! ([`Rabbit::lost`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use lapin::message::BasicReturnMessage;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
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
/// recovery, which we do not use), about 1 KB each: a channel that declared every client queue
/// ever would grow with every client ever served.
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
    /// The publish channel (confirms on); replaced if RabbitMQ closed it.
    publish: tokio::sync::Mutex<Channel>,
    /// The consumer channel pool; a channel RabbitMQ closed is replaced.
    consumers: Mutex<Vec<Arc<Channel>>>,
    next: AtomicUsize,
    /// The channel client queues are declared on (a failed declare closes it, not a consumer
    /// channel).
    declare: tokio::sync::Mutex<Declare>,
    durable: bool,
    /// Arguments of client queue declares: none by default, as the Node gateway and the backend
    /// declare them (the backend's own declares of a client queue must match them exactly);
    /// `x-expires` with `gateway.rabbitmq.clientQueueExpires`.
    queue_arguments: FieldTable,
    lost: watch::Receiver<bool>,
}

/// A consumed client queue: the channel its consumer is on, and the consumer.
pub struct Subscription {
    pub channel: Arc<Channel>,
    pub consumer: Consumer,
}

impl Subscription {
    /// Asks RabbitMQ to stop the consumer. Deliveries already on their way still arrive until
    /// the consumer's stream ends (at the broker's cancel-ok): the caller settles them (they
    /// would stay unacked on the shared channel otherwise).
    pub fn cancel(&self) {
        let channel = self.channel.clone();
        let tag = self.consumer.tag().to_string();
        send_now(async move {
            if let Err(e) = channel
                .basic_cancel(&tag, BasicCancelOptions::default())
                .await
            {
                tracing::debug!(tag, "cannot cancel the consumer: {e}");
            }
        });
    }
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
        let status = connection.status().clone();
        tokio::spawn(async move {
            // Ends when the connection (and so the event stream) is gone, or at its first
            // connection-level error. lapin reports a channel RabbitMQ closed as an error here
            // too: that one ends only what ran on the channel.
            while let Some(event) = events.next().await {
                match event {
                    lapin::Event::Error(e) if status.errored() || status.closed() => {
                        tracing::error!("RabbitMQ connection lost: {e}");
                        break;
                    }
                    lapin::Event::Error(e) => {
                        tracing::warn!("RabbitMQ closed a channel: {e}");
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
        let publish = publish_channel(&connection).await?;
        // Opened together: each is a round trip, and a worker is not ready before they are.
        let consumers = futures_util::future::try_join_all(
            (0..CONSUMER_CHANNELS).map(|_| consumer_channel(&connection)),
        )
        .await?;
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
            publish: tokio::sync::Mutex::new(publish),
            consumers: Mutex::new(consumers.into_iter().map(Arc::new).collect()),
            next: AtomicUsize::new(0),
            declare: tokio::sync::Mutex::new(Declare::default()),
            durable: config.durable,
            queue_arguments,
            lost,
        })
    }

    /// Resolves when the connection has failed.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Publishes `body` to the default exchange for `queue` (mandatory) and waits for the
    /// broker's confirm. A message no queue takes comes back as [`RabbitError::Unroutable`].
    ///
    /// The frames go to the channel when the returned future is first polled (lapin queues them
    /// before its first wait, and the publish channel's lock is fair): publishes whose futures
    /// are first polled in order reach RabbitMQ in order.
    pub fn publish(
        self: &Arc<Self>,
        queue: &str,
        body: Vec<u8>,
        reply_to: &str,
    ) -> impl Future<Output = Result<(), RabbitError>> + Send + 'static {
        let rabbit = self.clone();
        let queue = queue.to_string();
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_reply_to(reply_to.into());
        if self.durable {
            properties = properties.with_delivery_mode(2);
        }
        async move {
            let options = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            let channel = {
                let mut channel = rabbit.publish.lock().await;
                if !channel.status().connected() {
                    tracing::warn!("reopening the publish channel");
                    *channel = publish_channel(&rabbit.connection).await?;
                }
                channel.clone()
            };
            let confirm = channel
                .basic_publish("", &queue, options, &body, properties)
                .await?
                .await?;
            match confirm {
                Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
                Confirmation::Ack(Some(returned)) => {
                    log_returned(&returned);
                    Err(RabbitError::Unroutable { queue })
                }
                Confirmation::Nack(_) => Err(RabbitError::Nacked { queue }),
            }
        }
    }

    /// Declares the client queue `queue` and consumes it (manual acks) on one of the pool's
    /// channels; the consumer's tag is unique (the same queue may be consumed twice on one
    /// channel, by an old client and the one that took it over).
    pub fn subscribe(
        self: &Arc<Self>,
        queue: &str,
    ) -> impl Future<Output = Result<Subscription, RabbitError>> + Send + 'static {
        let rabbit = self.clone();
        let queue = queue.to_string();
        async move {
            let options = QueueDeclareOptions {
                durable: rabbit.durable,
                auto_delete: false,
                ..QueueDeclareOptions::default()
            };
            rabbit
                .declare_channel()
                .await?
                .queue_declare(&queue, options, rabbit.queue_arguments.clone())
                .await?;
            let channel = rabbit.consumer_channel().await?;
            let tag = format!(
                "gw-{queue}-{}",
                hex::encode(super::session::random_bytes::<4>())
            );
            let consumer = channel
                .basic_consume(
                    &queue,
                    &tag,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok(Subscription { channel, consumer })
        }
    }

    /// Deletes the client queue `queue` if nobody consumes it (a queue an anonymous client
    /// leaves behind), in the background.
    pub fn delete_queue(self: &Arc<Self>, queue: &str) {
        let rabbit = self.clone();
        let queue = queue.to_string();
        send_now(async move {
            let options = QueueDeleteOptions {
                if_unused: true,
                ..QueueDeleteOptions::default()
            };
            let deleted = match rabbit.declare_channel().await {
                Ok(channel) => channel.queue_delete(&queue, options).await.map(|_| ()),
                Err(e) => return tracing::debug!(queue, "cannot delete the client queue: {e}"),
            };
            if let Err(e) = deleted {
                tracing::debug!(queue, "cannot delete the client queue: {e}");
            }
        });
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
        let channel = Arc::new(consumer_channel(&self.connection).await?);
        let mut pool = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = pool.get_mut(index) {
            // Another client may have reopened it meanwhile: keep the open one.
            if slot.status().connected() {
                return Ok(slot.clone());
            }
            *slot = channel.clone();
        }
        Ok(channel)
    }

    /// Closes the connection (the broker requeues what is unacked). Waits at most `within`.
    pub async fn close(&self, within: Duration) {
        let closing = self.connection.close(200, "worker stopping");
        match tokio::time::timeout(within, closing).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("closing the RabbitMQ connection: {e}"),
            Err(_) => tracing::warn!("RabbitMQ did not confirm the close in time"),
        }
    }
}

async fn publish_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

async fn consumer_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions { global: false })
        .await?;
    Ok(channel)
}

/// Polls `work` once now, so that what it sends is queued in order with what the caller sends
/// next, and leaves the rest of it (waiting for the frame to be written) to a task only if it
/// is not done yet.
fn send_now(work: impl Future<Output = ()> + Send + 'static) {
    let mut work = Box::pin(work);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if work.as_mut().poll(&mut cx).is_pending() {
        tokio::spawn(work);
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

    /// Queues the ack, nack or reject on the delivery's channel now; nothing to wait for.
    pub fn settle(self, how: Settle) {
        // As lapin's `Acker` does: a closed channel's deliveries went back to their queues
        // (and a reopened channel reusing its id must not see these tags).
        if !self.channel.status().connected() {
            return;
        }
        let Unsettled { channel, tag } = self;
        send_now(async move {
            let sent = match how {
                Settle::Ack => channel.basic_ack(tag, BasicAckOptions::default()).await,
                Settle::Requeue => {
                    let options = BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    };
                    channel.basic_nack(tag, options).await
                }
                Settle::Discard => {
                    let options = BasicRejectOptions { requeue: false };
                    channel.basic_reject(tag, options).await
                }
            };
            if let Err(e) = sent {
                tracing::debug!(?how, "cannot settle a delivery: {e}");
            }
        });
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

#[cfg(test)]
mod tests {
    //! Against the machine's RabbitMQ (127.0.0.1:5672, guest/guest).
    use super::*;

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
        Unsettled::new(ok.channel.clone(), delivery.delivery_tag).settle(Settle::Ack);
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
            assert_eq!(delivery.data, format!("{i}").into_bytes());
            Unsettled::new(sub.channel.clone(), delivery.delivery_tag).settle(Settle::Ack);
        }
        sub.cancel();
        rabbit.close(Duration::from_secs(2)).await;
    }
}
