//! Counters for `QueryMetrics`, per worker, cluster and backend, shared by the TCP and
//! HTTP proxies.

use std::collections::BTreeMap;

use sozu_proto::{
    BackendMetrics, ClusterMetrics, FilteredMetrics, MetricsConfiguration, WorkerMetrics, filtered_metrics,
};

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
    fn sub(&mut self, o: &Counters) {
        self.connections -= o.connections;
        self.bytes_in -= o.bytes_in;
        self.bytes_out -= o.bytes_out;
        self.connect_errors -= o.connect_errors;
        self.requests -= o.requests;
        self.errors_4xx -= o.errors_4xx;
        self.errors_5xx -= o.errors_5xx;
        self.refused -= o.refused;
    }

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

/// Counters summed over the proxies: the worker's, per cluster, per backend.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Totals {
    pub total: Counters,
    pub clusters: BTreeMap<String, Counters>,
    pub backends: BTreeMap<(String, String), Counters>,
}

impl Totals {
    /// The sum of every proxy's counters, and their open connections.
    pub(crate) fn sum(sheets: &[Sheet<'_>]) -> (Totals, usize) {
        let mut t = Totals::default();
        let mut active = 0;
        for sheet in sheets {
            t.total.add(sheet.total);
            active += sheet.active;
            for (id, c) in sheet.clusters {
                t.clusters.entry(id.clone()).or_default().add(c);
            }
            for (key, c) in sheet.backends {
                t.backends.entry(key.clone()).or_default().add(c);
            }
        }
        (t, active)
    }

    /// `self − base`, entry by entry; entries left at zero are dropped.
    fn minus(&self, base: &Totals) -> Totals {
        fn map<K: Ord + Clone>(live: &BTreeMap<K, Counters>, base: &BTreeMap<K, Counters>) -> BTreeMap<K, Counters> {
            live.iter()
                .filter_map(|(k, c)| {
                    let mut c = *c;
                    if let Some(b) = base.get(k) {
                        c.sub(b);
                    }
                    (c != Counters::default()).then(|| (k.clone(), c))
                })
                .collect()
        }
        let mut total = self.total;
        total.sub(&base.total);
        Totals { total, clusters: map(&self.clusters, &base.clusters), backends: map(&self.backends, &base.backends) }
    }

    /// As `QueryMetrics` reports them, with the open connections as a gauge.
    pub(crate) fn metrics(&self, active: usize) -> WorkerMetrics {
        let mut proxy = self.total.metrics();
        proxy.insert(
            "active_connections".into(),
            FilteredMetrics { inner: Some(filtered_metrics::Inner::Gauge(active as u64)) },
        );
        let clusters = self
            .clusters
            .iter()
            .map(|(id, c)| {
                let backends = self
                    .backends
                    .iter()
                    .filter(|((cl, _), _)| cl == id)
                    .map(|((_, b), c)| BackendMetrics { backend_id: b.clone(), metrics: c.metrics() })
                    .collect();
                (id.clone(), ClusterMetrics { cluster: c.metrics(), backends })
            })
            .collect();
        WorkerMetrics { proxy, clusters }
    }
}

/// What `QueryMetrics` reports after `metrics enable | disable | clear`
/// (`ConfigureMetrics`), without touching the counting on the hot path: disabled, the
/// figures stay as they were (what happens meanwhile is never reported); enabled again,
/// they go on from there; cleared, they start from zero.
#[derive(Debug, Default)]
pub(crate) struct Reporting {
    /// Subtracted from the live counters.
    offset: Totals,
    /// While disabled: the figures reported.
    frozen: Option<Totals>,
}

impl Reporting {
    /// The figures to report, from the live counters.
    pub(crate) fn report(&self, live: &Totals) -> Totals {
        match &self.frozen {
            Some(frozen) => frozen.clone(),
            None => live.minus(&self.offset),
        }
    }

    /// Applies `ConfigureMetrics(what)` at the live counters `live`.
    pub(crate) fn configure(&mut self, live: &Totals, what: MetricsConfiguration) {
        match what {
            MetricsConfiguration::Disabled => {
                if self.frozen.is_none() {
                    self.frozen = Some(live.minus(&self.offset));
                }
            }
            MetricsConfiguration::Enabled => {
                if let Some(frozen) = self.frozen.take() {
                    // reported = frozen + what is counted from now on (an entry left
                    // out of the offset, at zero, subtracts nothing)
                    self.offset = live.minus(&frozen);
                }
            }
            MetricsConfiguration::Clear => {
                self.offset = live.clone();
                if self.frozen.is_some() {
                    self.frozen = Some(Totals::default());
                }
            }
        }
    }
}

/// What one HTTP session counted since the proxy last took its counts.
#[derive(Default)]
pub(crate) struct SessionCounts {
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// Requests and connections sent to `backend`.
    pub requests: i64,
    pub connections: i64,
    pub connect_errors: Vec<(String, String, std::net::SocketAddr)>,
    /// Connects that succeeded, and connections to a backend that closed.
    pub connected: Vec<(String, String, std::net::SocketAddr)>,
    pub closed: Vec<(String, String)>,
    /// Answers of our own.
    pub answers: Vec<u16>,
    /// (cluster, backend) the counts above belong to.
    pub backend: Option<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(connections: i64, cluster: i64) -> Totals {
        let c = |n| Counters { connections: n, ..Default::default() };
        Totals {
            total: c(connections),
            clusters: BTreeMap::from([("a".to_string(), c(cluster))]),
            backends: BTreeMap::from([(("a".to_string(), "b".to_string()), c(cluster))]),
        }
    }

    #[test]
    fn disable_freezes_enable_goes_on_from_there_clear_restarts_at_zero() {
        let mut r = Reporting::default();
        assert_eq!(r.report(&live(10, 4)), live(10, 4));
        r.configure(&live(10, 4), MetricsConfiguration::Disabled);
        assert_eq!(r.report(&live(25, 9)), live(10, 4), "nothing counted while disabled");
        r.configure(&live(25, 9), MetricsConfiguration::Disabled);
        r.configure(&live(25, 9), MetricsConfiguration::Enabled);
        assert_eq!(r.report(&live(25, 9)), live(10, 4));
        assert_eq!(r.report(&live(28, 10)), live(13, 5), "only what came after the enable");
        r.configure(&live(28, 10), MetricsConfiguration::Clear);
        assert_eq!(r.report(&live(28, 10)), Totals::default(), "zero entries are not reported");
        assert_eq!(r.report(&live(30, 11)), live(2, 1));
        // cleared while disabled: zero until enabled, then what comes after
        r.configure(&live(30, 11), MetricsConfiguration::Disabled);
        r.configure(&live(31, 11), MetricsConfiguration::Clear);
        assert_eq!(r.report(&live(40, 15)), Totals::default());
        r.configure(&live(40, 15), MetricsConfiguration::Enabled);
        assert_eq!(r.report(&live(41, 16)), live(1, 1));
    }

    #[test]
    fn a_cluster_seen_first_after_an_offset_is_reported_whole() {
        let mut r = Reporting::default();
        r.configure(&live(3, 3), MetricsConfiguration::Clear);
        let mut now = live(5, 3);
        now.clusters.insert("new".into(), Counters { requests: 7, ..Default::default() });
        let report = r.report(&now);
        assert_eq!(report.clusters.get("new").map(|c| c.requests), Some(7));
        assert!(!report.clusters.contains_key("a"));
    }
}
