//! A client-queue message the gateway only forwards, recognised without building it.
//!
//! Most of what the backend sends a client are answers and pushes the gateway passes on as
//! they are, keeping only their `correspondingMessageId` for the client's ack. Building the
//! whole message as a `serde_json::Value` (a map per object, a string per key and value, all
//! dropped again) cost 3k of a worker's 46k instructions per round trip (bench/callgrind.sh).
//! [`Forwarded::read`] reads only the fields the gateway acts on; a message that needs more (an end-of-life, a
//! login or connect answer) or that it cannot read that way (not an object, a repeated field,
//! a `cn` that is not a string) is left to the full reading, which decides as before.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// The fields of a message the gateway forwards.
#[derive(Debug, Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    cn: Option<Cow<'a, str>>,
    #[serde(rename = "EOL", default, borrow)]
    eol: Option<&'a RawValue>,
    #[serde(rename = "correspondingMessageId", default, borrow)]
    corresponding: Option<&'a RawValue>,
}

/// A message that is only forwarded: no end-of-life, no session change.
#[derive(Debug, PartialEq)]
pub struct Forwarded {
    /// Its `correspondingMessageId` as text (a string or a number), if it has one.
    pub corresponding_id: Option<String>,
}

impl Forwarded {
    /// `None`: the message needs the full reading (or is not one the gateway can forward).
    pub fn read(body: &[u8]) -> Option<Forwarded> {
        // A struct also reads from a JSON array, by position: objects only.
        if body.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        // Whole UTF-8, as the client's websocket needs it: serde_json does not check what it
        // skips.
        let body = std::str::from_utf8(body).ok()?;
        let head: Head<'_> = serde_json::from_str(body).ok()?;
        if head.eol.is_some() || head.cn.as_deref().is_some_and(acts_on) {
            return None;
        }
        let corresponding_id = match head.corresponding {
            None => None,
            Some(raw) => text(&serde_json::from_str(raw.get()).ok()?),
        };
        Some(Forwarded { corresponding_id })
    }
}

/// Class names whose messages change the session or end the client (see `Client::inspect` and
/// `is_eol`), by their relative name as the original's `processResponse` matches them.
fn acts_on(cn: &str) -> bool {
    matches!(
        cn.rsplit('.').next().unwrap_or(cn),
        "EOL"
            | "UserToken"
            | "AuthenticateUserAccountResponse"
            | "AuthenticateOAuthCodeResponse"
            | "AuthenticateOAuthAccessTokenResponse"
            | "AuthenticationResponse"
            | "ConnectResponse"
            | "ReconnectResponse"
    )
}

/// A string or number as text (ids and tokens come as either); anything else is no value.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Option<Forwarded> {
        Forwarded::read(body.as_bytes())
    }

    fn id(id: &str) -> Option<Forwarded> {
        Some(Forwarded {
            corresponding_id: Some(id.into()),
        })
    }

    #[test]
    fn an_answer_is_forwarded_with_its_corresponding_id() {
        assert_eq!(
            read(
                r#"{"cn":"com.percero.agents.sync.vo.FindByIdResponse","correspondingMessageId":"m-1","result":{"a":[1,{"b":"\u00e9"}]}}"#
            ),
            id("m-1")
        );
        assert_eq!(read(r#" {"correspondingMessageId":42}"#), id("42"));
        assert_eq!(read(r#"{"correspondingMessageId":1.5e3}"#), id("1500.0"));
    }

    #[test]
    fn a_push_without_an_id_is_forwarded_without_one() {
        let none = Some(Forwarded {
            corresponding_id: None,
        });
        assert_eq!(read(r#"{"cn":"PushUpdateResponse","objectList":[]}"#), none);
        assert_eq!(read(r#"{}"#), none);
        // As `text`: an empty string, null or an object is no id.
        assert_eq!(read(r#"{"correspondingMessageId":""}"#), none);
        assert_eq!(read(r#"{"correspondingMessageId":null}"#), none);
        assert_eq!(read(r#"{"correspondingMessageId":{"x":1}}"#), none);
        assert_eq!(read(r#"{"cn":null}"#), none);
    }

    #[test]
    fn messages_the_gateway_acts_on_need_the_full_reading() {
        for body in [
            r#"{"EOL":false}"#,
            r#"{"cn":"EOL"}"#,
            r#"{"cn":"com.percero.agents.sync.vo.EOL","clientId":"c"}"#,
            r#"{"cn":"com.percero.agents.auth.vo.UserToken","user":{"ID":"u"}}"#,
            r#"{"cn":"AuthenticateOAuthCodeResponse","result":{}}"#,
            r#"{"cn":"x.AuthenticateUserAccountResponse"}"#,
            r#"{"cn":"x.AuthenticateOAuthAccessTokenResponse"}"#,
            r#"{"cn":"x.AuthenticationResponse"}"#,
            r#"{"cn":"x.ConnectResponse","clientId":"c"}"#,
            r#"{"cn":"x.ReconnectResponse"}"#,
        ] {
            assert_eq!(read(body), None, "{body}");
        }
    }

    #[test]
    fn what_it_cannot_read_as_one_object_is_left_to_the_full_reading() {
        for body in [
            r#"["cn","PushUpdateResponse"]"#,
            r#""text""#,
            "",
            r#"{"cn":"A","cn":"x.UserToken"}"#,
            r#"{"correspondingMessageId":"a","correspondingMessageId":"b"}"#,
            r#"{"cn":7}"#,
            r#"{"cn":"A"} trailing"#,
            r#"{"cn":"A""#,
            "{\"cn\":\"A\",\"bad\":\"\u{1}\"}",
        ] {
            assert_eq!(read(body), None, "{body}");
        }
        assert_eq!(
            Forwarded::read(b"{\"cn\":\"A\",\"skipped\":\"\xff\"}"),
            None
        );
    }
}
