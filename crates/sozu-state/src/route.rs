//! HTTP routing: which frontend, and so which cluster, a request goes to.

use std::net::SocketAddr;

use sozu_proto::{PathRuleKind, RequestHttpFrontend};

use crate::state::ConfigState;

/// Where an HTTP request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// To this cluster.
    Cluster(&'a str),
    /// A frontend matches but has no cluster: the request is refused.
    Deny,
}

/// How well a frontend matches: compared field by field, higher wins.
type Score = (u8, usize, u8, usize, u8);

/// `host` (lower case, no port) against a frontend hostname: exact, or `*.suffix`
/// matching one or more labels before `suffix`. The score ranks exact first, then
/// the longest wildcard.
fn host_score(rule: &str, host: &str) -> Option<(u8, usize)> {
    if rule.eq_ignore_ascii_case(host) {
        return Some((2, rule.len()));
    }
    let suffix = rule.strip_prefix("*.")?;
    let head = host.len().checked_sub(suffix.len() + 1)?;
    (head > 0 && host.as_bytes()[head] == b'.' && host[head + 1..].eq_ignore_ascii_case(suffix))
        .then_some((1, suffix.len()))
}

impl ConfigState {
    /// The HTTP listener at `address`.
    pub fn http_listener(&self, address: SocketAddr) -> Option<&sozu_proto::HttpListenerConfig> {
        self.http_listeners.get(&address)
    }

    /// Whether an HTTP listener at `address` exists and is active.
    pub fn http_listener_active(&self, address: SocketAddr) -> bool {
        self.http_listeners.get(&address).is_some_and(|l| l.active)
    }

    /// The route of a request received on the HTTP listener `address`, by Sōzu's
    /// order: the hostname (exact before wildcard, then the longest wildcard), then the
    /// path (equals, then regex, then prefix; longer rules first), then a rule with the
    /// request's method before one for any method. `regex(pattern, path)` tests regex
    /// path rules (the caller compiles and caches them). `None`: no frontend matches.
    pub fn http_route(
        &self,
        address: SocketAddr,
        host: &str,
        path: &str,
        method: &str,
        mut regex: impl FnMut(&str, &str) -> bool,
    ) -> Option<Route<'_>> {
        let prefix = format!("{address};");
        let mut best: Option<(Score, &RequestHttpFrontend)> = None;
        for (_, f) in self.http_frontends.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
            let Some((host_kind, host_len)) = host_score(&f.hostname, host) else { continue };
            let rule = &f.path.value;
            let path_kind = match PathRuleKind::try_from(f.path.kind) {
                Ok(PathRuleKind::Equals) if path == rule => 3,
                Ok(PathRuleKind::Regex) if regex(rule, path) => 2,
                Ok(PathRuleKind::Prefix) if path.starts_with(rule.as_str()) => 1,
                _ => continue,
            };
            let method_score = match &f.method {
                Some(m) if m.eq_ignore_ascii_case(method) => 1,
                Some(_) => continue,
                None => 0,
            };
            let score = (host_kind, host_len, path_kind, rule.len(), method_score);
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, f));
            }
        }
        best.map(|(_, f)| match f.cluster_id.as_deref() {
            Some(id) => Route::Cluster(id),
            None => Route::Deny,
        })
    }
}

#[cfg(test)]
mod tests {
    use sozu_proto::request::RequestType as R;
    use sozu_proto::{Cluster, HttpListenerConfig, PathRule};

    use super::*;

    fn front(host: &str, kind: PathRuleKind, path: &str, method: Option<&str>, cluster: Option<&str>) -> R {
        R::AddHttpFrontend(Box::new(RequestHttpFrontend {
            cluster_id: cluster.map(str::to_string),
            address: SocketAddr::from(([127, 0, 0, 1], 8080)).into(),
            hostname: host.into(),
            path: PathRule { kind: kind as i32, value: path.into() },
            method: method.map(str::to_string),
            ..Default::default()
        }))
    }

    fn state() -> ConfigState {
        let mut s = ConfigState::new();
        let listener = HttpListenerConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 8080)).into(),
            active: true,
            ..Default::default()
        };
        s.dispatch(&R::AddHttpListener(Box::new(listener)).into()).unwrap();
        for c in ["exact", "wild", "deep", "api", "apiv2", "equals", "post", "regex"] {
            s.dispatch(&R::AddCluster(Box::new(Cluster { cluster_id: c.into(), ..Default::default() })).into())
                .unwrap();
        }
        use PathRuleKind::*;
        for r in [
            front("www.example.com", Prefix, "/", None, Some("exact")),
            front("*.example.com", Prefix, "/", None, Some("wild")),
            front("*.deep.example.com", Prefix, "/", None, Some("deep")),
            front("api.test", Prefix, "/", None, Some("api")),
            front("api.test", Prefix, "/v2", None, Some("apiv2")),
            front("api.test", Equals, "/v2/exact", None, Some("equals")),
            front("api.test", Prefix, "/v2", Some("POST"), Some("post")),
            front("api.test", Regex, "^/v[0-9]+/items$", None, Some("regex")),
            front("blocked.test", Prefix, "/", None, None),
        ] {
            s.dispatch(&r.into()).unwrap();
        }
        s
    }

    #[test]
    fn sozu_rule_order() {
        let s = state();
        let addr = SocketAddr::from(([127, 0, 0, 1], 8080));
        let regex = |pattern: &str, path: &str| pattern == "^/v[0-9]+/items$" && path == "/v3/items";
        let route = |host: &str, path: &str, method: &str| s.http_route(addr, host, path, method, regex);
        assert_eq!(route("www.example.com", "/x", "GET"), Some(Route::Cluster("exact")));
        assert_eq!(route("a.example.com", "/x", "GET"), Some(Route::Cluster("wild")));
        assert_eq!(route("a.b.example.com", "/x", "GET"), Some(Route::Cluster("wild")));
        assert_eq!(route("x.deep.example.com", "/", "GET"), Some(Route::Cluster("deep")));
        assert_eq!(route("example.com", "/", "GET"), None, "a wildcard needs a label");
        assert_eq!(route("api.test", "/", "GET"), Some(Route::Cluster("api")));
        assert_eq!(route("api.test", "/v2/x", "GET"), Some(Route::Cluster("apiv2")), "longest prefix");
        assert_eq!(route("api.test", "/v2/x", "POST"), Some(Route::Cluster("post")), "method rule first");
        assert_eq!(route("api.test", "/v2/exact", "POST"), Some(Route::Cluster("equals")), "equals first");
        assert_eq!(route("api.test", "/v3/items", "GET"), Some(Route::Cluster("regex")), "regex before prefix");
        assert_eq!(route("blocked.test", "/", "GET"), Some(Route::Deny));
        assert_eq!(route("nobody.test", "/", "GET"), None);
        assert_eq!(s.http_route(SocketAddr::from(([127, 0, 0, 1], 8081)), "api.test", "/", "GET", regex), None);
        assert!(s.http_listener_active(addr));
    }
}
