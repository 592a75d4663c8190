//! Which backend a new connection tries first: the cluster's load-balancing algorithm
//! over the backends that are up, backups last, and backend health (a backend whose
//! connects keep failing is marked down and skipped, then probed again later; the
//! transitions are `BACKEND_DOWN` / `BACKEND_UP` events). Shared by the TCP and HTTP
//! proxies. Sans I/O: the caller reports connects and closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sozu_proto::{Event, EventKind, LoadBalancingAlgorithms};
use sozu_state::ConfigState;

/// Consecutive failed connects that mark a backend down.
pub(crate) const DOWN_AFTER: u32 = 3;
/// How long a down backend is skipped before one connection probes it again.
pub(crate) const PROBE_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Default, Clone)]
struct Health {
    failures: u32,
    down: bool,
    probe_at: Option<Instant>,
}

/// Load balancing and backend health of one worker.
#[derive(Debug)]
pub(crate) struct Balancer {
    cursors: HashMap<String, usize>,
    /// Open connections per cluster and backend.
    active: PerBackend<usize>,
    health: PerBackend<Health>,
    rng: u64,
    /// Events for the master, drained by the worker loop.
    pub events: Vec<Event>,
}

impl Default for Balancer {
    fn default() -> Self {
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Balancer::with_seed(seed ^ u64::from(std::process::id()))
    }
}

/// A value per cluster and backend, read by `&str` without allocating (routing reads
/// it for every request).
type PerBackend<T> = HashMap<String, HashMap<String, T>>;

fn get<'a, T>(map: &'a PerBackend<T>, cluster: &str, backend: &str) -> Option<&'a T> {
    map.get(cluster)?.get(backend)
}

fn get_mut<'a, T>(map: &'a mut PerBackend<T>, cluster: &str, backend: &str) -> Option<&'a mut T> {
    map.get_mut(cluster)?.get_mut(backend)
}

/// The value of `backend`, made (default) if it has none.
fn slot<'a, T: Default>(map: &'a mut PerBackend<T>, cluster: &str, backend: &str) -> &'a mut T {
    map.entry(cluster.to_string()).or_default().entry(backend.to_string()).or_default()
}

impl Balancer {
    pub fn with_seed(seed: u64) -> Self {
        Balancer {
            cursors: HashMap::new(),
            active: HashMap::new(),
            health: HashMap::new(),
            rng: seed | 1,
            events: Vec::new(),
        }
    }

    /// xorshift64*: fast and good enough to spread connections.
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn load(&self, cluster: &str, backend: &str) -> usize {
        get(&self.active, cluster, backend).copied().unwrap_or(0)
    }

    /// Orders `group` (backends of one cluster) by `algorithm`, best first.
    fn arrange(&mut self, cluster: &str, algorithm: i32, group: &mut [(String, SocketAddr)]) {
        if group.len() < 2 {
            return;
        }
        let turn = match self.cursors.get_mut(cluster) {
            Some(cursor) => std::mem::replace(cursor, cursor.wrapping_add(1)),
            None => {
                self.cursors.insert(cluster.to_string(), 1);
                0
            }
        };
        match LoadBalancingAlgorithms::try_from(algorithm).unwrap_or(LoadBalancingAlgorithms::RoundRobin) {
            LoadBalancingAlgorithms::Random => {
                for i in (1..group.len()).rev() {
                    let j = self.below(i + 1);
                    group.swap(i, j);
                }
            }
            LoadBalancingAlgorithms::LeastLoaded => {
                let len = group.len();
                group.rotate_left(turn % len); // ties go round robin
                group.sort_by_key(|(b, _)| self.load(cluster, b));
            }
            LoadBalancingAlgorithms::PowerOfTwo => {
                let len = group.len();
                let a = self.below(len);
                let mut b = self.below(len - 1);
                if b >= a {
                    b += 1;
                }
                let pick = if self.load(cluster, &group[b].0) < self.load(cluster, &group[a].0) { b } else { a };
                group.swap(0, pick);
                for i in (2..len).rev() {
                    let j = 1 + self.below(i);
                    group.swap(i, j);
                }
            }
            // ROUND_ROBIN, and the algorithms we do not implement (HRW, MAGLEV)
            _ => {
                let len = group.len();
                group.rotate_left(turn % len);
            }
        }
    }

    /// The backends of `cluster` to try, in order: a down one due for a probe first (so
    /// that it is really tried; if it fails the connection goes on to the next), then
    /// the ones up in the algorithm's order, backups after the others; when every
    /// backend is down, all of them (nothing is lost by trying).
    pub fn order(&mut self, state: &ConfigState, cluster: &str, now: Instant) -> Vec<(String, SocketAddr)> {
        let algorithm = state.cluster(cluster).map_or(0, |c| c.load_balancing);
        let all = state.backend_addresses_with_backup(cluster);
        let is_down = |h: &PerBackend<Health>, b: &str| get(h, cluster, b).is_some_and(|h| h.down);
        let mut main: Vec<(String, SocketAddr)> = Vec::new();
        let mut backups = Vec::new();
        let mut probes = Vec::new();
        for (backend, addr, backup) in &all {
            if is_down(&self.health, backend) {
                let due = get(&self.health, cluster, backend).and_then(|h| h.probe_at).is_none_or(|t| t <= now);
                if due {
                    probes.push((backend.clone(), *addr));
                    // one probe per period
                    if let Some(h) = get_mut(&mut self.health, cluster, backend) {
                        h.probe_at = Some(now + PROBE_AFTER);
                    }
                }
            } else if *backup {
                backups.push((backend.clone(), *addr));
            } else {
                main.push((backend.clone(), *addr));
            }
        }
        if main.is_empty() && backups.is_empty() && probes.is_empty() {
            // every backend down and probed recently: try them all anyway
            return all.into_iter().map(|(b, a, _)| (b, a)).collect();
        }
        self.arrange(cluster, algorithm, &mut main);
        self.arrange(cluster, algorithm, &mut backups);
        probes.extend(main);
        probes.extend(backups);
        probes
    }

    /// A connection to `backend` opened.
    pub fn opened(&mut self, cluster: &str, backend: &str) {
        match get_mut(&mut self.active, cluster, backend) {
            Some(n) => *n += 1,
            None => *slot(&mut self.active, cluster, backend) += 1,
        }
    }

    /// A connection to `backend` closed (or failed).
    pub fn closed(&mut self, cluster: &str, backend: &str) {
        if let Some(n) = get_mut(&mut self.active, cluster, backend) {
            *n = n.saturating_sub(1);
        }
    }

    /// A connect to `backend` succeeded.
    pub fn connected(&mut self, cluster: &str, backend: &str, address: SocketAddr) {
        // nothing recorded: nothing to reset (the common case, without allocating)
        let Some(h) = get_mut(&mut self.health, cluster, backend) else { return };
        h.failures = 0;
        h.probe_at = None;
        if std::mem::take(&mut h.down) {
            self.events.push(event(EventKind::BackendUp, cluster, backend, address));
        }
    }

    /// A connect to `backend` failed (refused or timed out).
    pub fn failed(&mut self, cluster: &str, backend: &str, address: SocketAddr, now: Instant) {
        let h = slot(&mut self.health, cluster, backend);
        h.failures += 1;
        if h.down {
            h.probe_at = Some(now + PROBE_AFTER);
        } else if h.failures >= DOWN_AFTER {
            h.down = true;
            h.probe_at = Some(now + PROBE_AFTER);
            self.events.push(event(EventKind::BackendDown, cluster, backend, address));
        }
    }

    /// Drops what it keeps about clusters and backends `state` no longer has, except the
    /// count of a backend's connections still open: under a churn of backends these
    /// maps would otherwise only grow.
    pub fn forget_missing(&mut self, state: &ConfigState) {
        // the backend ids of each cluster, read from the state once per cluster
        let ids =
            |cluster: &str| -> Vec<String> { state.backend_addresses(cluster).into_iter().map(|(id, _)| id).collect() };
        self.cursors.retain(|cluster, _| state.cluster(cluster).is_some());
        self.health.retain(|cluster, backends| {
            let known = ids(cluster);
            backends.retain(|backend, _| known.contains(backend));
            !backends.is_empty()
        });
        self.active.retain(|cluster, backends| {
            let known = ids(cluster);
            backends.retain(|backend, open| *open > 0 || known.contains(backend));
            !backends.is_empty()
        });
    }

    /// Entries kept (cursors, health, open counts), for tests.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.cursors.len()
            + self.health.values().map(HashMap::len).sum::<usize>()
            + self.active.values().map(HashMap::len).sum::<usize>()
    }

    /// Whether `backend` is marked down.
    #[cfg(test)]
    pub fn is_down(&self, cluster: &str, backend: &str) -> bool {
        get(&self.health, cluster, backend).is_some_and(|h| h.down)
    }
}

fn event(kind: EventKind, cluster: &str, backend: &str, address: SocketAddr) -> Event {
    Event {
        kind: kind as i32,
        cluster_id: Some(cluster.to_string()),
        backend_id: Some(backend.to_string()),
        address: Some(address.into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use sozu_proto::request::RequestType as R;
    use sozu_proto::{AddBackend, Cluster};

    use super::*;

    fn state(algorithm: LoadBalancingAlgorithms, backends: &[(&str, bool)]) -> ConfigState {
        let mut s = ConfigState::new();
        let cluster = Cluster { cluster_id: "c".into(), load_balancing: algorithm as i32, ..Default::default() };
        s.dispatch(&R::AddCluster(Box::new(cluster)).into()).unwrap();
        for (i, (id, backup)) in backends.iter().enumerate() {
            let b = AddBackend {
                cluster_id: "c".into(),
                backend_id: id.to_string(),
                address: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)).into(),
                backup: Some(*backup),
                ..Default::default()
            };
            s.dispatch(&R::AddBackend(b).into()).unwrap();
        }
        s
    }

    #[test]
    fn removed_backends_and_clusters_are_forgotten_but_open_connections_still_counted() {
        let mut s = state(LoadBalancingAlgorithms::RoundRobin, &[("a", false), ("b", false), ("c", false)]);
        let mut b = Balancer::with_seed(1);
        let addr = SocketAddr::from(([127, 0, 0, 1], 9000));
        b.order(&s, "c", Instant::now());
        for backend in ["a", "b", "c"] {
            b.opened("c", backend);
            b.failed("c", backend, addr, Instant::now());
        }
        b.closed("c", "a");
        b.closed("c", "b");
        assert_eq!(b.kept(), 1 + 3 + 3);
        b.forget_missing(&s);
        assert_eq!(b.kept(), 7, "everything is still in the state");
        let remove = |id: &str| sozu_proto::RemoveBackend {
            cluster_id: "c".into(),
            backend_id: id.into(),
            address: SocketAddr::from(([127, 0, 0, 1], 9000 + (id.as_bytes()[0] - b'a') as u16)).into(),
        };
        for id in ["a", "c"] {
            s.dispatch(&R::RemoveBackend(remove(id)).into()).unwrap();
        }
        b.forget_missing(&s);
        // cursor c; health b; open counts: b (0, still in the state), c (1 open)
        assert_eq!(b.kept(), 1 + 1 + 2);
        assert_eq!(b.load("c", "c"), 1, "a removed backend's open connection is still counted");
        s.dispatch(&R::RemoveCluster("c".into()).into()).unwrap();
        b.closed("c", "c");
        b.forget_missing(&s);
        assert_eq!(b.kept(), 0);
    }

    fn firsts(b: &mut Balancer, s: &ConfigState, n: usize) -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for _ in 0..n {
            let order = b.order(s, "c", Instant::now());
            *seen.entry(order[0].0.clone()).or_default() += 1;
        }
        seen
    }

    #[test]
    fn round_robin_and_random_spread_and_backups_come_last() {
        let s = state(LoadBalancingAlgorithms::RoundRobin, &[("a", false), ("b", false), ("z", true)]);
        let mut b = Balancer::with_seed(7);
        let seen = firsts(&mut b, &s, 10);
        assert_eq!((seen["a"], seen["b"]), (5, 5));
        assert_eq!(b.order(&s, "c", Instant::now()).last().unwrap().0, "z");
        let s = state(LoadBalancingAlgorithms::Random, &[("a", false), ("b", false), ("c", false)]);
        let seen = firsts(&mut b, &s, 3000);
        assert!(seen.values().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn least_loaded_and_power_of_two_avoid_the_busy_backend() {
        for algorithm in [LoadBalancingAlgorithms::LeastLoaded, LoadBalancingAlgorithms::PowerOfTwo] {
            let s = state(algorithm, &[("a", false), ("b", false)]);
            let mut b = Balancer::with_seed(3);
            for _ in 0..5 {
                b.opened("c", "a");
            }
            let seen = firsts(&mut b, &s, 100);
            assert_eq!(seen.get("b"), Some(&100), "{algorithm:?}: {seen:?}");
            for _ in 0..5 {
                b.closed("c", "a");
            }
            let seen = firsts(&mut b, &s, 100);
            assert!(seen.get("a").is_some_and(|n| *n > 20), "{algorithm:?}: {seen:?}");
        }
    }

    #[test]
    fn failing_backends_go_down_are_probed_and_come_back_up() {
        let s = state(LoadBalancingAlgorithms::RoundRobin, &[("a", false), ("b", false)]);
        let mut b = Balancer::with_seed(1);
        let addr = SocketAddr::from(([127, 0, 0, 1], 9000));
        let t0 = Instant::now();
        for _ in 0..DOWN_AFTER {
            b.failed("c", "a", addr, t0);
        }
        assert!(b.is_down("c", "a"));
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].kind, EventKind::BackendDown as i32);
        // skipped until the probe time
        for _ in 0..4 {
            assert_eq!(b.order(&s, "c", t0).iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["b"]);
        }
        // then offered once, first, the others after it
        let later = t0 + PROBE_AFTER;
        let probe = b.order(&s, "c", later);
        assert_eq!(probe.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(b.order(&s, "c", later).len(), 1, "one probe per period");
        b.connected("c", "a", addr);
        assert!(!b.is_down("c", "a"));
        assert_eq!(b.events[1].kind, EventKind::BackendUp as i32);
        // every backend down: all are tried anyway
        for id in ["a", "b"] {
            for _ in 0..DOWN_AFTER {
                b.failed("c", id, addr, later);
            }
        }
        b.order(&s, "c", later + PROBE_AFTER); // the probes of this period
        assert_eq!(b.order(&s, "c", later + PROBE_AFTER).len(), 2);
    }
}

/// Whether a failed connect is this process's own shortage (out of fds, memory or local
/// ports) rather than anything the backend did: such a failure does not count against
/// the backend's health (marking a healthy backend down would turn one full fd table
/// into 503s for every request), and the other candidates would fail the same way.
pub(crate) fn local_shortage(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL))
}

#[cfg(test)]
mod shortage_tests {
    use super::local_shortage;
    use std::io::Error;

    #[test]
    fn only_our_own_shortages_are_local() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM, libc::EADDRNOTAVAIL] {
            assert!(local_shortage(&Error::from_raw_os_error(code)), "{code}");
        }
        for code in [libc::ECONNREFUSED, libc::ETIMEDOUT, libc::EHOSTUNREACH, libc::ENETUNREACH, libc::ECONNRESET] {
            assert!(!local_shortage(&Error::from_raw_os_error(code)), "{code}");
        }
        assert!(!local_shortage(&Error::other("no errno")));
    }
}
