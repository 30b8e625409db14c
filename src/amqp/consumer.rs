//! A consumer's deliveries, handed from the connection's task to whoever consumes: a small
//! queue (at most the channel's prefetch waits in it) and a waker. It holds no buffer while
//! nothing waits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::{AmqpError, ChannelRef};

/// One message from a consumed queue, unsettled until [`super::Connection::settle`].
#[derive(Debug)]
pub struct Delivery {
    pub channel: ChannelRef,
    pub tag: u64,
    pub redelivered: bool,
    /// The `reply-to` property (where an agent sends its answer).
    pub reply_to: Option<String>,
    pub body: Vec<u8>,
}

/// How a consumer's stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum End {
    /// Cancelled: by us (at the broker's cancel-ok), or by the broker (its queue was deleted).
    Cancelled,
    /// Its channel or the connection closed.
    Failed(AmqpError),
}

#[derive(Default)]
struct Queue {
    deliveries: VecDeque<Delivery>,
    end: Option<End>,
    waker: Option<Waker>,
}

/// The side the connection's task fills.
#[derive(Default)]
pub(super) struct Shared(Mutex<Queue>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn deliver(&self, delivery: Delivery) {
        let mut queue = self.lock();
        queue.deliveries.push_back(delivery);
        if let Some(waker) = queue.waker.take() {
            waker.wake();
        }
    }

    pub(super) fn end(&self, end: End) {
        let mut queue = self.lock();
        if matches!(end, End::Failed(_)) {
            // Their channel is gone: the broker requeued them, and they cannot be settled.
            queue.deliveries.clear();
        }
        queue.end.get_or_insert(end);
        if let Some(waker) = queue.waker.take() {
            waker.wake();
        }
    }
}

/// The deliveries of one consumer, in order.
pub struct Consumer {
    pub channel: ChannelRef,
    pub tag: String,
    shared: Arc<Shared>,
}

impl Consumer {
    pub(super) fn new(channel: ChannelRef, tag: String) -> Consumer {
        Consumer {
            channel,
            tag,
            shared: Arc::default(),
        }
    }

    pub(super) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The next delivery; `None` once the consumer is cancelled (every delivery before the
    /// cancel has been handed out); an error once its channel or the connection has closed.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery, AmqpError>>> {
        let mut queue = self.shared.lock();
        if let Some(delivery) = queue.deliveries.pop_front() {
            if queue.deliveries.is_empty() && queue.deliveries.capacity() > 16 {
                queue.deliveries = VecDeque::new();
            }
            return Poll::Ready(Some(Ok(delivery)));
        }
        match &queue.end {
            Some(End::Cancelled) => Poll::Ready(None),
            Some(End::Failed(e)) => Poll::Ready(Some(Err(e.clone()))),
            None => {
                queue.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    pub async fn next(&mut self) -> Option<Result<Delivery, AmqpError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}
