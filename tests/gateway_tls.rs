//! TLS for clients (`frontend.ssl=true`): the real binary serves `/health` and socket.io over TLS
//! with a certificate made by the test (rcgen), never plain HTTP; bad key or certificate files
//! are exit code 2 at start and a failed reload that leaves the cluster serving. The socket.io
//! part needs RabbitMQ on localhost:5672 and `npm ci --prefix tests/e2e`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::agent::JsClient;
use common::{BIN, Cluster, http_get, wait_for, workers};
use nix::sys::signal::Signal;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

/// A key and its self-signed certificate for `localhost` and 127.0.0.1, as PEM.
struct Pair {
    key: String,
    cert: String,
}

impl Pair {
    fn new() -> Pair {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let cert = rcgen::generate_simple_self_signed(names).expect("generate a certificate");
        Pair {
            key: cert.signing_key.serialize_pem(),
            cert: cert.cert.pem(),
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(self.cert.as_bytes()).expect("PEM certificate")
    }
}

/// A directory with `key.pem` and `cert.pem`, and the config keys that name them.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(pair: &Pair) -> Files {
        let files = Files {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        files.write(pair);
        files
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn write(&self, pair: &Pair) {
        std::fs::write(self.key(), &pair.key).expect("write key");
        std::fs::write(self.cert(), &pair.cert).expect("write certificate");
    }

    fn config(&self) -> String {
        format!(
            "frontend.ssl=true\nfrontend.private_key={}\nfrontend.certificate={}\n",
            self.key().display(),
            self.cert().display()
        )
    }
}

/// `GET /health` over TLS trusting only `trusted`: the JSON body and the certificate served.
fn https_health(
    addr: SocketAddr,
    trusted: &[CertificateDer<'static>],
) -> Result<(Value, CertificateDer<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(cert.clone()).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    if let Err(e) = tls.read_to_end(&mut response) {
        // A peer that closes without close_notify is an error to rustls; the body decides.
        if response.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof {
            return Err(format!("read: {e}"));
        }
    }
    let served = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no certificate served")?
        .clone()
        .into_owned();
    let response = String::from_utf8(response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("bad status: {head}"));
    }
    let health = serde_json::from_str(body).map_err(|e| format!("bad body {body:?}: {e}"))?;
    Ok((health, served))
}

fn start(files: &Files) -> Cluster {
    Cluster::start(&format!(
        "{}frontend.session_secret=tls-test-secret\n",
        files.config()
    ))
}

#[test]
fn health_and_socketio_are_served_over_tls() {
    let pair = Pair::new();
    let files = Files::new(&pair);
    let cluster = start(&files);
    let addr = cluster.addr();

    let (health, served) = https_health(addr, &[pair.der()]).expect("health over TLS");
    assert_eq!(served, pair.der());
    assert!(health["pid"].as_u64().is_some(), "{health}");
    cluster.wait_log(&["master starting", "tls=true"]);

    // A real socket.io client over wss, verifying the certificate.
    let mut client = JsClient::spawn();
    client.send(json!({"op": "connect", "url": format!("https://127.0.0.1:{}", addr.port()), "ca": pair.cert}));
    client.wait("connect", |_| true);
    client.send(json!({"op": "emit", "event": "message", "data": {"connect": true}}));
    let key = client.wait("gatewayConnectAck", |_| true);
    assert!(key.as_str().is_some_and(|k| k.contains(';')), "{key}");

    // A client that does not trust the certificate gets no connection.
    let mut untrusting = JsClient::spawn();
    untrusting.send(json!({"op": "connect", "url": format!("https://127.0.0.1:{}", addr.port())}));
    untrusting.wait("connect_error", |_| true);
}

#[test]
fn plain_http_to_the_tls_port_is_not_served() {
    let pair = Pair::new();
    let files = Files::new(&pair);
    let cluster = start(&files);
    let addr = cluster.addr();
    let before = cluster.worker_pids();

    for _ in 0..4 {
        match http_get(addr, "/health") {
            Ok(response) => assert!(
                !response.starts_with("HTTP/"),
                "plain HTTP was answered: {response:?}"
            ),
            Err(e) => assert!(!e.contains("connect:"), "{e}"),
        }
    }
    cluster.wait_log(&["TLS handshake failed"]);
    // The workers shrugged it off and still serve TLS.
    https_health(addr, &[pair.der()]).expect("health over TLS");
    assert_eq!(cluster.worker_pids(), before);
}

#[test]
fn stalled_handshakes_do_not_hold_up_other_clients() {
    let pair = Pair::new();
    let files = Files::new(&pair);
    let cluster = Cluster::start(&format!("{}cluster.workerCount=1\n", files.config()));
    let addr = cluster.addr();
    // Connections that never say a word: each one's handshake waits on its own task.
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let (health, _) = https_health(addr, &[pair.der()]).expect("health over TLS");
    assert!(health["clients"].as_u64().unwrap_or(0) >= 1, "{health}");
    drop(stalled);
}

// ----- bad files: exit code 2 at start, a failed reload while running -----

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).args(args).output().expect("run binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `server` and `check-config` both refuse `config` with exit code 2 and say `expected`.
fn refused(config: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("gateway.properties");
    std::fs::write(
        &path,
        format!(
            "frontend.host=127.0.0.1\nfrontend.port=0\ncluster.controlSocket={}\n{config}",
            dir.path().join("control.sock").display()
        ),
    )
    .expect("write config");
    for command in ["check-config", "server"] {
        let (code, stderr) = run(&[command, path.to_str().expect("utf-8 path")]);
        assert_eq!(code, Some(2), "{command}: {stderr}");
        for needle in expected {
            assert!(stderr.contains(needle), "{command}: {needle:?} in {stderr}");
        }
    }
}

#[test]
fn a_missing_key_file_is_exit_code_2_naming_key_and_path() {
    let files = Files::new(&Pair::new());
    std::fs::remove_file(files.key()).expect("remove key");
    let key = format!("frontend.private_key = \"{}\"", files.key().display());
    refused(
        &files.config(),
        &[&key, "cannot read the file", "No such file"],
    );
}

#[test]
fn a_garbage_pem_is_exit_code_2_naming_key_and_path() {
    let files = Files::new(&Pair::new());
    std::fs::write(files.cert(), "this is not a certificate\n").expect("write");
    let cert = format!("frontend.certificate = \"{}\"", files.cert().display());
    refused(&files.config(), &[&cert, "no certificate in it"]);

    let files = Files::new(&Pair::new());
    std::fs::write(files.key(), "-----BEGIN PRIVATE KEY-----\n").expect("write");
    let key = format!("frontend.private_key = \"{}\"", files.key().display());
    refused(&files.config(), &[&key, "not valid PEM"]);
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_exit_code_2() {
    let files = Files::new(&Pair::new());
    std::fs::write(files.key(), Pair::new().key).expect("write another key");
    let key = format!("frontend.private_key = \"{}\"", files.key().display());
    let cert = format!("frontend.certificate = \"{}\"", files.cert().display());
    refused(
        &files.config(),
        &[&key, "does not match the certificate", &cert],
    );
}

#[test]
fn a_broken_certificate_fails_the_reload_and_a_fixed_one_is_picked_up() {
    let old = Pair::new();
    let files = Files::new(&old);
    let cluster = start(&files);
    let addr = cluster.addr();
    let before = cluster.worker_pids();

    std::fs::write(files.cert(), "-----BEGIN CERTIFICATE-----\n").expect("break it");
    cluster.signal(Signal::SIGHUP);
    let cert = format!("frontend.certificate = \"{}\"", files.cert().display());
    cluster.wait_log(&["reload failed: ", &cert, "not valid PEM"]);
    cluster.wait_log(&["keeps running on its current configuration", "generation=1"]);
    let status = cluster.wait_ready();
    assert_eq!(status["generation"], 1);
    assert_eq!(cluster.worker_pids(), before);
    let (_, served) = https_health(addr, &[old.der()]).expect("still serving TLS");
    assert_eq!(served, old.der());

    // A crashed worker's replacement serves the certificate the master checked, not the file.
    common::signal_pid(before[0], Signal::SIGKILL);
    wait_for("the killed worker replaced", || {
        let status = cluster.status()?;
        let pids: Vec<i64> = workers(&status)
            .iter()
            .filter(|w| w["state"] == "ready")
            .filter_map(|w| w["pid"].as_i64())
            .collect();
        (pids.len() == 2 && !pids.contains(&i64::from(before[0]))).then_some(())
    });
    for _ in 0..4 {
        let (_, served) = https_health(addr, &[old.der()]).expect("still serving TLS");
        assert_eq!(served, old.der());
    }

    let new = Pair::new();
    files.write(&new);
    cluster.signal(Signal::SIGHUP);
    wait_for("generation 2 ready", || {
        let status = cluster.wait_ready();
        (status["generation"] == 2 && workers(&status).len() == 2).then_some(())
    });
    let (_, served) = https_health(addr, &[old.der(), new.der()]).expect("serving TLS");
    assert_eq!(served, new.der(), "the new certificate is served");
}
