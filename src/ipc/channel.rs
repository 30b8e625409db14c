//! Length-prefixed JSON frames over a tokio Unix stream, typed per direction.

use std::io;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::MAX_FRAME;

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("ipc channel i/o failed")]
    Io(#[from] io::Error),
    #[error("ipc frame of {len} bytes is over the {MAX_FRAME}-byte limit")]
    FrameTooLarge { len: usize },
    #[error("ipc frame of zero length")]
    EmptyFrame,
    #[error("ipc frame is not a valid message")]
    Decode(#[source] serde_json::Error),
    #[error("ipc message could not be encoded")]
    Encode(#[source] serde_json::Error),
}

/// One end of the channel: sends `Tx`, receives `Rx`.
pub struct Channel<Tx, Rx> {
    pub sender: Sender<Tx>,
    pub receiver: Receiver<Rx>,
}

impl<Tx: Serialize, Rx: DeserializeOwned> Channel<Tx, Rx> {
    pub fn new(stream: UnixStream) -> Self {
        let (read, write) = stream.into_split();
        Channel {
            sender: Sender {
                write,
                _tx: PhantomData,
            },
            receiver: Receiver {
                read,
                buf: Vec::new(),
                _rx: PhantomData,
            },
        }
    }
}

pub struct Sender<Tx> {
    write: OwnedWriteHalf,
    _tx: PhantomData<fn(Tx)>,
}

impl<Tx: Serialize> Sender<Tx> {
    pub async fn send(&mut self, msg: &Tx) -> Result<(), IpcError> {
        let frame = encode(msg)?;
        self.send_frame(&frame).await
    }

    /// Sends a frame [`encode`]d before (so that a message too large for the channel is refused
    /// where it is made, not where it is written).
    pub async fn send_frame(&mut self, frame: &Frame) -> Result<(), IpcError> {
        self.write.write_all(&frame.0).await?;
        Ok(())
    }
}

/// One message, encoded: length prefix and JSON, at most [`MAX_FRAME`] bytes of JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Vec<u8>);

impl Frame {
    /// Bytes on the wire, length prefix included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

pub struct Receiver<Rx> {
    read: OwnedReadHalf,
    /// Bytes read but not yet returned as a message: what makes `recv` cancel-safe.
    buf: Vec<u8>,
    _rx: PhantomData<fn() -> Rx>,
}

impl<Rx: DeserializeOwned> Receiver<Rx> {
    /// The next message, or `None` once the other side has closed the channel.
    ///
    /// Cancel-safe: it may be a branch of `select!`; a frame half read when another branch wins
    /// stays buffered for the next call.
    pub async fn recv(&mut self) -> Result<Option<Rx>, IpcError> {
        loop {
            match decode(&self.buf) {
                Decoded::Message { msg, used } => {
                    self.buf.drain(..used);
                    return msg.map(Some);
                }
                Decoded::Incomplete { needed } => self.buf.reserve(needed),
            }
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                };
            }
        }
    }
}

/// What the start of a buffer holds: one whole frame, or not yet.
#[derive(Debug)]
pub enum Decoded<Rx> {
    /// A whole frame: its message (or why its bytes are not one), and the bytes it took,
    /// length prefix included (0 when the prefix itself is refused: the stream cannot go on).
    Message {
        msg: Result<Rx, IpcError>,
        used: usize,
    },
    /// `needed` more bytes at least before a frame is whole.
    Incomplete { needed: usize },
}

/// Reads the frame at the start of `buf` (bytes received and not yet used), as [`Receiver`]
/// does. A length prefix out of bounds is an error at once, before anything is allocated for
/// the frame.
pub fn decode<Rx: DeserializeOwned>(buf: &[u8]) -> Decoded<Rx> {
    let Some((prefix, rest)) = buf.split_first_chunk::<4>() else {
        return Decoded::Incomplete {
            needed: 4 - buf.len(),
        };
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    if let Err(e) = check_len(len) {
        return Decoded::Message {
            msg: Err(e),
            used: 0,
        };
    }
    match rest.get(..len) {
        Some(json) => Decoded::Message {
            msg: serde_json::from_slice(json).map_err(IpcError::Decode),
            used: 4 + len,
        },
        None => Decoded::Incomplete {
            needed: len - rest.len(),
        },
    }
}

fn check_len(len: usize) -> Result<(), IpcError> {
    match len {
        0 => Err(IpcError::EmptyFrame),
        n if n > MAX_FRAME => Err(IpcError::FrameTooLarge { len: n }),
        _ => Ok(()),
    }
}

/// One whole frame, length prefix included, so it goes out in a single write;
/// [`IpcError::FrameTooLarge`] if the message is over [`MAX_FRAME`].
pub fn encode<T: Serialize>(msg: &T) -> Result<Frame, IpcError> {
    let mut frame = vec![0; 4];
    serde_json::to_writer(&mut frame, msg).map_err(IpcError::Encode)?;
    let len = frame.len() - 4;
    check_len(len)?;
    let prefix = u32::try_from(len).map_err(|_| IpcError::FrameTooLarge { len })?;
    frame[..4].copy_from_slice(&prefix.to_be_bytes());
    Ok(Frame(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{ToMaster, ToWorker, WorkerReport};

    #[tokio::test]
    async fn messages_cross_in_both_directions() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut master: Channel<ToWorker, ToMaster> = Channel::new(a);
        let mut worker: Channel<ToMaster, ToWorker> = Channel::new(b);
        master
            .sender
            .send(&ToWorker::Heartbeat { seq: 7 })
            .await
            .unwrap();
        assert_eq!(
            worker.receiver.recv().await.unwrap(),
            Some(ToWorker::Heartbeat { seq: 7 })
        );
        let report = WorkerReport {
            rss: 1,
            heap_used: 2,
            heap_total: 3,
            clients: 4,
            loop_lag_us: 5,
            metrics: Default::default(),
        };
        worker
            .sender
            .send(&ToMaster::HeartbeatAck {
                seq: 7,
                report: Box::new(report),
            })
            .await
            .unwrap();
        assert_eq!(
            master.receiver.recv().await.unwrap(),
            Some(ToMaster::HeartbeatAck {
                seq: 7,
                report: Box::new(report)
            })
        );
        drop(worker);
        assert_eq!(master.receiver.recv().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_nothing() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut rx: Channel<ToWorker, ToMaster> = Channel::new(a);
        let frame = encode(&ToMaster::Draining { clients: 3 }).unwrap();
        // Half a frame, then a recv that is given up on, then the rest.
        b.write_all(&frame.0[..6]).await.unwrap();
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(20), rx.receiver.recv()).await;
        assert!(pending.is_err(), "nothing complete to return yet");
        b.write_all(&frame.0[6..]).await.unwrap();
        assert_eq!(
            rx.receiver.recv().await.unwrap(),
            Some(ToMaster::Draining { clients: 3 })
        );
    }

    #[tokio::test]
    async fn oversized_frame_is_refused_before_allocating() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut rx: Channel<ToWorker, ToMaster> = Channel::new(a);
        b.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let err = rx.receiver.recv().await.unwrap_err();
        assert!(matches!(err, IpcError::FrameTooLarge { .. }), "{err}");
    }

    #[test]
    fn a_message_over_the_limit_is_refused_when_encoded() {
        let big = ToMaster::Pushed {
            id: 1,
            error: Some("x".repeat(MAX_FRAME)),
        };
        let err = encode(&big).unwrap_err();
        assert!(
            matches!(err, IpcError::FrameTooLarge { len } if len > MAX_FRAME),
            "{err}"
        );
    }

    #[test]
    fn wire_format_is_tagged_json() {
        let frame = encode(&ToWorker::Drain { timeout_ms: 5 }).unwrap();
        assert_eq!(&frame.0[..4], &31u32.to_be_bytes());
        assert_eq!(&frame.0[4..], br#"{"type":"drain","timeout_ms":5}"#);
    }
}
