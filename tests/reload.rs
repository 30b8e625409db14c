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
