//! The agent as a child process of this binary, started and ready before the runs, ended when
//! dropped (its stdin closes; it exits on that; killed by its pid if it has not after a while).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::broker::Broker;

pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    pub fn start(broker: &Broker, queue: &str) -> anyhow::Result<AgentProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("agent")
            .args(broker.args())
            .args(["--queue", queue])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the agent")?;
        let stdout = child.stdout.take().context("the agent's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the agent did not start (said {line:?})");
        }
        Ok(AgentProcess { child })
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
