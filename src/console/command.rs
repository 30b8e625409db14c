//! Console command lines -> [`Command`] (parsed, bounded) -> [`Verb`] (authorised: the shutdown
//! code checked), what the master acts on.
//!
//! Commands: `restart [immediate|graceful] [ms]`, `shutdown CODE [immediate|graceful] [ms]`,
//! `loglevel LEVEL`, `clientmessageresendinterval MS`, `clientcount`, `status`, and
//! `push USERID|* JSON` (emits `push` with the JSON object to one user's sockets or to every
//! client, on every worker).

use std::time::Duration;

use serde_json::Value;

use crate::config::{LogLevel, MAX_DURATION};
use crate::gateway::Audience;
use crate::ipc::{self, IpcError, MAX_FRAME, ToWorker};

/// Default pause between hard-stopped workers in `restart immediate`.
pub const DEFAULT_RESTART_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("unknown command {0:?}")]
    Unknown(String),
    #[error("{0}")]
    Usage(&'static str),
    #[error(
        "{what} {ms} ms is over the limit of {} ms (24 hours, as in the config)",
        MAX_DURATION.as_millis()
    )]
    TooLong { what: &'static str, ms: u64 },
    #[error(
        "push refused: it would be a {len}-byte message to the worker, over the {MAX_FRAME}-byte \
         limit of the master <-> worker channel; send less data"
    )]
    PushTooLarge { len: usize },
    #[error("push refused: its data cannot be encoded")]
    PushEncode(#[source] IpcError),
    #[error("wrong shutdown code")]
    WrongCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Immediate,
    Graceful,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Immediate => "immediate",
            Mode::Graceful => "graceful",
        }
    }
}

/// A command line as parsed: every number within its bounds, the shutdown code not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Restart {
        mode: Mode,
        interval: Option<Duration>,
    },
    Shutdown {
        code: String,
        mode: Mode,
        timeout: Option<Duration>,
    },
    LogLevel(LogLevel),
    ResendInterval(Duration),
    ClientCount,
    Status,
    Push {
        audience: Audience,
        data: Value,
    },
}

/// What the master is asked to do, once the console has checked the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// Hard-stop every worker, one every `interval`; their slots start new ones.
    RestartImmediate {
        interval: Duration,
    },
    /// Replace every worker as a reload would; the old ones drain for `drain` (default:
    /// `cluster.drainTimeout`).
    RestartGraceful {
        drain: Option<Duration>,
    },
    /// Stop the cluster; a graceful stop drains for `drain` (default: `cluster.drainTimeout`).
    Stop {
        mode: Mode,
        drain: Option<Duration>,
    },
    LogLevel(LogLevel),
    ResendInterval(Duration),
    ClientCount,
    Status,
    Push {
        audience: Audience,
        data: Value,
    },
}

impl Command {
    /// Parses one command line. The command word and mode are case-insensitive; the shutdown
    /// code is compared as written.
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        let mut words = line.split_whitespace();
        let word = words.next().unwrap_or("").to_ascii_lowercase();
        let rest: Vec<&str> = words.collect();
        let mode = |w: Option<&&str>| match w.map(|w| w.to_ascii_lowercase()) {
            Some(m) if m == "immediate" => Mode::Immediate,
            _ => Mode::Graceful,
        };
        match word.as_str() {
            "restart" => {
                const USAGE: &str = "usage: restart [immediate|graceful] [ms]";
                // `restart 500` = graceful, 500 ms.
                let (mode_word, ms_word) = match rest.first() {
                    Some(w) if w.parse::<u64>().is_ok() => (None, rest.first()),
                    _ => (rest.first(), rest.get(1)),
                };
                Ok(Command::Restart {
                    mode: mode(mode_word),
                    interval: millis(ms_word, "restart interval", USAGE)?,
                })
            }
            "shutdown" => {
                const USAGE: &str = "usage: shutdown CODE [immediate|graceful] [ms]";
                let code = rest.first().ok_or(CommandError::Usage(USAGE))?;
                Ok(Command::Shutdown {
                    code: (*code).to_string(),
                    mode: mode(rest.get(1)),
                    timeout: millis(rest.get(2), "shutdown timeout", USAGE)?,
                })
            }
            "loglevel" => {
                let level =
                    rest.first()
                        .and_then(|l| l.parse().ok())
                        .ok_or(CommandError::Usage(
                            "usage: loglevel error|warn|info|debug|trace",
                        ))?;
                Ok(Command::LogLevel(level))
            }
            "clientmessageresendinterval" => {
                const USAGE: &str = "usage: clientmessageresendinterval MS (> 0)";
                match millis(rest.first(), "clientmessageresendinterval", USAGE)? {
                    Some(d) if !d.is_zero() => Ok(Command::ResendInterval(d)),
                    _ => Err(CommandError::Usage(USAGE)),
                }
            }
            "push" => {
                const USAGE: &str = "usage: push USERID|* {JSON object}";
                // The JSON is the rest of the line as written, spaces included.
                let after_word = line.trim_start()[word.len()..].trim_start();
                let (target, json) = after_word
                    .split_once(char::is_whitespace)
                    .ok_or(CommandError::Usage(USAGE))?;
                let data = match serde_json::from_str(json.trim()) {
                    Ok(data @ Value::Object(_)) => data,
                    _ => return Err(CommandError::Usage(USAGE)),
                };
                let audience = match target {
                    "*" => Audience::All,
                    user => Audience::User(user.to_string()),
                };
                fits_a_frame(audience, data)
            }
            "clientcount" => Ok(Command::ClientCount),
            "status" => Ok(Command::Status),
            _ => Err(CommandError::Unknown(word)),
        }
    }

    /// The command as it may be logged (never the shutdown code).
    pub fn redacted(&self) -> String {
        match self {
            Command::Shutdown { mode, timeout, .. } => {
                format!("shutdown *** {mode:?} {timeout:?}")
            }
            other => format!("{other:?}"),
        }
    }

    /// The verb for the master, once allowed: `shutdown` needs `shutdown_code`
    /// (`frontend.shutdownCode`; none configured: no shutdown from the console).
    pub fn authorize(self, shutdown_code: Option<&str>) -> Result<Verb, CommandError> {
        Ok(match self {
            Command::Restart {
                mode: Mode::Immediate,
                interval,
            } => Verb::RestartImmediate {
                interval: interval.unwrap_or(DEFAULT_RESTART_INTERVAL),
            },
            Command::Restart {
                mode: Mode::Graceful,
                interval,
            } => Verb::RestartGraceful { drain: interval },
            Command::Shutdown {
                code,
                mode,
                timeout,
            } => {
                if !same_code(&code, shutdown_code.unwrap_or("")) {
                    return Err(CommandError::WrongCode);
                }
                Verb::Stop {
                    mode,
                    drain: timeout,
                }
            }
            Command::LogLevel(level) => Verb::LogLevel(level),
            Command::ResendInterval(interval) => Verb::ResendInterval(interval),
            Command::ClientCount => Verb::ClientCount,
            Command::Status => Verb::Status,
            Command::Push { audience, data } => Verb::Push { audience, data },
        })
    }
}

/// An optional number of milliseconds, at most [`MAX_DURATION`]: a drain of years would keep
/// old workers past every later reload.
fn millis(
    word: Option<&&str>,
    what: &'static str,
    usage: &'static str,
) -> Result<Option<Duration>, CommandError> {
    let Some(word) = word else {
        return Ok(None);
    };
    let ms = word
        .parse::<u64>()
        .map_err(|_| CommandError::Usage(usage))?;
    let duration = Duration::from_millis(ms);
    if duration > MAX_DURATION {
        return Err(CommandError::TooLong { what, ms });
    }
    Ok(Some(duration))
}

/// A push whose message to a worker fits one frame of the master <-> worker channel: a larger
/// one would be refused there, after the console had been told it was handed on.
fn fits_a_frame(audience: Audience, data: Value) -> Result<Command, CommandError> {
    // The largest id a push can have, so that the check holds for the real message.
    let msg = ToWorker::Push {
        id: u64::MAX,
        audience,
        data,
    };
    match ipc::encode(&msg) {
        Ok(_) => {}
        Err(IpcError::FrameTooLarge { len }) => return Err(CommandError::PushTooLarge { len }),
        Err(e) => return Err(CommandError::PushEncode(e)),
    }
    let ToWorker::Push { audience, data, .. } = msg else {
        unreachable!("built as a push above")
    };
    Ok(Command::Push { audience, data })
}

/// Compares in time independent of where the strings differ; an empty expected code matches
/// nothing.
fn same_code(given: &str, expected: &str) -> bool {
    !expected.is_empty()
        && given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_with_arguments() {
        assert_eq!(
            Command::parse("RESTART immediate 250").unwrap(),
            Command::Restart {
                mode: Mode::Immediate,
                interval: Some(Duration::from_millis(250))
            }
        );
        assert_eq!(
            Command::parse("restart").unwrap(),
            Command::Restart {
                mode: Mode::Graceful,
                interval: None
            }
        );
        assert_eq!(
            Command::parse("restart 100").unwrap(),
            Command::Restart {
                mode: Mode::Graceful,
                interval: Some(Duration::from_millis(100))
            }
        );
        assert_eq!(
            Command::parse("shutdown PaSs immediate").unwrap(),
            Command::Shutdown {
                code: "PaSs".into(),
                mode: Mode::Immediate,
                timeout: None
            }
        );
        assert!(
            !Command::parse("shutdown PaSs")
                .unwrap()
                .redacted()
                .contains("PaSs")
        );
        assert_eq!(
            Command::parse("loglevel verbose").unwrap(),
            Command::LogLevel(LogLevel::Debug)
        );
        assert_eq!(
            Command::parse("clientmessageresendinterval 1000").unwrap(),
            Command::ResendInterval(Duration::from_secs(1))
        );
        assert_eq!(Command::parse("clientcount").unwrap(), Command::ClientCount);
        assert_eq!(
            Command::parse(r#"PUSH 42 {"cn": "Notice", "text": "a b"}"#).unwrap(),
            Command::Push {
                audience: Audience::User("42".into()),
                data: serde_json::json!({"cn": "Notice", "text": "a b"})
            }
        );
        assert!(matches!(
            Command::parse(r#"push * {"cn":"Notice"}"#),
            Ok(Command::Push {
                audience: Audience::All,
                ..
            })
        ));
        assert!(Command::parse("push 42").is_err());
        assert!(Command::parse("push 42 [1]").is_err());
        assert!(Command::parse("push 42 {oops").is_err());
        assert!(Command::parse("loglevel loud").is_err());
        assert!(Command::parse("clientmessageresendinterval 0").is_err());
        assert!(Command::parse("shutdown").is_err());
        assert!(matches!(
            Command::parse("reboot"),
            Err(CommandError::Unknown(_))
        ));
    }

    #[test]
    fn numbers_are_bounded_as_in_the_config() {
        for line in [
            "restart graceful 99999999999",
            "restart 86400001",
            "restart immediate 86400001",
            "shutdown code graceful 86400001",
            "clientmessageresendinterval 86400001",
        ] {
            let err = Command::parse(line).unwrap_err();
            assert!(matches!(err, CommandError::TooLong { .. }), "{line}: {err}");
            assert!(err.to_string().contains("24 hours"), "{err}");
        }
        assert_eq!(
            Command::parse("restart graceful 99999999999")
                .unwrap_err()
                .to_string(),
            "restart interval 99999999999 ms is over the limit of 86400000 ms (24 hours, as in \
             the config)"
        );
        assert!(Command::parse("restart graceful 86400000").is_ok());
    }

    #[test]
    fn a_push_larger_than_a_frame_is_refused_here() {
        let big = "x".repeat(MAX_FRAME);
        let err = Command::parse(&format!(r#"push * {{"text":"{big}"}}"#)).unwrap_err();
        assert!(matches!(err, CommandError::PushTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("1048576-byte limit"), "{err}");
        let fits = "x".repeat(MAX_FRAME - 200);
        assert!(Command::parse(&format!(r#"push 42 {{"text":"{fits}"}}"#)).is_ok());
    }

    #[test]
    fn shutdown_needs_the_configured_code() {
        let shutdown = || Command::parse("shutdown Sesame immediate").unwrap();
        assert!(matches!(
            shutdown().authorize(Some("Sesame")),
            Ok(Verb::Stop {
                mode: Mode::Immediate,
                drain: None
            })
        ));
        for code in [Some("sesame"), Some("Sesame!"), Some(""), None] {
            assert!(matches!(
                shutdown().authorize(code),
                Err(CommandError::WrongCode)
            ));
        }
        assert_eq!(
            Command::parse("restart immediate")
                .unwrap()
                .authorize(None)
                .unwrap(),
            Verb::RestartImmediate {
                interval: DEFAULT_RESTART_INTERVAL
            }
        );
    }
}
