//! The hot standby worker (`cluster.standbyWorkers=1`): started and initialised but not
//! accepting, shown apart from the slots' workers, activated at once in the place of a worker
//! that dies, replaced by one of the new generation on reload, backed off when it cannot start,
//! killed when it hangs, stopped with the cluster; and absent with `cluster.standbyWorkers=0`.

mod common;

use common::{
    Cluster, Install, alive, children_of, health, signal_pid, standby, wait_backoff_grows,
    wait_for, workers,
};
use nix::sys::signal::Signal;

const WITH_STANDBY: &str = "cluster.workerCount=2\ncluster.standbyWorkers=1";

fn pid_of(w: &serde_json::Value) -> i32 {
    w["pid"].as_i64().expect("a pid") as i32
}

/// Waits until status shows exactly one standby, ready, of `generation`, that has answered a
/// heartbeat; returns its pid.
fn ready_standby(cluster: &Cluster, generation: u64) -> i32 {
    wait_for(
        &format!("a ready standby of generation {generation}"),
        || {
            let status = cluster.status()?;
            let [w] = standby(&status).try_into().ok()?;
            let ready = w["state"] == "ready"
                && w["role"] == "standby"
                && w["generation"].as_u64() == Some(generation)
                && w["heartbeat_age_ms"].is_u64();
            ready.then(|| pid_of(&w))
        },
    )
}

#[test]
fn the_standby_is_listed_apart_and_does_not_accept() {
    let mut cluster = Cluster::start(WITH_STANDBY);
    let spare = ready_standby(&cluster, 1);
    let status = cluster.wait_ready();
    let pids: Vec<i32> = workers(&status).iter().map(pid_of).collect();
    assert_eq!(pids.len(), 2, "{status}");
    assert!(!pids.contains(&spare), "the standby is not a slot's worker");
    assert!(alive(spare));
    cluster.wait_log(&["standby", &format!("pid={spare}"), "not accepting"]);
    // Three processes: two workers and the standby.
    let children: Vec<i32> = children_of(cluster.pid()).iter().map(|c| c.0).collect();
    assert_eq!(children.len(), 3, "{children:?}");

    // Only the slots' workers answer.
    let addr = cluster.addr();
    for _ in 0..20 {
        let pid = health(addr).expect("health")["pid"].as_i64().unwrap() as i32;
        assert!(pids.contains(&pid), "{pid} answered; workers are {pids:?}");
    }

    // A graceful stop stops the standby too.
    cluster.signal(Signal::SIGTERM);
    assert_eq!(cluster.wait_exit().code(), Some(0));
    assert!(!alive(spare), "the standby outlived its master");
}

#[test]
fn a_killed_worker_is_replaced_by_the_standby() {
    let cluster = Cluster::start(WITH_STANDBY);
    let spare = ready_standby(&cluster, 1);
    let before = cluster.worker_pids();
    signal_pid(before[0], Signal::SIGKILL);

    // The standby is slot 0's worker, without a new process being started for the slot.
    let status = wait_for("the standby in slot 0", || {
        let status = cluster.status()?;
        let w = workers(&status);
        (w.len() == 2 && pid_of(&w[0]) == spare).then_some(status)
    });
    let w = workers(&status);
    assert_eq!(w[0]["state"], "ready");
    assert_eq!(w[0]["restarts"], 1);
    assert_eq!(pid_of(&w[1]), before[1], "slot 1 untouched");
    cluster.wait_log(&["slot=0", &format!("pid={spare}"), "standby activated"]);
    // Its own lines now name its slot.
    cluster.wait_log(&["worker[0]", &format!("pid={spare}"), "activated"]);

    // It serves, as worker 0.
    let addr = cluster.addr();
    let body = wait_for("the activated standby to answer", || {
        let body = health(addr).ok()?;
        (body["pid"].as_i64() == Some(spare as i64)).then_some(body)
    });
    assert_eq!(body["worker"], 0);

    // And a new standby takes its place.
    let next = ready_standby(&cluster, 1);
    assert!(next != spare && !before.contains(&next));
    assert_eq!(cluster.count_log(&["slot=0", "worker started"]), 1);
}

#[test]
fn a_reload_replaces_the_standby_with_one_of_the_new_generation() {
    let cluster = Cluster::start(WITH_STANDBY);
    let old = ready_standby(&cluster, 1);
    cluster.signal(Signal::SIGHUP);
    wait_for("generation 2 ready", || {
        let status = cluster.wait_ready();
        (status["generation"] == 2).then_some(())
    });
    let new = ready_standby(&cluster, 2);
    assert_ne!(new, old);
    wait_for("the old standby gone", || (!alive(old)).then_some(()));
    // The old generation's standby was never put in a slot.
    assert_eq!(
        cluster.count_log(&[&format!("pid={old}"), "standby activated"]),
        0
    );

    // A worker killed now is replaced by the new generation's standby.
    let victim = cluster.worker_pids()[1];
    signal_pid(victim, Signal::SIGKILL);
    wait_for("the new standby in slot 1", || {
        let status = cluster.status()?;
        let w = workers(&status);
        (w.len() == 2 && pid_of(&w[1]) == new && w[1]["generation"] == 2).then_some(())
    });
}

#[test]
fn a_hung_standby_is_killed_and_replaced() {
    let cluster = Cluster::start(WITH_STANDBY);
    let spare = ready_standby(&cluster, 1);
    signal_pid(spare, Signal::SIGSTOP);
    cluster.wait_log(&[
        "slot=standby",
        &format!("pid={spare}"),
        "did not answer heartbeats",
    ]);
    let next = ready_standby(&cluster, 1);
    assert_ne!(next, spare);
    wait_for("the hung standby gone", || (!alive(spare)).then_some(()));
    assert_eq!(workers(&cluster.wait_ready()).len(), 2);
}

/// A standby that cannot start is retried under backoff; the slots keep their workers.
#[test]
fn a_standby_that_cannot_start_backs_off_without_hurting_the_slots() {
    let install = Install::new();
    let cluster = Cluster::start_from(
        &install.bin,
        &format!("{WITH_STANDBY}\ncluster.maxRestartBackoff=3"),
        &[],
    );
    let spare = ready_standby(&cluster, 1);

    // The standby takes slot 0; the standbys started after it fail.
    install.break_it();
    let before = cluster.worker_pids();
    signal_pid(before[0], Signal::SIGKILL);
    wait_backoff_grows(&cluster, "standby");
    let status = cluster.wait_ready();
    let pids: Vec<i32> = workers(&status).iter().map(pid_of).collect();
    assert_eq!(pids, [spare, before[1]]);
    let addr = cluster.addr();
    for _ in 0..5 {
        let pid = health(addr).expect("the slots still serve")["pid"].as_i64();
        assert!(pids.iter().any(|&p| Some(p as i64) == pid));
    }

    // The fixed binary is picked up by the next standby start.
    install.fix();
    ready_standby(&cluster, 1);
}

#[test]
fn no_standby_with_standby_workers_0() {
    let cluster = Cluster::start("cluster.workerCount=2\ncluster.standbyWorkers=0");
    let before = cluster.worker_pids();
    let status = cluster.wait_ready();
    assert_eq!(status["standby"], serde_json::json!([]));
    let children: Vec<i32> = children_of(cluster.pid()).iter().map(|c| c.0).collect();
    assert_eq!(children.len(), 2, "{children:?}");

    // A dead worker's slot gets a new worker, started for it.
    signal_pid(before[0], Signal::SIGKILL);
    wait_for("a replacement in slot 0", || {
        let status = cluster.wait_ready();
        let w = workers(&status);
        (pid_of(&w[0]) != before[0]).then_some(())
    });
    assert_eq!(cluster.count_log(&["slot=0", "worker started"]), 2);
    assert_eq!(cluster.count_log(&["slot=standby"]), 0);
    assert_eq!(cluster.count_log(&["standby activated"]), 0);
    assert_eq!(cluster.status().unwrap()["standby"], serde_json::json!([]));
}

/// The standby is in no slot, and status says so: no `slot` (it used to show slot 0).
#[test]
fn the_standby_has_no_slot_in_status() {
    let cluster = Cluster::start(WITH_STANDBY);
    ready_standby(&cluster, 1);
    let status = cluster.status().unwrap();
    let [w] = &standby(&status)[..] else {
        panic!("one standby: {status}")
    };
    assert!(w.get("slot").is_none(), "{w}");
    let slots: Vec<u64> = workers(&status)
        .iter()
        .filter_map(|w| w["slot"].as_u64())
        .collect();
    assert_eq!(slots, [0, 1]);
    // The same, typed.
    let report: activestack_gateway::status::StatusReport = serde_json::from_value(status).unwrap();
    assert_eq!(report.standby[0].slot, None);
    assert_eq!(
        report.standby[0].role,
        activestack_gateway::status::Role::Standby
    );
}
