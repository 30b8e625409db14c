//! The gateway's wire codecs: pure functions from bytes to typed packets and back, with no I/O.
//!
//! The connection task owns the socket and its timers; these modules only turn what it read into
//! values and what it wants to say into bytes, so every rule of the protocols is unit-tested here
//! and every decoder can be fuzzed on its own:
//!
//! - [`websocket`]: RFC 6455 framing, server side. A [`websocket::Decoder`] is fed each read's
//!   bytes and yields whole messages; encoders append unmasked frames to an output buffer, and
//!   [`websocket::begin_text`] / [`websocket::finish_text`] frame a payload written in place.
//! - [`engineio`]: engine.io v3/v4 packets (`EIO=3` / `EIO=4`) and the socket.io v4/v5 packets
//!   they carry, for the websocket transport (today's clients: socket.io-client 2.x / 4.x,
//!   python-socketio 5).
//! - [`legacy`]: socket.io 0.9 (protocol revision 1, what the ActiveStack JS and iOS SDKs speak):
//!   `type:id:endpoint:data` frames, the `/socket.io/1/` handshake body, and session ids that
//!   verify themselves on any worker.
//! - [`json_object`]: a request's top-level members as the client wrote them, written back with
//!   its `clientId` set.
//!
//! Centrifugo's JSON protocol, the third framing the connection layer will speak, is to join
//! them as a module of its own.
//!
//! Every decoder is total: any input gives `Ok` or a typed error, never a panic (indexing and
//! unwrapping are denied by clippy outside tests), and nothing is allocated for a length the
//! input declares before that length is checked against a limit. Encoders append to a caller's
//! `Vec<u8>` so one output buffer can collect a whole batch of frames. A push goes from the
//! backend's bytes to the socket's output buffer in one copy:
//!
//! ```
//! use activestack_gateway::gateway::wire::{engineio, websocket};
//!
//! let backend = br#"{"cn":"com.percero.agents.sync.vo.PushUpdateResponse"}"#;
//! let mut out = Vec::new();
//! let frame = websocket::begin_text(&mut out);
//! engineio::encode_event("/", "push", backend, &mut out);
//! websocket::finish_text(&mut out, frame);
//! assert_eq!(out[0], 0x81); // FIN, text
//! assert_eq!(usize::from(out[1]), out.len() - 2); // the length, in the short form
//! assert_eq!(&out[2..], br#"42["push",{"cn":"com.percero.agents.sync.vo.PushUpdateResponse"}]"#);
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable
    )
)]

pub mod engineio;
pub mod json_object;
pub mod legacy;
pub mod websocket;

/// A value could not be serialized to JSON (a map with non-string keys, a failing `Serialize`
/// implementation). The output buffer is left as it was before the call.
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize the value to JSON")]
pub struct EncodeError(#[source] pub serde_json::Error);

/// Appends `s` as a JSON string literal (quotes included), escaped as `JSON.stringify` does.
fn write_json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain_from..i).unwrap_or_default());
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hi, lo]);
        } else {
            out.extend_from_slice(escape);
        }
        plain_from = i + 1;
    }
    out.extend_from_slice(bytes.get(plain_from..).unwrap_or_default());
    out.push(b'"');
}

/// Appends `n` in decimal.
fn write_u64(n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

/// Serializes `value` as JSON onto `out`; on failure `out` is truncated back.
fn write_json_value(value: &impl serde::Serialize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let before = out.len();
    serde_json::to_writer(&mut *out, value).map_err(|e| {
        out.truncate(before);
        EncodeError(e)
    })
}

/// The ASCII decimal number `digits`, or `None` if it is empty, has a non-digit or overflows.
fn parse_u64(digits: &str) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u64, |n, d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Helpers the codecs' tests share.
#[cfg(test)]
mod test_support {
    /// What `f` appends to an empty buffer, as text.
    pub fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// Calls `f` with `rounds` random mutations (characters of `alphabet` inserted, characters
    /// removed) of the `seeds`: a taste of what the fuzz targets will do.
    pub fn for_each_mutation(seeds: &[&str], alphabet: &[u8], rounds: usize, f: impl Fn(&str)) {
        let mut rng = fastrand::Rng::with_seed(rounds as u64);
        for round in 0..rounds {
            let mut bytes = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..rng.usize(1..5) {
                let at = rng.usize(..=bytes.len());
                match rng.u8(..3) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.insert(at, alphabet[rng.usize(..alphabet.len())]),
                }
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                f(text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_like_json_stringify() {
        for s in [
            "",
            "push",
            "a\"b\\c",
            "line\nbreak\r\ttab",
            "\u{0}\u{1}\u{1f}\u{8}\u{c}",
            "é€😀",
            "\u{2028}",
        ] {
            let mut out = Vec::new();
            write_json_string(s, &mut out);
            let expected = serde_json::to_string(s).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{s:?}");
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 25_000, u64::MAX] {
            let mut out = b"x".to_vec();
            write_u64(n, &mut out);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn decimal_parsing_refuses_overflow() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(parse_u64("99999999999999999999999"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("1a"), None);
        assert_eq!(parse_u64("+1"), None);
    }

    #[test]
    fn a_value_that_cannot_be_serialized_leaves_the_buffer_alone() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        let mut out = b"kept".to_vec();
        assert!(write_json_value(&map, &mut out).is_err());
        assert_eq!(out, b"kept");
    }
}
