//! One outbox document -> one NATS message: the Centrifugo command, its subject and its
//! `Nats-Msg-Id`; or the reason it is not a valid outbox message (it then goes to the dead-letter
//! subject). The document shape is described in the [module doc of `relay`](super) and in
//! `docs/outbox.md`.

use bson::{Bson, Document};
use serde_json::{Value, json};

use crate::config::RelayConfig;

/// A message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub subject: String,
    /// `Nats-Msg-Id` header and Centrifugo `idempotency_key`: the outbox `_id` as text.
    pub msg_id: String,
    pub body: Vec<u8>,
    /// Whether this is a dead letter (a document that did not fit).
    pub dead_letter: bool,
}

/// The outbox `_id` as text: an ObjectId as its 24 hex digits, a string as is, a number in
/// decimal, anything else as its canonical extended JSON.
pub fn id_text(id: Option<&Bson>) -> String {
    match id {
        Some(Bson::ObjectId(oid)) => oid.to_hex(),
        Some(Bson::String(s)) => s.clone(),
        Some(Bson::Int32(n)) => n.to_string(),
        Some(Bson::Int64(n)) => n.to_string(),
        Some(other) => other.clone().into_canonical_extjson().to_string(),
        None => "(no _id)".to_string(),
    }
}

/// The message for `doc`, or a dead letter saying why it does not fit.
pub fn to_message(cfg: &RelayConfig, doc: &Document) -> Outgoing {
    let id = id_text(doc.get("_id"));
    match command(cfg, doc, &id) {
        Ok((subject, body)) => Outgoing {
            subject,
            body: body.to_string().into_bytes(),
            msg_id: id,
            dead_letter: false,
        },
        Err(reason) => dead_letter(cfg, doc, &id, &reason),
    }
}

/// The dead letter of `doc`: `{"reason", "collection", "id", "document"}` (the document as
/// relaxed extended JSON) on `<deadLetterSubject>.<collection>`, `Nats-Msg-Id` `deadletter-<id>`.
pub fn dead_letter(cfg: &RelayConfig, doc: &Document, id: &str, reason: &str) -> Outgoing {
    let body = json!({
        "reason": reason,
        "collection": cfg.outbox_collection,
        "id": id,
        "document": Bson::Document(doc.clone()).into_relaxed_extjson(),
    });
    Outgoing {
        subject: dead_letter_subject(cfg),
        msg_id: format!("deadletter-{id}"),
        body: body.to_string().into_bytes(),
        dead_letter: true,
    }
}

/// `<deadLetterSubject>.<collection>`, the collection name made a valid subject token.
pub fn dead_letter_subject(cfg: &RelayConfig) -> String {
    let token: String = cfg
        .outbox_collection
        .chars()
        .map(|c| {
            if matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    format!("{}.{token}", cfg.dead_letter_subject)
}

/// Subject and Centrifugo command of a valid document, else the reason.
fn command(cfg: &RelayConfig, doc: &Document, id: &str) -> Result<(String, Value), String> {
    if doc.get("_id").is_none() {
        return Err("the document has no _id".to_string());
    }
    let prefix = format!("{}.{}", cfg.subject_prefix, cfg.messages_namespace);
    let has = |key: &str| doc.contains_key(key);
    let given = ["userId", "userIds", "command"]
        .into_iter()
        .filter(|k| has(k))
        .collect::<Vec<_>>();
    match given.as_slice() {
        ["command"] => ready_made(doc, id, &prefix),
        ["userId"] | ["userIds"] => {
            let users = users(doc)?;
            let data = match doc.get("data") {
                None | Some(Bson::Null) => {
                    return Err("data is missing (it is what the users receive)".to_string());
                }
                Some(data) => data.clone().into_relaxed_extjson(),
            };
            let ns = &cfg.messages_namespace;
            match users.as_slice() {
                [user] => Ok((
                    format!("{prefix}.{user}"),
                    json!({
                        "method": "publish",
                        "payload": {
                            "channel": format!("{ns}:#{user}"),
                            "data": data,
                            "idempotency_key": id,
                        }
                    }),
                )),
                _ => Ok((
                    format!("{prefix}.broadcast"),
                    json!({
                        "method": "broadcast",
                        "payload": {
                            "channels": users.iter().map(|u| format!("{ns}:#{u}")).collect::<Vec<_>>(),
                            "data": data,
                            "idempotency_key": id,
                        }
                    }),
                )),
            }
        }
        [] => Err("none of userId, userIds or command is set".to_string()),
        several => Err(format!(
            "only one of userId, userIds or command may be set, found {}",
            several.join(", ")
        )),
    }
}

/// The users of a `userId` / `userIds` document, each a valid subject token and channel part.
fn users(doc: &Document) -> Result<Vec<String>, String> {
    let users = match (doc.get("userId"), doc.get("userIds")) {
        (Some(Bson::String(user)), None) => vec![user.clone()],
        (Some(other), None) => {
            return Err(format!(
                "userId must be a string, found {}",
                type_name(other)
            ));
        }
        (None, Some(Bson::Array(list))) => {
            let mut users = Vec::with_capacity(list.len());
            for item in list {
                match item {
                    Bson::String(user) => {
                        if !users.contains(user) {
                            users.push(user.clone());
                        }
                    }
                    other => {
                        return Err(format!(
                            "userIds must hold strings only, found {}",
                            type_name(other)
                        ));
                    }
                }
            }
            users
        }
        (None, Some(other)) => {
            return Err(format!(
                "userIds must be an array of strings, found {}",
                type_name(other)
            ));
        }
        _ => return Err("one of userId or userIds must be set".to_string()),
    };
    if users.is_empty() {
        return Err("userIds is empty".to_string());
    }
    for user in &users {
        if user.is_empty()
            || user.chars().any(|c| {
                matches!(c, '.' | '*' | '>' | ',' | '#' | ':')
                    || c.is_whitespace()
                    || c.is_control()
            })
        {
            return Err(format!(
                "user id {user:?} cannot be used in a subject or channel (empty, or has one of \
                 . * > , # : or a space)"
            ));
        }
    }
    Ok(users)
}

/// A ready-made `command: {method, payload}`: published as is to `<prefix>.command`, with the
/// `_id` as `idempotency_key` unless the payload has one.
fn ready_made(doc: &Document, id: &str, prefix: &str) -> Result<(String, Value), String> {
    let command = match doc.get("command") {
        Some(Bson::Document(command)) => command,
        Some(other) => {
            return Err(format!(
                "command must be a document, found {}",
                type_name(other)
            ));
        }
        None => return Err("command is missing".to_string()),
    };
    match command.get("method") {
        Some(Bson::String(method)) if !method.is_empty() => {}
        _ => return Err("command.method must be a non-empty string".to_string()),
    }
    if !matches!(command.get("payload"), Some(Bson::Document(_))) {
        return Err("command.payload must be a document".to_string());
    }
    let mut value = Bson::Document(command.clone()).into_relaxed_extjson();
    if let Some(payload) = value.get_mut("payload").and_then(Value::as_object_mut) {
        payload
            .entry("idempotency_key")
            .or_insert_with(|| Value::String(id.to_string()));
    }
    Ok((format!("{prefix}.command"), value))
}

fn type_name(value: &Bson) -> &'static str {
    match value {
        Bson::Double(_) => "a double",
        Bson::String(_) => "a string",
        Bson::Array(_) => "an array",
        Bson::Document(_) => "a document",
        Bson::Boolean(_) => "a boolean",
        Bson::Null => "null",
        Bson::Int32(_) | Bson::Int64(_) => "an integer",
        Bson::ObjectId(_) => "an ObjectId",
        Bson::DateTime(_) => "a date",
        _ => "another BSON type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId};

    fn cfg() -> RelayConfig {
        RelayConfig::default()
    }

    fn body(m: &Outgoing) -> Value {
        serde_json::from_slice(&m.body).unwrap()
    }

    #[test]
    fn one_user_is_a_publish() {
        let id = ObjectId::new();
        let m = to_message(
            &cfg(),
            &doc! {"_id": id, "userId": "u1", "data": {"text": "hi"}},
        );
        assert!(!m.dead_letter);
        assert_eq!(m.subject, "events.personal.u1");
        assert_eq!(m.msg_id, id.to_hex());
        assert_eq!(
            body(&m),
            json!({"method":"publish","payload":{"channel":"personal:#u1","data":{"text":"hi"},
                   "idempotency_key": id.to_hex()}})
        );
    }

    #[test]
    fn several_users_are_a_broadcast() {
        let m = to_message(
            &cfg(),
            &doc! {"_id": "x1", "userIds": ["u1", "u2", "u1"], "data": 5},
        );
        assert_eq!(m.subject, "events.personal.broadcast");
        assert_eq!(
            body(&m),
            json!({"method":"broadcast","payload":{"channels":["personal:#u1","personal:#u2"],
                   "data":5,"idempotency_key":"x1"}})
        );
    }

    #[test]
    fn ready_made_command_gets_the_id_as_idempotency_key() {
        let m = to_message(
            &cfg(),
            &doc! {"_id": 7, "command": {"method": "publish", "payload": {"channel": "news", "data": {}}}},
        );
        assert_eq!(m.subject, "events.personal.command");
        assert_eq!(body(&m)["payload"]["idempotency_key"], "7");
    }

    #[test]
    fn misfits_are_dead_letters_with_a_reason() {
        for (doc, reason) in [
            (doc! {"_id": 1, "data": 1}, "none of userId"),
            (
                doc! {"_id": 1, "userId": 5, "data": 1},
                "userId must be a string",
            ),
            (
                doc! {"_id": 1, "userId": "a.b", "data": 1},
                "cannot be used",
            ),
            (doc! {"_id": 1, "userId": "u"}, "data is missing"),
            (
                doc! {"_id": 1, "userIds": [], "data": 1},
                "userIds is empty",
            ),
            (
                doc! {"_id": 1, "userId": "u", "userIds": ["v"], "data": 1},
                "only one of",
            ),
            (
                doc! {"_id": 1, "command": {"payload": {}}},
                "command.method",
            ),
        ] {
            let m = to_message(&cfg(), &doc);
            assert!(m.dead_letter, "{doc}");
            assert_eq!(m.subject, "relay.deadletter.messages_outbox");
            assert_eq!(m.msg_id, "deadletter-1");
            let b = body(&m);
            assert!(b["reason"].as_str().unwrap().contains(reason), "{doc}: {b}");
            assert_eq!(b["document"]["_id"], 1);
        }
    }
}
