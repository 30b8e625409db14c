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

/// A config whose init message cannot reach a worker (a 2 MB `frontend.session_secret` is over
/// the 1 MiB frame limit of the master <-> worker channel): the master says so, tries the new
/// workers under the slot's backoff (not ~100 times a second), and the old workers serve on.
#[test]
fn a_config_too_large_for_a_workers_init_backs_off_and_keeps_the_old_workers() {
    const KEYS: &str =
        "cluster.workerCount=2\ncluster.standbyWorkers=0\ncluster.maxRestartBackoff=3";
    let cluster = Cluster::start(KEYS);
    let before = cluster.worker_pids();
    let huge = "x".repeat(2 << 20);
    cluster.rewrite_config(&format!("{KEYS}\nfrontend.session_secret={huge}"));
    cluster.signal(Signal::SIGHUP);

    let line = cluster.wait_log(&["slot=0", "init message", "frame limit"]);
    assert!(line.contains("1048576-byte"), "{line}");
    wait_for("three failed starts of slot 0", || {
        (cluster.count_log(&["slot=0", "could not be started; restarting after backoff"]) >= 3)
            .then_some(())
    });
    let line = common::last_log(&cluster, &["slot=0", "restarting after backoff"]).unwrap();
    assert!(!line.contains("failures=1 "), "backoff grows: {line}");
    assert_eq!(cluster.count_log(&["first message was not init"]), 0);
    assert_eq!(cluster.count_log(&["worker exited unexpectedly"]), 0);

    let status = cluster.status().unwrap();
    let serving: Vec<i64> = workers(&status)
        .iter()
        .filter_map(|w| w["pid"].as_i64())
        .collect();
    assert_eq!(
        serving,
        before.iter().map(|&p| i64::from(p)).collect::<Vec<_>>()
    );
    health(cluster.addr()).expect("the old workers serve on");

    // A fixed file is picked up. (With no secret at all, a reload keeps the one the cluster
    // had, the large one: a smaller one is set.)
    cluster.rewrite_config(&format!("{KEYS}\nfrontend.session_secret=small"));
    cluster.signal(Signal::SIGHUP);
    generation_ready(&cluster, 3, 2);
}

/// The warning about a changed `cluster.controlSocket` names the socket the master listens on,
/// the one it was started with, however many reloads have changed the key since.
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
