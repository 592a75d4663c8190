//! The worker runtime.
//!
//! A worker is started by the master as `sozu worker --id N --fd F --scm S
//! --configuration-state-fd X --command-buffer-size B --max-command-buffer-size M`
//! (Sōzu 2.x's arguments). It boots in this order, every step with a deadline:
//! 1. reads one `ServerConfig` frame on its command channel;
//! 2. reads the `InitialState` (protobuf) from the state fd and applies it to its own
//!    [`ConfigState`];
//! 3. receives its listener sockets on the SCM socket (always sent, maybe empty);
//! 4. runs its mio loop: every `WorkerRequest` is applied to its own state and answered
//!    by id, in order.
//!
//! It exits when the master closes the channel, or after answering `SoftStop` (once
//! its connections ended) or `HardStop`.
//!
//! The data plane: `tcp.rs` proxies TCP listeners to their cluster's backends;
//! `http/` serves HTTP/1.1 listeners (`head.rs` parses and rewrites heads,
//! `framing.rs` finds where bodies end, `session.rs` is one client connection,
//! `mod.rs` routes and accepts, `policies.rs` applies sticky sessions and the HTTPS
//! redirection); `proxy_protocol.rs` reads and writes PROXY protocol headers (TCP
//! listeners and clusters, HTTP listeners); `pool.rs` bounds the buffers of active connections
//! (`max_buffers`). Both accept on the master's listening sockets
//! (received by SCM), never on sockets of their own. A staged load (`StagedLoad`) is
//! applied to a copy of the state until the master commits it.
//!
//! Dependencies: `httparse` (a small, fuzzed, allocation-free HTTP/1.x head parser,
//! used by hyper; we add the limits and smuggling checks on top), `regex` (regex
//! path rules of HTTP frontends, compiled once per pattern), `ppp` (HAProxy's PROXY
//! protocol, versions 1 and 2, parsed and built without IO or unsafe code; we add the
//! streaming rules: when a cut header is partial, how long one may be) and `libc`
//! (only the errno constants that tell our own shortage of fds or memory from a
//! backend's failure).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod balancer;
mod counters;
mod deadlines;
mod handle;
mod http;
mod listening;
mod pool;
mod proxy_protocol;
mod tcp;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use mio::{Events, Poll, Token};
use slog::{Logger, error, info, warn};
use sozu_channel::{BlockingChannel, Channel, ChannelError, FrameError, Limits};
use sozu_proto::{ServerConfig, WorkerRequest, WorkerResponse};
use sozu_scm_socket::{Listeners, ScmSocket, adopt_inherited_fd};
use sozu_state::ConfigState;

pub use handle::Outcome;

/// How long each boot step may take.
const BOOT_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The arguments the master passes.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// Worker id.
    pub id: u32,
    /// Command channel fd.
    pub channel_fd: RawFd,
    /// SCM socket fd.
    pub scm_fd: RawFd,
    /// Initial state file fd.
    pub state_fd: RawFd,
    /// Initial channel buffer size.
    pub command_buffer_size: usize,
    /// Largest channel buffer.
    pub max_command_buffer_size: usize,
}

/// Changes the worker's log level at run time (the `Logging` verb); returns an error
/// message for an invalid filter.
pub type SetLevel = Box<dyn Fn(&str) -> Result<(), String>>;

/// Buffer and connection limits, from the master's `ServerConfig` (`buffer_size`,
/// `max_buffers`, `max_connections`). `max_buffers` bounds the buffers of *active*
/// connections (see the `pool` module): idle keep-alive connections hold none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProxyLimits {
    /// Most bytes buffered per direction of a connection.
    pub buffer_size: usize,
    /// Most buffers held by active connections, TCP and HTTP together.
    pub max_buffers: usize,
    /// Most open client connections (TCP and HTTP together): `max_connections`.
    pub max_sessions: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits { buffer_size: 16 * 1024, max_buffers: 1000, max_sessions: 10_000 }
    }
}

impl ProxyLimits {
    fn of(config: &ServerConfig) -> ProxyLimits {
        ProxyLimits {
            buffer_size: (config.buffer_size as usize).clamp(1024, 1 << 20),
            max_buffers: (config.max_buffers as usize).max(pool::PER_CONNECTION),
            max_sessions: (config.max_connections as usize).max(1),
        }
    }
}

/// Runs the HTTP/1.1 head parsers and body framing over arbitrary bytes; for the
/// fuzz target `http_parser` only.
#[doc(hidden)]
pub fn fuzz_http(data: &[u8]) {
    http::fuzz_one(data);
}

/// Runs the PROXY protocol header reader over arbitrary bytes, whole and cut at every
/// length; for the fuzz target `proxy_header` only. Nothing may panic, a header read
/// is never longer than its input, and a cut header is never read as a different one.
#[doc(hidden)]
pub fn fuzz_proxy_header(data: &[u8]) {
    proxy_protocol::fuzz_one(data);
}

/// A running worker's state (exposed for tests and the data plane).
pub struct Worker {
    /// This worker's id.
    pub id: u32,
    /// The configuration received at boot.
    pub config: ServerConfig,
    /// The proxy configuration, as this worker applied it.
    pub state: ConfigState,
    /// A staged load in progress: state changes go to this copy until the master
    /// commits it (it becomes `state`) or aborts it (it is dropped).
    pub staged: Option<ConfigState>,
    /// Soft-stopping: `Status` answers say how many connections remain.
    draining: bool,
    /// Listener sockets received from the master.
    pub listeners: Listeners,
    /// The SCM socket, to give listeners back.
    pub scm: ScmSocket,
    log: Logger,
    set_level: SetLevel,
    proxy: tcp::TcpProxy,
    /// Buffers of active connections (`max_buffers`), shared by both proxies.
    pool: pool::SharedPool,
    http: http::HttpProxy,
    /// `metrics enable | disable | clear`: what `QueryMetrics` reports.
    reporting: counters::Reporting,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("id", &self.id).field("listeners", &self.listeners.len()).finish_non_exhaustive()
    }
}

fn boot_error(step: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("worker boot: {step}: {e}"))
}

/// Boots and runs a worker until it is told to stop or the master goes away.
pub fn run(args: &WorkerArgs, log: &Logger, set_level: SetLevel) -> io::Result<()> {
    let limits = Limits::new(args.command_buffer_size, args.max_command_buffer_size);
    let channel = UnixStream::from(adopt_inherited_fd(args.channel_fd)?);
    let scm = ScmSocket::new(UnixStream::from(adopt_inherited_fd(args.scm_fd)?))?;
    let mut state_file = File::from(adopt_inherited_fd(args.state_fd)?);

    let mut boot: BlockingChannel<WorkerResponse, ServerConfig> = BlockingChannel::new(channel, limits, limits)?;
    let config = boot.recv(Some(BOOT_STEP_TIMEOUT)).map_err(|e| boot_error("reading ServerConfig", e))?;

    let size = state_file.metadata().map_or(0, |m| m.len() as usize);
    let mut bytes = Vec::with_capacity(size);
    state_file.read_to_end(&mut bytes)?;
    drop(state_file);
    // one request at a time: the decoded requests are never all held beside the state
    let mut state = ConfigState::new();
    let count = sozu_proto::for_each_initial_request(&bytes, |request| {
        let id = request.id;
        if let Err(e) = state.dispatch_owned(request.content) {
            warn!(log, "initial state request {id} not applied: {e}");
        }
    })
    .map_err(|e| boot_error("decoding the initial state", e))?;
    drop(bytes);
    let listeners = scm.recv_listeners(Some(BOOT_STEP_TIMEOUT)).map_err(|e| boot_error("receiving listeners", e))?;
    info!(log, "worker {} booted: {} requests of initial state, {} listeners", args.id, count, listeners.len());

    let channel = boot.into_nonblocking::<WorkerResponse, WorkerRequest>()?;
    (set_level)(&config.log_level).unwrap_or_else(|e| warn!(log, "log_level from the master: {e}"));
    let limits = ProxyLimits::of(&config);
    let pool = pool::BufferPool::shared(limits.buffer_size, limits.max_buffers);
    let mut worker = Worker {
        id: args.id,
        config,
        state,
        staged: None,
        draining: false,
        listeners,
        scm,
        log: log.clone(),
        set_level,
        proxy: tcp::TcpProxy::new(limits, pool.clone()),
        http: http::HttpProxy::new(args.id, limits, pool.clone()),
        pool,
        reporting: counters::Reporting::default(),
    };
    worker.event_loop(channel)
}

impl Worker {
    /// Open client connections, TCP and HTTP.
    pub(crate) fn sessions(&self) -> usize {
        self.proxy.sessions() + self.http.sessions()
    }

    fn sync_listeners(&mut self, registry: &mio::Registry) {
        self.proxy.sync_listeners(registry, &self.state, &self.listeners);
        self.http.sync_listeners(registry, &self.state, &self.listeners);
    }

    /// Every counter of this worker, for `QueryMetrics`.
    fn metrics(&self) -> sozu_proto::WorkerMetrics {
        let (live, active) = counters::Totals::sum(&[self.proxy.sheet(), self.http.sheet()]);
        let mut metrics = self.reporting.report(&live).metrics(active);
        let pool = self.pool.borrow();
        for (name, value) in [("buffers_in_use", pool.in_use()), ("buffers_peak", pool.peak())] {
            let gauge = sozu_proto::filtered_metrics::Inner::Gauge(value as u64);
            metrics.proxy.insert(name.into(), sozu_proto::FilteredMetrics { inner: Some(gauge) });
        }
        metrics
    }

    /// `ConfigureMetrics`: enable, disable or clear what `QueryMetrics` reports.
    fn configure_metrics(&mut self, what: sozu_proto::MetricsConfiguration) {
        let (live, _) = counters::Totals::sum(&[self.proxy.sheet(), self.http.sheet()]);
        self.reporting.configure(&live, what);
    }

    fn event_loop(&mut self, mut channel: Channel<WorkerResponse, WorkerRequest>) -> io::Result<()> {
        let mut poll = Poll::new()?;
        // writable events only while an answer waits: the master reading our answers
        // does not wake us for nothing
        channel.register(poll.registry(), Token(0))?;
        let mut events = Events::with_capacity(256);
        let mut stopping = false;
        // a SoftStop waits for the proxied connections to end before it is answered
        let mut soft_stop: Option<String> = None;
        self.sync_listeners(poll.registry());
        // answers not yet in the channel: while there are any, no new request is read
        // (backpressure: a master sending faster than it reads never loses an answer)
        let mut outbox: VecDeque<WorkerResponse> = VecDeque::new();
        loop {
            // backend health events go to the master like answers, with an id no task has
            for event in self.proxy.take_events().into_iter().chain(self.http.take_events()) {
                outbox.push_back(WorkerResponse {
                    id: format!("EVENT-{}", self.id),
                    status: sozu_proto::ResponseStatus::Ok as i32,
                    message: String::new(),
                    content: Some(sozu_proto::response_content::ContentType::Event(event).into()),
                });
            }
            loop {
                while let Some(answer) = outbox.front() {
                    match channel.queue(answer) {
                        Ok(()) => {
                            outbox.pop_front();
                        }
                        Err(ChannelError::Frame(FrameError::WriteBufferFull { .. })) => {
                            // write what is queued; if it all went, queue more
                            if channel.flush().unwrap_or(false) {
                                continue;
                            }
                            break;
                        }
                        Err(e) => {
                            error!(self.log, "cannot answer {}: {e}", answer.id);
                            outbox.pop_front();
                        }
                    }
                }
                if !outbox.is_empty() || stopping {
                    break;
                }
                match channel.poll_message() {
                    Ok(Some(request))
                        if matches!(
                            request.content.request_type,
                            Some(sozu_proto::request::RequestType::SoftStop(_))
                        ) =>
                    {
                        info!(self.log, "worker {}: soft stop, draining {} connections", self.id, self.sessions());
                        self.proxy.accepting = false;
                        self.http.soft_stop(poll.registry(), &self.state);
                        self.sync_listeners(poll.registry());
                        soft_stop = Some(request.id);
                        self.draining = true;
                    }
                    Ok(Some(request)) => {
                        let (response, outcome) = self.handle(request);
                        outbox.push_back(response);
                        self.sync_listeners(poll.registry());
                        if outcome == Outcome::Stop {
                            stopping = true;
                        }
                    }
                    Ok(None) => break,
                    Err(ChannelError::Closed) => {
                        info!(self.log, "worker {}: master closed the channel, exiting", self.id);
                        return Ok(());
                    }
                    Err(ChannelError::Frame(e)) => {
                        // answer nothing we cannot match; a bad frame from the master is a bug
                        error!(self.log, "worker {}: bad frame from the master: {e}", self.id);
                        if matches!(e, FrameError::TooLarge { .. } | FrameError::Truncated { .. }) {
                            return Err(io::Error::other(e.to_string()));
                        }
                    }
                    Err(e) => return Err(io::Error::other(e.to_string())),
                }
            }
            // timeouts first: closing a timed-out connection can end a drain
            let now = std::time::Instant::now();
            let timeout =
                [self.http.tick(poll.registry(), &self.state, now), self.proxy.tick(poll.registry(), &self.state, now)]
                    .into_iter()
                    .flatten()
                    .min();
            if self.sessions() == 0
                && let Some(id) = soft_stop.take()
            {
                info!(self.log, "worker {}: drained", self.id);
                outbox.push_back(WorkerResponse::ok(id, None));
                stopping = true;
                continue;
            }
            if stopping && outbox.is_empty() && channel.flush().unwrap_or(true) {
                info!(self.log, "worker {} stopped", self.id);
                return Ok(());
            }
            if channel.flush().is_err() {
                info!(self.log, "worker {}: master went away, exiting", self.id);
                return Ok(());
            }
            channel.sync_interest(poll.registry())?;
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue; // SIGSTOP/SIGCONT, other signals
                }
                return Err(e);
            }
            for event in events.iter() {
                if event.token() != Token(0) {
                    // HTTP first: its session tokens are above the TCP ones
                    // each proxy admits connections up to the shared limit
                    self.http.others = self.proxy.sessions();
                    self.proxy.others = self.http.sessions();
                    let closed = event.is_read_closed() || event.is_error();
                    let readable = event.is_readable() || closed;
                    if !self.http.handle_event(poll.registry(), &self.state, event.token(), readable, closed) {
                        self.proxy.handle_event(poll.registry(), &self.state, event.token(), readable, closed);
                    }
                    continue;
                }
                if event.is_readable() || event.is_read_closed() {
                    channel.handle_readable();
                }
                if event.is_writable() {
                    let _ = channel.flush();
                }
            }
        }
    }
}
