//! The protocol state of one connection, without I/O: its channels, the replies each waits for
//! (in order), its unconfirmed publishes, its consumers and the content being received. Frames
//! come in through [`State::on_frame`]; what must be sent goes into an output buffer the
//! connection's task writes out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, gen_frame};
use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::protocol::{AMQPClass, channel, confirm, connection, queue};
use amq_protocol::types::FieldTable;
// Keys the gateway and the broker choose (channel numbers, consumer tags): a fast hash (SipHash
// lookups here and in the pending pushes were 4% of a round trip's instructions).
use foldhash::{HashMap, HashMapExt};
use tokio::sync::oneshot;

use super::consumer::{Delivery, End, Shared};
use super::{AmqpError, ChannelRef, Confirmed, Settle};

/// The class id of `basic` (content headers carry it).
const BASIC: u16 = 60;
/// Bytes of a body frame that are not payload.
const FRAME_OVERHEAD: usize = 8;

/// The synchronous method whose `-ok` reply a channel waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    ChannelOpen,
    Select,
    Qos,
    Declare,
    Delete,
    Consume,
    Cancel(String),
}

/// What a synchronous method's reply gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    ChannelOpened(ChannelRef),
    Done,
}

type ReplyTx = oneshot::Sender<Result<Reply, AmqpError>>;
type ConfirmTx = oneshot::Sender<Result<Confirmed, AmqpError>>;

struct Rpc {
    expect: Expect,
    /// `None`: nobody waits (a cancel), but the reply still takes its place in the order.
    tx: Option<ReplyTx>,
}

struct Unconfirmed {
    routing_key: String,
    /// A `basic.return` came for it: the confirm that follows says so.
    returned: Option<(u16, String)>,
    tx: ConfirmTx,
}

/// A message whose content is being received.
enum Incoming {
    Deliver {
        consumer_tag: String,
        tag: u64,
        redelivered: bool,
    },
    Return {
        code: u16,
        text: String,
        routing_key: String,
    },
}

struct Content {
    incoming: Incoming,
    /// From the content header; `None` until it has come.
    size: Option<u64>,
    /// The content header's `reply-to` property.
    reply_to: Option<String>,
    body: Vec<u8>,
}

struct Chan {
    epoch: u32,
    /// `channel.open-ok` came.
    open: bool,
    rpcs: VecDeque<Rpc>,
    /// In confirm mode: the next publish's tag, and those not confirmed yet.
    confirms: Option<(u64, BTreeMap<u64, Unconfirmed>)>,
    consumers: HashMap<String, Arc<Shared>>,
    content: Option<Content>,
}

pub(crate) struct State {
    out: Vec<u8>,
    frame_max: usize,
    channel_max: u16,
    channels: HashMap<u16, Chan>,
    next_epoch: u32,
    /// Set once the connection is gone (or going: we sent `connection.close`).
    lost: Option<AmqpError>,
}

/// A written-out buffer larger than this (after a burst) is freed, not kept for the next frames.
const KEEP_SPARE_UP_TO: usize = 256 << 10;

/// Appends `frame` to `out`.
pub(crate) fn encode(frame: &AMQPFrame, out: &mut Vec<u8>) {
    let buffer = std::mem::take(out);
    let before = buffer.len();
    match gen_frame(frame)(buffer.into()) {
        Ok(written) => *out = written.write,
        Err(e) => {
            // Only a frame over u32 sizes could fail: nothing the gateway builds.
            tracing::error!("cannot encode an AMQP frame: {e:?}");
            out.truncate(before);
        }
    }
}

impl State {
    pub(crate) fn new(frame_max: u32, channel_max: u16) -> State {
        State {
            out: Vec::new(),
            frame_max: (frame_max as usize).max(4096),
            channel_max: channel_max.max(1),
            channels: HashMap::new(),
            next_epoch: 1,
            lost: None,
        }
    }

    fn write(&mut self, frame: AMQPFrame) {
        encode(&frame, &mut self.out);
    }

    fn method(&mut self, channel: u16, class: AMQPClass) {
        self.write(AMQPFrame::Method(channel, class));
    }

    /// Bytes queued for the socket.
    pub(crate) fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// What to write, taken; `spare` (written out) becomes the buffer the next frames go to,
    /// so that a busy connection does not grow a new one for every write.
    pub(crate) fn take_output(&mut self, mut spare: Vec<u8>) -> Vec<u8> {
        spare.clear();
        if spare.capacity() > KEEP_SPARE_UP_TO {
            spare = Vec::new();
        }
        std::mem::replace(&mut self.out, spare)
    }

    pub(crate) fn lost(&self) -> Option<&AmqpError> {
        self.lost.as_ref()
    }

    pub(crate) fn is_open(&self, channel: ChannelRef) -> bool {
        self.lost.is_none()
            && self
                .channels
                .get(&channel.id)
                .is_some_and(|c| c.epoch == channel.epoch && c.open)
    }

    fn usable(&self, channel: Option<ChannelRef>) -> Result<(), AmqpError> {
        if let Some(e) = &self.lost {
            return Err(e.clone());
        }
        match channel {
            Some(channel) if !self.is_open(channel) => Err(AmqpError::ChannelGone),
            _ => Ok(()),
        }
    }

    /// Queues a synchronous method (written by `build`, which says on which channel and what
    /// reply it waits for).
    pub(crate) fn rpc(
        &mut self,
        channel: Option<ChannelRef>,
        build: impl FnOnce(&mut State) -> Result<(u16, Expect), AmqpError>,
        tx: Option<ReplyTx>,
    ) -> Result<(), AmqpError> {
        self.usable(channel)?;
        let (id, expect) = build(self)?;
        let chan = self
            .channels
            .get_mut(&id)
            .ok_or_else(|| AmqpError::Protocol(format!("no channel {id}")))?;
        chan.rpcs.push_back(Rpc { expect, tx });
        Ok(())
    }

    pub(crate) fn open_channel(&mut self) -> Result<(u16, Expect), AmqpError> {
        let id = (1..=self.channel_max)
            .find(|id| !self.channels.contains_key(id))
            .ok_or_else(|| {
                AmqpError::Protocol(format!("all {} channels are in use", self.channel_max))
            })?;
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1);
        self.channels.insert(
            id,
            Chan {
                epoch,
                open: false,
                rpcs: VecDeque::new(),
                confirms: None,
                consumers: HashMap::new(),
                content: None,
            },
        );
        self.method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        );
        Ok((id, Expect::ChannelOpen))
    }

    pub(crate) fn confirm_select(&mut self, ch: ChannelRef) -> Result<(u16, Expect), AmqpError> {
        let method = confirm::AMQPMethod::Select(confirm::Select { nowait: false });
        self.method(ch.id, AMQPClass::Confirm(method));
        Ok((ch.id, Expect::Select))
    }

    pub(crate) fn qos(
        &mut self,
        ch: ChannelRef,
        prefetch: u16,
    ) -> Result<(u16, Expect), AmqpError> {
        let method = basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: prefetch,
            global: false,
        });
        self.method(ch.id, AMQPClass::Basic(method));
        Ok((ch.id, Expect::Qos))
    }

    pub(crate) fn queue_declare(
        &mut self,
        ch: ChannelRef,
        queue: &str,
        durable: bool,
        arguments: FieldTable,
    ) -> Result<(u16, Expect), AmqpError> {
        let method = queue::AMQPMethod::Declare(queue::Declare {
            queue: queue.into(),
            passive: false,
            durable,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments,
        });
        self.method(ch.id, AMQPClass::Queue(method));
        Ok((ch.id, Expect::Declare))
    }

    pub(crate) fn queue_delete(
        &mut self,
        ch: ChannelRef,
        queue: &str,
        if_unused: bool,
    ) -> Result<(u16, Expect), AmqpError> {
        let method = queue::AMQPMethod::Delete(queue::Delete {
            queue: queue.into(),
            if_unused,
            if_empty: false,
            nowait: false,
        });
        self.method(ch.id, AMQPClass::Queue(method));
        Ok((ch.id, Expect::Delete))
    }

    pub(crate) fn consume(
        &mut self,
        ch: ChannelRef,
        queue: &str,
        tag: &str,
        consumer: Arc<Shared>,
    ) -> Result<(u16, Expect), AmqpError> {
        let chan = self
            .channels
            .get_mut(&ch.id)
            .ok_or(AmqpError::ChannelGone)?;
        if chan.consumers.contains_key(tag) {
            return Err(AmqpError::Protocol(format!(
                "consumer tag {tag:?} is in use on its channel"
            )));
        }
        // Registered first: deliveries may follow the consume-ok at once.
        chan.consumers.insert(tag.to_string(), consumer);
        let method = basic::AMQPMethod::Consume(basic::Consume {
            queue: queue.into(),
            consumer_tag: tag.into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        });
        self.method(ch.id, AMQPClass::Basic(method));
        Ok((ch.id, Expect::Consume))
    }

    pub(crate) fn cancel(&mut self, ch: ChannelRef, tag: &str) -> Result<(u16, Expect), AmqpError> {
        let method = basic::AMQPMethod::Cancel(basic::Cancel {
            consumer_tag: tag.into(),
            nowait: false,
        });
        self.method(ch.id, AMQPClass::Basic(method));
        Ok((ch.id, Expect::Cancel(tag.to_string())))
    }

    pub(crate) fn publish(
        &mut self,
        ch: ChannelRef,
        routing_key: &str,
        mandatory: bool,
        properties: AMQPProperties,
        body: &[u8],
        tx: ConfirmTx,
    ) -> Result<(), AmqpError> {
        self.usable(Some(ch))?;
        let Some(chan) = self.channels.get_mut(&ch.id) else {
            return Err(AmqpError::ChannelGone);
        };
        let Some((next, unconfirmed)) = chan.confirms.as_mut() else {
            return Err(AmqpError::Protocol(
                "publish on a channel not in confirm mode".into(),
            ));
        };
        let tag = *next;
        *next += 1;
        unconfirmed.insert(
            tag,
            Unconfirmed {
                routing_key: routing_key.to_string(),
                returned: None,
                tx,
            },
        );
        let method = basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: routing_key.into(),
            mandatory,
            immediate: false,
        });
        self.method(ch.id, AMQPClass::Basic(method));
        let header = AMQPContentHeader {
            class_id: BASIC,
            body_size: body.len() as u64,
            properties,
        };
        self.write(AMQPFrame::Header(ch.id, BASIC, Box::new(header)));
        for chunk in body.chunks(self.frame_max - FRAME_OVERHEAD) {
            self.write(AMQPFrame::Body(ch.id, chunk.to_vec()));
        }
        Ok(())
    }

    pub(crate) fn settle(&mut self, ch: ChannelRef, tag: u64, how: Settle) {
        if !self.is_open(ch) {
            return;
        }
        let method = match how {
            Settle::Ack => basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: tag,
                multiple: false,
            }),
            Settle::Requeue => basic::AMQPMethod::Nack(basic::Nack {
                delivery_tag: tag,
                multiple: false,
                requeue: true,
            }),
            Settle::Discard => basic::AMQPMethod::Reject(basic::Reject {
                delivery_tag: tag,
                requeue: false,
            }),
        };
        self.method(ch.id, AMQPClass::Basic(method));
    }

    /// Sends `connection.close`: nothing more is accepted; the connection is gone at the
    /// broker's close-ok (or when the socket ends).
    pub(crate) fn close_connection(&mut self, code: u16, text: &str) {
        if self.lost.is_some() {
            return;
        }
        let method = connection::AMQPMethod::Close(connection::Close {
            reply_code: code,
            reply_text: text.into(),
            class_id: 0,
            method_id: 0,
        });
        self.method(0, AMQPClass::Connection(method));
        self.fail_all(AmqpError::Closed);
    }

    /// The connection is gone: everything waiting fails, every consumer ends.
    pub(crate) fn fail_all(&mut self, error: AmqpError) {
        if self.lost.is_none() {
            self.lost = Some(error.clone());
        }
        for (_, chan) in self.channels.drain() {
            fail_channel(chan, &error, &error);
        }
    }

    /// One frame from the broker.
    pub(crate) fn on_frame(&mut self, frame: AMQPFrame) {
        match frame {
            AMQPFrame::Heartbeat(_) | AMQPFrame::ProtocolHeader(_) => {}
            AMQPFrame::Method(0, AMQPClass::Connection(method)) => self.on_connection(method),
            AMQPFrame::Method(id, class) => self.on_method(id, class),
            AMQPFrame::Header(id, _, header) => {
                let reply_to = header.properties.reply_to().as_ref().map(|r| r.to_string());
                self.on_header(id, header.body_size, reply_to)
            }
            AMQPFrame::Body(id, data) => self.on_body(id, data),
        }
    }

    fn on_connection(&mut self, method: connection::AMQPMethod) {
        match method {
            connection::AMQPMethod::Close(close) => {
                let ok = connection::AMQPMethod::CloseOk(connection::CloseOk {});
                self.method(0, AMQPClass::Connection(ok));
                let why = format!(
                    "closed by RabbitMQ: {} {}",
                    close.reply_code, close.reply_text
                );
                self.fail_all(AmqpError::ConnectionLost(why));
            }
            connection::AMQPMethod::CloseOk(_) => self.fail_all(AmqpError::Closed),
            connection::AMQPMethod::Blocked(blocked) => {
                tracing::warn!(reason = %blocked.reason, "RabbitMQ blocks publishing");
            }
            connection::AMQPMethod::Unblocked(_) => tracing::info!("RabbitMQ unblocked publishing"),
            other => tracing::debug!(?other, "unexpected connection method ignored"),
        }
    }

    fn on_method(&mut self, id: u16, class: AMQPClass) {
        match class {
            AMQPClass::Channel(channel::AMQPMethod::Close(close)) => {
                let ok = channel::AMQPMethod::CloseOk(channel::CloseOk {});
                self.method(id, AMQPClass::Channel(ok));
                let Some(chan) = self.channels.remove(&id) else {
                    return;
                };
                tracing::warn!(channel = id, code = close.reply_code, text = %close.reply_text, "RabbitMQ closed a channel");
                crate::metrics::local::count(crate::metrics::Count::AmqpChannelErrors(
                    crate::metrics::ChannelErrorCode::from_reply_code(close.reply_code),
                ));
                let error = AmqpError::ChannelClosed {
                    code: close.reply_code,
                    text: close.reply_text.to_string(),
                };
                fail_channel(chan, &error, &AmqpError::ChannelGone);
            }
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) => {
                let epoch = match self.channels.get_mut(&id) {
                    Some(chan) => {
                        chan.open = true;
                        chan.epoch
                    }
                    None => return,
                };
                self.reply(
                    id,
                    Expect::ChannelOpen,
                    Reply::ChannelOpened(ChannelRef { id, epoch }),
                );
            }
            AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)) => {
                if let Some(chan) = self.channels.get_mut(&id) {
                    chan.confirms.get_or_insert_with(|| (1, BTreeMap::new()));
                }
                self.reply(id, Expect::Select, Reply::Done);
            }
            AMQPClass::Basic(basic::AMQPMethod::QosOk(_)) => {
                self.reply(id, Expect::Qos, Reply::Done)
            }
            AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)) => {
                self.reply(id, Expect::Declare, Reply::Done)
            }
            AMQPClass::Queue(queue::AMQPMethod::DeleteOk(_)) => {
                self.reply(id, Expect::Delete, Reply::Done)
            }
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)) => {
                self.reply(id, Expect::Consume, Reply::Done)
            }
            AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)) => {
                let tag = ok.consumer_tag.to_string();
                if let Some(consumer) = self
                    .channels
                    .get_mut(&id)
                    .and_then(|c| c.consumers.remove(&tag))
                {
                    consumer.end(End::Cancelled);
                }
                self.reply(id, Expect::Cancel(tag), Reply::Done);
            }
            // The broker cancels a consumer (its queue was deleted).
            AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel)) => {
                let tag = cancel.consumer_tag.to_string();
                if let Some(consumer) = self
                    .channels
                    .get_mut(&id)
                    .and_then(|c| c.consumers.remove(&tag))
                {
                    consumer.end(End::Cancelled);
                }
                if !cancel.nowait {
                    let ok = basic::AMQPMethod::CancelOk(basic::CancelOk {
                        consumer_tag: tag.into(),
                    });
                    self.method(id, AMQPClass::Basic(ok));
                }
            }
            AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver)) => {
                self.start_content(
                    id,
                    Incoming::Deliver {
                        consumer_tag: deliver.consumer_tag.to_string(),
                        tag: deliver.delivery_tag,
                        redelivered: deliver.redelivered,
                    },
                );
            }
            AMQPClass::Basic(basic::AMQPMethod::Return(returned)) => {
                self.start_content(
                    id,
                    Incoming::Return {
                        code: returned.reply_code,
                        text: returned.reply_text.to_string(),
                        routing_key: returned.routing_key.to_string(),
                    },
                );
            }
            AMQPClass::Basic(basic::AMQPMethod::Ack(ack)) => {
                self.confirm(id, ack.delivery_tag, ack.multiple, true);
            }
            AMQPClass::Basic(basic::AMQPMethod::Nack(nack)) => {
                self.confirm(id, nack.delivery_tag, nack.multiple, false);
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                if let Some(chan) = self.channels.remove(&id) {
                    fail_channel(chan, &AmqpError::ChannelGone, &AmqpError::ChannelGone);
                }
            }
            other => tracing::debug!(channel = id, ?other, "unexpected method ignored"),
        }
    }

    /// The reply to the oldest synchronous method of channel `id`.
    fn reply(&mut self, id: u16, got: Expect, reply: Reply) {
        let Some(chan) = self.channels.get_mut(&id) else {
            return;
        };
        let Some(rpc) = chan.rpcs.pop_front() else {
            tracing::warn!(channel = id, ?got, "a reply nobody waits for");
            return;
        };
        let result = if rpc.expect == got {
            Ok(reply)
        } else {
            Err(AmqpError::Protocol(format!(
                "expected {:?}, got {got:?}",
                rpc.expect
            )))
        };
        if let Some(tx) = rpc.tx {
            let _ = tx.send(result);
        }
    }

    fn start_content(&mut self, id: u16, incoming: Incoming) {
        if let Some(chan) = self.channels.get_mut(&id) {
            chan.content = Some(Content {
                incoming,
                size: None,
                reply_to: None,
                body: Vec::new(),
            });
        }
    }

    fn on_header(&mut self, id: u16, size: u64, reply_to: Option<String>) {
        let Some(content) = self.channels.get_mut(&id).and_then(|c| c.content.as_mut()) else {
            return;
        };
        content.size = Some(size);
        content.reply_to = reply_to;
        if size == 0 {
            self.complete_content(id);
        }
    }

    fn on_body(&mut self, id: u16, data: Vec<u8>) {
        let Some(content) = self.channels.get_mut(&id).and_then(|c| c.content.as_mut()) else {
            return;
        };
        if content.body.is_empty() {
            content.body = data;
        } else {
            content.body.extend_from_slice(&data);
        }
        if content
            .size
            .is_some_and(|size| content.body.len() as u64 >= size)
        {
            self.complete_content(id);
        }
    }

    fn complete_content(&mut self, id: u16) {
        let Some(chan) = self.channels.get_mut(&id) else {
            return;
        };
        let Some(Content {
            incoming,
            body,
            reply_to,
            ..
        }) = chan.content.take()
        else {
            return;
        };
        match incoming {
            Incoming::Deliver {
                consumer_tag,
                tag,
                redelivered,
            } => match chan.consumers.get(&consumer_tag) {
                Some(consumer) => consumer.deliver(Delivery {
                    channel: ChannelRef {
                        id,
                        epoch: chan.epoch,
                    },
                    tag,
                    redelivered,
                    reply_to,
                    body,
                }),
                None => {
                    // Its consumer is gone: back to the queue, not held on the channel.
                    let method = basic::AMQPMethod::Nack(basic::Nack {
                        delivery_tag: tag,
                        multiple: false,
                        requeue: true,
                    });
                    self.method(id, AMQPClass::Basic(method));
                }
            },
            Incoming::Return {
                code,
                text,
                routing_key,
            } => {
                // The broker routes and confirms one queue's messages in order: the return is
                // for the oldest unconfirmed publish to that routing key not returned yet.
                let target = chan.confirms.as_mut().and_then(|(_, unconfirmed)| {
                    unconfirmed
                        .values_mut()
                        .find(|u| u.returned.is_none() && u.routing_key == routing_key)
                });
                match target {
                    Some(unconfirmed) => unconfirmed.returned = Some((code, text)),
                    None => tracing::warn!(routing_key, "a returned message matches no publish"),
                }
            }
        }
    }

    fn confirm(&mut self, id: u16, tag: u64, multiple: bool, ack: bool) {
        let Some((_, unconfirmed)) = self.channels.get_mut(&id).and_then(|c| c.confirms.as_mut())
        else {
            return;
        };
        let done: Vec<u64> = if multiple {
            unconfirmed.range(..=tag).map(|(t, _)| *t).collect()
        } else {
            vec![tag]
        };
        for t in done {
            let Some(u) = unconfirmed.remove(&t) else {
                continue;
            };
            let result = match (ack, u.returned) {
                (false, _) => Confirmed::Nack,
                (true, Some((code, text))) => Confirmed::Returned { code, text },
                (true, None) => Confirmed::Ack,
            };
            let _ = u.tx.send(Ok(result));
        }
    }
}

/// Ends what waited on a closed channel: its oldest synchronous method gets `first` (the one
/// the broker's close was for), the others `rest`; its publishes and consumers get `first`.
fn fail_channel(chan: Chan, first: &AmqpError, rest: &AmqpError) {
    for (i, rpc) in chan.rpcs.into_iter().enumerate() {
        if let Some(tx) = rpc.tx {
            let _ = tx.send(Err(if i == 0 { first.clone() } else { rest.clone() }));
        }
    }
    if let Some((_, unconfirmed)) = chan.confirms {
        for (_, u) in unconfirmed {
            let _ = u.tx.send(Err(first.clone()));
        }
    }
    for (_, consumer) in chan.consumers {
        consumer.end(End::Failed(first.clone()));
    }
}
