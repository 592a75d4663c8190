//! TCP proxying under real traffic.

use super::support::*;

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

#[test]
fn a_worker_upgrade_under_traffic_loses_no_connection() {
    let m = tcp_master("tcpupgrade");
    let (stop, traffic) = tcp_load(m.tcp_port);
    std::thread::sleep(Duration::from_millis(200));
    let before = m.worker_pids();
    let out = m.ok(&["-t", "10000", "upgrade", "--worker", "0"]);
    assert!(out.contains("Upgrade successful: worker 2 replaced worker 0"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = traffic.join().unwrap();
    assert!(ok > 50, "{ok}");
    assert!(failed.is_empty(), "no connection lost: {failed:?}");
    let after = m.worker_pids();
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&before[0]) && after.contains(&before[1]), "{before:?} -> {after:?}");
    // the old worker drains in the background, then is reaped
    let end = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{}", before[0])).exists() {
        assert!(Instant::now() < end, "old worker not reaped");
        std::thread::sleep(Duration::from_millis(20));
    }
    // the new worker has the state
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "cluster", "list"])).unwrap();
    let map = v["WORKER_RESPONSES"]["map"].as_object().unwrap();
    assert_eq!(map["2"], map["main"]);
    // an unknown worker: a clear failure, nothing changes
    assert!(m.fails(&["upgrade", "--worker", "9"]).contains("Worker 9 does not exist"));
}

/// Opens a connection through `port`, sends nothing, and returns how long the proxy took
/// to close it (waiting at most `limit`).
fn closed_idle_after(port: u16, limit: Duration) -> Duration {
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(limit)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 8];
    assert_eq!(idle.read(&mut buf).unwrap(), 0, "closed by the proxy");
    started.elapsed()
}

#[test]
fn an_idle_tcp_connection_is_closed_at_the_front_timeout() {
    let m = tcp_master("tcpidle");
    m.ok(&["listener", "tcp", "update", "-a", &format!("127.0.0.1:{}", m.tcp_port), "--front-timeout", "1"]);
    // the backends answer on half-close only: nothing comes back, the proxy closes
    let took = closed_idle_after(m.tcp_port, Duration::from_secs(10));
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}");
    // a busy connection is not affected
    assert!(tcp_call(m.tcp_port, b"still").unwrap().ends_with(":still"));
}

#[test]
fn tcp_connections_over_max_buffers_are_refused_and_buffers_come_back() {
    // 4 buffers per worker: 2 connections each (one buffer per direction)
    let m = tcp_master_with("tcpbuffers", "max_buffers = 4\n");
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", m.tcp_port)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = [0u8; 1];
        match c.read(&mut buf) {
            Ok(0) => refused += 1, // closed at once: no buffer for it
            _ => held.push(c),     // open (the backend answers only after a half-close)
        }
    }
    assert!((2..=4).contains(&held.len()) && refused == 10 - held.len(), "held {} refused {refused}", held.len());
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "metrics", "get"])).unwrap();
    assert_eq!(v["METRICS"]["proxying"]["connections_refused"]["inner"]["COUNT"].as_i64(), Some(refused as i64), "{v}");
    let in_use: u64 = v["METRICS"]["workers"]
        .as_object()
        .unwrap()
        .values()
        .map(|w| w["proxy"]["buffers_in_use"]["inner"]["GAUGE"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(in_use, 2 * held.len() as u64, "{v}");
    // the held connections still work, and once they end their buffers serve others
    for mut c in held {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"held").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.ends_with(":held"), "{out}");
    }
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..6 {
        let body = format!("after-{i}");
        assert!(tcp_call(m.tcp_port, body.as_bytes()).unwrap().ends_with(&body));
    }
}

#[test]
fn an_idle_tcp_connection_is_closed_at_the_back_timeout_when_shorter() {
    let m = tcp_master("tcpbackidle");
    let listener = format!("127.0.0.1:{}", m.tcp_port);
    m.ok(&["listener", "tcp", "update", "-a", &listener, "--front-timeout", "60", "--back-timeout", "1"]);
    let took = closed_idle_after(m.tcp_port, Duration::from_secs(20));
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(10), "{took:?}: back_timeout, not front");
    assert!(tcp_call(m.tcp_port, b"busy").unwrap().ends_with(":busy"));
}

/// A backend whose connects hang: it listens with a backlog of one that is already
/// full, so further SYNs are dropped. Returns its port and what must stay alive.
fn hanging_backend() -> (u16, Vec<Box<dyn std::any::Any>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // listening again changes the backlog (Linux)
    nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut keep: Vec<Box<dyn std::any::Any>> = vec![Box::new(listener)];
    // fill the accept queue (never accepted)
    for _ in 0..2 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300))
        {
            keep.push(Box::new(s));
        }
    }
    (port, keep)
}

#[test]
fn a_backend_that_does_not_accept_is_left_at_the_connect_timeout_for_the_next_one() {
    let good = tcp_backend("good");
    let (hang, _keep) = hanging_backend();
    let m = Master::start(
        "tcpconnect",
        &format!(
            "[clusters.db]\nprotocol = \"tcp\"\nfrontends = [{{ address = \"127.0.0.1:TCP_PORT\" }}]\nbackends = [{{ address = \"127.0.0.1:{hang}\", backend_id = \"a-hang\" }}, {{ address = \"127.0.0.1:{good}\", backend_id = \"b-good\" }}]\n"
        ),
    );
    m.ok(&["listener", "tcp", "update", "-a", &format!("127.0.0.1:{}", m.tcp_port), "--connect-timeout", "1"]);
    let started = Instant::now();
    for i in 0..4 {
        let body = format!("c{i}");
        assert_eq!(tcp_call(m.tcp_port, body.as_bytes()).unwrap(), format!("good:{body}"));
    }
    // some call went to the hanging backend first and waited for the connect timeout
    // (a refused connect would have been retried at once)
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "metrics", "get"])).unwrap();
    let errors = v["METRICS"]["proxying"]["connect_errors"]["inner"]["COUNT"].as_i64().unwrap_or(0);
    assert!(errors >= 1, "the hanging backend's connect timed out and was counted: {v}");
}

/// `tcp_call` until it answers (a listener reaches every worker within the command's
/// answer; give a loaded machine a moment anyway).
fn call_until_answered(port: u16, body: &[u8]) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match tcp_call(port, body) {
            Ok(answer) if !answer.is_empty() => return answer,
            other => assert!(Instant::now() < end, "no answer through {port}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn listeners_added_while_running_carry_traffic_in_every_worker_and_free_their_port_when_removed() {
    let m = tcp_master("runtime-listener");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    m.ok(&["listener", "tcp", "add", "-a", &address]);
    m.ok(&["listener", "tcp", "activate", "-a", &address]);
    m.ok(&["frontend", "tcp", "add", "-i", "db", "-a", &address]);
    // both workers accept on it: a SIGSTOPped one cannot hide the other
    let workers = m.worker_pids();
    for stopped in &workers {
        let pid = nix::unistd::Pid::from_raw(*stopped);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGSTOP).unwrap();
        for i in 0..5 {
            let answer = call_until_answered(port, format!("runtime-{i}").as_bytes());
            assert!(answer.ends_with(&format!(":runtime-{i}")), "{answer}");
        }
        nix::sys::signal::kill(pid, nix::sys::signal::SIGCONT).unwrap();
    }
    // a worker started later (upgrade) gets the socket at boot
    m.ok(&["-t", "10000", "upgrade", "--worker", "0"]);
    m.ok(&["-t", "10000", "upgrade", "--worker", "1"]);
    for i in 0..10 {
        assert!(call_until_answered(port, b"after-upgrade").ends_with(":after-upgrade"), "call {i}");
    }
    // removed: nobody listens, the port can be bound again (every copy closed), and the
    // same address can be added again
    m.ok(&["frontend", "tcp", "remove", "-i", "db", "-a", &address]);
    m.ok(&["listener", "tcp", "remove", "-a", &address]);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(probe) => {
                drop(probe);
                break;
            }
            Err(e) => assert!(Instant::now() < end, "port {port} still held after the removal: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    m.ok(&["listener", "tcp", "add", "-a", &address]);
    m.ok(&["listener", "tcp", "activate", "-a", &address]);
    m.ok(&["frontend", "tcp", "add", "-i", "db", "-a", &address]);
    assert!(call_until_answered(port, b"again").ends_with(":again"));
    // a main upgrade takes the socket over with the others, and the workers it then
    // upgrades get it at boot
    let upgraded = m.ok(&["-t", "20000", "upgrade"]);
    assert!(upgraded.contains("Upgrade successful"), "{upgraded}");
    assert!(m.worker_pids().iter().all(|p| !workers.contains(p)));
    for i in 0..10 {
        assert!(call_until_answered(port, b"after-main-upgrade").ends_with(":after-main-upgrade"), "call {i}");
    }
    // a port someone else holds: a clear failure, and the state is unchanged
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let err = m.fails(&["listener", "tcp", "add", "-a", &taken]);
    assert!(err.contains(&format!("cannot bind listener {taken}")), "{err}");
    assert!(!m.ok(&["listener", "list"]).contains(&taken));
}

#[test]
fn listeners_added_by_a_reload_or_a_state_load_listen_and_a_load_that_cannot_bind_changes_nothing() {
    let mut m = tcp_master("reload-listener");
    let backend = tcp_backend("r1");
    let port = free_port();
    let config = std::fs::read_to_string(&m.config).unwrap()
        + &format!(
            "\n[[listeners]]\nprotocol = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\
             [clusters.reloaded]\nprotocol = \"tcp\"\nfrontends = [{{ address = \"127.0.0.1:{port}\" }}]\n\
             backends = [{{ address = \"127.0.0.1:{backend}\", backend_id = \"r1\" }}]\n"
        );
    std::fs::write(&m.config, config).unwrap();
    m.ok(&["reload"]);
    assert_eq!(call_until_answered(port, b"reloaded"), "r1:reloaded");
    // another master loads this one's state while this one holds the ports: refused,
    // nothing changes there
    let saved = m.dir.join("with-listener.state");
    m.ok(&["state", "save", "-f", saved.to_str().unwrap()]);
    let other = tcp_master("load-listener");
    let before = other.ok(&["-j", "cluster", "list"]);
    let err = other.fails(&["state", "load", "-f", saved.to_str().unwrap()]);
    assert!(err.contains("cannot bind listener") && err.contains("nothing was changed"), "{err}");
    assert_eq!(other.ok(&["-j", "cluster", "list"]), before);
    // once the first master is gone, the load binds the listener and it carries traffic
    m.stop();
    other.ok(&["state", "load", "-f", saved.to_str().unwrap()]);
    assert_eq!(call_until_answered(port, b"loaded"), "r1:loaded");
}

#[test]
fn metrics_disable_freezes_the_figures_enable_goes_on_and_clear_restarts_at_zero() {
    let m = tcp_master("metrics-configure");
    let counted = |m: &Master| -> (i64, i64) {
        let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "metrics", "get"])).unwrap();
        let worker = v["METRICS"]["proxying"]["connections"]["inner"]["COUNT"].as_i64().unwrap_or(0);
        let cluster = v["METRICS"]["clusters"]["db"]["cluster"]["connections"]["inner"]["COUNT"].as_i64().unwrap_or(0);
        (worker, cluster)
    };
    let calls = |n: usize| {
        for i in 0..n {
            assert!(tcp_call(m.tcp_port, format!("m{i}").as_bytes()).unwrap().ends_with(&format!(":m{i}")));
        }
    };
    calls(3);
    assert_eq!(counted(&m), (3, 3));
    m.ok(&["metrics", "disable"]);
    calls(2);
    assert_eq!(counted(&m), (3, 3), "nothing counted while disabled");
    m.ok(&["metrics", "enable"]);
    calls(4);
    assert_eq!(counted(&m), (7, 7));
    m.ok(&["metrics", "clear"]);
    assert_eq!(counted(&m), (0, 0));
    calls(1);
    assert_eq!(counted(&m), (1, 1));
    // the query's options: names, clusters, backends, the list of names
    calls(4);
    let get = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["-j", "metrics", "get"];
        all.extend_from_slice(args);
        serde_json::from_str(&m.ok(&all)).unwrap()
    };
    let v = get(&["-n", "connections", "--no-clusters"]);
    let names: Vec<&String> = v["METRICS"]["proxying"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["connections"], "{v}");
    assert!(v["METRICS"]["clusters"].as_object().unwrap().is_empty(), "{v}");
    let v = get(&["-k", "nope"]);
    assert!(v["METRICS"]["clusters"].as_object().unwrap().is_empty(), "{v}");
    let v = get(&["-k", "db", "-b", "b1"]);
    let backends = v["METRICS"]["clusters"]["db"]["backends"].as_array().unwrap();
    assert!(!backends.is_empty() && backends.iter().all(|b| b["backend_id"] == "b1"), "{v}");
    let v = get(&["-l"]);
    let listed = v["AVAILABLE_METRICS"]["proxy_metrics"].as_array().expect("a list of names");
    assert!(listed.iter().any(|n| n == "connections"), "{v}");
}

#[test]
fn a_listener_added_while_running_comes_back_from_the_saved_state_after_a_restart() {
    let mut m = tcp_master_with("saved-listener", "automatic_state_save = true\n");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    m.ok(&["listener", "tcp", "add", "-a", &address]);
    m.ok(&["listener", "tcp", "activate", "-a", &address]);
    m.ok(&["frontend", "tcp", "add", "-i", "db", "-a", &address]);
    assert!(call_until_answered(port, b"before").ends_with(":before"));
    let saved = m.dir.join("saved.state");
    let end = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&saved).unwrap_or_default().contains(&port.to_string()) {
        assert!(Instant::now() < end, "the automatic save did not write the listener");
        std::thread::sleep(Duration::from_millis(50));
    }
    m.stop();
    // the same configuration again: the saved state is replayed at boot, with the socket
    let child = Command::new(SOZU)
        .args(["start", "-c"])
        .arg(&m.config)
        .stdout(std::fs::File::create(m.dir.join("master.log")).unwrap())
        .spawn()
        .unwrap();
    let again = Master { dir: m.dir.clone(), config: m.config.clone(), child: Some(child), ..m };
    again.wait_ready();
    assert!(call_until_answered(port, b"restarted").ends_with(":restarted"));
}
