//! HTTP/1.1 proxying: accept on active HTTP listeners, read each request head under
//! limits, route it by host, path and method, forward it to a backend of the cluster
//! (round robin, the next backend when a connect fails, the backend connection reused
//! across the client's keep-alive requests), and stream both bodies through bounded
//! buffers, finding where each ends (Content-Length or chunked) without holding it.
//! Our own answers: 400, 401, 404, 408, 502, 503, 504. Upgrades (WebSocket) become a
//! tunnel after `101`. A soft stop stops accepting and sends `Connection: close` on
//! the next response of every connection; idle ones end at `front_timeout`.

mod answers;
mod framing;
mod head;
mod io;
mod policies;
mod session;
mod step;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use sozu_scm_socket::Listeners;
use sozu_state::ConfigState;

use crate::balancer::Balancer;
use crate::counters::{Counters, Sheet};
use crate::pool::SharedPool;
use session::Session;

/// Runs the HTTP head parsers and body framing over arbitrary bytes, as a request
/// and as a response (for the fuzz target `http_parser`): nothing may panic, and a
/// parsed head is rewritten.
pub(crate) fn fuzz_one(data: &[u8]) {
    let addr = SocketAddr::from(([127, 0, 0, 1], 80));
    if let head::Parsed::Done(h) = head::parse_request(data) {
        assert!(h.len <= data.len());
        let mut out = Vec::new();
        let fields = head::ListenerFields::new(Some("X-Request-Id"), true, true);
        let forwarding = head::Forwarding::new(addr, addr, fields);
        h.write_to_backend(&mut out, &forwarding, "id", &[head::Edit::new("x-a", "b")], Some("SOZUBALANCEID"));
        let mut body = framing::BodyTracker::new(h.framing);
        let rest = &data[h.len..];
        if let Ok(n) = body.feed(rest) {
            assert!(n <= rest.len());
        }
    }
    if let head::Parsed::Done(h) = head::parse_response(data, false) {
        let mut out = Vec::new();
        h.write_to_client(&mut out, true, b"set-cookie: a=b\r\n", &[head::Edit::new("server", "")]);
        let mut body = framing::BodyTracker::new(h.framing);
        for piece in data[h.len..].chunks(7) {
            match body.feed(piece) {
                Ok(n) => assert!(n <= piece.len()),
                Err(_) => break,
            }
        }
    }
}

/// The custom answers of the HTTP listener at `addr` (looked up when a connection is
/// accepted: a few entries, no walk of the state).
fn listener_answers(state: &ConfigState, addr: SocketAddr) -> Option<answers::Custom> {
    let l = state.http_listener(addr)?;
    let h = l.http_answers.as_ref();
    let fields = [
        (301, h.and_then(|h| h.answer_301.as_ref())),
        (400, h.and_then(|h| h.answer_400.as_ref())),
        (401, h.and_then(|h| h.answer_401.as_ref())),
        (404, h.and_then(|h| h.answer_404.as_ref())),
        (408, h.and_then(|h| h.answer_408.as_ref())),
        (502, h.and_then(|h| h.answer_502.as_ref())),
        (503, h.and_then(|h| h.answer_503.as_ref())),
        (504, h.and_then(|h| h.answer_504.as_ref())),
    ];
    answers::custom(&l.answers, fields)
}

/// Listener tokens; sessions use two tokens each from `SESSION_BASE`.
pub(crate) const LISTENER_BASE: usize = 2_000;
pub(crate) const SESSION_BASE: usize = 1 << 40;

/// Timeouts of a listener (seconds in the listener's configuration).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// A request head must arrive within this, once started.
    pub request: Duration,
    /// An idle keep-alive connection is closed after this.
    pub front: Duration,
    /// A backend must answer within this.
    pub back: Duration,
    /// A backend connect must succeed within this (then the next backend is tried).
    pub connect: Duration,
}

/// The HTTP side of a worker.
#[derive(Default)]
pub(crate) struct HttpProxy {
    listeners: crate::listening::Registered,
    sessions: HashMap<usize, Session>,
    next_session: usize,
    /// Load balancing and backend health.
    pub(crate) balancer: Balancer,
    regexes: HashMap<String, Option<regex::Regex>>,
    /// False while soft-stopping.
    pub accepting: bool,
    total: Counters,
    clusters: BTreeMap<String, Counters>,
    backends: BTreeMap<(String, String), Counters>,
    next_request: u64,
    worker: u32,
    /// Every read goes through this zeroed buffer (see `session::read_into`).
    scratch: Vec<u8>,
    /// Buffer size and connection limits from the worker's configuration.
    pub(crate) limits: crate::ProxyLimits,
    /// Connections open in the other proxy (the limit is shared).
    pub(crate) others: usize,
    /// The worker's buffers (shared with the TCP proxy).
    pool: SharedPool,
    /// Idle sessions that could not read a request for want of buffers, oldest first.
    waiting: VecDeque<usize>,
    /// Listeners whose last accept failed (out of fds, say): tried again at the next tick,
    /// since an edge-triggered listener signals nothing more for what is already queued.
    accept_retry: Vec<Token>,
    /// When the sessions are next walked for expired deadlines.
    scan: crate::deadlines::Scan,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy").field("sessions", &self.sessions.len()).finish_non_exhaustive()
    }
}

impl HttpProxy {
    pub(crate) fn new(worker: u32, limits: crate::ProxyLimits, pool: SharedPool) -> Self {
        Self { accepting: true, worker, scratch: vec![0; 64 * 1024], limits, pool, ..Default::default() }
    }

    /// Open client connections.
    pub(crate) fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Backend health events for the master.
    pub(crate) fn take_events(&mut self) -> Vec<sozu_proto::Event> {
        std::mem::take(&mut self.balancer.events)
    }

    /// Counters for `QueryMetrics`.
    pub(crate) fn sheet(&self) -> Sheet<'_> {
        Sheet { total: &self.total, clusters: &self.clusters, backends: &self.backends, active: self.sessions.len() }
    }

    /// Registers the active HTTP listeners, deregisters the others. Called after every
    /// request from the master: it must not walk the clusters.
    pub(crate) fn sync_listeners(&mut self, registry: &Registry, state: &ConfigState, listeners: &Listeners) {
        let accepting = self.accepting;
        crate::listening::sync(registry, &mut self.listeners, &listeners.http, LISTENER_BASE, |addr| {
            accepting && state.http_listener_active(addr)
        });
    }

    /// Starts a soft stop: no more accepting; every connection gets `Connection: close`
    /// on its next response (an idle one is not cut: that races with the client's next
    /// request), idle ones end at `front_timeout`.
    pub(crate) fn soft_stop(&mut self, registry: &Registry, state: &ConfigState) {
        self.accepting = false;
        for (_, (_, mut l)) in self.listeners.drain() {
            let _ = registry.deregister(&mut l);
        }
        let ids: Vec<usize> = self.sessions.keys().copied().collect();
        for id in ids {
            self.pump(registry, state, id);
        }
    }

    /// Whether `token` is ours; handles it (`readable`: the event says data or an end
    /// of stream may be waiting; `closed`: the peer's end of stream is announced).
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
        if token.0 >= SESSION_BASE {
            let id = (token.0 - SESSION_BASE) / 2;
            if readable && let Some(s) = self.sessions.get_mut(&id) {
                s.readable((token.0 - SESSION_BASE).is_multiple_of(2), closed);
            }
            self.pump(registry, state, id);
            return true;
        }
        false
    }

    /// Closes what timed out (the sessions are walked when the earliest deadline known
    /// comes, otherwise at most once per `deadlines::Scan::EVERY`); returns when to look
    /// again (`None`: no session).
    pub(crate) fn tick(&mut self, registry: &Registry, state: &ConfigState, now: Instant) -> Option<Duration> {
        for token in std::mem::take(&mut self.accept_retry) {
            self.accept(registry, state, token);
        }
        self.wake_waiting(registry, state);
        let retry = (!self.accept_retry.is_empty()).then_some(Duration::from_millis(50));
        if !self.scan.due(now) {
            return [retry, self.scan.pending(now)].into_iter().flatten().min();
        }
        let expired: Vec<usize> =
            self.sessions.iter().filter(|(_, s)| s.deadline().is_some_and(|d| d <= now)).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.expire();
            }
            self.pump(registry, state, id);
        }
        let next = self.scan.walked(now, self.sessions.values().filter_map(Session::deadline).min());
        [retry, next].into_iter().flatten().min()
    }

    fn accept(&mut self, registry: &Registry, state: &ConfigState, token: Token) {
        loop {
            let Some((addr, mut front, client)) =
                crate::listening::accept(&self.listeners, token, &mut self.accept_retry)
            else {
                return;
            };
            if self.sessions.len() + self.others >= self.limits.max_sessions {
                // over max_connections / max_buffers: closed at once
                self.total.refused += 1;
                continue;
            }
            let _ = front.set_nodelay(true);
            let id = self.next_session;
            self.next_session += 1;
            self.total.connections += 1;
            if registry
                .register(&mut front, Token(SESSION_BASE + id * 2), Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            let listener = state.http_listener(addr);
            let timeouts = listener.map_or(
                Timeouts {
                    request: Duration::from_secs(10),
                    front: Duration::from_secs(60),
                    back: Duration::from_secs(30),
                    connect: Duration::from_secs(3),
                },
                |l| Timeouts {
                    request: Duration::from_secs(u64::from(l.request_timeout.max(1))),
                    front: Duration::from_secs(u64::from(l.front_timeout.max(1))),
                    back: Duration::from_secs(u64::from(l.back_timeout.max(1))),
                    connect: Duration::from_secs(u64::from(l.connect_timeout.max(1))),
                },
            );
            let custom = listener_answers(state, addr);
            let expect_proxy = listener.is_some_and(|l| l.expect_proxy);
            let fields = listener.map_or_else(head::ListenerFields::default, |l| {
                head::ListenerFields::new(
                    l.sozu_id_header.as_deref(),
                    l.send_x_real_ip.unwrap_or(false),
                    l.elide_x_real_ip.unwrap_or(false),
                )
            });
            let session = Session::new(front, client, addr, (timeouts, custom, fields), expect_proxy, Instant::now());
            self.sessions.insert(id, session);
        }
    }

    /// A regex path rule, compiled once (an invalid one never matches).
    fn regex_match(regexes: &mut HashMap<String, Option<regex::Regex>>, pattern: &str, path: &str) -> bool {
        regexes
            .entry(pattern.to_string())
            .or_insert_with(|| regex::Regex::new(pattern).ok())
            .as_ref()
            .is_some_and(|r| r.is_match(path))
    }

    /// Moves everything that can move for session `id`; `state` is needed to route a
    /// new request (without it, a complete head waits for the next event).
    fn pump(&mut self, registry: &Registry, state: &ConfigState, id: usize) {
        let Some(mut s) = self.sessions.remove(&id) else { return };
        let was_waiting = s.waiting;
        let back_token = Token(SESSION_BASE + id * 2 + 1);
        let mut ctx = session::Context {
            registry,
            back_token,
            accepting: self.accepting,
            route: None,
            now: Instant::now(),
            scratch: &mut self.scratch,
            buf: self.limits.buffer_size,
            may_start: s.charged || self.pool.borrow().can_take(),
        };
        loop {
            let step = s.step(&mut ctx);
            match step {
                session::Step::Progress => {}
                session::Step::Idle => break,
                session::Step::Closed => {
                    self.account(&mut s);
                    if s.charged {
                        self.release_buffers(registry, state);
                    }
                    let last = s.close(registry);
                    self.apply(last);
                    return;
                }
                session::Step::Route(mut head) => {
                    let regexes = &mut self.regexes;
                    let frontend =
                        state.http_frontend_for(s.listener, &head.host, &head.path, &head.method, |pattern, path| {
                            Self::regex_match(regexes, pattern, path)
                        });
                    self.total.requests += 1;
                    let config = frontend.and_then(|f| state.cluster(f.cluster_id.as_deref()?));
                    let answers = config.and_then(|c| answers::custom(&c.answers, [(503, c.answer_503.as_ref())]));
                    let listener = s.listener;
                    // the port clients reach (the public address's, else the listener's),
                    // looked up only for a redirection that keeps it
                    let port = || {
                        let l = state.http_listener(listener);
                        l.and_then(|l| l.public_address.as_ref()).map_or(listener.port(), |a| a.port as u16)
                    };
                    let rewrite = match frontend.filter(|f| policies::rewrites(f)) {
                        Some(f) => {
                            policies::rewrite(f, &head, self.regexes.get(&f.path.value).and_then(Option::as_ref))
                        }
                        None => Ok(policies::Rewrite::default()),
                    };
                    let policy = match &rewrite {
                        Ok(r) => frontend
                            .and_then(|f| policies::frontend_answer(f, config, &head, r, port))
                            .or_else(|| config.and_then(|c| policies::https_redirect(c, &head))),
                        Err(_) => None,
                    };
                    self.next_request += 1;
                    let vars = answers::Vars {
                        request_id: format!("{:x}-{:x}", self.worker, self.next_request),
                        route: frontend.map(|f| f.cluster_id.clone()),
                        ..answers::Vars::default()
                    };
                    let routed = match (frontend.map(|f| f.cluster_id.as_deref()), policy) {
                        _ if rewrite.is_err() => session::Routed::Answer(400, None),
                        (_, Some(p)) => {
                            let (status, field, template) = (p.status, p.field, p.template);
                            session::Routed::Policy { status, field, answers, template }
                        }
                        (None, None) => session::Routed::Answer(404, None),
                        (Some(None), None) => session::Routed::Answer(401, None),
                        (Some(Some(cluster)), None) => {
                            let mut candidates = self.balancer.order(state, cluster, ctx.now);
                            if candidates.is_empty() {
                                session::Routed::Answer(503, answers)
                            } else {
                                let sticky = config.is_some_and(|c| c.sticky_session).then(|| {
                                    policies::sticky_session(state, s.listener, cluster, &head, &mut candidates)
                                });
                                match self.clusters.get_mut(cluster) {
                                    Some(counters) => counters.requests += 1,
                                    None => self.clusters.entry(cluster.to_string()).or_default().requests += 1,
                                }
                                session::Routed::Backends {
                                    cluster: cluster.to_string(),
                                    candidates,
                                    answers,
                                    sticky,
                                    edits: frontend.and_then(policies::header_edits),
                                }
                            }
                        }
                    };
                    if let (session::Routed::Backends { .. }, Ok(r)) = (&routed, rewrite) {
                        head.rewrite(r.host, r.target);
                    }
                    ctx.route = Some((head, routed, vars));
                }
            }
        }
        self.account(&mut s);
        let holds = s.holds_buffers();
        let released = s.charged && !holds;
        if holds && !s.charged {
            // may_start said the pool had room, and nothing took it since
            s.charged = self.pool.borrow_mut().take();
        } else if released {
            s.charged = false;
            s.shed_buffers();
        }
        if s.waiting && !was_waiting {
            self.waiting.push_back(id);
        }
        self.sessions.insert(id, s);
        if released {
            self.release_buffers(registry, state);
        }
    }

    /// Gives one session's buffers back, and lets the sessions waiting for buffers
    /// read their requests, oldest first, while there are buffers.
    fn release_buffers(&mut self, registry: &Registry, state: &ConfigState) {
        self.pool.borrow_mut().give();
        self.wake_waiting(registry, state);
    }

    /// Lets the sessions waiting for buffers read their requests, oldest first, while
    /// there are buffers (given back by an HTTP exchange, or by a TCP connection).
    fn wake_waiting(&mut self, registry: &Registry, state: &ConfigState) {
        while self.pool.borrow().can_take() {
            let Some(id) = self.waiting.pop_front() else { break };
            if let Some(s) = self.sessions.get_mut(&id)
                && s.waiting
            {
                s.waiting = false;
                self.pump(registry, state, id);
            }
        }
    }

    /// Moves the session's fresh counts into the worker's counters.
    fn account(&mut self, s: &mut Session) {
        let c = s.take_counts();
        self.apply(c);
    }

    fn apply(&mut self, c: session::Counts) {
        let now = Instant::now();
        for (cluster, backend, addr) in &c.connected {
            self.balancer.connected(cluster, backend, *addr);
            self.balancer.opened(cluster, backend);
        }
        for (cluster, backend, addr) in &c.connect_errors {
            self.balancer.failed(cluster, backend, *addr, now);
        }
        for (cluster, backend) in &c.closed {
            self.balancer.closed(cluster, backend);
        }
        self.total.bytes_in += c.bytes_in;
        self.total.bytes_out += c.bytes_out;
        self.total.connect_errors += c.connect_errors.len() as i64;
        for status in &c.answers {
            if *status >= 500 {
                self.total.errors_5xx += 1;
            } else {
                self.total.errors_4xx += 1;
            }
        }
        for (cluster, backend, _) in &c.connect_errors {
            self.backends.entry((cluster.clone(), backend.clone())).or_default().connect_errors += 1;
        }
        if let Some((cluster, backend)) = &c.backend {
            let cl = self.clusters.entry(cluster.clone()).or_default();
            cl.bytes_in += c.bytes_in;
            cl.bytes_out += c.bytes_out;
            let be = self.backends.entry((cluster.clone(), backend.clone())).or_default();
            be.bytes_in += c.bytes_in;
            be.bytes_out += c.bytes_out;
            be.requests += c.requests;
            be.connections += c.connections;
        }
    }
}
