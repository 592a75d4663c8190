//! Read-only views of the state, in the protocol's shapes.

use sozu_proto::{ClusterInformation, FrontendFilters, ListedFrontends, ListenersList, RequestHttpFrontend};

use crate::state::ConfigState;

impl ConfigState {
    /// Frontends matching `filters` (all three kinds false = every kind; `domain` is a
    /// substring of the hostname).
    pub fn listed_frontends(&self, filters: &FrontendFilters) -> ListedFrontends {
        let all = !filters.http && !filters.https && !filters.tcp;
        let domain = filters.domain.as_deref();
        let keep = |f: &&RequestHttpFrontend| domain.is_none_or(|d| f.hostname.contains(d));
        ListedFrontends {
            http_frontends: if all || filters.http {
                self.http_frontends.values().map(|f| &**f).filter(keep).cloned().collect()
            } else {
                Vec::new()
            },
            https_frontends: if all || filters.https {
                self.https_frontends.values().map(|f| &**f).filter(keep).cloned().collect()
            } else {
                Vec::new()
            },
            tcp_frontends: if (all || filters.tcp) && domain.is_none() {
                self.tcp_frontends.values().cloned().collect()
            } else {
                Vec::new()
            },
            udp_frontends: if all && domain.is_none() {
                self.udp_frontends.values().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }

    /// The cluster a TCP listener address routes to.
    pub fn tcp_cluster_for(&self, address: std::net::SocketAddr) -> Option<&str> {
        self.tcp_frontends.keys().find(|(_, a)| *a == address).map(|(c, _)| c.as_str())
    }

    /// The TCP listener at `address`.
    pub fn tcp_listener(&self, address: std::net::SocketAddr) -> Option<&sozu_proto::TcpListenerConfig> {
        self.tcp_listeners.get(&address)
    }

    /// Whether a TCP listener at `address` exists and is active.
    pub fn tcp_listener_active(&self, address: std::net::SocketAddr) -> bool {
        self.tcp_listeners.get(&address).is_some_and(|l| l.active)
    }

    /// A cluster's backends (id and address), in order; backups last.
    pub fn backend_addresses(&self, cluster: &str) -> Vec<(String, std::net::SocketAddr)> {
        let mut list: Vec<(bool, String, std::net::SocketAddr)> = self
            .backends
            .get(cluster)
            .map(|l| l.iter().map(|(b, a)| (b.backup.unwrap_or(false), b.backend_id.clone(), a)).collect())
            .unwrap_or_default();
        list.sort_by_key(|(backup, _, _)| *backup);
        list.into_iter().map(|(_, id, a)| (id, a)).collect()
    }

    /// A cluster's backends: id, address, and whether it is a backup.
    pub fn backend_addresses_with_backup(&self, cluster: &str) -> Vec<(String, std::net::SocketAddr, bool)> {
        self.backends
            .get(cluster)
            .map(|l| l.iter().map(|(b, a)| (b.backend_id.clone(), a, b.backup.unwrap_or(false))).collect())
            .unwrap_or_default()
    }

    /// A cluster's backends and the sticky id each is known by in a sticky session's
    /// cookie: its `sticky_id`, or its backend id when it has none (as Sōzu does).
    pub fn sticky_ids(&self, cluster: &str) -> Vec<(String, String)> {
        self.backends
            .get(cluster)
            .map(|l| {
                l.iter()
                    .map(|(b, _)| (b.backend_id.clone(), b.sticky_id.clone().unwrap_or_else(|| b.backend_id.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every listener, keyed `ip:port`.
    pub fn listeners_list(&self) -> ListenersList {
        ListenersList {
            http_listeners: self.http_listeners.iter().map(|(a, l)| (a.to_string(), l.clone())).collect(),
            https_listeners: self.https_listeners.iter().map(|(a, l)| (a.to_string(), l.clone())).collect(),
            tcp_listeners: self.tcp_listeners.iter().map(|(a, l)| (a.to_string(), *l)).collect(),
            udp_listeners: self.udp_listeners.iter().map(|(a, l)| (a.to_string(), *l)).collect(),
        }
    }

    /// A cluster with its frontends and backends.
    pub fn cluster_information(&self, id: &str) -> Option<ClusterInformation> {
        let configuration = self.clusters.get(id)?.clone();
        let mine = |f: &&RequestHttpFrontend| f.cluster_id.as_deref() == Some(id);
        Some(ClusterInformation {
            configuration: Some(*configuration),
            http_frontends: self.http_frontends.values().map(|f| &**f).filter(mine).cloned().collect(),
            https_frontends: self.https_frontends.values().map(|f| &**f).filter(mine).cloned().collect(),
            tcp_frontends: self.tcp_frontends.iter().filter(|((c, _), _)| c == id).map(|(_, f)| f.clone()).collect(),
            backends: self.backends.get(id).map(|l| l.iter().map(|(b, _)| b.clone()).collect()).unwrap_or_default(),
            udp_frontends: self.udp_frontends.iter().filter(|((c, _), _)| c == id).map(|(_, f)| f.clone()).collect(),
        })
    }

    /// Clusters with an HTTP(S) frontend for `hostname` (and whose path rule starts
    /// with `path`, when given).
    pub fn clusters_by_domain(&self, hostname: &str, path: Option<&str>) -> Vec<ClusterInformation> {
        let mut ids: Vec<&str> = self
            .http_frontends
            .values()
            .map(|f| &**f)
            .chain(self.https_frontends.values().map(|f| &**f))
            .filter(|f| f.hostname == hostname && path.is_none_or(|p| f.path.value.starts_with(p)))
            .filter_map(|f| f.cluster_id.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().filter_map(|id| self.cluster_information(id)).collect()
    }
}
