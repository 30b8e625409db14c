//! A RabbitMQ virtual host of one test's own on the shared broker, made with `rabbitmqctl` and
//! deleted (with every queue in it) when dropped.
//!
//! Why: the gateway publishes to fixed agent queue names (`connect`, `testCall`, ...). On the
//! shared vhost `/`, the echo agents of other test processes (tests/common/agent.rs) consume
//! those queues too, and any of them may take a request meant for the Percero double and answer
//! it differently. In a vhost of its own, the double is the only consumer: what it logs is
//! everything the gateway sent, in the order it arrived.

use std::process::Command;

/// Vhosts made here start with this, then the pid of the test process that made them.
const PREFIX: &str = "percero-double-";

pub struct Vhost {
    pub name: String,
}

impl Vhost {
    /// Makes a new vhost that the guest user may use fully. Also deletes the vhosts of test
    /// processes that are gone (killed before their `Drop` ran).
    pub fn create() -> Vhost {
        remove_orphans();
        let name = format!("{PREFIX}{}-{:08x}", std::process::id(), fastrand::u32(..));
        rabbitmqctl(&["add_vhost", &name]).unwrap_or_else(|e| panic!("{e}"));
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"])
            .unwrap_or_else(|e| panic!("{e}"));
        Vhost { name }
    }

    /// Turns RabbitMQ's firehose on in this vhost: every publish is copied, as the broker takes
    /// it, to the `amq.rabbitmq.trace` exchange (routing key `publish.<exchange>`).
    pub fn trace_on(&self) {
        rabbitmqctl(&["trace_on", "-p", &self.name]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The vhost as an AMQP URI path segment.
    pub fn uri_path(&self) -> String {
        // Only ASCII letters, digits and '-' in the name: nothing to escape.
        self.name.clone()
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.name]) {
            eprintln!("percero double: {e}");
        }
    }
}

fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("rabbitmqctl {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rabbitmqctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes the vhosts this module made in processes that no longer run.
fn remove_orphans() {
    let Ok(listing) = rabbitmqctl(&["list_vhosts", "-q", "name"]) else {
        return;
    };
    for name in listing.lines().map(str::trim) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = rabbitmqctl(&["delete_vhost", name]);
        }
    }
}
