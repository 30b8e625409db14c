//! The gateway's wire codecs: pure functions from bytes to typed packets and back, with no I/O.
//!
//! The connection task owns the socket and its timers; these modules only turn what it read into
//! values and what it wants to say into bytes, so every rule of the protocols is unit-tested here
//! and every decoder can be fuzzed on its own:
//!
//! - [`websocket`]: RFC 6455 framing, server side. A [`websocket::Decoder`] is fed each read's
//!   bytes and yields whole messages; encoders append unmasked frames to an output buffer, and
//!   [`websocket::begin_text`] / [`websocket::finish_text`] frame a payload written in place.
//!
//! Every decoder is total: any input gives `Ok` or a typed error, never a panic (indexing and
//! unwrapping are denied by clippy outside tests), and nothing is allocated for a length the
//! input declares before that length is checked against a limit. Encoders append to a caller's
//! `Vec<u8>` so one output buffer can collect a whole batch of frames.
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

pub mod websocket;
