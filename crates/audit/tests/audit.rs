//! Sinks, the hash chain and the sanitizer on arbitrary input.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use audit::*;
use proptest::prelude::*;
use ulid::Ulid;

fn entry(i: u32) -> AuditEntry {
    let mut e = AuditEntry::new(Ulid::new(), Ulid::new(), "cluster_added", format!("cluster:c{i}"), AuditResult::Ok);
    e.cluster_id = Some(format!("c{i}"));
    e.version = "0.1.0".into();
    e
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("audit-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn chain(n: u32) -> Vec<String> {
    let mut sink = JsonSink::new(WriterSink(Vec::new()));
    for i in 0..n {
        sink.record(&entry(i)).unwrap();
    }
    String::from_utf8(sink.writer().0.clone()).unwrap().lines().map(str::to_string).collect()
}

fn verify_lines(lines: &[String]) -> Result<(usize, String), ChainBreak> {
    let mut text = lines.join("\n");
    text.push('\n');
    verify(text.as_bytes(), GENESIS)
}

#[test]
fn an_intact_chain_verifies() {
    let lines = chain(5);
    assert_eq!(verify_lines(&lines).unwrap().0, 5);
}

#[test]
fn every_kind_of_tampering_is_found_at_its_line() {
    let lines = chain(5);
    // edited
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("cluster:c2", "cluster:cX");
    assert_eq!(verify_lines(&edited).unwrap_err().line, 3);
    // removed
    let mut removed = lines.clone();
    removed.remove(1);
    assert_eq!(verify_lines(&removed).unwrap_err().line, 2);
    // the first removed: the new first record does not start at genesis
    assert_eq!(verify_lines(&lines[1..]).unwrap_err().line, 1);
    // reordered
    let mut reordered = lines.clone();
    reordered.swap(3, 4);
    assert_eq!(verify_lines(&reordered).unwrap_err().line, 4);
    // truncated in the middle of the last record
    let mut truncated = lines.clone();
    let last = truncated.pop().unwrap();
    truncated.push(last[..last.len() / 2].to_string());
    assert_eq!(verify_lines(&truncated).unwrap_err().line, 5);
    // digest replaced by a recomputed-looking value
    let mut forged = lines.clone();
    forged[0] = forged[0].replace("\"digest\":\"", "\"digest\":\"00");
    assert_eq!(verify_lines(&forged).unwrap_err().line, 1);
}

#[test]
fn file_sink_appends_with_mode_0640_and_narrows_wider_files() {
    let dir = temp("mode");
    let path = dir.join("nested/audit.json");
    let (mut sink, notice) = JsonSink::open_file(&path, Fsync::Always).unwrap();
    assert!(notice.is_none());
    sink.record(&entry(0)).unwrap();
    drop(sink);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o750);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (mut sink, notice) = JsonSink::open_file(&path, Fsync::Every(2)).unwrap();
    assert!(notice.unwrap().contains("0666"), "the caller is told");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    // the chain continues across reopen
    sink.record(&entry(1)).unwrap();
    drop(sink);
    let (count, _) = verify(std::io::BufReader::new(std::fs::File::open(&path).unwrap()), GENESIS).unwrap();
    assert_eq!(count, 2);

    // a torn last line is refused rather than silently chained over
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"torn").unwrap();
    assert!(JsonSink::open_file(&path, Fsync::Never).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

struct Broken;

impl LineWriter for Broken {
    fn write_line(&mut self, _: &str) -> io::Result<()> {
        Err(io::Error::other("disk full"))
    }
}

#[test]
fn fail_closed_returns_the_error_fail_open_counts_it() {
    let mut closed = AuditLog::new(FailPolicy::Closed).with_json(Broken, GENESIS.into());
    let err = closed.record(&entry(0)).unwrap_err();
    assert_eq!(err.sink, "json");
    assert!(err.to_string().contains("disk full"));
    assert_eq!(closed.chain_head(), Some(GENESIS), "a failed record does not move the chain");
    let mut open = AuditLog::new(FailPolicy::Open).with_text(Broken);
    assert!(open.record(&entry(0)).is_ok());
    assert_eq!(open.failures(), 1);
}

#[test]
fn text_layout_matches_sozu() {
    let mut e = entry(7);
    e.session = Ulid::from_string("01JAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    e.request = Ulid::from_string("01JBBBBBBBBBBBBBBBBBBBBBBB").unwrap();
    e.ts = UNIX_EPOCH + Duration::from_micros(1_795_000_000_000_001);
    e.connect_ts = Some(UNIX_EPOCH + Duration::from_secs(1_795_000_000));
    e.actor = Actor { uid: Some(0), gid: Some(0), pid: Some(42), user: Some("root".into()), comm: Some("sozu".into()) };
    e.client_id = Some(3);
    e.socket = "/run/sozu.sock".into();
    e.result = AuditResult::Err;
    e.error_code = Some(ErrorCode::WorkerFailure);
    e.reason = Some("0: no such cluster, 1: boom=bad".into());
    e.elapsed_ms = Some(12);
    e.fanout = Some(Fanout { status: FanoutStatus::Partial, workers_ok: 1, workers_err: 1, workers_expected: 2 });
    e.request_sha256 = Some("0123456789abcdef".into());
    e.boot_generation = 2;
    assert_eq!(
        render_text(&e),
        "[01JAAAAAAAAAAAAAAAAAAAAAAA 01JBBBBBBBBBBBBBBBBBBBBBBB c7 -]\tAUDIT\tCommand(ts=2026-11-18T11:06:40.000001Z, \
         verb=cluster_added, actor_uid=0, actor_gid=0, actor_pid=42, actor_role=root, actor_user=root, \
         actor_comm=sozu, client_id=3, connect_ts=2026-11-18T11:06:40.000000Z, socket=/run/sozu.sock, \
         target=cluster:c7, result=err, error_code=worker_failure, reason=0: no such cluster? 1: boom?bad, \
         elapsed_ms=12, fanout=partial, workers=1/1/2, request_sha256=0123456789abcdef, sozu_version=0.1.0, \
         build_git_sha=unknown, boot_generation=2)"
    );
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just('\n'),
                Just('\r'),
                Just('\u{85}'),
                Just('\u{9b}'),
                Just('\u{2028}'),
                Just('\u{202e}'),
                Just('\u{feff}'),
                Just(','),
                Just('='),
                Just(']'),
                Just('"'),
                Just('\\'),
                any::<char>()
            ],
            0..40
        )
        .prop_map(|v| v.into_iter().collect())
    ]
}

fn arb_entry() -> impl Strategy<Value = AuditEntry> {
    (
        (arb_text(), arb_text(), arb_text(), proptest::option::of(arb_text()), proptest::option::of(arb_text())),
        (proptest::option::of(arb_text()), proptest::option::of(arb_text()), proptest::option::of(arb_text())),
        (proptest::option::of(any::<u32>()), proptest::option::of(any::<i32>()), proptest::option::of(any::<u64>())),
        (0u64..4_000_000_000_000_000, proptest::option::of(0u64..4_000_000_000_000_000), any::<bool>(), any::<u32>()),
    )
        .prop_map(
            |((verb, target, socket, user, comm), (reason, cluster, backend), (uid, pid, ms), (ts, cts, ok, boot))| {
                let mut e = AuditEntry::new(
                    Ulid::new(),
                    Ulid::new(),
                    verb,
                    target,
                    if ok { AuditResult::Ok } else { AuditResult::Err },
                );
                e.ts = UNIX_EPOCH + Duration::from_micros(ts);
                e.connect_ts = cts.map(|c| UNIX_EPOCH + Duration::from_micros(c));
                e.socket = socket;
                e.actor = Actor { uid, gid: uid, pid, user, comm };
                e.reason = reason;
                e.cluster_id = cluster;
                e.backend_id = backend;
                e.elapsed_ms = ms;
                e.error_code = (!ok).then_some(ErrorCode::DispatchError);
                e.fanout = ms.map(|_| Fanout {
                    status: FanoutStatus::Timeout,
                    workers_ok: 1,
                    workers_err: 2,
                    workers_expected: 3,
                });
                e.boot_generation = boot;
                e
            },
        )
}

proptest! {
    /// Whatever the fields hold, each sink writes exactly one line, and the JSON line
    /// parses back to the sanitized entry.
    #[test]
    fn one_line_per_record_and_json_round_trips(e in arb_entry()) {
        let mut text = TextSink::new(WriterSink(Vec::new()));
        text.record(&e).unwrap();
        let out = String::from_utf8(text.writer().0.clone()).unwrap();
        prop_assert_eq!(out.matches('\n').count(), 1);
        prop_assert!(out.ends_with('\n'));
        prop_assert!(!out[..out.len() - 1].chars().any(|c| Mode::Line.rejects(c) && c != '\t'));
        prop_assert_eq!(out.matches("\tAUDIT\t").count(), 1);

        let mut json = JsonSink::new(WriterSink(Vec::new()));
        json.record(&e).unwrap();
        let out = String::from_utf8(json.writer().0.clone()).unwrap();
        prop_assert_eq!(out.matches('\n').count(), 1);
        let back = parse_json_line(out.trim_end_matches('\n')).unwrap();
        prop_assert_eq!(back, e.sanitized());
    }
}
