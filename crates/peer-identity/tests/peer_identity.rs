//! Peer identity over real sockets and real processes.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peer_identity::{PeerIdentity, SystemUsers, UserLookup, UserResolver, UserResolverConfig, UserTable, peer_comm};

const CHILD_ENV: &str = "PEER_IDENTITY_TEST_CONNECT";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peer-identity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs only in child processes: connects to the socket named by the environment and
/// waits for the parent to close the connection.
#[test]
fn child_connector() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let mut stream = UnixStream::connect(path).unwrap();
    if std::env::var("PEER_IDENTITY_TEST_EXIT").is_ok() {
        return; // exit right away, before the parent reads anything
    }
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

/// A copy of `exe` that any uid can run, in a fresh directory under /tmp (the build
/// directory may sit under a directory other users cannot enter, such as a CI clone in
/// /root). Remove `copy.parent()` when done.
fn world_executable(exe: &std::path::Path) -> std::path::PathBuf {
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

fn spawn_child(path: &std::path::Path, exit_at_once: bool, as_nobody: bool) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let exe = if as_nobody { world_executable(&exe) } else { exe };
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_connector", "--test-threads=1", "-q"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if exit_at_once {
        cmd.env("PEER_IDENTITY_TEST_EXIT", "1");
    }
    if as_nobody {
        cmd.uid(65534).gid(65534);
    }
    cmd.spawn().unwrap()
}

#[test]
fn a_child_running_as_65534_is_seen_as_65534() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: switching a child to uid 65534 needs root");
        return;
    }
    let dir = temp_dir("nobody");
    let path = dir.join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = spawn_child(&path, false, true);
    let (stream, _) = listener.accept().unwrap();
    let users = UserResolver::new(SystemUsers, UserResolverConfig::default());
    let (who, _) = PeerIdentity::capture(&stream, &path, &users);
    assert_eq!(who.cred.uid, Some(65534));
    assert_eq!(who.cred.gid, Some(65534));
    assert_eq!(who.cred.pid, Some(child.id() as i32));
    let exe_name: String = exe.file_name().unwrap().to_string_lossy().chars().take(15).collect();
    assert_eq!(who.comm.as_deref(), Some(exe_name.as_str()));
    assert_eq!(who.role().as_str(), "user");
    drop(stream);
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&format!("sozu-exe-{}-", std::process::id())) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[test]
fn a_peer_that_exits_before_comm_is_read_gives_none() {
    let dir = temp_dir("exit");
    let path = dir.join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let mut child = spawn_child(&path, true, false);
    let (stream, _) = listener.accept().unwrap();
    let pid = child.id() as i32;
    assert!(child.wait().unwrap().success()); // exited and reaped: /proc/<pid> is gone
    let users = UserResolver::new(SystemUsers, UserResolverConfig::default());
    let (who, _) = PeerIdentity::capture(&stream, &path, &users);
    assert_eq!(who.cred.pid, Some(pid), "credentials are as of connect");
    assert_eq!(who.comm, None);
    assert_eq!(peer_comm(pid), None);
    assert!(who.to_string().contains("comm=unknown"));
    std::fs::remove_dir_all(&dir).unwrap();
}

struct WedgedTable;

impl UserTable for WedgedTable {
    fn user_name(&self, uid: u32) -> std::io::Result<Option<String>> {
        std::thread::sleep(Duration::from_secs(2)); // an SSSD/LDAP wedge
        Ok(Some(format!("slow{uid}")))
    }
}

#[test]
fn a_slow_user_table_never_blocks_the_caller() {
    let config = UserResolverConfig { deadline: Duration::from_millis(200), ..Default::default() };
    let users = UserResolver::new(WedgedTable, config);
    let (a, _b) = UnixStream::pair().unwrap();

    let start = Instant::now();
    let (mut who, pending) = PeerIdentity::capture(&a, "/run/test.sock", &users);
    let took = start.elapsed();
    // not a speed measurement: proof that capture does not wait for the 2 s lookup
    // (the bound is far from 2 s so a loaded machine cannot make it flaky)
    assert!(took < Duration::from_millis(500), "capture took {took:?} while the table takes 2 s");
    let pending = pending.expect("not cached: pending");
    assert_eq!(who.user, None);
    assert_eq!(who.user_display(), "unknown");

    // the deadline passes: recorded as unknown, still without blocking
    assert_eq!(pending.poll(Instant::now()), None);
    std::thread::sleep(Duration::from_millis(250));
    let answer = pending.poll(Instant::now()).unwrap();
    assert_eq!(answer, UserLookup::Unknown);
    who.set_user(answer);
    assert_eq!(who.user_display(), "unknown");

    // later the table answers and the cache learns the name for the next client
    let uid = who.cred.uid.unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while users.cached(uid).is_none() {
        assert!(Instant::now() < end, "the resolver thread fills the cache");
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let (who, pending) = PeerIdentity::capture(&a, "/run/test.sock", &users);
    assert!(start.elapsed() < Duration::from_millis(500), "served from the cache, not the 2 s table");
    assert!(pending.is_none());
    assert_eq!(who.user_display(), format!("slow{uid}"));
}
