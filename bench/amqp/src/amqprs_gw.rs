//! The gateway's pattern with amqprs 2.1: the same channels as with lapin. What amqprs leaves to
//! its user is here: publisher confirms arrive only through a channel callback (no future per
//! publish), so publishes are numbered here (a header carries the number, to match a
//! basic.return to its publish), and synchronous methods of one kind must not overlap on a
//! channel (amqprs keys their responders by method, not by call), so each channel's declares and
//! consumes are serialized by a lock.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConfirmSelectArguments, ConsumerMessage, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{
    Ack, BasicProperties, Cancel, Close, CloseChannel, FieldTable, FieldValue, Nack, Return,
};
use anyhow::{Context as _, bail};
use tokio::sync::{mpsc, oneshot};

use crate::acks::{self, AckFrame, AckMode, ChannelAcks};
use crate::broker::Broker;
use crate::driver::{Gateway, Published, Subscription};
use crate::lapin_gw::{CONSUMER_CHANNELS, PREFETCH};

const SEQ_HEADER: &str = "x-bench-seq";
pub const GATEWAY_CONNECTION: &str = "amqp-bench amqprs gateway";

type CallbackResult<T> = Result<T, amqprs::error::Error>;

/// What the broker told the callbacks, for the isolation check.
pub type Events = Arc<Mutex<Vec<String>>>;

fn note(events: &Events, what: String) {
    events.lock().unwrap_or_else(|e| e.into_inner()).push(what);
}

pub struct ConnectionEvents(pub Events);

#[async_trait::async_trait]
impl ConnectionCallback for ConnectionEvents {
    async fn close(&mut self, _: &Connection, close: Close) -> CallbackResult<()> {
        note(
            &self.0,
            format!("connection.close from the broker: {close}"),
        );
        Ok(())
    }
    async fn blocked(&mut self, _: &Connection, reason: String) {
        note(&self.0, format!("connection blocked: {reason}"));
    }
    async fn unblocked(&mut self, _: &Connection) {}
    async fn secret_updated(&mut self, _: &Connection) {}
}

/// Publishes waiting for their confirm, by publish sequence number (1, 2, ... on the channel).
#[derive(Default)]
struct Confirms {
    next_seq: u64,
    waiting: BTreeMap<u64, oneshot::Sender<Published>>,
    returned: HashSet<u64>,
}

impl Confirms {
    /// Resolves `tag` (or every tag up to it) with `outcome` (Confirmed turns into Unroutable for
    /// a returned publish).
    fn resolve(&mut self, tag: u64, multiple: bool, outcome: Published) {
        let done = if multiple {
            let rest = self.waiting.split_off(&(tag + 1));
            std::mem::replace(&mut self.waiting, rest)
        } else {
            self.waiting
                .remove(&tag)
                .map(|w| (tag, w))
                .into_iter()
                .collect()
        };
        for (seq, waiter) in done {
            let outcome = match (self.returned.remove(&seq), outcome) {
                (true, Published::Confirmed) => Published::Unroutable,
                (_, o) => o,
            };
            let _ = waiter.send(outcome);
        }
    }
}

/// A channel's callbacks: confirms (on the publish channel) and what the broker closes.
pub struct ChannelEvents {
    confirms: Option<Arc<Mutex<Confirms>>>,
    events: Events,
}

#[async_trait::async_trait]
impl ChannelCallback for ChannelEvents {
    async fn close(&mut self, channel: &Channel, close: CloseChannel) -> CallbackResult<()> {
        note(
            &self.events,
            format!(
                "channel.close from the broker on channel {}: {} {}",
                channel.channel_id(),
                close.reply_code(),
                close.reply_text()
            ),
        );
        if let Some(confirms) = &self.confirms {
            // Nothing more will be confirmed on this channel: fail what waits (dropping the
            // senders ends the waits with an error).
            confirms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .waiting
                .clear();
        }
        Ok(())
    }
    async fn cancel(&mut self, channel: &Channel, cancel: Cancel) -> CallbackResult<()> {
        note(
            &self.events,
            format!(
                "basic.cancel from the broker on channel {}: {}",
                channel.channel_id(),
                cancel.consumer_tag()
            ),
        );
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> CallbackResult<bool> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        if let Some(confirms) = &self.confirms {
            confirms.lock().unwrap_or_else(|e| e.into_inner()).resolve(
                ack.delivery_tag(),
                ack.mutiple(),
                Published::Confirmed,
            );
        }
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        if let Some(confirms) = &self.confirms {
            confirms.lock().unwrap_or_else(|e| e.into_inner()).resolve(
                nack.delivery_tag(),
                nack.multiple(),
                Published::Nacked,
            );
        }
    }
    async fn publish_return(&mut self, _: &Channel, _: Return, props: BasicProperties, _: Vec<u8>) {
        let seq = props
            .headers()
            .and_then(|h| h.get(&SEQ_HEADER.try_into().ok()?).cloned());
        if let (Some(confirms), Some(FieldValue::l(seq))) = (&self.confirms, seq) {
            confirms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .returned
                .insert(seq as u64);
        }
    }
}

struct ConsumerChannel {
    channel: Channel,
    /// Serializes this channel's synchronous methods (see the module doc).
    rpc: tokio::sync::Mutex<()>,
    acks: Rc<ChannelAcks>,
}

pub struct AmqprsGateway {
    pub connection: Connection,
    pub events: Events,
    publish: Channel,
    /// Held from numbering a publish to queuing its frame, so numbers follow the wire order.
    publish_order: tokio::sync::Mutex<()>,
    confirms: Arc<Mutex<Confirms>>,
    /// Replaced by a new one once the broker has closed it (as the gateway does).
    declare: RefCell<Channel>,
    declare_rpc: tokio::sync::Mutex<()>,
    consumers: Vec<ConsumerChannel>,
}

pub async fn connect(broker: &Broker, name: &str, events: &Events) -> anyhow::Result<Connection> {
    let args =
        OpenConnectionArguments::new(&broker.host, broker.port, &broker.user, &broker.password)
            .virtual_host(&broker.vhost)
            .connection_name(name)
            .finish();
    let connection = Connection::open(&args).await?;
    connection
        .register_callback(ConnectionEvents(events.clone()))
        .await?;
    Ok(connection)
}

pub async fn open_channel(connection: &Connection, events: &Events) -> anyhow::Result<Channel> {
    let channel = connection.open_channel(None).await?;
    channel
        .register_callback(ChannelEvents {
            confirms: None,
            events: events.clone(),
        })
        .await?;
    Ok(channel)
}

impl AmqprsGateway {
    /// Must run inside a `LocalSet`.
    pub async fn open(broker: &Broker, ack_mode: AckMode) -> anyhow::Result<AmqprsGateway> {
        let events = Events::default();
        let connection = connect(broker, GATEWAY_CONNECTION, &events).await?;
        let confirms = Arc::new(Mutex::new(Confirms::default()));
        let publish = connection.open_channel(None).await?;
        publish
            .register_callback(ChannelEvents {
                confirms: Some(confirms.clone()),
                events: events.clone(),
            })
            .await?;
        publish
            .confirm_select(ConfirmSelectArguments::default())
            .await?;
        let declare = open_channel(&connection, &events).await?;
        let mut consumers = Vec::new();
        for _ in 0..CONSUMER_CHANNELS {
            let channel = open_channel(&connection, &events).await?;
            channel
                .basic_qos(BasicQosArguments::new(0, PREFETCH, false))
                .await?;
            let sender = channel.clone();
            let acks = ChannelAcks::new(
                ack_mode,
                acks::sender(move |frame: AckFrame| {
                    let channel = sender.clone();
                    async move {
                        let args = BasicAckArguments::new(frame.tag, frame.multiple);
                        channel.basic_ack(args).await
                    }
                }),
            );
            consumers.push(ConsumerChannel {
                channel,
                rpc: tokio::sync::Mutex::new(()),
                acks: Rc::new(acks),
            });
        }
        Ok(AmqprsGateway {
            connection,
            events,
            publish,
            publish_order: tokio::sync::Mutex::new(()),
            confirms,
            declare: RefCell::new(declare),
            declare_rpc: tokio::sync::Mutex::new(()),
            consumers,
        })
    }

    /// Declares `queue` on the declare channel (a new one if the broker closed it), with
    /// `x-expires` if given.
    pub async fn declare(&self, queue: &str, expires_ms: Option<i64>) -> anyhow::Result<()> {
        let _one_at_a_time = self.declare_rpc.lock().await;
        let current = self.declare.borrow().clone();
        let channel = if current.is_open() {
            current
        } else {
            let channel = open_channel(&self.connection, &self.events).await?;
            *self.declare.borrow_mut() = channel.clone();
            channel
        };
        let mut args = QueueDeclareArguments::new(queue);
        if let Some(ms) = expires_ms {
            let mut table = FieldTable::new();
            table.insert(
                "x-expires".try_into().context("argument name")?,
                FieldValue::l(ms),
            );
            args.arguments(table);
        }
        channel.queue_declare(args).await?;
        Ok(())
    }

    pub fn declare_channel_open(&self) -> bool {
        self.declare.borrow().is_open()
    }

    pub fn consumer_channel(&self, slot: usize) -> &Channel {
        &self.consumers[slot % self.consumers.len()].channel
    }
}

pub struct AmqprsSub {
    messages: mpsc::UnboundedReceiver<ConsumerMessage>,
    acks: Rc<ChannelAcks>,
}

impl Gateway for AmqprsGateway {
    type Sub = AmqprsSub;

    async fn subscribe(&self, queue: &str, slot: usize) -> anyhow::Result<AmqprsSub> {
        self.declare(queue, None).await?;
        let consumer = &self.consumers[slot % self.consumers.len()];
        let _one_at_a_time = consumer.rpc.lock().await;
        let args = BasicConsumeArguments::new(queue, &format!("gw-{queue}"))
            .manual_ack(true)
            .finish();
        let (_tag, messages) = consumer.channel.basic_consume_rx(args).await?;
        Ok(AmqprsSub {
            messages,
            acks: consumer.acks.clone(),
        })
    }

    async fn publish(
        &self,
        routing_key: &str,
        body: Vec<u8>,
        reply_to: &str,
    ) -> anyhow::Result<Published> {
        let (tx, rx) = oneshot::channel();
        {
            let _in_order = self.publish_order.lock().await;
            let seq = {
                let mut confirms = self.confirms.lock().unwrap_or_else(|e| e.into_inner());
                confirms.next_seq += 1;
                let seq = confirms.next_seq;
                confirms.waiting.insert(seq, tx);
                seq
            };
            let mut headers = FieldTable::new();
            headers.insert(
                SEQ_HEADER.try_into().context("header name")?,
                FieldValue::l(seq as i64),
            );
            let properties = BasicProperties::default()
                .with_content_type("application/json")
                .with_content_encoding("utf-8")
                .with_reply_to(reply_to)
                .with_headers(headers)
                .finish();
            let args = BasicPublishArguments::new("", routing_key)
                .mandatory(true)
                .finish();
            self.publish.basic_publish(properties, body, args).await?;
        }
        match rx.await {
            Ok(outcome) => Ok(outcome),
            Err(_) => bail!("the publish channel closed before the confirm"),
        }
    }

    fn ack_frames(&self) -> u64 {
        self.consumers.iter().map(|c| c.acks.frames()).sum()
    }
}

impl Subscription for AmqprsSub {
    async fn next(&mut self) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
        let Some(message) = self.messages.recv().await else {
            return Ok(None);
        };
        let tag = message
            .deliver
            .context("a consumer message without its basic.deliver")?
            .delivery_tag();
        Ok(Some((tag, message.content.unwrap_or_default())))
    }

    fn settle(&self, tag: u64) {
        self.acks.settle(tag);
    }
}
