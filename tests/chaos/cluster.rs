//! The cluster under test: the release binary's master with its workers, standby and relay,
//! on the private servers, with a config of the scenario's own. Its log goes to a file; status
//! comes from the control socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use activestack_gateway::status::{Phase, Role, State, StatusReport, query_status};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub const SESSION_SECRET: &str = "chaos-session-secret";
pub const TOKEN_KEY: &str = "chaos-jwt-secret";
pub const API_KEY: &str = "chaos-api-key";

/// The settings of one scenario's cluster.
pub struct Settings {
    /// Scenario tag, [a-z0-9]: names its stream, consumer, database and control channel.
    pub tag: String,
    pub port: u16,
    pub rabbit_port: u16,
    pub redis_port: u16,
    pub nats_url: String,
    pub mongo_url: String,
    pub durable: bool,
    pub workers: usize,
    pub heartbeat_ms: u64,
    pub worker_timeout_ms: u64,
    /// Extra `key=value` lines (memory limits).
    pub extra: Vec<String>,
}

impl Settings {
    pub fn stream(&self) -> String {
        format!("EVENTS_{}", self.tag.to_uppercase())
    }

    pub fn subject_prefix(&self) -> String {
        format!("ev{}", self.tag)
    }

    pub fn consumer(&self) -> String {
        format!("gateway_{}", self.tag)
    }

    pub fn database(&self) -> String {
        format!("chaos_{}", self.tag)
    }

    pub fn dead_letter_stream(&self) -> String {
        format!("DEADLETTER_{}", self.tag.to_uppercase())
    }

    fn text(&self, dir: &Path) -> String {
        let mut text = format!(
            "frontend.host=127.0.0.1\n\
             frontend.port={port}\n\
             frontend.logLevel=info\n\
             frontend.session_secret={SESSION_SECRET}\n\
             cluster.workerCount={workers}\n\
             cluster.heartbeatInterval={hb}\n\
             cluster.workerTimeout={timeout}\n\
             cluster.watchdogInterval=250\n\
             cluster.drainTimeout=5000\n\
             cluster.controlSocket={sock}\n\
             gateway.rabbitmq.host=127.0.0.1\n\
             gateway.rabbitmq.port={rabbit}\n\
             gateway.rabbitmq.durable={durable}\n\
             gateway.redis.host=127.0.0.1\n\
             gateway.redis.port={redis}\n\
             gateway.redis.gatewaycontrolqueue=chaos-{tag}\n\
             relay.enabled=true\n\
             relay.mongodb.url={mongo}\n\
             relay.mongodb.database={db}\n\
             relay.nats.url={nats}\n\
             relay.nats.subjectPrefix={prefix}\n\
             relay.nats.stream={stream}\n\
             relay.nats.deadLetterSubject=deadletter.{tag}\n\
             relay.nats.deadLetterStream={dl}\n\
             realtime.enabled=true\n\
             realtime.token.hmacSecretKey={TOKEN_KEY}\n\
             realtime.api.key={API_KEY}\n\
             realtime.nats.url={nats}\n\
             realtime.nats.stream={stream}\n\
             realtime.nats.subjects={prefix}.>\n\
             realtime.nats.consumer={consumer}\n\
             realtime.nats.deadLetterSubject=deadletter.{tag}.realtime\n",
            port = self.port,
            workers = self.workers,
            hb = self.heartbeat_ms,
            timeout = self.worker_timeout_ms,
            sock = dir.join("control.sock").display(),
            rabbit = self.rabbit_port,
            durable = self.durable,
            redis = self.redis_port,
            tag = self.tag,
            mongo = self.mongo_url,
            db = self.database(),
            nats = self.nats_url,
            prefix = self.subject_prefix(),
            stream = self.stream(),
            dl = self.dead_letter_stream(),
            consumer = self.consumer(),
        );
        for line in &self.extra {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

pub struct Cluster {
    pub master: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    socket: PathBuf,
}

impl Cluster {
    pub fn start(bin: &Path, dir: &Path, settings: &Settings) -> Cluster {
        let dir = dir.join(format!("cluster-{}", settings.tag));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let config = dir.join("gateway.properties");
        std::fs::write(&config, settings.text(&dir)).expect("write the config");
        let log = dir.join("gateway.log");
        let out = std::fs::File::create(&log).expect("log file");
        let master = Command::new(bin)
            .arg("server")
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start the master");
        Cluster {
            master,
            socket: dir.join("control.sock"),
            dir,
            config,
            log,
        }
    }

    /// Rewrites the config (a SIGHUP then applies it).
    pub fn rewrite(&self, settings: &Settings) {
        std::fs::write(&self.config, settings.text(&self.dir)).expect("write the config");
    }

    pub fn pid(&self) -> i32 {
        self.master.id() as i32
    }

    pub fn status(&self) -> Option<StatusReport> {
        query_status(&self.socket).ok()
    }

    /// Every slot's worker ready, the relay ready, a standby ready: the cluster as it should be.
    pub fn settled(&self) -> Option<StatusReport> {
        let s = self.status()?;
        let gateways = s
            .workers
            .iter()
            .filter(|w| w.role == Role::Gateway && w.state == State::Ready)
            .count();
        let relay = s
            .workers
            .iter()
            .any(|w| w.role == Role::Relay && w.state == State::Ready);
        let standby = s.standby.iter().any(|w| w.state == State::Ready);
        let only_current = s.workers.iter().all(|w| w.generation == s.generation);
        (s.phase == Phase::Running
            && gateways == s.desired_workers
            && s.workers.len() == s.desired_workers + 1
            && relay
            && standby
            && only_current)
            .then_some(s)
    }

    pub fn wait_settled(&self, within: Duration) -> Option<StatusReport> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.settled() {
                return Some(s);
            }
            if start.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids of the gateway workers that are ready.
    pub fn ready_workers(&self) -> Vec<i32> {
        self.status()
            .map(|s| {
                s.workers
                    .iter()
                    .filter(|w| w.role == Role::Gateway && w.state == State::Ready)
                    .map(|w| w.pid.0 as i32)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn relay_pid(&self) -> Option<i32> {
        self.status()?
            .workers
            .iter()
            .find(|w| w.role == Role::Relay && w.state == State::Ready)
            .map(|w| w.pid.0 as i32)
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), signal);
    }

    /// Log lines containing every needle.
    pub fn count_log(&self, needles: &[&str]) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// Graceful stop (SIGTERM), SIGKILL after 20 s.
    pub fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self.master.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Workers die with their master (parent-death signal).
        if self.master.try_wait().ok().flatten().is_none() {
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
    }
}
