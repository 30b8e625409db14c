//! Unit tests of the session state machine: explicit clocks, no I/O.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::config::RealtimeConfig;
use crate::realtime::hub::{Hub, Sink};
use crate::realtime::protocol::Command;

const KEY: &str = "secret";
const NOW: u64 = 1_767_222_000;

fn config() -> Arc<RealtimeConfig> {
    Arc::new(RealtimeConfig {
        hmac_secret_key: Some(KEY.into()),
        ..RealtimeConfig::default()
    })
}

fn token(claims: serde_json::Value) -> String {
    jwt::sign_hs256(&claims, KEY.as_bytes())
}

fn cmd(text: &str) -> Command {
    Command::parse(text).unwrap()
}

fn connect_line(id: u32, token: &str) -> String {
    format!(r#"{{"id":{id},"connect":{{"token":"{token}","name":"js"}}}}"#)
}

struct Nothing;
impl Sink for Nothing {
    fn publication(&self, _: &str, _: &PubMsg) {}
    fn position_lost(&self, _: &str) {}
}

fn sub_id() -> SubId {
    Hub::default().join("x", Arc::new(Nothing)).0
}

/// A session connected as user 42 at `t0` (no server-side subscriptions).
fn connected(t0: Instant) -> Session {
    let mut s = Session::new(config(), Transport::Bidirectional, t0);
    let t = token(json!({"sub":"42","exp":NOW + 3600}));
    let Step::Connect { id: 1, subs } = s.command(cmd(&connect_line(1, &t)), t0, NOW) else {
        panic!("connect")
    };
    assert!(subs.is_empty());
    let Step::Reply(reply) = s.connect_done(1, Vec::new(), NOW) else {
        panic!("reply")
    };
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["connect"]["ping"], 25);
    assert_eq!(reply["connect"]["pong"], true);
    assert_eq!(reply["connect"]["expires"], true);
    assert_eq!(reply["connect"]["ttl"], 3600);
    assert_eq!(reply["connect"]["client"].as_str().unwrap().len(), 36);
    s
}

fn closed_with(step: Step, code: u16) {
    match step {
        Step::Close(_, d) => assert_eq!(d.code, code),
        other => panic!("expected close {code}, got {other:?}"),
    }
}

fn error_code(step: Step) -> u64 {
    match step {
        Step::Reply(r) => serde_json::from_str::<serde_json::Value>(&r).unwrap()["error"]["code"]
            .as_u64()
            .unwrap(),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn a_command_before_connect_closes_with_3501() {
    let t0 = Instant::now();
    let mut s = Session::new(config(), Transport::Bidirectional, t0);
    let step = s.command(
        cmd(r#"{"id":1,"subscribe":{"channel":"personal:#42"}}"#),
        t0,
        NOW,
    );
    closed_with(step, 3501);
}

#[test]
fn bad_tokens_close_with_3500_and_expired_ones_get_109() {
    let t0 = Instant::now();
    let forged = jwt::sign_hs256(&json!({"sub":"42"}), b"not the key");
    let mut s = Session::new(config(), Transport::Bidirectional, t0);
    closed_with(s.command(cmd(&connect_line(1, &forged)), t0, NOW), 3500);

    let expired = token(json!({"sub":"42","exp":NOW - 1}));
    let mut s = Session::new(config(), Transport::Bidirectional, t0);
    assert_eq!(
        error_code(s.command(cmd(&connect_line(1, &expired)), t0, NOW)),
        109
    );

    let mut s = Session::new(config(), Transport::Unidirectional, t0);
    closed_with(s.command(cmd(&connect_line(1, &expired)), t0, NOW), 3005);

    let mut s = Session::new(config(), Transport::Bidirectional, t0);
    closed_with(s.command(cmd(&connect_line(1, "")), t0, NOW), 3501);
}

#[test]
fn a_second_connect_closes_with_3501() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    let t = token(json!({"sub":"42"}));
    closed_with(s.command(cmd(&connect_line(2, &t)), t0, NOW), 3501);
}

#[test]
fn subscribe_rules() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    let sub = |s: &mut Session, id: u32, channel: &str| {
        s.command(
            cmd(&format!(
                r#"{{"id":{id},"subscribe":{{"channel":"{channel}"}}}}"#
            )),
            t0,
            NOW,
        )
    };
    assert_eq!(error_code(sub(&mut s, 2, "personal:#43")), 103);
    assert_eq!(error_code(sub(&mut s, 3, "chat:1")), 102);
    assert_eq!(error_code(sub(&mut s, 4, "news")), 103);
    let Step::Subscribe { id: 5, plan } = sub(&mut s, 5, "personal:#42") else {
        panic!("subscribe")
    };
    assert!(plan.recoverable && plan.presence && plan.recover.is_none());
    let done = Subscribed {
        sub: sub_id(),
        recovered: false,
        publications: Vec::new(),
        then: Vec::new(),
        offset: 7,
        epoch: "ep".into(),
    };
    let Step::Reply(reply) = s.subscribe_done(5, &plan, Ok(done)) else {
        panic!("reply")
    };
    assert_eq!(
        reply,
        r#"{"id":5,"subscribe":{"recoverable":true,"epoch":"ep","offset":7,"positioned":true}}"#
    );
    assert_eq!(error_code(sub(&mut s, 6, "personal:#42")), 105);
    closed_with(sub(&mut s, 7, ""), 3501);
}

#[test]
fn a_recovered_subscription_replies_with_the_missed_publications() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    let step = s.command(
        cmd(r#"{"id":2,"subscribe":{"channel":"personal:#42","recover":true,"offset":7,"epoch":"ep"}}"#),
        t0,
        NOW,
    );
    let Step::Subscribe { plan, .. } = step else {
        panic!("subscribe")
    };
    assert_eq!(
        plan.recover,
        Some(StreamPosition {
            offset: 7,
            epoch: "ep".into()
        })
    );
    let p = |o: u64| PubMsg::from_redis("ep", &format!(r#"{{"offset":{o},"data":{{"n":{o}}}}}"#));
    let done = Subscribed {
        sub: sub_id(),
        recovered: true,
        publications: vec![p(8), p(9)],
        then: Vec::new(),
        offset: 7,
        epoch: "ep".into(),
    };
    let Step::Reply(reply) = s.subscribe_done(2, &plan, Ok(done)) else {
        panic!("reply")
    };
    assert_eq!(
        reply,
        r#"{"id":2,"subscribe":{"recoverable":true,"epoch":"ep","publications":[{"offset":8,"data":{"n":8}},{"offset":9,"data":{"n":9}}],"recovered":true,"offset":7,"positioned":true,"was_recovering":true}}"#
    );
    // A gap later: resubscribe with recovery (2500).
    let Step::Reply(push) = s.position_lost("personal:#42") else {
        panic!("push")
    };
    assert_eq!(
        push,
        r#"{"push":{"channel":"personal:#42","unsubscribe":{"code":2500,"reason":"insufficient state"}}}"#
    );
}

#[test]
fn pings_pongs_and_their_timeouts() {
    let t0 = Instant::now();
    let mut s = connected(t0);
    let first = s.next_deadline().unwrap();
    assert!(first >= t0 + PING_INTERVAL / 2 && first <= t0 + PING_INTERVAL);
    assert!(matches!(
        s.tick(first - Duration::from_millis(1), NOW),
        Step::None
    ));
    let Step::Reply(ping) = s.tick(first, NOW) else {
        panic!("ping")
    };
    assert_eq!(ping, "{}");
    assert_eq!(s.next_deadline(), Some(first + PONG_TIMEOUT));
    assert!(matches!(s.command(Command::Pong, first, NOW), Step::None));
    let second = s.next_deadline().unwrap();
    assert_eq!(second, first + PING_INTERVAL);
    assert!(matches!(s.tick(second, NOW), Step::Reply(_)));
    closed_with(s.tick(second + PONG_TIMEOUT, NOW), 3012);

    // An unasked-for pong.
    let mut s = connected(t0);
    closed_with(s.command(Command::Pong, t0, NOW), 3501);
}

#[test]
fn no_connect_in_time_is_stale_and_no_refresh_is_expired() {
    let t0 = Instant::now();
    let mut s = Session::new(config(), Transport::Bidirectional, t0);
    assert!(matches!(
        s.tick(t0 + Duration::from_secs(9), NOW),
        Step::None
    ));
    closed_with(s.tick(t0 + STALE_CLOSE_DELAY, NOW), 3502);

    let mut s = connected(t0);
    assert_eq!(s.expiry_close_at(), Some(NOW + 3600 + EXPIRED_CLOSE_DELAY));
    let refresh = token(json!({"sub":"42","exp":NOW + 7200}));
    let Step::Reply(reply) = s.command(
        cmd(&format!(r#"{{"id":9,"refresh":{{"token":"{refresh}"}}}}"#)),
        t0,
        NOW,
    ) else {
        panic!("refresh")
    };
    assert_eq!(reply, r#"{"id":9,"refresh":{"expires":true,"ttl":7200}}"#);
    assert!(matches!(
        s.tick(t0, NOW + 3600 + EXPIRED_CLOSE_DELAY),
        Step::None
    ));
    closed_with(s.tick(t0, NOW + 7200 + EXPIRED_CLOSE_DELAY), 3005);

    let mut s = connected(t0);
    let other = token(json!({"sub":"43"}));
    closed_with(
        s.command(
            cmd(&format!(r#"{{"id":9,"refresh":{{"token":"{other}"}}}}"#)),
            t0,
            NOW,
        ),
        3500,
    );
}

#[test]
fn token_channels_are_server_side_subscriptions() {
    let t0 = Instant::now();
    let mut s = Session::new(config(), Transport::Unidirectional, t0);
    let t = token(json!({"sub":"42","channels":["personal:#42"]}));
    let request = format!(
        r#"{{"id":1,"connect":{{"token":"{t}","subs":{{"personal:#42":{{"recover":true,"offset":3,"epoch":"ep"}},"personal:#43":{{}}}}}}}}"#
    );
    let Step::Connect { subs, .. } = s.command(cmd(&request), t0, NOW) else {
        panic!("connect")
    };
    assert_eq!(subs.len(), 1, "43 is not this user's: ignored");
    assert_eq!(subs[0].recover.as_ref().map(|r| r.offset), Some(3));
    let done = Subscribed {
        sub: sub_id(),
        recovered: true,
        publications: Vec::new(),
        then: Vec::new(),
        offset: 3,
        epoch: "ep".into(),
    };
    let plan = subs[0].clone();
    let Step::Reply(reply) = s.connect_done(1, vec![(plan, Ok(done))], NOW) else {
        panic!("reply")
    };
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    let sub = &reply["connect"]["subs"]["personal:#42"];
    assert_eq!(sub["recovered"], true);
    assert_eq!(sub["offset"], 3);
    assert!(reply["connect"].get("pong").is_none(), "uni: no pong");
    assert!(reply.get("id").is_none());
    // A lost position on a server-side subscription closes with 3010.
    closed_with(s.position_lost("personal:#42"), 3010);
}

#[test]
fn a_failed_server_side_subscription_fails_the_connect_and_keeps_the_client_id() {
    let t0 = Instant::now();
    let mut s = Session::new(config(), Transport::Bidirectional, t0);
    let t = token(json!({"sub":"42","channels":["personal:#42","news"]}));
    let Step::Connect { subs, .. } = s.command(cmd(&connect_line(1, &t)), t0, NOW) else {
        panic!("connect")
    };
    let ok = Subscribed {
        sub: sub_id(),
        recovered: false,
        publications: Vec::new(),
        then: Vec::new(),
        offset: 0,
        epoch: String::new(),
    };
    let results = vec![(subs[0].clone(), Ok(ok)), (subs[1].clone(), Err(()))];
    match s.connect_done(1, results, NOW) {
        Step::Close(Some(reply), d) => {
            assert_eq!(d.code, 3004);
            assert!(reply.contains("\"code\":100"), "{reply}");
        }
        other => panic!("{other:?}"),
    }
    // The transport still knows which client to remove from presence.
    assert_eq!(s.client().map(str::len), Some(36));
}
