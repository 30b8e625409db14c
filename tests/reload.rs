//! SIGHUP: a valid edit is applied by a rolling restart that drops no request; an invalid edit
//! is reported and changes nothing.

mod common;

use common::{Cluster, Load, health, wait_for, workers};
use nix::sys::signal::Signal;

fn generation_ready(cluster: &Cluster, generation: u64, count: usize) {
    wait_for(
        &format!("generation {generation} with {count} ready workers"),
        || {
            let status = cluster.wait_ready();
            (status["generation"] == generation && workers(&status).len() == count).then_some(())
        },
    );
}

#[test]
fn valid_edit_is_applied_with_zero_failed_requests() {
    let cluster = Cluster::start("cluster.workerCount=2");
    let old = cluster.worker_pids();
    let load = Load::start(cluster.addr(), 4);

    cluster.rewrite_config("cluster.workerCount=3");
    cluster.signal(Signal::SIGHUP);
    generation_ready(&cluster, 2, 3);
    let new = cluster.worker_pids();
    assert!(
        new.iter().all(|pid| !old.contains(pid)),
        "every worker replaced: {old:?} -> {new:?}"
    );
    cluster.wait_log(&["configuration reloaded", "workers=3"]);

    let result = load.finish();
    assert!(result.ok > 0);
    assert_eq!(result.failures, Vec::<String>::new(), "{} ok", result.ok);
}

#[test]
fn twenty_reloads_in_a_row_drop_no_request() {
    let cluster = Cluster::start("cluster.workerCount=2");
    let load = Load::start(cluster.addr(), 4);
    for generation in 2..=21 {
        cluster.signal(Signal::SIGHUP);
        // Wait for the master to take the reload in (not for it to finish): reloads overlap.
        wait_for("the reload to be applied", || {
            (cluster.status()?["generation"] == generation).then_some(())
        });
    }
    generation_ready(&cluster, 21, 2);
    let result = load.finish();
    assert!(result.ok > 0);
    assert_eq!(result.failures, Vec::<String>::new(), "{} ok", result.ok);
}

#[test]
fn broken_edit_keeps_the_cluster_serving_and_says_why() {
    let cluster = Cluster::start("cluster.workerCount=2");
    let before = cluster.worker_pids();
    let good = std::fs::read_to_string(&cluster.config).unwrap();
    cluster.write_raw_config(&format!("{good}cluster.workerTimeout=5s\n"));
    cluster.signal(Signal::SIGHUP);
    cluster.wait_log(&[
        "reload failed: ",
        "cluster.workerTimeout = \"5s\": expected milliseconds as a whole number",
    ]);
    cluster.wait_log(&["keeps running on its current configuration", "generation=1"]);

    let status = cluster.wait_ready();
    assert_eq!(status["generation"], 1);
    assert_eq!(cluster.worker_pids(), before);
    health(cluster.addr()).expect("still serving");

    // Fixing the file and reloading again works.
    std::fs::write(&cluster.config, good).unwrap();
    cluster.signal(Signal::SIGHUP);
    generation_ready(&cluster, 2, 2);
}

/// A one-worker cluster and what a refused reload must leave as it was.
struct Running {
    cluster: Cluster,
    /// The file it started from.
    good: String,
    listen: String,
    pids: Vec<i32>,
}

impl Running {
    fn start(extra: &str) -> Running {
        let cluster = Cluster::start(&format!("cluster.workerCount=1\n{extra}"));
        let listen = cluster.wait_ready()["listen"].as_str().unwrap().to_owned();
        Running {
            good: std::fs::read_to_string(&cluster.config).unwrap(),
            pids: cluster.worker_pids(),
            listen,
            cluster,
        }
    }

    /// The good file without its `key=` line.
    fn without(&self, key: &str) -> String {
        let prefix = format!("{key}=");
        self.good
            .lines()
            .filter(|line| !line.starts_with(&prefix))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// Writes `text` as the file and sends SIGHUP.
    fn reload(&self, text: &str) {
        self.cluster.write_raw_config(text);
        self.cluster.signal(Signal::SIGHUP);
    }

    /// A refused reload: said in the log, and the cluster still serves generation 1 on its
    /// address with the workers it had.
    fn refused(&self, why: &str) {
        let cluster = &self.cluster;
        cluster.wait_log(&["reload failed: ", why]);
        cluster.wait_log(&["keeps running on its current configuration", "generation=1"]);
        // `status` finds the master through the file: put the good one back (no SIGHUP) to ask.
        std::fs::write(&cluster.config, &self.good).unwrap();
        let status = cluster.wait_ready();
        assert_eq!(status["generation"], 1);
        assert_eq!(status["listen"], self.listen.as_str());
        assert_eq!(cluster.worker_pids(), self.pids);
        health(cluster.addr()).expect("still serving");
    }
}

#[test]
fn an_emptied_file_is_refused_and_the_cluster_keeps_its_address() {
    let running = Running::start("");
    // `: > gateway.properties`
    running.reload("");
    running.refused("sets no key");
}

#[test]
fn a_file_that_lost_frontend_host_is_refused_until_the_host_is_written_out() {
    let running = Running::start("");
    assert!(
        running.listen.starts_with("127.0.0.1:"),
        "{}",
        running.listen
    );
    let lost = running.without("frontend.host");
    running.reload(&lost);
    running.refused("frontend.host would change from 127.0.0.1 to 0.0.0.0 (the default)");

    // Written out, the same move is what the operator asked for: applied.
    running.reload(&format!("{lost}frontend.host=0.0.0.0\n"));
    generation_ready(&running.cluster, 2, 1);
    let status = running.cluster.wait_ready();
    let listen = status["listen"].as_str().unwrap();
    assert!(listen.starts_with("0.0.0.0:"), "{listen}");
}

#[test]
fn a_config_too_large_for_the_worker_init_message_is_refused() {
    // The master reads the file on its event loop, and a debug build takes seconds over a 2 MB
    // line: heartbeats are late meanwhile, so the workers get more than FAST's 500 ms.
    let running = Running::start("cluster.workerTimeout=60000");
    let code = "x".repeat(2 << 20);
    running.reload(&format!("{}frontend.shutdownCode={code}\n", running.good));
    running.refused("frontend.shutdownCode is 2097152 bytes");
}

#[test]
fn the_control_socket_warning_names_the_socket_in_use() {
    let cluster = Cluster::start("cluster.workerCount=1");
    let text = std::fs::read_to_string(&cluster.config).unwrap();
    let started_with = cluster.dir.path().join("control.sock");
    let in_use = started_with.display().to_string();
    assert!(text.contains(&in_use), "{text}");
    let with_socket = |name: &str| {
        let other = cluster.dir.path().join(name).display().to_string();
        text.replace(&in_use, &other)
    };
    let reload = |text: &str, reloads: usize| {
        cluster.write_raw_config(text);
        cluster.signal(Signal::SIGHUP);
        wait_for(&format!("reload {reloads}"), || {
            (cluster.count_log(&["configuration reloaded"]) == reloads).then_some(())
        });
    };

    reload(&with_socket("b.sock"), 1);
    reload(&with_socket("c.sock"), 2);
    let warnings: Vec<String> = cluster
        .log()
        .into_iter()
        .filter(|l| l.contains("cluster.controlSocket changed"))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    // The second one too: the socket in use is still the first, not the one the first reload
    // named (which the master never listened on).
    for line in &warnings {
        assert!(line.contains(&in_use), "{line}");
    }
    assert!(!warnings[1].contains("b.sock"), "{}", warnings[1]);
    assert!(warnings[1].contains("c.sock"), "{}", warnings[1]);

    // Back to the socket in use: nothing to warn about, and status answers there.
    reload(&text, 3);
    assert_eq!(cluster.count_log(&["cluster.controlSocket changed"]), 2);
    assert_eq!(cluster.wait_ready()["generation"], 4);
}
