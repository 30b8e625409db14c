//! RFC 6455 client frames: the streaming decoder fed the whole input at once and fed it in
//! pieces cut where the input says must give the same messages and the same error.
#![no_main]

use activestack_gateway::gateway::wire::websocket::{Decoder, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Two bytes of message limit, one byte of cut lengths seed, then the stream.
    let [a, b, cuts, stream @ ..] = data else {
        return;
    };
    let max = usize::from(u16::from_be_bytes([*a, *b]));
    let whole = decode(max, &[stream]);
    let mut pieces = Vec::new();
    let mut rest = stream;
    let mut step = usize::from(*cuts % 17) + 1;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(step.min(rest.len()));
        pieces.push(piece);
        rest = tail;
        step = step * 7 % 23 + 1;
    }
    let cut = decode(max, &pieces);
    assert_eq!(whole, cut, "cut into {} pieces", pieces.len());
    // One byte at a time, the hardest case for kept headers.
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(whole, decode(max, &bytes), "fed byte by byte");
    if let (Ok(messages), _) = &whole {
        for message in messages {
            if let Message::Text(text) = message {
                assert!(text.len() <= max);
            }
        }
    }
});

type Outcome = (
    Result<
        Vec<Message>,
        (
            Vec<Message>,
            activestack_gateway::gateway::wire::websocket::WsError,
        ),
    >,
    bool,
);

fn decode(max: usize, pieces: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::new(max);
    let mut out = Vec::new();
    for piece in pieces {
        if let Err(e) = decoder.feed(piece, &mut out) {
            return (Err((out, e)), false);
        }
    }
    let idle = decoder.is_idle();
    (Ok(out), idle)
}
