//! `activestack-gateway console [CONFIG] [COMMAND...]`: sends control commands to the running
//! cluster over Redis and prints the master's answers. With a command on the command line it
//! sends that one and exits (1 if the master refused it or did not answer); otherwise it reads
//! one command per line from stdin until `quit` or the end of input.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::channel::{ChannelError, Console};
use crate::config::Config;

/// How long the console waits for the master's answer to one command.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot read the config: {0}")]
    Config(String),
    #[error("cannot start the console's event loop")]
    Runtime(#[source] std::io::Error),
    #[error("cannot reach the control channel")]
    Control(#[from] ChannelError),
}

/// Runs the console; returns whether every command was accepted.
pub fn run(args: Vec<String>) -> Result<bool, ConsoleError> {
    let (config_path, words) = match args.first() {
        Some(first) if Path::new(first).is_file() => (Some(PathBuf::from(first)), &args[1..]),
        _ => (None, &args[..]),
    };
    let config = Config::resolve(config_path.as_deref())
        .map_err(|e| ConsoleError::Config(e.to_string()))?
        .config;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ConsoleError::Runtime)?;
    runtime.block_on(async move {
        let mut console = Console::connect(&config.gateway.redis).await?;
        if !words.is_empty() {
            return Ok(send(&mut console, &words.join(" ")).await);
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
            all_ok &= send(&mut console, line).await;
        }
        Ok(all_ok)
    })
}

async fn send(console: &mut Console, line: &str) -> bool {
    match console.send(line, ANSWER_WAIT).await {
        Ok(answer) => {
            println!("{answer}");
            answer["ok"] == true
        }
        Err(e) => {
            eprintln!("activestack-gateway console: {e}");
            false
        }
    }
}
