//! What one client may cost the others: message sizes, request rates, warnings in the log,
//! queues on RabbitMQ, HTTP connections that never send a whole request. The real binary,
//! bare websocket clients (a client library would not send what these send), and the Percero
//! double's vhost on the shared RabbitMQ.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use common::keys;
use common::percero::Percero;
use common::ws::{self, Ws};
use common::{Cluster, wait_for};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn start(percero: &Percero, extra: &str) -> Cluster {
    Cluster::start_unset(
        &["gateway.rabbitmq.clientQueueExpires"],
        &format!("{}{extra}", percero.gateway_config()),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    common::agent::runtime()
}

/// The client id in a `42["gatewayConnectAck","<key>"]` frame.
fn client_id_of(frame: &str) -> String {
    let array: serde_json::Value = serde_json::from_str(&frame[2..]).expect("an event frame");
    keys::client_id(&keys::session(&array[1]))
}

/// `work`, or a panic after the test deadline.
async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(common::DEADLINE, work).await {
        Ok(done) => done,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn send(ws: &mut Ws, text: String) {
    ws.send(Message::text(text)).await.expect("send");
}

/// Reads until the server closes the websocket; its close code.
async fn close_code(ws: &mut Ws) -> Option<CloseCode> {
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return None,
            Err(_) => panic!("the server did not close the websocket"),
        }
    }
}

/// A message over `frontend.maxMessageSize` closes the connection (1009) before it is read,
/// and is logged; nothing of it reaches the backend.
#[test]
fn an_oversized_message_closes_the_connection_and_is_logged() {
    let percero = Percero::start();
    let cluster = start(&percero, "frontend.maxMessageSize=4096\n");
    let addr = cluster.addr();
    runtime().block_on(async {
        let mut ws = ws::open(ws::url(addr)).await.unwrap();
        let big = "a".repeat(5000);
        send(&mut ws, format!(r#"42["testCall",{{"x":"{big}"}}]"#)).await;
        assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));
        // A message under the limit still goes through on another connection.
        let mut ws = ws::open(ws::url(addr)).await.unwrap();
        ws::gateway_connect(&mut ws).await.unwrap();
    });
    cluster.wait_log(&["over frontend.maxMessageSize", "size=", "max=4096"]);
    assert!(percero.received().iter().all(|r| r.queue != "testCall"));
}

/// A client sending hundreds of bad events gets a gatewayError for each, but only a few log
/// lines, and a count of the rest; event names are cut in the log.
#[test]
fn a_flood_of_bad_events_gets_a_few_log_lines_and_a_count() {
    let percero = Percero::start();
    let cluster = start(&percero, "");
    let addr = cluster.addr();
    let long_name = "evil".repeat(2000);
    runtime().block_on(async {
        let mut ws = ws::open(ws::url(addr)).await.unwrap();
        ws::gateway_connect(&mut ws).await.unwrap();
        for _ in 0..300 {
            send(&mut ws, format!(r#"42["{long_name}",{{}}]"#)).await;
        }
        let mut errors = 0;
        while errors < 300 {
            ws::read_until(&mut ws, r#"42["gatewayError""#)
                .await
                .unwrap();
            errors += 1;
        }
        ws.close(None).await.unwrap();
    });
    cluster.wait_log(&["more warnings about this client were left out of the log"]);
    let lines = cluster.count_log(&["unknown event"]);
    assert!(lines <= 10, "{lines} log lines for 300 bad events");
    let longest = cluster.log().iter().map(String::len).max().unwrap_or(0);
    assert!(longest < 2000, "a log line of {longest} bytes");
}

/// `frontend.maxRequestsPerSecond`: what a client sends beyond it is refused with
/// gatewayError rateLimited and never reaches the backend.
#[test]
fn requests_over_the_rate_limit_are_refused_and_not_forwarded() {
    let percero = Percero::start();
    let cluster = start(&percero, "frontend.maxRequestsPerSecond=5\n");
    let addr = cluster.addr();
    let client_id = runtime().block_on(async {
        let mut ws = ws::open(ws::url(addr)).await.unwrap();
        let client_id = client_id_of(&ws::gateway_connect(&mut ws).await.unwrap());
        for i in 0..50 {
            send(
                &mut ws,
                format!(r#"42["testCall",{{"cn":"com.percero.agents.auth.vo.AuthRequest","messageId":"m{i}"}}]"#),
            )
            .await;
        }
        let frame = within("a gatewayError", ws::read_until(&mut ws, r#"42["gatewayError""#))
            .await
            .unwrap();
        assert!(frame.contains("rateLimited"), "{frame}");
        client_id
    });
    // A barrier: everything the gateway forwarded before it has arrived.
    percero.barrier("testCall");
    let forwarded = percero
        .from(&client_id)
        .iter()
        .filter(|r| r.queue == "testCall")
        .count();
    assert!((5..=10).contains(&forwarded), "{forwarded} of 50 forwarded");
}

/// A client that never logged in leaves no queue behind (the backend never knew it, and no
/// reconnect can take the queue over): anonymous connects cannot pile queues up.
#[test]
fn anonymous_clients_leave_no_queue_behind() {
    let percero = Percero::start();
    let cluster = start(&percero, "");
    let addr = cluster.addr();
    let ids = runtime().block_on(async {
        let mut ids = Vec::new();
        for _ in 0..10 {
            let mut ws = ws::open(ws::url(addr)).await.unwrap();
            ids.push(client_id_of(&ws::gateway_connect(&mut ws).await.unwrap()));
            ws.close(None).await.unwrap();
        }
        ids
    });
    for id in &ids {
        wait_for(&format!("queue {id} deleted"), || {
            percero.queue(id).is_none().then_some(())
        });
    }
}

/// `gateway.rabbitmq.maxQueueDeclaresPerSecond`: connects over the worker's rate wait their
/// turn, none is refused.
#[test]
fn connects_over_the_declare_rate_wait_and_all_succeed() {
    let percero = Percero::start();
    let cluster = start(
        &percero,
        "cluster.workerCount=1\ngateway.rabbitmq.maxQueueDeclaresPerSecond=5\n",
    );
    let addr = cluster.addr();
    runtime().block_on(async {
        let connects = (0..15).map(|_| async move {
            let mut ws = ws::open(ws::url(addr)).await?;
            ws::gateway_connect(&mut ws).await
        });
        for connected in futures::future::join_all(connects).await {
            connected.expect("every connect completes");
        }
    });
}

/// Reads from `stream` until the server closes it; panics if it stays open.
fn closed_by_server(mut stream: TcpStream) {
    stream
        .set_read_timeout(Some(common::DEADLINE))
        .expect("read timeout");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

/// `frontend.headerTimeout`: a connection that sends half a request head (slowloris), or none
/// at all, is closed.
#[test]
fn connections_that_never_send_a_whole_request_are_closed() {
    let percero = Percero::start();
    let cluster = start(&percero, "frontend.headerTimeout=500\n");
    let addr = cluster.addr();
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let idle = TcpStream::connect(addr).unwrap();
    closed_by_server(slow);
    closed_by_server(idle);
    // A whole request is served as before.
    assert!(common::health(addr).is_ok());
}

/// A client that breaks the websocket protocol (an unmasked frame) is closed with 1002, and
/// the close is logged with its sid.
#[test]
fn a_protocol_error_closes_with_1002_and_is_logged_with_the_sid() {
    let percero = Percero::start();
    let cluster = start(&percero, "");
    let addr = cluster.addr();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
              Upgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Unmasked: clients must mask their frames.
    stream.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let close = rest
        .windows(4)
        .any(|w| w[0] == 0x88 && w[1] == 0x02 && u16::from_be_bytes([w[2], w[3]]) == 1002);
    assert!(close, "a close frame with 1002 in {rest:?}");
    cluster.wait_log(&["websocket protocol error", "sid="]);
}
