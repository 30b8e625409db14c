//! socket.io 0.9: the packet decoder and the framing on a sequence of client messages, and the
//! handshake's session ids (`/socket.io/1/websocket/<sid>`): whatever the client sends, the
//! server answers with whole text frames holding packets that decode again, and only ids this
//! gateway signed verify.
#![no_main]

mod common;

use std::time::Duration;

use activestack_gateway::gateway::framing::Framing;
use activestack_gateway::gateway::framing::legacy::Legacy;
use activestack_gateway::gateway::wire::legacy::{
    Packet, SID_LEN, SID_MAX_SKEW_MS, SidError, decode, new_sid, verify_sid,
};
use libfuzzer_sys::fuzz_target;
// Raw JSON from the decoders is checked for its syntax only: a number beyond f64 (`1e999`) is
// valid JSON that serde_json refuses to make a `Value` of (the framings answer it with a
// protocol error, which is what the first runs of these targets found).
use serde::de::IgnoredAny;
use tokio::time::Instant;

const SECRET: &[u8] = b"fuzz secret";
const NOW_MS: u64 = 1_700_000_000_000;
const MAX_AGE_MS: u64 = 60_000;

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    if first & 1 == 1 {
        sids(data);
        return;
    }
    let mut framing = Legacy::new(
        Duration::from_millis(25_000),
        Duration::from_millis(60_000),
        first & 2 == 2,
    );
    let mut now = Instant::now();
    let mut out = Vec::new();
    if framing.open(now, &mut out).is_ok() {
        for message in common::messages(data) {
            check_packet(&message);
            now += Duration::from_millis(u64::from(first >> 2) * 500);
            let _ = framing.heartbeat(now, &mut out);
            if framing.receive(&message, now, &mut out).is_err() {
                break;
            }
        }
    }
    for text in common::server_texts(&out) {
        decode(&text).expect("the server's packets decode");
    }
});

fn check_packet(text: &str) {
    match decode(text) {
        Ok(Packet::Event { name, args, .. }) => {
            assert_ne!(name, "disconnect");
            for arg in args {
                serde_json::from_str::<IgnoredAny>(arg.get()).expect("raw args are JSON");
            }
        }
        Ok(Packet::Json { data, .. }) => {
            serde_json::from_str::<IgnoredAny>(data.get()).expect("raw data is JSON");
        }
        Ok(_) | Err(_) => {}
    }
}

/// The input as a sid, as a sid with its last byte changed, and a sid signed now verified at
/// the time the input gives.
fn sids(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match verify_sid(&text, SECRET, NOW_MS, MAX_AGE_MS) {
        // A forger would need the secret.
        Ok(()) => panic!("an id the fuzzer made up verified: {text:?}"),
        Err(SidError::Malformed) => {}
        Err(e) => assert_eq!(text.len(), SID_LEN, "{e}"),
    }
    let offset = data
        .iter()
        .take(8)
        .fold(0u64, |n, &b| (n << 8) | u64::from(b));
    let now = NOW_MS.wrapping_add(offset);
    let sid = new_sid(SECRET, now);
    assert_eq!(sid.len(), SID_LEN);
    assert!(!sid.contains([':', '/']));
    assert_eq!(verify_sid(&sid, SECRET, now, MAX_AGE_MS), Ok(()));
    let later = now.saturating_add(offset % (2 * MAX_AGE_MS));
    let result = verify_sid(&sid, SECRET, later, MAX_AGE_MS);
    if later - now > MAX_AGE_MS {
        assert!(
            matches!(result, Err(SidError::Expired { .. })),
            "{result:?}"
        );
    } else {
        assert_eq!(result, Ok(()));
    }
    let earlier = now.saturating_sub(offset % (2 * SID_MAX_SKEW_MS));
    let result = verify_sid(&sid, SECRET, earlier, MAX_AGE_MS);
    if now - earlier > SID_MAX_SKEW_MS {
        assert!(
            matches!(result, Err(SidError::FromFuture { .. })),
            "{result:?}"
        );
    } else {
        assert_eq!(result, Ok(()));
    }
    assert_eq!(
        verify_sid(&sid, b"another secret", now, MAX_AGE_MS),
        Err(SidError::Forged)
    );
    let mut forged = sid.into_bytes();
    let at = usize::from(data.first().copied().unwrap_or(0)) % forged.len();
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("base64url is ASCII");
    assert!(verify_sid(&forged, SECRET, now, MAX_AGE_MS).is_err());
}
