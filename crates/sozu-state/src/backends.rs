//! A cluster's backends: a small sorted vector, not a map. Clusters usually have a
//! handful of backends, and a B-tree node per cluster would cost ~2 KiB each.

use std::net::{Ipv4Addr, SocketAddr};

use sozu_proto::AddBackend;

/// Backends of one cluster, sorted by (backend id, address), unique on that pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Backends(Vec<AddBackend>);

/// The sort key of a backend. Addresses were validated on insert.
fn key(b: &AddBackend) -> (&str, SocketAddr) {
    let addr = SocketAddr::try_from(&b.address).unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    (b.backend_id.as_str(), addr)
}

impl Backends {
    fn find(&self, id: &str, addr: SocketAddr) -> Result<usize, usize> {
        self.0.binary_search_by(|b| key(b).cmp(&(id, addr)))
    }

    /// Inserts or replaces the backend with the same id and address.
    pub(crate) fn upsert(&mut self, backend: AddBackend, addr: SocketAddr) {
        match self.find(&backend.backend_id, addr) {
            Ok(i) => self.0[i] = backend,
            Err(i) => self.0.insert(i, backend),
        }
    }

    /// Removes the backend with this id and address.
    pub(crate) fn remove(&mut self, id: &str, addr: SocketAddr) -> Option<AddBackend> {
        self.find(id, addr).ok().map(|i| self.0.remove(i))
    }

    /// The backend with this id and address.
    pub(crate) fn get(&self, id: &str, addr: SocketAddr) -> Option<&AddBackend> {
        self.find(id, addr).ok().map(|i| &self.0[i])
    }

    /// Every backend with its address, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&AddBackend, SocketAddr)> {
        self.0.iter().map(|b| (b, key(b).1))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
