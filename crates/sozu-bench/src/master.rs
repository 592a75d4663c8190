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

fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(f64::NAN)
        / 1024.0
}

struct Conn(UnixStream);

impl Conn {
    fn send(&mut self, request: &Request) {
        let body = request.encode_to_vec();
        let mut frame = ((body.len() + 8) as u64).to_le_bytes().to_vec();
        frame.extend(body);
        self.0.write_all(&frame).unwrap();
    }

    fn call(&mut self, request: &Request) -> Response {
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

fn cli_rows(sozu: &Path, quick: bool) -> Vec<Row> {
    let m = Master::start(sozu, 2, "cli");
    let config = m.dir.join("config.toml");
    let runs = if quick { 20 } else { 100 };
    let time = |args: &[&str]| {
        let mut best = Duration::MAX;
        let mut total = Duration::ZERO;
        for _ in 0..runs {
            let start = Instant::now();
            let out = Command::new(sozu).arg("-c").arg(&config).args(args).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let t = start.elapsed();
            total += t;
            best = best.min(t);
        }
        total / runs
    };
    let version = time(&["--version"]);
    let status = time(&["status"]);
    vec![Row {
        name: format!("`sozu status` as a whole process, mean of {runs}"),
        ours: format!("{:.2} ms", status.as_secs_f64() * 1e3),
        baseline: format!("{:.2} ms (`sozu --version`)", version.as_secs_f64() * 1e3),
        ratio: status.as_secs_f64() / version.as_secs_f64(),
        target: "≤ 1.2 (Sōzu 2.1: 1.46)".into(),
    }]
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

fn load_rows(sozu: &Path, quick: bool) -> Vec<Row> {
    let sizes: &[usize] = if quick { &[10_000] } else { &[10_000, 100_000] };
    let mut rows = Vec::new();
    for &n in sizes {
        let mut state = sozu_state::ConfigState::new();
        state
            .dispatch(
                &R::AddHttpListener(HttpListenerConfig {
                    address: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)).into(),
                    sticky_name: "SOZUBALANCEID".into(),
                    ..Default::default()
                })
                .into(),
            )
            .unwrap();
        for i in 0..n {
            for r in cluster_requests(i) {
                state.dispatch(&r).unwrap();
            }
        }
        let m = Master::start(sozu, 2, &format!("load{n}"));
        let path = m.dir.join("bench.state");
        sozu_state::save_atomic(&path, &state).unwrap();
        let records = state.request_count();
        let mut c = m.connect();
        // the floor: parsing the same file in this process
        let start = Instant::now();
        let parsed = sozu_state::load_file(&sozu_state::ConfigState::new(), &path, 2_000_000).unwrap();
        let parse_only = start.elapsed();
        drop(parsed);
        let start = Instant::now();
        c.call(&R::LoadState(path.display().to_string()).into());
        let took = start.elapsed();
        let (master_rss, worker_rss) = m.rss_mib();
        rows.push(Row {
            name: format!("LoadState {n} clusters ({records} records), default buffers, until 2 workers acknowledged"),
            ours: format!(
                "{:.0} ms ({:.0} records/s); after: master {master_rss:.1} MiB, worker {worker_rss:.1} MiB",
                took.as_secs_f64() * 1e3,
                records as f64 / took.as_secs_f64()
            ),
            baseline: format!("{:.0} ms (parse + apply in one process)", parse_only.as_secs_f64() * 1e3),
            ratio: took.as_secs_f64() / parse_only.as_secs_f64(),
            target: if n == 10_000 { "≤ 100 ms; master ≤ 30 MiB, worker ≤ 50 MiB".into() } else { "—".into() },
        });
    }
    rows
}

pub fn run(sozu: &Path, quick: bool) -> Section {
    let mut rows = status_rows(sozu, quick);
    rows.extend(cli_rows(sozu, quick));
    rows.extend(fanout_rows(sozu, quick));
    rows.extend(load_rows(sozu, quick));
    Section {
        title: "Master (release `sozu` binary, real processes)",
        baseline: "status: the same bytes relayed over two socketpair hops; CLI: `sozu --version`; fan-out: Status round trips on the same connection; LoadState: parsing and applying the file in one process",
        rows,
    }
}
