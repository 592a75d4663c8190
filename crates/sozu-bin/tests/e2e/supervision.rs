//! Worker crashes, reload, stops and systemd.

use super::support::*;

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

/// A request that reaches a worker whose death the master has not seen yet (its write
/// fails at once): the task still ends, at once, with that worker's share failed.
/// The master is stopped while the request arrives and then the worker dies, so that
/// it sees the two in that order.
#[test]
fn a_request_to_a_worker_found_dead_by_the_write_is_answered_at_once() {
    let m = Master::start("deadwrite", "");
    let pids = m.worker_pids();
    let master = nix::unistd::Pid::from_raw(m.pid() as i32);
    let mut raw = m.raw();
    nix::sys::signal::kill(master, nix::sys::signal::SIGSTOP).unwrap();
    raw.send(&R::Status(Status {}).into());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0]), nix::sys::signal::SIGKILL).unwrap();
    // its socket is closed once it is a zombie (its parent, stopped, cannot reap it)
    let end = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(format!("/proc/{}/stat", pids[0])).unwrap_or_default().contains(") Z ") {
        assert!(Instant::now() < end, "worker {} did not die", pids[0]);
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(master, nix::sys::signal::SIGCONT).unwrap();
    let start = Instant::now();
    let answer = raw.terminal();
    assert!(start.elapsed() < Duration::from_secs(3), "answered after {:?}", start.elapsed());
    assert_ne!(answer.status, ResponseStatus::Processing as i32);
    // and the master goes on: the slot is relaunched, status answers
    let end = Instant::now() + Duration::from_secs(10);
    while m.worker_pids().len() != 2 || m.worker_pids().contains(&pids[0]) {
        assert!(Instant::now() < end, "worker not relaunched");
        std::thread::sleep(Duration::from_millis(50));
    }
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
    // without handle_process_affinity, workers may run anywhere the test may
    let ours = cpus_allowed(std::process::id() as i32);
    assert!(after.iter().all(|pid| cpus_allowed(*pid) == ours));
    let audit = std::fs::read_to_string(m.dir.join("audit.log")).unwrap();
    assert!(audit.contains("verb=worker_killed") && audit.contains(&format!("pid:{}", before[0])), "{audit}");
}

/// The CPUs a process may run on, from `/proc/<pid>/status` (`0-1,3` → `[0, 1, 3]`).
fn cpus_allowed(pid: i32) -> Vec<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// Worker ids and pids, from `status`.
fn workers(m: &Master) -> Vec<(u32, i32)> {
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "status"])).unwrap();
    let list = v["WORKERS"]["vec"].as_array().unwrap().iter();
    list.filter(|w| w["run_state"].as_i64() == Some(RunState::Running as i64))
        .map(|w| (w["id"].as_u64().unwrap() as u32, w["pid"].as_i64().unwrap() as i32))
        .collect()
}

#[test]
fn with_handle_process_affinity_each_worker_gets_its_own_cpu_and_replacements_take_the_freed_one() {
    let ours = cpus_allowed(std::process::id() as i32);
    let m = Master::start("affinity", "handle_process_affinity = true\n");
    let before = workers(&m);
    assert_eq!(before.len(), 2);
    let cpu = |pid: i32| {
        let mask = cpus_allowed(pid);
        assert_eq!(mask.len(), 1, "worker {pid} pinned to one CPU: {mask:?}");
        assert!(ours.contains(&mask[0]), "CPU {} is one the master may use ({ours:?})", mask[0]);
        mask[0]
    };
    let (first, second) = (cpu(before[0].1), cpu(before[1].1));
    if ours.len() >= 2 {
        assert_ne!(first, second, "two workers, two CPUs");
    }
    // the master itself stays unpinned
    assert_eq!(cpus_allowed(m.pid() as i32), ours);

    // a crashed worker comes back on the CPU it left free
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(before[0].1), nix::sys::signal::SIGKILL).unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let relaunched = loop {
        let now = workers(&m);
        if let Some(w) = now.iter().find(|w| w.1 != before[0].1 && w.1 != before[1].1) {
            break *w;
        }
        assert!(Instant::now() < end, "no replacement worker: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(cpu(relaunched.1), first);

    // an upgraded worker takes its predecessor's CPU, whichever it was
    let out = m.ok(&["-t", "20000", "upgrade", "--worker", &before[1].0.to_string()]);
    assert!(out.contains("replaced worker"), "{out}");
    let upgraded = *workers(&m).iter().find(|w| w.1 != relaunched.1 && w.1 != before[1].1).unwrap();
    assert_eq!(cpu(upgraded.1), second);
    assert!(m.log().contains(&format!("pinned to CPU {second}")), "the choice is logged");
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
    // once the master closed the CLI's connection
    let fds = stable_fds(m.pid());
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
