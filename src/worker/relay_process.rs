//! The relay as a supervised process: the same master channel as a gateway worker (init,
//! heartbeats, drain), with the outbox relay running instead of a server. Heartbeats are answered
//! on the same event loop while the relay waits for MongoDB or NATS, so a relay that is only
//! waiting for a backend is never taken for a hung one.

use std::sync::Arc;

use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

use super::lag::LagProbe;
use super::{WorkerError, answer_heartbeat};
use crate::ipc::{Channel, ToMaster, ToWorker};
use crate::logging::{self, Role};
use crate::relay::{self, RelayStats};

pub async fn serve(mut channel: Channel<ToMaster, ToWorker>) -> Result<(), WorkerError> {
    let Some(ToWorker::Init {
        generation, config, ..
    }) = channel.receiver.recv().await?
    else {
        return Err(WorkerError::NoInit);
    };
    logging::init(Role::Relay, config.frontend.log_level);
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP]).map_err(WorkerError::Signals)?;
    let (stop_probe, probe_stop) = watch::channel(false);
    let probe = LagProbe::default();
    tokio::spawn(probe.clone().run(probe_stop));

    let (stop, shutdown) = watch::channel(false);
    let stats = Arc::new(RelayStats::default());
    let mut relay = tokio::spawn(relay::run_with_stats(config.relay.clone(), stats, shutdown));
    channel.sender.send(&ToMaster::Ready).await?;
    tracing::info!(generation, "relay ready");

    let mut deadline: Option<Instant> = None;
    let drain = |timeout: Duration, deadline: &mut Option<Instant>| {
        if deadline.is_none() {
            tracing::info!("stopping: finishing in-flight publishes, saving the checkpoint");
            let _ = stop.send(true);
            *deadline = Some(Instant::now() + timeout);
        }
    };
    let result = loop {
        tokio::select! {
            msg = channel.receiver.recv() => match msg? {
                Some(ToWorker::Heartbeat { seq }) => {
                    answer_heartbeat(&mut channel, seq, 0, &probe).await?;
                }
                Some(ToWorker::Drain { timeout_ms }) => {
                    drain(Duration::from_millis(timeout_ms), &mut deadline);
                    channel.sender.send(&ToMaster::Draining { clients: 0 }).await?;
                }
                Some(ToWorker::LogLevel { level }) => logging::set_level(level),
                Some(_) => {}
                None => {
                    tracing::warn!("the master is gone; exiting");
                    break Ok(());
                }
            },
            finished = &mut relay => break match finished {
                Ok(result) => result.map_err(WorkerError::from),
                Err(e) => Err(WorkerError::RelayTask(e)),
            },
            Some(signal) = signals.next() => match signal {
                SIGQUIT => break Ok(()),
                SIGHUP => tracing::debug!("SIGHUP ignored: send it to the master"),
                _ => drain(config.cluster.drain_timeout, &mut deadline),
            },
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                tracing::warn!("the relay did not stop by the drain deadline; exiting");
                break Ok(());
            }
        }
    };
    let _ = stop_probe.send(true);
    result
}
