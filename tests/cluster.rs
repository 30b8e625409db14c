//! The cluster as a whole: workers share one port, `status --json` tells the truth, and the
//! worker count follows SIGTTIN / SIGTTOU.

mod common;

use std::collections::BTreeSet;

use common::{Cluster, alive, health, wait_for, workers};
use nix::sys::signal::Signal;

#[test]
fn workers_share_the_port_and_answer_with_their_pid() {
    let cluster = Cluster::start("cluster.workerCount=3");
    let addr = cluster.addr();
    let pids: BTreeSet<i32> = cluster.worker_pids().into_iter().collect();
    assert_eq!(pids.len(), 3);
    let mut seen = BTreeSet::new();
    wait_for("requests to reach every worker", || {
        let body = health(addr).expect("health");
        seen.insert(body["pid"].as_i64().unwrap() as i32);
        (seen == pids).then_some(())
    });
}

#[test]
fn status_json_describes_the_cluster() {
    let cluster = Cluster::start("cluster.workerCount=2");
    let status = cluster.wait_ready();
    assert_eq!(status["master_pid"].as_i64(), Some(cluster.pid() as i64));
    assert_eq!(status["config_path"].as_str(), cluster.config.to_str());
    assert_eq!(status["generation"], 1);
    assert_eq!(status["desired_workers"], 2);
    assert_eq!(status["phase"], "running");
    let workers = workers(&status);
    let slots: Vec<u64> = workers
        .iter()
        .map(|w| w["slot"].as_u64().unwrap())
        .collect();
    assert_eq!(slots, [0, 1]);
    for w in &workers {
        let pid = w["pid"].as_i64().unwrap() as i32;
        assert!(alive(pid), "worker {pid} is not running");
        assert_eq!(w["state"], "ready");
        assert_eq!(w["restarts"], 0);
        assert!(w["uptime_ms"].as_u64().is_some());
    }
    // After a heartbeat or two, every worker has answered and been measured.
    let status = wait_for("heartbeat answers", || {
        let status = cluster.status()?;
        common::workers(&status)
            .iter()
            .all(|w| w["heartbeat_age_ms"].is_u64() && w["rss"].as_u64() > Some(0))
            .then_some(status)
    });
    for w in common::workers(&status) {
        assert!(w["heap_total"].as_u64() >= w["heap_used"].as_u64());
        assert!(w["heap_used"].as_u64() > Some(0));
    }
    // The same pids answer /health.
    let body = health(cluster.addr()).unwrap();
    let pid = body["pid"].as_i64().unwrap();
    assert!(
        common::workers(&status)
            .iter()
            .any(|w| w["pid"].as_i64() == Some(pid))
    );
}

/// A worker holds a descriptor per client: started with a soft open-files limit below the hard
/// one (a shell's usual 1024), the master raises it for the workers it starts.
#[test]
fn workers_get_the_hard_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // This test's own process (nextest runs one per test), inherited by the master.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let low = 1024.min(hard / 2);
    setrlimit(Resource::RLIMIT_NOFILE, low, hard).unwrap();
    let cluster = Cluster::start("");
    let status = cluster.wait_ready();
    let soft_limit = |pid: i64| {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .nth(3)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(soft_limit(i64::from(cluster.pid())), hard);
    for w in workers(&status) {
        assert_eq!(soft_limit(w["pid"].as_i64().unwrap()), hard, "{w}");
    }
    cluster.wait_log(&["open files limit raised to the hard limit"]);
}

#[test]
fn sigttin_and_sigttou_add_and_remove_a_worker() {
    let cluster = Cluster::start("cluster.workerCount=2");
    cluster.signal(Signal::SIGTTIN);
    wait_for("a third worker", || {
        let status = cluster.wait_ready();
        (workers(&status).len() == 3).then_some(())
    });
    // Signals of one kind do not queue: one at a time.
    for left in [2, 1] {
        cluster.signal(Signal::SIGTTOU);
        wait_for(&format!("{left} workers left"), || {
            let status = cluster.wait_ready();
            (workers(&status).len() == left).then_some(())
        });
    }
    cluster.signal(Signal::SIGTTOU);
    cluster.wait_log(&["SIGTTOU: already at one worker"]);
    wait_for("one worker left", || {
        let status = cluster.wait_ready();
        (workers(&status).len() == 1).then_some(())
    });
    health(cluster.addr()).expect("still serving");
}

#[test]
fn a_worker_ignores_sighup() {
    let cluster = Cluster::start("cluster.workerCount=1");
    let pid = cluster.worker_pids()[0];
    common::signal_pid(pid, Signal::SIGHUP);
    cluster.wait_log(&[&format!("pid={pid}"), "SIGHUP ignored"]);
    assert!(alive(pid));
    assert_eq!(cluster.worker_pids(), [pid]);
}
