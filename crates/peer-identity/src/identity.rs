//! The identity snapshot taken once when a client connects.

use std::borrow::Cow;
use std::fmt;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use ulid::Ulid;

use crate::cred::{PeerCred, peer_cred};
use crate::proc::peer_comm;
use crate::sanitize::one_line;
use crate::users::{PendingUser, UserLookup, UserResolver};

/// Coarse kind of account, from the uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// uid 0.
    Root,
    /// uid 1 to 999.
    System,
    /// uid 1000 and above.
    User,
    /// uid not known.
    Unknown,
}

impl Role {
    /// The role of `uid`.
    pub fn of(uid: Option<u32>) -> Self {
        match uid {
            None => Self::Unknown,
            Some(0) => Self::Root,
            Some(1..=999) => Self::System,
            Some(_) => Self::User,
        }
    }

    /// `root`, `system`, `user` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::System => "system",
            Self::User => "user",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who connected, captured once at accept and never re-read: the pid may be reused
/// later, the uid's name may change, but the record stays what was true at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// A fresh ULID for this connection.
    pub session: Ulid,
    /// Kernel-reported credentials.
    pub cred: PeerCred,
    /// Command name from `/proc/<pid>/stat`, read once at accept (see [`peer_comm`](crate::peer_comm)).
    pub comm: Option<String>,
    /// Account name: `None` while the lookup is pending.
    pub user: Option<UserLookup>,
    /// Path of the listening socket the peer connected to.
    pub socket_path: PathBuf,
    /// Wall-clock time of the accept.
    pub connected_at: SystemTime,
}

impl PeerIdentity {
    /// Captures the identity of the peer of `stream`. Never blocks on the user
    /// database: if the name is not cached, the second value is the pending lookup;
    /// pass its answer to [`set_user`](Self::set_user).
    pub fn capture(
        stream: &impl AsFd,
        socket_path: impl Into<PathBuf>,
        users: &UserResolver,
    ) -> (Self, Option<PendingUser>) {
        let cred = peer_cred(stream);
        let comm = cred.pid.and_then(peer_comm);
        let (user, pending) = match cred.uid {
            None => (Some(UserLookup::Unknown), None),
            Some(uid) => match users.lookup(uid, Instant::now()) {
                Ok(known) => (Some(known), None),
                Err(pending) => (None, Some(pending)),
            },
        };
        let identity = Self {
            session: Ulid::new(),
            cred,
            comm,
            user,
            socket_path: socket_path.into(),
            connected_at: SystemTime::now(),
        };
        (identity, pending)
    }

    /// Records the answer of the pending user lookup.
    pub fn set_user(&mut self, lookup: UserLookup) {
        self.user = Some(lookup);
    }

    /// Role from the uid.
    pub fn role(&self) -> Role {
        Role::of(self.cred.uid)
    }

    /// The account name, sanitized, or `unknown`.
    pub fn user_display(&self) -> Cow<'_, str> {
        match self.user.as_ref().and_then(UserLookup::name) {
            Some(name) => one_line(name),
            None => Cow::Borrowed("unknown"),
        }
    }

    /// The command name, sanitized, or `unknown`.
    pub fn comm_display(&self) -> Cow<'_, str> {
        self.comm.as_deref().map_or(Cow::Borrowed("unknown"), one_line)
    }

    /// The socket path, sanitized.
    pub fn socket_display(&self) -> Cow<'_, str> {
        match self.socket_path.to_string_lossy() {
            Cow::Borrowed(s) => one_line(s),
            Cow::Owned(s) => Cow::Owned(one_line(&s).into_owned()),
        }
    }
}

/// `unknown` for a missing value, else the value.
pub(crate) struct OrUnknown<T>(pub Option<T>);

impl<T: fmt::Display> fmt::Display for OrUnknown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

impl fmt::Display for PeerIdentity {
    /// `session=… uid=… gid=… pid=… role=… user=… comm=…`, free text sanitized.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "session={} uid={} gid={} pid={} role={} user={} comm={}",
            self.session,
            OrUnknown(self.cred.uid),
            OrUnknown(self.cred.gid),
            OrUnknown(self.cred.pid),
            self.role(),
            self.user_display(),
            self.comm_display()
        )
    }
}
