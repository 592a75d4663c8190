//! Audit records and events of the master.

use std::time::Duration;

use audit::{Actor, AuditEntry, AuditResult, ErrorCode, Fanout};
use mio::Token;
use prost::Message;
use sha2::{Digest, Sha256};
use slog::{error, warn};
use sozu_proto::request::RequestType as R;
use sozu_proto::response_content::ContentType;
use sozu_proto::{Event, EventKind, Request, Response, ResponseStatus};
use ulid::Ulid;

use super::conn::{Conn, event_json};
use super::server::Master;

/// What an audited verb is called and acts on.
#[derive(Clone)]
pub(super) struct Described {
    pub verb: &'static str,
    pub target: String,
    pub cluster_id: Option<String>,
    pub backend_id: Option<String>,
    pub event: Option<EventKind>,
}

/// A completion record to write when the verb's task ends.
pub(super) struct Pending {
    pub token: Option<Token>,
    pub request: Ulid,
    pub described: Described,
    pub sha: String,
}

fn listener_type(proxy: i32) -> &'static str {
    match sozu_proto::ListenerType::try_from(proxy) {
        Ok(sozu_proto::ListenerType::Http) => "Http",
        Ok(sozu_proto::ListenerType::Https) => "Https",
        Ok(sozu_proto::ListenerType::Tcp) => "Tcp",
        Ok(sozu_proto::ListenerType::Udp) => "Udp",
        Err(_) => "?",
    }
}

/// The audit name, target and event of a mutating verb (`None`: not audited).
pub(super) fn describe(request: &Request) -> Option<Described> {
    let d = |verb, target: String, cluster: Option<&str>, backend: Option<&str>, event| Described {
        verb,
        target,
        cluster_id: cluster.map(str::to_string),
        backend_id: backend.map(str::to_string),
        event,
    };
    use EventKind as E;
    Some(match request.request_type.as_ref()? {
        R::AddCluster(c) => {
            d("cluster_added", format!("cluster:{}", c.cluster_id), Some(&c.cluster_id), None, Some(E::ClusterAdded))
        }
        R::RemoveCluster(id) => d("cluster_removed", format!("cluster:{id}"), Some(id), None, Some(E::ClusterRemoved)),
        R::AddHttpFrontend(f) => d(
            "http_frontend_added",
            format!("frontend:http:{}:{}", f.hostname, f.address),
            f.cluster_id.as_deref(),
            None,
            Some(E::FrontendAdded),
        ),
        R::RemoveHttpFrontend(f) => d(
            "http_frontend_removed",
            format!("frontend:http:{}:{}", f.hostname, f.address),
            f.cluster_id.as_deref(),
            None,
            Some(E::FrontendRemoved),
        ),
        R::AddTcpFrontend(f) => d(
            "tcp_frontend_added",
            format!("frontend:tcp:{}:{}", f.cluster_id, f.address),
            Some(&f.cluster_id),
            None,
            Some(E::FrontendAdded),
        ),
        R::RemoveTcpFrontend(f) => d(
            "tcp_frontend_removed",
            format!("frontend:tcp:{}:{}", f.cluster_id, f.address),
            Some(&f.cluster_id),
            None,
            Some(E::FrontendRemoved),
        ),
        R::AddBackend(b) => d(
            "backend_added",
            format!("backend:{}:{}", b.backend_id, b.address),
            Some(&b.cluster_id),
            Some(&b.backend_id),
            None,
        ),
        R::RemoveBackend(b) => d(
            "backend_removed",
            format!("backend:{}:{}", b.backend_id, b.address),
            Some(&b.cluster_id),
            Some(&b.backend_id),
            None,
        ),
        R::AddHttpListener(l) => {
            d("http_listener_added", format!("listener:http:{}", l.address), None, None, Some(E::ListenerAdded))
        }
        R::AddTcpListener(l) => {
            d("tcp_listener_added", format!("listener:tcp:{}", l.address), None, None, Some(E::ListenerAdded))
        }
        R::UpdateHttpListener(l) => {
            d("http_listener_updated", format!("listener:http:{}", l.address), None, None, Some(E::ListenerUpdated))
        }
        R::UpdateTcpListener(l) => {
            d("tcp_listener_updated", format!("listener:tcp:{}", l.address), None, None, Some(E::ListenerUpdated))
        }
        R::RemoveListener(l) => d(
            "listener_removed",
            format!("listener:{}:{}", listener_type(l.proxy), l.address),
            None,
            None,
            Some(E::ListenerRemoved),
        ),
        R::ActivateListener(l) => d(
            "listener_activated",
            format!("listener:{}:{}", listener_type(l.proxy), l.address),
            None,
            None,
            Some(E::ListenerActivated),
        ),
        R::DeactivateListener(l) => d(
            "listener_deactivated",
            format!("listener:{}:{}", listener_type(l.proxy), l.address),
            None,
            None,
            Some(E::ListenerDeactivated),
        ),
        R::ConfigureMetrics(m) => {
            d("metrics_configured", format!("metrics:{m}"), None, None, Some(E::MetricsConfigured))
        }
        R::Logging(f) => d("logging_level_changed", format!("logging:{f}"), None, None, Some(E::LoggingLevelChanged)),
        R::SaveState(p) => d("state_saved", format!("file:{p}"), None, None, Some(E::StateSaved)),
        R::LoadState(p) => d("state_loaded", format!("file:{p}"), None, None, Some(E::StateLoaded)),
        R::UpgradeWorker(id) => d("worker_upgraded", format!("worker:{id}"), None, None, None),
        R::UpgradeMain(_) => d("main_upgrade_requested", "main".into(), None, None, None),
        R::SoftStop(_) => d("sozu_stop_requested", "stop:soft".into(), None, None, Some(E::SozuStopRequested)),
        R::HardStop(_) => d("sozu_stop_requested", "stop:hard".into(), None, None, Some(E::SozuStopRequested)),
        _ => return None,
    })
}

/// First 8 bytes, hex, of the SHA-256 of the encoded request.
pub(super) fn request_sha(request: &Request) -> String {
    Sha256::digest(request.encode_to_vec())[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Master {
    fn entry(&self, token: Option<Token>, request: Ulid, d: &Described, result: AuditResult) -> AuditEntry {
        let mut e = AuditEntry::new(Ulid::nil(), request, d.verb, d.target.clone(), result);
        if let Some(client) = token.and_then(|t| self.clients.get(&t)) {
            let id = &client.identity;
            e.session = id.session;
            e.actor = Actor {
                uid: id.cred.uid,
                gid: id.cred.gid,
                pid: id.cred.pid,
                user: id.user.as_ref().and_then(|u| u.name()).map(str::to_string),
                comm: id.comm.clone(),
            };
            e.client_id = Some(client.client_id);
            e.connect_ts = Some(id.connected_at);
        }
        e.socket = self.config.command_socket.display().to_string();
        e.cluster_id.clone_from(&d.cluster_id);
        e.backend_id.clone_from(&d.backend_id);
        e.version = env!("CARGO_PKG_VERSION").into();
        e.build_git_sha = option_env!("SOZU_GIT_SHA").map(str::to_string);
        e.boot_generation = self.boot_generation;
        e
    }

    /// Writes the attempt record of a verb. Under `audit_fail_closed`, an error means
    /// the verb must be refused.
    pub(super) fn write_attempt(
        &mut self,
        token: Option<Token>,
        request: Ulid,
        d: &Described,
        outcome: Result<(), (ErrorCode, String)>,
        sha: &str,
    ) -> Result<(), audit::AuditError> {
        let result = if outcome.is_ok() { AuditResult::Ok } else { AuditResult::Err };
        let mut e = self.entry(token, request, d, result);
        e.request_sha256 = Some(sha.to_string());
        if let Err((code, reason)) = outcome {
            e.error_code = Some(code);
            e.reason = Some(reason);
        }
        let written = self.record_audit(&e);
        if let Err(err) = &written {
            error!(self.log, "audit record not written: {err}");
        }
        written
    }

    /// Writes the completion record of a fanned-out verb.
    pub(super) fn write_completion(
        &mut self,
        p: Pending,
        ok: bool,
        fanout: Fanout,
        elapsed: Duration,
        reason: Option<String>,
    ) {
        let mut e = self.entry(p.token, p.request, &p.described, if ok { AuditResult::Ok } else { AuditResult::Err });
        e.elapsed_ms = Some(elapsed.as_millis() as u64);
        e.fanout = Some(fanout);
        e.request_sha256 = Some(p.sha);
        if !ok {
            e.error_code = Some(if fanout.status == audit::FanoutStatus::Timeout {
                ErrorCode::WorkerTimeout
            } else {
                ErrorCode::WorkerFailure
            });
            e.reason = reason;
        }
        if let Err(err) = self.record_audit(&e) {
            error!(self.log, "audit completion record not written: {err}");
        }
    }

    /// Records a refused request (unauthorized), with one audit record.
    pub(super) fn audit_refusal(&mut self, token: Token, request: &Request, reason: &str) {
        let d = describe(request).unwrap_or(Described {
            verb: "request_refused",
            target: format!("verb:{}", sozu_proto::request_name(request)),
            cluster_id: None,
            backend_id: None,
            event: None,
        });
        let d = Described { verb: "request_refused", target: format!("{} ({})", d.target, d.verb), ..d };
        let sha = request_sha(request);
        let _ = self.write_attempt(Some(token), Ulid::new(), &d, Err((ErrorCode::Unauthorized, reason.into())), &sha);
    }

    /// Records a worker's unexpected death (no client: the actor is the master).
    pub(super) fn audit_worker_death(&mut self, id: u32, pid: i32, why: &str) {
        let d = Described {
            verb: "worker_killed",
            target: format!("worker:{id} pid:{pid}"),
            cluster_id: None,
            backend_id: None,
            event: None,
        };
        let mut e = self.entry(None, Ulid::new(), &d, AuditResult::Err);
        e.error_code = Some(ErrorCode::WorkerFailure);
        e.reason = Some(why.to_string());
        if let Err(err) = self.record_audit(&e) {
            error!(self.log, "audit record not written: {err}");
        }
    }

    /// Sends an event to every subscriber, at once, once.
    pub(super) fn emit(&mut self, kind: EventKind, described: Option<&Described>) {
        let event = Event {
            kind: kind as i32,
            cluster_id: described.and_then(|d| d.cluster_id.clone()),
            backend_id: described.and_then(|d| d.backend_id.clone()),
            ..Default::default()
        };
        self.forward_event("main", event);
    }

    pub(super) fn forward_event(&mut self, source: &str, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.config.event_journal_size > 0 {
            if self.journal.len() >= self.config.event_journal_size {
                self.journal.pop_front();
            }
            self.journal.push_back((seq, source.to_string(), event.clone()));
        }
        let subscribers: Vec<Token> = self.clients.iter().filter(|(_, c)| c.subscribed).map(|(t, _)| *t).collect();
        for token in subscribers {
            let Some(c) = self.clients.get_mut(&token) else { continue };
            let sent = match &mut c.conn {
                // dashboards: bounded queue, `lagged` notice when events were dropped
                Conn::Json(j) => {
                    j.event(&event_json(seq, source, &event));
                    Ok(())
                }
                Conn::Proto(channel) => channel.send(&Response {
                    status: ResponseStatus::Processing as i32,
                    message: source.to_string(),
                    content: Some(ContentType::Event(event.clone()).into()),
                }),
            };
            if sent.is_err() {
                warn!(self.log, "event subscriber {} is not reading; dropped", c.client_id);
                self.drop_client(token);
            } else {
                self.client_writable(token);
            }
        }
    }

    /// Writes an audit record and keeps it for `audit.tail`.
    pub(super) fn record_audit(&mut self, entry: &AuditEntry) -> Result<(), audit::AuditError> {
        if self.audit_tail.len() >= 256 {
            self.audit_tail.pop_front();
        }
        self.audit_tail.push_back(audit::json_value(entry));
        self.audit.record(entry)
    }
}
