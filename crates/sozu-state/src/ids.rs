//! Names an operator gives (cluster and backend ids, hostnames, paths, methods, sticky
//! ids, tags) must not carry characters that change how a line reads: they end up in
//! logs, audit records, CLI tables and terminals. A verb naming one is refused whole.
//! Which characters: those the audit's line-safe sanitizer replaces
//! ([`audit::Mode::Line`]: C0, DEL, C1, line and paragraph separators, BOM, bidi
//! controls), so a name that is accepted is written to an audit record unchanged.

use std::collections::BTreeMap;

use audit::Mode;
use sozu_proto::request::RequestType as R;
use sozu_proto::{Header, HeaderPosition, RequestHttpFrontend};

use crate::StateError;

fn name(field: &'static str, value: &str) -> Result<(), StateError> {
    if Mode::Line.rejects_any(value) {
        return Err(StateError::ControlCharacter { field, value: value.to_owned() });
    }
    Ok(())
}

fn tags(tags: &BTreeMap<String, String>) -> Result<(), StateError> {
    tags.iter().try_for_each(|(k, v)| name("tag", k).and_then(|()| name("tag", v)))
}

/// Header fields a frontend cannot edit: the message's framing, the hop-by-hop fields,
/// `Host`, and the forwarding fields the proxy sets itself.
const PROXY_OWNED_HEADERS: [&str; 14] = [
    "content-length",
    "transfer-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-port",
    "forwarded",
    "sozu-id",
];

/// Why a header field named `name` cannot be one the proxy writes for an operator: not
/// an HTTP token (RFC 9110 §5.1), or one the proxy owns.
fn unwritable(name: &str) -> Option<&'static str> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        Some("not an HTTP token")
    } else if PROXY_OWNED_HEADERS.iter().any(|p| p.eq_ignore_ascii_case(name)) {
        Some("the proxy sets it")
    } else {
        None
    }
}

/// An HTTP listener's request id header (`sozu_id_header`): a token the proxy does not
/// own otherwise (`Sozu-Id` itself is the default).
fn id_header(name: Option<&str>) -> Result<(), StateError> {
    match name.filter(|n| !n.eq_ignore_ascii_case("sozu-id")).and_then(|n| unwritable(n).map(|why| (n, why))) {
        Some((n, why)) => Err(StateError::InvalidHeader { name: n.to_owned(), why }),
        None => Ok(()),
    }
}

/// A header edit's name is an HTTP token the proxy does not own, its position is
/// known, and its value is line-safe.
fn header(h: &Header) -> Result<(), StateError> {
    let why = if let Some(why) = unwritable(&h.key) {
        Some(why)
    } else if !matches!(
        HeaderPosition::try_from(h.position),
        Ok(HeaderPosition::Request | HeaderPosition::Response | HeaderPosition::Both)
    ) {
        Some("its position is not REQUEST, RESPONSE or BOTH")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(StateError::InvalidHeader { name: h.key.clone(), why });
    }
    name("header", &h.val)
}

fn http_frontend(f: &RequestHttpFrontend) -> Result<(), StateError> {
    name("cluster_id", f.cluster_id.as_deref().unwrap_or_default())?;
    name("hostname", &f.hostname)?;
    name("path", &f.path.value)?;
    name("method", f.method.as_deref().unwrap_or_default())?;
    f.headers.iter().try_for_each(header)?;
    tags(&f.tags)
}

fn cluster_and_tags(cluster_id: &str, t: &BTreeMap<String, String>) -> Result<(), StateError> {
    name("cluster_id", cluster_id)?;
    tags(t)
}

/// Checks the names a cluster, frontend or backend verb carries; other verbs pass.
pub fn check(verb: &R) -> Result<(), StateError> {
    match verb {
        R::AddCluster(c) => name("cluster_id", &c.cluster_id),
        R::RemoveCluster(id) => name("cluster_id", id),
        R::AddHttpFrontend(f) if f.hsts.as_ref().is_some_and(|h| h.enabled == Some(true)) => {
            Err(StateError::HstsOnPlainHttp { hostname: f.hostname.clone() })
        }
        R::AddHttpFrontend(f) | R::AddHttpsFrontend(f) => http_frontend(f).and_then(|()| crate::rewrite::check(f)),
        R::RemoveHttpFrontend(f) | R::RemoveHttpsFrontend(f) => http_frontend(f),
        R::AddTcpFrontend(f) | R::RemoveTcpFrontend(f) => cluster_and_tags(&f.cluster_id, &f.tags),
        R::AddUdpFrontend(f) | R::RemoveUdpFrontend(f) => cluster_and_tags(&f.cluster_id, &f.tags),
        R::AddBackend(b) => {
            name("cluster_id", &b.cluster_id)?;
            name("backend_id", &b.backend_id)?;
            name("sticky_id", b.sticky_id.as_deref().unwrap_or_default())
        }
        R::RemoveBackend(b) => name("cluster_id", &b.cluster_id).and_then(|()| name("backend_id", &b.backend_id)),
        R::AddHttpListener(l) => id_header(l.sozu_id_header.as_deref()),
        R::UpdateHttpListener(u) => id_header(u.sozu_id_header.as_deref()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sozu_proto::{AddBackend, Cluster};

    #[test]
    fn control_and_formatting_characters_are_refused_by_field() {
        for bad in ["a\u{1}b", "evil\n[x]", "\u{1b}[31mred", "del\u{7f}", "c1\u{85}", "rtl\u{202E}txt", "bom\u{FEFF}"] {
            let e =
                check(&R::AddCluster(Box::new(Cluster { cluster_id: bad.into(), ..Default::default() }))).unwrap_err();
            assert_eq!(e, StateError::ControlCharacter { field: "cluster_id", value: bad.into() });
            // the message escapes what it quotes
            assert!(!Mode::Line.rejects_any(&e.to_string()), "{e}");
        }
        let backend = AddBackend { cluster_id: "api".into(), backend_id: "b\t1".into(), ..Default::default() };
        let e = check(&R::AddBackend(backend)).unwrap_err();
        assert!(matches!(e, StateError::ControlCharacter { field: "backend_id", .. }), "{e}");
        let mut front = RequestHttpFrontend { hostname: "example.com".into(), ..Default::default() };
        front.tags.insert("owner".into(), "x\ny".into());
        let e = check(&R::AddHttpFrontend(Box::new(front))).unwrap_err();
        assert!(matches!(e, StateError::ControlCharacter { field: "tag", .. }), "{e}");
    }

    #[test]
    fn ordinary_names_pass() {
        for good in ["api", "café-é", "日本", "a b", "*.example.com", "/v1/{id}", "x_y.z:1"] {
            assert!(
                check(&R::AddCluster(Box::new(Cluster { cluster_id: good.into(), ..Default::default() }))).is_ok(),
                "{good}"
            );
        }
        // answers are bodies, not names: their line breaks are theirs
        let c =
            Cluster { cluster_id: "api".into(), answer_503: Some("HTTP/1.1 503\r\n\r\n".into()), ..Default::default() };
        assert!(check(&R::AddCluster(Box::new(c))).is_ok());
    }

    #[test]
    fn header_edits_name_tokens_the_proxy_does_not_own_with_line_safe_values() {
        let front = |key: &str, val: &str, position: i32| {
            let h = Header { position, key: key.into(), val: val.into() };
            R::AddHttpFrontend(Box::new(RequestHttpFrontend { headers: vec![h], ..Default::default() }))
        };
        for (key, val) in [("X-Env", "prod"), ("x-strip", ""), ("Strict-Transport-Security", "max-age=3600")] {
            assert_eq!(check(&front(key, val, HeaderPosition::Both as i32)), Ok(()), "{key}");
        }
        for (key, why) in [
            ("", "not an HTTP token"),
            ("x y", "not an HTTP token"),
            ("x:y", "not an HTTP token"),
            ("Content-Length", "the proxy sets it"),
            ("transfer-encoding", "the proxy sets it"),
            ("Host", "the proxy sets it"),
            ("X-Forwarded-For", "the proxy sets it"),
        ] {
            let e = check(&front(key, "v", HeaderPosition::Request as i32)).unwrap_err();
            assert_eq!(e, StateError::InvalidHeader { name: key.into(), why }, "{key}");
        }
        for position in [0, 7] {
            let e = check(&front("x-a", "v", position)).unwrap_err();
            assert!(e.to_string().contains("its position is not REQUEST, RESPONSE or BOTH"), "{e}");
        }
        // a value that would end the header line, or hide in a terminal, is refused
        let e = check(&front("x-a", "v\r\nSet-Cookie: a=b", HeaderPosition::Response as i32)).unwrap_err();
        assert!(matches!(e, StateError::ControlCharacter { field: "header", .. }), "{e}");
        assert_eq!(
            check(&front("bad\r\nname", "v", HeaderPosition::Request as i32)).unwrap_err().to_string(),
            "header \"bad\\u{d}\\u{a}name\" cannot be edited: not an HTTP token"
        );
    }

    #[test]
    fn an_http_frontend_cannot_enable_hsts() {
        use sozu_proto::HstsConfig;
        let front = |enabled: Option<bool>| RequestHttpFrontend {
            hostname: "h.test".into(),
            hsts: Some(HstsConfig { enabled, max_age: Some(3600), ..Default::default() }),
            ..Default::default()
        };
        let e = check(&R::AddHttpFrontend(Box::new(front(Some(true))))).unwrap_err();
        assert_eq!(e, StateError::HstsOnPlainHttp { hostname: "h.test".into() });
        assert!(e.to_string().contains("only valid on HTTPS frontends"), "{e}");
        for off in [None, Some(false)] {
            assert_eq!(check(&R::AddHttpFrontend(Box::new(front(off)))), Ok(()), "{off:?}");
        }
        // an HTTPS frontend may (HTTPS listeners are refused elsewhere for now)
        assert_eq!(check(&R::AddHttpsFrontend(Box::new(front(Some(true))))), Ok(()));
    }

    #[test]
    fn a_request_id_header_is_a_token_the_proxy_does_not_own() {
        use sozu_proto::{HttpListenerConfig, UpdateHttpListenerConfig};
        let add = |name: &str| {
            let l = HttpListenerConfig { sozu_id_header: Some(name.into()), ..Default::default() };
            check(&R::AddHttpListener(Box::new(l)))
        };
        let update = |name: &str| {
            let u = UpdateHttpListenerConfig { sozu_id_header: Some(name.into()), ..Default::default() };
            check(&R::UpdateHttpListener(Box::new(u)))
        };
        for good in ["X-Request-Id", "sozu-id", "Sozu-Id"] {
            assert_eq!((add(good), update(good)), (Ok(()), Ok(())), "{good}");
        }
        for (bad, why) in
            [("Content-Length", "the proxy sets it"), ("x y", "not an HTTP token"), ("", "not an HTTP token")]
        {
            let e = StateError::InvalidHeader { name: bad.into(), why };
            assert_eq!((add(bad), update(bad)), (Err(e.clone()), Err(e)), "{bad}");
        }
        assert_eq!(check(&R::AddHttpListener(Box::default())), Ok(()));
    }
}
