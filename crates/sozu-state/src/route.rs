//! HTTP routing: which frontend, and so which cluster, a request goes to.

use std::net::SocketAddr;
use std::ops::Bound;

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
        regex: impl FnMut(&str, &str) -> bool,
    ) -> Option<Route<'_>> {
        self.http_frontend_for(address, host, path, method, regex).map(|f| match f.cluster_id.as_deref() {
            Some(id) => Route::Cluster(id),
            None => Route::Deny,
        })
    }

    /// The frontend that routes a request, by the order [`Self::http_route`] gives:
    /// for what the frontend asks beyond its cluster (a redirection, authentication).
    pub fn http_frontend_for(
        &self,
        address: SocketAddr,
        host: &str,
        path: &str,
        method: &str,
        mut regex: impl FnMut(&str, &str) -> bool,
    ) -> Option<&RequestHttpFrontend> {
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        // Frontends are keyed `address;hostname;…` (hostname in lower case), so only the
        // rules that can match are read: the exact name, then `*.suffix` for each suffix
        // of it. A listener with 10k frontends costs a few lookups, not 10k comparisons.
        let mut prefix = String::with_capacity(64 + host.len());
        crate::state::push_address(&mut prefix, &address.into());
        prefix.push(';');
        let base = prefix.len();
        let wildcards = host.match_indices('.').filter(|(i, _)| *i > 0).map(|(i, _)| &host[i + 1..]);
        let mut best: Option<(Score, &RequestHttpFrontend)> = None;
        for (wildcard, name) in std::iter::once((false, host)).chain(wildcards.map(|s| (true, s))) {
            prefix.truncate(base);
            if wildcard {
                prefix.push_str("*.");
            }
            prefix.push_str(name);
            prefix.push(';');
            let from = (Bound::Included(prefix.as_str()), Bound::Unbounded);
            let rules = self.http_frontends.range::<str, _>(from).take_while(|(k, _)| k.starts_with(prefix.as_str()));
            for (_, f) in rules {
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
        }
        best.map(|(_, f)| f)
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

    /// Every frontend of the listener scored: what `http_route` must agree with.
    fn scan<'a>(s: &'a ConfigState, addr: SocketAddr, host: &str, path: &str) -> Option<Route<'a>> {
        let host = host.to_ascii_lowercase();
        let mut best: Option<(Score, &RequestHttpFrontend)> = None;
        for f in s.http_frontends.values().filter(|f| SocketAddr::try_from(&f.address) == Ok(addr)) {
            let Some((kind, len)) = host_score(&f.hostname, &host) else { continue };
            if !path.starts_with(f.path.value.as_str()) {
                continue;
            }
            let score = (kind, len, 1, f.path.value.len(), 0);
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, f));
            }
        }
        best.map(|(_, f)| f.cluster_id.as_deref().map_or(Route::Deny, Route::Cluster))
    }

    proptest::proptest! {
        #[test]
        fn looking_up_names_routes_as_scanning_every_frontend(
            rules in proptest::collection::vec(("(\\*\\.)?[aAb]{1,2}(\\.[ab]{1,2}){0,2}", "/[ab]?", 0..3usize), 0..40),
            hosts in proptest::collection::vec(("[aAb]{0,2}(\\.[aAb]{1,2}){0,3}\\.?", "/[ab]?"), 1..20),
        ) {
            let mut s = ConfigState::new();
            let listener = HttpListenerConfig {
                address: SocketAddr::from(([127, 0, 0, 1], 8080)).into(),
                ..Default::default()
            };
            s.dispatch(&R::AddHttpListener(Box::new(listener)).into()).unwrap();
            for c in ["c0", "c1", "c2"] {
                s.dispatch(&R::AddCluster(Box::new(Cluster { cluster_id: c.into(), ..Default::default() })).into())
                    .unwrap();
            }
            for (host, path, cluster) in &rules {
                let cluster = ["c0", "c1", "c2"][*cluster];
                // a rule already there (the same name in another case) is refused
                let _ = s.dispatch(&front(host, PathRuleKind::Prefix, path, None, Some(cluster)).into());
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], 8080));
            for (host, path) in &hosts {
                proptest::prop_assert_eq!(
                    s.http_route(addr, host, path, "GET", |_, _| false),
                    scan(&s, addr, host, path),
                    "host {:?} path {:?}", host, path
                );
            }
        }
    }

    #[test]
    fn names_match_in_any_case_and_one_name_in_two_cases_is_one_frontend() {
        let mut s = state();
        let addr = SocketAddr::from(([127, 0, 0, 1], 8080));
        s.dispatch(&front("MiXed.Example.ORG", PathRuleKind::Prefix, "/", None, Some("api")).into()).unwrap();
        assert_eq!(s.http_route(addr, "mixed.example.org", "/", "GET", |_, _| false), Some(Route::Cluster("api")));
        assert_eq!(s.http_route(addr, "MIXED.example.org", "/", "GET", |_, _| false), Some(Route::Cluster("api")));
        let again = front("mixed.example.org", PathRuleKind::Prefix, "/", None, Some("exact"));
        assert!(s.dispatch(&again.into()).is_err(), "the same name in another case");
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
