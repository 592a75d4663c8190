//! Worker processes: launch (fork+exec of our own binary by fd), channel I/O with a
//! per-worker queue (backpressure: never more than the channel maximum in flight),
//! death, reaping and relaunch.

use std::collections::VecDeque;
use std::io::{Seek, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mio::Token;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use slog::{error, info, warn};
use sozu_channel::{BlockingChannel, Channel, ChannelError, FrameError};
use sozu_proto::request::RequestType as R;
use sozu_proto::{EncodedWorkerRequest, EventKind, RunState, ServerConfig, Status, WorkerResponse};
use sozu_scm_socket::ScmSocket;

use super::batch::Cursor;
use super::process::Process;
use super::server::Master;
use super::tasks::TaskKind;

/// How long a worker that closed its channel on a stop or an upgrade has to exit
/// before it is killed.
const ENDING_GRACE: Duration = Duration::from_secs(1);

/// A worker that closed its channel on a stop or an upgrade and has not exited yet.
#[derive(Debug)]
pub(super) struct Ending {
    pub id: u32,
    pub pid: i32,
    pub child: Process,
    pub deadline: Instant,
}

/// How long a send on a worker's SCM socket after its boot (a listener added while
/// running) may wait: a worker that stopped reading never holds the loop longer.
pub(super) const SCM_SEND_TIMEOUT: Duration = Duration::from_millis(100);

/// The master's side of one worker.
pub(crate) struct WorkerSession {
    pub pid: i32,
    pub token: Token,
    pub channel: Channel<EncodedWorkerRequest, WorkerResponse>,
    /// Requests not yet in the channel's buffer (backpressure): one entry per task.
    pub outbox: VecDeque<Cursor>,
    pub run_state: RunState,
    pub child: Process,
    /// The master's end of the SCM socket (listeners go back and forth on it).
    pub scm: ScmSocket,
}

fn clear_cloexec(fd: impl AsFd) -> std::io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    Ok(())
}

impl Master {
    /// Starts `worker_count` workers and the boot task that waits for their first answer.
    pub fn boot_workers(&mut self) -> anyhow::Result<()> {
        for _ in 0..self.config.worker_count {
            if let Err(e) = self.launch_worker(None) {
                for w in self.workers.values_mut() {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                }
                let _ = std::fs::remove_file(&self.config.command_socket);
                if let Some(pid) = &self.config.pid_file_path {
                    let _ = std::fs::remove_file(pid);
                }
                return Err(e);
            }
        }
        let status: sozu_proto::Request = R::Status(Status {}).into();
        self.boot_task = Some(self.scatter(None, TaskKind::Boot, &[status], None, None));
        Ok(())
    }

    fn server_config(&self) -> ServerConfig {
        ServerConfig {
            max_connections: self.config.max_connections,
            min_buffers: self.config.min_buffers,
            max_buffers: self.config.max_buffers,
            buffer_size: self.config.buffer_size,
            log_level: self.config.log_level.clone(),
            log_target: self.config.log_target.clone(),
            command_buffer_size: self.config.command_buffer_size as u64,
            max_command_buffer_size: self.config.max_command_buffer_size as u64,
            ..Default::default()
        }
    }

    /// Forks and execs one worker with the full current state and every listener.
    /// `replacing`: the worker an upgrade replaces (its CPU is the new one's to take).
    pub(super) fn launch_worker(&mut self, replacing: Option<u32>) -> anyhow::Result<u32> {
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        let (master_end, worker_end) = StdUnixStream::pair()?;
        let (master_scm, worker_scm) = StdUnixStream::pair()?;

        // the initial state, as Sōzu passes it: protobuf InitialState in an unlinked file
        let mut state_file = tempfile::tempfile()?;
        let initial = self.initial_state_bytes();
        state_file.write_all(&initial)?;
        // counted in the bytes: the state itself may still be in the making (upgrade)
        let index = sozu_proto::count_initial_requests(&initial).unwrap_or_default();
        state_file.rewind()?;

        for fd in [worker_end.as_fd(), worker_scm.as_fd(), state_file.as_fd()] {
            clear_cloexec(fd)?;
        }
        let exe = format!("/proc/self/fd/{}", self.exe.as_raw_fd());
        let child = Command::new(&exe)
            // what `ps` shows: the path we exec is only an fd number
            .arg0("sozu")
            .arg("worker")
            .args(["--id", &id.to_string()])
            .args(["--fd", &worker_end.as_raw_fd().to_string()])
            .args(["--scm", &worker_scm.as_raw_fd().to_string()])
            .args(["--configuration-state-fd", &state_file.as_raw_fd().to_string()])
            .args(["--command-buffer-size", &self.config.command_buffer_size.to_string()])
            .args(["--max-command-buffer-size", &self.config.max_command_buffer_size.to_string()])
            .env("GLIBC_TUNABLES", super::process::boot_tunables())
            .stdin(Stdio::null())
            .spawn();
        // our copies of the child's ends close here whatever happened
        drop((worker_end, worker_scm, state_file));
        let child = child.map_err(|e| anyhow::anyhow!("cannot start worker {id} ({exe}): {e}"))?;
        let pid = child.id() as i32;
        // before its first request: the worker is single-threaded, so its mask is set whole
        self.pin_worker(id, pid, replacing);

        let limits = self.limits();
        let mut boot: BlockingChannel<ServerConfig, WorkerResponse> = BlockingChannel::new(master_end, limits, limits)?;
        boot.send(&self.server_config()).map_err(|e| anyhow::anyhow!("worker {id}: sending its configuration: {e}"))?;
        let scm = ScmSocket::new(master_scm)?;
        scm.send_listeners(&self.listeners).map_err(|e| anyhow::anyhow!("worker {id}: sending listeners: {e}"))?;
        scm.set_write_timeout(Some(SCM_SEND_TIMEOUT))?;
        let mut channel = boot.into_nonblocking::<EncodedWorkerRequest, WorkerResponse>()?;
        let token = self.token();
        channel.register(self.poll.registry(), token)?;
        self.worker_tokens.insert(token, id);
        self.workers.insert(
            id,
            WorkerSession {
                pid,
                token,
                channel,
                outbox: VecDeque::new(),
                run_state: RunState::Running,
                child: Process::from_child(child),
                scm,
            },
        );
        info!(
            self.log,
            "launched worker {id} (pid {pid}) with {} requests of state and {} listeners",
            index,
            self.listeners.len()
        );
        Ok(id)
    }

    /// Moves queued requests into the worker's channel while it has room, then writes
    /// them in as few `write` calls as the socket allows.
    pub(super) fn pump_worker(&mut self, id: u32) {
        let Some(w) = self.workers.get_mut(&id) else { return };
        let mut dead = false;
        let mut too_large = Vec::new();
        loop {
            while let Some(front) = w.outbox.front_mut() {
                let Some(request) = front.current(id) else {
                    w.outbox.pop_front();
                    continue;
                };
                match w.channel.queue(&request) {
                    Ok(()) => {}
                    // the channel holds max_command_buffer_size already: write first
                    Err(ChannelError::Frame(FrameError::WriteBufferFull { .. })) => break,
                    // refuse this request, keep the worker (Sōzu kills it)
                    Err(ChannelError::Frame(FrameError::TooLarge { .. })) => too_large.push(request.id),
                    Err(_) => {
                        dead = true;
                        break;
                    }
                }
                if front.advance() {
                    w.outbox.pop_front();
                }
            }
            match w.channel.flush() {
                // everything written and more waiting: fill the buffer again
                Ok(true) if !w.outbox.is_empty() && !dead => continue,
                Ok(_) => break,
                Err(_) => {
                    dead = true;
                    break;
                }
            }
        }
        for request_id in too_large {
            let answer = WorkerResponse::failure(request_id, "request larger than max_command_buffer_size");
            self.worker_answer(id, answer);
        }
        if dead {
            self.worker_died(id, "its channel failed");
        }
    }

    pub(super) fn worker_event(&mut self, id: u32, readable: bool, writable: bool) {
        if writable {
            self.pump_worker(id);
        }
        if !readable {
            return;
        }
        if let Some(w) = self.workers.get_mut(&id) {
            w.channel.handle_readable();
        }
        loop {
            let Some(w) = self.workers.get_mut(&id) else { return };
            match w.channel.poll_message() {
                Ok(Some(answer)) => self.worker_answer(id, answer),
                Ok(None) => break,
                Err(ChannelError::Frame(FrameError::Decode(e))) => {
                    warn!(self.log, "worker {id}: undecodable answer: {e}");
                }
                Err(e) => {
                    self.worker_died(id, &format!("channel closed ({e})"));
                    return;
                }
            }
        }
        self.pump_worker(id);
    }

    /// A worker is gone: reap it, tell its tasks, drop its session, maybe relaunch.
    pub(super) fn worker_died(&mut self, id: u32, why: &str) {
        // answers the worker wrote before exiting are still in the socket: route them
        // first (SIGCHLD can be handled before the channel's readable event)
        let mut answers = Vec::new();
        if let Some(w) = self.workers.get_mut(&id) {
            w.channel.handle_readable();
            while let Ok(Some(answer)) = w.channel.poll_message() {
                answers.push(answer);
            }
        }
        for answer in answers {
            self.worker_answer(id, answer);
        }
        let Some(mut w) = self.workers.remove(&id) else { return };
        self.worker_tokens.remove(&w.token);
        let _ = w.channel.deregister(self.poll.registry());
        let expected = w.run_state != RunState::Running || self.upgrading.contains(&id);
        if expected {
            // its channel closed: it is exiting; reaped when it has (SIGCHLD), killed if it
            // has not within ENDING_GRACE
            match w.child.try_wait() {
                Ok(Some(status)) => info!(self.log, "worker {id} (pid {}) exited: {status}", w.pid),
                _ => {
                    self.ending.push(Ending { id, pid: w.pid, child: w.child, deadline: Instant::now() + ENDING_GRACE })
                }
            }
        } else {
            let _ = w.child.kill();
            let status = w.child.wait().unwrap_or_else(|e| e.to_string());
            error!(self.log, "worker {id} (pid {}) died: {why}; {status}", w.pid);
            self.emit(EventKind::WorkerKilled, None);
            self.audit_worker_death(id, w.pid, &format!("{why}; {status}"));
        }
        self.fail_worker_tasks(id);
        self.misses.remove(&id);
        let _ = crate::sd_notify::notify(&format!("STATUS={} workers running", self.running_workers()));
        if !expected && self.stopping.is_none() && self.config.worker_automatic_restart {
            self.schedule_relaunch(Instant::now());
        }
    }

    /// Exponential backoff with jitter; gives up on the slot after too many crashes in
    /// the window (a stable period empties the window).
    fn schedule_relaunch(&mut self, now: Instant) {
        let window = self.config.worker_restart_window;
        self.recent_crashes.retain(|t| now.duration_since(*t) < window);
        self.recent_crashes.push_back(now);
        let crashes = self.recent_crashes.len() as u32;
        if crashes > self.config.worker_max_restarts {
            self.failed_slots += 1;
            error!(
                self.log,
                "a worker crashed {crashes} times within {} s: giving up on this slot ({} failed)",
                window.as_secs(),
                self.failed_slots
            );
            self.recent_crashes.clear();
            return;
        }
        let base = self.config.worker_restart_delay;
        let delay = base.saturating_mul(1 << (crashes - 1).min(20)).min(self.config.worker_restart_max_delay);
        // ±20 % jitter so that several crashing workers do not restart in lockstep
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let jitter = 0.8 + f64::from(nanos % 1000) / 2500.0;
        let delay = delay.mul_f64(jitter);
        info!(self.log, "relaunching a worker in {} ms (crash {crashes} in the window)", delay.as_millis());
        self.relaunch_at.push(now + delay);
    }

    pub(super) fn relaunch_due_workers(&mut self, now: Instant) {
        let due = self.relaunch_at.iter().filter(|t| **t <= now).count();
        self.relaunch_at.retain(|t| *t > now);
        for _ in 0..due {
            if self.stopping.is_some() {
                return;
            }
            match self.launch_worker(None) {
                Ok(id) => {
                    self.emit(EventKind::WorkerRelaunched, None);
                    let _ = crate::sd_notify::notify(&format!("STATUS={} workers running", self.running_workers()));
                    let status: sozu_proto::Request = R::Status(Status {}).into();
                    self.scatter(None, TaskKind::Relaunch, &[status], Some(id), None);
                }
                Err(e) => {
                    error!(self.log, "relaunching a worker failed: {e}");
                    self.schedule_relaunch(now);
                }
            }
        }
    }

    /// Reaps the workers that were ending and have exited; kills those past their
    /// deadline.
    pub(super) fn reap_ending(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.ending.len() {
            let e = &mut self.ending[i];
            let exited = matches!(e.child.try_wait(), Ok(Some(_)));
            if !exited && now < e.deadline {
                i += 1;
                continue;
            }
            let mut e = self.ending.swap_remove(i);
            if exited {
                let status = e.child.wait().unwrap_or_else(|err| err.to_string());
                info!(self.log, "worker {} (pid {}) exited: {status}", e.id, e.pid);
            } else {
                let _ = e.child.kill();
                let _ = e.child.wait();
                warn!(
                    self.log,
                    "worker {} (pid {}) killed: it had not exited {} ms after its stop",
                    e.id,
                    e.pid,
                    ENDING_GRACE.as_millis()
                );
            }
        }
    }

    /// SIGCHLD: reap every exited child.
    pub(super) fn reap_children(&mut self) {
        self.reap_ending(Instant::now());
        let exited: Vec<u32> = self
            .workers
            .iter_mut()
            .filter_map(|(id, w)| matches!(w.child.try_wait(), Ok(Some(_))).then_some(*id))
            .collect();
        for id in exited {
            self.worker_died(id, "the process exited");
        }
    }

    /// Soft or hard stop of everything; `client` gets the answer when done.
    pub(super) fn begin_stop(&mut self, client: Option<Token>, hard: bool) {
        if self.stopping.is_some() {
            if let Some(token) = client {
                self.reply(token, sozu_proto::Response::failure("already stopping"));
            }
            return;
        }
        info!(self.log, "{} stop requested", if hard { "hard" } else { "soft" });
        self.abort_loading("loading state: aborted, the master is stopping; nothing was changed".into(), true);
        let _ = crate::sd_notify::notify("STOPPING=1");
        self.stopping = Some(super::server::Stopping::Draining { hard });
        self.relaunch_at.clear();
        let request: sozu_proto::Request =
            if hard { R::HardStop(Default::default()).into() } else { R::SoftStop(Default::default()).into() };
        let task = self.scatter(client, TaskKind::Stop { hard }, &[request], None, None);
        let deadline = if hard { self.config.worker_timeout } else { self.config.soft_stop_timeout };
        if let Some(t) = self.tasks.get_mut(&task) {
            t.deadline = Some(Instant::now() + deadline);
        }
        for w in self.workers.values_mut() {
            w.run_state = RunState::Stopping;
        }
    }
}

impl Master {
    /// Sends a `Status` to every running worker when a health check is due.
    pub(super) fn health_checks(&mut self, now: Instant) {
        let Some(interval) = self.config.worker_health_check_interval else { return };
        if self.next_health_check.is_none_or(|t| t > now) || self.stopping.is_some() {
            self.next_health_check.get_or_insert(now + interval);
            return;
        }
        self.next_health_check = Some(now + interval);
        let ids: Vec<u32> =
            self.workers.iter().filter(|(_, w)| w.run_state == RunState::Running).map(|(id, _)| *id).collect();
        for id in ids {
            let status: sozu_proto::Request = R::Status(Status {}).into();
            self.scatter(None, TaskKind::HealthCheck { worker: id }, &[status], Some(id), None);
        }
    }

    /// Result of one health check: a worker that misses too many in a row is killed
    /// (and relaunched like a crashed one).
    pub(super) fn health_result(&mut self, worker: u32, answered: bool) {
        if answered {
            self.misses.remove(&worker);
            return;
        }
        let misses = self.misses.entry(worker).or_default();
        *misses += 1;
        let limit = self.config.worker_health_check_failures;
        warn!(self.log, "worker {worker} missed {misses} health check(s) in a row (limit {limit})");
        if *misses >= limit
            && let Some(w) = self.workers.get_mut(&worker)
        {
            error!(self.log, "worker {worker} (pid {}) is hung: killing it", w.pid);
            let _ = w.child.kill();
            self.worker_died(worker, "hung: health checks unanswered");
        }
    }
}

impl Master {
    /// `UpgradeWorker`: a new worker with the full state and the master's own listener
    /// sockets; once it answers, the old one stops accepting and drains (bounded by
    /// `soft_stop_timeout`). If the new worker fails to start, it is killed and the old
    /// one, which never stopped, keeps serving.
    pub(super) fn upgrade_worker(&mut self, token: Token, old: u32) {
        if self.workers.get(&old).is_none_or(|w| w.run_state != RunState::Running) {
            let message = format!("Worker {old} does not exist, or is stopping / stopped");
            self.reply(token, sozu_proto::Response::failure(message));
            return;
        }
        let draining = self.draining_workers();
        if draining >= self.config.max_draining_workers {
            let message = format!(
                "upgrade of worker {old} refused: {draining} old workers are still draining (max_draining_workers = {}); \
                 try again when one has ended (see `sozu status`)",
                self.config.max_draining_workers
            );
            self.reply(token, sozu_proto::Response::failure(message));
            return;
        }
        let new = match self.launch_worker(Some(old)) {
            Ok(id) => id,
            Err(e) => {
                self.reply(token, sozu_proto::Response::failure(format!("upgrade of worker {old} failed: {e}")));
                return;
            }
        };
        self.upgrading.insert(new);
        self.reply(token, sozu_proto::Response::processing(format!("Launched a new worker with id {new}")));
        let status: sozu_proto::Request = R::Status(Status {}).into();
        self.scatter(Some(token), TaskKind::UpgradeBoot { old, new }, &[status], Some(new), None);
    }

    /// Old workers draining after an upgrade.
    pub(super) fn draining_workers(&self) -> usize {
        self.tasks.values().filter(|t| matches!(t.kind, TaskKind::UpgradeDrain { .. })).count()
    }

    /// The new worker answered: the client gets its OK now, and the old worker drains in
    /// the background (bounded by `soft_stop_timeout`; `sozu status` shows it).
    pub(super) fn drain_old_worker(&mut self, client: Option<Token>, old: u32, new: u32) {
        if let Some(token) = client {
            let message = format!(
                "Upgrade successful: worker {new} replaced worker {old}, which stopped accepting and drains its \
                 connections (at most {} s)",
                self.config.soft_stop_timeout.as_secs()
            );
            self.reply(token, sozu_proto::Response::ok(message, None));
            if let Some(c) = self.clients.get_mut(&token) {
                c.busy = None;
            }
            self.pump_client(token);
        }
        let stop: sozu_proto::Request = R::SoftStop(Default::default()).into();
        let task = self.scatter(None, TaskKind::UpgradeDrain { old, new }, &[stop], Some(old), None);
        if let Some(w) = self.workers.get_mut(&old) {
            w.run_state = RunState::Stopping;
        }
        if let Some(t) = self.tasks.get_mut(&task) {
            t.deadline = Some(Instant::now() + self.config.soft_stop_timeout);
        }
    }
}
