//! HTTP/1.1 traffic through the workers, against real HTTP backends started here.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::*;

/// A request as the test backend read it.
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> String {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect::<Vec<_>>().join(",")
    }
}

fn read_line(r: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
    }
}

/// Reads a body framed by `headers` (Content-Length or chunked); `None` for neither.
fn read_body(r: &mut impl BufRead, headers: &[(String, String)]) -> Option<Vec<u8>> {
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let size = usize::from_str_radix(read_line(r)?.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while !read_line(r)?.is_empty() {}
                return Some(body);
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let n: usize = get("content-length")?.trim().parse().ok()?;
    let mut body = vec![0; n];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn read_head(r: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let first = read_line(r)?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            return Some((first, headers));
        }
        let (n, v) = line.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// Requests to `/take-turns` being served now, and the most at once.
static SLOW_NOW: AtomicUsize = AtomicUsize::new(0);
static SLOW_MAX: AtomicUsize = AtomicUsize::new(0);

/// An HTTP/1.1 backend named `name`: keep-alive, one thread per connection. Paths:
/// `/big/N` answers N bytes; `/chunked` answers in chunks; `/close` answers without a
/// length and closes; `/die` sends half a response and closes; `/ws` switches
/// protocols and echoes; `/headers` answers the request's fields, one per line, with
/// fields of its own (`server`, `x-powered-by`, `x-trace`); anything else answers a
/// description of the request
/// (`name conn=<connection number> …`).
pub(crate) fn http_backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let index = conns.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || serve(name, index, conn));
        }
    });
    port
}

fn serve(name: &str, index: usize, conn: TcpStream) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some((line, headers)) = read_head(&mut r) {
        let mut parts = line.split(' ');
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        if headers.iter().any(|(n, v)| n == "expect" && v.eq_ignore_ascii_case("100-continue")) {
            let _ = w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let body = read_body(&mut r, &headers).unwrap_or_default();
        let seen = Seen { method, path, headers, body };
        let close = seen.header("connection").eq_ignore_ascii_case("close");
        let ok = |w: &mut TcpStream, body: &[u8]| {
            let _ = w.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes());
            let _ = w.write_all(body);
        };
        match seen.path.as_str() {
            p if p.starts_with("/big/") => {
                let n: usize = p[5..].parse().unwrap();
                let _ = w.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n").as_bytes());
                let block = vec![b'x'; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let k = left.min(block.len());
                    if w.write_all(&block[..k]).is_err() {
                        return;
                    }
                    left -= k;
                }
            }
            "/headers" => {
                let body: String = seen.headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
                let head = "HTTP/1.1 200 OK\r\nserver: test-backend\r\nx-powered-by: test\r\nx-trace: from-backend\r\n";
                let _ = w.write_all(format!("{head}content-length: {}\r\n\r\n{body}", body.len()).as_bytes());
            }
            "/chunked" => {
                let _ = w.write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
                );
            }
            "/take-turns" => {
                // how many requests the backend serves at once (the buffer test)
                let now = SLOW_NOW.fetch_add(1, Ordering::SeqCst) + 1;
                SLOW_MAX.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(150));
                SLOW_NOW.fetch_sub(1, Ordering::SeqCst);
                ok(&mut w, b"slow");
            }
            "/close" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close");
                return;
            }
            "/once" => {
                // keep-alive promised; the next request on this connection is read, then
                // the connection is closed without an answer (a backend's idle timeout
                // racing with the proxy's reuse)
                ok(&mut w, format!("{name} conn={index} once").as_bytes());
                let _ = read_head(&mut r);
                return;
            }
            "/die" => {
                let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial");
                return;
            }
            "/ws" => {
                let _ = w.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
                );
                let mut buf = [0u8; 1024];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 || w.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                return;
            }
            _ => {
                let sum: u64 = seen.body.iter().map(|b| u64::from(*b)).sum();
                let text = format!(
                    "{name} conn={index} {} {} len={} sum={sum} xff={} xfp={} xfport={} fwd={} id={} te={} host={}",
                    seen.method,
                    seen.path,
                    seen.body.len(),
                    seen.header("x-forwarded-for"),
                    seen.header("x-forwarded-proto"),
                    seen.header("x-forwarded-port"),
                    seen.header("forwarded"),
                    seen.header("sozu-id"),
                    seen.header("keep-alive"),
                    seen.header("host"),
                );
                ok(&mut w, text.as_bytes());
            }
        }
        if close {
            return;
        }
    }
}

/// A client connection speaking HTTP/1.1 to our listener.
pub(crate) struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl Client {
    pub(crate) fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { r: BufReader::new(s.try_clone().unwrap()), w: s }
    }

    pub(crate) fn send(&mut self, raw: &[u8]) {
        self.w.write_all(raw).unwrap();
    }

    /// Reads one response (`None`: the connection closed first).
    pub(crate) fn answer(&mut self) -> Option<Answer> {
        let (line, headers) = read_head(&mut self.r)?;
        let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
        let body = match read_body(&mut self.r, &headers) {
            Some(b) => b,
            None if (100..200).contains(&status) || status == 204 || status == 304 => Vec::new(),
            None => {
                let mut rest = Vec::new();
                let _ = self.r.read_to_end(&mut rest);
                rest
            }
        };
        Some(Answer { status, headers, body })
    }

    pub(crate) fn get(&mut self, host: &str, path: &str) -> Answer {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        self.answer().expect("an answer")
    }

    /// Whether the proxy closed the connection (EOF within the read timeout).
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.r.read(&mut buf), Ok(0))
    }
}

pub(crate) fn http_master(name: &str, extra: &str) -> (Master, u16, u16) {
    let (b1, b2) = (http_backend("b1"), http_backend("b2"));
    let m = Master::start(name, extra);
    let port = m.http_port.to_string();
    let listener = format!("127.0.0.1:{port}");
    m.ok(&["cluster", "add", "-i", "api"]);
    m.ok(&["backend", "add", "-i", "api", "--backend-id", "b1", "-a", &format!("127.0.0.1:{b1}")]);
    m.ok(&["backend", "add", "-i", "api", "--backend-id", "b2", "-a", &format!("127.0.0.1:{b2}")]);
    m.ok(&["frontend", "http", "add", "-a", &listener, "--hostname", "api.test", "id", "api"]);
    m.ok(&["cluster", "add", "-i", "assets"]);
    m.ok(&["backend", "add", "-i", "assets", "--backend-id", "b2", "-a", &format!("127.0.0.1:{b2}")]);
    m.ok(&["frontend", "http", "add", "-a", &listener, "--hostname", "*.cdn.test", "-p", "/assets", "id", "assets"]);
    m.ok(&["cluster", "add", "-i", "empty"]);
    m.ok(&["frontend", "http", "add", "-a", &listener, "--hostname", "empty.test", "id", "empty"]);
    m.ok(&["frontend", "http", "add", "-a", &listener, "--hostname", "denied.test", "deny"]);
    (m, b1, b2)
}

#[test]
fn http_routes_by_host_and_path_keeps_connections_alive_and_adds_forwarding_headers() {
    let (m, _, _) = http_master("httproute", "");
    let mut c = Client::connect(m.http_port);
    let a = c.get("api.test", "/hello?x=1");
    assert_eq!(a.status, 200, "{}", a.text());
    let first = a.text();
    assert!(first.contains("GET /hello?x=1"), "{first}");
    assert!(first.contains("xff=127.0.0.1 xfp=http"), "{first}");
    assert!(first.contains(&format!("xfport={}", m.http_port)), "{first}");
    assert!(first.contains("fwd=for=127.0.0.1;proto=http;by=127.0.0.1"), "{first}");
    assert!(first.contains(" id=") && !first.contains(" id= "), "a request id: {first}");
    // keep-alive on both sides: the same client connection, the same backend connection
    let second = c.get("API.test:80", "/again").text();
    let conn = |t: &str| t.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(conn(&first), conn(&second), "backend connection reused: {first} / {second}");
    // routing: wildcard host + path prefix, no route, no backend, a deny frontend
    assert!(c.get("img.cdn.test", "/assets/a.png").text().starts_with("b2 "));
    assert_eq!(c.get("img.cdn.test", "/other").status, 404);
    assert_eq!(c.get("nobody.test", "/").status, 404);
    assert_eq!(c.get("empty.test", "/").status, 503);
    // the configured `web` cluster's only backend refuses connections
    assert_eq!(c.get("web.example", "/").status, 503);
    let denied = c.get("denied.test", "/");
    assert_eq!(denied.status, 401);
    // new connections are balanced over both backends
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let mut c = Client::connect(m.http_port);
        names.insert(c.get("api.test", "/").text()[..2].to_string());
    }
    assert_eq!(names.len(), 2, "{names:?}");
    // requests are counted per cluster and backend
    let metrics = m.ok(&["-j", "metrics", "get"]);
    let v: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    let api = &v["METRICS"]["clusters"]["api"];
    let count = |m: &serde_json::Value| m["requests"]["inner"]["COUNT"].as_i64().unwrap_or(-1);
    // /hello, /again, then one on each of 6 new connections
    assert_eq!(count(&api["cluster"]), 8, "{metrics}");
    let per_backend: i64 = api["backends"].as_array().unwrap().iter().map(|b| count(&b["metrics"])).sum();
    assert_eq!(per_backend, 8, "{metrics}");
    assert!(count(&v["METRICS"]["proxying"]) >= 14, "every request, ours included: {metrics}");
}

#[test]
fn http_bodies_stream_in_both_framings_and_answers_keep_their_framing() {
    let (m, _, _) = http_master("httpbody", "");
    let mut c = Client::connect(m.http_port);
    // a chunked request body, then a Content-Length one, on one connection
    c.send(
        b"POST /up HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    let a = c.answer().unwrap();
    assert!(a.text().contains("POST /up len=5 sum=495"), "{}", a.text());
    c.send(b"PUT /up HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    let cont = c.answer().unwrap();
    assert_eq!(cont.status, 100);
    c.send(b"xyz");
    assert!(c.answer().unwrap().text().contains("PUT /up len=3 sum=363"));
    // a backend that closes a reused keep-alive connection instead of answering: the
    // request is replayed on a fresh connection to the same backend
    let first = c.get("api.test", "/once").text();
    let second = c.get("api.test", "/again");
    assert_eq!(second.status, 200, "{}", second.text());
    let (a, b) = (first.split_whitespace().collect::<Vec<_>>(), second.text());
    let b: Vec<&str> = b.split_whitespace().collect();
    assert_eq!(a[0], b[0], "same backend");
    assert_ne!(a[1], b[1], "a fresh connection: {first} / {}", b.join(" "));
    // a chunked response, passed through chunked
    let a = c.get("api.test", "/chunked");
    assert_eq!((a.status, a.text().as_str()), (200, "hello, world"));
    assert_eq!(a.header("transfer-encoding"), Some("chunked"));
    // pipelined requests are answered in order
    c.send(b"GET /p1 HTTP/1.1\r\nHost: api.test\r\n\r\nGET /p2 HTTP/1.1\r\nHost: api.test\r\n\r\n");
    assert!(c.answer().unwrap().text().contains("GET /p1"));
    assert!(c.answer().unwrap().text().contains("GET /p2"));
    // 100 MB streamed through bounded buffers
    let a = c.get("api.test", &format!("/big/{}", 100 << 20));
    assert_eq!(a.body.len(), 100 << 20);
    assert!(a.body.iter().all(|b| *b == b'x'));
    let pids = m.worker_pids();
    let rss = pids.iter().map(|p| rss_kib(*p as u32)).max().unwrap();
    assert!(rss < 64 * 1024, "worker RSS {rss} KiB after streaming 100 MB");
    // a response delimited by the close: passed on, then the client connection closes
    let a = c.get("api.test", "/close");
    assert_eq!(a.text(), "until close");
    assert_eq!(a.header("connection"), Some("close"));
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn bad_requests_dead_backends_and_slow_clients_get_an_answer_or_a_close() {
    let (m, _, _) = http_master("httpbad", "");
    // malformed, ambiguous, oversized: 400 and close
    for bad in [
        "GARBAGE\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\n\r\n".to_string(),
        "POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n".to_string(),
        format!("GET / HTTP/1.1\r\nHost: api.test\r\nX-Big: {}\r\n\r\n", "v".repeat(20_000)),
        format!("GET / HTTP/1.1\r\nHost: api.test\r\n{}\r\n", "X-A: 1\r\n".repeat(150)),
    ] {
        let mut c = Client::connect(m.http_port);
        c.send(bad.as_bytes());
        let a = c.answer().expect("an answer");
        assert_eq!(a.status, 400, "{bad:.60}");
        assert!(c.closed());
    }
    // the backend dies mid-response: the client sees a close, not a hang
    let mut c = Client::connect(m.http_port);
    c.send(b"GET /die HTTP/1.1\r\nHost: api.test\r\n\r\n");
    let started = Instant::now();
    let (line, _) = read_head(&mut c.r).unwrap();
    assert!(line.contains("200"));
    let mut rest = Vec::new();
    let _ = c.r.read_to_end(&mut rest);
    assert_eq!(rest, b"partial");
    assert!(started.elapsed() < Duration::from_secs(5));
    // a WebSocket upgrade becomes a tunnel
    let mut c = Client::connect(m.http_port);
    c.send(b"GET /ws HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let a = c.answer().unwrap();
    assert_eq!(a.status, 101);
    c.send(b"ping over the tunnel");
    let mut echo = [0u8; 20];
    c.r.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping over the tunnel");
    // the master and the workers are fine
    assert!(m.ok(&["status"]).contains("RUNNING"));
    assert_eq!(Client::connect(m.http_port).get("api.test", "/").status, 200);
}

#[test]
fn a_slow_client_is_answered_408_at_the_request_timeout() {
    let (m, _, _) = http_master("httpslow", "");
    m.ok(&["listener", "http", "update", "-a", &format!("127.0.0.1:{}", m.http_port), "--request-timeout", "1"]);
    let mut c = Client::connect(m.http_port);
    c.send(b"GET / HTTP/1.1\r\nHost: api.te");
    let started = Instant::now();
    let a = c.answer().expect("a 408");
    assert_eq!(a.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(c.closed());
}

#[test]
fn a_soft_stop_ends_every_keep_alive_connection_with_connection_close_on_its_next_response() {
    let (mut m, _, _) = http_master("httpstop", "");
    let mut idle = Client::connect(m.http_port);
    assert_eq!(idle.get("api.test", "/").status, 200);
    let mut busy = Client::connect(m.http_port);
    // a request whose body is still coming when the stop starts
    busy.send(b"POST /slow HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\n\r\nab");
    std::thread::sleep(Duration::from_millis(200));
    let mut raw = m.raw();
    raw.send(&R::SoftStop(SoftStop {}).into());
    std::thread::sleep(Duration::from_millis(300));
    // the in-flight request completes, with `Connection: close`
    busy.send(b"cd");
    let a = busy.answer().expect("the in-flight request completes");
    assert!(a.text().contains("POST /slow len=4"), "{}", a.text());
    assert_eq!(a.header("connection"), Some("close"));
    assert!(busy.closed());
    // the idle keep-alive connection was not cut: its next request is served, with
    // `Connection: close` (cutting it would race with that request)
    let a = idle.get("api.test", "/after-stop");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("connection"), Some("close"));
    assert!(idle.closed());
    // every connection ended: the workers and the master exit cleanly
    let mut child = m.child.take().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "the master did not exit after the drain");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "a clean soft stop: {status}");
}

#[test]
fn a_failing_backend_goes_down_is_skipped_and_comes_back_up_with_events() {
    let m = Master::start("httphealth", "");
    let live = http_backend("live");
    let dead_port = free_port(); // nothing listens there yet
    let listener = format!("127.0.0.1:{}", m.http_port);
    m.ok(&["cluster", "add", "-i", "h", "--load-balancing-policy", "random"]);
    m.ok(&["backend", "add", "-i", "h", "--backend-id", "live", "-a", &format!("127.0.0.1:{live}")]);
    m.ok(&["backend", "add", "-i", "h", "--backend-id", "dead", "-a", &format!("127.0.0.1:{dead_port}")]);
    m.ok(&["frontend", "http", "add", "-a", &listener, "--hostname", "h.test", "id", "h"]);
    let mut sub = m.raw();
    sub.send(&R::SubscribeEvents(SubscribeEvents {}).into());
    sub.recv().unwrap(); // EVENTS_SUBSCRIBED
    sub.0.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let event = |r: &Response| match r.content.as_ref().and_then(|c| c.content_type.as_ref()) {
        Some(ContentType::Event(e)) => Some(e.clone()),
        _ => None,
    };
    // every request is served (the refused backend is retried on the live one) and the
    // dead one is marked down by each worker that tried it three times
    for _ in 0..30 {
        let a = Client::connect(m.http_port).get("h.test", "/");
        assert_eq!(a.status, 200);
        assert!(a.text().starts_with("live "));
    }
    let down = event(&sub.recv().expect("an event")).expect("an event");
    assert_eq!(down.kind, EventKind::BackendDown as i32);
    assert_eq!(down.backend_id.as_deref(), Some("dead"));
    // the backend comes back: a probe finds it and it is marked up
    let revived = TcpListener::bind(("127.0.0.1", dead_port)).unwrap();
    let revived_port = dead_port;
    std::thread::spawn(move || {
        for conn in revived.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || serve("revived", revived_port as usize, conn));
        }
    });
    let end = Instant::now() + Duration::from_secs(20);
    let mut up = None;
    while up.is_none() && Instant::now() < end {
        let _ = Client::connect(m.http_port).get("h.test", "/");
        sub.0.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        while let Some(e) = sub.try_recv().as_ref().and_then(event) {
            if e.kind == EventKind::BackendUp as i32 {
                up = Some(e);
                break;
            }
        }
    }
    let up = up.expect("BACKEND_UP within 20 s");
    assert_eq!(up.backend_id.as_deref(), Some("dead"));
    // both backends serve again
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..20 {
        names.insert(Client::connect(m.http_port).get("h.test", "/").text()[..4].to_string());
    }
    assert!(names.contains("live") && names.contains("revi"), "{names:?}");
}

#[test]
fn custom_answers_from_the_config_file_and_from_a_command_are_served_in_our_framing() {
    // a cluster of the configuration file with `answer_503 = "<file>"` and no backend
    let page = std::env::temp_dir().join(format!("sozu-e2e-503-{}.html", std::process::id()));
    std::fs::write(&page, "<h1>maintenance</h1>").unwrap();
    let extra = format!(
        "[clusters.maint]\nprotocol = \"http\"\nanswer_503 = \"{}\"\nfrontends = [{{ address = \"127.0.0.1:HTTP_PORT\", hostname = \"maint.test\" }}]\n",
        page.display()
    );
    let (m, _, _) = http_master("httpanswers", &extra);
    let _ = std::fs::remove_file(&page);
    // a cluster added by a command with an `answers` map
    let mut raw = m.raw();
    let cluster = Cluster {
        cluster_id: "empty".into(),
        answers: [("503".to_string(), "<h1>empty is down</h1>".to_string())].into(),
        ..Default::default()
    };
    raw.send(&R::AddCluster(Box::new(cluster)).into());
    assert_eq!(raw.terminal().status, ResponseStatus::Ok as i32);
    let mut c = Client::connect(m.http_port);
    let a = c.get("empty.test", "/");
    assert_eq!((a.status, a.text().as_str()), (503, "<h1>empty is down</h1>"));
    assert!(a.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    let a = c.get("maint.test", "/");
    assert_eq!((a.status, a.text().as_str()), (503, "<h1>maintenance</h1>"));
    // keep-alive still works after a custom answer (its length is ours)
    assert_eq!(c.get("api.test", "/").status, 200);
    // the default answer where nothing is set
    let a = c.get("nobody.test", "/");
    assert_eq!(a.status, 404);
    assert!(a.text().contains("No frontend matches"), "{}", a.text());
    // whole-response templates (Sōzu 2.1's form) from our CLI: a cluster's `--answer`
    // and a listener's `--answer-404` file; their status line, headers and body are
    // kept, the framing is ours (their Content-Length is dropped)
    m.ok(&[
        "cluster",
        "add",
        "-i",
        "empty",
        "--answer",
        "503=HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 1\r\n\r\ntry later",
    ]);
    let a = c.get("empty.test", "/");
    assert_eq!((a.status, a.text().as_str(), a.header("retry-after")), (503, "try later", Some("7")));
    let file = m.dir.join("404.http");
    std::fs::write(&file, "HTTP/1.1 404 Not Here\nX-Page: custom\n\nnothing here").unwrap();
    let listener = format!("127.0.0.1:{}", m.http_port);
    m.ok(&["listener", "http", "update", "-a", &listener, "--answer-404", file.to_str().unwrap()]);
    let mut c = Client::connect(m.http_port);
    let a = c.get("nobody.test", "/");
    assert_eq!((a.status, a.text().as_str(), a.header("x-page")), (404, "nothing here", Some("custom")));
    assert_eq!(c.get("api.test", "/").status, 200);
    // an unreadable file is the CLI's error, and nothing is sent
    let err = m.fails(&["listener", "http", "update", "-a", &listener, "--answer-503", "/nonexistent/503.http"]);
    assert!(err.contains("cannot read the --answer-503 file /nonexistent/503.http"), "{err}");
}

/// Requests in a loop over keep-alive connections (reconnecting when the proxy ends
/// one with `Connection: close`, or a new connection every 10 requests) until told to
/// stop: (successful requests, failures).
fn http_load(port: u16) -> (Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<(usize, Vec<String>)>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, Vec::new());
        let mut client: Option<Client> = None;
        let mut on_this = 0;
        while !flag.load(Ordering::Relaxed) {
            let c = client.get_or_insert_with(|| Client::connect(port));
            c.send(b"GET /load HTTP/1.1\r\nHost: api.test\r\n\r\n");
            match c.answer() {
                Some(a) if a.status == 200 && a.text().contains("GET /load") => {
                    ok += 1;
                    on_this += 1;
                    if a.header("connection") == Some("close") || on_this >= 10 {
                        client = None;
                        on_this = 0;
                    }
                }
                Some(a) => {
                    failed.push(format!("{} {}", a.status, a.text()));
                    client = None;
                }
                None => {
                    failed.push("connection closed without an answer".into());
                    client = None;
                }
            }
        }
        (ok, failed)
    });
    (stop, handle)
}

#[test]
fn twenty_main_and_twenty_worker_upgrades_under_http_load_lose_no_request() {
    let (m, _, _) = http_master("httpupgrades", "");
    let (stop, handle) = http_load(m.http_port);
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..20 {
        let out = m.ok(&["-t", "20000", "upgrade", "--main-only"]);
        assert!(out.contains("Upgrade successful"), "{out}");
        let ids: Vec<u32> = {
            // a loaded CI machine can take more than the default second to answer
            let v: serde_json::Value = serde_json::from_str(&m.ok(&["-t", "20000", "-j", "status"])).unwrap();
            let running = |w: &&serde_json::Value| w["run_state"].as_i64() == Some(RunState::Running as i64);
            v["WORKERS"]["vec"]
                .as_array()
                .unwrap()
                .iter()
                .filter(running)
                .map(|w| w["id"].as_u64().unwrap() as u32)
                .collect()
        };
        let out = m.ok(&["-t", "20000", "upgrade", "--worker", &ids[i % ids.len()].to_string()]);
        assert!(out.contains("replaced worker"), "{out}");
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = handle.join().unwrap();
    assert!(ok > 20, "{ok} requests, failures: {failed:?}");
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(Client::connect(m.http_port).get("api.test", "/").status, 200);
}

#[test]
fn a_draining_worker_shows_in_status_and_the_number_of_draining_workers_is_capped() {
    let (m, _, _) = http_master("httpdrain", "max_draining_workers = 1\n");
    // idle keep-alive connections keep an upgraded worker draining
    let mut held: Vec<Client> = (0..8).map(|_| Client::connect(m.http_port)).collect();
    for c in &mut held {
        assert_eq!(c.get("api.test", "/").status, 200);
    }
    // the worker holding the most of them
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "metrics", "get"])).unwrap();
    let busiest = v["METRICS"]["workers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, w)| (w["proxy"]["active_connections"]["inner"]["GAUGE"].as_u64().unwrap_or(0), id.clone()))
        .max()
        .unwrap();
    assert!(busiest.0 > 0, "{v}");
    let (old, other) = (busiest.1.clone(), if busiest.1 == "0" { "1" } else { "0" });
    let out = m.ok(&["-t", "20000", "upgrade", "--worker", &old]);
    assert!(out.contains(&format!("replaced worker {old}")) && out.contains("drains"), "{out}");
    let status = m.ok(&["status"]);
    assert!(status.contains(&format!("worker {old} draining: {} connections", busiest.0)), "{status}");
    assert!(status.contains("STOPPING"), "{status}");
    let refused = m.fails(&["upgrade", "--worker", other]);
    assert!(refused.contains("1 old workers are still draining (max_draining_workers = 1)"), "{refused}");
    // a main upgrade meanwhile: the new image keeps the old worker draining (and counted)
    assert!(m.ok(&["-t", "20000", "upgrade", "--main-only"]).contains("Upgrade successful"));
    assert!(m.ok(&["status"]).contains(&format!("worker {old} draining:")));
    assert!(m.fails(&["upgrade", "--worker", other]).contains("still draining"));
    // each held connection gets `Connection: close` on its next request; the drain ends
    for c in &mut held {
        assert_eq!(c.get("api.test", "/").status, 200);
    }
    let end = Instant::now() + Duration::from_secs(10);
    while m.ok(&["status"]).contains("draining") {
        assert!(Instant::now() < end, "the old worker did not finish draining");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(m.ok(&["-t", "20000", "upgrade", "--worker", other]).contains(&format!("replaced worker {other}")));
}

#[test]
fn connections_over_max_connections_are_closed_at_once_and_counted() {
    let (m, _, _) = http_master("httplimit", "max_connections = 3\n");
    // 2 workers × 3: at most 6 connections are held open at once
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..12 {
        let mut c = Client::connect(m.http_port);
        c.send(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n");
        match c.answer() {
            Some(a) if a.status == 200 => held.push(c),
            _ => refused += 1,
        }
    }
    assert!(held.len() <= 6 && refused >= 6, "held {} refused {refused}", held.len());
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "metrics", "get"])).unwrap();
    let counted = v["METRICS"]["proxying"]["connections_refused"]["inner"]["COUNT"].as_i64().unwrap_or(0);
    assert_eq!(counted, refused as i64, "{v}");
    // once connections end, new ones are served again
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(Client::connect(m.http_port).get("api.test", "/").status, 200);
}

#[test]
fn http_exchanges_over_max_buffers_wait_for_buffers_and_idle_connections_hold_none() {
    // 2 buffers per worker: one exchange at a time in each of the 2 workers
    let (m, _, _) = http_master("httpbuffers", "max_buffers = 2\n");
    // idle keep-alive connections hold no buffer: 30 of them are accepted and stay open
    let mut idle: Vec<Client> = (0..30).map(|_| Client::connect(m.http_port)).collect();
    // 6 clients at once on a backend that takes 150 ms per request: they take turns
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let port = m.http_port;
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                (0..2).map(|_| c.get("api.test", "/take-turns").status).collect::<Vec<u16>>()
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), [200, 200], "every request served, none refused");
    }
    let most = SLOW_MAX.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "at most one exchange per worker at once, saw {most}");
    // every idle connection is still served, one after the other
    for c in &mut idle {
        assert_eq!(c.get("api.test", "/").status, 200);
    }
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "metrics", "get"])).unwrap();
    for w in v["METRICS"]["workers"].as_object().unwrap().values() {
        assert_eq!(w["proxy"]["buffers_in_use"]["inner"]["GAUGE"].as_u64(), Some(0), "{w}");
        assert!(w["proxy"]["buffers_peak"]["inner"]["GAUGE"].as_u64().is_some_and(|p| p <= 2), "{w}");
    }
    assert_eq!(v["METRICS"]["proxying"]["connections_refused"]["inner"]["COUNT"].as_i64().unwrap_or(0), 0);
}

#[test]
fn a_worker_out_of_fds_answers_503_keeps_its_backends_up_and_accepts_again() {
    let (m, _, _) = http_master("fdshortage", "");
    let mut sub = m.raw();
    sub.send(&R::SubscribeEvents(SubscribeEvents {}).into());
    sub.recv().unwrap(); // EVENTS_SUBSCRIBED
    // each worker may open only a few more fds (util-linux's prlimit, on the running worker)
    for w in m.worker_pids() {
        let limit = count_fds(w as u32) + 12;
        let out =
            Command::new("prlimit").args(["--pid", &w.to_string(), &format!("--nofile={limit}:{limit}")]).output();
        assert!(out.is_ok_and(|o| o.status.success()), "prlimit is needed (util-linux)");
    }
    // 40 clients at once: a client connection and a backend connection each
    let mut clients: Vec<Client> = (0..40).map(|_| Client::connect(m.http_port)).collect();
    for c in &mut clients {
        c.send(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n");
        c.w.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    }
    let mut first = Vec::new();
    let mut waiting = Vec::new();
    for mut c in clients {
        match c.answer() {
            Some(a) => first.push(a.status),
            None => waiting.push(c), // still in the accept queue: the worker has no fd
        }
    }
    assert!(!waiting.is_empty() || first.contains(&503), "the fd shortage happened: {first:?}");
    assert!(first.iter().all(|s| *s == 200 || *s == 503), "{first:?}");
    // the answered connections go; the queued ones are accepted and served then
    for c in &mut waiting {
        c.w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    let later: Vec<u16> = waiting.iter_mut().map(|c| c.answer().map_or(0, |a| a.status)).collect();
    assert!(later.iter().all(|s| *s == 200 || *s == 503), "every queued client answered: {later:?}");
    drop(waiting);
    // the backends were never blamed for our shortage: no BACKEND_DOWN, and served at once
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(Client::connect(m.http_port).get("api.test", "/").status, 200);
    sub.0.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    while let Some(r) = sub.try_recv() {
        let kind = match r.content.and_then(|c| c.content_type) {
            Some(ContentType::Event(e)) => e.kind,
            _ => continue,
        };
        assert_ne!(kind, EventKind::BackendDown as i32, "a backend was marked down for our own shortage");
    }
}
