//! Counting one scenario: the clients' event log (bench/chaos/clients.js) against what the
//! agent received and published, and the outbox inserts against the EVENTS stream, the
//! realtime history and what the realtime clients got.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::agent::AgentLog;

/// One request's history in the clients' log.
#[derive(Default)]
struct Request {
    attempts: u32,
    /// (attempt, connection) of every push with its messageId, in order.
    pushes: Vec<(u32, u32)>,
}

#[derive(Default, Serialize, Clone)]
pub struct SocketIo {
    /// Requests (messageIds) sent, and sends in all (re-sends included).
    pub requests: u64,
    pub sends: u64,
    /// Re-sends: after a disconnect without `ack`, after a gatewayError, after a timeout.
    pub resent_no_ack: u64,
    pub resent_timeout: u64,
    pub answered: u64,
    pub never_answered: u64,
    /// Sends the backend never received (they got no `ack`, the client sent them again).
    pub never_reached_backend: u64,
    /// Sends that were `ack`ed (RabbitMQ had them).
    pub acked: u64,
    /// Answers published to a client queue (confirmed, routed) that never reached the client.
    pub lost: u64,
    pub lost_examples: Vec<String>,
    /// Answers RabbitMQ could not route (the client queue was gone).
    pub unroutable: u64,
    pub duplicates: u64,
    /// ... of which: answers to a re-sent request (the first send had reached the backend too),
    pub dup_resent_request: u64,
    /// a request the backend got twice (redelivered to it after a broker restart),
    pub dup_backend_redelivery: u64,
    /// a push delivered again after a reconnect (its ack had not reached RabbitMQ),
    pub dup_after_reconnect: u64,
    /// the gateway's re-send of an unacked push on the same connection.
    pub dup_same_connection: u64,
    pub disconnects: u64,
    pub reconnects: u64,
    /// Sockets the library gave up on (a fresh one took over).
    pub gave_up: u64,
    /// Emits the 0.9 library refused (its socket was closing), and exceptions in the client
    /// libraries (logged by clients.js, which carries on).
    pub failed_emits: u64,
    pub client_exceptions: u64,
    pub gateway_errors: BTreeMap<String, u64>,
    /// The agent moved this many messages from old client queues (ReconnectRequests).
    pub moved: u64,
    pub renames: u64,
    pub forwarded: u64,
}

#[derive(Default, Serialize, Clone)]
pub struct Realtime {
    pub clients: u64,
    pub inserted: u64,
    pub insert_failed: u64,
    /// Outbox documents in EVENTS (once or more), never in it, and extra copies.
    pub in_events: u64,
    pub outbox_lost: u64,
    pub outbox_duplicated: u64,
    /// Publications for the subscribed clients (documents in EVENTS), delivered, never delivered
    /// (of which: in the channel's history), and delivered more than once.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub lost_in_history: u64,
    pub lost_examples: Vec<String>,
    pub duplicated: u64,
    pub disconnects: u64,
    pub reconnects: u64,
    /// Subscriptions that came back with `recovered: false` (the client is told to reload).
    pub not_recovered: u64,
    pub recovered: u64,
}

pub struct ClientLog {
    requests: HashMap<String, Request>,
    sends: u64,
    acked: HashSet<(String, u32)>,
    sent_attempts: Vec<(String, u32)>,
    timeouts: u64,
    connects: HashMap<String, u64>,
    disconnects: u64,
    gave_up: u64,
    failed_emits: u64,
    exceptions: u64,
    errors: BTreeMap<String, u64>,
    /// Realtime: user -> data ids received, in order.
    rt_received: HashMap<String, Vec<String>>,
    rt_connects: HashMap<String, u64>,
    rt_disconnects: u64,
    rt_not_recovered: u64,
    rt_recovered: u64,
}

impl ClientLog {
    pub fn parse(text: &str) -> ClientLog {
        let mut log = ClientLog {
            requests: HashMap::new(),
            sends: 0,
            acked: HashSet::new(),
            sent_attempts: Vec::new(),
            timeouts: 0,
            connects: HashMap::new(),
            disconnects: 0,
            gave_up: 0,
            failed_emits: 0,
            exceptions: 0,
            errors: BTreeMap::new(),
            rt_received: HashMap::new(),
            rt_connects: HashMap::new(),
            rt_disconnects: 0,
            rt_not_recovered: 0,
            rt_recovered: 0,
        };
        // The latest attempt sent per request, so that a `K` (which names no attempt) is
        // matched to it.
        let mut latest: HashMap<String, u32> = HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let field = |i: usize| f.get(i).copied().unwrap_or("");
            let num = |i: usize| field(i).parse::<u32>().unwrap_or(0);
            match field(0) {
                "S" => {
                    let id = field(3).to_string();
                    let attempt = num(4);
                    log.sends += 1;
                    let r = log.requests.entry(id.clone()).or_default();
                    r.attempts = r.attempts.max(attempt);
                    latest.insert(id.clone(), attempt);
                    log.sent_attempts.push((id, attempt));
                }
                "K" => {
                    let id = field(3).to_string();
                    if let Some(&a) = latest.get(&id) {
                        log.acked.insert((id, a));
                    }
                }
                "P" => {
                    let r = log.requests.entry(field(3).to_string()).or_default();
                    r.pushes.push((num(4), num(5)));
                }
                "E" => *log.errors.entry(field(5).to_string()).or_default() += 1,
                "T" => log.timeouts += 1,
                "C" => *log.connects.entry(field(2).to_string()).or_default() += 1,
                "D" => log.disconnects += 1,
                "X" => log.gave_up += 1,
                "F" => log.failed_emits += 1,
                "U" => log.exceptions += 1,
                "RC" => *log.rt_connects.entry(field(2).to_string()).or_default() += 1,
                "RD" => log.rt_disconnects += 1,
                "RS" if field(5) == "true" => {
                    if field(4) == "true" {
                        log.rt_recovered += 1;
                    } else {
                        log.rt_not_recovered += 1;
                    }
                }
                "RS" => {}
                "RP" => log
                    .rt_received
                    .entry(field(2).to_string())
                    .or_default()
                    .push(field(4).to_string()),
                _ => {}
            }
        }
        log
    }

    /// Answers the agent published that no client got yet (for the drain).
    pub fn outstanding(&self, agent: &AgentLog) -> usize {
        agent
            .published
            .keys()
            .filter(|(id, attempt)| {
                !self
                    .requests
                    .get(id)
                    .is_some_and(|r| r.pushes.iter().any(|(a, _)| a == attempt))
            })
            .count()
    }

    /// Data ids the realtime clients received, each once.
    pub fn rt_delivered(&self) -> HashSet<&str> {
        self.rt_received
            .values()
            .flat_map(|ids| ids.iter().map(String::as_str))
            .collect()
    }

    /// Every socket.io client has an answer to every request it sent.
    pub fn all_answered(&self) -> bool {
        self.requests.values().all(|r| !r.pushes.is_empty())
    }

    pub fn socket_io(&self, agent: &AgentLog) -> SocketIo {
        let mut t = SocketIo {
            requests: self.requests.len() as u64,
            sends: self.sends,
            resent_timeout: self.timeouts,
            disconnects: self.disconnects,
            reconnects: self.connects.values().map(|n| n.saturating_sub(1)).sum(),
            gave_up: self.gave_up,
            failed_emits: self.failed_emits,
            client_exceptions: self.exceptions,
            gateway_errors: self.errors.clone(),
            moved: agent.moved,
            renames: agent.renames,
            forwarded: agent.forwarded,
            unroutable: agent.unroutable.values().map(|&n| u64::from(n)).sum(),
            acked: self.acked.len() as u64,
            ..SocketIo::default()
        };
        t.resent_no_ack = self
            .sends
            .saturating_sub(t.requests)
            .saturating_sub(t.resent_timeout);
        t.never_reached_backend = self
            .sent_attempts
            .iter()
            .filter(|k| !agent.received.contains_key(*k))
            .count() as u64;
        for (id, r) in &self.requests {
            if r.pushes.is_empty() {
                t.never_answered += 1;
            } else {
                t.answered += 1;
            }
            // Duplicates, each with its reason.
            let mut seen_attempts: HashMap<u32, (u32, u32)> = HashMap::new(); // attempt -> (pushes, last conn)
            for (i, &(attempt, conn)) in r.pushes.iter().enumerate() {
                let entry = seen_attempts.get(&attempt).copied();
                if i > 0 {
                    t.duplicates += 1;
                    let backend_got = agent
                        .received
                        .get(&(id.clone(), attempt))
                        .copied()
                        .unwrap_or(0);
                    match entry {
                        None => t.dup_resent_request += 1,
                        Some((n, _)) if n < backend_got => t.dup_backend_redelivery += 1,
                        Some((_, last)) if last != conn => t.dup_after_reconnect += 1,
                        Some(_) => t.dup_same_connection += 1,
                    }
                }
                let (n, _) = entry.unwrap_or((0, conn));
                seen_attempts.insert(attempt, (n + 1, conn));
            }
        }
        for key @ (id, attempt) in agent.published.keys() {
            let got = self
                .requests
                .get(id)
                .is_some_and(|r| r.pushes.iter().any(|(a, _)| a == attempt));
            if !got {
                t.lost += 1;
                if t.lost_examples.len() < 10 {
                    let queue = agent
                        .published
                        .get(key)
                        .map(|p| p.1.clone())
                        .unwrap_or_default();
                    t.lost_examples
                        .push(format!("{id} attempt {attempt} -> queue {queue}"));
                }
            }
        }
        t
    }

    /// `inserted`: (data id, user); `in_events`: data id -> messages; `history`: data ids found
    /// in the channels' history.
    pub fn realtime(
        &self,
        clients: usize,
        inserted: &[(String, String)],
        insert_failed: u64,
        in_events: &HashMap<String, u32>,
        history: &HashSet<String>,
    ) -> Realtime {
        let mut t = Realtime {
            clients: clients as u64,
            inserted: inserted.len() as u64,
            insert_failed,
            disconnects: self.rt_disconnects,
            reconnects: self.rt_connects.values().map(|n| n.saturating_sub(1)).sum(),
            not_recovered: self.rt_not_recovered,
            recovered: self.rt_recovered,
            ..Realtime::default()
        };
        let mut delivered: HashMap<(&str, &str), u32> = HashMap::new();
        for (user, ids) in &self.rt_received {
            for id in ids {
                *delivered.entry((user.as_str(), id.as_str())).or_default() += 1;
            }
        }
        for (id, user) in inserted {
            match in_events.get(id) {
                None | Some(0) => {
                    t.outbox_lost += 1;
                    continue;
                }
                Some(&n) => {
                    t.in_events += 1;
                    t.outbox_duplicated += u64::from(n - 1);
                }
            }
            t.expected += 1;
            match delivered
                .get(&(user.as_str(), id.as_str()))
                .copied()
                .unwrap_or(0)
            {
                0 => {
                    t.lost += 1;
                    if history.contains(id) {
                        t.lost_in_history += 1;
                    }
                    if t.lost_examples.len() < 10 {
                        t.lost_examples.push(format!(
                            "{id} for {user} (in history: {})",
                            history.contains(id)
                        ));
                    }
                }
                n => {
                    t.delivered += 1;
                    t.duplicated += u64::from(n - 1);
                }
            }
        }
        t
    }
}
