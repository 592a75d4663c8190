//! State files at 10k and 100k clusters (each: one cluster, one HTTP frontend, two
//! backends): save and load against plain serde_json on the same records (the floor),
//! and the memory the state takes against the same requests held as a plain list.

use std::hint::black_box;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Instant;

use sozu_proto::request::RequestType as R;
use sozu_proto::*;
use sozu_state::{ConfigState, load, save_atomic, save_state};

use crate::{Row, best_of};

fn requests(clusters: usize) -> Vec<Request> {
    let mut out = Vec::new();
    for_each_request(clusters, |r| out.push(r));
    out
}

/// The benchmark's requests, one at a time.
fn for_each_request(clusters: usize, mut out: impl FnMut(Request)) {
    let listener: SocketAddress = SocketAddr::from(([127, 0, 0, 1], 8080)).into();
    out(Request::from(R::AddHttpListener(Box::new(HttpListenerConfig {
        address: listener,
        sticky_name: "SOZUBALANCEID".into(),
        active: true,
        ..Default::default()
    }))));
    for i in 0..clusters {
        cluster_requests(i).into_iter().for_each(&mut out);
    }
}

/// One cluster of the benchmarks: AddCluster, an HTTP frontend on 127.0.0.1:8080 and
/// two backends.
pub(crate) fn cluster_requests(i: usize) -> [Request; 4] {
    let id = format!("cluster-{i}");
    let listener: SocketAddress = SocketAddr::from(([127, 0, 0, 1], 8080)).into();
    let backend = |b: u16| {
        Request::from(R::AddBackend(AddBackend {
            cluster_id: id.clone(),
            backend_id: format!("{id}-{b}"),
            address: SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 8000 + b)).into(),
            load_balancing_parameters: Some(LoadBalancingParams { weight: 100 }),
            ..Default::default()
        }))
    };
    [
        R::AddCluster(Box::new(Cluster { cluster_id: id.clone(), load_balancing: 3, ..Default::default() })).into(),
        R::AddHttpFrontend(Box::new(RequestHttpFrontend {
            cluster_id: Some(id.clone()),
            address: listener,
            hostname: format!("host-{i}.example.com"),
            path: PathRule { kind: 0, value: "/".into() },
            position: 2,
            ..Default::default()
        }))
        .into(),
        backend(0),
        backend(1),
    ]
}

fn state_of(requests: &[Request]) -> ConfigState {
    let mut s = ConfigState::new();
    for r in requests {
        s.dispatch(r).expect("bench requests are valid");
    }
    s
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child-process entry: prints the RSS growth (KiB) of holding `clusters` clusters,
/// as a `ConfigState` (`what = state`) or as a plain `Vec<Request>` (`what = list`).
pub fn measure_rss(what: &str, clusters: usize) {
    let before = rss_kib();
    let held: Box<dyn std::any::Any> = match what {
        "state" => {
            // one request at a time, so only the state itself stays
            let mut s = ConfigState::new();
            for_each_request(clusters, |r| {
                s.dispatch(&r).expect("valid");
            });
            Box::new(s)
        }
        _ => Box::new(requests(clusters)),
    };
    let after = rss_kib();
    black_box(&held);
    println!("{}", after.saturating_sub(before));
}

fn child_rss(what: &str, clusters: usize) -> f64 {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args(["--measure-rss", what, &clusters.to_string()])
        .output()
        .expect("run child");
    String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().unwrap_or(f64::NAN) / 1024.0
}

pub fn run(quick: bool) -> crate::Section {
    let sizes: &[usize] = if quick { &[10_000] } else { &[10_000, 100_000] };
    let mut rows = Vec::new();
    for &n in sizes {
        let reqs = requests(n);
        let state = state_of(&reqs);
        let runs = if n > 10_000 { 3 } else { 5 };

        // save: ours (generate from the state + write records) vs serde_json of the same records
        let mut bytes = Vec::new();
        let ours = best_of(runs, || {
            let start = Instant::now();
            let mut out = Vec::with_capacity(bytes.capacity());
            save_state(&mut out, &state).unwrap();
            let took = start.elapsed();
            bytes = out;
            took
        });
        let floor = best_of(runs, || {
            let start = Instant::now();
            let mut out = Vec::with_capacity(bytes.capacity());
            for (i, r) in reqs.iter().enumerate() {
                let wr = WorkerRequest { id: format!("SAVE-{i}"), content: r.clone() };
                serde_json::to_writer(&mut out, &wr).unwrap();
                out.extend_from_slice(b"\n\0");
            }
            black_box(&out);
            start.elapsed()
        });
        rows.push(Row {
            name: format!("save {n} clusters ({} records, {:.1} MB) to memory", reqs.len(), bytes.len() as f64 / 1e6),
            ours: format!("{:.1} ms", ours.as_secs_f64() * 1e3),
            baseline: format!("{:.1} ms", floor.as_secs_f64() * 1e3),
            ratio: ours.as_secs_f64() / floor.as_secs_f64(),
            target: "≤ 1.5".into(),
        });

        // the same save, atomic to disk (temp file, fsync, rename, fsync dir)
        let dir = std::env::temp_dir().join(format!("sozu-bench-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        let atomic = best_of(runs, || {
            let start = Instant::now();
            save_atomic(&path, &state).unwrap();
            start.elapsed()
        });
        std::fs::remove_dir_all(&dir).unwrap();
        rows.push(Row {
            name: format!("save {n} clusters atomically to disk (incl. 2 fsyncs)"),
            ours: format!("{:.1} ms", atomic.as_secs_f64() * 1e3),
            baseline: format!("{:.1} ms (floor above)", floor.as_secs_f64() * 1e3),
            ratio: atomic.as_secs_f64() / floor.as_secs_f64(),
            target: "—".into(),
        });

        // load: parse + apply to a staged state vs serde_json parsing of the records
        let ours = best_of(runs, || {
            let start = Instant::now();
            let loaded = load(&ConfigState::new(), &bytes[..], 1 << 20).unwrap();
            let took = start.elapsed();
            assert_eq!(loaded.state.cluster_count(), n);
            took
        });
        let floor = best_of(runs, || {
            let start = Instant::now();
            let parsed: Vec<WorkerRequest> = bytes
                .split(|b| *b == 0)
                .filter(|r| !r.is_empty())
                .map(|r| serde_json::from_slice(r).unwrap())
                .collect();
            black_box(&parsed);
            start.elapsed()
        });
        rows.push(Row {
            name: format!("load {n} clusters (parse + apply, all-or-nothing)"),
            ours: format!("{:.1} ms", ours.as_secs_f64() * 1e3),
            baseline: format!("{:.1} ms (serde_json parse only)", floor.as_secs_f64() * 1e3),
            ratio: ours.as_secs_f64() / floor.as_secs_f64(),
            target: "≤ 2".into(),
        });

        // memory
        let state_mib = child_rss("state", n);
        let list_mib = child_rss("list", n);
        rows.push(Row {
            name: format!("memory of the state at {n} clusters (RSS growth, own process)"),
            ours: format!("{state_mib:.1} MiB"),
            baseline: format!("{list_mib:.1} MiB (the same requests as a Vec)"),
            ratio: state_mib / list_mib,
            target: if n == 10_000 { "≤ 20 MiB absolute".into() } else { "—".into() },
        });
    }
    crate::Section {
        title: "State save/load",
        baseline: "plain serde_json serialisation / parsing of the same records in the same run; memory: the same requests held as a Vec<Request>",
        rows,
    }
}
