//! What the command line prints on stdout (check-config, status, console, nats-setup), written
//! so that a reader that went away (EPIPE: `| head -1`, `| true`) ends the output quietly and
//! any other failure (`> /dev/full`) is an error naming stdout, never a panic as `println!`
//! would. Messages to stderr ([`eprint`]) are written the same way, and a stderr that cannot
//! take them loses them: `eprintln!` would panic there (`2>&1 | head -1`).

use std::io::{self, Write};

/// Why stdout could not take the output.
#[derive(Debug, thiserror::Error)]
pub enum StdoutError {
    /// Nobody reads it any more (EPIPE): not a failure of the command; stop printing quietly.
    #[error("stdout was closed by its reader")]
    Closed,
    #[error("cannot write to stdout")]
    Write(#[source] io::Error),
}

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => StdoutError::Closed,
            _ => StdoutError::Write(e),
        })
}

/// Writes `text` to stderr; if stderr cannot take it (its reader went away), it is lost, never
/// a panic.
pub fn eprint(text: &str) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}
