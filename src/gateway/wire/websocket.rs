//! RFC 6455 websocket framing, server side: the handshake's accept key, a streaming frame
//! decoder for client frames, and encoders for server frames.
//!
//! The [`Decoder`] is fed each read's bytes as they come and keeps only what must outlive the
//! read: the few header bytes of a frame cut by the end of a read (in a fixed array), the payload
//! received so far of a message still incomplete, and the kind of an open fragmented message.
//! Payload bytes are unmasked straight into the message's own buffer, which becomes the
//! [`Message`] without a further copy; a frame that arrives whole gets a buffer of exactly its
//! size. While no message is under way the decoder owns no heap memory at all.
//!
//! What it refuses, each with the close code to send ([`WsError::close_code`]), per RFC 6455:
//! unmasked client frames (5.1), reserved bits without a negotiated extension (5.2), unknown
//! opcodes (5.2), fragmented or over-125-byte control frames (5.5), a continuation with no
//! message open and a new data message inside a fragmented one (5.4), a 64-bit length with its
//! top bit set (5.2), text that is not UTF-8 once whole (8.1, 1007), close payloads of one byte,
//! with a code no peer may send or a reason that is not UTF-8 (5.5.1, 7.4), and messages larger
//! than the decoder's limit (1009). The limit is checked on the header, before a byte of the
//! payload is buffered: fragmented messages count their running total.
//!
//! Encoders append whole, unmasked, final frames to a caller's buffer; [`begin_text`] and
//! [`finish_text`] frame a text payload that the caller writes into the buffer in pieces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 section 1.3 that the accept key hashes after the client's key.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Control frames carry at most this many payload bytes (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest client frame header: 2 bytes, a 64-bit length, a 4-byte mask.
const MAX_CLIENT_HEADER: usize = 14;
/// The longest server frame header (2 bytes and a 64-bit length; no mask): what
/// [`begin_text`] reserves.
const MAX_SERVER_HEADER: usize = 10;

const FIN: u8 = 0x80;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Close codes this server sends (RFC 6455 7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(sec_websocket_key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(sec_websocket_key);
    sha1.update(ACCEPT_GUID);
    B64.encode(sha1.finalize())
}

/// A whole message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The code and reason, if the close frame had a payload.
    Close(Option<(u16, String)>),
}

/// Why the client's byte stream is not acceptable. The connection cannot go on after one: send a
/// close frame with [`WsError::close_code`] and drop it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WsError {
    #[error("a client frame is not masked (RFC 6455 5.1)")]
    Unmasked,
    #[error("reserved bits {bits:#05b} are set, and no extension was negotiated")]
    ReservedBits { bits: u8 },
    #[error("unknown opcode {opcode:#x}")]
    UnknownOpcode { opcode: u8 },
    #[error("a control frame (opcode {opcode:#x}) is fragmented")]
    FragmentedControl { opcode: u8 },
    #[error("a control frame declares more than {MAX_CONTROL_PAYLOAD} bytes of payload")]
    ControlTooLong,
    #[error("a continuation frame arrived with no fragmented message open")]
    UnexpectedContinuation,
    #[error("a new data frame arrived while a fragmented message was open")]
    ExpectedContinuation,
    #[error("a 64-bit payload length has its most significant bit set")]
    LengthHighBit,
    #[error("a text message is not UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("a close frame has a 1-byte payload (a close code takes 2)")]
    CloseTooShort,
    #[error("close code {code} is not one an endpoint may send")]
    InvalidCloseCode { code: u16 },
    #[error("a close frame's reason is not UTF-8")]
    CloseReasonNotUtf8,
    #[error("a message of {size} bytes is over the limit of {max} bytes")]
    TooBig { size: u64, max: usize },
}

impl WsError {
    /// The close code to answer this error with: 1007 for bad UTF-8, 1009 for too big, 1002
    /// for every other protocol error.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::InvalidUtf8 { .. } | WsError::CloseReasonNotUtf8 => {
                close_code::INVALID_PAYLOAD
            }
            WsError::TooBig { .. } => close_code::MESSAGE_TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            OP_CONTINUATION => Opcode::Continuation,
            OP_TEXT => Opcode::Text,
            OP_BINARY => Opcode::Binary,
            OP_CLOSE => Opcode::Close,
            OP_PING => Opcode::Ping,
            OP_PONG => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// The kind of a data message being assembled from fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// A frame whose header has been read and whose payload is being received.
#[derive(Debug)]
struct Frame {
    opcode: Opcode,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes still to come.
    remaining: usize,
    /// Payload bytes received so far, modulo 4: where in the mask the next byte falls.
    mask_phase: usize,
}

enum Header {
    /// More bytes are needed to know the frame (no error was visible in those seen).
    Incomplete,
    /// The frame, and how many bytes its header took.
    Complete(Frame, usize),
}

/// A streaming decoder of client frames (see the module doc for what it keeps and refuses).
#[derive(Debug)]
pub struct Decoder {
    /// The largest message accepted, in payload bytes (fragments added up).
    max_message: usize,
    /// The start of a header cut by the end of a read (`head_len` bytes of it).
    head: [u8; MAX_CLIENT_HEADER],
    head_len: usize,
    /// The frame whose payload is being received, if its header has been read.
    frame: Option<Frame>,
    /// The kind of the fragmented data message that is open (its first frame lacked FIN).
    fragmented: Option<DataKind>,
    /// The payload received so far of the data message being received; empty otherwise.
    data: Vec<u8>,
    /// The payload received so far of a control frame cut by the end of a read (control frames
    /// may come between fragments, so they cannot share `data`).
    control: Vec<u8>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            head: [0; MAX_CLIENT_HEADER],
            head_len: 0,
            frame: None,
            fragmented: None,
            data: Vec::new(),
            control: Vec::new(),
        }
    }

    /// Whether no frame or message is partly received (a read ended on a message boundary).
    pub fn is_idle(&self) -> bool {
        self.head_len == 0 && self.frame.is_none() && self.fragmented.is_none()
    }

    /// Heap bytes the decoder holds for a message under way (for memory accounting).
    pub fn buffered_capacity(&self) -> usize {
        self.data.capacity() + self.control.capacity()
    }

    /// Decodes all of `input` (one read's bytes, which the decoder does not keep: what it needs
    /// later it copies), appending the messages completed by it to `out` in order. On an error
    /// the messages before it are in `out`; the stream cannot be resumed.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<Message>) -> Result<(), WsError> {
        loop {
            if self.frame.is_none() {
                if input.is_empty() {
                    return Ok(());
                }
                match self.read_header(&mut input)? {
                    Some(frame) => self.frame = Some(frame),
                    None => return Ok(()),
                }
            }
            let Some(frame) = self.frame.as_mut() else {
                return Ok(());
            };
            let take = frame.remaining.min(input.len());
            let (chunk, rest) = input.split_at_checked(take).unwrap_or((input, &[]));
            let dst = if frame.opcode.is_control() {
                &mut self.control
            } else {
                &mut self.data
            };
            if dst.is_empty() && take == frame.remaining {
                // The whole payload is here: a buffer of exactly its size. Otherwise the buffer
                // grows as bytes arrive, so a frame that only announces a size costs nothing.
                dst.reserve_exact(take);
            }
            let start = dst.len();
            dst.extend_from_slice(chunk);
            unmask(
                dst.get_mut(start..).unwrap_or_default(),
                frame.mask,
                frame.mask_phase,
            );
            frame.mask_phase = (frame.mask_phase + take % 4) % 4;
            frame.remaining -= take;
            input = rest;
            if frame.remaining > 0 {
                return Ok(());
            }
            if let Some(frame) = self.frame.take() {
                self.finish_frame(&frame, out)?;
            }
        }
    }

    /// Reads a frame header from `input` (after any header bytes kept from the last read),
    /// advancing `input` past what it used. `None`: `input` ended inside the header, and its
    /// bytes are kept.
    fn read_header(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, WsError> {
        let kept = self.head_len;
        if kept == 0 {
            return match self.parse_header(input)? {
                Header::Complete(frame, len) => {
                    *input = input.get(len..).unwrap_or_default();
                    Ok(Some(frame))
                }
                Header::Incomplete => {
                    // Fewer than MAX_CLIENT_HEADER bytes: a header that long is always complete.
                    let n = input.len().min(MAX_CLIENT_HEADER);
                    if let (Some(dst), Some(src)) = (self.head.get_mut(..n), input.get(..n)) {
                        dst.copy_from_slice(src);
                    }
                    self.head_len = n;
                    *input = &[];
                    Ok(None)
                }
            };
        }
        let n = (MAX_CLIENT_HEADER - kept).min(input.len());
        if let (Some(dst), Some(src)) = (self.head.get_mut(kept..kept + n), input.get(..n)) {
            dst.copy_from_slice(src);
        }
        match self.parse_header(self.head.get(..kept + n).unwrap_or_default())? {
            Header::Complete(frame, len) => {
                self.head_len = 0;
                *input = input.get(len.saturating_sub(kept)..).unwrap_or_default();
                Ok(Some(frame))
            }
            Header::Incomplete => {
                self.head_len = kept + n;
                *input = input.get(n..).unwrap_or_default();
                Ok(None)
            }
        }
    }

    /// Parses the header at the start of `bytes`, failing as soon as the bytes seen show an
    /// error: in particular the size limit is checked as soon as the length is known.
    fn parse_header(&self, bytes: &[u8]) -> Result<Header, WsError> {
        let Some(&b0) = bytes.first() else {
            return Ok(Header::Incomplete);
        };
        let rsv = (b0 >> 4) & 0b111;
        if rsv != 0 {
            return Err(WsError::ReservedBits { bits: rsv });
        }
        let fin = b0 & FIN != 0;
        let bits = b0 & 0x0f;
        let opcode = Opcode::from_bits(bits).ok_or(WsError::UnknownOpcode { opcode: bits })?;
        if opcode.is_control() && !fin {
            return Err(WsError::FragmentedControl { opcode: bits });
        }
        match (opcode, self.fragmented) {
            (Opcode::Continuation, None) => return Err(WsError::UnexpectedContinuation),
            (Opcode::Text | Opcode::Binary, Some(_)) => return Err(WsError::ExpectedContinuation),
            _ => {}
        }
        let Some(&b1) = bytes.get(1) else {
            return Ok(Header::Incomplete);
        };
        if b1 & 0x80 == 0 {
            return Err(WsError::Unmasked);
        }
        let len7 = b1 & 0x7f;
        if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(WsError::ControlTooLong);
        }
        let (len, mask_at) = match (len7, bytes) {
            (126, [_, _, a, b, ..]) => (u64::from(u16::from_be_bytes([*a, *b])), 4),
            (127, [_, _, a, b, c, d, e, f, g, h, ..]) => {
                let len = u64::from_be_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
                if len >> 63 != 0 {
                    return Err(WsError::LengthHighBit);
                }
                (len, 10)
            }
            (126 | 127, _) => return Ok(Header::Incomplete),
            (n, _) => (u64::from(n), 2),
        };
        // Fragments already received count toward the message (self.data holds only them
        // while a header is being read).
        let size = (self.data.len() as u64).saturating_add(len);
        let too_big = WsError::TooBig {
            size,
            max: self.max_message,
        };
        if !opcode.is_control() && size > self.max_message as u64 {
            return Err(too_big);
        }
        let remaining = usize::try_from(len).map_err(|_| too_big)?;
        let mask = match bytes.get(mask_at..) {
            Some([a, b, c, d, ..]) => [*a, *b, *c, *d],
            _ => return Ok(Header::Incomplete),
        };
        let frame = Frame {
            opcode,
            fin,
            mask,
            remaining,
            mask_phase: 0,
        };
        Ok(Header::Complete(frame, mask_at + 4))
    }

    /// Acts on a frame whose payload has all arrived.
    fn finish_frame(&mut self, frame: &Frame, out: &mut Vec<Message>) -> Result<(), WsError> {
        let kind = match frame.opcode {
            Opcode::Ping => {
                out.push(Message::Ping(std::mem::take(&mut self.control)));
                return Ok(());
            }
            Opcode::Pong => {
                out.push(Message::Pong(std::mem::take(&mut self.control)));
                return Ok(());
            }
            Opcode::Close => {
                let close = parse_close(&std::mem::take(&mut self.control))?;
                out.push(Message::Close(close));
                return Ok(());
            }
            Opcode::Text => DataKind::Text,
            Opcode::Binary => DataKind::Binary,
            Opcode::Continuation => self.fragmented.ok_or(WsError::UnexpectedContinuation)?,
        };
        if !frame.fin {
            self.fragmented = Some(kind);
            return Ok(());
        }
        self.fragmented = None;
        let data = std::mem::take(&mut self.data);
        out.push(match kind {
            DataKind::Binary => Message::Binary(data),
            DataKind::Text => {
                Message::Text(String::from_utf8(data).map_err(|e| WsError::InvalidUtf8 {
                    valid_up_to: e.utf8_error().valid_up_to(),
                })?)
            }
        });
        Ok(())
    }
}

/// XORs `bytes` with `mask`, the first byte falling on mask byte `phase` (0..4).
fn unmask(bytes: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut mask = mask;
    mask.rotate_left(phase % 4);
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = bytes.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // 8 is a multiple of 4, so the remainder starts on mask byte 0 again.
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *b ^= m;
    }
}

/// The code and reason of a close frame's payload, checked as RFC 6455 5.5.1 and 7.4 say.
fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // 1004-1006 and 1015 are reserved and never sent, 1016-2999 are for future
            // standards, 3000-4999 for libraries and applications (7.4.1, 7.4.2); 1012-1014
            // were registered with IANA after the RFC.
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(WsError::InvalidCloseCode { code });
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::CloseReasonNotUtf8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// A server frame header (FIN set, no mask) for `len` payload bytes, and its length.
fn server_header(opcode: u8, len: usize) -> ([u8; MAX_SERVER_HEADER], usize) {
    let mut header = [0u8; MAX_SERVER_HEADER];
    let [b0, b1, ext @ ..] = &mut header;
    *b0 = FIN | opcode;
    if len < 126 {
        *b1 = len as u8;
        return (header, 2);
    }
    if let Ok(len) = u16::try_from(len) {
        *b1 = 126;
        if let Some(dst) = ext.get_mut(..2) {
            dst.copy_from_slice(&len.to_be_bytes());
        }
        return (header, 4);
    }
    *b1 = 127;
    ext.copy_from_slice(&(len as u64).to_be_bytes());
    (header, MAX_SERVER_HEADER)
}

fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let (header, len) = server_header(opcode, payload.len());
    out.reserve(len + payload.len());
    out.extend_from_slice(header.get(..len).unwrap_or_default());
    out.extend_from_slice(payload);
}

/// Appends a text frame. `payload` must be UTF-8 (the client closes the connection otherwise).
pub fn encode_text(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OP_TEXT, payload, out);
}

pub fn encode_binary(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OP_BINARY, payload, out);
}

/// Appends a ping frame; a payload over 125 bytes is cut to 125 (control frame limit).
pub fn encode_ping(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OP_PING, control_payload(payload), out);
}

/// Appends a pong frame (answer a ping with its payload); over 125 bytes is cut to 125.
pub fn encode_pong(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(OP_PONG, control_payload(payload), out);
}

fn control_payload(payload: &[u8]) -> &[u8] {
    payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload)
}

/// Appends a close frame with `code` and `reason`; the reason is cut to the 123 bytes a control
/// frame has room for, on a character boundary.
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.as_bytes().get(..end).unwrap_or_default();
    let (header, len) = server_header(OP_CLOSE, 2 + reason.len());
    out.extend_from_slice(header.get(..len).unwrap_or_default());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
}

/// A text frame begun in an output buffer by [`begin_text`], to be closed by [`finish_text`].
#[must_use = "a begun frame must be finished with finish_text"]
#[derive(Debug)]
pub struct TextFrame {
    /// Where the frame starts in the buffer: room for the longest header, then the payload.
    start: usize,
}

/// Makes room in `out` for a text frame of about `payload` bytes, so that writing it in pieces
/// does not grow the buffer piece by piece (a connection's buffer is empty after every write).
pub fn reserve_text(out: &mut Vec<u8>, payload: usize) {
    out.reserve(MAX_SERVER_HEADER + payload);
}

/// Begins a text frame at the end of `out`: the caller then appends the payload to `out` (in
/// as many pieces as it likes, UTF-8 as a whole) and calls [`finish_text`].
pub fn begin_text(out: &mut Vec<u8>) -> TextFrame {
    let start = out.len();
    out.extend_from_slice(&[0; MAX_SERVER_HEADER]);
    TextFrame { start }
}

/// Writes the header of a frame begun by [`begin_text`] now that its payload (everything
/// appended to `out` since) is known. The header takes 2, 4 or 10 bytes: a shorter one than the
/// 10 reserved moves the payload back by the difference (payloads under 64 KiB). If `out` was
/// cut back before the frame's start, the frame is dropped.
pub fn finish_text(out: &mut Vec<u8>, frame: TextFrame) {
    let payload_at = frame.start + MAX_SERVER_HEADER;
    let Some(payload_len) = out.len().checked_sub(payload_at) else {
        out.truncate(frame.start);
        return;
    };
    let (header, header_len) = server_header(OP_TEXT, payload_len);
    let gap = MAX_SERVER_HEADER - header_len;
    if gap > 0 {
        // In bounds: payload_at <= len, and the payload moves to before its old place.
        out.copy_within(payload_at.., frame.start + header_len);
        out.truncate(out.len() - gap);
    }
    if let (Some(dst), Some(src)) = (
        out.get_mut(frame.start..frame.start + header_len),
        header.get(..header_len),
    ) {
        dst.copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// A client frame: `first` is FIN|RSV|opcode, the payload is masked with `mask`.
    fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn decode_all(stream: &[u8]) -> Result<Vec<Message>, WsError> {
        let mut decoder = Decoder::new(MAX);
        let mut out = Vec::new();
        decoder.feed(stream, &mut out)?;
        assert!(decoder.is_idle(), "stream ended inside a frame");
        Ok(out)
    }

    fn decode_err(stream: &[u8]) -> WsError {
        let mut out = Vec::new();
        Decoder::new(MAX).feed(stream, &mut out).unwrap_err()
    }

    fn text(s: &str) -> Message {
        Message::Text(s.to_owned())
    }

    #[test]
    fn accept_key_is_the_rfc_example() {
        // RFC 6455 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc_masked_hello() {
        // RFC 6455 5.7: "A single-frame masked text message".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(decode_all(&frame).unwrap(), vec![text("Hello")]);
        assert_eq!(client_frame(0x81, b"Hello", MASK), frame);
    }

    #[test]
    fn rfc_unmasked_examples_are_refused_from_a_client() {
        // RFC 6455 5.7: the unmasked single frame, fragmented message and ping (server -> client
        // examples) must not come from a client (5.1).
        for frame in [
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f][..],
            &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f],
            &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        ] {
            assert_eq!(decode_err(frame), WsError::Unmasked);
        }
    }

    #[test]
    fn rfc_fragmented_hello_masked() {
        // RFC 6455 5.7's fragmented "Hel" + "lo", as a client sends it (masked).
        let mut stream = client_frame(0x01, b"Hel", MASK);
        stream.extend(client_frame(0x80, b"lo", [1, 2, 3, 4]));
        assert_eq!(decode_all(&stream).unwrap(), vec![text("Hello")]);
    }

    #[test]
    fn rfc_masked_pong_and_ping() {
        // RFC 6455 5.7: "Unmasked Ping request and masked Ping response": the masked pong.
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_all(&pong).unwrap(),
            vec![Message::Pong(b"Hello".to_vec())]
        );
        let ping = client_frame(0x89, b"Hello", MASK);
        assert_eq!(
            decode_all(&ping).unwrap(),
            vec![Message::Ping(b"Hello".to_vec())]
        );
        let mut out = Vec::new();
        encode_ping(b"Hello", &mut out);
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn rfc_16_and_64_bit_lengths() {
        // RFC 6455 5.7: 256 bytes with a 16-bit length, 64 KiB with a 64-bit length.
        for (n, header) in [
            (256usize, &[0x82u8, 0xfe, 0x01, 0x00][..]),
            (65536, &[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let frame = client_frame(0x82, &payload, MASK);
            assert_eq!(frame.get(..header.len()).unwrap(), header);
            assert_eq!(
                decode_all(&frame).unwrap(),
                vec![Message::Binary(payload.clone())]
            );
            let mut out = Vec::new();
            encode_binary(&payload, &mut out);
            let mut unmasked_header = header.to_vec();
            unmasked_header[1] &= 0x7f;
            assert_eq!(out.get(..header.len()).unwrap(), unmasked_header);
            assert_eq!(out.get(header.len()..).unwrap(), payload);
        }
    }

    #[test]
    fn empty_frames_and_close_payloads() {
        let mut stream = client_frame(0x81, b"", MASK);
        stream.extend(client_frame(0x82, b"", MASK));
        stream.extend(client_frame(0x89, b"", MASK));
        stream.extend(client_frame(0x88, b"", MASK));
        stream.extend(client_frame(0x88, &[0x03, 0xe8], MASK));
        stream.extend(client_frame(0x88, b"\x0f\xa0bye \xc3\xa9", MASK));
        assert_eq!(
            decode_all(&stream).unwrap(),
            vec![
                text(""),
                Message::Binary(vec![]),
                Message::Ping(vec![]),
                Message::Close(None),
                Message::Close(Some((1000, String::new()))),
                Message::Close(Some((4000, "bye é".to_owned()))),
            ]
        );
    }

    /// Text, binary, a fragmented text message with a ping and a pong between its fragments, a
    /// fragmented binary one, long frames, a close: every decoder path in one stream.
    fn mixed_stream() -> (Vec<u8>, Vec<Message>) {
        let long: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let medium = "é".repeat(200);
        let mut s = Vec::new();
        s.extend(client_frame(0x81, b"42[\"message\",{}]", [9, 8, 7, 6]));
        s.extend(client_frame(0x01, "frag".as_bytes(), [1, 2, 3, 4]));
        s.extend(client_frame(0x89, b"ping!", [5, 6, 7, 8]));
        s.extend(client_frame(0x00, "men".as_bytes(), [0xff, 0, 0xff, 0]));
        s.extend(client_frame(0x8a, b"", [1, 1, 1, 1]));
        s.extend(client_frame(0x80, "ted €".as_bytes(), [3, 3, 3, 3]));
        s.extend(client_frame(0x82, &long, [0xde, 0xad, 0xbe, 0xef]));
        s.extend(client_frame(0x02, &long[..300], [1, 2, 3, 4]));
        s.extend(client_frame(0x00, &long[300..301], [4, 3, 2, 1]));
        s.extend(client_frame(0x80, &long[301..1000], [7, 7, 7, 7]));
        s.extend(client_frame(
            0x81,
            medium.as_bytes(),
            [0x10, 0x20, 0x30, 0x40],
        ));
        s.extend(client_frame(0x88, b"\x03\xe9going", [2, 4, 6, 8]));
        let expected = vec![
            text("42[\"message\",{}]"),
            Message::Ping(b"ping!".to_vec()),
            Message::Pong(vec![]),
            text("fragmented €"),
            Message::Binary(long.clone()),
            Message::Binary(long[..1000].to_vec()),
            Message::Text(medium),
            Message::Close(Some((1001, "going".to_owned()))),
        ];
        (s, expected)
    }

    fn feed_in_pieces(stream: &[u8], cuts: &[usize]) -> Vec<Message> {
        let mut decoder = Decoder::new(MAX);
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            decoder.feed(&stream[at..cut], &mut out).unwrap();
            at = cut;
        }
        assert!(decoder.is_idle());
        assert_eq!(decoder.buffered_capacity(), 0);
        out
    }

    #[test]
    fn a_stream_cut_at_every_offset_decodes_the_same() {
        let (stream, expected) = mixed_stream();
        assert_eq!(decode_all(&stream).unwrap(), expected);
        // Every cut point within the frames' headers and short payloads, and a sample of those
        // inside the long payloads (every one of the 70 000 would be slow and teach nothing).
        for cut in 0..=stream.len() {
            if cut > 200 && cut % 97 != 0 && stream.len() - cut > 2000 {
                continue;
            }
            assert_eq!(feed_in_pieces(&stream, &[cut]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_stream_fed_one_byte_at_a_time_decodes_the_same() {
        let (stream, expected) = mixed_stream();
        let cuts: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(feed_in_pieces(&stream, &cuts), expected);
    }

    #[test]
    fn a_stream_fed_in_random_pieces_decodes_the_same() {
        let (stream, expected) = mixed_stream();
        let mut rng = fastrand::Rng::with_seed(6455);
        for _ in 0..200 {
            let mut cuts: Vec<usize> = (0..rng.usize(1..40))
                .map(|_| rng.usize(0..=stream.len()))
                .collect();
            cuts.sort_unstable();
            assert_eq!(feed_in_pieces(&stream, &cuts), expected, "cuts {cuts:?}");
        }
    }

    #[test]
    fn a_frame_that_arrives_whole_gets_a_buffer_of_its_size() {
        let payload = vec![b'x'; 1000];
        let mut out = Vec::new();
        Decoder::new(MAX)
            .feed(&client_frame(0x82, &payload, MASK), &mut out)
            .unwrap();
        let [Message::Binary(got)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(got.capacity(), 1000);
    }

    #[test]
    fn the_size_limit_is_checked_on_the_header() {
        // A header claiming 2^62 bytes is refused as soon as its length is read: the mask and
        // payload have not arrived, and nothing was allocated.
        let mut decoder = Decoder::new(MAX);
        let mut out = Vec::new();
        let header = [0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decoder.feed(&header, &mut out),
            Err(WsError::TooBig {
                size: 1 << 62,
                max: MAX
            })
        );
        assert_eq!(decoder.buffered_capacity(), 0);
        // The same header cut in two reads.
        let mut decoder = Decoder::new(MAX);
        decoder.feed(&header[..5], &mut out).unwrap();
        assert!(matches!(
            decoder.feed(&header[5..], &mut out),
            Err(WsError::TooBig { .. })
        ));
        assert_eq!(decoder.buffered_capacity(), 0);
        // One byte over, at each length encoding.
        for max in [10usize, 200, 70_000] {
            let frame = client_frame(0x81, &vec![b'a'; max + 1], MASK);
            let mut decoder = Decoder::new(max);
            assert_eq!(
                decoder.feed(&frame, &mut out),
                Err(WsError::TooBig {
                    size: max as u64 + 1,
                    max
                })
            );
            assert_eq!(decoder.buffered_capacity(), 0);
            let exact = client_frame(0x81, &vec![b'a'; max], MASK);
            Decoder::new(max).feed(&exact, &mut out).unwrap();
        }
    }

    #[test]
    fn a_frame_announcing_a_large_payload_costs_only_what_arrived() {
        let mut decoder = Decoder::new(MAX);
        let mut out = Vec::new();
        let frame = client_frame(0x82, &vec![0; MAX], MASK);
        decoder.feed(&frame[..14 + 100], &mut out).unwrap();
        assert!(decoder.buffered_capacity() < 1024);
    }

    #[test]
    fn fragments_count_their_total_toward_the_limit() {
        let mut stream = client_frame(0x01, &[b'a'; 60], MASK);
        stream.extend(client_frame(0x00, &[b'b'; 30], MASK));
        stream.extend(client_frame(0x89, &[b'p'; 100], MASK)); // control frames do not count
        stream.extend(client_frame(0x80, &[b'c'; 20], MASK));
        let mut out = Vec::new();
        assert_eq!(
            Decoder::new(100).feed(&stream, &mut out),
            Err(WsError::TooBig {
                size: 110,
                max: 100
            })
        );
        assert_eq!(out, vec![Message::Ping(vec![b'p'; 100])]);
        let mut out = Vec::new();
        Decoder::new(110).feed(&stream, &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn protocol_errors() {
        let cases: Vec<(Vec<u8>, WsError)> = vec![
            (
                client_frame(0xc1, b"x", MASK),
                WsError::ReservedBits { bits: 0b100 },
            ),
            (
                client_frame(0x91, b"x", MASK),
                WsError::ReservedBits { bits: 0b001 },
            ),
            (vec![0xa1], WsError::ReservedBits { bits: 0b010 }),
            (vec![0x83], WsError::UnknownOpcode { opcode: 3 }),
            (vec![0x87], WsError::UnknownOpcode { opcode: 7 }),
            (vec![0x8b], WsError::UnknownOpcode { opcode: 0xb }),
            (vec![0x8f], WsError::UnknownOpcode { opcode: 0xf }),
            (vec![0x09], WsError::FragmentedControl { opcode: 9 }),
            (vec![0x08], WsError::FragmentedControl { opcode: 8 }),
            (vec![0x89, 0xfe], WsError::ControlTooLong),
            (client_frame(0x8a, &[0; 126], MASK), WsError::ControlTooLong),
            (vec![0x80], WsError::UnexpectedContinuation),
            (vec![0x00], WsError::UnexpectedContinuation),
            (
                vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0],
                WsError::LengthHighBit,
            ),
            (
                client_frame(0x81, b"\xff\xfe", MASK),
                WsError::InvalidUtf8 { valid_up_to: 0 },
            ),
            (
                client_frame(0x81, b"ok\xc3", MASK),
                WsError::InvalidUtf8 { valid_up_to: 2 },
            ),
            (client_frame(0x88, &[3], MASK), WsError::CloseTooShort),
            (
                client_frame(0x88, b"\x03\xe8\xff", MASK),
                WsError::CloseReasonNotUtf8,
            ),
        ];
        for (stream, err) in cases {
            assert_eq!(decode_err(&stream), err, "{stream:02x?}");
        }
        // A new data frame while a fragmented message is open.
        let mut stream = client_frame(0x01, b"a", MASK);
        stream.extend(client_frame(0x81, b"b", MASK));
        assert_eq!(decode_err(&stream), WsError::ExpectedContinuation);
        let mut stream = client_frame(0x02, b"a", MASK);
        stream.extend(client_frame(0x02, b"b", MASK));
        assert_eq!(decode_err(&stream), WsError::ExpectedContinuation);
        // A fragmented message that is not UTF-8 once whole, though each fragment was cut
        // inside a character.
        let mut stream = client_frame(0x01, b"\xe2\x82", MASK);
        stream.extend(client_frame(0x80, b"\xac", MASK));
        assert_eq!(decode_all(&stream).unwrap(), vec![text("€")]);
        let mut stream = client_frame(0x01, b"\xe2\x82", MASK);
        stream.extend(client_frame(0x80, b"x", MASK));
        assert_eq!(decode_err(&stream), WsError::InvalidUtf8 { valid_up_to: 0 });
    }

    #[test]
    fn close_codes() {
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014, 3000, 4999,
        ] {
            let frame = client_frame(0x88, &code.to_be_bytes(), MASK);
            assert_eq!(
                decode_all(&frame).unwrap(),
                vec![Message::Close(Some((code, String::new())))]
            );
        }
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let frame = client_frame(0x88, &code.to_be_bytes(), MASK);
            assert_eq!(decode_err(&frame), WsError::InvalidCloseCode { code });
        }
    }

    #[test]
    fn errors_name_their_close_code() {
        assert_eq!(WsError::Unmasked.close_code(), 1002);
        assert_eq!(WsError::ExpectedContinuation.close_code(), 1002);
        assert_eq!(WsError::InvalidUtf8 { valid_up_to: 0 }.close_code(), 1007);
        assert_eq!(WsError::CloseReasonNotUtf8.close_code(), 1007);
        assert_eq!(WsError::TooBig { size: 2, max: 1 }.close_code(), 1009);
    }

    #[test]
    fn encoders_write_unmasked_final_frames() {
        let mut out = Vec::new();
        encode_text(b"Hello", &mut out);
        encode_pong(b"", &mut out);
        encode_close(1000, "", &mut out);
        encode_close(1001, "bye", &mut out);
        assert_eq!(
            out,
            [
                &[0x81, 0x05][..],
                b"Hello",
                &[0x8a, 0x00],
                &[0x88, 0x02, 0x03, 0xe8],
                &[0x88, 0x05, 0x03, 0xe9],
                b"bye",
            ]
            .concat()
        );
    }

    #[test]
    fn control_encoders_keep_within_125_bytes() {
        let mut out = Vec::new();
        encode_ping(&[1; 200], &mut out);
        assert_eq!(out.len(), 2 + 125);
        let mut out = Vec::new();
        // 62 two-byte characters = 124 bytes: the reason is cut to 61 characters (122 bytes)
        // rather than inside the 62nd.
        encode_close(1000, &"é".repeat(62), &mut out);
        assert_eq!(out[1], 2 + 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
        let mut out = Vec::new();
        encode_close(1000, &"a".repeat(500), &mut out);
        assert_eq!(out[1], 125);
    }

    /// Turns a server frame into the same frame as a client sends it (masked), for decoding.
    fn masked(frame: &[u8]) -> Vec<u8> {
        let header_len = match frame[1] {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let mut client = frame[..header_len].to_vec();
        client[1] |= 0x80;
        client.extend_from_slice(&MASK);
        client.extend(
            frame[header_len..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4]),
        );
        client
    }

    #[test]
    fn text_written_in_place_gets_the_right_header() {
        for len in [0usize, 1, 125, 126, 127, 1000, 65535, 65536, 70_000] {
            let payload: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            let mut out = b"previous frame".to_vec();
            let frame = begin_text(&mut out);
            let (first, second) = payload.split_at(len / 2);
            out.extend_from_slice(first.as_bytes());
            out.extend_from_slice(second.as_bytes());
            finish_text(&mut out, frame);
            let mut expected = b"previous frame".to_vec();
            encode_text(payload.as_bytes(), &mut expected);
            assert_eq!(out, expected, "length {len}");
            let written = &out[b"previous frame".len()..];
            assert_eq!(
                decode_all(&masked(written)).unwrap(),
                vec![Message::Text(payload)]
            );
        }
    }

    #[test]
    fn a_begun_frame_cut_back_by_the_caller_is_dropped() {
        let mut out = b"abc".to_vec();
        let frame = begin_text(&mut out);
        out.truncate(1);
        finish_text(&mut out, frame);
        assert_eq!(out, b"a");
    }

    #[test]
    fn frames_from_tungstenite_decode() {
        use tungstenite::protocol::frame::Frame as TFrame;
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        let mut stream = Vec::new();
        let mut add = |mut frame: TFrame| {
            frame.header_mut().mask = Some([0x12, 0x34, 0x56, 0x78]);
            frame.format(&mut stream).unwrap();
        };
        add(TFrame::message(
            "héllo".as_bytes().to_vec(),
            OpCode::Data(Data::Text),
            true,
        ));
        add(TFrame::message(
            vec![7u8; 300],
            OpCode::Data(Data::Binary),
            false,
        ));
        add(TFrame::ping(b"p".to_vec()));
        add(TFrame::message(
            vec![8u8; 70_000],
            OpCode::Data(Data::Continue),
            true,
        ));
        add(TFrame::close(None));
        let expected = vec![
            text("héllo"),
            Message::Ping(b"p".to_vec()),
            Message::Binary([vec![7u8; 300], vec![8u8; 70_000]].concat()),
            Message::Close(None),
        ];
        assert_eq!(decode_all(&stream).unwrap(), expected);
        assert_eq!(feed_in_pieces(&stream, &[1, 3, 7, 20, 400, 5000]), expected);
    }

    #[test]
    fn frames_we_encode_parse_in_tungstenite() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::FrameHeader;
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            encode_binary(&vec![1; len], &mut out);
            let mut cursor = Cursor::new(out.as_slice());
            let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(length, len as u64);
            assert_eq!(out.len() as u64 - cursor.position(), len as u64);
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A taste of what the fuzz target will do: random bytes and random mutations of a valid
        // stream, fed in random pieces, give Ok or an error.
        let (valid, _) = mixed_stream();
        let valid = &valid[..2000];
        let mut rng = fastrand::Rng::with_seed(15);
        for round in 0..2000 {
            let mut stream: Vec<u8> = if round % 2 == 0 {
                (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect()
            } else {
                valid.to_vec()
            };
            for _ in 0..rng.usize(0..4) {
                if !stream.is_empty() {
                    let at = rng.usize(..stream.len());
                    stream[at] = rng.u8(..);
                }
            }
            let mut decoder = Decoder::new(rng.usize(0..5000));
            let mut out = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let end = (at + rng.usize(1..64)).min(stream.len());
                if decoder.feed(&stream[at..end], &mut out).is_err() {
                    break;
                }
                at = end;
            }
        }
    }
}
