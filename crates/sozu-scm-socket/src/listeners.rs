//! The set of listener sockets handed between processes.

use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Kind of a listener, in manifest order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListenerKind {
    /// Plain HTTP.
    Http,
    /// HTTPS (`tls` in the manifest).
    Tls,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl ListenerKind {
    /// All kinds, in the order their fds travel.
    pub const ALL: [ListenerKind; 4] = [Self::Http, Self::Tls, Self::Tcp, Self::Udp];
}

/// Listener sockets by kind, each with the address it is bound to. Owns its fds:
/// dropping it closes them.
#[derive(Debug, Default)]
pub struct Listeners {
    /// HTTP listeners.
    pub http: Vec<(SocketAddr, OwnedFd)>,
    /// HTTPS listeners.
    pub tls: Vec<(SocketAddr, OwnedFd)>,
    /// TCP listeners.
    pub tcp: Vec<(SocketAddr, OwnedFd)>,
    /// UDP sockets.
    pub udp: Vec<(SocketAddr, OwnedFd)>,
}

impl Listeners {
    /// The listeners of one kind.
    pub fn of(&self, kind: ListenerKind) -> &[(SocketAddr, OwnedFd)] {
        match kind {
            ListenerKind::Http => &self.http,
            ListenerKind::Tls => &self.tls,
            ListenerKind::Tcp => &self.tcp,
            ListenerKind::Udp => &self.udp,
        }
    }

    /// The listeners of one kind, mutable.
    pub fn of_mut(&mut self, kind: ListenerKind) -> &mut Vec<(SocketAddr, OwnedFd)> {
        match kind {
            ListenerKind::Http => &mut self.http,
            ListenerKind::Tls => &mut self.tls,
            ListenerKind::Tcp => &mut self.tcp,
            ListenerKind::Udp => &mut self.udp,
        }
    }

    /// Total number of sockets.
    pub fn len(&self) -> usize {
        self.http.len() + self.tls.len() + self.tcp.len() + self.udp.len()
    }

    /// Whether there is no socket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns the socket of `kind` bound to `addr`.
    pub fn take(&mut self, kind: ListenerKind, addr: SocketAddr) -> Option<OwnedFd> {
        let list = self.of_mut(kind);
        let index = list.iter().position(|(a, _)| *a == addr)?;
        Some(list.remove(index).1)
    }

    /// Every socket in manifest order.
    pub fn iter(&self) -> impl Iterator<Item = (ListenerKind, SocketAddr, BorrowedFd<'_>)> {
        ListenerKind::ALL.into_iter().flat_map(move |k| self.of(k).iter().map(move |(a, fd)| (k, *a, fd.as_fd())))
    }

    /// Moves every socket of `other` into `self`.
    pub fn extend(&mut self, other: Listeners) {
        self.http.extend(other.http);
        self.tls.extend(other.tls);
        self.tcp.extend(other.tcp);
        self.udp.extend(other.udp);
    }
}
