//! Passing listener sockets between sozu processes with `SCM_RIGHTS`.
//!
//! One transfer is one `sendmsg`: the data is a `ListenersCount` manifest encoded with
//! protobuf's varint length prefix, the control message carries one fd per manifest
//! entry, in the order http, tls, tcp, udp (Sōzu 2.x layout, facts §2). What this crate
//! adds over Sōzu:
//! - fds are [`OwnedFd`](std::os::fd::OwnedFd) in and out; every received fd has `FD_CLOEXEC` set (received
//!   with `MSG_CMSG_CLOEXEC`);
//! - a truncated control message (`MSG_CTRUNC`) and a manifest that disagrees with the
//!   fds received are typed errors, and every fd received in a failed transfer is
//!   closed, never leaked;
//! - more listeners than one message carries (200 fds or 4096 manifest bytes, the
//!   limits of a Sōzu 2.x receiver) are sent as several messages, chained by the
//!   manifest field `batches_remaining`, which a Sōzu 2.x worker ignores;
//! - receiving takes a timeout.
//!
//! This crate owns the `unsafe` needed to adopt received descriptors.

#![warn(missing_docs)]

mod error;
mod inherited;
mod listeners;
mod socket;

pub use error::ScmError;
pub use listeners::{ListenerKind, Listeners};
pub use socket::{MAX_FDS_PER_MESSAGE, MAX_MANIFEST_BYTES, ScmSocket};

pub use inherited::{SavedFd, adopt_inherited_fd, close_inherited_except};
