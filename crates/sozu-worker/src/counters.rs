//! Counters for `QueryMetrics`, per worker, cluster and backend, shared by the TCP and
//! HTTP proxies.

use std::collections::BTreeMap;

use sozu_proto::{BackendMetrics, ClusterMetrics, FilteredMetrics, WorkerMetrics, filtered_metrics};

/// One set of counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    pub connections: i64,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub connect_errors: i64,
    /// HTTP requests (routed or answered by the worker).
    pub requests: i64,
    /// Answers of our own, by class.
    pub errors_4xx: i64,
    pub errors_5xx: i64,
    /// Connections closed at once: over `max_connections` / `max_buffers`.
    pub refused: i64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.connections += o.connections;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.connect_errors += o.connect_errors;
        self.requests += o.requests;
        self.errors_4xx += o.errors_4xx;
        self.errors_5xx += o.errors_5xx;
        self.refused += o.refused;
    }

    fn metrics(&self) -> BTreeMap<String, FilteredMetrics> {
        let count = |n: i64| FilteredMetrics { inner: Some(filtered_metrics::Inner::Count(n)) };
        BTreeMap::from([
            ("connections".to_string(), count(self.connections)),
            ("bytes_in".to_string(), count(self.bytes_in)),
            ("bytes_out".to_string(), count(self.bytes_out)),
            ("connect_errors".to_string(), count(self.connect_errors)),
            ("requests".to_string(), count(self.requests)),
            ("http_errors_4xx".to_string(), count(self.errors_4xx)),
            ("http_errors_5xx".to_string(), count(self.errors_5xx)),
            ("connections_refused".to_string(), count(self.refused)),
        ])
    }
}

/// Counters of one proxy (TCP or HTTP).
pub(crate) struct Sheet<'a> {
    pub total: &'a Counters,
    pub clusters: &'a BTreeMap<String, Counters>,
    pub backends: &'a BTreeMap<(String, String), Counters>,
    pub active: usize,
}

/// The `WorkerMetrics` of every proxy, summed.
pub(crate) fn worker_metrics(sheets: &[Sheet<'_>]) -> WorkerMetrics {
    let mut total = Counters::default();
    let mut clusters: BTreeMap<String, Counters> = BTreeMap::new();
    let mut backends: BTreeMap<(String, String), Counters> = BTreeMap::new();
    let mut active = 0;
    for sheet in sheets {
        total.add(sheet.total);
        active += sheet.active;
        for (id, c) in sheet.clusters {
            clusters.entry(id.clone()).or_default().add(c);
        }
        for (key, c) in sheet.backends {
            backends.entry(key.clone()).or_default().add(c);
        }
    }
    let mut proxy = total.metrics();
    proxy.insert(
        "active_connections".into(),
        FilteredMetrics { inner: Some(filtered_metrics::Inner::Gauge(active as u64)) },
    );
    let clusters = clusters
        .iter()
        .map(|(id, c)| {
            let backends = backends
                .iter()
                .filter(|((cl, _), _)| cl == id)
                .map(|((_, b), c)| BackendMetrics { backend_id: b.clone(), metrics: c.metrics() })
                .collect();
            (id.clone(), ClusterMetrics { cluster: c.metrics(), backends })
        })
        .collect();
    WorkerMetrics { proxy, clusters }
}
