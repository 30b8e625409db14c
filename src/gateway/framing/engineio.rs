//! socket.io protocol v5 over engine.io v4 (`EIO=4`: socket.io-client 3 and 4, python-socketio
//! 5) and protocol v4 over engine.io v3 (`EIO=3`: socket.io-client 1 and 2), websocket transport
//! only, on the `/` namespace (the only one the gateway serves). The packet rules and the
//! heartbeat of each revision are in [`crate::gateway::wire::engineio`]'s documentation.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{Data, Framing, FramingError, Received, Silent};
use crate::gateway::wire::engineio::{self as eio, EioPacket, EioVersion, SioPacket};
use crate::gateway::wire::websocket;
use crate::metrics::Protocol;

/// How long a revision-5 client may take to connect to a namespace after the open packet (the
/// reference server's `connectTimeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// The heartbeat, by revision.
#[derive(Debug)]
enum Heartbeat {
    /// `EIO=4`: the server pings every interval and waits `timeout` for the pong.
    ServerPings {
        next_ping: Instant,
        pong_due: Option<Instant>,
    },
    /// `EIO=3`: the client pings; a client silent for interval + timeout is gone.
    ClientPings { last_heard: Instant },
}

pub struct EngineIo {
    version: EioVersion,
    sid: String,
    interval: Duration,
    timeout: Duration,
    /// The client joined the `/` namespace (revision 4 joins it at once).
    joined: bool,
    /// Until when a revision-5 client may join.
    join_by: Instant,
    heartbeat: Heartbeat,
}

impl EngineIo {
    /// `interval`/`timeout`: `gateway.socketio.interval` / `.timeout`.
    pub fn new(
        version: EioVersion,
        sid: String,
        interval: Duration,
        timeout: Duration,
    ) -> EngineIo {
        let now = Instant::now();
        EngineIo {
            version,
            sid,
            interval,
            timeout,
            joined: false,
            join_by: now + CONNECT_TIMEOUT,
            heartbeat: match version {
                EioVersion::V4 => Heartbeat::ServerPings {
                    next_ping: now + interval,
                    pong_due: None,
                },
                EioVersion::V3 => Heartbeat::ClientPings { last_heard: now },
            },
        }
    }

    fn heard(&mut self, now: Instant) {
        if let Heartbeat::ClientPings { last_heard } = &mut self.heartbeat {
            *last_heard = now;
        }
    }
}

/// Appends one engine.io packet as a websocket text frame.
fn frame(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let started = websocket::begin_text(out);
    write(out);
    websocket::finish_text(out, started);
}

impl Framing for EngineIo {
    fn name(&self) -> &'static str {
        match self.version {
            EioVersion::V4 => "socket.io v5 (engine.io 4)",
            EioVersion::V3 => "socket.io v4 (engine.io 3)",
        }
    }

    fn protocol(&self) -> Protocol {
        match self.version {
            EioVersion::V4 => Protocol::SocketIo5,
            EioVersion::V3 => Protocol::SocketIo4,
        }
    }

    fn open(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<(), FramingError> {
        let (interval, timeout) = (
            self.interval.as_millis() as u64,
            self.timeout.as_millis() as u64,
        );
        frame(out, |out| {
            eio::encode_open(
                &self.sid,
                interval,
                timeout,
                crate::gateway::MAX_PAYLOAD_ADVERTISED,
                out,
            )
        });
        if self.version == EioVersion::V3 {
            // Revision 4: the server connects the client to `/` unasked.
            frame(out, |out| {
                eio::encode_connect("/", &self.sid, self.version, out)
            });
            self.joined = true;
        }
        self.heard(now);
        Ok(())
    }

    fn receive(
        &mut self,
        text: &str,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Received, FramingError> {
        self.heard(now);
        let packet = eio::decode_eio(text).map_err(|e| FramingError(e.to_string()))?;
        let message = match packet {
            EioPacket::Message(message) => message,
            EioPacket::Close => return Ok(Received::Close),
            EioPacket::Ping(data) => {
                if self.version == EioVersion::V4 {
                    return Err(FramingError("a ping from the client (engine.io 4 clients answer pings, they do not send them)".into()));
                }
                frame(out, |out| eio::encode_pong(data, out));
                return Ok(Received::Nothing);
            }
            EioPacket::Pong(_) => {
                if let Heartbeat::ServerPings {
                    next_ping,
                    pong_due,
                } = &mut self.heartbeat
                {
                    *pong_due = None;
                    *next_ping = now + self.interval;
                }
                return Ok(Received::Nothing);
            }
            EioPacket::Open | EioPacket::Upgrade | EioPacket::Noop => return Ok(Received::Nothing),
        };
        let packet = eio::decode_sio(message).map_err(|e| FramingError(e.to_string()))?;
        match packet {
            SioPacket::Connect { nsp, .. } => {
                let (nsp, _query) = eio::split_nsp_query(nsp);
                if nsp == "/" || nsp.is_empty() {
                    if !self.joined {
                        self.joined = true;
                        frame(out, |out| {
                            eio::encode_connect("/", &self.sid, self.version, out)
                        });
                    }
                } else {
                    frame(out, |out| {
                        eio::encode_connect_error(nsp, "Invalid namespace", self.version, out)
                    });
                }
                Ok(Received::Nothing)
            }
            SioPacket::Disconnect { nsp } if nsp == "/" || nsp.is_empty() => Ok(Received::Close),
            SioPacket::Event {
                nsp, name, args, ..
            } if self.joined && (nsp == "/" || nsp.is_empty()) => {
                let data = Data::first(&args, &name)?;
                Ok(Received::Event {
                    name: name.into_owned(),
                    data,
                })
            }
            // Other namespaces, acks (the server asks for none), events before joining.
            _ => Ok(Received::Nothing),
        }
    }

    fn event_raw(&self, name: &str, json: &[u8], out: &mut Vec<u8>) {
        // `42["name",` json `]`
        websocket::reserve_text(out, name.len() + json.len() + 7);
        frame(out, |out| eio::encode_event("/", name, json, out));
    }

    fn event(&self, name: &str, data: &Value, out: &mut Vec<u8>) {
        let started = websocket::begin_text(out);
        if let Err(e) = eio::encode_event_value("/", name, data, out) {
            tracing::warn!(event = name, "cannot encode an event: {e}");
        }
        websocket::finish_text(out, started);
    }

    fn disconnect(&self, out: &mut Vec<u8>) {
        frame(out, |out| eio::encode_disconnect("/", out));
    }

    fn heartbeat_due(&self) -> Instant {
        let beat = match self.heartbeat {
            Heartbeat::ServerPings {
                next_ping,
                pong_due,
            } => pong_due.unwrap_or(next_ping),
            Heartbeat::ClientPings { last_heard } => last_heard + self.interval + self.timeout,
        };
        if self.joined {
            beat
        } else {
            beat.min(self.join_by)
        }
    }

    fn heartbeat(&mut self, now: Instant, out: &mut Vec<u8>) -> Result<(), Silent> {
        if !self.joined && now >= self.join_by {
            return Err(Silent {
                timeout_ms: CONNECT_TIMEOUT.as_millis() as u64,
            });
        }
        match &mut self.heartbeat {
            Heartbeat::ServerPings {
                next_ping,
                pong_due,
            } => match *pong_due {
                Some(due) if now >= due => Err(Silent {
                    timeout_ms: self.timeout.as_millis() as u64,
                }),
                Some(_) => Ok(()),
                None if now >= *next_ping => {
                    *pong_due = Some(now + self.timeout);
                    frame(out, eio::encode_ping);
                    Ok(())
                }
                None => Ok(()),
            },
            Heartbeat::ClientPings { last_heard } => {
                if now >= *last_heard + self.interval + self.timeout {
                    Err(Silent {
                        timeout_ms: (self.interval + self.timeout).as_millis() as u64,
                    })
                } else {
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::framing::texts;
    use crate::gateway::wire::websocket::{Decoder, Message};

    fn v5() -> EngineIo {
        EngineIo::new(
            EioVersion::V4,
            "sid1".into(),
            Duration::from_secs(1),
            Duration::from_secs(3),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn revision_5_opens_joins_and_carries_events() {
        let mut f = v5();
        let now = Instant::now();
        let mut out = Vec::new();
        f.open(now, &mut out).unwrap();
        let open = &texts(&out)[0];
        assert!(open.starts_with(r#"0{"sid":"sid1""#), "{open}");
        assert!(
            open.contains(r#""pingInterval":1000"#) && open.contains(r#""pingTimeout":3000"#),
            "{open}"
        );
        out.clear();
        // Events before joining the namespace are not the client logic's.
        assert_eq!(
            f.receive(r#"42["message",{}]"#, now, &mut out).unwrap(),
            Received::Nothing
        );
        f.receive("40", now, &mut out).unwrap();
        assert_eq!(texts(&out), [r#"40{"sid":"sid1"}"#]);
        assert_eq!(
            f.receive(r#"42["testCall",{"a":1},"ignored"]"#, now, &mut out)
                .unwrap(),
            Received::Event {
                name: "testCall".into(),
                data: Some(Data::of(&serde_json::json!({"a":1})))
            }
        );
        assert_eq!(
            f.receive(r#"42["logout"]"#, now, &mut out).unwrap(),
            Received::Event {
                name: "logout".into(),
                data: None
            }
        );
        out.clear();
        f.event_raw("push", br#"{"cn":"X"}"#, &mut out);
        f.disconnect(&mut out);
        assert_eq!(texts(&out), [r#"42["push",{"cn":"X"}]"#, "41"]);
        assert_eq!(f.receive("41", now, &mut out).unwrap(), Received::Close);
        assert!(f.receive("4", now, &mut out).is_err());
        f.receive("40/admin,", now, &mut out).unwrap();
        assert!(texts(&out).last().unwrap().starts_with("44/admin,"));
    }

    #[tokio::test(start_paused = true)]
    async fn revision_5_pings_and_drops_a_client_that_does_not_pong() {
        let mut f = v5();
        let start = Instant::now();
        let mut out = Vec::new();
        f.open(start, &mut out).unwrap();
        f.receive("40", start, &mut out).unwrap();
        out.clear();
        assert_eq!(f.heartbeat_due(), start + Duration::from_secs(1));
        f.heartbeat(start + Duration::from_secs(1), &mut out)
            .unwrap();
        assert_eq!(texts(&out), ["2"]);
        // Answered: the next ping one interval after the pong.
        let pong_at = start + Duration::from_millis(1500);
        f.receive("3", pong_at, &mut out).unwrap();
        assert_eq!(f.heartbeat_due(), pong_at + Duration::from_secs(1));
        // Not answered: gone once the timeout has passed.
        let ping_at = pong_at + Duration::from_secs(1);
        f.heartbeat(ping_at, &mut out).unwrap();
        assert_eq!(f.heartbeat_due(), ping_at + Duration::from_secs(3));
        assert!(
            f.heartbeat(ping_at + Duration::from_secs(3), &mut out)
                .is_err()
        );
        // A ping from a revision-5 client is a protocol error.
        assert!(f.receive("2", ping_at, &mut out).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn revision_4_joins_at_once_and_answers_the_clients_pings() {
        let mut f = EngineIo::new(
            EioVersion::V3,
            "s".into(),
            Duration::from_secs(1),
            Duration::from_secs(3),
        );
        let start = Instant::now();
        let mut out = Vec::new();
        f.open(start, &mut out).unwrap();
        let sent = texts(&out);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1], "40");
        out.clear();
        f.receive("2probe", start, &mut out).unwrap();
        assert_eq!(texts(&out), ["3probe"]);
        let heard = start + Duration::from_secs(2);
        f.receive("2", heard, &mut out).unwrap();
        assert_eq!(f.heartbeat_due(), heard + Duration::from_secs(4));
        assert!(
            f.heartbeat(heard + Duration::from_secs(4), &mut out)
                .is_err()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_joins_is_dropped() {
        let mut f = v5();
        let start = Instant::now();
        let mut out = Vec::new();
        f.open(start, &mut out).unwrap();
        let mut t = start;
        while t < start + CONNECT_TIMEOUT {
            f.heartbeat(t, &mut out).unwrap();
            f.receive("3", t, &mut out).unwrap();
            t += Duration::from_secs(1);
        }
        assert!(f.heartbeat(start + CONNECT_TIMEOUT, &mut out).is_err());
    }

    /// The frames are real websocket frames (what a client's decoder would read, were it a
    /// server: only masking differs, so this checks the lengths).
    #[test]
    fn frames_are_whole_websocket_frames() {
        let f = v5();
        let mut out = Vec::new();
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(70_000));
        f.event_raw("push", big.as_bytes(), &mut out);
        let texts = texts(&out);
        assert_eq!(texts.len(), 1);
        assert_eq!(texts[0].len(), big.len() + r#"42["push",]"#.len());
        let _ = (Decoder::new(1), Message::Pong(Vec::new()));
    }
}
