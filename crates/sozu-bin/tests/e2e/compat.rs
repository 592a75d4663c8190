//! Wire compatibility with Sōzu 2.1.1's own binary, given by `SOZU21` (`cargo xtask test`
//! builds it once from crates.io and sets it): its CLI drives our master through every
//! verb we implement, with real traffic through what it configured; our CLI drives its
//! master; state files cross both ways. When `SOZU21` is unset the tests say so and
//! pass, unless `SOZU21_REQUIRED` is set (as `cargo xtask test` does), where they fail.

use crate::http::http_backend;
use crate::support::*;

fn sozu21() -> Option<PathBuf> {
    match std::env::var_os("SOZU21") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(std::env::var_os("SOZU21_REQUIRED").is_none(), "SOZU21_REQUIRED is set, SOZU21 is not");
            eprintln!("SOZU21 is not set: the Sōzu 2.1 compatibility test is skipped (cargo xtask test runs it)");
            None
        }
    }
}

/// Runs `binary -c config args` and returns its stdout; panics, with its output, if it fails.
fn run_ok(binary: &Path, config: &Path, args: &[&str]) -> String {
    // from the configuration's directory: Sōzu 2.1's CLI resolves `saved_state` against
    // the current directory
    let dir = config.parent().unwrap();
    let out = Command::new(binary).current_dir(dir).arg("-c").arg(config).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} {args:?} failed:\n{stdout}{stderr}", binary.display());
    stdout.into_owned()
}

/// One HTTP/1.1 request with `Connection: close`: (status, body); status 0 when nothing
/// listens.
fn get(port: u16, host: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// `get` until it answers `status` (a new listener or route reaches every worker within
/// the command's answer, but give a loaded machine a moment).
fn get_until(port: u16, host: &str, status: u16) -> (u16, String) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(port, host);
        if answer.0 == status || Instant::now() > end {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Sōzu 2.1 master in its own directory, stopped (with its workers) on drop.
struct Theirs {
    dir: PathBuf,
    config: PathBuf,
    child: Child,
}

impl Theirs {
    fn start(binary: &Path, name: &str, http_port: u16) -> Theirs {
        let dir = std::env::temp_dir().join(format!("sozu-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "command_socket = \"{}/sozu.sock\"\nworker_count = 2\nworker_automatic_restart = false\n\
                 log_level = \"info\"\nmax_connections = 500\n\n\
                 [[listeners]]\nprotocol = \"http\"\naddress = \"127.0.0.1:{http_port}\"\n",
                dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .args(["start", "-c"])
            .arg(&config)
            .stdout(std::fs::File::create(dir.join("master.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(dir.join("sozu.sock")).is_err() {
            assert!(Instant::now() < end, "Sōzu 2.1 did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Theirs { dir, config, child }
    }
}

impl Drop for Theirs {
    fn drop(&mut self) {
        // its workers outlive a killed master: kill them too
        for pid in children_of(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn sozu_2_1_cli_drives_our_master_through_every_verb_with_real_traffic() {
    let Some(sozu21) = sozu21() else { return };
    let mut m = Master::start("compat-theirs-cli", "");
    let theirs = |args: &[&str]| run_ok(&sozu21, &m.config, args);
    let listener = format!("127.0.0.1:{}", m.http_port);
    let backend = http_backend("compat");

    assert_eq!(theirs(&["status"]).matches("RUNNING").count(), 2);
    // a cluster, a backend and a route, then a request through our worker
    theirs(&["cluster", "add", "--id", "compat", "--load-balancing-policy", "least_loaded"]);
    theirs(&["backend", "add", "--id", "compat", "--backend-id", "b1", "--address", &format!("127.0.0.1:{backend}")]);
    theirs(&["frontend", "http", "add", "--address", &listener, "--hostname", "compat.test", "id", "compat"]);
    let (status, body) = get_until(m.http_port, "compat.test", 200);
    assert!(status == 200 && body.starts_with("compat "), "{status} {body}");
    assert!(theirs(&["cluster", "list"]).contains("compat"));
    assert!(theirs(&["cluster", "list", "--id", "compat"]).contains("compat"));
    assert!(theirs(&["frontend", "list"]).contains("compat.test"));
    // its header edits (a replacement, a removal) reach our workers as it meant them,
    // and so does its listener's request id header
    theirs(&["listener", "http", "update", "--address", &listener, "--sozu-id-header", "X-Their-Id"]);
    let edits =
        ["--header", "request=X-Env=", "--header", "request=X-Env=theirs", "--header", "response=X-Powered-By="];
    let route = ["frontend", "http", "add", "--address", &listener, "--hostname", "edits.test"];
    theirs(&[&route[..], &edits[..], &["id", "compat"]].concat());
    // (the connection closed at once: an open one would hold its worker past the
    // upgrade below)
    let a = {
        let mut c = crate::http::Client::connect(m.http_port);
        c.send(b"GET /headers HTTP/1.1\r\nHost: edits.test\r\nX-Env: mine\r\nConnection: close\r\n\r\n");
        c.answer().expect("an answer")
    };
    assert!(a.text().contains("x-env: theirs\n") && !a.text().contains("mine"), "{}", a.text());
    assert!(a.text().contains("x-their-id: ") && !a.text().contains("sozu-id"), "{}", a.text());
    assert_eq!((a.header("x-powered-by"), a.header("server")), (None, Some("test-backend")));
    // its rewrite templates: the host and target our worker forwards, as its own worker does
    let route = ["frontend", "http", "add", "--address", &listener, "--hostname", "*.rw.test", "--path-prefix", "/api"];
    let rewrites = ["--rewrite-host", "$HOST[1].internal", "--rewrite-path", "/v2$PATH[1]"];
    theirs(&[&route[..], &rewrites[..], &["id", "compat"]].concat());
    let text = crate::http::Client::connect(m.http_port).get("foo.rw.test", "/api/users?x=1").text();
    assert!(text.contains(" GET /v2/users?x=1 ") && text.ends_with(" host=foo.internal"), "{text}");
    // HSTS on a plain HTTP frontend: refused with the reason, as its own workers refuse it
    let hsts = ["frontend", "http", "add", "--address", &listener, "--hostname", "hsts.test", "--hsts-max-age", "3600"];
    let out = Command::new(&sozu21).arg("-c").arg(&m.config).args(hsts).args(["id", "compat"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("only valid on HTTPS frontends"), "{text}");
    assert!(!m.ok(&["frontend", "list"]).contains("hsts.test"));
    let ours: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "cluster", "list", "-i", "compat"])).unwrap();
    assert!(ours.to_string().contains("\"load_balancing\":2"), "{ours}");

    // a TCP listener and frontend to the same backend, then away again
    let tcp = format!("127.0.0.1:{}", free_port());
    theirs(&["listener", "tcp", "add", "--address", &tcp]);
    theirs(&["listener", "tcp", "activate", "--address", &tcp]);
    theirs(&["frontend", "tcp", "add", "--id", "compat", "--address", &tcp]);
    let tcp_port: u16 = tcp.rsplit(':').next().unwrap().parse().unwrap();
    let (status, body) = get_until(tcp_port, "whatever", 200);
    assert!(status == 200 && body.starts_with("compat "), "{status} {body}");
    assert!(theirs(&["listener", "list"]).contains(&tcp_port.to_string()));
    theirs(&["frontend", "tcp", "remove", "--id", "compat", "--address", &tcp]);
    theirs(&["listener", "tcp", "deactivate", "--address", &tcp]);
    theirs(&["listener", "tcp", "remove", "--address", &tcp]);
    assert!(!m.ok(&["listener", "list"]).contains(&tcp_port.to_string()));

    // an HTTP listener with a custom 404 (a whole-response template), then replaced by
    // an update: both as Sōzu's CLI sends them
    let extra_port = free_port();
    let extra = format!("127.0.0.1:{extra_port}");
    let (first, second) = (m.dir.join("first.http"), m.dir.join("second.http"));
    std::fs::write(&first, "HTTP/1.1 404 Not Found\r\nX-Answer: first\r\n\r\nfirst 404").unwrap();
    std::fs::write(&second, "HTTP/1.1 404 Not Found\r\nX-Answer: second\r\n\r\nsecond 404").unwrap();
    theirs(&["listener", "http", "add", "-a", &extra, "--answer-404", first.to_str().unwrap()]);
    theirs(&["listener", "http", "activate", "--address", &extra]);
    assert_eq!(get_until(extra_port, "nobody.test", 404).1, "first 404");
    theirs(&["listener", "http", "update", "-a", &extra, "--answer-404", second.to_str().unwrap()]);
    assert_eq!(get(extra_port, "nobody.test").1, "second 404");

    // queries and master verbs
    assert!(theirs(&["metrics", "get"]).contains("requests"));
    assert!(theirs(&["state", "stats"]).contains("AddCluster"));
    theirs(&["logging", "debug"]);
    theirs(&["logging", "info"]);
    let saved = m.dir.join("saved-by-their-cli.state");
    theirs(&["state", "save", "-f", saved.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&saved).unwrap().contains("compat.test"));
    theirs(&["state", "load", "-f", saved.to_str().unwrap()]);

    // events: a backend that refuses connections goes down; their CLI prints it
    let mut events = Command::new(&sozu21)
        .arg("-c")
        .arg(&m.config)
        .arg("events")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    theirs(&["cluster", "add", "--id", "gone", "--load-balancing-policy", "round_robin"]);
    theirs(&[
        "backend",
        "add",
        "--id",
        "gone",
        "--backend-id",
        "dead",
        "--address",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    theirs(&["frontend", "http", "add", "--address", &listener, "--hostname", "gone.test", "id", "gone"]);
    for _ in 0..6 {
        get(m.http_port, "gone.test");
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = events.kill();
    let mut printed = String::new();
    events.stdout.take().unwrap().read_to_string(&mut printed).unwrap();
    let _ = events.wait();
    assert!(printed.contains("dead"), "their `events` printed: {printed}");

    // upgrade: their CLI upgrades the master then every worker; traffic still flows
    let pid = m.pid();
    let before = m.worker_pids();
    let upgraded = theirs(&["-t", "30000", "upgrade"]);
    assert!(upgraded.contains("Upgrade successful"), "{upgraded}");
    assert_eq!(m.pid(), pid);
    let after = m.worker_pids();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|p| !before.contains(p)), "{before:?} → {after:?}");
    assert_eq!(get_until(m.http_port, "compat.test", 200).0, 200);

    // removals, then a hard stop
    theirs(&["frontend", "http", "remove", "--address", &listener, "--hostname", "compat.test", "id", "compat"]);
    theirs(&[
        "backend",
        "remove",
        "--id",
        "compat",
        "--backend-id",
        "b1",
        "--address",
        &format!("127.0.0.1:{backend}"),
    ]);
    theirs(&["cluster", "remove", "--id", "compat"]);
    assert!(!m.ok(&["cluster", "list"]).contains("compat"));
    assert_eq!(get_until(m.http_port, "compat.test", 404).0, 404);
    theirs(&["shutdown", "--hard"]);
    let mut child = m.child.take().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "our master did not stop on their hard stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn our_cli_drives_a_sozu_2_1_master_and_state_files_cross_both_ways() {
    let Some(sozu21) = sozu21() else { return };
    let http_port = free_port();
    let theirs = Theirs::start(&sozu21, "compat-our-cli", http_port);
    let ours = |args: &[&str]| run_ok(Path::new(SOZU), &theirs.config, args);
    let listener = format!("127.0.0.1:{http_port}");
    let backend = http_backend("theirs");

    assert_eq!(ours(&["status"]).matches("RUNNING").count(), 2);
    ours(&["cluster", "add", "-i", "crossed", "--load-balancing-policy", "round_robin"]);
    ours(&["backend", "add", "-i", "crossed", "--backend-id", "b1", "-a", &format!("127.0.0.1:{backend}")]);
    ours(&["frontend", "http", "add", "-a", &listener, "--hostname", "crossed.test", "id", "crossed"]);
    let (status, body) = get_until(http_port, "crossed.test", 200);
    assert!(status == 200 && body.starts_with("theirs "), "{status} {body}");
    assert!(ours(&["cluster", "list"]).contains("crossed"));
    let json: serde_json::Value = serde_json::from_str(&ours(&["-j", "cluster", "list", "-i", "crossed"])).unwrap();
    assert!(json.to_string().contains("crossed.test"), "{json}");
    assert!(ours(&["frontend", "list"]).contains("crossed.test"));
    assert!(ours(&["listener", "list"]).contains(&http_port.to_string()));
    ours(&["metrics", "get"]);
    ours(&["state", "stats"]);

    // their master saves; ours loads it (after theirs is gone, so that the listener's
    // address is free) and routes by it
    let saved = theirs.dir.join("saved-by-sozu21.state");
    ours(&["state", "save", "-f", saved.to_str().unwrap()]);
    let text = std::fs::read(&saved).unwrap();
    ours(&["shutdown", "--hard"]);
    drop(theirs);
    let m = Master::start("compat-load-theirs", "");
    let file = m.dir.join("theirs.state");
    std::fs::write(&file, text).unwrap();
    m.ok(&["state", "load", "-f", file.to_str().unwrap()]);
    assert!(m.ok(&["cluster", "list"]).contains("crossed"));
    m.ok(&["listener", "http", "activate", "-a", &listener]);
    let (status, body) = get_until(http_port, "crossed.test", 200);
    assert!(status == 200 && body.starts_with("theirs "), "{status} {body}");

    // ours saves; a new Sōzu 2.1 master loads it
    let ours_file = m.dir.join("saved-by-ours.state");
    m.ok(&["state", "save", "-f", ours_file.to_str().unwrap()]);
    let saved = std::fs::read(&ours_file).unwrap();
    drop(m); // frees the listener the file names (and removes its directory)
    let theirs = Theirs::start(&sozu21, "compat-load-ours", free_port());
    let ours_file = theirs.dir.join("saved-by-ours.state");
    std::fs::write(&ours_file, saved).unwrap();
    run_ok(&sozu21, &theirs.config, &["state", "load", "-f", ours_file.to_str().unwrap()]);
    let listed = run_ok(&sozu21, &theirs.config, &["cluster", "list"]);
    assert!(listed.contains("crossed") && listed.contains("web"), "{listed}");
}
