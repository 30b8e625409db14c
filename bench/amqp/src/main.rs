//! Micro-benchmark of the gateway's AMQP pattern (issue 14) with lapin and with amqprs: confirmed
//! `mandatory` publishes with `reply_to`, one consumer per client queue on a pool of 4 consumer
//! channels (prefetch 10), manual acks (one per delivery or batched), and a check of how each
//! library keeps a channel error on its channel. See README.md.

mod acks;
mod agent;
mod agent_process;
mod amqprs_gw;
mod broker;
mod driver;
mod isolation;
mod lapin_gw;
mod measure;
mod suite;

use std::rc::Rc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::acks::AckMode;
use crate::broker::Broker;
use crate::driver::RunSpec;

#[derive(Parser)]
#[command(about = "The gateway's AMQP pattern with lapin and with amqprs")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Client {
    Lapin,
    Amqprs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything: makes a vhost, starts the agent, runs every point and the isolation checks.
    Suite {
        #[command(flatten)]
        broker: Broker,
        #[command(flatten)]
        args: suite::SuiteArgs,
    },
    /// One point, in the vhost given, with an agent already serving the agent queue there;
    /// prints its report as one JSON line.
    Run {
        #[command(flatten)]
        broker: Broker,
        #[arg(long, value_enum)]
        client: Client,
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, value_enum, default_value_t = AckMode::PerDelivery)]
        ack: AckMode,
        /// Client queues are PREFIX-0 .. PREFIX-(C-1).
        #[arg(long, default_value = "client")]
        prefix: String,
        #[arg(long, default_value = suite::AGENT_QUEUE)]
        agent_queue: String,
    },
    /// The agent: answers each request on QUEUE to its reply_to (a process of its own).
    Agent {
        #[command(flatten)]
        broker: Broker,
        #[arg(long, default_value = suite::AGENT_QUEUE)]
        queue: String,
    },
    /// How a channel error (406 on a declare, 404 on a consume) and a connection close are
    /// reported, and what survives them. Makes a vhost and an agent of its own.
    CheckIsolation {
        #[command(flatten)]
        broker: Broker,
        #[arg(long, value_enum)]
        client: Client,
    },
}

fn local<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    // The worker's runtime: one thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Entered while the LocalSet and what its tasks hold are dropped too: amqprs's Connection
    // and Channel spawn a close from their Drop and panic outside a runtime.
    let _entered = runtime.enter();
    tokio::task::LocalSet::new().block_on(&runtime, work)
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Suite { broker, args } => suite::main(&args, &broker),
        Cmd::Agent { broker, queue } => local(agent::serve(&broker, &queue)),
        Cmd::CheckIsolation { broker, client } => {
            let name = match client {
                Client::Lapin => "lapin",
                Client::Amqprs => "amqprs",
            };
            isolation::main(name, &broker)
        }
        Cmd::Run {
            broker,
            client,
            clients,
            warmup,
            seconds,
            ack,
            prefix,
            agent_queue,
        } => {
            let spec = RunSpec {
                clients,
                warmup: Duration::from_secs_f64(warmup),
                window: Duration::from_secs_f64(seconds),
                agent_queue,
                prefix,
                ack_mode: ack,
            };
            let report = local(async {
                match client {
                    Client::Lapin => {
                        let gateway = lapin_gw::LapinGateway::open(&broker, ack).await?;
                        driver::run("lapin", Rc::new(gateway), &spec).await
                    }
                    Client::Amqprs => {
                        let gateway = amqprs_gw::AmqprsGateway::open(&broker, ack).await?;
                        driver::run("amqprs", Rc::new(gateway), &spec).await
                    }
                }
            })?;
            println!("{}", serde_json::to_string(&report)?);
            // Not closing anything: the suite deletes the queues, the broker drops the
            // connection, and teardown is not what is measured.
            std::process::exit(0);
        }
    }
}
