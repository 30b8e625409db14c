//! A bare socket.io v5 (Engine.IO 4) client over one websocket, for tests that need what a
//! socket.io client library does not let them do: hold thousands of sockets, or stop reading.

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The websocket URL of a cluster's socket.io endpoint.
pub fn url(addr: std::net::SocketAddr) -> String {
    format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
}

/// Reads frames until one starts with `prefix` (engine.io pings are answered on the way).
pub async fn read_until(ws: &mut Ws, prefix: &str) -> Result<String, String> {
    read_until_answering(ws, prefix, "2", "3").await
}

/// Reads frames until one starts with `prefix`, answering every `heartbeat` frame of the
/// server with `answer` on the way.
pub async fn read_until_answering(
    ws: &mut Ws,
    prefix: &str,
    heartbeat: &str,
    answer: &str,
) -> Result<String, String> {
    while let Some(frame) = ws.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(t) => t.to_string(),
            _ => continue,
        };
        if text == heartbeat {
            ws.send(Message::text(answer))
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

/// One socket.io v5 socket, connected to the `/` namespace.
pub async fn open(url: String) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    read_until(&mut ws, "0{").await?;
    ws.send(Message::text("40"))
        .await
        .map_err(|e| e.to_string())?;
    read_until(&mut ws, "40").await?;
    Ok(ws)
}

/// The gateway's `connect`, up to its gatewayConnectAck; returns the frame.
pub async fn gateway_connect(ws: &mut Ws) -> Result<String, String> {
    ws.send(Message::text(r#"42["message",{"connect":true}]"#))
        .await
        .map_err(|e| e.to_string())?;
    read_until(ws, r#"42["gatewayConnectAck""#).await
}
