//! Connection tokens: HMAC-signed JWTs (HS256, and HS384/HS512 as Centrifugo accepts them) with
//! Centrifugo's claim rules. Any other algorithm (`none` included) is refused.
//!
//! Claims (centrifugal/centrifugo `internal/jwtverify/token_verifier_jwt.go`,
//! `ConnectTokenClaims`): `sub` (user id, string), `exp`/`nbf` (numeric dates, checked), `iat`
//! (read, not checked), `expire_at` (overrides `exp` as the connection's expiry; 0 = none),
//! `info`/`b64info` (conn_info), `channels` (server-side subscriptions). A `channel` claim makes
//! the token a subscription token, invalid for a connection.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// Why a token was refused. [`TokenError::Expired`] is error 109 (the client refreshes its
/// token); everything else is disconnect 3500 "invalid token".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
}

/// What a valid connection token says.
#[derive(Debug, Clone)]
pub struct ConnectClaims {
    /// `sub`: the user id ("" = anonymous).
    pub user: String,
    /// When the connection expires (Unix seconds); `None` = never.
    pub expires_at: Option<u64>,
    /// `info` (or decoded `b64info`): the client's conn_info, raw JSON.
    pub info: Option<Box<RawValue>>,
    /// `channels`: server-side subscriptions.
    pub channels: Vec<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// The claims as Centrifugo types them: a claim of the wrong type makes the token invalid.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    iat: Option<f64>,
    #[serde(default)]
    expire_at: Option<i64>,
    #[serde(default)]
    info: Option<Box<RawValue>>,
    #[serde(default)]
    b64info: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<Value>,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;
type HmacSha384 = hmac::Hmac<sha2::Sha384>;
type HmacSha512 = hmac::Hmac<sha2::Sha512>;

/// Verifies `token` with `secret` at `now` (Unix seconds) and reads its claims.
pub fn verify(token: &str, secret: &[u8], now: u64) -> Result<ConnectClaims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Invalid("not three dot-separated parts"));
    };
    let header: Header = decode_json(header, "header")?;
    let signature = B64URL
        .decode(signature)
        .map_err(|_| TokenError::Invalid("signature is not base64url"))?;
    let signed = &token[..header_and_payload_len(token)];
    if secret.is_empty() {
        return Err(TokenError::Invalid("no HMAC secret is configured"));
    }
    let valid = match header.alg.as_str() {
        "HS256" => check::<HmacSha256>(secret, signed, &signature),
        "HS384" => check::<HmacSha384>(secret, signed, &signature),
        "HS512" => check::<HmacSha512>(secret, signed, &signature),
        _ => return Err(TokenError::Invalid("unsupported algorithm")),
    };
    if !valid {
        return Err(TokenError::Invalid("bad signature"));
    }
    let claims: RawClaims = decode_json(payload, "claims")?;
    if claims.channel.is_some() {
        return Err(TokenError::Invalid(
            "a subscription token (channel claim) is not a connection token",
        ));
    }
    let now_f = now as f64;
    if let Some(nbf) = claims.nbf
        && now_f < nbf
    {
        return Err(TokenError::Invalid("not valid yet (nbf)"));
    }
    if let Some(exp) = claims.exp
        && exp <= now_f
    {
        return Err(TokenError::Expired);
    }
    let expires_at = match claims.expire_at {
        Some(0) => None,
        Some(at) if at > 0 => {
            let at = at as u64;
            if at <= now {
                return Err(TokenError::Expired);
            }
            Some(at)
        }
        Some(_) => return Err(TokenError::Invalid("expire_at is negative")),
        None => claims.exp.map(|e| e as u64),
    };
    let info = match (claims.info, claims.b64info) {
        (Some(info), _) => Some(info),
        (None, Some(b64)) => {
            let bytes = B64
                .decode(b64)
                .map_err(|_| TokenError::Invalid("b64info is not base64"))?;
            let text =
                String::from_utf8(bytes).map_err(|_| TokenError::Invalid("b64info is not JSON"))?;
            Some(
                RawValue::from_string(text)
                    .map_err(|_| TokenError::Invalid("b64info is not JSON"))?,
            )
        }
        (None, None) => None,
    };
    Ok(ConnectClaims {
        user: claims.sub,
        expires_at,
        info,
        channels: claims.channels.unwrap_or_default(),
    })
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn check<M: Mac + KeyInit>(secret: &[u8], signed: &str, signature: &[u8]) -> bool {
    match <M as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(signed.as_bytes());
            mac.verify_slice(signature).is_ok()
        }
        Err(_) => false,
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &'static str,
) -> Result<T, TokenError> {
    let bytes = B64URL.decode(part).map_err(|_| {
        TokenError::Invalid(if what == "header" {
            "header is not base64url"
        } else {
            "claims are not base64url"
        })
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        TokenError::Invalid(if what == "header" {
            "header is not a JWT header"
        } else {
            "claims are not of Centrifugo's types"
        })
    })
}

/// Signs `claims` with HS256: what the backend does to make a token (used by tests and the
/// bench, and the README example).
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64URL.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = match <HmacSha256 as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(signed.as_bytes());
            B64URL.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &[u8] = b"centrifugo_jwt_secret";
    const NOW: u64 = 1_767_222_000;

    fn unsigned(header: &str, claims: &Value) -> String {
        format!(
            "{}.{}",
            B64URL.encode(header),
            B64URL.encode(claims.to_string())
        )
    }

    #[test]
    fn a_valid_token_gives_its_claims() {
        let t = sign_hs256(
            &json!({"sub":"42","exp":NOW+60,"iat":NOW,"info":{"name":"Ann"},"channels":["news"]}),
            KEY,
        );
        let c = verify(&t, KEY, NOW).unwrap();
        assert_eq!(c.user, "42");
        assert_eq!(c.expires_at, Some(NOW + 60));
        assert_eq!(c.info.unwrap().get(), r#"{"name":"Ann"}"#);
        assert_eq!(c.channels, ["news"]);
        let forever = verify(&sign_hs256(&json!({"sub":"1"}), KEY), KEY, NOW).unwrap();
        assert_eq!(forever.expires_at, None);
    }

    #[test]
    fn expired_is_109_not_invalid() {
        let t = sign_hs256(&json!({"sub":"42","exp":NOW}), KEY);
        assert_eq!(verify(&t, KEY, NOW).err(), Some(TokenError::Expired));
        let t = sign_hs256(&json!({"sub":"42","expire_at":NOW - 1}), KEY);
        assert_eq!(verify(&t, KEY, NOW).err(), Some(TokenError::Expired));
    }

    #[test]
    fn forged_none_and_other_algorithms_are_invalid() {
        let t = sign_hs256(&json!({"sub":"42"}), b"another secret");
        assert!(matches!(verify(&t, KEY, NOW), Err(TokenError::Invalid(_))));
        let none = format!("{}.", unsigned(r#"{"alg":"none"}"#, &json!({"sub":"42"})));
        assert_eq!(
            verify(&none, KEY, NOW).err(),
            Some(TokenError::Invalid("unsupported algorithm"))
        );
        let rs = format!(
            "{}.c2ln",
            unsigned(r#"{"alg":"RS256"}"#, &json!({"sub":"42"}))
        );
        assert!(matches!(verify(&rs, KEY, NOW), Err(TokenError::Invalid(_))));
        // A valid signature over a changed payload.
        let good = sign_hs256(&json!({"sub":"42"}), KEY);
        let sig = good.rsplit('.').next().unwrap();
        let tampered = format!(
            "{}.{sig}",
            unsigned(r#"{"alg":"HS256","typ":"JWT"}"#, &json!({"sub":"43"}))
        );
        assert!(matches!(
            verify(&tampered, KEY, NOW),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verify("a.b", KEY, NOW),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verify(&good, b"", NOW),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn wrong_typed_claims_are_invalid() {
        for claims in [
            json!({"sub": 42}),
            json!({"sub": "42", "exp": "tomorrow"}),
            json!({"sub": "42", "channels": "news"}),
            json!({"sub": "42", "channel": "$secret"}),
        ] {
            let t = sign_hs256(&claims, KEY);
            assert!(
                matches!(verify(&t, KEY, NOW), Err(TokenError::Invalid(_))),
                "{claims}"
            );
        }
        let t = sign_hs256(&json!({"sub":"42","nbf":NOW+10}), KEY);
        assert!(matches!(verify(&t, KEY, NOW), Err(TokenError::Invalid(_))));
    }
}
