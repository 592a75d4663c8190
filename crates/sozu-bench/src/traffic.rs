//! The data plane under `wrk`: requests/s and p99 latency straight to an nginx backend,
//! through our HTTP listener, through our TCP listener, and through HAProxy (one
//! thread, an equivalent configuration), all in the same run with one worker; with
//! `--sozu21 PATH`, through Sōzu 2.1's own worker on the same backend too; and the
//! worker's memory with 10,000 idle keep-alive connections.
//!
//! Needs `wrk`, `nginx` and `haproxy` on the PATH (Debian packages `wrk`, `nginx-light`,
//! `haproxy`); the section says so and is skipped when one is missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Row, Section};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Waits (at most 10 s) until something listens on `port`: whether it does.
fn wait_port(port: u16) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Processes killed on drop, with their children (a Sōzu 2.1 worker outlives a
/// killed master).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", c.id())).unwrap_or_default();
            for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A one-worker configuration (ours and Sōzu 2.1's format alike): `head`'s top-level
/// keys, an HTTP and a TCP listener, and a cluster on each to `backend`.
fn proxy_config(head: &str, http: u16, tcp: u16, backend: u16) -> String {
    format!(
        "{head}\nworker_count = 1\n\
         [[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:{http}\"\n\
         [[listeners]]\nprotocol = \"tcp\"\naddress = \"127.0.0.1:{tcp}\"\n\
         [clusters.bench]\nprotocol = \"http\"\nfrontends = [{{ address = \"127.0.0.1:{http}\", hostname = \"bench\" }}]\n\
         backends = [{{ address = \"127.0.0.1:{backend}\", backend_id = \"nginx\" }}]\n\
         [clusters.benchtcp]\nprotocol = \"tcp\"\nfrontends = [{{ address = \"127.0.0.1:{tcp}\" }}]\n\
         backends = [{{ address = \"127.0.0.1:{backend}\", backend_id = \"nginx\" }}]\n"
    )
}

/// (requests/s, p99 in ms) of one `wrk` run against `port`.
fn wrk(wrk: &Path, port: u16, seconds: u32) -> (f64, f64) {
    let out = Command::new(wrk)
        .args(["-t1", "-c50", &format!("-d{seconds}s"), "--latency", "-H", "Host: bench"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Non-2xx"), "errors through port {port}: {text}");
    let rps =
        text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0);
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| {
            let v = v.trim();
            let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
            let n: f64 = num.parse().unwrap_or(f64::NAN);
            match unit {
                "us" => n / 1000.0,
                "s" => n * 1000.0,
                _ => n,
            }
        })
        .unwrap_or(f64::NAN);
    (rps, p99)
}

/// Loads 10,000 clusters, each with a frontend (its own host name) on the HTTP listener
/// at `http`, into the running master of `dir`; the number loaded, or `None` (and why on
/// stderr) when the load failed.
fn many_frontends(sozu: &Path, dir: &Path, http: u16) -> Option<usize> {
    use sozu_proto::request::RequestType as R;
    use sozu_proto::{Cluster, PathRule, RequestHttpFrontend};
    const N: usize = 10_000;
    let mut state = sozu_state::ConfigState::new();
    for i in 0..N {
        let cluster_id = format!("many{i}");
        let cluster = Cluster { cluster_id: cluster_id.clone(), ..Default::default() };
        state.dispatch(&R::AddCluster(Box::new(cluster)).into()).ok()?;
        let front = RequestHttpFrontend {
            cluster_id: Some(cluster_id),
            address: std::net::SocketAddr::from(([127, 0, 0, 1], http)).into(),
            hostname: format!("f{i}.many.test"),
            path: PathRule::default(),
            ..Default::default()
        };
        state.dispatch(&R::AddHttpFrontend(Box::new(front)).into()).ok()?;
    }
    let file = dir.join("many.state");
    sozu_state::save_atomic(&file, &state).ok()?;
    let out = Command::new(sozu)
        .arg("-c")
        .arg(dir.join("sozu.toml"))
        .args(["state", "load", "-f"])
        .arg(&file)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("loading {N} frontends failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(N)
}

/// Raises RLIMIT_NOFILE to `wanted` (soft and hard) if allowed, else the soft limit to
/// the hard one.
fn raise_nofile(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if setrlimit(Resource::RLIMIT_NOFILE, wanted.max(hard), wanted.max(hard)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

pub fn run(sozu: &Path, sozu21: Option<&Path>, quick: bool) -> Option<Section> {
    let (Some(wrk_bin), Some(nginx), Some(haproxy)) = (which("wrk"), which("nginx"), which("haproxy")) else {
        eprintln!("wrk, nginx or haproxy missing: the data-plane benchmarks are skipped");
        return None;
    };
    // 10,000 idle keep-alive connections need 10k fds here and 20k in the worker (each
    // client keeps its backend connection): raise the limits before the processes start
    // (they inherit them); raising the hard limit works as root, else it stays
    raise_nofile(65_536);
    let dir = std::env::temp_dir().join(format!("sozu-bench-traffic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (backend, http, tcp, hap) = (free_port(), free_port(), free_port(), free_port());
    let hap_tcp = free_port();
    let (s21_http, s21_tcp) = (free_port(), free_port());
    let d = dir.display();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/nginx.err;\n\
             events {{ worker_connections 4096; }}\nhttp {{ access_log off; keepalive_requests 10000000;\n\
             client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
             server {{ listen 127.0.0.1:{backend}; location / {{ return 200 \"hello from the backend\\n\"; }} }} }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("haproxy.cfg"),
        format!(
            "global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode http\n  timeout connect 3s\n  timeout client 30s\n\
             timeout server 30s\n  option http-keep-alive\n  http-reuse always\nfrontend f\n  bind 127.0.0.1:{hap}\n\
             default_backend b\nbackend b\n  server s1 127.0.0.1:{backend}\n\
             frontend ft\n  mode tcp\n  bind 127.0.0.1:{hap_tcp}\n  default_backend bt\n\
             backend bt\n  mode tcp\n  server s1 127.0.0.1:{backend}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("sozu.toml"),
        proxy_config(
            "command_socket = \"sozu.sock\"\nmax_connections = 20000\nlog_level = \"warn\"",
            http,
            tcp,
            backend,
        ),
    )
    .unwrap();
    let quiet = |c: &mut Command| {
        c.stdout(Stdio::null()).stderr(Stdio::null());
    };
    let mut procs = Procs(Vec::new());
    let mut c = Command::new(nginx);
    c.args(["-e", "stderr", "-c"]).arg(dir.join("nginx.conf"));
    quiet(&mut c);
    procs.0.push(c.spawn().expect("start nginx"));
    let mut c = Command::new(haproxy);
    c.arg("-db").arg("-f").arg(dir.join("haproxy.cfg"));
    quiet(&mut c);
    procs.0.push(c.spawn().expect("start haproxy"));
    let mut c = Command::new(sozu);
    c.args(["start", "-c"]).arg(dir.join("sozu.toml"));
    quiet(&mut c);
    procs.0.push(c.spawn().expect("start sozu"));
    // Sōzu 2.1 in the same configuration (one worker, the same listeners and clusters)
    if let Some(binary) = sozu21 {
        let head = format!("command_socket = \"{d}/sozu21.sock\"\nmax_connections = 1000\nlog_level = \"error\"");
        std::fs::write(dir.join("sozu21.toml"), proxy_config(&head, s21_http, s21_tcp, backend)).unwrap();
        let mut c = Command::new(binary);
        c.args(["start", "-c"]).arg(dir.join("sozu21.toml"));
        quiet(&mut c);
        procs.0.push(c.spawn().expect("start Sōzu 2.1"));
    }
    for port in [backend, hap, http, tcp, hap_tcp] {
        assert!(wait_port(port), "nothing listens on {port}");
    }
    // Sōzu 2.1 is only the comparison: if it does not come up (a port taken meanwhile),
    // its rows are left out and the run goes on
    let sozu21 = sozu21.filter(|_| {
        let up = wait_port(s21_http) && wait_port(s21_tcp);
        if !up {
            eprintln!("Sōzu 2.1 did not listen on {s21_http} and {s21_tcp}: its data-plane rows are left out");
        }
        up
    });
    std::thread::sleep(Duration::from_millis(300));
    // interleaved rounds; each figure is the best round (the least disturbed)
    let seconds = if quick { 2 } else { 5 };
    let rounds = if quick { 1 } else { 3 };
    let mut best = [(0.0f64, f64::MAX); 7];
    let order = [backend, http, tcp, hap, hap_tcp, s21_http, s21_tcp];
    for _ in 0..rounds {
        for (i, &port) in order.iter().enumerate().take(if sozu21.is_some() { 7 } else { 5 }) {
            let (rps, p99) = wrk(&wrk_bin, port, seconds);
            best[i].0 = best[i].0.max(rps);
            best[i].1 = best[i].1.min(p99);
        }
    }
    let [direct, ours_http, ours_tcp, haproxy_figures, haproxy_tcp, s21_http_figures, s21_tcp_figures] = best;
    let fmt = |(rps, p99): (f64, f64)| format!("{rps:.0} req/s, p99 {p99:.2} ms");
    let mut rows = vec![
        Row {
            name: "HTTP keep-alive through our HTTP listener vs HAProxy (1 thread), wrk -t1 -c50, nginx backend".into(),
            ours: fmt(ours_http),
            baseline: fmt(haproxy_figures),
            ratio: ours_http.0 / haproxy_figures.0,
            target: "≥ 1.0, p99 no worse".into(),
        },
        Row {
            name: "p99 latency through our HTTP listener / HAProxy's".into(),
            ours: format!("{:.2} ms", ours_http.1),
            baseline: format!("{:.2} ms", haproxy_figures.1),
            ratio: ours_http.1 / haproxy_figures.1,
            target: "≤ 1.0".into(),
        },
        Row {
            name: "HTTP keep-alive through our HTTP listener vs straight to the backend".into(),
            ours: fmt(ours_http),
            baseline: fmt(direct),
            ratio: ours_http.0 / direct.0,
            target: "— (Sōzu 2.1: 0.37)".into(),
        },
        Row {
            name: "the same through our TCP listener vs straight to the backend".into(),
            ours: fmt(ours_tcp),
            baseline: fmt(direct),
            ratio: ours_tcp.0 / direct.0,
            target: "≥ 0.8 (Sōzu 2.1: 0.56)".into(),
        },
        Row {
            name: "for reference: HAProxy (1 thread) in TCP mode vs straight to the backend".into(),
            ours: fmt(haproxy_tcp),
            baseline: fmt(direct),
            ratio: haproxy_tcp.0 / direct.0,
            target: "—".into(),
        },
        Row {
            name: "our TCP listener vs HAProxy (1 thread) in TCP mode".into(),
            ours: fmt(ours_tcp),
            baseline: fmt(haproxy_tcp),
            ratio: ours_tcp.0 / haproxy_tcp.0,
            target: "—".into(),
        },
    ];
    if sozu21.is_some() {
        rows.extend([
            Row {
                name: "for reference: Sōzu 2.1's HTTP listener (1 worker) vs straight to the backend".into(),
                ours: fmt(s21_http_figures),
                baseline: fmt(direct),
                ratio: s21_http_figures.0 / direct.0,
                target: "—".into(),
            },
            Row {
                name: "for reference: Sōzu 2.1's TCP listener (1 worker) vs straight to the backend".into(),
                ours: fmt(s21_tcp_figures),
                baseline: fmt(direct),
                ratio: s21_tcp_figures.0 / direct.0,
                target: "—".into(),
            },
            Row {
                name: "our TCP listener vs Sōzu 2.1's".into(),
                ours: fmt(ours_tcp),
                baseline: fmt(s21_tcp_figures),
                ratio: ours_tcp.0 / s21_tcp_figures.0,
                target: "—".into(),
            },
        ]);
    }
    // memory with 10,000 idle keep-alive connections (each served one request)
    let workers = std::fs::read_to_string(format!("/proc/{}/task/{}/children", procs.0[2].id(), procs.0[2].id()))
        .unwrap_or_default();
    if let Some(worker) = workers.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()) {
        let before = crate::master::rss_of(worker);
        let n = if quick { 2_000 } else { 10_000 };
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", http)) else { break };
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n");
            conns.push(s);
        }
        let mut buf = [0u8; 512];
        // served: answered 200 by the backend through the worker (not a 502 for want of fds)
        let mut served = 0;
        for s in &mut conns {
            if s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"HTTP/1.1 200")) {
                served += 1;
            }
        }
        let after = crate::master::rss_of(worker);
        rows.push(Row {
            name: format!("worker RSS with {served} idle keep-alive connections (one request served on each)"),
            ours: format!(
                "{after:.1} MiB ({:.1} KiB per connection)",
                (after - before) * 1024.0 / served.max(1) as f64
            ),
            baseline: format!("{before:.1} MiB (idle worker)"),
            ratio: after / before,
            target: "—".into(),
        });
        // what idle connections cost a busy worker (its timers walk the sessions): 1,000
        // fewer, so that wrk's connections fit under max_connections and the fd limit
        conns.truncate(conns.len().saturating_sub(1_000));
        let idle = conns.len();
        std::thread::sleep(Duration::from_millis(500));
        let mut loaded = (0.0f64, f64::MAX);
        for _ in 0..rounds {
            let (rps, p99) = wrk(&wrk_bin, http, seconds);
            loaded = (loaded.0.max(rps), loaded.1.min(p99));
        }
        rows.push(Row {
            name: format!(
                "HTTP keep-alive through our HTTP listener with {idle} of those idle connections open vs without"
            ),
            ours: fmt(loaded),
            baseline: fmt(ours_http),
            ratio: loaded.0 / ours_http.0,
            target: "—".into(),
        });
    }
    // routing among many frontends: 10,000 more names on the same HTTP listener (after
    // the memory row, whose idle worker holds two clusters)
    if let Some(more) = many_frontends(sozu, &dir, http) {
        let mut after = (0.0f64, f64::MAX);
        for _ in 0..rounds {
            let (rps, p99) = wrk(&wrk_bin, http, seconds);
            after = (after.0.max(rps), after.1.min(p99));
        }
        rows.push(Row {
            name: format!("HTTP keep-alive through our HTTP listener with {more} more frontends on it vs with one"),
            ours: fmt(after),
            baseline: fmt(ours_http),
            ratio: after.0 / ours_http.0,
            target: "—".into(),
        });
    }
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
    Some(Section {
        title: "Data plane (wrk, one worker, nginx backend, same machine)",
        baseline: "HAProxy 2.6 with one thread and keep-alive/reuse to the same nginx; nginx directly; with `--sozu21`, Sōzu 2.1.1 with one worker and the same listeners and clusters; every figure the best of 3 interleaved 5 s rounds",
        rows,
    })
}
