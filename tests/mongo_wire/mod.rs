//! A small MongoDB wire-protocol server for tests: OP_MSG over TCP on 127.0.0.1, answering as
//! the primary of replica set `rs0`, with in-memory collections and an oplog for change
//! streams. Enough of the protocol for the real `mongodb` driver to insert, find, update, and
//! watch a collection (aggregate `$changeStream` + awaitData `getMore`, resume tokens
//! `{_data: "<hex seq>"}`, `postBatchResumeToken`, `resumeAfter` / `startAfter` /
//! `startAtOperationTime`).
//!
//! Test hooks: [`MongoWire::lose_history`] (every resume token issued so far is refused with
//! code 286 ChangeStreamHistoryLost) and [`MongoWire::drop_connections`].
#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bson::{Bson, Document, Timestamp, doc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

const OP_MSG: i32 = 2013;
/// Seconds part of every timestamp (the increment is the oplog sequence number).
const EPOCH: u32 = 1_700_000_000;

pub struct MongoWire {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    state: Mutex<State>,
    /// Woken on every write (getMore with awaitData waits on it).
    written: Notify,
    /// Bumped to close every open connection.
    kill: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// "db.coll" -> documents in insertion order.
    collections: HashMap<String, Vec<Document>>,
    oplog: Vec<Op>,
    seq: u32,
    /// Oldest sequence number still in the oplog: older resume points are refused.
    history_start: u32,
    cursors: HashMap<i64, ChangeCursor>,
    next_cursor: i64,
    next_connection: i32,
}

struct Op {
    seq: u32,
    ns: String,
    op_type: &'static str,
    doc: Document,
}

struct ChangeCursor {
    ns: String,
    /// Last oplog sequence number looked at.
    after: u32,
    /// `$match: {operationType: X}` if the pipeline has one.
    op_type: Option<String>,
}

impl MongoWire {
    pub async fn start() -> MongoWire {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (kill, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                history_start: 1,
                ..State::default()
            }),
            written: Notify::new(),
            kill,
        });
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = accept_shared.clone();
                tokio::spawn(async move { serve(stream, addr, shared).await });
            }
        });
        MongoWire { addr, shared, task }
    }

    /// A URL for the driver: this server as the only member of `rs0`.
    pub fn url(&self) -> String {
        format!("mongodb://{}/?replicaSet=rs0", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The oplog forgets everything up to now: every resume token issued so far is refused
    /// (286 ChangeStreamHistoryLost), as after an oplog roll-over.
    pub fn lose_history(&self) {
        let mut st = self.shared.state.lock().unwrap();
        st.seq += 1;
        let seq = st.seq;
        st.oplog.clear();
        st.oplog.push(Op {
            seq,
            ns: String::new(),
            op_type: "noop",
            doc: Document::new(),
        });
        st.history_start = seq;
    }

    /// Closes every open connection (the driver sees network errors and reconnects).
    pub fn drop_connections(&self) {
        self.shared.kill.send_modify(|n| *n += 1);
    }

    /// The documents of `db.coll` (for test assertions).
    pub fn documents(&self, db: &str, coll: &str) -> Vec<Document> {
        let st = self.shared.state.lock().unwrap();
        st.collections
            .get(&format!("{db}.{coll}"))
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for MongoWire {
    fn drop(&mut self) {
        self.task.abort();
        self.drop_connections();
    }
}

async fn serve(mut stream: TcpStream, me: SocketAddr, shared: Arc<Shared>) {
    let mut kill = shared.kill.subscribe();
    let connection_id = {
        let mut st = shared.state.lock().unwrap();
        st.next_connection += 1;
        st.next_connection
    };
    loop {
        let request = async {
            let mut header = [0u8; 16];
            stream.read_exact(&mut header).await?;
            let len = i32::from_le_bytes(header[0..4].try_into().unwrap());
            let request_id = i32::from_le_bytes(header[4..8].try_into().unwrap());
            let op_code = i32::from_le_bytes(header[12..16].try_into().unwrap());
            let mut body = vec![0u8; usize::try_from(len).unwrap_or(16).saturating_sub(16)];
            stream.read_exact(&mut body).await?;
            if op_code != OP_MSG {
                return Err(std::io::Error::other(format!(
                    "unsupported opcode {op_code}"
                )));
            }
            let command = parse_op_msg(&body)?;
            let reply = run(&shared, &command, me, connection_id).await;
            let mut payload = Vec::new();
            reply
                .to_writer(&mut payload)
                .map_err(std::io::Error::other)?;
            let mut out = Vec::with_capacity(payload.len() + 21);
            out.extend_from_slice(&((payload.len() + 21) as i32).to_le_bytes());
            out.extend_from_slice(&0i32.to_le_bytes());
            out.extend_from_slice(&request_id.to_le_bytes());
            out.extend_from_slice(&OP_MSG.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.push(0);
            out.extend_from_slice(&payload);
            stream.write_all(&out).await
        };
        tokio::select! {
            r = request => if r.is_err() { return },
            _ = kill.changed() => return,
        }
    }
}

/// The command document: section 0, with each document sequence (section 1) as an array.
fn parse_op_msg(body: &[u8]) -> std::io::Result<Document> {
    let bad = |what: &str| std::io::Error::other(what.to_string());
    let flags = u32::from_le_bytes(
        body.get(0..4)
            .ok_or_else(|| bad("short"))?
            .try_into()
            .unwrap(),
    );
    let end = if flags & 1 == 1 {
        body.len() - 4
    } else {
        body.len()
    };
    let mut at = 4;
    let mut command = None;
    let mut sequences = Vec::new();
    while at < end {
        let kind = body[at];
        at += 1;
        let size = i32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
        match kind {
            0 => {
                command = Some(
                    Document::from_reader(&mut &body[at..at + size])
                        .map_err(std::io::Error::other)?,
                );
            }
            1 => {
                let section = &body[at + 4..at + size];
                let nul = section
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| bad("identifier"))?;
                let name = String::from_utf8_lossy(&section[..nul]).into_owned();
                let mut docs = &section[nul + 1..];
                let mut list = Vec::new();
                while !docs.is_empty() {
                    list.push(Bson::Document(
                        Document::from_reader(&mut docs).map_err(std::io::Error::other)?,
                    ));
                }
                sequences.push((name, list));
            }
            _ => return Err(bad("section kind")),
        }
        at += size;
    }
    let mut command = command.ok_or_else(|| bad("no body"))?;
    for (name, list) in sequences {
        command.insert(name, list);
    }
    Ok(command)
}

fn ts(seq: u32) -> Timestamp {
    Timestamp {
        time: EPOCH,
        increment: seq,
    }
}

fn token(seq: u32) -> Document {
    doc! {"_data": format!("{seq:08X}")}
}

fn token_seq(token: &Document) -> Option<u32> {
    u32::from_str_radix(token.get_str("_data").ok()?, 16).ok()
}

fn error(code: i32, name: &str, message: &str) -> Document {
    doc! {"ok": 0.0, "errmsg": message, "code": code, "codeName": name}
}

async fn run(shared: &Shared, command: &Document, me: SocketAddr, connection_id: i32) -> Document {
    let name = command.keys().next().cloned().unwrap_or_default();
    let db = command.get_str("$db").unwrap_or("test").to_string();
    let mut reply = match name.as_str() {
        "getMore" => get_more(shared, command).await,
        _ => {
            let mut st = shared.state.lock().unwrap();
            let reply = st.command(&name, &db, command, me, connection_id);
            if matches!(name.as_str(), "insert" | "update") {
                shared.written.notify_waiters();
            }
            reply
        }
    };
    let seq = shared.state.lock().unwrap().seq;
    reply.insert("operationTime", ts(seq));
    reply.insert(
        "$clusterTime",
        doc! {"clusterTime": ts(seq), "signature": {"hash": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0; 20] }, "keyId": 0i64}},
    );
    reply
}

impl State {
    fn command(
        &mut self,
        name: &str,
        db: &str,
        c: &Document,
        me: SocketAddr,
        connection_id: i32,
    ) -> Document {
        let coll = c.get_str(name).unwrap_or_default().to_string();
        let ns = format!("{db}.{coll}");
        match name {
            "hello" | "isMaster" | "ismaster" => doc! {
                "helloOk": true, "ismaster": true, "isWritablePrimary": true, "secondary": false,
                "setName": "rs0", "setVersion": 1, "hosts": [me.to_string()],
                "primary": me.to_string(), "me": me.to_string(),
                "electionId": bson::oid::ObjectId::from_bytes([0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1]),
                "maxBsonObjectSize": 16_777_216, "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000, "localTime": bson::DateTime::now(),
                "logicalSessionTimeoutMinutes": 30, "connectionId": connection_id,
                "minWireVersion": 0, "maxWireVersion": 17, "readOnly": false, "ok": 1.0,
            },
            "ping" | "endSessions" | "dropDatabase" | "drop" => doc! {"ok": 1.0},
            "buildInfo" | "buildinfo" => {
                doc! {"version": "6.0.0", "versionArray": [6, 0, 0, 0], "ok": 1.0}
            }
            "insert" => {
                let docs = c.get_array("documents").cloned().unwrap_or_default();
                let n = docs.len() as i32;
                for d in docs {
                    if let Bson::Document(mut d) = d {
                        if !d.contains_key("_id") {
                            d.insert("_id", bson::oid::ObjectId::new());
                        }
                        self.write(&ns, "insert", d.clone());
                        self.collections.entry(ns.clone()).or_default().push(d);
                    }
                }
                doc! {"n": n, "ok": 1.0}
            }
            "find" => {
                let filter = c.get_document("filter").cloned().unwrap_or_default();
                let mut found: Vec<Document> = self
                    .collections
                    .get(&ns)
                    .map(|docs| {
                        docs.iter()
                            .filter(|d| matches(d, &filter))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                if let Ok(sort) = c.get_document("sort") {
                    let keys: Vec<(String, bool)> = sort
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_i32()
                                    .map(|n| n >= 0)
                                    .or(v.as_i64().map(|n| n >= 0))
                                    .unwrap_or(true),
                            )
                        })
                        .collect();
                    found.sort_by(|a, b| {
                        for (k, up) in &keys {
                            let o = compare(
                                a.get(k).unwrap_or(&Bson::Null),
                                b.get(k).unwrap_or(&Bson::Null),
                            )
                            .unwrap_or(Ordering::Equal);
                            let o = if *up { o } else { o.reverse() };
                            if o != Ordering::Equal {
                                return o;
                            }
                        }
                        Ordering::Equal
                    });
                }
                let limit = c.get("limit").and_then(number).unwrap_or(0).unsigned_abs() as usize;
                if limit > 0 {
                    found.truncate(limit);
                }
                let batch: Vec<Bson> = found.into_iter().map(Bson::Document).collect();
                doc! {"cursor": {"firstBatch": batch, "id": 0i64, "ns": ns}, "ok": 1.0}
            }
            "update" => {
                let mut n = 0;
                let mut modified = 0;
                let mut upserted = Vec::new();
                for (index, u) in c
                    .get_array("updates")
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    let Bson::Document(u) = u else { continue };
                    let q = u.get_document("q").cloned().unwrap_or_default();
                    let change = u.get_document("u").cloned().unwrap_or_default();
                    let docs = self.collections.entry(ns.clone()).or_default();
                    if let Some(d) = docs.iter_mut().find(|d| matches(d, &q)) {
                        *d = apply(d, &change);
                        n += 1;
                        modified += 1;
                        let d = d.clone();
                        self.write(&ns, "update", d);
                    } else if u.get_bool("upsert").unwrap_or(false) {
                        let mut d = Document::new();
                        for (k, v) in &q {
                            if !matches!(v, Bson::Document(o) if o.keys().any(|k| k.starts_with('$')))
                            {
                                d.insert(k.clone(), v.clone());
                            }
                        }
                        let mut d = apply(&d, &change);
                        if !d.contains_key("_id") {
                            d.insert("_id", bson::oid::ObjectId::new());
                        }
                        upserted.push(doc! {"index": index as i32, "_id": d.get("_id").cloned().unwrap_or(Bson::Null)});
                        docs.push(d.clone());
                        n += 1;
                        self.write(&ns, "insert", d);
                    }
                }
                doc! {"n": n, "nModified": modified, "upserted": upserted, "ok": 1.0}
            }
            "aggregate" => self.aggregate(&ns, c),
            "killCursors" => {
                let ids = c.get_array("cursors").cloned().unwrap_or_default();
                for id in &ids {
                    if let Some(id) = number(id) {
                        self.cursors.remove(&id);
                    }
                }
                doc! {"cursorsKilled": ids, "cursorsNotFound": [], "cursorsAlive": [], "cursorsUnknown": [], "ok": 1.0}
            }
            other => error(
                59,
                "CommandNotFound",
                &format!("no such command: '{other}'"),
            ),
        }
    }

    fn write(&mut self, ns: &str, op_type: &'static str, doc: Document) {
        self.seq += 1;
        self.oplog.push(Op {
            seq: self.seq,
            ns: ns.to_string(),
            op_type,
            doc,
        });
    }

    fn aggregate(&mut self, ns: &str, c: &Document) -> Document {
        let pipeline = c.get_array("pipeline").cloned().unwrap_or_default();
        let Some(Bson::Document(first)) = pipeline.first() else {
            return error(2, "BadValue", "empty pipeline");
        };
        let Ok(options) = first.get_document("$changeStream") else {
            return error(
                2,
                "BadValue",
                "only $changeStream aggregations are supported here",
            );
        };
        let after = if let Ok(t) = options
            .get_document("resumeAfter")
            .or(options.get_document("startAfter"))
        {
            match token_seq(t) {
                Some(s) => s,
                None => return error(260, "InvalidResumeToken", "cannot read the resume token"),
            }
        } else if let Ok(t) = options.get_timestamp("startAtOperationTime") {
            t.increment.saturating_sub(1)
        } else {
            self.seq
        };
        let resuming = options.contains_key("resumeAfter") || options.contains_key("startAfter");
        let lost = if resuming {
            after < self.history_start
        } else {
            after + 1 < self.history_start
        };
        if lost {
            return error(
                286,
                "ChangeStreamHistoryLost",
                "Resume of change stream was not possible, as the resume point may no longer be in the oplog.",
            );
        }
        let op_type = pipeline.iter().skip(1).find_map(|stage| {
            let Bson::Document(stage) = stage else {
                return None;
            };
            Some(
                stage
                    .get_document("$match")
                    .ok()?
                    .get_str("operationType")
                    .ok()?
                    .to_string(),
            )
        });
        self.next_cursor += 1;
        let id = self.next_cursor;
        self.cursors.insert(
            id,
            ChangeCursor {
                ns: ns.to_string(),
                after,
                op_type,
            },
        );
        let limit = c
            .get_document("cursor")
            .ok()
            .and_then(|d| d.get("batchSize"))
            .and_then(number)
            .unwrap_or(101);
        let (batch, pbrt) = self.batch(id, limit as usize);
        doc! {"cursor": {"firstBatch": batch, "postBatchResumeToken": pbrt, "id": id, "ns": ns}, "ok": 1.0}
    }

    /// Events after the cursor's position, at most `limit`, and the token after them.
    fn batch(&mut self, id: i64, limit: usize) -> (Vec<Bson>, Document) {
        let Some(cursor) = self.cursors.get(&id) else {
            return (Vec::new(), token(self.seq));
        };
        let mut events = Vec::new();
        let mut last = cursor.after;
        for op in self.oplog.iter().filter(|op| op.seq > cursor.after) {
            if events.len() >= limit.max(1) {
                break;
            }
            last = op.seq;
            if op.ns != cursor.ns || cursor.op_type.as_deref().is_some_and(|t| t != op.op_type) {
                continue;
            }
            let (db, coll) = op.ns.split_once('.').unwrap_or((&op.ns, ""));
            events.push(Bson::Document(doc! {
                "_id": token(op.seq), "operationType": op.op_type, "clusterTime": ts(op.seq),
                "wallTime": bson::DateTime::now(), "ns": {"db": db, "coll": coll},
                "documentKey": {"_id": op.doc.get("_id").cloned().unwrap_or(Bson::Null)},
                "fullDocument": op.doc.clone(),
            }));
        }
        if events.len() < limit.max(1) {
            last = last.max(self.seq);
        }
        if let Some(cursor) = self.cursors.get_mut(&id) {
            cursor.after = last;
        }
        (events, token(last))
    }
}

async fn get_more(shared: &Shared, c: &Document) -> Document {
    let id = c.get("getMore").and_then(number).unwrap_or(0);
    let limit = c.get("batchSize").and_then(number).unwrap_or(101) as usize;
    let wait = c.get("maxTimeMS").and_then(number).unwrap_or(1000).max(0) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
    loop {
        let notified = shared.written.notified();
        {
            let mut st = shared.state.lock().unwrap();
            let Some(ns) = st.cursors.get(&id).map(|c| c.ns.clone()) else {
                return error(43, "CursorNotFound", &format!("cursor id {id} not found"));
            };
            let (batch, pbrt) = st.batch(id, limit);
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return doc! {"cursor": {"nextBatch": batch, "postBatchResumeToken": pbrt, "id": id, "ns": ns}, "ok": 1.0};
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

fn number(b: &Bson) -> Option<i64> {
    match b {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) => Some(*f as i64),
        _ => None,
    }
}

fn compare(a: &Bson, b: &Bson) -> Option<Ordering> {
    match (a, b) {
        (Bson::ObjectId(x), Bson::ObjectId(y)) => Some(x.bytes().cmp(&y.bytes())),
        (Bson::String(x), Bson::String(y)) => Some(x.cmp(y)),
        (Bson::DateTime(x), Bson::DateTime(y)) => Some(x.cmp(y)),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            Some((x.time, x.increment).cmp(&(y.time, y.increment)))
        }
        (Bson::Double(x), Bson::Double(y)) => x.partial_cmp(y),
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => (a == b).then_some(Ordering::Equal),
        },
    }
}

/// Equality and `$gt` / `$gte` / `$lt` / `$lte` / `$eq` per field.
fn matches(d: &Document, filter: &Document) -> bool {
    filter.iter().all(|(k, want)| {
        let have = d.get(k).unwrap_or(&Bson::Null);
        match want {
            Bson::Document(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                ops.iter().all(|(op, v)| {
                    let o = compare(have, v);
                    match op.as_str() {
                        "$gt" => o == Some(Ordering::Greater),
                        "$gte" => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
                        "$lt" => o == Some(Ordering::Less),
                        "$lte" => matches!(o, Some(Ordering::Less | Ordering::Equal)),
                        "$eq" => o == Some(Ordering::Equal),
                        _ => false,
                    }
                })
            }
            _ => compare(have, want) == Some(Ordering::Equal),
        }
    })
}

/// A replacement document (keeping `_id`) or `$set`.
fn apply(d: &Document, change: &Document) -> Document {
    if change.keys().any(|k| k.starts_with('$')) {
        let mut out = d.clone();
        if let Ok(set) = change.get_document("$set") {
            for (k, v) in set {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    } else {
        let mut out = doc! {"_id": d.get("_id").cloned().unwrap_or(Bson::Null)};
        for (k, v) in change {
            if k != "_id" {
                out.insert(k.clone(), v.clone());
            }
        }
        if out.get("_id") == Some(&Bson::Null)
            && let Some(id) = change.get("_id")
        {
            out.insert("_id", id.clone());
        }
        out
    }
}
