//! The state as requests: a full rebuild, and the difference between two states.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sozu_proto::request::RequestType as R;
use sozu_proto::{
    ActivateListener, AddCertificate, DeactivateListener, ListenerType, RemoveBackend, RemoveCertificate,
    RemoveListener, Request,
};

use crate::state::ConfigState;

fn activate(address: SocketAddr, proxy: ListenerType) -> Request {
    R::ActivateListener(ActivateListener { address: address.into(), proxy: proxy as i32, from_scm: false }).into()
}

fn deactivate(address: SocketAddr, proxy: ListenerType) -> Request {
    R::DeactivateListener(DeactivateListener { address: address.into(), proxy: proxy as i32, to_scm: false }).into()
}

fn remove_listener(address: SocketAddr, proxy: ListenerType) -> Request {
    R::RemoveListener(RemoveListener { address: address.into(), proxy: proxy as i32 }).into()
}

/// One kind of listener, seen uniformly.
struct Listeners<'a, L> {
    map: &'a BTreeMap<SocketAddr, L>,
    kind: ListenerType,
    add: fn(L) -> R,
    active: fn(&L) -> bool,
    set_active: fn(&mut L, bool),
}

impl<L: Clone + PartialEq> Listeners<'_, L> {
    fn generate(&self, visit: &mut impl FnMut(Request)) {
        for (a, l) in self.map {
            visit((self.add)(l.clone()).into());
            if (self.active)(l) {
                visit(activate(*a, self.kind));
            }
        }
    }

    /// Removals first (into `before`), additions and changes after (into `after`).
    /// A changed listener is removed and added again, and re-activated if the new one
    /// is active (Sōzu 2.1 forgot the activation and silently deactivated it).
    fn diff(&self, other: &Self, before: &mut Vec<Request>, after: &mut Vec<Request>) {
        for (a, l) in self.map {
            match other.map.get(a) {
                None => {
                    if (self.active)(l) {
                        before.push(deactivate(*a, self.kind));
                    }
                    before.push(remove_listener(*a, self.kind));
                }
                Some(n) if n == l => {}
                Some(n) => {
                    let mut old = l.clone();
                    (self.set_active)(&mut old, (other.active)(n));
                    if old == *n {
                        // only the active flag differs
                        after.push(if (other.active)(n) { activate(*a, self.kind) } else { deactivate(*a, self.kind) });
                    } else {
                        if (self.active)(l) {
                            before.push(deactivate(*a, self.kind));
                        }
                        before.push(remove_listener(*a, self.kind));
                        after.push((self.add)(n.clone()).into());
                        if (other.active)(n) {
                            after.push(activate(*a, self.kind));
                        }
                    }
                }
            }
        }
        for (a, n) in other.map {
            if !self.map.contains_key(a) {
                after.push((other.add)(n.clone()).into());
                if (other.active)(n) {
                    after.push(activate(*a, self.kind));
                }
            }
        }
    }
}

/// Pushes `r` unless the entry is the `same` in both states.
fn unless(same: bool, r: R, out: &mut Vec<Request>) {
    if !same {
        out.push(r.into());
    }
}

impl ConfigState {
    fn http(&self) -> Listeners<'_, sozu_proto::HttpListenerConfig> {
        Listeners {
            map: &self.http_listeners,
            kind: ListenerType::Http,
            add: |l| R::AddHttpListener(Box::new(l)),
            active: |l| l.active,
            set_active: |l, a| l.active = a,
        }
    }
    fn https(&self) -> Listeners<'_, sozu_proto::HttpsListenerConfig> {
        Listeners {
            map: &self.https_listeners,
            kind: ListenerType::Https,
            add: |l| R::AddHttpsListener(Box::new(l)),
            active: |l| l.active,
            set_active: |l, a| l.active = a,
        }
    }
    fn tcp(&self) -> Listeners<'_, sozu_proto::TcpListenerConfig> {
        Listeners {
            map: &self.tcp_listeners,
            kind: ListenerType::Tcp,
            add: R::AddTcpListener,
            active: |l| l.active,
            set_active: |l, a| l.active = a,
        }
    }
    fn udp(&self) -> Listeners<'_, sozu_proto::UdpListenerConfig> {
        Listeners {
            map: &self.udp_listeners,
            kind: ListenerType::Udp,
            add: R::AddUdpListener,
            active: |l| l.active,
            set_active: |l, a| l.active = a,
        }
    }

    /// The whole state as requests, in Sōzu's order (listeners by address, each
    /// followed by its ActivateListener if active; clusters by id; HTTP frontends by
    /// key; certificates by address and fingerprint, with their `expired_at`; HTTPS
    /// frontends; TCP and UDP frontends by cluster and address; backends by cluster,
    /// backend id and address). Replaying them into an empty state gives this state.
    pub fn generate_requests(&self) -> Vec<Request> {
        let mut out = Vec::with_capacity(self.listener_count() * 2 + self.cluster_count() * 4);
        self.visit_requests(|r| out.push(r));
        out
    }

    /// How many requests [`generate_requests`](Self::generate_requests) gives, without
    /// generating them.
    pub fn request_count(&self) -> usize {
        let active = self.http_listeners.values().filter(|l| l.active).count()
            + self.https_listeners.values().filter(|l| l.active).count()
            + self.tcp_listeners.values().filter(|l| l.active).count()
            + self.udp_listeners.values().filter(|l| l.active).count();
        self.listener_count()
            + active
            + self.clusters.len()
            + self.http_frontends.len()
            + self.certificates.len()
            + self.https_frontends.len()
            + self.tcp_frontends.len()
            + self.udp_frontends.len()
            + self.backend_count()
    }

    /// [`generate_requests`](Self::generate_requests) one request at a time, without
    /// holding them all: what saving a large state uses.
    pub fn visit_requests(&self, mut visit: impl FnMut(Request)) {
        self.http().generate(&mut visit);
        self.https().generate(&mut visit);
        self.tcp().generate(&mut visit);
        self.udp().generate(&mut visit);
        self.clusters.values().for_each(|c| visit(R::AddCluster(c.clone()).into()));
        self.http_frontends.values().for_each(|f| visit(R::AddHttpFrontend(f.clone()).into()));
        for ((a, _), c) in &self.certificates {
            let certificate = c.certificate.clone();
            visit(
                R::AddCertificate(Box::new(AddCertificate {
                    address: (*a).into(),
                    certificate,
                    expired_at: c.expired_at,
                }))
                .into(),
            );
        }
        self.https_frontends.values().for_each(|f| visit(R::AddHttpsFrontend(f.clone()).into()));
        self.tcp_frontends.values().for_each(|f| visit(R::AddTcpFrontend(f.clone()).into()));
        self.udp_frontends.values().for_each(|f| visit(R::AddUdpFrontend(f.clone()).into()));
        for list in self.backends.values() {
            list.iter().for_each(|(b, _)| visit(R::AddBackend(b.clone()).into()));
        }
    }

    /// The requests that turn `self` into `other`: every removal first (frontends,
    /// backends, certificates, clusters, listeners), then every addition and change
    /// (listeners, clusters, certificates, frontends, backends). Applying them to
    /// `self` with [`dispatch`](Self::dispatch) gives a state equal to `other`.
    pub fn diff(&self, other: &ConfigState) -> Vec<Request> {
        let mut out = Vec::new();
        let mut listener_additions = Vec::new();

        // removals: frontends and backends, certificates, clusters, then listeners.
        // A changed entry is removed here and added again below.
        for (k, f) in &self.http_frontends {
            unless(other.http_frontends.get(k) == Some(f), R::RemoveHttpFrontend(f.clone()), &mut out);
        }
        for (k, f) in &self.https_frontends {
            unless(other.https_frontends.get(k) == Some(f), R::RemoveHttpsFrontend(f.clone()), &mut out);
        }
        for (k, f) in &self.tcp_frontends {
            unless(other.tcp_frontends.get(k) == Some(f), R::RemoveTcpFrontend(f.clone()), &mut out);
        }
        for (k, f) in &self.udp_frontends {
            unless(other.udp_frontends.get(k) == Some(f), R::RemoveUdpFrontend(f.clone()), &mut out);
        }
        for (cluster, list) in &self.backends {
            for (b, a) in list.iter() {
                let kept = other.backends.get(cluster).is_some_and(|l| l.get(&b.backend_id, a).is_some());
                let remove =
                    RemoveBackend { cluster_id: cluster.clone(), backend_id: b.backend_id.clone(), address: b.address };
                unless(kept, R::RemoveBackend(remove), &mut out);
            }
        }
        for ((a, fp), c) in &self.certificates {
            let remove = RemoveCertificate { address: (*a).into(), fingerprint: fp.clone() };
            unless(other.certificates.get(&(*a, fp.clone())) == Some(c), R::RemoveCertificate(remove), &mut out);
        }
        for id in self.clusters.keys() {
            unless(other.clusters.contains_key(id), R::RemoveCluster(id.clone()), &mut out);
        }
        self.http().diff(&other.http(), &mut out, &mut listener_additions);
        self.https().diff(&other.https(), &mut out, &mut listener_additions);
        self.tcp().diff(&other.tcp(), &mut out, &mut listener_additions);
        self.udp().diff(&other.udp(), &mut out, &mut listener_additions);

        // additions and changes, in generate_requests order
        out.extend(listener_additions);
        for (id, c) in &other.clusters {
            unless(self.clusters.get(id) == Some(c), R::AddCluster(c.clone()), &mut out);
        }
        for (k, f) in &other.http_frontends {
            unless(self.http_frontends.get(k) == Some(f), R::AddHttpFrontend(f.clone()), &mut out);
        }
        for ((a, fp), c) in &other.certificates {
            let add =
                AddCertificate { address: (*a).into(), certificate: c.certificate.clone(), expired_at: c.expired_at };
            unless(self.certificates.get(&(*a, fp.clone())) == Some(c), R::AddCertificate(Box::new(add)), &mut out);
        }
        for (k, f) in &other.https_frontends {
            unless(self.https_frontends.get(k) == Some(f), R::AddHttpsFrontend(f.clone()), &mut out);
        }
        for (k, f) in &other.tcp_frontends {
            unless(self.tcp_frontends.get(k) == Some(f), R::AddTcpFrontend(f.clone()), &mut out);
        }
        for (k, f) in &other.udp_frontends {
            unless(self.udp_frontends.get(k) == Some(f), R::AddUdpFrontend(f.clone()), &mut out);
        }
        for (cluster, list) in &other.backends {
            for (b, a) in list.iter() {
                let same = self.backends.get(cluster).and_then(|l| l.get(&b.backend_id, a)) == Some(b);
                unless(same, R::AddBackend(b.clone()), &mut out);
            }
        }
        out
    }
}
