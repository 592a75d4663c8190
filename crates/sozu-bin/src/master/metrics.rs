//! The answer to `QueryMetrics`: every worker's counters summed (`proxying`,
//! `clusters`) beside the per-worker detail (`workers`), then what the options ask:
//! `list` gives the metric names instead (`AvailableMetrics`); `metric_names`,
//! `cluster_ids` and `backend_ids` keep only those; `no_clusters` drops the cluster
//! level. Pure functions, unit tested.

use std::collections::{BTreeMap, BTreeSet};

use sozu_proto::filtered_metrics::Inner;
use sozu_proto::response_content::ContentType;
use sozu_proto::{
    AggregatedMetrics, AvailableMetrics, BackendMetrics, ClusterMetrics, FilteredMetrics, QueryMetricsOptions,
    WorkerMetrics,
};

/// The content answering `QueryMetrics` with `options`, from each worker's metrics.
pub(super) fn answer(workers: BTreeMap<String, WorkerMetrics>, options: &QueryMetricsOptions) -> ContentType {
    let mut all = aggregate(workers);
    if options.list {
        return ContentType::AvailableMetrics(available(&all));
    }
    let names: BTreeSet<&str> = options.metric_names.iter().map(String::as_str).collect();
    let keep_name = |map: &mut BTreeMap<String, FilteredMetrics>| {
        if !names.is_empty() {
            map.retain(|name, _| names.contains(name.as_str()));
        }
    };
    let keep_clusters = |clusters: &mut BTreeMap<String, ClusterMetrics>| {
        if options.no_clusters {
            clusters.clear();
            return;
        }
        if !options.cluster_ids.is_empty() {
            clusters.retain(|id, _| options.cluster_ids.contains(id));
        }
        if !options.backend_ids.is_empty() {
            for c in clusters.values_mut() {
                c.backends.retain(|b| options.backend_ids.contains(&b.backend_id));
            }
            clusters.retain(|_, c| !c.backends.is_empty());
        }
        for c in clusters.values_mut() {
            keep_name(&mut c.cluster);
            for b in &mut c.backends {
                keep_name(&mut b.metrics);
            }
        }
    };
    keep_name(&mut all.main);
    keep_name(&mut all.proxying);
    keep_clusters(&mut all.clusters);
    for w in all.workers.values_mut() {
        keep_name(&mut w.proxy);
        keep_clusters(&mut w.clusters);
    }
    ContentType::Metrics(all)
}

/// The names of the metrics there are: proxy level, and cluster or backend level.
fn available(all: &AggregatedMetrics) -> AvailableMetrics {
    let proxy: BTreeSet<&String> = all.main.keys().chain(all.proxying.keys()).collect();
    let cluster: BTreeSet<&String> = all
        .clusters
        .values()
        .flat_map(|c| c.cluster.keys().chain(c.backends.iter().flat_map(|b| b.metrics.keys())))
        .collect();
    AvailableMetrics {
        proxy_metrics: proxy.into_iter().cloned().collect(),
        cluster_metrics: cluster.into_iter().cloned().collect(),
    }
}

fn add(into: &mut BTreeMap<String, FilteredMetrics>, from: &BTreeMap<String, FilteredMetrics>) {
    for (name, metric) in from {
        let slot = into.entry(name.clone()).or_insert_with(|| FilteredMetrics { inner: None });
        slot.inner = match (&slot.inner, &metric.inner) {
            (None, m) => m.clone(),
            (Some(Inner::Count(a)), Some(Inner::Count(b))) => Some(Inner::Count(a + b)),
            (Some(Inner::Gauge(a)), Some(Inner::Gauge(b))) => Some(Inner::Gauge(a + b)),
            (kept, _) => kept.clone(),
        };
    }
}

/// Sums counters and gauges of every worker into `proxying` and `clusters` (with their
/// backends), keeping the per-worker detail in `workers`.
fn aggregate(workers: BTreeMap<String, WorkerMetrics>) -> AggregatedMetrics {
    let mut proxying = BTreeMap::new();
    let mut clusters: BTreeMap<String, ClusterMetrics> = BTreeMap::new();
    for w in workers.values() {
        add(&mut proxying, &w.proxy);
        for (id, c) in &w.clusters {
            let merged = clusters.entry(id.clone()).or_default();
            add(&mut merged.cluster, &c.cluster);
            for b in &c.backends {
                match merged.backends.iter_mut().find(|m| m.backend_id == b.backend_id) {
                    Some(m) => add(&mut m.metrics, &b.metrics),
                    None => merged
                        .backends
                        .push(BackendMetrics { backend_id: b.backend_id.clone(), metrics: b.metrics.clone() }),
                }
            }
        }
    }
    AggregatedMetrics { main: BTreeMap::new(), workers, clusters, proxying }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(n: i64) -> FilteredMetrics {
        FilteredMetrics { inner: Some(Inner::Count(n)) }
    }

    fn worker(requests: i64) -> WorkerMetrics {
        let m = |n| BTreeMap::from([("requests".to_string(), count(n)), ("bytes_in".to_string(), count(10 * n))]);
        let cluster = |n| ClusterMetrics {
            cluster: m(n),
            backends: vec![
                BackendMetrics { backend_id: "b1".into(), metrics: m(n) },
                BackendMetrics { backend_id: "b2".into(), metrics: m(1) },
            ],
        };
        WorkerMetrics {
            proxy: m(requests),
            clusters: BTreeMap::from([("api".to_string(), cluster(requests)), ("web".to_string(), cluster(2))]),
        }
    }

    fn workers() -> BTreeMap<String, WorkerMetrics> {
        BTreeMap::from([("0".to_string(), worker(3)), ("1".to_string(), worker(4))])
    }

    fn metrics(options: QueryMetricsOptions) -> AggregatedMetrics {
        match answer(workers(), &options) {
            ContentType::Metrics(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sums_workers_and_keeps_their_detail() {
        let m = metrics(QueryMetricsOptions::default());
        assert_eq!(m.proxying["requests"], count(7));
        assert_eq!(m.clusters["api"].cluster["bytes_in"], count(70));
        assert_eq!(m.clusters["web"].backends[1].metrics["requests"], count(2));
        assert_eq!(m.workers["1"].proxy["requests"], count(4));
    }

    #[test]
    fn list_names_the_metrics() {
        let ContentType::AvailableMetrics(a) =
            answer(workers(), &QueryMetricsOptions { list: true, ..Default::default() })
        else {
            panic!()
        };
        assert_eq!(a.proxy_metrics, ["bytes_in", "requests"]);
        assert_eq!(a.cluster_metrics, ["bytes_in", "requests"]);
    }

    #[test]
    fn names_clusters_and_backends_filter_and_no_clusters_drops_them() {
        let m = metrics(QueryMetricsOptions { metric_names: vec!["requests".into()], ..Default::default() });
        assert_eq!(m.proxying.keys().collect::<Vec<_>>(), ["requests"]);
        assert_eq!(m.clusters["api"].backends[0].metrics.keys().collect::<Vec<_>>(), ["requests"]);
        assert_eq!(m.workers["0"].clusters["web"].cluster.keys().collect::<Vec<_>>(), ["requests"]);
        let m = metrics(QueryMetricsOptions { cluster_ids: vec!["web".into()], ..Default::default() });
        assert_eq!(m.clusters.keys().collect::<Vec<_>>(), ["web"]);
        assert_eq!(m.workers["1"].clusters.keys().collect::<Vec<_>>(), ["web"]);
        let m = metrics(QueryMetricsOptions { backend_ids: vec!["b2".into()], ..Default::default() });
        assert!(m.clusters.values().all(|c| c.backends.len() == 1 && c.backends[0].backend_id == "b2"));
        let m = metrics(QueryMetricsOptions { no_clusters: true, ..Default::default() });
        assert!(m.clusters.is_empty() && m.workers.values().all(|w| w.clusters.is_empty()));
        assert_eq!(m.proxying["requests"], count(7));
    }
}
