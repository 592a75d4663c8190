//! Names an operator gives (cluster and backend ids, hostnames, paths, methods, sticky
//! ids, tags) must not carry characters that change how a line reads: they end up in
//! logs, audit records, CLI tables and terminals. A verb naming one is refused whole.
//! Which characters: those the audit's line-safe sanitizer replaces
//! ([`audit::Mode::Line`]: C0, DEL, C1, line and paragraph separators, BOM, bidi
//! controls), so a name that is accepted is written to an audit record unchanged.

use std::collections::BTreeMap;

use audit::Mode;
use sozu_proto::RequestHttpFrontend;
use sozu_proto::request::RequestType as R;

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

fn http_frontend(f: &RequestHttpFrontend) -> Result<(), StateError> {
    name("cluster_id", f.cluster_id.as_deref().unwrap_or_default())?;
    name("hostname", &f.hostname)?;
    name("path", &f.path.value)?;
    name("method", f.method.as_deref().unwrap_or_default())?;
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
        R::AddHttpFrontend(f) | R::AddHttpsFrontend(f) | R::RemoveHttpFrontend(f) | R::RemoveHttpsFrontend(f) => {
            http_frontend(f)
        }
        R::AddTcpFrontend(f) | R::RemoveTcpFrontend(f) => cluster_and_tags(&f.cluster_id, &f.tags),
        R::AddUdpFrontend(f) | R::RemoveUdpFrontend(f) => cluster_and_tags(&f.cluster_id, &f.tags),
        R::AddBackend(b) => {
            name("cluster_id", &b.cluster_id)?;
            name("backend_id", &b.backend_id)?;
            name("sticky_id", b.sticky_id.as_deref().unwrap_or_default())
        }
        R::RemoveBackend(b) => name("cluster_id", &b.cluster_id).and_then(|()| name("backend_id", &b.backend_id)),
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
}
