//! The listening sockets a proxy accepts on: duplicates of the master's (received by
//! SCM), registered while the state wants them and deregistered otherwise. Shared by the
//! TCP and HTTP proxies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

/// The listeners a proxy has registered, by token.
pub(crate) type Registered = HashMap<Token, (SocketAddr, TcpListener)>;

/// Registers listener `i` of `fds` (token `base + i`) when `wanted(address)`, and
/// deregisters it when not.
pub(crate) fn sync(
    registry: &Registry,
    registered: &mut Registered,
    fds: &[(SocketAddr, OwnedFd)],
    base: usize,
    wanted: impl Fn(SocketAddr) -> bool,
) {
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
