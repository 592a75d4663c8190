//! Main upgrade (`sozu upgrade`): the master re-executes itself, keeps its pid, its
//! workers, its sockets and its state, under traffic; broken binaries leave it serving.

use crate::support::*;

/// The inode of the socket listening on `port` (from /proc/net/tcp).
fn listen_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
        (local_port == port && f.get(3) == Some(&"0A")).then(|| f[9].to_string())
    })
}

/// The inodes of the sockets in a process's fd table.
fn socket_inodes(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn main_upgrades_under_traffic_keep_the_pid_workers_sockets_and_state_and_lose_nothing() {
    let m = tcp_master("mainupgrade");
    m.ok(&["cluster", "add", "-i", "kept"]);
    let hashes = m.ok(&["-j", "cluster", "list"]);
    let pid = m.pid();
    let workers = m.worker_pids();
    let inode = listen_inode(m.tcp_port).expect("the TCP listener");
    let (stop, handle) = tcp_load(m.tcp_port);
    std::thread::sleep(Duration::from_millis(100));
    // the fd baseline is taken after the first: an upgraded image closes the fds it
    // inherited and was not told about (a test harness's jobserver pipes, say)
    let mut fds = 0;
    for generation in 1..=50 {
        let out = m.ok(&["-t", "20000", "upgrade", "--main-only"]);
        assert!(out.contains(&format!("runs the main process (pid {pid}, boot generation {generation})")), "{out}");
        if generation == 1 {
            fds = stable_fds(pid);
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = handle.join().unwrap();
    assert!(ok > 20, "{ok}");
    assert!(failed.is_empty(), "no connection lost: {failed:?}");
    // same process, same workers (still its children), same listening socket, same state
    assert_eq!(m.pid(), pid);
    assert_eq!(m.worker_pids(), workers);
    for w in &workers {
        let stat = std::fs::read_to_string(format!("/proc/{w}/stat")).unwrap();
        let ppid: u32 = stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(ppid, pid, "worker {w} is still the master's child");
    }
    assert_eq!(listen_inode(m.tcp_port).as_deref(), Some(inode.as_str()));
    assert_eq!(m.ok(&["-j", "cluster", "list"]), hashes);
    assert_eq!(settled_fds(pid, fds), fds, "no fd leaked by 50 upgrades");
    // the workers accept on that very socket (it is in their fd tables)
    for w in &workers {
        assert!(socket_inodes(*w as u32).contains(&inode), "worker {w} holds the listener {inode}");
    }
    assert_eq!(children_of(pid).len(), 2, "no process left behind");
    // what `ps` and `top` show, although both run the binary through an fd
    let comm = |p: u32| std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap();
    let argv = |p: u32| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap();
    assert_eq!(comm(pid), "sozu\n", "the re-executed master");
    for w in &workers {
        assert_eq!(comm(*w as u32), "sozu-worker\n");
        assert!(argv(*w as u32).starts_with("sozu\0worker\0--id\0"), "{:?}", argv(*w as u32));
    }
    // after the upgrade: supervision works (a killed worker is reaped and relaunched)
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(workers[0]), nix::sys::signal::SIGKILL).unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    while m.worker_pids().contains(&workers[0]) || m.worker_pids().len() < 2 {
        assert!(Instant::now() < end, "worker not relaunched after the upgrade: {}", m.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!Path::new(&format!("/proc/{}", workers[0])).exists(), "the killed worker was reaped");
    // plain `sozu upgrade`: the master, then every worker one by one
    let out = m.ok(&["-t", "20000", "upgrade"]);
    assert!(out.contains("boot generation 51") && out.matches("replaced worker").count() == 2, "{out}");
    // the new workers got the master's own listening socket, not new ones
    assert_eq!(listen_inode(m.tcp_port).as_deref(), Some(inode.as_str()));
    for w in m.worker_pids() {
        assert!(socket_inodes(w as u32).contains(&inode), "new worker {w} holds the listener {inode}");
    }
    assert_eq!(tcp_call(m.tcp_port, b"after").unwrap().split_once(':').unwrap().1, "after");
    assert!(m.log().contains("main upgrade done"));
    let audit = std::fs::read_to_string(m.dir.join("audit.json")).unwrap();
    assert!(audit.contains("main_upgraded"), "audited");
}

/// An executable script in a directory of its own.
fn script(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sozu-e2e-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn broken_main_upgrades_answer_failure_in_time_and_the_old_master_keeps_serving() {
    let cases = [
        ("missing", PathBuf::from("/nonexistent/sozu"), "cannot open the new binary"),
        ("exits", script("exits", "echo it broke >&2; exit 1"), "it broke"),
        ("hangs", script("hangs", "exec sleep 60"), "did not confirm within upgrade_timeout (1 s)"),
        ("refuses", script("refuses", "echo unknown data format; exit 0"), "refused the upgrade"),
    ];
    for (name, binary, expected) in cases {
        let m = tcp_master_with(
            &format!("badupgrade-{name}"),
            &format!("upgrade_timeout = 1\nupgrade_binary = \"{}\"\n", binary.display()),
        );
        let pid = m.pid();
        let workers = m.worker_pids();
        let hashes = m.ok(&["-j", "cluster", "list"]);
        let (stop, handle) = tcp_load(m.tcp_port);
        let started = Instant::now();
        let err = m.fails(&["-t", "20000", "upgrade"]);
        assert!(started.elapsed() < Duration::from_secs(5), "{name}: answered in time");
        assert!(err.contains("upgrade failed, the master keeps serving") && err.contains(expected), "{name}: {err}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = handle.join().unwrap();
        assert!(ok > 0 && failed.is_empty(), "{name}: traffic went on: {failed:?}");
        assert_eq!(m.pid(), pid);
        assert_eq!(m.worker_pids(), workers);
        assert_eq!(m.ok(&["-j", "cluster", "list"]), hashes, "{name}: same state");
        assert!(m.ok(&["status"]).contains("RUNNING"));
        assert_eq!(children_of(pid).len(), 2, "{name}: the check process was reaped");
    }
}

/// `count_fds` once it is `expected`, or after 3 s.
fn settled_fds(pid: u32, expected: usize) -> usize {
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let n = count_fds(pid);
        if n == expected || Instant::now() > end {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_new_image_that_fails_after_the_exec_hands_everything_back_to_the_previous_binary() {
    // the real binary for the check; after the exec it is given a data fd it cannot
    // read, so it fails once it already replaced the old image
    let binary = script(
        "fails-after-exec",
        &format!(
            "case \"$1\" in\n  upgraded) shift 3; exec {SOZU} upgraded --data-fd 999 \"$@\" ;;\n  *) exec {SOZU} \"$@\" ;;\nesac"
        ),
    );
    let m = tcp_master_with("rollback", &format!("upgrade_binary = \"{}\"\n", binary.display()));
    m.ok(&["cluster", "add", "-i", "kept"]);
    let pid = m.pid();
    let workers = m.worker_pids();
    let hashes = m.ok(&["-j", "cluster", "list"]);
    let (stop, handle) = tcp_load(m.tcp_port);
    // the fd baseline is taken after the first: an upgraded image closes the fds it
    // inherited and was not told about (a test harness's jobserver pipes, say)
    let mut fds = None;
    for _ in 0..4 {
        let err = m.fails(&["-t", "20000", "upgrade", "--main-only"]);
        fds = fds.or_else(|| Some(stable_fds(pid)));
        assert!(
            err.contains("upgrade failed, the master keeps serving")
                && err.contains("failed after the exec")
                && err.contains("fd 999")
                && err.contains("took everything back"),
            "{err}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = handle.join().unwrap();
    assert!(ok > 0 && failed.is_empty(), "traffic went on: {failed:?}");
    assert_eq!(m.pid(), pid);
    assert_eq!(m.worker_pids(), workers, "the same workers, never restarted");
    assert_eq!(m.ok(&["-j", "cluster", "list"]), hashes, "same state");
    assert!(m.ok(&["status"]).contains("RUNNING"));
    assert_eq!(children_of(pid).len(), 2, "no process left behind");
    let fds = fds.unwrap();
    assert_eq!(settled_fds(pid, fds), fds, "every fd put back, none leaked");
    assert!(m.log().contains("main upgrade rolled back"));
    let audit = std::fs::read_to_string(m.dir.join("audit.json")).unwrap();
    assert!(audit.contains("main_upgrade_rolled_back"), "audited");
    // the master still upgrades (to its own binary) after that
    m.ok(&["cluster", "add", "-i", "after"]);
    assert!(m.ok(&["-j", "cluster", "list"]).contains("after"));
}

#[test]
fn a_state_changed_during_the_check_is_checked_again_and_nothing_is_lost() {
    // a slow check, so that a mutation lands while it runs
    let binary = script("slow-check", &format!("[ \"$1\" = upgrade-check ] && sleep 0.5\nexec {SOZU} \"$@\""));
    let m = tcp_master_with("recheck", &format!("upgrade_binary = \"{}\"\n", binary.display()));
    let pid = m.pid();
    let upgrade = Command::new(SOZU)
        .arg("-c")
        .arg(&m.config)
        .args(["-t", "20000", "upgrade", "--main-only"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    m.ok(&["cluster", "add", "-i", "added-during-the-check"]);
    let out = upgrade.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("boot generation 1"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(m.pid(), pid);
    assert!(m.log().contains("the state changed during the check; checking again"), "{}", m.log());
    // the new image has the cluster, and so do the workers (its hash in every answer)
    let list = m.ok(&["-j", "cluster", "list"]);
    assert!(list.contains("added-during-the-check"), "{list}");
    m.ok(&["cluster", "remove", "-i", "added-during-the-check"]);
    assert!(!m.ok(&["-j", "cluster", "list"]).contains("added-during-the-check"));
}

#[test]
fn a_new_image_that_panics_or_hangs_while_taking_over_is_rolled_back() {
    for (fault, expected) in [("panic", "the new image panicked"), ("hang", "did not take over within upgrade_timeout")]
    {
        // the real binary passes the check, then misbehaves once it replaced the old image
        let binary = script(
            &format!("{fault}-after-exec"),
            &format!("[ \"$1\" = upgraded ] && export SOZU_UPGRADED_FAULT={fault}\nexec {SOZU} \"$@\""),
        );
        let m = tcp_master_with(
            &format!("rollback-{fault}"),
            &format!("upgrade_timeout = 2\nupgrade_binary = \"{}\"\n", binary.display()),
        );
        let pid = m.pid();
        let workers = m.worker_pids();
        let hashes = m.ok(&["-j", "cluster", "list"]);
        let (stop, handle) = tcp_load(m.tcp_port);
        let err = m.fails(&["-t", "20000", "upgrade", "--main-only"]);
        assert!(err.contains("failed after the exec") && err.contains(expected), "{fault}: {err}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = handle.join().unwrap();
        assert!(ok > 0 && failed.is_empty(), "{fault}: traffic went on: {failed:?}");
        assert_eq!(m.pid(), pid);
        assert_eq!(m.worker_pids(), workers, "{fault}: the same workers");
        assert_eq!(m.ok(&["-j", "cluster", "list"]), hashes, "{fault}: same state");
        assert!(m.ok(&["status"]).contains("RUNNING"));
        assert_eq!(children_of(pid).len(), 2, "{fault}: no process left behind");
        // the rolled-back image did not inherit the fault: it upgrades (to the same
        // faulty wrapper, so it rolls back again) and keeps serving
        assert!(m.fails(&["-t", "20000", "upgrade", "--main-only"]).contains(expected));
        assert!(m.ok(&["status"]).contains("RUNNING"));
    }
}
