//! The relay loop: checkpoint -> (catch-up from the collection) -> change stream -> bounded,
//! ordered publishes -> checkpoint after the acks; start over with a backoff on errors.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishError, publish::PublishAck};
use bson::{Bson, Document, Timestamp, doc};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Cursor, Database};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::checkpoint::{self, Checkpoint};
use super::outbox::{self, Outgoing};
use super::{RelayConfig, RelayError, RelayStats};
use crate::backoff::Backoff;
use crate::logging::error_chain;

/// The wait before starting over after an error: doubling from 100 ms to 5 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// How often the checkpoint is written while publishes are acknowledged.
const SAVE_EVERY: Duration = Duration::from_millis(200);
/// How often an idle change stream's newer resume token is written.
const IDLE_SAVE_EVERY: Duration = Duration::from_secs(5);
/// MongoDB server selection timeout when the URL does not set one (the driver's 30 s would hide
/// an outage for long).
const SELECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Error codes of a resume token MongoDB no longer accepts: ChangeStreamHistoryLost,
/// InvalidResumeToken, ChangeStreamFatalError (resume point not found).
const HISTORY_LOST: [i32; 3] = [286, 260, 280];

/// How a session ended without an error.
enum Outcome {
    Shutdown,
    HistoryLost,
    /// The catch-up read the whole collection.
    Done,
}

pub(super) async fn run(
    cfg: RelayConfig,
    stats: Arc<RelayStats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    cfg.validate().map_err(RelayError::Config)?;
    let mut options = ClientOptions::parse(&cfg.mongodb_url)
        .await
        .map_err(|source| RelayError::Mongo {
            what: "invalid relay.mongodb.url",
            source,
        })?;
    if options.server_selection_timeout.is_none() {
        options.server_selection_timeout = Some(SELECTION_TIMEOUT);
    }
    options
        .app_name
        .get_or_insert_with(|| "activestack-relay".to_string());
    let mongo = Client::with_options(options).map_err(|source| RelayError::Mongo {
        what: "invalid relay.mongodb.url",
        source,
    })?;
    tracing::info!(
        outbox = %format!("{}.{}", cfg.database, cfg.outbox_collection),
        stream = %cfg.stream,
        subjects = %format!("{}.>", cfg.subject_prefix),
        max_in_flight = cfg.max_in_flight,
        "relay: starting"
    );
    let mut js: Option<jetstream::Context> = None;
    let mut delay = BACKOFF;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let result = match &js {
            Some(js) => session(&cfg, &mongo, js, &stats, &mut shutdown, &mut delay).await,
            None => match until_shutdown(&mut shutdown, super::connect_nats(&cfg.nats_url)).await {
                None => break,
                Some(Ok(client)) => {
                    js = Some(jetstream::new(client));
                    continue;
                }
                Some(Err(e)) => Err(e),
            },
        };
        stats.watching.store(false, Ordering::Relaxed);
        match result {
            Ok(Outcome::Shutdown) => break,
            Ok(Outcome::Done) => {}
            Ok(Outcome::HistoryLost) => {
                RelayStats::add(&stats.history_lost, 1);
            }
            Err(e) if e.is_fatal() => {
                tracing::error!(error = %error_chain(&e), "relay: stopped");
                return Err(e);
            }
            Err(e) => {
                RelayStats::add(&stats.restarts, 1);
                tracing::warn!(
                    error = %error_chain(&e),
                    retry_in_ms = delay.peek().as_millis() as u64,
                    "relay: starting over from the last checkpoint"
                );
                let wait = tokio::time::sleep(delay.next_delay());
                if until_shutdown(&mut shutdown, wait).await.is_none() {
                    break;
                }
            }
        }
    }
    tracing::info!(stats = ?stats.snapshot(), "relay: stopped");
    Ok(())
}

/// Resolves when `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// `fut`'s output, or `None` if the relay is told to stop first.
async fn until_shutdown<T>(
    shutdown: &mut watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        out = fut => Some(out),
        () = stopped(shutdown) => None,
    }
}

fn mongo(what: &'static str) -> impl FnOnce(mongodb::error::Error) -> RelayError {
    move |source| RelayError::Mongo { what, source }
}

fn history_lost(e: &mongodb::error::Error) -> Option<String> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) if HISTORY_LOST.contains(&c.code) => {
            Some(format!("{} ({}): {}", c.code_name, c.code, c.message))
        }
        _ => None,
    }
}

/// One go: from the checkpoint until shutdown, history loss or an error.
async fn session(
    cfg: &RelayConfig,
    client: &Client,
    js: &jetstream::Context,
    stats: &Arc<RelayStats>,
    shutdown: &mut watch::Receiver<bool>,
    delay: &mut Backoff,
) -> Result<Outcome, RelayError> {
    let Some(status) = until_shutdown(shutdown, super::stream::ensure_streams(js, cfg)).await
    else {
        return Ok(Outcome::Shutdown);
    };
    status?;
    let db = client.database(&cfg.database);
    let outbox = db.collection::<Document>(&cfg.outbox_collection);
    let checkpoints = db.collection::<Document>(&cfg.checkpoint_collection);
    let Some(loaded) = until_shutdown(
        shutdown,
        checkpoint::load(&checkpoints, &cfg.outbox_collection),
    )
    .await
    else {
        return Ok(Outcome::Shutdown);
    };
    let start = match loaded? {
        Some(cp) => cp,
        None => {
            let Some(first) = until_shutdown(shutdown, first_checkpoint(cfg, &outbox)).await else {
                return Ok(Outcome::Shutdown);
            };
            let cp = first?;
            checkpoint::save(&checkpoints, &cfg.outbox_collection, &cp).await?;
            cp
        }
    };
    let mut pipe = Pipeline {
        cfg,
        js,
        stats,
        checkpoints: &checkpoints,
        in_flight: FuturesOrdered::new(),
        acked: start.clone(),
        saved: start.clone(),
        last_save: Instant::now(),
        queued_last_id: start.last_id.clone(),
    };
    let changes = match start.resume_token.clone() {
        Some(token) => {
            let opened = until_shutdown(
                shutdown,
                outbox
                    .watch()
                    .pipeline(inserts())
                    .resume_after(token)
                    .into_future(),
            )
            .await;
            match opened {
                None => return Ok(Outcome::Shutdown),
                Some(Ok(changes)) => changes,
                Some(Err(e)) => {
                    if let Some(why) = history_lost(&e) {
                        return pipe.history_lost(&why).await;
                    }
                    return Err(mongo("cannot open the change stream")(e));
                }
            }
        }
        None => {
            let Some(time) = until_shutdown(shutdown, operation_time(&db)).await else {
                return Ok(Outcome::Shutdown);
            };
            let time = time?;
            tracing::info!(
                after_id = %show_id(start.last_id.as_ref()),
                "relay: catching up from the outbox collection"
            );
            let filter = match &start.last_id {
                Some(id) => doc! {"_id": {"$gt": id.clone()}},
                None => doc! {},
            };
            let Some(cursor) = until_shutdown(
                shutdown,
                outbox.find(filter).sort(doc! {"_id": 1}).into_future(),
            )
            .await
            else {
                return Ok(Outcome::Shutdown);
            };
            let cursor = cursor.map_err(mongo("cannot read the outbox collection"))?;
            let mut source = Source::Collection(Box::new(cursor));
            let before = stats.published.load(Ordering::Relaxed);
            match pipe.pump(&mut source, shutdown).await? {
                Outcome::Done => {}
                other => return Ok(other),
            }
            let queued = stats.published.load(Ordering::Relaxed) - before;
            tracing::info!(
                documents_acked_so_far = queued,
                "relay: caught up; watching the outbox from before the catch-up"
            );
            let opened = until_shutdown(
                shutdown,
                outbox
                    .watch()
                    .pipeline(inserts())
                    .start_at_operation_time(time)
                    .into_future(),
            )
            .await;
            match opened {
                None => return pipe.finish().await,
                Some(opened) => opened.map_err(mongo("cannot open the change stream"))?,
            }
        }
    };
    stats.watching.store(true, Ordering::Relaxed);
    delay.reset();
    tracing::info!("relay: watching the outbox for inserts");
    pipe.pump(&mut Source::Changes(ChangeReader::start(changes)), shutdown)
        .await
}

/// `[{$match: {operationType: "insert"}}]`.
fn inserts() -> [Document; 1] {
    [doc! {"$match": {"operationType": "insert"}}]
}

/// First start on this outbox: relay what is inserted from now on. Documents already there
/// are taken as handled (by the seed relay or whatever ran before).
async fn first_checkpoint(
    cfg: &RelayConfig,
    outbox: &Collection<Document>,
) -> Result<Checkpoint, RelayError> {
    let newest = outbox
        .find_one(doc! {})
        .sort(doc! {"_id": -1})
        .projection(doc! {"_id": 1})
        .await
        .map_err(mongo("cannot read the outbox collection"))?;
    let last_id = newest.and_then(|d| d.get("_id").cloned());
    tracing::info!(
        outbox = %cfg.outbox_collection,
        after_id = %show_id(last_id.as_ref()),
        "relay: no checkpoint yet; relaying documents inserted from now on"
    );
    Ok(Checkpoint {
        resume_token: None,
        last_id,
    })
}

/// The server's operation time now (from `hello`), to start the change stream at.
async fn operation_time(db: &Database) -> Result<Timestamp, RelayError> {
    let reply = db
        .run_command(doc! {"hello": 1})
        .await
        .map_err(mongo("hello failed"))?;
    reply
        .get_timestamp("operationTime")
        .ok()
        .or_else(|| {
            reply
                .get_document("$clusterTime")
                .ok()?
                .get_timestamp("clusterTime")
                .ok()
        })
        .ok_or(RelayError::NotReplicaSet)
}

fn show_id(id: Option<&Bson>) -> String {
    match id {
        Some(id) => outbox::id_text(Some(id)),
        None => "(start of the collection)".to_string(),
    }
}

/// Where documents come from: the collection (catch-up) or the change stream.
enum Source {
    Collection(Box<Cursor<Document>>),
    Changes(ChangeReader),
}

/// What a source gives.
enum Item {
    /// A document, with the resume token that follows it (none in catch-up) and when it was
    /// inserted (the change event's `wallTime`; none in catch-up).
    Document(Document, Option<ResumeToken>, Option<bson::DateTime>),
    /// An idle change stream's token after everything given so far (`postBatchResumeToken`).
    Token(ResumeToken),
}

impl Source {
    /// Cancel-safe: the cursor keeps its state, the change stream is read by its own task.
    async fn next(&mut self) -> Option<Result<Item, mongodb::error::Error>> {
        match self {
            Source::Collection(cursor) => cursor
                .next()
                .await
                .map(|r| r.map(|doc| Item::Document(doc, None, None))),
            Source::Changes(reader) => reader.items.recv().await,
        }
    }
}

/// Reads a change stream in a task of its own, one getMore at a time (`next_if_any`), so that
/// the idle resume token can be read between them; a small channel keeps it from reading
/// ahead of the publishes.
struct ChangeReader {
    items: mpsc::Receiver<Result<Item, mongodb::error::Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl ChangeReader {
    fn start(mut changes: ChangeStream<ChangeStreamEvent<Document>>) -> ChangeReader {
        let (tx, items) = mpsc::channel(16);
        let task = tokio::spawn(async move {
            let mut last_token = None;
            loop {
                let item = match changes.next_if_any().await {
                    Ok(Some(event)) => match event.full_document {
                        Some(doc) => {
                            last_token = Some(event.id.clone());
                            Ok(Item::Document(doc, Some(event.id), event.wall_time))
                        }
                        None => {
                            tracing::debug!(
                                operation = ?event.operation_type,
                                "relay: change event without a document, skipped"
                            );
                            continue;
                        }
                    },
                    Ok(None) => match changes.resume_token() {
                        Some(token) if last_token.as_ref() != Some(&token) => {
                            last_token = Some(token.clone());
                            Ok(Item::Token(token))
                        }
                        _ => continue,
                    },
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
                if !changes.is_alive() {
                    return;
                }
            }
        });
        ChangeReader { items, task }
    }
}

impl Drop for ChangeReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What an in-flight entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `inserted`: when the document went into the outbox, if known (for the relay's lag).
    Message {
        inserted: Option<bson::DateTime>,
    },
    DeadLetter,
    /// No publish: a checkpoint position (idle resume token) that waits its turn.
    Marker,
}

type Ack = Pin<
    Box<dyn Future<Output = (Checkpoint, Kind, Result<Option<PublishAck>, PublishError>)> + Send>,
>;

/// Publishes in order, at most `max_in_flight` unacknowledged, and keeps the checkpoint of the
/// acknowledged prefix.
struct Pipeline<'a> {
    cfg: &'a RelayConfig,
    js: &'a jetstream::Context,
    stats: &'a Arc<RelayStats>,
    checkpoints: &'a Collection<Document>,
    in_flight: FuturesOrdered<Ack>,
    /// After the last publish acknowledged with all before it.
    acked: Checkpoint,
    saved: Checkpoint,
    last_save: Instant,
    /// `_id` of the last document queued (a marker's position).
    queued_last_id: Option<Bson>,
}

impl Pipeline<'_> {
    /// Publishes from `source` until it ends (catch-up: `Done`), history is lost, or shutdown.
    async fn pump(
        &mut self,
        source: &mut Source,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, RelayError> {
        let catch_up = matches!(source, Source::Collection(_));
        let mut tick = tokio::time::interval(SAVE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max = self.cfg.max_in_flight;
        loop {
            tokio::select! {
                biased;
                () = stopped(shutdown) => return self.finish().await,
                Some(done) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    if let Err(e) = self.acked(done) {
                        self.abandon().await;
                        return Err(e);
                    }
                }
                item = source.next(), if self.in_flight.len() < max => match item {
                    Some(Ok(Item::Token(token))) => {
                        let progress = Checkpoint {
                            resume_token: Some(token),
                            last_id: self.queued_last_id.clone(),
                        };
                        self.in_flight.push_back(Box::pin(async move {
                            (progress, Kind::Marker, Ok(None))
                        }));
                    }
                    Some(Ok(Item::Document(doc, token, wall_time))) => {
                        let inserted = wall_time.or_else(|| match doc.get("_id") {
                            Some(Bson::ObjectId(id)) => Some(id.timestamp()),
                            _ => None,
                        });
                        let progress = Checkpoint {
                            resume_token: token,
                            last_id: doc.get("_id").cloned(),
                        };
                        self.queued_last_id = progress.last_id.clone();
                        let message = outbox::to_message(self.cfg, &doc);
                        if message.dead_letter {
                            tracing::warn!(
                                id = %message.msg_id,
                                subject = %message.subject,
                                reason = %dead_letter_reason(&message),
                                "relay: outbox document is not a valid message; dead-lettered"
                            );
                        }
                        if catch_up {
                            RelayStats::add(&self.stats.caught_up, 1);
                        }
                        if let Err(e) = self.publish(message, progress, inserted).await {
                            self.abandon().await;
                            return Err(e);
                        }
                    }
                    Some(Err(e)) => {
                        if let Some(why) = history_lost(&e) {
                            return self.history_lost(&why).await;
                        }
                        self.abandon().await;
                        return Err(mongo(if catch_up {
                            "reading the outbox collection failed"
                        } else {
                            "the change stream failed"
                        })(e));
                    }
                    None if catch_up => return Ok(Outcome::Done),
                    None => {
                        self.abandon().await;
                        return Err(RelayError::ChangeStreamEnded);
                    }
                },
                _ = tick.tick() => self.save(false).await?,
            }
        }
    }

    async fn publish(
        &mut self,
        message: Outgoing,
        progress: Checkpoint,
        inserted: Option<bson::DateTime>,
    ) -> Result<(), RelayError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message.msg_id.as_str());
        let ack = self
            .js
            .publish_with_headers(message.subject, headers, message.body.into())
            .await
            .map_err(|e| RelayError::JetStream {
                what: "cannot publish",
                message: error_chain(&e),
            })?;
        let kind = if message.dead_letter {
            Kind::DeadLetter
        } else {
            Kind::Message { inserted }
        };
        self.in_flight.push_back(Box::pin(
            async move { (progress, kind, ack.await.map(Some)) },
        ));
        self.stats
            .in_flight
            .store(self.in_flight.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn acked(
        &mut self,
        (progress, kind, ack): (Checkpoint, Kind, Result<Option<PublishAck>, PublishError>),
    ) -> Result<(), RelayError> {
        self.stats
            .in_flight
            .store(self.in_flight.len() as u64, Ordering::Relaxed);
        let ack = ack.map_err(|e| RelayError::JetStream {
            what: "publish not acknowledged",
            message: error_chain(&e),
        })?;
        if ack.is_some_and(|a| a.duplicate) {
            RelayStats::add(&self.stats.duplicates, 1);
        }
        match kind {
            Kind::DeadLetter => RelayStats::add(&self.stats.dead_lettered, 1),
            Kind::Message { inserted } => {
                RelayStats::add(&self.stats.published, 1);
                if let Some(inserted) = inserted {
                    let now = bson::DateTime::now().timestamp_millis();
                    let lag = now.saturating_sub(inserted.timestamp_millis()).max(0);
                    self.stats.lag_ms.store(lag as u64, Ordering::Relaxed);
                }
            }
            Kind::Marker => {}
        }
        self.acked = progress;
        Ok(())
    }

    /// Writes the checkpoint if it moved (at most every [`SAVE_EVERY`], or [`IDLE_SAVE_EVERY`] for
    /// a newer idle token alone, unless `now`).
    async fn save(&mut self, now: bool) -> Result<(), RelayError> {
        let every = if self.acked.last_id == self.saved.last_id {
            IDLE_SAVE_EVERY
        } else {
            SAVE_EVERY
        };
        if self.acked == self.saved || (!now && self.last_save.elapsed() < every) {
            return Ok(());
        }
        checkpoint::save(self.checkpoints, &self.cfg.outbox_collection, &self.acked).await?;
        self.saved = self.acked.clone();
        self.last_save = Instant::now();
        RelayStats::add(&self.stats.checkpoints, 1);
        Ok(())
    }

    /// Waits for every in-flight ack (stopping at the first failure) and saves the checkpoint.
    async fn drain(&mut self) -> Result<(), RelayError> {
        while let Some(done) = self.in_flight.next().await {
            if let Err(e) = self.acked(done) {
                self.in_flight = FuturesOrdered::new();
                self.stats.in_flight.store(0, Ordering::Relaxed);
                self.save(true).await?;
                return Err(e);
            }
        }
        self.save(true).await
    }

    /// Shutdown: finish the in-flight publishes, save, stop.
    async fn finish(&mut self) -> Result<Outcome, RelayError> {
        if let Err(e) = self.drain().await {
            tracing::warn!(
                error = %error_chain(&e),
                "relay: stopping with unacknowledged publishes; they are sent again on restart"
            );
        }
        Ok(Outcome::Shutdown)
    }

    /// Before starting over after an error: keep what was acknowledged.
    async fn abandon(&mut self) {
        if let Err(e) = self.drain().await {
            tracing::debug!(error = %error_chain(&e), "relay: could not finish in-flight publishes");
        }
    }

    /// The resume token is refused: finish, then checkpoint "catch up after `last_id`".
    async fn history_lost(&mut self, why: &str) -> Result<Outcome, RelayError> {
        tracing::warn!(
            reason = %why,
            last_id = %show_id(self.acked.last_id.as_ref()),
            "relay: MongoDB no longer has the change-stream history after the checkpoint; \
             catching up from the outbox collection"
        );
        self.drain().await?;
        self.acked.resume_token = None;
        self.save(true).await?;
        Ok(Outcome::HistoryLost)
    }
}

fn dead_letter_reason(message: &Outgoing) -> String {
    serde_json::from_slice::<serde_json::Value>(&message.body)
        .ok()
        .and_then(|v| v.get("reason")?.as_str().map(str::to_string))
        .unwrap_or_default()
}
