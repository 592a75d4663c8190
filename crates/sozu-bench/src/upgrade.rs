//! Upgrades: the main upgrade (command sent → the new image answers `status`), a worker
//! upgrade (command sent → the new worker serves), and `sozu upgrade` (the master then
//! every worker), with 0, 10k and 100k clusters, against a cold start of a master with
//! the same state (what an upgrade replaces: a restart), timed without load; then the
//! same upgrades again under TCP load, counting failed connections.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sozu_proto::request::RequestType as R;
use sozu_proto::*;

use crate::master::Conn;
use crate::state::cluster_requests;
use crate::{Row, Section};

/// An echo backend that answers every connection with what it read.
fn echo_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                if let Ok(n) = conn.read(&mut buf) {
                    let _ = conn.write_all(&buf[..n]);
                }
            });
        }
    });
    port
}

struct Running {
    dir: std::path::PathBuf,
    child: Child,
}

impl Running {
    fn connect(&self) -> Conn {
        Conn(UnixStream::connect(self.dir.join("sozu.sock")).unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut c) = UnixStream::connect(self.dir.join("sozu.sock")).map(Conn) {
            c.send(&R::HardStop(HardStop {}).into());
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a master with a TCP listener to `backend` and `saved_state`; returns it and
/// how long it took to answer `status` (a cold start).
fn start(sozu: &Path, dir: &Path, tcp: u16, backend: u16) -> (Running, Duration) {
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "command_socket = \"sozu.sock\"\nworker_count = 2\nworker_timeout = 60\nlog_level = \"warn\"\n\
             saved_state = \"bench.state\"\nmax_connections = 2000\n\
             [[listeners]]\nprotocol = \"tcp\"\naddress = \"127.0.0.1:{tcp}\"\n\
             [clusters.load]\nprotocol = \"tcp\"\nfrontends = [{{ address = \"127.0.0.1:{tcp}\" }}]\n\
             backends = [{{ address = \"127.0.0.1:{backend}\", backend_id = \"echo\" }}]\n"
        ),
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.join("sozu.sock"));
    let started = Instant::now();
    let child = Command::new(sozu)
        .args(["start", "-c"])
        .arg(dir.join("config.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sozu");
    let running = Running { dir: dir.to_path_buf(), child };
    loop {
        if let Ok(stream) = UnixStream::connect(dir.join("sozu.sock")) {
            let mut c = Conn(stream);
            c.call(&R::Status(Status {}).into());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "master did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    (running, started.elapsed())
}

/// TCP round trips through `port` in a loop: (successes, failures).
fn load(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let ok = AtomicUsize::new(0);
        let mut failed = 0;
        while !stop.load(Ordering::Relaxed) {
            let done = (|| -> std::io::Result<bool> {
                let mut s = TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"ping")?;
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf)?;
                Ok(&buf == b"ping")
            })();
            match done {
                Ok(true) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                _ => failed += 1,
            }
        }
        (ok.into_inner(), failed)
    })
}

fn worker_ids(c: &mut Conn) -> Vec<u32> {
    match c.call(&R::ListWorkers(ListWorkers {}).into()).content.and_then(|c| c.content_type) {
        Some(response_content::ContentType::Workers(w)) => {
            w.vec.iter().filter(|w| w.run_state == RunState::Running as i32).map(|w| w.id).collect()
        }
        _ => Vec::new(),
    }
}

/// One main upgrade, one worker upgrade, one `sozu upgrade` (master and each worker):
/// their durations.
fn upgrade_round(running: &Running) -> (Duration, Duration, Duration) {
    // the master alone, until the new image answers `status`
    let started = Instant::now();
    let answer = running.connect().call(&R::UpgradeMain(UpgradeMain {}).into());
    assert!(answer.message.contains("Upgrade successful"), "{}", answer.message);
    running.connect().call(&R::Status(Status {}).into());
    let main = started.elapsed();
    // one worker, until the new one serves
    let id = worker_ids(&mut running.connect())[0];
    let started = Instant::now();
    running.connect().call(&R::UpgradeWorker(id).into());
    let worker = started.elapsed();
    // `sozu upgrade`: the master, then every worker
    let started = Instant::now();
    let mut c = running.connect();
    c.call(&R::UpgradeMain(UpgradeMain {}).into());
    for id in worker_ids(&mut c) {
        c.call(&R::UpgradeWorker(id).into());
    }
    (main, worker, started.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The whole `sozu upgrade` CLI process against a master (`binary -c config upgrade`),
/// best of `runs`; `None` if it failed.
fn cli_upgrade(binary: &Path, config: &Path, runs: usize) -> Option<Duration> {
    let mut best = None;
    for _ in 0..runs {
        let started = Instant::now();
        let out = Command::new(binary).arg("-c").arg(config).arg("upgrade").output().ok()?;
        let took = started.elapsed();
        if !out.status.success() {
            eprintln!("{} upgrade failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
            return None;
        }
        best = Some(best.map_or(took, |b: Duration| b.min(took)));
        std::thread::sleep(Duration::from_millis(300));
    }
    best
}

/// Kills this process's children (adopted orphans included) that run `binary`.
fn kill_children_running(binary: &Path) {
    let me = std::process::id();
    let tasks =
        std::fs::read_dir(format!("/proc/{me}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    for task in tasks {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe == binary || std::fs::canonicalize(binary).is_ok_and(|b| b == exe) {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
        }
    }
}

/// `sozu upgrade` with our CLI against our master, and with Sōzu 2.1's CLI against its
/// master holding the same state, in the same run.
fn sozu21_rows(sozu: &Path, sozu21: &Path, running: &Running, n: usize, label: &str) -> Vec<Row> {
    let ours = cli_upgrade(sozu, &running.dir.join("config.toml"), 3);
    // the same clusters, behind the HTTP listener Sōzu wants for their frontends
    let mut state = sozu_state::ConfigState::new();
    let listener = HttpListenerConfig {
        address: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)).into(),
        sticky_name: "SOZUBALANCEID".into(),
        ..Default::default()
    };
    state.dispatch(&R::AddHttpListener(Box::new(listener)).into()).unwrap();
    for i in 0..n {
        for r in cluster_requests(i) {
            state.dispatch(&r).unwrap();
        }
    }
    let file = running.dir.join("sozu21.state");
    sozu_state::save_atomic(&file, &state).unwrap();
    drop(state);
    // Sōzu's upgraded master is a grandchild whose parent exits: adopted here (as a
    // subreaper) so that it can be found and stopped afterwards
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let theirs = {
        let s = crate::master::Sozu21::start(sozu21, "upgrade");
        let loaded = s.connect().call(&R::LoadState(file.display().to_string()).into());
        if loaded.status == ResponseStatus::Ok as i32 {
            cli_upgrade(sozu21, &s.dir.join("config.toml"), 3)
        } else {
            eprintln!("Sōzu 2.1 did not load the state: {}", loaded.message);
            None
        }
    };
    kill_children_running(sozu21);
    match (ours, theirs) {
        (Some(ours), Some(theirs)) => vec![Row {
            name: format!(
                "`sozu upgrade` as a whole CLI process (master, then each of 2 workers), {label}: ours / Sōzu 2.1's, same run, best of 3"
            ),
            ours: ms(ours),
            baseline: format!("{} (Sōzu 2.1.1, its CLI and master, same state)", ms(theirs)),
            ratio: ours.as_secs_f64() / theirs.as_secs_f64(),
            target: "≤ 0.35 (150 ms / Sōzu's 433 ms on the reference machine)".into(),
        }],
        _ => Vec::new(),
    }
}

pub fn run(sozu: &Path, sozu21: Option<&Path>, quick: bool) -> Section {
    let sizes: &[usize] = if quick { &[0, 10_000] } else { &[0, 10_000, 100_000] };
    let backend = echo_backend();
    let mut rows = Vec::new();
    for &n in sizes {
        let dir = std::env::temp_dir().join(format!("sozu-bench-upgrade-{n}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut state = sozu_state::ConfigState::new();
        for i in 0..n {
            for r in cluster_requests(i) {
                state.dispatch(&r).unwrap();
            }
        }
        sozu_state::save_atomic(&dir.join("bench.state"), &state).unwrap();
        drop(state);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (running, cold) = start(sozu, &dir, tcp, backend);
        // timings on a quiet machine
        let rounds = if n >= 100_000 { 1 } else { 3 };
        let (mut main, mut worker, mut full) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..rounds {
            let (m, w, f) = upgrade_round(&running);
            main = main.min(m);
            worker = worker.min(w);
            full = full.min(f);
        }
        let compared = match sozu21.filter(|_| n == 10_000) {
            Some(binary) => sozu21_rows(sozu, binary, &running, n, &format!("{n} clusters")),
            None => Vec::new(),
        };
        // then the same upgrades under TCP load: not one connection may fail
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = load(tcp, stop.clone());
        std::thread::sleep(Duration::from_millis(50));
        let mut upgrades = 0;
        for _ in 0..rounds {
            upgrade_round(&running);
            upgrades += 5;
        }
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        let (ok, failed) = traffic.join().unwrap();
        drop(running);
        let _ = std::fs::remove_dir_all(&dir);
        let label = if n == 0 { "no cluster".to_string() } else { format!("{n} clusters") };
        let best = if rounds > 1 { ", best of 3" } else { "" };
        rows.push(Row {
            name: format!("main upgrade, {label}: command sent → the new image answers `status`{best}"),
            ours: ms(main),
            baseline: format!("{} (cold start of a master with the same state)", ms(cold)),
            ratio: main.as_secs_f64() / cold.as_secs_f64(),
            target: "—".into(),
        });
        rows.push(Row {
            name: format!("worker upgrade, {label}: command sent → the new worker serves{best}"),
            ours: ms(worker),
            baseline: format!("{} (cold start)", ms(cold)),
            ratio: worker.as_secs_f64() / cold.as_secs_f64(),
            target: if n == 10_000 { "≤ 80 ms (Sōzu 2.1: 228 ms)".into() } else { "—".into() },
        });
        rows.push(Row {
            name: format!("`sozu upgrade` (master, then each of 2 workers), {label}{best}"),
            ours: ms(full),
            baseline: format!("{} (cold start)", ms(cold)),
            ratio: full.as_secs_f64() / cold.as_secs_f64(),
            target: if n == 10_000 { "≤ 150 ms (Sōzu 2.1: 433 ms)".into() } else { "—".into() },
        });
        rows.extend(compared);
        rows.push(Row {
            name: format!("TCP connections through the proxy during {upgrades} more upgrades, {label}"),
            ours: format!("{failed} failed"),
            baseline: format!("{} succeeded", ok),
            ratio: failed as f64 / (ok + failed).max(1) as f64,
            target: "0 failed".into(),
        });
    }
    Section {
        title: "Upgrades (release `sozu` binary, 2 workers, TCP load from a client loop)",
        baseline: "a cold start of a master with the same saved state (spawn → `status` answered), the restart an upgrade avoids",
        rows,
    }
}
