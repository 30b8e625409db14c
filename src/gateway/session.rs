//! Client sessions and their signed wire form, the reconnect key:
//! `base64(JSON(fields + savedAt)) + ';' + base64(HMAC-SHA512(that base64, secret))`, exactly as
//! the original Node gateway wrote it, so that keys signed by either verify in the other.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type HmacSha512 = hmac::Hmac<sha2::Sha512>;

/// How long a reconnect key stays valid after it was signed.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far in the future a `savedAt` may lie (clock skew between hosts) before it is refused.
const MAX_SKEW: Duration = Duration::from_secs(300);
/// At most this many older client ids are remembered (a client reconnecting in a loop must not
/// grow its key without bound).
const MAX_EXISTING: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("the reconnect key has no ';' between data and signature")]
    Shape,
    #[error("the reconnect key's signature does not match")]
    Signature,
    #[error("the reconnect key's data is not base64 JSON of a session")]
    Data,
    #[error("the reconnect key has expired (signed {age_s} s ago)")]
    Expired { age_s: u64 },
    #[error("the reconnect key was signed in the future")]
    Future,
}

/// One client's session: who it is and, once logged in, as whom.
///
/// The original copied ids from the backend's answers as they came, so its keys may hold numbers
/// (a numeric `user.ID`) where ours hold strings: both are read, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[serde(deserialize_with = "text::required")]
    pub client_id: String,
    #[serde(
        default,
        deserialize_with = "text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub existing_client_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "text::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub existing_client_ids: Vec<String>,
    #[serde(
        default,
        deserialize_with = "text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<String>,
    #[serde(
        default,
        deserialize_with = "text::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<String>,
}

/// The signed form: the session plus when it was signed (ms since the epoch).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    #[serde(flatten)]
    session: Session,
    saved_at: u64,
}

impl Session {
    /// A fresh session with a new random client id (16 random bytes, hex).
    pub fn new() -> Session {
        Session {
            client_id: new_client_id(),
            ..Session::default()
        }
    }

    /// As the original's `isLoggedIn`: a user id is enough (the backend checks the token).
    pub fn logged_in(&self) -> bool {
        self.user_id.is_some()
    }

    /// Remembers `old` as this client's previous id (and all of its own previous ones).
    pub fn adopt_existing(&mut self, old: Session) {
        let mut ids: Vec<String> = Vec::new();
        for id in old
            .existing_client_ids
            .into_iter()
            .chain(old.existing_client_id.clone())
            .chain(std::iter::once(old.client_id.clone()))
        {
            if id != self.client_id && !ids.contains(&id) {
                ids.push(id);
            }
        }
        let skip = ids.len().saturating_sub(MAX_EXISTING);
        self.existing_client_ids = ids.into_iter().skip(skip).collect();
        self.existing_client_id = Some(old.client_id);
        self.device_id = old.device_id;
        self.token = old.token;
        self.user_id = old.user_id;
    }

    pub fn log_out(&mut self) {
        self.token = None;
        self.user_id = None;
    }

    /// The reconnect key for this session, signed now.
    pub fn sign(&self, secret: &[u8]) -> String {
        self.sign_at(secret, now_ms())
    }

    pub fn sign_at(&self, secret: &[u8], saved_at: u64) -> String {
        let saved = Saved {
            session: self.clone(),
            saved_at,
        };
        // Serializing plain strings and numbers cannot fail.
        let json = serde_json::to_vec(&saved).unwrap_or_default();
        let data = B64.encode(json);
        let signature = B64.encode(mac(secret, &data).finalize().into_bytes());
        format!("{data};{signature}")
    }

    /// Checks a reconnect key and returns the session it carries.
    pub fn verify(key: &str, secret: &[u8]) -> Result<Session, SessionError> {
        Self::verify_at(key, secret, now_ms())
    }

    pub fn verify_at(key: &str, secret: &[u8], now: u64) -> Result<Session, SessionError> {
        let (data, signature) = key.split_once(';').ok_or(SessionError::Shape)?;
        let signature = B64
            .decode(signature.trim())
            .map_err(|_| SessionError::Signature)?;
        // Constant-time comparison.
        mac(secret, data)
            .verify_slice(&signature)
            .map_err(|_| SessionError::Signature)?;
        let json = B64.decode(data).map_err(|_| SessionError::Data)?;
        let saved: Saved = serde_json::from_slice(&json).map_err(|_| SessionError::Data)?;
        if saved.session.client_id.is_empty() {
            return Err(SessionError::Data);
        }
        if saved.saved_at > now.saturating_add(MAX_SKEW.as_millis() as u64) {
            return Err(SessionError::Future);
        }
        let age = now.saturating_sub(saved.saved_at);
        if age > MAX_AGE.as_millis() as u64 {
            return Err(SessionError::Expired { age_s: age / 1000 });
        }
        Ok(saved.session)
    }
}

/// Session fields written by the original as strings or numbers (or `null`), read as text.
mod text {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    fn of(value: Value) -> Option<String> {
        match value {
            Value::String(s) if !s.is_empty() => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(of(Value::deserialize(d)?))
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        of(Value::deserialize(d)?).ok_or_else(|| serde::de::Error::custom("not a string or number"))
    }

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => items.into_iter().filter_map(of).collect(),
            _ => Vec::new(),
        })
    }
}

fn mac(secret: &[u8], data: &str) -> HmacSha512 {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha512 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha512 as KeyInit>::new(&Default::default()));
    mac.update(data.as_bytes());
    mac
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// 16 random bytes as hex, as the original's client ids.
pub fn new_client_id() -> String {
    hex::encode(random_bytes::<16>())
}

/// Random bytes from the operating system (falls back to a seeded generator if that fails).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        tracing::warn!("the OS random source failed; using a weaker generator");
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test secret";
    const NOW: u64 = 1_764_000_000_000;

    fn sample() -> Session {
        Session {
            client_id: "0123456789abcdef0123456789abcdef".into(),
            user_id: Some("u1".into()),
            token: Some("tok".into()),
            device_id: Some("dev".into()),
            ..Session::default()
        }
    }

    #[test]
    fn signs_and_verifies() {
        let key = sample().sign_at(SECRET, NOW);
        assert_eq!(Session::verify_at(&key, SECRET, NOW + 1000), Ok(sample()));
    }

    #[test]
    fn refuses_a_tampered_key() {
        let key = sample().sign_at(SECRET, NOW);
        let (data, sig) = key.split_once(';').unwrap();
        let other = Session {
            user_id: Some("admin".into()),
            ..sample()
        }
        .sign_at(SECRET, NOW);
        let other_data = other.split_once(';').unwrap().0;
        assert_eq!(
            Session::verify_at(&format!("{other_data};{sig}"), SECRET, NOW),
            Err(SessionError::Signature)
        );
        assert_eq!(
            Session::verify_at(&key, b"other secret", NOW),
            Err(SessionError::Signature)
        );
        assert_eq!(
            Session::verify_at(&format!("{data};x{sig}"), SECRET, NOW),
            Err(SessionError::Signature)
        );
        assert_eq!(
            Session::verify_at(data, SECRET, NOW),
            Err(SessionError::Shape)
        );
    }

    #[test]
    fn refuses_an_expired_or_future_key() {
        let key = sample().sign_at(SECRET, NOW);
        let week = MAX_AGE.as_millis() as u64;
        assert!(Session::verify_at(&key, SECRET, NOW + week).is_ok());
        assert!(matches!(
            Session::verify_at(&key, SECRET, NOW + week + 1),
            Err(SessionError::Expired { .. })
        ));
        assert_eq!(
            Session::verify_at(&key, SECRET, NOW - 3_600_000),
            Err(SessionError::Future)
        );
    }

    /// The original copied `user.ID` as it came: a number stays a number in its keys.
    #[test]
    fn reads_numeric_ids_as_text() {
        let data = B64.encode(
            br#"{"clientId":"c1","userId":42,"token":7,"deviceId":null,"existingClientIds":[1,"b"],"savedAt":1764000000000}"#,
        );
        let sig = B64.encode(mac(SECRET, &data).finalize().into_bytes());
        let session = Session::verify_at(&format!("{data};{sig}"), SECRET, NOW).unwrap();
        assert_eq!(session.user_id.as_deref(), Some("42"));
        assert_eq!(session.token.as_deref(), Some("7"));
        assert_eq!(session.device_id, None);
        assert_eq!(session.existing_client_ids, vec!["1", "b"]);
        assert!(session.logged_in());
    }

    #[test]
    fn refuses_a_signed_key_of_the_wrong_shape() {
        let data = B64.encode(br#"{"savedAt":1}"#);
        let sig = B64.encode(mac(SECRET, &data).finalize().into_bytes());
        assert_eq!(
            Session::verify_at(&format!("{data};{sig}"), SECRET, NOW),
            Err(SessionError::Data)
        );
    }

    /// A key signed by Node's crypto, as the original gateway did:
    /// `d = Buffer.from(JSON.stringify(s)).toString('base64');
    ///  d + ';' + crypto.createHmac('sha512', secret).update(d).digest('base64')`.
    #[test]
    fn verifies_a_key_signed_by_node() {
        let key = NODE_KEY;
        let session = Session::verify_at(key, b"node secret", 1_764_000_100_000).unwrap();
        assert_eq!(session.client_id, "00112233445566778899aabbccddeeff");
        assert_eq!(session.user_id.as_deref(), Some("user-7"));
        assert_eq!(session.token.as_deref(), Some("t0k3n"));
        assert_eq!(session.device_id.as_deref(), Some("phone"));
        assert_eq!(session.existing_client_ids, vec!["aa".to_string()]);
        // And ours is byte for byte what Node writes for the same data.
        assert_eq!(
            session.sign_at(b"node secret", 1_764_000_000_000),
            NODE_KEY_SAME_ORDER
        );
    }

    const NODE_KEY: &str = include_str!("testdata/node_key.txt");
    const NODE_KEY_SAME_ORDER: &str = include_str!("testdata/node_key_ordered.txt");
}
