//! Sōzu 2.x state files: compact JSON `WorkerRequest` records, each followed by `\n\0`,
//! ids `SAVE-<n>`.
//!
//! Files we write start with one extra record, a header that Sōzu 2.x applies as a
//! harmless `Status`: `{"id":"SAVE-HEADER records=<n>","content":{"request_type":{"STATUS":{}}}}`.
//! Sōzu's format has no header or trailer, so a file cut exactly at a record boundary
//! would otherwise look like a shorter valid file; with the header, every truncation
//! is detected. Files without a header (Sōzu's own) load as before.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sozu_proto::Request;

use crate::loader::Loader;
use crate::state::ConfigState;

/// Id prefix of the header record.
pub(crate) const HEADER: &str = "SAVE-HEADER records=";

/// Writes the header record then `requests` as state-file records. Returns the number
/// of requests written.
pub fn save(writer: &mut impl Write, requests: &[Request]) -> io::Result<usize> {
    write!(
        writer,
        "{{\"id\":\"{HEADER}{}\",\"content\":{{\"request_type\":{{\"STATUS\":{{}}}}}}}}\n\0",
        requests.len()
    )?;
    save_records(writer, requests)
}

/// Writes `requests` exactly as Sōzu 2.x does, with no header record.
pub fn save_records(writer: &mut impl Write, requests: &[Request]) -> io::Result<usize> {
    for (index, request) in requests.iter().enumerate() {
        write_record(writer, index, request)?;
    }
    Ok(requests.len())
}

/// One record: byte for byte what serde_json writes for `WorkerRequest{id, content}`,
/// without building one.
fn write_record(writer: &mut impl Write, index: usize, request: &Request) -> io::Result<()> {
    writer.write_all(b"{\"id\":\"SAVE-")?;
    writer.write_all(index.to_string().as_bytes())?;
    writer.write_all(b"\",\"content\":")?;
    serde_json::to_writer(&mut *writer, request).map_err(io::Error::other)?;
    writer.write_all(b"}\n\0")
}

/// Writes the whole `state` (header, then its requests in
/// [`generate_requests`](ConfigState::generate_requests) order), generating one
/// request at a time. Returns the number of requests written.
pub fn save_state(writer: &mut impl Write, state: &ConfigState) -> io::Result<usize> {
    let count = state.request_count();
    write!(writer, "{{\"id\":\"{HEADER}{count}\",\"content\":{{\"request_type\":{{\"STATUS\":{{}}}}}}}}\n\0")?;
    let mut index = 0;
    let mut result = Ok(());
    state.visit_requests(|request| {
        if result.is_ok() {
            result = write_record(writer, index, &request);
            index += 1;
        }
    });
    result.map(|()| count)
}

/// Saves `state` to `path` atomically: a temp file in the same directory (mode
/// 0600: state files hold TLS keys), fsync, rename over `path`, fsync of the directory.
/// A crash at any point leaves the old file or the new one, never a torn one.
pub fn save_atomic(path: &Path, state: &ConfigState) -> io::Result<usize> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let tmp = dir.join(format!(".{}.tmp-{}-{nanos}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        let count = save_state(&mut writer, state)?;
        let file = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()?;
        Ok(count)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `path` made absolute against `base` (the configuration file's directory) when it
/// is relative, with `.` and `..` resolved lexically.
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Why a state file was not loaded. Nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// Index of the first bad record (0-based).
    pub index: usize,
    /// Byte offset of that record in the file.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state file record {} (byte offset {}): {}", self.index, self.offset, self.reason)
    }
}

impl std::error::Error for LoadError {}

/// A state file parsed and applied to a staged copy of the state.
#[derive(Debug)]
pub struct Loaded {
    /// The staged state with every record applied: commit it by replacing the old one.
    pub state: ConfigState,
    /// The records that changed the state, in file order, to fan out to workers.
    pub requests: Vec<Request>,
}

/// Reads a state file from `reader` and applies it to a copy of `state`. A record that
/// adds exactly what the state already holds (the same listener, frontend or
/// certificate) is skipped; a conflicting one is an error.
/// All-or-nothing: any unparseable or inapplicable record, a record over
/// `max_record` bytes, a missing final `\n\0` or bytes after it, is an error naming the
/// record, and `state` is untouched. Memory is bounded by `max_record` plus one read.
pub fn load(state: &ConfigState, reader: impl Read, max_record: usize) -> Result<Loaded, LoadError> {
    let mut requests = Vec::new();
    let state = load_each(state, reader, max_record, |r| requests.push(r.clone()))?;
    Ok(Loaded { state, requests })
}

/// [`load`], handing each record that changes the staged state to `each` (just before
/// it is applied) instead of collecting them: a caller that encodes them for workers at
/// once never holds them all as structs. `each` may have been called when an error is
/// returned, with the failing record too: the caller must discard what it got then, as
/// the state is not committed.
pub fn load_each(
    state: &ConfigState,
    reader: impl Read,
    max_record: usize,
    mut each: impl FnMut(&Request),
) -> Result<ConfigState, LoadError> {
    let mut loader = Loader::new(state, reader, max_record);
    while !loader.step(usize::MAX, &mut each)? {}
    Ok(loader.into_state())
}

/// [`load`] from the file at `path`.
pub fn load_file(state: &ConfigState, path: &Path, max_record: usize) -> Result<Loaded, LoadError> {
    load(state, open(path)?, max_record)
}

/// [`load_each`] from the file at `path`.
pub fn load_file_each(
    state: &ConfigState,
    path: &Path,
    max_record: usize,
    each: impl FnMut(&Request),
) -> Result<ConfigState, LoadError> {
    load_each(state, open(path)?, max_record, each)
}

fn open(path: &Path) -> Result<io::BufReader<File>, LoadError> {
    let file = File::open(path).map_err(|e| LoadError {
        index: 0,
        offset: 0,
        reason: format!("cannot open {}: {e}", path.display()),
    })?;
    Ok(io::BufReader::with_capacity(1 << 16, file))
}
