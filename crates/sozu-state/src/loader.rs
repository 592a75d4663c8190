//! Reading a state file a few records at a time, so that a caller running an event
//! loop can load a large file in slices without ever blocking for the whole of it.

use std::io::{self, Read};

use sozu_proto::{Request, WorkerRequest};

use crate::file::{HEADER, LoadError};
use crate::state::ConfigState;

/// Size of one read from the file.
const CHUNK: usize = 64 * 1024;

/// A state file being applied to a staged copy of a state, by slices of records.
///
/// [`step`](Loader::step) parses and applies up to a given number of records; once it
/// returns `Ok(true)` the file was read to its end and [`into_state`](Loader::into_state)
/// gives the staged state. The rules are those of [`load`](crate::load): all or
/// nothing, records already present are skipped, a record over `max_record` bytes, a
/// truncated file or trailing bytes are errors naming the record. Memory is bounded by
/// `max_record` plus one read.
///
/// ```
/// use sozu_state::{ConfigState, Loader};
///
/// let file = b"{\"id\":\"SAVE-0\",\"content\":{\"request_type\":{\"REMOVE_CLUSTER\":\"a\"}}}\n\0";
/// let mut loader = Loader::new(&ConfigState::new(), &file[..], 1 << 20);
/// // removing a cluster that does not exist is refused: nothing was changed
/// let err = loader.step(100, |_| {}).unwrap_err();
/// assert_eq!(err.index, 0);
/// ```
pub struct Loader<R> {
    reader: R,
    staged: ConfigState,
    max_record: usize,
    buf: Vec<u8>,
    chunk: Vec<u8>,
    /// File offset of `buf[0]`.
    base: u64,
    /// Start of the first record not yet parsed, in `buf`.
    start: usize,
    /// Bytes of `buf` already searched for a record end.
    scanned: usize,
    index: usize,
    declared: Option<usize>,
    /// Records after the header, applied or already there.
    seen: usize,
}

impl<R> std::fmt::Debug for Loader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").field("index", &self.index).field("offset", &self.base).finish_non_exhaustive()
    }
}

impl<R: Read> Loader<R> {
    /// Starts loading `reader` onto a copy of `state`.
    pub fn new(state: &ConfigState, reader: R, max_record: usize) -> Self {
        Loader {
            reader,
            staged: state.clone(),
            max_record,
            buf: Vec::with_capacity(CHUNK),
            chunk: vec![0; CHUNK],
            base: 0,
            start: 0,
            scanned: 0,
            index: 0,
            declared: None,
            seen: 0,
        }
    }

    /// Records read so far (header and skipped records included).
    pub fn records_read(&self) -> usize {
        self.index
    }

    /// Parses and applies up to `max` records, handing each one that changes the staged
    /// state to `each` (just before it is applied). `Ok(true)`: the file is complete;
    /// `Ok(false)`: call again. After an error the loader must be dropped, and what
    /// `each` got discarded: the record that failed was handed to it too.
    pub fn step(&mut self, max: usize, mut each: impl FnMut(&Request)) -> Result<bool, LoadError> {
        let mut done = 0;
        loop {
            while done < max {
                let Some(pos) = memchr::memchr(0, &self.buf[self.scanned..]) else { break };
                let end = self.scanned + pos;
                self.record(end, &mut each)?;
                self.start = end + 1;
                self.scanned = self.start;
                self.index += 1;
                done += 1;
            }
            if done >= max {
                return Ok(false);
            }
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
            self.scanned = self.buf.len();
            if self.buf.len() > self.max_record {
                return Err(too_large(self.index, self.base, self.max_record));
            }
            let n = loop {
                match self.reader.read(&mut self.chunk) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.error(format!("read error: {e}"))),
                }
            };
            if n == 0 {
                return self.at_end().map(|()| true);
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }

    /// The staged state, with every record applied (once `step` returned `Ok(true)`).
    pub fn into_state(self) -> ConfigState {
        self.staged
    }

    fn error(&self, reason: String) -> LoadError {
        LoadError { index: self.index, offset: self.base + self.start as u64, reason }
    }

    /// Parses and applies the record `buf[start..end]`.
    fn record(&mut self, end: usize, each: &mut impl FnMut(&Request)) -> Result<(), LoadError> {
        let record = &self.buf[self.start..end];
        let offset = self.base + self.start as u64;
        if record.len() > self.max_record {
            return Err(too_large(self.index, offset, self.max_record));
        }
        // One UTF-8 check of the whole record, then parsing from `str`: serde_json
        // skips its per-string check (about a tenth of a load's parse time).
        let text = std::str::from_utf8(record).map_err(|e| LoadError {
            index: self.index,
            offset,
            reason: format!("not a valid record: invalid UTF-8 at byte {}", e.valid_up_to()),
        })?;
        let parsed: WorkerRequest = serde_json::from_str(text).map_err(|e| LoadError {
            index: self.index,
            offset,
            reason: format!("not a valid record: {e}"),
        })?;
        if offset == 0
            && let Some(count) = parsed.id.strip_prefix(HEADER)
        {
            let count =
                count.parse().map_err(|_| LoadError { index: self.index, offset, reason: "bad header".into() })?;
            self.declared = Some(count);
            return Ok(());
        }
        if self.declared.is_some_and(|count| self.seen >= count) {
            return Err(LoadError {
                index: self.index,
                offset,
                reason: "more records than the header declares".into(),
            });
        }
        self.seen += 1;
        if self.staged.already_applied(&parsed.content) {
            // an identical listener or frontend is already there: nothing to do
            return Ok(());
        }
        each(&parsed.content);
        let name = sozu_proto::request_name(&parsed.content);
        self.staged.dispatch_owned(parsed.content).map_err(|e| LoadError {
            index: self.index,
            offset,
            reason: format!("{name} cannot be applied: {e}"),
        })?;
        Ok(())
    }

    /// End of file: complete, or truncated.
    fn at_end(&self) -> Result<(), LoadError> {
        if self.buf.is_empty() {
            return match self.declared {
                Some(count) if count != self.seen => Err(self.error(format!(
                    "the header declares {count} records but the file ends after {} (truncated file)",
                    self.seen
                ))),
                _ => Ok(()),
            };
        }
        let reason = if serde_json::from_slice::<WorkerRequest>(&self.buf).is_ok() {
            "the last record is not terminated by \\n\\0 (truncated file?)".to_string()
        } else {
            format!("{} bytes of trailing data after the last record (truncated or corrupt)", self.buf.len())
        };
        Err(self.error(reason))
    }
}

fn too_large(index: usize, offset: u64, max: usize) -> LoadError {
    LoadError { index, offset, reason: format!("record is larger than the maximum of {max} bytes") }
}

#[cfg(test)]
mod tests {
    use sozu_proto::request::RequestType as R;
    use sozu_proto::{AddBackend, Cluster};

    use super::*;

    fn file(n: usize) -> (ConfigState, Vec<u8>) {
        let mut state = ConfigState::new();
        for i in 0..n {
            let id = format!("c{i}");
            state
                .dispatch(&R::AddCluster(Box::new(Cluster { cluster_id: id.clone(), ..Default::default() })).into())
                .unwrap();
            let backend = AddBackend {
                cluster_id: id.clone(),
                backend_id: format!("{id}-b"),
                address: std::net::SocketAddr::from(([127, 0, 0, 1], 9000)).into(),
                ..Default::default()
            };
            state.dispatch(&R::AddBackend(backend).into()).unwrap();
        }
        let mut bytes = Vec::new();
        crate::save_state(&mut bytes, &state).unwrap();
        (state, bytes)
    }

    #[test]
    fn slices_give_the_same_state_as_one_pass() {
        let (state, bytes) = file(50);
        for slice in [1, 7, 1000] {
            let mut loader = Loader::new(&ConfigState::new(), bytes.as_slice(), 1 << 20);
            let mut handed = 0;
            let mut steps = 0;
            while !loader.step(slice, |_| handed += 1).unwrap() {
                steps += 1;
                assert!(steps < 1000, "no progress");
            }
            assert_eq!(handed, 100);
            assert!(steps >= 100 / slice, "slices of {slice} took {steps} steps");
            assert_eq!(loader.records_read(), 101, "header + 100 records");
            assert_eq!(loader.into_state(), state);
        }
    }

    #[test]
    fn a_truncated_file_fails_on_the_last_step_only() {
        let (_, bytes) = file(10);
        let cut = &bytes[..bytes.len() - 30];
        let mut loader = Loader::new(&ConfigState::new(), cut, 1 << 20);
        let mut results = Vec::new();
        loop {
            let r = loader.step(3, |_| {});
            let stop = !matches!(r, Ok(false));
            results.push(r);
            if stop {
                break;
            }
        }
        let last = results.pop().unwrap();
        assert!(results.iter().all(|r| r == &Ok(false)));
        let err = last.unwrap_err();
        assert!(err.reason.contains("truncated"), "{err}");
    }
}
