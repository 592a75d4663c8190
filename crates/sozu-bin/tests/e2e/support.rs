//! Starting masters and speaking to them.

#![allow(dead_code)]

pub(crate) use prost::Message;
pub(crate) use sozu_proto::request::RequestType as R;
pub(crate) use sozu_proto::response_content::ContentType;
pub(crate) use sozu_proto::*;
pub(crate) use std::io::{Read, Write};
pub(crate) use std::os::unix::fs::PermissionsExt;
pub(crate) use std::os::unix::net::UnixStream;
pub(crate) use std::os::unix::process::CommandExt;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Child, Command, Output, Stdio};
pub(crate) use std::time::{Duration, Instant};

pub(crate) const SOZU: &str = env!("CARGO_BIN_EXE_sozu");

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running master in its own directory; killed (with its workers) on drop.
pub(crate) struct Master {
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) child: Option<Child>,
    pub(crate) http_port: u16,
    pub(crate) tcp_port: u16,
}

impl Master {
    pub(crate) fn start(name: &str, extra: &str) -> Master {
        Self::start_with(name, extra, 10)
    }

    /// With `worker_timeout = timeout` seconds (short only where a test needs it: a
    /// loaded CI machine can take more than a second to answer).
    pub(crate) fn start_with(name: &str, extra: &str, timeout: u32) -> Master {
        let dir = std::env::temp_dir().join(format!("sozu-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (http_port, tcp_port) = (free_port(), free_port());
        let extra = extra.replace("TCP_PORT", &tcp_port.to_string()).replace("HTTP_PORT", &http_port.to_string());
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

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("sozu.sock")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the master to say it is ready (30 s: a loaded 2-core CI machine starting
    /// dozens of masters at once can be slow).
    pub(crate) fn wait_ready(&self) {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if UnixStream::connect(self.socket()).is_ok() && self.log().contains("ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("master not ready: {}", self.log());
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("master.log")).unwrap_or_default()
    }

    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        Command::new(SOZU).arg("-c").arg(&self.config).args(args).output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "sozu {args:?} failed: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
        stdout
    }

    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(!out.status.success(), "sozu {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub(crate) fn raw(&self) -> Raw {
        let s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw(s)
    }

    pub(crate) fn worker_pids(&self) -> Vec<i32> {
        let out = self.ok(&["-t", "10000", "-j", "status"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["WORKERS"]["vec"].as_array().unwrap().iter().map(|w| w["pid"].as_i64().unwrap() as i32).collect()
    }

    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
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
            while Instant::now() < end && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // a failed test leaves its directory (log, audit, state) to be looked at
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A raw protocol client.
pub(crate) struct Raw(pub(crate) UnixStream);

impl Raw {
    pub(crate) fn send(&mut self, request: &Request) {
        let body = request.encode_to_vec();
        self.0.write_all(&((body.len() + 8) as u64).to_le_bytes()).unwrap();
        self.0.write_all(&body).unwrap();
    }

    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).unwrap();
    }

    /// Next response, or None at EOF.
    pub(crate) fn recv(&mut self) -> Option<Response> {
        let mut prefix = [0u8; 8];
        if self.0.read_exact(&mut prefix).is_err() {
            return None;
        }
        let len = u64::from_le_bytes(prefix) as usize;
        let mut body = vec![0; len - 8];
        self.0.read_exact(&mut body).unwrap();
        Some(Response::decode(body.as_slice()).unwrap())
    }

    /// The next response, or `None` when none came within the read timeout.
    pub(crate) fn try_recv(&mut self) -> Option<Response> {
        let mut prefix = [0u8; 8];
        self.0.read_exact(&mut prefix).ok()?;
        let len = u64::from_le_bytes(prefix) as usize;
        let mut body = vec![0; len - 8];
        self.0.read_exact(&mut body).ok()?;
        Response::decode(body.as_slice()).ok()
    }

    /// Next terminal response.
    pub(crate) fn terminal(&mut self) -> Response {
        loop {
            let r = self.recv().expect("an answer");
            if r.status != ResponseStatus::Processing as i32 {
                return r;
            }
        }
    }
}

pub(crate) fn count_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Each open fd of `pid` with what it points at, sorted: what a failed fd count prints.
pub(crate) fn list_fds(pid: u32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let to = std::fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default();
                    format!("{} -> {to}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

/// `count_fds` once it stopped changing (the master closed the CLI calls' connections).
pub(crate) fn stable_fds(pid: u32) -> usize {
    let mut last = count_fds(pid);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = count_fds(pid);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Kills a master the test started by hand if the test fails first.
pub(crate) struct KillOnDrop(pub(crate) Child);

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

pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A backend that answers `<name>:<everything it read>` once the client half-closes.
pub(crate) fn tcp_backend(name: &'static str) -> u16 {
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

pub(crate) fn tcp_call(port: u16, body: &[u8]) -> std::io::Result<String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(body)?;
    c.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

/// TCP calls through `port` in a loop until told to stop: (successes, failures).
pub(crate) fn tcp_load(
    port: u16,
) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<(usize, Vec<String>)>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, Vec::new());
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            match tcp_call(port, b"up") {
                Ok(a) if a.ends_with(":up") => ok += 1,
                other => failed.push(format!("{other:?}")),
            }
        }
        (ok, failed)
    });
    (stop, handle)
}

pub(crate) fn tcp_master(name: &str) -> Master {
    tcp_master_with(name, "")
}

/// [`tcp_master`] with more top-level configuration keys.
pub(crate) fn tcp_master_with(name: &str, extra: &str) -> Master {
    let (b1, b2) = (tcp_backend("b1"), tcp_backend("b2"));
    Master::start(
        name,
        &format!(
            "{extra}worker_restart_delay_ms = 100\n[clusters.db]\nprotocol = \"tcp\"\nfrontends = [{{ address = \"127.0.0.1:TCP_PORT\" }}]\nbackends = [{{ address = \"127.0.0.1:{b1}\", backend_id = \"b1\" }}, {{ address = \"127.0.0.1:{b2}\", backend_id = \"b2\" }}]\n"
        ),
    )
}

/// A dashboard client: JSON lines over the dashboard socket.
pub(crate) struct Dash(pub(crate) std::io::BufReader<UnixStream>, pub(crate) UnixStream);

impl Dash {
    pub(crate) fn connect(m: &Master) -> Dash {
        let s = UnixStream::connect(m.dir.join("dash.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Dash(std::io::BufReader::new(s.try_clone().unwrap()), s)
    }

    pub(crate) fn send(&mut self, line: &str) {
        self.1.write_all(line.as_bytes()).unwrap();
        self.1.write_all(b"\n").unwrap();
    }

    pub(crate) fn recv(&mut self) -> Option<serde_json::Value> {
        use std::io::BufRead;
        let mut line = String::new();
        match self.0.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))),
        }
    }

    pub(crate) fn call(&mut self, line: &str) -> serde_json::Value {
        self.send(line);
        self.recv().expect("an answer")
    }
}

pub(crate) fn dash_master(name: &str, extra: &str) -> Master {
    Master::start(
        name,
        &format!("dashboard_socket = \"dash.sock\"\nevent_journal_size = 100\ndashboard_subscriber_queue = 8\n{extra}"),
    )
}

/// A copy of `exe` that any uid can run, in a fresh directory under /tmp (the build
/// directory may sit under a directory other users cannot enter, such as a CI clone in
/// /root). Remove `copy.parent()` when done.
pub(crate) fn world_executable(exe: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sozu-exe-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join(exe.file_name().unwrap());
    // copied by cp(1), not std::fs::copy: while this process holds the copy open for
    // writing, a fork on another test thread inherits that fd until its exec, and
    // running the copy in that window fails with ETXTBSY ("Text file busy")
    let status = std::process::Command::new("cp").arg(exe).arg(&copy).status().unwrap();
    assert!(status.success(), "cp {exe:?} {copy:?}: {status}");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}
