//! What one process counts, as it runs: per-thread shards of relaxed atomics, bumped from the
//! hot paths with one call ([`count`], [`client_opened`], [`pushes_pending_added`]...), and the
//! snapshot of them a worker sends in every heartbeat answer ([`WorkerMetrics`]).
//!
//! A worker is one process, so process-wide counts are its counts; the master and the one-shot
//! commands have the same and leave them (nearly) untouched.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::gateway::events::ErrorKind;

/// How a client is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// socket.io protocol v5 over engine.io 4 (socket.io-client 3/4, python-socketio 5).
    SocketIo5,
    /// socket.io protocol v4 over engine.io 3 (socket.io-client 1/2).
    SocketIo4,
    /// socket.io 0.9 (the ActiveStack JS and iOS SDKs).
    SocketIo09,
    /// A Centrifugo client (`/connection/websocket`, `/connection/uni_sse`).
    Realtime,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::SocketIo5,
        Protocol::SocketIo4,
        Protocol::SocketIo09,
        Protocol::Realtime,
    ];

    /// The `protocol` label.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::SocketIo5 => "socketio5",
            Protocol::SocketIo4 => "socketio4",
            Protocol::SocketIo09 => "socketio09",
            Protocol::Realtime => "realtime",
        }
    }
}

/// The reply code of a channel RabbitMQ closed (AMQP 0-9-1 channel exceptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelErrorCode {
    AccessRefused,
    NotFound,
    ResourceLocked,
    PreconditionFailed,
    Other,
}

impl ChannelErrorCode {
    pub const ALL: [ChannelErrorCode; 5] = [
        ChannelErrorCode::AccessRefused,
        ChannelErrorCode::NotFound,
        ChannelErrorCode::ResourceLocked,
        ChannelErrorCode::PreconditionFailed,
        ChannelErrorCode::Other,
    ];

    pub fn from_reply_code(code: u16) -> ChannelErrorCode {
        match code {
            403 => ChannelErrorCode::AccessRefused,
            404 => ChannelErrorCode::NotFound,
            405 => ChannelErrorCode::ResourceLocked,
            406 => ChannelErrorCode::PreconditionFailed,
            _ => ChannelErrorCode::Other,
        }
    }

    /// The `code` label.
    pub fn label(self) -> &'static str {
        match self {
            ChannelErrorCode::AccessRefused => "403",
            ChannelErrorCode::NotFound => "404",
            ChannelErrorCode::ResourceLocked => "405",
            ChannelErrorCode::PreconditionFailed => "406",
            ChannelErrorCode::Other => "other",
        }
    }
}

/// Why a client's websocket message was refused (and its connection closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrameRefusal {
    /// Over `frontend.maxMessageSize` (close code 1009).
    TooBig,
    /// Not valid websocket (1002, 1007).
    WebSocket,
    /// Not valid socket.io (1002).
    SocketIo,
    /// A binary message (1007): the gateway's protocols are text.
    Binary,
}

impl FrameRefusal {
    pub const ALL: [FrameRefusal; 4] = [
        FrameRefusal::TooBig,
        FrameRefusal::WebSocket,
        FrameRefusal::SocketIo,
        FrameRefusal::Binary,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            FrameRefusal::TooBig => "too_big",
            FrameRefusal::WebSocket => "websocket",
            FrameRefusal::SocketIo => "socketio",
            FrameRefusal::Binary => "binary",
        }
    }
}

/// What the realtime consumer did with one JetStream message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConsumeResult {
    /// Published to its channels, acked.
    Published,
    /// Not usable (malformed, another method): logged, acked.
    Skipped,
    /// Not published yet (Redis down): naked, redelivered later.
    Retried,
    /// Given up after `realtime.nats.maxDeliver` deliveries: a dead letter.
    DeadLettered,
}

impl ConsumeResult {
    pub const ALL: [ConsumeResult; 4] = [
        ConsumeResult::Published,
        ConsumeResult::Skipped,
        ConsumeResult::Retried,
        ConsumeResult::DeadLettered,
    ];

    /// The `result` label.
    pub fn label(self) -> &'static str {
        match self {
            ConsumeResult::Published => "published",
            ConsumeResult::Skipped => "skipped",
            ConsumeResult::Retried => "retried",
            ConsumeResult::DeadLettered => "dead_lettered",
        }
    }
}

/// Everything a worker counts up (monotonic while the process lives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Count {
    /// Client connections opened (websocket upgrades, realtime sessions).
    Connections(Protocol),
    /// Client requests published to an agent queue and confirmed by RabbitMQ.
    Requests,
    /// Backend messages pushed to a client (first sends).
    Pushes,
    /// Unacked pushes sent again (`frontend.clientMessageResendInterval`).
    PushesResent,
    /// Pushes the client acked (`ack {correspondingMessageId}`).
    PushesAcked,
    /// `gatewayError`s sent to clients.
    GatewayErrors(ErrorKind),
    /// Channels RabbitMQ closed with an error.
    AmqpChannelErrors(ChannelErrorCode),
    /// Client websocket messages refused (the connection closed).
    FramesRefused(FrameRefusal),
    /// Publications handed to a realtime subscriber on this worker (Centrifugo clients and
    /// logged-in socket.io sockets).
    RealtimeDeliveries,
    /// JetStream messages the realtime consumer handled.
    RealtimeConsumed(ConsumeResult),
    /// The relay: messages JetStream acknowledged (duplicates included).
    RelayPublished,
    /// The relay: of those, the ones JetStream already had.
    RelayDuplicates,
    /// The relay: dead letters published.
    RelayDeadLetters,
    /// The relay: times it started over after an error.
    RelayRestarts,
}

/// The counts without a label, in [`Count::index`] order.
const SIMPLE: [Count; 9] = [
    Count::Requests,
    Count::Pushes,
    Count::PushesResent,
    Count::PushesAcked,
    Count::RealtimeDeliveries,
    Count::RelayPublished,
    Count::RelayDuplicates,
    Count::RelayDeadLetters,
    Count::RelayRestarts,
];
const CONNECTIONS_AT: usize = SIMPLE.len();
const ERRORS_AT: usize = CONNECTIONS_AT + Protocol::ALL.len();
const CHANNEL_ERRORS_AT: usize = ERRORS_AT + ErrorKind::ALL.len();
const REFUSED_AT: usize = CHANNEL_ERRORS_AT + ChannelErrorCode::ALL.len();
const CONSUMED_AT: usize = REFUSED_AT + FrameRefusal::ALL.len();

impl Count {
    /// How many there are.
    pub const LEN: usize = CONSUMED_AT + ConsumeResult::ALL.len();

    /// Every count, in [`Count::index`] order.
    pub fn all() -> impl Iterator<Item = Count> {
        SIMPLE
            .into_iter()
            .chain(Protocol::ALL.map(Count::Connections))
            .chain(ErrorKind::ALL.map(Count::GatewayErrors))
            .chain(ChannelErrorCode::ALL.map(Count::AmqpChannelErrors))
            .chain(FrameRefusal::ALL.map(Count::FramesRefused))
            .chain(ConsumeResult::ALL.map(Count::RealtimeConsumed))
    }

    /// Its place in [`Counts`] and in this process's statics.
    pub fn index(self) -> usize {
        match self {
            Count::Requests => 0,
            Count::Pushes => 1,
            Count::PushesResent => 2,
            Count::PushesAcked => 3,
            Count::RealtimeDeliveries => 4,
            Count::RelayPublished => 5,
            Count::RelayDuplicates => 6,
            Count::RelayDeadLetters => 7,
            Count::RelayRestarts => 8,
            Count::Connections(p) => CONNECTIONS_AT + p as usize,
            Count::GatewayErrors(k) => ERRORS_AT + k as usize,
            Count::AmqpChannelErrors(c) => CHANNEL_ERRORS_AT + c as usize,
            Count::FramesRefused(r) => REFUSED_AT + r as usize,
            Count::RealtimeConsumed(r) => CONSUMED_AT + r as usize,
        }
    }

    /// The metric family it belongs to (without the `activestack_` prefix and `_total`).
    pub fn family(self) -> &'static str {
        match self {
            Count::Connections(_) => "connections",
            Count::Requests => "requests",
            Count::Pushes => "pushes",
            Count::PushesResent => "pushes_resent",
            Count::PushesAcked => "pushes_acked",
            Count::GatewayErrors(_) => "gateway_errors",
            Count::AmqpChannelErrors(_) => "amqp_channel_errors",
            Count::FramesRefused(_) => "frames_refused",
            Count::RealtimeDeliveries => "realtime_deliveries",
            Count::RealtimeConsumed(_) => "realtime_consumed",
            Count::RelayPublished => "relay_published",
            Count::RelayDuplicates => "relay_duplicates",
            Count::RelayDeadLetters => "relay_dead_letters",
            Count::RelayRestarts => "relay_restarts",
        }
    }

    /// Its one label, if its family has one: (name, value).
    pub fn label(self) -> Option<(&'static str, &'static str)> {
        match self {
            Count::Connections(p) => Some(("protocol", p.label())),
            Count::GatewayErrors(k) => Some(("kind", k.code())),
            Count::AmqpChannelErrors(c) => Some(("code", c.label())),
            Count::FramesRefused(r) => Some(("reason", r.label())),
            Count::RealtimeConsumed(r) => Some(("result", r.label())),
            _ => None,
        }
    }

    /// Whether `key` is its [`Count::key`] (without making one).
    fn is_key(self, key: &str) -> bool {
        match (key.strip_prefix(self.family()), self.label()) {
            (Some(""), None) => true,
            (Some(rest), Some((_, value))) => rest.strip_prefix('.') == Some(value),
            _ => false,
        }
    }

    /// Its name on the master <-> worker channel: `family` or `family.label`.
    fn key(self) -> String {
        match self.label() {
            Some((_, value)) => format!("{}.{value}", self.family()),
            None => self.family().to_string(),
        }
    }
}

/// One value per [`Count`], indexed by [`Count::index`]. On the channel: a JSON object of the
/// counts that are not zero, by [`Count::key`]; keys it does not know are ignored (a worker of
/// a newer binary), counts it does not name are zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Counts(pub [u64; Count::LEN]);

impl Default for Counts {
    fn default() -> Counts {
        Counts([0; Count::LEN])
    }
}

impl std::fmt::Debug for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nonzero = Count::all().filter(|c| self.get(*c) > 0);
        f.debug_map()
            .entries(nonzero.map(|c| (c.key(), self.get(c))))
            .finish()
    }
}

impl Counts {
    pub fn get(&self, count: Count) -> u64 {
        self.0[count.index()]
    }

    pub fn set(&mut self, count: Count, value: u64) {
        self.0[count.index()] = value;
    }

    /// Adds what `now` has counted since `before` (the same process's earlier snapshot).
    pub fn add_increase(&mut self, before: &Counts, now: &Counts) {
        for ((total, old), new) in self.0.iter_mut().zip(before.0).zip(now.0) {
            *total = total.saturating_add(new.saturating_sub(old));
        }
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let nonzero: Vec<Count> = Count::all().filter(|c| self.get(*c) > 0).collect();
        let mut map = serializer.serialize_map(Some(nonzero.len()))?;
        for count in nonzero {
            map.serialize_entry(&count.key(), &self.get(count))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Counts, D::Error> {
        struct CountsVisitor;
        impl<'de> Visitor<'de> for CountsVisitor {
            type Value = Counts;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of counts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Counts, A::Error> {
                let mut counts = Counts::default();
                while let Some((key, value)) = map.next_entry::<String, u64>()? {
                    if let Some(count) = Count::all().find(|c| c.is_key(&key)) {
                        counts.set(count, value);
                    }
                }
                Ok(counts)
            }
        }
        deserializer.deserialize_map(CountsVisitor)
    }
}

/// Open clients by protocol (a gauge).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerProtocol {
    pub socketio5: u64,
    pub socketio4: u64,
    pub socketio09: u64,
    pub realtime: u64,
}

impl PerProtocol {
    pub fn get(&self, protocol: Protocol) -> u64 {
        match protocol {
            Protocol::SocketIo5 => self.socketio5,
            Protocol::SocketIo4 => self.socketio4,
            Protocol::SocketIo09 => self.socketio09,
            Protocol::Realtime => self.realtime,
        }
    }
}

/// A server the process talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Broker {
    RabbitMq,
    Redis,
    Nats,
}

impl Broker {
    pub const ALL: [Broker; 3] = [Broker::RabbitMq, Broker::Redis, Broker::Nats];

    /// The `broker` label.
    pub fn label(self) -> &'static str {
        match self {
            Broker::RabbitMq => "rabbitmq",
            Broker::Redis => "redis",
            Broker::Nats => "nats",
        }
    }
}

/// Whether the process is connected to each server; `None`: it does not use that one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerStates {
    pub rabbitmq: Option<bool>,
    pub redis: Option<bool>,
    pub nats: Option<bool>,
}

impl BrokerStates {
    pub fn get(&self, broker: Broker) -> Option<bool> {
        match broker {
            Broker::RabbitMq => self.rabbitmq,
            Broker::Redis => self.redis,
            Broker::Nats => self.nats,
        }
    }
}

/// The relay process's gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayGauges {
    /// Publishes waiting for their JetStream ack.
    pub in_flight: u64,
    /// From the outbox insert of the last document JetStream acknowledged to that ack, in ms
    /// (`None`: none yet).
    pub lag_ms: Option<u64>,
    /// The change stream is open: inserts are being relayed.
    pub watching: bool,
}

/// What a worker says of its work in each heartbeat answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerMetrics {
    /// Counted since the process started.
    pub counts: Counts,
    /// Open clients now.
    pub clients: PerProtocol,
    /// Pushes sent to clients that have not acked them yet.
    pub pushes_pending: u64,
    pub brokers: BrokerStates,
    /// Only from the relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayGauges>,
}

// ----- this process's counts, in per-thread shards -----
//
// Each thread adds to a shard of its own with a relaxed load and store: no locked instruction
// on the hot path (measured here: ~2 ns a count, against ~27 ns for a `fetch_add`), and no
// sharing of cache lines between threads. A snapshot sums every thread's shard. A shard is
// made and registered once per thread (the only lock, off the hot path) and is never freed,
// so a thread that ends takes none of its counts with it (a worker has a handful of threads).
// Gauges are kept the same way, as wrapping sums: a client opened on one thread and closed on
// another leaves +1 in one shard and -1 in the other, which add up to 0.

/// The slots of a shard: every [`Count`], then the gauges.
const OPEN_AT: usize = Count::LEN;
/// Open socket.io clients by protocol (realtime clients are counted by the realtime side).
const OPEN_PROTOCOLS: [Protocol; 3] = [
    Protocol::SocketIo5,
    Protocol::SocketIo4,
    Protocol::SocketIo09,
];
const PENDING_AT: usize = OPEN_AT + OPEN_PROTOCOLS.len();
const SLOTS: usize = PENDING_AT + 1;

struct Shard([AtomicU64; SLOTS]);

static SHARDS: Mutex<Vec<&'static Shard>> = Mutex::new(Vec::new());

thread_local! {
    static SHARD: &'static Shard = {
        let shard: &'static Shard = Box::leak(Box::new(Shard([const { AtomicU64::new(0) }; SLOTS])));
        SHARDS.lock().unwrap_or_else(|e| e.into_inner()).push(shard);
        shard
    };
}

/// Adds `n` (wrapping: a gauge's decrement is the addition of its negation) to this thread's
/// `slot`. Only this thread writes its shard, so a load and a store are an atomic add. A count
/// made while the thread's locals are being destroyed is lost, never a panic.
fn add(slot: usize, n: u64) {
    let _ = SHARD.try_with(|shard| {
        let cell = &shard.0[slot];
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    });
}

/// Every slot, summed over the threads.
fn totals() -> [u64; SLOTS] {
    let mut sums = [0u64; SLOTS];
    for shard in SHARDS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        for (sum, cell) in sums.iter_mut().zip(&shard.0) {
            *sum = sum.wrapping_add(cell.load(Ordering::Relaxed));
        }
    }
    sums
}

/// A gauge's wrapping sum as a count (0 if the decrements seen outrun the increments).
fn gauge(sum: u64) -> u64 {
    u64::try_from(sum as i64).unwrap_or(0)
}

/// Per [`Broker`]: 0 not used, 1 disconnected, 2 connected. Set rarely: plain atomics.
static BROKERS: [AtomicU8; 3] = [const { AtomicU8::new(0) }; 3];

/// One more of `count`.
pub fn count(count: Count) {
    add(count.index(), 1);
}

fn open_slot(protocol: Protocol) -> Option<usize> {
    OPEN_PROTOCOLS
        .iter()
        .position(|p| *p == protocol)
        .map(|i| OPEN_AT + i)
}

/// A socket.io client connected (`protocol` is one of the socket.io ones).
pub fn client_opened(protocol: Protocol) {
    count(Count::Connections(protocol));
    if let Some(slot) = open_slot(protocol) {
        add(slot, 1);
    }
}

/// A socket.io client's connection ended.
pub fn client_closed(protocol: Protocol) {
    if let Some(slot) = open_slot(protocol) {
        add(slot, 1u64.wrapping_neg());
    }
}

/// `n` more pushes wait for their client's ack.
pub fn pushes_pending_added(n: u64) {
    add(PENDING_AT, n);
}

/// `n` pushes no longer wait (acked, given back, or their client is gone).
pub fn pushes_pending_removed(n: u64) {
    add(PENDING_AT, n.wrapping_neg());
}

/// The process is (or is not) connected to `broker` now.
pub fn broker_connected(broker: Broker, connected: bool) {
    BROKERS[broker as usize].store(if connected { 2 } else { 1 }, Ordering::Relaxed);
}

/// This process's broker connections.
pub fn brokers() -> BrokerStates {
    let state = |b: Broker| match BROKERS[b as usize].load(Ordering::Relaxed) {
        0 => None,
        n => Some(n == 2),
    };
    BrokerStates {
        rabbitmq: state(Broker::RabbitMq),
        redis: state(Broker::Redis),
        nats: state(Broker::Nats),
    }
}

/// This process's counts, clients (`realtime`: the realtime side's own count) and gauges.
pub fn snapshot(realtime_clients: u64) -> WorkerMetrics {
    let sums = totals();
    let mut counts = Counts::default();
    counts.0.copy_from_slice(&sums[..Count::LEN]);
    let open = |p: Protocol| open_slot(p).map_or(0, |slot| gauge(sums[slot]));
    WorkerMetrics {
        counts,
        clients: PerProtocol {
            socketio5: open(Protocol::SocketIo5),
            socketio4: open(Protocol::SocketIo4),
            socketio09: open(Protocol::SocketIo09),
            realtime: realtime_clients,
        },
        pushes_pending: gauge(sums[PENDING_AT]),
        brokers: brokers(),
        relay: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_has_its_own_index() {
        let indexes: Vec<usize> = Count::all().map(Count::index).collect();
        assert_eq!(indexes, (0..Count::LEN).collect::<Vec<_>>());
        let keys: std::collections::BTreeSet<String> = Count::all().map(Count::key).collect();
        assert_eq!(keys.len(), Count::LEN, "keys are unique");
        for count in Count::all() {
            let matching: Vec<Count> = Count::all().filter(|c| c.is_key(&count.key())).collect();
            assert_eq!(matching, [count], "{}", count.key());
        }
        assert!(!Count::Pushes.is_key("pushes_resent"));
        assert!(!Count::Connections(Protocol::Realtime).is_key("connections"));
    }

    #[test]
    fn counts_travel_as_a_map_of_what_is_not_zero() {
        let mut counts = Counts::default();
        counts.set(Count::Requests, 7);
        counts.set(Count::GatewayErrors(ErrorKind::RateLimited), 2);
        let json = serde_json::to_string(&counts).unwrap();
        assert_eq!(json, r#"{"requests":7,"gateway_errors.rateLimited":2}"#);
        assert_eq!(serde_json::from_str::<Counts>(&json).unwrap(), counts);
        // A newer worker's count is ignored, not an error.
        let read: Counts = serde_json::from_str(r#"{"requests":1,"future":9}"#).unwrap();
        assert_eq!(read.get(Count::Requests), 1);
    }

    #[test]
    fn totals_grow_by_each_snapshots_increase_only() {
        let mut totals = Counts::default();
        let mut first = Counts::default();
        first.set(Count::Pushes, 5);
        totals.add_increase(&Counts::default(), &first);
        let mut second = first;
        second.set(Count::Pushes, 8);
        totals.add_increase(&first, &second);
        assert_eq!(totals.get(Count::Pushes), 8);
        // Another worker starts from zero: its counts add up, the total never goes down.
        let mut other = Counts::default();
        other.set(Count::Pushes, 2);
        totals.add_increase(&Counts::default(), &other);
        assert_eq!(totals.get(Count::Pushes), 10);
    }

    #[test]
    fn counts_and_gauges_add_up_across_threads() {
        // Other tests of this process count too: compare before and after.
        let before = snapshot(0);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..1000 {
                        count(Count::RelayRestarts);
                    }
                    client_opened(Protocol::SocketIo09);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // Closed on other threads than they were opened on.
        for _ in 0..4 {
            client_closed(Protocol::SocketIo09);
        }
        let after = snapshot(0);
        let restarts = |m: &WorkerMetrics| m.counts.get(Count::RelayRestarts);
        assert_eq!(restarts(&after) - restarts(&before), 4000);
        assert_eq!(after.clients.socketio09, before.clients.socketio09);
    }

    #[test]
    fn an_old_report_without_metrics_reads_as_zero() {
        let metrics: WorkerMetrics = serde_json::from_str("{}").unwrap();
        assert_eq!(metrics, WorkerMetrics::default());
    }
}
