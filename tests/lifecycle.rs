//! Starting and stopping: SIGTERM drains and exits 0, a SIGKILLed master leaves no worker
//! behind, and systemd hears READY / RELOADING / STOPPING in that order.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use common::{Cluster, Install, alive, signal_pid, wait_for};
use nix::sys::signal::Signal;

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let mut cluster = Cluster::start("cluster.workerCount=2");
    let addr = cluster.addr();
    let pids = cluster.worker_pids();
    // A request in flight: its first bytes are in, the rest comes after SIGTERM.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    wait_for("the connection to be counted", || {
        let status = cluster.status()?;
        common::workers(&status)
            .iter()
            .any(|w| w["clients"].as_u64() == Some(1))
            .then_some(())
    });
    cluster.signal(Signal::SIGTERM);
    cluster.wait_log(&["draining: no new connections"]);
    stream.write_all(b"Host: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let status = cluster.wait_exit();
    assert_eq!(status.code(), Some(0));
    for pid in pids {
        wait_for("workers gone", || (!alive(pid)).then_some(()));
    }
    TcpListener::bind(addr).expect("the port is free again");
}

#[test]
fn sigkilled_master_leaves_no_worker_behind() {
    let mut cluster = Cluster::start("cluster.workerCount=3");
    let addr = cluster.addr();
    let pids = cluster.worker_pids();
    cluster.signal(Signal::SIGKILL);
    cluster.wait_exit();
    for pid in pids {
        wait_for("workers to die with the master", || {
            (!alive(pid)).then_some(())
        });
    }
    wait_for("the port to be free", || TcpListener::bind(addr).ok());
}

#[test]
fn sigquit_stops_at_once() {
    let mut cluster = Cluster::start("cluster.workerCount=2");
    let pids = cluster.worker_pids();
    cluster.signal(Signal::SIGQUIT);
    cluster.wait_exit();
    for pid in pids {
        assert!(!alive(pid), "worker {pid} outlived SIGQUIT");
    }
}

#[test]
fn sd_notify_messages_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let notify = path.to_str().unwrap();
    let mut cluster = Cluster::start_with_env(
        "cluster.workerCount=2",
        &[("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "200000")],
    );
    let ready = recv_skipping_watchdog(&socket);
    assert!(
        ready.starts_with("READY=1\nSTATUS=2 workers ready"),
        "{ready}"
    );
    wait_for("WATCHDOG=1", || {
        (recv(&socket) == "WATCHDOG=1").then_some(())
    });

    cluster.signal(Signal::SIGHUP);
    let reloading = recv_skipping_watchdog(&socket);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let usec: u64 = reloading.lines().nth(1).unwrap()["MONOTONIC_USEC=".len()..]
        .parse()
        .unwrap();
    assert!(usec > 0);
    let ready = recv_skipping_watchdog(&socket);
    assert!(
        ready.starts_with("READY=1\nSTATUS=2 workers ready"),
        "{ready}"
    );
    assert!(ready.contains("generation 2"), "{ready}");

    cluster.signal(Signal::SIGTERM);
    let stopping = recv_skipping_watchdog(&socket);
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    assert_eq!(cluster.wait_exit().code(), Some(0));
}

/// `WATCHDOG=1` goes to systemd while a worker is healthy, and stops when none is: here the
/// only worker hangs and its replacements cannot start (a broken install).
#[test]
fn no_systemd_watchdog_ping_without_a_healthy_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let install = Install::new();
    let cluster = Cluster::start_from(
        &install.bin,
        "cluster.workerCount=1\ncluster.standbyWorkers=0",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "100000"),
        ],
    );
    let pid = cluster.worker_pids()[0];
    wait_for("WATCHDOG=1 while the worker is healthy", || {
        (recv(&socket) == "WATCHDOG=1").then_some(())
    });

    install.break_it();
    signal_pid(pid, Signal::SIGSTOP);
    cluster.wait_log(&[&format!("pid={pid}"), "did not answer heartbeats"]);
    // What was sent until the hung worker was killed is read and put aside; from now on no
    // worker is healthy.
    let warned = cluster.count_log(&["no healthy worker: not petting the systemd watchdog"]);
    drain(&socket);
    wait_for(
        "three systemd watchdog periods without a healthy worker",
        || {
            let now = cluster.count_log(&["no healthy worker: not petting the systemd watchdog"]);
            (now >= warned + 3).then_some(())
        },
    );
    let sent = drain(&socket);
    assert!(
        !sent.iter().any(|msg| msg == "WATCHDOG=1"),
        "pinged without a healthy worker: {sent:?}"
    );
}

/// Every datagram waiting on `socket`, without waiting for more.
fn drain(socket: &UnixDatagram) -> Vec<String> {
    socket.set_nonblocking(true).unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    socket.set_nonblocking(false).unwrap();
    messages
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("an sd_notify message");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn recv_skipping_watchdog(socket: &UnixDatagram) -> String {
    loop {
        let msg = recv(socket);
        if msg != "WATCHDOG=1" {
            return msg;
        }
    }
}
