//! `LoadState`, staged: the file is read in slices between turns of the event loop,
//! each slice applied to a staged copy of the master state and streamed to every
//! worker inside a staged load (`StagedLoad` BEGIN … COMMIT/ABORT). Workers apply the
//! records to a copy of their state while the master is still reading, so the two
//! overlap, and the loop never stops for a whole file. Only when every record of the
//! file was applied by the master and acknowledged by every worker are all states
//! committed at once; any error aborts everywhere and changes nothing.

use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use audit::ErrorCode;
use mio::Token;
use slog::{info, warn};
use sozu_proto::request::RequestType as R;
use sozu_proto::{EventKind, Message, Request, Response, RunState, StagedLoad, StagedLoadStep, StagedRecordsEncoder};
use sozu_scm_socket::ListenerKind;
use sozu_state::{ConfigState, Loader};
use ulid::Ulid;

use super::batch::{Batch, BatchBuilder, Cursor};
use super::records::{Described, Pending, describe, request_sha};
use super::server::Master;
use super::tasks::TaskKind;

/// Records parsed per turn of the loop.
const SLICE: usize = 1000;

/// The most bytes of records sent to a worker in one `StagedRecords` request (a worker
/// answers each request once, not each record), and at most a quarter of
/// `max_command_buffer_size`, the largest frame a channel takes.
const CHUNK_BYTES: usize = 128 * 1024;

/// A `LoadState` in progress (at most one at a time).
pub(super) struct Loading {
    pub task: u64,
    pub path: PathBuf,
    /// Records sent to each worker.
    pub sent: usize,
    /// Requests (`StagedRecords` chunks) sent to each worker, which number their ids.
    requests: usize,
    pub phase: Phase,
    /// Listener sockets bound for this load (closed again if it does not commit).
    bound: Vec<(ListenerKind, SocketAddr)>,
    ulid: Ulid,
    described: Described,
    sha: String,
}

pub(super) enum Phase {
    /// Reading the file.
    Parsing(Box<Loader<BufReader<File>>>),
    /// Read and applied by the master: waiting for every worker's acknowledgements.
    Parsed(Box<ConfigState>),
    /// COMMIT or ABORT sent; the end of the task answers the client.
    Final { committed: bool, reason: Option<String> },
}

fn step(step: StagedLoadStep) -> Request {
    R::StagedLoad(StagedLoad { step: step as i32 }).into()
}

impl Master {
    /// Starts a `LoadState` of `path` for the client `token`.
    pub(super) fn load_state(&mut self, token: Token, request: &Request, path: &str) {
        let path = self.resolve(path);
        let sha = request_sha(request);
        let ulid = Ulid::new();
        let mut described = describe(request).expect("LoadState is described");
        described.target = format!("file:{}", path.display());
        let loader = match File::open(&path) {
            Ok(file) => {
                Loader::new(&self.state, BufReader::with_capacity(1 << 16, file), self.config.max_command_buffer_size)
            }
            Err(e) => {
                let reason =
                    format!("cannot load state from {}: cannot open it: {e}; nothing was changed", path.display());
                let _ = self.write_attempt(
                    Some(token),
                    ulid,
                    &described,
                    Err((ErrorCode::InvalidInput, reason.clone())),
                    &sha,
                );
                self.reply(token, Response::failure(reason));
                return;
            }
        };
        info!(self.log, "loading state from {}", path.display());
        self.reply(token, Response::processing(format!("Loading state from {}...", path.display())));
        let task = self.next_task_id;
        let pending = Pending { token: Some(token), request: ulid, described: described.clone(), sha: sha.clone() };
        self.loading = Some(Loading {
            task,
            path: path.clone(),
            sent: 0,
            requests: 0,
            phase: Phase::Parsing(Box::new(loader)),
            bound: Vec::new(),
            ulid,
            described,
            sha,
        });
        self.scatter(Some(token), TaskKind::LoadState, &[step(StagedLoadStep::StageBegin)], None, Some(pending));
    }

    /// Whether a client's request must wait for the load in progress to end: anything
    /// that changes the state, the workers or the master (queries are served).
    pub(super) fn waits_for_load(&self, request: &Request) -> bool {
        self.loading.is_some()
            && describe(request).is_some()
            && !matches!(request.request_type, Some(R::SaveState(_)) | Some(R::SubscribeEvents(_)))
    }

    /// Whether the load can read more now: it is reading, and every worker's queue went
    /// into its channel (whose buffer, at most `max_command_buffer_size`, bounds how far
    /// a worker lags behind the file).
    pub(super) fn load_wants_turn(&self) -> bool {
        let Some(loading) = &self.loading else { return false };
        if !matches!(loading.phase, Phase::Parsing(_)) {
            return false;
        }
        self.workers.values().all(|w| w.outbox.iter().map(Cursor::remaining).sum::<usize>() == 0)
    }

    /// One turn of the load: reads a slice of the file and streams it to the workers, in
    /// `StagedRecords` chunks of at most `CHUNK_BYTES`.
    pub(super) fn continue_loading(&mut self) {
        if !self.load_wants_turn() {
            return;
        }
        let chunk_max = CHUNK_BYTES.min(self.config.max_command_buffer_size / 4);
        let Some(loading) = self.loading.as_mut() else { return };
        let Phase::Parsing(loader) = &mut loading.phase else { return };
        let mut batch = BatchBuilder::default();
        let mut chunk = StagedRecordsEncoder::default();
        let mut listeners = Vec::new();
        let mut records = 0;
        let result = loader.step(SLICE, |r| {
            listeners.extend(super::listen::added(r));
            // a record larger than a chunk goes alone
            if !chunk.is_empty() && chunk.encoded_bytes() + r.encoded_len() > chunk_max {
                batch.push_staged(&mut chunk);
            }
            chunk.push(r);
            records += 1;
        });
        if !chunk.is_empty() {
            batch.push_staged(&mut chunk);
        }
        let task = loading.task;
        let base = loading.requests;
        let complete = match result {
            Ok(complete) => complete,
            Err(e) => {
                // nothing of this slice is bound or sent: the load aborts everywhere
                self.fail_loading(task, &e, ErrorCode::InvalidInput);
                return;
            }
        };
        // the sockets of new listeners, bound and handed to the workers before their
        // records; a failure to bind aborts the load
        for (kind, addr) in listeners {
            match self.bind_listener(kind, addr) {
                Ok(false) => {}
                Ok(true) => {
                    self.share_listener(kind, addr);
                    if let Some(l) = self.loading.as_mut() {
                        l.bound.push((kind, addr));
                    }
                }
                Err(e) => {
                    self.fail_loading(task, &e, ErrorCode::IoError);
                    return;
                }
            }
        }
        if let Some(l) = self.loading.as_mut() {
            l.sent += records;
            l.requests += batch.len();
        }
        self.send_to_task(task, batch.finish(), base);
        if !complete {
            return;
        }
        let Some(loading) = self.loading.as_mut() else { return };
        let Phase::Parsing(loader) =
            std::mem::replace(&mut loading.phase, Phase::Final { committed: false, reason: None })
        else {
            return;
        };
        loading.phase = Phase::Parsed(Box::new(loader.into_state()));
        let (ulid, d, sha) = (loading.ulid, loading.described.clone(), loading.sha.clone());
        let audited = self.write_attempt(Some(self.load_client(task)), ulid, &d, Ok(()), &sha);
        if audited.is_err() && self.config.audit_fail_closed {
            self.abort_loading("refused: the audit record cannot be written".into(), true);
        } else if self.tasks.get(&task).is_some_and(|t| t.outstanding.is_empty()) {
            // every record is acknowledged already: commit (finish_task holds)
            self.finish_task(task, false);
        }
    }

    /// The file cannot be loaded (`error`): the attempt is audited as failed and the
    /// load aborts everywhere.
    fn fail_loading(&mut self, task: u64, error: &dyn std::fmt::Display, code: ErrorCode) {
        let path = self.loading.as_ref().map(|l| l.path.display().to_string()).unwrap_or_default();
        let reason = format!("cannot load state from {path}: {error}; nothing was changed");
        if let Some(loading) = &self.loading {
            let (ulid, d, sha) = (loading.ulid, loading.described.clone(), loading.sha.clone());
            let client = self.load_client(task);
            let _ = self.write_attempt(Some(client), ulid, &d, Err((code, reason.clone())), &sha);
        }
        self.abort_loading(reason, false);
    }

    fn load_client(&self, task: u64) -> Token {
        self.tasks.get(&task).and_then(|t| t.client).unwrap_or(Token(usize::MAX))
    }

    /// Queues `batch` (request indexes from `base`) for every worker of the task still
    /// running, counting the answers it now waits for, and moves its deadline.
    fn send_to_task(&mut self, task_id: u64, batch: Batch, base: usize) {
        if batch.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        task.deadline = Some(Instant::now() + self.config.worker_timeout);
        let mut pumped = Vec::new();
        for id in task.asked.clone() {
            let Some(w) = self.workers.get_mut(&id) else { continue };
            if w.run_state != RunState::Running {
                continue;
            }
            *task.outstanding.entry(id).or_insert(0) += batch.len();
            w.outbox.push_back(Cursor::new(task_id, Arc::clone(&batch), base));
            pumped.push(id);
        }
        for id in pumped {
            self.pump_worker(id);
        }
    }

    /// Called when the task has no answer outstanding. Returns true when the task goes
    /// on (more to read, or COMMIT/ABORT just sent), false when it is over.
    pub(super) fn load_holds(&mut self, task_id: u64) -> bool {
        let Some(loading) = &self.loading else { return false };
        if loading.task != task_id {
            return false;
        }
        match loading.phase {
            Phase::Parsing(_) => true,
            Phase::Parsed(_) => {
                self.load_checkpoint(task_id);
                self.tasks.get(&task_id).is_some_and(|t| !t.outstanding.is_empty())
            }
            Phase::Final { .. } => false,
        }
    }

    /// The file is read: once every worker acknowledged every record, commit everywhere
    /// (or abort when a worker failed one).
    fn load_checkpoint(&mut self, task_id: u64) {
        let Some(task) = self.tasks.get(&task_id) else { return };
        if !task.outstanding.is_empty() {
            return;
        }
        let asked = task.asked.clone();
        if !task.failures.is_empty() {
            let failed: Vec<String> = task.failures.iter().map(|(w, m)| format!("{w}: {m}")).collect();
            let path = self.loading.as_ref().map(|l| l.path.display().to_string()).unwrap_or_default();
            let reason = format!("loading state {path} failed on workers ({}); nothing was changed", failed.join(", "));
            self.abort_loading(reason, false);
            return;
        }
        let Some(loading) = self.loading.as_mut() else { return };
        let Phase::Parsed(staged) =
            std::mem::replace(&mut loading.phase, Phase::Final { committed: true, reason: None })
        else {
            return;
        };
        let old = std::mem::replace(&mut *self.state, *staged);
        let sent = loading.sent;
        self.state_changed();
        info!(self.log, "state loaded: {sent} records committed on the master and every worker");
        self.emit(EventKind::StateLoaded, None);
        self.send_to_task(task_id, Batch::of(&[step(StagedLoadStep::StageCommit)]), 0);
        // a worker started during the load booted with the old state: send it the difference
        let others: Vec<u32> = self
            .workers
            .iter()
            .filter(|(id, w)| w.run_state == RunState::Running && !asked.contains(id))
            .map(|(id, _)| *id)
            .collect();
        if !others.is_empty() {
            let diff = old.diff(&self.state);
            for id in others {
                self.scatter(None, TaskKind::Fanout, &diff, Some(id), None);
            }
        }
    }

    /// Ends the load without changing anything: ABORT to every worker of the task.
    /// `audited`: the attempt record was written Ok (the completion record says why it
    /// failed); otherwise the attempt record already carries the failure.
    pub(super) fn abort_loading(&mut self, reason: String, audited: bool) {
        let Some(loading) = self.loading.as_mut() else { return };
        if matches!(loading.phase, Phase::Final { .. }) {
            return;
        }
        warn!(self.log, "{reason}");
        loading.phase = Phase::Final { committed: false, reason: Some(reason) };
        let task_id = loading.task;
        if let Some(task) = self.tasks.get_mut(&task_id)
            && !audited
        {
            task.audit = None;
        }
        self.send_to_task(task_id, Batch::of(&[step(StagedLoadStep::StageAbort)]), 0);
        if self.tasks.get(&task_id).is_some_and(|t| t.outstanding.is_empty()) {
            self.finish_task(task_id, false);
        }
    }

    /// The client's answer when the load's task ends (and the load is over).
    pub(super) fn end_loading(&mut self, task_id: u64, timed_out: bool, failed: &[String], asked: usize) -> Response {
        let loading = match self.loading.take() {
            Some(l) if l.task == task_id => l,
            other => {
                self.loading = other;
                return Response::failure("the load ended unexpectedly; nothing was changed");
            }
        };
        if !matches!(loading.phase, Phase::Final { committed: true, .. }) {
            for (kind, addr) in &loading.bound {
                self.unbind(*kind, *addr);
            }
        }
        let path = loading.path.display();
        match loading.phase {
            Phase::Final { committed: true, .. } if failed.is_empty() => Response::ok(
                format!("Successfully loaded state from path {path}, {} ok messages, 0 errors", loading.sent * asked),
                None,
            ),
            Phase::Final { committed: true, .. } => Response::failure(format!(
                "loading state {path}: committed on the master, the commit failed on workers: {}",
                failed.join(", ")
            )),
            Phase::Final { committed: false, reason } => {
                Response::failure(reason.unwrap_or_else(|| format!("loading state {path} failed; nothing was changed")))
            }
            Phase::Parsing(_) | Phase::Parsed(_) => {
                // the deadline passed before the commit: abort wherever it was staged
                let abort = Batch::of(&[step(StagedLoadStep::StageAbort)]);
                let abort = Arc::new(abort);
                let workers: Vec<u32> = self.workers.keys().copied().collect();
                for id in workers {
                    if let Some(w) = self.workers.get_mut(&id) {
                        w.outbox.push_back(Cursor::new(u64::MAX, Arc::clone(&abort), 0));
                    }
                    self.pump_worker(id);
                }
                let why = if timed_out { "workers did not answer in time" } else { "workers failed" };
                Response::failure(format!("loading state {path}: {why} ({}); nothing was changed", failed.join(", ")))
            }
        }
    }
}
