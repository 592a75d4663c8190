//! Credentials of the peer of a connected Unix stream.

use std::io;
use std::os::fd::AsFd;

/// The peer's credentials, each `None` when the platform or the kernel cannot say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// User id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
    /// Process id (Linux only; `None` where only `getpeereid` exists).
    pub pid: Option<i32>,
}

/// Reads the peer's credentials, reporting failure.
///
/// Linux and Android: `SO_PEERCRED` (uid, gid and pid as of `connect`). Other Unix
/// systems: `getpeereid` (pid `None`).
pub fn try_peer_cred(stream: &impl AsFd) -> io::Result<PeerCred> {
    imp::peer_cred(stream)
}

/// Reads the peer's credentials; on failure logs one warning (through the `log`
/// facade) and returns all `None`. Never panics.
pub fn peer_cred(stream: &impl AsFd) -> PeerCred {
    match try_peer_cred(stream) {
        Ok(cred) => cred,
        Err(e) => {
            log::warn!("peer credentials unavailable: {e}");
            PeerCred::default()
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use super::*;
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

    pub fn peer_cred(stream: &impl AsFd) -> io::Result<PeerCred> {
        let cred = getsockopt(stream, PeerCredentials)?;
        Ok(PeerCred { uid: Some(cred.uid()), gid: Some(cred.gid()), pid: Some(cred.pid()) })
    }
}

#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
mod imp {
    use super::*;

    pub fn peer_cred(stream: &impl AsFd) -> io::Result<PeerCred> {
        let (uid, gid) = nix::unistd::getpeereid(stream)?;
        Ok(PeerCred { uid: Some(uid.as_raw()), gid: Some(gid.as_raw()), pid: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketpair_peer_is_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cred = peer_cred(&a);
        assert_eq!(cred.uid, Some(nix::unistd::getuid().as_raw()));
        assert_eq!(cred.gid, Some(nix::unistd::getgid().as_raw()));
        assert_eq!(cred.pid, Some(std::process::id() as i32));
    }

    #[test]
    fn a_non_socket_gives_all_none_not_a_panic() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(try_peer_cred(&file).is_err());
        assert_eq!(peer_cred(&file), PeerCred::default());
    }
}
