//! The master under load: status round trips against a bare two-hop ping-pong, the
//! `sozu status` CLI process against `sozu --version`, fan-out of mutations, and
//! LoadState of large states, with the RSS of the master and workers after.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use sozu_proto::request::RequestType as R;
use sozu_proto::*;

use crate::state::cluster_requests;
use crate::{Row, Section};

struct Master {
    dir: PathBuf,
    child: Child,
}

impl Master {
    fn start(sozu: &Path, workers: u16, tag: &str) -> Master {
        let dir = std::env::temp_dir().join(format!("sozu-bench-master-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "command_socket = \"sozu.sock\"\nworker_count = {workers}\nworker_timeout = 30\nlog_level = \"warn\"\n"
            ),
        )
        .unwrap();
        let child = Command::new(sozu)
            .args(["start", "-c"])
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start the master");
        let end = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(dir.join("sozu.sock")).is_err() {
            assert!(Instant::now() < end, "master did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let m = Master { dir, child };
        // wait until every worker answers
        let mut c = m.connect();
        c.call(&R::Status(Status {}).into());
        m
    }

    fn connect(&self) -> Conn {
        Conn(UnixStream::connect(self.dir.join("sozu.sock")).unwrap())
    }

    fn rss_mib(&self) -> (f64, f64) {
        let mut c = self.connect();
        let r = c.call(&R::ListWorkers(ListWorkers {}).into());
        let workers: Vec<i32> = match r.content.and_then(|c| c.content_type) {
            Some(response_content::ContentType::Workers(w)) => w.vec.iter().map(|w| w.pid).collect(),
            _ => Vec::new(),
        };
        let worker_max = workers.iter().map(|p| rss_of(*p as u32)).fold(0.0, f64::max);
        (rss_of(self.child.id()), worker_max)
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let mut c = self.connect();
        c.send(&R::HardStop(HardStop {}).into());
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Sōzu 2.1 master (its own binary, given by `--sozu21 PATH`), for same-run
/// comparisons. Its buffers are enlarged: with the defaults a large LoadState kills its
/// workers.
pub(crate) struct Sozu21 {
    pub(crate) dir: PathBuf,
    pub(crate) child: Child,
}

impl Sozu21 {
    pub(crate) fn start(binary: &Path, tag: &str) -> Sozu21 {
        let dir = std::env::temp_dir().join(format!("sozu-bench-sozu21-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("sozu.sock");
        std::fs::write(
            dir.join("config.toml"),
            format!(
                "command_socket = \"{}\"\nworker_count = 2\nworker_automatic_restart = false\nlog_level = \"warn\"\n\
                 command_buffer_size = 16384000\nmax_command_buffer_size = 163840000\nmax_connections = 1000\n",
                socket.display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .args(["start", "-c"])
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Sōzu 2.1");
        let end = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < end, "Sōzu 2.1 did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = Sozu21 { dir, child };
        s.connect().call(&R::Status(Status {}).into());
        s
    }

    pub(crate) fn connect(&self) -> Conn {
        Conn(UnixStream::connect(self.dir.join("sozu.sock")).unwrap())
    }
}

impl Drop for Sozu21 {
    fn drop(&mut self) {
        let _ = self.connect().0.write_all(&{
            let body = Request::from(R::HardStop(HardStop {})).encode_to_vec();
            let mut frame = ((body.len() + 8) as u64).to_le_bytes().to_vec();
            frame.extend(body);
            frame
        });
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Mean wall time of `runs` runs of `binary -c config args`.
fn mean_run(binary: &Path, config: &Path, args: &[&str], runs: u32) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new(binary).arg("-c").arg(config).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        total += start.elapsed();
    }
    total / runs
}

/// Resident memory of a process, in MiB.
pub(crate) fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN)
        / 1024.0
}

pub(crate) struct Conn(pub(crate) UnixStream);

impl Conn {
    pub(crate) fn send(&mut self, request: &Request) {
        let body = request.encode_to_vec();
        let mut frame = ((body.len() + 8) as u64).to_le_bytes().to_vec();
        frame.extend(body);
        self.0.write_all(&frame).unwrap();
    }

    pub(crate) fn call(&mut self, request: &Request) -> Response {
        self.send(request);
        loop {
            let mut prefix = [0u8; 8];
            self.0.read_exact(&mut prefix).unwrap();
            let mut body = vec![0; u64::from_le_bytes(prefix) as usize - 8];
            self.0.read_exact(&mut body).unwrap();
            let r = Response::decode(body.as_slice()).unwrap();
            if r.status != ResponseStatus::Processing as i32 {
                assert_eq!(r.status, ResponseStatus::Ok as i32, "{}", r.message);
                return r;
            }
        }
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Baseline: the same request and answer bytes relayed over two socketpair hops
/// (client → relay → echo and back), as client → master → worker.
fn bare_two_hops(request: &[u8], answer: &[u8], rounds: usize) -> Vec<Duration> {
    let (mut client, mut relay_a) = UnixStream::pair().unwrap();
    let (mut relay_b, mut echo) = UnixStream::pair().unwrap();
    let (req_len, ans_len) = (request.len(), answer.len());
    let answer = answer.to_vec();
    let relay = std::thread::spawn(move || {
        let mut buf = vec![0u8; req_len.max(ans_len)];
        for _ in 0..rounds {
            relay_a.read_exact(&mut buf[..req_len]).unwrap();
            relay_b.write_all(&buf[..req_len]).unwrap();
            relay_b.read_exact(&mut buf[..ans_len]).unwrap();
            relay_a.write_all(&buf[..ans_len]).unwrap();
        }
    });
    let echoer = std::thread::spawn(move || {
        let mut buf = vec![0u8; req_len];
        for _ in 0..rounds {
            echo.read_exact(&mut buf).unwrap();
            echo.write_all(&answer).unwrap();
        }
    });
    let mut samples = Vec::with_capacity(rounds);
    let mut buf = vec![0u8; ans_len];
    for _ in 0..rounds {
        let start = Instant::now();
        client.write_all(request).unwrap();
        client.read_exact(&mut buf).unwrap();
        samples.push(start.elapsed());
    }
    relay.join().unwrap();
    echoer.join().unwrap();
    samples
}

fn status_rows(sozu: &Path, quick: bool) -> Vec<Row> {
    let rounds = if quick { 500 } else { 5000 };
    let mut rows = Vec::new();
    for workers in [2u16, 8] {
        let m = Master::start(sozu, workers, &format!("status{workers}"));
        let mut c = m.connect();
        let request: Request = R::Status(Status {}).into();
        for _ in 0..50 {
            c.call(&request);
        }
        let mut ours: Vec<Duration> = (0..rounds)
            .map(|_| {
                let start = Instant::now();
                c.call(&request);
                start.elapsed()
            })
            .collect();
        let answer = c.call(&request).encode_to_vec();
        let frame = |body: Vec<u8>| {
            let mut f = ((body.len() + 8) as u64).to_le_bytes().to_vec();
            f.extend(body);
            f
        };
        let mut bare = bare_two_hops(&frame(request.encode_to_vec()), &frame(answer), rounds);
        for (p, name) in [(0.5, "p50"), (0.99, "p99")] {
            let (o, b) = (percentile(&mut ours, p), percentile(&mut bare, p));
            rows.push(Row {
                name: format!("status round trip {name}, {workers} workers, persistent connection"),
                ours: micros(o),
                baseline: micros(b),
                ratio: o.as_secs_f64() / b.as_secs_f64(),
                target: "—".into(),
            });
        }
    }
    rows
}

fn cli_rows(sozu: &Path, sozu21: Option<&Path>, quick: bool) -> Vec<Row> {
    let m = Master::start(sozu, 2, "cli");
    let config = m.dir.join("config.toml");
    let runs = if quick { 20 } else { 100 };
    // interleaved, so that a slow moment of the machine hits both
    let (mut version, mut status) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..runs / 10 {
        version += mean_run(sozu, &config, &["--version"], 10);
        status += mean_run(sozu, &config, &["status"], 10);
    }
    let (version, status) = (version / (runs / 10), status / (runs / 10));
    let mut rows = vec![Row {
        name: format!("`sozu status` as a whole process, mean of {runs}"),
        ours: format!("{:.2} ms", status.as_secs_f64() * 1e3),
        baseline: format!("{:.2} ms (`sozu --version`)", version.as_secs_f64() * 1e3),
        ratio: status.as_secs_f64() / version.as_secs_f64(),
        target: "≤ 1.2 (Sōzu 2.1: 1.46)".into(),
    }];
    rows.push(big_file_row(sozu, &config, runs, "`sozu status`", ""));
    drop(m);
    if let Some(binary) = sozu21 {
        let s = Sozu21::start(binary, "cli");
        let config = s.dir.join("config.toml");
        let version = mean_run(binary, &config, &["--version"], runs);
        let status = mean_run(binary, &config, &["status"], runs);
        rows.push(Row {
            name: format!("Sōzu 2.1's `sozu status` against its master, mean of {runs} (for comparison)"),
            ours: format!("{:.2} ms", status.as_secs_f64() * 1e3),
            baseline: format!("{:.2} ms (its `sozu --version`)", version.as_secs_f64() * 1e3),
            ratio: status.as_secs_f64() / version.as_secs_f64(),
            target: "—".into(),
        });
        rows.push(big_file_row(binary, &config, runs, "Sōzu 2.1's `sozu status`", " (for comparison)"));
    }
    rows
}

/// `status` with `config` plus 10,000 clusters (an operator's whole file) against
/// `status` with `config` alone, interleaved.
fn big_file_row(binary: &Path, config: &Path, runs: u32, what: &str, note: &str) -> Row {
    let big = config.with_file_name("big.toml");
    let mut text = std::fs::read_to_string(config).unwrap();
    for i in 0..10_000 {
        text.push_str(&format!(
            "\n[clusters.c{i}]\nprotocol = \"http\"\nfrontends = [{{ address = \"127.0.0.1:8080\", hostname = \"c{i}.example.com\" }}]\n\
             backends = [{{ address = \"127.0.0.1:9001\" }}, {{ address = \"127.0.0.1:9002\" }}]\n"
        ));
    }
    std::fs::write(&big, text).unwrap();
    let (mut small, mut large) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..runs / 10 {
        small += mean_run(binary, config, &["status"], 10);
        large += mean_run(binary, &big, &["status"], 10);
    }
    let rounds = f64::from(runs / 10);
    Row {
        name: format!("{what} with 10,000 clusters in its configuration file, mean of {runs}{note}"),
        ours: format!("{:.2} ms", large.as_secs_f64() * 1e3 / rounds),
        baseline: format!("{:.2} ms (the same file without the clusters)", small.as_secs_f64() * 1e3 / rounds),
        ratio: large.as_secs_f64() / small.as_secs_f64(),
        target: "—".into(),
    }
}

fn fanout_rows(sozu: &Path, quick: bool) -> Vec<Row> {
    let clusters = if quick { 1000 } else { 10_000 };
    let m = Master::start(sozu, 2, "fanout");
    let mut c = m.connect();
    let status: Request = R::Status(Status {}).into();
    let start = Instant::now();
    for _ in 0..clusters {
        c.call(&status);
    }
    let status_time = start.elapsed();
    let start = Instant::now();
    for i in 0..clusters {
        for r in cluster_requests(i) {
            c.call(&r);
        }
    }
    let took = start.elapsed();
    let verbs = (clusters * 4) as f64;
    let (master_rss, worker_rss) = m.rss_mib();
    vec![Row {
        name: format!(
            "fan-out: {clusters} × (AddCluster, AddHttpFrontend, 2 × AddBackend), one by one, acknowledged by 2 workers"
        ),
        ours: format!(
            "{:.0} verbs/s; after: master {master_rss:.1} MiB, worker {worker_rss:.1} MiB",
            verbs / took.as_secs_f64()
        ),
        baseline: format!("{:.0} Status round trips/s", clusters as f64 / status_time.as_secs_f64()),
        ratio: (verbs / took.as_secs_f64()) / (clusters as f64 / status_time.as_secs_f64()),
        target: "—".into(),
    }]
}

fn load_rows(sozu: &Path, sozu21: Option<&Path>, quick: bool) -> Vec<Row> {
    let sizes: &[usize] = if quick { &[10_000] } else { &[10_000, 100_000] };
    let mut rows = Vec::new();
    for &n in sizes {
        let mut state = sozu_state::ConfigState::new();
        state
            .dispatch(
                &R::AddHttpListener(Box::new(HttpListenerConfig {
                    address: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)).into(),
                    sticky_name: "SOZUBALANCEID".into(),
                    ..Default::default()
                }))
                .into(),
            )
            .unwrap();
        for i in 0..n {
            for r in cluster_requests(i) {
                state.dispatch(&r).unwrap();
            }
        }
        let records = state.request_count();
        let file = std::env::temp_dir().join(format!("sozu-bench-load{n}-{}.state", std::process::id()));
        sozu_state::save_atomic(&file, &state).unwrap();
        drop(state);
        // the floor: parsing the same file in this process
        let start = Instant::now();
        let parsed = sozu_state::load_file(&sozu_state::ConfigState::new(), &file, 2_000_000).unwrap();
        let parse_only = start.elapsed();
        drop(parsed);
        // best of 3 (each on a fresh master) at 10k, one run at 100k
        let runs = if n <= 10_000 { 3 } else { 1 };
        let mut took = Duration::MAX;
        let (mut master_rss, mut worker_rss) = (0.0, 0.0);
        for run in 0..runs {
            let m = Master::start(sozu, 2, &format!("load{n}-{run}"));
            let mut c = m.connect();
            let start = Instant::now();
            c.call(&R::LoadState(file.display().to_string()).into());
            took = took.min(start.elapsed());
            (master_rss, worker_rss) = m.rss_mib();
        }
        rows.push(Row {
            name: format!(
                "LoadState {n} clusters ({records} records), default buffers, until 2 workers acknowledged{}",
                if runs > 1 { ", best of 3" } else { "" }
            ),
            ours: format!(
                "{:.0} ms ({:.0} records/s); after: master {master_rss:.1} MiB, worker {worker_rss:.1} MiB",
                took.as_secs_f64() * 1e3,
                records as f64 / took.as_secs_f64()
            ),
            baseline: format!("{:.0} ms (parse + apply in one process)", parse_only.as_secs_f64() * 1e3),
            ratio: took.as_secs_f64() / parse_only.as_secs_f64(),
            target: if n == 10_000 { "≤ 100 ms; master ≤ 30 MiB, worker ≤ 50 MiB".into() } else { "—".into() },
        });
        if let Some(binary) = sozu21.filter(|_| n == 10_000) {
            let s = Sozu21::start(binary, "load");
            let mut c = s.connect();
            let start = Instant::now();
            c.call(&R::LoadState(file.display().to_string()).into());
            let theirs = start.elapsed();
            let pids: Vec<u32> =
                std::fs::read_to_string(format!("/proc/{}/task/{}/children", s.child.id(), s.child.id()))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
            let their_worker = pids.iter().map(|p| rss_of(*p)).fold(0.0, f64::max);
            rows.push(Row {
                name: format!("LoadState {n} clusters: ours (best of 3) / Sōzu 2.1 (enlarged buffers), same run"),
                ours: format!("{:.0} ms", took.as_secs_f64() * 1e3),
                baseline: format!(
                    "{:.0} ms; after: master {:.1} MiB, worker {their_worker:.1} MiB",
                    theirs.as_secs_f64() * 1e3,
                    rss_of(s.child.id())
                ),
                ratio: took.as_secs_f64() / theirs.as_secs_f64(),
                target: "≤ 0.26 (100 ms / Sōzu's 380 ms on the reference machine)".into(),
            });
        }
        let _ = std::fs::remove_file(&file);
    }
    rows
}

pub fn run(sozu: &Path, sozu21: Option<&Path>, quick: bool, load_only: bool) -> Section {
    let mut rows = Vec::new();
    if !load_only {
        rows.extend(status_rows(sozu, quick));
        rows.extend(cli_rows(sozu, sozu21, quick));
        rows.extend(fanout_rows(sozu, quick));
    }
    rows.extend(load_rows(sozu, sozu21, quick));
    Section {
        title: "Master (release `sozu` binary, real processes)",
        baseline: "status: the same bytes relayed over two socketpair hops; CLI: `sozu --version`; fan-out: Status round trips on the same connection; LoadState: parsing and applying the file in one process",
        rows,
    }
}
