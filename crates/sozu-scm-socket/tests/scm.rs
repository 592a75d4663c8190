//! fd passing between real processes and over real sockets.
//!
//! Every test holds `LOCK`, so that counting this process's open fds is meaningful.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::fstat;
use prost::Message;
use sozu_proto::ListenersCount;
use sozu_scm_socket::{ListenerKind, Listeners, ScmError, ScmSocket};

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn tcp_listener() -> (SocketAddr, OwnedFd) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    (l.local_addr().unwrap(), OwnedFd::from(l))
}

fn identity(fd: BorrowedFd<'_>) -> (u64, u64) {
    let st = fstat(fd).unwrap();
    (st.st_dev, st.st_ino)
}

/// Kills the child if the test fails before it exits (it would block in accept).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CHILD_ENV: &str = "SOZU_SCM_TEST_CHILD_FD";

/// Runs only in the child process started by `a_child_process_receives_the_same_sockets`:
/// receives the listeners, prints each one's identity and CLOEXEC flag, then accepts
/// one connection on each and prints the peer's greeting.
#[test]
fn child_receiver() {
    let Ok(fd) = std::env::var(CHILD_ENV) else { return };
    let fd: i32 = fd.parse().unwrap();
    // SAFETY (test): the parent passed this fd to us and nothing else uses it
    let stream = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let scm = ScmSocket::new(stream).unwrap();
    let listeners = scm.recv_listeners(Some(Duration::from_secs(10))).unwrap();
    let mut out = std::io::stdout().lock();
    for (kind, addr, fd) in listeners.iter() {
        let (dev, ino) = identity(fd);
        let cloexec = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC);
        writeln!(out, "LISTENER {kind:?} {addr} {dev} {ino} {cloexec}").unwrap();
    }
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    for (_, _, fd) in listeners.iter() {
        let listener = TcpListener::from(fd.try_clone_to_owned().unwrap());
        let (mut conn, _) = listener.accept().unwrap();
        let mut greeting = String::new();
        conn.read_to_string(&mut greeting).unwrap();
        writeln!(out, "ACCEPTED {greeting}").unwrap();
    }
}

#[test]
fn a_child_process_receives_the_same_sockets_and_accepts_on_them() {
    let _guard = lock();
    let mut listeners = Listeners::default();
    listeners.http.push(tcp_listener());
    listeners.tls.push(tcp_listener());
    listeners.tcp.push(tcp_listener());
    listeners.tcp.push(tcp_listener());
    let (parent, child) = UnixStream::pair().unwrap();
    // the child end must survive exec
    fcntl(child.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    let proc = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_receiver", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, child.as_raw_fd().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proc = KillOnDrop(proc);
    drop(child);
    let scm = ScmSocket::new(parent).unwrap();
    scm.send_listeners(&listeners).unwrap();

    let mut lines = BufReader::new(proc.0.stdout.take().unwrap()).lines().map(Result::unwrap);
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        // libtest may print "test child_receiver ... " before our first line
        if line.contains("READY") {
            break;
        }
        if let Some(at) = line.find("LISTENER ") {
            seen.push(line[at + "LISTENER ".len()..].to_string());
        }
    }
    let expected: Vec<String> = listeners
        .iter()
        .map(|(kind, addr, fd)| {
            let (dev, ino) = identity(fd);
            format!("{kind:?} {addr} {dev} {ino} true")
        })
        .collect();
    assert_eq!(seen, expected, "same sockets (st_dev/st_ino), in manifest order, CLOEXEC set");

    for (i, (_, addr, _)) in listeners.iter().enumerate() {
        let mut conn = TcpStream::connect(addr).unwrap();
        write!(conn, "hello-{i}").unwrap();
    }
    let accepted: Vec<String> = lines.filter_map(|l| l.strip_prefix("ACCEPTED ").map(str::to_string)).collect();
    assert_eq!(accepted, (0..4).map(|i| format!("hello-{i}")).collect::<Vec<_>>());
    assert!(proc.0.wait().unwrap().success());
}

#[test]
fn more_than_200_listeners_go_in_several_messages() {
    let _guard = lock();
    let before = open_fds();
    let mut listeners = Listeners::default();
    for _ in 0..250 {
        listeners.http.push(tcp_listener());
    }
    for _ in 0..10 {
        listeners.tcp.push(tcp_listener());
    }
    let (a, b) = ScmSocket::pair().unwrap();
    let expected: Vec<(ListenerKind, SocketAddr, (u64, u64))> =
        listeners.iter().map(|(k, a, fd)| (k, a, identity(fd))).collect();
    let sender = std::thread::spawn(move || {
        a.send_listeners(&listeners).unwrap();
        listeners
    });
    let received = b.recv_listeners(Some(Duration::from_secs(10))).unwrap();
    let sent = sender.join().unwrap();
    let got: Vec<_> = received.iter().map(|(k, a, fd)| (k, a, identity(fd))).collect();
    assert_eq!(got, expected);
    drop((received, sent, b));
    assert_eq!(open_fds(), before, "no fd leaked");
}

#[test]
fn an_empty_set_is_one_empty_manifest() {
    let _guard = lock();
    let (a, b) = ScmSocket::pair().unwrap();
    a.send_listeners(&Listeners::default()).unwrap();
    let got = b.recv_listeners(Some(Duration::from_secs(5))).unwrap();
    assert!(got.is_empty());
}

fn manifest(http: usize) -> Vec<u8> {
    ListenersCount { http: (0..http).map(|i| format!("127.0.0.1:{}", 1000 + i)).collect(), ..Default::default() }
        .encode_length_delimited_to_vec()
}

#[test]
fn manifest_declaring_more_than_the_fds_received_is_inconsistent() {
    let _guard = lock();
    let before = open_fds();
    let (a, b) = ScmSocket::pair().unwrap();
    let (_, fd) = tcp_listener();
    a.send_fds(&manifest(3), &[fd.as_fd()]).unwrap();
    match b.recv_listeners(Some(Duration::from_secs(5))) {
        Err(ScmError::Inconsistent { http: 3, tls: 0, tcp: 0, udp: 0, fds_received: 1 }) => {}
        other => panic!("expected Inconsistent, got {other:?}"),
    }
    // the same with no fds at all (Sōzu's e2e case)
    a.send_fds(&manifest(3), &[]).unwrap();
    assert!(matches!(
        b.recv_listeners(Some(Duration::from_secs(5))),
        Err(ScmError::Inconsistent { http: 3, fds_received: 0, .. })
    ));
    drop((a, b, fd));
    assert_eq!(open_fds(), before, "the received fd was closed");
}

#[test]
fn extra_fds_are_an_error_and_are_closed() {
    let _guard = lock();
    let before = open_fds();
    let (a, b) = ScmSocket::pair().unwrap();
    let l1 = tcp_listener();
    let l2 = tcp_listener();
    a.send_fds(&manifest(1), &[l1.1.as_fd(), l2.1.as_fd()]).unwrap();
    assert!(matches!(
        b.recv_listeners(Some(Duration::from_secs(5))),
        Err(ScmError::Inconsistent { http: 1, fds_received: 2, .. })
    ));
    drop((a, b, l1, l2));
    assert_eq!(open_fds(), before, "extra fds closed, not leaked");
}

#[test]
fn truncated_control_message_is_an_error_and_closes_what_arrived() {
    let _guard = lock();
    let before = open_fds();
    let (a, b) = ScmSocket::pair().unwrap();
    let ls: Vec<_> = (0..3).map(|_| tcp_listener()).collect();
    let fds: Vec<_> = ls.iter().map(|(_, fd)| fd.as_fd()).collect();
    a.send_fds(&manifest(3), &fds).unwrap();
    let mut buf = [0u8; 4096];
    match b.recv_fds(&mut buf, 1, Some(Duration::from_secs(5))) {
        Err(ScmError::ControlTruncated { .. }) => {}
        other => panic!("expected ControlTruncated, got {other:?}"),
    }
    drop(fds);
    drop((a, b, ls));
    assert_eq!(open_fds(), before);
}

#[test]
fn garbage_manifest_and_bad_address_are_errors() {
    let _guard = lock();
    let (a, b) = ScmSocket::pair().unwrap();
    a.send_fds(&[0xff, 0xff, 0xff], &[]).unwrap();
    assert!(matches!(b.recv_listeners(Some(Duration::from_secs(5))), Err(ScmError::Manifest(_))));
    let bad = ListenersCount { tcp: vec!["not an address".into()], ..Default::default() };
    let (_, fd) = tcp_listener();
    a.send_fds(&bad.encode_length_delimited_to_vec(), &[fd.as_fd()]).unwrap();
    assert!(matches!(b.recv_listeners(Some(Duration::from_secs(5))), Err(ScmError::BadAddress(_))));
}

#[test]
fn receive_times_out_and_reports_a_closed_peer() {
    let _guard = lock();
    let (a, b) = ScmSocket::pair().unwrap();
    let start = std::time::Instant::now();
    assert!(matches!(b.recv_listeners(Some(Duration::from_millis(100))), Err(ScmError::TimedOut)));
    assert!(start.elapsed() >= Duration::from_millis(100));
    drop(a);
    assert!(matches!(b.recv_listeners(Some(Duration::from_secs(1))), Err(ScmError::Closed)));
}
