//! The worker's one link to the master: the `init` it starts from, the messages it receives,
//! and what it says back (heartbeat answers with a [`WorkerReport`], `ready`, `draining`,
//! push outcomes). It also runs the event-loop lag probe the answers report.

use tokio::sync::watch;

use super::WorkerError;
use super::lag::LagProbe;
use super::memory;
use crate::config::Config;
use crate::ipc::{Channel, IpcError, ToMaster, ToWorker, WorkerReport};
use crate::metrics::WorkerMetrics;
use crate::tls::TlsFiles;

/// What the master's first message says.
pub struct Init {
    pub generation: u64,
    pub config: Box<Config>,
    pub tls: Option<Box<TlsFiles>>,
}

pub struct Link {
    channel: Channel<ToMaster, ToWorker>,
    probe: LagProbe,
    /// Stops the probe when the link goes.
    _stop_probe: watch::Sender<bool>,
}

impl Link {
    /// Reads the master's `init` (its first message, always) and starts the lag probe.
    pub async fn open(
        mut channel: Channel<ToMaster, ToWorker>,
    ) -> Result<(Link, Init), WorkerError> {
        let init = match channel.receiver.recv().await {
            Ok(Some(ToWorker::Init {
                generation,
                config,
                tls,
            })) => Init {
                generation,
                config,
                tls,
            },
            Ok(Some(_)) => return Err(WorkerError::NotInit),
            Ok(None) => return Err(WorkerError::NoInit),
            Err(IpcError::FrameTooLarge { len }) => return Err(WorkerError::InitTooLarge { len }),
            Err(e) => return Err(e.into()),
        };
        let (stop_probe, probe_stop) = watch::channel(false);
        let probe = LagProbe::default();
        tokio::spawn(probe.clone().run(probe_stop));
        let link = Link {
            channel,
            probe,
            _stop_probe: stop_probe,
        };
        Ok((link, init))
    }

    /// The next message; `None` once the master has closed the channel. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<ToWorker>, WorkerError> {
        Ok(self.channel.receiver.recv().await?)
    }

    pub async fn send(&mut self, msg: &ToMaster) -> Result<(), WorkerError> {
        Ok(self.channel.sender.send(msg).await?)
    }

    /// Answers heartbeat `seq` with this process's report; `clients`: its open connections;
    /// `metrics`: what its service counted.
    pub async fn answer_heartbeat(
        &mut self,
        seq: u64,
        clients: u64,
        metrics: WorkerMetrics,
    ) -> Result<(), WorkerError> {
        let report = Box::new(self.report(clients, metrics));
        self.send(&ToMaster::HeartbeatAck { seq, report }).await
    }

    fn report(&self, clients: u64, metrics: WorkerMetrics) -> WorkerReport {
        let (heap_used, heap_total) = memory::heap();
        let rss = memory::rss_of(std::process::id()).unwrap_or(0);
        let rss = memory::trim_if_idle_heap(rss, heap_used).unwrap_or(rss);
        WorkerReport {
            rss,
            heap_used,
            heap_total,
            clients,
            loop_lag_us: self.probe.take_max_us(),
            metrics,
        }
    }
}
