//! The main upgrade's handover, without any I/O policy.
//!
//! A master upgrades by re-executing itself (same pid, so its workers stay its
//! children) after a validation run of the new binary. What the new image needs is
//! written as [`UpgradeData`]: a magic line with the version, one line of JSON, then
//! the state as opaque bytes to the end (the caller's encoding: no escaping, no
//! parsing of it here). File descriptors
//! cross the exec by number: [`KeptAcrossExec`] clears `FD_CLOEXEC` on exactly the fds
//! the data names and puts every flag back if the exec does not happen.
//!
//! ```
//! use sozu_upgrade::{UpgradeData, decode, encode};
//!
//! let data = UpgradeData { config_text: "worker_count = 1\n".into(), ..UpgradeData::default() };
//! let bytes = encode(&data);
//! assert_eq!(decode(&bytes).unwrap(), data);
//! assert!(decode(b"garbage").is_err());
//! ```
//!
//! Dependencies: `serde`/`serde_json` (the data is JSON, readable when debugging an
//! upgrade) and `nix` (`fcntl` for the fd flags).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::{Deserialize, Serialize};

/// First line of the upgrade data.
pub const MAGIC: &str = "sozu-upgrade-data";
/// Version of the format; a binary refuses data of another version.
pub const VERSION: u32 = 1;

/// A worker handed over: its ids and the fds of its two sockets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerHandover {
    /// Worker id.
    pub id: u32,
    /// Process id (a child of the master, before and after the exec).
    pub pid: i32,
    /// Command channel fd (the master's end).
    pub channel_fd: i32,
    /// SCM socket fd (the master's end).
    pub scm_fd: i32,
    /// `RunState` as its protobuf number.
    pub run_state: i32,
}

/// A listening socket handed over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerHandover {
    /// `http` or `tcp`.
    pub protocol: String,
    /// Its address, `ip:port`.
    pub address: String,
    /// The fd.
    pub fd: i32,
}

/// Everything a re-executed master needs to carry on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeData {
    /// The state, in the caller's encoding (sozu: a protobuf `InitialState`); written
    /// after the JSON line, raw.
    #[serde(skip)]
    pub state: Vec<u8>,
    /// Version of the binary that wrote the data.
    pub from_version: String,
    /// Path of the configuration file, and its text as the master loaded it.
    pub config_path: String,
    /// The configuration text.
    pub config_text: String,
    /// The command socket (listening) fd.
    pub command_socket_fd: i32,
    /// The dashboard socket fd, if any.
    pub dashboard_fd: Option<i32>,
    /// Listening sockets.
    pub listeners: Vec<ListenerHandover>,
    /// Workers.
    pub workers: Vec<WorkerHandover>,
    /// The client that asked for the upgrade: it gets the answer from the new image.
    pub client_fd: Option<i32>,
    /// Id counters, so nothing is reused.
    pub next_worker_id: u32,
    /// Next task id.
    pub next_task_id: u64,
    /// Next client id.
    pub next_client_id: u64,
    /// Boot generation of the writer (the new image runs the next one).
    pub boot_generation: u32,
    /// Head of the JSON audit chain, if one is kept.
    pub audit_head: Option<String>,
    /// Event subscribers connected when the upgrade started (they are disconnected).
    pub subscribers: u32,
}

/// Why upgrade data was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeError(pub String);

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UpgradeError {}

/// The data as bytes: `sozu-upgrade-data <version>\n`, one line of JSON, then the
/// state bytes.
pub fn encode(data: &UpgradeData) -> Vec<u8> {
    let mut out = encode_header(data);
    out.extend_from_slice(&data.state);
    out
}

/// The bytes before the state (`encode(data)` is these, then `data.state`): a writer
/// holding the state elsewhere writes this and then its own bytes, without a copy.
pub fn encode_header(data: &UpgradeData) -> Vec<u8> {
    let mut out = format!("{MAGIC} {VERSION}\n").into_bytes();
    // compact JSON has no raw newline: strings escape theirs
    out.extend(serde_json::to_vec(data).expect("upgrade data is plain data"));
    out.push(b'\n');
    out
}

/// Parses and checks upgrade data: magic, version, and fds that are plausible (every fd
/// non-negative and none named twice).
pub fn decode(bytes: &[u8]) -> Result<UpgradeData, UpgradeError> {
    decode_owned(bytes.to_vec())
}

/// [`decode`], keeping the buffer as the state (no copy of the state bytes).
pub fn decode_owned(mut bytes: Vec<u8>) -> Result<UpgradeData, UpgradeError> {
    let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| UpgradeError("no header line".into()))?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| UpgradeError("header is not UTF-8".into()))?;
    let version = header
        .strip_prefix(MAGIC)
        .map(str::trim)
        .ok_or_else(|| UpgradeError(format!("not sozu upgrade data (header {header:?})")))?;
    if version != VERSION.to_string() {
        return Err(UpgradeError(format!("upgrade data version {version}, this binary reads version {VERSION}")));
    }
    let rest = &bytes[newline + 1..];
    let end = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| UpgradeError("bad upgrade data: no end of the JSON line".into()))?;
    let mut data: UpgradeData =
        serde_json::from_slice(&rest[..end]).map_err(|e| UpgradeError(format!("bad upgrade data: {e}")))?;
    bytes.drain(..newline + 1 + end + 1);
    data.state = bytes;
    let fds = data.fds();
    let mut sorted = fds.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != fds.len() || fds.iter().any(|fd| *fd < 0) {
        return Err(UpgradeError(format!("bad fd numbers in upgrade data: {fds:?}")));
    }
    Ok(data)
}

impl UpgradeData {
    /// Every fd the data names.
    pub fn fds(&self) -> Vec<i32> {
        let mut fds = vec![self.command_socket_fd];
        fds.extend(self.dashboard_fd);
        fds.extend(self.client_fd);
        fds.extend(self.listeners.iter().map(|l| l.fd));
        for w in &self.workers {
            fds.push(w.channel_fd);
            fds.push(w.scm_fd);
        }
        fds
    }
}

/// Clears `FD_CLOEXEC` on some fds for an exec, and restores each fd's flags when
/// dropped: if the exec happens the guard is never dropped (the process image is
/// replaced); if it fails, every flag is back as it was.
#[derive(Debug)]
pub struct KeptAcrossExec<'a> {
    saved: Vec<(BorrowedFd<'a>, FdFlag)>,
}

impl<'a> KeptAcrossExec<'a> {
    /// Clears `FD_CLOEXEC` on every fd of `fds`; on an error, the flags already changed
    /// are restored and the error returned.
    pub fn new(fds: impl IntoIterator<Item = BorrowedFd<'a>>) -> nix::Result<Self> {
        let mut guard = KeptAcrossExec { saved: Vec::new() };
        for fd in fds {
            let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD)?);
            fcntl(fd, FcntlArg::F_SETFD(flags - FdFlag::FD_CLOEXEC))?;
            guard.saved.push((fd, flags));
        }
        Ok(guard)
    }

    /// The raw numbers of the kept fds.
    pub fn raw(&self) -> Vec<i32> {
        self.saved.iter().map(|(fd, _)| fd.as_raw_fd()).collect()
    }
}

impl Drop for KeptAcrossExec<'_> {
    fn drop(&mut self) {
        for (fd, flags) in &self.saved {
            let _ = fcntl(*fd, FcntlArg::F_SETFD(*flags));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn sample() -> UpgradeData {
        UpgradeData {
            from_version: "0.1.0".into(),
            config_path: "/etc/sozu/config.toml".into(),
            config_text: "worker_count = 2\n".into(),
            state: b"\n\0raw \xff bytes\n".to_vec(),
            command_socket_fd: 3,
            dashboard_fd: Some(4),
            listeners: vec![ListenerHandover { protocol: "http".into(), address: "127.0.0.1:80".into(), fd: 5 }],
            workers: vec![WorkerHandover { id: 0, pid: 100, channel_fd: 6, scm_fd: 7, run_state: 0 }],
            client_fd: Some(8),
            next_worker_id: 2,
            next_task_id: 40,
            next_client_id: 9,
            boot_generation: 3,
            audit_head: Some("ab".into()),
            subscribers: 1,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let data = sample();
        assert_eq!(decode(&encode(&data)).unwrap(), data);
        let mut split = encode_header(&data);
        split.extend_from_slice(&data.state);
        assert_eq!(split, encode(&data));
        assert_eq!(decode_owned(split).unwrap(), data);
        assert_eq!(data.fds(), [3, 4, 8, 5, 6, 7]);
        let mut other = encode(&data);
        other[MAGIC.len() + 1] = b'9';
        assert!(decode(&other).unwrap_err().0.contains("version 9"));
        assert!(decode(b"sozu-upgrade-data 1\n{").unwrap_err().0.contains("bad upgrade data"));
        assert!(decode(b"sozu-upgrade-data 1\n{\n").unwrap_err().0.contains("bad upgrade data"));
        assert!(decode(b"hello\n{}").unwrap_err().0.contains("not sozu upgrade data"));
        let mut twice = sample();
        twice.client_fd = Some(3);
        assert!(decode(&encode(&twice)).unwrap_err().0.contains("bad fd numbers"));
        let mut negative = sample();
        negative.dashboard_fd = Some(-1);
        assert!(decode(&encode(&negative)).is_err());
    }

    #[test]
    fn flags_are_cleared_then_restored() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let cloexec = |fd: BorrowedFd<'_>| {
            FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC)
        };
        assert!(cloexec(a.as_fd()) && cloexec(b.as_fd()));
        {
            let guard = KeptAcrossExec::new([a.as_fd(), b.as_fd()]).unwrap();
            assert_eq!(guard.raw(), [a.as_raw_fd(), b.as_raw_fd()]);
            assert!(!cloexec(a.as_fd()) && !cloexec(b.as_fd()));
        }
        assert!(cloexec(a.as_fd()) && cloexec(b.as_fd()), "restored when the exec did not happen");
    }
}
