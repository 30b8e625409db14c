//! The connection's socket: the opening handshake (protocol header, `connection.start` with
//! SASL PLAIN, `tune`, `open`), then one task that reads frames into the [`State`], writes what
//! the state queued (everything queued in one wake-up in one write), and keeps the heartbeat:
//! a heartbeat frame when nothing was sent for half the interval, the connection given up when
//! nothing was heard for two intervals.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, ProtocolVersion, parse_frame};
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until};

use super::state::{State, encode};
use super::{AmqpError, Connection, Inner};

/// Largest frame this client accepts and sends (RabbitMQ's default).
const FRAME_MAX: u32 = 131_072;
/// Most channels this client opens on one connection (RabbitMQ's default limit).
const CHANNEL_MAX: u16 = 2047;
/// How long the TCP connect and the handshake may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 32 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub vhost: String,
    pub login: String,
    pub password: String,
    /// Shown in RabbitMQ's management and `rabbitmqctl list_connections`.
    pub name: String,
    /// Heartbeat interval in seconds; `None`: the broker's proposal.
    pub heartbeat: Option<u16>,
}

pub(super) async fn open(options: &Options) -> Result<Connection, AmqpError> {
    let addr = format!("{}:{}", options.host, options.port);
    let opening = async {
        let stream = TcpStream::connect((options.host.as_str(), options.port))
            .await
            .map_err(|e| AmqpError::Connect {
                addr: addr.clone(),
                why: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        handshake(stream, options).await
    };
    let (stream, tune, leftover) =
        tokio::time::timeout(OPEN_TIMEOUT, opening)
            .await
            .map_err(|_| AmqpError::Connect {
                addr: addr.clone(),
                why: format!("no answer within {OPEN_TIMEOUT:?}"),
            })??;
    let inner = Arc::new(Inner {
        state: Mutex::new(State::new(tune.frame_max, tune.channel_max)),
        wrote: Notify::new(),
        lost: watch::Sender::new(false),
    });
    let (read, write) = stream.into_split();
    let heartbeat = Duration::from_secs(u64::from(tune.heartbeat));
    tokio::spawn(run(read, write, inner.clone(), heartbeat, leftover));
    Ok(Connection { inner })
}

/// What `connection.tune` settled.
struct Tuned {
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
}

/// Reads one frame during the handshake (`buf` keeps what came after it).
async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<AMQPFrame, AmqpError> {
    loop {
        match parse_frame(&buf[..]) {
            Ok((rest, frame)) => {
                let used = buf.len() - rest.len();
                buf.drain(..used);
                return Ok(frame);
            }
            Err(e) if e.is_incomplete() => {}
            Err(e) => return Err(AmqpError::Protocol(format!("unreadable frame: {e:?}"))),
        }
        buf.reserve(READ_CHUNK);
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|e| AmqpError::ConnectionLost(e.to_string()))?;
        if n == 0 {
            return Err(AmqpError::ConnectionLost(
                "the broker closed the socket during the handshake (a wrong protocol, or refused)"
                    .into(),
            ));
        }
    }
}

/// A connection method from the broker during the handshake; a `connection.close` is the
/// broker's refusal.
async fn expect_connection(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<connection::AMQPMethod, AmqpError> {
    loop {
        match read_frame(stream, buf).await? {
            AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(close))) => {
                return Err(AmqpError::Refused {
                    code: close.reply_code,
                    text: close.reply_text.to_string(),
                });
            }
            AMQPFrame::Method(0, AMQPClass::Connection(method)) => return Ok(method),
            AMQPFrame::Heartbeat(_) => {}
            other => {
                return Err(AmqpError::Protocol(format!(
                    "unexpected {other} during the handshake"
                )));
            }
        }
    }
}

async fn send(stream: &mut TcpStream, frame: AMQPFrame) -> Result<(), AmqpError> {
    let mut out = Vec::new();
    encode(&frame, &mut out);
    stream
        .write_all(&out)
        .await
        .map_err(|e| AmqpError::ConnectionLost(e.to_string()))
}

fn connection_method(method: connection::AMQPMethod) -> AMQPFrame {
    AMQPFrame::Method(0, AMQPClass::Connection(method))
}

async fn handshake(
    mut stream: TcpStream,
    options: &Options,
) -> Result<(TcpStream, Tuned, Vec<u8>), AmqpError> {
    send(
        &mut stream,
        AMQPFrame::ProtocolHeader(ProtocolVersion::amqp_0_9_1()),
    )
    .await?;
    let mut buf = Vec::new();
    let connection::AMQPMethod::Start(start) = expect_connection(&mut stream, &mut buf).await?
    else {
        return Err(AmqpError::Protocol("expected connection.start".into()));
    };
    let mechanisms = String::from_utf8_lossy(start.mechanisms.as_bytes()).to_string();
    if !mechanisms.split(' ').any(|m| m == "PLAIN") {
        return Err(AmqpError::Protocol(format!(
            "the broker offers no PLAIN login (only {mechanisms})"
        )));
    }
    let mut capabilities = FieldTable::default();
    for capability in [
        "publisher_confirms",
        "consumer_cancel_notify",
        "basic.nack",
        "connection.blocked",
    ] {
        capabilities.insert(capability.into(), AMQPValue::Boolean(true));
    }
    let mut properties = FieldTable::default();
    properties.insert(
        "product".into(),
        AMQPValue::LongString("activestack-gateway".into()),
    );
    properties.insert(
        "version".into(),
        AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
    );
    properties.insert(
        "connection_name".into(),
        AMQPValue::LongString(options.name.as_str().into()),
    );
    properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    let response: LongString = format!("\0{}\0{}", options.login, options.password).into();
    let start_ok = connection::AMQPMethod::StartOk(connection::StartOk {
        client_properties: properties,
        mechanism: "PLAIN".into(),
        response,
        locale: "en_US".into(),
    });
    send(&mut stream, connection_method(start_ok)).await?;
    let tune = match expect_connection(&mut stream, &mut buf).await? {
        connection::AMQPMethod::Tune(tune) => tune,
        // RabbitMQ answers a bad login by closing the socket (or with connection.close).
        other => {
            return Err(AmqpError::Protocol(format!(
                "expected connection.tune, got {other:?}"
            )));
        }
    };
    let tuned = Tuned {
        channel_max: match tune.channel_max {
            0 => CHANNEL_MAX,
            n => n.min(CHANNEL_MAX),
        },
        frame_max: match tune.frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        },
        heartbeat: options.heartbeat.unwrap_or(tune.heartbeat),
    };
    let tune_ok = connection::AMQPMethod::TuneOk(connection::TuneOk {
        channel_max: tuned.channel_max,
        frame_max: tuned.frame_max,
        heartbeat: tuned.heartbeat,
    });
    send(&mut stream, connection_method(tune_ok)).await?;
    let open = connection::AMQPMethod::Open(connection::Open {
        virtual_host: options.vhost.as_str().into(),
    });
    send(&mut stream, connection_method(open)).await?;
    match expect_connection(&mut stream, &mut buf).await? {
        connection::AMQPMethod::OpenOk(_) => Ok((stream, tuned, buf)),
        other => Err(AmqpError::Protocol(format!(
            "expected connection.open-ok, got {other:?}"
        ))),
    }
}

/// The connection's task: until the connection is gone.
async fn run(
    mut read: OwnedReadHalf,
    mut write: OwnedWriteHalf,
    inner: Arc<Inner>,
    heartbeat: Duration,
    mut buf: Vec<u8>,
) {
    let lock = || inner.state.lock().unwrap_or_else(|e| e.into_inner());
    let mut writing: Vec<u8> = Vec::new();
    let mut written = 0;
    let mut last_sent = Instant::now();
    let mut last_heard = Instant::now();
    // What came with the handshake's last read.
    if !buf.is_empty()
        && let Err(e) = parse_into(&mut buf, &mut lock())
    {
        lock().fail_all(e);
    }
    loop {
        if written == writing.len() {
            writing = lock().take_output(std::mem::take(&mut writing));
            written = 0;
        }
        let lost = lock().lost().cloned();
        if let Some(why) = &lost {
            // Flush what is left (a close or close-ok) and stop.
            if written < writing.len() {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    write.write_all(&writing[written..]),
                )
                .await;
            }
            match why {
                AmqpError::Closed => tracing::debug!("RabbitMQ connection closed"),
                why => tracing::error!("RabbitMQ connection lost: {why}"),
            }
            break;
        }
        // The next heartbeat to send (only while nothing is being written: bytes going out do
        // the same), or the moment the broker counts as gone.
        let beat = (!heartbeat.is_zero()).then(|| {
            let silent = last_heard + heartbeat * 2;
            if written == writing.len() {
                (last_sent + heartbeat / 2).min(silent)
            } else {
                silent
            }
        });
        tokio::select! {
            read_result = read.read_buf(&mut buf) => match read_result {
                Ok(0) => lock().fail_all(AmqpError::ConnectionLost("the broker closed the socket".into())),
                Ok(_) => {
                    last_heard = Instant::now();
                    let parsed = parse_into(&mut buf, &mut lock());
                    if let Err(e) = parsed {
                        let mut state = lock();
                        state.close_connection(501, "frame error");
                        state.fail_all(e);
                    }
                    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                        buf.reserve(READ_CHUNK);
                    }
                }
                Err(e) => lock().fail_all(AmqpError::ConnectionLost(e.to_string())),
            },
            write_result = write.write(&writing[written..]), if written < writing.len() => match write_result {
                Ok(0) => lock().fail_all(AmqpError::ConnectionLost("the socket accepts no more bytes".into())),
                Ok(n) => {
                    written += n;
                    last_sent = Instant::now();
                }
                Err(e) => lock().fail_all(AmqpError::ConnectionLost(e.to_string())),
            },
            () = inner.wrote.notified(), if written == writing.len() => {}
            () = async { if let Some(at) = beat { sleep_until(at).await } }, if beat.is_some() => {
                let now = Instant::now();
                if now >= last_heard + heartbeat * 2 {
                    lock().fail_all(AmqpError::ConnectionLost(format!("no heartbeat from the broker for {:?}", heartbeat * 2)));
                } else if now >= last_sent + heartbeat / 2 && written == writing.len() {
                    // Nothing is being written (else the bytes going out do the same).
                    writing = Vec::new();
                    encode(&AMQPFrame::Heartbeat(0), &mut writing);
                    written = 0;
                    last_sent = now;
                }
            }
        }
    }
    inner.lost.send_replace(true);
}

/// Hands every whole frame in `buf` to the state; keeps the rest.
fn parse_into(buf: &mut Vec<u8>, state: &mut State) -> Result<(), AmqpError> {
    let mut used = 0;
    let result = loop {
        match parse_frame(&buf[used..]) {
            Ok((rest, frame)) => {
                used = buf.len() - rest.len();
                state.on_frame(frame);
            }
            Err(e) if e.is_incomplete() => break Ok(()),
            Err(e) => {
                break Err(AmqpError::Protocol(format!(
                    "unreadable frame from the broker: {e:?}"
                )));
            }
        }
    };
    buf.drain(..used);
    result
}
