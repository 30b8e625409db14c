//! The Redis control channel end to end: the real cluster, Redis on localhost:6379, and the
//! `console` command (one-shot from arguments, and reading stdin).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{Cluster, wait_for};
use serde_json::Value;

const CODE: &str = "Sesame-42";

/// A cluster with a control channel of its own (tests run in parallel on one Redis).
fn start(extra: &str) -> Cluster {
    let channel = format!("gw-test-{}-{}", std::process::id(), fastrand::u64(..));
    let cluster = Cluster::start(&format!(
        "frontend.session_secret=s\nfrontend.shutdownCode={CODE}\n\
         gateway.redis.gatewaycontrolqueue={channel}\n{extra}"
    ));
    cluster.wait_log(&["listening for control commands on Redis"]);
    cluster
}

fn console(cluster: &Cluster, command: &str) -> (bool, Value) {
    let out: Output = Command::new(common::BIN)
        .arg("console")
        .arg(&cluster.config)
        .args(command.split_whitespace())
        .output()
        .expect("run the console");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "console {command:?} -> {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (out.status.success(), answer)
}

#[test]
fn clientcount_and_status_answer_per_worker_and_in_total() {
    let cluster = start("");
    let (ok, answer) = console(&cluster, "clientcount");
    assert!(ok);
    assert_eq!(answer["total"], 0);
    assert_eq!(answer["workers"].as_array().map(Vec::len), Some(2));
    let (ok, answer) = console(&cluster, "status");
    assert!(ok);
    assert_eq!(
        answer["status"]["workers"].as_array().map(Vec::len),
        Some(2)
    );
    let (ok, answer) = console(&cluster, "reboot now");
    assert!(!ok);
    assert_eq!(answer["ok"], false);
}

#[test]
fn loglevel_and_resend_interval_reach_every_worker() {
    let cluster = start("frontend.logLevel=info");
    let (ok, _) = console(&cluster, "loglevel trace");
    assert!(ok);
    wait_for("both workers at trace", || {
        (cluster.count_log(&["log level changed", "trace"]) >= 2).then_some(())
    });
    let (ok, answer) = console(&cluster, "clientmessageresendinterval 1234");
    assert!(ok);
    assert_eq!(answer["clientMessageResendInterval"], 1234);
    wait_for("both workers told", || {
        (cluster.count_log(&["resend interval changed", "1234"]) >= 2).then_some(())
    });
    let (ok, _) = console(&cluster, "loglevel shouting");
    assert!(!ok);
}

#[test]
fn restart_immediate_and_graceful_replace_every_worker() {
    let cluster = start("");
    let before = cluster.worker_pids();
    let (ok, answer) = console(&cluster, "restart immediate 100");
    assert!(ok, "{answer}");
    wait_for("new workers after restart immediate", || {
        let now = cluster.worker_pids();
        now.iter().all(|p| !before.contains(p)).then_some(())
    });
    let middle = cluster.worker_pids();
    let (ok, answer) = console(&cluster, "restart graceful 500");
    assert!(ok, "{answer}");
    wait_for("new workers after restart graceful", || {
        let status = cluster.wait_ready();
        let now: Vec<i64> = common::workers(&status)
            .iter()
            .filter_map(|w| w["pid"].as_i64())
            .collect();
        now.iter()
            .all(|p| !middle.contains(&(*p as i32)))
            .then_some(())
    });
}

#[test]
fn shutdown_needs_the_code_and_never_logs_it() {
    let mut cluster = start("");
    let (ok, answer) = console(&cluster, "shutdown wrong-code immediate");
    assert!(!ok);
    assert_eq!(answer["error"], "wrong shutdown code");
    cluster.wait_ready();
    // Through stdin this time, graceful with a timeout.
    let (ok, answer) = console_stdin(&cluster, &format!("shutdown {CODE} graceful 1000"));
    assert!(ok, "{answer}");
    assert_eq!(answer["stopping"], "graceful");
    let status = cluster.wait_exit();
    assert!(status.success(), "{status:?}");
    assert_eq!(cluster.count_log(&[CODE]), 0);
    assert_eq!(cluster.count_log(&["wrong-code"]), 0);
}

#[test]
fn the_master_runs_on_without_redis() {
    let cluster = Cluster::start("frontend.session_secret=s\ngateway.redis.port=1\n");
    cluster.wait_log(&["Redis unreachable for the control channel"]);
    // Workers serve without Redis (only cross-worker pushes need it), and keep trying to reach it.
    cluster.wait_ready();
    cluster.wait_log(&["Redis unreachable for pushes"]);
    assert!(common::health(cluster.addr()).is_ok());
}

/// Sends `line` through the console's stdin (a line longer than any argument may be).
fn console_stdin(cluster: &Cluster, line: &str) -> (bool, Value) {
    let mut child = Command::new(common::BIN)
        .arg("console")
        .arg(&cluster.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("console");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{line}\nquit").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (out.status.success(), answer)
}

/// A push over the 1 MiB frame limit of the master <-> worker channel is refused at the
/// console, with the limit named; no worker is harmed (it used to lose its channel and exit).
#[test]
fn a_push_too_large_for_a_worker_is_refused_and_harms_no_worker() {
    let cluster = start("");
    let before = cluster.worker_pids();
    let big = "x".repeat(1 << 20);
    let (ok, answer) = console_stdin(&cluster, &format!(r#"push * {{"text":"{big}"}}"#));
    assert!(!ok);
    assert_eq!(answer["ok"], false, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("1048576-byte limit"), "{error}");
    // A push that fits still goes out, through the same workers.
    let (ok, answer) = console(&cluster, r#"push * {"text":"small"}"#);
    assert!(ok, "{answer}");
    assert_eq!(cluster.worker_pids(), before);
    assert_eq!(cluster.count_log(&["worker exited"]), 0);
}

/// Console numbers are bounded as the config's durations are (24 hours): a drain of years would
/// keep old workers past every later reload.
#[test]
fn console_durations_over_24_hours_are_refused() {
    let cluster = start("");
    for command in [
        "restart graceful 99999999999",
        "restart immediate 86400001",
        &format!("shutdown {CODE} graceful 86400001"),
        "clientmessageresendinterval 86400001",
    ] {
        let (ok, answer) = console(&cluster, command);
        assert!(!ok, "{command}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains("24 hours"), "{command}: {error}");
    }
    let status = cluster.wait_ready();
    assert_eq!(status["generation"], 1, "nothing was restarted");
    let (ok, _) = console(&cluster, "restart graceful 86400000");
    assert!(ok, "24 hours is allowed");
}
