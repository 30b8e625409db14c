//! socket.io v4/v5 over engine.io 3/4: the packet decoders on each message, then the framing
//! (what a connection does with the messages in order). Whatever the client sends, the server
//! only ever answers with whole text frames whose packets decode again.
#![no_main]

mod common;

use std::time::Duration;

use activestack_gateway::gateway::framing::Framing;
use activestack_gateway::gateway::framing::engineio::EngineIo;
use activestack_gateway::gateway::wire::engineio::{
    EioPacket, EioVersion, SioPacket, decode_eio, decode_sio, split_nsp_query,
};
use libfuzzer_sys::fuzz_target;
// Raw JSON from the decoders is checked for its syntax only: a number beyond f64 (`1e999`) is
// valid JSON that serde_json refuses to make a `Value` of (the framings answer it with a
// protocol error, which is what the first runs of these targets found).
use serde::de::IgnoredAny;
use tokio::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let version = if first & 1 == 0 {
        EioVersion::V3
    } else {
        EioVersion::V4
    };
    let mut framing = EngineIo::new(
        version,
        "sid".to_string(),
        Duration::from_millis(25_000),
        Duration::from_millis(20_000),
    );
    let mut now = Instant::now();
    let mut out = Vec::new();
    framing.open(now, &mut out).expect("open never fails");
    for message in common::messages(data) {
        if let Ok(EioPacket::Message(sio)) = decode_eio(&message) {
            check_sio(sio);
        }
        now += Duration::from_millis(u64::from(first >> 1) * 100);
        let _ = framing.heartbeat(now, &mut out);
        match framing.receive(&message, now, &mut out) {
            Ok(_) => {}
            Err(_) => break,
        }
    }
    for text in common::server_texts(&out) {
        let packet = decode_eio(&text).expect("the server's packets decode");
        if let EioPacket::Message(sio) = packet {
            // CONNECT_ERROR is only sent by servers, so it is the one a client-side decoder
            // must take; all the server sends is CONNECT, CONNECT_ERROR and events.
            decode_sio(sio).expect("the server's socket.io packets decode");
        }
    }
});

fn check_sio(text: &str) {
    match decode_sio(text) {
        Ok(SioPacket::Connect { nsp, auth }) => {
            let _ = split_nsp_query(nsp);
            if let Some(auth) = auth {
                assert!(auth.get().starts_with('{'));
            }
        }
        Ok(SioPacket::Event { name, args, .. }) => {
            for arg in args {
                serde_json::from_str::<IgnoredAny>(arg.get()).expect("raw args are JSON");
            }
            assert!(!name.is_empty() || text.contains("\"\""));
        }
        Ok(_) | Err(_) => {}
    }
}
