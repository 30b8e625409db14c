//! The demo (`demo.enabled`): the page at `/demo` in headless Chromium (Debian's `chromium`,
//! driven by npm `playwright-core` in `tests/browser`) shows round trips through the demo agent
//! and live events through JetStream, Redis and the socket's personal channel; the demo agent
//! is a supervised process of the cluster.
//!
//! Isolation: each cluster gets a RabbitMQ vhost of its own (the echo agents of other test
//! processes consume the same agent queue names on `/`), its own JetStream streams and consumer,
//! and a user of its own.

mod common;

use std::path::Path;
use std::process::Command;

use common::percero::vhost::Vhost;
use common::{Cluster, alive, http_get, signal_pid, wait_for};
use nix::sys::signal::Signal;
use serde_json::Value;

/// How long the page may take to show a round trip and a live event (the workers' consumer
/// retries every 5 s at most while the demo agent makes the stream).
const PAGE_DEADLINE_MS: u64 = 30_000;

/// The demo's keys for a cluster of this test: the demo agent and realtime on, in `vhost`,
/// with JetStream names of its own (`id`).
fn demo_keys(vhost: &Vhost, id: &str) -> String {
    format!(
        "cluster.workerCount=2\n\
         demo.enabled=true\n\
         realtime.enabled=true\n\
         gateway.rabbitmq.vhost={vhost}\n\
         relay.nats.stream=DEMO_T{id}\n\
         relay.nats.subjectPrefix=demo{id}\n\
         relay.nats.deadLetterStream=DEMO_DL_T{id}\n\
         relay.nats.deadLetterSubject=demodl{id}\n\
         realtime.nats.stream=DEMO_T{id}\n\
         realtime.nats.subjects=demo{id}.>\n\
         realtime.nats.consumer=demo_test_{id}\n\
         realtime.nats.deadLetterSubject=demodl{id}.realtime\n",
        vhost = vhost.name
    )
}

fn unique() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// Deletes the test's JetStream streams (and their consumers) when dropped.
struct Streams(Vec<String>);

impl Drop for Streams {
    fn drop(&mut self) {
        let names = std::mem::take(&mut self.0);
        let runtime = common::agent::runtime();
        runtime.block_on(async move {
            let Ok(client) = async_nats::connect("nats://127.0.0.1:4222").await else {
                return;
            };
            let js = async_nats::jetstream::new(client);
            for name in names {
                let _ = js.delete_stream(&name).await;
            }
        });
    }
}

/// The demo agent's entry in status, once every process is ready.
fn demo_agent(cluster: &Cluster) -> Option<Value> {
    let status = cluster.wait_ready();
    status["workers"]
        .as_array()?
        .iter()
        .find(|w| w["role"] == "demo")
        .cloned()
}

#[test]
fn the_demo_page_shows_round_trips_and_live_events_in_headless_chromium() {
    let vhost = Vhost::create();
    let id = unique();
    let _streams = Streams(vec![format!("DEMO_T{id}"), format!("DEMO_DL_T{id}")]);
    let cluster = Cluster::start(&demo_keys(&vhost, &id));
    let agent = demo_agent(&cluster).expect("the demo agent in status");
    assert_eq!(agent["state"], "ready");
    cluster.wait_log(&["demo agent: answering"]);

    let user = format!("demo-{id}");
    let url = format!("http://{}/demo?user={user}", cluster.addr());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/demo_page.js");
    let out = Command::new("node")
        .arg(&script)
        .arg(&url)
        .arg(PAGE_DEADLINE_MS.to_string())
        .output()
        .expect("run node (scripts/setup.sh installs tests/browser and chromium)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("demo_page.js: {stdout}");
    eprintln!(
        "demo_page.js stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("demo_page.js printed {stdout:?}: {e}"));

    assert_eq!(report["status"], 200, "{report}");
    assert_eq!(report["shown"], true, "{report}");
    assert!(report["roundTrips"].as_u64() > Some(0), "{report}");
    assert!(report["events"].as_u64() > Some(0), "{report}");
    assert_eq!(
        report["outside"],
        serde_json::json!([]),
        "asked another server: {report}"
    );
    // A websocket attempt the browser saw fail (a connection reset under a loaded machine) is
    // not a page error: the page connects again by design, and it did (round trips and events
    // above). Any other console or page error fails the test.
    let errors: Vec<&Value> = report["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| {
                    !e.as_str().is_some_and(|e| {
                        e.contains("WebSocket connection to") && e.contains("failed")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(errors.is_empty(), "{report}");
    assert_eq!(report["login"], format!("logged in as {user}"), "{report}");
    assert_eq!(
        report["subscribed"]["channel"],
        format!("personal:#{user}"),
        "{report}"
    );
    let first = report["firstEvent"].as_str().unwrap_or_default();
    assert!(
        first.contains("\"kind\":\"testCall\"") && first.contains("after its request"),
        "the event names the page's own request: {report}"
    );
    assert!(
        report["csp"]
            .as_str()
            .is_some_and(|csp| csp.contains("connect-src 'self'")),
        "{report}"
    );
}

#[test]
fn the_demo_agent_is_supervised_and_goes_with_demo_enabled() {
    let vhost = Vhost::create();
    let id = unique();
    let _streams = Streams(vec![format!("DEMO_T{id}"), format!("DEMO_DL_T{id}")]);
    let keys = demo_keys(&vhost, &id);
    let cluster = Cluster::start(&keys);
    let pid = demo_agent(&cluster).expect("a demo agent")["pid"]
        .as_i64()
        .unwrap() as i32;
    let page = http_get(cluster.addr(), "/demo").expect("GET /demo");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>activestack-gateway demo</title>"));
    assert!(
        page.contains(r#""realtime":true"#),
        "the settings are filled in"
    );

    // Killed, it is replaced like the relay.
    signal_pid(pid, Signal::SIGKILL);
    let replaced = wait_for("a new demo agent", || {
        let agent = demo_agent(&cluster)?;
        (agent["pid"].as_i64() != Some(pid as i64)).then_some(agent)
    });
    assert_eq!(replaced["restarts"], 1);
    wait_for("the killed agent to be gone", || {
        (!alive(pid)).then_some(())
    });
    cluster.wait_log(&["slot=demo"]);

    // demo.enabled=false on a reload: the agent drains and /demo is no more.
    let new_pid = replaced["pid"].as_i64().unwrap() as i32;
    cluster.rewrite_config(&keys.replace("demo.enabled=true", "demo.enabled=false"));
    cluster.signal(Signal::SIGHUP);
    wait_for("no demo agent any more", || {
        let status = cluster.wait_ready();
        let none = status["workers"]
            .as_array()?
            .iter()
            .all(|w| w["role"] != "demo");
        (none && status["generation"] == 2).then_some(())
    });
    wait_for("the old agent to exit", || (!alive(new_pid)).then_some(()));
    let page = http_get(cluster.addr(), "/demo").expect("GET /demo");
    assert!(page.starts_with("HTTP/1.1 404"), "{page}");
}
