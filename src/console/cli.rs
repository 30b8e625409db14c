//! `activestack-gateway console [CONFIG] [COMMAND...]`: sends control commands to the running
//! cluster over Redis and prints the master's answers. With a command on the command line it
//! sends that one and exits (1 if the master refused it or did not answer); otherwise it reads
//! one command per line from stdin until `quit` or the end of input (or until nobody reads
//! stdout any more).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::channel::{ChannelError, Console};
use crate::config::Config;
use crate::output::{self, StdoutError};

/// How long the console waits for the master's answer to one command.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot start the console's event loop")]
    Runtime(#[source] std::io::Error),
    #[error("cannot reach the control channel")]
    Control(#[from] ChannelError),
    #[error("cannot print the answer")]
    Stdout(#[source] StdoutError),
}

/// Runs the console; returns whether every command was accepted.
pub fn run(args: Vec<String>) -> Result<bool, ConsoleError> {
    let (config_path, words) = match args.first() {
        Some(first) if Path::new(first).is_file() => (Some(PathBuf::from(first)), &args[1..]),
        _ => (None, &args[..]),
    };
    // The running master's Redis settings even from a file broken since it read it.
    let (config, problems) = Config::resolve_for_control(config_path.as_deref());
    if let Some(e) = problems {
        eprintln!("warning: the config file has problems (the running master keeps its own):\n{e}");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ConsoleError::Runtime)?;
    runtime.block_on(async move {
        let mut console = Console::connect(&config.gateway.redis).await?;
        if !words.is_empty() {
            return Ok(send(&mut console, &words.join(" ")).await?.accepted);
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
            let sent = send(&mut console, line).await?;
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

async fn send(console: &mut Console, line: &str) -> Result<Sent, ConsoleError> {
    match console.send(line, ANSWER_WAIT).await {
        Ok(answer) => {
            let unread = match output::print(&format!("{answer}\n")) {
                Ok(()) => false,
                Err(StdoutError::Closed) => true,
                Err(e) => return Err(ConsoleError::Stdout(e)),
            };
            let accepted = answer["ok"] == true;
            Ok(Sent { accepted, unread })
        }
        Err(e) => {
            eprintln!("activestack-gateway console: {e}");
            Ok(Sent {
                accepted: false,
                unread: false,
            })
        }
    }
}
