//! Why a verb was refused.

use std::fmt;
use std::net::SocketAddr;

/// A verb the state refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StateError {
    /// A listener already exists at this address.
    ListenerExists(SocketAddr),
    /// No listener of that kind at this address.
    UnknownListener(SocketAddr),
    /// The cluster does not exist.
    UnknownCluster(String),
    /// A cluster id is empty.
    EmptyClusterId,
    /// This frontend already exists.
    FrontendExists(String),
    /// No such frontend.
    UnknownFrontend(String),
    /// No such backend in the cluster.
    UnknownBackend {
        /// Cluster.
        cluster_id: String,
        /// Backend.
        backend_id: String,
        /// Address given.
        address: String,
    },
    /// The certificate is already on this listener.
    CertificateExists {
        /// Listener address.
        address: SocketAddr,
        /// Hex SHA-256 fingerprint.
        fingerprint: String,
    },
    /// No such certificate on this listener.
    UnknownCertificate {
        /// Listener address.
        address: SocketAddr,
        /// Hex SHA-256 fingerprint.
        fingerprint: String,
    },
    /// The certificate is not valid PEM.
    InvalidCertificate(String),
    /// An address field is not a socket address.
    InvalidAddress(String),
    /// The request has no verb (unknown tag or empty).
    EmptyRequest,
    /// A name holds a control or formatting character (one the audit's line-safe
    /// sanitizer would replace, [`audit::Mode::Line`]).
    ControlCharacter {
        /// Which field (`cluster_id`, `backend_id`, `hostname`, `path`, `method`, `sticky_id`,
        /// `tag`, `header`).
        field: &'static str,
        /// The value as given.
        value: String,
    },
    /// A frontend's header edit names a field that is not an HTTP token, or one the
    /// proxy owns (framing, hop-by-hop, `Host`, the forwarding fields it sets).
    InvalidHeader {
        /// The name as given.
        name: String,
        /// Why it cannot be edited.
        why: &'static str,
    },
    /// A frontend's `rewrite_host`, `rewrite_path` or `rewrite_port` cannot be used
    /// (see [`crate::rewrite`]).
    InvalidRewrite {
        /// `rewrite_host`, `rewrite_path` or `rewrite_port`.
        field: &'static str,
        /// The value as given.
        template: String,
        /// What is wrong with it.
        why: String,
    },
    /// An HTTP (not HTTPS) frontend enables HSTS, which browsers ignore over plain
    /// HTTP (RFC 6797 §7.2); Sōzu 2.1's workers refuse it too.
    HstsOnPlainHttp {
        /// The frontend's hostname.
        hostname: String,
    },
    /// The verb is not a state change (a master verb such as SaveState or UpgradeMain).
    NotAStateVerb(&'static str),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ListenerExists(a) => write!(f, "a listener already exists at {a}"),
            Self::UnknownListener(a) => write!(f, "no such listener at {a}"),
            Self::UnknownCluster(c) => write!(f, "unknown cluster {c:?}"),
            Self::EmptyClusterId => f.write_str("cluster id is empty"),
            Self::FrontendExists(k) => write!(f, "frontend already exists: {k}"),
            Self::UnknownFrontend(k) => write!(f, "no such frontend: {k}"),
            Self::UnknownBackend { cluster_id, backend_id, address } => {
                write!(f, "no backend {backend_id:?} at {address} in cluster {cluster_id:?}")
            }
            Self::CertificateExists { address, fingerprint } => {
                write!(f, "certificate {fingerprint} already on listener {address}")
            }
            Self::UnknownCertificate { address, fingerprint } => {
                write!(f, "no certificate {fingerprint} on listener {address}")
            }
            Self::InvalidCertificate(e) => write!(f, "invalid certificate: {e}"),
            Self::InvalidAddress(e) => write!(f, "invalid address: {e}"),
            Self::EmptyRequest => f.write_str("empty request: no verb, or a verb this version does not know"),
            Self::ControlCharacter { field, value } => {
                write!(f, "{field} {} holds a control or formatting character", escaped(value))
            }
            Self::InvalidHeader { name, why } => write!(f, "header {} cannot be edited: {why}", escaped(name)),
            Self::InvalidRewrite { field, template, why } => {
                write!(f, "{field} {} cannot be used: {why}", escaped(template))
            }
            Self::HstsOnPlainHttp { hostname } => write!(
                f,
                "the HTTP frontend {} enables HSTS, which is only valid on HTTPS frontends (RFC 6797 §7.2)",
                escaped(hostname)
            ),
            Self::NotAStateVerb(v) => write!(f, "{v} does not change the configuration state"),
        }
    }
}

impl std::error::Error for StateError {}

/// `value` quoted, with every forbidden character written as `\u{…}`.
fn escaped(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        if audit::Mode::Line.rejects(c) || c == '"' || c == '\\' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}
