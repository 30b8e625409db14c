//! What the demo agent answers, with no I/O: one request from an agent queue in, the reply for
//! the client's queue and the realtime publication out.
//!
//! - `authenticate` -> `AuthenticateUserAccountResponse` whose `result` is a `UserToken` for the
//!   request's `user` (any user id that can name a realtime channel; the demo checks no
//!   password): the gateway logs the socket in and subscribes it to `personal:#<user>`.
//! - `testCall` -> `testCallResponse` with the request's `messageId` as
//!   `correspondingMessageId` (the shape of the echo agents of `tests/common/agent.rs` and
//!   `bench/roundtrip/agent.js`), and, when the caller's client is logged in, one publication to
//!   its user's personal channel saying which request caused it.
//! - The gateway's own messages (`connect`, `reconnect`, `disconnect`, `disconnectAuth`,
//!   `logout`, `hibernate`) get no answer: they tell the agent which client is which user, as
//!   they tell the backend.

use std::collections::HashMap;

use serde_json::{Value, json};

/// The agent queues the demo agent consumes.
pub const QUEUES: &[&str] = &[
    "testCall",
    "authenticate",
    "connect",
    "reconnect",
    "disconnect",
    "disconnectAuth",
    "logout",
    "hibernate",
];

/// Clients whose user the agent remembers at most (the oldest is forgotten first).
const MAX_CLIENTS: usize = 10_000;
/// The longest user id the demo logs in.
const MAX_USER_LEN: usize = 64;

/// A publication for a user's personal channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub user: String,
    pub data: Value,
}

/// What to do about one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The message for the client's queue (the request's replyTo), if any.
    pub reply: Option<Value>,
    /// The publication for the caller's user, if any.
    pub publication: Option<Publication>,
}

/// The agent's state: which client is which user.
pub struct Agent {
    /// Named in replies and publications.
    pid: u32,
    /// `testCall`s answered.
    answered: u64,
    /// client id -> (user, when it was learnt, as a sequence number).
    users: HashMap<String, (String, u64)>,
    learnt: u64,
}

impl Agent {
    pub fn new(pid: u32) -> Agent {
        Agent {
            pid,
            answered: 0,
            users: HashMap::new(),
            learnt: 0,
        }
    }

    /// The answer to `request`, taken from `queue`; `now_ms` is the Unix time in ms.
    pub fn handle(&mut self, queue: &str, request: &Value, now_ms: u64) -> Answer {
        let client = request["clientId"].as_str();
        match queue {
            "authenticate" => self.authenticate(request),
            "testCall" => self.test_call(request, now_ms),
            "connect" | "reconnect" => {
                if let (Some(client), Some(user)) = (client, user_of(&request["userId"])) {
                    self.learn(client, &user);
                }
                Answer::default()
            }
            "disconnect" | "logout" => {
                if let Some(client) = client {
                    self.users.remove(client);
                }
                Answer::default()
            }
            _ => Answer::default(),
        }
    }

    fn authenticate(&mut self, request: &Value) -> Answer {
        let client_id = request["clientId"].clone();
        let mut reply = json!({
            "cn": "com.percero.agents.auth.vo.AuthenticateUserAccountResponse",
            "clientId": client_id,
        });
        if let Some(id) = request.get("messageId") {
            reply["correspondingMessageId"] = id.clone();
        }
        match request["user"].as_str().filter(|u| valid_user(u)) {
            Some(user) => {
                if let Some(client) = client_id.as_str() {
                    self.learn(client, user);
                }
                reply["result"] = json!({
                    "cn": "com.percero.agents.auth.vo.UserToken",
                    "user": {"ID": user},
                    "token": format!("demo-token-{user}"),
                    "deviceId": request["deviceId"],
                    "clientId": client_id,
                });
            }
            None => {
                // No user: the gateway does not log the socket in.
                reply["result"] = Value::Null;
                reply["demoError"] = format!(
                    "the demo logs in user ids of 1 to {MAX_USER_LEN} letters, digits, '-' or \
                     '_' (they name a realtime channel)"
                )
                .into();
            }
        }
        Answer {
            reply: Some(reply),
            publication: None,
        }
    }

    fn test_call(&mut self, request: &Value, now_ms: u64) -> Answer {
        self.answered += 1;
        let cn = request["cn"].as_str().unwrap_or("testCall");
        let message_id = request.get("messageId").cloned();
        let mut reply = json!({
            "cn": format!("{cn}Response"),
            "clientId": request["clientId"],
            "result": {"agentPid": self.pid, "answered": self.answered},
        });
        if let Some(id) = &message_id {
            reply["correspondingMessageId"] = id.clone();
        }
        let user = request["clientId"]
            .as_str()
            .and_then(|client| self.users.get(client))
            .map(|(user, _)| user.clone());
        let publication = user.map(|user| Publication {
            user,
            data: json!({
                "kind": "testCall",
                "messageId": message_id.unwrap_or(Value::Null),
                "answered": self.answered,
                "agentPid": self.pid,
                "publishedAtMs": now_ms,
            }),
        });
        Answer {
            reply: Some(reply),
            publication,
        }
    }

    fn learn(&mut self, client: &str, user: &str) {
        if !self.users.contains_key(client) && self.users.len() >= MAX_CLIENTS {
            let oldest = self
                .users
                .iter()
                .min_by_key(|(_, (_, when))| *when)
                .map(|(client, _)| client.clone());
            if let Some(oldest) = oldest {
                self.users.remove(&oldest);
            }
        }
        self.learnt += 1;
        self.users
            .insert(client.to_string(), (user.to_string(), self.learnt));
    }

    /// Clients whose user is known.
    pub fn known_clients(&self) -> usize {
        self.users.len()
    }
}

/// A user id as the gateway's messages carry it (text or a number).
fn user_of(value: &Value) -> Option<String> {
    let user = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    valid_user(&user).then_some(user)
}

/// Whether the demo logs `user` in: it must name a channel (`personal:#<user>`) and a subject
/// token (`events.personal.<user>`), so only letters, digits, `-` and `_`.
pub fn valid_user(user: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticate_logs_in_the_requested_user_as_the_gateway_expects() {
        let mut agent = Agent::new(7);
        let answer = agent.handle(
            "authenticate",
            &json!({"cn": "x.AuthenticateUserAccountRequest", "messageId": "m1",
                    "clientId": "c1", "user": "ann", "deviceId": "d"}),
            0,
        );
        let reply = answer.reply.unwrap();
        assert_eq!(
            reply["cn"],
            "com.percero.agents.auth.vo.AuthenticateUserAccountResponse"
        );
        assert_eq!(reply["correspondingMessageId"], "m1");
        assert_eq!(reply["result"]["user"]["ID"], "ann");
        assert_eq!(
            reply["result"]["cn"],
            "com.percero.agents.auth.vo.UserToken"
        );
        assert_eq!(answer.publication, None);
        assert_eq!(agent.known_clients(), 1);
    }

    #[test]
    fn a_user_id_that_cannot_name_a_channel_is_not_logged_in() {
        let mut agent = Agent::new(7);
        for user in [
            json!(""),
            json!("a.b"),
            json!("a:#b"),
            json!("a b"),
            json!(3),
            json!(null),
        ] {
            let reply = agent
                .handle("authenticate", &json!({"clientId": "c1", "user": user}), 0)
                .reply
                .unwrap();
            assert_eq!(reply["result"], Value::Null, "{user}");
        }
        assert!(!valid_user(&"x".repeat(MAX_USER_LEN + 1)));
        assert_eq!(agent.known_clients(), 0);
    }

    #[test]
    fn a_test_call_is_answered_and_published_to_its_users_channel() {
        let mut agent = Agent::new(7);
        let anonymous = agent.handle(
            "testCall",
            &json!({"cn": "testCall", "messageId": "m0", "clientId": "c1"}),
            5,
        );
        assert_eq!(anonymous.reply.unwrap()["correspondingMessageId"], "m0");
        assert_eq!(anonymous.publication, None, "nobody to publish to");

        agent.handle(
            "connect",
            &json!({"cn": "ConnectRequest", "clientId": "c1", "userId": "ann"}),
            5,
        );
        let answer = agent.handle(
            "testCall",
            &json!({"cn": "testCall", "messageId": "m1", "clientId": "c1"}),
            6,
        );
        let reply = answer.reply.unwrap();
        assert_eq!(reply["cn"], "testCallResponse");
        assert_eq!(reply["clientId"], "c1");
        assert_eq!(reply["result"]["answered"], 2);
        let publication = answer.publication.unwrap();
        assert_eq!(publication.user, "ann");
        assert_eq!(publication.data["messageId"], "m1");
        assert_eq!(publication.data["publishedAtMs"], 6);

        agent.handle("disconnect", &json!({"clientId": "c1", "userId": "ann"}), 7);
        let after = agent.handle("testCall", &json!({"messageId": "m2", "clientId": "c1"}), 8);
        assert_eq!(after.publication, None, "forgotten at its disconnect");
    }

    #[test]
    fn the_gateways_own_messages_get_no_answer() {
        let mut agent = Agent::new(7);
        for queue in [
            "connect",
            "reconnect",
            "disconnect",
            "disconnectAuth",
            "logout",
            "hibernate",
        ] {
            let request = json!({"clientId": "c", "userId": 42});
            assert_eq!(agent.handle(queue, &request, 0).reply, None, "{queue}");
        }
    }

    #[test]
    fn at_most_max_clients_are_remembered_oldest_first_forgotten() {
        let mut agent = Agent::new(7);
        for i in 0..=MAX_CLIENTS {
            agent.handle(
                "connect",
                &json!({"clientId": format!("c{i}"), "userId": "u"}),
                0,
            );
        }
        assert_eq!(agent.known_clients(), MAX_CLIENTS);
        let first = agent.handle("testCall", &json!({"clientId": "c0"}), 0);
        assert_eq!(first.publication, None);
        let last = agent.handle(
            "testCall",
            &json!({"clientId": format!("c{MAX_CLIENTS}")}),
            0,
        );
        assert!(last.publication.is_some());
    }
}
