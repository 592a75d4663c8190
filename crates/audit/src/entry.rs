//! The typed audit record.

use std::time::SystemTime;

use ulid::Ulid;

use crate::sanitize::sanitize;

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    /// User id, if known.
    pub uid: Option<u32>,
    /// Group id, if known.
    pub gid: Option<u32>,
    /// Process id, if known.
    pub pid: Option<i32>,
    /// Account name, if known.
    pub user: Option<String>,
    /// Command name, if known.
    pub comm: Option<String>,
}

impl Actor {
    /// `root` (uid 0), `system` (1–999), `user` (≥ 1000) or `unknown`.
    pub fn role(&self) -> &'static str {
        match self.uid {
            None => "unknown",
            Some(0) => "root",
            Some(1..=999) => "system",
            Some(_) => "user",
        }
    }
}

/// Outcome of the audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditResult {
    /// It was done.
    Ok,
    /// It was refused or failed.
    Err,
}

impl AuditResult {
    /// `ok` or `err`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Err => "err",
        }
    }
}

/// Why an action failed (Sōzu's codes, plus `unauthorized`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The supervisor's own state refused it.
    DispatchError,
    /// A worker answered with a failure.
    WorkerFailure,
    /// A worker did not answer in time.
    WorkerTimeout,
    /// The peer's credentials could not be read.
    PeerCredUnavailable,
    /// The request itself is invalid.
    InvalidInput,
    /// An I/O operation failed.
    IoError,
    /// The peer is not allowed to do this.
    Unauthorized,
    /// Anything else.
    Other,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 8] = [
        Self::DispatchError,
        Self::WorkerFailure,
        Self::WorkerTimeout,
        Self::PeerCredUnavailable,
        Self::InvalidInput,
        Self::IoError,
        Self::Unauthorized,
        Self::Other,
    ];

    /// The snake_case name written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DispatchError => "dispatch_error",
            Self::WorkerFailure => "worker_failure",
            Self::WorkerTimeout => "worker_timeout",
            Self::PeerCredUnavailable => "peer_cred_unavailable",
            Self::InvalidInput => "invalid_input",
            Self::IoError => "io_error",
            Self::Unauthorized => "unauthorized",
            Self::Other => "other",
        }
    }

    /// The code named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// How a fan-out to workers ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanoutStatus {
    /// Every worker answered OK.
    Ok,
    /// Some workers failed.
    Partial,
    /// Some workers did not answer in time.
    Timeout,
    /// No worker was involved.
    LocalOnly,
}

impl FanoutStatus {
    /// Every status.
    pub const ALL: [FanoutStatus; 4] = [Self::Ok, Self::Partial, Self::Timeout, Self::LocalOnly];

    /// The name written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Partial => "partial",
            Self::Timeout => "timeout",
            Self::LocalOnly => "local_only",
        }
    }
}

/// Fan-out outcome: how many workers answered OK, failed, and were expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Overall status.
    pub status: FanoutStatus,
    /// Workers that answered OK.
    pub workers_ok: u32,
    /// Workers that failed or did not answer.
    pub workers_err: u32,
    /// Workers asked.
    pub workers_expected: u32,
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When it was recorded.
    pub ts: SystemTime,
    /// The client connection's id.
    pub session: Ulid,
    /// This request's id, shared by every record of the same request.
    pub request: Ulid,
    /// What was done, snake_case (`cluster_added`).
    pub verb: String,
    /// Who asked.
    pub actor: Actor,
    /// The connection's number.
    pub client_id: Option<u64>,
    /// When the client connected.
    pub connect_ts: Option<SystemTime>,
    /// The socket the client used.
    pub socket: String,
    /// What was acted on (`cluster:api`).
    pub target: String,
    /// Cluster concerned.
    pub cluster_id: Option<String>,
    /// Backend concerned.
    pub backend_id: Option<String>,
    /// Outcome.
    pub result: AuditResult,
    /// Why it failed.
    pub error_code: Option<ErrorCode>,
    /// Free-text explanation.
    pub reason: Option<String>,
    /// Time taken.
    pub elapsed_ms: Option<u64>,
    /// Fan-out outcome.
    pub fanout: Option<Fanout>,
    /// First 8 bytes, hex, of the SHA-256 of the encoded request.
    pub request_sha256: Option<String>,
    /// Version of the recording program.
    pub version: String,
    /// Git commit of the recording program.
    pub build_git_sha: Option<String>,
    /// How many times the supervisor has been upgraded in place.
    pub boot_generation: u32,
}

impl AuditEntry {
    /// A record with the given essentials and nothing optional.
    pub fn new(
        session: Ulid,
        request: Ulid,
        verb: impl Into<String>,
        target: impl Into<String>,
        result: AuditResult,
    ) -> Self {
        Self {
            ts: SystemTime::now(),
            session,
            request,
            verb: verb.into(),
            actor: Actor::default(),
            client_id: None,
            connect_ts: None,
            socket: String::new(),
            target: target.into(),
            cluster_id: None,
            backend_id: None,
            result,
            error_code: None,
            reason: None,
            elapsed_ms: None,
            fanout: None,
            request_sha256: None,
            version: String::new(),
            build_git_sha: None,
            boot_generation: 0,
        }
    }

    /// The entry as the JSON sink records it: every free-text field line-sanitized
    /// (the text sink is stricter still, see [`render_text`](crate::render_text)).
    pub fn sanitized(&self) -> AuditEntry {
        let s = |t: &String| sanitize(t).into_owned();
        let o = |t: &Option<String>| t.as_ref().map(s);
        AuditEntry {
            verb: s(&self.verb),
            actor: Actor { user: o(&self.actor.user), comm: o(&self.actor.comm), ..self.actor.clone() },
            socket: s(&self.socket),
            target: s(&self.target),
            cluster_id: o(&self.cluster_id),
            backend_id: o(&self.backend_id),
            reason: o(&self.reason),
            request_sha256: o(&self.request_sha256),
            version: s(&self.version),
            build_git_sha: o(&self.build_git_sha),
            ..self.clone()
        }
    }
}
