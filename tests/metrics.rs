//! Prometheus metrics, scraped as Prometheus would: `/metrics` on the listen address (a worker
//! takes the scrape and asks the master) and on `cluster.metricsAddress` (the master itself),
//! parsed, and seen to move with real traffic: socket.io clients of every protocol doing round
//! trips through the echo agent, refused frames, gateway errors, a SIGKILLed worker, and the
//! relay and realtime pipeline (outbox -> relay -> JetStream -> consumer -> a Centrifugo client).
//! The Grafana dashboard in `conf/` is checked against what a scrape exposes.

mod common;
mod mongo_wire;
mod realtime_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bson::{doc, oid::ObjectId};
use common::agent::{JsClient, gateway_config, start_agent};
use common::{Cluster, http_get, signal_pid, wait_for};
use mongo_wire::MongoWire;
use nix::sys::signal::Signal;
use realtime_support::{realtime_keys, unique, ws_subscribed};
use serde_json::{Value, json};

/// One scrape, parsed.
#[derive(Debug)]
struct Scrape {
    /// Families, by the names of their `# TYPE` lines, with their type.
    families: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Scrape {
    /// Parses the text exposition format, checking what Prometheus checks: every sample's
    /// family is declared before it, once, and its samples are together.
    fn parse(text: &str) -> Scrape {
        let mut families = BTreeMap::new();
        let mut samples = Vec::new();
        let mut current = String::new();
        let mut closed: BTreeSet<String> = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                assert!(
                    ["counter", "gauge"].contains(&kind),
                    "unknown type in {line:?}"
                );
                assert!(
                    families
                        .insert(name.to_string(), kind.to_string())
                        .is_none(),
                    "family {name} declared twice"
                );
                assert!(
                    kind != "counter" || name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
                closed.insert(std::mem::replace(&mut current, name.to_string()));
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let sample = parse_sample(line);
            assert_eq!(sample.name, current, "sample outside its family: {line:?}");
            assert!(!closed.contains(&sample.name), "family split: {line:?}");
            assert!(sample.name.starts_with("activestack_"), "{line:?}");
            samples.push(sample);
        }
        Scrape { families, samples }
    }

    /// The sum of the samples of `name` that have every label of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The samples of `name` that have every label of `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
    let value: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("value in {line:?}"));
    let (name, labels) = match series.split_once('{') {
        None => (series.to_string(), BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("labels end with }");
            let mut labels = BTreeMap::new();
            let mut chars = body.chars().peekable();
            while chars.peek().is_some() {
                let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                assert_eq!(chars.next(), Some('"'), "quoted label value in {line:?}");
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => panic!("escape at the end in {line:?}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                if chars.peek() == Some(&',') {
                    chars.next();
                }
                labels.insert(key, value);
            }
            (name.to_string(), labels)
        }
    };
    Sample {
        name,
        labels,
        value,
    }
}

/// `GET /metrics` at `addr`: checks the status and content type, parses the body.
fn scrape(addr: SocketAddr) -> Result<Scrape, String> {
    let response = http_get(addr, "/metrics")?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("bad status: {head}"));
    }
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Ok(Scrape::parse(body))
}

/// Scrapes `addr` until `check` holds, and returns that scrape.
fn scrape_until(addr: SocketAddr, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
    wait_for(what, || scrape(addr).ok().filter(|s| check(s)))
}

/// Where the master of `cluster` serves `cluster.metricsAddress`.
fn metrics_addr(cluster: &Cluster) -> SocketAddr {
    let status = cluster.wait_ready();
    status["metrics"]
        .as_str()
        .expect("status names the metrics address")
        .parse()
        .unwrap()
}

/// A socket.io 0.9 client: the `/socket.io/1/` handshake, then its websocket.
fn legacy_client(
    addr: SocketAddr,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>> {
    let response = http_get(addr, "/socket.io/1/").expect("0.9 handshake");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let sid = body.split(':').next().unwrap().to_string();
    let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/socket.io/1/websocket/{sid}"))
        .expect("0.9 websocket");
    let hello = ws.read().unwrap().into_text().unwrap();
    assert_eq!(hello.as_str(), "1::", "the 0.9 connect packet");
    ws
}

#[test]
fn metrics_move_with_round_trips_errors_and_restarts_on_both_addresses() {
    start_agent();
    let cluster = Cluster::start(&format!(
        "{}cluster.metricsAddress=127.0.0.1:0\n",
        gateway_config()
    ));
    let (listen, master) = (cluster.addr(), metrics_addr(&cluster));

    // Both answer for the whole cluster before any traffic.
    for addr in [listen, master] {
        let s = scrape_until(addr, "the broker connections reported", |s| {
            s.sum(
                "activestack_broker_up",
                &[("broker", "rabbitmq"), ("role", "gateway")],
            ) == 2.0
                && s.sum(
                    "activestack_broker_up",
                    &[("broker", "redis"), ("role", "master")],
                ) == 1.0
        });
        assert_eq!(
            s.sum(
                "activestack_workers",
                &[("role", "gateway"), ("state", "ready")]
            ),
            2.0
        );
        assert_eq!(s.sum("activestack_workers_desired", &[]), 2.0);
        assert_eq!(s.sum("activestack_requests_total", &[]), 0.0);
        assert_eq!(s.matching("activestack_worker_rss_bytes", &[]).count(), 3);
        assert!(
            s.matching("activestack_worker_rss_bytes", &[])
                .all(|w| w.value > 1e6),
            "RSS of every worker, standby included: {:?}",
            s.samples
        );
        assert!(s.sum("activestack_worker_heartbeat_age_seconds", &[]) >= 0.0);
    }

    // Round trips: five requests acked by RabbitMQ, five pushes, five client acks.
    let mut client = JsClient::connect(&cluster);
    client.gateway_connect();
    for i in 0..5 {
        let id = format!("m{i}");
        client.emit(
            "testCall",
            json!({"cn": "TestCall", "messageId": id, "sendAck": true}),
        );
        assert_eq!(client.wait("ack", |_| true), id.as_str());
        client.push_for(&id);
        client.emit("message", json!({"ack": {"correspondingMessageId": id}}));
    }
    // One push left unacked: pending, then re-sent (frontend.clientMessageResendInterval=300).
    client.emit(
        "testCall",
        json!({"cn": "TestCall", "messageId": "unacked"}),
    );
    client.push_for("unacked");
    // Errors by kind: an unknown event, a request before login, one nobody consumes.
    client.emit("rm -rf", json!({"messageId": "e1"}));
    client.emit("findById", json!({"messageId": "e2"}));
    client.emit("getServiceUsers", json!({"messageId": "e3"}));
    for code in ["unknownEvent", "notLoggedIn", "unroutable"] {
        client.wait("gatewayError", |e| e["error"] == code);
    }
    // socket.io v4 (engine.io 3) and 0.9 clients; the v4 one sends a binary frame and is refused.
    let (mut v4, _) = tungstenite::connect(format!(
        "ws://{listen}/socket.io/?EIO=3&transport=websocket"
    ))
    .expect("engine.io 3 websocket");
    v4.read().unwrap();
    let legacy = legacy_client(listen);

    let counted = |s: &Scrape| {
        s.sum("activestack_requests_total", &[]) >= 6.0
            && s.sum("activestack_pushes_total", &[]) >= 6.0
            && s.sum("activestack_pushes_acked_total", &[]) >= 5.0
            && s.sum("activestack_pushes_resent_total", &[]) >= 1.0
            && s.sum("activestack_pushes_pending", &[]) == 1.0
            && s.sum("activestack_clients", &[("protocol", "socketio5")]) == 1.0
            && s.sum("activestack_clients", &[("protocol", "socketio4")]) == 1.0
            && s.sum("activestack_clients", &[("protocol", "socketio09")]) == 1.0
            && s.sum(
                "activestack_connections_total",
                &[("protocol", "socketio5")],
            ) >= 1.0
            && ["unknownEvent", "notLoggedIn", "unroutable"]
                .iter()
                .all(|kind| s.sum("activestack_gateway_errors_total", &[("kind", kind)]) >= 1.0)
    };
    // Whichever worker takes the scrape (connections go round-robin), it is the cluster's.
    for _ in 0..4 {
        scrape_until(listen, "round trips counted on the listen address", counted);
    }
    let before = scrape_until(master, "round trips counted by the master", counted);
    assert_eq!(
        before.sum("activestack_gateway_errors_total", &[("kind", "malformed")]),
        0.0
    );

    v4.send(tungstenite::Message::binary(vec![1, 2, 3]))
        .unwrap();
    scrape_until(master, "the binary frame refused", |s| {
        s.sum("activestack_frames_refused_total", &[("reason", "binary")]) == 1.0
            && s.sum("activestack_clients", &[("protocol", "socketio4")]) == 0.0
    });
    drop(legacy);
    scrape_until(master, "the 0.9 client gone", |s| {
        s.sum("activestack_clients", &[("protocol", "socketio09")]) == 0.0
    });

    // A SIGKILLed worker: a restart of cause `exited`; the cluster's counters never go down.
    let pid = cluster.worker_pids()[0];
    signal_pid(pid, Signal::SIGKILL);
    let after = scrape_until(master, "the restart counted", |s| {
        s.sum(
            "activestack_worker_restarts_total",
            &[("role", "gateway"), ("cause", "exited")],
        ) == 1.0
            && s.sum(
                "activestack_workers",
                &[("role", "gateway"), ("state", "ready")],
            ) == 2.0
    });
    let pid = pid.to_string();
    assert_eq!(
        after
            .matching("activestack_worker_rss_bytes", &[("pid", &pid)])
            .count(),
        0,
        "the killed worker is gone from the per-worker series"
    );
    for (name, value) in totals(&before) {
        assert!(
            after.sum(&name, &[]) >= value,
            "{name} went down from {value} after a worker was killed"
        );
    }

    // Anything else on the metrics address is not found.
    let other = http_get(master, "/").unwrap();
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");

    check_dashboard(&after);
}

/// Every counter of a scrape, summed over its labels.
fn totals(scrape: &Scrape) -> Vec<(String, f64)> {
    scrape
        .families
        .iter()
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| (name.clone(), scrape.sum(name, &[])))
        .collect()
}

/// `conf/grafana-dashboard.json` loads as a Grafana dashboard: a Prometheus datasource
/// variable, panels whose every query names only metrics the scrape exposes, and every family
/// of the scrape on some panel.
fn check_dashboard(scrape: &Scrape) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/grafana-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("dashboard JSON");
    assert!(dashboard["title"].is_string());
    assert!(dashboard["uid"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(datasource["query"], "prometheus");
    let var = format!("${{{}}}", datasource["name"].as_str().unwrap());

    let panels = dashboard["panels"].as_array().unwrap();
    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids unique"
        );
        assert!(panel["gridPos"]["w"].as_u64().unwrap() > 0);
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap();
        assert_eq!(panel["datasource"]["uid"], var.as_str(), "{title}");
        let targets = panel["targets"].as_array().expect(title);
        assert!(!targets.is_empty(), "{title} has queries");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], var.as_str(), "{title}");
            let expr = target["expr"].as_str().expect(title);
            queries += 1;
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr}");
            for name in names {
                assert!(
                    scrape.families.contains_key(&name),
                    "panel {title:?} queries {name}, which /metrics does not expose"
                );
                used.insert(name);
            }
        }
    }
    assert!(queries >= 12, "{queries} queries");
    let unused: Vec<&String> = scrape
        .families
        .keys()
        .filter(|f| !used.contains(*f))
        .collect();
    assert!(unused.is_empty(), "families on no panel: {unused:?}");
}

/// The `activestack_*` metric names a PromQL expression refers to.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("activestack_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The reactivity pipeline: an outbox insert goes through the supervised relay and the
/// workers' consumer to a realtime client, and the relay's and realtime's metrics say so.
#[test]
fn relay_and_realtime_metrics_follow_an_outbox_insert() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _runtime = rt.enter();
    let id = unique();
    let wire = rt.block_on(MongoWire::start());
    let database = format!("metrics_{id}");
    let cluster = Cluster::start(&format!(
        "cluster.workerCount=1\n{}\
         relay.enabled=true\nrelay.mongodb.url={}\nrelay.mongodb.database={database}\n\
         relay.nats.subjectPrefix=rt{id}\nrelay.nats.stream=RT_T{id}\n\
         relay.nats.deadLetterSubject=dl{id}\nrelay.nats.deadLetterStream=DL_RT{id}\n",
        realtime_keys(&id),
        wire.url(),
    ));
    let addr = cluster.addr();
    cluster.wait_log(&["relay: watching the outbox"]);
    cluster.wait_log(&["realtime consumer: consuming", &format!("rt_test_{id}")]);
    let user = format!("u{id}");
    let (_ws, subscribed) = ws_subscribed(addr, &user);
    assert!(subscribed.is_object(), "{subscribed}");

    let s = scrape_until(addr, "the relay and realtime connections", |s| {
        s.sum("activestack_relay_watching", &[]) == 1.0
            && s.sum("activestack_clients", &[("protocol", "realtime")]) == 1.0
            && s.sum(
                "activestack_broker_up",
                &[("broker", "nats"), ("role", "relay")],
            ) == 1.0
            && s.sum(
                "activestack_broker_up",
                &[("broker", "nats"), ("role", "gateway")],
            ) == 1.0
    });
    assert_eq!(s.sum("activestack_relay_published_total", &[]), 0.0);
    assert_eq!(s.matching("activestack_relay_lag_seconds", &[]).count(), 0);

    let client = rt
        .block_on(mongodb::Client::with_uri_str(wire.url()))
        .unwrap();
    let outbox = client
        .database(&database)
        .collection::<bson::Document>("messages_outbox");
    rt.block_on(async {
        for n in 0..3 {
            outbox
                .insert_one(doc! {"_id": ObjectId::new(), "userId": &user, "data": {"n": n}})
                .await
                .unwrap();
        }
    });
    let s = scrape_until(addr, "the inserts relayed and delivered", |s| {
        s.sum("activestack_relay_published_total", &[]) == 3.0
            && s.sum(
                "activestack_realtime_consumed_total",
                &[("result", "published")],
            ) == 3.0
            && s.sum("activestack_realtime_deliveries_total", &[]) == 3.0
            && s.sum("activestack_relay_in_flight", &[]) == 0.0
    });
    let lag = s.sum("activestack_relay_lag_seconds", &[]);
    assert_eq!(s.matching("activestack_relay_lag_seconds", &[]).count(), 1);
    assert!(
        (0.0..60.0).contains(&lag),
        "insert-to-ack lag of a local relay: {lag}"
    );
    assert_eq!(
        s.sum("activestack_relay_dead_letters_total", &[]),
        0.0,
        "{:?}",
        s.samples
    );

    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect("nats://127.0.0.1:4222").await?);
        let _ = js.delete_stream(&format!("RT_T{id}")).await;
        let _ = js.delete_stream(&format!("DL_RT{id}")).await;
        Ok::<(), async_nats::ConnectError>(())
    })
    .unwrap();
}

/// A Prometheus server of the test's own (Debian's `prometheus`, scripts/setup.sh installs it),
/// scraping `target` every second; killed on drop.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: activestack-gateway\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        // A free port for it (Prometheus cannot report one it chose).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package: run scripts/setup.sh)");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// `GET /api/v1/<path>?<query>` -> its JSON (status checked by the caller).
    fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let response = http_get(self.addr, &format!("/api/v1/{path}?{query}"))?;
        let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// An instant query's result, if Prometheus took the query.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let answer = self.api("query", &[("query", expr)])?;
        if answer["status"] != "success" {
            return Err(format!("{expr}: {answer}"));
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// "The dashboard loads", as far as a machine without Grafana can tell: a real Prometheus
/// scrapes the master (so it parses the exposition text), and runs every query of
/// `conf/grafana-dashboard.json` as Grafana would send it (`$__rate_interval` and the
/// `instance` variable filled in), each one accepted and the cluster's series found.
#[test]
fn the_dashboards_queries_run_on_prometheus() {
    start_agent();
    let cluster = Cluster::start(&format!(
        "{}cluster.metricsAddress=127.0.0.1:0\n",
        gateway_config()
    ));
    let target = metrics_addr(&cluster);
    let mut client = JsClient::connect(&cluster);
    client.gateway_connect();
    client.emit("testCall", json!({"cn": "TestCall", "messageId": "p1"}));
    client.push_for("p1");

    let prometheus = Prometheus::start(target);
    let up = wait_for("Prometheus to scrape the master", || {
        let targets = prometheus.api("targets", &[]).ok()?;
        let active = targets["data"]["activeTargets"]
            .as_array()?
            .first()?
            .clone();
        (active["health"] == "up" || !active["lastError"].as_str()?.is_empty()).then_some(active)
    });
    assert_eq!(up["health"], "up", "Prometheus read the exposition: {up}");
    // Twice scraped: rate() over the window has two points.
    wait_for("two scrapes", || {
        let r = prometheus
            .query("count_over_time(activestack_build_info[1m])")
            .ok()?;
        let scrapes: f64 = r.first()?["value"][1].as_str()?.parse().ok()?;
        (scrapes >= 2.0).then_some(())
    });

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let instance_values = prometheus
        .api(
            "label/instance/values",
            &[("match[]", "activestack_build_info")],
        )
        .unwrap();
    assert_eq!(
        instance_values["data"],
        json!([target.to_string()]),
        "the Master variable's values"
    );
    let mut with_data = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            let result = prometheus.query(&expr).unwrap_or_else(|e| {
                panic!("panel {:?}: Prometheus refused {expr}: {e}", panel["title"])
            });
            with_data += usize::from(!result.is_empty());
        }
    }
    // The relay's queries have no series without a relay, and `> 0` filters keep zeros out;
    // everything else has data.
    assert!(with_data >= 15, "{with_data} queries with data");
}
