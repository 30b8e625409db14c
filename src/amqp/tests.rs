//! Against the machine's RabbitMQ (127.0.0.1:5672, guest/guest, vhost `/`).

use std::time::Duration;

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable};

use super::*;

fn options(name: &str) -> Options {
    Options {
        host: "127.0.0.1".into(),
        port: 5672,
        vhost: "/".into(),
        login: "guest".into(),
        password: "guest".into(),
        name: name.into(),
        heartbeat: None,
    }
}

fn unique(what: &str) -> String {
    format!("amqp-test-{what}-{:08x}", fastrand::u32(..))
}

async fn confirm_channel(conn: &Connection) -> ChannelRef {
    let ch = conn.channel().await.unwrap();
    conn.confirm_select(ch).await.unwrap();
    ch
}

#[tokio::test]
async fn publish_consume_settle_and_confirm() {
    let conn = Connection::open(&options("amqp test")).await.unwrap();
    let publish = confirm_channel(&conn).await;
    let consume = conn.channel().await.unwrap();
    conn.qos(consume, 10).await.unwrap();
    let queue = unique("q");
    conn.queue_declare(consume, &queue, false, FieldTable::default())
        .await
        .unwrap();
    let mut consumer = conn.consume(consume, &queue, "t1").await.unwrap();
    let props = AMQPProperties::default().with_reply_to(queue.as_str().into());
    // 300 KB: several body frames.
    let big = vec![b'x'; 300_000];
    let bodies: Vec<Vec<u8>> = (0..20u8)
        .map(|i| if i == 7 { big.clone() } else { vec![i] })
        .collect();
    let sends: Vec<_> = bodies
        .iter()
        .map(|body| conn.publish(publish, &queue, true, props.clone(), body))
        .collect();
    for send in sends {
        assert_eq!(send.await.unwrap(), Confirmed::Ack);
    }
    for i in 0..20u8 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.reply_to.as_deref(), Some(queue.as_str()));
        if i == 7 {
            assert_eq!(d.body.len(), big.len());
        } else {
            assert_eq!(d.body, [i], "in order");
        }
        conn.settle(
            d.channel,
            d.tag,
            if i == 19 {
                Settle::Requeue
            } else {
                Settle::Ack
            },
        );
    }
    // The requeued one comes back, redelivered.
    let again = consumer.next().await.unwrap().unwrap();
    assert!(again.redelivered);
    assert_eq!(again.body, [19]);
    conn.settle(again.channel, again.tag, Settle::Ack);
    // Unroutable with mandatory: returned, then confirmed.
    let nowhere = conn
        .publish(publish, &unique("nowhere"), true, props.clone(), b"{}")
        .await
        .unwrap();
    assert!(
        matches!(nowhere, Confirmed::Returned { code: 312, .. }),
        "{nowhere:?}"
    );
    conn.cancel(consume, "t1");
    assert!(
        consumer.next().await.is_none(),
        "the stream ends at cancel-ok"
    );
    conn.queue_delete(consume, &queue, false).await.unwrap();
    conn.close(Duration::from_secs(2)).await;
    assert!(*conn.lost().borrow());
}

/// A 406 closes only its channel: that declare fails with the broker's code and text, one
/// queued behind it on the same channel is "gone" (it never ran), and the connection and other
/// channels go on.
#[tokio::test]
async fn a_channel_error_ends_only_its_channel() {
    let conn = Connection::open(&options("amqp isolation test"))
        .await
        .unwrap();
    let publish = confirm_channel(&conn).await;
    let consume = conn.channel().await.unwrap();
    let keep = unique("keep");
    conn.queue_declare(consume, &keep, false, FieldTable::default())
        .await
        .unwrap();
    let mut consumer = conn.consume(consume, &keep, "k").await.unwrap();

    let declare = conn.channel().await.unwrap();
    let clash = unique("clash");
    let mut expires = FieldTable::default();
    expires.insert("x-expires".into(), AMQPValue::LongLongInt(60_000));
    conn.queue_declare(declare, &clash, false, expires)
        .await
        .unwrap();
    let refused = conn.queue_declare(declare, &clash, false, FieldTable::default());
    let behind = conn.queue_declare(declare, &unique("behind"), false, FieldTable::default());
    let refused = refused.await;
    assert!(
        matches!(&refused, Err(AmqpError::ChannelClosed { code: 406, text }) if text.contains("PRECONDITION_FAILED")),
        "{refused:?}"
    );
    assert_eq!(behind.await, Err(AmqpError::ChannelGone));
    assert!(!conn.is_open(declare));
    // A settle for the closed channel is not sent on a new channel with its number.
    let reopened = conn.channel().await.unwrap();
    assert_eq!(reopened.id, declare.id);
    assert!(!conn.is_open(declare) && conn.is_open(reopened));
    conn.settle(declare, 1, Settle::Ack);

    // The rest goes on.
    let props = AMQPProperties::default();
    assert_eq!(
        conn.publish(publish, &keep, true, props, b"ok")
            .await
            .unwrap(),
        Confirmed::Ack
    );
    let d = consumer.next().await.unwrap().unwrap();
    assert_eq!(d.body, b"ok");
    conn.settle(d.channel, d.tag, Settle::Ack);
    assert!(!*conn.lost().borrow());
    conn.queue_delete(reopened, &clash, false).await.unwrap();
    conn.queue_delete(reopened, &keep, false).await.unwrap();
    conn.close(Duration::from_secs(2)).await;
}

/// The broker cancels a consumer whose queue is deleted: its stream ends.
#[tokio::test]
async fn a_deleted_queue_ends_its_consumer() {
    let conn = Connection::open(&options("amqp cancel test"))
        .await
        .unwrap();
    let ch = conn.channel().await.unwrap();
    let queue = unique("deleted");
    conn.queue_declare(ch, &queue, false, FieldTable::default())
        .await
        .unwrap();
    let mut consumer = conn.consume(ch, &queue, "d").await.unwrap();
    let other = conn.channel().await.unwrap();
    conn.queue_delete(other, &queue, false).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .unwrap();
    assert!(end.is_none(), "{end:?}");
    assert!(conn.is_open(ch), "a broker cancel leaves the channel open");
    conn.close(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let mut wrong = options("amqp login test");
    wrong.password = "not-the-password".into();
    let refused = Connection::open(&wrong).await;
    assert!(refused.is_err());
}

#[test]
fn names_over_255_bytes_are_refused_before_anything_is_sent() {
    assert!(matches!(
        check_name("queue", &"q".repeat(256)),
        Err(AmqpError::NameTooLong { .. })
    ));
    assert!(check_name("queue", &"q".repeat(255)).is_ok());
}
