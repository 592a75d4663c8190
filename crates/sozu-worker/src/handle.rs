//! What a worker does with each request.

use slog::{info, warn};
use sozu_proto::request::RequestType as R;
use sozu_proto::response_content::ContentType;
use sozu_proto::{ClusterHashes, ClusterInformations, ResponseContent, StagedLoadStep, WorkerRequest, WorkerResponse};

use crate::Worker;

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
            R::QueryMetrics(_) => (ok(Some(ContentType::WorkerMetrics(self.metrics()))), Outcome::Continue),
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
            R::StagedLoad(staged) => (self.stage(id, staged.step), Outcome::Continue),
            _ => match self.staged.as_mut().unwrap_or(&mut self.state).dispatch(&request.content) {
                Ok(_) => (ok(None), Outcome::Continue),
                Err(e) => {
                    warn!(self.log, "worker {}: {} refused: {e}", self.id, sozu_proto::verb_name(verb));
                    (WorkerResponse::failure(id, e.to_string()), Outcome::Continue)
                }
            },
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
