//! `suite`: the whole benchmark. Makes a vhost and starts the agent, then runs every point as a
//! child process of its own (`run`: one library, one concurrency, one ack mode), lapin and amqprs
//! back to back and in alternating order, a few rounds; records the load before each run;
//! deletes each run's queues; writes every run (JSON lines) and the medians (Markdown).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Context as _;

use crate::acks::AckMode;
use crate::agent_process::AgentProcess;
use crate::broker::{Broker, Vhost};
use crate::driver::Report;
use crate::measure::median;

pub const AGENT_QUEUE: &str = "agent";
const CLIENTS: [&str; 2] = ["lapin", "amqprs"];

#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// Concurrencies (client queues) of the main table.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    pub clients: Vec<usize>,
    /// Concurrencies at which batched acks are compared with one ack per delivery.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub ack_clients: Vec<usize>,
    /// Runs of each point (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of warm-up before the measured window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    #[arg(long)]
    pub skip_isolation: bool,
    /// Where to write runs.jsonl, summary.md and isolation.md.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out: PathBuf,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Run {
    round: usize,
    /// /proc/loadavg (1, 5, 15 min) just before the run.
    load: [f64; 3],
    report: Report,
}

fn load() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

struct Point {
    client: &'static str,
    clients: usize,
    ack: AckMode,
}

/// The order of all runs: each round does every point; within a round lapin and amqprs
/// alternate which goes first, so neither always runs on the heels of the other.
fn plan(args: &SuiteArgs) -> Vec<(usize, Point)> {
    let mut runs = Vec::new();
    let mut flip = 0usize;
    for round in 0..args.rounds {
        for &clients in &args.clients {
            flip += 1;
            for k in 0..2 {
                let client = CLIENTS[(flip + k) % 2];
                runs.push((
                    round,
                    Point {
                        client,
                        clients,
                        ack: AckMode::PerDelivery,
                    },
                ));
            }
        }
        for &clients in &args.ack_clients {
            for k in 0..2 {
                flip += 1;
                let client = CLIENTS[(round + k) % 2];
                for ack in [AckMode::PerDelivery, AckMode::Batched] {
                    let ack = if flip.is_multiple_of(2) {
                        ack
                    } else {
                        other(ack)
                    };
                    runs.push((
                        round,
                        Point {
                            client,
                            clients,
                            ack,
                        },
                    ));
                }
            }
        }
    }
    runs
}

fn other(ack: AckMode) -> AckMode {
    match ack {
        AckMode::PerDelivery => AckMode::Batched,
        AckMode::Batched => AckMode::PerDelivery,
    }
}

pub fn main(args: &SuiteArgs, broker: &Broker) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let vhost = Vhost::create(&format!("amqp-bench-{}", std::process::id()), &broker.user)?;
    let broker = Broker {
        vhost: vhost.name.clone(),
        ..broker.clone()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let janitor = runtime.block_on(crate::lapin_gw::connect(&broker, "amqp-bench janitor"))?;
    let janitor = runtime.block_on(janitor.create_channel())?;
    let agent = AgentProcess::start(&broker, AGENT_QUEUE)?;

    let mut jsonl = String::new();
    let mut runs = Vec::new();
    let plan = plan(args);
    for (n, (round, point)) in plan.iter().enumerate() {
        let prefix = format!("r{n}");
        let load = load();
        eprintln!(
            "[{}/{}] round {round} {} C={} {:?} (load {:.2} {:.2} {:.2})",
            n + 1,
            plan.len(),
            point.client,
            point.clients,
            point.ack,
            load[0],
            load[1],
            load[2]
        );
        let out = Command::new(std::env::current_exe()?)
            .arg("run")
            .args(broker.args())
            .args(["--client", point.client])
            .args(["--clients", &point.clients.to_string()])
            .args(["--warmup", &args.warmup.to_string()])
            .args(["--seconds", &args.seconds.to_string()])
            .args(["--ack", ack_name(point.ack)])
            .args(["--prefix", &prefix])
            .args(["--agent-queue", AGENT_QUEUE])
            .output()
            .context("running a point")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.trim().is_empty() {
            eprintln!("{}", stderr.trim_end());
        }
        match serde_json::from_slice::<Report>(&out.stdout) {
            Ok(report) if out.status.success() => {
                eprintln!(
                    "    {:.1} µs CPU/rt, {:.0} rt/s, p50 {} µs, p99 {} µs, {} threads",
                    report.cpu_us_per_rt,
                    report.rt_per_s,
                    report.p50_us,
                    report.p99_us,
                    report.threads
                );
                let run = Run {
                    round: *round,
                    load,
                    report,
                };
                jsonl.push_str(&serde_json::to_string(&run)?);
                jsonl.push('\n');
                runs.push(run);
            }
            _ => eprintln!("    run failed ({}), left out", out.status),
        }
        runtime.block_on(delete_queues(&janitor, &prefix, point.clients));
    }
    drop(agent);
    std::fs::write(args.out.join("runs.jsonl"), &jsonl)?;
    let summary = summarize(&runs, args);
    std::fs::write(args.out.join("summary.md"), &summary)?;
    println!("{summary}");

    if !args.skip_isolation {
        let mut isolation = String::new();
        for client in CLIENTS {
            let out = Command::new(std::env::current_exe()?)
                .arg("check-isolation")
                .args(broker.args())
                .args(["--client", client])
                .output()?;
            isolation.push_str(&String::from_utf8_lossy(&out.stdout));
            if !out.status.success() {
                let _ = writeln!(
                    isolation,
                    "check-isolation --client {client} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        std::fs::write(args.out.join("isolation.md"), &isolation)?;
        println!("{isolation}");
    }
    drop(vhost);
    Ok(())
}

pub fn ack_name(ack: AckMode) -> &'static str {
    match ack {
        AckMode::PerDelivery => "per-delivery",
        AckMode::Batched => "batched",
    }
}

async fn delete_queues(channel: &lapin::Channel, prefix: &str, n: usize) {
    let deletes = (0..n).map(|i| {
        let queue = format!("{prefix}-{i}");
        async move {
            let options = lapin::options::QueueDeleteOptions::default();
            if let Err(e) = channel.queue_delete(&queue, options).await {
                eprintln!("cannot delete {queue}: {e}");
            }
        }
    });
    futures_util::future::join_all(deletes).await;
}

/// The medians of each point, as Markdown tables.
fn summarize(runs: &[Run], args: &SuiteArgs) -> String {
    let mut groups: BTreeMap<(usize, &str, &str), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        let key = (
            run.report.clients,
            ack_name(run.report.ack_mode),
            run.report.client.as_str(),
        );
        groups.entry(key).or_default().push(run);
    }
    let med = |runs: &[&Run], f: &dyn Fn(&Report) -> f64| {
        median(&mut runs.iter().map(|r| f(&r.report)).collect::<Vec<_>>())
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Medians of {} rounds; window {} s after {} s of warm-up; each run a process of its own.\n",
        args.rounds, args.seconds, args.warmup
    );
    let _ = writeln!(
        s,
        "| C | ack | client | CPU µs/rt | (each run) | user / sys µs/rt | rt/s | p50 µs | p99 µs | threads | ctx switches/rt | ack frames/rt | load1 |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for ((clients, ack, client), runs) in &groups {
        let each: Vec<String> = runs
            .iter()
            .map(|r| format!("{:.1}", r.report.cpu_us_per_rt))
            .collect();
        let loads: Vec<f64> = runs.iter().map(|r| r.load[0]).collect();
        let (lo, hi) = loads
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
        let _ = writeln!(
            s,
            "| {clients} | {ack} | {client} | **{:.1}** | {} | {:.1} / {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {lo:.1}–{hi:.1} |",
            med(runs, &|r| r.cpu_us_per_rt),
            each.join(", "),
            med(runs, &|r| r.user_us_per_rt),
            med(runs, &|r| r.sys_us_per_rt),
            med(runs, &|r| r.rt_per_s),
            med(runs, &|r| f64::from(r.p50_us)),
            med(runs, &|r| f64::from(r.p99_us)),
            med(runs, &|r| r.threads as f64),
            med(runs, &|r| r.switches_per_rt),
            med(runs, &|r| r.ack_frames_per_rt),
        );
    }
    let _ = writeln!(s, "\nCPU µs per round trip by thread (medians):\n");
    let _ = writeln!(s, "| C | ack | client | threads |");
    let _ = writeln!(s, "|---|---|---|---|");
    for ((clients, ack, client), runs) in &groups {
        let mut names: Vec<String> = runs
            .iter()
            .flat_map(|r| r.report.thread_us_per_rt.iter().map(|(n, _)| n.clone()))
            .collect();
        names.sort();
        names.dedup();
        let split: Vec<String> = names
            .iter()
            .map(|name| {
                let us = med(runs, &|r| {
                    r.thread_us_per_rt
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(0.0, |(_, us)| *us)
                });
                format!("{name} {us:.1}")
            })
            .collect();
        let _ = writeln!(s, "| {clients} | {ack} | {client} | {} |", split.join(", "));
    }
    s
}
