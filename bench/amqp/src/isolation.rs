//! `check-isolation`: does a channel-level error stay on its channel? With traffic going on three
//! consumer channels and the publish channel: (1) a 406 on a queue declare (the queue exists with
//! `x-expires`, declared elsewhere, and is redeclared without it); (2) a 404 on a basic.consume
//! of a missing queue on a consumer channel that carries a client; (3) two overlapping declares
//! on one channel; (4) the broker closing the connection: how each is reported, and what
//! survives. Runs in a vhost of its own, with its own agent.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::acks::AckMode;
use crate::agent_process::AgentProcess;
use crate::amqprs_gw::{self, AmqprsGateway, Events};
use crate::broker::{Broker, Vhost, rabbitmqctl};
use crate::driver::{Gateway, Published, Subscription};
use crate::lapin_gw::{self, LapinGateway};

const AGENT_QUEUE: &str = "iso-agent";
const TRAFFIC_CLIENTS: usize = 3;

/// Panics of any task (a library's own tasks among them), by message.
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// What the check needs of a library beyond the gateway pattern.
pub trait Probe: Gateway {
    async fn declare(&self, queue: &str, expires_ms: Option<i64>) -> anyhow::Result<()>;
    fn declare_channel_open(&self) -> bool;
    fn consumer_channel_open(&self, slot: usize) -> bool;
    fn connection_open(&self) -> bool;
    /// basic.consume of `queue` on consumer channel `slot`, without declaring it.
    async fn consume_only(&self, queue: &str, slot: usize) -> anyhow::Result<()>;
    /// Two declares at once on one new channel, without any lock, each given `within`.
    async fn overlapping_declares(&self, a: &str, b: &str, within: Duration) -> [String; 2];
    /// Where the library's events or callbacks are noted.
    fn event_log(&self) -> &Events;
    /// What the library reported through its events or callbacks so far.
    fn events(&self) -> Vec<String> {
        self.event_log()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    const CONNECTION_NAME: &'static str;
}

impl Probe for LapinGateway {
    const CONNECTION_NAME: &'static str = lapin_gw::GATEWAY_CONNECTION;
    async fn declare(&self, queue: &str, expires_ms: Option<i64>) -> anyhow::Result<()> {
        LapinGateway::declare(self, queue, expires_ms).await
    }
    fn declare_channel_open(&self) -> bool {
        LapinGateway::declare_channel_open(self)
    }
    fn consumer_channel_open(&self, slot: usize) -> bool {
        self.consumers[slot].0.status().connected()
    }
    fn connection_open(&self) -> bool {
        self.connection.status().connected()
    }
    async fn consume_only(&self, queue: &str, slot: usize) -> anyhow::Result<()> {
        self.consumers[slot]
            .0
            .basic_consume(
                queue,
                "iso-missing",
                lapin::options::BasicConsumeOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await?;
        Ok(())
    }
    async fn overlapping_declares(&self, a: &str, b: &str, within: Duration) -> [String; 2] {
        let channel = match self.connection.create_channel().await {
            Ok(c) => c,
            Err(e) => return [format!("no channel: {e}"), String::new()],
        };
        overlap(a, b, within, |q| {
            let channel = channel.clone();
            async move {
                let options = lapin::options::QueueDeclareOptions::default();
                let arguments = lapin::types::FieldTable::default();
                match channel.queue_declare(&q, options, arguments).await {
                    Ok(queue) => Ok(format!("{:?}", queue.name().as_str())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }
    fn event_log(&self) -> &Events {
        &self.events
    }
}

impl Probe for AmqprsGateway {
    const CONNECTION_NAME: &'static str = amqprs_gw::GATEWAY_CONNECTION;
    async fn declare(&self, queue: &str, expires_ms: Option<i64>) -> anyhow::Result<()> {
        AmqprsGateway::declare(self, queue, expires_ms).await
    }
    fn declare_channel_open(&self) -> bool {
        AmqprsGateway::declare_channel_open(self)
    }
    fn consumer_channel_open(&self, slot: usize) -> bool {
        self.consumer_channel(slot).is_open()
    }
    fn connection_open(&self) -> bool {
        self.connection.is_open()
    }
    async fn consume_only(&self, queue: &str, slot: usize) -> anyhow::Result<()> {
        let args = amqprs::channel::BasicConsumeArguments::new(queue, "iso-missing")
            .manual_ack(true)
            .finish();
        self.consumer_channel(slot).basic_consume_rx(args).await?;
        Ok(())
    }
    async fn overlapping_declares(&self, a: &str, b: &str, within: Duration) -> [String; 2] {
        let channel = match amqprs_gw::open_channel(&self.connection, &self.events).await {
            Ok(c) => c,
            Err(e) => return [format!("no channel: {e:#}"), String::new()],
        };
        overlap(a, b, within, |q| {
            let channel = channel.clone();
            async move {
                let args = amqprs::channel::QueueDeclareArguments::new(&q);
                match channel.queue_declare(args).await {
                    Ok(Some((name, _, _))) => Ok(format!("{name:?}")),
                    Ok(None) => Ok("(no-wait)".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await
    }
    fn event_log(&self) -> &Events {
        &self.events
    }
}

/// Runs `declare` for `a` and `b` at once, each given `within`, and says how each ended.
async fn overlap<F, Fut>(a: &str, b: &str, within: Duration, declare: F) -> [String; 2]
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let one = |q: &str| {
        let declared = declare(q.to_string());
        async move {
            match tokio::time::timeout(within, declared).await {
                Ok(Ok(queue)) => format!("ok: declare-ok for {queue}"),
                Ok(Err(e)) => format!("error: {e}"),
                Err(_) => format!("no answer within {within:?}"),
            }
        }
    };
    let (ra, rb) = tokio::join!(one(a), one(b));
    [ra, rb]
}

/// A client doing round trips until it fails; what ended it is kept.
struct Traffic {
    done: Rc<std::cell::Cell<u64>>,
    ended: Rc<RefCell<Option<String>>>,
}

fn start_traffic<G: Gateway + 'static>(gateway: Rc<G>, queue: String, mut sub: G::Sub) -> Traffic {
    let done = Rc::new(std::cell::Cell::new(0));
    let ended = Rc::new(RefCell::new(None));
    let (count, end) = (done.clone(), ended.clone());
    tokio::task::spawn_local(async move {
        let why = loop {
            match gateway.publish(AGENT_QUEUE, b"{}".to_vec(), &queue).await {
                Ok(Published::Confirmed) => {}
                Ok(other) => break format!("publish: {other:?}"),
                Err(e) => break format!("publish failed: {e:#}"),
            }
            match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                Ok(Ok(Some((tag, _)))) => sub.settle(tag),
                Ok(Ok(None)) => break "its consumer stream ended (no error given)".to_string(),
                Ok(Err(e)) => break format!("its consumer stream gave an error: {e:#}"),
                Err(_) => break "no answer within 10 s".to_string(),
            }
            count.set(count.get() + 1);
        };
        *end.borrow_mut() = Some(why);
    });
    Traffic { done, ended }
}

async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Waits until every client still running has done `more` round trips; says which did.
async fn progress(traffic: &[Traffic], more: u64) -> Vec<bool> {
    let start: Vec<u64> = traffic.iter().map(|t| t.done.get()).collect();
    let all = || {
        traffic
            .iter()
            .zip(&start)
            .all(|(t, s)| t.ended.borrow().is_some() || t.done.get() >= s + more)
    };
    wait_until(Duration::from_secs(10), all).await;
    traffic
        .iter()
        .zip(&start)
        .map(|(t, s)| t.done.get() >= s + more)
        .collect()
}

fn describe(traffic: &[Traffic], moving: &[bool]) -> String {
    traffic
        .iter()
        .zip(moving)
        .enumerate()
        .map(|(slot, (t, moving))| match (&*t.ended.borrow(), moving) {
            (None, true) => format!("client on channel {slot}: going on"),
            (None, false) => format!("client on channel {slot}: stuck"),
            (Some(why), _) => format!("client on channel {slot}: ended: {why}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs the checks with `gateway` and returns the findings, one line each.
async fn check<G: Probe + 'static>(gateway: Rc<G>, broker: &Broker) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut traffic = Vec::new();
    for slot in 0..TRAFFIC_CLIENTS {
        let queue = format!("iso-client-{slot}");
        let sub = gateway.subscribe(&queue, slot).await?;
        traffic.push(start_traffic(gateway.clone(), queue, sub));
    }
    // A consumer with nothing to receive (on channel 1), to see how a connection loss reaches
    // a consumer that is only waiting.
    let mut idle = gateway.subscribe("iso-idle", 1).await?;
    let started = progress(&traffic, 20).await;
    out.push(format!("traffic before: {}", describe(&traffic, &started)));

    // (1) 406 on a declare.
    {
        let owner = lapin_gw::connect(broker, "amqp-bench iso owner").await?;
        let channel = owner.create_channel().await?;
        let mut args = lapin::types::FieldTable::default();
        args.insert(
            "x-expires".into(),
            lapin::types::AMQPValue::LongLongInt(600_000),
        );
        channel
            .queue_declare(
                "iso-expiring",
                lapin::options::QueueDeclareOptions::default(),
                args,
            )
            .await?;
        let _ = owner.close(200, "done").await;
    }
    let refused = gateway.declare("iso-expiring", None).await;
    out.push(format!(
        "406: the redeclare returned: {}",
        match &refused {
            Ok(()) => "Ok (NOT refused)".to_string(),
            Err(e) => format!("Err({e:#})"),
        }
    ));
    let _ = wait_until(Duration::from_secs(2), || !gateway.declare_channel_open()).await;
    out.push(format!(
        "406: declare channel open afterwards: {}; connection open: {}",
        gateway.declare_channel_open(),
        gateway.connection_open()
    ));
    let moving = progress(&traffic, 50).await;
    out.push(format!(
        "406: traffic afterwards: {}",
        describe(&traffic, &moving)
    ));
    let again = gateway.declare("iso-after-406", None).await;
    out.push(format!(
        "406: a declare after it (on a new declare channel): {}",
        again.map_or_else(|e| format!("Err({e:#})"), |()| "Ok".to_string())
    ));

    // (2) 404 on a consume, on consumer channel 0 (which carries client 0).
    let missing = gateway.consume_only("iso-no-such-queue", 0).await;
    out.push(format!(
        "404: basic.consume of a missing queue on consumer channel 0 returned: {}",
        missing.map_or_else(
            |e| format!("Err({e:#})"),
            |()| "Ok (NOT refused)".to_string()
        )
    ));
    let moving = progress(&traffic, 50).await;
    out.push(format!(
        "404: consumer channels open: {:?}; connection open: {}; traffic: {}",
        (0..TRAFFIC_CLIENTS)
            .map(|s| gateway.consumer_channel_open(s))
            .collect::<Vec<_>>(),
        gateway.connection_open(),
        describe(&traffic, &moving)
    ));

    // (3) Overlapping declares on one channel.
    let [a, b] = gateway
        .overlapping_declares("iso-overlap-a", "iso-overlap-b", Duration::from_secs(5))
        .await;
    out.push(format!("overlapping declares on one channel: A {a}; B {b}"));
    let moving = progress(&traffic, 20).await;
    out.push(format!(
        "after the overlapping declares: connection open: {}; traffic: {}",
        gateway.connection_open(),
        describe(&traffic, &moving)
    ));

    out.push(format!("events/callbacks so far: {:?}", gateway.events()));

    // (4) The broker closes the connection.
    if let Err(e) = close_connection(&broker.vhost, G::CONNECTION_NAME) {
        out.push(format!(
            "forced close: not done ({e:#}); connection open by the library's account: {}",
            gateway.connection_open()
        ));
    }
    let closed = wait_until(Duration::from_secs(5), || !gateway.connection_open()).await;
    let _ = progress(&traffic, 1_000_000).await;
    out.push(format!(
        "forced close: connection seen closed: {closed}; traffic: {}",
        describe(&traffic, &[false; TRAFFIC_CLIENTS])
    ));
    out.push(format!(
        "events/callbacks at the end: {:?}",
        gateway.events()
    ));
    let idle_end = match tokio::time::timeout(Duration::from_secs(5), idle.next()).await {
        Ok(Ok(None)) => "its stream ended (no error given)".to_string(),
        Ok(Ok(Some(_))) => "it got a delivery".to_string(),
        Ok(Err(e)) => format!("its stream gave an error: {e:#}"),
        Err(_) => "its stream did not end within 5 s".to_string(),
    };
    out.push(format!("forced close: an idle consumer: {idle_end}"));
    out.push(format!(
        "panics: {:?}",
        PANICS.lock().unwrap_or_else(|e| e.into_inner())
    ));
    Ok(out)
}

/// Closes our connection of that name in our vhost, as an operator would (320 CONNECTION_FORCED).
fn close_connection(vhost: &str, name: &str) -> anyhow::Result<()> {
    // The listing can miss a connection now and then: try a few times.
    let mut list = String::new();
    for _ in 0..5 {
        list = rabbitmqctl(&[
            "list_connections",
            "-q",
            "-p",
            vhost,
            "pid",
            "client_properties",
        ])?;
        let pid = list
            .lines()
            .find(|l| l.contains(name))
            .and_then(|l| l.split_whitespace().next());
        if let Some(pid) = pid {
            rabbitmqctl(&["close_connection", pid, "amqp-bench isolation check"])?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    anyhow::bail!("no connection named {name:?} in vhost {vhost}; the broker lists: {list}")
}

/// `check-isolation --client X`: makes a vhost and an agent, runs the checks, prints the
/// findings.
pub fn main(client: &str, broker: &Broker) -> anyhow::Result<()> {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()));
        let what = format!("{info}")
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        eprintln!("panic{}: {what}", at.clone().unwrap_or_default());
        PANICS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{what}{}", at.unwrap_or_default()));
    }));
    let vhost = Vhost::create(
        &format!("amqp-bench-iso-{}", std::process::id()),
        &broker.user,
    )?;
    let broker = Broker {
        vhost: vhost.name.clone(),
        ..broker.clone()
    };
    let _agent = AgentProcess::start(&broker, AGENT_QUEUE)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _entered = runtime.enter(); // see main::local
    let local = tokio::task::LocalSet::new();
    let findings = local.block_on(&runtime, async {
        match client {
            "lapin" => {
                let gateway = Rc::new(LapinGateway::open(&broker, AckMode::PerDelivery).await?);
                check(gateway, &broker).await
            }
            _ => {
                let gateway = Rc::new(AmqprsGateway::open(&broker, AckMode::PerDelivery).await?);
                let failure = {
                    let connection = gateway.connection.clone();
                    let events: Events = gateway.events.clone();
                    tokio::task::spawn_local(async move {
                        let io = connection.listen_network_io_failure().await;
                        events
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("listen_network_io_failure() returned {io}"));
                    })
                };
                let findings = check(gateway, &broker).await;
                failure.abort();
                findings
            }
        }
    })?;
    println!("### {client}\n");
    for line in findings {
        println!("- {line}");
    }
    println!();
    Ok(())
}
