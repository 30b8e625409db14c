//! The worker's local fan-out: channel -> the subscribers on this worker, each with the stream
//! position it has reached. One Redis message per publication comes in; each subscriber's
//! [`Sink`] gets it at most once, in offset order, or is told its position is lost.
//!
//! A subscriber joins *pending*: publications arriving while its history is read are kept, and
//! [`Hub::activate`] merges them with what was read, so nothing falls between the history read
//! and live delivery and nothing is delivered twice (Centrifugo buffers the same way).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::metrics::{Count, local};

/// One publication as it travels: offset (0 = the channel keeps no history), the stream's
/// epoch, and the publication JSON (`{"offset":N,"data":...}`), shared by every subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubMsg {
    pub offset: u64,
    pub epoch: Arc<str>,
    pub json: Arc<str>,
}

impl PubMsg {
    /// From what the engine's publish script sends. The offset is the script's own first field
    /// (`{"offset":N,`); a publication without one is from a channel with no history.
    pub fn from_redis(epoch: &str, json: &str) -> PubMsg {
        let offset = json
            .strip_prefix("{\"offset\":")
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        PubMsg {
            offset,
            epoch: epoch.into(),
            json: json.into(),
        }
    }
}

/// Where a subscriber's publications go. Called on the worker's event loop, with the hub
/// locked: it must not block or call back into the hub.
pub trait Sink: Send + Sync + 'static {
    /// The next publication of `channel`.
    fn publication(&self, channel: &str, publication: &PubMsg);
    /// A gap (or a new epoch) was seen: the subscription is dropped from the hub and the
    /// subscriber should subscribe again with recovery from its last position.
    fn position_lost(&self, channel: &str);
}

/// Identifies one subscription in the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubId(u64);

/// Most publications kept for a pending subscriber; past that it loses its position.
const PENDING_LIMIT: usize = 1024;

enum Position {
    /// History is being read: publications are kept (`None` once over [`PENDING_LIMIT`]).
    Pending(Option<Vec<PubMsg>>),
    /// Delivered up to `offset` of `epoch`.
    At { offset: u64, epoch: Arc<str> },
    /// A channel without history: everything is delivered as it comes.
    Unpositioned,
}

struct Subscriber {
    id: SubId,
    sink: Arc<dyn Sink>,
    position: Position,
}

#[derive(Default)]
pub struct Hub {
    channels: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: AtomicU64,
    /// Subscriptions on this worker.
    subscriptions: AtomicU64,
}

/// The result of [`Hub::activate`].
#[derive(Debug, PartialEq, Eq)]
pub enum Merge {
    /// Publications that came while pending, after the position given, in order.
    Live(Vec<PubMsg>),
    /// Too many came while pending, or with a gap: subscribe again.
    Lost,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Subscriber>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a pending subscriber. `true` in the answer: it is the channel's first on this
    /// worker (the caller starts listening to it).
    pub fn join(&self, channel: &str, sink: Arc<dyn Sink>) -> (SubId, bool) {
        let id = SubId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut channels = self.lock();
        let subscribers = channels.entry(channel.to_string()).or_default();
        let first = subscribers.is_empty();
        subscribers.push(Subscriber {
            id,
            sink,
            position: Position::Pending(Some(Vec::new())),
        });
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        (id, first)
    }

    /// Ends a pending subscriber's wait: from now on it gets publications after `offset` of
    /// `epoch` (`None`: a channel without history, everything). Returns the ones that came
    /// meanwhile and are past that position.
    pub fn activate(&self, channel: &str, id: SubId, position: Option<(u64, &str)>) -> Merge {
        let mut channels = self.lock();
        let Some(sub) = channels
            .get_mut(channel)
            .and_then(|subs| subs.iter_mut().find(|s| s.id == id))
        else {
            return Merge::Lost;
        };
        let kept = match std::mem::replace(&mut sub.position, Position::Unpositioned) {
            Position::Pending(kept) => kept,
            _ => Some(Vec::new()),
        };
        let Some(kept) = kept else {
            return Merge::Lost;
        };
        let Some((mut offset, epoch)) = position else {
            return Merge::Live(kept);
        };
        let epoch: Arc<str> = epoch.into();
        let mut live = Vec::new();
        for publication in kept {
            if publication.offset <= offset {
                continue;
            }
            if publication.offset != offset + 1 || *publication.epoch != *epoch {
                return Merge::Lost;
            }
            offset = publication.offset;
            live.push(publication);
        }
        sub.position = Position::At { offset, epoch };
        Merge::Live(live)
    }

    /// Removes a subscriber. `true`: the channel has no subscriber left on this worker.
    pub fn leave(&self, channel: &str, id: SubId) -> bool {
        let mut channels = self.lock();
        let Some(subs) = channels.get_mut(channel) else {
            return false;
        };
        let before = subs.len();
        subs.retain(|s| s.id != id);
        if subs.len() < before {
            self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        if subs.is_empty() {
            channels.remove(channel);
            return true;
        }
        false
    }

    /// Does the channel have subscribers on this worker?
    pub fn has(&self, channel: &str) -> bool {
        self.lock().contains_key(channel)
    }

    /// (channels, subscriptions) on this worker.
    pub fn counts(&self) -> (usize, u64) {
        (
            self.lock().len(),
            self.subscriptions.load(Ordering::Relaxed),
        )
    }

    /// The Redis pub/sub connection was lost and is back: publications may have gone by while
    /// this worker was not listening, and only a later publication would show the gap. Every
    /// positioned subscriber is dropped and told ([`Sink::position_lost`]: it subscribes again,
    /// recovering from its last position); a pending one loses its position when it activates.
    /// Subscribers of channels without history have nothing to recover and stay. Returns how
    /// many were told.
    pub fn lose_positions(&self) -> usize {
        let mut channels = self.lock();
        let mut told = 0;
        channels.retain(|channel, subs| {
            subs.retain_mut(|sub| match &mut sub.position {
                Position::At { .. } => {
                    sub.sink.position_lost(channel);
                    told += 1;
                    false
                }
                Position::Pending(kept) => {
                    *kept = None;
                    true
                }
                Position::Unpositioned => true,
            });
            !subs.is_empty()
        });
        self.subscriptions.fetch_sub(told as u64, Ordering::Relaxed);
        told
    }

    /// One publication from Redis to the channel's subscribers here.
    pub fn deliver(&self, channel: &str, publication: PubMsg) {
        let mut channels = self.lock();
        let Some(subs) = channels.get_mut(channel) else {
            return;
        };
        let mut lost = Vec::new();
        for sub in subs.iter_mut() {
            match &mut sub.position {
                Position::Pending(kept) => {
                    if let Some(list) = kept {
                        if list.len() >= PENDING_LIMIT {
                            *kept = None;
                        } else {
                            list.push(publication.clone());
                        }
                    }
                }
                Position::Unpositioned => {
                    local::count(Count::RealtimeDeliveries);
                    sub.sink.publication(channel, &publication)
                }
                Position::At { offset, epoch } => {
                    if *publication.epoch == **epoch && publication.offset <= *offset {
                        continue; // seen already (in the recovered history)
                    }
                    if *publication.epoch == **epoch && publication.offset == *offset + 1 {
                        *offset = publication.offset;
                        local::count(Count::RealtimeDeliveries);
                        sub.sink.publication(channel, &publication);
                    } else {
                        lost.push(sub.id);
                    }
                }
            }
        }
        if lost.is_empty() {
            return;
        }
        subs.retain(|s| {
            if lost.contains(&s.id) {
                s.sink.position_lost(channel);
                false
            } else {
                true
            }
        });
        self.subscriptions
            .fetch_sub(lost.len() as u64, Ordering::Relaxed);
        if subs.is_empty() {
            channels.remove(channel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);

    impl Sink for Record {
        fn publication(&self, channel: &str, p: &PubMsg) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{channel}:{}", p.offset));
        }
        fn position_lost(&self, channel: &str) {
            self.0.lock().unwrap().push(format!("{channel}:lost"));
        }
    }

    fn pubmsg(offset: u64, epoch: &str) -> PubMsg {
        PubMsg::from_redis(epoch, &format!("{{\"offset\":{offset},\"data\":{{}}}}"))
    }

    #[test]
    fn the_offset_is_read_from_the_scripts_json() {
        assert_eq!(pubmsg(42, "e").offset, 42);
        assert_eq!(PubMsg::from_redis("", "{\"data\":1}").offset, 0);
    }

    #[test]
    fn pending_publications_are_merged_without_loss_or_duplicates() {
        let hub = Hub::default();
        let record = Arc::new(Record::default());
        let (id, first) = hub.join("c", record.clone());
        assert!(first);
        // History read up to 5; meanwhile 4, 5 (already in history), 6 and 7 arrived.
        for o in 4..=7 {
            hub.deliver("c", pubmsg(o, "e"));
        }
        let Merge::Live(live) = hub.activate("c", id, Some((5, "e"))) else {
            panic!("lost")
        };
        assert_eq!(live.iter().map(|p| p.offset).collect::<Vec<_>>(), [6, 7]);
        hub.deliver("c", pubmsg(7, "e")); // a duplicate
        hub.deliver("c", pubmsg(8, "e"));
        assert_eq!(*record.0.lock().unwrap(), ["c:8"]);
        // A gap drops the subscription and says so.
        hub.deliver("c", pubmsg(10, "e"));
        assert_eq!(*record.0.lock().unwrap(), ["c:8", "c:lost"]);
        assert!(!hub.has("c"));
    }

    #[test]
    fn a_new_epoch_loses_the_position() {
        let hub = Hub::default();
        let record = Arc::new(Record::default());
        let (id, _) = hub.join("c", record.clone());
        assert!(matches!(
            hub.activate("c", id, Some((3, "e"))),
            Merge::Live(_)
        ));
        hub.deliver("c", pubmsg(1, "f"));
        assert_eq!(*record.0.lock().unwrap(), ["c:lost"]);
    }

    #[test]
    fn a_gap_while_pending_is_lost() {
        let hub = Hub::default();
        let (id, _) = hub.join("c", Arc::new(Record::default()));
        hub.deliver("c", pubmsg(9, "e"));
        assert_eq!(hub.activate("c", id, Some((5, "e"))), Merge::Lost);
    }

    #[test]
    fn losing_the_pubsub_connection_loses_every_position() {
        let hub = Hub::default();
        let (positioned, pending, unpositioned) = (
            Arc::new(Record::default()),
            Arc::new(Record::default()),
            Arc::new(Record::default()),
        );
        let (a, _) = hub.join("a", positioned.clone());
        assert!(matches!(
            hub.activate("a", a, Some((3, "e"))),
            Merge::Live(_)
        ));
        let (b, _) = hub.join("b", pending.clone());
        let (c, _) = hub.join("c", unpositioned.clone());
        assert!(matches!(hub.activate("c", c, None), Merge::Live(_)));
        assert_eq!(hub.lose_positions(), 1);
        assert_eq!(*positioned.0.lock().unwrap(), ["a:lost"]);
        assert!(!hub.has("a"));
        // The pending one finds out when it activates; the unpositioned one carries on.
        assert_eq!(hub.activate("b", b, Some((0, "e"))), Merge::Lost);
        hub.deliver("c", PubMsg::from_redis("", "{\"data\":1}"));
        assert_eq!(unpositioned.0.lock().unwrap().len(), 1);
        assert_eq!(hub.counts(), (2, 2));
        assert!(pending.0.lock().unwrap().is_empty());
    }

    #[test]
    fn leaving_the_last_subscriber_empties_the_channel() {
        let hub = Hub::default();
        let (a, _) = hub.join("c", Arc::new(Record::default()));
        let (b, first) = hub.join("c", Arc::new(Record::default()));
        assert!(!first);
        assert!(!hub.leave("c", a));
        assert_eq!(hub.counts(), (1, 1));
        assert!(hub.leave("c", b));
        assert_eq!(hub.counts(), (0, 0));
    }
}
