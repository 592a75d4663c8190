//! Where records go: line writers, the text and JSON sinks, and the fail policy.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::chain::{GENESIS, seal};
use crate::entry::AuditEntry;
use crate::json::json_value;
use crate::text::render_text;

/// Something that takes whole lines. Each call must write the line and its `\n` in
/// one piece (one `write` on an `O_APPEND` file), so concurrent writers never
/// interleave inside a line.
pub trait LineWriter {
    /// Writes `line` followed by `\n`.
    fn write_line(&mut self, line: &str) -> io::Result<()>;
}

impl<L: LineWriter + ?Sized> LineWriter for Box<L> {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        (**self).write_line(line)
    }
}

/// A [`LineWriter`] over any `Write` (a `Vec<u8>`, stderr, a socket).
#[derive(Debug)]
pub struct WriterSink<W>(pub W);

impl<W: Write> LineWriter for WriterSink<W> {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.0.write_all(&buf)?;
        self.0.flush()
    }
}

/// When a file sink calls `fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Never (the OS writes back when it likes).
    Never,
    /// After every record.
    Always,
    /// After every n-th record.
    Every(u32),
}

/// An append-only audit file: `O_APPEND | O_CREAT`, mode 0640.
#[derive(Debug)]
pub struct FileSink {
    file: File,
    path: PathBuf,
    fsync: Fsync,
    unsynced: u32,
}

impl FileSink {
    /// Opens (creating it and its missing parents, mode 0750) the file at `path`. An
    /// existing file with any permission bit outside 0640 is narrowed to 0640; the
    /// second value then says so, for the caller to log.
    pub fn open(path: impl AsRef<Path>, fsync: Fsync) -> io::Result<(Self, Option<String>)> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            fs::DirBuilder::new().recursive(true).mode(0o750).create(parent)?;
        }
        let file = OpenOptions::new().append(true).create(true).mode(0o640).open(path)?;
        let mode = file.metadata()?.permissions().mode() & 0o7777;
        let mut notice = None;
        if mode & !0o640 != 0 {
            file.set_permissions(fs::Permissions::from_mode(0o640))?;
            notice = Some(format!("audit file {} had mode {mode:04o}, narrowed to 0640", path.display()));
        }
        Ok((Self { file, path: path.to_path_buf(), fsync, unsynced: 0 }, notice))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl LineWriter for FileSink {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.unsynced += 1;
        let sync = match self.fsync {
            Fsync::Never => false,
            Fsync::Always => true,
            Fsync::Every(n) => self.unsynced >= n.max(1),
        };
        if sync {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(())
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if self.unsynced > 0 && self.fsync != Fsync::Never {
            let _ = self.file.sync_data();
        }
    }
}

/// Text lines in Sōzu's layout.
#[derive(Debug)]
pub struct TextSink<W> {
    writer: W,
}

impl<W: LineWriter> TextSink<W> {
    /// A text sink over `writer`.
    pub fn new(writer: W) -> Self {
        Self { writer }
    }

    /// Writes one line for `entry`.
    pub fn record(&mut self, entry: &AuditEntry) -> io::Result<()> {
        self.writer.write_line(&render_text(entry))
    }

    /// The writer.
    pub fn writer(&self) -> &W {
        &self.writer
    }
}

/// JSON lines, hash-chained.
#[derive(Debug)]
pub struct JsonSink<W> {
    writer: W,
    prev: String,
}

impl<W: LineWriter> JsonSink<W> {
    /// A sink starting a new chain at [`GENESIS`].
    pub fn new(writer: W) -> Self {
        Self::resume(writer, GENESIS.to_string())
    }

    /// A sink continuing a chain whose last digest is `prev`.
    pub fn resume(writer: W, prev: String) -> Self {
        Self { writer, prev }
    }

    /// Writes one chained line for `entry`. On error the chain head does not move.
    pub fn record(&mut self, entry: &AuditEntry) -> io::Result<()> {
        let (line, digest) = seal(json_value(entry), &self.prev);
        self.writer.write_line(&line)?;
        self.prev = digest;
        Ok(())
    }

    /// Digest of the last record written (the chain head).
    pub fn head(&self) -> &str {
        &self.prev
    }

    /// The writer.
    pub fn writer(&self) -> &W {
        &self.writer
    }
}

impl JsonSink<FileSink> {
    /// Opens `path` like [`FileSink::open`] and continues the chain from its last
    /// record (a new or empty file starts at [`GENESIS`]). A last line that is not a
    /// sealed record is refused: the caller decides (verify, or move the file away).
    pub fn open_file(path: impl AsRef<Path>, fsync: Fsync) -> io::Result<(Self, Option<String>)> {
        let prev = last_digest(path.as_ref())?;
        let (file, notice) = FileSink::open(path, fsync)?;
        Ok((Self::resume(file, prev), notice))
    }
}

/// The `digest` of the last line of an existing JSON audit file, [`GENESIS`] if the
/// file is missing or empty.
fn last_digest(path: &Path) -> io::Result<String> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(GENESIS.to_string()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(GENESIS.to_string());
    }
    // read the tail only: records are far smaller than 1 MiB
    let start = len.saturating_sub(1 << 20);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let last = BufReader::new(&tail[..]).split(b'\n').filter_map(Result::ok).filter(|l| !l.is_empty()).last();
    let digest = last
        .and_then(|l| serde_json::from_slice::<serde_json::Value>(&l).ok())
        .and_then(|v| v.get("digest").and_then(|d| d.as_str()).map(str::to_string));
    digest.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: last line is not a sealed audit record; run verify", path.display()),
        )
    })
}

/// What to do when a sink fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPolicy {
    /// Count the failure and carry on (Sōzu's behaviour).
    Open,
    /// Return the error, so the caller can refuse an action it cannot record.
    Closed,
}

/// A sink failed under [`FailPolicy::Closed`].
#[derive(Debug)]
pub struct AuditError {
    /// Which sink: `text` or `json`.
    pub sink: &'static str,
    /// The failure.
    pub error: io::Error,
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit {} sink failed: {}", self.sink, self.error)
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The text and JSON sinks together, with a fail policy.
pub struct AuditLog {
    text: Option<TextSink<Box<dyn LineWriter + Send>>>,
    json: Option<JsonSink<Box<dyn LineWriter + Send>>>,
    policy: FailPolicy,
    failures: u64,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("text", &self.text.is_some())
            .field("json", &self.json.is_some())
            .field("policy", &self.policy)
            .field("failures", &self.failures)
            .finish()
    }
}

impl AuditLog {
    /// A log with no sink (records go nowhere) and the given policy.
    pub fn new(policy: FailPolicy) -> Self {
        Self { text: None, json: None, policy, failures: 0 }
    }

    /// Adds the text sink.
    pub fn with_text(mut self, writer: impl LineWriter + Send + 'static) -> Self {
        self.text = Some(TextSink::new(Box::new(writer)));
        self
    }

    /// Adds the JSON sink, continuing the chain after `prev` ([`GENESIS`] for a new one).
    pub fn with_json(mut self, writer: impl LineWriter + Send + 'static, prev: String) -> Self {
        self.json = Some(JsonSink::resume(Box::new(writer), prev));
        self
    }

    /// Adds an already opened JSON sink (for example [`JsonSink::open_file`], which
    /// continues the chain of an existing file).
    pub fn with_json_sink(mut self, sink: JsonSink<impl LineWriter + Send + 'static>) -> Self {
        self.json = Some(JsonSink::resume(Box::new(sink.writer), sink.prev));
        self
    }

    /// Records `entry` in every sink. Under [`FailPolicy::Closed`] the first failure
    /// is returned; under [`FailPolicy::Open`] it is counted and `Ok` returned.
    pub fn record(&mut self, entry: &AuditEntry) -> Result<(), AuditError> {
        let mut first = None;
        if let Some(Err(error)) = self.text.as_mut().map(|t| t.record(entry)) {
            first.get_or_insert(AuditError { sink: "text", error });
        }
        if let Some(Err(error)) = self.json.as_mut().map(|j| j.record(entry)) {
            first.get_or_insert(AuditError { sink: "json", error });
        }
        match first {
            None => Ok(()),
            Some(e) => {
                self.failures += 1;
                match self.policy {
                    FailPolicy::Open => Ok(()),
                    FailPolicy::Closed => Err(e),
                }
            }
        }
    }

    /// Failed records so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The JSON chain head, if there is a JSON sink.
    pub fn chain_head(&self) -> Option<&str> {
        self.json.as_ref().map(JsonSink::head)
    }
}
