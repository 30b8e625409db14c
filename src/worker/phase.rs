//! Where a worker is in its life, and what a message from the master or a signal means in each
//! phase: decided here, without I/O, carried out by the worker's loop ([`super::run`]).

use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGQUIT};
use tokio::time::Instant;

use crate::config::LogLevel;
use crate::gateway::Audience;
use crate::ipc::ToWorker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Starting its work (the gateway: connecting to RabbitMQ); heartbeats are answered.
    Starting,
    /// The standby: initialised, not accepting, waiting to be given a slot.
    Standby,
    /// Serving (accepting connections; the relay: relaying).
    Serving,
    /// Told to finish: what is still open at `deadline` is closed.
    Draining { deadline: Instant },
}

/// Why a worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The master's channel ended: exit at once.
    MasterGone,
    /// SIGQUIT: exit at once.
    Quit,
    /// Told to drain (by the master or a stop signal) while there is nothing to drain: not
    /// serving yet, or the standby.
    NothingToDrain,
}

/// What to do about one message or signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Reaction {
    Heartbeat(u64),
    LogLevel(LogLevel),
    ResendInterval(u64),
    Push {
        id: u64,
        audience: Audience,
        data: serde_json::Value,
    },
    /// Answer push `id` with this error: there is nothing here to push with.
    RefusePush {
        id: u64,
        why: &'static str,
    },
    /// The standby takes gateway slot `slot`: start accepting.
    Activate(usize),
    /// The master's answer to the scrape `id` asked for.
    MetricsText {
        id: u64,
        text: Option<String>,
    },
    /// Start draining, with this much time; `announce`: tell the master (it asked).
    Drain {
        timeout: Duration,
        announce: bool,
    },
    Stop(Stop),
    /// Nothing to do; logged as a warning.
    Ignore(&'static str),
    /// Nothing to do; logged for debugging only.
    Pass(&'static str),
}

/// What `msg` from the master means in `phase`; `None`: the master's channel has ended.
pub fn on_message(phase: Phase, msg: Option<ToWorker>) -> Reaction {
    let Some(msg) = msg else {
        return Reaction::Stop(Stop::MasterGone);
    };
    let serving = matches!(phase, Phase::Serving | Phase::Draining { .. });
    match msg {
        ToWorker::Heartbeat { seq } => Reaction::Heartbeat(seq),
        ToWorker::LogLevel { level } => Reaction::LogLevel(level),
        ToWorker::ResendInterval { ms } => Reaction::ResendInterval(ms),
        ToWorker::Push { id, audience, data } if serving => Reaction::Push { id, audience, data },
        // The master hands pushes to serving workers only; say no rather than let it wait.
        ToWorker::Push { id, .. } => Reaction::RefusePush {
            id,
            why: "a standby worker does not push",
        },
        ToWorker::Activate { slot } if phase == Phase::Standby => Reaction::Activate(slot),
        ToWorker::Activate { .. } if serving => {
            Reaction::Ignore("ignoring activate: this worker is serving already")
        }
        ToWorker::Activate { .. } => Reaction::Ignore("ignoring activate: not the standby"),
        ToWorker::Drain { timeout_ms } if serving => Reaction::Drain {
            timeout: Duration::from_millis(timeout_ms),
            announce: true,
        },
        ToWorker::Drain { .. } => Reaction::Stop(Stop::NothingToDrain),
        ToWorker::MetricsText { id, text } => Reaction::MetricsText { id, text },
        ToWorker::Init { .. } => Reaction::Ignore("ignoring a second init from the master"),
    }
}

/// What `signal` means in `phase`. Reloads are the master's business (a hangup must not kill
/// a worker); SIGTERM and SIGINT drain as the master's `drain` would, for `drain_timeout`.
pub fn on_signal(phase: Phase, signal: i32, drain_timeout: Duration) -> Reaction {
    match signal {
        SIGHUP => Reaction::Pass("SIGHUP ignored: send it to the master"),
        SIGQUIT => Reaction::Stop(Stop::Quit),
        _ => match phase {
            Phase::Starting | Phase::Standby => Reaction::Stop(Stop::NothingToDrain),
            Phase::Serving => Reaction::Drain {
                timeout: drain_timeout,
                announce: false,
            },
            Phase::Draining { .. } => Reaction::Pass("draining already"),
        },
    }
}

#[cfg(test)]
mod tests {
    use signal_hook::consts::SIGTERM;

    use super::*;

    fn draining() -> Phase {
        Phase::Draining {
            deadline: Instant::now(),
        }
    }

    fn phases() -> [Phase; 4] {
        [Phase::Starting, Phase::Standby, Phase::Serving, draining()]
    }

    #[test]
    fn every_phase_answers_heartbeats_and_takes_log_levels() {
        for phase in phases() {
            assert_eq!(
                on_message(phase, Some(ToWorker::Heartbeat { seq: 3 })),
                Reaction::Heartbeat(3)
            );
            assert_eq!(
                on_message(
                    phase,
                    Some(ToWorker::LogLevel {
                        level: LogLevel::Debug
                    })
                ),
                Reaction::LogLevel(LogLevel::Debug)
            );
            assert_eq!(on_message(phase, None), Reaction::Stop(Stop::MasterGone));
            assert_eq!(
                on_signal(phase, SIGQUIT, Duration::ZERO),
                Reaction::Stop(Stop::Quit)
            );
            assert!(matches!(
                on_signal(phase, SIGHUP, Duration::ZERO),
                Reaction::Pass(_)
            ));
        }
    }

    #[test]
    fn only_the_standby_is_activated() {
        let activate = || Some(ToWorker::Activate { slot: 1 });
        assert_eq!(
            on_message(Phase::Standby, activate()),
            Reaction::Activate(1)
        );
        for phase in [Phase::Starting, Phase::Serving, draining()] {
            assert!(matches!(on_message(phase, activate()), Reaction::Ignore(_)));
        }
    }

    #[test]
    fn a_drain_drains_what_serves_and_stops_what_does_not() {
        let drain = || Some(ToWorker::Drain { timeout_ms: 250 });
        let draining = Reaction::Drain {
            timeout: Duration::from_millis(250),
            announce: true,
        };
        assert_eq!(on_message(Phase::Serving, drain()), draining);
        assert_eq!(on_message(self::draining(), drain()), draining);
        for phase in [Phase::Starting, Phase::Standby] {
            assert_eq!(
                on_message(phase, drain()),
                Reaction::Stop(Stop::NothingToDrain)
            );
            assert_eq!(
                on_signal(phase, SIGTERM, Duration::ZERO),
                Reaction::Stop(Stop::NothingToDrain)
            );
        }
        assert_eq!(
            on_signal(Phase::Serving, SIGTERM, Duration::from_secs(2)),
            Reaction::Drain {
                timeout: Duration::from_secs(2),
                announce: false
            }
        );
        assert!(matches!(
            on_signal(self::draining(), SIGTERM, Duration::ZERO),
            Reaction::Pass(_)
        ));
    }

    #[test]
    fn pushes_go_out_only_from_serving_workers() {
        let push = || {
            Some(ToWorker::Push {
                id: 9,
                audience: Audience::All,
                data: serde_json::json!({}),
            })
        };
        assert!(matches!(
            on_message(Phase::Serving, push()),
            Reaction::Push { id: 9, .. }
        ));
        assert!(matches!(
            on_message(Phase::Standby, push()),
            Reaction::RefusePush { id: 9, .. }
        ));
    }
}
