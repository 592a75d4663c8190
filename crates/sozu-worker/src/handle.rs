//! What a worker does with each request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use slog::{info, warn};
use sozu_proto::request::RequestType as R;
use sozu_proto::response_content::ContentType;
use sozu_proto::{ClusterHashes, ClusterInformations, ResponseContent, StagedLoadStep, WorkerRequest, WorkerResponse};
use sozu_scm_socket::ListenerKind;

use crate::Worker;

/// How long a worker waits for the socket of a listener added while running (the
/// master sends it before the request, so it is normally there already).
const ADOPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the worker goes on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Keep running.
    Continue,
    /// Exit once the answer is written.
    Stop,
}

impl Worker {
    /// Applies one request and builds its answer.
    pub fn handle(&mut self, request: WorkerRequest) -> (WorkerResponse, Outcome) {
        let id = request.id;
        let Some(verb) = &request.content.request_type else {
            return (WorkerResponse::failure(id, "empty or unknown request"), Outcome::Continue);
        };
        let ok = |content: Option<ContentType>| WorkerResponse::ok(id.clone(), content.map(ResponseContent::from));
        match verb {
            R::Status(_) if self.draining => {
                let message = format!("draining: {} connections", self.sessions());
                (WorkerResponse { message, ..ok(None) }, Outcome::Continue)
            }
            R::Status(_) => (ok(None), Outcome::Continue),
            // SoftStop is handled by the event loop: it waits for connections to drain
            R::HardStop(_) => {
                info!(self.log, "worker {} stopping on {}", self.id, sozu_proto::verb_name(verb));
                (ok(None), Outcome::Stop)
            }
            R::QueryClustersHashes(_) => {
                let map = self.state.cluster_hashes();
                (ok(Some(ContentType::ClusterHashes(ClusterHashes { map }))), Outcome::Continue)
            }
            R::QueryClusterById(cluster_id) => {
                let vec = self.state.cluster_information(cluster_id).into_iter().collect();
                (ok(Some(ContentType::Clusters(ClusterInformations { vec }))), Outcome::Continue)
            }
            R::QueryClustersByDomain(q) => {
                let vec = self.state.clusters_by_domain(&q.hostname, q.path.as_deref());
                (ok(Some(ContentType::Clusters(ClusterInformations { vec }))), Outcome::Continue)
            }
            R::QueryMetrics(_) => (ok(Some(ContentType::WorkerMetrics(self.metrics()))), Outcome::Continue),
            R::ConfigureMetrics(what) => match sozu_proto::MetricsConfiguration::try_from(*what) {
                Ok(what) => {
                    self.configure_metrics(what);
                    (ok(None), Outcome::Continue)
                }
                Err(_) => {
                    (WorkerResponse::failure(id, format!("unknown metrics configuration {what}")), Outcome::Continue)
                }
            },
            R::ReturnListenSockets(_) => match self.scm.send_listeners(&self.listeners) {
                Ok(()) => (ok(None), Outcome::Continue),
                Err(e) => (WorkerResponse::failure(id, format!("cannot return listeners: {e}")), Outcome::Continue),
            },
            R::Logging(filter) => match (self.set_level)(filter) {
                Ok(()) => {
                    info!(self.log, "worker {} log level set to {filter}", self.id);
                    (ok(None), Outcome::Continue)
                }
                Err(e) => (WorkerResponse::failure(id, e), Outcome::Continue),
            },
            R::StagedLoad(staged) => {
                let answer = self.stage(id, staged.step);
                self.close_unused_listeners();
                (answer, Outcome::Continue)
            }
            _ => {
                match verb {
                    R::AddHttpListener(l) => self.adopt_listener(ListenerKind::Http, &l.address),
                    R::AddTcpListener(l) => self.adopt_listener(ListenerKind::Tcp, &l.address),
                    _ => {}
                }
                match self.staged.as_mut().unwrap_or(&mut self.state).dispatch(&request.content) {
                    Ok(_) => {
                        if matches!(verb, R::RemoveListener(_)) {
                            self.close_unused_listeners();
                        }
                        (ok(None), Outcome::Continue)
                    }
                    Err(e) => {
                        warn!(self.log, "worker {}: {} refused: {e}", self.id, sozu_proto::verb_name(verb));
                        (WorkerResponse::failure(id, e.to_string()), Outcome::Continue)
                    }
                }
            }
        }
    }

    /// The socket of a listener added while running: the master sent it on the SCM
    /// socket just before the request (see ARCHITECTURE.md, "Who owns listener fds").
    /// Waits for it at most `ADOPT_TIMEOUT`, and only when this worker has none for
    /// that address.
    fn adopt_listener(&mut self, kind: ListenerKind, address: &sozu_proto::SocketAddress) {
        let Ok(addr) = SocketAddr::try_from(address) else { return };
        let deadline = Instant::now() + ADOPT_TIMEOUT;
        while !self.listeners.of(kind).iter().any(|(a, _)| *a == addr) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(self.log, "worker {}: no socket came from the master for listener {addr}", self.id);
                return;
            }
            match self.scm.recv_listeners(Some(left)) {
                Ok(received) => {
                    // a newer socket for an address replaces the old one
                    for (k, a, _) in received.iter() {
                        drop(self.listeners.take(k, a));
                    }
                    self.listeners.extend(received);
                }
                Err(e) => {
                    warn!(self.log, "worker {}: receiving the socket of listener {addr}: {e}", self.id);
                    return;
                }
            }
        }
    }

    /// Closes the sockets of listeners neither the state nor a staged load has (after a
    /// removal or an aborted load), so that their port is free again once every process
    /// closed its copy.
    fn close_unused_listeners(&mut self) {
        let (state, staged) = (&self.state, self.staged.as_ref());
        let used = |a: &SocketAddr| state.has_listener(*a) || staged.is_some_and(|s| s.has_listener(*a));
        self.listeners.http.retain(|(a, _)| used(a));
        self.listeners.tcp.retain(|(a, _)| used(a));
    }

    /// One step of a staged load (see ARCHITECTURE.md, "Staged LoadState").
    fn stage(&mut self, id: String, step: i32) -> WorkerResponse {
        match (StagedLoadStep::try_from(step), self.staged.is_some()) {
            (Ok(StagedLoadStep::StageBegin), false) => {
                self.staged = Some(self.state.clone());
                WorkerResponse::ok(id, None)
            }
            (Ok(StagedLoadStep::StageBegin), true) => WorkerResponse::failure(id, "a staged load is already open"),
            (Ok(StagedLoadStep::StageCommit), true) => {
                if let Some(staged) = self.staged.take() {
                    self.state = staged;
                }
                info!(self.log, "worker {}: staged load committed", self.id);
                WorkerResponse::ok(id, None)
            }
            (Ok(StagedLoadStep::StageAbort), _) => {
                if self.staged.take().is_some() {
                    info!(self.log, "worker {}: staged load aborted", self.id);
                }
                WorkerResponse::ok(id, None)
            }
            (Ok(StagedLoadStep::StageCommit), false) => WorkerResponse::failure(id, "no staged load to commit"),
            (Err(_), _) => WorkerResponse::failure(id, format!("unknown staged load step {step}")),
        }
    }
}
