//! Master <-> worker frames: a byte stream read as the receiving side reads it (length prefix,
//! bounds, JSON), in both directions. A frame that decodes encodes again into a frame that
//! decodes to the same message, and reading the stream in pieces gives the same messages.
#![no_main]

use activestack_gateway::ipc::{Decoded, MAX_FRAME, ToMaster, ToWorker, decode, encode};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        read_all::<ToWorker>(stream, mode);
    } else {
        read_all::<ToMaster>(stream, mode);
    }
    // The same bytes as the JSON of one whole frame.
    let mut frame = (stream.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(stream);
    if !stream.is_empty() {
        round_trip::<ToWorker>(&frame);
        round_trip::<ToMaster>(&frame);
    }
});

/// Every frame of `stream`, whole and as a receiver fed in pieces would see it.
fn read_all<M: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(
    stream: &[u8],
    mode: u8,
) {
    let whole = frames::<M>(stream, stream.len());
    let step = usize::from(mode >> 1) + 1;
    assert_eq!(whole, frames::<M>(stream, step));
}

/// What a receiver reading `stream` `step` bytes at a time returns, message by message.
fn frames<M: DeserializeOwned>(stream: &[u8], step: usize) -> Vec<Result<String, String>> {
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut seen = Vec::new();
    loop {
        match decode::<M>(&buf) {
            Decoded::Message { msg, used } => {
                let bad_prefix = used == 0;
                seen.push(
                    msg.map(|_| "message".to_string())
                        .map_err(|e| e.to_string()),
                );
                if bad_prefix {
                    return seen;
                }
                assert!(used > 4 && used - 4 <= MAX_FRAME);
                buf.drain(..used);
            }
            Decoded::Incomplete { needed } => {
                assert!(needed > 0 && needed <= MAX_FRAME + 4);
                if fed == stream.len() {
                    return seen;
                }
                let take = step.min(stream.len() - fed);
                buf.extend_from_slice(&stream[fed..fed + take]);
                fed += take;
            }
        }
    }
}

fn round_trip<M: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(frame: &[u8]) {
    let Decoded::Message { msg: Ok(msg), .. } = decode::<M>(frame) else {
        return;
    };
    let again = encode(&msg).expect("a message read from a frame encodes");
    match decode::<M>(again.as_bytes()) {
        Decoded::Message {
            msg: Ok(back),
            used,
        } => {
            assert_eq!(used, again.len());
            assert_eq!(back, msg);
        }
        other => panic!("re-encoded {msg:?} reads as {other:?}"),
    }
}
