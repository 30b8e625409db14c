//! One client connection: a single task that owns the websocket, its framing, its client and
//! its consumer, from the upgrade to the last confirm.
//!
//! Each wake-up reads what the socket has into a buffer shared by every connection of the
//! worker (an idle connection holds no read buffer), hands whole messages to the framing and the
//! client, and collects everything they write into one output buffer, written in one go and
//! freed once empty. A slow reader is back-pressured, never dropped: while its unwritten output
//! is above [`HIGH_WATER`], its queue's deliveries are not taken (RabbitMQ holds them, at most
//! [`PREFETCH`](super::rabbit::PREFETCH) unacked), and a push the client does not ack is acked
//! on RabbitMQ only once it has been written to the socket.
//!
//! A connection ends when the client closes it, stops answering heartbeats, or breaks the
//! protocol; when the client logic closes it (logout, EOL, queue gone); or when the worker
//! drains or loses RabbitMQ: then the websocket is closed without a socket.io disconnect, as a
//! dying server's would be, so that standard clients reconnect by themselves (to another
//! worker) and resume with their key. Either way the client's DisconnectRequest and every other publish are
//! confirmed, and the consumer's last deliveries requeued, before the task ends (bounded by
//! [`LINGER`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep_until};

use super::Shared;
use super::client::{AfterCancel, Client, Close, Context, Effects, Then};
use super::fanout::{Mail, Membership};
use super::framing::{Framing, Received};
use super::personal::Personal;
use super::rabbit::{Rabbit, RabbitError, Settle, Subscription, Unsettled};
use super::wire::websocket::{self, Message};
use crate::metrics::{Count, FrameRefusal, Protocol, local};

/// Unwritten output above which the connection stops taking its queue's deliveries.
pub const HIGH_WATER: usize = 256 * 1024;
/// How long a closing connection may wait for its last confirms and deliveries.
pub const LINGER: Duration = Duration::from_secs(5);
/// The shared read buffer's size (per worker thread, not per connection).
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Why a connection is closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// The client closed it, went silent, broke the protocol or the socket failed.
    Peer,
    /// The client logic ended it.
    Server(Close),
    /// The worker is going: it drains, or it lost RabbitMQ.
    Dying,
}

/// Who a connection is, for its log lines.
#[derive(Debug, Clone)]
pub struct Peer {
    pub sid: String,
    pub addr: Option<std::net::SocketAddr>,
}

/// A subscription being made: the first one (the client waits for it), or again after the
/// consumer's channel was closed under it.
enum Subscribing {
    First,
    Again,
}

/// The connection's side of the client's effects: the output, the broker, the registry.
struct Io<F> {
    framing: F,
    /// Frames not written yet, from `written` on; freed once all is written.
    out: Vec<u8>,
    written: usize,
    /// Deliveries to ack once the output up to the offset has been written.
    after_write: VecDeque<(usize, Unsettled)>,
    rabbit: Arc<Rabbit>,
    declares: Arc<super::limits::SharedRate>,
    /// The client queue's name, once the client has asked for it.
    queue: Option<String>,
    subscribing: Option<(
        BoxFuture<'static, Result<Subscription, RabbitError>>,
        Subscribing,
    )>,
    subscription: Option<Subscription>,
    /// The consumer was cancelled: its stream is only drained now; and what becomes of the
    /// queue once it is.
    cancelled: Option<AfterCancel>,
    confirms: FuturesUnordered<BoxFuture<'static, (Then, Result<(), RabbitError>)>>,
    /// Publishes that finished on their first poll, to be reported on the next turn.
    done: Vec<(Then, Result<(), RabbitError>)>,
    membership: Membership,
    /// The worker's realtime side (`realtime.enabled`), and the socket's subscription to its
    /// user's channel once it has a user.
    realtime: Option<crate::realtime::Realtime>,
    personal: Option<Personal>,
    closing: Option<Closing>,
}

impl<F: Framing> Effects<Unsettled> for Io<F> {
    fn emit(&mut self, event: &str, data: &Value) {
        if self.closing.is_none() {
            self.framing.event(event, data, &mut self.out);
        }
    }

    fn push(&mut self, body: &[u8], delivery: Option<Unsettled>) {
        if self.closing.is_some() {
            // Not written: back to the queue for the next connection.
            if let Some(delivery) = delivery {
                delivery.settle(Settle::Requeue);
            }
            return;
        }
        self.framing
            .event_raw(super::events::PUSH, body, &mut self.out);
        if let Some(delivery) = delivery {
            self.after_write.push_back((self.out.len(), delivery));
        }
    }

    fn publish(&mut self, queue: &str, body: Vec<u8>, reply_to: &str, then: Then) {
        let publish = self.rabbit.publish(queue, body, reply_to);
        let mut confirm: BoxFuture<'static, _> = Box::pin(async move { (then, publish.await) });
        // Polled once now, so that its frames are queued before the next publish's.
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        match confirm.as_mut().poll(&mut cx) {
            Poll::Ready(done) => self.done.push(done),
            Poll::Pending => self.confirms.push(confirm),
        }
    }

    fn subscribe(&mut self, queue: &str) {
        self.queue = Some(queue.to_string());
        // `gateway.rabbitmq.maxQueueDeclaresPerSecond`: a connect over the worker's rate waits
        // its turn (it is not refused).
        let wait = self.declares.reserve(Instant::now());
        let subscribe = self.rabbit.subscribe(queue);
        let subscribing = async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            subscribe.await
        };
        self.subscribing = Some((Box::pin(subscribing), Subscribing::First));
    }

    fn unsubscribe(&mut self, then: AfterCancel) {
        self.cancelled = Some(then);
        if let Some(subscription) = &self.subscription {
            subscription.cancel();
        }
    }

    fn settle(&mut self, delivery: Unsettled, how: Settle) {
        delivery.settle(how);
    }

    fn join_user(&mut self, user: &str, resume: Option<&Value>) {
        self.membership.set_user(Some(user));
        if let Some(realtime) = &self.realtime {
            let mailbox = self.membership.mailbox.clone();
            self.personal
                .get_or_insert_with(|| Personal::new(realtime.clone(), mailbox))
                .join(user, resume);
        }
    }

    fn leave_user(&mut self, _user: &str) {
        self.membership.set_user(None);
        if let Some(personal) = &mut self.personal {
            personal.leave();
        }
    }

    fn close(&mut self, why: Close) {
        if self.closing.is_none() {
            self.framing.disconnect(&mut self.out);
            websocket::encode_close(websocket::close_code::NORMAL, "", &mut self.out);
            self.closing = Some(Closing::Server(why));
        }
    }
}

impl<F: Framing> Io<F> {
    fn backlog(&self) -> usize {
        self.out.len() - self.written
    }

    /// After `n` more bytes were written: acks what is out, frees the buffer once empty.
    fn wrote(&mut self, n: usize) {
        self.written += n;
        while self
            .after_write
            .front()
            .is_some_and(|(end, _)| *end <= self.written)
        {
            if let Some((_, delivery)) = self.after_write.pop_front() {
                delivery.settle(Settle::Ack);
            }
        }
        if self.written == self.out.len() {
            self.out = Vec::new();
            self.written = 0;
        }
    }

    /// The socket is gone: what was not written goes back to RabbitMQ.
    fn abandon_output(&mut self) {
        for (_, delivery) in self.after_write.drain(..) {
            delivery.settle(Settle::Requeue);
        }
        self.out = Vec::new();
        self.written = 0;
    }

    /// Done: closing, nothing in flight with the broker, the consumer's stream drained.
    fn finished(&self) -> bool {
        self.closing.is_some()
            && self.confirms.is_empty()
            && self.done.is_empty()
            && self.subscribing.is_none()
            && self.subscription.is_none()
            && self.backlog() == 0
    }
}

/// What the socket did in one turn.
enum IoEvent {
    /// Bytes went out.
    Wrote,
    /// Whole websocket messages came in (in the inbox).
    Read,
    /// The client closed its side.
    Eof,
    Failed(String),
    /// The client broke the websocket protocol, or sent a message over the size limit.
    Refused(websocket::WsError),
}

/// Runs one client connection until it has closed and settled everything.
pub async fn run<IO, F>(mut io: IO, framing: F, shared: Arc<Shared>, peer: Peer)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
    F: Framing,
{
    let _count = Counted::new(&shared, framing.protocol());
    let mut fx = Io {
        framing,
        out: Vec::new(),
        written: 0,
        after_write: VecDeque::new(),
        rabbit: shared.rabbit.clone(),
        declares: shared.declares.clone(),
        queue: None,
        subscribing: None,
        subscription: None,
        cancelled: None,
        confirms: FuturesUnordered::new(),
        done: Vec::new(),
        membership: shared.registry.join(),
        realtime: shared.realtime.get().cloned(),
        personal: None,
        closing: None,
    };
    let mut client: Client<Unsettled> = Client::new(shared.limits);
    let mut decoder = websocket::Decoder::new(shared.max_message);
    let mut inbox: Vec<Message> = Vec::new();
    let mut draining = shared.draining.subscribe();
    let mailbox = fx.membership.mailbox.clone();
    // Made once, not on each turn of the loop (a new `notified()` registers with the Notify
    // and a dropped one unregisters: 1.3k of a round trip's 40k instructions).
    let mut arrived = std::pin::pin!(mailbox.arrived());
    let mut drain_started = std::pin::pin!(async move {
        // The sender gone is the worker going: the same as a drain.
        let _ = draining.wait_for(|d| *d).await;
    });
    tracing::debug!(sid = %peer.sid, addr = ?peer.addr, framing = fx.framing.name(), "client connected");
    if let Err(e) = fx.framing.open(Instant::now(), &mut fx.out) {
        tracing::debug!(sid = %peer.sid, "connection refused: {e}");
        websocket::encode_close(websocket::close_code::POLICY_VIOLATION, "", &mut fx.out);
        fx.closing = Some(Closing::Peer);
    }
    let mut linger_until: Option<Instant> = None;
    let mut deadline = fx.framing.heartbeat_due();
    let mut timer: Pin<Box<Sleep>> = Box::pin(sleep_until(deadline));

    loop {
        if fx.finished() {
            break;
        }
        if fx.closing.is_some() && linger_until.is_none() {
            linger_until = Some(Instant::now() + LINGER);
        }
        let due = [
            Some(fx.framing.heartbeat_due()).filter(|_| fx.closing.is_none()),
            client.next_resend().filter(|_| fx.closing.is_none()),
            linger_until,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + LINGER);
        if due != deadline {
            deadline = due;
            timer.as_mut().reset(deadline);
        }
        let reading = fx.closing.is_none();
        let taking = fx.subscription.is_some() && fx.backlog() < HIGH_WATER;
        let ctx = Context {
            secret: &shared.secret,
            now: Instant::now(),
            resend_interval: shared.resend_interval(),
        };
        if !fx.done.is_empty() {
            for (then, result) in std::mem::take(&mut fx.done) {
                client.on_published(then, result, &mut fx);
            }
            continue;
        }
        tokio::select! {
            event = std::future::poll_fn(|cx| poll_io(cx, &mut io, &mut fx.out, fx.written, &mut decoder, &mut inbox, reading)) => {
                fx.wrote(event.0);
                match event.1 {
                    IoEvent::Wrote => {}
                    IoEvent::Read => {
                        for message in inbox.drain(..) {
                            on_message(message, &ctx, &mut client, &mut fx, &peer);
                        }
                    }
                    IoEvent::Eof => {
                        tracing::debug!(sid = %peer.sid, "the client closed the connection");
                        fx.abandon_output();
                        peer_gone(&mut client, &mut fx);
                    }
                    IoEvent::Failed(why) => {
                        tracing::debug!(sid = %peer.sid, "connection closed: {why}");
                        fx.abandon_output();
                        peer_gone(&mut client, &mut fx);
                    }
                    IoEvent::Refused(error) => {
                        // What came before the bad frame is the client's still.
                        for message in inbox.drain(..) {
                            on_message(message, &ctx, &mut client, &mut fx, &peer);
                        }
                        local::count(Count::FramesRefused(match &error {
                            websocket::WsError::TooBig { .. } => FrameRefusal::TooBig,
                            _ => FrameRefusal::WebSocket,
                        }));
                        if let websocket::WsError::TooBig { size, max } = &error {
                            tracing::warn!(sid = %peer.sid, addr = ?peer.addr, size, max, "connection closed: a message over frontend.maxMessageSize");
                        } else {
                            tracing::debug!(sid = %peer.sid, "connection closed: websocket protocol error: {error}");
                        }
                        websocket::encode_close(error.close_code(), "", &mut fx.out);
                        peer_gone(&mut client, &mut fx);
                    }
                }
            }
            delivery = next_delivery(&mut fx.subscription), if taking => {
                on_delivery(delivery, &ctx, &mut client, &mut fx, &peer);
            }
            subscribed = async { match fx.subscribing.as_mut() { Some((s, _)) => s.await, None => std::future::pending().await } }, if fx.subscribing.is_some() => {
                on_subscribed(subscribed, &ctx, &mut client, &mut fx, &peer);
            }
            Some((then, result)) = fx.confirms.next(), if !fx.confirms.is_empty() => {
                client.on_published(then, result, &mut fx);
            }
            () = &mut timer => {
                let now = Instant::now();
                if linger_until.is_some_and(|t| t <= now) {
                    tracing::warn!(sid = %peer.sid, confirms = fx.confirms.len(), "closing connection: gave up waiting for the broker");
                    break;
                }
                if fx.closing.is_none() {
                    if let Err(silent) = fx.framing.heartbeat(now, &mut fx.out) {
                        tracing::debug!(sid = %peer.sid, "connection closed: {silent}");
                        peer_gone(&mut client, &mut fx);
                    } else {
                        let ctx = Context { now, ..ctx };
                        client.on_resend_due(&ctx, &mut fx);
                    }
                }
            }
            emits = personal_subscribed(&mut fx.personal), if fx.closing.is_none() => {
                for (event, data) in emits.0 {
                    fx.framing.event(event, &data, &mut fx.out);
                }
            }
            () = &mut arrived, if fx.closing.is_none() => {
                arrived.set(mailbox.arrived());
                for mail in mailbox.take() {
                    match mail {
                        Mail::Push(body) => fx.push(&body, None),
                        Mail::Realtime(channel, publication) => {
                            let payload = fx.personal.as_mut().and_then(|p| p.publication(&channel, &publication));
                            if let Some(payload) = payload {
                                fx.framing.event(crate::realtime::SOCKETIO_EVENT, &payload, &mut fx.out);
                            }
                        }
                        Mail::RealtimeLost(channel) => {
                            if let Some(personal) = &mut fx.personal {
                                personal.position_lost(&channel);
                            }
                        }
                    }
                }
            }
            () = &mut drain_started, if fx.closing.is_none() => {
                close_as_dying(&mut client, &mut fx, &peer, "worker draining");
            }
        }
    }
    // Whatever could not be settled in time goes back to RabbitMQ with the channel's close or
    // the consumer's cancel; unwritten pushes are requeued now.
    fx.abandon_output();
    if let Some(subscription) = fx.subscription.take() {
        subscription.cancel();
    }
    if let Some(personal) = fx.personal.take() {
        personal.close();
    }
    tracing::debug!(sid = %peer.sid, client = %client.client_id(), closing = ?fx.closing, "connection ended");
}

/// The peer is gone (or must be): the client is disposed, nothing more is read.
fn peer_gone<F: Framing>(client: &mut Client<Unsettled>, fx: &mut Io<F>) {
    if fx.closing.is_none() {
        fx.closing = Some(Closing::Peer);
    }
    client.dispose(fx);
}

fn on_message<F: Framing>(
    message: Message,
    ctx: &Context<'_>,
    client: &mut Client<Unsettled>,
    fx: &mut Io<F>,
    peer: &Peer,
) {
    if fx.closing.is_some() {
        return;
    }
    match message {
        Message::Text(text) => match fx.framing.receive(&text, ctx.now, &mut fx.out) {
            Ok(Received::Event { name, data }) => match name.as_str() {
                "message" => client.on_message(ctx, data.and_then(|d| d.value().ok()), fx),
                _ => client.on_request(ctx, &name, data.as_ref(), fx),
            },
            Ok(Received::Nothing) => {}
            Ok(Received::Close) => {
                tracing::debug!(sid = %peer.sid, "the client disconnected");
                websocket::encode_close(websocket::close_code::NORMAL, "", &mut fx.out);
                peer_gone(client, fx);
            }
            Err(e) => {
                local::count(Count::FramesRefused(FrameRefusal::SocketIo));
                tracing::debug!(sid = %peer.sid, "connection closed: protocol error: {e}");
                websocket::encode_close(websocket::close_code::PROTOCOL_ERROR, "", &mut fx.out);
                peer_gone(client, fx);
            }
        },
        Message::Ping(payload) => websocket::encode_pong(&payload, &mut fx.out),
        Message::Pong(_) => {}
        Message::Binary(_) => {
            local::count(Count::FramesRefused(FrameRefusal::Binary));
            tracing::debug!(sid = %peer.sid, "connection closed: binary messages are not supported");
            websocket::encode_close(websocket::close_code::INVALID_PAYLOAD, "", &mut fx.out);
            peer_gone(client, fx);
        }
        Message::Close(_) => {
            tracing::debug!(sid = %peer.sid, "the client closed the websocket");
            websocket::encode_close(websocket::close_code::NORMAL, "", &mut fx.out);
            peer_gone(client, fx);
        }
    }
}

async fn personal_subscribed(personal: &mut Option<Personal>) -> super::personal::Emits {
    match personal {
        Some(p) => p.subscribed().await,
        None => std::future::pending().await,
    }
}

/// Closes the connection as a dying server's would be closed (a websocket close, no socket.io
/// disconnect): standard clients reconnect by themselves, to another worker, and resume with
/// their key. For a draining worker, and for one that lost RabbitMQ (it drains and exits);
/// nothing more once the connection is closing.
fn close_as_dying<F: Framing>(
    client: &mut Client<Unsettled>,
    fx: &mut Io<F>,
    peer: &Peer,
    why: &str,
) {
    if fx.closing.is_some() {
        return;
    }
    tracing::debug!(sid = %peer.sid, "{why}: closing the connection");
    client.dispose(fx);
    websocket::encode_close(websocket::close_code::GOING_AWAY, "", &mut fx.out);
    fx.closing = Some(Closing::Dying);
}

async fn next_delivery(
    subscription: &mut Option<Subscription>,
) -> Option<Result<crate::amqp::Delivery, crate::amqp::AmqpError>> {
    match subscription {
        Some(s) => s.consumer.next().await,
        None => std::future::pending().await,
    }
}

fn on_delivery<F: Framing>(
    delivery: Option<Result<crate::amqp::Delivery, crate::amqp::AmqpError>>,
    ctx: &Context<'_>,
    client: &mut Client<Unsettled>,
    fx: &mut Io<F>,
    peer: &Peer,
) {
    match delivery {
        Some(Ok(delivery)) => {
            let handle = fx.rabbit.unsettled(&delivery);
            client.on_delivery(ctx, handle, delivery.body, fx);
        }
        // Its channel was closed (an error elsewhere on it, or the connection): RabbitMQ
        // requeued what it had not acked. Consume again, on an open channel.
        Some(Err(e)) => {
            fx.subscription = None;
            if fx.cancelled.is_some() || fx.closing.is_some() {
                return;
            }
            if e.is_connection_lost() {
                // The queue is still there (and what it holds): the worker is going, not the
                // client's queue.
                return close_as_dying(client, fx, peer, "RabbitMQ lost");
            }
            if let Some(queue) = fx.queue.clone() {
                tracing::warn!(sid = %peer.sid, queue, "client queue consumer failed ({e}); consuming again");
                fx.subscribing = Some((Box::pin(fx.rabbit.subscribe(&queue)), Subscribing::Again));
            }
        }
        // Cancelled: by us (disposal), or by the broker (the queue was deleted).
        None => {
            fx.subscription = None;
            match (fx.cancelled, &fx.queue) {
                (None, _) => client.on_queue_gone(fx),
                (Some(AfterCancel::Delete), Some(queue)) => fx.rabbit.delete_queue(queue),
                (Some(AfterCancel::Keep), _) | (_, None) => {}
            }
        }
    }
}

fn on_subscribed<F: Framing>(
    result: Result<Subscription, RabbitError>,
    ctx: &Context<'_>,
    client: &mut Client<Unsettled>,
    fx: &mut Io<F>,
    peer: &Peer,
) {
    let Some((_, purpose)) = fx.subscribing.take() else {
        return;
    };
    match (result, purpose) {
        (Ok(subscription), purpose) => {
            if fx.cancelled.is_some() {
                // Disposed while subscribing: give it back (and drain what arrives).
                subscription.cancel();
            }
            fx.subscription = Some(subscription);
            if matches!(purpose, Subscribing::First) {
                client.on_subscribed(ctx, Ok(()), fx);
            }
        }
        (Err(e), Subscribing::First) => client.on_subscribed(ctx, Err(e), fx),
        (Err(e), Subscribing::Again) if e.is_connection_lost() => {
            close_as_dying(client, fx, peer, "RabbitMQ lost");
        }
        (Err(e), Subscribing::Again) => {
            tracing::error!(sid = %peer.sid, "cannot consume the client queue again: {e}");
            client.on_queue_gone(fx);
        }
    }
}

/// One turn of socket I/O: writes what is pending, then reads what has arrived (if `reading`)
/// through the shared buffer, decoding whole websocket messages into `inbox`. Returns how many
/// bytes were written with what else happened; pending while neither could progress.
fn poll_io<IO: AsyncRead + AsyncWrite + Unpin>(
    cx: &mut TaskContext<'_>,
    io: &mut IO,
    out: &mut [u8],
    written: usize,
    decoder: &mut websocket::Decoder,
    inbox: &mut Vec<Message>,
    reading: bool,
) -> Poll<(usize, IoEvent)> {
    let failed = |n, why: String| Poll::Ready((n, IoEvent::Failed(why)));
    let mut n = 0;
    while written + n < out.len() {
        match Pin::new(&mut *io).poll_write(cx, &out[written + n..]) {
            Poll::Ready(Ok(0)) => return failed(n, "socket closed for writing".into()),
            Poll::Ready(Ok(k)) => n += k,
            Poll::Ready(Err(e)) => return failed(n, format!("write: {e}")),
            Poll::Pending => break,
        }
    }
    if n > 0 && written + n == out.len() {
        // TLS holds records until flushed; a plain socket's flush does nothing.
        if let Poll::Ready(Err(e)) = Pin::new(&mut *io).poll_flush(cx) {
            return failed(n, format!("flush: {e}"));
        }
    }
    if reading {
        let read = SCRATCH.with_borrow_mut(|buf| {
            let mut read_buf = ReadBuf::new(buf);
            match Pin::new(&mut *io).poll_read(cx, &mut read_buf) {
                Poll::Ready(Ok(())) if read_buf.filled().is_empty() => Poll::Ready(IoEvent::Eof),
                Poll::Ready(Ok(())) => match decoder.feed(read_buf.filled(), inbox) {
                    Ok(()) => Poll::Ready(IoEvent::Read),
                    Err(e) => Poll::Ready(IoEvent::Refused(e)),
                },
                Poll::Ready(Err(e)) => Poll::Ready(IoEvent::Failed(format!("read: {e}"))),
                Poll::Pending => Poll::Pending,
            }
        });
        if let Poll::Ready(read) = read {
            return Poll::Ready((n, read));
        }
    }
    if n > 0 {
        Poll::Ready((n, IoEvent::Wrote))
    } else {
        Poll::Pending
    }
}

/// Counts the connection among the worker's clients for as long as it runs.
struct Counted<'a>(&'a Shared, Protocol);

impl<'a> Counted<'a> {
    fn new(shared: &'a Shared, protocol: Protocol) -> Counted<'a> {
        shared.clients.fetch_add(1, Ordering::Relaxed);
        local::client_opened(protocol);
        Counted(shared, protocol)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
        local::client_closed(self.1);
        self.0.left.notify_waiters();
    }
}
