//! Reconnect keys in the original Node gateway's wire format (ActiveStack/gateway
//! src/service/session.js:58-78): `base64(JSON(session fields + savedAt))`, `;`,
//! `base64(HMAC-SHA512(that base64 text, frontend.session_secret))`. Written from the format, not
//! with the gateway's own session type: tests sign keys the original could sign (a numeric
//! `userId`, say) and read what the gateway sends without trusting its code.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use super::agent::SECRET;

type HmacSha512 = hmac::Hmac<sha2::Sha512>;

fn mac(data: &str) -> HmacSha512 {
    let mut mac =
        <HmacSha512 as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("HMAC takes any key");
    mac.update(data.as_bytes());
    mac
}

/// Signs `session` (a JSON object) with the test secret, `savedAt` now, as `getSignedSession`.
pub fn sign(session: &Value) -> String {
    let mut saved = session.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64;
    saved["savedAt"] = json!(now);
    let data = B64.encode(saved.to_string());
    let signature = B64.encode(mac(&data).finalize().into_bytes());
    format!("{data};{signature}")
}

/// The session a key carries (`savedAt` left out), if its signature is the test secret's.
pub fn read(key: &str) -> Result<Value, String> {
    let (data, signature) = key.split_once(';').ok_or("no ';' in the key")?;
    let signature = B64
        .decode(signature)
        .map_err(|e| format!("signature: {e}"))?;
    mac(data)
        .verify_slice(&signature)
        .map_err(|_| "the signature does not match".to_string())?;
    let json = B64.decode(data).map_err(|e| format!("data: {e}"))?;
    let mut session: Value = serde_json::from_slice(&json).map_err(|e| format!("data: {e}"))?;
    if let Some(map) = session.as_object_mut() {
        map.remove("savedAt");
    }
    Ok(session)
}

/// [`read`] for a `gatewayConnectAck` payload; panics on a bad key.
pub fn session(key: &Value) -> Value {
    let key = key
        .as_str()
        .unwrap_or_else(|| panic!("a key is text: {key}"));
    read(key).unwrap_or_else(|e| panic!("bad key {key}: {e}"))
}

/// The session's clientId.
pub fn client_id(session: &Value) -> String {
    session["clientId"]
        .as_str()
        .unwrap_or_else(|| panic!("a clientId in {session}"))
        .to_string()
}

/// Logged in as the original judges it (session.js `isLoggedIn`: `!!userId`).
pub fn logged_in(session: &Value) -> bool {
    match &session["userId"] {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::Bool(b) => *b,
        _ => true,
    }
}
