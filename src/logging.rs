//! Log set-up: every line says which process wrote it (`master`, `worker[slot]`, `standby`...)
//! and its pid. A standby worker's lines say `standby` until it is activated, then
//! `worker[slot]` ([`set_role`]).
//!
//! Line format: `<RFC 3339 UTC time> <LEVEL> <role> pid=<pid>: <message> <key=value>...`, e.g.
//! `2026-11-24T15:40:00.123456Z  INFO worker[1] pid=4242: ready listen=127.0.0.1:8080`.
//! The level can be changed at run time (SIGHUP re-reads `frontend.logLevel`).

use std::fmt;
use std::io::IsTerminal;
use std::sync::{OnceLock, RwLock};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogLevel;

/// Which process is logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Worker {
        slot: usize,
    },
    /// A gateway worker held in reserve (`cluster.standbyWorkers`), in no slot yet.
    Standby,
    /// The outbox relay, supervised by the master or run by hand.
    Relay,
    /// The demo agent (`demo.enabled`), supervised by the master.
    Demo,
    /// One-shot commands (`status`, `check-config`).
    Cli,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Master => f.write_str("master"),
            Role::Worker { slot } => write!(f, "worker[{slot}]"),
            Role::Standby => f.write_str("standby"),
            Role::Relay => f.write_str("relay"),
            Role::Demo => f.write_str("demo"),
            Role::Cli => f.write_str("cli"),
        }
    }
}

static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
/// The role every line names: set by [`init`], changed by [`set_role`].
static ROLE: RwLock<Role> = RwLock::new(Role::Cli);

/// Installs the global subscriber, writing to stderr. Call once per process.
pub fn init(role: Role, level: LogLevel) {
    set_role(role);
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .event_format(LineFormat {
            pid: std::process::id(),
        });
    if tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
        .is_ok()
    {
        let _ = LEVEL.set(handle);
    }
}

/// Changes the role this process's lines name (a standby worker taking a slot).
pub fn set_role(role: Role) {
    *ROLE
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = role;
}

fn role() -> Role {
    *ROLE.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Changes the level of this process's logs at run time.
pub fn set_level(level: LogLevel) {
    if let Some(handle) = LEVEL.get()
        && let Err(e) = handle.reload(filter_for(level))
    {
        tracing::warn!("cannot change the log level: {e}");
    }
}

fn filter_for(level: LogLevel) -> EnvFilter {
    // Our own crate at the configured level; dependencies only when they warn.
    EnvFilter::new(format!("warn,activestack_gateway={}", level.as_filter()))
}

struct LineFormat {
    pid: u32,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        let level = event.metadata().level();
        write!(writer, " {level:>5} {} pid={}: ", role(), self.pid)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// An error and its causes on one line: "a: b: c".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
