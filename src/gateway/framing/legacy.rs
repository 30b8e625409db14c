//! socket.io 0.9 (protocol revision 1) over a websocket: what the ActiveStack JS and iOS SDKs
//! speak. Packets, the handshake and the timers are described in
//! [`crate::gateway::wire::legacy`]; here: the server says `1::` when the websocket opens,
//! sends a heartbeat `2::` one interval after the open and after each of the client's, and ends
//! a client that has not answered its heartbeat within the heartbeat timeout.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{Data, Framing, FramingError, Received, Silent};
use crate::gateway::wire::legacy::{
    self, AckRequest, ErrorAdvice, ErrorReason, LegacyError, Packet,
};
use crate::gateway::wire::websocket;
use crate::metrics::Protocol;

/// Where the heartbeat is.
#[derive(Debug, Clone, Copy)]
enum Heartbeat {
    /// The next heartbeat goes out at this instant.
    SendAt(Instant),
    /// Sent; the client must answer by this instant.
    AnswerBy(Instant),
}

pub struct Legacy {
    interval: Duration,
    timeout: Duration,
    /// The sid was good but too old: the client is told to handshake again.
    expired: bool,
    heartbeat: Heartbeat,
}

impl Legacy {
    /// `interval`/`timeout`: `gateway.socketio.interval` / `.timeout` (the heartbeat interval
    /// and the heartbeat timeout of 0.9).
    pub fn new(interval: Duration, timeout: Duration, expired: bool) -> Legacy {
        Legacy {
            interval,
            timeout,
            expired,
            heartbeat: Heartbeat::SendAt(Instant::now() + interval),
        }
    }
}

/// Appends one packet as a websocket text frame.
fn frame(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let started = websocket::begin_text(out);
    write(out);
    websocket::finish_text(out, started);
}

/// 0.9 servers acknowledge a packet with a plain id themselves, before the application sees it.
fn auto_ack(ack: AckRequest, out: &mut Vec<u8>) {
    if let AckRequest::Auto(id) = ack {
        frame(out, |out| legacy::encode_ack(id, None, out));
    }
}

impl Framing for Legacy {
    fn name(&self) -> &'static str {
        "socket.io 0.9"
    }

    fn protocol(&self) -> Protocol {
        Protocol::SocketIo09
    }

    fn open(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<(), FramingError> {
        if self.expired {
            frame(out, |out| {
                legacy::encode_error(
                    "",
                    ErrorReason::ClientNotHandshaken,
                    Some(ErrorAdvice::Reconnect),
                    out,
                )
            });
            return Err(FramingError(
                "expired session id: told to handshake again".into(),
            ));
        }
        frame(out, |out| legacy::encode_connect("", out));
        self.heartbeat = Heartbeat::SendAt(now + self.interval);
        Ok(())
    }

    fn receive(
        &mut self,
        text: &str,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Received, FramingError> {
        let packet = match legacy::decode(text) {
            Ok(packet) => packet,
            // 0.9 servers ignore an event named like their own (`disconnect`).
            Err(LegacyError::ReservedEventName { .. }) => return Ok(Received::Nothing),
            Err(e) => return Err(FramingError(e.to_string())),
        };
        match packet {
            Packet::Heartbeat => {
                self.heartbeat = Heartbeat::SendAt(now + self.interval);
                Ok(Received::Nothing)
            }
            Packet::Disconnect { endpoint: "" } => {
                frame(out, |out| legacy::encode_disconnect("", out));
                Ok(Received::Close)
            }
            Packet::Event {
                ack,
                endpoint: "",
                name,
                args,
            } => {
                auto_ack(ack, out);
                let data = Data::first(&args, &name)?;
                Ok(Received::Event {
                    name: name.into_owned(),
                    data,
                })
            }
            // `socket.json.send(x)` / `socket.send(x)`: a `message` event with that data.
            Packet::Json {
                ack,
                endpoint: "",
                data,
            } => {
                auto_ack(ack, out);
                Ok(Received::Event {
                    name: "message".into(),
                    data: Some(Data::read(data, &"json packet")?),
                })
            }
            Packet::Message {
                ack,
                endpoint: "",
                data,
            } => {
                auto_ack(ack, out);
                Ok(Received::Event {
                    name: "message".into(),
                    data: Some(Data::of(&Value::String(data.to_string()))),
                })
            }
            Packet::Error { reason, advice, .. } => {
                tracing::debug!(reason, advice, "socket.io 0.9 client sent an error packet");
                Ok(Received::Nothing)
            }
            // Other namespaces (the gateway serves the default one), acks, connects, noops.
            _ => Ok(Received::Nothing),
        }
    }

    fn event_raw(&self, name: &str, json: &[u8], out: &mut Vec<u8>) {
        // `5:::{"name":"name","args":[` json `]}`
        websocket::reserve_text(out, name.len() + json.len() + 25);
        frame(out, |out| legacy::encode_event(name, json, out));
    }

    fn event(&self, name: &str, data: &Value, out: &mut Vec<u8>) {
        let started = websocket::begin_text(out);
        if let Err(e) = legacy::encode_event_value(name, data, out) {
            tracing::warn!(event = name, "cannot encode an event: {e}");
        }
        websocket::finish_text(out, started);
    }

    fn disconnect(&self, out: &mut Vec<u8>) {
        frame(out, |out| legacy::encode_disconnect("", out));
    }

    fn heartbeat_due(&self) -> Instant {
        match self.heartbeat {
            Heartbeat::SendAt(at) | Heartbeat::AnswerBy(at) => at,
        }
    }

    fn heartbeat(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<(), Silent> {
        match self.heartbeat {
            Heartbeat::SendAt(at) if now >= at => {
                frame(out, legacy::encode_heartbeat);
                self.heartbeat = Heartbeat::AnswerBy(now + self.timeout);
                Ok(())
            }
            Heartbeat::AnswerBy(by) if now >= by => Err(Silent {
                timeout_ms: self.timeout.as_millis() as u64,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::framing::texts;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn connects_carries_events_and_acks_plain_ids() {
        let mut f = Legacy::new(Duration::from_secs(1), Duration::from_secs(3), false);
        let now = Instant::now();
        let mut out = Vec::new();
        f.open(now, &mut out).unwrap();
        assert_eq!(texts(&out), ["1::"]);
        out.clear();
        let got = f
            .receive(
                r#"5:::{"name":"message","args":[{"connect":{"ensureMessageDelivery":true}}]}"#,
                now,
                &mut out,
            )
            .unwrap();
        assert_eq!(
            got,
            Received::Event {
                name: "message".into(),
                data: Some(Data::of(
                    &json!({"connect": {"ensureMessageDelivery": true}})
                ))
            }
        );
        let got = f
            .receive(
                r#"5:7::{"name":"testCall","args":[{"a":1}]}"#,
                now,
                &mut out,
            )
            .unwrap();
        assert_eq!(
            got,
            Received::Event {
                name: "testCall".into(),
                data: Some(Data::of(&json!({"a": 1})))
            }
        );
        assert_eq!(texts(&out), ["6:::7"]);
        out.clear();
        f.event_raw("push", br#"{"cn":"X"}"#, &mut out);
        assert_eq!(texts(&out), [r#"5:::{"name":"push","args":[{"cn":"X"}]}"#]);
        assert_eq!(
            f.receive(r#"5:::{"name":"disconnect"}"#, now, &mut out)
                .unwrap(),
            Received::Nothing
        );
        assert_eq!(f.receive("0::", now, &mut out).unwrap(), Received::Close);
        assert!(f.receive("nonsense", now, &mut out).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_go_out_every_interval_and_a_silent_client_is_dropped() {
        let mut f = Legacy::new(Duration::from_secs(1), Duration::from_secs(3), false);
        let start = Instant::now();
        let mut out = Vec::new();
        f.open(start, &mut out).unwrap();
        out.clear();
        assert_eq!(f.heartbeat_due(), start + Duration::from_secs(1));
        f.heartbeat(start + Duration::from_secs(1), &mut out)
            .unwrap();
        assert_eq!(texts(&out), ["2::"]);
        let answered = start + Duration::from_secs(2);
        f.receive("2::", answered, &mut out).unwrap();
        assert_eq!(f.heartbeat_due(), answered + Duration::from_secs(1));
        let sent = answered + Duration::from_secs(1);
        f.heartbeat(sent, &mut out).unwrap();
        assert_eq!(f.heartbeat_due(), sent + Duration::from_secs(3));
        // Other packets do not answer a heartbeat.
        f.receive(r#"5:::{"name":"testCall","args":[{}]}"#, sent, &mut out)
            .unwrap();
        assert!(
            f.heartbeat(sent + Duration::from_secs(3), &mut out)
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_sid_is_told_to_handshake_again() {
        let mut f = Legacy::new(Duration::from_secs(1), Duration::from_secs(3), true);
        let mut out = Vec::new();
        assert!(f.open(Instant::now(), &mut out).is_err());
        assert_eq!(texts(&out), ["7:::1+0"]);
    }
}
