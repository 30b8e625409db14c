use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{self, KEYS};
use super::*;

const FILE: &str = "gateway.properties";

fn parse(text: &str) -> Result<Loaded, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

fn ok(text: &str) -> Loaded {
    match parse(text) {
        Ok(loaded) => loaded,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

/// The error text of `text`, which must be invalid.
fn err(text: &str) -> String {
    match parse(text) {
        Ok(loaded) => panic!("expected an error, got {loaded:?}"),
        Err(e) => e.to_string(),
    }
}

fn warnings(text: &str) -> Vec<String> {
    ok(text).warnings.iter().map(ToString::to_string).collect()
}

/// `n` lines of comments, so that the next key is on line `n + 1`.
fn filler(n: usize) -> String {
    "# filler\n".repeat(n)
}

fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/gateway.properties")
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::defaults();
    assert_eq!(c.source, None);
    assert_eq!(c.cluster.heartbeat_interval, Duration::from_millis(1000));
    assert_eq!(c.cluster.worker_timeout, Duration::from_millis(5000));
    assert_eq!(c.cluster.watchdog_interval, Duration::from_millis(1000));
    assert_eq!(c.cluster.memory_warning, MemoryThresholds::default());
    assert_eq!(c.cluster.memory_limit, MemoryThresholds::default());
    assert_eq!(c.cluster.worker_restart_delay, Duration::from_millis(50));
    assert_eq!(c.cluster.max_restart_backoff, 10);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.cluster.worker_count, (cpus / 2 + 1).min(1024));
    assert_eq!(c.cluster.drain_timeout, Duration::from_millis(10_000));
    assert_eq!(c.cluster.standby_workers, 1);
    assert_eq!(c.frontend.host, "0.0.0.0");
    assert_eq!(c.frontend.port, 8080);
    assert_eq!(c.frontend.log_level, LogLevel::Info);
    assert_eq!(c.frontend.shutdown_code, None);
    assert!(!c.frontend.ssl);
    assert_eq!(c.frontend.session_secret, None);
    assert_eq!(
        c.frontend.client_message_resend_interval,
        Duration::from_millis(7500)
    );
    assert_eq!(c.frontend.flash_policy_port, None);
    assert_eq!(c.gateway.socketio.timeout, Duration::from_secs(300));
    assert_eq!(c.gateway.socketio.interval, Duration::from_secs(20));
    assert_eq!(c.gateway.redis.host, "localhost");
    assert_eq!(c.gateway.redis.port, 6379);
    assert_eq!(c.gateway.redis.password, None);
    assert_eq!(c.gateway.redis.control_channel, "gateway");
    assert_eq!(c.gateway.redis.max_attempts, 1);
    assert!(!c.gateway.redis.offline_queue);
    assert_eq!(c.gateway.rabbitmq.host, "localhost");
    assert_eq!(c.gateway.rabbitmq.port, 5672);
    assert_eq!(c.gateway.rabbitmq.login, "guest");
    assert_eq!(c.gateway.rabbitmq.password, "guest");
    assert_eq!(c.gateway.rabbitmq.vhost, "/");
    assert!(!c.gateway.rabbitmq.durable);
    assert_eq!(Config::default(), c);
}

#[test]
fn table_defaults_match_config_defaults() {
    // Keys whose default depends on the machine: the table describes how it is computed.
    let computed = ["cluster.workerCount", "cluster.controlSocket"];
    let defaults = Config::defaults();
    for spec in KEYS {
        let mut c = Config::defaults();
        let parsed = (spec.set)(&mut c, spec.default);
        if computed.contains(&spec.name) {
            assert!(parsed.is_err(), "{}", spec.name);
            continue;
        }
        assert_eq!(parsed, Ok(()), "{}", spec.name);
        assert_eq!(c, defaults, "{}", spec.name);
        assert_eq!((spec.get)(&defaults), spec.default, "{}", spec.name);
    }
}

#[test]
fn table_has_no_duplicate_keys() {
    for (i, a) in KEYS.iter().enumerate() {
        assert!(KEYS[i + 1..].iter().all(|b| b.name != a.name), "{}", a.name);
    }
}

#[test]
fn control_socket_default() {
    assert_eq!(
        control_socket_in(Some(PathBuf::from("/run/user/1000"))),
        PathBuf::from("/run/user/1000/activestack-gateway/control.sock")
    );
    assert_eq!(
        control_socket_in(None),
        PathBuf::from("/run/activestack-gateway/control.sock")
    );
    // An unset-but-empty or relative XDG_RUNTIME_DIR is ignored.
    for dir in ["", "relative"] {
        assert_eq!(
            control_socket_in(Some(PathBuf::from(dir))),
            PathBuf::from("/run/activestack-gateway/control.sock")
        );
    }
}

#[test]
fn a_file_that_sets_no_key_is_refused() {
    let rule = "refused, because it would silently mean the built-in defaults (clients on \
                0.0.0.0:8080, every interface); set at least one key, or run `server` without a \
                CONFIG for the defaults";
    for text in ["", "# nothing\n", "\n\n! all gone\n"] {
        assert_eq!(
            err(text),
            format!("gateway.properties: sets no key (an empty or cut-off file?): {rule}")
        );
    }
    assert_eq!(
        err("frontend.prot=1\ngateway.host=x\n"),
        format!(
            "gateway.properties: sets no known key (unknown: frontend.prot, gateway.host): {rule}"
        )
    );
}

#[test]
fn one_key_is_enough_and_the_rest_are_defaults() {
    let loaded = ok("# nearly nothing\ncluster.workerCount=2\n");
    assert!(loaded.warnings.is_empty());
    let expected = Config {
        source: Some(PathBuf::from(FILE)),
        cluster: ClusterConfig {
            worker_count: 2,
            ..ClusterConfig::default()
        },
        ..Config::defaults()
    };
    assert_eq!(loaded.config.cluster, expected.cluster);
    assert_eq!(loaded.config.frontend, expected.frontend);
    assert_eq!(loaded.config.gateway, expected.gateway);
    assert!(
        loaded
            .config
            .entries()
            .iter()
            .all(|e| (e.origin == Origin::Default) == (e.key != "cluster.workerCount"))
    );
}

#[test]
fn every_key_is_read() {
    let text = "\
cluster.heartbeatInterval=2000
cluster.workerTimeout=9000
cluster.watchdogInterval=500
cluster.memoryWarning.rss=100
cluster.memoryWarning.heapTotal=200
cluster.memoryWarning.heapUsed=300
cluster.memoryLimit.rss=1000
cluster.memoryLimit.heapTotal=2000
cluster.memoryLimit.heapUsed=3000
cluster.workerRestartDelay=0
cluster.maxRestartBackoff=30
cluster.workerCount=7
cluster.drainTimeout=0
cluster.standbyWorkers=0
cluster.controlSocket=/tmp/gw.sock
cluster.metricsAddress=[::1]:9464
frontend.host=::1
frontend.port=0
frontend.logLevel=SILLY
frontend.shutdownCode=pass123
frontend.ssl=t
frontend.private_key=/etc/key.pem
frontend.certificate=/etc/cert.pem
frontend.cert_auth=/etc/ca.pem, /etc/ca2.pem
frontend.session_secret=s3cret
frontend.clientMessageResendInterval=1
frontend.maxMessageSize=2048
frontend.maxRequestsPerSecond=7
frontend.headerTimeout=2500
gateway.socketio.timeout=60
gateway.socketio.interval=59
gateway.redis.host=redis.example
gateway.redis.port=6380
gateway.redis.password=rpass
gateway.redis.gatewaycontrolqueue=ctl
gateway.redis.max_attempts=5
gateway.redis.offline_queue=true
gateway.rabbitmq.host=mq.example
gateway.rabbitmq.port=5673
gateway.rabbitmq.login=gw
gateway.rabbitmq.password=mqpass
gateway.rabbitmq.vhost=/gw
gateway.rabbitmq.durable=true
gateway.rabbitmq.clientQueueExpires=90000
gateway.rabbitmq.maxQueueDeclaresPerSecond=9
relay.enabled=true
relay.mongodb.url=mongodb://db1,db2/?replicaSet=rs1
relay.mongodb.database=app
relay.mongodb.outboxCollection=outbox
relay.mongodb.checkpointCollection=cp
relay.nats.url=nats://nats:4222
relay.nats.subjectPrefix=ev.app
relay.nats.stream=EV
relay.nats.deadLetterSubject=dead
relay.nats.deadLetterStream=DEAD
relay.messagesNamespace=ns
relay.maxInFlight=10
realtime.enabled=true
realtime.token.hmacSecretKey=jwt
realtime.api.key=api
realtime.allowedOrigins=https://a.example, https://b.example
realtime.nats.url=nats://n:4222
realtime.nats.stream=EV2
realtime.nats.subjects=ev.>
realtime.nats.consumer=gw
realtime.nats.maxAckPending=7
realtime.nats.maxDeliver=3
realtime.nats.deadLetterSubject=dl.rt
realtime.presenceTtl=5
realtime.namespace.personal.historySize=10
realtime.namespace.personal.historyTtl=20
realtime.namespace.personal.forceRecovery=false
realtime.namespace.personal.presence=false
realtime.namespace.personal.allowUserLimitedChannels=false
demo.enabled=true
";
    let loaded = ok(text);
    assert_eq!(loaded.warnings, vec![]);
    let c = loaded.config;
    assert_eq!(c.cluster.heartbeat_interval, Duration::from_millis(2000));
    assert_eq!(c.cluster.worker_timeout, Duration::from_millis(9000));
    assert_eq!(c.cluster.watchdog_interval, Duration::from_millis(500));
    assert_eq!(
        c.cluster.memory_warning,
        MemoryThresholds {
            rss: Some(100 * MB),
            heap_total: Some(200 * MB),
            heap_used: Some(300 * MB),
        }
    );
    assert_eq!(
        c.cluster.memory_limit,
        MemoryThresholds {
            rss: Some(1000 * MB),
            heap_total: Some(2000 * MB),
            heap_used: Some(3000 * MB),
        }
    );
    assert_eq!(c.cluster.memory_warning.rss, Some(104_857_600));
    assert_eq!(c.cluster.worker_restart_delay, Duration::ZERO);
    assert_eq!(c.cluster.max_restart_backoff, 30);
    assert_eq!(c.cluster.worker_count, 7);
    assert_eq!(c.cluster.drain_timeout, Duration::ZERO);
    assert_eq!(c.cluster.standby_workers, 0);
    assert_eq!(c.cluster.control_socket, PathBuf::from("/tmp/gw.sock"));
    assert_eq!(c.cluster.metrics_address.as_deref(), Some("[::1]:9464"));
    assert_eq!(c.frontend.host, "::1");
    assert_eq!(c.frontend.port, 0);
    assert_eq!(c.frontend.log_level, LogLevel::Trace);
    assert_eq!(c.frontend.shutdown_code.as_deref(), Some("pass123"));
    assert!(c.frontend.ssl);
    assert_eq!(c.frontend.private_key, Some(PathBuf::from("/etc/key.pem")));
    assert_eq!(c.frontend.certificate, Some(PathBuf::from("/etc/cert.pem")));
    assert_eq!(
        c.frontend.cert_auth,
        vec![PathBuf::from("/etc/ca.pem"), PathBuf::from("/etc/ca2.pem")]
    );
    assert_eq!(c.frontend.session_secret.as_deref(), Some("s3cret"));
    assert_eq!(
        c.frontend.client_message_resend_interval,
        Duration::from_millis(1)
    );
    assert_eq!(c.frontend.max_message_size, 2048);
    assert_eq!(c.frontend.max_requests_per_second, 7);
    assert_eq!(c.frontend.header_timeout, Duration::from_millis(2500));
    assert_eq!(c.gateway.rabbitmq.max_queue_declares_per_second, 9);
    assert_eq!(c.gateway.socketio.timeout, Duration::from_secs(60));
    assert_eq!(c.gateway.socketio.interval, Duration::from_secs(59));
    assert_eq!(c.gateway.redis.host, "redis.example");
    assert_eq!(c.gateway.redis.port, 6380);
    assert_eq!(c.gateway.redis.password.as_deref(), Some("rpass"));
    assert_eq!(c.gateway.redis.control_channel, "ctl");
    assert_eq!(c.gateway.redis.max_attempts, 5);
    assert!(c.gateway.redis.offline_queue);
    assert_eq!(c.gateway.rabbitmq.host, "mq.example");
    assert_eq!(c.gateway.rabbitmq.port, 5673);
    assert_eq!(c.gateway.rabbitmq.login, "gw");
    assert_eq!(c.gateway.rabbitmq.password, "mqpass");
    assert_eq!(c.gateway.rabbitmq.vhost, "/gw");
    assert!(c.gateway.rabbitmq.durable);
    assert_eq!(
        c.gateway.rabbitmq.client_queue_expires,
        Some(Duration::from_secs(90))
    );
    let relay = RelayConfig {
        enabled: true,
        mongodb_url: "mongodb://db1,db2/?replicaSet=rs1".to_string(),
        database: "app".to_string(),
        outbox_collection: "outbox".to_string(),
        checkpoint_collection: "cp".to_string(),
        nats_url: "nats://nats:4222".to_string(),
        subject_prefix: "ev.app".to_string(),
        stream: "EV".to_string(),
        dead_letter_subject: "dead".to_string(),
        dead_letter_stream: "DEAD".to_string(),
        messages_namespace: "ns".to_string(),
        max_in_flight: 10,
        log_level: None,
    };
    assert_eq!(c.relay, relay);
    assert!(c.demo.enabled);
    // Every key came from the file, on its own line, in table order.
    for entry in c.entries() {
        // realtime.centrifugoConfig cannot be set together with the other realtime keys.
        if entry.key == "frontend.flash_policy_port" || entry.key == "realtime.centrifugoConfig" {
            assert_eq!(entry.origin, Origin::Default);
        } else {
            assert!(matches!(entry.origin, Origin::File { .. }), "{}", entry.key);
        }
    }
}

#[test]
fn values_are_trimmed() {
    let c = ok(
        "cluster.workerCount =   3   \nfrontend.host=\t127.0.0.1 \nfrontend.session_secret=   \n",
    )
    .config;
    assert_eq!(c.cluster.worker_count, 3);
    assert_eq!(c.frontend.host, "127.0.0.1");
    assert_eq!(c.frontend.session_secret, None);
}

#[test]
fn empty_optional_values_are_none() {
    let c = ok(
        "cluster.memoryLimit.rss=\nfrontend.shutdownCode=\nfrontend.private_key=\n\
                gateway.redis.password=\nfrontend.flash_policy_port=\n",
    )
    .config;
    assert_eq!(c.cluster.memory_limit.rss, None);
    assert_eq!(c.frontend.shutdown_code, None);
    assert_eq!(c.frontend.private_key, None);
    assert_eq!(c.gateway.redis.password, None);
    assert_eq!(c.frontend.flash_policy_port, None);
}

#[test]
fn bad_number_names_file_line_key_value_and_expectation() {
    let text = format!("{}cluster.workerTimeout=5s\n", filler(11));
    assert_eq!(
        err(&text),
        "gateway.properties:12: cluster.workerTimeout = \"5s\": expected milliseconds as a whole number"
    );
}

#[test]
fn trailing_comment_gets_a_note() {
    let text = format!("{}gateway.redis.port=6379 # comment\n", filler(6));
    assert_eq!(
        err(&text),
        "gateway.properties:7: gateway.redis.port = \"6379 # comment\": expected a port \
         number (1-65535); note: '#' starts a comment only at the start of a line in .properties \
         files"
    );
    assert_eq!(
        err("relay.enabled=false ! no\n"),
        "gateway.properties:1: relay.enabled = \"false ! no\": expected true or false (or t/f, \
         yes/no, 1/0; empty = the default); note: '!' starts a comment only at the start of a line in \
         .properties files"
    );
}

#[test]
fn each_kind_of_bad_value() {
    let cases = [
        (
            "cluster.heartbeatInterval=0",
            "cluster.heartbeatInterval = \"0\": must be at least 1",
        ),
        (
            "cluster.watchdogInterval=-5",
            "cluster.watchdogInterval = \"-5\": expected milliseconds as a whole number",
        ),
        (
            "cluster.drainTimeout=86400001",
            "cluster.drainTimeout = \"86400001\": must be at most 86400000 (24 hours)",
        ),
        (
            "cluster.workerRestartDelay=99999999999999999999999",
            "cluster.workerRestartDelay = \"99999999999999999999999\": must be at most 86400000 \
             (24 hours)",
        ),
        (
            "cluster.memoryLimit.rss=2G",
            "cluster.memoryLimit.rss = \"2G\": expected megabytes as a whole number (or empty for \
             no check)",
        ),
        (
            "cluster.memoryWarning.heapUsed=0",
            "cluster.memoryWarning.heapUsed = \"0\": must be at least 1 (or empty for no check)",
        ),
        (
            "cluster.memoryLimit.heapUsed=99999999999999",
            "cluster.memoryLimit.heapUsed = \"99999999999999\": is too large",
        ),
        (
            "cluster.maxRestartBackoff=31",
            "cluster.maxRestartBackoff = \"31\": must be at most 30",
        ),
        (
            "cluster.workerCount=0",
            "cluster.workerCount = \"0\": must be between 1 and 1024",
        ),
        (
            "cluster.workerCount=1025",
            "cluster.workerCount = \"1025\": must be between 1 and 1024",
        ),
        (
            "cluster.workerCount=two",
            "cluster.workerCount = \"two\": expected a whole number",
        ),
        (
            "cluster.standbyWorkers=2",
            "cluster.standbyWorkers = \"2\": must be 0 or 1",
        ),
        (
            "cluster.standbyWorkers=yes",
            "cluster.standbyWorkers = \"yes\": expected a whole number",
        ),
        (
            "cluster.controlSocket=run/x.sock",
            "cluster.controlSocket = \"run/x.sock\": expected an absolute path",
        ),
        (
            "cluster.metricsAddress=9464",
            "cluster.metricsAddress = \"9464\": expected host:port (an IPv6 address as [::1]:9464)",
        ),
        (
            "cluster.metricsAddress=::1:9464",
            "cluster.metricsAddress = \"::1:9464\": expected host:port (an IPv6 address as [::1]:9464)",
        ),
        (
            "cluster.metricsAddress=localhost:99999",
            "cluster.metricsAddress = \"localhost:99999\": expected host:port (an IPv6 address as [::1]:9464); the port is 0-65535",
        ),
        (
            "frontend.host=",
            "frontend.host = \"\": must not be empty: it decides where clients connect, and an \
             empty value is what a cut-off line looks like; write frontend.host=0.0.0.0 for the \
             default",
        ),
        (
            "frontend.host=a b",
            "frontend.host = \"a b\": expected a host name or IP address",
        ),
        (
            "frontend.port=65536",
            "frontend.port = \"65536\": expected a port number (0-65535)",
        ),
        (
            "gateway.redis.port=0",
            "gateway.redis.port = \"0\": expected a port number (1-65535)",
        ),
        (
            "frontend.logLevel=loud",
            "frontend.logLevel = \"loud\": expected error, warn, info, debug or trace",
        ),
        (
            "frontend.ssl=enabled",
            "frontend.ssl = \"enabled\": expected true or false (or t/f, yes/no, 1/0; empty = \
             the default); the Node gateway read any value but true, t and 1 as false: write false if \
             that is what you mean",
        ),
        (
            "frontend.clientMessageResendInterval=0",
            "frontend.clientMessageResendInterval = \"0\": must be at least 1",
        ),
        (
            "gateway.socketio.timeout=5m",
            "gateway.socketio.timeout = \"5m\": expected seconds as a whole number",
        ),
        (
            "gateway.socketio.interval=0",
            "gateway.socketio.interval = \"0\": must be at least 1",
        ),
        (
            "gateway.redis.gatewaycontrolqueue=",
            "gateway.redis.gatewaycontrolqueue = \"\": must not be empty: it names the control \
             channel and the socket.io adapter's channels, and an empty value is what a cut-off \
             line looks like; write gateway.redis.gatewaycontrolqueue=gateway for the default",
        ),
        (
            "gateway.redis.max_attempts=0",
            "gateway.redis.max_attempts = \"0\": must be at least 1",
        ),
        (
            "gateway.rabbitmq.vhost=",
            "gateway.rabbitmq.vhost = \"\": must not be empty: it decides which RabbitMQ the \
             gateway uses, and an empty value is what a cut-off line looks like; write \
             gateway.rabbitmq.vhost=/ for the default",
        ),
        (
            "gateway.rabbitmq.durable=yes please",
            "gateway.rabbitmq.durable = \"yes please\": expected true or false (or t/f, yes/no, \
             1/0; empty = the default); the Node gateway read any value but true as false: write false \
             if that is what you mean",
        ),
        (
            "relay.enabled=on",
            "relay.enabled = \"on\": expected true or false (or t/f, yes/no, 1/0; empty = the default)",
        ),
        (
            "frontend.cert_auth=a.pem,",
            "frontend.cert_auth = \"a.pem,\": file 2 of the list is empty (two commas in a row, \
             or one at an end)",
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(err(line), format!("gateway.properties:1: {expected}"));
    }
}

#[test]
fn too_long_control_socket() {
    let long = format!("/{}", "x".repeat(200));
    let text = err(&format!("cluster.controlSocket={long}"));
    assert!(
        text.starts_with("gateway.properties:1: cluster.controlSocket = \"/xxx"),
        "{text}"
    );
    assert!(
        text.contains("\": is too long for a Unix socket path (at most 10"),
        "{text}"
    );
}

#[test]
fn all_problems_at_once_sorted_by_line_without_trailing_newline() {
    let text = "frontend.port=http\ncluster.workerCount=many\n# ok\nfrontend.ssl=maybe\n";
    let e = parse(text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "gateway.properties:1: frontend.port = \"http\": expected a port number (0-65535)\n\
         gateway.properties:2: cluster.workerCount = \"many\": expected a whole number\n\
         gateway.properties:4: frontend.ssl = \"maybe\": expected true or false (or t/f, yes/no, \
         1/0; empty = the default); the Node gateway read any value but true, t and 1 as false: write \
         false if that is what you mean"
    );
    assert_eq!(e.problems().len(), 3);
    assert_eq!(e.path(), Path::new(FILE));
}

#[test]
fn path_is_shown_as_given() {
    let e = Config::parse("frontend.port=x\n", Path::new("/etc/gw/my.properties")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/gw/my.properties:1: frontend.port = \"x\": expected a port number (0-65535)"
    );
}

#[test]
fn worker_timeout_must_exceed_heartbeat() {
    assert_eq!(
        err("# x\ncluster.heartbeatInterval=1000\ncluster.workerTimeout=500\n"),
        "gateway.properties:3: cluster.workerTimeout = 500 must be greater than \
         cluster.heartbeatInterval = 1000 (line 2)"
    );
    assert_eq!(
        err("cluster.workerTimeout=1000\n"),
        "gateway.properties:1: cluster.workerTimeout = 1000 must be greater than \
         cluster.heartbeatInterval = 1000 (default)"
    );
    assert_eq!(
        err("\ncluster.heartbeatInterval=6000\n"),
        "gateway.properties:2: cluster.workerTimeout = 5000 (default) must be greater than \
         cluster.heartbeatInterval = 6000 (line 2)"
    );
}

#[test]
fn socketio_interval_must_be_below_timeout() {
    assert_eq!(
        err("gateway.socketio.timeout=20\n"),
        "gateway.properties:1: gateway.socketio.interval = 20 (default) must be less than \
         gateway.socketio.timeout = 20 (line 1)"
    );
}

#[test]
fn cross_rules_skip_keys_that_are_already_wrong() {
    assert_eq!(
        err("cluster.heartbeatInterval=9000\ncluster.workerTimeout=9s\n"),
        "gateway.properties:2: cluster.workerTimeout = \"9s\": expected milliseconds as a whole \
         number"
    );
}

#[test]
fn ssl_needs_key_and_certificate() {
    assert_eq!(
        err("frontend.ssl=true\nfrontend.private_key=\n"),
        "gateway.properties:1: frontend.ssl = true but frontend.private_key is not set\n\
         gateway.properties:1: frontend.ssl = true but frontend.certificate is not set"
    );
    ok("frontend.ssl=true\nfrontend.private_key=k.pem\nfrontend.certificate=c.pem\n");
}

#[test]
fn unknown_keys_warn_with_suggestions() {
    let text = format!(
        "{}cluster.workertimeout=5000\nworkerCount=2\nfrontend.private-key=\nbogus.key=1\n\
         gateway.redis.hots=x\nfrontend.port=1\n",
        filler(8)
    );
    assert_eq!(
        warnings(&text),
        vec![
            "gateway.properties:9: unknown key cluster.workertimeout (did you mean cluster.workerTimeout?)",
            "gateway.properties:10: unknown key workerCount (did you mean cluster.workerCount?)",
            "gateway.properties:11: unknown key frontend.private-key (did you mean frontend.private_key?)",
            "gateway.properties:12: unknown key bogus.key",
            "gateway.properties:13: unknown key gateway.redis.hots (did you mean gateway.redis.host?)",
        ]
    );
}

#[test]
fn suggestions_only_when_close() {
    assert_eq!(keys::suggest("frontend.url"), None);
    assert_eq!(keys::suggest("gateway.rabbitmq.user"), None);
    assert_eq!(keys::suggest("port"), None); // three keys end in .port
    assert_eq!(keys::suggest("drainTimeout"), Some("cluster.drainTimeout"));
    assert_eq!(
        keys::suggest("cluster.heartbeat_interval"),
        Some("cluster.heartbeatInterval")
    );
    assert_eq!(
        keys::suggest("cluster.hearbeatInterval"),
        Some("cluster.heartbeatInterval")
    );
}

#[test]
fn duplicate_keys_last_wins_with_warning() {
    let loaded = ok("frontend.port=1\nfrontend.port=2\n");
    assert_eq!(loaded.config.frontend.port, 2);
    assert_eq!(
        loaded.config.origin("frontend.port"),
        Origin::File { line: 2 }
    );
    assert_eq!(
        warnings("frontend.port=1\nfrontend.port=2\n"),
        vec!["gateway.properties:2: duplicate key frontend.port: line 2 overrides line 1"]
    );
}

#[test]
fn flash_policy_port_takes_any_value_and_is_ignored_with_a_warning() {
    // Line 20 of the Node gateway's own env.default.ssl.properties.
    for value in [
        "10843",
        "10443 # Optionally change the Flash Policy Port",
        "x",
    ] {
        let text = format!("\n\nfrontend.flash_policy_port={value}\n");
        let loaded = ok(&text);
        assert_eq!(
            loaded.config.frontend.flash_policy_port.as_deref(),
            Some(value)
        );
        assert_eq!(
            warnings(&text),
            vec![
                "gateway.properties:3: frontend.flash_policy_port is obsolete and ignored (Flash \
                 clients no longer exist; no policy file is served)"
            ]
        );
    }
}

#[test]
fn empty_values_are_the_defaults() {
    let text = "cluster.heartbeatInterval=\ncluster.workerCount=\ncluster.controlSocket=\n\
                frontend.logLevel=\nfrontend.ssl=\nfrontend.cert_auth=\n\
                frontend.clientMessageResendInterval=\ngateway.socketio.timeout=\n\
                gateway.redis.offline_queue=\ngateway.redis.max_attempts=\n\
                gateway.rabbitmq.durable=\ngateway.rabbitmq.clientQueueExpires=\n\
                relay.enabled=\nrelay.mongodb.url=\nrelay.maxInFlight=\n";
    let loaded = ok(text);
    assert_eq!(loaded.warnings, vec![]);
    let c = loaded.config;
    let defaults = Config::defaults();
    assert_eq!(c.cluster, defaults.cluster);
    assert_eq!(c.frontend, defaults.frontend);
    assert_eq!(c.gateway, defaults.gateway);
    assert_eq!(c.relay, defaults.relay);
    // Set in the file, to the default.
    assert_eq!(c.origin("frontend.ssl"), Origin::File { line: 5 });
}

#[test]
fn an_empty_rabbitmq_password_is_an_empty_password() {
    assert_eq!(
        ok("gateway.rabbitmq.password=\n")
            .config
            .gateway
            .rabbitmq
            .password,
        ""
    );
}

#[test]
fn booleans_as_the_node_gateway_wrote_them() {
    for (value, expected) in [
        ("true", true),
        ("t", true),
        ("T", true),
        ("1", true),
        ("yes", true),
        ("false", false),
        ("f", false),
        ("0", false),
        ("No", false),
    ] {
        let c = ok(&format!("relay.enabled={value}\n")).config;
        assert_eq!(c.relay.enabled, expected, "{value}");
    }
    // Empty is the key's default, whatever it is.
    let c = ok("relay.enabled=\nrealtime.namespace.personal.forceRecovery=\n").config;
    assert!(!c.relay.enabled);
    assert!(c.realtime.namespaces["personal"].force_recovery);
}

#[test]
fn a_boolean_the_node_gateway_read_otherwise_warns() {
    // ssl_config.js: "true", "t", "1" (exactly) are true; gateway.js and
    // redis_store_factory.js: only "true".
    assert_eq!(
        warnings("frontend.ssl=t\nfrontend.private_key=k\nfrontend.certificate=c\n"),
        Vec::<String>::new()
    );
    assert_eq!(
        warnings("frontend.ssl=TRUE\nfrontend.private_key=k\nfrontend.certificate=c\n"),
        vec![
            "gateway.properties:1: frontend.ssl = \"TRUE\" is read as true; the Node gateway read \
             it as false (it took only \"true\", \"t\" and \"1\")"
        ]
    );
    assert_eq!(
        warnings("gateway.rabbitmq.durable=1\ngateway.redis.offline_queue=true \n"),
        vec![
            "gateway.properties:1: gateway.rabbitmq.durable = \"1\" is read as true; the Node \
             gateway read it as false (it took only \"true\")",
            "gateway.properties:2: gateway.redis.offline_queue = \"true \" is read as true; the \
             Node gateway read it as false (it took only \"true\")",
        ]
    );
    assert_eq!(
        warnings("gateway.rabbitmq.durable=false\nrelay.enabled=1\n"),
        Vec::<String>::new()
    );
}

#[test]
fn session_secret_is_at_most_4096_bytes() {
    ok(&format!("frontend.session_secret={}\n", "s".repeat(4096)));
    assert_eq!(
        err(&format!("frontend.session_secret={}\n", "s".repeat(4097))),
        "gateway.properties:1: frontend.session_secret (value hidden): is 4097 bytes long, at \
         most 4096 (HMAC-SHA512 hashes a secret longer than 128 bytes down to 64 anyway)"
    );
}

#[test]
fn read_leniently_takes_what_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.properties");
    std::fs::write(
        &path,
        b"frontend.session_secret=p\xe4ss\ncluster.controlSocket=/tmp/x.sock\n\
          cluster.workerCount=many\ngateway.redis.port=6380\n",
    )
    .unwrap();
    assert!(Config::load(&path).is_err());
    let c = Config::read_leniently(Some(&path));
    assert_eq!(c.cluster.control_socket, PathBuf::from("/tmp/x.sock"));
    assert_eq!(c.gateway.redis.port, 6380);
    assert_eq!(
        c.cluster.worker_count,
        Config::defaults().cluster.worker_count
    );
    assert_eq!(c.frontend.session_secret.as_deref(), Some("p\u{fffd}ss"));

    let (c, problems) = Config::resolve_for_control(Some(&path));
    assert_eq!(c.gateway.redis.port, 6380);
    assert!(
        problems
            .unwrap()
            .to_string()
            .ends_with(":1: not valid UTF-8 (save the file as UTF-8)")
    );

    let missing = dir.path().join("missing");
    assert_eq!(Config::read_leniently(Some(&missing)), Config::defaults());
}

#[test]
fn memory_warning_not_below_limit_warns() {
    let text = "cluster.memoryWarning.rss=2048\ncluster.memoryLimit.rss=2048\n\
                cluster.memoryWarning.heapUsed=10\ncluster.memoryLimit.heapUsed=20\n\
                cluster.memoryWarning.heapTotal=30\n";
    assert_eq!(
        warnings(text),
        vec![
            "gateway.properties:1: cluster.memoryWarning.rss = 2048 is not below \
             cluster.memoryLimit.rss = 2048 (line 2), so the warning never fires before the limit"
        ]
    );
}

#[test]
fn warnings_are_sorted_by_line() {
    let text = "frontend.flash_policy_port=1\nx=1\nfrontend.port=1\nfrontend.port=2\n";
    let lines: Vec<usize> = ok(text).warnings.iter().map(ConfigWarning::line).collect();
    assert_eq!(lines, vec![1, 2, 4]);
}

#[test]
fn log_levels() {
    for (text, level) in [
        ("error", LogLevel::Error),
        ("WARN", LogLevel::Warn),
        ("warning", LogLevel::Warn),
        ("Info", LogLevel::Info),
        ("debug", LogLevel::Debug),
        ("verbose", LogLevel::Debug),
        ("trace", LogLevel::Trace),
        ("silly", LogLevel::Trace),
    ] {
        assert_eq!(text.parse::<LogLevel>(), Ok(level), "{text}");
    }
    assert_eq!(
        "http".parse::<LogLevel>(),
        Err("expected error, warn, info, debug or trace".to_string())
    );
    assert_eq!(LogLevel::Warn.to_string(), "warn");
    assert_eq!(LogLevel::Trace.as_filter(), "trace");
    assert_eq!(LogLevel::Error.as_filter(), "error");
}

#[test]
fn entries_hide_secrets_and_say_where_values_came_from() {
    let text = "frontend.session_secret=hunter2\ngateway.redis.password=\n\
                gateway.rabbitmq.password=pw\nfrontend.port=9000\n";
    let config = ok(text).config;
    let entries = config.entries();
    assert_eq!(entries.len(), KEYS.len());
    let get = |key: &str| {
        entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| (e.value.as_str(), e.origin))
    };
    assert_eq!(
        get("frontend.session_secret"),
        Some(("(set)", Origin::File { line: 1 }))
    );
    assert_eq!(
        get("gateway.redis.password"),
        Some(("", Origin::File { line: 2 }))
    );
    assert_eq!(
        get("gateway.rabbitmq.password"),
        Some(("(set)", Origin::File { line: 3 }))
    );
    assert_eq!(get("frontend.shutdownCode"), Some(("", Origin::Default)));
    assert_eq!(
        get("frontend.port"),
        Some(("9000", Origin::File { line: 4 }))
    );
    assert_eq!(
        get("cluster.heartbeatInterval"),
        Some(("1000", Origin::Default))
    );
    assert_eq!(
        get("gateway.socketio.timeout"),
        Some(("300", Origin::Default))
    );
    assert!(
        entries
            .iter()
            .all(|e| !e.value.contains("hunter2") && e.value != "pw")
    );
    let keys: Vec<&str> = entries.iter().map(|e| e.key).collect();
    let table: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
    assert_eq!(keys, table);
    assert_eq!(Origin::File { line: 4 }.to_string(), "line 4");
    assert_eq!(Origin::Default.to_string(), "default");
}

#[test]
fn entries_written_back_give_the_same_config() {
    let original = ok(&std::fs::read_to_string(sample_path()).unwrap()).config;
    let text: String = original
        .entries()
        .iter()
        .filter(|e| !keys::spec(e.key).is_some_and(|s| s.secret))
        .filter(|e| e.key != "frontend.flash_policy_port")
        .map(|e| format!("{}={}\n", e.key, e.value))
        .collect();
    let reread = ok(&text).config;
    assert_eq!(reread.cluster, original.cluster);
    assert_eq!(reread.frontend, original.frontend);
    assert_eq!(reread.gateway, original.gateway);
}

#[test]
fn serde_round_trip_keeps_everything() {
    let config = ok("frontend.port=1234\ncluster.memoryLimit.rss=10\n").config;
    let json = serde_json::to_string(&config).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    assert_eq!(back.origin("frontend.port"), Origin::File { line: 1 });
}

#[test]
fn read_errors() {
    let e = Config::load(Path::new("/x/y.properties")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot read config file /x/y.properties: No such file or directory (os error 2)"
    );
    assert!(e.problems().is_empty());
}

#[test]
fn load_reads_utf8_and_rejects_other_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.properties");
    std::fs::write(&path, "frontend.session_secret=pässwörd 🔑\n").unwrap();
    let loaded = Config::load(&path).unwrap();
    assert_eq!(
        loaded.config.frontend.session_secret.as_deref(),
        Some("pässwörd 🔑")
    );
    assert_eq!(loaded.config.source, Some(path.clone()));

    std::fs::write(&path, b"frontend.port=1\nfrontend.session_secret=p\xe4ss\n").unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: not valid UTF-8 (save the file as UTF-8)",
            path.display()
        )
    );
}

#[test]
fn resolve_rules() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.properties");
    let present = dir.path().join("present.properties");
    std::fs::write(&present, "frontend.port=1\n").unwrap();

    // Named on the command line: must be readable, never a fallback.
    let e = resolve_with(Some(&missing), &present).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    let loaded = resolve_with(Some(&present), &missing).unwrap();
    assert_eq!(loaded.config.frontend.port, 1);

    // Not named: the default path if it exists, else built-in defaults.
    let loaded = resolve_with(None, &present).unwrap();
    assert_eq!(loaded.config.source, Some(present.clone()));
    let loaded = resolve_with(None, &missing).unwrap();
    assert_eq!(loaded.config, Config::defaults());
    assert!(loaded.warnings.is_empty());

    // Present but invalid, or not a file: an error, not the defaults.
    std::fs::write(&present, "frontend.port=x\n").unwrap();
    assert!(matches!(
        resolve_with(None, &present),
        Err(ConfigError::Invalid { .. })
    ));
    assert!(matches!(
        resolve_with(None, dir.path()),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn shipped_sample_is_generated_from_the_table() {
    let expected = sample_file();
    if std::env::var_os("ACTIVESTACK_WRITE_SAMPLE_CONF").is_some() {
        std::fs::write(sample_path(), &expected).unwrap();
    }
    let shipped = std::fs::read_to_string(sample_path()).unwrap();
    assert!(
        shipped == expected,
        "conf/gateway.properties differs from the key table; regenerate it with \
         ACTIVESTACK_WRITE_SAMPLE_CONF=1 cargo test --lib config::tests::shipped_sample"
    );
}

#[test]
fn shipped_sample_parses_cleanly_and_has_every_key() {
    let loaded = Config::load(&sample_path()).unwrap();
    assert_eq!(loaded.warnings, vec![]);
    let text = std::fs::read_to_string(sample_path()).unwrap();
    for spec in KEYS {
        let set = text
            .lines()
            .any(|l| l.starts_with(&format!("{}=", spec.name)));
        let commented = text
            .lines()
            .any(|l| l.starts_with(&format!("#{}=", spec.name)));
        assert!(set || commented, "{} missing from the sample", spec.name);
    }
    let c = loaded.config;
    assert_eq!(c.frontend.host, "127.0.0.1");
    assert_eq!(c.frontend.port, 8080);
    assert_eq!(c.frontend.session_secret, None);
    assert_eq!(
        c.cluster.worker_count,
        Config::defaults().cluster.worker_count
    );
    assert_eq!(c.cluster.memory_warning.rss, Some(1024 * MB));
    assert_eq!(c.cluster.memory_warning.heap_total, Some(512 * MB));
    assert_eq!(c.cluster.memory_warning.heap_used, None);
    assert_eq!(c.cluster.memory_limit.rss, Some(2048 * MB));
    assert_eq!(c.cluster.memory_limit.heap_total, None);
    assert_eq!(c.cluster.memory_limit.heap_used, Some(1024 * MB));
    assert_eq!(c.origin("cluster.workerCount"), Origin::Default);
    assert_eq!(c.origin("cluster.controlSocket"), Origin::Default);
}
