//! The API the socket.io gateway calls for a logged-in user's sockets
//! ([`Realtime::subscribe_user`]), in process against the machine's real Redis: publications
//! reach the sink in order, a socket coming back with its last position recovers exactly what
//! it missed, and one too far behind is told `recovered: false`.

mod realtime_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use activestack_gateway::config::Config;
use activestack_gateway::realtime::api::{self, PublishRequest};
use activestack_gateway::realtime::{PubMsg, Realtime, SOCKETIO_EVENT, Sink, StreamPosition};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// What a socket would emit: the `realtime` event payloads, in order.
#[derive(Default)]
struct Socket(Mutex<Vec<Value>>);

impl Sink for Socket {
    fn publication(&self, channel: &str, publication: &PubMsg) {
        self.0
            .lock()
            .unwrap()
            .push(publication.socketio_payload(channel));
    }
    fn position_lost(&self, _channel: &str) {
        self.0.lock().unwrap().push(json!("lost"));
    }
}

impl Socket {
    async fn wait(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + realtime_support::DEADLINE;
        loop {
            let got = self.0.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "only {got:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn realtime(history_size: usize) -> Realtime {
    let mut config = Config::defaults();
    let id = realtime_support::unique();
    // A control channel of its own: the engine's Redis keys live under it.
    config.gateway.redis.control_channel = format!("rt-user-test-{id}");
    config.realtime.enabled = true;
    config.realtime.nats_stream = format!("RT_NONE_{id}");
    config.realtime.nats_consumer = format!("rt_user_{id}");
    config
        .realtime
        .namespaces
        .get_mut("personal")
        .unwrap()
        .history_size = history_size;
    Realtime::start(&config, "test").unwrap()
}

async fn publish(realtime: &Realtime, channel: &str, n: i64) {
    let data = RawValue::from_string(json!({ "n": n }).to_string()).unwrap();
    api::publish(realtime, channel, &data, &PublishRequest::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_users_socket_gets_and_recovers_its_personal_publications() {
    assert_eq!(SOCKETIO_EVENT, "realtime");
    let realtime = realtime(300);
    let user = format!("u{}", realtime_support::unique());
    let socket = Arc::new(Socket::default());
    let sub = realtime
        .subscribe_user(&user, None, socket.clone())
        .await
        .unwrap();
    assert_eq!(sub.channel, format!("personal:#{user}"));
    assert!(!sub.recovered && sub.publications.is_empty());
    let epoch = sub.position.epoch.clone();
    assert!(!epoch.is_empty());
    for n in 1..=3 {
        publish(&realtime, &sub.channel, n).await;
    }
    let got = socket.wait(3).await;
    assert_eq!(
        got[2],
        json!({"channel": sub.channel, "offset": 3, "epoch": epoch, "data": {"n": 3}})
    );
    realtime.unsubscribe(&sub.channel, sub.id);

    // Away: 50 more; back from offset 3.
    for n in 4..=53 {
        publish(&realtime, &sub.channel, n).await;
    }
    let again = Arc::new(Socket::default());
    let since = StreamPosition {
        offset: 3,
        epoch: epoch.clone(),
    };
    let back = realtime
        .subscribe_user(&user, Some(since), again.clone())
        .await
        .unwrap();
    assert!(back.recovered);
    let ns: Vec<u64> = back.publications.iter().map(|p| p.offset).collect();
    assert_eq!(ns, (4..=53).collect::<Vec<_>>());
    assert_eq!(back.position.offset, 53);
    publish(&realtime, &sub.channel, 54).await;
    assert_eq!(
        again.wait(1).await[0]["offset"],
        54,
        "live after the recovered ones"
    );

    // Another epoch (or a position from before the history): not recovered, nothing replayed.
    let wrong = StreamPosition {
        offset: 3,
        epoch: "another".into(),
    };
    let lost = realtime
        .subscribe_user(&user, Some(wrong), Arc::new(Socket::default()))
        .await
        .unwrap();
    assert!(!lost.recovered && lost.publications.is_empty());
    assert_eq!(lost.position.offset, 54);
    realtime.close();
}

#[tokio::test]
async fn a_socket_further_behind_than_the_history_is_not_recovered() {
    let realtime = realtime(10);
    let user = format!("u{}", realtime_support::unique());
    let sub = realtime
        .subscribe_user(&user, None, Arc::new(Socket::default()))
        .await
        .unwrap();
    realtime.unsubscribe(&sub.channel, sub.id);
    for n in 1..=20 {
        publish(&realtime, &sub.channel, n).await;
    }
    let since = StreamPosition {
        offset: 0,
        epoch: sub.position.epoch.clone(),
    };
    let back = realtime
        .subscribe_user(&user, Some(since), Arc::new(Socket::default()))
        .await
        .unwrap();
    assert!(!back.recovered, "10 of the 20 are gone: none is replayed");
    assert!(back.publications.is_empty());
    assert_eq!(back.position.offset, 20);
    realtime.close();
}
