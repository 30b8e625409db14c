//! Test harness: runs the real binary as a cluster on a free port with a config of its own, and
//! waits on conditions (status, logs, HTTP answers) with deadlines, never on fixed sleeps.
#![allow(dead_code)]

pub mod agent;
pub mod keys;
pub mod legacy;
pub mod percero;
pub mod private_redis;
pub mod recovery;
pub mod scale;
pub mod ws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use activestack_gateway::status::{Phase, Role, State, StatusReport};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_activestack-gateway");

/// How long any one condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Fast intervals so that tests finish quickly; each test adds or overrides keys.
pub const FAST: &str = "\
frontend.host=127.0.0.1
frontend.port=0
frontend.logLevel=debug
cluster.workerCount=2
cluster.heartbeatInterval=100
cluster.workerTimeout=500
cluster.watchdogInterval=100
cluster.workerRestartDelay=50
cluster.maxRestartBackoff=4
cluster.drainTimeout=3000
gateway.rabbitmq.clientQueueExpires=60000
";

pub struct Cluster {
    pub master: Child,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    /// Keys of FAST left out of the config file (see [`Cluster::start_unset`]).
    unset: Vec<String>,
}

impl Cluster {
    /// Starts a master with `FAST` plus `extra` keys, and waits until all workers are ready.
    pub fn start(extra: &str) -> Cluster {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Cluster {
        Self::start_from(Path::new(BIN), extra, env)
    }

    /// Starts the master from the binary at `bin`.
    pub fn start_from(bin: &Path, extra: &str, env: &[(&str, &str)]) -> Cluster {
        let cluster = Self::launch(bin, extra, env);
        cluster.wait_ready();
        cluster
    }

    /// Starts a master with `FAST` less the keys in `unset` (their defaults apply), plus
    /// `extra`, and waits until all workers are ready.
    pub fn start_unset(unset: &[&str], extra: &str) -> Cluster {
        let cluster = Self::launch_unset(Path::new(BIN), unset, extra, &[]);
        cluster.wait_ready();
        cluster
    }

    /// Starts the master from `bin` without waiting for its workers.
    pub fn launch(bin: &Path, extra: &str, env: &[(&str, &str)]) -> Cluster {
        Self::launch_unset(bin, &[], extra, env)
    }

    fn launch_unset(bin: &Path, unset: &[&str], extra: &str, env: &[(&str, &str)]) -> Cluster {
        let unset: Vec<String> = unset.iter().map(|k| k.to_string()).collect();
        Self::launch_written(bin, env, unset.clone(), |config, dir| {
            write_config(config, dir, &unset, extra)
        })
    }

    /// Starts a master on a config file of the test's own (no `FAST` base): `text` gets the
    /// test's directory (for `cluster.controlSocket`) and gives the whole file. Waits until all
    /// workers are ready.
    pub fn start_with_file(text: impl FnOnce(&Path) -> String) -> Cluster {
        let cluster = Self::launch_written(Path::new(BIN), &[], Vec::new(), |config, dir| {
            std::fs::write(config, text(dir)).expect("write config")
        });
        cluster.wait_ready();
        cluster
    }

    fn launch_written(
        bin: &Path,
        env: &[(&str, &str)],
        unset: Vec<String>,
        write: impl FnOnce(&Path, &Path),
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("gateway.properties");
        write(&config, dir.path());
        let mut command = Command::new(bin);
        command
            .arg("server")
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut master = command.spawn().expect("start master");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = master.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                sink.lock().unwrap().push(line);
            }
        });
        Cluster {
            master,
            dir,
            config,
            log,
            unset,
        }
    }

    /// Rewrites the config file (same FAST base, new extra keys).
    pub fn rewrite_config(&self, extra: &str) {
        write_config(&self.config, self.dir.path(), &self.unset, extra);
    }

    /// Writes `text` as the whole config file, as an operator's edit would.
    pub fn write_raw_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
    }

    pub fn pid(&self) -> i32 {
        self.master.id() as i32
    }

    /// `status --json` from the running master.
    pub fn status(&self) -> Option<Value> {
        let out = Command::new(BIN)
            .arg("status")
            .arg(&self.config)
            .arg("--json")
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `status --json` from the running master, typed as the master writes it.
    pub fn report(&self) -> Option<StatusReport> {
        serde_json::from_value(self.status()?).ok()
    }

    /// Waits until status shows `desired_workers` ready workers of the current generation and
    /// nothing else (no starting, draining or killed workers).
    pub fn wait_ready(&self) -> Value {
        wait_for("all workers ready", || {
            let status = self.status()?;
            let report: StatusReport = serde_json::from_value(status.clone()).ok()?;
            let all_current = report
                .workers
                .iter()
                .all(|w| w.state == State::Ready && w.generation == report.generation);
            let gateways = report
                .workers
                .iter()
                .filter(|w| w.role == Role::Gateway)
                .count();
            let settled =
                report.phase == Phase::Running && gateways == report.desired_workers && all_current;
            settled.then_some(status)
        })
    }

    pub fn addr(&self) -> SocketAddr {
        let status = wait_for("status", || self.status());
        status["listen"].as_str().unwrap().parse().unwrap()
    }

    /// The relay process's entry in status, once every process is ready.
    pub fn relay(&self) -> Option<Value> {
        let status = self.wait_ready();
        status["workers"]
            .as_array()?
            .iter()
            .find(|w| w["role"] == "relay")
            .cloned()
    }

    /// Pids of the ready gateway workers, by slot order.
    pub fn worker_pids(&self) -> Vec<i32> {
        let status = self.wait_ready();
        workers(&status)
            .iter()
            .map(|w| w["pid"].as_i64().unwrap() as i32)
            .collect()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        signal_pid(self.pid(), signal);
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line containing every one of `needles`, and returns it.
    pub fn wait_log(&self, needles: &[&str]) -> String {
        wait_for(&format!("a log line with {needles:?}"), || {
            self.log()
                .into_iter()
                .find(|line| needles.iter().all(|n| line.contains(n)))
        })
    }

    pub fn count_log(&self, needles: &[&str]) -> usize {
        self.log()
            .iter()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .count()
    }

    /// Waits for the master to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let master = &mut self.master;
        wait_for("master exit", || master.try_wait().ok().flatten())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Workers die with their master (parent-death signal).
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// FAST without the keys in `unset`, with the keys `extra` sets replaced by its values.
fn write_config(path: &Path, dir: &Path, unset: &[String], extra: &str) {
    let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
    let overridden: Vec<String> = extra
        .lines()
        .map(key)
        .chain(unset.iter().cloned())
        .collect();
    let base: String = FAST
        .lines()
        .filter(|line| !overridden.contains(&key(line)))
        .map(|line| format!("{line}\n"))
        .collect();
    // A control channel of its own (it also names the socket.io adapter's Redis channels), so
    // clusters of tests running at once never hear each other.
    let control = "gateway.redis.gatewaycontrolqueue";
    let channel = if overridden.iter().any(|k| k == control) {
        String::new()
    } else {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        format!("{control}=gw-test-{name}\n")
    };
    let text = format!(
        "{base}{channel}cluster.controlSocket={}\n{extra}\n",
        dir.join("control.sock").display()
    );
    std::fs::write(path, text).expect("write config");
}

/// A copy of the binary that a test can break (replace with a script that exits with status 3)
/// and fix again, as a bad install and its fix would: workers start from the path on disk.
pub struct Install {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
}

impl Install {
    pub fn new() -> Install {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("activestack-gateway");
        std::fs::copy(BIN, &bin).expect("copy the binary");
        Install { dir, bin }
    }

    /// Puts the broken binary in place (the good one is kept aside).
    pub fn break_it(&self) {
        let broken = self.dir.path().join("broken");
        std::fs::write(&broken, "#!/bin/sh\nexit 3\n").expect("write the broken binary");
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&broken, executable).expect("make it executable");
        std::fs::rename(&self.bin, self.dir.path().join("good")).expect("keep the good one");
        std::fs::rename(&broken, &self.bin).expect("install the broken one");
    }

    /// Puts the good binary back.
    pub fn fix(&self) {
        std::fs::rename(self.dir.path().join("good"), &self.bin).expect("reinstall");
    }
}

/// The last log line containing every one of `needles`.
pub fn last_log(cluster: &Cluster, needles: &[&str]) -> Option<String> {
    cluster
        .log()
        .into_iter()
        .rfind(|line| needles.iter().all(|n| line.contains(n)))
}

/// Waits for three failed starts in `slot` (a worker exiting with status 3, the broken binary
/// of [`Install`]) and checks that its restart backoff has grown past the first failure.
pub fn wait_backoff_grows(cluster: &Cluster, slot: &str) {
    let slot = format!("slot={slot}");
    wait_for("three failed starts", || {
        (cluster.count_log(&[&slot, "exit status: 3"]) >= 3).then_some(())
    });
    let line = last_log(cluster, &[&slot, "restarting after backoff"]).expect("a backoff line");
    assert!(
        line.contains("failures=") && !line.contains("failures=1 "),
        "backoff grows: {line}"
    );
}

/// The standby workers of a status report (listed apart from `workers`).
pub fn standby(status: &Value) -> Vec<Value> {
    status["standby"].as_array().cloned().unwrap_or_default()
}

/// The gateway workers of a status report (the relay, if any, left out), by slot.
pub fn workers(status: &Value) -> Vec<Value> {
    let all = status["workers"].as_array().cloned().unwrap_or_default();
    all.into_iter().filter(|w| w["role"] == "gateway").collect()
}

pub fn signal_pid(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("send signal");
}

/// Polls `check` every few milliseconds until it gives a value; panics after [`DEADLINE`].
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One `GET /health` on a new connection; the parsed JSON body.
pub fn health(addr: SocketAddr) -> Result<Value, String> {
    let response = http_get(addr, "/health")?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("bad status: {head}"));
    }
    serde_json::from_str(body).map_err(|e| format!("bad body {body:?}: {e}"))
}

pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    if response.is_empty() {
        return Err("empty response".into());
    }
    Ok(response)
}

/// Children of `parent` that have exited but were not reaped.
pub fn zombies_of(parent: i32) -> Vec<i32> {
    children_of(parent)
        .into_iter()
        .filter(|&(_, state)| state == 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

/// Every child process of `parent` with its state letter from `/proc` (`R`, `S`, `Z`...).
pub fn children_of(parent: i32) -> Vec<(i32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse::<i32>().ok()?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

/// Is a process with this pid still running (a zombie counts as gone)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Hammers `/health` from `threads` clients (new connection each request) until stopped.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

pub struct LoadResult {
    pub ok: u64,
    pub failures: Vec<String>,
}

impl Load {
    pub fn start(addr: SocketAddr, threads: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut ok, mut failures) = (0, Vec::new());
                    let start = Instant::now();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && start.elapsed() < Duration::from_secs(120)
                    {
                        match health(addr) {
                            Ok(_) => ok += 1,
                            Err(e) => failures.push(e),
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Load { stop, threads }
    }

    pub fn finish(self) -> LoadResult {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut result = LoadResult {
            ok: 0,
            failures: Vec::new(),
        };
        for thread in self.threads {
            let (ok, failures) = thread.join().expect("load thread");
            result.ok += ok;
            result.failures.extend(failures);
        }
        result
    }
}
