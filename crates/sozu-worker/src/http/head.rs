//! HTTP/1.1 message heads: parsed with `httparse` under limits, checked for the
//! ambiguities that enable request smuggling, and rewritten for the other side
//! (hop-by-hop headers dropped, forwarding headers added). Sans I/O.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::framing::Framing;

/// Largest request or response head, in bytes.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in a head.
pub(crate) const MAX_HEADERS: usize = 100;

/// Headers that concern one connection only (RFC 9110 §7.6.1), never forwarded as
/// they are. `Transfer-Encoding` is kept: bodies are streamed in their coding.
const HOP_BY_HOP: [&str; 6] = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"];

/// Headers we set ourselves on requests (any incoming value is replaced), with the
/// listener's request id header.
const OURS: [&str; 2] = ["x-forwarded-proto", "x-forwarded-port"];

/// The outcome of parsing a head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed<T> {
    /// More bytes are needed.
    Partial,
    Done(T),
    /// Malformed or over a limit: the reason, for the log.
    Bad(&'static str),
}

/// A request head, as needed to route and forward it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub method: String,
    pub target: String,
    /// Lower case, without the port.
    pub host: String,
    /// The path, without the query.
    pub path: String,
    pub framing: Framing,
    /// The client keeps the connection open after this exchange.
    pub keep_alive: bool,
    /// A protocol upgrade (WebSocket) was asked for.
    pub upgrade: bool,
    /// Length of the head in bytes.
    pub len: usize,
    headers: Vec<(String, Vec<u8>)>,
}

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub status: u16,
    pub framing: Framing,
    /// The backend keeps the connection open after this response.
    pub keep_alive: bool,
    pub len: usize,
    reason: String,
    headers: Vec<(String, Vec<u8>)>,
}

fn header_list(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect()
}

fn values<'a>(headers: &'a [(String, Vec<u8>)], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
}

/// The comma-separated tokens of every `name` field, lower case.
fn tokens(headers: &[(String, Vec<u8>)], name: &str) -> Vec<String> {
    values(headers, name)
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Body framing from Transfer-Encoding and Content-Length; `None` when they are
/// ambiguous (both, several different lengths, a bad length): the message is refused.
fn body_framing(headers: &[(String, Vec<u8>)], request: bool) -> Result<Framing, &'static str> {
    let codings = tokens(headers, "transfer-encoding");
    let lengths: Vec<&[u8]> = values(headers, "content-length").flat_map(|v| v.split(|b| *b == b',')).collect();
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err("both Transfer-Encoding and Content-Length");
        }
        return match codings.last().map(String::as_str) {
            Some("chunked") if codings.iter().filter(|c| *c == "chunked").count() == 1 => Ok(Framing::Chunked),
            _ if request => Err("a request transfer coding other than a final chunked"),
            _ => Ok(Framing::UntilClose),
        };
    }
    let mut length: Option<u64> = None;
    for raw in lengths {
        let text = std::str::from_utf8(raw).map_err(|_| "bad Content-Length")?.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 15 {
            return Err("bad Content-Length");
        }
        let n: u64 = text.parse().map_err(|_| "bad Content-Length")?;
        if length.is_some_and(|l| l != n) {
            return Err("conflicting Content-Length values");
        }
        length = Some(n);
    }
    Ok(match length {
        Some(n) => Framing::Length(n),
        None if request => Framing::None,
        None => Framing::UntilClose,
    })
}

/// Host without port, lower case; `None` if it is not a plausible host.
fn clean_host(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    let host = if let Some(rest) = text.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']')?;
        &text[..end + 2]
    } else {
        text.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(text, |(h, _)| h)
    };
    let ok = !host.is_empty() && host.bytes().all(sozu_state::rewrite::host_byte);
    ok.then(|| host.to_ascii_lowercase())
}

/// Parses a request head at the start of `buf`.
pub(crate) fn parse_request(buf: &[u8]) -> Parsed<RequestHead> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Parsed::Bad("request head too large"),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad("too many header fields"),
        Err(_) => return Parsed::Bad("malformed request head"),
    };
    if len > MAX_HEAD {
        return Parsed::Bad("request head too large");
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Bad("incomplete request line");
    };
    let headers = header_list(req.headers);
    let framing = match body_framing(&headers, true) {
        Ok(f) => f,
        Err(why) => return Parsed::Bad(why),
    };
    let hosts: Vec<&[u8]> = values(&headers, "host").collect();
    if hosts.len() > 1 {
        return Parsed::Bad("several Host fields");
    }
    // absolute-form targets carry the authority; it wins over Host (RFC 9112 §3.2.2)
    let (authority, path) = match target.strip_prefix("http://") {
        Some(rest) => {
            let (auth, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
            (Some(auth.as_bytes()), path)
        }
        None if target.starts_with('/') => (None, target),
        None if method == "OPTIONS" && target == "*" => (None, target),
        None => return Parsed::Bad("request target is not origin or absolute form"),
    };
    let host = match authority.or(hosts.first().copied()) {
        Some(raw) => match clean_host(raw) {
            Some(h) => h,
            None => return Parsed::Bad("bad Host"),
        },
        None if minor == 1 => return Parsed::Bad("no Host in an HTTP/1.1 request"),
        None => String::new(),
    };
    let connection = tokens(&headers, "connection");
    let keep_alive = if minor == 0 {
        connection.iter().any(|t| t == "keep-alive")
    } else {
        !connection.iter().any(|t| t == "close")
    };
    let upgrade = connection.iter().any(|t| t == "upgrade") && values(&headers, "upgrade").next().is_some();
    Parsed::Done(RequestHead {
        method: method.to_string(),
        target: path.to_string(),
        host,
        path: path.split('?').next().unwrap_or(path).to_string(),
        framing,
        keep_alive,
        upgrade,
        len,
        headers,
    })
}

fn ip_text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("\"[{}]\"", a.ip()),
    }
}

/// One header edit of a frontend, as Sōzu applies them: a removal (empty value) drops
/// every field named `lower`; any other edit adds `line` (`Name: value` and CRLF)
/// after the fields kept, so a replacement is a removal and an addition. The state
/// refused names that are not tokens or that the proxy owns, and values with control
/// characters, so `line` is one well-formed field line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edit {
    lower: String,
    line: Vec<u8>,
}

impl Edit {
    /// `val` empty: remove the field; otherwise add it with `val`.
    pub fn new(key: &str, val: &str) -> Self {
        let line = if val.is_empty() { Vec::new() } else { format!("{key}: {val}\r\n").into_bytes() };
        Edit { lower: key.to_ascii_lowercase(), line }
    }
}

fn removed(edits: &[Edit], name: &str) -> bool {
    edits.iter().any(|e| e.line.is_empty() && e.lower == name)
}

fn write_edits(out: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        out.extend_from_slice(&e.line);
    }
}

/// What an HTTP listener asks of the fields added to each request: the name of the
/// request id header (`sozu_id_header`, `Sozu-Id` by default), `send_x_real_ip` (an
/// `X-Real-IP` naming the client, replacing the client's own) and `elide_x_real_ip`
/// (the client's `X-Real-IP` dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerFields {
    id_header: String,
    send_x_real_ip: bool,
    elide_x_real_ip: bool,
}

impl Default for ListenerFields {
    fn default() -> Self {
        ListenerFields { id_header: "Sozu-Id".into(), send_x_real_ip: false, elide_x_real_ip: false }
    }
}

impl ListenerFields {
    /// From the listener's configuration (the state refused id header names that are
    /// not tokens or that the proxy owns).
    pub fn new(id_header: Option<&str>, send_x_real_ip: bool, elide_x_real_ip: bool) -> Self {
        let id_header = id_header.filter(|n| !n.is_empty()).unwrap_or("Sozu-Id").to_string();
        ListenerFields { id_header, send_x_real_ip, elide_x_real_ip }
    }
}

/// What a connection adds to each request it forwards, formatted once per connection
/// (its client and listener do not change).
#[derive(Debug, Clone)]
pub(crate) struct Forwarding {
    /// The client's address as `X-Forwarded-For` lists it.
    client: String,
    /// `x-forwarded-proto`, `-port`, and the `Forwarded` element of this hop.
    proto_port: String,
    this_hop: String,
    listener: SocketAddr,
    fields: ListenerFields,
}

impl Forwarding {
    pub fn new(client: SocketAddr, listener: SocketAddr, fields: ListenerFields) -> Self {
        Forwarding {
            client: client.ip().to_string(),
            proto_port: format!("\r\nx-forwarded-proto: http\r\nx-forwarded-port: {}\r\n", listener.port()),
            this_hop: format!("for={};proto=http;by={}\r\n", ip_text(client), ip_text(listener)),
            listener,
            fields,
        }
    }

    /// The same for another client (the one a PROXY protocol header names).
    pub fn for_client(&self, client: SocketAddr) -> Self {
        Forwarding::new(client, self.listener, self.fields.clone())
    }

    /// The client's field of this name is not forwarded: we set it ourselves, or the
    /// listener elides it.
    fn replaces(&self, name: &str) -> bool {
        OURS.contains(&name)
            || self.fields.id_header.eq_ignore_ascii_case(name)
            || ((self.fields.send_x_real_ip || self.fields.elide_x_real_ip) && name == "x-real-ip")
    }
}

impl RequestHead {
    /// Forwards the request with this `Host` value and this target (`None`: unchanged).
    /// `host` keeps what routed the request.
    pub fn rewrite(&mut self, host: Option<String>, target: Option<String>) {
        if let Some(target) = target {
            self.path = target.split('?').next().unwrap_or_default().to_string();
            self.target = target;
        }
        if let Some(host) = host {
            match self.headers.iter_mut().find(|(n, _)| n == "host") {
                Some((_, value)) => *value = host.into_bytes(),
                None => self.headers.push(("host".into(), host.into_bytes())),
            }
        }
    }

    /// The value of the first `name` field (lower case), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The value of the first cookie named `name` in the `Cookie` fields (RFC 6265
    /// §5.4: `name=value` pairs separated by `;`).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        values(&self.headers, "cookie")
            .flat_map(|v| v.split(|b| *b == b';'))
            .filter_map(|pair| std::str::from_utf8(pair).ok())
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().trim_matches('"'))
    }

    /// The head as sent to a backend: HTTP/1.1, hop-by-hop fields (and those named by
    /// `Connection`) dropped, `X-Forwarded-For` and `Forwarded` extended with the
    /// client, `X-Forwarded-Proto`/`-Port` and the request id header set, and the
    /// frontend's `edits` made.
    /// `sticky_cookie`: the name of the sticky session cookie, taken out of the `Cookie`
    /// fields (a field left empty is dropped).
    pub fn write_to_backend(
        &self,
        out: &mut Vec<u8>,
        forwarding: &Forwarding,
        request_id: &str,
        edits: &[Edit],
        sticky_cookie: Option<&str>,
    ) {
        let named = tokens(&self.headers, "connection");
        let _ = write!(Wrap(out), "{} {} HTTP/1.1\r\n", self.method, self.target);
        let mut forwarded_for: Option<Vec<u8>> = None;
        let mut forwarded: Option<Vec<u8>> = None;
        for (name, value) in &self.headers {
            let keep_upgrade = self.upgrade && name == "upgrade";
            if (!keep_upgrade && (HOP_BY_HOP.contains(&name.as_str()) || named.contains(name)))
                || forwarding.replaces(name)
                || removed(edits, name)
            {
                continue;
            }
            let merge = |slot: &mut Option<Vec<u8>>| match slot {
                Some(v) => {
                    v.extend_from_slice(b", ");
                    v.extend_from_slice(value);
                }
                None => *slot = Some(value.clone()),
            };
            match name.as_str() {
                "cookie" if sticky_cookie.is_some() => {
                    let kept = without_cookie(value, sticky_cookie.unwrap_or_default());
                    if !kept.is_empty() {
                        out.extend_from_slice(b"cookie: ");
                        out.extend_from_slice(&kept);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                "x-forwarded-for" => merge(&mut forwarded_for),
                "forwarded" => merge(&mut forwarded),
                _ => {
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        if let Some(previous) = forwarded_for {
            out.extend_from_slice(&previous);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(forwarding.client.as_bytes());
        out.extend_from_slice(forwarding.proto_port.as_bytes());
        out.extend_from_slice(b"forwarded: ");
        if let Some(previous) = forwarded {
            out.extend_from_slice(&previous);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(forwarding.this_hop.as_bytes());
        out.extend_from_slice(forwarding.fields.id_header.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(request_id.as_bytes());
        out.extend_from_slice(b"\r\n");
        if forwarding.fields.send_x_real_ip {
            out.extend_from_slice(b"X-Real-IP: ");
            out.extend_from_slice(forwarding.client.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        write_edits(out, edits);
        if self.upgrade {
            out.extend_from_slice(b"connection: upgrade\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// A `Cookie` field's value without the pairs named `name` (RFC 6265 §5.4), the others
/// joined by `; `.
fn without_cookie(value: &[u8], name: &str) -> Vec<u8> {
    let mut kept = Vec::with_capacity(value.len());
    for pair in value.split(|b| *b == b';') {
        let pair = pair.trim_ascii();
        let pair_name = pair.split(|b| *b == b'=').next().unwrap_or_default().trim_ascii();
        if pair.is_empty() || pair_name == name.as_bytes() {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    kept
}

/// Parses a response head at the start of `buf`; `head_request`: the request was a
/// HEAD (the response has no body whatever it says).
pub(crate) fn parse_response(buf: &[u8], head_request: bool) -> Parsed<ResponseHead> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Parsed::Bad("response head too large"),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Bad("malformed response head"),
    };
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Parsed::Bad("incomplete status line");
    };
    let headers = header_list(resp.headers);
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else {
        match body_framing(&headers, false) {
            Ok(f) => f,
            Err(why) => return Parsed::Bad(why),
        }
    };
    let connection = tokens(&headers, "connection");
    let keep_alive = framing != Framing::UntilClose
        && if minor == 0 {
            connection.iter().any(|t| t == "keep-alive")
        } else {
            !connection.iter().any(|t| t == "close")
        };
    Parsed::Done(ResponseHead {
        status,
        framing,
        keep_alive,
        len,
        reason: resp.reason.unwrap_or("").to_string(),
        headers,
    })
}

impl ResponseHead {
    /// The head as sent to the client: HTTP/1.1, hop-by-hop fields dropped (kept for a
    /// `101 Switching Protocols`), the frontend's `edits` made, the header lines of
    /// `extra` (each ending in CRLF) added, and `Connection: close` when `close`.
    pub fn write_to_client(&self, out: &mut Vec<u8>, close: bool, extra: &[u8], edits: &[Edit]) {
        let switching = self.status == 101;
        let named = tokens(&self.headers, "connection");
        let _ = write!(Wrap(out), "HTTP/1.1 {} {}\r\n", self.status, self.reason);
        for (name, value) in &self.headers {
            if (!switching && (HOP_BY_HOP.contains(&name.as_str()) || named.contains(name))) || removed(edits, name) {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        write_edits(out, edits);
        out.extend_from_slice(extra);
        if close && !switching {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// `fmt::Write` into a byte vector.
struct Wrap<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Wrap<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Parsed<RequestHead> {
        parse_request(text.as_bytes())
    }

    #[test]
    fn cookies_are_found_by_name_in_every_cookie_field() {
        let Parsed::Done(h) = req("GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1; SOZUBALANCEID=\"b-2\" ;y=3\r\n\
                                    Cookie: z=4\r\n\r\n")
        else {
            panic!()
        };
        assert_eq!(h.cookie("SOZUBALANCEID"), Some("b-2"));
        assert_eq!(h.cookie("y"), Some("3"));
        assert_eq!(h.cookie("z"), Some("4"));
        assert_eq!(h.cookie("SOZU"), None);
        let Parsed::Done(h) = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n") else { panic!() };
        assert_eq!(h.cookie("x"), None);
    }

    fn done(text: &str) -> RequestHead {
        match req(text) {
            Parsed::Done(h) => h,
            other => panic!("{other:?} for {text:?}"),
        }
    }

    #[test]
    fn a_request_head_is_parsed_and_framed() {
        let h = done("POST /a/b?x=1 HTTP/1.1\r\nHost: API.Example.com:8080\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!((h.method.as_str(), h.path.as_str(), h.host.as_str()), ("POST", "/a/b", "api.example.com"));
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive && !h.upgrade);
        assert_eq!(h.len, h.len.min(200));
        let h = done("GET / HTTP/1.0\r\n\r\n");
        assert!(!h.keep_alive && h.host.is_empty());
        let h = done("GET http://other.example/x HTTP/1.1\r\nHost: ignored\r\n\r\n");
        assert_eq!((h.host.as_str(), h.path.as_str()), ("other.example", "/x"));
        let h = done("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        assert!(!h.keep_alive);
        assert_eq!(req("GET / HTTP/1.1\r\nHost: a\r\n"), Parsed::Partial);
    }

    #[test]
    fn ambiguous_or_oversized_requests_are_refused() {
        for bad in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "GET nope HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost:\x01a\r\n\r\n",
        ] {
            assert!(matches!(req(bad), Parsed::Bad(_)), "{bad:?} -> {:?}", req(bad));
        }
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(req(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")), Parsed::Bad("too many header fields"));
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "v".repeat(MAX_HEAD));
        assert_eq!(req(&big), Parsed::Bad("request head too large"));
        assert!(matches!(req(&"A".repeat(MAX_HEAD)), Parsed::Bad(_)));
    }

    #[test]
    fn the_forwarded_head_drops_hop_by_hop_and_adds_the_client() {
        let h = done(
            "GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n\
             X-Forwarded-For: 10.0.0.1\r\nSozu-Id: forged\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
        );
        let mut out = Vec::new();
        let client: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let listener: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        h.write_to_backend(&mut out, &Forwarding::new(client, listener, ListenerFields::default()), "01ABC", &[], None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /x HTTP/1.1\r\n"), "{text}");
        for gone in ["keep-alive", "x-secret", "forged", "https", "connection"] {
            assert!(!text.to_ascii_lowercase().contains(gone), "{gone} in {text}");
        }
        for kept in [
            "host: a\r\n",
            "accept: */*\r\n",
            "x-forwarded-for: 10.0.0.1, 192.0.2.7\r\n",
            "x-forwarded-proto: http\r\n",
            "x-forwarded-port: 8080\r\n",
            "forwarded: for=192.0.2.7;proto=http;by=127.0.0.1\r\n",
            "Sozu-Id: 01ABC\r\n",
        ] {
            assert!(text.contains(kept), "{kept:?} not in {text}");
        }
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let h = done("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(h.upgrade);
        let mut out = Vec::new();
        let forwarding =
            Forwarding::new("[::1]:1".parse().unwrap(), "127.0.0.1:80".parse().unwrap(), ListenerFields::default());
        h.write_to_backend(&mut out, &forwarding, "id", &[], None);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("upgrade: websocket\r\n") && text.contains("connection: upgrade\r\n"), "{text}");
        assert!(text.contains("for=\"[::1]\""), "{text}");
    }

    #[test]
    fn response_framing_and_reuse() {
        let parse = |t: &str, head| match parse_response(t.as_bytes(), head) {
            Parsed::Done(r) => r,
            other => panic!("{other:?}"),
        };
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
        assert_eq!((r.status, r.framing, r.keep_alive), (200, Framing::Length(2), true));
        let r = parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true);
        assert_eq!(r.framing, Framing::None);
        let r = parse("HTTP/1.1 204 No Content\r\n\r\n", false);
        assert_eq!(r.framing, Framing::None);
        let r = parse("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((r.framing, r.keep_alive), (Framing::UntilClose, false));
        let r = parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false);
        assert!(!r.keep_alive);
        let r =
            parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n", false);
        assert_eq!((r.framing, r.keep_alive), (Framing::Chunked, false));
        let mut out = Vec::new();
        r.write_to_client(&mut out, true, b"", &[]);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
        assert!(matches!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false), Parsed::Bad(_)));
    }

    #[test]
    fn a_frontends_edits_remove_then_add_fields_on_each_side() {
        let h = done(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Env: forged\r\nx-env: again\r\nCookie: c=1\r\nX-Tag: client\r\nAccept: */*\r\n\r\n",
        );
        // the order does not matter: removals first, then additions
        let edits = [
            Edit::new("X-Env", "prod"),
            Edit::new("X-Env", ""),
            Edit::new("Cookie", ""),
            Edit::new("X-Absent", ""),
            Edit::new("X-Tag", "proxy"),
        ];
        let mut out = Vec::new();
        h.write_to_backend(
            &mut out,
            &Forwarding::new(
                "192.0.2.7:1".parse().unwrap(),
                "127.0.0.1:80".parse().unwrap(),
                ListenerFields::default(),
            ),
            "id",
            &edits,
            None,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("X-Env: prod\r\n").count(), 1, "{text}");
        for gone in ["forged", "again", "cookie", "x-absent"] {
            assert!(!text.to_ascii_lowercase().contains(gone), "{gone} in {text}");
        }
        assert!(text.contains("accept: */*\r\n") && text.ends_with("\r\n\r\n"), "{text}");
        assert!(text.contains("x-tag: client\r\n") && text.contains("X-Tag: proxy\r\n"), "an addition adds: {text}");
        let Parsed::Done(r) = parse_response(
            b"HTTP/1.1 200 OK\r\nServer: backend/1.2\r\nX-Powered-By: php\r\nContent-Length: 0\r\n\r\n",
            false,
        ) else {
            panic!()
        };
        let edits = [Edit::new("Server", ""), Edit::new("Server", "sozu"), Edit::new("x-powered-by", "")];
        let mut out = Vec::new();
        r.write_to_client(&mut out, false, b"set-cookie: s=1\r\n", &edits);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nServer: sozu\r\nset-cookie: s=1\r\n\r\n"
        );
    }

    #[test]
    fn a_listener_names_the_request_id_header_and_sends_or_elides_x_real_ip() {
        let h =
            done("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: forged\r\nX-Real-IP: 6.6.6.6\r\nSozu-Id: theirs\r\n\r\n");
        let write = |fields: ListenerFields| {
            let mut out = Vec::new();
            let forwarding = Forwarding::new("192.0.2.7:1".parse().unwrap(), "127.0.0.1:80".parse().unwrap(), fields);
            h.write_to_backend(&mut out, &forwarding.for_client("198.51.100.9:2".parse().unwrap()), "id-1", &[], None);
            String::from_utf8(out).unwrap()
        };
        // the defaults: Sozu-Id is ours, the client's X-Real-IP passes
        let text = write(ListenerFields::default());
        assert!(text.contains("Sozu-Id: id-1\r\n") && !text.contains("theirs"), "{text}");
        assert!(text.contains("x-real-ip: 6.6.6.6\r\n") && text.contains("x-request-id: forged\r\n"), "{text}");
        // a listener's own id header replaces the client's field of that name
        let text = write(ListenerFields::new(Some("X-Request-Id"), true, false));
        assert!(text.contains("X-Request-Id: id-1\r\n") && !text.contains("forged"), "{text}");
        assert!(text.contains("sozu-id: theirs\r\n"), "no longer ours: {text}");
        // send_x_real_ip names the client (the one a PROXY header named) and no other
        assert!(text.contains("X-Real-IP: 198.51.100.9\r\n") && !text.contains("6.6.6.6"), "{text}");
        let text = write(ListenerFields::new(None, false, true));
        assert!(!text.to_ascii_lowercase().contains("x-real-ip"), "{text}");
        assert_eq!(ListenerFields::new(Some(""), false, false), ListenerFields::default());
    }

    #[test]
    fn the_sticky_cookie_is_taken_out_of_what_the_backend_gets() {
        let h = done(
            "GET / HTTP/1.1\r\nHost: a\r\nCookie: theme=dark; SOZUBALANCEID=b-1 ;lang=fr\r\nCookie: SOZUBALANCEID=b-2\r\n\r\n",
        );
        let forwarding =
            Forwarding::new("[::1]:1".parse().unwrap(), "127.0.0.1:80".parse().unwrap(), ListenerFields::default());
        let mut out = Vec::new();
        h.write_to_backend(&mut out, &forwarding, "id", &[], Some("SOZUBALANCEID"));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("cookie: theme=dark; lang=fr\r\n") && !text.contains("SOZUBALANCEID"), "{text}");
        assert_eq!(text.matches("cookie").count(), 1, "the emptied field is dropped: {text}");
        // without a sticky session, cookies pass untouched
        let mut out = Vec::new();
        h.write_to_backend(&mut out, &forwarding, "id", &[], None);
        assert!(String::from_utf8(out).unwrap().contains("cookie: theme=dark; SOZUBALANCEID=b-1 ;lang=fr\r\n"));
        assert_eq!(super::without_cookie(b"a=1;;  b = 2 ; SOZU=x", "SOZU"), b"a=1; b = 2");
        assert_eq!(super::without_cookie(b"SOZU", "SOZU"), b"");
    }
}
