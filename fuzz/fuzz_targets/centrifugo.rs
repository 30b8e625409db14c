//! Centrifugo client commands (JSON, one object per line of a frame, as `/connection/websocket`
//! reads them), the channel rules applied to the channels they name, and connection tokens
//! (the input as a token, and as claims signed with the configured secret).
#![no_main]

use activestack_gateway::config::RealtimeConfig;
use activestack_gateway::realtime::channel::{self, ChannelError};
use activestack_gateway::realtime::jwt;
use activestack_gateway::realtime::protocol::{Command, Method, split_frame};
use libfuzzer_sys::fuzz_target;
// Raw JSON from the decoders is checked for its syntax only: a number beyond f64 (`1e999`) is
// valid JSON that serde_json refuses to make a `Value` of (the framings answer it with a
// protocol error, which is what the first runs of these targets found).
use serde::de::IgnoredAny;

const SECRET: &[u8] = b"fuzz secret";
const NOW_S: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    match mode % 3 {
        0 => commands(&text),
        1 => {
            // A token the fuzzer made up cannot carry our signature.
            assert!(jwt::verify(&text, SECRET, NOW_S).is_err());
        }
        _ => {
            let Ok(claims) = serde_json::from_str::<serde_json::Value>(&text) else {
                return;
            };
            let token = jwt::sign_hs256(&claims, SECRET);
            if let Ok(c) = jwt::verify(&token, SECRET, NOW_S) {
                // `exp` may have a fraction, which the expiry time drops.
                assert!(c.expires_at.is_none_or(|at| at >= NOW_S));
                if let Some(info) = c.info {
                    serde_json::from_str::<IgnoredAny>(info.get()).expect("info is JSON");
                }
            }
            assert!(jwt::verify(&token, b"another secret", NOW_S).is_err());
        }
    }
});

fn commands(frame: &str) {
    let config = RealtimeConfig::default();
    for line in split_frame(frame) {
        assert!(!line.trim().is_empty());
        let Ok(command) = Command::parse(line) else {
            continue;
        };
        let Command::Call { id, method } = command else {
            continue;
        };
        assert_ne!(id, 0, "a call is answered by its id");
        let channel = match &method {
            Method::Subscribe(r) => r.channel.as_str(),
            Method::Unsubscribe(r) | Method::Presence(r) | Method::PresenceStats(r) => {
                r.channel.as_str()
            }
            Method::Publish(r) => {
                if let Some(data) = &r.data {
                    serde_json::from_str::<IgnoredAny>(data.get()).expect("data is JSON");
                }
                r.channel.as_str()
            }
            Method::History(r) => r.channel.as_str(),
            Method::Connect(r) => {
                let _ = jwt::verify(&r.token, SECRET, NOW_S);
                continue;
            }
            Method::Refresh(r) => {
                let _ = jwt::verify(&r.token, SECRET, NOW_S);
                continue;
            }
            Method::Unsupported(_) => continue,
        };
        match channel::namespace(&config, channel) {
            Ok(ns) => {
                let user = channel.rsplit_once('#').map_or("42", |(_, users)| users);
                let may = channel::may_subscribe(ns, channel, user);
                assert!(!may || !channel.starts_with('$'));
            }
            Err(ChannelError::BadName) => {
                assert!(channel.is_empty() || channel.len() > channel::MAX_LENGTH);
            }
            Err(ChannelError::UnknownNamespace) => assert!(channel.contains(':')),
        }
    }
}
