//! State: dispatch, generate/diff, and Sōzu-compatible save/load.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sozu_proto::request::RequestType as R;
use sozu_proto::*;
use sozu_state::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/sozu-2.1").join(name)
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sozu-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sa(port: u16) -> SocketAddress {
    SocketAddr::from(([127, 0, 0, 1], port)).into()
}

fn cluster(id: &str) -> Cluster {
    Cluster { cluster_id: id.into(), ..Default::default() }
}

fn http_listener(port: u16, active: bool) -> HttpListenerConfig {
    HttpListenerConfig { address: sa(port), sticky_name: "SOZUBALANCEID".into(), active, ..Default::default() }
}

fn frontend(cluster: &str, host: &str, port: u16) -> RequestHttpFrontend {
    RequestHttpFrontend {
        cluster_id: Some(cluster.into()),
        address: sa(port),
        hostname: host.into(),
        path: PathRule { kind: PathRuleKind::Prefix as i32, value: "/".into() },
        ..Default::default()
    }
}

fn backend(cluster: &str, id: &str, port: u16) -> AddBackend {
    AddBackend { cluster_id: cluster.into(), backend_id: id.into(), address: sa(port), ..Default::default() }
}

fn apply(state: &mut ConfigState, requests: &[Request]) {
    for r in requests {
        state.dispatch(r).unwrap_or_else(|e| panic!("{r:?}: {e}"));
    }
}

fn bytes_of(requests: &[Request]) -> Vec<u8> {
    let mut out = Vec::new();
    save(&mut out, requests).unwrap();
    out
}

#[test]
fn fixtures_load_and_resave_to_the_same_requests() {
    for (name, records, clusters) in [("state-small.state", 49, 10), ("state-1k.state", 4004, 1000)] {
        let loaded = load_file(&ConfigState::new(), &fixture(name), 1 << 20).unwrap();
        assert_eq!(loaded.requests.len(), records, "{name}");
        assert_eq!(loaded.state.cluster_count(), clusters);
        let regenerated = loaded.state.generate_requests();
        // same set of records (Sōzu writes TCP frontends in hash-map order)
        let as_set =
            |rs: &[Request]| -> BTreeSet<String> { rs.iter().map(|r| serde_json::to_string(r).unwrap()).collect() };
        assert_eq!(as_set(&regenerated), as_set(&loaded.requests), "{name}");
        // and our file loads back to the same state
        let dir = temp("fixture");
        let path = dir.join(name);
        save_atomic(&path, &loaded.state).unwrap();
        let again = load_file(&ConfigState::new(), &path, 1 << 20).unwrap();
        assert_eq!(again.state, loaded.state);
        assert_eq!(again.state.digest(), loaded.state.digest());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn saved_records_are_byte_identical_to_serde_worker_requests() {
    let loaded = load_file(&ConfigState::new(), &fixture("state-small.state"), 1 << 20).unwrap();
    let requests = loaded.state.generate_requests();
    let mut bytes = Vec::new();
    save_records(&mut bytes, &requests).unwrap();
    let mut expected = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let wr = WorkerRequest { id: format!("SAVE-{i}"), content: r.clone() };
        expected.extend(serde_json::to_vec(&wr).unwrap());
        expected.extend(b"\n\0");
    }
    assert_eq!(bytes, expected);
}

#[test]
fn dispatch_errors_are_precise_and_change_nothing() {
    let mut s = ConfigState::new();
    apply(
        &mut s,
        &[
            R::AddHttpListener(Box::new(http_listener(8080, false))).into(),
            R::AddCluster(Box::new(cluster("api"))).into(),
            R::AddHttpFrontend(Box::new(frontend("api", "a.example", 8080))).into(),
            R::AddBackend(backend("api", "b1", 9000)).into(),
        ],
    );
    let before = s.clone();
    type Expect = fn(&StateError) -> bool;
    let cases: Vec<(Request, Expect)> = vec![
        (R::AddHttpListener(Box::new(http_listener(8080, false))).into(), |e| {
            matches!(e, StateError::ListenerExists(_))
        }),
        (R::AddTcpListener(TcpListenerConfig { address: sa(8080), ..Default::default() }).into(), |e| {
            matches!(e, StateError::ListenerExists(_))
        }),
        (R::AddHttpFrontend(Box::new(frontend("nope", "b.example", 8080))).into(), |e| {
            matches!(e, StateError::UnknownCluster(_))
        }),
        (R::AddHttpFrontend(Box::new(frontend("api", "a.example", 8080))).into(), |e| {
            matches!(e, StateError::FrontendExists(_))
        }),
        (R::RemoveHttpFrontend(Box::new(frontend("api", "zzz", 8080))).into(), |e| {
            matches!(e, StateError::UnknownFrontend(_))
        }),
        (
            R::RemoveBackend(RemoveBackend { cluster_id: "api".into(), backend_id: "b2".into(), address: sa(9000) })
                .into(),
            |e| matches!(e, StateError::UnknownBackend { .. }),
        ),
        (R::AddBackend(backend("nope", "b1", 9000)).into(), |e| matches!(e, StateError::UnknownCluster(_))),
        (R::RemoveCluster("nope".into()).into(), |e| matches!(e, StateError::UnknownCluster(_))),
        (R::AddCluster(Box::new(cluster(""))).into(), |e| matches!(e, StateError::EmptyClusterId)),
        (R::AddCluster(Box::new(cluster("evil\n[x] AUDIT"))).into(), |e| {
            matches!(e, StateError::ControlCharacter { field: "cluster_id", .. })
        }),
        (R::AddHttpFrontend(Box::new(frontend("api", "b.example\u{1b}[2J", 8080))).into(), |e| {
            matches!(e, StateError::ControlCharacter { field: "hostname", .. })
        }),
        (R::AddBackend(backend("api", "b\u{0}2", 9001)).into(), |e| {
            matches!(e, StateError::ControlCharacter { field: "backend_id", .. })
        }),
        (R::RemoveListener(RemoveListener { address: sa(1), proxy: ListenerType::Http as i32 }).into(), |e| {
            matches!(e, StateError::UnknownListener(_))
        }),
        (
            R::AddBackend(AddBackend { address: SocketAddress { port: 70_000, ..sa(0) }, ..backend("api", "x", 0) })
                .into(),
            |e| matches!(e, StateError::InvalidAddress(_)),
        ),
        (Request::default(), |e| matches!(e, StateError::EmptyRequest)),
        (R::SaveState("/tmp/x".into()).into(), |e| matches!(e, StateError::NotAStateVerb("SaveState"))),
    ];
    for (request, expected) in cases {
        let err = s.dispatch(&request).unwrap_err();
        assert!(expected(&err), "{request:?} gave {err}");
        assert_eq!(s, before, "{request:?} changed nothing");
    }
    assert_eq!(s.dispatch(&R::Status(Status {}).into()), Ok(Applied::Noop));
}

#[test]
fn removing_a_cluster_removes_its_frontends_and_backends() {
    let mut s = ConfigState::new();
    apply(
        &mut s,
        &[
            R::AddCluster(Box::new(cluster("api"))).into(),
            R::AddCluster(Box::new(cluster("web"))).into(),
            R::AddHttpFrontend(Box::new(frontend("api", "a.example", 80))).into(),
            R::AddHttpFrontend(Box::new(frontend("web", "w.example", 80))).into(),
            R::AddTcpFrontend(RequestTcpFrontend {
                cluster_id: "api".into(),
                address: sa(81),
                tags: Default::default(),
            })
            .into(),
            R::AddBackend(backend("api", "b1", 9000)).into(),
            R::AddBackend(backend("web", "w1", 9001)).into(),
            R::RemoveCluster("api".into()).into(),
        ],
    );
    let saved = String::from_utf8(bytes_of(&s.generate_requests())).unwrap();
    assert!(!saved.contains("\"api\""), "no ghost state: {saved}");
    assert_eq!(s.backend_count(), 1);
    assert_eq!(s.cluster_hashes().keys().collect::<Vec<_>>(), ["web"]);
}

#[test]
fn a_changed_listener_stays_active_through_a_diff() {
    let mut a = ConfigState::new();
    apply(
        &mut a,
        &[
            R::AddHttpListener(Box::new(http_listener(8080, false))).into(),
            R::ActivateListener(ActivateListener {
                address: sa(8080),
                proxy: ListenerType::Http as i32,
                from_scm: false,
            })
            .into(),
        ],
    );
    let mut b = ConfigState::new();
    let mut changed = http_listener(8080, true);
    changed.front_timeout = 99;
    apply(&mut b, &[R::AddHttpListener(Box::new(changed)).into()]);
    let diff = a.diff(&b);
    let mut replayed = a.clone();
    apply(&mut replayed, &diff);
    assert_eq!(replayed, b);
    assert!(matches!(diff.last().and_then(|r| r.request_type.as_ref()), Some(R::ActivateListener(_))), "{diff:?}");
}

#[test]
fn a_listener_update_replaces_the_answers_it_names_and_keeps_the_others() {
    let mut state = ConfigState::default();
    let mut listener = http_listener(8080, false);
    listener.answers = [("404".to_string(), "old 404".to_string()), ("503".to_string(), "old 503".to_string())].into();
    apply(&mut state, &[R::AddHttpListener(Box::new(listener)).into()]);
    let update = UpdateHttpListenerConfig {
        address: sa(8080),
        front_timeout: Some(5),
        http_answers: Some(CustomHttpAnswers { answer_404: Some("new 404".into()), ..Default::default() }),
        ..Default::default()
    };
    apply(&mut state, &[R::UpdateHttpListener(Box::new(update)).into()]);
    let l = state.http_listener("127.0.0.1:8080".parse().unwrap()).unwrap();
    assert_eq!(l.front_timeout, 5);
    // the new 404 in the per-status fields, the old one gone from the map (it would win)
    assert_eq!(l.http_answers.as_ref().and_then(|h| h.answer_404.as_deref()), Some("new 404"));
    assert_eq!(l.answers.get("404"), None);
    assert_eq!(l.answers.get("503").map(String::as_str), Some("old 503"));
    assert_eq!(l.http_answers.as_ref().and_then(|h| h.answer_503.as_deref()), None);
}

#[test]
fn hashes_are_stable_and_sensitive() {
    let build = |port| {
        let mut s = ConfigState::new();
        apply(
            &mut s,
            &[R::AddCluster(Box::new(cluster("api"))).into(), R::AddBackend(backend("api", "b", port)).into()],
        );
        s
    };
    assert_eq!(build(1).cluster_hashes(), build(1).cluster_hashes());
    assert_ne!(build(1).cluster_hash("api"), build(2).cluster_hash("api"));
    assert_ne!(build(1).digest(), build(2).digest());
}

#[test]
fn v1_1_1_records_load_and_missing_required_scalars_do_not() {
    let file = concat!(
        r#"{"id":"SAVE-0","content":{"request_type":{"ADD_CLUSTER":{"cluster_id":"c","sticky_session":false,"https_redirect":false,"proxy_protocol":null,"load_balancing":0,"answer_503":null,"load_metric":null}}}}"#,
        "\n\0",
        r#"{"id":"SAVE-1","content":{"request_type":{"ADD_HTTP_FRONTEND":{"cluster_id":"c","address":{"ip":{"inner":{"V4":2130706433}},"port":80},"hostname":"h","path":{"kind":0,"value":"/"},"method":null,"position":2,"tags":{}}}}}"#,
        "\n\0",
        r#"{"id":"SAVE-2","content":{"request_type":{"ADD_BACKEND":{"cluster_id":"c","backend_id":"b","address":{"ip":{"inner":{"V4":2130706433}},"port":1},"sticky_id":null,"load_balancing_parameters":null,"backup":null}}}}"#,
        "\n\0"
    );
    let loaded = load(&ConfigState::new(), file.as_bytes(), 1 << 20).unwrap();
    assert_eq!(loaded.requests.len(), 3);
    let bad = file.replacen(r#""cluster_id":"c","sticky"#, r#""sticky"#, 1);
    let err = load(&ConfigState::new(), bad.as_bytes(), 1 << 20).unwrap_err();
    assert_eq!((err.index, err.offset), (0, 0));
    assert!(err.reason.contains("cluster_id"), "{err}");
}

#[test]
fn malformed_files_name_the_record_and_apply_nothing() {
    let mut base = ConfigState::new();
    apply(&mut base, &[R::AddCluster(Box::new(cluster("keep"))).into()]);
    let mut good = Vec::new();
    save_records(
        &mut good,
        &[R::AddCluster(Box::new(cluster("a"))).into(), R::AddCluster(Box::new(cluster("b"))).into()],
    )
    .unwrap();
    let second = good.iter().position(|b| *b == 0).unwrap() as u64 + 1;

    // missing trailing \n\0
    let err = load(&base, &good[..good.len() - 2], 1 << 20).unwrap_err();
    assert_eq!((err.index, err.offset), (1, second));
    assert!(err.reason.contains("not terminated"), "{err}");
    // trailing garbage
    let mut garbage = good.clone();
    garbage.extend(b"\n");
    let err = load(&base, &garbage[..], 1 << 20).unwrap_err();
    assert_eq!(err.index, 2);
    // unknown variant
    let unknown = b"{\"id\":\"SAVE-0\",\"content\":{\"request_type\":{\"ADD_UNICORN\":{}}}}\n\0";
    let err = load(&base, &unknown[..], 1 << 20).unwrap_err();
    assert!(err.reason.contains("unknown variant"), "{err}");
    // bytes that are not UTF-8 inside a record: named by their offset in the record
    let mut latin1 = good.clone();
    let at = latin1.windows(3).position(|w| w == b"\"b\"").unwrap() + 1;
    latin1[at] = 0xe9;
    let err = load(&base, &latin1[..], 1 << 20).unwrap_err();
    assert_eq!((err.index, err.offset), (1, second));
    assert!(err.reason.contains(&format!("invalid UTF-8 at byte {}", at - second as usize)), "{err}");
    // a record naming a cluster with a control character (written by Sōzu 2.x, which
    // takes any id): the file is refused whole, the record named
    let mut control = good.clone();
    save_records(&mut control, &[R::AddCluster(Box::new(cluster("c\u{7}"))).into()]).unwrap();
    let err = load(&base, &control[..], 1 << 20).unwrap_err();
    assert_eq!(err.index, 2);
    assert!(err.reason.contains("cluster_id \"c\\u{7}\" holds a control"), "{err}");
    // a file with a header cut exactly at a record boundary
    let with_header =
        bytes_of(&[R::AddCluster(Box::new(cluster("a"))).into(), R::AddCluster(Box::new(cluster("b"))).into()]);
    let boundary = with_header.len() - (good.len() - second as usize);
    let err = load(&base, &with_header[..boundary], 1 << 20).unwrap_err();
    assert!(err.reason.contains("declares 2 records"), "{err}");
    let mut appended = with_header.clone();
    appended.extend_from_slice(&good[second as usize..]);
    assert!(load(&base, &appended[..], 1 << 20).unwrap_err().reason.contains("more records than the header"));
    // a record that does not apply: a second, different listener at the same address
    // (an identical one would be skipped as already there)
    let mut other = http_listener(1, false);
    other.front_timeout = 5;
    let dup = bytes_of(&[
        R::AddHttpListener(Box::new(http_listener(1, false))).into(),
        R::AddHttpListener(Box::new(other)).into(),
    ]);
    let err = load(&base, &dup[..], 1 << 20).unwrap_err();
    assert_eq!(err.index, 2, "the header is record 0");
    let same = bytes_of(&[
        R::AddHttpListener(Box::new(http_listener(1, false))).into(),
        R::AddHttpListener(Box::new(http_listener(1, false))).into(),
    ]);
    assert_eq!(load(&base, &same[..], 1 << 20).unwrap().requests.len(), 1, "identical record skipped");
    assert!(err.reason.contains("AddHttpListener cannot be applied"), "{err}");
    // a record over the maximum, found without buffering the whole file
    let big = bytes_of(&[
        R::AddCluster(Box::new(cluster("a"))).into(),
        R::AddCluster(Box::new(cluster(&"x".repeat(5000)))).into(),
    ]);
    let err = load(&base, &big[..], 1000).unwrap_err();
    assert_eq!(err.index, 2);
    assert!(err.reason.contains("larger than the maximum of 1000"), "{err}");
    // the base state was never touched
    assert_eq!(base.cluster_count(), 1);
}

#[test]
fn atomic_save_writes_0600_leaves_no_temp_and_keeps_the_old_file_on_failure() {
    let dir = temp("atomic");
    let path = dir.join("state");
    std::fs::write(&path, b"old").unwrap();
    let mut state = ConfigState::new();
    apply(&mut state, &[R::AddCluster(Box::new(cluster("a"))).into()]);
    assert_eq!(save_atomic(&path, &state).unwrap(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
    // a failing save (target is a directory) leaves the old file and no temp behind
    let target = dir.join("sub");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("x"), b"").unwrap();
    assert!(save_atomic(&target, &state).is_err());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    assert_eq!(load_file(&ConfigState::new(), &path, 1 << 20).unwrap().state.cluster_count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    assert_eq!(resolve_path(Path::new("/etc/sozu"), Path::new("state/saved")), Path::new("/etc/sozu/state/saved"));
    assert_eq!(resolve_path(Path::new("/etc/sozu"), Path::new("../x")), Path::new("/etc/x"));
    assert_eq!(resolve_path(Path::new("/etc/sozu"), Path::new("/abs")), Path::new("/abs"));
}

fn arb_request() -> impl Strategy<Value = Request> {
    let id = prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")];
    let port = 1u16..6;
    prop_oneof![
        (port.clone(), any::<bool>(), 1u32..100).prop_map(|(p, active, t)| {
            let mut l = http_listener(p, active);
            l.front_timeout = t;
            R::AddHttpListener(Box::new(l)).into()
        }),
        (port.clone(), any::<bool>()).prop_map(|(p, active)| {
            R::AddTcpListener(TcpListenerConfig { address: sa(p + 100), active, ..Default::default() }).into()
        }),
        (port.clone(), 0i32..4)
            .prop_map(|(p, k)| R::RemoveListener(RemoveListener { address: sa(p), proxy: k }).into()),
        (port.clone(), 0i32..3).prop_map(|(p, k)| {
            R::ActivateListener(ActivateListener { address: sa(p), proxy: k, from_scm: false }).into()
        }),
        (id.clone(), 0i32..4, any::<bool>()).prop_map(|(c, lb, sticky)| {
            R::AddCluster(Box::new(Cluster { load_balancing: lb, sticky_session: sticky, ..cluster(c) })).into()
        }),
        id.clone().prop_map(|c| R::RemoveCluster(c.into()).into()),
        (id.clone(), prop_oneof![Just("x.example"), Just("y.example")], port.clone())
            .prop_map(|(c, h, p)| R::AddHttpFrontend(Box::new(frontend(c, h, p))).into()),
        (id.clone(), prop_oneof![Just("x.example"), Just("y.example")], port.clone())
            .prop_map(|(c, h, p)| R::RemoveHttpFrontend(Box::new(frontend(c, h, p))).into()),
        (id.clone(), port.clone()).prop_map(|(c, p)| {
            R::AddTcpFrontend(RequestTcpFrontend {
                cluster_id: c.into(),
                address: sa(p + 200),
                tags: Default::default(),
            })
            .into()
        }),
        (id.clone(), prop_oneof![Just("b1"), Just("b2")], port.clone(), proptest::option::of(any::<bool>()))
            .prop_map(|(c, b, p, backup)| R::AddBackend(AddBackend { backup, ..backend(c, b, p + 9000) }).into()),
        (id, prop_oneof![Just("b1"), Just("b2")], port).prop_map(|(c, b, p)| {
            R::RemoveBackend(RemoveBackend { cluster_id: c.into(), backend_id: b.into(), address: sa(p + 9000) }).into()
        }),
    ]
}

fn arb_state() -> impl Strategy<Value = ConfigState> {
    proptest::collection::vec(arb_request(), 0..40).prop_map(|requests| {
        let mut s = ConfigState::new();
        for r in &requests {
            let before = s.clone();
            if s.dispatch(r).is_err() {
                assert_eq!(s, before, "a refused verb changed nothing");
            }
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn save_then_load_gives_an_equal_state(state in arb_state()) {
        let bytes = bytes_of(&state.generate_requests());
        let mut streamed = Vec::new();
        prop_assert_eq!(save_state(&mut streamed, &state).unwrap(), state.request_count());
        prop_assert_eq!(&streamed, &bytes);
        let loaded = load(&ConfigState::new(), &bytes[..], 1 << 20).unwrap();
        prop_assert_eq!(&loaded.state, &state);
        prop_assert_eq!(loaded.state.digest(), state.digest());
    }

    #[test]
    fn a_diff_applied_to_a_gives_b(a in arb_state(), b in arb_state()) {
        let mut replayed = a.clone();
        for r in a.diff(&b) {
            replayed.dispatch(&r).map_err(|e| TestCaseError::fail(format!("{r:?}: {e}")))?;
        }
        prop_assert_eq!(replayed, b);
    }

    #[test]
    fn any_truncation_of_a_valid_file_is_rejected(state in arb_state(), cut in any::<prop::sample::Index>()) {
        let bytes = bytes_of(&state.generate_requests());
        prop_assume!(!bytes.is_empty());
        let cut = cut.index(bytes.len());
        let base = ConfigState::new();
        // every cut, record boundaries included (the header declares the count)
        prop_assert!(load(&base, &bytes[..cut], 1 << 20).is_err() || cut == 0);
        prop_assert_eq!(base, ConfigState::new());
    }
}

#[test]
fn dispatch_owned_gives_the_same_state_and_errors_as_dispatch() {
    let mut requests = load_file(&ConfigState::new(), &fixture("state-1k.state"), 1 << 20).unwrap().requests;
    // errors too: a duplicate frontend, a backend of an unknown cluster, an empty id
    let duplicate = requests.iter().find(|r| matches!(r.request_type, Some(R::AddHttpFrontend(_)))).unwrap().clone();
    requests.push(duplicate);
    requests.push(
        R::AddBackend(sozu_proto::AddBackend {
            cluster_id: "nope".into(),
            backend_id: "b".into(),
            address: std::net::SocketAddr::from(([127, 0, 0, 1], 1)).into(),
            ..Default::default()
        })
        .into(),
    );
    requests.push(R::AddCluster(Box::default()).into());
    let (mut by_ref, mut owned) = (ConfigState::new(), ConfigState::new());
    for r in requests {
        let a = by_ref.dispatch(&r).map_err(|e| e.to_string());
        let b = owned.dispatch_owned(r).map_err(|e| e.to_string());
        assert_eq!(a, b);
    }
    assert_eq!(by_ref, owned);
    assert_eq!(owned.cluster_count(), 1000);
}
