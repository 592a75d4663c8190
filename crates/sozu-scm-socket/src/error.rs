//! Errors of fd passing.

use std::{fmt, io};

/// Failure to send or receive listeners.
#[derive(Debug)]
#[non_exhaustive]
pub enum ScmError {
    /// The socket failed.
    Io(io::Error),
    /// The peer closed the socket.
    Closed,
    /// Nothing arrived before the deadline.
    TimedOut,
    /// The kernel truncated the control message (`MSG_CTRUNC`): some fds were lost.
    /// The ones that did arrive were closed.
    ControlTruncated {
        /// fds that arrived before the truncation.
        fds_received: usize,
    },
    /// The manifest is not a valid length-delimited `ListenersCount`.
    Manifest(String),
    /// The manifest does not match the fds received. Every received fd was closed.
    Inconsistent {
        /// HTTP entries declared.
        http: usize,
        /// TLS entries declared.
        tls: usize,
        /// TCP entries declared.
        tcp: usize,
        /// UDP entries declared.
        udp: usize,
        /// fds that arrived.
        fds_received: usize,
    },
    /// A manifest entry is not a socket address.
    BadAddress(String),
}

impl fmt::Display for ScmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "SCM socket I/O error: {e}"),
            Self::Closed => f.write_str("SCM socket closed by peer"),
            Self::TimedOut => f.write_str("timed out waiting for listeners"),
            Self::ControlTruncated { fds_received } => {
                write!(f, "control message truncated (MSG_CTRUNC) after {fds_received} fds; all were closed")
            }
            Self::Manifest(e) => write!(f, "invalid listeners manifest: {e}"),
            Self::Inconsistent { http, tls, tcp, udp, fds_received } => write!(
                f,
                "listeners manifest declares {} sockets (http {http}, tls {tls}, tcp {tcp}, udp {udp}) \
                 but {fds_received} fds arrived; all were closed",
                http + tls + tcp + udp
            ),
            Self::BadAddress(a) => write!(f, "listeners manifest entry is not a socket address: {a:?}"),
        }
    }
}

impl std::error::Error for ScmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ScmError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<nix::Error> for ScmError {
    fn from(e: nix::Error) -> Self {
        Self::Io(io::Error::from(e))
    }
}
