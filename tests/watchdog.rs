//! Liveness and resource rules: hung workers are killed within the bound, dead ones replaced
//! after the backoff, and workers over their memory limit recycled without a restart storm.

mod common;

use common::{
    BIN, Cluster, Install, alive, health, signal_pid, wait_backoff_grows, wait_for, workers,
    zombies_of,
};
use nix::sys::signal::Signal;

/// workerTimeout + watchdogInterval + 100 ms, with FAST's values.
const HUNG_BOUND_MS: u64 = 500 + 100 + 100;

fn field(line: &str, key: &str) -> u64 {
    let start = line.find(&format!("{key}=")).expect(key) + key.len() + 1;
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect(key)
}

#[test]
fn stopped_worker_is_killed_and_replaced_within_the_bound() {
    let cluster = Cluster::start("cluster.workerCount=2");
    let before = cluster.worker_pids();
    let victim = before[0];
    signal_pid(victim, Signal::SIGSTOP);

    let line = cluster.wait_log(&[&format!("pid={victim}"), "did not answer heartbeats"]);
    // The master's own measure of how long the worker had been silent when it was killed: the
    // time since SIGSTOP is at most that.
    let silent = field(&line, "silent_ms");
    assert!(
        silent <= HUNG_BOUND_MS,
        "killed after {silent} ms of silence: {line}"
    );

    let status = wait_for("a replacement in slot 0", || {
        let status = cluster.wait_ready();
        let w = workers(&status);
        (w[0]["pid"].as_i64() != Some(victim as i64)).then_some(status)
    });
    assert_eq!(
        workers(&status)[1]["pid"].as_i64(),
        Some(before[1] as i64),
        "slot 1 untouched"
    );
    wait_for("the stopped worker to be gone", || {
        (!alive(victim)).then_some(())
    });
    health(cluster.addr()).expect("serving");
}

#[test]
fn killed_worker_is_replaced_after_the_backoff() {
    // No standby: this is about the slot's own replacement (the standby's: tests/standby.rs).
    let cluster = Cluster::start("cluster.workerCount=2\ncluster.standbyWorkers=0");
    let before = cluster.worker_pids();
    signal_pid(before[1], Signal::SIGKILL);
    cluster.wait_log(&[&format!("pid={}", before[1]), "worker exited unexpectedly"]);
    // First failure of the slot: full-jitter backoff with 2^0 - 1 = 0, so no delay.
    let line = cluster.wait_log(&["slot=1", "restarting after backoff"]);
    assert_eq!(field(&line, "delay_ms"), 0, "{line}");
    let status = wait_for("a replacement in slot 1", || {
        let status = cluster.wait_ready();
        let w = workers(&status);
        (w[1]["pid"].as_i64() != Some(before[1] as i64)).then_some(status)
    });
    assert_eq!(workers(&status)[1]["restarts"], 1);
    assert_eq!(workers(&status)[0]["restarts"], 0);
    assert_eq!(
        zombies_of(cluster.pid()),
        Vec::<i32>::new(),
        "the dead worker was reaped"
    );

    // The backoff counter reset at the new worker's first heartbeat answered while ready: a
    // second kill is again restarted at once.
    let second = workers(&status)[1]["pid"].as_i64().unwrap() as i32;
    let seen_ready = std::time::Instant::now();
    wait_for("a heartbeat of the new worker since it was ready", || {
        let s = cluster.status()?;
        let age = workers(&s)[1]["heartbeat_age_ms"].as_u64()?;
        (u128::from(age) < seen_ready.elapsed().as_millis()).then_some(())
    });
    signal_pid(second, Signal::SIGKILL);
    wait_for("the second restart", || {
        let lines: Vec<String> = cluster
            .log()
            .into_iter()
            .filter(|l| l.contains("slot=1") && l.contains("restarting after backoff"))
            .collect();
        (lines.len() == 2).then(|| assert_eq!(field(&lines[1], "delay_ms"), 0, "{}", lines[1]))
    });
}

#[test]
fn low_rss_limit_recycles_workers_with_warning_and_backoff() {
    let cluster = Cluster::start(
        "cluster.workerCount=1\ncluster.memoryWarning.rss=1\ncluster.memoryLimit.rss=2\n\
         cluster.workerRestartDelay=100\ncluster.maxRestartBackoff=3",
    );
    let first = cluster.worker_pids()[0];
    cluster.wait_log(&[
        &format!("pid={first}"),
        "memory warning: rss",
        "cluster.memoryWarning.rss",
    ]);
    cluster.wait_log(&[
        &format!("pid={first}"),
        "memory limit: rss",
        "the limit is below what a fresh worker needs",
    ]);
    // Its replacement takes over, and the old one drains away.
    wait_for("the first worker to be replaced and gone", || {
        let status = cluster.status()?;
        let replaced = workers(&status)
            .iter()
            .all(|w| w["pid"].as_i64() != Some(first as i64));
        (replaced && !alive(first)).then_some(())
    });
    cluster.wait_log(&[&format!("pid={first}"), "draining worker", "memory limit"]);
    // The replacements are over the limit too: they come with growing backoff, not in a storm,
    // and the warning is logged once per worker, not once per heartbeat.
    wait_for("three recycles", || {
        (cluster.count_log(&["the limit is below"]) >= 3).then_some(())
    });
    let warnings = cluster.count_log(&[&format!("pid={first}"), "memory warning: rss"]);
    assert_eq!(warnings, 1);
    health(cluster.addr()).expect("capacity never dropped");
}

/// Workers start from the binary's path on disk: when what is there cannot run, the master keeps
/// serving with the workers it has and retries under backoff; a fixed binary is picked up.
#[test]
fn a_worker_that_cannot_start_does_not_take_the_master_down() {
    let install = Install::new();
    let cluster = Cluster::start_from(
        &install.bin,
        // No standby: it would take slot 0, and this is about the slot's own restarts.
        "cluster.workerCount=2\ncluster.maxRestartBackoff=3\ncluster.standbyWorkers=0",
        &[],
    );
    let pids = cluster.worker_pids();

    install.break_it();
    signal_pid(pids[0], Signal::SIGKILL);
    wait_backoff_grows(&cluster, "0");
    let addr = cluster.addr();
    for _ in 0..5 {
        assert_eq!(
            health(addr).expect("slot 1 still serves")["pid"].as_i64(),
            Some(pids[1] as i64)
        );
    }

    // The fixed binary is picked up by the next restart.
    install.fix();
    wait_for("slot 0 serving again", || {
        let status = cluster.wait_ready();
        (workers(&status).len() == 2).then_some(())
    });
}

/// A worker waiting for RabbitMQ answers its heartbeats: it is not killed as hung.
#[test]
fn a_worker_waiting_for_its_broker_is_not_taken_for_hung() {
    // A "broker" that accepts and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let cluster = Cluster::launch(
        std::path::Path::new(BIN),
        &format!(
            "cluster.workerCount=1\ngateway.rabbitmq.host=127.0.0.1\ngateway.rabbitmq.port={port}"
        ),
        &[],
    );
    let (_held, _) = silent.accept().expect("the worker tries the broker");
    // Several workerTimeouts (500 ms) pass with the worker still starting and answering.
    let worker = wait_for("a worker starting for 2 s and answering", || {
        let status = cluster.status()?;
        let w = status["workers"].as_array()?.first()?.clone();
        let answering = w["heartbeat_age_ms"].as_u64()? < 500;
        (w["state"] == "starting" && w["uptime_ms"].as_u64()? > 2_000 && answering).then_some(w)
    });
    assert!(alive(worker["pid"].as_i64().unwrap() as i32));
    assert_eq!(cluster.count_log(&["did not answer heartbeats"]), 0);
}
