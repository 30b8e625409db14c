//! Reconnect keys (`base64(JSON);base64(HMAC-SHA512)`): the input as a key must not verify
//! unless the fuzzer signed it, and the input as the JSON of a key that is signed with the
//! gateway's secret (what a stolen secret or the original gateway could produce) is read
//! without panicking; a session that verifies signs again into a key that gives it back.
#![no_main]

use activestack_gateway::gateway::session::{Session, SessionError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz secret";
const NOW_MS: u64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let session = match mode % 3 {
        // The input as a whole key: only the secret's holder can make one that verifies.
        0 => {
            let key = String::from_utf8_lossy(data);
            match Session::verify_at(&key, SECRET, NOW_MS) {
                Ok(_) => panic!("a key the fuzzer made up verified: {key:?}"),
                Err(_) => return,
            }
        }
        // The input as the key's JSON (what the data part decodes to), signed.
        1 => {
            let data_b64 = B64.encode(data);
            Session::verify_at(&signed(&data_b64), SECRET, NOW_MS)
        }
        // The input as the data part itself (not necessarily base64), signed.
        _ => {
            let data_text = String::from_utf8_lossy(data);
            if data_text.contains(';') {
                return;
            }
            Session::verify_at(&signed(&data_text), SECRET, NOW_MS)
        }
    };
    match session {
        Ok(session) => {
            assert!(!session.client_id.is_empty());
            let key = session.sign_at(SECRET, NOW_MS);
            assert_eq!(
                Session::verify_at(&key, SECRET, NOW_MS),
                Ok(session.clone())
            );
            assert_eq!(
                Session::verify_at(&key, b"another secret", NOW_MS),
                Err(SessionError::Signature)
            );
            let mut adopted = Session {
                client_id: "new".to_string(),
                ..Session::default()
            };
            adopted.adopt_existing(session);
            assert!(adopted.existing_client_ids.len() <= 16);
            let key = adopted.sign_at(SECRET, NOW_MS);
            assert_eq!(Session::verify_at(&key, SECRET, NOW_MS), Ok(adopted));
        }
        Err(SessionError::Signature | SessionError::Shape) => panic!("signed, yet {session:?}"),
        Err(_) => {}
    }
});

/// `data;signature` as the gateway signs it.
fn signed(data: &str) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha512> as KeyInit>::new_from_slice(SECRET)
        .expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    format!("{data};{}", B64.encode(mac.finalize().into_bytes()))
}
