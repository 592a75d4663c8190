//! What a worker does with each request.

use slog::{info, warn};
use sozu_proto::request::RequestType as R;
use sozu_proto::response_content::ContentType;
use sozu_proto::{ClusterHashes, ClusterInformations, ResponseContent, WorkerRequest, WorkerResponse};

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
            R::QueryMetrics(_) => (ok(Some(ContentType::WorkerMetrics(self.proxy.metrics()))), Outcome::Continue),
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
            _ => match self.state.dispatch(&request.content) {
                Ok(_) => (ok(None), Outcome::Continue),
                Err(e) => {
                    warn!(self.log, "worker {}: {} refused: {e}", self.id, sozu_proto::verb_name(verb));
                    (WorkerResponse::failure(id, e.to_string()), Outcome::Continue)
                }
            },
        }
    }
}
