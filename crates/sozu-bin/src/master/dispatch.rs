//! What the master does with each client request.

use std::path::Path;

use audit::ErrorCode;
use mio::Token;
use slog::{info, warn};
use sozu_proto::request::RequestType as R;
use sozu_proto::response_content::ContentType;
use sozu_proto::{
    ClusterHashes, ClusterInformations, Event, EventKind, Request, RequestCounts, Response, ResponseStatus, WorkerInfo,
    WorkerInfos,
};
use sozu_state::resolve_path;
use ulid::Ulid;

use super::conn::Conn;
use super::records::{Pending, describe, request_sha};
use super::server::Master;
use super::tasks::TaskKind;

impl Master {
    /// Serves one request: answers at once, or starts a task that will.
    pub(super) fn handle_request(&mut self, token: Token, request: Request) {
        let name = sozu_proto::request_name(&request);
        *self.request_counts.entry(name.to_string()).or_insert(0) += 1;
        let Some(client) = self.clients.get(&token) else { return };
        if let Some(reason) = self.unauthorized(token) {
            warn!(self.log, "client {}: {name} refused: {reason}", client.client_id);
            self.audit_refusal(token, &request, &reason);
            self.reply(token, Response::failure(reason));
            return;
        }
        let Some(verb) = &request.request_type else {
            warn!(self.log, "client {}: empty request, or a verb this version does not know", client.client_id);
            self.reply(token, Response::failure("empty request: no verb, or a verb this version does not know"));
            return;
        };
        match verb {
            R::Status(_) => {
                self.scatter(Some(token), TaskKind::Status, &[request], None, None);
            }
            R::ListWorkers(_) => {
                let vec = self
                    .workers
                    .iter()
                    .map(|(id, w)| WorkerInfo { id: *id, pid: w.pid, run_state: w.run_state as i32 })
                    .collect();
                self.reply(
                    token,
                    Response::ok("List of workers", Some(ContentType::Workers(WorkerInfos { vec }).into())),
                );
            }
            R::ListFrontends(filters) => {
                let content = ContentType::FrontendList(self.state.listed_frontends(filters));
                self.reply(token, Response::ok("List of frontends", Some(content.into())));
            }
            R::ListListeners(_) => {
                let content = ContentType::ListenersList(self.state.listeners_list());
                self.reply(token, Response::ok("List of listeners", Some(content.into())));
            }
            R::CountRequests(_) => {
                let content = ContentType::RequestCounts(RequestCounts { map: self.request_counts.clone() });
                self.reply(token, Response::ok("Count of requests received, by verb", Some(content.into())));
            }
            R::SaveState(path) => {
                let path = path.clone();
                self.save_state(token, &request, &path);
            }
            R::LoadState(path) => {
                let path = path.clone();
                self.load_state(token, &request, &path);
            }
            R::SubscribeEvents(_) => {
                if let Some(c) = self.clients.get_mut(&token) {
                    c.subscribed = true;
                }
                if let Some(Conn::Json(_)) = self.clients.get(&token).map(|c| &c.conn) {
                    // dashboards subscribe with events.subscribe, which can replay
                    self.reply(token, Response::ok("subscribed", None));
                    return;
                }
                let d = super::records::Described {
                    verb: "events_subscribed",
                    target: format!("subscribe:client_id:{}", self.clients.get(&token).map_or(0, |c| c.client_id)),
                    cluster_id: None,
                    backend_id: None,
                    event: None,
                };
                let _ = self.write_attempt(Some(token), Ulid::new(), &d, Ok(()), &request_sha(&request));
                let event = Event { kind: EventKind::EventsSubscribed as i32, ..Default::default() };
                let response = Response {
                    status: ResponseStatus::Processing as i32,
                    message: "main".into(),
                    content: Some(ContentType::Event(event).into()),
                };
                self.reply(token, response);
            }
            R::SoftStop(_) | R::HardStop(_) => {
                let hard = matches!(verb, R::HardStop(_));
                if let Some(d) = describe(&request) {
                    let _ = self.write_attempt(Some(token), Ulid::new(), &d, Ok(()), &request_sha(&request));
                    self.emit(EventKind::SozuStopRequested, Some(&d));
                }
                self.reply(
                    token,
                    Response::processing(if hard { "Performing hard stop..." } else { "Performing soft stop..." }),
                );
                self.begin_stop(Some(token), hard);
            }
            R::UpgradeMain(_) => {
                if let Some(d) = describe(&request) {
                    let _ = self.write_attempt(Some(token), Ulid::new(), &d, Ok(()), &request_sha(&request));
                }
                self.upgrade_main(token);
            }
            R::UpgradeWorker(id) => {
                let id = *id;
                if let Some(d) = describe(&request) {
                    let _ = self.write_attempt(Some(token), Ulid::new(), &d, Ok(()), &request_sha(&request));
                }
                self.upgrade_worker(token, id);
            }
            R::ReloadConfiguration(path) => {
                let path = path.clone();
                self.reload(Some(token), &path);
            }
            R::QueryClusterById(id) => {
                let vec = self.state.cluster_information(id).into_iter().collect();
                let main = Some(ContentType::Clusters(ClusterInformations { vec }).into());
                self.scatter(Some(token), TaskKind::Query { main }, &[request], None, None);
            }
            R::QueryClustersByDomain(q) => {
                let vec = self.state.clusters_by_domain(&q.hostname, q.path.as_deref());
                let main = Some(ContentType::Clusters(ClusterInformations { vec }).into());
                self.scatter(Some(token), TaskKind::Query { main }, &[request], None, None);
            }
            R::QueryClustersHashes(_) => {
                let main = Some(ContentType::ClusterHashes(ClusterHashes { map: self.state.cluster_hashes() }).into());
                self.scatter(Some(token), TaskKind::Query { main }, &[request], None, None);
            }
            R::QueryMetrics(options) => {
                let kind = TaskKind::Metrics(Box::new(options.clone()));
                self.scatter(Some(token), kind, &[request], None, None);
            }
            R::Logging(filter) => match self.level.set(filter) {
                Ok(level) => {
                    info!(self.log, "log level set to {level}");
                    self.mutate(token, request);
                }
                Err(e) => {
                    warn!(self.log, "client {}: Logging refused: {e}", client.client_id);
                    if let Some(d) = describe(&request) {
                        let _ = self.write_attempt(
                            Some(token),
                            Ulid::new(),
                            &d,
                            Err((ErrorCode::InvalidInput, e.clone())),
                            &request_sha(&request),
                        );
                    }
                    self.reply(token, Response::failure(e));
                }
            },
            R::ConfigureMetrics(_)
            | R::AddCluster(_)
            | R::RemoveCluster(_)
            | R::AddHttpFrontend(_)
            | R::RemoveHttpFrontend(_)
            | R::AddTcpFrontend(_)
            | R::RemoveTcpFrontend(_)
            | R::AddBackend(_)
            | R::RemoveBackend(_)
            | R::AddHttpListener(_)
            | R::AddTcpListener(_)
            | R::UpdateHttpListener(_)
            | R::UpdateTcpListener(_)
            | R::RemoveListener(_)
            | R::ActivateListener(_)
            | R::DeactivateListener(_) => self.mutate(token, request),
            R::AddHttpsListener(_)
            | R::UpdateHttpsListener(_)
            | R::AddHttpsFrontend(_)
            | R::RemoveHttpsFrontend(_)
            | R::AddCertificate(_)
            | R::ReplaceCertificate(_)
            | R::RemoveCertificate(_)
            | R::QueryCertificatesFromTheState(_)
            | R::QueryCertificatesFromWorkers(_)
            | R::AddUdpListener(_)
            | R::UpdateUdpListener(_)
            | R::AddUdpFrontend(_)
            | R::RemoveUdpFrontend(_) => {
                self.refuse(token, format!("{name} is not supported yet (HTTPS, certificates and UDP)"));
            }
            R::StagedLoad(_) | R::StagedRecords(_) => self.refuse(
                token,
                format!("{name} is internal to sozu (sent by the master to its workers) and is refused from clients"),
            ),
            _ => self.refuse(token, format!("{name} is not supported by this version of sozu")),
        }
    }

    /// Answers FAILURE to a request refused for what it asks, and logs it.
    fn refuse(&mut self, token: Token, reason: String) {
        if let Some(client) = self.clients.get(&token) {
            warn!(self.log, "client {}: {reason}", client.client_id);
        }
        self.reply(token, Response::failure(reason));
    }

    /// Why the client's uid may not send commands, when `command_allowed_uids` is set
    /// and it is not listed (or unknown).
    pub(super) fn unauthorized(&self, token: Token) -> Option<String> {
        let allowed = self.config.command_allowed_uids.as_ref()?;
        let uid = self.clients.get(&token)?.identity.cred.uid;
        (!uid.is_some_and(|u| allowed.contains(&u))).then(|| {
            format!(
                "unauthorized: actor UID {} not in command_allowed_uids",
                uid.map_or_else(|| "unknown".to_string(), |u| u.to_string())
            )
        })
    }

    /// A mutating verb: the master state first (error: nothing sent), the attempt
    /// record (fail-closed: refused and undone if it cannot be written), then one task
    /// to every running worker.
    fn mutate(&mut self, token: Token, request: Request) {
        let Some(described) = describe(&request) else { return };
        let ulid = Ulid::new();
        let sha = request_sha(&request);
        let snapshot = self.config.audit_fail_closed.then(|| self.state.clone());
        // a new listener's socket first: a failure to bind changes nothing
        let bound = match self.bind_added(&request) {
            Ok(bound) => bound,
            Err(reason) => {
                let _ =
                    self.write_attempt(Some(token), ulid, &described, Err((ErrorCode::IoError, reason.clone())), &sha);
                self.reply(token, Response::failure(reason));
                return;
            }
        };
        if let Err(e) = self.state.dispatch(&request) {
            if let Some((kind, addr)) = bound {
                self.unbind(kind, addr);
            }
            let reason = e.to_string();
            if let Some(client) = self.clients.get(&token) {
                warn!(
                    self.log,
                    "client {}: {} refused: {reason}",
                    client.client_id,
                    sozu_proto::request_name(&request)
                );
            }
            let _ = self.write_attempt(
                Some(token),
                ulid,
                &described,
                Err((ErrorCode::DispatchError, reason.clone())),
                &sha,
            );
            self.reply(
                token,
                Response::failure(format!("could not dispatch request on the main process state: {reason}")),
            );
            return;
        }
        if let Err(e) = self.write_attempt(Some(token), ulid, &described, Ok(()), &sha)
            && let Some(before) = snapshot
        {
            *self.state = before;
            if let Some((kind, addr)) = bound {
                self.unbind(kind, addr);
            }
            self.reply(token, Response::failure(format!("refused: the audit record cannot be written ({e})")));
            return;
        }
        // workers get a new listener's socket before the request, and close a removed one
        // when they apply it (the master's copy goes now)
        if let Some((kind, addr)) = bound {
            self.share_listener(kind, addr);
        }
        if let Some((kind, addr)) = super::listen::removed(&request) {
            self.unbind(kind, addr);
        }
        if let Some(kind) = described.event {
            self.emit(kind, Some(&described));
        }
        self.state_changed();
        self.reply(token, Response::processing("Processing worker request..."));
        let pending = Pending { token: Some(token), request: ulid, described, sha };
        self.scatter(Some(token), TaskKind::Fanout, &[request], None, Some(pending));
    }

    pub(super) fn resolve(&self, path: &str) -> std::path::PathBuf {
        let dir = self.config.config_path.parent().unwrap_or(Path::new("/"));
        resolve_path(dir, Path::new(path))
    }

    fn save_state(&mut self, token: Token, request: &Request, path: &str) {
        let path = self.resolve(path);
        let sha = request_sha(request);
        let result = sozu_state::save_atomic(&path, &self.state);
        let mut d = describe(request).expect("SaveState is described");
        match result {
            Ok(n) => {
                d.target = format!("file:{} messages:{n}", path.display());
                let _ = self.write_attempt(Some(token), Ulid::new(), &d, Ok(()), &sha);
                self.emit(EventKind::StateSaved, None);
                self.reply(token, Response::ok(format!("Saved {n} config messages to {}", path.display()), None));
            }
            Err(e) => {
                d.target = format!("file:{}", path.display());
                let reason = format!("Cannot save state to {}: {e}", path.display());
                let _ =
                    self.write_attempt(Some(token), Ulid::new(), &d, Err((ErrorCode::IoError, reason.clone())), &sha);
                self.reply(token, Response::failure(reason));
            }
        }
    }
}
