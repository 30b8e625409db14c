//! One worker holds many idle socket.io clients, each with its own client queue consumed over
//! the worker's single RabbitMQ connection (RabbitMQ allows 2047 channels per connection: this
//! only works because consumers share a small channel pool). The 10,000-client run is heavy
//! (about 30 s of both cores in a debug build) and would starve the timing-sensitive tests that
//! run beside it, so it is `#[ignore]`d: `bench/gateway.sh` runs it.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Connections opened at once.
const BATCH: usize = 200;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads frames until one starts with `prefix` (engine.io pings are answered on the way).
async fn read_until(ws: &mut Ws, prefix: &str) -> Result<String, String> {
    while let Some(frame) = ws.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(t) => t.to_string(),
            _ => continue,
        };
        if text == "2" {
            ws.send(Message::text("3"))
                .await
                .map_err(|e| e.to_string())?;
            continue;
        }
        if text.starts_with(prefix) {
            return Ok(text);
        }
    }
    Err("closed".into())
}

/// One socket.io v5 client up to its gatewayConnectAck.
async fn client(url: String) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    read_until(&mut ws, "0{").await?;
    ws.send(Message::text("40"))
        .await
        .map_err(|e| e.to_string())?;
    read_until(&mut ws, "40").await?;
    ws.send(Message::text(r#"42["message",{"connect":true}]"#))
        .await
        .map_err(|e| e.to_string())?;
    read_until(&mut ws, r#"42["gatewayConnectAck""#).await?;
    Ok(ws)
}

#[test]
fn one_worker_holds_more_clients_than_a_connection_has_channels() {
    hold_idle_clients(2_500);
}

#[test]
#[ignore = "heavy: run by bench/gateway.sh"]
fn one_worker_holds_ten_thousand_idle_clients() {
    hold_idle_clients(10_000);
}

fn hold_idle_clients(clients: usize) {
    let cluster = Cluster::start(
        "cluster.workerCount=1\ncluster.drainTimeout=20000\nfrontend.session_secret=s\n\
         cluster.heartbeatInterval=1000\ncluster.workerTimeout=20000\ncluster.watchdogInterval=1000\n\
         frontend.logLevel=info\ngateway.socketio.interval=60\ngateway.socketio.timeout=120\n",
    );
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket",
        cluster.addr()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let sockets = runtime.block_on(async {
        let mut sockets = Vec::with_capacity(clients);
        while sockets.len() < clients {
            let batch: Vec<_> = (0..BATCH.min(clients - sockets.len()))
                .map(|_| tokio::spawn(client(url.clone())))
                .collect();
            for task in batch {
                match task.await {
                    Ok(Ok(ws)) => sockets.push(ws),
                    Ok(Err(e)) => panic!("client {} failed: {e}", sockets.len()),
                    Err(e) => panic!("client task: {e}"),
                }
            }
            assert!(
                started.elapsed() < DEADLINE * 6,
                "only {} clients connected in {:?}",
                sockets.len(),
                started.elapsed()
            );
        }
        sockets
    });
    eprintln!("{clients} clients connected in {:?}", started.elapsed());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = cluster.status().expect("status");
        let seen = common::workers(&status)[0]["clients"].as_u64().unwrap_or(0);
        if seen >= clients as u64 {
            eprintln!(
                "status: {seen} clients; rss {}",
                common::workers(&status)[0]["rss"]
            );
            break;
        }
        assert!(Instant::now() < deadline, "status shows {seen} clients");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(sockets);
}
