//! TCP proxying: accept on active TCP listeners that have a frontend, connect to the
//! cluster's backends in round robin (trying the next one when a connect fails), and
//! copy bytes both ways through bounded buffers, respecting half-close. The PROXY
//! protocol: a header the client sends first is read and taken off (the listener's
//! `expect_proxy`, the cluster's `EXPECT_HEADER`), and a version 2 header goes to the
//! backend before the client's bytes (`SEND_HEADER`: this connection's addresses;
//! `RELAY_HEADER`: those of the client's header, which is then expected).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use sozu_scm_socket::Listeners;
use sozu_state::ConfigState;

use crate::balancer::Balancer;
use crate::counters::{Counters, Sheet};
use crate::pool::SharedPool;

/// Tokens at and above this are listeners; sessions use two tokens each above
/// `SESSION_BASE`.
pub(crate) const LISTENER_BASE: usize = 1_000;
const SESSION_BASE: usize = 1_000_000;

/// Bytes waiting to go from one socket to the other.
struct Pipe {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The source reached end of stream.
    eof: bool,
    /// The destination's write side was shut down.
    shut: bool,
    /// Nothing is written yet (a PROXY header is still to be read or sent).
    hold: bool,
}

impl Pipe {
    fn new(buf: Box<[u8]>) -> Self {
        Self { buf, start: 0, end: 0, eof: false, shut: false, hold: false }
    }
}

/// The PROXY protocol of one connection.
struct Proxying {
    /// The client sends a header first, not passed on.
    expect: bool,
    /// A header goes to the backend first (`prefix` once known).
    send: bool,
    /// Bytes written to the backend before the client's: our PROXY header.
    prefix: Vec<u8>,
    /// The client and the listener address it came to.
    client: SocketAddr,
    listener: SocketAddr,
}

impl Proxying {
    fn new(state: &ConfigState, cluster: &str, listener: SocketAddr, client: SocketAddr) -> Option<Self> {
        use sozu_proto::ProxyProtocolConfig as P;
        let policy = state.cluster(cluster).and_then(|c| c.proxy_protocol).and_then(|p| P::try_from(p).ok());
        let expect = state.tcp_listener(listener).is_some_and(|l| l.expect_proxy)
            || matches!(policy, Some(P::ExpectHeader | P::RelayHeader));
        let send = matches!(policy, Some(P::SendHeader | P::RelayHeader));
        let prefix = if send && !expect { crate::proxy_protocol::header_v2(client, listener) } else { Vec::new() };
        (expect || send).then_some(Proxying { expect, send, prefix, client, listener })
    }

    /// Reads the client's header at the start of `up` (once it is there): takes it off,
    /// and makes the backend's from its addresses. False when the connection must end
    /// (a malformed header, or none before the client's end of stream or a full buffer).
    fn read_header(&mut self, up: &mut Pipe) -> bool {
        use crate::proxy_protocol::{Parsed, header_v2, parse};
        match parse(&up.buf[up.start..up.end]) {
            Parsed::Partial => !up.eof && up.end < up.buf.len(),
            Parsed::Bad => false,
            Parsed::Done { len, addresses } => {
                up.start += len;
                if up.start == up.end {
                    (up.start, up.end) = (0, 0);
                }
                self.expect = false;
                if self.send {
                    let (client, to) = addresses.unwrap_or((self.client, self.listener));
                    self.prefix = header_v2(client, to);
                }
                true
            }
        }
    }
}

struct Session {
    front: TcpStream,
    back: TcpStream,
    /// Each socket may have data to read (edge-triggered: cleared by a short read,
    /// unless the peer's end of stream was announced: it is still to be read).
    front_ready: bool,
    back_ready: bool,
    front_hup: bool,
    back_hup: bool,
    connected: bool,
    cluster: String,
    backend: String,
    backend_addr: SocketAddr,
    /// Backends not tried yet, in order.
    candidates: Vec<(String, SocketAddr)>,
    up: Pipe,
    down: Pipe,
    /// When a byte was last read from or written to the client, and the backend; when
    /// the current connect started.
    last_front: Instant,
    last_back: Instant,
    connect_started: Instant,
    /// The listener's `front_timeout` (the client socket idle), `back_timeout` (the
    /// backend socket idle) and `connect_timeout`.
    front_timeout: Duration,
    back_timeout: Duration,
    connect_timeout: Duration,
    /// Where the two buffers go back when the session ends, however it ends.
    pool: SharedPool,
    /// PROXY protocol headers still to read or send.
    proxying: Option<Box<Proxying>>,
}

impl Session {
    /// When the connection is closed for idleness: the client socket idle for
    /// `front_timeout`, or the backend socket idle for `back_timeout`.
    fn idle_deadline(&self) -> Instant {
        (self.last_front + self.front_timeout).min(self.last_back + self.back_timeout)
    }

    /// The session's next deadline: its connect's while connecting, its idleness's after.
    fn deadline(&self) -> Instant {
        if self.connected { self.idle_deadline() } else { self.connect_started + self.connect_timeout }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let pair = [std::mem::take(&mut self.up.buf), std::mem::take(&mut self.down.buf)];
        self.pool.borrow_mut().give_pair(pair);
    }
}

/// The TCP side of a worker.
#[derive(Default)]
pub(crate) struct TcpProxy {
    listeners: crate::listening::Registered,
    sessions: HashMap<usize, Session>,
    next_session: usize,
    /// Load balancing and backend health.
    pub(crate) balancer: Balancer,
    pub accepting: bool,
    /// Buffer size and connection limits from the worker's configuration.
    limits: crate::ProxyLimits,
    /// The worker's buffers (shared with the HTTP proxy).
    pool: SharedPool,
    /// Connections open in the other proxy (the limit is shared).
    pub(crate) others: usize,
    total: Counters,
    clusters: BTreeMap<String, Counters>,
    backends: BTreeMap<(String, String), Counters>,
    /// Listeners whose last accept failed (out of fds, say): tried again at the next tick.
    accept_retry: Vec<Token>,
    /// When the sessions are next walked for expired deadlines.
    scan: crate::deadlines::Scan,
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy").field("sessions", &self.sessions.len()).finish_non_exhaustive()
    }
}

impl TcpProxy {
    pub(crate) fn new(limits: crate::ProxyLimits, pool: SharedPool) -> Self {
        Self { accepting: true, limits, pool, ..Default::default() }
    }

    /// Backend health events for the master.
    pub(crate) fn take_events(&mut self) -> Vec<sozu_proto::Event> {
        std::mem::take(&mut self.balancer.events)
    }

    pub(crate) fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Registers the active TCP listeners that have a frontend, deregisters the others.
    pub(crate) fn sync_listeners(&mut self, registry: &Registry, state: &ConfigState, listeners: &Listeners) {
        let accepting = self.accepting;
        crate::listening::sync(registry, &mut self.listeners, &listeners.tcp, LISTENER_BASE, |addr| {
            accepting && state.tcp_listener_active(addr) && state.tcp_cluster_for(addr).is_some()
        });
    }

    /// Whether `token` is one of ours, and handles it (`readable`: the event says data
    /// or an end of stream may be waiting; `closed`: the peer's end of stream is
    /// announced).
    pub(crate) fn handle_event(
        &mut self,
        registry: &Registry,
        state: &ConfigState,
        token: Token,
        readable: bool,
        closed: bool,
    ) -> bool {
        if self.listeners.contains_key(&token) {
            self.accept(registry, state, token);
            return true;
        }
        if (SESSION_BASE..crate::http::SESSION_BASE).contains(&token.0) {
            let id = (token.0 - SESSION_BASE) / 2;
            if readable && let Some(s) = self.sessions.get_mut(&id) {
                if (token.0 - SESSION_BASE).is_multiple_of(2) {
                    s.front_ready = true;
                    s.front_hup |= closed;
                } else {
                    s.back_ready = true;
                    s.back_hup |= closed;
                }
            }
            self.pump(registry, id);
            return true;
        }
        false
    }

    fn accept(&mut self, registry: &Registry, state: &ConfigState, token: Token) {
        loop {
            let Some((addr, front, client)) = crate::listening::accept(&self.listeners, token, &mut self.accept_retry)
            else {
                return;
            };
            if self.sessions.len() + self.others >= self.limits.max_sessions || !self.pool.borrow().can_take() {
                // over max_connections / max_buffers: closed at once
                self.total.refused += 1;
                drop(front);
                continue;
            }
            let Some(cluster) = state.tcp_cluster_for(addr).map(str::to_string) else { continue };
            let now = Instant::now();
            let secs = |t: u32| Duration::from_secs(u64::from(t.max(1)));
            let (front_timeout, back_timeout, connect_timeout) = state
                .tcp_listener(addr)
                .map_or((Duration::from_secs(60), Duration::from_secs(30), Duration::from_secs(3)), |l| {
                    (secs(l.front_timeout), secs(l.back_timeout), secs(l.connect_timeout))
                });
            let mut candidates = self.balancer.order(state, &cluster, now);
            if candidates.is_empty() {
                continue; // no backend: the client sees a close
            }
            let id = self.next_session;
            self.next_session += 1;
            self.total.connections += 1;
            self.clusters.entry(cluster.clone()).or_default().connections += 1;
            candidates.reverse(); // pop() takes the next candidate
            let Some(back) = self.connect_next(&cluster, &mut candidates) else { continue };
            let Some([up, down]) = self.pool.borrow_mut().take_pair() else { continue };
            let proxying = Proxying::new(state, &cluster, addr, client).map(Box::new);
            let mut up = Pipe::new(up);
            up.hold = proxying.is_some();
            let mut session = Session {
                front,
                back: back.1,
                front_ready: true,
                back_ready: true,
                front_hup: false,
                back_hup: false,
                connected: false,
                cluster,
                backend: back.0,
                backend_addr: back.2,
                candidates,
                up,
                down: Pipe::new(down),
                last_front: now,
                last_back: now,
                connect_started: now,
                front_timeout,
                back_timeout,
                connect_timeout,
                pool: self.pool.clone(),
                proxying,
            };
            let _ = registry.register(
                &mut session.front,
                Token(SESSION_BASE + id * 2),
                Interest::READABLE | Interest::WRITABLE,
            );
            let _ = registry.register(
                &mut session.back,
                Token(SESSION_BASE + id * 2 + 1),
                Interest::READABLE | Interest::WRITABLE,
            );
            self.sessions.insert(id, session);
        }
    }

    fn connect_next(
        &mut self,
        cluster: &str,
        candidates: &mut Vec<(String, SocketAddr)>,
    ) -> Option<(String, TcpStream, SocketAddr)> {
        while let Some((backend, addr)) = candidates.pop() {
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    self.backends.entry((cluster.to_string(), backend.clone())).or_default().connections += 1;
                    return Some((backend, stream, addr));
                }
                // our own shortage: no backend is to blame, and none would do better
                Err(e) if crate::balancer::local_shortage(&e) => return None,
                Err(_) => self.count_connect_error(cluster, &backend, addr),
            }
        }
        None
    }

    fn count_connect_error(&mut self, cluster: &str, backend: &str, addr: SocketAddr) {
        self.total.connect_errors += 1;
        self.backends.entry((cluster.to_string(), backend.to_string())).or_default().connect_errors += 1;
        self.balancer.failed(cluster, backend, addr, std::time::Instant::now());
    }

    /// Moves bytes both ways until nothing more can move now.
    fn pump(&mut self, registry: &Registry, id: usize) {
        let Some(mut s) = self.sessions.remove(&id) else { return };
        if !s.connected {
            match s.back.take_error() {
                Ok(None) if s.back.peer_addr().is_ok() => {
                    s.connected = true;
                    s.last_back = Instant::now();
                    self.balancer.connected(&s.cluster, &s.backend, s.backend_addr);
                    self.balancer.opened(&s.cluster, &s.backend);
                }
                Ok(None) => {
                    // not connected yet (or refused without an error reported yet)
                    if let Err(e) = s.back.peer_addr()
                        && e.kind() != io::ErrorKind::NotConnected
                    {
                        return self.retry(registry, id, s);
                    }
                }
                _ => return self.retry(registry, id, s),
            }
            if !s.connected {
                self.sessions.insert(id, s);
                return;
            }
        }
        let mut done = false;
        loop {
            let mut progress = false;
            if let Some(p) = s.proxying.as_deref_mut() {
                proxy_headers(p, &mut s.back, &mut s.up, &mut progress, &mut done);
                if !p.expect && p.prefix.is_empty() {
                    s.proxying = None;
                    s.up.hold = false;
                }
            }
            let (a, b) =
                copy(&mut s.front, (&mut s.front_ready, s.front_hup), &mut s.back, &mut s.up, &mut progress, &mut done);
            let (c, d) =
                copy(&mut s.back, (&mut s.back_ready, s.back_hup), &mut s.front, &mut s.down, &mut progress, &mut done);
            self.total.bytes_in += a as i64;
            self.total.bytes_out += c as i64;
            let cl = self.clusters.entry(s.cluster.clone()).or_default();
            cl.bytes_in += a as i64;
            cl.bytes_out += c as i64;
            let be = self.backends.entry((s.cluster.clone(), s.backend.clone())).or_default();
            be.bytes_in += b as i64;
            be.bytes_out += d as i64;
            if a + d > 0 {
                s.last_front = Instant::now();
            }
            if b + c > 0 {
                s.last_back = Instant::now();
            }
            if done || !progress {
                break;
            }
        }
        if done || (s.up.shut && s.down.shut) {
            let _ = registry.deregister(&mut s.front);
            let _ = registry.deregister(&mut s.back);
            self.balancer.closed(&s.cluster, &s.backend);
            return; // dropped: both sockets closed
        }
        self.sessions.insert(id, s);
    }

    fn retry(&mut self, registry: &Registry, id: usize, mut s: Session) {
        self.count_connect_error(&s.cluster.clone(), &s.backend.clone(), s.backend_addr);
        let _ = registry.deregister(&mut s.back);
        let cluster = s.cluster.clone();
        match self.connect_next(&cluster, &mut s.candidates) {
            Some((backend, mut back, addr)) => {
                let _ = registry.register(
                    &mut back,
                    Token(SESSION_BASE + id * 2 + 1),
                    Interest::READABLE | Interest::WRITABLE,
                );
                s.back = back;
                s.back_ready = true;
                s.back_hup = false;
                s.backend = backend;
                s.backend_addr = addr;
                s.connect_started = Instant::now();
                self.sessions.insert(id, s);
            }
            None => {
                let _ = registry.deregister(&mut s.front);
            }
        }
    }

    /// Connects past `connect_timeout` go to the next backend; connections with no
    /// byte either way for `front_timeout` are closed (the sessions are walked when the
    /// earliest deadline known comes, otherwise at most once per `deadlines::Scan::EVERY`).
    /// Returns when to look again.
    pub(crate) fn tick(&mut self, registry: &Registry, state: &ConfigState, now: Instant) -> Option<Duration> {
        for token in std::mem::take(&mut self.accept_retry) {
            self.accept(registry, state, token);
        }
        let retry = (!self.accept_retry.is_empty()).then_some(Duration::from_millis(50));
        if !self.scan.due(now) {
            return [retry, self.scan.pending(now)].into_iter().flatten().min();
        }
        let ids: Vec<usize> = self.sessions.keys().copied().collect();
        for id in ids {
            if self.sessions.get(&id).is_none_or(|s| now < s.deadline()) {
                continue;
            }
            let Some(mut s) = self.sessions.remove(&id) else { continue };
            if s.connected {
                let _ = registry.deregister(&mut s.front);
                let _ = registry.deregister(&mut s.back);
                self.balancer.closed(&s.cluster, &s.backend);
            } else {
                self.retry(registry, id, s);
            }
        }
        let next = self.scan.walked(now, self.sessions.values().map(Session::deadline).min());
        [retry, next].into_iter().flatten().min()
    }

    /// Counters for `QueryMetrics`.
    pub(crate) fn sheet(&self) -> Sheet<'_> {
        Sheet { total: &self.total, clusters: &self.clusters, backends: &self.backends, active: self.sessions.len() }
    }
}

/// One direction: read `from` into `pipe` while there is room, write `pipe` to `to`
/// while it takes bytes, shut `to`'s write side once `from` ended and `pipe` drained.
/// Returns (bytes read, bytes written).
fn copy(
    from: &mut TcpStream,
    (ready, hup): (&mut bool, bool),
    to: &mut TcpStream,
    pipe: &mut Pipe,
    progress: &mut bool,
    done: &mut bool,
) -> (usize, usize) {
    let (mut read, mut written) = (0, 0);
    if !pipe.eof && pipe.end < pipe.buf.len() && *ready {
        let room = pipe.buf.len() - pipe.end;
        match from.read(&mut pipe.buf[pipe.end..]) {
            Ok(0) => {
                pipe.eof = true;
                *progress = true;
            }
            Ok(n) => {
                pipe.end += n;
                read = n;
                *progress = true;
                // a short read drained the socket: the next data is a new event
                *ready = n == room || hup;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => *ready = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => *progress = true,
            Err(_) => *done = true,
        }
    }
    if pipe.start < pipe.end && !pipe.hold {
        match to.write(&pipe.buf[pipe.start..pipe.end]) {
            Ok(n) => {
                pipe.start += n;
                written = n;
                *progress |= n > 0;
                if pipe.start == pipe.end {
                    pipe.start = 0;
                    pipe.end = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => *progress = true,
            Err(_) => *done = true,
        }
    }
    if pipe.eof && pipe.start == pipe.end && !pipe.shut && !pipe.hold {
        let _ = to.shutdown(Shutdown::Write);
        pipe.shut = true;
        *progress = true;
    }
    (read, written)
}

/// The PROXY protocol's part of a turn: the client's header read once it is whole (or
/// the session ended when it is malformed or does not come), then ours written to the
/// backend before any byte of the client's.
fn proxy_headers(p: &mut Proxying, back: &mut TcpStream, up: &mut Pipe, progress: &mut bool, done: &mut bool) {
    if p.expect && up.end > up.start {
        if !p.read_header(up) {
            *done = true;
            return;
        }
        *progress |= !p.expect;
    } else if p.expect && up.eof {
        *done = true; // the client ended before any header
        return;
    }
    if !p.expect && !p.prefix.is_empty() {
        match back.write(&p.prefix) {
            Ok(n) => {
                p.prefix.drain(..n);
                *progress |= n > 0;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => *progress = true,
            Err(_) => *done = true,
        }
    }
}
