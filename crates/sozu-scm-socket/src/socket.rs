//! The SCM socket: one `sendmsg`/`recvmsg` per manifest.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use prost::Message;
use sozu_proto::ListenersCount;

use crate::{ListenerKind, Listeners, ScmError};

/// Largest number of fds in one message (what a Sōzu 2.x receiver accepts).
pub const MAX_FDS_PER_MESSAGE: usize = 200;
/// Largest manifest in one message (a Sōzu 2.x receiver's data buffer).
pub const MAX_MANIFEST_BYTES: usize = 4096;
/// fds our receiver makes room for: the kernel's per-message maximum (SCM_MAX_FD), so
/// that a sender over our limit is detected as inconsistent rather than truncated.
const RECV_FD_SPACE: usize = 253;
/// Our receiver's data buffer: larger than any manifest we accept.
const RECV_DATA_BYTES: usize = 64 * 1024;

/// One end of a stream socketpair used for fd passing. Blocking.
#[derive(Debug)]
pub struct ScmSocket {
    stream: UnixStream,
}

impl ScmSocket {
    /// Wraps a connected Unix stream, switching it to blocking mode.
    pub fn new(stream: UnixStream) -> std::io::Result<Self> {
        stream.set_nonblocking(false)?;
        Ok(Self { stream })
    }

    /// Bounds how long a send may wait for room in the socket (`None`: forever), so that
    /// a peer that stopped reading cannot hold the sender: the send then fails
    /// (`WouldBlock`).
    pub fn set_write_timeout(&self, timeout: Option<std::time::Duration>) -> std::io::Result<()> {
        self.stream.set_write_timeout(timeout)
    }

    /// A connected pair.
    pub fn pair() -> std::io::Result<(Self, Self)> {
        let (a, b) = UnixStream::pair()?;
        Ok((Self::new(a)?, Self::new(b)?))
    }

    /// The socket's fd (to pass to a child process).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> UnixStream {
        self.stream
    }

    /// Sends every listener (borrowed: the caller keeps its copies), in as many
    /// messages as needed. An empty set is sent as one empty manifest.
    pub fn send_listeners(&self, listeners: &Listeners) -> Result<(), ScmError> {
        let batches = batch(listeners);
        let total = batches.len();
        for (index, (mut manifest, fds)) in batches.into_iter().enumerate() {
            let remaining = (total - index - 1) as u32;
            manifest.batches_remaining = (remaining > 0).then_some(remaining);
            self.send_fds(&manifest.encode_length_delimited_to_vec(), &fds)?;
        }
        Ok(())
    }

    /// Receives a complete set of listeners, waiting at most `timeout` in all
    /// (`None`: forever). On any error every fd received so far is closed.
    pub fn recv_listeners(&self, timeout: Option<Duration>) -> Result<Listeners, ScmError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut all = Listeners::default();
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let mut buf = vec![0u8; RECV_DATA_BYTES];
            let (n, fds) = self.recv_fds(&mut buf, RECV_FD_SPACE, left)?;
            let mut data = &buf[..n];
            let manifest =
                ListenersCount::decode_length_delimited(&mut data).map_err(|e| ScmError::Manifest(e.to_string()))?;
            if !data.is_empty() {
                return Err(ScmError::Manifest(format!("{} unexpected bytes after the manifest", data.len())));
            }
            let remaining = manifest.batches_remaining.unwrap_or(0);
            all.extend(pair_up(manifest, fds)?);
            if remaining == 0 {
                return Ok(all);
            }
        }
    }

    /// Low level: sends `data` with `fds` in one `sendmsg` (no control message when
    /// `fds` is empty).
    pub fn send_fds(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), ScmError> {
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let iov = [IoSlice::new(data)];
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsgs };
        let mut sent = 0;
        while sent == 0 {
            match sendmsg::<()>(self.stream.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(n) => sent = n,
                Err(nix::Error::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if sent < data.len() {
            // the fds went with the first bytes; the rest of the data follows plainly
            let mut rest = &data[sent..];
            while !rest.is_empty() {
                match sendmsg::<()>(self.stream.as_raw_fd(), &[IoSlice::new(rest)], &[], MsgFlags::MSG_NOSIGNAL, None) {
                    Ok(n) => rest = &rest[n..],
                    Err(nix::Error::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Low level: one `recvmsg` into `buf`, with room for `max_fds` descriptors.
    /// Returns the byte count and the received fds (all with `FD_CLOEXEC`).
    pub fn recv_fds(
        &self,
        buf: &mut [u8],
        max_fds: usize,
        timeout: Option<Duration>,
    ) -> Result<(usize, Vec<OwnedFd>), ScmError> {
        self.wait_readable(timeout)?;
        loop {
            match recvmsg_fds(self.stream.as_raw_fd(), buf, max_fds) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok((_, fds, true)) => return Err(ScmError::ControlTruncated { fds_received: fds.len() }),
                Ok((0, fds, false)) if fds.is_empty() => return Err(ScmError::Closed),
                Ok((n, fds, false)) => return Ok((n, fds)),
            }
        }
    }

    fn wait_readable(&self, timeout: Option<Duration>) -> Result<(), ScmError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let wait = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ScmError::TimedOut);
                    }
                    // round up so that a sub-millisecond wait does not spin
                    let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, wait) {
                Ok(0) => continue,
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Splits the listeners into messages of at most `MAX_FDS_PER_MESSAGE` fds and
/// `MAX_MANIFEST_BYTES` manifest bytes, keeping manifest order.
fn batch(listeners: &Listeners) -> Vec<(ListenersCount, Vec<BorrowedFd<'_>>)> {
    let mut batches = vec![(ListenersCount::default(), Vec::new())];
    for (kind, addr, fd) in listeners.iter() {
        let entry = addr.to_string();
        let (manifest, fds) = batches.last_mut().expect("never empty");
        // room for the entry (tag + length + bytes), the length prefix and batches_remaining
        let grown = manifest.encoded_len() + entry.len() + 2 + 16;
        if fds.len() == MAX_FDS_PER_MESSAGE || grown > MAX_MANIFEST_BYTES {
            batches.push((ListenersCount::default(), Vec::new()));
        }
        let (manifest, fds) = batches.last_mut().expect("never empty");
        match kind {
            ListenerKind::Http => manifest.http.push(entry),
            ListenerKind::Tls => manifest.tls.push(entry),
            ListenerKind::Tcp => manifest.tcp.push(entry),
            ListenerKind::Udp => manifest.udp.push(entry),
        }
        fds.push(fd);
    }
    batches
}

/// Zips manifest entries with fds by position (http, tls, tcp, udp). Any mismatch
/// drops (closes) every fd.
fn pair_up(manifest: ListenersCount, fds: Vec<OwnedFd>) -> Result<Listeners, ScmError> {
    let (http, tls, tcp, udp) = (manifest.http.len(), manifest.tls.len(), manifest.tcp.len(), manifest.udp.len());
    let declared = http + tls + tcp + udp;
    if declared != fds.len() || declared > MAX_FDS_PER_MESSAGE.max(RECV_FD_SPACE) {
        return Err(ScmError::Inconsistent { http, tls, tcp, udp, fds_received: fds.len() });
    }
    let mut fds = fds.into_iter();
    let mut out = Listeners::default();
    let groups = [
        (ListenerKind::Http, manifest.http),
        (ListenerKind::Tls, manifest.tls),
        (ListenerKind::Tcp, manifest.tcp),
        (ListenerKind::Udp, manifest.udp),
    ];
    for (kind, entries) in groups {
        for entry in entries {
            let addr: SocketAddr = entry.parse().map_err(|_| ScmError::BadAddress(entry.clone()))?;
            let fd = fds.next().expect("counts checked");
            out.of_mut(kind).push((addr, fd));
        }
    }
    Ok(out)
}

/// One `recvmsg(MSG_CMSG_CLOEXEC)`: bytes read, every fd received (owned, so closed on
/// drop whatever happens next), and whether the control data was truncated.
///
/// Written against libc rather than nix because on `MSG_CTRUNC` nix refuses to walk
/// the control messages, and the fds that did arrive would leak.
fn recvmsg_fds(fd: RawFd, buf: &mut [u8], max_fds: usize) -> std::io::Result<(usize, Vec<OwnedFd>, bool)> {
    let fd_bytes = (max_fds.max(1) * std::mem::size_of::<libc::c_int>()) as u32;
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    // u64 storage keeps the control buffer aligned for cmsghdr
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg points at live buffers of the sizes given, for the whole call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by
    // msg_controllen; each SCM_RIGHTS payload is an array of c_int fds that the kernel
    // installed for us and that nothing else owns.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                let count = len / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, fds, msg.msg_flags & libc::MSG_CTRUNC != 0))
}
