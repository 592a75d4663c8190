//! Tasks: requests sent to workers and the answers gathered for them.
//!
//! Every task has a deadline that moves with progress (`worker_timeout` after the
//! last answer), so a dead or wedged worker never holds a client forever, and a
//! timed-out worker is reported as timed out, never as a success.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::time::Instant;

use mio::Token;
use slog::{debug, info, warn};
use sozu_proto::response_content::ContentType;
use sozu_proto::{
    Request, Response, ResponseContent, ResponseStatus, RunState, WorkerInfo, WorkerInfos, WorkerResponse,
    WorkerResponses,
};

use super::batch::{Batch, Cursor};
use super::records::Pending;
use super::server::{Master, Stopping};

/// What a task is for, and so how it ends.
pub(super) enum TaskKind {
    /// A mutating verb already applied to the master state.
    Fanout,
    /// `Status`.
    Status,
    /// A query answered by every worker plus the master (`"main"`).
    Query { main: Option<ResponseContent> },
    /// `QueryMetrics`: every worker's metrics, aggregated, then as the options ask.
    Metrics(Box<sozu_proto::QueryMetricsOptions>),
    /// `LoadState`, staged on every worker (see `loading.rs`).
    LoadState,
    /// A configuration reload: the difference fanned out.
    Reload { summary: String },
    /// `SoftStop` / `HardStop`.
    Stop { hard: bool },
    /// The first `Status` of workers at boot: readiness.
    Boot,
    /// The first `Status` of a relaunched worker.
    Relaunch,
    /// Worker upgrade, phase 1: the new worker's first answer.
    UpgradeBoot { old: u32, new: u32 },
    /// Worker upgrade, phase 2: the old worker drains.
    UpgradeDrain { old: u32, new: u32 },
    /// A periodic `Status` to one worker, to detect a hung one.
    HealthCheck { worker: u32 },
}

/// A request in progress on workers.
pub(super) struct Task {
    pub client: Option<Token>,
    pub kind: TaskKind,
    /// Answers still expected, by worker.
    pub outstanding: HashMap<u32, usize>,
    /// Workers asked.
    pub asked: Vec<u32>,
    /// Last content each worker answered with.
    pub contents: BTreeMap<u32, Option<ResponseContent>>,
    /// First failure of each worker.
    pub failures: BTreeMap<u32, String>,
    /// Messages of OK answers (a draining worker's remaining connections).
    pub notes: BTreeMap<u32, String>,
    pub deadline: Option<Instant>,
    pub started: Instant,
    /// Audit completion record to write when the task ends.
    pub audit: Option<Pending>,
}

impl Master {
    /// Sends `requests` to every running worker (or only `only`) as one task.
    pub(super) fn scatter(
        &mut self,
        client: Option<Token>,
        kind: TaskKind,
        requests: &[Request],
        only: Option<u32>,
        audit: Option<Pending>,
    ) -> u64 {
        self.scatter_batch(client, kind, Batch::of(requests), only, audit)
    }

    /// [`scatter`](Self::scatter) of requests already encoded in a batch, which every
    /// worker's queue shares.
    pub(super) fn scatter_batch(
        &mut self,
        client: Option<Token>,
        kind: TaskKind,
        batch: Batch,
        only: Option<u32>,
        audit: Option<Pending>,
    ) -> u64 {
        let task_id = self.next_task_id;
        self.next_task_id += 1;
        let now = Instant::now();
        let mut task = Task {
            client,
            kind,
            outstanding: HashMap::new(),
            asked: Vec::new(),
            contents: BTreeMap::new(),
            failures: BTreeMap::new(),
            notes: BTreeMap::new(),
            deadline: Some(now + self.config.worker_timeout),
            started: now,
            audit,
        };
        let batch = Arc::new(batch);
        let ids: Vec<u32> = self
            .workers
            .iter()
            .filter(|(id, w)| {
                // a status also asks draining workers how many connections they have left
                let draining = matches!(task.kind, TaskKind::Status) && w.run_state == RunState::Stopping;
                (w.run_state == RunState::Running || draining) && only.is_none_or(|o| o == **id)
            })
            .map(|(id, _)| *id)
            .collect();
        task.asked.clone_from(&ids);
        if !batch.is_empty() {
            task.outstanding.extend(ids.iter().map(|&id| (id, batch.len())));
        }
        // the task is whole and known before any worker is written to: a worker found
        // dead by that write (its answers routed, its share failed) or a request
        // refused at once must find the task, and the client busy with it
        if let Some(c) = client.and_then(|token| self.clients.get_mut(&token)) {
            c.busy = Some(task_id);
        }
        self.tasks.insert(task_id, task);
        if !batch.is_empty() {
            for worker_id in ids {
                if let Some(w) = self.workers.get_mut(&worker_id) {
                    w.outbox.push_back(Cursor::new(task_id, Arc::clone(&batch), 0));
                }
                self.pump_worker(worker_id);
            }
        }
        if self.tasks.get(&task_id).is_some_and(|t| t.outstanding.is_empty()) {
            self.finish_task(task_id, false);
        }
        task_id
    }

    /// Routes a worker's answer to its task.
    pub(super) fn worker_answer(&mut self, worker_id: u32, response: WorkerResponse) {
        if ResponseStatus::try_from(response.status) == Ok(ResponseStatus::Processing) {
            return;
        }
        let task_id =
            task_of(&response.id).filter(|t| self.tasks.get(t).is_some_and(|t| t.outstanding.contains_key(&worker_id)));
        let Some(task_id) = task_id else {
            if let Some(ContentType::Event(event)) = response.content.as_ref().and_then(|c| c.content_type.clone()) {
                self.forward_event(&worker_id.to_string(), event);
            } else {
                debug!(self.log, "worker {worker_id}: answer to a request no task waits for: {}", response.id);
            }
            return;
        };
        let worker_timeout = self.config.worker_timeout;
        let Some(task) = self.tasks.get_mut(&task_id) else { return };
        if !matches!(task.kind, TaskKind::Stop { .. } | TaskKind::UpgradeDrain { .. }) {
            // progress moves the deadline, except the drain deadline of a stop
            task.deadline = Some(Instant::now() + worker_timeout);
        }
        if ResponseStatus::try_from(response.status) == Ok(ResponseStatus::Ok) {
            if !response.message.is_empty() {
                task.notes.insert(worker_id, response.message);
            }
            task.contents.insert(worker_id, response.content);
        } else {
            task.failures.entry(worker_id).or_insert(response.message);
        }
        if let Some(n) = task.outstanding.get_mut(&worker_id) {
            *n -= 1;
            if *n == 0 {
                task.outstanding.remove(&worker_id);
            }
        }
        if task.outstanding.is_empty() {
            self.finish_task(task_id, false);
        }
    }

    /// A worker is gone: its share of every task is "worker died", at once.
    pub(super) fn fail_worker_tasks(&mut self, worker_id: u32) {
        let done: Vec<u64> = self
            .tasks
            .iter_mut()
            .filter_map(|(id, task)| {
                task.outstanding.remove(&worker_id)?;
                task.failures.entry(worker_id).or_insert_with(|| "worker died".into());
                task.outstanding.is_empty().then_some(*id)
            })
            .collect();
        for id in done {
            self.finish_task(id, false);
        }
    }

    /// Ends every task past its deadline.
    pub(super) fn expire_tasks(&mut self, now: Instant) {
        let expired: Vec<u64> =
            self.tasks.iter().filter(|(_, t)| t.deadline.is_some_and(|d| d <= now)).map(|(id, _)| *id).collect();
        for id in expired {
            self.finish_task(id, true);
        }
    }

    /// Ends a task: builds the terminal answer, audits, frees the client.
    pub(super) fn finish_task(&mut self, task_id: u64, timed_out: bool) {
        if !timed_out && self.load_holds(task_id) {
            return;
        }
        let Some(mut task) = self.tasks.remove(&task_id) else { return };
        let secs = self.config.worker_timeout.as_secs();
        if timed_out {
            for w in task.outstanding.keys() {
                task.failures.insert(*w, format!("timed out after {secs} s"));
            }
        }
        let failed: Vec<String> = task.failures.iter().map(|(w, m)| format!("{w}: {m}")).collect();
        let answered_ok = task.contents.len();
        let response = match &task.kind {
            TaskKind::Fanout => {
                if failed.is_empty() {
                    Response::ok("Successfully applied request to all workers", None)
                } else {
                    Response::failure(format!(
                        "failed on {} of {} workers: {}",
                        failed.len(),
                        task.asked.len(),
                        failed.join(", ")
                    ))
                }
            }
            TaskKind::Status => {
                let mut vec: Vec<WorkerInfo> = Vec::new();
                for (id, w) in &self.workers {
                    let run_state = match w.run_state {
                        RunState::Running if task.contents.contains_key(id) => RunState::Running,
                        RunState::Running => RunState::NotAnswering,
                        other => other,
                    };
                    vec.push(WorkerInfo { id: *id, pid: w.pid, run_state: run_state as i32 });
                }
                let content = ContentType::Workers(WorkerInfos { vec });
                let mut message = match self.failed_slots {
                    0 => "Successfully collected the status of workers".to_string(),
                    n => format!(
                        "Successfully collected the status of workers; {n} worker slot(s) FAILED (crash loop, not relaunched)"
                    ),
                };
                for (id, note) in &task.notes {
                    message.push_str(&format!("; worker {id} {note}"));
                }
                Response::ok(message, Some(content.into()))
            }
            TaskKind::Query { main } => {
                let mut map: BTreeMap<String, ResponseContent> =
                    task.contents.iter().map(|(w, c)| (w.to_string(), c.clone().unwrap_or_default())).collect();
                if let Some(main) = main {
                    map.insert("main".into(), main.clone());
                }
                let content = Some(ContentType::WorkerResponses(WorkerResponses { map }).into());
                if failed.is_empty() {
                    Response::ok("Successfully queried the master and all workers", content)
                } else {
                    let mut r = Response::failure(format!("query failed on workers: {}", failed.join(", ")));
                    r.content = content;
                    r
                }
            }
            TaskKind::Metrics(options) => {
                let workers: BTreeMap<String, sozu_proto::WorkerMetrics> = task
                    .contents
                    .iter()
                    .filter_map(|(w, c)| match c.as_ref().and_then(|c| c.content_type.clone()) {
                        Some(ContentType::WorkerMetrics(m)) => Some((w.to_string(), m)),
                        _ => None,
                    })
                    .collect();
                let content = super::metrics::answer(workers, options);
                if failed.is_empty() {
                    Response::ok("Successfully queried metrics", Some(content.into()))
                } else {
                    Response::failure(format!("metrics query failed on workers: {}", failed.join(", ")))
                }
            }
            TaskKind::LoadState => self.end_loading(task_id, timed_out, &failed, task.asked.len()),
            TaskKind::Reload { summary } => {
                let _ =
                    crate::sd_notify::notify(&format!("READY=1\nSTATUS={} workers running", self.running_workers()));
                if failed.is_empty() {
                    Response::ok(format!("Successfully reloaded the configuration: {summary}"), None)
                } else {
                    Response::failure(format!(
                        "configuration reloaded on the master ({summary}), failed on workers: {}",
                        failed.join(", ")
                    ))
                }
            }
            TaskKind::Stop { hard } if timed_out => {
                for w in task.outstanding.keys() {
                    if let Some(session) = self.workers.get_mut(w) {
                        let _ = session.child.kill();
                    }
                }
                self.stopping = Some(Stopping::Done { clean: false });
                Response::failure(format!(
                    "{} deadline passed: {} workers hard-stopped, {} closed cleanly; stopping the main process...",
                    if *hard { "hard stop" } else { "drain" },
                    task.outstanding.len(),
                    answered_ok
                ))
            }
            TaskKind::Stop { hard } => {
                let message = format!(
                    "Successfully closed {} workers, {} errors, stopping the main process...",
                    answered_ok,
                    failed.len()
                );
                self.stopping = Some(Stopping::Done { clean: failed.is_empty() && !hard });
                if failed.is_empty() { Response::ok(message, None) } else { Response::failure(message) }
            }
            TaskKind::Boot => {
                if failed.is_empty() {
                    info!(self.log, "all {} workers answered: ready", task.asked.len());
                } else {
                    warn!(self.log, "workers not ready at boot: {}", failed.join(", "));
                }
                let _ =
                    crate::sd_notify::notify(&format!("READY=1\nSTATUS={} workers running", self.running_workers()));
                Response::ok("", None)
            }
            TaskKind::Relaunch => Response::ok("", None),
            TaskKind::UpgradeBoot { old, new } => {
                let (old, new) = (*old, *new);
                self.upgrading.remove(&new);
                if failed.is_empty() {
                    // answers the client, then the old worker drains in the background
                    self.drain_old_worker(task.client, old, new);
                    return;
                }
                // rollback: the new worker goes, the old one never stopped serving
                if let Some(w) = self.workers.get_mut(&new) {
                    w.run_state = RunState::Stopping;
                    let _ = w.child.kill();
                }
                Response::failure(format!(
                    "upgrade of worker {old} failed, it keeps serving: the new worker {new} did not start ({})",
                    failed.join(", ")
                ))
            }
            TaskKind::UpgradeDrain { old, new } => {
                let (old, new) = (*old, *new);
                if timed_out && let Some(w) = self.workers.get_mut(&old) {
                    let _ = w.child.kill();
                }
                self.emit(sozu_proto::EventKind::WorkerUpgraded, None);
                let drained =
                    if timed_out { "drain deadline passed, it was killed" } else { "finished its connections" };
                Response::ok(format!("Upgrade successful: worker {new} replaced worker {old}, which {drained}"), None)
            }
            TaskKind::HealthCheck { worker } => {
                let worker = *worker;
                self.health_result(worker, failed.is_empty());
                Response::ok("", None)
            }
        };
        if let Some(pending) = task.audit.take() {
            let fanout = audit::Fanout {
                status: if timed_out {
                    audit::FanoutStatus::Timeout
                } else if failed.is_empty() {
                    audit::FanoutStatus::Ok
                } else {
                    audit::FanoutStatus::Partial
                },
                workers_ok: answered_ok as u32,
                workers_err: failed.len() as u32,
                workers_expected: task.asked.len() as u32,
            };
            let ok = ResponseStatus::try_from(response.status) == Ok(ResponseStatus::Ok);
            self.write_completion(pending, ok, fanout, task.started.elapsed(), (!ok).then(|| response.message.clone()));
        }
        if let Some(token) = task.client {
            self.reply(token, response);
            if let Some(c) = self.clients.get_mut(&token) {
                c.busy = None;
            }
            self.pump_client(token);
        }
        if matches!(task.kind, TaskKind::LoadState) {
            // requests that waited for the load
            let waiting: Vec<Token> =
                self.clients.iter().filter(|(_, c)| !c.queue.is_empty()).map(|(t, _)| *t).collect();
            for token in waiting {
                self.pump_client(token);
            }
        }
    }

    pub(super) fn running_workers(&self) -> usize {
        self.workers.values().filter(|w| w.run_state == RunState::Running).count()
    }
}

/// The task id inside a request id `<Verb>-<worker>-<task>-<index>`.
fn task_of(id: &str) -> Option<u64> {
    id.rsplit('-').nth(1)?.parse().ok()
}
