//! Passing listener sockets between sozu processes with `SCM_RIGHTS`.
//!
//! One transfer is one `sendmsg`: the data is a `ListenersCount` manifest encoded with
//! protobuf's varint length prefix, the control message carries one fd per manifest
//! entry, in the order http, tls, tcp, udp (Sōzu 2.x layout, facts §2). What this crate
//! adds over Sōzu:
//! - fds are [`OwnedFd`] in and out; every received fd has `FD_CLOEXEC` set (received
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
mod listeners;
mod socket;

pub use error::ScmError;
pub use listeners::{ListenerKind, Listeners};
pub use socket::{MAX_FDS_PER_MESSAGE, MAX_MANIFEST_BYTES, ScmSocket};

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of a descriptor this process inherited by number (from a parent
/// that passed `--fd N` on the command line). Checks that `raw` is open first, and
/// sets `FD_CLOEXEC` on it so it does not leak into our own children.
///
/// The caller must not adopt the same number twice; nothing else in the process may
/// own it.
pub fn adopt_inherited_fd(raw: RawFd) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    if raw < 3 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("fd {raw} is a standard stream")));
    }
    // SAFETY: F_GETFD on any integer is harmless; it fails with EBADF if not open.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    fcntl(borrowed, FcntlArg::F_GETFD)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, format!("fd {raw}: {e}")))?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    // SAFETY: the fd is open (checked above) and, by this function's contract, owned
    // by no one else in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
