//! Cluster policies the workers apply to HTTP traffic: sticky sessions and the
//! redirection to HTTPS.

use crate::http::{Client, http_master};

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
