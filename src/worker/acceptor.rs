//! The accept thread: blocking `accept()` on the listen socket all workers share.
//!
//! Why a thread and not the event loop: with epoll every worker is woken for each connection and
//! the most recently active one tends to win (LIFO), so one process takes most of the load.
//! Threads blocked in `accept()` itself wait in a FIFO queue in the kernel, which hands
//! connections round-robin across the workers. Because the queue belongs to the one shared socket,
//! a worker that stops accepting (drain) loses nothing: queued connections go to the others.
//!
//! To stop it, [`Acceptor::stop`] sets a flag and sends the thread `SIGUSR2`: with `SO_RCVTIMEO`
//! set on the socket, a signal handler makes a blocked `accept()` return `EINTR` (it is never
//! restarted), so a drain takes effect at once. The timeout ([`ACCEPT_POLL`]) is only the
//! backstop. The thread hands each connection to the event loop through a small bounded channel:
//! a worker whose loop is saturated stops accepting and leaves work to its siblings.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

/// How long one `accept()` may block before the thread checks its stop flag, should the stop
/// signal be missed.
pub const ACCEPT_POLL: Duration = Duration::from_millis(250);

/// Connections accepted but not yet picked up by the event loop.
const HANDOFF_QUEUE: usize = 32;

pub struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Starts accepting on `listener`; connections arrive on the returned receiver, which ends
    /// once the thread has stopped (so nothing accepted is ever dropped unseen).
    pub fn start(listener: TcpListener) -> io::Result<(Acceptor, mpsc::Receiver<TcpStream>)> {
        nix::sys::socket::setsockopt(
            &listener.as_fd(),
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(0, ACCEPT_POLL.as_micros() as _),
        )
        .map_err(io::Error::from)?;
        let (tx, rx) = mpsc::channel(HANDOFF_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        // The handler only sets the flag (async-signal-safe); its real effect is the EINTR.
        signal_hook::flag::register(signal_hook::consts::SIGUSR2, stop.clone())?;
        let thread = std::thread::Builder::new().name("acceptor".into()).spawn({
            let stop = stop.clone();
            move || accept_loop(&listener, &tx, &stop)
        })?;
        Ok((
            Acceptor {
                stop,
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// Stops accepting; returns at once. The receiver ends as soon as the thread has seen it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = &self.thread {
            // SAFETY: the thread is not joined yet (that happens only in drop), so its pthread_t
            // is valid; SIGUSR2 has a handler (registered in start), so it cannot kill us.
            unsafe { libc::pthread_kill(thread.as_pthread_t(), libc::SIGUSR2) };
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, tx: &mpsc::Sender<TcpStream>, stop: &AtomicBool) {
    use nix::errno::Errno;
    use nix::sys::socket::{SockFlag, accept4};
    while !stop.load(Ordering::SeqCst) {
        // Not `TcpListener::accept`: std retries on EINTR, which would swallow the stop signal.
        match accept4(listener.as_fd(), SockFlag::SOCK_CLOEXEC) {
            Ok(fd) => {
                if tx.blocking_send(TcpStream::from(fd)).is_err() {
                    return; // the event loop is gone
                }
            }
            Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNABORTED) => {}
            Err(e) => {
                // EMFILE, ENOBUFS...: log, breathe, go on; the socket is still good.
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}
