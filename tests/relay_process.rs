//! The relay as a process: supervised by the master beside the workers (shown in status, not
//! killed while it only waits for its backends, replaced when it hangs), and the `relay` and
//! `nats-setup` commands.

mod common;

use std::process::Command;

use common::{BIN, Cluster, alive, signal_pid, wait_for};
use nix::sys::signal::Signal;

/// Backends on a port where nothing listens: the relay can only wait and retry.
const NO_BACKENDS: &str = "relay.enabled=true\n\
    relay.mongodb.url=mongodb://127.0.0.1:1/?replicaSet=rs0\n\
    relay.nats.url=nats://127.0.0.1:1\n";

#[test]
fn a_supervised_relay_waiting_for_backends_is_kept_and_a_hung_one_replaced() {
    let cluster = Cluster::start(&format!("cluster.workerCount=1\n{NO_BACKENDS}"));
    let relay = cluster.relay().expect("a relay in status");
    assert_eq!(relay["state"], "ready");
    let pid = relay["pid"].as_i64().unwrap() as i32;
    cluster.wait_log(&["relay pid=", "relay ready"]);

    // Several workerTimeouts (500 ms) later it is the same process: waiting for MongoDB and
    // NATS is not hanging, its heartbeats keep flowing.
    wait_for("the relay to outlive several worker timeouts", || {
        let relay = cluster.relay()?;
        (relay["uptime_ms"].as_u64()? > 2_000).then_some(relay)
    });
    assert_eq!(cluster.relay().unwrap()["pid"].as_i64(), Some(pid as i64));

    signal_pid(pid, Signal::SIGSTOP);
    cluster.wait_log(&[
        &format!("pid={pid}"),
        "slot=relay",
        "did not answer heartbeats",
    ]);
    let replaced = wait_for("a new relay", || {
        let relay = cluster.relay()?;
        (relay["pid"].as_i64() != Some(pid as i64)).then_some(relay)
    });
    assert_eq!(replaced["restarts"], 1);
    wait_for("the hung relay to be gone", || (!alive(pid)).then_some(()));
}

#[test]
fn disabling_the_relay_on_reload_stops_it() {
    let cluster = Cluster::start(&format!("cluster.workerCount=1\n{NO_BACKENDS}"));
    let pid = cluster.relay().expect("a relay")["pid"].as_i64().unwrap() as i32;
    cluster.rewrite_config("cluster.workerCount=1\nrelay.enabled=false");
    cluster.signal(Signal::SIGHUP);
    wait_for("no relay any more", || {
        let status = cluster.wait_ready();
        let none = status["workers"]
            .as_array()?
            .iter()
            .all(|w| w["role"] != "relay");
        (none && status["generation"] == 2).then_some(())
    });
    wait_for("the relay process to exit", || (!alive(pid)).then_some(()));
}

#[test]
fn the_relay_command_runs_from_the_seed_config_toml_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("config.toml");
    std::fs::write(
        &toml,
        "[logging]\nlevel = \"debug\"\n\n[storage]\n\
         database_url = \"mongodb://127.0.0.1:1/zkartgroup?replicaSet=rs0\"\n\
         database_name = \"zkartgroup\"\nmessages_outbox_collection_name = \"messages_outbox\"\n\n\
         [nats]\nurl = \"nats://127.0.0.1:1\"\nsubject = \"events.>\"\nmessages_namespace = \"personal\"\n",
    )
    .unwrap();
    let mut relay = Command::new(BIN)
        .args(["relay", "--config-toml"])
        .arg(&toml)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = relay.stderr.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("{line}");
            sink.lock().unwrap().push(line);
        }
    });
    // It is running (and retrying its backends) once it has logged anything as the relay.
    wait_for("the relay's first log line", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(" relay pid="))
            .then_some(())
    });
    signal_pid(relay.id() as i32, Signal::SIGTERM);
    let status = wait_for("the relay to exit", || relay.try_wait().ok().flatten());
    assert_eq!(status.code(), Some(0));
}

#[test]
fn nats_setup_with_a_bad_config_is_exit_code_2() {
    let out = Command::new(BIN)
        .args(["nats-setup", "/nonexistent/gateway.properties"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn nats_setup_creates_the_streams_once_then_finds_them() {
    let id = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let (stream, dead) = (format!("CLI_{id}"), format!("CLIDL_{id}"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.properties");
    std::fs::write(
        &config,
        format!(
            "relay.nats.stream={stream}\nrelay.nats.subjectPrefix=cli{id}\n\
             relay.nats.deadLetterStream={dead}\nrelay.nats.deadLetterSubject=clidl{id}\n"
        ),
    )
    .unwrap();
    let setup = || {
        let out = Command::new(BIN)
            .arg("nats-setup")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = setup();
    let second = setup();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect("127.0.0.1:4222").await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        for name in [&stream, &dead] {
            let _ = jetstream.delete_stream(name).await;
        }
    });
    assert_eq!(
        first,
        format!("stream {stream}: Created\nstream {dead}: Created\n")
    );
    assert_eq!(
        second,
        format!("stream {stream}: Existing\nstream {dead}: Existing\n")
    );
}
