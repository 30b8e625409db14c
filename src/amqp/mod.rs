//! A small AMQP 0-9-1 client for what the gateway does with RabbitMQ, running on the worker's own
//! tokio thread: one task per connection, no thread of its own, frames encoded and decoded by
//! `amq-protocol`.
//!
//! What it does: open channels; `confirm.select`, `basic.qos`; declare and delete queues;
//! consume with manual acks and settle deliveries (ack, nack, reject); publish with publisher
//! confirms (a `basic.return` of a mandatory message is matched to its publish by routing key,
//! the broker routing and confirming one queue's messages in order); heartbeats; the broker
//! cancelling a consumer; `connection.blocked`.
//!
//! How it is built:
//! - Every operation queues its frames synchronously, before it returns: operations reach the
//!   broker in the order they were called, whatever order their futures are awaited in.
//! - All frames queued in one wake-up leave in one write.
//! - Synchronous methods are pipelined on a channel and their replies matched in order.
//! - A channel the broker closes (an error one operation caused) fails that operation with the
//!   broker's code and text ([`AmqpError::ChannelClosed`]), every later one queued on it with
//!   [`AmqpError::ChannelGone`] (they never ran: the caller may try them again on another
//!   channel), and ends its consumers with an error. Only a connection-level error or the loss
//!   of the socket ends the connection ([`Connection::lost`]).
//! - A [`ChannelRef`] carries the channel's epoch, so a settle meant for a closed channel is
//!   never sent on a new channel that reuses its number.
//!
//! The protocol state is in [`state`] (no I/O); the socket, the handshake and the heartbeat in
//! [`driver`].

mod consumer;
mod driver;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::FieldTable;
use tokio::sync::{Notify, oneshot, watch};

pub use consumer::{Consumer, Delivery};
pub use driver::Options;
use state::{Expect, Reply, State};

/// Most bytes a queue or consumer name may have (an AMQP short string).
pub const MAX_NAME: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmqpError {
    #[error("cannot connect to RabbitMQ at {addr}: {why}")]
    Connect { addr: String, why: String },
    #[error("RabbitMQ refused the connection: {code} {text}")]
    Refused { code: u16, text: String },
    #[error("RabbitMQ closed the channel: {code} {text}")]
    ChannelClosed { code: u16, text: String },
    #[error("the channel was closed before this operation ran")]
    ChannelGone,
    #[error("the RabbitMQ connection is lost: {0}")]
    ConnectionLost(String),
    #[error("the RabbitMQ connection was closed by this gateway")]
    Closed,
    #[error("AMQP protocol error: {0}")]
    Protocol(String),
    #[error("{what} {name:?} is longer than {MAX_NAME} bytes")]
    NameTooLong { what: &'static str, name: String },
}

impl AmqpError {
    /// The whole connection is gone (not one channel): nothing on it can be done again.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, AmqpError::ConnectionLost(_) | AmqpError::Closed)
    }
}

/// One channel of a connection, as it was when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    pub id: u16,
    epoch: u32,
}

/// The broker's answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// Taken.
    Ack,
    /// Refused (`basic.nack`).
    Nack,
    /// Returned as unroutable (`mandatory` and no queue), then confirmed.
    Returned { code: u16, text: String },
}

/// What to tell the broker about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    /// `basic.nack` with requeue: back to its queue.
    Requeue,
    /// `basic.reject` without requeue: dropped (or dead-lettered).
    Discard,
}

/// A connection to RabbitMQ. Cheap to clone; every clone is the same connection.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Frames were queued: the driver writes them.
    wrote: Notify,
    /// `true` once the connection is gone.
    lost: watch::Sender<bool>,
}

impl Connection {
    /// Connects, logs in and opens the virtual host; the connection's task runs on the current
    /// tokio runtime from then on.
    pub async fn open(options: &Options) -> Result<Connection, AmqpError> {
        driver::open(options).await
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `queue` on the state, then wakes the writer if it queued frames.
    fn with_state<T>(&self, queue: impl FnOnce(&mut State) -> T) -> T {
        let (result, wrote) = {
            let mut state = self.state();
            let before = state.pending_output();
            let result = queue(&mut state);
            (result, state.pending_output() > before)
        };
        if wrote {
            self.inner.wrote.notify_one();
        }
        result
    }

    /// Becomes `true` when the connection is gone (the broker closed it, the socket failed,
    /// heartbeats stopped, or [`Connection::close`]).
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.inner.lost.subscribe()
    }

    /// Whether the channel is open (not closed by the broker or by us, connection up).
    pub fn is_open(&self, channel: ChannelRef) -> bool {
        self.state().is_open(channel)
    }

    /// Sends a synchronous method and waits for its reply.
    fn rpc<F>(
        &self,
        channel: Option<ChannelRef>,
        build: F,
    ) -> impl Future<Output = Result<Reply, AmqpError>> + Send + 'static + use<F>
    where
        F: FnOnce(&mut State) -> Result<(u16, Expect), AmqpError>,
    {
        let (tx, rx) = oneshot::channel();
        let queued = self.with_state(|state| state.rpc(channel, build, Some(tx)));
        async move {
            queued?;
            rx.await.unwrap_or_else(|_| {
                Err(AmqpError::ConnectionLost(
                    "the connection task ended".into(),
                ))
            })
        }
    }

    /// Opens a new channel.
    pub fn channel(
        &self,
    ) -> impl Future<Output = Result<ChannelRef, AmqpError>> + Send + 'static + use<> {
        let opened = self.rpc(None, State::open_channel);
        async move {
            match opened.await? {
                Reply::ChannelOpened(channel) => Ok(channel),
                other => Err(unexpected(other)),
            }
        }
    }

    /// Puts the channel in confirm mode (`confirm.select`).
    pub fn confirm_select(
        &self,
        channel: ChannelRef,
    ) -> impl Future<Output = Result<(), AmqpError>> + Send + 'static + use<> {
        let done = self.rpc(Some(channel), move |s| s.confirm_select(channel));
        async move { done.await.map(drop) }
    }

    /// `basic.qos` with `prefetch` per consumer (`global = false`).
    pub fn qos(
        &self,
        channel: ChannelRef,
        prefetch: u16,
    ) -> impl Future<Output = Result<(), AmqpError>> + Send + 'static + use<> {
        let done = self.rpc(Some(channel), move |s| s.qos(channel, prefetch));
        async move { done.await.map(drop) }
    }

    /// Declares `queue` (not passive, not exclusive, not auto-delete) with `arguments`.
    pub fn queue_declare(
        &self,
        channel: ChannelRef,
        queue: &str,
        durable: bool,
        arguments: FieldTable,
    ) -> impl Future<Output = Result<(), AmqpError>> + Send + 'static + use<> {
        let queue = check_name("queue", queue);
        let done = match queue {
            Ok(queue) => Ok(self.rpc(Some(channel), move |s| {
                s.queue_declare(channel, &queue, durable, arguments)
            })),
            Err(e) => Err(e),
        };
        async move { done?.await.map(drop) }
    }

    /// Deletes `queue`, only if nobody consumes it when `if_unused`.
    pub fn queue_delete(
        &self,
        channel: ChannelRef,
        queue: &str,
        if_unused: bool,
    ) -> impl Future<Output = Result<(), AmqpError>> + Send + 'static + use<> {
        let queue = check_name("queue", queue);
        let done = match queue {
            Ok(queue) => Ok(self.rpc(Some(channel), move |s| {
                s.queue_delete(channel, &queue, if_unused)
            })),
            Err(e) => Err(e),
        };
        async move { done?.await.map(drop) }
    }

    /// Consumes `queue` with manual acks under the consumer tag `tag`.
    pub fn consume(
        &self,
        channel: ChannelRef,
        queue: &str,
        tag: &str,
    ) -> impl Future<Output = Result<Consumer, AmqpError>> + Send + 'static + use<> {
        let names =
            check_name("queue", queue).and_then(|q| Ok((q, check_name("consumer tag", tag)?)));
        let (consumer, done) = match names {
            Ok((queue, tag)) => {
                let consumer = Consumer::new(channel, tag.clone());
                let shared = consumer.shared();
                let done = self.rpc(Some(channel), move |s| {
                    s.consume(channel, &queue, &tag, shared)
                });
                (Some(consumer), Ok(done))
            }
            Err(e) => (None, Err(e)),
        };
        async move {
            done?.await?;
            consumer.ok_or(AmqpError::Protocol("no consumer".into()))
        }
    }

    /// Asks the broker to stop the consumer `tag`; its stream ends at the broker's cancel-ok
    /// (deliveries already on their way still arrive before that).
    pub fn cancel(&self, channel: ChannelRef, tag: &str) {
        let tag = tag.to_string();
        let queued =
            self.with_state(|state| state.rpc(Some(channel), |s| s.cancel(channel, &tag), None));
        if let Err(e) = queued {
            tracing::debug!(tag, "cannot cancel the consumer: {e}");
        }
    }

    /// Publishes `body` to the default exchange for `routing_key` on a confirm channel. The
    /// frames are queued now; the future resolves with the broker's confirm.
    pub fn publish(
        &self,
        channel: ChannelRef,
        routing_key: &str,
        mandatory: bool,
        properties: AMQPProperties,
        body: &[u8],
    ) -> impl Future<Output = Result<Confirmed, AmqpError>> + Send + 'static + use<> {
        let (tx, rx) = oneshot::channel();
        let queued = match check_name("routing key", routing_key) {
            Ok(key) => self
                .with_state(|state| state.publish(channel, &key, mandatory, properties, body, tx)),
            Err(e) => Err(e),
        };
        async move {
            queued?;
            rx.await.unwrap_or_else(|_| {
                Err(AmqpError::ConnectionLost(
                    "the connection task ended".into(),
                ))
            })
        }
    }

    /// Settles delivery `tag` of `channel` (nothing is sent if that channel has closed since:
    /// the broker requeued what it had not been told about).
    pub fn settle(&self, channel: ChannelRef, tag: u64, how: Settle) {
        self.with_state(|state| state.settle(channel, tag, how));
    }

    /// Closes the connection (the broker requeues what is unacked) and waits, at most
    /// `within`, for the broker to confirm.
    pub async fn close(&self, within: std::time::Duration) {
        let mut lost = self.lost();
        self.with_state(|state| state.close_connection(200, "closing"));
        let _ = tokio::time::timeout(within, lost.wait_for(|lost| *lost)).await;
    }
}

fn check_name(what: &'static str, name: &str) -> Result<String, AmqpError> {
    if name.len() > MAX_NAME {
        return Err(AmqpError::NameTooLong {
            what,
            name: name.to_string(),
        });
    }
    Ok(name.to_string())
}

fn unexpected(reply: Reply) -> AmqpError {
    AmqpError::Protocol(format!("unexpected reply {reply:?}"))
}

#[cfg(test)]
mod tests;
