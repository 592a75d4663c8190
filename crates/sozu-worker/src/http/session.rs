//! One client connection of the HTTP proxy: a request head, then its exchange with a
//! backend, then the next request (keep-alive), or a tunnel after `101`.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry};

use super::Timeouts;
use super::answers::{Custom, Vars, answer_with};
use super::framing::BodyTracker;
use super::head::{MAX_HEAD, Parsed, RequestHead, parse_request, parse_response};
use super::io::{Io, read_into, write_from};
use super::policies::{HeaderEdits, Sticky};
pub(super) use super::step::{Context, Routed, Step};
pub(super) use crate::counters::SessionCounts as Counts;

struct Back {
    stream: TcpStream,
    addr: SocketAddr,
    /// The socket may have data to read; `hup`: its end of stream was announced.
    ready: bool,
    hup: bool,
    connected: bool,
    cluster: String,
    backend: String,
    /// Backends not tried yet, next last.
    candidates: Vec<(String, SocketAddr)>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// Some byte was written to this backend for the current request.
    wrote: bool,
    eof: bool,
    /// The backend may take another request on this connection.
    reusable: bool,
}

struct Exchange {
    request: BodyTracker,
    /// Set once the response head is read.
    response: Option<BodyTracker>,
    head_method: bool,
    keep_alive: bool,
    upgrade: bool,
    /// Part of a response was sent to the client.
    answered: bool,
    /// Close the client connection after this response.
    close: bool,
    /// The request head, kept while it went to a reused backend connection (and has no
    /// body): if the backend had closed that connection, it is sent again on a fresh
    /// one (once).
    replay: Option<Vec<u8>>,
}

enum Phase {
    Head,
    Exchange(Exchange),
    Tunnel,
}

pub(super) struct Session {
    front: TcpStream,
    /// The client socket may have data to read; `front_hup`: its end of stream was
    /// announced (a short read then does not mean drained).
    front_ready: bool,
    front_hup: bool,
    pub listener: SocketAddr,
    /// What each forwarded request gets added, formatted once.
    forwarding: super::head::Forwarding,
    timeouts: Timeouts,
    /// Custom answer bodies: the listener's, and the current request's cluster's.
    listener_answers: Option<Custom>,
    cluster_answers: Option<Custom>,
    /// The current request's sticky session, if its cluster has them.
    sticky: Option<Sticky>,
    /// The current request's frontend's header edits, if it has any.
    edits: Option<Box<HeaderEdits>>,
    /// What the current request's answers' variables stand for.
    vars: Vars,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    front_eof: bool,
    back: Option<Back>,
    phase: Phase,
    /// Close once `out` is written.
    closing: bool,
    last_progress: Instant,
    /// Set when a timeout already fired, or the close started: the end must come by then.
    hard_deadline: Option<Instant>,
    /// Our side is shut down; what the client still sends is read and dropped until it
    /// closes (closing with unread input would reset the connection and could destroy
    /// our last answer in flight).
    lingering: bool,
    /// Close at the next step, whatever is pending.
    dead: bool,
    /// The backend connect took longer than `connect_timeout`: try the next one.
    connect_timed_out: bool,
    counts: Counts,
    /// The worker's buffer pool counts this session's buffers (it is in an exchange).
    pub charged: bool,
    /// Idle, with a request possibly waiting to be read, but no buffer was left.
    pub waiting: bool,
    /// The listener's `expect_proxy`: the connection starts with a PROXY protocol
    /// header, not read yet; its client address is the one the forwarding headers name.
    expect_proxy: bool,
}

impl Session {
    pub fn new(
        front: TcpStream,
        client: SocketAddr,
        listener: SocketAddr,
        (timeouts, listener_answers, fields): (Timeouts, Option<Custom>, super::head::ListenerFields),
        expect_proxy: bool,
        now: Instant,
    ) -> Self {
        Session {
            listener_answers,
            cluster_answers: None,
            sticky: None,
            edits: None,
            vars: Vars::default(),
            front,
            front_ready: true,
            front_hup: false,
            listener,
            forwarding: super::head::Forwarding::new(client, listener, fields),
            timeouts,
            inbuf: Vec::new(),
            out: Vec::new(),
            front_eof: false,
            back: None,
            phase: Phase::Head,
            closing: false,
            last_progress: now,
            hard_deadline: None,
            lingering: false,
            dead: false,
            connect_timed_out: false,
            counts: Counts::default(),
            charged: false,
            waiting: false,
            expect_proxy,
        }
    }

    /// Whether the session is in an exchange (or a tunnel), or has bytes buffered either
    /// way: what the buffer pool counts. An idle keep-alive session holds none.
    pub fn holds_buffers(&self) -> bool {
        let back_busy = self.back.as_ref().is_some_and(|b| !b.inbuf.is_empty() || !b.out.is_empty());
        !matches!(self.phase, Phase::Head) || !self.inbuf.is_empty() || !self.out.is_empty() || back_busy
    }

    /// Lets an idle session's buffers go back to the allocator when they grew past a
    /// small request's size.
    pub fn shed_buffers(&mut self) {
        const KEEP: usize = 1024;
        let shed = |v: &mut Vec<u8>| {
            if v.is_empty() && v.capacity() > KEEP {
                *v = Vec::new();
            }
        };
        shed(&mut self.inbuf);
        shed(&mut self.out);
        if let Some(b) = self.back.as_mut() {
            shed(&mut b.inbuf);
            shed(&mut b.out);
        }
    }

    /// A readiness event for the client (`front`) or the backend socket; `closed`: it
    /// announced the peer's end of stream.
    pub fn readable(&mut self, front: bool, closed: bool) {
        if front {
            self.front_ready = true;
            self.front_hup |= closed;
        } else if let Some(b) = self.back.as_mut() {
            b.ready = true;
            b.hup |= closed;
        }
    }

    pub fn take_counts(&mut self) -> Counts {
        let mut c = std::mem::take(&mut self.counts);
        c.backend = self.back.as_ref().map(|b| (b.cluster.clone(), b.backend.clone()));
        c
    }

    pub fn close(mut self, registry: &Registry) -> Counts {
        let _ = registry.deregister(&mut self.front);
        self.drop_back(registry);
        self.take_counts()
    }

    /// Closes the backend connection, if any.
    fn drop_back(&mut self, registry: &Registry) {
        if let Some(mut b) = self.back.take() {
            let _ = registry.deregister(&mut b.stream);
            if b.connected {
                self.counts.closed.push((b.cluster, b.backend));
            }
        }
    }

    /// When this session times out, if it can.
    pub fn deadline(&self) -> Option<Instant> {
        if self.hard_deadline.is_some() {
            return self.hard_deadline;
        }
        let t = match &self.phase {
            _ if self.closing => self.timeouts.front,
            Phase::Head if self.inbuf.is_empty() => self.timeouts.front,
            Phase::Head => self.timeouts.request,
            Phase::Exchange(_) if self.back.as_ref().is_some_and(|b| !b.connected) => self.timeouts.connect,
            Phase::Exchange(_) => self.timeouts.back,
            Phase::Tunnel => self.timeouts.front,
        };
        Some(self.last_progress + t)
    }

    /// The deadline passed: answer what can be answered (408, 504) and close. Returns
    /// the status answered.
    pub fn expire(&mut self) -> Option<u16> {
        if self.hard_deadline.is_some() {
            self.dead = true;
            return None;
        }
        if matches!(self.phase, Phase::Exchange(_)) && self.back.as_ref().is_some_and(|b| !b.connected) {
            self.connect_timed_out = true;
            return None;
        }
        let status = match &self.phase {
            _ if self.hard_deadline.is_some() || self.closing => None,
            Phase::Head if !self.inbuf.is_empty() => Some(408),
            Phase::Exchange(ex) if !ex.answered => Some(504),
            _ => None,
        };
        if let Some(s) = status {
            if s == 408 {
                self.vars = Vars { duration: format!("{}s", self.timeouts.request.as_secs()), ..Vars::default() };
            } else {
                self.vars.duration = format!("{}s", self.timeouts.back.as_secs());
            }
            let body = self.custom_body(s);
            self.out.extend_from_slice(&answer_with(s, true, body.as_deref(), None, &self.vars));
            self.counts.answers.push(s);
        } else {
            // nothing to say: drop what is pending so the close is immediate
            self.out.clear();
        }
        self.inbuf.clear();
        self.phase = Phase::Head;
        self.closing = true;
        self.hard_deadline = Some(Instant::now() + Duration::from_secs(1));
        status
    }

    /// The operator's body for `status`: the cluster's, else the listener's.
    fn custom_body(&self, status: u16) -> Option<std::sync::Arc<str>> {
        [&self.cluster_answers, &self.listener_answers].into_iter().flatten().find_map(|c| c.get(&status).cloned())
    }

    fn own_answer(&mut self, status: u16, close: bool) {
        self.own_answer_to(status, close, None, None);
    }

    /// Our answer, with one more header field when `field` is set, and `template`
    /// instead of the operator's answers when set.
    fn own_answer_to(&mut self, status: u16, close: bool, field: Option<(&str, &str)>, template: Option<&str>) {
        let body = self.custom_body(status);
        let custom = template.or(body.as_deref());
        self.out.extend_from_slice(&answer_with(status, close, custom, field, &self.vars));
        self.counts.answers.push(status);
        if close {
            self.closing = true;
        }
    }

    /// Moves what can move; see [`Step`].
    pub fn step(&mut self, ctx: &mut Context<'_>) -> Step {
        if self.dead {
            return Step::Closed;
        }
        if self.lingering {
            let mut sink = Vec::new();
            return loop {
                sink.clear();
                match read_into(
                    &mut self.front,
                    (&mut self.front_ready, self.front_hup),
                    &mut sink,
                    ctx.buf,
                    ctx.scratch,
                ) {
                    Io::Read(_) => continue,
                    Io::Blocked => break Step::Idle,
                    Io::Eof | Io::Failed => break Step::Closed,
                }
            };
        }
        let mut progress = false;
        if let Some((head, routed, vars)) = ctx.route.take() {
            self.vars = vars;
            self.start(ctx, head, routed);
            progress = true;
        }
        // from the client (a new request only with buffers for it)
        let gated = matches!(self.phase, Phase::Head) && self.inbuf.is_empty() && !ctx.may_start;
        self.waiting = gated && self.front_ready && !self.closing && !self.front_eof;
        let wants_more = match &self.phase {
            _ if self.closing || self.front_eof || gated => false,
            Phase::Head => self.inbuf.len() < MAX_HEAD,
            Phase::Exchange(ex) => !ex.request.done() && self.inbuf.len() < ctx.buf,
            Phase::Tunnel => self.inbuf.len() < ctx.buf,
        };
        if wants_more {
            let limit = if matches!(self.phase, Phase::Head) { MAX_HEAD } else { ctx.buf };
            match read_into(
                &mut self.front,
                (&mut self.front_ready, self.front_hup),
                &mut self.inbuf,
                limit,
                ctx.scratch,
            ) {
                Io::Read(n) => {
                    self.counts.bytes_in += n as i64;
                    progress = true;
                }
                Io::Eof => {
                    self.front_eof = true;
                    progress = true;
                }
                Io::Blocked => {}
                Io::Failed => return Step::Closed,
            }
        }
        let moved = match self.phase {
            Phase::Head => match self.head() {
                Ok(Some(head)) => return Step::Route(head),
                Ok(None) => false,
                Err(()) => return Step::Closed,
            },
            Phase::Exchange(_) => match self.exchange(ctx) {
                Ok(moved) => moved,
                Err(()) => return Step::Closed,
            },
            Phase::Tunnel => match self.tunnel(ctx) {
                Ok(moved) => moved,
                Err(()) => return Step::Closed,
            },
        };
        progress |= moved;
        // to the client
        match write_from(&mut self.front, &mut self.out) {
            Ok(n) if n > 0 => {
                self.counts.bytes_out += n as i64;
                progress = true;
            }
            Ok(_) => {}
            Err(()) => return Step::Closed,
        }
        if self.closing && self.out.is_empty() {
            let _ = self.front.shutdown(Shutdown::Write);
            self.drop_back(ctx.registry);
            self.lingering = true;
            self.hard_deadline = Some(ctx.now + Duration::from_secs(2));
            return Step::Progress;
        }
        if progress {
            self.last_progress = ctx.now;
            Step::Progress
        } else {
            Step::Idle
        }
    }

    /// Waiting for a request head: `Ok(Some)` once one is complete.
    fn head(&mut self) -> Result<Option<RequestHead>, ()> {
        if self.closing {
            return Ok(None);
        }
        if self.inbuf.is_empty() {
            // idle keep-alive connection: the client's close ends it. A soft stop does
            // not cut it (that would race with the client's next request): its next
            // response says `Connection: close`, or front_timeout ends it.
            return if self.front_eof { Err(()) } else { Ok(None) };
        }
        if self.expect_proxy {
            // not an HTTP client when the header is malformed: closed without an answer
            let Some(client) = crate::proxy_protocol::take_header(&mut self.inbuf, self.front_eof)? else {
                return Ok(None);
            };
            self.expect_proxy = false;
            if let Some(client) = client {
                self.forwarding = self.forwarding.for_client(client);
            }
            if self.inbuf.is_empty() {
                return if self.front_eof { Err(()) } else { Ok(None) };
            }
        }
        match parse_request(&self.inbuf) {
            Parsed::Done(head) => Ok(Some(head)),
            Parsed::Partial if self.front_eof => Err(()),
            Parsed::Partial => Ok(None),
            Parsed::Bad(_) => {
                self.inbuf.clear();
                self.vars = Vars::default();
                self.own_answer(400, true);
                Ok(None)
            }
        }
    }

    /// A routed request: answer it ourselves, or send its head to a backend.
    fn start(&mut self, ctx: &Context<'_>, head: RequestHead, routed: Routed) {
        self.sticky = None;
        self.edits = None;
        let (cluster, mut candidates) = match routed {
            Routed::Answer(status, answers) => {
                self.cluster_answers = answers;
                self.answer_unread(ctx, &head, status, None, None);
                return;
            }
            Routed::Policy { status, field, answers, template } => {
                self.cluster_answers = answers;
                self.answer_unread(ctx, &head, status, Some((field.0, &field.1)), template.as_deref());
                return;
            }
            Routed::Backends { cluster, candidates, answers, sticky, edits } => {
                self.cluster_answers = answers;
                self.sticky = sticky;
                self.edits = edits;
                (cluster, candidates)
            }
        };
        self.inbuf.drain(..head.len.min(self.inbuf.len()));
        candidates.reverse(); // pop() gives the next one
        // a keep-alive client stays on its backend connection while it asks the same
        // cluster and that backend is still one of its backends
        // (and, in a sticky session, the backend its cookie names first if that one is up)
        let named = self.sticky.as_ref().and_then(Sticky::named).filter(|n| candidates.iter().any(|(c, _)| c == n));
        let reuse = self.back.as_ref().and_then(|b| {
            (b.reusable && !b.eof && !b.hup && b.cluster == cluster && named.is_none_or(|n| n == b.backend))
                .then(|| candidates.iter().position(|(id, _)| *id == b.backend))?
        });
        if reuse.is_none() {
            self.drop_back(ctx.registry);
        }
        let mut out = Vec::with_capacity(head.len + 256);
        let edits = self.edits.as_deref().map_or(&[][..], |e| &e.request);
        let sticky_cookie = self.sticky.as_ref().map(|s| s.name.as_str());
        head.write_to_backend(&mut out, &self.forwarding, &self.vars.request_id, edits, sticky_cookie);
        let replay = (reuse.is_some() && head.framing == super::framing::Framing::None).then(|| out.clone());
        if let Some(index) = reuse {
            if let Some(b) = self.back.as_mut() {
                candidates.remove(index);
                b.candidates = candidates;
                b.out = out;
                b.wrote = false;
                b.inbuf.clear();
                self.counts.requests += 1;
                self.vars.backend_id.clone_from(&b.backend);
            }
        } else {
            match self.connect(ctx, &cluster, &mut candidates) {
                Some(mut b) => {
                    b.out = out;
                    b.candidates = candidates;
                    self.back = Some(b);
                    self.counts.requests += 1;
                }
                None => {
                    let close = !head.keep_alive || head.framing != super::framing::Framing::None;
                    self.own_answer(503, close);
                    return;
                }
            }
        }
        self.phase = Phase::Exchange(Exchange {
            request: BodyTracker::new(head.framing),
            response: None,
            head_method: head.method == "HEAD",
            keep_alive: head.keep_alive,
            upgrade: head.upgrade,
            answered: false,
            close: false,
            replay,
        });
    }

    /// Our answer to a request whose body, if any, is not read.
    fn answer_unread(
        &mut self,
        ctx: &Context<'_>,
        head: &RequestHead,
        status: u16,
        field: Option<(&str, &str)>,
        template: Option<&str>,
    ) {
        self.inbuf.drain(..head.len.min(self.inbuf.len()));
        // a body we will not read makes the connection unusable
        let close = !head.keep_alive || head.framing != super::framing::Framing::None || !ctx.accepting;
        self.own_answer_to(status, close, field, template);
    }

    /// The reused backend connection failed before any byte of the response: send the
    /// request again on a fresh connection to the same backend. False when it cannot
    /// be replayed (a body, already retried, or the connect fails).
    fn replay_on_fresh_connection(&mut self, ctx: &Context<'_>) -> bool {
        let Phase::Exchange(ex) = &mut self.phase else { return false };
        let Some(replay) = ex.replay.take() else { return false };
        let Some(old) = self.back.as_ref() else { return false };
        if !old.inbuf.is_empty() {
            return false;
        }
        let (cluster, mut candidates) = (old.cluster.clone(), vec![(old.backend.clone(), old.addr)]);
        self.drop_back(ctx.registry);
        match self.connect(ctx, &cluster, &mut candidates) {
            Some(mut b) => {
                b.out = replay;
                self.back = Some(b);
                true
            }
            None => false,
        }
    }

    /// Connects to the next candidate that accepts a connect call.
    fn connect(
        &mut self,
        ctx: &Context<'_>,
        cluster: &str,
        candidates: &mut Vec<(String, SocketAddr)>,
    ) -> Option<Back> {
        while let Some((backend, addr)) = candidates.pop() {
            match TcpStream::connect(addr) {
                Ok(mut stream) => {
                    // heads and bodies go out in separate writes: no Nagle delay
                    let _ = stream.set_nodelay(true);
                    if ctx
                        .registry
                        .register(&mut stream, ctx.back_token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.counts.connections += 1;
                    self.vars.backend_id.clone_from(&backend);
                    return Some(Back {
                        stream,
                        addr,
                        ready: true,
                        hup: false,
                        connected: false,
                        cluster: cluster.to_string(),
                        backend,
                        candidates: Vec::new(),
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        wrote: false,
                        eof: false,
                        reusable: false,
                    });
                }
                // our own shortage: no backend is to blame, and none would do better
                Err(e) if crate::balancer::local_shortage(&e) => return None,
                Err(_) => self.counts.connect_errors.push((cluster.to_string(), backend, addr)),
            }
        }
        None
    }

    /// Whether the backend connection is established; on a failed connect, the next
    /// backend is tried (the request is still whole in `out`).
    fn check_connected(&mut self, ctx: &Context<'_>) -> Result<bool, u16> {
        let Some(b) = self.back.as_mut() else { return Err(502) };
        if b.connected {
            return Ok(true);
        }
        let timed_out = std::mem::take(&mut self.connect_timed_out);
        if !timed_out && let Ok(None) = b.stream.take_error() {
            match b.stream.peer_addr() {
                Ok(_) => {
                    b.connected = true;
                    self.counts.connected.push((b.cluster.clone(), b.backend.clone(), b.addr));
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(_) => {}
            }
        }
        // refused, failed or timed out: the next backend
        let Some(mut old) = self.back.take() else { return Err(502) };
        let _ = ctx.registry.deregister(&mut old.stream);
        self.counts.connect_errors.push((old.cluster.clone(), old.backend.clone(), old.addr));
        self.last_progress = ctx.now;
        if old.wrote {
            return Err(502);
        }
        let mut candidates = std::mem::take(&mut old.candidates);
        match self.connect(ctx, &old.cluster, &mut candidates) {
            Some(mut b) => {
                b.out = std::mem::take(&mut old.out);
                b.candidates = candidates;
                self.back = Some(b);
                Ok(false)
            }
            None => Err(503),
        }
    }

    /// Failure of the exchange: our answer if nothing was sent yet (the client
    /// connection stays usable when its request was read whole), else a close.
    fn fail(&mut self, ctx: &Context<'_>, status: u16) -> Result<bool, ()> {
        let (answered, keep) = match &self.phase {
            Phase::Exchange(ex) => (ex.answered, ex.request.done() && ex.keep_alive && ctx.accepting),
            _ => (false, false),
        };
        if answered {
            return Err(());
        }
        self.drop_back(ctx.registry);
        self.phase = Phase::Head;
        if !keep {
            self.inbuf.clear();
        }
        self.own_answer(status, !keep);
        Ok(true)
    }

    fn exchange(&mut self, ctx: &mut Context<'_>) -> Result<bool, ()> {
        let mut moved = false;
        let Phase::Exchange(ex) = &mut self.phase else { return Ok(false) };
        let Some(b) = self.back.as_mut() else { return Err(()) };
        // request body: from the client's bytes to the backend's queue
        if !ex.request.done() && b.out.len() < ctx.buf && !self.inbuf.is_empty() {
            let room = (ctx.buf - b.out.len()).min(self.inbuf.len());
            let Ok(n) = ex.request.feed(&self.inbuf[..room]) else { return self.fail(ctx, 400) };
            b.out.extend(self.inbuf.drain(..n));
            moved |= n > 0;
        }
        if !ex.request.done() && self.front_eof && self.inbuf.is_empty() {
            return Err(()); // the client left mid-request
        }
        match self.check_connected(ctx) {
            Ok(true) => {}
            Ok(false) => return Ok(moved),
            Err(status) => return self.fail(ctx, status),
        }
        let Phase::Exchange(ex) = &mut self.phase else { return Ok(moved) };
        let Some(b) = self.back.as_mut() else { return Err(()) };
        match write_from(&mut b.stream, &mut b.out) {
            Ok(n) if n > 0 => {
                b.wrote = true;
                moved = true;
            }
            Ok(_) => {}
            Err(()) if self.replay_on_fresh_connection(ctx) => return Ok(true),
            Err(()) => return self.fail(ctx, 502),
        }
        // from the backend
        if !b.eof && self.out.len() < ctx.buf {
            match read_into(&mut b.stream, (&mut b.ready, b.hup), &mut b.inbuf, ctx.buf, ctx.scratch) {
                Io::Read(_) => moved = true,
                Io::Eof => {
                    b.eof = true;
                    moved = true;
                }
                Io::Blocked => {}
                Io::Failed => b.eof = true,
            }
        }
        while ex.response.is_none() && !b.inbuf.is_empty() {
            match parse_response(&b.inbuf, ex.head_method) {
                Parsed::Partial if b.eof => return self.fail(ctx, 502),
                Parsed::Partial => break,
                Parsed::Bad(_) => return self.fail(ctx, 502),
                Parsed::Done(head) => {
                    b.inbuf.drain(..head.len);
                    moved = true;
                    ex.answered = true;
                    if head.status == 101 && ex.upgrade {
                        head.write_to_client(&mut self.out, false, b"", &[]);
                        self.out.append(&mut b.inbuf);
                        b.out.append(&mut self.inbuf);
                        self.phase = Phase::Tunnel;
                        return Ok(true);
                    }
                    if (100..200).contains(&head.status) {
                        head.write_to_client(&mut self.out, false, b"", &[]);
                        continue;
                    }
                    let body = BodyTracker::new(head.framing);
                    ex.close = !ex.keep_alive || !ctx.accepting || !ex.request.done() || body.until_close();
                    b.reusable = head.keep_alive;
                    let cookie = self.sticky.as_ref().map(|s| s.set_cookie(&b.backend)).unwrap_or_default();
                    let edits = self.edits.as_deref().map_or(&[][..], |e| &e.response);
                    head.write_to_client(&mut self.out, ex.close, &cookie, edits);
                    ex.response = Some(body);
                }
            }
        }
        if ex.response.is_none() && b.eof {
            if b.inbuf.is_empty() && self.replay_on_fresh_connection(ctx) {
                return Ok(true);
            }
            return self.fail(ctx, 502);
        }
        let Some(body) = ex.response.as_mut() else { return Ok(moved) };
        if !body.done() && self.out.len() < ctx.buf && !b.inbuf.is_empty() {
            let room = (ctx.buf - self.out.len()).min(b.inbuf.len());
            let Ok(n) = body.feed(&b.inbuf[..room]) else { return Err(()) };
            self.out.extend(b.inbuf.drain(..n));
            moved |= n > 0;
        }
        let complete = body.done() || (body.until_close() && b.eof && b.inbuf.is_empty());
        if !complete {
            if b.eof && b.inbuf.is_empty() {
                // the backend died mid-response: the client must see a close, not a hang
                self.closing = true;
            }
            return Ok(moved);
        }
        let (close, request_done) = (ex.close, ex.request.done());
        if !b.reusable || !request_done || !b.inbuf.is_empty() {
            self.drop_back(ctx.registry);
        }
        self.phase = Phase::Head;
        if close || !request_done {
            self.inbuf.clear();
            self.closing = true;
        }
        Ok(true)
    }

    /// After `101`: bytes both ways until either side ends.
    fn tunnel(&mut self, ctx: &mut Context<'_>) -> Result<bool, ()> {
        let Some(b) = self.back.as_mut() else { return Err(()) };
        let mut moved = false;
        if b.out.len() < ctx.buf && !self.inbuf.is_empty() {
            b.out.append(&mut self.inbuf);
            moved = true;
        }
        match write_from(&mut b.stream, &mut b.out) {
            Ok(n) => moved |= n > 0,
            Err(()) => return Err(()),
        }
        if !b.eof && self.out.len() < ctx.buf {
            match read_into(&mut b.stream, (&mut b.ready, b.hup), &mut b.inbuf, ctx.buf, ctx.scratch) {
                Io::Read(_) => moved = true,
                Io::Eof | Io::Failed => b.eof = true,
                Io::Blocked => {}
            }
        }
        if !b.inbuf.is_empty() {
            self.out.append(&mut b.inbuf);
            moved = true;
        }
        if (b.eof && b.inbuf.is_empty()) || (self.front_eof && self.inbuf.is_empty() && b.out.is_empty()) {
            self.closing = true;
        }
        Ok(moved)
    }
}
