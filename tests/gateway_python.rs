//! The gateway with a second socket.io implementation: PyPI `python-socketio` (installed into
//! tests/e2e/.venv by scripts/setup.sh) runs tests/e2e/python_client.py against the real cluster
//! and the echo agent: connect, a request with sendAck, the push and its ack, a reconnect with
//! the signed key, and an error event.

mod common;

use std::path::Path;
use std::process::Command;

use activestack_gateway::gateway::session::Session;
use common::Cluster;
use common::agent::{SECRET, gateway_config, start_agent};
use serde_json::Value;

#[test]
fn a_python_socketio_client_speaks_the_protocol() {
    start_agent();
    let cluster = Cluster::start(&gateway_config());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("tests/e2e/.venv/bin/python"))
        .arg(root.join("tests/e2e/python_client.py"))
        .arg(format!("http://{}", cluster.addr()))
        .output()
        .expect("run python (is tests/e2e/.venv installed? scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python client failed");
    let seen: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");

    let key = |name: &str| {
        Session::verify(seen[name].as_str().expect("a key"), SECRET.as_bytes())
            .expect("a valid session key")
    };
    let (first, second) = (key("key1"), key("key2"));
    assert_eq!(seen["ack"], "py-1");
    assert_eq!(seen["push_queue"], "testCall");
    assert_ne!(second.client_id, first.client_id);
    assert_eq!(
        second.existing_client_id.as_deref(),
        Some(first.client_id.as_str())
    );
    assert_eq!(seen["error"], "unknownEvent");
}
