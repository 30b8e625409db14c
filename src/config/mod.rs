//! `gateway.properties` (the original Node.js ActiveStack gateway's keys) -> a typed, validated
//! [`Config`].
//!
//! Every known key, with its default, unit and description, is in one table (`keys.rs`); it
//! drives parsing, validation, unknown-key suggestions, [`Config::entries`] and the shipped
//! `conf/gateway.properties` ([`sample_file`]).

mod error;
mod keys;
mod properties;
mod realtime;
mod relay;
mod reload;
mod worker_init;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{ConfigError, ConfigWarning, Problem};
pub use realtime::{CentrifugoConfigError, NamespaceConfig, RealtimeConfig};
pub use relay::{RelayConfig, SeedConfigError};
pub use reload::{LostKey, ReloadRefused};
pub use worker_init::WorkerInitError;

/// Where the gateway looks for its config when none is named on the command line.
pub const DEFAULT_PATH: &str = "/etc/activestack-gateway/gateway.properties";

/// The longest duration any setting may have (24 hours); console commands take the same bound.
pub const MAX_DURATION: Duration = Duration::from_millis(keys::MAX_MILLIS);

/// One megabyte as the config file counts it (memory thresholds are in MB in the file).
pub const MB: u64 = 1024 * 1024;

/// The whole effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The file read; `None` = built-in defaults.
    pub source: Option<PathBuf>,
    pub cluster: ClusterConfig,
    pub frontend: FrontendConfig,
    pub gateway: GatewayConfig,
    /// `relay.*`: the MongoDB outbox -> NATS JetStream relay.
    #[serde(default)]
    pub relay: RelayConfig,
    /// `realtime.*`: Centrifugo-compatible delivery of the events to users.
    #[serde(default)]
    pub realtime: RealtimeConfig,
    /// `demo.*`: the demo agent and page.
    #[serde(default)]
    pub demo: DemoConfig,
    /// Which keys were set in the file, and on which line (for [`Config::entries`]).
    #[serde(default)]
    pub origins: Origins,
}

/// `cluster.*`: the master and its worker processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// `cluster.heartbeatInterval` (ms).
    pub heartbeat_interval: Duration,
    /// `cluster.workerTimeout` (ms); greater than `heartbeat_interval`.
    pub worker_timeout: Duration,
    /// `cluster.watchdogInterval` (ms).
    pub watchdog_interval: Duration,
    /// `cluster.memoryWarning.*` (bytes here, MB in the file).
    pub memory_warning: MemoryThresholds,
    /// `cluster.memoryLimit.*` (bytes here, MB in the file).
    pub memory_limit: MemoryThresholds,
    /// `cluster.workerRestartDelay` (ms, may be 0).
    pub worker_restart_delay: Duration,
    /// `cluster.maxRestartBackoff`: exponent, at most 30.
    pub max_restart_backoff: u32,
    /// `cluster.workerCount`: 1..=1024, default floor(CPUs/2)+1.
    pub worker_count: usize,
    /// `cluster.drainTimeout` (ms): how long a worker being replaced or stopped may take to
    /// finish in-flight requests before the rest are closed.
    pub drain_timeout: Duration,
    /// `cluster.standbyWorkers`: 0 or 1 hot standby worker, ready to take a dead worker's place.
    pub standby_workers: usize,
    /// `cluster.controlSocket`: the master's local control socket (`activestack-gateway status`).
    pub control_socket: PathBuf,
    /// `cluster.metricsAddress` (`host:port`): where the master serves `/metrics` itself,
    /// besides the listen address; `None`: only there.
    #[serde(default)]
    pub metrics_address: Option<String>,
}

/// Memory thresholds in bytes; `None` = no check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryThresholds {
    pub rss: Option<u64>,
    pub heap_total: Option<u64>,
    pub heap_used: Option<u64>,
}

/// `frontend.*`: what clients connect to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontendConfig {
    /// `frontend.host`, default `0.0.0.0` (all interfaces).
    pub host: String,
    /// `frontend.port`, default 8080; 0 = any free port.
    pub port: u16,
    /// `frontend.logLevel`, default info.
    pub log_level: LogLevel,
    /// `frontend.shutdownCode`; empty = `None`.
    pub shutdown_code: Option<String>,
    /// `frontend.ssl`, default false.
    pub ssl: bool,
    /// `frontend.private_key` (PEM path); empty = `None`.
    pub private_key: Option<PathBuf>,
    /// `frontend.certificate` (PEM path); empty = `None`.
    pub certificate: Option<PathBuf>,
    /// `frontend.cert_auth`: CA / intermediate certificates (PEM paths, comma-separated in the
    /// file), appended in this order to the served chain; empty = none.
    #[serde(default)]
    pub cert_auth: Vec<PathBuf>,
    /// `frontend.session_secret`; empty = `None`.
    pub session_secret: Option<String>,
    /// `frontend.clientMessageResendInterval` (ms), default 7500.
    pub client_message_resend_interval: Duration,
    /// `frontend.maxMessageSize` (bytes), default 1 MiB: the longest websocket message a client
    /// may send.
    pub max_message_size: usize,
    /// `frontend.maxRequestsPerSecond`: per client; 0 = no limit (the default).
    pub max_requests_per_second: u32,
    /// `frontend.headerTimeout` (ms), default 10 s: for a request head, and between requests.
    pub header_timeout: Duration,
    /// `frontend.flash_policy_port`: obsolete; any value is accepted (kept as written, for
    /// `check-config`) and ignored.
    pub flash_policy_port: Option<String>,
}

/// Log level of `frontend.logLevel`. Also accepts the original's winston names
/// (`silly` = trace, `verbose` = debug, `warning` = warn), case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn as_filter(&self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" | "verbose" => Ok(LogLevel::Debug),
            "trace" | "silly" => Ok(LogLevel::Trace),
            _ => Err("expected error, warn, info, debug or trace".to_string()),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_filter())
    }
}

/// `gateway.*`: the backends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayConfig {
    pub socketio: SocketIoConfig,
    pub redis: RedisConfig,
    pub rabbitmq: RabbitMqConfig,
}

/// `gateway.socketio.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketIoConfig {
    /// `gateway.socketio.timeout` (seconds in the file), default 300.
    pub timeout: Duration,
    /// `gateway.socketio.interval` (seconds in the file), default 20; less than `timeout`.
    pub interval: Duration,
}

/// `gateway.redis.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisConfig {
    pub host: String,
    pub port: u16,
    /// Empty = `None`.
    pub password: Option<String>,
    /// `gateway.redis.gatewaycontrolqueue`: the control channel, non-empty.
    pub control_channel: String,
    pub max_attempts: u32,
    pub offline_queue: bool,
}

/// `gateway.rabbitmq.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RabbitMqConfig {
    pub host: String,
    pub port: u16,
    pub login: String,
    pub password: String,
    pub vhost: String,
    pub durable: bool,
    /// `gateway.rabbitmq.clientQueueExpires`: the client queues' `x-expires`; `None` (the
    /// default): declared with no arguments, as the backend declares them.
    pub client_queue_expires: Option<Duration>,
    /// `gateway.rabbitmq.maxQueueDeclaresPerSecond`, per worker; 0 = no limit.
    pub max_queue_declares_per_second: u32,
}

/// `demo.*`: what a newcomer needs to see the gateway work without a backend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoConfig {
    /// `demo.enabled`, default false: the master runs the demo agent (a stand-in for the
    /// backend on RabbitMQ, [`crate::demo`]) and the workers serve `/demo`.
    pub enabled: bool,
}

/// What [`Config::load`] / [`Config::parse`] / [`Config::resolve`] give: the config and the
/// warnings about its file (sorted by line).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigWarning>,
}

/// One known key, its effective value as text (as it would be written in the file; secrets
/// as `(set)` or empty) and where the value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub key: &'static str,
    pub value: String,
    pub origin: Origin,
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    Default,
    File { line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { line } => write!(f, "line {line}"),
        }
    }
}

/// The keys set in the file and their lines; every other key has its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Origins(BTreeMap<String, usize>);

impl Origins {
    /// Where `key` got its value.
    pub fn get(&self, key: &str) -> Origin {
        match self.0.get(key) {
            Some(&line) => Origin::File { line },
            None => Origin::Default,
        }
    }

    fn set(&mut self, key: &str, line: usize) {
        self.0.insert(key.to_string(), line);
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            heartbeat_interval: Duration::from_millis(1000),
            worker_timeout: Duration::from_millis(5000),
            watchdog_interval: Duration::from_millis(1000),
            memory_warning: MemoryThresholds::default(),
            memory_limit: MemoryThresholds::default(),
            worker_restart_delay: Duration::from_millis(50),
            max_restart_backoff: 10,
            worker_count: default_worker_count(),
            drain_timeout: Duration::from_millis(10_000),
            standby_workers: 1,
            control_socket: default_control_socket(),
            metrics_address: None,
        }
    }
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            host: "0.0.0.0".to_string(),
            port: 8080,
            log_level: LogLevel::Info,
            shutdown_code: None,
            ssl: false,
            private_key: None,
            certificate: None,
            cert_auth: Vec::new(),
            session_secret: None,
            client_message_resend_interval: Duration::from_millis(7500),
            max_message_size: 1024 * 1024,
            max_requests_per_second: 0,
            header_timeout: Duration::from_secs(10),
            flash_policy_port: None,
        }
    }
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            timeout: Duration::from_secs(300),
            interval: Duration::from_secs(20),
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            host: "localhost".to_string(),
            port: 6379,
            password: None,
            control_channel: "gateway".to_string(),
            max_attempts: 1,
            offline_queue: false,
        }
    }
}

impl Default for RabbitMqConfig {
    fn default() -> Self {
        RabbitMqConfig {
            host: "localhost".to_string(),
            port: 5672,
            login: "guest".to_string(),
            password: "guest".to_string(),
            vhost: "/".to_string(),
            durable: false,
            client_queue_expires: None,
            max_queue_declares_per_second: 500,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::defaults()
    }
}

/// floor(CPUs/2)+1, at most the 1024 workers `cluster.workerCount` allows.
fn default_worker_count() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 2 + 1).min(keys::MAX_WORKERS)
}

/// `$XDG_RUNTIME_DIR/activestack-gateway/control.sock` if that variable is set to an absolute
/// path, else `/run/activestack-gateway/control.sock`.
fn default_control_socket() -> PathBuf {
    control_socket_in(std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
}

fn control_socket_in(runtime_dir: Option<PathBuf>) -> PathBuf {
    let base = runtime_dir
        .filter(|dir| dir.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/run"));
    base.join("activestack-gateway").join("control.sock")
}

impl Config {
    /// The built-in defaults (`source` = `None`); worker count and control socket depend on the
    /// machine and environment.
    pub fn defaults() -> Config {
        Config {
            source: None,
            cluster: ClusterConfig::default(),
            frontend: FrontendConfig::default(),
            gateway: GatewayConfig::default(),
            relay: RelayConfig::default(),
            realtime: RealtimeConfig::default(),
            demo: DemoConfig::default(),
            origins: Origins::default(),
        }
    }

    /// Reads and validates one file. Errors if the file cannot be read or any key is invalid.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = decode_utf8(&bytes, path)?;
        Config::parse(text, path)
    }

    /// Parses text as if read from `origin` (used by load and by tests).
    pub fn parse(text: &str, origin: &Path) -> Result<Loaded, ConfigError> {
        let invalid = |problems| ConfigError::Invalid {
            path: origin.to_path_buf(),
            problems,
        };
        let mut props = properties::parse(text, origin).map_err(|p| invalid(vec![p]))?;
        if let Some(problem) = keys::sets_no_key(&props.items, origin) {
            return Err(invalid(vec![problem]));
        }
        let mut config = Config::defaults();
        config.source = Some(origin.to_path_buf());
        let mut problems = Vec::new();
        let mut failed = Vec::new();
        let mut warnings = std::mem::take(&mut props.duplicates);
        for spec in keys::KEYS {
            let Some(prop) = props.get(spec.name) else {
                continue;
            };
            let value = prop.value.trim();
            match keys::apply(spec, &mut config, value) {
                Ok(()) => {
                    config.origins.set(spec.name, prop.line);
                    let read_as = (spec.get)(&config) == "true";
                    warnings.extend(keys::read_otherwise_by_node(
                        origin,
                        prop.line,
                        spec.name,
                        &prop.value,
                        read_as,
                    ));
                }
                Err(expected) => {
                    failed.push(spec.name);
                    problems.push(Problem {
                        path: origin.to_path_buf(),
                        line: Some(prop.line),
                        message: keys::bad_value_message(spec, value, &expected),
                    });
                }
            }
        }
        for prop in &props.items {
            if keys::spec(&prop.key).is_some() {
                continue;
            }
            // `realtime.namespace.<name>.*` of namespaces other than the table's.
            match realtime::namespace_key(&mut config.realtime, &prop.key, prop.value.trim()) {
                Some(Ok(())) => config.origins.set(&prop.key, prop.line),
                Some(Err(expected)) => problems.push(Problem {
                    path: origin.to_path_buf(),
                    line: Some(prop.line),
                    message: format!("{} = {:?}: {expected}", prop.key, prop.value.trim()),
                }),
                None => warnings.push(ConfigWarning::UnknownKey {
                    path: origin.to_path_buf(),
                    line: prop.line,
                    key: prop.key.clone(),
                    suggestion: keys::suggest(&prop.key),
                }),
            }
        }
        realtime::resolve(&mut config, origin, &mut problems);
        keys::cross_check(&config, origin, &failed, &mut problems, &mut warnings);
        if !problems.is_empty() {
            problems.sort_by_key(|p| p.line);
            return Err(invalid(problems));
        }
        warnings.sort_by_key(ConfigWarning::line);
        Ok(Loaded { config, warnings })
    }

    /// CLI rule: `Some(path)` -> [`Config::load`] (a hard error if unreadable or invalid, never a
    /// fallback to defaults); `None` -> [`DEFAULT_PATH`] if it exists, else the defaults
    /// (`source` = `None`).
    pub fn resolve(cli: Option<&Path>) -> Result<Loaded, ConfigError> {
        resolve_with(cli, Path::new(DEFAULT_PATH))
    }

    /// The config to reach a running master with (`status`, `console`): the file's, as
    /// [`Config::resolve`] reads it, if it is valid; else as much of it as can be read
    /// ([`Config::read_leniently`]), with the reason it is not valid. The running master holds
    /// the config it last read, so an operator asking after a bad edit must still reach it.
    pub fn resolve_for_control(cli: Option<&Path>) -> (Config, Option<ConfigError>) {
        match Config::resolve(cli) {
            Ok(loaded) => (loaded.config, None),
            Err(e) => (Config::read_leniently(cli), Some(e)),
        }
    }

    /// The file `cli` names (or the default one) read as far as it goes, never an error: bytes
    /// that are not UTF-8 become U+FFFD (as the Node gateway's parser read them: Node's
    /// `Buffer.toString()`), a value that is invalid keeps its key's default, and there are no
    /// rules between keys. A file that cannot be read or parsed gives the defaults.
    pub fn read_leniently(cli: Option<&Path>) -> Config {
        let path = cli.unwrap_or(Path::new(DEFAULT_PATH));
        let mut config = Config::defaults();
        let Ok(bytes) = std::fs::read(path) else {
            return config;
        };
        let text = String::from_utf8_lossy(&bytes);
        let Ok(props) = properties::parse(&text, path) else {
            return config;
        };
        config.source = Some(path.to_path_buf());
        for spec in keys::KEYS {
            if let Some(prop) = props.get(spec.name)
                && keys::apply(spec, &mut config, prop.value.trim()).is_ok()
            {
                config.origins.set(spec.name, prop.line);
            }
        }
        config
    }

    /// Every known key with its effective value as text and where it came from, in table order,
    /// for `check-config`. Secrets (`frontend.session_secret`, `frontend.shutdownCode`,
    /// `*.password`) are shown as `(set)` or empty, never in clear.
    pub fn entries(&self) -> Vec<Entry> {
        keys::KEYS
            .iter()
            .map(|spec| {
                let value = (spec.get)(self);
                let value = if spec.secret && !value.is_empty() {
                    "(set)".to_string()
                } else {
                    value
                };
                Entry {
                    key: spec.name,
                    value,
                    origin: self.origins.get(spec.name),
                }
            })
            .collect()
    }

    /// The keys this config has from its file, each written back with its effective value
    /// (secrets in clear), as a properties text that [`Config::parse`] reads as the same
    /// config: for tools and tests that rewrite a file, never for logs.
    pub fn to_properties(&self) -> String {
        let mut out = String::new();
        for key in self.origins.0.keys() {
            let value = match keys::spec(key) {
                Some(spec) => (spec.get)(self),
                None => match realtime::namespace_value(&self.realtime, key) {
                    Some(value) => value,
                    None => continue,
                },
            };
            properties::write_escaped(key, &mut out);
            out.push('=');
            properties::write_escaped(&value, &mut out);
            out.push('\n');
        }
        out
    }

    /// Where `key`'s value came from (`Default` for unknown keys too).
    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key)
    }
}

/// The commented sample configuration with every key, as shipped in `conf/gateway.properties`.
pub fn sample_file() -> String {
    keys::sample_file()
}

fn resolve_with(cli: Option<&Path>, default_path: &Path) -> Result<Loaded, ConfigError> {
    if let Some(path) = cli {
        return Config::load(path);
    }
    match std::fs::read(default_path) {
        Ok(bytes) => Config::parse(decode_utf8(&bytes, default_path)?, default_path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Loaded {
            config: Config::defaults(),
            warnings: Vec::new(),
        }),
        Err(source) => Err(ConfigError::Read {
            path: default_path.to_path_buf(),
            source,
        }),
    }
}

/// The file as UTF-8, or a problem naming the first line that is not.
fn decode_utf8<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str, ConfigError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: vec![Problem {
                path: path.to_path_buf(),
                line: Some(line),
                message: "not valid UTF-8 (save the file as UTF-8)".to_string(),
            }],
        }
    })
}

#[cfg(test)]
mod tests;
