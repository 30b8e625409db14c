//! What the targets share: reading back the server's own frames.
#![allow(dead_code)]

/// The text payloads of the unmasked, final server frames in `out`; panics on anything else
/// (the server must only ever write whole UTF-8 text frames in answer to a client).
pub fn server_texts(out: &[u8]) -> Vec<String> {
    let mut rest = out;
    let mut texts = Vec::new();
    while !rest.is_empty() {
        let [b0, b1, tail @ ..] = rest else {
            panic!("a cut server frame header: {rest:?}");
        };
        assert_eq!(*b0, 0x81, "a server frame that is not a final text frame");
        assert_eq!(b1 & 0x80, 0, "a masked server frame");
        let (len, tail) = match b1 & 0x7f {
            126 => {
                let (n, tail) = tail.split_first_chunk::<2>().expect("16-bit length");
                let len = usize::from(u16::from_be_bytes(*n));
                assert!(len >= 126, "a 16-bit length below 126");
                (len, tail)
            }
            127 => {
                let (n, tail) = tail.split_first_chunk::<8>().expect("64-bit length");
                let len = u64::from_be_bytes(*n);
                assert!(len > 0xffff, "a 64-bit length below 65536");
                (len as usize, tail)
            }
            n => (usize::from(n), tail),
        };
        assert!(
            tail.len() >= len,
            "a server frame longer than what was written"
        );
        let (payload, tail) = tail.split_at(len);
        texts.push(String::from_utf8(payload.to_vec()).expect("a server text frame is UTF-8"));
        rest = tail;
    }
    texts
}

/// Splits fuzz input into client messages at NUL bytes (a NUL never matters to the parsers
/// here, and it keeps the seeds readable).
pub fn messages(data: &[u8]) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    data.split(|&b| b == 0).map(String::from_utf8_lossy)
}
