//! Configuration reload (`ReloadConfiguration`, `sozu reload`, SIGHUP): re-read the
//! file, validate it, diff its listeners and clusters against the current state, and
//! apply only the difference as one task. A file that fails changes nothing.

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use mio::Token;
use slog::{info, warn};
use sozu_config::{Config, Protocol};
use sozu_proto::request::RequestType as R;
use sozu_proto::{Request, Response};
use sozu_scm_socket::ListenerKind;
use sozu_state::ConfigState;
use ulid::Ulid;

use super::records::{Described, Pending, describe, request_sha};
use super::server::Master;
use super::tasks::TaskKind;

impl Master {
    /// Reloads `path` (empty: the file the master started with).
    pub(super) fn reload(&mut self, token: Option<Token>, path: &str) {
        let path = if path.is_empty() { self.config.config_path.clone() } else { PathBuf::from(path) };
        if self.loading.is_some() {
            // only SIGHUP gets here: client requests wait for the load to end
            warn!(self.log, "reload of {} refused: a state load is in progress; send SIGHUP again", path.display());
            if let Some(t) = token {
                self.reply(t, Response::failure("a state load is in progress; reload again when it ends"));
            }
            return;
        }
        let _ =
            crate::sd_notify::notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", crate::sd_notify::monotonic_usec()));
        match self.prepare_reload(&path) {
            Err(message) => {
                let _ = crate::sd_notify::notify("READY=1");
                warn!(self.log, "reload of {} refused: {message}", path.display());
                if let Some(t) = token {
                    self.reply(
                        t,
                        Response::failure(format!("reload of {} failed, nothing changed: {message}", path.display())),
                    );
                }
            }
            Ok((config, staged, diff, bound)) => {
                let summary = summarize(&diff);
                info!(self.log, "reloading {}: {summary}", path.display());
                for (protocol, addr, fd) in bound {
                    let kind = match protocol {
                        Protocol::Http => ListenerKind::Http,
                        Protocol::Tcp => ListenerKind::Tcp,
                    };
                    self.listeners.of_mut(kind).push((addr, fd));
                    // running workers get it before the diff that adds the listener
                    self.share_listener(kind, addr);
                }
                let kept: Vec<std::net::SocketAddr> = config.listeners.iter().map(|l| l.address).collect();
                self.listeners.http.retain(|(a, _)| kept.contains(a));
                self.listeners.tcp.retain(|(a, _)| kept.contains(a));
                *self.state = staged;
                self.state_changed();
                // settings that need a restart (socket, buffers, workers) keep their value
                self.config.listeners = config.listeners;
                self.config.clusters = config.clusters;
                let request: Request = R::ReloadConfiguration(path.display().to_string()).into();
                let d = Described {
                    verb: "configuration_reloaded",
                    target: format!("config:{} {summary}", path.display()),
                    cluster_id: None,
                    backend_id: None,
                    event: Some(sozu_proto::EventKind::ConfigurationReloaded),
                };
                let ulid = Ulid::new();
                let sha = request_sha(&request);
                let _ = self.write_attempt(token, ulid, &d, Ok(()), &sha);
                self.emit(sozu_proto::EventKind::ConfigurationReloaded, None);
                let pending = Pending { token, request: ulid, described: d, sha };
                let kind = TaskKind::Reload { summary };
                self.scatter(token, kind, &diff, None, Some(pending));
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn prepare_reload(
        &self,
        path: &std::path::Path,
    ) -> Result<(Config, ConfigState, Vec<Request>, Vec<(Protocol, std::net::SocketAddr, OwnedFd)>), String> {
        let config = Config::load(path).map_err(|e| e.to_string())?;
        let target = config.state().map_err(|e| e.to_string())?;
        let diff = self.state.diff(&target);
        let mut staged = self.state.clone();
        for r in &diff {
            staged.dispatch(r).map_err(|e| format!("applying {}: {e}", sozu_proto::request_name(r)))?;
        }
        let mut bound = Vec::new();
        for l in &config.listeners {
            let have = self.listeners.http.iter().chain(&self.listeners.tcp).any(|(a, _)| *a == l.address);
            if !have {
                let socket =
                    TcpListener::bind(l.address).map_err(|e| format!("cannot bind listener {}: {e}", l.address))?;
                socket.set_nonblocking(true).map_err(|e| e.to_string())?;
                bound.push((l.protocol, l.address, OwnedFd::from(socket)));
            }
        }
        Ok((config, staged, diff, bound))
    }
}

/// `added: …; changed: …; removed: …` from the diff's verbs.
fn summarize(diff: &[Request]) -> String {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for r in diff {
        let target = describe(r).map_or_else(|| sozu_proto::request_name(r).to_string(), |d| d.target);
        match &r.request_type {
            Some(
                R::RemoveCluster(_)
                | R::RemoveHttpFrontend(_)
                | R::RemoveTcpFrontend(_)
                | R::RemoveBackend(_)
                | R::RemoveListener(_)
                | R::RemoveCertificate(_),
            ) => removed.push(target),
            Some(R::DeactivateListener(_) | R::ActivateListener(_)) => {}
            _ => added.push(target),
        }
    }
    if added.is_empty() && removed.is_empty() {
        return "no change".into();
    }
    format!("added or changed: [{}]; removed: [{}]", added.join(", "), removed.join(", "))
}
