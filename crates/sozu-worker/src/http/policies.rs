//! Policies applied to a routed request before it goes to a backend: its frontend's
//! (`rewrite_host` and `rewrite_path`, templates of the request's captures that give
//! the `Host` and target it is forwarded with; `redirect` = `PERMANENT` to the address
//! they make, with `redirect_scheme`, `rewrite_port` and `redirect_template`;
//! `redirect` = `UNAUTHORIZED`;
//! `required_auth` against the cluster's `authorized_hashes`), then its cluster's (the
//! redirection to HTTPS, `https_redirect` and `https_redirect_port`; sticky sessions,
//! `sticky_session` with the listener's `sticky_name` and the backends' `sticky_id`),
//! and the frontend's header edits of what it forwards (`headers`).

use std::net::SocketAddr;

use sozu_state::ConfigState;

use sozu_proto::{Cluster, HeaderPosition, RedirectPolicy, RedirectScheme, RequestHttpFrontend};

use super::head::{Edit, RequestHead};

/// A frontend's header edits (`headers`), by the side they apply to: the request sent
/// to the backend, the backend's response sent to the client (not our own answers).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderEdits {
    pub request: Vec<Edit>,
    pub response: Vec<Edit>,
}

/// The edits of the frontend `f`, if it has any.
pub(super) fn header_edits(f: &RequestHttpFrontend) -> Option<Box<HeaderEdits>> {
    if f.headers.is_empty() {
        return None;
    }
    let mut edits = HeaderEdits::default();
    for h in &f.headers {
        let (request, response) = match HeaderPosition::try_from(h.position) {
            Ok(HeaderPosition::Request) => (true, false),
            Ok(HeaderPosition::Response) => (false, true),
            Ok(HeaderPosition::Both) => (true, true),
            Ok(HeaderPosition::Unspecified) | Err(_) => (false, false), // the state refuses these
        };
        if request {
            edits.request.push(Edit::new(&h.key, &h.val));
        }
        if response {
            edits.response.push(Edit::new(&h.key, &h.val));
        }
    }
    Some(Box::new(edits))
}

/// What a frontend's rewrites make of a request: the `Host` and the target it is
/// forwarded with or redirected to (`None`: the client's).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Rewrite {
    pub host: Option<String>,
    pub target: Option<String>,
}

/// Whether the frontend `f` rewrites what it forwards (an empty template does not).
pub(super) fn rewrites(f: &RequestHttpFrontend) -> bool {
    !f.rewrite_host.as_deref().unwrap_or_default().is_empty()
        || !f.rewrite_path.as_deref().unwrap_or_default().is_empty()
}

/// The frontend `f`'s `rewrite_host` and `rewrite_path` filled with the captures of
/// `head` ([`sozu_state::rewrite`]: the host and what a `*.` matched; the target, and
/// what follows a prefix or the groups `regex`, the frontend's compiled path regex,
/// finds in the path). A target that does not start with `/` gets one (Sōzu 2.1 sends
/// `$PATH[1]` of `/api` for `/api` as an empty target). `Err`: a template filled this
/// way gives no `Host` value or request target (a path capture holding `/` in a host).
pub(super) fn rewrite(
    f: &RequestHttpFrontend,
    head: &RequestHead,
    regex: Option<&regex::Regex>,
) -> Result<Rewrite, &'static str> {
    use sozu_proto::PathRuleKind;
    use sozu_state::rewrite::Template;
    let mut host = vec![head.host.as_str()];
    if let Some(suffix) = f.hostname.strip_prefix("*.") {
        host.push(head.host.get(..head.host.len().saturating_sub(suffix.len() + 1)).unwrap_or_default());
    }
    let mut path = vec![Some(head.target.as_str())];
    match PathRuleKind::try_from(f.path.kind) {
        Ok(PathRuleKind::Prefix) => path.push(head.target.strip_prefix(f.path.value.as_str())),
        Ok(PathRuleKind::Regex) => {
            if let Some(found) = regex.and_then(|r| r.captures(&head.path)) {
                path.extend(found.iter().skip(1).map(|m| m.map(|m| m.as_str())));
            }
        }
        _ => {}
    }
    let fill = |template: &Option<String>| -> Result<Option<String>, &'static str> {
        let Some(text) = template.as_deref().filter(|t| !t.is_empty()) else { return Ok(None) };
        let parsed = Template::parse(text).map_err(|_| "the frontend's rewrite is not a template")?;
        let mut out = String::with_capacity(text.len() + head.target.len());
        parsed.expand_into(&host, &path, &mut out);
        Ok(Some(out))
    };
    let new_host = fill(&f.rewrite_host)?;
    if new_host.as_ref().is_some_and(|h| h.is_empty() || !h.bytes().all(sozu_state::rewrite::host_byte)) {
        return Err("the frontend's host rewrite gives no Host value for this request");
    }
    let mut target = fill(&f.rewrite_path)?;
    if let Some(t) = target.as_mut().filter(|t| !t.starts_with('/')) {
        t.insert(0, '/');
    }
    if target.as_ref().is_some_and(|t| !t.bytes().all(target_byte)) {
        return Err("the frontend's path rewrite gives no request target for this request");
    }
    Ok(Rewrite { host: new_host, target })
}

/// What a policy answers instead of forwarding: a status, its header field, and the
/// frontend's own answer template (a redirection's `redirect_template`).
pub(super) struct PolicyAnswer {
    pub status: u16,
    pub field: (&'static str, String),
    pub template: Option<String>,
}

/// The answer the frontend `f` (of `cluster`) gives a request itself, if any: its
/// redirection (`301` to the address `rewrite` (its rewrites of this request),
/// `rewrite_port` and `redirect_scheme` make of the request's; `port` gives the one
/// clients reached, kept for plain HTTP), a `401` for `UNAUTHORIZED`, or a `401` when
/// it requires credentials and the request has none of the cluster's
/// `authorized_hashes`.
pub(super) fn frontend_answer(
    f: &RequestHttpFrontend,
    cluster: Option<&Cluster>,
    head: &RequestHead,
    rewrite: &Rewrite,
    port: impl FnOnce() -> u16,
) -> Option<PolicyAnswer> {
    match f.redirect.and_then(|r| RedirectPolicy::try_from(r).ok()) {
        Some(RedirectPolicy::Permanent) => {
            let https = f.redirect_scheme == Some(RedirectScheme::UseHttps as i32);
            let (host, path) = (rewrite.host.as_deref(), rewrite.target.as_deref());
            let port = f
                .rewrite_port
                .or_else(|| if https { cluster.and_then(|c| c.https_redirect_port) } else { Some(u32::from(port())) })
                .filter(|p| (1..=65535).contains(p) && *p != if https { 443 } else { 80 });
            let location = format!(
                "{}://{}{}{}",
                if https { "https" } else { "http" },
                host.unwrap_or(&head.host),
                port.map(|p| format!(":{p}")).unwrap_or_default(),
                path.unwrap_or(request_target(head)),
            );
            Some(PolicyAnswer { status: 301, field: ("location", location), template: f.redirect_template.clone() })
        }
        Some(RedirectPolicy::Unauthorized) => Some(challenge(cluster)),
        _ if f.required_auth == Some(true) && !authorized(cluster, head) => Some(challenge(cluster)),
        _ => None,
    }
}

/// The request's target for a `Location` (`*` is not one: `/`).
fn request_target(head: &RequestHead) -> &str {
    if head.target.starts_with('/') { head.target.as_str() } else { "/" }
}

/// Bytes a rewritten target may hold: visible ASCII (no space, no control).
fn target_byte(b: u8) -> bool {
    b.is_ascii_graphic()
}

/// A `401` asking for Basic credentials in the cluster's realm: its `www_authenticate`,
/// or its id (quotes, backslashes and control characters left out).
fn challenge(cluster: Option<&Cluster>) -> PolicyAnswer {
    let realm = cluster.map_or("sozu", |c| c.www_authenticate.as_deref().unwrap_or(&c.cluster_id));
    let realm: String = realm.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
    PolicyAnswer { status: 401, field: ("www-authenticate", format!("Basic realm=\"{realm}\"")), template: None }
}

/// Whether the request's `Authorization: Basic` credentials are among the cluster's
/// `authorized_hashes` (`user:hex(sha256(password))`, as Sōzu keeps them). Every entry
/// is compared, in constant time, whatever matched before.
fn authorized(cluster: Option<&Cluster>, head: &RequestHead) -> bool {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let Some(value) = head.header("authorization") else { return false };
    let Some((scheme, token)) = value.trim().split_once(' ') else { return false };
    if !scheme.eq_ignore_ascii_case("basic") || token.len() > 4096 {
        return false;
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let Ok(decoded) = engine.decode(token.trim()) else { return false };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else { return false };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let mut candidate = user.to_vec();
    candidate.push(b':');
    for byte in Sha256::digest(password) {
        candidate.extend_from_slice(format!("{byte:02x}").as_bytes());
    }
    let mut found = false;
    for entry in cluster.map(|c| c.authorized_hashes.as_slice()).unwrap_or_default() {
        let entry = match entry.rsplit_once(':') {
            Some((user, hash)) => [user.as_bytes(), b":", hash.to_ascii_lowercase().as_bytes()].concat(),
            None => continue,
        };
        found |= constant_time_eq(&entry, &candidate);
    }
    found
}

/// Equality whose time depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `301` of a cluster with `https_redirect`: to the same host and target over
/// HTTPS, on `https_redirect_port` when it is set and not 443. `None` without it.
pub(super) fn https_redirect(cluster: &Cluster, head: &RequestHead) -> Option<PolicyAnswer> {
    if !cluster.https_redirect {
        return None;
    }
    let port = cluster.https_redirect_port.filter(|p| *p != 443).map(|p| format!(":{p}")).unwrap_or_default();
    // the host is checked by the parser (letters, digits, `.-_[]:`) and the target holds
    // no space or control byte: nothing here can break the header line
    let location = format!("https://{}{port}{}", head.host, request_target(head));
    Some(PolicyAnswer { status: 301, field: ("location", location), template: None })
}

/// The sticky session of a request to `cluster` (which has `sticky_session`): the
/// listener's cookie name (`sticky_name`, Sōzu's `SOZUBALANCEID` when empty), and the
/// backend the client's cookie names moved first among `candidates` when it is one of
/// them (a backend that is down is not, and the client moves to another one).
pub(super) fn sticky_session(
    state: &ConfigState,
    listener: SocketAddr,
    cluster: &str,
    head: &RequestHead,
    candidates: &mut [(String, SocketAddr)],
) -> Sticky {
    let name = state
        .http_listener(listener)
        .map(|l| l.sticky_name.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("SOZUBALANCEID")
        .to_string();
    let sent = head.cookie(&name).map(str::to_string);
    let sticky = Sticky { name, sent, ids: state.sticky_ids(cluster) };
    if let Some(i) = sticky.named().and_then(|b| candidates.iter().position(|(c, _)| c == b)) {
        candidates[..=i].rotate_right(1);
    }
    sticky
}

/// A sticky session's cookie for one request: its name, the sticky id the client sent,
/// and the sticky id of each backend of the cluster. The response says `Set-Cookie`
/// when the backend that answers is not the one the client named.
pub(crate) struct Sticky {
    pub name: String,
    pub sent: Option<String>,
    /// (backend id, sticky id).
    pub ids: Vec<(String, String)>,
}

impl Sticky {
    /// The backend whose sticky id the client sent, if any has it.
    pub fn named(&self) -> Option<&str> {
        let sent = self.sent.as_deref()?;
        self.ids.iter().find(|(_, id)| id == sent).map(|(b, _)| b.as_str())
    }

    /// The `Set-Cookie` line for a response from `backend`, if the client needs one.
    /// None either when the name is not a token or the id not a cookie value (RFC 6265
    /// §4.1.1): a listener's `sticky_name` is not checked by the state, and a header
    /// line must not be broken by what an operator typed.
    pub fn set_cookie(&self, backend: &str) -> Vec<u8> {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        let octet = |b: u8| b.is_ascii_graphic() && !b"\",;\\".contains(&b);
        match self.ids.iter().find(|(b, _)| b == backend) {
            Some((_, id))
                if self.sent.as_deref() != Some(id.as_str())
                    && self.name.bytes().all(token)
                    && !id.is_empty()
                    && id.bytes().all(octet) =>
            {
                format!("set-cookie: {}={id}; Path=/\r\n", self.name).into_bytes()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::head::{Parsed, parse_request};
    use super::*;

    fn head(extra: &str) -> RequestHead {
        let Parsed::Done(h) = parse_request(format!("GET /a?b HTTP/1.1\r\nHost: h.test\r\n{extra}\r\n").as_bytes())
        else {
            panic!()
        };
        h
    }

    fn cluster() -> Cluster {
        Cluster {
            cluster_id: "c".into(),
            // sha256("s3cret"), an upper-case copy of it, a malformed entry
            authorized_hashes: vec![
                "nobody".into(),
                "alice:1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0".into(),
                "carol:1EC1C26B50D5D3C58D9583181AF8076655FE00756BF7285940BA3670F99FCBA0".into(),
            ],
            www_authenticate: Some("a \"quoted\"\r\nrealm".into()),
            ..Default::default()
        }
    }

    #[test]
    fn basic_credentials_match_a_user_and_the_sha256_of_its_password() {
        let c = cluster();
        for (value, ok) in [
            ("Basic YWxpY2U6czNjcmV0", true),  // alice:s3cret
            ("basic YWxpY2U6czNjcmV0", true),  // the scheme is case-insensitive
            ("Basic Y2Fyb2w6czNjcmV0", true),  // carol:s3cret, an upper-case hex entry
            ("Basic YWxpY2U6d3Jvbmc=", false), // alice:wrong
            ("Basic Ym9iOnMzY3JldA==", false), // bob:s3cret
            ("Basic YWxpY2U", false),          // no colon
            ("Basic %%%", false),
            ("Digest YWxpY2U6czNjcmV0", false),
        ] {
            assert_eq!(authorized(Some(&c), &head(&format!("Authorization: {value}\r\n"))), ok, "{value}");
        }
        assert!(!authorized(Some(&c), &head("")));
        assert!(!authorized(None, &head("Authorization: Basic YWxpY2U6czNjcmV0\r\n")));
    }

    #[test]
    fn a_challenge_names_a_realm_that_cannot_break_its_line() {
        let p = challenge(Some(&cluster()));
        assert_eq!(
            (p.status, p.field.0, p.field.1.as_str()),
            (401, "www-authenticate", "Basic realm=\"a quotedrealm\"")
        );
        let plain = Cluster { cluster_id: "shop".into(), ..Default::default() };
        assert_eq!(challenge(Some(&plain)).field.1, "Basic realm=\"shop\"");
    }

    fn frontend(host: &str, kind: sozu_proto::PathRuleKind, rule: &str) -> RequestHttpFrontend {
        RequestHttpFrontend {
            hostname: host.into(),
            path: sozu_proto::PathRule { kind: kind as i32, value: rule.into() },
            ..Default::default()
        }
    }

    fn get(target: &str, host: &str) -> RequestHead {
        let Parsed::Done(h) = parse_request(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()) else {
            panic!()
        };
        h
    }

    #[test]
    fn rewrites_fill_the_captures_of_the_request() {
        use sozu_proto::PathRuleKind::*;
        let run = |mut f: RequestHttpFrontend, host: &str, path: &str, head: RequestHead| {
            f.rewrite_host = Some(host.into()).filter(|h: &String| !h.is_empty());
            f.rewrite_path = Some(path.into()).filter(|p: &String| !p.is_empty());
            let regex = (f.path.kind == Regex as i32).then(|| regex::Regex::new(&f.path.value).unwrap());
            rewrite(&f, &head, regex.as_ref())
        };
        let ok = |host: Option<&str>, target: Option<&str>| {
            Ok(Rewrite { host: host.map(str::to_string), target: target.map(str::to_string) })
        };
        // a wildcard's label and a prefix's remainder, query included (Sōzu 2.1 gives the same)
        let api = frontend("*.example.com", Prefix, "/api");
        let head = get("/api/users?x=1", "foo.example.com:8080");
        assert_eq!(
            run(api.clone(), "$HOST[1].internal", "/v2$PATH[1]", head),
            ok(Some("foo.internal"), Some("/v2/users?x=1"))
        );
        let head = get("/api/x?y", "a.b.example.com");
        assert_eq!(
            run(api.clone(), "h-$HOST[0]", "/p$PATH[0]", head),
            ok(Some("h-a.b.example.com"), Some("/p/api/x?y"))
        );
        // regex groups of the path; a group that took no part gives nothing
        let users = frontend("u.test", Regex, "^/u/([a-z]+)/(\\d+)(/x)?");
        assert_eq!(
            run(users.clone(), "", "/users/$PATH[2]/$PATH[1]$PATH[3]", get("/u/bob/42/rest?z", "u.test")),
            ok(None, Some("/users/42/bob"))
        );
        // a literal path drops the query; an empty result or one without a leading slash gets one
        assert_eq!(run(api.clone(), "", "/q", get("/api/x?y=1", "a.example.com")), ok(None, Some("/q")));
        assert_eq!(run(api.clone(), "", "$PATH[1]", get("/api", "a.example.com")), ok(None, Some("/")));
        assert_eq!(run(api.clone(), "", "$PATH[1]", get("/apix", "a.example.com")), ok(None, Some("/x")));
        // a path capture that cannot be a host: refused for this request, not sent
        let e = run(api.clone(), "s$PATH[1]", "", get("/api/x", "a.example.com")).unwrap_err();
        assert!(e.contains("no Host value"), "{e}");
        assert_eq!(run(api, "s$PATH[1]", "", get("/api-x", "a.example.com")), ok(Some("s-x"), None));
        // what was not written in the state: literal text that fits no line is refused too
        let plain = frontend("h.test", Prefix, "/");
        assert!(run(plain.clone(), "x\r\nSet-Cookie: a=b", "", get("/", "h.test")).is_err());
        assert!(run(plain.clone(), "", "/p q", get("/", "h.test")).is_err());
        assert_eq!(run(plain, "", "", get("/", "h.test")), ok(None, None));
    }

    #[test]
    fn a_redirection_goes_where_the_rewrites_say() {
        let f = |port: Option<u32>, https: bool| RequestHttpFrontend {
            redirect: Some(RedirectPolicy::Permanent as i32),
            redirect_scheme: https.then_some(RedirectScheme::UseHttps as i32),
            rewrite_port: port,
            ..Default::default()
        };
        let to = |host: &str, path: &str| Rewrite { host: Some(host.into()), target: Some(path.into()) };
        let location = |f: RequestHttpFrontend, c: Option<&Cluster>, r: &Rewrite| {
            frontend_answer(&f, c, &head(""), r, || 80).unwrap().field.1
        };
        let none = Rewrite::default();
        assert_eq!(location(f(Some(81), false), None, &to("new.test", "/n")), "http://new.test:81/n");
        assert_eq!(location(f(None, true), None, &none), "https://h.test/a?b");
        // to HTTPS, the cluster's https_redirect_port
        let c = Cluster { https_redirect_port: Some(8443), ..Default::default() };
        assert_eq!(location(f(None, true), Some(&c), &none), "https://h.test:8443/a?b");
        // forward, with or without credentials required
        let forward = RequestHttpFrontend::default();
        assert!(frontend_answer(&forward, None, &head(""), &none, || 80).is_none());
        let guarded = RequestHttpFrontend { required_auth: Some(true), ..Default::default() };
        assert_eq!(frontend_answer(&guarded, Some(&cluster()), &head(""), &none, || 80).unwrap().status, 401);
        let auth = head("Authorization: Basic YWxpY2U6czNjcmV0\r\n");
        assert!(frontend_answer(&guarded, Some(&cluster()), &auth, &none, || 80).is_none());
        // plain HTTP keeps the port clients reached
        let moved = Rewrite { target: Some("/n".into()), host: None };
        assert_eq!(
            frontend_answer(&f(None, false), None, &head(""), &moved, || 8080).unwrap().field.1,
            "http://h.test:8080/n"
        );
    }

    fn sticky(name: &str, sent: Option<&str>) -> Sticky {
        Sticky {
            name: name.into(),
            sent: sent.map(Into::into),
            ids: vec![("b1".into(), "alpha".into()), ("b2".into(), "b2".into()), ("b3".into(), "a b".into())],
        }
    }

    #[test]
    fn the_cookie_is_set_when_the_client_did_not_name_the_backend_that_answered() {
        let s = sticky("SOZUBALANCEID", Some("alpha"));
        assert_eq!(s.named(), Some("b1"));
        assert!(s.set_cookie("b1").is_empty());
        assert_eq!(s.set_cookie("b2"), b"set-cookie: SOZUBALANCEID=b2; Path=/\r\n");
        assert!(s.set_cookie("gone").is_empty());
        assert_eq!(sticky("X", Some("nobody")).named(), None);
        assert_eq!(sticky("X", None).set_cookie("b1"), b"set-cookie: X=alpha; Path=/\r\n");
    }

    #[test]
    fn a_name_or_id_that_would_break_the_header_line_sets_nothing() {
        assert!(sticky("LB\r\nX-Evil: 1", None).set_cookie("b1").is_empty());
        assert!(sticky("a;b", None).set_cookie("b1").is_empty());
        assert!(sticky("LB", None).set_cookie("b3").is_empty());
    }
}
