//! What a worker does with each request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use slog::{info, warn};
use sozu_proto::request::RequestType as R;
use sozu_proto::response_content::ContentType;
use sozu_proto::{
    ClusterHashes, ClusterInformations, Request, ResponseContent, StagedLoadStep, WorkerRequest, WorkerResponse,
};
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
    pub fn handle(&mut self, mut request: WorkerRequest) -> (WorkerResponse, Outcome) {
        if matches!(request.content.request_type, Some(R::StagedRecords(_)))
            && let Some(R::StagedRecords(records)) = request.content.request_type.take()
        {
            return (self.stage_records(request.id, records.records), Outcome::Continue);
        }
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
                self.adopt_added_listener(verb);
                match self.staged.as_mut().unwrap_or(&mut self.state).dispatch(&request.content) {
                    Ok(_) => {
                        if matches!(verb, R::RemoveListener(_)) {
                            self.close_unused_listeners();
                        }
                        if matches!(verb, R::RemoveBackend(_) | R::RemoveCluster(_)) && self.staged.is_none() {
                            self.forget_missing_backends();
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

    /// Before a listener is added: its socket (see [`adopt_listener`](Self::adopt_listener)).
    fn adopt_added_listener(&mut self, verb: &R) {
        match verb {
            R::AddHttpListener(l) => self.adopt_listener(ListenerKind::Http, &l.address),
            R::AddTcpListener(l) => self.adopt_listener(ListenerKind::Tcp, &l.address),
            _ => {}
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

    /// Drops the load-balancing and health records of backends the state no longer has.
    fn forget_missing_backends(&mut self) {
        self.proxy.balancer.forget_missing(&self.state);
        self.http.balancer.forget_missing(&self.state);
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

    /// Records of a staged load, applied in order to the staged copy; the first that
    /// cannot be applied ends the request with a FAILURE naming it (the master then
    /// aborts the load, so what was applied before it is dropped with the copy).
    fn stage_records(&mut self, id: String, records: Vec<Request>) -> WorkerResponse {
        if self.staged.is_none() {
            return WorkerResponse::failure(id, "records of a staged load, and no staged load is open");
        }
        let count = records.len();
        let mut removed_listener = false;
        let mut outcome = Ok(());
        for (index, record) in records.into_iter().enumerate() {
            if let Some(verb) = &record.request_type {
                self.adopt_added_listener(verb);
                removed_listener |= matches!(verb, R::RemoveListener(_));
            }
            let name = sozu_proto::request_name(&record);
            let Some(staged) = self.staged.as_mut() else { break };
            if let Err(e) = staged.dispatch_owned(record) {
                outcome = Err(format!("record {} of {count} ({name}) refused: {e}", index + 1));
                break;
            }
        }
        if removed_listener {
            self.close_unused_listeners();
        }
        match outcome {
            Ok(()) => WorkerResponse::ok(id, None),
            Err(why) => {
                warn!(self.log, "worker {}: staged load: {why}", self.id);
                WorkerResponse::failure(id, why)
            }
        }
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
                self.forget_missing_backends();
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use sozu_proto::{Cluster, ResponseStatus, StagedLoad, StagedRecords};
    use sozu_scm_socket::{Listeners, ScmSocket};

    use super::*;
    use crate::{ProxyLimits, counters, http, pool, tcp};

    fn worker() -> (Worker, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let limits = ProxyLimits::default();
        let pool = pool::BufferPool::shared(limits.buffer_size, limits.max_buffers);
        let worker = Worker {
            id: 0,
            config: Default::default(),
            state: Default::default(),
            staged: None,
            draining: false,
            listeners: Listeners::default(),
            scm: ScmSocket::new(ours).unwrap(),
            log: slog::Logger::root(slog::Discard, slog::o!()),
            set_level: Box::new(|_| Ok(())),
            proxy: tcp::TcpProxy::new(limits, pool.clone()),
            http: http::HttpProxy::new(0, limits, pool.clone()),
            pool,
            reporting: counters::Reporting::default(),
        };
        (worker, theirs)
    }

    fn send(worker: &mut Worker, content: Request) -> WorkerResponse {
        worker.handle(WorkerRequest { id: "t".into(), content }).0
    }

    fn step(worker: &mut Worker, step: StagedLoadStep) -> WorkerResponse {
        send(worker, R::StagedLoad(StagedLoad { step: step as i32 }).into())
    }

    fn records(records: Vec<Request>) -> Request {
        R::StagedRecords(StagedRecords { records }).into()
    }

    fn cluster(id: &str) -> Request {
        R::AddCluster(Box::new(Cluster { cluster_id: id.into(), ..Default::default() })).into()
    }

    fn ok(answer: &WorkerResponse) -> bool {
        answer.status == ResponseStatus::Ok as i32
    }

    #[test]
    fn staged_records_apply_to_the_staged_copy_and_name_the_first_refused() {
        let (mut w, _scm) = worker();
        // outside a staged load: refused, nothing applied
        let answer = send(&mut w, records(vec![cluster("a")]));
        assert!(!ok(&answer) && answer.message.contains("no staged load"), "{}", answer.message);
        assert_eq!(w.state.cluster_count(), 0);

        assert!(ok(&step(&mut w, StagedLoadStep::StageBegin)));
        let bad = R::RemoveCluster("unknown".into()).into();
        let answer = send(&mut w, records(vec![cluster("a"), bad, cluster("b")]));
        assert!(!ok(&answer), "a refused record fails the request");
        assert!(answer.message.contains("record 2 of 3 (RemoveCluster)"), "{}", answer.message);
        assert_eq!(w.state.cluster_count(), 0, "the live state is untouched");
        assert!(ok(&step(&mut w, StagedLoadStep::StageAbort)));
        assert!(w.staged.is_none());

        assert!(ok(&step(&mut w, StagedLoadStep::StageBegin)));
        assert!(ok(&send(&mut w, records(vec![cluster("a"), cluster("b")]))));
        assert!(ok(&send(&mut w, records(vec![cluster("c")]))));
        assert_eq!(w.state.cluster_count(), 0, "nothing is live before the commit");
        assert!(ok(&step(&mut w, StagedLoadStep::StageCommit)));
        assert_eq!(w.state.cluster_count(), 3);
        assert!(w.staged.is_none());
    }
}
