//! The accept thread: blocking `accept()` on the listen socket all workers share.
//!
//! Why a thread and not the event loop: with epoll every worker is woken for each connection and
//! the most recently active one tends to win (LIFO), so one process takes most of the load.
//! Threads blocked in `accept()` itself wait in a FIFO queue in the kernel, which hands
//! connections round-robin across the workers. Because the queue belongs to the one shared socket,
//! a worker that stops accepting (drain) loses nothing: queued connections go to the others.
//!
//! The thread wakes every [`ACCEPT_POLL`] (`SO_RCVTIMEO` on the listen socket) to see whether it
//! was told to stop, and it hands each connection to the event loop through a small bounded
//! channel: a worker whose loop is saturated stops accepting and leaves work to its siblings.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

/// How long one `accept()` may block before the thread checks its stop flag; bounds how late a
/// drain takes effect.
pub const ACCEPT_POLL: Duration = Duration::from_millis(100);

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

    /// Stops accepting; returns at once. The receiver ends within [`ACCEPT_POLL`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
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
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                if tx.blocking_send(stream).is_err() {
                    return; // the event loop is gone
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // EMFILE, ENOBUFS, ECONNABORTED...: log, breathe, go on; the socket is still good.
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}
