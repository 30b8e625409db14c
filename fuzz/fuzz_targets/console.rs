//! Console command lines (from the Redis control channel): parsed, bounded and authorised.
//! A push that parses fits a master -> worker frame; the redacted form never shows the
//! shutdown code; only the configured code authorises a shutdown.
#![no_main]

use activestack_gateway::config::MAX_DURATION;
use activestack_gateway::console::{Command, Verb};
use activestack_gateway::ipc::{MAX_FRAME, ToWorker, encode};
use libfuzzer_sys::fuzz_target;

const CODE: &str = "fuzz-code";

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let Ok(command) = Command::parse(&line) else {
        return;
    };
    let redacted = command.redacted();
    match &command {
        Command::Shutdown { mode, timeout, .. } => {
            // Only what is not the code.
            assert_eq!(redacted, format!("shutdown *** {mode:?} {timeout:?}"));
            assert!(timeout.is_none_or(|t| t <= MAX_DURATION));
        }
        Command::Restart { interval, .. } => assert!(interval.is_none_or(|t| t <= MAX_DURATION)),
        Command::ResendInterval(d) => assert!(!d.is_zero() && *d <= MAX_DURATION),
        Command::Push { audience, data } => {
            assert!(data.is_object());
            let frame = encode(&ToWorker::Push {
                id: u64::MAX,
                audience: audience.clone(),
                data: data.clone(),
            })
            .expect("a parsed push fits a frame");
            assert!(frame.len() <= MAX_FRAME + 4);
        }
        _ => {}
    }
    let shutdown = matches!(command, Command::Shutdown { .. });
    let right = match &command {
        Command::Shutdown { code, .. } => code == CODE,
        _ => false,
    };
    match command.clone().authorize(Some(CODE)) {
        Ok(Verb::Stop { .. }) => assert!(shutdown && right),
        Ok(_) => assert!(!shutdown),
        Err(_) => assert!(shutdown && !right),
    }
    assert!(!matches!(command.authorize(None), Ok(Verb::Stop { .. })));
});
