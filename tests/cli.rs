//! The command line: config errors are exit code 2 with the file, line and key named; never a
//! silent fall-back to defaults.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{BIN, Cluster};

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_config_file_is_exit_code_2_naming_it() {
    let (code, _, stderr) = run(&["server", "/nonexistent/gateway.properties"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("/nonexistent/gateway.properties"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_config_is_exit_code_2_naming_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.properties");
    std::fs::write(
        &path,
        "cluster.heartbeatInterval=1000\ncluster.workerTimeout=5s\ngateway.redis.port=6379 # comment\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["server", path.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(
            ":2: cluster.workerTimeout = \"5s\": expected milliseconds as a whole number"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(":3: gateway.redis.port = \"6379 # comment\""),
        "{stderr}"
    );
    let (code, _, _) = run(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, Some(2));
}

#[test]
fn check_config_prints_every_effective_key_and_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.properties");
    std::fs::write(
        &path,
        "# comment\ncluster.workerCount=3\nfrontend.session_secret=s3cret\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("cluster.workerCount"))
        .expect(&stdout);
    assert!(line.contains("= 3") && line.contains("line 2"), "{line}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("cluster.heartbeatInterval"))
        .unwrap();
    assert!(line.contains("1000") && line.contains("default"), "{line}");
    assert!(!stdout.contains("s3cret"), "secrets are never printed");
}

#[test]
fn the_shipped_config_is_valid() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/gateway.properties");
    let (code, _, stderr) = run(&["check-config", conf]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn status_without_a_master_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.properties");
    let socket = dir.path().join("control.sock");
    std::fs::write(
        &path,
        format!("cluster.controlSocket={}\n", socket.display()),
    )
    .unwrap();
    let (code, _, stderr) = run(&["status", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no master answers"), "{stderr}");
}

#[test]
fn help_explains_every_command() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    for command in [
        "server",
        "check-config",
        "status",
        "console",
        "relay",
        "nats-setup",
    ] {
        assert!(stdout.contains(command), "{stdout}");
    }
    assert!(
        !stdout.lines().any(|l| l.trim_start().starts_with("worker")),
        "the worker command is hidden"
    );
}

#[test]
fn the_readme_documents_every_config_key() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/gateway.properties");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let (code, stdout, _) = run(&["check-config", conf]);
    assert_eq!(code, Some(0));
    let keys: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(keys.len() > 30, "{stdout}");
    for key in keys {
        assert!(
            readme.contains(&format!("`{key}`")),
            "README.md does not document {key}"
        );
    }
}

#[test]
fn tls_with_a_missing_key_file_is_exit_code_2_naming_key_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.properties");
    std::fs::write(
        &path,
        "frontend.ssl=true\nfrontend.private_key=/k.pem\nfrontend.certificate=/c.pem\n",
    )
    .unwrap();
    for command in ["server", "check-config"] {
        let (code, _, stderr) = run(&[command, path.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{command}");
        assert!(
            stderr.contains(":2: frontend.private_key = \"/k.pem\": cannot read the file: "),
            "{command}: {stderr}"
        );
    }
}

/// Runs the binary with `stdout` as its standard output: exit code and stderr.
fn run_to(args: &[&str], stdout: Stdio) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("run binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A pipe whose reader is gone (as after `| head -1` has read its line, or `| true`): writing
/// to it fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    writer.into()
}

/// `> /dev/full`: every write fails with ENOSPC.
fn full_device() -> Stdio {
    File::options()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
        .into()
}

/// A closed stdout ends the command quietly with its own exit code; a failing one is a clear
/// error and exit code 1; never a panic.
fn assert_output_errors_handled(args: &[&str]) {
    let (code, stderr) = run_to(args, closed_pipe());
    assert_eq!((code, stderr.as_str()), (Some(0), ""), "{args:?} | true");
    let (code, stderr) = run_to(args, full_device());
    assert_eq!(code, Some(1), "{args:?} > /dev/full: {stderr}");
    assert_eq!(
        stderr,
        "activestack-gateway: cannot write to stdout: No space left on device (os error 28)\n",
        "{args:?} > /dev/full"
    );
}

#[test]
fn check_config_on_a_closed_or_full_stdout() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/gateway.properties");
    assert_output_errors_handled(&["check-config", conf]);
}

#[test]
fn status_and_console_on_a_closed_or_full_stdout() {
    let cluster = Cluster::start("cluster.workerCount=1");
    cluster.wait_log(&["listening for control commands on Redis"]);
    let config = cluster.config.to_str().unwrap();
    assert_output_errors_handled(&["status", config]);
    assert_output_errors_handled(&["status", config, "--json"]);
    assert_output_errors_handled(&["console", config, "clientcount"]);
}

#[test]
fn status_and_console_find_the_master_of_a_file_with_a_byte_that_is_not_utf8() {
    let cluster = Cluster::start("cluster.workerCount=1");
    cluster.wait_log(&["listening for control commands on Redis"]);
    let mut text = std::fs::read(&cluster.config).unwrap();
    let line = text.iter().filter(|&&b| b == b'\n').count() + 1;
    text.extend_from_slice(b"frontend.shutdownCode=p\xe4ss\n");
    std::fs::write(&cluster.config, &text).unwrap();
    let config = cluster.config.to_str().unwrap();

    let (code, stdout, stderr) = run(&["status", config, "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
    assert_eq!(status["master_pid"], cluster.pid());
    assert!(
        stderr.contains("not valid UTF-8"),
        "says what is wrong: {stderr}"
    );

    let (code, stdout, stderr) = run(&["console", config, "clientcount"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("\"total\":0"), "{stdout}");

    // The master itself refuses such a file.
    let (code, _, stderr) = run(&["check-config", config]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains(&format!(":{line}: not valid UTF-8")),
        "{stderr}"
    );
}

#[test]
fn a_file_that_sets_no_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("empty.properties", ""),
        ("comments.properties", "# all gone\n\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        for command in ["check-config", "server"] {
            let (code, stdout, stderr) = run(&[command, path.to_str().unwrap()]);
            assert_eq!(code, Some(2), "{command} {name}: {stderr}");
            assert!(stdout.is_empty());
            assert!(
                stderr.contains(&format!(
                    "{}: sets no key (an empty or cut-off file?): refused",
                    path.display()
                )),
                "{command} {name}: {stderr}"
            );
        }
    }
    let path = dir.path().join("typos.properties");
    std::fs::write(&path, "frontend.prot=9000\n").unwrap();
    let (code, _, stderr) = run(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("sets no known key (unknown: frontend.prot)"),
        "{stderr}"
    );
}

/// check-config and server of a file with `line` (and `cluster.workerCount=1`).
fn refused_at_start(dir: &Path, line: &str, expected: &str) {
    let path = dir.join("gateway.properties");
    std::fs::write(&path, format!("cluster.workerCount=1\n{line}\n")).unwrap();
    for command in ["check-config", "server"] {
        let (code, _, stderr) = run(&[command, path.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{command}: {stderr}");
        assert!(stderr.contains(expected), "{command}: {stderr}");
    }
}

#[test]
fn a_config_too_large_for_the_worker_init_message_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    refused_at_start(
        dir.path(),
        &format!("frontend.shutdownCode={}", "x".repeat(2 << 20)),
        ":2: frontend.shutdownCode is 2097152 bytes: the worker's init message would be",
    );
    refused_at_start(
        dir.path(),
        &format!("frontend.session_secret={}", "s".repeat(2 << 20)),
        ":2: frontend.session_secret (value hidden): is 2097152 bytes long, at most 4096",
    );
}

/// Runs the binary with a terminal (a pseudo-terminal) as its stdout, as at an operator's
/// shell: exit code and what the terminal showed (its `\r\n` read as `\n`).
fn run_at_terminal(args: &[&str]) -> (Option<i32>, String) {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the ints given; name, termios and window
    // size may be null.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run binary");
    // Our copy of the terminal's other end is gone with the Command: once the child exits,
    // reading ends (EIO).
    let mut shown = Vec::new();
    let mut terminal = File::from(master);
    let mut buf = [0; 4096];
    loop {
        match terminal.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => shown.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().expect("wait");
    let shown = String::from_utf8_lossy(&shown).replace("\r\n", "\n");
    (status.code(), shown)
}

#[test]
fn console_answers_are_sentences_at_a_terminal_and_json_otherwise() {
    let cluster = Cluster::start("cluster.workerCount=1");
    cluster.wait_log(&["listening for control commands on Redis"]);
    let config = cluster.config.to_str().unwrap();
    let pid = cluster.worker_pids()[0];

    // Through a pipe (a script): one line of JSON per answer, as ever; --json says the same.
    for args in [
        vec!["console", config, "clientcount"],
        vec!["console", "--json", config, "clientcount"],
        vec!["console", config, "--json", "clientcount"],
    ] {
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        let answer: serde_json::Value = serde_json::from_str(&stdout).expect(&stdout);
        assert_eq!(answer["total"], 0, "{args:?}");
        assert_eq!(stdout.lines().count(), 1, "{args:?}: {stdout}");
    }

    // At a terminal: sentences, tables.
    let (code, shown) = run_at_terminal(&["console", config, "clientcount"]);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(
        shown,
        format!("0 clients\n  worker   0  pid {pid:>7}       0\n")
    );
    let (code, shown) = run_at_terminal(&["console", config, "status"]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(
        shown.starts_with(&format!("master pid {}  phase running", cluster.pid())),
        "{shown}"
    );
    assert!(shown.contains("SLOT"), "the workers' table: {shown}");
    let (code, shown) = run_at_terminal(&["console", config, "loglevel", "loud"]);
    assert_eq!(code, Some(1), "a refused command fails: {shown}");
    assert!(shown.starts_with("refused: "), "{shown}");
    // --json at a terminal too.
    for args in [
        ["console", "--json", config, "clientcount"],
        ["console", config, "--json", "clientcount"],
    ] {
        let (code, shown) = run_at_terminal(&args);
        assert_eq!(code, Some(0), "{shown}");
        let answer: serde_json::Value = serde_json::from_str(&shown).expect(&shown);
        assert_eq!(answer["total"], 0, "{args:?}");
    }
    // Commands from stdin, answers to a pipe: JSON lines.
    let mut child = Command::new(BIN)
        .args(["console", config])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"clientcount\nquit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("{\"ok\":true"),
        "piped: JSON lines: {stdout}"
    );
}

/// What a user may get wrong, or find not running: each is one plain line on stderr (said
/// once), an exit code of 1 or 2, and never a panic or a backtrace, even with RUST_BACKTRACE
/// set.
#[test]
fn expected_conditions_are_one_line_never_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let socket = dir.path().join("control.sock");
    let no_master = write(
        "no-master.properties",
        format!("cluster.controlSocket={}\n", socket.display()),
    );
    let not_a_socket = write(
        "not-a-socket.properties",
        format!(
            "cluster.controlSocket={}\n",
            dir.path().join("no-master.properties").display()
        ),
    );
    let no_redis = write("no-redis.properties", "gateway.redis.port=1\n".to_string());
    let no_nats = write(
        "no-nats.properties",
        "relay.nats.url=nats://127.0.0.1:1\n".to_string(),
    );
    let invalid = write(
        "invalid.properties",
        "cluster.workerTimeout=5s\n".to_string(),
    );
    let missing = "/nonexistent/gateway.properties";
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["server", missing], 2, "cannot read config file"),
        (vec!["check-config", missing], 2, "cannot read config file"),
        (vec!["relay", missing], 2, "cannot read config file"),
        (vec!["nats-setup", missing], 2, "cannot read config file"),
        (vec!["console", missing, "status"], 2, "no such config file"),
        (vec!["server", &invalid], 2, "expected milliseconds"),
        (vec!["check-config", &invalid], 2, "expected milliseconds"),
        (vec!["status", &no_master], 1, "no master answers"),
        (vec!["status", &no_master, "--json"], 1, "no master answers"),
        (vec!["status", &not_a_socket], 1, "no master answers"),
        (
            vec!["console", &no_redis, "clientcount"],
            1,
            "cannot reach the control channel",
        ),
        (vec!["nats-setup", &no_nats], 1, "cannot connect to NATS"),
        (vec!["worker"], 1, "workers are started by the master"),
    ];
    for (args, expected, says) in cases {
        let out = Command::new(BIN)
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {stderr}");
        assert_eq!(
            stderr.matches(says).count(),
            1,
            "{args:?} says it once: {stderr}"
        );
        for never in ["panicked", "backtrace", "RUST_BACKTRACE", ".rs:"] {
            assert!(!stderr.contains(never), "{args:?}: {stderr}");
        }
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// Messages for stderr to a reader that went away (`2>&1 | head -1`) are lost, not a panic
/// (exit code 101): the command still ends with its own exit code.
#[test]
fn a_closed_stderr_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let warned = dir.path().join("warned.properties");
    std::fs::write(&warned, "frontend.prot=9000\nfrontend.port=9000\n").unwrap();
    let socket = dir.path().join("control.sock");
    let no_master = dir.path().join("no-master.properties");
    std::fs::write(
        &no_master,
        format!("cluster.controlSocket={}\n", socket.display()),
    )
    .unwrap();
    let cases: [(&[&str], i32); 4] = [
        (&["check-config", "/nonexistent/gateway.properties"], 2),
        (&["check-config", warned.to_str().unwrap()], 0),
        (&["console", "/nonexistent/gateway.properties", "status"], 2),
        (&["status", no_master.to_str().unwrap()], 1),
    ];
    for (args, expected) in cases {
        let status = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(closed_pipe())
            .status()
            .expect("run binary");
        assert_eq!(status.code(), Some(expected), "{args:?} 2>&1 | true");
    }
}

#[test]
fn help_and_version_on_a_closed_stdout() {
    for args in [&["--help"][..], &["--version"], &["check-config", "--help"]] {
        let (code, stderr) = run_to(args, closed_pipe());
        assert_eq!((code, stderr.as_str()), (Some(0), ""), "{args:?} | true");
    }
}
