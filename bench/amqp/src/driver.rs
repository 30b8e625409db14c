//! The gateway's pattern, driven the same way for both libraries: C clients, each with its own
//! queue consumed on a shared pool of consumer channels, each doing sequential round trips
//! (publish to the agent queue `mandatory` with `reply_to` = its queue, wait for the confirm,
//! receive the answer on its queue, settle it); measured over a fixed window after a warm-up.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::acks::AckMode;
use crate::measure;

/// What the broker said of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Confirmed,
    /// Acked with a basic.return before it: no queue took it.
    Unroutable,
    Nacked,
}

/// One library's implementation of the gateway's RabbitMQ side.
pub trait Gateway {
    type Sub: Subscription + 'static;
    /// Declares `queue` (no arguments) and consumes it (manual acks) on consumer channel
    /// `slot % channels`.
    async fn subscribe(&self, queue: &str, slot: usize) -> anyhow::Result<Self::Sub>;
    /// Publishes to the default exchange, `mandatory`, with `reply_to`; waits for the confirm.
    async fn publish(
        &self,
        routing_key: &str,
        body: Vec<u8>,
        reply_to: &str,
    ) -> anyhow::Result<Published>;
    /// Ack frames sent so far on all consumer channels.
    fn ack_frames(&self) -> u64;
}

pub trait Subscription {
    /// The next delivery: its tag and body; `None` once the consumer has ended.
    async fn next(&mut self) -> anyhow::Result<Option<(u64, Vec<u8>)>>;
    /// Acks the delivery (now, or batched, as the run asked).
    fn settle(&self, tag: u64);
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub clients: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub agent_queue: String,
    /// Client queues are `{prefix}-{i}`.
    pub prefix: String,
    pub ack_mode: AckMode,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub client: String,
    pub clients: usize,
    pub ack_mode: AckMode,
    pub window_s: f64,
    pub setup_s: f64,
    pub round_trips: u64,
    pub rt_per_s: f64,
    pub cpu_us_per_rt: f64,
    pub user_us_per_rt: f64,
    pub sys_us_per_rt: f64,
    pub cpu_percent: f64,
    pub switches_per_rt: f64,
    pub ack_frames_per_rt: f64,
    pub p50_us: u32,
    pub p99_us: u32,
    pub threads: usize,
    /// CPU µs per round trip of each thread (by name).
    pub thread_us_per_rt: Vec<(String, f64)>,
    pub errors: u64,
    pub mismatches: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Done,
}

#[derive(Default)]
struct Tally {
    latencies_us: RefCell<Vec<u32>>,
    round_trips: Cell<u64>,
    errors: Cell<u64>,
    mismatches: Cell<u64>,
}

/// Runs the pattern on `gateway` (inside a `LocalSet`) and measures this process.
pub async fn run<G: Gateway + 'static>(
    client: &str,
    gateway: Rc<G>,
    spec: &RunSpec,
) -> anyhow::Result<Report> {
    let setup = Instant::now();
    let subscriptions = futures_util::future::try_join_all((0..spec.clients).map(|i| {
        let gateway = gateway.clone();
        let queue = format!("{}-{i}", spec.prefix);
        async move {
            let sub = gateway
                .subscribe(&queue, i)
                .await
                .with_context(|| format!("subscribing {queue}"))?;
            anyhow::Ok((queue, sub))
        }
    }))
    .await?;
    let setup_s = setup.elapsed().as_secs_f64();

    let phase = Rc::new(Cell::new(Phase::Warmup));
    let tally = Rc::new(Tally::default());
    for (i, (queue, mut sub)) in subscriptions.into_iter().enumerate() {
        let gateway = gateway.clone();
        let phase = phase.clone();
        let tally = tally.clone();
        let agent = spec.agent_queue.clone();
        tokio::task::spawn_local(async move {
            let mut seq = 0u64;
            let failed = loop {
                if phase.get() == Phase::Done {
                    break None;
                }
                seq += 1;
                let body = format!("{{\"client\":{i},\"seq\":{seq}}}").into_bytes();
                let started = Instant::now();
                match gateway.publish(&agent, body.clone(), &queue).await {
                    Ok(Published::Confirmed) => {}
                    Ok(other) => break Some(format!("publish {other:?}")),
                    Err(e) => break Some(format!("publish failed: {e:#}")),
                }
                let (tag, answer) = match sub.next().await {
                    Ok(Some(delivery)) => delivery,
                    Ok(None) => break Some("consumer ended".to_string()),
                    Err(e) => break Some(format!("consumer failed: {e:#}")),
                };
                sub.settle(tag);
                if phase.get() == Phase::Measure {
                    if answer != body {
                        tally.mismatches.set(tally.mismatches.get() + 1);
                    }
                    let us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
                    tally.latencies_us.borrow_mut().push(us);
                    tally.round_trips.set(tally.round_trips.get() + 1);
                }
            };
            if let Some(why) = failed {
                eprintln!("client {i}: {why}");
                tally.errors.set(tally.errors.get() + 1);
            }
        });
    }

    tokio::time::sleep(spec.warmup).await;
    let threads_before = measure::thread_cpu();
    let before = measure::usage();
    let acks_before = gateway.ack_frames();
    let started = Instant::now();
    phase.set(Phase::Measure);
    tokio::time::sleep(spec.window).await;
    phase.set(Phase::Done);
    let window_s = started.elapsed().as_secs_f64();
    let after = measure::usage();
    let threads_after = measure::thread_cpu();
    let acks = gateway.ack_frames() - acks_before;

    let n = tally.round_trips.get();
    // 0 when nothing was measured (a JSON number; the errors say why).
    let per_rt = |v: u64| if n == 0 { 0.0 } else { v as f64 / n as f64 };
    let user = after.user_us - before.user_us;
    let sys = after.sys_us - before.sys_us;
    let switches = (after.voluntary_switches - before.voluntary_switches)
        + (after.involuntary_switches - before.involuntary_switches);
    let mut latencies = tally.latencies_us.take();
    latencies.sort_unstable();
    Ok(Report {
        client: client.to_string(),
        clients: spec.clients,
        ack_mode: spec.ack_mode,
        window_s,
        setup_s,
        round_trips: n,
        rt_per_s: n as f64 / window_s,
        cpu_us_per_rt: per_rt(user + sys),
        user_us_per_rt: per_rt(user),
        sys_us_per_rt: per_rt(sys),
        cpu_percent: (user + sys) as f64 / (window_s * 10_000.0),
        switches_per_rt: per_rt(switches),
        ack_frames_per_rt: per_rt(acks),
        p50_us: measure::percentile(&latencies, 50.0),
        p99_us: measure::percentile(&latencies, 99.0),
        threads: threads_after.len(),
        thread_us_per_rt: measure::thread_cpu_delta(&threads_before, &threads_after)
            .into_iter()
            .map(|(name, us)| (name, per_rt(us)))
            .collect(),
        errors: tally.errors.get(),
        mismatches: tally.mismatches.get(),
    })
}
