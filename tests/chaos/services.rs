//! Private Redis, NATS (JetStream) and RabbitMQ servers of the chaos run, on free ports in a
//! temp dir of their own. The machine's shared servers (6379, 4222, 5672) are never touched:
//! these are the ones the run stops and starts again. Each is stopped as an operator would
//! (SIGTERM: Redis writes its append-only file, NATS flushes JetStream, RabbitMQ shuts down in
//! order) and started again on the same port and data directory.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

fn log_file(path: &Path) -> (Stdio, Stdio) {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("a server log file");
    let err = out.try_clone().expect("a server log file");
    (Stdio::from(out), Stdio::from(err))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(20).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Waits for `child` (and `also`, a pid it started) to exit; SIGKILLs its group after `within`.
fn wait_gone(child: &mut Child, also: Option<i32>, within: Duration) -> bool {
    let start = Instant::now();
    loop {
        let also_gone = also.is_none_or(|pid| !crate::common::alive(pid));
        if also_gone && child.try_wait().ok().flatten().is_some() {
            return true;
        }
        if start.elapsed() > within {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            if let Some(pid) = also {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERMs `child` and waits for its exit; false if it had to be killed.
fn terminate(child: &mut Option<Child>) -> bool {
    let Some(mut child) = child.take() else {
        return true;
    };
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    wait_gone(&mut child, None, Duration::from_secs(20))
}

/// SIGKILLs `child`'s whole process group and reaps it.
fn kill_group(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
        let _ = c.wait();
    }
}

/// Polls `serving` until it holds; panics with the tail of `log` after `within`.
fn poll_until_serving(what: &str, within: Duration, log: &Path, mut serving: impl FnMut() -> bool) {
    let start = Instant::now();
    while !serving() {
        assert!(
            start.elapsed() < within,
            "private {what} did not come up:\n{}",
            tail(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What every private server does.
pub trait Server {
    fn name(&self) -> &'static str;
    fn port(&self) -> u16;
    fn start(&mut self);
    /// Blocks until the server serves; panics with its log's tail after `within`.
    fn wait_up(&mut self, within: Duration);
    /// Stops it (SIGTERM) and waits for the exit; false if it had to be killed.
    fn stop(&mut self) -> bool;

    /// Stop, `down` of outage, start, wait until it serves: how long it was unavailable.
    fn restart(&mut self, down: Duration) -> Duration {
        let start = Instant::now();
        self.stop();
        std::thread::sleep(down);
        self.start();
        self.wait_up(Duration::from_secs(60));
        start.elapsed()
    }
}

// ----- Redis -----

pub struct Redis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn new(dir: &Path) -> Redis {
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).expect("redis dir");
        Redis {
            dir,
            port: free_port(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// FLUSHALL through redis-cli (between scenarios).
    pub fn flush(&self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "flushall"])
            .stdout(Stdio::null())
            .status();
    }
}

impl Server for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn start(&mut self) {
        let (out, err) = log_file(&self.dir.join("server.log"));
        // The history of the realtime channels lives here: an append-only file keeps it over a
        // restart (written at shutdown and every second), as a Redis holding it should be run.
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
    }

    fn wait_up(&mut self, within: Duration) {
        let port = self.port.to_string();
        poll_until_serving("redis", within, &self.dir.join("server.log"), || {
            Command::new("redis-cli")
                .args(["-p", &port, "ping"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
        });
    }

    fn stop(&mut self) -> bool {
        terminate(&mut self.child)
    }
}

// ----- NATS -----

pub struct Nats {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// "Server is ready" lines in its log before the last start.
    ready_before: usize,
}

impl Nats {
    pub fn new(dir: &Path) -> Nats {
        let dir = dir.join("nats");
        std::fs::create_dir_all(&dir).expect("nats dir");
        Nats {
            dir,
            port: free_port(),
            child: None,
            ready_before: 0,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Nats {
    fn ready_lines(&self) -> usize {
        std::fs::read_to_string(self.dir.join("server.log"))
            .unwrap_or_default()
            .matches("Server is ready")
            .count()
    }
}

impl Server for Nats {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn start(&mut self) {
        self.ready_before = self.ready_lines();
        let (out, err) = log_file(&self.dir.join("server.log"));
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
    }

    fn wait_up(&mut self, within: Duration) {
        // JetStream is ready once the server logs it (the port opens a little earlier).
        poll_until_serving("nats", within, &self.dir.join("server.log"), || {
            port_open(self.port) && self.ready_lines() > self.ready_before
        });
    }

    fn stop(&mut self) -> bool {
        terminate(&mut self.child)
    }
}

// ----- RabbitMQ (as tests/gateway_recovery.rs's PrivateBroker) -----

pub struct Rabbit {
    dir: PathBuf,
    node: String,
    port: u16,
    dist_port: u16,
    child: Option<Child>,
}

impl Rabbit {
    pub fn new(dir: &Path) -> Rabbit {
        let dir = dir.join("rabbitmq");
        std::fs::create_dir_all(&dir).expect("rabbitmq dir");
        let port = free_port();
        let mut dist_port = free_port();
        while dist_port == port {
            dist_port = free_port();
        }
        crate::common::recovery::write_rabbitmq_files(&dir, port);
        Rabbit {
            node: format!("chaos-{}@localhost", std::process::id()),
            dir,
            port,
            dist_port,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Server for Rabbit {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn start(&mut self) {
        let (out, err) = log_file(&self.path("server.log"));
        let child = crate::common::recovery::rabbitmq_server(
            &self.dir,
            &self.node,
            self.port,
            self.dist_port,
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start rabbitmq-server");
        self.child = Some(child);
    }

    fn wait_up(&mut self, within: Duration) {
        let start = Instant::now();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        loop {
            let up = port_open(self.port)
                && runtime.block_on(async {
                    match crate::common::agent::try_amqp(self.port).await {
                        Ok(conn) => {
                            let _ = conn.close(200, "up").await;
                            true
                        }
                        Err(_) => false,
                    }
                });
            if up {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            assert!(
                !exited && start.elapsed() < within,
                "private RabbitMQ {} did not come up (exited: {exited}):\n{}",
                self.node,
                tail(&self.path("server.log"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let beam = std::fs::read_to_string(self.path("rabbitmq.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        match beam {
            Some(beam) => {
                let _ = kill(Pid::from_raw(beam), Signal::SIGTERM);
            }
            None => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            }
        }
        let clean = wait_gone(&mut child, beam, Duration::from_secs(30));
        let _ = std::fs::remove_file(self.path("rabbitmq.pid"));
        clean
    }
}

// Every private server is killed (its whole process group) when the run ends, however it ends.
impl Drop for Redis {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}
