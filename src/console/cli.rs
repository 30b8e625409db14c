//! `activestack-gateway console [--json] [CONFIG] [COMMAND...]`: sends control commands to the
//! running cluster over Redis and prints the master's answers. With a command on the command
//! line it sends that one and exits (1 if the master refused it or did not answer); otherwise it
//! reads one command per line from stdin until `quit` or the end of input (or until nobody reads
//! stdout any more).
//!
//! Answers are printed for a person at a terminal ([`super::human`]) and as one line of JSON
//! each otherwise, or always with `--json`: scripts that read the console's output through a
//! pipe get the JSON they always got.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::channel::{ChannelError, Console};
use crate::config::Config;
use crate::output::{self, StdoutError};

/// How long the console waits for the master's answer to one command.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{}: no such config file", path.display())]
    NoConfig { path: PathBuf },
    #[error("cannot start the console's event loop")]
    Runtime(#[source] std::io::Error),
    #[error("cannot reach the control channel")]
    Control(#[from] ChannelError),
    #[error("cannot print the answer")]
    Stdout(#[source] StdoutError),
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line of JSON per answer, as the master sent it.
    Json,
    /// For a person ([`super::human`]).
    Human,
}

impl Format {
    /// JSON if asked for (`--json`) or if stdout is not a terminal; else for a person.
    pub fn choose(json: bool) -> Format {
        if json || !std::io::stdout().is_terminal() {
            Format::Json
        } else {
            Format::Human
        }
    }
}

/// Runs the console; returns whether every command was accepted. `json`: `--json` was given
/// before the arguments (it is also taken right after CONFIG).
pub fn run(args: Vec<String>, json: bool) -> Result<bool, ConsoleError> {
    let (config_path, mut words) = match args.first() {
        Some(first) if Path::new(first).is_file() => (Some(PathBuf::from(first)), &args[1..]),
        // No command word has a `/` or ends so: a config file that is not there.
        Some(first) if first.contains('/') || first.ends_with(".properties") => {
            return Err(ConsoleError::NoConfig {
                path: PathBuf::from(first),
            });
        }
        _ => (None, &args[..]),
    };
    let mut json = json;
    while let Some(rest) = words.strip_prefix(&["--json".to_string()]) {
        json = true;
        words = rest;
    }
    let format = Format::choose(json);
    // The running master's Redis settings even from a file broken since it read it.
    let (config, problems) = Config::resolve_for_control(config_path.as_deref());
    if let Some(e) = problems {
        output::eprint(&format!(
            "warning: the config file has problems (the running master keeps its own):\n{e}\n"
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ConsoleError::Runtime)?;
    runtime.block_on(async move {
        let mut console = Console::connect(&config.gateway.redis).await?;
        if !words.is_empty() {
            return Ok(send(&mut console, &words.join(" "), format).await?.accepted);
        }
        let mut all_ok = true;
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line.eq_ignore_ascii_case("quit") {
                break;
            }
            let sent = send(&mut console, line, format).await?;
            all_ok &= sent.accepted;
            if sent.unread {
                break;
            }
        }
        Ok(all_ok)
    })
}

/// What became of one command.
struct Sent {
    /// The master answered and accepted it.
    accepted: bool,
    /// Nobody reads stdout any more: the answers go nowhere.
    unread: bool,
}

async fn send(console: &mut Console, line: &str, format: Format) -> Result<Sent, ConsoleError> {
    match console.send(line, ANSWER_WAIT).await {
        Ok(answer) => {
            let text = match format {
                Format::Json => format!("{answer}\n"),
                Format::Human => super::human::render(&answer),
            };
            let unread = match output::print(&text) {
                Ok(()) => false,
                Err(StdoutError::Closed) => true,
                Err(e) => return Err(ConsoleError::Stdout(e)),
            };
            let accepted = answer["ok"] == true;
            Ok(Sent { accepted, unread })
        }
        Err(e) => {
            output::eprint(&format!("activestack-gateway console: {e}\n"));
            Ok(Sent {
                accepted: false,
                unread: false,
            })
        }
    }
}
