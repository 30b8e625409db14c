//! Starting a worker: fork+exec of our own binary (`activestack-gateway worker ...`), never a bare
//! fork of the running master. The child gets the shared listen socket as fd 3 and its end of a
//! fresh socket pair as fd 4; everything else the master holds is close-on-exec.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::process::Stdio;

use nix::fcntl::{FcntlArg, fcntl};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use super::cluster::{Place, SlotId};
use crate::ipc::MAX_FRAME;
use crate::worker::{IPC_FD, LISTEN_FD};

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(
        "worker {slot} not started: its init message (the config it is handed) would be {len} \
         bytes, over the {MAX_FRAME}-byte frame limit of the master <-> worker channel; look for \
         a very large value in the config (frontend.session_secret?)"
    )]
    InitTooLarge { slot: Place, len: usize },
    #[error("worker {slot} not started: its init message cannot be encoded: {reason}")]
    InitEncode { slot: Place, reason: String },
    #[error("cannot create the socket pair for worker {slot}")]
    SocketPair {
        slot: Place,
        #[source]
        source: io::Error,
    },
    #[error("cannot duplicate the {fd_name} for worker {slot}")]
    DupFd {
        slot: Place,
        fd_name: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("cannot start worker {slot} from {exe}")]
    Exec {
        slot: Place,
        exe: String,
        #[source]
        source: io::Error,
    },
}

/// A started worker process and the master's end of its channel.
pub struct Spawned {
    pub child: Child,
    pub pid: u32,
    pub channel: UnixStream,
}

/// Starts `exe worker --slot N` (`--relay`, `--demo`, `--standby`) with the listen socket and a new
/// channel.
pub fn spawn_worker(
    exe: &Path,
    slot: Place,
    listener: &TcpListener,
) -> Result<Spawned, SpawnError> {
    let (ours, theirs) =
        StdUnixStream::pair().map_err(|source| SpawnError::SocketPair { slot, source })?;
    // Move both descriptors the child needs above the fixed numbers, so that the dup2s below
    // cannot overwrite one with the other. Both stay close-on-exec in the master.
    let listen_high = dup_above(listener.as_fd(), slot, "listen socket")?;
    let channel_high = dup_above(theirs.as_fd(), slot, "worker channel")?;
    let (listen_src, channel_src) = (listen_high.as_raw_fd(), channel_high.as_raw_fd());
    let master_pid = std::process::id() as libc::pid_t;

    let mut command = Command::new(exe);
    command.arg("worker");
    match slot {
        Place::Slot(SlotId::Gateway(index)) => command.arg("--slot").arg(index.to_string()),
        Place::Slot(SlotId::Relay) => command.arg("--relay"),
        Place::Slot(SlotId::Demo) => command.arg("--demo"),
        Place::Standby => command.arg("--standby"),
    };
    command
        .arg("--listen-fd")
        .arg(LISTEN_FD.to_string())
        .arg("--ipc-fd")
        .arg(IPC_FD.to_string())
        // systemd talks to the master only.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and only makes raw system calls
    // (no allocation, no locks, no logging), which is what pre_exec requires.
    unsafe {
        command.pre_exec(move || child_setup(listen_src, channel_src, master_pid));
    }
    let child = command.spawn().map_err(|source| SpawnError::Exec {
        slot,
        exe: exe.display().to_string(),
        source,
    })?;
    drop((listen_high, channel_high, theirs));
    let pid = child.id().unwrap_or(0);
    ours.set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(ours))
        .map(|channel| Spawned {
            child,
            pid,
            channel,
        })
        .map_err(|source| SpawnError::SocketPair { slot, source })
}

fn dup_above(
    fd: BorrowedFd<'_>,
    slot: Place,
    fd_name: &'static str,
) -> Result<OwnedFd, SpawnError> {
    let high = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(10)).map_err(|source| SpawnError::DupFd {
        slot,
        fd_name,
        source,
    })?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// In the child, between fork and exec: raw syscalls only.
fn child_setup(listen_src: RawFd, channel_src: RawFd, master_pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: plain system calls on descriptors that are open in this (child) process.
    unsafe {
        // Own process group: a terminal's Ctrl-C reaches the master only, which then drains.
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // Die with the master, even if it is SIGKILLed.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The master may have died before prctl: then our parent is already someone else.
        if libc::getppid() != master_pid {
            libc::_exit(1);
        }
        // dup2 onto the fixed numbers; the copies it makes are not close-on-exec.
        if libc::dup2(listen_src, LISTEN_FD) < 0 || libc::dup2(channel_src, IPC_FD) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
