//! The listening sockets a proxy accepts on: duplicates of the master's (received by
//! SCM), registered while the state wants them and deregistered otherwise. Shared by the
//! TCP and HTTP proxies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// The listeners a proxy has registered, by token.
pub(crate) type Registered = HashMap<Token, (SocketAddr, TcpListener)>;

/// Registers listener `i` of `fds` (token `base + i`) when `wanted(address)`, and
/// deregisters it when not. A registered token whose place in `fds` now holds another
/// address (a socket was closed before it) is deregistered first, then registered again
/// under its new token.
pub(crate) fn sync(
    registry: &Registry,
    registered: &mut Registered,
    fds: &[(SocketAddr, OwnedFd)],
    base: usize,
    wanted: impl Fn(SocketAddr) -> bool,
) {
    registered.retain(|token, (addr, listener)| {
        let current = token.0.checked_sub(base).and_then(|i| fds.get(i)).is_some_and(|(a, _)| a == addr);
        if !current {
            let _ = registry.deregister(listener);
        }
        current
    });
    for (index, (addr, fd)) in fds.iter().enumerate() {
        let token = Token(base + index);
        match (wanted(*addr), registered.contains_key(&token)) {
            (true, false) => {
                let Ok(dup) = fd.try_clone() else { continue };
                let std = std::net::TcpListener::from(dup);
                if std.set_nonblocking(true).is_err() {
                    continue;
                }
                let mut listener = TcpListener::from_std(std);
                if registry.register(&mut listener, token, Interest::READABLE).is_ok() {
                    registered.insert(token, (*addr, listener));
                }
            }
            (false, true) => {
                if let Some((_, mut l)) = registered.remove(&token) {
                    let _ = registry.deregister(&mut l);
                }
            }
            _ => {}
        }
    }
}

/// The next connection queued on listener `token`, with the listener's address and the
/// client's; `None` when none is left now (or the listener is gone). A client gone before
/// it was accepted is skipped. Any other error (out of fds or memory) leaves the queue
/// for later and puts `token` in `retry`: an edge-triggered listener signals nothing
/// more for what is already queued, so the proxy tries again at its next tick.
pub(crate) fn accept(
    registered: &Registered,
    token: Token,
    retry: &mut Vec<Token>,
) -> Option<(SocketAddr, TcpStream, SocketAddr)> {
    use std::io::ErrorKind;
    let (addr, listener) = registered.get(&token)?;
    loop {
        match listener.accept() {
            Ok((stream, client)) => return Some((*addr, stream, client)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
                ) => {}
            Err(_) => {
                if !retry.contains(&token) {
                    retry.push(token);
                }
                return None;
            }
        }
    }
}
