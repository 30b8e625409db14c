//! A Redis server of the test's own, on a free port, so that it can be stopped and restarted
//! without disturbing other tests (the machine's shared Redis is never touched). Killed when
//! dropped.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::Signal;

/// What the server keeps over a restart.
#[derive(Clone, Copy)]
pub enum Persistence {
    /// Nothing.
    None,
    /// An append-only file, written on every command and at shutdown: the channels' streams
    /// survive a restart, as a Redis holding realtime history should be run.
    AppendOnly,
}

pub struct PrivateRedis {
    dir: tempfile::TempDir,
    pub port: u16,
    persistence: Persistence,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts it and waits until it listens.
    pub fn start(persistence: Persistence) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = PrivateRedis {
            dir: tempfile::tempdir().expect("temp dir"),
            port,
            persistence,
            child: None,
        };
        redis.up();
        redis
    }

    /// Starts the server again (after [`PrivateRedis::down`]) and waits until it listens.
    pub fn up(&mut self) {
        let appendonly = match self.persistence {
            Persistence::None => ["--appendonly", "no", "--appendfsync", "no"],
            Persistence::AppendOnly => ["--appendonly", "yes", "--appendfsync", "always"],
        };
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", ""])
            .args(appendonly)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        super::wait_for("the private Redis to listen", || {
            TcpStream::connect(addr).ok()
        });
    }

    /// Stops the server (SIGTERM: Redis writes its append-only file on the way out) and waits
    /// for its exit.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::signal_pid(child.id() as i32, Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.down();
        self.up();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
