//! End to end: the real `sozu` binary with 2 workers on loopback, driven by the real
//! CLI and by a raw client.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use sozu_proto::request::RequestType as R;
use sozu_proto::response_content::ContentType;
use sozu_proto::*;

const SOZU: &str = env!("CARGO_BIN_EXE_sozu");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running master in its own directory; killed (with its workers) on drop.
struct Master {
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    http_port: u16,
    tcp_port: u16,
}

impl Master {
    fn start(name: &str, extra: &str) -> Master {
        Self::start_with(name, extra, 10)
    }

    /// With `worker_timeout = timeout` seconds (short only where a test needs it: a
    /// loaded CI machine can take more than a second to answer).
    fn start_with(name: &str, extra: &str, timeout: u32) -> Master {
        let dir = std::env::temp_dir().join(format!("sozu-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (http_port, tcp_port) = (free_port(), free_port());
        let extra = extra.replace("TCP_PORT", &tcp_port.to_string());
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"command_socket = "sozu.sock"
worker_count = 2
worker_timeout = {timeout}
saved_state = "saved.state"
audit_logs_target = "audit.log"
audit_logs_json_target = "audit.json"
pid_file_path = "sozu.pid"
log_level = "info"
{extra}

[[listeners]]
protocol = "http"
address = "127.0.0.1:{http_port}"

[[listeners]]
protocol = "tcp"
address = "127.0.0.1:{tcp_port}"

[clusters.web]
protocol = "http"
frontends = [{{ address = "127.0.0.1:{http_port}", hostname = "web.example" }}]
backends = [{{ address = "127.0.0.1:9001", backend_id = "web-1" }}]
"#
            ),
        )
        .unwrap();
        let child = Command::new(SOZU)
            .args(["start", "-c"])
            .arg(&config)
            .stdout(std::fs::File::create(dir.join("master.log")).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let master = Master { dir, config, child: Some(child), http_port, tcp_port };
        master.wait_ready();
        master
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("sozu.sock")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn wait_ready(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if UnixStream::connect(self.socket()).is_ok() && self.log().contains("ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("master not ready: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("master.log")).unwrap_or_default()
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(SOZU).arg("-c").arg(&self.config).args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "sozu {args:?} failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
        stdout
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(!out.status.success(), "sozu {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn raw(&self) -> Raw {
        let s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw(s)
    }

    fn worker_pids(&self) -> Vec<i32> {
        let out = self.ok(&["-j", "status"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["WORKERS"]["vec"].as_array().unwrap().iter().map(|w| w["pid"].as_i64().unwrap() as i32).collect()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        self.ok(&["shutdown"]);
        let mut child = self.child.take().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "master did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGINT);
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A raw protocol client.
struct Raw(UnixStream);

impl Raw {
    fn send(&mut self, request: &Request) {
        let body = request.encode_to_vec();
        self.0.write_all(&((body.len() + 8) as u64).to_le_bytes()).unwrap();
        self.0.write_all(&body).unwrap();
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    /// Next response, or None at EOF.
    fn recv(&mut self) -> Option<Response> {
        let mut prefix = [0u8; 8];
        if self.0.read_exact(&mut prefix).is_err() {
            return None;
        }
        let len = u64::from_le_bytes(prefix) as usize;
        let mut body = vec![0; len - 8];
        self.0.read_exact(&mut body).unwrap();
        Some(Response::decode(body.as_slice()).unwrap())
    }

    /// Next terminal response.
    fn terminal(&mut self) -> Response {
        loop {
            let r = self.recv().expect("an answer");
            if r.status != ResponseStatus::Processing as i32 {
                return r;
            }
        }
    }
}

fn count_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn every_verb_through_the_cli() {
    let mut m = Master::start("verbs", "");
    let http = format!("127.0.0.1:{}", m.http_port);
    let tcp = format!("127.0.0.1:{}", m.tcp_port);
    assert!(m.ok(&["status"]).contains("RUNNING"));
    assert_eq!(m.worker_pids().len(), 2);
    m.ok(&["cluster", "add", "-i", "api", "--load-balancing-policy", "random"]);
    m.ok(&["backend", "add", "-i", "api", "--backend-id", "api-1", "-a", "127.0.0.1:9100"]);
    m.ok(&["frontend", "http", "add", "-a", &http, "--hostname", "api.example", "-p", "/v1", "id", "api"]);
    m.ok(&["cluster", "add", "-i", "db"]);
    m.ok(&["frontend", "tcp", "add", "-i", "db", "-a", "127.0.0.1:7777"]);
    let list = m.ok(&["frontend", "list"]);
    assert!(list.contains("api.example") && list.contains("127.0.0.1:7777"), "{list}");
    let one = m.ok(&["cluster", "list", "-i", "api"]);
    assert!(one.contains("backend api-1 127.0.0.1:9100"), "{one}");
    let by_domain = m.ok(&["-j", "cluster", "list", "-d", "api.example/v1"]);
    assert!(by_domain.contains("\"main\""), "{by_domain}");
    let hashes = m.ok(&["-j", "cluster", "list"]);
    let v: serde_json::Value = serde_json::from_str(&hashes).unwrap();
    let map = &v["WORKER_RESPONSES"]["map"];
    assert_eq!(map["0"], map["main"], "worker 0 holds the master's state");
    assert_eq!(map["1"], map["main"], "worker 1 holds the master's state");

    m.ok(&["listener", "http", "add", "-a", "127.0.0.1:18999"]);
    m.ok(&["listener", "http", "update", "-a", "127.0.0.1:18999", "--front-timeout", "5"]);
    m.ok(&["listener", "http", "activate", "-a", "127.0.0.1:18999"]);
    m.ok(&["listener", "http", "deactivate", "-a", "127.0.0.1:18999"]);
    m.ok(&["listener", "tcp", "add", "-a", "127.0.0.1:18998"]);
    let listeners = m.ok(&["listener", "list"]);
    assert!(listeners.contains("127.0.0.1:18999") && listeners.contains(&tcp), "{listeners}");
    m.ok(&["listener", "http", "remove", "-a", "127.0.0.1:18999"]);
    m.ok(&["listener", "tcp", "remove", "-a", "127.0.0.1:18998"]);

    let err = m.fails(&["frontend", "tcp", "add", "-i", "nope", "-a", "127.0.0.1:7778"]);
    assert!(err.contains("Request failed: could not dispatch") && err.contains("unknown cluster"), "{err}");

    m.ok(&["frontend", "http", "remove", "-a", &http, "--hostname", "api.example", "-p", "/v1", "id", "api"]);
    m.ok(&["frontend", "tcp", "remove", "-i", "db", "-a", "127.0.0.1:7777"]);
    m.ok(&["backend", "remove", "-i", "api", "--backend-id", "api-1", "-a", "127.0.0.1:9100"]);
    m.ok(&["logging", "debug"]);
    assert!(m.fails(&["logging", "loud"]).contains("not a level"));
    m.ok(&["metrics", "enable"]);
    assert!(m.ok(&["-j", "metrics", "get"]).contains("METRICS"));
    let saved = m.dir.join("copy.state");
    assert!(m.ok(&["state", "save", "-f", saved.to_str().unwrap()]).contains("Saved"));
    m.ok(&["cluster", "remove", "-i", "api"]);
    m.ok(&["cluster", "remove", "-i", "db"]);
    assert!(m.ok(&["state", "load", "-f", saved.to_str().unwrap()]).contains("Successfully loaded state"));
    assert!(m.ok(&["cluster", "list", "-i", "api"]).contains("cluster api"));
    let stats = m.ok(&["state", "stats"]);
    assert!(stats.contains("AddCluster") && stats.contains("2"), "{stats}");
    assert!(m.fails(&["upgrade"]).contains("not supported"));
    assert!(m.ok(&["config", "check"]).contains("valid"));

    let status = m.stop();
    assert!(status.success(), "clean stop: {status:?}");
    assert!(!m.socket().exists(), "socket removed");
    assert!(!m.dir.join("sozu.pid").exists(), "pid file removed");
    // audit: the JSON chain verifies, every mutation recorded
    let verify = Command::new(SOZU).args(["audit", "verify"]).arg(m.dir.join("audit.json")).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let text = std::fs::read_to_string(m.dir.join("audit.log")).unwrap();
    assert_eq!(text.matches("verb=cluster_added").count(), 4, "attempt + completion for each of 2 adds");
    assert!(text.lines().all(|l| l.contains("\tAUDIT\tCommand(ts=")));
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    let m = Master::start("pipeline", "");
    let mut raw = m.raw();
    raw.send(&R::AddCluster(Cluster { cluster_id: "p1".into(), ..Default::default() }).into());
    raw.send(&R::QueryClusterById("p1".into()).into());
    raw.send(&R::CountRequests(CountRequests {}).into());
    let first = raw.terminal();
    assert_eq!(first.status, ResponseStatus::Ok as i32, "{}", first.message);
    let second = raw.terminal();
    assert!(matches!(second.content.and_then(|c| c.content_type), Some(ContentType::WorkerResponses(_))));
    let third = raw.terminal();
    assert!(matches!(third.content.and_then(|c| c.content_type), Some(ContentType::RequestCounts(_))));
}

#[test]
fn bad_frames_get_an_answer_or_a_close_and_the_master_keeps_serving() {
    let m = Master::start("frames", "");
    // a prefix declaring 5 bytes: answered, then the stream goes on
    let mut raw = m.raw();
    raw.send_bytes(&5u64.to_le_bytes());
    let r = raw.terminal();
    assert!(r.message.contains("frame too short"), "{}", r.message);
    raw.send(&R::Status(Status {}).into());
    assert_eq!(raw.terminal().status, ResponseStatus::Ok as i32);
    // garbage payload: answered, the stream goes on
    raw.send_bytes(&[11, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff]);
    assert!(raw.terminal().message.contains("not a valid message"));
    // 2^40 bytes declared: answered, then closed
    let mut big = m.raw();
    big.send_bytes(&(1u64 << 40).to_le_bytes());
    let r = big.terminal();
    assert!(r.message.contains("too large"), "{}", r.message);
    assert!(big.recv().is_none(), "connection closed");
    // an empty request and an unknown verb (tag 200): FAILURE naming them
    raw.send(&Request::default());
    assert!(raw.terminal().message.contains("empty request"));
    raw.send_bytes(&[11, 0, 0, 0, 0, 0, 0, 0, 0xc2, 0x0c, 0x00]);
    assert!(raw.terminal().message.contains("empty request"));
    raw.send(&R::LaunchWorker("x".into()).into());
    assert!(raw.terminal().message.contains("LaunchWorker is not supported"));
    // everyone else is still served
    assert!(m.ok(&["status"]).contains("RUNNING"));
}

#[test]
fn events_stream_from_subscribe_then_each_change_once() {
    let m = Master::start("events", "");
    let mut sub = m.raw();
    sub.send(&R::SubscribeEvents(SubscribeEvents {}).into());
    let first = sub.recv().unwrap();
    assert_eq!(first.status, ResponseStatus::Processing as i32);
    let kind = |r: &Response| match r.content.as_ref().and_then(|c| c.content_type.as_ref()) {
        Some(ContentType::Event(e)) => e.kind,
        _ => -1,
    };
    assert_eq!(kind(&first), EventKind::EventsSubscribed as i32);
    m.ok(&["cluster", "add", "-i", "evt"]);
    let next = sub.recv().unwrap();
    assert_eq!(kind(&next), EventKind::ClusterAdded as i32);
    assert_eq!(next.message, "main");
    m.ok(&["cluster", "remove", "-i", "evt"]);
    assert_eq!(kind(&sub.recv().unwrap()), EventKind::ClusterRemoved as i32, "delivered once, in order");
}

#[test]
fn a_stopped_worker_is_reported_not_answering_within_worker_timeout() {
    let m = Master::start_with("sigstop", "", 1);
    let pids = m.worker_pids();
    let victim = nix::unistd::Pid::from_raw(pids[1]);
    nix::sys::signal::kill(victim, nix::sys::signal::SIGSTOP).unwrap();
    let start = Instant::now();
    let out = m.ok(&["-t", "5000", "-j", "status"]);
    let took = start.elapsed();
    nix::sys::signal::kill(victim, nix::sys::signal::SIGCONT).unwrap();
    assert!(took < Duration::from_millis(2500), "status took {took:?} with worker_timeout = 1 s");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let states: Vec<i64> =
        v["WORKERS"]["vec"].as_array().unwrap().iter().map(|w| w["run_state"].as_i64().unwrap()).collect();
    assert_eq!(states, [RunState::Running as i64, RunState::NotAnswering as i64]);
    // and a mutation reports the timeout as a failure, never as success
    nix::sys::signal::kill(victim, nix::sys::signal::SIGSTOP).unwrap();
    let err = m.fails(&["-t", "5000", "cluster", "add", "-i", "slow"]);
    nix::sys::signal::kill(victim, nix::sys::signal::SIGCONT).unwrap();
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn a_killed_worker_is_replaced_with_the_full_state_and_reaped() {
    let m = Master::start("kill", "");
    m.ok(&["cluster", "add", "-i", "survivor"]);
    let before = m.worker_pids();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(before[0]), nix::sys::signal::SIGKILL).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let pids = m.worker_pids();
        if pids.len() == 2 && !pids.contains(&before[0]) {
            break pids;
        }
        assert!(Instant::now() < end, "no replacement worker: {pids:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "cluster", "list"])).unwrap();
    let map = v["WORKER_RESPONSES"]["map"].as_object().unwrap();
    assert_eq!(map.len(), 3);
    for (who, content) in map {
        assert!(content.to_string().contains("survivor"), "{who} has the full state");
    }
    // no zombie: the dead worker's /proc entry is gone
    assert!(!Path::new(&format!("/proc/{}", before[0])).exists(), "worker reaped");
    assert!(after.contains(&before[1]));
    let audit = std::fs::read_to_string(m.dir.join("audit.log")).unwrap();
    assert!(audit.contains("verb=worker_killed") && audit.contains(&format!("pid:{}", before[0])), "{audit}");
}

#[test]
fn clients_connecting_and_leaving_leave_no_fd_behind() {
    let m = Master::start("fds", "");
    m.ok(&["status"]);
    let baseline = count_fds(m.pid());
    for i in 0..1000 {
        let mut raw = m.raw();
        if i % 10 == 0 {
            raw.send(&R::CountRequests(CountRequests {}).into());
            raw.terminal();
        }
    }
    let end = Instant::now() + Duration::from_secs(5);
    while count_fds(m.pid()) != baseline && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count_fds(m.pid()), baseline);
}

#[test]
fn an_unlisted_uid_is_refused_and_audited_and_hostile_ids_are_sanitized() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run a client as uid 65534");
        return;
    }
    let m = Master::start("uids", "command_allowed_uids = [0]");
    // let uid 65534 reach the socket at all (the master makes it 0600)
    std::fs::set_permissions(m.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(SOZU)
        .arg("-c")
        .arg(&m.config)
        .args(["cluster", "add", "-i", "intruder"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unauthorized: actor UID 65534 not in command_allowed_uids"), "{stderr}");
    // root is allowed; an id with control bytes and column smuggling is recorded safely
    m.ok(&["cluster", "add", "-i", "evil\n[x] AUDIT, result=ok"]);
    let text = std::fs::read_to_string(m.dir.join("audit.log")).unwrap();
    assert!(text.contains("verb=request_refused") && text.contains("actor_uid=65534"), "{text}");
    assert!(!text.contains("cluster:intruder\n") || text.contains("error_code=unauthorized"));
    for line in text.lines() {
        assert!(line.starts_with('['), "every line is a record: {line:?}");
        assert_eq!(line.matches("\tAUDIT\t").count(), 1);
    }
    assert!(text.contains("evil??x?"), "{text}");
    let verify = Command::new(SOZU).args(["audit", "verify"]).arg(m.dir.join("audit.json")).output().unwrap();
    assert!(verify.status.success());
}

#[test]
fn a_second_master_refuses_to_start_and_boot_errors_leave_nothing_behind() {
    let m = Master::start("twice", "");
    let out = Command::new(SOZU).args(["start", "-c"]).arg(&m.config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already running"));
    assert!(m.ok(&["status"]).contains("RUNNING"), "the first master is untouched");

    // a bad configuration: clear message, non-zero exit, no socket
    let dir = m.dir.join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.toml"), "command_socket = \"s.sock\"\nworker_count = 0\n").unwrap();
    let out = Command::new(SOZU).args(["start", "-c"]).arg(dir.join("c.toml")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("worker_count"));
    assert!(!dir.join("s.sock").exists());
    // a listener that cannot be bound: no socket, no pid file, no child left
    std::fs::write(
        dir.join("c2.toml"),
        format!("command_socket = \"s2.sock\"\npid_file_path = \"p\"\n[[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:{}\"\n", m.http_port),
    )
    .unwrap();
    let out = Command::new(SOZU).args(["start", "-c"]).arg(dir.join("c2.toml")).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot bind listener"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("s2.sock").exists() && !dir.join("p").exists());
}

#[test]
fn the_cli_names_the_socket_when_no_master_runs() {
    let dir = std::env::temp_dir().join(format!("sozu-e2e-nomaster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c.toml"), "command_socket = \"none.sock\"\n").unwrap();
    let out = Command::new(SOZU).arg("-c").arg(dir.join("c.toml")).arg("status").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("none.sock") && stderr.contains("is sozu running?"), "{stderr}");
}

#[test]
fn a_corrupt_state_file_changes_nothing() {
    let m = Master::start("corrupt", "");
    let path = m.dir.join("bad.state");
    std::fs::write(&path, b"{\"id\":\"SAVE-0\",\"content\":{\"request_type\":{\"ADD_CLUSTER\":{\"cluster_id\":\"x\",\"sticky_session\":false,\"https_redirect\":false,\"load_balancing\":0}}}}\n\0garbage").unwrap();
    let before = m.ok(&["-j", "cluster", "list"]);
    let err = m.fails(&["state", "load", "-f", path.to_str().unwrap()]);
    assert!(err.contains("record 1") && err.contains("nothing was changed"), "{err}");
    assert_eq!(m.ok(&["-j", "cluster", "list"]), before);
}

#[test]
fn reload_applies_additions_changes_and_removals_and_a_broken_file_changes_nothing() {
    let m = Master::start("reload", "");
    m.ok(&["cluster", "add", "-i", "runtime-only"]);
    let original = std::fs::read_to_string(&m.config).unwrap();
    // web's backend changes, a new cluster appears, runtime-only goes away
    let changed = original.replace("127.0.0.1:9001", "127.0.0.1:9002")
        + "\n[clusters.added]\nprotocol = \"http\"\nbackends = [{ address = \"127.0.0.1:9003\" }]\n";
    std::fs::write(&m.config, &changed).unwrap();
    let out = m.ok(&["reload"]);
    assert!(out.contains("cluster:added") && out.contains("cluster:runtime-only"), "{out}");
    let web = m.ok(&["cluster", "list", "-i", "web"]);
    assert!(web.contains("127.0.0.1:9002") && !web.contains("127.0.0.1:9001"), "{web}");
    assert!(m.ok(&["cluster", "list", "-i", "added"]).contains("cluster added"));
    assert!(!m.ok(&["-j", "cluster", "list"]).contains("runtime-only"));

    // a broken file: the answer says why, and nothing changes
    let before = m.ok(&["-j", "cluster", "list"]);
    std::fs::write(&m.config, changed.replace("protocol = \"http\"\nbackends", "protocol = \"gopher\"\nbackends"))
        .unwrap();
    let err = m.fails(&["reload"]);
    assert!(err.contains("nothing changed") && err.contains("gopher"), "{err}");
    assert_eq!(m.ok(&["-j", "cluster", "list"]), before);

    // SIGHUP reloads the file the master started with
    std::fs::write(&m.config, &original).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(m.pid() as i32), nix::sys::signal::SIGHUP).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while m.ok(&["-j", "cluster", "list"]).contains("\"added\"") {
        assert!(Instant::now() < end, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_crash_looping_worker_is_relaunched_with_growing_delays_then_given_up() {
    let m = Master::start(
        "crashloop",
        "worker_restart_delay_ms = 100\nworker_max_restarts = 2\nworker_restart_window = 60",
    );
    let mut victim = m.worker_pids()[0];
    let mut relaunched_after = Vec::new();
    for round in 0..3 {
        let killed_at = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), nix::sys::signal::SIGKILL).unwrap();
        if round == 2 {
            break;
        }
        let survivors: Vec<i32> = m.worker_pids().into_iter().filter(|p| *p != victim).collect();
        let end = Instant::now() + Duration::from_secs(10);
        victim = loop {
            let pids = m.worker_pids();
            if pids.len() == 2 && !pids.contains(&victim) {
                break *pids.iter().find(|p| !survivors.contains(p)).expect("a new worker");
            }
            assert!(Instant::now() < end, "no relaunch");
            std::thread::sleep(Duration::from_millis(20));
        };
        relaunched_after.push(killed_at.elapsed());
    }
    assert!(relaunched_after[1] > relaunched_after[0], "the delay grows: {relaunched_after:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let status = m.ok(&["status"]);
    assert!(status.contains("1 worker slot(s) FAILED"), "{status}");
    assert_eq!(m.worker_pids().len(), 1, "given up: not relaunched");
}

/// Kills a master the test started by hand if the test fails first.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), nix::sys::signal::SIGINT);
            std::thread::sleep(Duration::from_millis(500));
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn the_drain_deadline_holds_and_the_exit_status_says_the_stop_was_not_clean() {
    let mut m = Master::start("drain", "soft_stop_timeout = 1");
    let pids = m.worker_pids();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[1]), nix::sys::signal::SIGSTOP).unwrap();
    let start = Instant::now();
    let err = m.fails(&["-t", "5000", "shutdown"]);
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    assert!(err.contains("drain deadline passed: 1 workers hard-stopped"), "{err}");
    let mut child = m.child.take().unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(2), "not clean");
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "worker {pid} reaped");
    }
    assert!(!m.socket().exists());
}

#[test]
fn a_hung_worker_is_killed_and_relaunched() {
    let m = Master::start_with(
        "hung",
        "worker_health_check_interval = 1\nworker_health_check_failures = 2\nworker_restart_delay_ms = 50",
        1,
    );
    let pids = m.worker_pids();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0]), nix::sys::signal::SIGSTOP).unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let now = m.worker_pids();
        if now.len() == 2 && !now.contains(&pids[0]) {
            break;
        }
        assert!(Instant::now() < end, "hung worker not replaced: {now:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!Path::new(&format!("/proc/{}", pids[0])).exists(), "killed and reaped");
}

#[test]
fn systemd_notify_sequence() {
    let dir = std::env::temp_dir().join(format!("sozu-e2e-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket_path = dir.join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::fs::write(dir.join("c.toml"), "command_socket = \"s.sock\"\nworker_count = 2\n").unwrap();
    let child = Command::new(SOZU)
        .args(["start", "-c"])
        .arg(dir.join("c.toml"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut seen = Vec::new();
    let mut watchdogs = 0;
    let mut take = |want: &str, seen: &mut Vec<String>| loop {
        let m = next();
        if m == "WATCHDOG=1" {
            watchdogs += 1;
            continue;
        }
        seen.push(m.clone());
        assert!(m.starts_with(want), "expected {want}, got {m:?} after {seen:?}");
        return m;
    };
    assert_eq!(take("READY=1", &mut seen), "READY=1\nSTATUS=2 workers running");
    let cli = |args: &[&str]| Command::new(SOZU).arg("-c").arg(dir.join("c.toml")).args(args).output().unwrap();
    assert!(cli(&["reload"]).status.success());
    assert!(take("RELOADING=1\nMONOTONIC_USEC=", &mut seen).len() > 30);
    take("READY=1", &mut seen);
    assert!(cli(&["shutdown"]).status.success());
    take("STOPPING=1", &mut seen);
    assert!(child.0.wait().unwrap().success());
    assert!(watchdogs >= 1, "WATCHDOG=1 sent with WATCHDOG_USEC set");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_hundred_worker_kills_leave_fd_and_process_counts_at_baseline() {
    let m = Master::start(
        "kill100",
        "worker_restart_delay_ms = 1\nworker_restart_max_delay_ms = 20\nworker_max_restarts = 1000",
    );
    m.ok(&["status"]);
    let fds = count_fds(m.pid());
    let procs = children_of(m.pid()).len();
    assert_eq!(procs, 2);
    for _ in 0..100 {
        let victim = m.worker_pids()[0];
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), nix::sys::signal::SIGKILL).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = m.worker_pids();
            if pids.len() == 2 && !pids.contains(&victim) {
                break;
            }
            assert!(Instant::now() < end, "no replacement");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let end = Instant::now() + Duration::from_secs(5);
    while (count_fds(m.pid()) != fds || children_of(m.pid()).len() != procs) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count_fds(m.pid()), fds, "fds back to baseline");
    assert_eq!(children_of(m.pid()).len(), procs, "no zombie, no extra process");
}

#[test]
fn a_large_load_state_through_small_buffers_is_fully_acknowledged() {
    // buffers far smaller than the fan-out: both directions must apply backpressure
    let m = Master::start("bigload", "command_buffer_size = 16384\nmax_command_buffer_size = 65536");
    let mut state = sozu_state::ConfigState::new();
    for i in 0..3000 {
        let id = format!("c{i}");
        state.dispatch(&R::AddCluster(Cluster { cluster_id: id.clone(), ..Default::default() }).into()).unwrap();
        let backend = AddBackend {
            cluster_id: id.clone(),
            backend_id: format!("{id}-b"),
            address: std::net::SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 80)).into(),
            ..Default::default()
        };
        state.dispatch(&R::AddBackend(backend).into()).unwrap();
    }
    let path = m.dir.join("big.state");
    sozu_state::save_atomic(&path, &state).unwrap();
    let out = m.ok(&["-t", "60000", "state", "load", "-f", path.to_str().unwrap()]);
    assert!(out.contains("12000 ok messages, 0 errors"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "cluster", "list", "-i", "c2999"])).unwrap();
    let map = v["WORKER_RESPONSES"]["map"].as_object().unwrap();
    assert!(map["main"].to_string().contains("c2999-b"));
    assert_eq!(map["0"], map["main"]);
    assert_eq!(map["1"], map["main"]);
    // an answer larger than the maximum is refused with a clear error, not a hang
    let err = m.fails(&["cluster", "list"]);
    assert!(err.contains("the answer does not fit"), "{err}");
    assert!(m.ok(&["status"]).contains("RUNNING"));
}

/// A backend that answers `<name>:<everything it read>` once the client half-closes.
fn tcp_backend(name: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut input = Vec::new();
                let _ = conn.read_to_end(&mut input);
                let _ = conn.write_all(format!("{name}:").as_bytes());
                let _ = conn.write_all(&input);
            });
        }
    });
    port
}

fn tcp_call(port: u16, body: &[u8]) -> std::io::Result<String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(body)?;
    c.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

fn tcp_master(name: &str) -> Master {
    let (b1, b2) = (tcp_backend("b1"), tcp_backend("b2"));
    Master::start(
        name,
        &format!(
            "worker_restart_delay_ms = 100\n[clusters.db]\nprotocol = \"tcp\"\nfrontends = [{{ address = \"127.0.0.1:TCP_PORT\" }}]\nbackends = [{{ address = \"127.0.0.1:{b1}\", backend_id = \"b1\" }}, {{ address = \"127.0.0.1:{b2}\", backend_id = \"b2\" }}]\n"
        ),
    )
}

#[test]
fn tcp_traffic_is_proxied_round_robin_and_counted() {
    let m = tcp_master("tcp");
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let body = format!("ping-{i}-").repeat(2000); // 20+ KB: more than one buffer
        let answer = tcp_call(m.tcp_port, body.as_bytes()).unwrap();
        let (who, echoed) = answer.split_once(':').unwrap();
        assert_eq!(echoed, body, "every byte both ways, half-close respected");
        seen.insert(who.to_string());
    }
    assert_eq!(seen.len(), 2, "both backends used: {seen:?}");
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "metrics", "get"])).unwrap();
    let workers = v["METRICS"]["workers"].as_object().unwrap();
    let connections: i64 =
        workers.values().map(|w| w["proxy"]["connections"]["inner"]["COUNT"].as_i64().unwrap_or(0)).sum();
    assert_eq!(connections, 20, "{v}");
    let per_cluster: i64 = workers
        .values()
        .map(|w| w["clusters"]["db"]["cluster"]["connections"]["inner"]["COUNT"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(per_cluster, 20);
    // merged across workers
    assert_eq!(v["METRICS"]["proxying"]["connections"]["inner"]["COUNT"], 20);
    assert_eq!(v["METRICS"]["clusters"]["db"]["cluster"]["connections"]["inner"]["COUNT"], 20);
    let backends = v["METRICS"]["clusters"]["db"]["backends"].as_array().unwrap();
    let per_backend: i64 =
        backends.iter().map(|b| b["metrics"]["connections"]["inner"]["COUNT"].as_i64().unwrap()).sum();
    assert_eq!(per_backend, 20, "{v}");
}

#[test]
fn a_refused_backend_is_retried_on_the_next_one() {
    let good = tcp_backend("good");
    let dead = free_port();
    let m = Master::start(
        "tcpretry",
        &format!(
            "[clusters.db]\nprotocol = \"tcp\"\nfrontends = [{{ address = \"127.0.0.1:TCP_PORT\" }}]\nbackends = [{{ address = \"127.0.0.1:{dead}\", backend_id = \"a-dead\" }}, {{ address = \"127.0.0.1:{good}\", backend_id = \"b-good\" }}]\n"
        ),
    );
    for _ in 0..6 {
        assert_eq!(tcp_call(m.tcp_port, b"x").unwrap(), "good:x");
    }
}

#[test]
fn kill_9_of_a_worker_under_traffic_is_replaced_and_routes_keep_working() {
    let m = tcp_master("tcpkill");
    let port = m.tcp_port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let traffic = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, 0);
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            match tcp_call(port, b"load") {
                Ok(a) if a.ends_with(":load") => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    });
    std::thread::sleep(Duration::from_millis(300));
    let before = m.worker_pids();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(before[0]), nix::sys::signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = m.worker_pids();
        if pids.len() == 2 && !pids.contains(&before[0]) {
            break;
        }
        assert!(Instant::now() < end, "no replacement");
        std::thread::sleep(Duration::from_millis(20));
    }
    let replaced_in = killed_at.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = traffic.join().unwrap();
    assert!(ok > 50, "traffic flowed: {ok} ok, {failed} failed");
    assert!(failed <= 5, "only connections in flight on the killed worker may fail: {failed}");
    assert!(replaced_in < Duration::from_secs(2), "replaced in {replaced_in:?} (backoff base 100 ms)");
    for _ in 0..20 {
        assert!(tcp_call(port, b"after").unwrap().ends_with(":after"));
    }
    assert!(!Path::new(&format!("/proc/{}", before[0])).exists(), "no zombie");
}

#[test]
fn sigterm_under_traffic_lets_in_flight_connections_finish() {
    let mut m = tcp_master("tcpterm");
    let mut c = std::net::TcpStream::connect(("127.0.0.1", m.tcp_port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"first half, ").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(m.pid() as i32), nix::sys::signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // new connections are no longer accepted by the draining workers, ours goes on
    c.write_all(b"second half").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with(":first half, second half"), "{answer}");
    let mut child = m.child.take().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "master did not exit after the drain");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "clean stop: {status:?}");
}

/// A dashboard client: JSON lines over the dashboard socket.
struct Dash(std::io::BufReader<UnixStream>, UnixStream);

impl Dash {
    fn connect(m: &Master) -> Dash {
        let s = UnixStream::connect(m.dir.join("dash.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Dash(std::io::BufReader::new(s.try_clone().unwrap()), s)
    }

    fn send(&mut self, line: &str) {
        self.1.write_all(line.as_bytes()).unwrap();
        self.1.write_all(b"\n").unwrap();
    }

    fn recv(&mut self) -> Option<serde_json::Value> {
        use std::io::BufRead;
        let mut line = String::new();
        match self.0.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))),
        }
    }

    fn call(&mut self, line: &str) -> serde_json::Value {
        self.send(line);
        self.recv().expect("an answer")
    }
}

fn dash_master(name: &str, extra: &str) -> Master {
    Master::start(
        name,
        &format!("dashboard_socket = \"dash.sock\"\nevent_journal_size = 100\ndashboard_subscriber_queue = 8\n{extra}"),
    )
}

#[test]
fn dashboard_every_method_over_a_real_socket() {
    let m = dash_master("dash", "");
    let mode = std::fs::metadata(m.dir.join("dash.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut d = Dash::connect(&m);
    let hello = d.call(r#"{"id":1,"method":"hello"}"#);
    assert_eq!(hello["id"], 1);
    assert_eq!(hello["ok"], true);
    assert!(hello["result"]["capabilities"].as_array().unwrap().len() == 5);
    let state = d.call(r#"{"id":"s","method":"state"}"#);
    assert_eq!(state["result"]["workers"].as_array().unwrap().len(), 2);
    assert_eq!(state["result"]["clusters"], 1);
    let added = d.call(r#"{"id":2,"method":"command","request":{"ADD_CLUSTER":{"cluster_id":"dash","sticky_session":false,"https_redirect":false,"load_balancing":0}}}"#);
    assert_eq!(added["ok"], true, "{added}");
    assert_eq!(added["result"]["message"], "Successfully applied request to all workers");
    let query = d.call(r#"{"id":3,"method":"command","request":{"QUERY_CLUSTER_BY_ID":"dash"}}"#);
    assert!(query["result"]["content"]["WORKER_RESPONSES"]["map"]["main"].to_string().contains("dash"));
    let failed = d.call(r#"{"id":4,"method":"command","request":{"REMOVE_CLUSTER":"nope"}}"#);
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["error"]["code"], "failure");
    // subscribe with replay from the journal: the CLUSTER_ADDED above comes back
    let sub = d.call(r#"{"id":5,"method":"events.subscribe","since":0}"#);
    assert_eq!(sub["ok"], true);
    let mut kinds = Vec::new();
    for _ in 0..sub["result"]["replayed"].as_u64().unwrap() {
        kinds.push(d.recv().unwrap()["event"]["kind"].as_str().unwrap().to_string());
    }
    assert!(kinds.contains(&"CLUSTER_ADDED".to_string()), "{kinds:?}");
    m.ok(&["cluster", "add", "-i", "live"]);
    let live = d.recv().unwrap();
    assert_eq!(live["event"]["kind"], "CLUSTER_ADDED");
    assert_eq!(live["event"]["cluster_id"], "live");
    let tail = d.call(r#"{"id":6,"method":"audit.tail","n":3}"#);
    let records = tail["result"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().any(|r| r["verb"] == "cluster_added"));
    // errors with stable codes; the connection survives them
    assert_eq!(d.call(r#"{"id":7,"method":"nope"}"#)["error"]["code"], "unknown_method");
    assert_eq!(d.call("not json")["error"]["code"], "invalid_json");
    assert_eq!(d.call(r#"{"id":8}"#)["error"]["code"], "invalid_request");
    assert_eq!(
        d.call(r#"{"id":9,"method":"command","request":{"ADD_UNICORN":{}}}"#)["error"]["code"],
        "invalid_command"
    );
    d.1.write_all(b"\xff\xfe\n").unwrap();
    assert_eq!(d.recv().unwrap()["error"]["code"], "invalid_utf8");
    assert_eq!(d.call(r#"{"id":10,"method":"hello"}"#)["ok"], true);
    // an oversized line: an error, then the connection is closed
    let mut big = Dash::connect(&m);
    let _ = big.1.write_all(&vec![b'x'; (1 << 20) + 10]);
    assert_eq!(big.recv().unwrap()["error"]["code"], "frame_too_large");
    assert!(big.recv().is_none());
}

#[test]
fn dashboard_answers_1000_pipelined_lines_in_order() {
    let m = dash_master("dashpipe", "");
    let mut d = Dash::connect(&m);
    let mut all = String::new();
    for i in 0..1000 {
        if i % 10 == 0 {
            all.push_str(&format!(r#"{{"id":{i},"method":"command","request":{{"STATUS":{{}}}}}}"#));
        } else {
            all.push_str(&format!(r#"{{"id":{i},"method":"hello"}}"#));
        }
        all.push('\n');
    }
    d.1.write_all(all.as_bytes()).unwrap();
    for i in 0..1000 {
        let answer = d.recv().unwrap();
        assert_eq!(answer["id"], i, "in order");
        assert_eq!(answer["ok"], true);
    }
}

#[test]
fn a_dashboard_subscriber_that_never_reads_does_not_slow_others_and_is_told_it_lagged() {
    let m = dash_master("dashslow", "");
    let mut slow = Dash::connect(&m);
    assert_eq!(slow.call(r#"{"id":1,"method":"events.subscribe"}"#)["ok"], true);
    // many events while the subscriber does not read
    let mut raw = m.raw();
    for i in 0..300 {
        raw.send(&R::AddCluster(Cluster { cluster_id: format!("e{i}"), ..Default::default() }).into());
        raw.terminal();
    }
    let start = Instant::now();
    assert!(m.ok(&["status"]).contains("RUNNING"));
    assert!(start.elapsed() < Duration::from_secs(1), "status took {:?}", start.elapsed());
    // reading now: at most the queue's worth of events, then a lagged notice
    let mut events = 0;
    let lagged = loop {
        let v = slow.recv().expect("lines");
        if v.get("lagged").is_some() {
            break v["lagged"]["dropped"].as_u64().unwrap();
        }
        events += 1;
        assert!(events <= 300);
    };
    assert!(lagged > 0, "dropped events counted");
    assert!(events as u64 + lagged >= 300, "{events} delivered + {lagged} dropped");
}

const DASH_CHILD_ENV: &str = "SOZU_E2E_DASH_CHILD";

/// Runs only as a child started by the uid test: one command line, prints the answer.
#[test]
fn dash_child_client() {
    let Ok(path) = std::env::var(DASH_CHILD_ENV) else { return };
    let mut s = UnixStream::connect(path).unwrap();
    s.write_all(b"{\"id\":1,\"method\":\"command\",\"request\":{\"REMOVE_CLUSTER\":\"web\"}}\n").unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    println!("ANSWER {line}");
}

#[test]
fn dashboard_refuses_an_unlisted_uid_and_audits_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run a client as uid 65534");
        return;
    }
    let m = dash_master("dashuid", "command_allowed_uids = [0]");
    std::fs::set_permissions(m.dir.join("dash.sock"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "dash_child_client", "--nocapture", "--test-threads=1"])
        .env(DASH_CHILD_ENV, m.dir.join("dash.sock"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""code":"unauthorized""#), "{stdout}");
    assert!(m.ok(&["cluster", "list", "-i", "web"]).contains("cluster web"), "nothing changed");
    let audit = std::fs::read_to_string(m.dir.join("audit.log")).unwrap();
    assert!(audit.contains("verb=request_refused") && audit.contains("actor_uid=65534"), "{audit}");
}
