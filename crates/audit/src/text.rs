//! The text layout of Sōzu's audit lines (facts §8.1), so existing parsers keep working.

use std::fmt::{self, Write as _};

use crate::entry::AuditEntry;
use crate::sanitize::{Mode, Sanitized, truncate};
use crate::time::format_rfc3339;

/// Longest `reason` in a text line, in characters (then `…`).
const REASON_MAX: usize = 256;

/// `[<session> <request> <cluster|-> <backend|->]`, ids bracket-sanitized. Build it
/// with [`envelope!`](crate::envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    session: String,
    request: String,
    cluster: Option<String>,
    backend: Option<String>,
}

impl Envelope {
    #[doc(hidden)]
    pub fn new(session: String, request: String, cluster: Option<String>, backend: Option<String>) -> Self {
        Self { session, request, cluster, backend }
    }
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        write!(f, "{} {} ", Sanitized(Mode::Bracket, &self.session), Sanitized(Mode::Bracket, &self.request))?;
        match self.cluster.as_deref().map(|s| Sanitized(Mode::Bracket, s)) {
            Some(c) => write!(f, "{c} ")?,
            None => f.write_str("- ")?,
        }
        match self.backend.as_deref().map(|s| Sanitized(Mode::Bracket, s)) {
            Some(b) => write!(f, "{b}]"),
            None => f.write_str("-]"),
        }
    }
}

struct Opt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Renders `entry` as one text line (no trailing newline):
///
/// `[<session> <request> <cluster|-> <backend|->]\tAUDIT\tCommand(ts=…, verb=…, actor_uid=…, …, boot_generation=…)`
///
/// Every free-text value is column-sanitized (control and bidi characters, `,` and `=`
/// become `?`), so no value can end the line or forge a column; `reason` is cut at 256
/// characters.
pub fn render_text(entry: &AuditEntry) -> String {
    let col = |s: &str| Sanitized(Mode::Column, s).to_string();
    let ocol = |s: &Option<String>| s.as_deref().map(col);
    let mut line = String::with_capacity(512);
    let env = crate::envelope!(entry.session, entry.request, entry.cluster_id.as_deref(), entry.backend_id.as_deref());
    let a = &entry.actor;
    let _ = write!(
        line,
        "{env}\tAUDIT\tCommand(ts={}, verb={}, actor_uid={}, actor_gid={}, actor_pid={}, actor_role={}, \
         actor_user={}, actor_comm={}, client_id={}, connect_ts={}, socket={}, target={}, result={}",
        format_rfc3339(entry.ts),
        col(&entry.verb),
        Opt(a.uid),
        Opt(a.gid),
        Opt(a.pid),
        a.role(),
        Opt(ocol(&a.user)),
        Opt(ocol(&a.comm)),
        Opt(entry.client_id),
        Opt(entry.connect_ts.map(format_rfc3339)),
        col(&entry.socket),
        col(&entry.target),
        entry.result.as_str(),
    );
    if let Some(code) = entry.error_code {
        let _ = write!(line, ", error_code={}", code.as_str());
    }
    if let Some(reason) = &entry.reason {
        let _ = write!(line, ", reason={}", col(&truncate(reason, REASON_MAX)));
    }
    if let Some(ms) = entry.elapsed_ms {
        let _ = write!(line, ", elapsed_ms={ms}");
    }
    if let Some(f) = entry.fanout {
        let _ = write!(
            line,
            ", fanout={}, workers={}/{}/{}",
            f.status.as_str(),
            f.workers_ok,
            f.workers_err,
            f.workers_expected
        );
    }
    if let Some(sha) = &entry.request_sha256 {
        let _ = write!(line, ", request_sha256={}", col(sha));
    }
    let _ = write!(
        line,
        ", sozu_version={}, build_git_sha={}, boot_generation={})",
        col(&entry.version),
        Opt(ocol(&entry.build_git_sha)),
        entry.boot_generation
    );
    line
}
