//! Listener sockets added while running (`AddHttpListener` / `AddTcpListener` from a
//! client, a reload or a state load). The master binds the socket before the state takes
//! the request (a failure to bind changes nothing), keeps its copy, and hands a
//! duplicate to every running worker over its SCM socket before the request enters the
//! worker's channel, so the worker finds the socket when it applies the request.
//! Workers started later get every socket at boot. A removed listener's copy is closed
//! (each worker closes its own when it applies the removal).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

use slog::warn;
use sozu_proto::request::RequestType as R;
use sozu_proto::{ListenerType, Request, RunState};
use sozu_scm_socket::{ListenerKind, Listeners};

use super::server::Master;

/// The listener socket `request` adds: its kind and address.
pub(super) fn added(request: &Request) -> Option<(ListenerKind, SocketAddr)> {
    match &request.request_type {
        Some(R::AddHttpListener(c)) => Some((ListenerKind::Http, SocketAddr::try_from(&c.address).ok()?)),
        Some(R::AddTcpListener(c)) => Some((ListenerKind::Tcp, SocketAddr::try_from(&c.address).ok()?)),
        _ => None,
    }
}

/// The listener socket `request` removes.
pub(super) fn removed(request: &Request) -> Option<(ListenerKind, SocketAddr)> {
    let Some(R::RemoveListener(r)) = &request.request_type else { return None };
    let kind = match ListenerType::try_from(r.proxy) {
        Ok(ListenerType::Http) => ListenerKind::Http,
        Ok(ListenerType::Tcp) => ListenerKind::Tcp,
        _ => return None,
    };
    Some((kind, SocketAddr::try_from(&r.address).ok()?))
}

impl Master {
    /// Binds the socket `request` adds unless the master has one for that address:
    /// `Ok(Some(..))` when it bound one now (to share once the state took the request, or
    /// to unbind if it did not).
    pub(super) fn bind_added(&mut self, request: &Request) -> Result<Option<(ListenerKind, SocketAddr)>, String> {
        let Some((kind, addr)) = added(request) else { return Ok(None) };
        Ok(self.bind_listener(kind, addr)?.then_some((kind, addr)))
    }

    /// Binds a socket for `addr` unless the master has one: whether it bound one now.
    pub(super) fn bind_listener(&mut self, kind: ListenerKind, addr: SocketAddr) -> Result<bool, String> {
        if self.listeners.of(kind).iter().any(|(a, _)| *a == addr) {
            return Ok(false);
        }
        let socket = TcpListener::bind(addr).map_err(|e| format!("cannot bind listener {addr}: {e}"))?;
        socket.set_nonblocking(true).map_err(|e| format!("listener {addr}: {e}"))?;
        self.listeners.of_mut(kind).push((addr, OwnedFd::from(socket)));
        Ok(true)
    }

    /// Hands a duplicate of the master's socket for `addr` to every running worker.
    pub(super) fn share_listener(&self, kind: ListenerKind, addr: SocketAddr) {
        let Some((_, fd)) = self.listeners.of(kind).iter().find(|(a, _)| *a == addr) else { return };
        let mut one = Listeners::default();
        match fd.try_clone() {
            Ok(dup) => one.of_mut(kind).push((addr, dup)),
            Err(e) => {
                warn!(self.log, "listener {addr}: cannot duplicate its socket for the workers: {e}");
                return;
            }
        }
        for (id, w) in &self.workers {
            if w.run_state == RunState::Running
                && let Err(e) = w.scm.send_listeners(&one)
            {
                warn!(self.log, "worker {id}: cannot send it the socket of listener {addr}: {e}");
            }
        }
    }

    /// Closes the master's copy of the socket for `addr`.
    pub(super) fn unbind(&mut self, kind: ListenerKind, addr: SocketAddr) {
        drop(self.listeners.take(kind, addr));
    }
}
