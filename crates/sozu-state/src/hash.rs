//! Cheap per-cluster hashes and a whole-state digest.

use std::collections::BTreeMap;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::state::ConfigState;

/// FNV-1a, 64 bits: stable across processes and versions (unlike std's SipHash keys).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn message(&mut self, m: &impl Message) {
        let bytes = m.encode_to_vec();
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(&bytes);
    }
}

impl ConfigState {
    /// A hash per cluster over its configuration, frontends and backends (the
    /// `QueryClustersHashes` answer). Stable across processes: two workers with the
    /// same cluster give the same hash. One pass over the state.
    pub fn cluster_hashes(&self) -> BTreeMap<String, u64> {
        self.hashers(None).into_iter().map(|(id, h)| (id.to_string(), h.0)).collect()
    }

    /// The hash of one cluster, `None` if it does not exist.
    pub fn cluster_hash(&self, id: &str) -> Option<u64> {
        self.hashers(Some(id)).remove(id).map(|h| h.0)
    }

    fn hashers(&self, only: Option<&str>) -> BTreeMap<&str, Fnv> {
        let mut hashers: BTreeMap<&str, Fnv> = self
            .clusters
            .iter()
            .filter(|(id, _)| only.is_none_or(|o| o == id.as_str()))
            .map(|(id, c)| {
                let mut h = Fnv::new();
                h.message(c);
                (id.as_str(), h)
            })
            .collect();
        let mut feed = |cluster: Option<&str>, m: &dyn Fn(&mut Fnv)| {
            if let Some(h) = cluster.and_then(|c| hashers.get_mut(c)) {
                m(h);
            }
        };
        for f in self.http_frontends.values().map(|f| &**f) {
            feed(f.cluster_id.as_deref(), &|h| h.message(f));
        }
        for f in self.https_frontends.values().map(|f| &**f) {
            feed(f.cluster_id.as_deref(), &|h| {
                h.write(b"https");
                h.message(f)
            });
        }
        for ((c, _), f) in &self.tcp_frontends {
            feed(Some(c), &|h| {
                h.write(b"tcp");
                h.message(f)
            });
        }
        for ((c, _), f) in &self.udp_frontends {
            feed(Some(c), &|h| {
                h.write(b"udp");
                h.message(f)
            });
        }
        for (c, list) in &self.backends {
            for (b, _) in list.iter() {
                feed(Some(c), &|h| {
                    h.write(b"backend");
                    h.message(b)
                });
            }
        }
        hashers
    }

    /// SHA-256 (hex) of the protobuf encoding of [`generate_requests`](Self::generate_requests):
    /// equal states have equal digests.
    pub fn digest(&self) -> String {
        let mut sha = Sha256::new();
        for request in self.generate_requests() {
            let bytes = request.encode_to_vec();
            sha.update((bytes.len() as u64).to_le_bytes());
            sha.update(&bytes);
        }
        sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
