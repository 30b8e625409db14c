//! The gateway's pattern with lapin 3.7, set up as src/gateway/rabbit.rs does: tokio executor and
//! reactor, a publish channel with confirms, a declare channel, 4 consumer channels with
//! `basic.qos(10, global=false)`, acks queued without waiting (the future is polled once).

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};

use crate::acks::{self, AckFrame, AckMode, ChannelAcks};
use crate::amqprs_gw::Events;
use crate::broker::Broker;
use crate::driver::{Gateway, Published, Subscription};

pub const CONSUMER_CHANNELS: usize = 4;
pub const PREFETCH: u16 = 10;
pub const GATEWAY_CONNECTION: &str = "amqp-bench lapin gateway";

pub struct LapinGateway {
    pub connection: Connection,
    /// What lapin's event stream reported (as the gateway logs it).
    pub events: Events,
    publish: Channel,
    /// Replaced by a new one once the broker has closed it (as the gateway does).
    declare: RefCell<Channel>,
    pub consumers: Vec<(Channel, Rc<ChannelAcks>)>,
}

pub async fn connect(broker: &Broker, name: &str) -> lapin::Result<Connection> {
    let properties = ConnectionProperties::default()
        .with_connection_name(name.into())
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    Connection::connect(&broker.lapin_uri(), properties).await
}

impl LapinGateway {
    /// Must run inside a `LocalSet`.
    pub async fn open(broker: &Broker, ack_mode: AckMode) -> anyhow::Result<LapinGateway> {
        let connection = connect(broker, GATEWAY_CONNECTION).await?;
        let events = Events::default();
        let mut listener = Box::pin(connection.events_listener());
        let log = events.clone();
        tokio::task::spawn_local(async move {
            while let Some(event) = listener.next().await {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("event: {event:?}"));
            }
        });
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let declare = connection.create_channel().await?;
        let mut consumers = Vec::new();
        for _ in 0..CONSUMER_CHANNELS {
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(PREFETCH, BasicQosOptions { global: false })
                .await?;
            let sender = channel.clone();
            let acks = ChannelAcks::new(
                ack_mode,
                acks::sender(move |frame: AckFrame| {
                    let channel = sender.clone();
                    async move {
                        let options = BasicAckOptions {
                            multiple: frame.multiple,
                        };
                        channel.basic_ack(frame.tag, options).await
                    }
                }),
            );
            consumers.push((channel, Rc::new(acks)));
        }
        Ok(LapinGateway {
            connection,
            events,
            publish,
            declare: RefCell::new(declare),
            consumers,
        })
    }

    /// Declares `queue` on the declare channel (a new one if the broker closed it), with
    /// `x-expires` if given.
    pub async fn declare(&self, queue: &str, expires_ms: Option<i64>) -> anyhow::Result<()> {
        let mut arguments = FieldTable::default();
        if let Some(ms) = expires_ms {
            arguments.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
        }
        let current = self.declare.borrow().clone();
        let channel = if current.status().connected() {
            current
        } else {
            let channel = self.connection.create_channel().await?;
            *self.declare.borrow_mut() = channel.clone();
            channel
        };
        channel
            .queue_declare(queue, QueueDeclareOptions::default(), arguments)
            .await?;
        Ok(())
    }

    pub fn declare_channel_open(&self) -> bool {
        self.declare.borrow().status().connected()
    }
}

pub struct LapinSub {
    consumer: Consumer,
    acks: Rc<ChannelAcks>,
}

impl Gateway for LapinGateway {
    type Sub = LapinSub;

    async fn subscribe(&self, queue: &str, slot: usize) -> anyhow::Result<LapinSub> {
        self.declare(queue, None).await?;
        let (channel, acks) = &self.consumers[slot % self.consumers.len()];
        let consumer = channel
            .basic_consume(
                queue,
                &format!("gw-{queue}"),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(LapinSub {
            consumer,
            acks: acks.clone(),
        })
    }

    async fn publish(
        &self,
        routing_key: &str,
        body: Vec<u8>,
        reply_to: &str,
    ) -> anyhow::Result<Published> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_reply_to(reply_to.into());
        let confirm = self
            .publish
            .basic_publish("", routing_key, options, &body, properties)
            .await?
            .await?;
        Ok(match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Published::Confirmed,
            Confirmation::Ack(Some(_)) => Published::Unroutable,
            Confirmation::Nack(_) => Published::Nacked,
        })
    }

    fn ack_frames(&self) -> u64 {
        self.consumers.iter().map(|(_, acks)| acks.frames()).sum()
    }
}

impl Subscription for LapinSub {
    async fn next(&mut self) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
        match self.consumer.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(delivery)) => Ok(Some((delivery.delivery_tag, delivery.data))),
        }
    }

    fn settle(&self, tag: u64) {
        self.acks.settle(tag);
    }
}
