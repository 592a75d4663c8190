//! Policies the workers apply to traffic: sticky sessions, the redirection to HTTPS,
//! the PROXY protocol (read from clients, sent to TCP backends), a frontend's answers
//! of its own, and its header edits.

use std::io::{Read, Write};

use crate::http::{Client, http_backend, http_master};
use crate::support::tcp_master;

/// `GET path` for `host` with `cookie` as the `Cookie` field.
fn get_with_cookie(c: &mut Client, host: &str, path: &str, cookie: &str) -> crate::http::Answer {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nCookie: theme=dark; {cookie}\r\n\r\n").as_bytes());
    c.answer().expect("an answer")
}

/// The backend that answered (the test backends start their answer with their name).
fn backend(a: &crate::http::Answer) -> String {
    assert_eq!(a.status, 200, "{}", a.text());
    a.text()[..2].to_string()
}

#[test]
fn sticky_sessions_keep_a_client_on_its_backend_while_it_is_there() {
    let (m, b1, _) = http_master("httpsticky", "");
    let port = m.http_port;
    m.ok(&["cluster", "add", "-i", "api", "--sticky-session"]);
    // no cookie: the balancer chooses, and the answer names the backend in a cookie
    let mut c = Client::connect(port);
    let a = c.get("api.test", "/");
    let first = backend(&a);
    assert_eq!(a.header("set-cookie"), Some(format!("SOZUBALANCEID={first}; Path=/").as_str()));
    // with the cookie, every new connection goes to that backend (round robin would
    // alternate), and nothing more is set
    for _ in 0..6 {
        let a = get_with_cookie(&mut Client::connect(port), "api.test", "/", &format!("SOZUBALANCEID={first}"));
        assert_eq!(backend(&a), first);
        assert_eq!(a.header("set-cookie"), None);
    }
    // the backend never sees the sticky cookie, only the client's others
    let (seen, _) =
        get_headers(&mut Client::connect(port), "api.test", &format!("Cookie: theme=dark; SOZUBALANCEID={first}\r\n"));
    assert!(seen.contains("cookie: theme=dark\n") && !seen.contains("SOZUBALANCEID"), "{seen}");
    // a client that names the other backend on its keep-alive connection moves there
    let other = if first == "b1" { "b2" } else { "b1" };
    let a = get_with_cookie(&mut c, "api.test", "/", &format!("SOZUBALANCEID={other}"));
    assert_eq!((backend(&a).as_str(), a.header("set-cookie")), (other, None));
    // a backend's own sticky id is the cookie's value
    m.ok(&["backend", "add", "-i", "api", "--backend-id", "b1", "-a", &format!("127.0.0.1:{b1}"), "-s", "alpha"]);
    for _ in 0..4 {
        let a = get_with_cookie(&mut Client::connect(port), "api.test", "/", "SOZUBALANCEID=alpha");
        assert_eq!((backend(&a).as_str(), a.header("set-cookie")), ("b1", None));
    }
    // a value no backend has, or a backend that is gone: another backend, a new cookie
    let a = get_with_cookie(&mut Client::connect(port), "api.test", "/", "SOZUBALANCEID=nobody");
    let expected = if backend(&a) == "b1" { "alpha" } else { "b2" };
    assert_eq!(a.header("set-cookie"), Some(format!("SOZUBALANCEID={expected}; Path=/").as_str()));
    m.ok(&["backend", "remove", "-i", "api", "--backend-id", "b1", "-a", &format!("127.0.0.1:{b1}")]);
    let a = get_with_cookie(&mut Client::connect(port), "api.test", "/", "SOZUBALANCEID=alpha");
    assert_eq!((backend(&a).as_str(), a.header("set-cookie")), ("b2", Some("SOZUBALANCEID=b2; Path=/")));
    // the listener's cookie name
    let listener = format!("127.0.0.1:{port}");
    m.ok(&["listener", "http", "update", "-a", &listener, "--sticky-name", "LB"]);
    let a = Client::connect(port).get("api.test", "/");
    assert_eq!(a.header("set-cookie"), Some("LB=b2; Path=/"));
    // a cluster without sticky sessions sets no cookie
    m.ok(&["cluster", "add", "-i", "api"]);
    assert_eq!(Client::connect(port).get("api.test", "/").header("set-cookie"), None);
    let (seen, _) = get_headers(&mut Client::connect(port), "api.test", "Cookie: LB=b2\r\n");
    assert!(seen.contains("cookie: LB=b2\n"), "and passes cookies untouched: {seen}");
}

#[test]
fn https_redirect_answers_301_to_the_same_address_over_https_and_keeps_the_connection() {
    let extra = "[clusters.secure]\nprotocol = \"http\"\nhttps_redirect = true\nhttps_redirect_port = 8443\n\
                 frontends = [{ address = \"127.0.0.1:HTTP_PORT\", hostname = \"secure.test\" }]\n";
    let (m, _, _) = http_master("httpredirect", extra);
    let mut c = Client::connect(m.http_port);
    // from the configuration file, with its port
    let a = c.get("secure.test", "/login?next=%2Fhome");
    assert_eq!(a.status, 301, "{}", a.text());
    assert_eq!(a.header("location"), Some("https://secure.test:8443/login?next=%2Fhome"));
    // from a command, on the default port; the keep-alive connection goes on
    m.ok(&["cluster", "add", "-i", "api", "--https-redirect"]);
    let a = c.get("API.test:80", "/x");
    assert_eq!((a.status, a.header("location")), (301, Some("https://api.test/x")));
    assert_eq!(c.get("img.cdn.test", "/assets/a.png").status, 200);
    // an operator's 301 template keeps its headers and gets our Location
    m.ok(&[
        "cluster",
        "add",
        "-i",
        "api",
        "-r",
        "--https-redirect-port",
        "443",
        "--answer",
        "301=HTTP/1.1 301 Moved\r\nLocation: %REDIRECT_LOCATION\r\nX-Why: tls\r\n\r\n",
    ]);
    let a = c.get("api.test", "/y");
    assert_eq!((a.status, a.header("location"), a.header("x-why")), (301, Some("https://api.test/y"), Some("tls")));
    // a request with a body is answered and its connection closed (the body is not read)
    c.send(b"POST /z HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\nabc");
    let a = c.answer().expect("an answer");
    assert_eq!((a.status, a.header("connection")), (301, Some("close")));
    // without the flag, the cluster's backends answer again
    m.ok(&["cluster", "add", "-i", "api"]);
    assert_eq!(Client::connect(m.http_port).get("api.test", "/").status, 200);
}

/// Sends `body` through the TCP listener `port`, ends the write side, and returns
/// every byte that comes back (the test backends answer `<name>:` and what they read).
fn tcp_call_raw(port: u16, body: &[u8]) -> Vec<u8> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    c.write_all(body).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out); // a refused header may end in a reset
    out
}

/// (source, destination) of the PROXY version 2 header (TCP over IPv4) at the start of
/// `bytes`, and what follows it.
fn v2_header(bytes: &[u8]) -> (std::net::SocketAddr, std::net::SocketAddr, &[u8]) {
    assert_eq!(&bytes[..12], b"\r\n\r\n\0\r\nQUIT\n", "{bytes:?}");
    assert_eq!((bytes[12], bytes[13]), (0x21, 0x11), "version 2, PROXY, TCP over IPv4");
    assert_eq!(u16::from_be_bytes([bytes[14], bytes[15]]), 12);
    let ip = |b: &[u8]| std::net::IpAddr::from([b[0], b[1], b[2], b[3]]);
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let src = std::net::SocketAddr::new(ip(&bytes[16..20]), port(&bytes[24..26]));
    let dst = std::net::SocketAddr::new(ip(&bytes[20..24]), port(&bytes[26..28]));
    (src, dst, &bytes[28..])
}

#[test]
fn tcp_backends_get_a_proxy_header_and_clients_that_send_one_have_it_read() {
    let m = tcp_master("tcpproxyproto");
    let port = m.tcp_port;
    let listener = format!("127.0.0.1:{port}");
    // the cluster sends a header: this connection's addresses, then the client's bytes
    m.ok(&["cluster", "add", "-i", "db", "--send-proxy"]);
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    c.write_all(b"hello").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let (src, dst, rest) = v2_header(&out[3..]);
    assert_eq!((src, dst, rest), (c.local_addr().unwrap(), listener.parse().unwrap(), &b"hello"[..]));
    // the listener expects one (version 1 here): the backend's header names its client
    m.ok(&["listener", "tcp", "update", "-a", &listener, "--expect-proxy"]);
    let header = format!("PROXY TCP4 192.0.2.7 127.0.0.1 40000 {port}\r\n");
    let out = tcp_call_raw(port, format!("{header}hello").as_bytes());
    let (src, _, rest) = v2_header(&out[3..]);
    assert_eq!((src, rest), ("192.0.2.7:40000".parse().unwrap(), &b"hello"[..]));
    // without the cluster's header, the client's is taken off, whole or in pieces
    m.ok(&["cluster", "add", "-i", "db"]);
    let out = tcp_call_raw(port, format!("{header}hello").as_bytes());
    assert_eq!(&out[2..], b":hello", "{}", String::from_utf8_lossy(&out));
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    for piece in [&header.as_bytes()[..9], &header.as_bytes()[9..], b"hel", b"lo"] {
        c.write_all(piece).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    assert_eq!(&out[2..], b":hello");
    // no header, or a malformed one: closed, and nothing reaches a backend
    for bad in [&b"hello"[..], b"PROXY TCP4 192.0.2.7 nowhere 1 2\r\nhello"] {
        assert_eq!(tcp_call_raw(port, bad), b"", "{}", String::from_utf8_lossy(bad));
    }
    m.ok(&["listener", "tcp", "update", "-a", &listener, "--no-expect-proxy"]);
    assert_eq!(tcp_call_raw(port, b"hello")[2..], *b":hello");
}

#[test]
fn an_http_listener_with_expect_proxy_forwards_the_client_its_header_names() {
    let (m, _, _) = http_master("httpproxyproto", "");
    let port = m.http_port;
    m.ok(&["listener", "http", "update", "-a", &format!("127.0.0.1:{port}"), "--expect-proxy"]);
    // version 1, then two requests on the connection: both from the header's client
    let mut c = Client::connect(port);
    c.send(format!("PROXY TCP4 192.0.2.7 127.0.0.1 40000 {port}\r\n").as_bytes());
    for _ in 0..2 {
        let text = c.get("api.test", "/").text();
        assert!(text.contains("xff=192.0.2.7 ") && text.contains("fwd=for=192.0.2.7;"), "{text}");
    }
    // version 2, in the same packet as the request
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend([198, 51, 100, 9, 127, 0, 0, 1, 0x9c, 0x40]);
    header.extend(port.to_be_bytes());
    let mut c = Client::connect(port);
    c.send(&[header.as_slice(), b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"].concat());
    let text = c.answer().expect("an answer").text();
    assert!(text.contains("xff=198.51.100.9 "), "{text}");
    // a client without a header is not answered
    let mut c = Client::connect(port);
    c.send(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n");
    assert!(c.answer().is_none());
}

/// `GET /` for `host` with `authorization` as the `Authorization` field.
fn get_with_credentials(c: &mut Client, host: &str, authorization: &str) -> crate::http::Answer {
    c.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n\r\n").as_bytes());
    c.answer().expect("an answer")
}

#[test]
fn frontends_redirect_refuse_and_ask_for_credentials_before_any_backend() {
    // sha256("s3cret"); base64 of alice:s3cret, alice:wrong, bob:s3cret
    let hash = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";
    let extra = format!(
        "[clusters.vault]\nprotocol = \"http\"\nauthorized_hashes = [\"alice:{hash}\"]\nwww_authenticate = \"vault\"\n\
         frontends = [{{ address = \"127.0.0.1:HTTP_PORT\", hostname = \"vault.test\", required_auth = true }}]\n"
    );
    let (m, b1, _) = http_master("httpfrontpolicy", &extra);
    m.ok(&["backend", "add", "-i", "vault", "--backend-id", "v1", "-a", &format!("127.0.0.1:{b1}")]);
    let listener = format!("127.0.0.1:{}", m.http_port);
    let add = |host: &str, options: &[&str]| {
        let mut args = vec!["frontend", "http", "add", "-a", &listener, "--hostname", host];
        args.extend_from_slice(options);
        args.extend_from_slice(&["id", "api"]);
        m.ok(&args);
    };
    add("old.test", &["--redirect", "permanent", "--redirect-scheme", "use-https", "--rewrite-host", "new.test"]);
    add("moved.test", &["--redirect", "permanent", "--rewrite-path", "/new/", "--rewrite-port", "8080"]);
    add("tpl.test", &["--redirect", "permanent", "--redirect-template", "HTTP/1.1 301 Gone\r\nLocation: x\r\n\r\nbye"]);
    add("closed.test", &["--redirect", "unauthorized"]);
    add("private.test", &["--required-auth"]);
    let mut c = Client::connect(m.http_port);
    let a = c.get("old.test", "/x?y=1");
    assert_eq!((a.status, a.header("location")), (301, Some("https://new.test/x?y=1")));
    let a = c.get("moved.test", "/x");
    assert_eq!((a.status, a.header("location")), (301, Some("http://moved.test:8080/new/")));
    // plain HTTP keeps the port the client reached
    let a = c.get("tpl.test", "/p");
    let here = format!("http://tpl.test:{}/p", m.http_port);
    assert_eq!((a.status, a.header("location"), a.text().as_str()), (301, Some(here.as_str()), "bye"));
    // UNAUTHORIZED, in the cluster's realm (its id when it names none)
    let a = c.get("closed.test", "/");
    assert_eq!((a.status, a.header("www-authenticate")), (401, Some("Basic realm=\"api\"")));
    // required_auth without credentials of the cluster's: 401, and the backend never sees it
    let a = c.get("private.test", "/");
    assert_eq!((a.status, a.header("www-authenticate")), (401, Some("Basic realm=\"api\"")));
    for wrong in ["Basic YWxpY2U6d3Jvbmc=", "Basic Ym9iOnMzY3JldA==", "Basic !!!", "Bearer YWxpY2U6czNjcmV0"] {
        assert_eq!(get_with_credentials(&mut c, "vault.test", wrong).status, 401, "{wrong}");
    }
    let a = get_with_credentials(&mut c, "vault.test", "Basic YWxpY2U6czNjcmV0");
    assert_eq!(a.status, 200, "{}", a.text());
    let a = c.get("vault.test", "/");
    assert_eq!((a.status, a.header("www-authenticate")), (401, Some("Basic realm=\"vault\"")));
    // the plain frontend of the same cluster still forwards, on the same connection
    assert_eq!(c.get("api.test", "/").status, 200);
}

#[test]
fn frontends_rewrite_the_host_and_target_they_forward_and_redirect_to() {
    // from the configuration file: Sōzu's example of a wildcard host and a path prefix
    let extra = "[clusters.rw]\nprotocol = \"http\"\n\
                 frontends = [{ address = \"127.0.0.1:HTTP_PORT\", hostname = \"*.rw.test\", path = \"/api\", \
                 rewrite_host = \"$HOST[1].internal\", rewrite_path = \"/v2$PATH[1]\" }]\n";
    let (m, b1, _) = http_master("httprewrite", extra);
    m.ok(&["backend", "add", "-i", "rw", "--backend-id", "r1", "-a", &format!("127.0.0.1:{b1}")]);
    let listener = format!("127.0.0.1:{}", m.http_port);
    let mut c = Client::connect(m.http_port);
    let text = c.get("foo.rw.test", "/api/users?x=1").text();
    assert!(text.contains(" GET /v2/users?x=1 ") && text.ends_with(" host=foo.internal"), "{text}");
    // a regex's groups, from our CLI; a literal path drops the query
    let add = |host: &str, route: &[&str], rewrites: &[&str]| {
        let args =
            [&["frontend", "http", "add", "-a", &listener, "--hostname", host][..], route, rewrites, &["id", "api"]];
        m.ok(&args.concat());
    };
    add("re.test", &["--path-regex", "^/u/([a-z]+)/([0-9]+)"], &["--rewrite-path", "/users/$PATH[2]/$PATH[1]"]);
    add("lit.test", &["-p", "/old"], &["--rewrite-path", "/new", "--rewrite-host", "backend.lit"]);
    let text = c.get("re.test", "/u/bob/42/tail?q").text();
    assert!(text.contains(" GET /users/42/bob ") && text.ends_with(" host=re.test"), "{text}");
    let text = c.get("lit.test", "/old/x?y=1").text();
    assert!(text.contains(" GET /new ") && text.ends_with(" host=backend.lit"), "{text}");
    // the next request on the connection, to a frontend without rewrites, goes as sent
    let text = c.get("api.test", "/old/x?y=1").text();
    assert!(text.contains(" GET /old/x?y=1 ") && text.ends_with(" host=api.test"), "{text}");
    // a redirection fills the same templates, with the rewrite's port
    add(
        "*.moved.test",
        &["-p", "/old"],
        &[
            "--redirect",
            "permanent",
            "--rewrite-host",
            "$HOST[1].new",
            "--rewrite-path",
            "/v2$PATH[1]",
            "--rewrite-port",
            "8443",
        ],
    );
    let a = c.get("a.moved.test", "/old/x?y");
    assert_eq!((a.status, a.header("location")), (301, Some("http://a.new:8443/v2/x?y")));
    // a path capture that makes no Host value: 400, nothing forwarded
    add("bad.test", &["-p", "/"], &["--rewrite-host", "s$PATH[1]"]);
    assert!(c.get("bad.test", "/ok-name").text().ends_with(" host=sok-name"));
    assert_eq!(Client::connect(m.http_port).get("bad.test", "/a/b").status, 400);
    // templates a frontend cannot fill are refused, and nothing changes
    for (host, route, rewrite, why) in [
        ("no.test", "-p", "$HOST[1]", "rewrite_host \"$HOST[1]\" cannot be used: $HOST[1] names no capture"),
        ("no.test", "--path-equals", "/x$PATH[1]", "$PATH[1] names no capture: the path rule gives $PATH[0] only"),
        ("no.test", "-p", "/a$b", "the `$` at byte 2 starts neither $HOST[n] nor $PATH[n]"),
    ] {
        let flag = if rewrite.starts_with('/') { "--rewrite-path" } else { "--rewrite-host" };
        let args =
            ["frontend", "http", "add", "-a", &listener, "--hostname", host, route, "/x", flag, rewrite, "id", "api"];
        let err = m.fails(&args);
        assert!(err.starts_with("Request failed: ") && err.contains(why), "{rewrite}: {err}");
    }
    assert!(!m.ok(&["frontend", "list"]).contains("no.test"));
}

/// `GET /headers` for `host` with `fields` (CRLF-ended lines) added: the request's
/// fields as the backend got them, and the answer.
fn get_headers(c: &mut Client, host: &str, fields: &str) -> (String, crate::http::Answer) {
    c.send(format!("GET /headers HTTP/1.1\r\nHost: {host}\r\n{fields}\r\n").as_bytes());
    let a = c.answer().expect("an answer");
    assert_eq!(a.status, 200, "{}", a.text());
    (a.text(), a)
}

#[test]
fn a_frontends_header_edits_remove_then_add_fields_on_each_side_and_only_for_it() {
    let b3 = http_backend("b3");
    // as Sōzu: an empty value removes, a value adds; a replacement is both
    let extra = format!(
        "[clusters.edited]\nprotocol = \"http\"\nbackends = [{{ address = \"127.0.0.1:{b3}\" }}]\n\
         frontends = [{{ address = \"127.0.0.1:HTTP_PORT\", hostname = \"edited.test\", headers = [\n\
         {{ position = \"request\", key = \"X-Env\", val = \"prod\" }},\n\
         {{ position = \"request\", key = \"X-Env\" }},\n\
         {{ position = \"request\", key = \"X-Tag\", val = \"proxy\" }},\n\
         {{ position = \"BOTH\", key = \"X-Trace\", val = \"\" }},\n\
         {{ position = \"response\", key = \"Server\", val = \"\" }},\n\
         {{ position = \"response\", key = \"Server\", val = \"sozu\" }} ] }}]\n"
    );
    let (m, _, _) = http_master("httpheaders", &extra);
    let port = m.http_port;
    // from the configuration file: a forged X-Env is replaced, X-Tag added next to the
    // client's, X-Trace removed both ways, the backend's Server replaced; the rest passes
    let mut c = Client::connect(port);
    let fields = "X-Env: forged\r\nx-env: again\r\nX-Tag: client\r\nX-Trace: abc\r\nAccept: */*\r\n";
    let (seen, a) = get_headers(&mut c, "edited.test", fields);
    assert_eq!(seen.matches("x-env: ").count(), 1, "{seen}");
    assert!(seen.contains("x-env: prod\n") && seen.contains("accept: */*\n"), "{seen}");
    assert!(seen.contains("x-tag: client\n") && seen.contains("x-tag: proxy\n"), "{seen}");
    assert!(!seen.contains("forged") && !seen.contains("again") && !seen.contains("x-trace"), "{seen}");
    assert_eq!((a.header("server"), a.header("x-powered-by"), a.header("x-trace")), (Some("sozu"), Some("test"), None));
    // the next request on the keep-alive connection goes to a frontend without edits
    let (seen, a) = get_headers(&mut c, "api.test", "X-Env: mine\r\nX-Trace: abc\r\n");
    assert!(seen.contains("x-env: mine\n") && seen.contains("x-trace: abc\n"), "{seen}");
    assert_eq!((a.header("server"), a.header("x-trace")), (Some("test-backend"), Some("from-backend")));
    // from a command: a more specific frontend of the same host, with edits of its own
    let listener = format!("127.0.0.1:{port}");
    let route = ["frontend", "http", "add", "-a", &listener, "--hostname", "api.test", "-p", "/headers"];
    let edits = ["--header", "request=X-Env=", "--header", "request=X-Env=cli", "--header", "response=X-Powered-By="];
    m.ok(&[&route[..], &edits[..], &["id", "api"]].concat());
    let (seen, a) = get_headers(&mut c, "api.test", "X-Env: mine\r\n");
    assert!(seen.contains("x-env: cli\n") && !seen.contains("mine"), "{seen}");
    assert_eq!((a.header("x-powered-by"), a.header("server")), (None, Some("test-backend")));
    assert!(
        Client::connect(port).get("api.test", "/other").text().starts_with("b"),
        "other paths are routed as before"
    );
    // fields the proxy owns, names that are not tokens, unknown positions: refused, and
    // nothing changes
    for (spec, why) in [
        ("request=Content-Length=5", "header \"Content-Length\" cannot be edited: the proxy sets it"),
        ("both=X-Forwarded-For=", "header \"X-Forwarded-For\" cannot be edited: the proxy sets it"),
        ("request=X Y=1", "header \"X Y\" cannot be edited: not an HTTP token"),
    ] {
        let args = [
            &["frontend", "http", "add", "-a", &listener, "--hostname", "new.test", "--header", spec][..],
            &["id", "api"],
        ];
        let err = m.fails(&args.concat());
        assert!(err.starts_with("Request failed: ") && err.contains(why), "{spec}: {err}");
    }
    let err = m.fails(&[
        "frontend",
        "http",
        "add",
        "-a",
        &listener,
        "--hostname",
        "new.test",
        "--header",
        "sideways=X=1",
        "id",
        "api",
    ]);
    assert!(err.contains("--header position \"sideways\": allowed: request, response, both"), "{err}");
    assert!(!m.ok(&["frontend", "list"]).contains("new.test"));
    assert_eq!(Client::connect(port).get("new.test", "/").status, 404);
    // removing the frontend removes its edits
    let remove: Vec<&str> = route.iter().map(|a| if *a == "add" { "remove" } else { a }).collect();
    m.ok(&[&remove[..], &["id", "api"]].concat());
    let (seen, a) = get_headers(&mut Client::connect(port), "api.test", "X-Env: mine\r\n");
    assert!(seen.contains("x-env: mine\n"), "{seen}");
    assert_eq!(a.header("x-powered-by"), Some("test"));
}

#[test]
fn a_listener_names_its_request_id_header_and_sends_or_elides_x_real_ip() {
    let (m, _, _) = http_master("httpidheader", "");
    let port = m.http_port;
    let listener = format!("127.0.0.1:{port}");
    // the default: Sozu-Id, the client's own replaced
    let (seen, _) = get_headers(&mut Client::connect(port), "api.test", "Sozu-Id: forged\r\nX-Real-IP: 6.6.6.6\r\n");
    assert!(seen.contains("sozu-id: ") && !seen.contains("forged"), "{seen}");
    assert!(seen.contains("x-real-ip: 6.6.6.6\n"), "{seen}");
    // renamed by an update: the new name is ours, the old one the client's again
    m.ok(&["listener", "http", "update", "-a", &listener, "--sozu-id-header", "X-Request-Id"]);
    let (seen, _) = get_headers(&mut Client::connect(port), "api.test", "Sozu-Id: theirs\r\nX-Request-Id: forged\r\n");
    assert!(seen.contains("x-request-id: ") && !seen.contains("forged"), "{seen}");
    assert!(seen.contains("sozu-id: theirs\n"), "{seen}");
    let err = m.fails(&["listener", "http", "update", "-a", &listener, "--sozu-id-header", "Content-Length"]);
    assert!(err.contains("header \"Content-Length\" cannot be edited: the proxy sets it"), "{err}");
    // a new listener that sends X-Real-IP (the client's replaced), and one that elides it
    for (flag, expected) in [("--send-x-real-ip", Some("x-real-ip: 127.0.0.1\n")), ("--elide-x-real-ip", None)] {
        let other = format!("127.0.0.1:{}", crate::support::free_port());
        m.ok(&["listener", "http", "add", "-a", &other, flag]);
        m.ok(&["listener", "http", "activate", "-a", &other]);
        m.ok(&["frontend", "http", "add", "-a", &other, "--hostname", "api.test", "id", "api"]);
        let other_port: u16 = other.rsplit(':').next().unwrap().parse().unwrap();
        let (seen, _) = get_headers(&mut Client::connect(other_port), "api.test", "X-Real-IP: 6.6.6.6\r\n");
        assert!(!seen.contains("6.6.6.6"), "{flag}: {seen}");
        assert_eq!(seen.contains("x-real-ip"), expected.is_some(), "{flag}: {seen}");
        if let Some(line) = expected {
            assert!(seen.contains(line), "{flag}: {seen}");
        }
    }
}

#[test]
fn custom_answers_have_their_variables_filled_for_the_request() {
    let (m, _, _) = http_master("httpvars", "");
    let port = m.http_port;
    let template = "503=HTTP/1.1 503 Busy\r\nX-Id: %REQUEST_ID\r\nX-Route: %ROUTE\r\n\r\n%CLUSTER_ID is down (%MESSAGE), 100% sure";
    m.ok(&["cluster", "add", "-i", "empty", "--answer", template]);
    let mut c = Client::connect(port);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let a = c.get("empty.test", "/");
        assert_eq!(a.status, 503, "{}", a.text());
        assert_eq!(a.text(), "empty is down (No backend is available for this cluster.), 100% sure");
        assert_eq!(a.header("x-route"), Some("empty"));
        let id = a.header("x-id").unwrap_or_default().to_string();
        assert!(id.contains('-') && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{id}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each request has its own id");
    // a listener's answer: no route, so %ROUTE and %CLUSTER_ID are empty
    let file = m.dir.join("404.http");
    std::fs::write(&file, "HTTP/1.1 404 Nope\r\nX-Id: %REQUEST_ID\r\n\r\nno route [%ROUTE%CLUSTER_ID] for %REQUEST_ID")
        .unwrap();
    let listener = format!("127.0.0.1:{port}");
    m.ok(&["listener", "http", "update", "-a", &listener, "--answer-404", file.to_str().unwrap()]);
    let a = Client::connect(port).get("nobody.test", "/");
    let id = a.header("x-id").unwrap_or_default();
    assert_eq!((a.status, a.text()), (404, format!("no route [] for {id}")));
    assert!(!id.is_empty() && !ids.iter().any(|i| i == id), "{id}");
}
