//! The state and how each verb changes it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sozu_proto::request::RequestType;
use sozu_proto::{
    AddCertificate, CertificateAndKey, Cluster, CustomHttpAnswers, HttpListenerConfig, HttpsListenerConfig,
    ListenerType, PathRuleKind, Request, RequestHttpFrontend, RequestTcpFrontend, RequestUdpFrontend, SocketAddress,
    TcpListenerConfig, UdpListenerConfig,
};

use crate::StateError;
use crate::backends::Backends;
use crate::cert::fingerprint;

/// What [`ConfigState::dispatch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed (or was re-set to the same value).
    Changed,
    /// The verb is accepted but is not part of the saved state (queries, logging,
    /// metrics, status, stop, runtime limits).
    Noop,
}

/// A certificate as stored: the request's certificate and its expiry override.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredCertificate {
    pub(crate) certificate: CertificateAndKey,
    pub(crate) expired_at: Option<i64>,
}

/// Listeners, clusters, frontends, backends and certificates. Every map is ordered,
/// so everything derived from the state is deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigState {
    pub(crate) http_listeners: BTreeMap<SocketAddr, HttpListenerConfig>,
    pub(crate) https_listeners: BTreeMap<SocketAddr, HttpsListenerConfig>,
    pub(crate) tcp_listeners: BTreeMap<SocketAddr, TcpListenerConfig>,
    pub(crate) udp_listeners: BTreeMap<SocketAddr, UdpListenerConfig>,
    pub(crate) clusters: BTreeMap<String, Box<Cluster>>,
    /// key: [`frontend_key`]
    pub(crate) http_frontends: BTreeMap<String, Box<RequestHttpFrontend>>,
    pub(crate) https_frontends: BTreeMap<String, Box<RequestHttpFrontend>>,
    pub(crate) tcp_frontends: BTreeMap<(String, SocketAddr), RequestTcpFrontend>,
    pub(crate) udp_frontends: BTreeMap<(String, SocketAddr), RequestUdpFrontend>,
    /// cluster → its backends
    pub(crate) backends: BTreeMap<String, Backends>,
    /// (listener address, fingerprint) → certificate
    pub(crate) certificates: BTreeMap<(SocketAddr, String), StoredCertificate>,
}

/// Sōzu's key of an HTTP(S) frontend: `<addr>;<hostname>;<P|R|=><path>[;<method>]`.
pub fn frontend_key(f: &RequestHttpFrontend) -> String {
    let kind = match PathRuleKind::try_from(f.path.kind) {
        Ok(PathRuleKind::Regex) => 'R',
        Ok(PathRuleKind::Equals) => '=',
        _ => 'P',
    };
    let method = f.method.as_deref().map_or(0, |m| m.len() + 1);
    let mut key = String::with_capacity(48 + f.hostname.len() + f.path.value.len() + method);
    push_address(&mut key, &f.address);
    key.push(';');
    // host names compare without case: the key is what routing looks up
    key.extend(f.hostname.chars().map(|c| c.to_ascii_lowercase()));
    key.push(';');
    key.push(kind);
    key.push_str(&f.path.value);
    if let Some(method) = &f.method {
        key.push(';');
        key.push_str(method);
    }
    key
}

/// `SocketAddress`'s `Display`, written without the formatting machinery for IPv4 (a
/// key is made for every frontend applied: a tenth of a state load's time went there).
pub(crate) fn push_address(key: &mut String, a: &SocketAddress) {
    match SocketAddr::try_from(a) {
        Ok(SocketAddr::V4(v4)) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    key.push('.');
                }
                push_decimal(key, octet.into());
            }
            key.push(':');
            push_decimal(key, v4.port().into());
        }
        _ => {
            use std::fmt::Write;
            let _ = write!(key, "{a}");
        }
    }
}

fn push_decimal(key: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    key.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// Applies the `Some` fields of a listener update in place: `copy` fields by value,
/// `clone` fields by clone; `public_address` always.
macro_rules! patch {
    ($listener:expr, $update:expr; copy: $($c:ident),*; clone: $($k:ident),*) => {{
        let (listener, update) = ($listener, $update);
        if let Some(p) = update.public_address {
            listener.public_address = Some(p);
        }
        $(if let Some(v) = update.$c {
            listener.$c = v;
        })*
        $(if let Some(v) = &update.$k {
            listener.$k.clone_from(v);
        })*
    }};
}

/// Replaces, status by status, the custom answers an update sets: into the listener's
/// `http_answers`, and out of its `answers` map (where the same status would win in a
/// worker), so that the update takes effect whichever way the answer was first set.
fn patch_answers(
    fields: &mut Option<CustomHttpAnswers>,
    map: &mut BTreeMap<String, String>,
    update: &CustomHttpAnswers,
) {
    let current = fields.get_or_insert_with(Default::default);
    let pairs = [
        (301, &update.answer_301, &mut current.answer_301),
        (400, &update.answer_400, &mut current.answer_400),
        (401, &update.answer_401, &mut current.answer_401),
        (404, &update.answer_404, &mut current.answer_404),
        (408, &update.answer_408, &mut current.answer_408),
        (413, &update.answer_413, &mut current.answer_413),
        (421, &update.answer_421, &mut current.answer_421),
        (429, &update.answer_429, &mut current.answer_429),
        (502, &update.answer_502, &mut current.answer_502),
        (503, &update.answer_503, &mut current.answer_503),
        (504, &update.answer_504, &mut current.answer_504),
        (507, &update.answer_507, &mut current.answer_507),
    ];
    for (status, new, slot) in pairs {
        if let Some(body) = new {
            *slot = Some(body.clone());
            map.retain(|k, _| k.trim().parse::<u16>().ok() != Some(status));
        }
    }
}

/// The listener at `address` in `map`, or UnknownListener.
fn listener_mut<'a, L>(map: &'a mut BTreeMap<SocketAddr, L>, address: &SocketAddress) -> Result<&'a mut L, StateError> {
    let a = addr(address)?;
    map.get_mut(&a).ok_or(StateError::UnknownListener(a))
}

fn addr(a: &SocketAddress) -> Result<SocketAddr, StateError> {
    SocketAddr::try_from(a).map_err(|e| StateError::InvalidAddress(e.to_string()))
}

impl ConfigState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of clusters.
    pub fn cluster_count(&self) -> usize {
        self.clusters.len()
    }

    /// Number of backends, all clusters together.
    pub fn backend_count(&self) -> usize {
        self.backends.values().map(Backends::len).sum()
    }

    /// Number of listeners of every kind.
    pub fn listener_count(&self) -> usize {
        self.http_listeners.len() + self.https_listeners.len() + self.tcp_listeners.len() + self.udp_listeners.len()
    }

    /// A cluster's configuration.
    pub fn cluster(&self, id: &str) -> Option<&Cluster> {
        self.clusters.get(id).map(|c| &**c)
    }

    /// Every cluster id, sorted.
    pub fn cluster_ids(&self) -> impl Iterator<Item = &str> {
        self.clusters.keys().map(String::as_str)
    }

    /// The addresses of the HTTP and TCP listeners (the kinds whose sockets a master
    /// binds), sorted within each kind.
    pub fn plain_listener_addresses(&self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        (self.http_listeners.keys().copied().collect(), self.tcp_listeners.keys().copied().collect())
    }

    /// Whether `address` has a listener of any kind.
    pub fn has_listener(&self, address: SocketAddr) -> bool {
        self.http_listeners.contains_key(&address)
            || self.https_listeners.contains_key(&address)
            || self.tcp_listeners.contains_key(&address)
            || self.udp_listeners.contains_key(&address)
    }

    /// Whether `request` is an addition of exactly what the state already holds (an
    /// identical listener, frontend or certificate): replaying it would change nothing.
    pub fn already_applied(&self, request: &Request) -> bool {
        use RequestType as R;
        let Some(verb) = &request.request_type else { return false };
        let Ok(a) = (match verb {
            R::AddHttpListener(l) => addr(&l.address),
            R::AddHttpsListener(l) => addr(&l.address),
            R::AddTcpListener(l) => addr(&l.address),
            R::AddUdpListener(l) => addr(&l.address),
            R::AddTcpFrontend(f) => addr(&f.address),
            R::AddUdpFrontend(f) => addr(&f.address),
            _ => Ok(SocketAddr::from(([0, 0, 0, 0], 0))),
        }) else {
            return false;
        };
        match verb {
            R::AddHttpListener(l) => self.http_listeners.get(&a) == Some(l),
            R::AddHttpsListener(l) => self.https_listeners.get(&a) == Some(l),
            R::AddTcpListener(l) => self.tcp_listeners.get(&a) == Some(l),
            R::AddUdpListener(l) => self.udp_listeners.get(&a) == Some(l),
            R::AddHttpFrontend(f) => self.http_frontends.get(&frontend_key(f)).map(|x| &**x) == Some(f),
            R::AddHttpsFrontend(f) => self.https_frontends.get(&frontend_key(f)).map(|x| &**x) == Some(f),
            R::AddTcpFrontend(f) => self.tcp_frontends.get(&(f.cluster_id.clone(), a)) == Some(f),
            R::AddUdpFrontend(f) => self.udp_frontends.get(&(f.cluster_id.clone(), a)) == Some(f),
            R::AddCertificate(c) => fingerprint(&c.certificate.certificate).is_ok_and(|fp| {
                let stored = StoredCertificate { certificate: c.certificate.clone(), expired_at: c.expired_at };
                self.certificates.get(&(SocketAddr::try_from(&c.address).unwrap_or(a), fp)) == Some(&stored)
            }),
            _ => false,
        }
    }

    /// [`dispatch`](Self::dispatch) of a request the caller gives away: the most
    /// frequent verbs (clusters, HTTP frontends, backends) move their content into the
    /// state instead of copying it (loading a state of 10k clusters at boot).
    pub fn dispatch_owned(&mut self, request: Request) -> Result<Applied, StateError> {
        use RequestType as R;
        if let Some(verb) = &request.request_type {
            crate::ids::check(verb)?;
        }
        match request.request_type {
            Some(R::AddCluster(c)) => {
                if c.cluster_id.is_empty() {
                    return Err(StateError::EmptyClusterId);
                }
                self.clusters.insert(c.cluster_id.clone(), c);
                Ok(Applied::Changed)
            }
            Some(R::AddHttpFrontend(f)) => {
                addr(&f.address)?;
                if let Some(id) = &f.cluster_id {
                    self.check_cluster(id)?;
                }
                match self.http_frontends.entry(frontend_key(&f)) {
                    std::collections::btree_map::Entry::Occupied(e) => Err(StateError::FrontendExists(e.key().clone())),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(f);
                        Ok(Applied::Changed)
                    }
                }
            }
            Some(R::AddBackend(b)) => {
                let a = addr(&b.address)?;
                // a cluster with backends exists (its backends go when it goes)
                match self.backends.get_mut(&b.cluster_id) {
                    Some(list) => list.upsert(b, a),
                    None => {
                        self.check_cluster(&b.cluster_id)?;
                        let id = b.cluster_id.clone();
                        self.backends.entry(id).or_default().upsert(b, a);
                    }
                }
                Ok(Applied::Changed)
            }
            Some(other) => self.apply(&other),
            None => Err(StateError::EmptyRequest),
        }
    }

    /// Applies one verb. On error nothing changed.
    pub fn dispatch(&mut self, request: &Request) -> Result<Applied, StateError> {
        let Some(verb) = &request.request_type else { return Err(StateError::EmptyRequest) };
        crate::ids::check(verb)?;
        self.apply(verb)
    }

    /// [`dispatch`](Self::dispatch) of a verb whose names were checked.
    fn apply(&mut self, verb: &RequestType) -> Result<Applied, StateError> {
        use RequestType as R;
        match verb {
            R::AddHttpListener(l) => self.add_listener(addr(&l.address)?, |s, a| {
                s.http_listeners.insert(a, (**l).clone());
            }),
            R::AddHttpsListener(l) => self.add_listener(addr(&l.address)?, |s, a| {
                s.https_listeners.insert(a, (**l).clone());
            }),
            R::AddTcpListener(l) => self.add_listener(addr(&l.address)?, |s, a| {
                s.tcp_listeners.insert(a, *l);
            }),
            R::AddUdpListener(l) => self.add_listener(addr(&l.address)?, |s, a| {
                s.udp_listeners.insert(a, *l);
            }),
            R::RemoveListener(r) => {
                let a = addr(&r.address)?;
                let removed = match ListenerType::try_from(r.proxy) {
                    Ok(ListenerType::Http) => self.http_listeners.remove(&a).is_some(),
                    Ok(ListenerType::Https) => self.https_listeners.remove(&a).is_some(),
                    Ok(ListenerType::Tcp) => self.tcp_listeners.remove(&a).is_some(),
                    Ok(ListenerType::Udp) => self.udp_listeners.remove(&a).is_some(),
                    Err(_) => false,
                };
                if removed { Ok(Applied::Changed) } else { Err(StateError::UnknownListener(a)) }
            }
            R::ActivateListener(l) => self.set_active(addr(&l.address)?, l.proxy, true),
            R::DeactivateListener(l) => self.set_active(addr(&l.address)?, l.proxy, false),
            R::UpdateHttpListener(u) => {
                let listener = listener_mut(&mut self.http_listeners, &u.address)?;
                if let Some(answers) = &u.http_answers {
                    patch_answers(&mut listener.http_answers, &mut listener.answers, answers);
                }
                if let Some(name) = &u.sozu_id_header {
                    listener.sozu_id_header = Some(name.clone());
                }
                patch!(listener, u;
                    copy: expect_proxy, front_timeout, back_timeout, connect_timeout, request_timeout;
                    clone: sticky_name);
                Ok(Applied::Changed)
            }
            R::UpdateHttpsListener(u) => {
                patch!(listener_mut(&mut self.https_listeners, &u.address)?, u;
                    copy: expect_proxy, front_timeout, back_timeout, connect_timeout, request_timeout;
                    clone: sticky_name);
                Ok(Applied::Changed)
            }
            R::UpdateTcpListener(u) => {
                patch!(listener_mut(&mut self.tcp_listeners, &u.address)?, u;
                    copy: expect_proxy, front_timeout, back_timeout, connect_timeout;
                    clone: );
                Ok(Applied::Changed)
            }
            R::UpdateUdpListener(u) => {
                patch!(listener_mut(&mut self.udp_listeners, &u.address)?, u;
                    copy: front_timeout, back_timeout, max_rx_datagram_size, max_flows;
                    clone: );
                Ok(Applied::Changed)
            }
            R::AddCluster(c) => {
                if c.cluster_id.is_empty() {
                    return Err(StateError::EmptyClusterId);
                }
                self.clusters.insert(c.cluster_id.clone(), c.clone());
                Ok(Applied::Changed)
            }
            R::RemoveCluster(id) => self.remove_cluster(id),
            R::AddHttpFrontend(f) => self.add_http_frontend(f, false),
            R::AddHttpsFrontend(f) => self.add_http_frontend(f, true),
            R::RemoveHttpFrontend(f) => Self::remove_frontend(&mut self.http_frontends, f),
            R::RemoveHttpsFrontend(f) => Self::remove_frontend(&mut self.https_frontends, f),
            R::AddTcpFrontend(f) => {
                let a = addr(&f.address)?;
                self.check_cluster(&f.cluster_id)?;
                if self.tcp_frontends.keys().any(|(_, other)| *other == a) {
                    return Err(StateError::FrontendExists(format!("tcp {a}")));
                }
                self.tcp_frontends.insert((f.cluster_id.clone(), a), f.clone());
                Ok(Applied::Changed)
            }
            R::RemoveTcpFrontend(f) => {
                let key = (f.cluster_id.clone(), addr(&f.address)?);
                match self.tcp_frontends.remove(&key) {
                    Some(_) => Ok(Applied::Changed),
                    None => Err(StateError::UnknownFrontend(format!("tcp {} {}", key.0, key.1))),
                }
            }
            R::AddUdpFrontend(f) => {
                let a = addr(&f.address)?;
                self.check_cluster(&f.cluster_id)?;
                if self.udp_frontends.keys().any(|(_, other)| *other == a) {
                    return Err(StateError::FrontendExists(format!("udp {a}")));
                }
                self.udp_frontends.insert((f.cluster_id.clone(), a), f.clone());
                Ok(Applied::Changed)
            }
            R::RemoveUdpFrontend(f) => {
                let key = (f.cluster_id.clone(), addr(&f.address)?);
                match self.udp_frontends.remove(&key) {
                    Some(_) => Ok(Applied::Changed),
                    None => Err(StateError::UnknownFrontend(format!("udp {} {}", key.0, key.1))),
                }
            }
            R::AddBackend(b) => {
                let a = addr(&b.address)?;
                self.check_cluster(&b.cluster_id)?;
                self.backends.entry(b.cluster_id.clone()).or_default().upsert(b.clone(), a);
                Ok(Applied::Changed)
            }
            R::RemoveBackend(b) => {
                let a = addr(&b.address)?;
                let unknown = || StateError::UnknownBackend {
                    cluster_id: b.cluster_id.clone(),
                    backend_id: b.backend_id.clone(),
                    address: a.to_string(),
                };
                let list = self.backends.get_mut(&b.cluster_id).ok_or_else(unknown)?;
                list.remove(&b.backend_id, a).ok_or_else(unknown)?;
                if list.is_empty() {
                    self.backends.remove(&b.cluster_id);
                }
                Ok(Applied::Changed)
            }
            R::AddCertificate(c) => self.add_certificate(c),
            R::RemoveCertificate(r) => {
                let key = (addr(&r.address)?, r.fingerprint.to_ascii_lowercase());
                match self.certificates.remove(&key) {
                    Some(_) => Ok(Applied::Changed),
                    None => Err(StateError::UnknownCertificate { address: key.0, fingerprint: key.1 }),
                }
            }
            R::ReplaceCertificate(r) => {
                let a = addr(&r.address)?;
                let old = (a, r.old_fingerprint.to_ascii_lowercase());
                let new_fp = fingerprint(&r.new_certificate.certificate)?;
                if !self.certificates.contains_key(&old) {
                    return Err(StateError::UnknownCertificate { address: a, fingerprint: old.1 });
                }
                if new_fp != old.1 && self.certificates.contains_key(&(a, new_fp.clone())) {
                    return Err(StateError::CertificateExists { address: a, fingerprint: new_fp });
                }
                self.certificates.remove(&old);
                let stored = StoredCertificate { certificate: r.new_certificate.clone(), expired_at: r.new_expired_at };
                self.certificates.insert((a, new_fp), stored);
                Ok(Applied::Changed)
            }
            R::SetHealthCheck(h) => {
                let cluster = self
                    .clusters
                    .get_mut(&h.cluster_id)
                    .ok_or_else(|| StateError::UnknownCluster(h.cluster_id.clone()))?;
                cluster.health_check = Some(h.config.clone());
                Ok(Applied::Changed)
            }
            R::RemoveHealthCheck(id) => {
                let cluster = self.clusters.get_mut(id).ok_or_else(|| StateError::UnknownCluster(id.clone()))?;
                cluster.health_check = None;
                Ok(Applied::Changed)
            }
            R::Logging(_)
            | R::CountRequests(_)
            | R::Status(_)
            | R::SoftStop(_)
            | R::HardStop(_)
            | R::QueryCertificatesFromWorkers(_)
            | R::QueryClusterById(_)
            | R::QueryClustersByDomain(_)
            | R::QueryMetrics(_)
            | R::QueryClustersHashes(_)
            | R::ConfigureMetrics(_)
            | R::SetMetricDetail(_)
            | R::ReturnListenSockets(_)
            | R::SetMaxConnectionsPerIp(_)
            | R::QueryMaxConnectionsPerIp(_) => Ok(Applied::Noop),
            other => Err(StateError::NotAStateVerb(sozu_proto::verb_name(other))),
        }
    }

    fn add_listener(
        &mut self,
        a: SocketAddr,
        insert: impl FnOnce(&mut Self, SocketAddr),
    ) -> Result<Applied, StateError> {
        if self.has_listener(a) {
            return Err(StateError::ListenerExists(a));
        }
        insert(self, a);
        Ok(Applied::Changed)
    }

    fn set_active(&mut self, a: SocketAddr, proxy: i32, active: bool) -> Result<Applied, StateError> {
        let flag = match ListenerType::try_from(proxy) {
            Ok(ListenerType::Http) => self.http_listeners.get_mut(&a).map(|l| &mut l.active),
            Ok(ListenerType::Https) => self.https_listeners.get_mut(&a).map(|l| &mut l.active),
            Ok(ListenerType::Tcp) => self.tcp_listeners.get_mut(&a).map(|l| &mut l.active),
            Ok(ListenerType::Udp) => self.udp_listeners.get_mut(&a).map(|l| &mut l.active),
            Err(_) => None,
        };
        *flag.ok_or(StateError::UnknownListener(a))? = active;
        Ok(Applied::Changed)
    }

    fn check_cluster(&self, id: &str) -> Result<(), StateError> {
        if self.clusters.contains_key(id) { Ok(()) } else { Err(StateError::UnknownCluster(id.to_string())) }
    }

    fn remove_cluster(&mut self, id: &str) -> Result<Applied, StateError> {
        self.clusters.remove(id).ok_or_else(|| StateError::UnknownCluster(id.to_string()))?;
        // no ghost state: the cluster's frontends and backends go with it
        let mine = |f: &RequestHttpFrontend| f.cluster_id.as_deref() == Some(id);
        self.http_frontends.retain(|_, f| !mine(f));
        self.https_frontends.retain(|_, f| !mine(f));
        self.tcp_frontends.retain(|(c, _), _| c != id);
        self.udp_frontends.retain(|(c, _), _| c != id);
        self.backends.remove(id);
        Ok(Applied::Changed)
    }

    fn add_http_frontend(&mut self, f: &RequestHttpFrontend, https: bool) -> Result<Applied, StateError> {
        addr(&f.address)?;
        if let Some(id) = &f.cluster_id {
            self.check_cluster(id)?;
        }
        let key = frontend_key(f);
        let map = if https { &mut self.https_frontends } else { &mut self.http_frontends };
        if map.contains_key(&key) {
            return Err(StateError::FrontendExists(key));
        }
        map.insert(key, Box::new(f.clone()));
        Ok(Applied::Changed)
    }

    fn remove_frontend(
        map: &mut BTreeMap<String, Box<RequestHttpFrontend>>,
        f: &RequestHttpFrontend,
    ) -> Result<Applied, StateError> {
        let key = frontend_key(f);
        match map.remove(&key) {
            Some(_) => Ok(Applied::Changed),
            None => Err(StateError::UnknownFrontend(key)),
        }
    }

    fn add_certificate(&mut self, c: &AddCertificate) -> Result<Applied, StateError> {
        let a = addr(&c.address)?;
        let fp = fingerprint(&c.certificate.certificate)?;
        if self.certificates.contains_key(&(a, fp.clone())) {
            return Err(StateError::CertificateExists { address: a, fingerprint: fp });
        }
        let stored = StoredCertificate { certificate: c.certificate.clone(), expired_at: c.expired_at };
        self.certificates.insert((a, fp), stored);
        Ok(Applied::Changed)
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn frontend_keys_write_addresses_as_display_does() {
        let addresses: [SocketAddress; 5] = [
            SocketAddr::from(([127, 0, 0, 1], 8080)).into(),
            SocketAddr::from(([0, 0, 0, 0], 0)).into(),
            SocketAddr::from(([255, 255, 255, 255], 65535)).into(),
            SocketAddr::from(([10, 20, 3, 40], 80)).into(),
            "[2001:db8::1]:443".parse::<SocketAddr>().unwrap().into(),
        ];
        for address in addresses {
            let mut f = RequestHttpFrontend {
                address,
                hostname: "a.example.com".into(),
                path: sozu_proto::PathRule { kind: PathRuleKind::Equals as i32, value: "/x".into() },
                ..Default::default()
            };
            assert_eq!(frontend_key(&f), format!("{address};a.example.com;=/x"));
            f.method = Some("GET".into());
            assert_eq!(frontend_key(&f), format!("{address};a.example.com;=/x;GET"));
        }
        // an out-of-range port goes through Display's own path
        let odd = SocketAddress { port: 70_000, ..SocketAddr::from(([1, 2, 3, 4], 1)).into() };
        let f = RequestHttpFrontend { address: odd, ..Default::default() };
        assert_eq!(frontend_key(&f), format!("{odd};;P"));
    }
}
