//! Settling deliveries on a shared consumer channel: one `basic.ack` per delivery, or batched
//! (one `basic.ack multiple=true` per wake-up for the settled run of tags, single acks for tags
//! settled above a gap).
//!
//! Why gaps get single acks: prefetch is per consumer (`basic.qos global=false`) but delivery
//! tags and `multiple` are per channel. A delivery one client holds (a slow socket in the
//! gateway) would otherwise hold back the acks of every other client on the channel until their
//! own prefetch windows fill and RabbitMQ stops sending to them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;

use tokio::sync::Notify;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum AckMode {
    /// `basic.ack` for each delivery as it is settled (what the gateway does now).
    PerDelivery,
    /// One `basic.ack multiple=true` per wake-up for the contiguous settled tags.
    Batched,
}

/// An ack frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckFrame {
    pub tag: u64,
    pub multiple: bool,
}

/// Which tags of one channel are settled and which acks that calls for. Delivery tags of a
/// channel start at 1 and go up by one for each delivery on it (AMQP 0-9-1, basic.deliver).
#[derive(Debug, Default)]
pub struct AckWindow {
    /// Every tag up to this one is acked.
    acked_upto: u64,
    /// Settled, no ack sent yet.
    settled: BTreeSet<u64>,
    /// Acked one by one above `acked_upto` (above a gap).
    acked_single: BTreeSet<u64>,
}

impl AckWindow {
    pub fn settle(&mut self, tag: u64) {
        if tag > self.acked_upto && !self.acked_single.contains(&tag) {
            self.settled.insert(tag);
        }
    }

    /// The acks for what was settled since the last call: a multiple ack for the run of tags
    /// from the acked prefix on (its tag is always one not acked yet: RabbitMQ answers an ack
    /// of an unknown tag with a 406 that closes the channel), then single acks above the gap.
    pub fn take(&mut self) -> Vec<AckFrame> {
        let mut frames = Vec::new();
        let mut upto = self.acked_upto;
        let mut last_new = None;
        loop {
            let next = upto + 1;
            if self.settled.remove(&next) {
                last_new = Some(next);
            } else if !self.acked_single.remove(&next) {
                break;
            }
            upto = next;
        }
        self.acked_upto = upto;
        if let Some(tag) = last_new {
            frames.push(AckFrame {
                tag,
                multiple: tag > 1,
            });
        }
        for tag in std::mem::take(&mut self.settled) {
            frames.push(AckFrame {
                tag,
                multiple: false,
            });
            self.acked_single.insert(tag);
        }
        frames
    }
}

/// Settles the deliveries of one consumer channel, in the mode the run asked for. `send` queues
/// one ack frame on the channel without waiting.
pub struct ChannelAcks {
    inner: Rc<Inner>,
}

struct Inner {
    mode: AckMode,
    window: RefCell<AckWindow>,
    wake: Notify,
    closed: Cell<bool>,
    frames: Cell<u64>,
    send: Box<dyn Fn(AckFrame)>,
}

/// An ack sender from a library's ack call: the call is polled once now (the frame is queued)
/// and finished by a local task if need be; a failure is printed.
pub fn sender<F, Fut, E>(ack: F) -> Box<dyn Fn(AckFrame)>
where
    F: Fn(AckFrame) -> Fut + 'static,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: std::fmt::Display,
{
    Box::new(move |frame| {
        let sent = ack(frame);
        send_now(async move {
            if let Err(e) = sent.await {
                eprintln!("ack {}: {e}", frame.tag);
            }
        });
    })
}

/// Polls `work` once now (lapin and amqprs both queue the frame before their first wait) and
/// leaves the rest to a local task only if it is not done: as `send_now` in
/// src/gateway/rabbit.rs.
pub fn send_now(work: impl Future<Output = ()> + 'static) {
    let mut work = Box::pin(work);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if work.as_mut().poll(&mut cx).is_pending() {
        tokio::task::spawn_local(work);
    }
}

impl ChannelAcks {
    /// Must run inside a `LocalSet` (the batching flusher is a local task).
    pub fn new(mode: AckMode, send: Box<dyn Fn(AckFrame)>) -> ChannelAcks {
        let inner = Rc::new(Inner {
            mode,
            window: RefCell::new(AckWindow::default()),
            wake: Notify::new(),
            closed: Cell::new(false),
            frames: Cell::new(0),
            send,
        });
        if mode == AckMode::Batched {
            let flusher = inner.clone();
            tokio::task::spawn_local(async move {
                while !flusher.closed.get() {
                    flusher.wake.notified().await;
                    // Behind every task already woken in this turn of the runtime: what they
                    // settle goes into the same ack.
                    tokio::task::yield_now().await;
                    let frames = flusher.window.borrow_mut().take();
                    for frame in frames {
                        flusher.frames.set(flusher.frames.get() + 1);
                        (flusher.send)(frame);
                    }
                }
            });
        }
        ChannelAcks { inner }
    }

    pub fn settle(&self, tag: u64) {
        match self.inner.mode {
            AckMode::PerDelivery => {
                self.inner.frames.set(self.inner.frames.get() + 1);
                (self.inner.send)(AckFrame {
                    tag,
                    multiple: false,
                });
            }
            AckMode::Batched => {
                self.inner.window.borrow_mut().settle(tag);
                self.inner.wake.notify_one();
            }
        }
    }

    /// Ack frames sent so far.
    pub fn frames(&self) -> u64 {
        self.inner.frames.get()
    }
}

impl Drop for ChannelAcks {
    fn drop(&mut self) {
        self.inner.closed.set(true);
        self.inner.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multiple(tag: u64) -> AckFrame {
        AckFrame {
            tag,
            multiple: true,
        }
    }

    fn single(tag: u64) -> AckFrame {
        AckFrame {
            tag,
            multiple: false,
        }
    }

    #[test]
    fn a_contiguous_run_is_one_multiple_ack() {
        let mut w = AckWindow::default();
        for tag in [3, 1, 2] {
            w.settle(tag);
        }
        assert_eq!(w.take(), vec![multiple(3)]);
        assert_eq!(w.take(), vec![]);
        w.settle(4);
        assert_eq!(w.take(), vec![multiple(4)]);
    }

    #[test]
    fn the_first_tag_alone_is_a_single_ack() {
        let mut w = AckWindow::default();
        w.settle(1);
        assert_eq!(w.take(), vec![single(1)]);
    }

    #[test]
    fn tags_above_a_gap_are_acked_singly_and_skipped_later() {
        let mut w = AckWindow::default();
        w.settle(1);
        w.settle(3);
        w.settle(4);
        assert_eq!(w.take(), vec![single(1), single(3), single(4)]);
        // The held delivery (2) is settled at last: one multiple ack covers 2 and 5 (3 and 4
        // are acked already, which a multiple ack skips).
        w.settle(2);
        w.settle(5);
        assert_eq!(w.take(), vec![multiple(5)]);
        w.settle(6);
        assert_eq!(w.take(), vec![multiple(6)]);
    }

    #[test]
    fn the_multiple_ack_ends_on_a_tag_not_acked_yet() {
        let mut w = AckWindow::default();
        w.settle(1);
        w.take();
        w.settle(3);
        assert_eq!(w.take(), vec![single(3)]);
        w.settle(2);
        assert_eq!(w.take(), vec![multiple(2)]);
    }

    #[test]
    fn a_tag_settled_twice_is_acked_once() {
        let mut w = AckWindow::default();
        w.settle(1);
        w.settle(1);
        assert_eq!(w.take(), vec![single(1)]);
        w.settle(1);
        assert_eq!(w.take(), vec![]);
    }
}
