//! Command line of activestack-gateway: parses arguments and calls into the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use activestack_gateway::config::{Config, Loaded, LogLevel, Origin, RelayConfig};
use activestack_gateway::console::cli::ConsoleError;
use activestack_gateway::logging::{self, Role};
use activestack_gateway::output::{self, StdoutError};
use activestack_gateway::status::{query_status, render_table};
use activestack_gateway::supervisor;
use activestack_gateway::tls::TlsFiles;
use activestack_gateway::worker::{self, IPC_FD, LISTEN_FD, WorkerArgs, WorkerKind};

/// Exit code for a config file that cannot be read or is invalid.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "activestack-gateway",
    version,
    about = "A pre-fork cluster of real-time gateway workers, supervised by one master process.",
    long_about = "A pre-fork cluster of real-time gateway workers, supervised by one master process.\n\n\
        The master binds the listen socket once, starts cluster.workerCount worker processes that \
        share it, sends them heartbeats, and replaces any that hang, crash or outgrow their memory \
        limits. Configuration is a Java-style .properties file (see conf/gateway.properties).\n\n\
        Signals to the master: SIGHUP re-reads the config and replaces the workers without \
        dropping connections; SIGTERM/SIGINT drain and stop; SIGQUIT stops at once; SIGTTIN / \
        SIGTTOU add / remove one worker."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cluster: a master and its workers, in the foreground.
    #[command(alias = "s")]
    Server {
        /// Config file. Without it: /etc/activestack-gateway/gateway.properties if it exists,
        /// else the built-in defaults.
        config: Option<PathBuf>,
    },
    /// Check a config file and print the effective configuration (every key, its value and
    /// where it came from). Exit code 2 if the file is invalid.
    CheckConfig {
        /// Config file to check.
        config: PathBuf,
    },
    /// Show the running cluster's workers (asks the master over cluster.controlSocket).
    Status {
        /// Config file of the running cluster, to find its control socket.
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send control commands to the running cluster over Redis (gateway.redis.*) and print the
    /// answers: restart [immediate|graceful] [ms], shutdown CODE [immediate|graceful] [ms],
    /// loglevel LEVEL, clientmessageresendinterval MS, clientcount, status, push USER|* JSON.
    /// Reads commands from stdin (until `quit`) unless one is given as arguments. Answers are
    /// sentences at a terminal, one line of JSON each otherwise (or with --json).
    #[command(alias = "c")]
    Console {
        /// Print each answer as one line of JSON, even at a terminal.
        #[arg(long)]
        json: bool,
        /// [CONFIG] [COMMAND...]: a first argument naming an existing file is the config.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the MongoDB outbox -> NATS JetStream relay in the foreground, without the cluster
    /// (with relay.enabled=true the master runs it for you). SIGTERM/SIGINT finish in-flight
    /// publishes, save the checkpoint and exit.
    Relay {
        /// Config file (its relay.* keys).
        config: Option<PathBuf>,
        /// Read the relay's settings from the seed deployment's config.toml instead.
        #[arg(long, value_name = "FILE")]
        config_toml: Option<PathBuf>,
    },
    /// Make sure the JetStream streams the relay publishes to exist with the expected settings
    /// (subjects events.>, file storage, no limits, 2-minute duplicate window, 1 replica), then
    /// exit. An existing stream with other settings is reported, never changed (exit code 1).
    NatsSetup {
        /// Config file (its relay.* keys).
        config: Option<PathBuf>,
        /// Read the relay's settings from the seed deployment's config.toml instead.
        #[arg(long, value_name = "FILE")]
        config_toml: Option<PathBuf>,
    },
    /// Run one worker process (started by the master, not by hand).
    #[command(hide = true)]
    Worker {
        #[arg(long, default_value_t = 0)]
        slot: usize,
        /// Run the outbox relay instead of a gateway worker.
        #[arg(long, conflicts_with_all = ["standby", "demo"])]
        relay: bool,
        /// Run the demo agent instead of a gateway worker.
        #[arg(long, conflicts_with = "standby")]
        demo: bool,
        /// Start as the standby gateway worker: initialise, then wait to be given a slot.
        #[arg(long)]
        standby: bool,
        #[arg(long, default_value_t = LISTEN_FD)]
        listen_fd: i32,
        #[arg(long, default_value_t = IPC_FD)]
        ipc_fd: i32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Processes whose stderr is a log (the journal's) log their failure too; a one-shot
    // command's user gets the one plain line.
    let logs = matches!(
        cli.command,
        Command::Server { .. } | Command::Relay { .. } | Command::Worker { .. }
    );
    let result = match cli.command {
        Command::Server { config } => server(config),
        Command::CheckConfig { config } => check_config(&config),
        Command::Status { config, json } => status(config.as_deref(), json),
        Command::Console { json, args } => {
            logging::init(Role::Cli, LogLevel::Warn);
            match activestack_gateway::console::cli::run(args, json) {
                Ok(true) => Ok(ExitCode::SUCCESS),
                Ok(false) => Ok(ExitCode::FAILURE),
                Err(e @ ConsoleError::NoConfig { .. }) => {
                    output::eprint(&format!("activestack-gateway: {e}\n"));
                    Ok(ExitCode::from(EXIT_CONFIG))
                }
                Err(e) => Err(anyhow::Error::new(e).context("console failed")),
            }
        }
        Command::Relay {
            config,
            config_toml,
        } => relay(config.as_deref(), config_toml.as_deref()),
        Command::NatsSetup {
            config,
            config_toml,
        } => nats_setup(config.as_deref(), config_toml.as_deref()),
        Command::Worker {
            slot,
            relay,
            demo,
            standby,
            listen_fd,
            ipc_fd,
        } => {
            let kind = match (relay, demo, standby) {
                (true, _, _) => WorkerKind::Relay,
                (_, true, _) => WorkerKind::Demo,
                (_, _, true) => WorkerKind::Standby,
                _ => WorkerKind::Gateway { slot },
            };
            worker::run(WorkerArgs {
                kind,
                listen_fd,
                ipc_fd,
            })
            .map(|()| ExitCode::SUCCESS)
            .with_context(|| match kind {
                WorkerKind::Gateway { slot } => format!("worker {slot} failed"),
                WorkerKind::Standby => "worker (started as the standby) failed".to_string(),
                WorkerKind::Relay => "the relay failed".to_string(),
                WorkerKind::Demo => "the demo agent failed".to_string(),
            })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(stdout) = e.chain().find_map(|e| e.downcast_ref::<StdoutError>()) {
                return stdout_failed(stdout);
            }
            if logs {
                tracing::error!("{e:#}");
            }
            output::eprint(&format!("activestack-gateway: {e:#}\n"));
            ExitCode::FAILURE
        }
    }
}

/// A command whose output could not be printed: nobody reading it any more (EPIPE) is not a
/// failure, so it ends quietly; anything else is exit code 1 with the reason.
fn stdout_failed(e: &StdoutError) -> ExitCode {
    match e {
        StdoutError::Closed => ExitCode::SUCCESS,
        StdoutError::Write(_) => {
            output::eprint(&format!(
                "activestack-gateway: {}\n",
                logging::error_chain(e)
            ));
            ExitCode::FAILURE
        }
    }
}

/// The config named on the command line (or the default one), or exit code 2 with the reason.
fn load_config(path: Option<&Path>) -> Result<Loaded, ExitCode> {
    Config::resolve(path).map_err(|e| {
        output::eprint(&format!("activestack-gateway: {e}\n"));
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The TLS files the config names (with `frontend.ssl`), read and checked, and the check that
/// the workers can be given both; or exit code 2 with the key, file and problem named.
fn load_tls(config: &Config) -> Result<Option<TlsFiles>, ExitCode> {
    let refuse = |why: String| {
        output::eprint(&format!("activestack-gateway: {why}\n"));
        ExitCode::from(EXIT_CONFIG)
    };
    let tls = TlsFiles::load(config).map_err(|e| refuse(logging::error_chain(&e)))?;
    config
        .check_worker_init(tls.as_ref())
        .map_err(|e| refuse(logging::error_chain(&e)))?;
    Ok(tls)
}

fn server(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let loaded = match load_config(path.as_deref()) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let tls = match load_tls(&loaded.config) {
        Ok(tls) => tls,
        Err(code) => return Ok(code),
    };
    logging::init(Role::Master, loaded.config.frontend.log_level);
    supervisor::run(loaded, tls, path)?;
    Ok(ExitCode::SUCCESS)
}

fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let loaded = match load_config(Some(path)) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    for warning in &loaded.warnings {
        output::eprint(&format!("warning: {warning}\n"));
    }
    if let Err(code) = load_tls(&loaded.config) {
        return Ok(code);
    }
    let entries = loaded.config.entries();
    let width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
    let mut text = format!("# effective configuration from {}\n", path.display());
    for entry in entries {
        let origin = match entry.origin {
            Origin::Default => "default".to_string(),
            Origin::File { line } => format!("line {line}"),
        };
        text.push_str(&format!(
            "{:<width$} = {:<30} # {origin}\n",
            entry.key, entry.value
        ));
    }
    output::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn status(path: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    logging::init(Role::Cli, LogLevel::Warn);
    // The running master may hold an older, valid config than the file now on disk: find its
    // socket even if the file has since been broken, and say so.
    let (config, problems) = Config::resolve_for_control(path);
    if let Some(e) = problems {
        output::eprint(&format!(
            "warning: the config file has problems (the running master keeps its own):\n{e}\n"
        ));
    }
    let report = query_status(&config.cluster.control_socket)?;
    if json {
        output::print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        output::print(&render_table(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The relay's settings and log level: from the seed's config.toml if given, else from the
/// properties file; exit code 2 if either is invalid.
fn relay_config(
    path: Option<&Path>,
    toml: Option<&Path>,
) -> Result<(RelayConfig, LogLevel), ExitCode> {
    if let Some(toml) = toml {
        let relay = RelayConfig::from_seed_toml(toml).map_err(|e| {
            output::eprint(&format!("activestack-gateway: {e}\n"));
            ExitCode::from(EXIT_CONFIG)
        })?;
        let level = relay
            .log_level
            .as_deref()
            .and_then(|level| level.parse().ok())
            .unwrap_or(LogLevel::Info);
        return Ok((relay, level));
    }
    let loaded = load_config(path)?;
    for warning in &loaded.warnings {
        output::eprint(&format!("warning: {warning}\n"));
    }
    Ok((loaded.config.relay, loaded.config.frontend.log_level))
}

fn relay(path: Option<&Path>, toml: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (config, level) = match relay_config(path, toml) {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    logging::init(Role::Relay, level);
    let runtime = one_thread_runtime()?;
    runtime.block_on(async move {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let mut signals = signal_hook_tokio::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ])?;
        let mut relay = tokio::spawn(activestack_gateway::relay::run(config, shutdown));
        loop {
            tokio::select! {
                finished = &mut relay => {
                    finished??;
                    return Ok(ExitCode::SUCCESS);
                }
                Some(_) = futures_util::StreamExt::next(&mut signals) => {
                    tracing::info!("stopping: finishing in-flight publishes, saving the checkpoint");
                    let _ = stop.send(true);
                }
            }
        }
    })
}

fn nats_setup(path: Option<&Path>, toml: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (config, level) = match relay_config(path, toml) {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    logging::init(Role::Cli, level);
    let runtime = one_thread_runtime()?;
    let status = runtime.block_on(activestack_gateway::relay::ensure_stream(&config))?;
    output::print(&format!(
        "stream {}: {:?}\nstream {}: {:?}\n",
        config.stream, status.events, config.dead_letter_stream, status.dead_letter
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The event loop of a one-shot command: one thread is all these need.
fn one_thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
