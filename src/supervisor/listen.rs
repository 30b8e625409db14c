//! The listen socket: bound once by the master and shared by every worker.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use socket2::{Domain, Socket, Type};

use crate::config::Config;

/// Pending connections the kernel queues before any worker accepts them.
const BACKLOG: i32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("frontend.host={host} does not resolve to an address")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {addr} (frontend.host / frontend.port)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Binds `host:port`, with a large backlog, in blocking mode (workers accept in a thread).
pub fn bind(host: &str, port: u16) -> Result<TcpListener, ListenError> {
    let addr = (host, port)
        .to_socket_addrs()
        .and_then(|mut addrs| {
            addrs
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
        })
        .map_err(|source| ListenError::Resolve {
            host: host.to_owned(),
            source,
        })?;
    let bind = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        Ok(socket.into())
    };
    bind().map_err(|source| ListenError::Bind { addr, source })
}

/// The address `listener` is bound to (with `frontend.port=0`, the port the kernel chose).
pub fn local_addr(listener: &TcpListener, config: &Config) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], config.frontend.port)))
}
