//! The table of known keys: name, unit, default, description, how it appears in the shipped
//! sample file, and how to read it into / show it from a [`Config`]. Everything else (parsing,
//! validation, suggestions, `entries()`, `conf/gateway.properties`) works from this table.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{ConfigWarning, Problem};
use super::properties::Property;
use super::{Config, LogLevel, MB, Origin};

/// One known key.
pub(crate) struct KeySpec {
    pub name: &'static str,
    /// Unit or kind of value, for the sample file ("ms", "seconds", "MB", "true/false", ...).
    pub unit: &'static str,
    /// The default as it would be written in the file ("" = not set), or for a default that
    /// depends on the machine, a description of how it is computed.
    pub default: &'static str,
    /// What the key does (the sample file's comment).
    pub doc: &'static str,
    /// How the key is written in the sample file.
    pub sample: Sample,
    /// Never shown in clear by `entries()`.
    pub secret: bool,
    /// What `key=` (an empty value) means.
    pub empty: IfEmpty,
    /// Parses the trimmed value into the config; `Err` says what was expected.
    pub set: fn(&mut Config, &str) -> Result<(), String>,
    /// The effective value as it would be written in the file.
    pub get: fn(&Config) -> String,
}

/// What an empty value (`key=`) means. The Node gateway's parser gave such keys `""`, which its
/// code mostly took as "not set" (`|| default`, `== 'true'`): here too, unless that is unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfEmpty {
    /// The key's default, as if the line were not there.
    Default,
    /// A value of its own, read by `set` (the RabbitMQ password: an empty password).
    Value,
    /// Refused: the key decides where clients connect or which server the gateway talks to (the
    /// text says which), and an empty value is what a cut-off line looks like.
    Refused(&'static str),
}

/// How a key appears in `conf/gateway.properties`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sample {
    /// `key=<default>`.
    Default,
    /// `key=<value>`, a value other than the default.
    Value(&'static str),
    /// `#key=<value>`: commented out, so the default applies.
    Commented(&'static str),
}

// Keys that rules outside their own row refer to.
const HEARTBEAT_INTERVAL: &str = "cluster.heartbeatInterval";
const WORKER_TIMEOUT: &str = "cluster.workerTimeout";
const MEMORY_WARNING_RSS: &str = "cluster.memoryWarning.rss";
const MEMORY_WARNING_HEAP_TOTAL: &str = "cluster.memoryWarning.heapTotal";
const MEMORY_WARNING_HEAP_USED: &str = "cluster.memoryWarning.heapUsed";
const MEMORY_LIMIT_RSS: &str = "cluster.memoryLimit.rss";
const MEMORY_LIMIT_HEAP_TOTAL: &str = "cluster.memoryLimit.heapTotal";
const MEMORY_LIMIT_HEAP_USED: &str = "cluster.memoryLimit.heapUsed";
const SSL: &str = "frontend.ssl";
const PRIVATE_KEY: &str = "frontend.private_key";
const CERTIFICATE: &str = "frontend.certificate";
const CERT_AUTH: &str = "frontend.cert_auth";
const SESSION_SECRET: &str = "frontend.session_secret";
const FLASH_POLICY_PORT: &str = "frontend.flash_policy_port";
const OFFLINE_QUEUE: &str = "gateway.redis.offline_queue";
const DURABLE: &str = "gateway.rabbitmq.durable";
const SOCKETIO_TIMEOUT: &str = "gateway.socketio.timeout";
const SOCKETIO_INTERVAL: &str = "gateway.socketio.interval";

/// `cluster.workerCount` upper bound.
pub(crate) const MAX_WORKERS: usize = 1024;
/// `cluster.maxRestartBackoff` upper bound.
const MAX_BACKOFF: u32 = 30;
/// Upper bound of every duration, so that adding one to an `Instant` cannot overflow.
pub(crate) const MAX_MILLIS: u64 = 24 * 60 * 60 * 1000;
const MAX_SECONDS: u64 = MAX_MILLIS / 1000;
/// Longest Unix socket path (bytes, without the terminating NUL).
const MAX_SOCKET_PATH: usize =
    size_of::<libc::sockaddr_un>() - offset_of!(libc::sockaddr_un, sun_path) - 1;

/// Every known key, in the order of the sample file and `entries()`.
pub(crate) static KEYS: &[KeySpec] = &[
    KeySpec {
        name: HEARTBEAT_INTERVAL,
        unit: "ms",
        default: "1000",
        doc: "How often the master sends each worker a heartbeat; the worker answers with its \
              memory use and client count.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.heartbeat_interval, millis(v, 1)?),
        get: |c| ms(c.cluster.heartbeat_interval),
    },
    KeySpec {
        name: WORKER_TIMEOUT,
        unit: "ms",
        default: "5000",
        doc: "A worker that has not answered a heartbeat for this long is taken as hung: the \
              master kills it and starts a replacement. Must be greater than \
              cluster.heartbeatInterval.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.worker_timeout, millis(v, 1)?),
        get: |c| ms(c.cluster.worker_timeout),
    },
    KeySpec {
        name: "cluster.watchdogInterval",
        unit: "ms",
        default: "1000",
        doc: "How often the master checks every worker's last heartbeat answer against \
              cluster.workerTimeout.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.watchdog_interval, millis(v, 1)?),
        get: |c| ms(c.cluster.watchdog_interval),
    },
    KeySpec {
        name: MEMORY_WARNING_RSS,
        unit: "MB",
        default: "",
        doc: "Log a warning when a worker's resident set size (its RAM in use) goes above this. \
              Empty = no check.",
        sample: Sample::Value("1024"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.memory_warning.rss, megabytes(v)?),
        get: |c| mb(c.cluster.memory_warning.rss),
    },
    KeySpec {
        name: MEMORY_WARNING_HEAP_TOTAL,
        unit: "MB",
        default: "",
        doc: concat!(
            "Log a warning when a worker's heapTotal goes above this. ",
            "heapTotal = bytes the worker's allocator holds from the OS (in use or cached for reuse).",
            " Empty = no check."
        ),
        sample: Sample::Value("512"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.memory_warning.heap_total, megabytes(v)?),
        get: |c| mb(c.cluster.memory_warning.heap_total),
    },
    KeySpec {
        name: MEMORY_WARNING_HEAP_USED,
        unit: "MB",
        default: "",
        doc: concat!(
            "Log a warning when a worker's heapUsed goes above this. ",
            "heapUsed = bytes the worker's allocator has handed out and not taken back.",
            " Empty = no check."
        ),
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.memory_warning.heap_used, megabytes(v)?),
        get: |c| mb(c.cluster.memory_warning.heap_used),
    },
    KeySpec {
        name: MEMORY_LIMIT_RSS,
        unit: "MB",
        default: "",
        doc: "Replace a worker whose resident set size goes above this (a new worker is started, \
              the old one drained and stopped). Empty = no limit.",
        sample: Sample::Value("2048"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.memory_limit.rss, megabytes(v)?),
        get: |c| mb(c.cluster.memory_limit.rss),
    },
    KeySpec {
        name: MEMORY_LIMIT_HEAP_TOTAL,
        unit: "MB",
        default: "",
        doc: "Replace a worker whose heapTotal (see above) goes above this. Empty = no limit.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.memory_limit.heap_total, megabytes(v)?),
        get: |c| mb(c.cluster.memory_limit.heap_total),
    },
    KeySpec {
        name: MEMORY_LIMIT_HEAP_USED,
        unit: "MB",
        default: "",
        doc: "Replace a worker whose heapUsed (see above) goes above this. Empty = no limit.",
        sample: Sample::Value("1024"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.memory_limit.heap_used, megabytes(v)?),
        get: |c| mb(c.cluster.memory_limit.heap_used),
    },
    KeySpec {
        name: "cluster.workerRestartDelay",
        unit: "ms",
        default: "50",
        doc: "Base delay before a worker that died is replaced. After n failures in a row the \
              delay is random, up to this * (2^n - 1); the first restart is immediate. May be 0.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.worker_restart_delay, millis(v, 0)?),
        get: |c| ms(c.cluster.worker_restart_delay),
    },
    KeySpec {
        name: "cluster.maxRestartBackoff",
        unit: "exponent",
        default: "10",
        doc: "Cap on n in the restart delay above (at most 30): with the defaults a \
              crash-looping worker waits at most 50 ms * 1023, about 51 seconds.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.max_restart_backoff, max_backoff(v)?),
        get: |c| c.cluster.max_restart_backoff.to_string(),
    },
    KeySpec {
        name: "cluster.workerCount",
        unit: "processes",
        default: "floor(CPUs/2)+1",
        doc: "Number of worker processes, 1 to 1024. Leave it unset (commented out) for \
              floor(CPUs/2)+1.",
        sample: Sample::Commented("2"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.worker_count, worker_count(v)?),
        get: |c| c.cluster.worker_count.to_string(),
    },
    KeySpec {
        name: "cluster.standbyWorkers",
        unit: "processes",
        default: "1",
        doc: "Hot standby workers, 0 or 1. A standby is started and initialised like any worker \
              (RabbitMQ, Redis, socket.io) but does not accept connections; when a worker dies, \
              hangs or is recycled, the standby takes its place at once and a new standby is \
              started. It costs one idle process and its RabbitMQ connection. 0 = no standby: \
              a dead worker's slot waits for a new worker to start.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.standby_workers, standby_workers(v)?),
        get: |c| c.cluster.standby_workers.to_string(),
    },
    KeySpec {
        name: "cluster.drainTimeout",
        unit: "ms",
        default: "10000",
        doc: "How long a worker being replaced or stopped may take to finish its in-flight \
              requests before the rest are closed. 0 = close them at once.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.drain_timeout, millis(v, 0)?),
        get: |c| ms(c.cluster.drain_timeout),
    },
    KeySpec {
        name: "cluster.controlSocket",
        unit: "absolute path",
        default: "$XDG_RUNTIME_DIR/activestack-gateway/control.sock if XDG_RUNTIME_DIR is set, \
                  else /run/activestack-gateway/control.sock",
        doc: "Local socket where the master answers `activestack-gateway status`. The \
              directory must exist and be writable by the master.",
        sample: Sample::Commented("/run/activestack-gateway/control.sock"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.cluster.control_socket, socket_path(v)?),
        get: |c| c.cluster.control_socket.display().to_string(),
    },
    KeySpec {
        name: "cluster.metricsAddress",
        unit: "host:port",
        default: "",
        doc: "Where the master itself serves Prometheus metrics at /metrics, besides the \
              listen address (where a worker takes the scrape and asks the master). Empty = \
              the listen address only. Port 0 = any free port (see status). Bound at start; a \
              reload does not move it.",
        sample: Sample::Commented("127.0.0.1:9464"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            let addr = optional_text(v).map(|v| host_port(&v)).transpose()?;
            set(&mut c.cluster.metrics_address, addr)
        },
        get: |c| c.cluster.metrics_address.clone().unwrap_or_default(),
    },
    KeySpec {
        name: "frontend.host",
        unit: "host",
        default: "0.0.0.0",
        doc: "Address the gateway listens on for clients. This file uses 127.0.0.1 (this \
              machine only); use 0.0.0.0 to listen on all interfaces.",
        sample: Sample::Value("127.0.0.1"),
        secret: false,
        empty: IfEmpty::Refused("it decides where clients connect"),
        set: |c, v| set(&mut c.frontend.host, host(v)?),
        get: |c| c.frontend.host.clone(),
    },
    KeySpec {
        name: "frontend.port",
        unit: "port",
        default: "8080",
        doc: "TCP port the gateway listens on for clients. 0 = any free port.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Refused("it decides where clients connect"),
        set: |c, v| set(&mut c.frontend.port, port(v, 0)?),
        get: |c| c.frontend.port.to_string(),
    },
    KeySpec {
        name: "frontend.logLevel",
        unit: "level",
        default: "info",
        doc: "error, warn, info, debug or trace (the original's silly, verbose and warning work \
              too).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.log_level, v.parse::<LogLevel>()?),
        get: |c| c.frontend.log_level.to_string(),
    },
    KeySpec {
        name: "frontend.shutdownCode",
        unit: "secret",
        default: "",
        doc: "Code a `shutdown` command on the Redis control channel \
              (gateway.redis.gatewaycontrolqueue) must carry. Empty = not set.",
        sample: Sample::Default,
        secret: true,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.shutdown_code, optional_text(v)),
        get: |c| c.frontend.shutdown_code.clone().unwrap_or_default(),
    },
    KeySpec {
        name: SSL,
        unit: "true/false",
        default: "false",
        doc: "Serve clients over TLS (HTTPS and wss); needs frontend.private_key and \
              frontend.certificate. The files are read and checked at start and on each reload: \
              a missing or bad file is refused, never served as plain HTTP.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.ssl, node_boolean(v, SSL)?),
        get: |c| c.frontend.ssl.to_string(),
    },
    KeySpec {
        name: PRIVATE_KEY,
        unit: "path",
        default: "",
        doc: "TLS private key (PEM file: PKCS#8, RSA or EC; not encrypted). Relative paths are \
              from the master's working directory.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.private_key, optional_path(v)),
        get: |c| show_path(c.frontend.private_key.as_deref()),
    },
    KeySpec {
        name: CERTIFICATE,
        unit: "path",
        default: "",
        doc: "TLS certificate (PEM file): the server's certificate first, then any \
              intermediates.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.certificate, optional_path(v)),
        get: |c| show_path(c.frontend.certificate.as_deref()),
    },
    KeySpec {
        name: CERT_AUTH,
        unit: "paths",
        default: "",
        doc: "TLS CA / intermediate certificates: PEM files, separated by commas (as the Node \
              gateway read it), appended in that order to the chain served after \
              frontend.certificate (as the Node gateway's OpenSSL did with them). Not used to \
              check clients. Empty = none.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.cert_auth, path_list(v)?),
        get: |c| {
            let paths: Vec<String> = c
                .frontend
                .cert_auth
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            paths.join(",")
        },
    },
    KeySpec {
        name: SESSION_SECRET,
        unit: "secret",
        default: "",
        doc: "Secret that signs client session cookies. Set a long random secret, e.g. the \
              output of `openssl rand -base64 48`; at most 4096 bytes (HMAC-SHA512 hashes a \
              secret longer than 128 bytes down to 64 anyway).",
        sample: Sample::Default,
        secret: true,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.session_secret, session_secret(v)?),
        get: |c| c.frontend.session_secret.clone().unwrap_or_default(),
    },
    KeySpec {
        name: "frontend.clientMessageResendInterval",
        unit: "ms",
        default: "7500",
        doc: "A message pushed to a client is sent again at this interval until the client \
              acknowledges it.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.frontend.client_message_resend_interval,
                millis(v, 1)?,
            )
        },
        get: |c| ms(c.frontend.client_message_resend_interval),
    },
    KeySpec {
        name: "frontend.maxMessageSize",
        unit: "bytes",
        default: "1048576",
        doc: "The longest message a client may send on its websocket (both socket.io \
              protocols), checked before it is read: a client that sends more is disconnected \
              (close code 1009) and the worker logs it. 1024 to 67108864.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.max_message_size, max_message_size(v)?),
        get: |c| c.frontend.max_message_size.to_string(),
    },
    KeySpec {
        name: "frontend.maxRequestsPerSecond",
        unit: "requests/s",
        default: "0",
        doc: "Request events one client may send per second (bursts of one second's worth); \
              the rest are refused with gatewayError rateLimited and not forwarded. 0 = no \
              limit, as the Node gateway had none.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.max_requests_per_second, rate(v)?),
        get: |c| c.frontend.max_requests_per_second.to_string(),
    },
    KeySpec {
        name: "frontend.headerTimeout",
        unit: "ms",
        default: "10000",
        doc: "An HTTP connection must send a whole request head within this long of opening, \
              and of its previous answer (so it is also how long an idle keep-alive connection \
              stays open); otherwise it is closed. Websockets are not affected once upgraded.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.header_timeout, millis(v, 100)?),
        get: |c| ms(c.frontend.header_timeout),
    },
    KeySpec {
        name: FLASH_POLICY_PORT,
        unit: "port",
        default: "",
        doc: "Obsolete (Flash clients are gone): any value is accepted for compatibility and \
              ignored with a warning.",
        sample: Sample::Commented("10843"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.frontend.flash_policy_port, optional_text(v)),
        get: |c| c.frontend.flash_policy_port.clone().unwrap_or_default(),
    },
    KeySpec {
        name: SOCKETIO_TIMEOUT,
        unit: "seconds",
        default: "300",
        doc: "socket.io heartbeat timeout: a client not heard from for this long is \
              disconnected.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.gateway.socketio.timeout, seconds(v)?),
        get: |c| c.gateway.socketio.timeout.as_secs().to_string(),
    },
    KeySpec {
        name: SOCKETIO_INTERVAL,
        unit: "seconds",
        default: "20",
        doc: "socket.io heartbeat interval: how often clients are pinged. Must be less than \
              gateway.socketio.timeout.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.gateway.socketio.interval, seconds(v)?),
        get: |c| c.gateway.socketio.interval.as_secs().to_string(),
    },
    KeySpec {
        name: "gateway.redis.host",
        unit: "host",
        default: "localhost",
        doc: "Redis server: the control channel, and the socket.io adapter that spreads rooms \
              and broadcasts over every worker. Clients are served while it is down.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Refused("it decides which Redis the gateway uses"),
        set: |c, v| set(&mut c.gateway.redis.host, host(v)?),
        get: |c| c.gateway.redis.host.clone(),
    },
    KeySpec {
        name: "gateway.redis.port",
        unit: "port",
        default: "6379",
        doc: "Redis port.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Refused("it decides which Redis the gateway uses"),
        set: |c, v| set(&mut c.gateway.redis.port, port(v, 1)?),
        get: |c| c.gateway.redis.port.to_string(),
    },
    KeySpec {
        name: "gateway.redis.password",
        unit: "secret",
        default: "",
        doc: "Redis password. Empty = no AUTH.",
        sample: Sample::Default,
        secret: true,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.gateway.redis.password, optional_text(v)),
        get: |c| c.gateway.redis.password.clone().unwrap_or_default(),
    },
    KeySpec {
        name: "gateway.redis.gatewaycontrolqueue",
        unit: "text",
        default: "gateway",
        doc: "Redis pub/sub channel the gateway takes control commands from (loglevel, \
              clientcount, restart, shutdown, push, ...). It also prefixes the socket.io \
              adapter's channels: gateways sharing it share rooms.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Refused(
            "it names the control channel and the socket.io adapter's channels",
        ),
        set: |c, v| set(&mut c.gateway.redis.control_channel, non_empty(v)?),
        get: |c| c.gateway.redis.control_channel.clone(),
    },
    KeySpec {
        name: "gateway.redis.max_attempts",
        unit: "count",
        default: "1",
        doc: "Connection attempts to Redis before giving up (at least 1).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.gateway.redis.max_attempts, attempts(v)?),
        get: |c| c.gateway.redis.max_attempts.to_string(),
    },
    KeySpec {
        name: OFFLINE_QUEUE,
        unit: "true/false",
        default: "false",
        doc: "Queue Redis commands while disconnected (true) or fail them at once (false).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.gateway.redis.offline_queue,
                node_boolean(v, OFFLINE_QUEUE)?,
            )
        },
        get: |c| c.gateway.redis.offline_queue.to_string(),
    },
    KeySpec {
        name: "gateway.rabbitmq.host",
        unit: "host",
        default: "localhost",
        doc: "RabbitMQ server (messages between clients and the backend).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Refused("it decides which RabbitMQ the gateway uses"),
        set: |c, v| set(&mut c.gateway.rabbitmq.host, host(v)?),
        get: |c| c.gateway.rabbitmq.host.clone(),
    },
    KeySpec {
        name: "gateway.rabbitmq.port",
        unit: "port",
        default: "5672",
        doc: "RabbitMQ (AMQP) port.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Refused("it decides which RabbitMQ the gateway uses"),
        set: |c, v| set(&mut c.gateway.rabbitmq.port, port(v, 1)?),
        get: |c| c.gateway.rabbitmq.port.to_string(),
    },
    KeySpec {
        name: "gateway.rabbitmq.login",
        unit: "text",
        default: "guest",
        doc: "RabbitMQ user name.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Refused("it decides which RabbitMQ the gateway uses"),
        set: |c, v| set(&mut c.gateway.rabbitmq.login, non_empty(v)?),
        get: |c| c.gateway.rabbitmq.login.clone(),
    },
    KeySpec {
        name: "gateway.rabbitmq.password",
        unit: "secret",
        default: "guest",
        doc: "RabbitMQ password (empty = an empty password). guest/guest only works from \
              localhost; set a real user and password for a remote broker.",
        sample: Sample::Default,
        secret: true,
        empty: IfEmpty::Value,
        set: |c, v| set(&mut c.gateway.rabbitmq.password, v.to_string()),
        get: |c| c.gateway.rabbitmq.password.clone(),
    },
    KeySpec {
        name: "gateway.rabbitmq.vhost",
        unit: "text",
        default: "/",
        doc: "RabbitMQ virtual host.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Refused("it decides which RabbitMQ the gateway uses"),
        set: |c, v| set(&mut c.gateway.rabbitmq.vhost, non_empty(v)?),
        get: |c| c.gateway.rabbitmq.vhost.clone(),
    },
    KeySpec {
        name: DURABLE,
        unit: "true/false",
        default: "false",
        doc: "Declare the gateway's queues durable (they survive a broker restart).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.gateway.rabbitmq.durable, node_boolean(v, DURABLE)?),
        get: |c| c.gateway.rabbitmq.durable.to_string(),
    },
    KeySpec {
        name: "gateway.rabbitmq.clientQueueExpires",
        unit: "ms",
        default: "0",
        doc: "0 or empty = client queues never expire, as the Node gateway and the backend \
              declare them (no arguments; the backend deletes queues it is done with). Else \
              RabbitMQ deletes a client queue nobody consumes for this long (x-expires), with \
              the pushes it still holds; the backend's own no-argument declares of such a \
              queue then fail, so set it only without a backend that manages client queues. \
              At least 1000 when set.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            let expires = match v {
                "" | "0" => None,
                v => Some(millis(v, 1000)?),
            };
            set(&mut c.gateway.rabbitmq.client_queue_expires, expires)
        },
        get: |c| {
            c.gateway
                .rabbitmq
                .client_queue_expires
                .map_or("0".into(), ms)
        },
    },
    KeySpec {
        name: "gateway.rabbitmq.maxQueueDeclaresPerSecond",
        unit: "declares/s",
        default: "500",
        doc: "Client queues one worker declares per second at most (bursts of one second's \
              worth): a connect over it waits its turn, so a flood of connects cannot flood \
              RabbitMQ. 0 = no limit.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.gateway.rabbitmq.max_queue_declares_per_second,
                rate(v)?,
            )
        },
        get: |c| c.gateway.rabbitmq.max_queue_declares_per_second.to_string(),
    },
    KeySpec {
        name: "relay.enabled",
        unit: "true/false",
        default: "false",
        doc: "Run the message relay: every document inserted into the MongoDB outbox collection \
              is published to NATS JetStream as a Centrifugo command (see docs/outbox.md).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.relay.enabled, boolean(v)?),
        get: |c| c.relay.enabled.to_string(),
    },
    KeySpec {
        name: "relay.mongodb.url",
        unit: "MongoDB URL",
        default: "mongodb://127.0.0.1:27017/?replicaSet=rs0",
        doc: "MongoDB holding the outbox (seed: [storage] database_url). Must be a replica set: \
              the relay watches the outbox with a change stream. Shown as (set) by \
              check-config: it may hold a password.",
        sample: Sample::Default,
        secret: true,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.relay.mongodb_url, mongodb_url(v)?),
        get: |c| c.relay.mongodb_url.clone(),
    },
    KeySpec {
        name: "relay.mongodb.database",
        unit: "text",
        default: "activestack",
        doc: "Database of the outbox and checkpoint collections (seed: [storage] database_name).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.relay.database, non_empty(v)?),
        get: |c| c.relay.database.clone(),
    },
    KeySpec {
        name: "relay.mongodb.outboxCollection",
        unit: "text",
        default: "messages_outbox",
        doc: "Collection the relay watches for inserts (seed: [storage] \
              messages_outbox_collection_name).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.relay.outbox_collection, non_empty(v)?),
        get: |c| c.relay.outbox_collection.clone(),
    },
    KeySpec {
        name: "relay.mongodb.checkpointCollection",
        unit: "text",
        default: "relay_checkpoints",
        doc: "Collection where the relay keeps its change-stream resume token and last published \
              _id, one document per outbox collection, written only after JetStream acknowledged \
              everything up to it.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.relay.checkpoint_collection, non_empty(v)?),
        get: |c| c.relay.checkpoint_collection.clone(),
    },
    KeySpec {
        name: "relay.nats.url",
        unit: "NATS URL",
        default: "nats://127.0.0.1:4222",
        doc: "NATS server with JetStream (seed: [nats] url). Shown as (set) by check-config: \
              it may hold a password.",
        sample: Sample::Default,
        secret: true,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.relay.nats_url, non_empty(v)?),
        get: |c| c.relay.nats_url.clone(),
    },
    KeySpec {
        name: "relay.nats.subjectPrefix",
        unit: "subject",
        default: "events",
        doc: "Messages are published to <prefix>.<namespace>.<user> (or \
              <prefix>.<namespace>.broadcast); the stream holds <prefix>.> (seed: [nats] subject \
              = events.>).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.relay.subject_prefix,
                super::relay::subject_prefix(v)?,
            )
        },
        get: |c| c.relay.subject_prefix.clone(),
    },
    KeySpec {
        name: "relay.nats.stream",
        unit: "stream name",
        default: "EVENTS",
        doc: "JetStream stream the relay publishes to and Centrifugo consumes from. Created if \
              missing (file storage, no limits, 2-minute duplicate window, 1 replica); an existing \
              stream with other settings is reported, never changed.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.relay.stream, super::relay::stream_name(v)?),
        get: |c| c.relay.stream.clone(),
    },
    KeySpec {
        name: "relay.nats.deadLetterSubject",
        unit: "subject",
        default: "relay.deadletter",
        doc: "Outbox documents that are not valid messages are published, with the reason, to \
              <this>.<outbox collection>: outside the stream Centrifugo reads.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.relay.dead_letter_subject,
                super::relay::subject_prefix(v)?,
            )
        },
        get: |c| c.relay.dead_letter_subject.clone(),
    },
    KeySpec {
        name: "relay.nats.deadLetterStream",
        unit: "stream name",
        default: "RELAY_DEADLETTER",
        doc: "JetStream stream that keeps the dead letters (<relay.nats.deadLetterSubject>.>); \
              created if missing.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.relay.dead_letter_stream,
                super::relay::stream_name(v)?,
            )
        },
        get: |c| c.relay.dead_letter_stream.clone(),
    },
    KeySpec {
        name: "relay.messagesNamespace",
        unit: "text",
        default: "personal",
        doc: "Centrifugo namespace of the users' channels <namespace>:#<user> (seed: [nats] \
              messages_namespace).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.relay.messages_namespace,
                super::relay::subject_token(v)?,
            )
        },
        get: |c| c.relay.messages_namespace.clone(),
    },
    KeySpec {
        name: "relay.maxInFlight",
        unit: "count",
        default: "256",
        doc: "Most publishes waiting for their JetStream acknowledgement at once (1 to 65536); \
              a slow NATS slows the relay down instead of growing its memory.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.relay.max_in_flight, max_in_flight(v)?),
        get: |c| c.relay.max_in_flight.to_string(),
    },
    // ---- realtime.* (src/config/realtime.rs) ----
    KeySpec {
        name: "realtime.enabled",
        unit: "true/false",
        default: "false",
        doc: "Deliver the EVENTS stream to users, Centrifugo-compatible: the workers consume \
              realtime.nats.stream, keep history and presence in Redis (gateway.redis.*) and \
              serve /connection/websocket, /connection/uni_sse and /api/*. This file sets it \
              for the demo (demo.enabled).",
        sample: Sample::Value("true"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.enabled, boolean(v)?),
        get: |c| c.realtime.enabled.to_string(),
    },
    KeySpec {
        name: "realtime.token.hmacSecretKey",
        unit: "text",
        default: "",
        doc: "HMAC secret of the clients' connection JWTs (HS256; Centrifugo's \
              client.token.hmac_secret_key). Empty = every token is refused.",
        sample: Sample::Default,
        secret: true,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.hmac_secret_key, optional_text(v)),
        get: |c| c.realtime.hmac_secret_key.clone().unwrap_or_default(),
    },
    KeySpec {
        name: "realtime.api.key",
        unit: "text",
        default: "",
        doc: "Key of the server API /api/* (X-API-Key or Authorization: apikey; Centrifugo's \
              http_api.key). Empty = every API call is refused.",
        sample: Sample::Default,
        secret: true,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.api_key, optional_text(v)),
        get: |c| c.realtime.api_key.clone().unwrap_or_default(),
    },
    KeySpec {
        name: "realtime.allowedOrigins",
        unit: "comma-separated origins",
        default: "",
        doc: "Origins allowed to open /connection/* (* = any). Empty = only clients that send \
              no Origin header (Centrifugo's client.allowed_origins).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.allowed_origins, super::realtime::list(v)),
        get: |c| c.realtime.allowed_origins.join(","),
    },
    KeySpec {
        name: "realtime.nats.url",
        unit: "URL",
        default: "nats://127.0.0.1:4222",
        doc: "NATS server whose JetStream stream the workers consume.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.nats_url, non_empty(v)?),
        get: |c| c.realtime.nats_url.clone(),
    },
    KeySpec {
        name: "realtime.nats.stream",
        unit: "stream name",
        default: "EVENTS",
        doc: "JetStream stream of the relay's commands (it must exist; the relay creates it).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.nats_stream, super::relay::stream_name(v)?),
        get: |c| c.realtime.nats_stream.clone(),
    },
    KeySpec {
        name: "realtime.nats.subjects",
        unit: "comma-separated subjects",
        default: "events.>",
        doc: "Filter subjects of the consumer.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.nats_subjects, super::realtime::subjects(v)?),
        get: |c| c.realtime.nats_subjects.join(","),
    },
    KeySpec {
        name: "realtime.nats.consumer",
        unit: "consumer name",
        default: "gateway_consumer",
        doc: "Durable pull consumer shared by all workers (deliver policy new). Not \
              centrifugo_consumer, so a real Centrifugo can consume the same stream beside us.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.realtime.nats_consumer,
                super::realtime::consumer_name(v)?,
            )
        },
        get: |c| c.realtime.nats_consumer.clone(),
    },
    KeySpec {
        name: "realtime.nats.maxAckPending",
        unit: "count",
        default: "100",
        doc: "Most delivered but unacknowledged messages of the consumer (1 to 65536).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.realtime.nats_max_ack_pending,
                max_in_flight(v)? as i64,
            )
        },
        get: |c| c.realtime.nats_max_ack_pending.to_string(),
    },
    KeySpec {
        name: "realtime.nats.maxDeliver",
        unit: "count",
        default: "10",
        doc: "Deliveries of a message whose publication keeps failing (Redis down) before it \
              is given up as a dead letter (1 to 65536); redeliveries back off from 1 s to 30 s.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.nats_max_deliver, max_in_flight(v)? as u32),
        get: |c| c.realtime.nats_max_deliver.to_string(),
    },
    KeySpec {
        name: "realtime.nats.deadLetterSubject",
        unit: "subject",
        default: "relay.deadletter.realtime",
        doc: "Given-up messages are published to <this>.<consumer> as {reason, subject, \
              stream_sequence, message}: outside events.>, and by default kept by the relay's \
              dead-letter stream (relay.deadletter.>).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.realtime.dead_letter_subject,
                super::relay::subject_prefix(v)?,
            )
        },
        get: |c| c.realtime.dead_letter_subject.clone(),
    },
    KeySpec {
        name: "realtime.presenceTtl",
        unit: "seconds",
        default: "60",
        doc: "A client's presence entry not refreshed by its worker for this long is dropped \
              (so a killed worker's users leave presence); refreshed every third of it.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.presence_ttl, seconds(v)?),
        get: |c| c.realtime.presence_ttl.as_secs().to_string(),
    },
    KeySpec {
        name: "realtime.centrifugoConfig",
        unit: "path",
        default: "",
        doc: "Read the token secret, API key, origins, namespaces and nats_jetstream consumer \
              from this Centrifugo config.json as is (relative to this file) instead of the \
              realtime.* keys above and below; setting both is an error. Its \
              durable_consumer_name is Centrifugo's and is not used.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.realtime.centrifugo_config, optional_path(v)),
        get: |c| show_path(c.realtime.centrifugo_config.as_deref()),
    },
    KeySpec {
        name: "realtime.namespace.personal.historySize",
        unit: "count",
        default: "300",
        doc: "Publications kept per channel of namespace personal (0 = no history). Any \
              namespace NAME is configured with realtime.namespace.NAME.* keys like these.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.realtime.namespace_mut(PERSONAL).history_size,
                super::realtime::history_size(v)?,
            )
        },
        get: |c| personal(c, |n| n.history_size.to_string()),
    },
    KeySpec {
        name: "realtime.namespace.personal.historyTtl",
        unit: "seconds",
        default: "600",
        doc: "How long they are kept after the channel's last publication (0 = no history).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.realtime.namespace_mut(PERSONAL).history_ttl,
                super::realtime::history_ttl(v)?,
            )
        },
        get: |c| personal(c, |n| n.history_ttl.as_secs().to_string()),
    },
    KeySpec {
        name: "realtime.namespace.personal.forceRecovery",
        unit: "true/false",
        default: "true",
        doc: "Subscriptions are recoverable: a client coming back gets what it missed.",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.realtime.namespace_mut(PERSONAL).force_recovery,
                boolean(v)?,
            )
        },
        get: |c| personal(c, |n| n.force_recovery.to_string()),
    },
    KeySpec {
        name: "realtime.namespace.personal.presence",
        unit: "true/false",
        default: "true",
        doc: "Keep who is subscribed (API presence, presence_stats).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c.realtime.namespace_mut(PERSONAL).presence,
                boolean(v)?,
            )
        },
        get: |c| personal(c, |n| n.presence.to_string()),
    },
    KeySpec {
        name: "realtime.namespace.personal.allowUserLimitedChannels",
        unit: "true/false",
        default: "true",
        doc: "personal:#42 may be subscribed by the user whose token has sub 42 (and \
              personal:#42,43 by 42 and 43).",
        sample: Sample::Default,
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| {
            set(
                &mut c
                    .realtime
                    .namespace_mut(PERSONAL)
                    .allow_user_limited_channels,
                boolean(v)?,
            )
        },
        get: |c| personal(c, |n| n.allow_user_limited_channels.to_string()),
    },
    KeySpec {
        name: "demo.enabled",
        unit: "true/false",
        default: "false",
        doc: "Run the demo: the master starts a demo agent that stands in for the backend on \
              RabbitMQ (it logs any user in, answers testCall, and publishes an event to the \
              caller's realtime channel through NATS JetStream for each one), and the workers \
              serve the page http://<frontend.host>:<frontend.port>/demo. Never with a real \
              backend on the same RabbitMQ: the agent would take its requests. This file sets \
              it (and realtime.enabled) for the README's first command; set both to false in \
              production.",
        sample: Sample::Value("true"),
        secret: false,
        empty: IfEmpty::Default,
        set: |c, v| set(&mut c.demo.enabled, boolean(v)?),
        get: |c| c.demo.enabled.to_string(),
    },
];

/// A value of the `personal` namespace (empty when a Centrifugo config has none).
fn personal(c: &Config, show: fn(&super::NamespaceConfig) -> String) -> String {
    c.realtime
        .namespaces
        .get(PERSONAL)
        .map(show)
        .unwrap_or_default()
}

const PERSONAL: &str = super::realtime::PERSONAL;

/// Section headers of the sample file: key prefix and title.
const GROUPS: &[(&str, &str)] = &[
    ("cluster.", "cluster.*: the master process and its workers"),
    ("frontend.", "frontend.*: where and how clients connect"),
    ("gateway.", "gateway.*: socket.io, Redis and RabbitMQ"),
    ("relay.", "relay.*: MongoDB outbox -> NATS JetStream relay"),
    (
        "realtime.",
        "realtime.*: Centrifugo-compatible delivery of the events to users",
    ),
    (
        "demo.",
        "demo.*: the demo agent and page (see the README's Demo section)",
    ),
];

/// The table row of `name` (exact, case-sensitive, as .properties keys are).
pub(crate) fn spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

/// Reads the trimmed `value` of `spec` into `config`, an empty one as [`IfEmpty`] says;
/// `Err` says what was expected.
pub(crate) fn apply(spec: &KeySpec, config: &mut Config, value: &str) -> Result<(), String> {
    match (value.is_empty(), spec.empty) {
        (true, IfEmpty::Default) => Ok(()),
        (true, IfEmpty::Refused(why)) => Err(format!(
            "must not be empty: {why}, and an empty value is what a cut-off line looks like; \
             write {}={} for the default",
            spec.name, spec.default
        )),
        _ => (spec.set)(config, value),
    }
}

/// The problem of a file that sets no known key: refused, so that an emptied or cut-off file
/// (or one whose every key is misspelled) cannot silently mean the built-in defaults.
pub(crate) fn sets_no_key(items: &[Property], path: &Path) -> Option<Problem> {
    let known = |key: &str| spec(key).is_some() || super::realtime::is_namespace_key(key);
    if items.iter().any(|p| known(&p.key)) {
        return None;
    }
    let what = if items.is_empty() {
        "sets no key (an empty or cut-off file?)".to_string()
    } else {
        let unknown: Vec<&str> = items.iter().map(|p| p.key.as_str()).collect();
        format!("sets no known key (unknown: {})", unknown.join(", "))
    };
    Some(Problem {
        path: path.to_path_buf(),
        line: None,
        message: format!(
            "{what}: refused, because it would silently mean the built-in defaults (clients \
             on 0.0.0.0:8080, every interface); set at least one key, or run `server` without \
             a CONFIG for the defaults"
        ),
    })
}

// ---- value parsers: Ok(value) or Err(what was expected) ----

fn set<T>(field: &mut T, value: T) -> Result<(), String> {
    *field = value;
    Ok(())
}

/// A whole number written with digits only; saturates at `u64::MAX` so range checks catch
/// overlong numbers.
fn whole(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse().unwrap_or(u64::MAX))
}

fn millis(v: &str, min: u64) -> Result<Duration, String> {
    let n = whole(v).ok_or("expected milliseconds as a whole number")?;
    if n < min {
        return Err(format!("must be at least {min}"));
    }
    if n > MAX_MILLIS {
        return Err(format!("must be at most {MAX_MILLIS} (24 hours)"));
    }
    Ok(Duration::from_millis(n))
}

fn rate(v: &str) -> Result<u32, String> {
    match whole(v) {
        Some(n) if n <= 1_000_000 => Ok(n as u32),
        Some(_) => Err("must be at most 1000000".into()),
        None => Err("expected a whole number per second (0 = no limit)".into()),
    }
}

fn max_message_size(v: &str) -> Result<usize, String> {
    const RANGE: std::ops::RangeInclusive<u64> = 1024..=64 * 1024 * 1024;
    match whole(v) {
        Some(n) if RANGE.contains(&n) => Ok(n as usize),
        Some(_) => Err(format!(
            "must be between {} and {} bytes",
            RANGE.start(),
            RANGE.end()
        )),
        None => Err("expected a size in bytes as a whole number".into()),
    }
}

fn seconds(v: &str) -> Result<Duration, String> {
    let n = whole(v).ok_or("expected seconds as a whole number")?;
    if n == 0 {
        return Err("must be at least 1".to_string());
    }
    if n > MAX_SECONDS {
        return Err(format!("must be at most {MAX_SECONDS} (24 hours)"));
    }
    Ok(Duration::from_secs(n))
}

const MEGABYTES: &str = "expected megabytes as a whole number (or empty for no check)";

fn megabytes(v: &str) -> Result<Option<u64>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let n = whole(v).ok_or(MEGABYTES)?;
    if n == 0 {
        return Err("must be at least 1 (or empty for no check)".to_string());
    }
    n.checked_mul(MB)
        .map(Some)
        .ok_or_else(|| "is too large".to_string())
}

fn max_backoff(v: &str) -> Result<u32, String> {
    let n = whole(v).ok_or("expected a whole number")?;
    if n > u64::from(MAX_BACKOFF) {
        return Err(format!("must be at most {MAX_BACKOFF}"));
    }
    u32::try_from(n).map_err(|_| format!("must be at most {MAX_BACKOFF}"))
}

fn worker_count(v: &str) -> Result<usize, String> {
    let range = || format!("must be between 1 and {MAX_WORKERS}");
    let n = whole(v).ok_or("expected a whole number")?;
    let n = usize::try_from(n).map_err(|_| range())?;
    if !(1..=MAX_WORKERS).contains(&n) {
        return Err(range());
    }
    Ok(n)
}

fn standby_workers(v: &str) -> Result<usize, String> {
    match whole(v).ok_or("expected a whole number")? {
        0 => Ok(0),
        1 => Ok(1),
        _ => Err("must be 0 or 1".to_string()),
    }
}

fn attempts(v: &str) -> Result<u32, String> {
    let n = whole(v).ok_or("expected a whole number")?;
    if n == 0 {
        return Err("must be at least 1".to_string());
    }
    u32::try_from(n).map_err(|_| format!("must be at most {}", u32::MAX))
}

fn port(v: &str, min: u16) -> Result<u16, String> {
    let expected = || format!("expected a port number ({min}-65535)");
    let n = whole(v).ok_or_else(expected)?;
    match u16::try_from(n) {
        Ok(p) if p >= min => Ok(p),
        _ => Err(expected()),
    }
}

const BOOLEAN: &str = "expected true or false (or t/f, yes/no, 1/0; empty = the default)";

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "1" => Ok(true),
        "false" | "f" | "no" | "0" => Ok(false),
        _ => Err(BOOLEAN.to_string()),
    }
}

/// The values the Node gateway took as true for its boolean keys; it took anything else,
/// case and trailing spaces included, as false.
const NODE_TRUE: &[(&str, &[&str])] = &[
    // orig/src/config/ssl_config.js:13
    (SSL, &["true", "t", "1"]),
    // orig/src/factory/redis_store_factory.js:19 (`== 'true'`)
    (OFFLINE_QUEUE, &["true"]),
    // orig/src/service/gateway.js:76 (`== 'true'`)
    (DURABLE, &["true"]),
];

fn node_true(key: &str) -> Option<&'static [&'static str]> {
    NODE_TRUE
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, values)| *values)
}

/// `a`, `a and b`, `a, b and c`, each in `quote`s.
fn listed(values: &[&str], quote: &str) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|v| format!("{quote}{v}{quote}"))
        .collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A boolean key the Node gateway had too: a value neither reads as true or false is refused,
/// saying what the Node gateway made of it (false) so that the operator can write that.
fn node_boolean(v: &str, key: &str) -> Result<bool, String> {
    boolean(v).map_err(|expected| match node_true(key) {
        Some(values) => format!(
            "{expected}; the Node gateway read any value but {} as false: write false if that \
             is what you mean",
            listed(values, "")
        ),
        None => expected,
    })
}

/// A warning if the Node gateway read `raw` (the value as written, trailing spaces kept) other
/// than `value` (how it is read here), for the boolean keys it had.
pub(crate) fn read_otherwise_by_node(
    path: &Path,
    line: usize,
    key: &'static str,
    raw: &str,
    value: bool,
) -> Option<ConfigWarning> {
    let values = node_true(key)?;
    (values.contains(&raw) != value).then(|| ConfigWarning::ReadOtherwiseByNode {
        path: path.to_path_buf(),
        line,
        key,
        value: raw.to_string(),
        read_as: value,
        node_took: listed(values, "\""),
    })
}

fn host(v: &str) -> Result<String, String> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("expected a host name or IP address".to_string());
    }
    Ok(v.to_string())
}

/// `host:port` (an IPv6 address in brackets: `[::1]:9464`).
fn host_port(v: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected host:port (an IPv6 address as [::1]:9464)";
    let (host, port) = v.rsplit_once(':').ok_or(EXPECTED)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or(EXPECTED)?,
        None if host.contains(':') => return Err(EXPECTED.to_string()),
        None => host,
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EXPECTED.to_string());
    }
    whole(port)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("{EXPECTED}; the port is 0-65535"))?;
    Ok(v.to_string())
}

fn non_empty(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(v.to_string())
}

fn mongodb_url(v: &str) -> Result<String, String> {
    if !(v.starts_with("mongodb://") || v.starts_with("mongodb+srv://")) {
        return Err("expected a mongodb:// or mongodb+srv:// URL".to_string());
    }
    Ok(v.to_string())
}

fn max_in_flight(v: &str) -> Result<usize, String> {
    let n = whole(v).ok_or("expected a whole number")?;
    if !(1..=65536).contains(&n) {
        return Err("must be between 1 and 65536".to_string());
    }
    usize::try_from(n).map_err(|_| "must be between 1 and 65536".to_string())
}

fn optional_text(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

fn optional_path(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

/// Paths separated by commas, each trimmed (the Node gateway split on `,` too, without
/// trimming: a space after a comma made it miss the file).
fn path_list(v: &str) -> Result<Vec<PathBuf>, String> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    v.split(',')
        .enumerate()
        .map(|(i, path)| match path.trim() {
            "" => Err(format!(
                "file {} of the list is empty (two commas in a row, or one at an end)",
                i + 1
            )),
            path => Ok(PathBuf::from(path)),
        })
        .collect()
}

/// `frontend.session_secret` bound: HMAC-SHA512 hashes any key longer than its 128-byte block
/// down to 64 bytes, so more adds nothing, and every worker's init message carries it.
pub(crate) const MAX_SESSION_SECRET: usize = 4096;

fn session_secret(v: &str) -> Result<Option<String>, String> {
    if v.len() > MAX_SESSION_SECRET {
        return Err(format!(
            "is {} bytes long, at most {MAX_SESSION_SECRET} (HMAC-SHA512 hashes a secret longer \
             than 128 bytes down to 64 anyway)",
            v.len()
        ));
    }
    Ok(optional_text(v))
}

fn socket_path(v: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(v);
    if !path.is_absolute() {
        return Err("expected an absolute path".to_string());
    }
    if v.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "is too long for a Unix socket path (at most {MAX_SOCKET_PATH} bytes)"
        ));
    }
    Ok(path)
}

// ---- value printers (the inverse of the parsers) ----

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map(|b| (b / MB).to_string()).unwrap_or_default()
}

fn show_path(p: Option<&Path>) -> String {
    p.map(|p| p.display().to_string()).unwrap_or_default()
}

// ---- messages ----

/// `cluster.workerTimeout = "5s": expected milliseconds as a whole number`, plus a note when
/// the value looks like it has a trailing comment.
pub(crate) fn bad_value_message(spec: &KeySpec, value: &str, expected: &str) -> String {
    let mut message = if spec.secret {
        format!("{} (value hidden): {expected}", spec.name)
    } else {
        format!("{} = {value:?}: {expected}", spec.name)
    };
    let comment_after = |mark: char| {
        value
            .char_indices()
            .any(|(i, c)| c == mark && value[..i].ends_with([' ', '\t']))
    };
    if comment_after('#') {
        message.push_str(
            "; note: '#' starts a comment only at the start of a line in .properties files",
        );
    } else if comment_after('!') {
        message.push_str(
            "; note: '!' starts a comment only at the start of a line in .properties files",
        );
    }
    message
}

/// The known key an unknown `key` most likely means, if any is close: same name ignoring case,
/// `_` and `-`; or the name without its `section.` prefix; or within a small edit distance.
pub(crate) fn suggest(key: &str) -> Option<&'static str> {
    fn normalize(s: &str) -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    }
    let wanted = normalize(key);
    if wanted.is_empty() {
        return None;
    }
    let known: Vec<(&'static str, String)> =
        KEYS.iter().map(|k| (k.name, normalize(k.name))).collect();
    if let Some((name, _)) = known.iter().find(|(_, n)| *n == wanted) {
        return Some(name);
    }
    let suffix = format!(".{wanted}");
    let mut by_suffix = known.iter().filter(|(_, n)| n.ends_with(&suffix));
    if let (Some((name, _)), None) = (by_suffix.next(), by_suffix.next()) {
        return Some(name);
    }
    let limit = (wanted.chars().count() / 8).clamp(1, 3);
    known
        .iter()
        .map(|(name, n)| (strsim::levenshtein(&wanted, n), *name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// One side of a cross-key rule: `key = value`, with `(line N)` / `(default)` when asked.
fn side(config: &Config, name: &str, show_origin: bool) -> String {
    let value = spec(name).map(|s| (s.get)(config)).unwrap_or_default();
    match (config.origins.get(name), show_origin) {
        (Origin::File { .. }, false) => format!("{name} = {value}"),
        (Origin::File { line }, true) => format!("{name} = {value} (line {line})"),
        (Origin::Default, _) => format!("{name} = {value} (default)"),
    }
}

/// A broken rule between `left` and `right`, reported on `left`'s line (or `right`'s if
/// `left` has its default).
fn pair_problem(config: &Config, path: &Path, left: &str, relation: &str, right: &str) -> Problem {
    let line = match (config.origins.get(left), config.origins.get(right)) {
        (Origin::File { line }, _) | (Origin::Default, Origin::File { line }) => Some(line),
        (Origin::Default, Origin::Default) => None,
    };
    Problem {
        path: path.to_path_buf(),
        line,
        message: format!(
            "{} {relation} {}",
            side(config, left, false),
            side(config, right, true)
        ),
    }
}

/// Rules between keys. `failed` are keys whose own value was invalid: rules involving them are
/// skipped (their value is still the default and would only confuse).
pub(crate) fn cross_check(
    config: &Config,
    path: &Path,
    failed: &[&str],
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<ConfigWarning>,
) {
    let ok = |keys: &[&str]| keys.iter().all(|k| !failed.contains(k));
    let cluster = &config.cluster;
    if ok(&[WORKER_TIMEOUT, HEARTBEAT_INTERVAL])
        && cluster.worker_timeout <= cluster.heartbeat_interval
    {
        problems.push(pair_problem(
            config,
            path,
            WORKER_TIMEOUT,
            "must be greater than",
            HEARTBEAT_INTERVAL,
        ));
    }
    let socketio = &config.gateway.socketio;
    if ok(&[SOCKETIO_INTERVAL, SOCKETIO_TIMEOUT]) && socketio.interval >= socketio.timeout {
        problems.push(pair_problem(
            config,
            path,
            SOCKETIO_INTERVAL,
            "must be less than",
            SOCKETIO_TIMEOUT,
        ));
    }
    if let (true, Origin::File { line }) = (config.frontend.ssl, config.origins.get(SSL)) {
        for (key, value) in [
            (PRIVATE_KEY, &config.frontend.private_key),
            (CERTIFICATE, &config.frontend.certificate),
        ] {
            if value.is_none() && ok(&[key]) {
                problems.push(Problem {
                    path: path.to_path_buf(),
                    line: Some(line),
                    message: format!("{SSL} = true but {key} is not set"),
                });
            }
        }
    }
    let (warn, limit) = (&cluster.memory_warning, &cluster.memory_limit);
    for (warning_key, warning, limit_key, limit) in [
        (MEMORY_WARNING_RSS, warn.rss, MEMORY_LIMIT_RSS, limit.rss),
        (
            MEMORY_WARNING_HEAP_TOTAL,
            warn.heap_total,
            MEMORY_LIMIT_HEAP_TOTAL,
            limit.heap_total,
        ),
        (
            MEMORY_WARNING_HEAP_USED,
            warn.heap_used,
            MEMORY_LIMIT_HEAP_USED,
            limit.heap_used,
        ),
    ] {
        let origins = (
            config.origins.get(warning_key),
            config.origins.get(limit_key),
        );
        let (Some(w), Some(l), (Origin::File { line }, Origin::File { line: limit_line })) =
            (warning, limit, origins)
        else {
            continue;
        };
        if w >= l {
            warnings.push(ConfigWarning::WarningNotBelowLimit {
                path: path.to_path_buf(),
                line,
                warning_key,
                warning_mb: w / MB,
                limit_key,
                limit_mb: l / MB,
                limit_line,
            });
        }
    }
    if let Origin::File { line } = config.origins.get(FLASH_POLICY_PORT) {
        warnings.push(ConfigWarning::Obsolete {
            path: path.to_path_buf(),
            line,
            key: FLASH_POLICY_PORT,
            reason: "Flash clients no longer exist; no policy file is served",
        });
    }
}

// ---- the sample file ----

const WIDTH: usize = 78;

/// `conf/gateway.properties`: every key with a comment giving unit, default and effect.
pub(crate) fn sample_file() -> String {
    let mut out = String::new();
    for line in [
        "ActiveStack gateway configuration (Java .properties syntax, read as UTF-8).",
        "",
        "A line starting with '#' or '!' is a comment; elsewhere '#' is part of the value. \
         Values are trimmed. An empty value (key=) means the key's default, except for the keys \
         of where clients connect and of which RabbitMQ and Redis the gateway uses, which must be \
         written out. true/false keys also take t/f, yes/no and 1/0. Unknown keys are reported \
         as warnings. Check a file with `activestack-gateway check-config <file>`; a running \
         master re-reads its file on SIGHUP.",
        "",
        "A file that sets no key (empty, or cut off) is refused; run `server` without a file for \
         the built-in defaults. A reload is refused when it would move the listen address \
         (frontend.host, frontend.port), RabbitMQ (gateway.rabbitmq.host, port, vhost, login, \
         password) or Redis (gateway.redis.host, port, password) to a default only because the \
         key is no longer in the file: write the key out to mean it.",
    ] {
        comment(&mut out, line);
    }
    for (prefix, title) in GROUPS {
        out.push('\n');
        let rule = format!("# {}\n", "-".repeat(WIDTH - 2));
        out.push_str(&rule);
        comment(&mut out, title);
        out.push_str(&rule);
        for key in KEYS.iter().filter(|k| k.name.starts_with(prefix)) {
            out.push('\n');
            let default = if key.default.is_empty() {
                "empty"
            } else {
                key.default
            };
            comment(
                &mut out,
                &format!("{}, default {default}. {}", key.unit, key.doc),
            );
            match key.sample {
                Sample::Default => out.push_str(&format!("{}={}\n", key.name, key.default)),
                Sample::Value(v) => out.push_str(&format!("{}={v}\n", key.name)),
                Sample::Commented(v) => out.push_str(&format!("#{}={v}\n", key.name)),
            }
        }
    }
    out
}

/// `text` as `# ` comment lines wrapped at [`WIDTH`] columns (an empty text gives `#`).
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}
