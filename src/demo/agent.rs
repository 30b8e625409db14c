//! The demo agent's I/O: RabbitMQ in and out (our own AMQP client, [`crate::amqp`]) and the
//! publications into NATS JetStream, as the relay would publish them.
//!
//! RabbitMQ: one connection, one channel consuming every queue of [`QUEUES`] with manual acks
//! (prefetch [`PREFETCH`]) and one confirm channel for the replies, published to each request's
//! `replyTo` (the client's queue) on the default exchange, exactly as the echo agents of the
//! tests and benchmarks do. A request is acked once its reply is confirmed (or it has none), so
//! a request the agent took and did not answer goes back to its queue when the agent goes.
//!
//! JetStream: a publication becomes the outbox document the backend would insert
//! (`{_id: ObjectId, userId, data}`), turned into its NATS message by the relay's own code
//! ([`crate::relay::outbox::to_message`]: subject `<relay.nats.subjectPrefix>.<namespace>.<user>`,
//! the Centrifugo `publish` command, `Nats-Msg-Id` = `_id`) and published to `relay.nats.stream`
//! (made if missing, with the relay's settings). Only MongoDB and the change stream are left out
//! (the machine has no MongoDB); from the stream on it is the real pipeline: the workers'
//! consumer, history in Redis, the hub, the socket's personal channel.
//!
//! Lost connections are retried (RabbitMQ and NATS each on their own, 100 ms doubling to 5 s);
//! the agent only ends when told to stop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::FieldTable;
use async_nats::jetstream;
use bson::{doc, oid::ObjectId};
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use tokio::sync::{mpsc, watch};

use super::DemoError;
use super::answer::{Agent, Publication, QUEUES};
use crate::amqp::{self, Connection, Delivery, Settle};
use crate::backoff::Backoff;
use crate::config::{Config, RelayConfig};
use crate::logging::error_chain;

/// Unacked deliveries RabbitMQ hands the agent at once, per queue.
const PREFETCH: u16 = 100;
/// Publications waiting for NATS at most; more are dropped (and counted in a warning).
const PUBLICATIONS_QUEUED: usize = 1024;
/// Between attempts to reach RabbitMQ or NATS.
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// How long closing the RabbitMQ connection may take at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the demo agent until `shutdown` becomes true (or its sender is dropped).
pub async fn run(config: Config, mut shutdown: watch::Receiver<bool>) {
    if !config.realtime.enabled {
        tracing::warn!(
            "demo: realtime.enabled is false: the demo page gets round trips but no live events"
        );
    }
    let pid = std::process::id();
    let (publications, queued) = mpsc::channel(PUBLICATIONS_QUEUED);
    let publisher = tokio::spawn(publish_all(config.relay.clone(), queued));
    let mut agent = Agent::new(pid);
    let mut retry = RETRY;
    let mut failures = 0u32;
    loop {
        let served = serve(&config, pid, &mut agent, &publications, &mut shutdown).await;
        match served {
            Ok(()) => break,
            Err((answered, e)) => {
                if answered {
                    retry.reset();
                    failures = 0;
                }
                failures += 1;
                let delay = retry.next_delay();
                let why = error_chain(&e);
                if failures == 1 {
                    tracing::warn!(
                        retry_ms = delay.as_millis() as u64,
                        "demo: {why}; trying again"
                    );
                } else {
                    tracing::debug!(retry_ms = delay.as_millis() as u64, failures, "demo: {why}");
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
            }
        }
    }
    publisher.abort();
    tracing::info!("demo agent stopped");
}

/// One RabbitMQ session: connect, declare and consume, answer until told to stop (`Ok`) or
/// until the connection fails (`Err`, saying whether it got as far as answering).
async fn serve(
    config: &Config,
    pid: u32,
    agent: &mut Agent,
    publications: &mpsc::Sender<Publication>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), (bool, DemoError)> {
    let rabbit = &config.gateway.rabbitmq;
    let options = amqp::Options {
        host: rabbit.host.clone(),
        port: rabbit.port,
        vhost: rabbit.vhost.clone(),
        login: rabbit.login.clone(),
        password: rabbit.password.clone(),
        name: format!("activestack-gateway demo agent pid {pid}"),
        heartbeat: None,
    };
    let conn = Connection::open(&options)
        .await
        .map_err(|e| (false, DemoError::rabbit("cannot connect to RabbitMQ")(e)))?;
    let mut answering = false;
    let session = async {
        let replies = conn
            .channel()
            .await
            .map_err(DemoError::rabbit("cannot open a channel"))?;
        conn.confirm_select(replies)
            .await
            .map_err(DemoError::rabbit("cannot open a channel"))?;
        let requests = conn
            .channel()
            .await
            .map_err(DemoError::rabbit("cannot open a channel"))?;
        conn.qos(requests, PREFETCH)
            .await
            .map_err(DemoError::rabbit("cannot set the prefetch"))?;
        let mut consumers: Vec<BoxStream<'static, (&'static str, _)>> = Vec::new();
        for &queue in QUEUES {
            // Declared as the echo agents declare them (not durable, no arguments).
            conn.queue_declare(requests, queue, false, FieldTable::default())
                .await
                .map_err(DemoError::rabbit("cannot declare an agent queue"))?;
            let consumer = conn
                .consume(requests, queue, &format!("demo-agent-{queue}"))
                .await
                .map_err(DemoError::rabbit("cannot consume an agent queue"))?;
            let deliveries = stream::unfold(consumer, |mut c| async move {
                let next = c.next().await?;
                Some((next, c))
            });
            consumers.push(deliveries.map(move |d| (queue, d)).boxed());
        }
        tracing::info!(
            queues = QUEUES.join(","),
            vhost = rabbit.vhost,
            "demo agent: answering"
        );
        let mut deliveries = stream::select_all(consumers);
        let mut lost = conn.lost();
        let mut dropped = 0u64;
        answering = true;
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                _ = lost.wait_for(|lost| *lost) => {
                    return Err(DemoError::RabbitLost);
                }
                next = deliveries.next() => match next {
                    Some((queue, Ok(delivery))) => {
                        let publications = (publications, &mut dropped);
                        answer(&conn, replies, agent, publications, queue, delivery);
                    }
                    Some((_, Err(e))) => return Err(DemoError::rabbit("a consumer failed")(e)),
                    None => return Err(DemoError::ConsumersEnded),
                },
            }
        }
    };
    let result = session.await;
    // Unacked requests go back to their queues.
    conn.close(CLOSE_TIMEOUT).await;
    result.map_err(|e| (answering, e))
}

/// Answers one request: its reply to the client's queue (the delivery is acked once the reply
/// is confirmed), its publication to the publisher (dropped, and counted, while NATS is so far
/// behind that [`PUBLICATIONS_QUEUED`] wait).
fn answer(
    conn: &Connection,
    replies: amqp::ChannelRef,
    agent: &mut Agent,
    (publications, dropped): (&mpsc::Sender<Publication>, &mut u64),
    queue: &'static str,
    delivery: Delivery,
) {
    let request = match serde_json::from_slice(&delivery.body) {
        Ok(request) => request,
        Err(e) => {
            tracing::debug!(queue, "demo agent: not JSON, dropped: {e}");
            conn.settle(delivery.channel, delivery.tag, Settle::Discard);
            return;
        }
    };
    let answer = agent.handle(queue, &request, unix_ms());
    tracing::debug!(
        queue,
        reply_to = ?delivery.reply_to,
        known_clients = agent.known_clients(),
        "demo agent: {request}"
    );
    if let Some(publication) = answer.publication
        && let Err(mpsc::error::TrySendError::Full(_)) = publications.try_send(publication)
    {
        *dropped += 1;
        if dropped.is_power_of_two() {
            tracing::warn!(
                dropped = *dropped,
                "demo agent: NATS is unreachable or behind; publications dropped"
            );
        }
    }
    let (Some(reply), Some(reply_to)) = (answer.reply, delivery.reply_to.as_deref()) else {
        conn.settle(delivery.channel, delivery.tag, Settle::Ack);
        return;
    };
    let body = reply.to_string();
    let confirmed = conn.publish(
        replies,
        reply_to,
        false,
        AMQPProperties::default(),
        body.as_bytes(),
    );
    let conn = conn.clone();
    tokio::spawn(async move {
        match confirmed.await {
            Ok(amqp::Confirmed::Ack) => conn.settle(delivery.channel, delivery.tag, Settle::Ack),
            Ok(other) => {
                tracing::warn!(queue, "demo agent: reply not taken by RabbitMQ: {other:?}");
                conn.settle(delivery.channel, delivery.tag, Settle::Requeue);
            }
            // The connection is gone: RabbitMQ requeues the request by itself.
            Err(e) => tracing::debug!(queue, "demo agent: reply not confirmed: {e}"),
        }
    });
}

/// Publishes every publication into JetStream as the relay would, connecting (and making the
/// stream) first, again after a failure.
async fn publish_all(cfg: RelayConfig, mut queued: mpsc::Receiver<Publication>) {
    let mut retry = RETRY;
    let mut failures = 0u32;
    loop {
        let failed = match connect_jetstream(&cfg).await {
            Ok(js) => {
                retry.reset();
                failures = 0;
                match publish_some(&cfg, &js, &mut queued).await {
                    None => return,
                    Some(e) => e,
                }
            }
            Err(e) => e,
        };
        failures += 1;
        let delay = retry.next_delay();
        if failures == 1 {
            tracing::warn!(
                retry_ms = delay.as_millis() as u64,
                "demo agent: {}; publications wait",
                error_chain(&failed)
            );
        }
        tokio::time::sleep(delay).await;
    }
}

async fn connect_jetstream(cfg: &RelayConfig) -> Result<jetstream::Context, DemoError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&cfg.nats_url)
        .await
        .map_err(|source| DemoError::NatsConnect {
            url: cfg.nats_url.clone(),
            source,
        })?;
    let js = jetstream::new(client);
    match crate::relay::stream::ensure_streams(&js, cfg).await {
        Ok(status) => tracing::info!(
            stream = cfg.stream,
            state = ?status.events,
            "demo agent: publishing into JetStream"
        ),
        // It may still take the messages: try, and say why it may not.
        Err(e) => tracing::warn!("demo agent: {}", error_chain(&e)),
    }
    Ok(js)
}

/// Publishes until the queue closes (`None`) or NATS fails.
async fn publish_some(
    cfg: &RelayConfig,
    js: &jetstream::Context,
    queued: &mut mpsc::Receiver<Publication>,
) -> Option<DemoError> {
    while let Some(Publication { user, data }) = queued.recv().await {
        let data = match bson::to_bson(&data) {
            Ok(data) => data,
            Err(e) => {
                tracing::warn!("demo agent: a publication cannot be a BSON value: {e}");
                continue;
            }
        };
        let document = doc! {"_id": ObjectId::new(), "userId": &user, "data": data};
        let message = crate::relay::outbox::to_message(cfg, &document);
        if message.dead_letter {
            tracing::warn!(
                user,
                "demo agent: not a valid outbox document; not published"
            );
            continue;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message.msg_id.as_str());
        let ack = js
            .publish_with_headers(message.subject, headers, message.body.into())
            .await;
        match ack {
            Ok(ack) => {
                tokio::spawn(async move {
                    if let Err(e) = ack.await {
                        tracing::warn!(
                            user,
                            "demo agent: JetStream did not take a publication: {e}"
                        );
                    }
                });
            }
            Err(e) => return Some(DemoError::Publish(e)),
        }
    }
    None
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
