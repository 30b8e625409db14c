//! Where the broker is and the vhost a suite runs in: created with `rabbitmqctl` at the start,
//! deleted at the end (also when the suite fails), so nothing is left on the shared RabbitMQ.

use std::process::Command;

use anyhow::{Context as _, bail};

#[derive(Debug, Clone, clap::Args)]
pub struct Broker {
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 5672)]
    pub port: u16,
    #[arg(long, default_value = "guest")]
    pub user: String,
    #[arg(long, default_value = "guest")]
    pub password: String,
    /// The vhost to run in (the suite makes one of its own and passes it down).
    #[arg(long, default_value = "/")]
    pub vhost: String,
}

impl Broker {
    pub fn lapin_uri(&self) -> String {
        let vhost = if self.vhost == "/" {
            "%2f".to_string()
        } else {
            self.vhost.clone()
        };
        format!(
            "amqp://{}:{}@{}:{}/{vhost}",
            self.user, self.password, self.host, self.port
        )
    }

    /// The arguments that put a child process of this binary on the same broker and vhost.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--host".into(),
            self.host.clone(),
            "--port".into(),
            self.port.to_string(),
            "--user".into(),
            self.user.clone(),
            "--password".into(),
            self.password.clone(),
            "--vhost".into(),
            self.vhost.clone(),
        ]
    }
}

pub fn rabbitmqctl(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .context("running rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A vhost of our own, deleted when dropped.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn create(name: &str, user: &str) -> anyhow::Result<Vhost> {
        rabbitmqctl(&["add_vhost", name])?;
        let vhost = Vhost { name: name.into() };
        rabbitmqctl(&["set_permissions", "-p", name, user, ".*", ".*", ".*"])?;
        Ok(vhost)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.name]) {
            eprintln!("cannot delete vhost {}: {e:#}", self.name);
        }
    }
}
