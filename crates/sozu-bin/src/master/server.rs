//! The master's event loop: one mio `Poll` for the command socket, every client, every
//! worker channel, signals and the user-name resolver.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{AuditLog, FailPolicy, FileSink, Fsync, JsonSink};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use peer_identity::{PeerIdentity, PendingUser, SystemUsers, UserResolver, UserResolverConfig};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slog::{Logger, error, info, warn};
use sozu_channel::{Channel, ChannelError, FrameError, Limits};
use sozu_config::Config;
use sozu_proto::{Request, Response};
use sozu_scm_socket::Listeners;
use sozu_state::ConfigState;

use super::conn::{Conn, JsonConn};
use super::tasks::Task;
use super::workers::WorkerSession;
use crate::logging::LevelHandle;

pub(super) const LISTENER: Token = Token(0);
pub(super) const SIGNALS: Token = Token(1);
pub(super) const WAKER: Token = Token(2);
pub(super) const DASHBOARD: Token = Token(3);
const FIRST_DYNAMIC: usize = 16;

/// Connections one master serves at once; more are accepted and closed at once.
const MAX_CLIENTS: usize = 4096;

/// A CLI, dashboard or other client connection.
pub(super) struct Client {
    pub conn: Conn,
    pub identity: PeerIdentity,
    pub pending_user: Option<PendingUser>,
    pub client_id: u64,
    /// Requests received and not yet started: served in order, one at a time.
    pub queue: VecDeque<Queued>,
    /// The task answering the current request, if it waits on workers.
    pub busy: Option<u64>,
    /// Receives events; serves no more requests.
    pub subscribed: bool,
    /// Close once everything queued is written.
    pub closing: bool,
}

/// What a client sent, in order.
pub(super) enum Queued {
    /// A request to serve.
    Request(Box<Request>),
    /// A frame that could not be read: answered with this error; `fatal` closes the
    /// connection after the answer (the stream cannot be re-synchronised).
    BadFrame { error: String, fatal: bool },
    /// A dashboard request (JSON line).
    Dash { id: serde_json::Value, method: String, params: serde_json::Value },
    /// A dashboard line that could not be read, answered with a stable error code.
    DashError { id: serde_json::Value, code: &'static str, message: String, fatal: bool },
}

/// How the master is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopping {
    /// Workers were told; waiting for their answers.
    Draining { hard: bool },
    /// Everything answered: exit once clients are flushed.
    Done { clean: bool },
}

/// The master.
pub struct Master {
    pub(super) poll: Poll,
    pub(super) listener: UnixListener,
    pub(super) dashboard: Option<UnixListener>,
    /// The last events, for replay to new subscribers: (sequence, source, event).
    pub(super) journal: VecDeque<(u64, String, sozu_proto::Event)>,
    pub(super) next_seq: u64,
    /// The last audit records as JSON, for `audit.tail`.
    pub(super) audit_tail: VecDeque<serde_json::Value>,
    pub(super) config: Config,
    pub(super) log: Logger,
    pub(super) level: LevelHandle,
    pub(super) state: super::state_cell::StateCell,
    pub(super) clients: HashMap<Token, Client>,
    pub(super) workers: BTreeMap<u32, WorkerSession>,
    pub(super) worker_tokens: HashMap<Token, u32>,
    pub(super) tasks: HashMap<u64, Task>,
    pub(super) next_token: usize,
    pub(super) next_worker_id: u32,
    pub(super) next_task_id: u64,
    pub(super) next_client_id: u64,
    pub(super) users: UserResolver,
    pub(super) audit: AuditLog,
    pub(super) listeners: Listeners,
    pub(super) exe: OwnedFd,
    pub(super) signals: Signals,
    pub(super) request_counts: BTreeMap<String, i32>,
    pub(super) state_dirty: bool,
    pub(super) stopping: Option<Stopping>,
    pub(super) boot_task: Option<u64>,
    pub(super) relaunch_at: Vec<Instant>,
    /// Unexpected worker deaths within the restart window.
    pub(super) recent_crashes: VecDeque<Instant>,
    /// Worker slots given up on (crash loop).
    pub(super) failed_slots: u32,
    /// Workers started by an upgrade and not yet confirmed: their death is the upgrade's
    /// failure, not a crash to relaunch.
    pub(super) upgrading: std::collections::HashSet<u32>,
    /// Consecutive unanswered health checks, by worker.
    pub(super) misses: HashMap<u32, u32>,
    /// Workers that closed their channel on a stop or an upgrade and have not exited yet:
    /// reaped at SIGCHLD, killed at their deadline.
    pub(super) ending: Vec<super::workers::Ending>,
    pub(super) next_health_check: Option<Instant>,
    /// systemd watchdog: interval and next ping.
    pub(super) watchdog: Option<(Duration, Instant)>,
    pub(super) boot_generation: u32,
    /// The `LoadState` in progress, if any.
    pub(super) loading: Option<super::loading::Loading>,
    /// The main upgrade in progress, if any.
    pub(super) upgrade: Option<super::upgrade::Upgrade>,
    /// The configuration text as loaded (handed to the next image on upgrade).
    pub(super) config_text: String,
    /// The path this binary was started from (the default upgrade binary).
    pub(super) exe_path: std::path::PathBuf,
    /// Bumped by every change of `state`; keys `initial_state`.
    pub(super) state_generation: u64,
    /// The state encoded as a protobuf `InitialState` (what a new worker and the upgrade
    /// data carry), for the generation it was made at.
    pub(super) initial_state: Option<(u64, Arc<[u8]>)>,
}

impl Master {
    /// Builds the master around the already bound command socket and, if configured,
    /// dashboard socket.
    pub fn new(
        config: Config,
        log: Logger,
        level: LevelHandle,
        state: ConfigState,
        sockets: (StdUnixListener, Option<StdUnixListener>),
        listeners: Listeners,
        exe: OwnedFd,
    ) -> anyhow::Result<Master> {
        let (command_socket, dashboard_socket) = sockets;
        let poll = Poll::new()?;
        let mut listener = UnixListener::from_std(command_socket);
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut dashboard = dashboard_socket.map(UnixListener::from_std);
        if let Some(d) = &mut dashboard {
            poll.registry().register(d, DASHBOARD, Interest::READABLE)?;
        }
        let mut signals = Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP])?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let users = UserResolver::with_notify(SystemUsers, UserResolverConfig::default(), move || {
            let _ = waker.wake();
        });
        let audit = open_audit(&config, &log)?;
        Ok(Master {
            poll,
            listener,
            dashboard,
            journal: VecDeque::new(),
            next_seq: 0,
            audit_tail: VecDeque::new(),
            config,
            log,
            level,
            state: super::state_cell::StateCell::ready(state),
            clients: HashMap::new(),
            workers: BTreeMap::new(),
            worker_tokens: HashMap::new(),
            tasks: HashMap::new(),
            next_token: FIRST_DYNAMIC,
            next_worker_id: 0,
            next_task_id: 0,
            next_client_id: 0,
            users,
            audit,
            listeners,
            exe,
            signals,
            request_counts: BTreeMap::new(),
            state_dirty: false,
            stopping: None,
            boot_task: None,
            relaunch_at: Vec::new(),
            recent_crashes: VecDeque::new(),
            failed_slots: 0,
            misses: HashMap::new(),
            ending: Vec::new(),
            upgrading: std::collections::HashSet::new(),
            next_health_check: None,
            watchdog: crate::sd_notify::watchdog_interval().map(|i| (i / 2, Instant::now())),
            boot_generation: 0,
            loading: None,
            upgrade: None,
            config_text: String::new(),
            exe_path: own_path(),
            state_generation: 0,
            initial_state: None,
        })
    }

    pub(super) fn token(&mut self) -> Token {
        self.next_token += 1;
        Token(self.next_token)
    }

    pub(super) fn limits(&self) -> Limits {
        Limits::new(self.config.command_buffer_size, self.config.max_command_buffer_size)
    }

    /// Runs until stopped. Returns whether the stop was clean.
    pub fn run(&mut self) -> bool {
        let mut events = Events::with_capacity(256);
        loop {
            self.sync_interests();
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                error!(self.log, "poll failed: {e}");
                return false;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(false),
                    DASHBOARD => self.accept(true),
                    SIGNALS => self.handle_signals(),
                    WAKER => {}
                    token if self.clients.contains_key(&token) => {
                        if event.is_readable() || event.is_read_closed() {
                            self.client_readable(token);
                        }
                        if event.is_writable() {
                            self.client_writable(token);
                        }
                    }
                    token => {
                        if let Some(&id) = self.worker_tokens.get(&token) {
                            self.worker_event(id, event.is_readable() || event.is_read_closed(), event.is_writable());
                        }
                    }
                }
            }
            self.poll_pending_users();
            self.continue_loading();
            self.poll_upgrade(Instant::now());
            self.expire_tasks(Instant::now());
            self.relaunch_due_workers(Instant::now());
            self.reap_ending(Instant::now());
            self.health_checks(Instant::now());
            self.watchdog(Instant::now());
            self.save_state_if_dirty();
            if let Some(Stopping::Done { clean }) = self.stopping
                && self.clients.values().all(|c| !c.conn.wants_write())
            {
                self.shutdown_cleanup();
                return clean;
            }
        }
    }

    /// Before waiting: writable events asked for exactly where bytes wait to be
    /// written (`Channel::sync_interest`), so that a worker or a CLI reading what the
    /// master sent does not wake the master for nothing.
    /// A channel that cannot be re-registered would never be written again: its
    /// worker is treated as dead (and relaunched), its client dropped.
    fn sync_interests(&mut self) {
        let registry = self.poll.registry();
        let mut dead_workers = Vec::new();
        for (&id, w) in &mut self.workers {
            if let Err(e) = w.channel.sync_interest(registry) {
                error!(self.log, "worker {id}: cannot update its channel's registration: {e}");
                dead_workers.push(id);
            }
        }
        let mut dead_clients = Vec::new();
        for (&token, client) in &mut self.clients {
            if let Err(e) = client.conn.sync_interest(registry) {
                warn!(self.log, "client {}: cannot update its registration: {e}; dropped", client.client_id);
                dead_clients.push(token);
            }
        }
        for id in dead_workers {
            self.worker_died(id, "its channel cannot be registered");
        }
        for token in dead_clients {
            self.drop_client(token);
        }
    }

    /// Every change of the state goes through here: saved by `automatic_state_save`,
    /// and the encoded initial state made again when next needed.
    pub(super) fn state_changed(&mut self) {
        self.state_dirty = true;
        self.state_generation += 1;
    }

    /// The state as a protobuf `InitialState`, encoded once per state generation (two
    /// workers started in a row, or an upgrade, share it).
    pub(super) fn initial_state_bytes(&mut self) -> Arc<[u8]> {
        if let Some((generation, bytes)) = &self.initial_state
            && *generation == self.state_generation
        {
            return Arc::clone(bytes);
        }
        let mut requests = Vec::with_capacity(self.state.request_count());
        let mut index = 0;
        self.state.visit_requests(|content| {
            requests.push(sozu_proto::WorkerRequest { id: format!("SAVE-{index}"), content });
            index += 1;
        });
        let bytes: Arc<[u8]> = Arc::from(prost::Message::encode_to_vec(&sozu_proto::InitialState { requests }));
        self.initial_state = Some((self.state_generation, Arc::clone(&bytes)));
        bytes
    }

    fn next_timeout(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut next: Option<Instant> = self.tasks.values().filter_map(|t| t.deadline).min();
        let users = self.clients.values().filter_map(|c| c.pending_user.as_ref().map(PendingUser::deadline)).min();
        let watchdog = self.watchdog.map(|(_, next)| next);
        let health = self.config.worker_health_check_interval.and(self.next_health_check);
        let ending = self.ending.iter().map(|e| e.deadline).min();
        for t in [users, self.relaunch_at.iter().min().copied(), watchdog, health, ending].into_iter().flatten() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if matches!(self.stopping, Some(Stopping::Done { .. })) {
            return Some(Duration::from_millis(10));
        }
        if self.load_wants_turn() {
            return Some(Duration::ZERO);
        }
        if let Some(t) = self.upgrade_timeout() {
            next = Some(next.map_or(now + t, |n| n.min(now + t)));
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    fn accept(&mut self, dashboard: bool) {
        loop {
            let accepted = match (dashboard, &self.dashboard) {
                (true, Some(d)) => d.accept(),
                (true, None) => return,
                (false, _) => self.listener.accept(),
            };
            let (stream, _) = match accepted {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!(self.log, "accept failed: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS || matches!(self.stopping, Some(Stopping::Done { .. })) {
                drop(stream);
                continue;
            }
            self.register_client(stream, dashboard);
        }
    }

    pub(super) fn register_client(&mut self, stream: UnixStream, dashboard: bool) -> Option<Token> {
        let socket = match (&self.config.dashboard_socket, dashboard) {
            (Some(path), true) => path.clone(),
            _ => self.config.command_socket.clone(),
        };
        let (identity, pending_user) = PeerIdentity::capture(&stream, &socket, &self.users);
        let token = self.token();
        let mut conn = if dashboard {
            Conn::Json(Box::new(JsonConn::new(
                stream,
                self.config.dashboard_max_frame_bytes,
                self.config.dashboard_subscriber_queue,
            )))
        } else {
            let limits = Limits::new(4096, self.config.max_command_buffer_size);
            Conn::Proto(Channel::new(stream, limits, limits))
        };
        if let Err(e) = conn.register(self.poll.registry(), token) {
            warn!(self.log, "cannot register client: {e}; connection dropped");
            return None;
        }
        let client_id = self.next_client_id;
        self.next_client_id += 1;
        info!(self.log, "client {client_id} connected: {identity}");
        self.clients.insert(
            token,
            Client {
                conn,
                identity,
                pending_user,
                client_id,
                queue: VecDeque::new(),
                busy: None,
                subscribed: false,
                closing: false,
            },
        );
        // a CLI writes its request right after connecting: serve it without waiting
        // for the next poll
        self.client_readable(token);
        Some(token)
    }

    fn poll_pending_users(&mut self) {
        let now = Instant::now();
        for client in self.clients.values_mut() {
            if let Some(answer) = client.pending_user.as_ref().and_then(|p| p.poll(now)) {
                client.identity.set_user(answer);
                client.pending_user = None;
            }
        }
    }

    fn client_readable(&mut self, token: Token) {
        let Some(client) = self.clients.get_mut(&token) else { return };
        let channel = match &mut client.conn {
            Conn::Proto(channel) => channel,
            Conn::Json(json) => {
                json.readable = true;
                self.dashboard_readable(token);
                return;
            }
        };
        channel.handle_readable();
        loop {
            let Some(client) = self.clients.get_mut(&token) else { return };
            if client.closing || client.queue.iter().any(|q| matches!(q, Queued::BadFrame { fatal: true, .. })) {
                break;
            }
            let Conn::Proto(channel) = &mut client.conn else { return };
            match channel.poll_message() {
                Ok(Some(request)) => client.queue.push_back(Queued::Request(Box::new(request))),
                Ok(None) => break,
                Err(ChannelError::Closed) => {
                    self.drop_client(token);
                    return;
                }
                Err(ChannelError::Frame(e)) => {
                    warn!(self.log, "client {}: bad frame: {e}", client.client_id);
                    let fatal = !matches!(e, FrameError::Decode(_) | FrameError::TooShort { .. });
                    client.queue.push_back(Queued::BadFrame { error: format!("invalid frame: {e}"), fatal });
                }
                Err(e) => {
                    warn!(self.log, "client {}: {e}", client.client_id);
                    self.drop_client(token);
                    return;
                }
            }
        }
        self.pump_client(token);
    }

    pub(super) fn client_writable(&mut self, token: Token) {
        let Some(client) = self.clients.get_mut(&token) else { return };
        match client.conn.flush() {
            Ok(true) if client.closing => self.drop_client(token),
            Ok(_) => {}
            Err(_) => self.drop_client(token),
        }
    }

    pub(super) fn drop_client(&mut self, token: Token) {
        if let Some(mut client) = self.clients.remove(&token) {
            let _ = client.conn.deregister(self.poll.registry());
            for task in self.tasks.values_mut() {
                if task.client == Some(token) {
                    task.client = None;
                }
            }
        }
    }

    /// Starts queued requests, one at a time per client, in order.
    pub(super) fn pump_client(&mut self, token: Token) {
        loop {
            let waits = match self.clients.get(&token).and_then(|c| c.queue.front()) {
                Some(Queued::Request(request)) => self.waits_for_load(request),
                _ => false,
            };
            let Some(client) = self.clients.get_mut(&token) else { return };
            let streaming = client.subscribed && matches!(client.conn, Conn::Proto(_));
            // waits: served when the load in progress ends
            if client.busy.is_some() || streaming || client.closing || waits {
                return;
            }
            match client.queue.pop_front() {
                None => return,
                Some(Queued::Request(request)) => self.handle_request(token, *request),
                Some(Queued::BadFrame { error, fatal }) => {
                    client.closing = fatal;
                    self.reply(token, Response::failure(error));
                    self.client_writable(token);
                }
                Some(Queued::Dash { id, method, params }) => self.serve_dashboard(token, id, &method, params),
                Some(Queued::DashError { id, code, message, fatal }) => {
                    client.closing = fatal;
                    if let Conn::Json(j) = &mut client.conn {
                        let _ = j.error(id, code, &message);
                    }
                    self.client_writable(token);
                }
            }
        }
    }

    /// Sends a response to a client (dropping it if the client is gone or broken).
    pub(super) fn reply(&mut self, token: Token, response: Response) {
        let Some(client) = self.clients.get_mut(&token) else { return };
        if let Err(e) = client.conn.send(&response) {
            warn!(self.log, "client {}: cannot send answer: {e}", client.client_id);
            if !matches!(e, ChannelError::Frame(FrameError::TooLarge { .. })) {
                self.drop_client(token);
            } else {
                let _ = client.conn.send(&Response::failure(format!("the answer does not fit: {e}")));
            }
        }
    }

    fn handle_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGCHLD => self.reap_children(),
                SIGTERM => self.begin_stop(None, false),
                SIGINT | SIGQUIT => self.begin_stop(None, true),
                SIGHUP => {
                    info!(self.log, "SIGHUP: reloading the configuration");
                    self.reload(None, "");
                }
                _ => {}
            }
        }
    }

    fn watchdog(&mut self, now: Instant) {
        if let Some((interval, next)) = &mut self.watchdog
            && *next <= now
        {
            *next = now + *interval;
            let _ = crate::sd_notify::notify("WATCHDOG=1");
        }
    }

    fn save_state_if_dirty(&mut self) {
        if !self.state_dirty {
            return;
        }
        self.state_dirty = false;
        if !self.config.automatic_state_save {
            return;
        }
        let Some(path) = self.config.saved_state.clone() else { return };
        match sozu_state::save_atomic(&path, &self.state) {
            Ok(n) => info!(self.log, "automatic_state_save: {n} records to {}", path.display()),
            Err(e) => error!(self.log, "automatic_state_save to {} failed: {e}", path.display()),
        }
    }

    fn shutdown_cleanup(&mut self) {
        for (id, worker) in &mut self.workers {
            let status = worker.child.end(Duration::from_secs(2));
            info!(self.log, "worker {id} (pid {}) exited: {status}", worker.pid);
        }
        for mut e in std::mem::take(&mut self.ending) {
            let status = e.child.end(Duration::from_secs(2));
            info!(self.log, "worker {} (pid {}) exited: {status}", e.id, e.pid);
        }
        let _ = std::fs::remove_file(&self.config.command_socket);
        if let Some(dashboard) = &self.config.dashboard_socket {
            let _ = std::fs::remove_file(dashboard);
        }
        if let Some(pid) = &self.config.pid_file_path {
            let _ = std::fs::remove_file(pid);
        }
        info!(self.log, "master stopped");
    }
}

fn open_audit(config: &Config, log: &Logger) -> anyhow::Result<AuditLog> {
    let policy = if config.audit_fail_closed { FailPolicy::Closed } else { FailPolicy::Open };
    let mut audit = AuditLog::new(policy);
    if let Some(path) = &config.audit_logs_target {
        let (sink, notice) = FileSink::open(path, Fsync::Never)
            .map_err(|e| anyhow::anyhow!("cannot open audit_logs_target {}: {e}", path.display()))?;
        if let Some(n) = notice {
            warn!(log, "{n}");
        }
        audit = audit.with_text(sink);
    }
    if let Some(path) = &config.audit_logs_json_target {
        let (sink, notice) = JsonSink::open_file(path, Fsync::Always)
            .map_err(|e| anyhow::anyhow!("cannot open audit_logs_json_target {}: {e}", path.display()))?;
        if let Some(n) = notice {
            warn!(log, "{n}");
        }
        audit = audit.with_json_sink(sink);
    }
    Ok(audit)
}

/// The path this binary runs from (what `sozu upgrade` re-opens by default). Linux
/// appends " (deleted)" once the file was replaced; the path is still where the new
/// binary is.
fn own_path() -> std::path::PathBuf {
    let path = std::env::current_exe().unwrap_or_default();
    match path.to_str().and_then(|p| p.strip_suffix(" (deleted)")) {
        Some(stripped) => std::path::PathBuf::from(stripped),
        None => path,
    }
}
