//! Verbs, frames, clients and state files.

use super::support::*;

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
    let v: serde_json::Value = serde_json::from_str(&by_domain).unwrap();
    let map = &v["WORKER_RESPONSES"]["map"];
    assert!(map["main"]["content_type"]["CLUSTERS"]["vec"].as_array().is_some_and(|v| !v.is_empty()), "{by_domain}");
    assert_eq!(map["0"], map["main"], "workers answer by domain as the master does");
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
    assert!(m.log().contains("Logging refused: \"loud\" is not a level"), "{}", m.log());
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
    // a main upgrade in the middle: the new image continues the audit chain
    assert!(m.ok(&["-t", "20000", "upgrade", "--main-only"]).contains("Upgrade successful"));
    assert!(m.ok(&["config", "check"]).contains("valid"));

    let status = m.stop();
    assert!(status.success(), "clean stop: {status:?}");
    // the workers exit by themselves after a soft stop (none is killed)
    let log = m.log();
    assert_eq!(log.matches("exited: exit status: 0").count(), 2, "{log}");
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
    raw.send(&R::AddCluster(Box::new(Cluster { cluster_id: "p1".into(), ..Default::default() })).into());
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
    // and each refusal is in the log
    let log = m.log();
    for line in ["bad frame: frame too short", "empty request, or a verb", "LaunchWorker is not supported"] {
        assert!(log.contains(line), "{line}: {log}");
    }
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
fn clients_connecting_and_leaving_leave_no_fd_behind() {
    let m = Master::start("fds", "");
    m.ok(&["status"]);
    // the baseline once the CLI's own connection is closed on the master's side too
    let mut baseline = count_fds(m.pid());
    let mut before = list_fds(m.pid());
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(50));
        let now = count_fds(m.pid());
        if now == baseline {
            break;
        }
        baseline = now;
        before = list_fds(m.pid());
    }
    for i in 0..1000 {
        let mut raw = m.raw();
        if i % 10 == 0 {
            raw.send(&R::CountRequests(CountRequests {}).into());
            raw.terminal();
        }
    }
    // a leak stays; anything else the master opens for a moment (reading a client's
    // /proc entry, a user lookup) is gone again well within 20 s on a loaded machine
    let end = Instant::now() + Duration::from_secs(20);
    let mut now = count_fds(m.pid());
    while now != baseline && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        now = count_fds(m.pid());
    }
    assert_eq!(now, baseline, "before: {before:#?}\nafter: {:#?}", list_fds(m.pid()));
}

#[test]
fn an_unlisted_uid_is_refused_and_audited_and_hostile_ids_are_refused_unforged() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run a client as uid 65534");
        return;
    }
    let m = Master::start("uids", "command_allowed_uids = [0]");
    // let uid 65534 reach the socket at all (the master makes it 0600)
    std::fs::set_permissions(m.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let exe = world_executable(Path::new(SOZU));
    let out = Command::new(&exe)
        .arg("-c")
        .arg(&m.config)
        .args(["cluster", "add", "-i", "intruder"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unauthorized: actor UID 65534 not in command_allowed_uids"), "{stderr}");
    // root is allowed, but an id with control bytes is refused with a clear error and
    // changes nothing; the audit records the refused attempt without being forged by it
    let err = m.fails(&["cluster", "add", "-i", "evil\n[x] AUDIT, result=ok"]);
    assert!(
        err.starts_with("Request failed: ")
            && err.contains("cluster_id \"evil\\u{a}[x] AUDIT, result=ok\" holds a control or formatting character"),
        "{err}"
    );
    assert!(!m.ok(&["cluster", "list"]).contains("evil"));
    let log = m.log();
    assert!(log.contains("AddCluster refused: cluster_id \"evil\\u{a}[x] AUDIT, result=ok\""), "{log}");
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
    // a hostname with a control character, which only the state refuses: `config check`
    // refuses it as `start` does, naming the cluster
    std::fs::write(
        dir.join("c3.toml"),
        "command_socket = \"s3.sock\"\n[clusters.web]\nprotocol = \"http\"\n\
         frontends = [{ address = \"127.0.0.1:1\", hostname = \"a\\u001b[2J\" }]\n",
    )
    .unwrap();
    for args in [&["config", "check"][..], &["start"]] {
        let out = Command::new(SOZU).arg("-c").arg(dir.join("c3.toml")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains("clusters.web: hostname \"a\\u{1b}[2J\" holds a control"), "{args:?}: {stderr}");
    }
    assert!(!dir.join("s3.sock").exists());
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
    let _ = std::fs::remove_dir_all(&dir);
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
fn a_large_load_state_through_small_buffers_is_fully_acknowledged() {
    // buffers far smaller than the fan-out: both directions must apply backpressure
    let m = Master::start("bigload", "command_buffer_size = 16384\nmax_command_buffer_size = 65536");
    let mut state = sozu_state::ConfigState::new();
    for i in 0..3000 {
        let id = format!("c{i}");
        state
            .dispatch(&R::AddCluster(Box::new(Cluster { cluster_id: id.clone(), ..Default::default() })).into())
            .unwrap();
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

/// A state of `n` clusters, each with one backend, saved at `path`; with `bad_tail`, one
/// more record that cannot be applied (a backend of an unknown cluster) ends the file.
fn write_state(path: &Path, n: usize, prefix: &str, bad_tail: bool) {
    let mut state = sozu_state::ConfigState::new();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        state
            .dispatch(&R::AddCluster(Box::new(Cluster { cluster_id: id.clone(), ..Default::default() })).into())
            .unwrap();
        let backend = AddBackend {
            cluster_id: id.clone(),
            backend_id: format!("{id}-b"),
            address: std::net::SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8], 80)).into(),
            ..Default::default()
        };
        state.dispatch(&R::AddBackend(backend).into()).unwrap();
    }
    let mut records = state.generate_requests();
    if bad_tail {
        records.push(
            R::AddBackend(AddBackend {
                cluster_id: "no-such-cluster".into(),
                backend_id: "b".into(),
                address: std::net::SocketAddr::from(([10, 9, 9, 9], 80)).into(),
                ..Default::default()
            })
            .into(),
        );
    }
    let mut file = std::fs::File::create(path).unwrap();
    sozu_state::save(&mut file, &records).unwrap();
}

/// Every worker's cluster hashes, and the master's, as JSON.
fn hashes(m: &Master) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&m.ok(&["-j", "cluster", "list"])).unwrap();
    v["WORKER_RESPONSES"]["map"].clone()
}

/// The cluster ids in one entry of [`hashes`].
fn ids(entry: &serde_json::Value) -> Vec<String> {
    let map = entry["content_type"]["CLUSTER_HASHES"]["map"].as_object().expect("cluster hashes");
    map.keys().cloned().collect()
}

#[test]
fn a_load_failing_after_thousands_of_staged_records_changes_no_worker() {
    let m = Master::start("stagedabort", "");
    m.ok(&["cluster", "add", "-i", "kept"]);
    let before = hashes(&m);
    assert_eq!(before["0"], before["main"]);
    // 2,500 clusters (5,000 records: several slices already streamed to the workers)
    // then a record that cannot be applied
    let bad = m.dir.join("bad-tail.state");
    write_state(&bad, 2500, "s", true);
    let err = m.fails(&["-t", "60000", "state", "load", "-f", bad.to_str().unwrap()]);
    assert!(err.contains("record 5001") && err.contains("nothing was changed"), "{err}");
    assert_eq!(hashes(&m), before, "master and workers are as before the load");
    // the staged copies were dropped: a good load after it commits everywhere
    let good = m.dir.join("good.state");
    write_state(&good, 300, "g", false);
    let out = m.ok(&["-t", "60000", "state", "load", "-f", good.to_str().unwrap()]);
    assert!(out.contains("1200 ok messages, 0 errors"), "{out}");
    let after = hashes(&m);
    let main = ids(&after["main"]);
    assert_eq!(main.len(), ids(&before["main"]).len() + 300, "what was there + 300 loaded");
    assert!(main.iter().any(|i| i == "kept") && main.iter().any(|i| i == "g299") && !main.iter().any(|i| i == "s0"));
    assert_eq!(after["0"], after["main"]);
    assert_eq!(after["1"], after["main"]);
    let log = m.log();
    assert!(log.contains("staged load aborted") && log.contains("staged load committed"), "{log}");
}

#[test]
fn a_change_sent_during_a_staged_load_waits_for_it_and_is_not_lost() {
    let m = Master::start("stagedwait", "");
    let file = m.dir.join("big.state");
    write_state(&file, 4000, "c", false);
    let mut loader = m.raw();
    loader.send(&R::LoadState(file.display().to_string()).into());
    // the load has started once its first PROCESSING answer is out
    let first = loader.recv().expect("an answer");
    assert_eq!(first.status, ResponseStatus::Processing as i32, "{}", first.message);
    let mut other = m.raw();
    other.send(&R::AddCluster(Box::new(Cluster { cluster_id: "late".into(), ..Default::default() })).into());
    let late = other.terminal();
    assert_eq!(late.status, ResponseStatus::Ok as i32, "{}", late.message);
    let done = loader.terminal();
    assert_eq!(done.status, ResponseStatus::Ok as i32, "{}", done.message);
    let after = hashes(&m);
    let main = ids(&after["main"]);
    assert!(main.iter().any(|i| i == "late") && main.iter().any(|i| i == "c3999"), "neither change is lost");
    assert_eq!(after["0"], after["main"]);
    assert_eq!(after["1"], after["main"]);
}

#[test]
fn the_internal_staged_load_verb_is_refused_from_clients() {
    let m = Master::start("stagedverb", "");
    let mut raw = m.raw();
    raw.send(&R::StagedLoad(StagedLoad { step: StagedLoadStep::StageBegin as i32 }).into());
    let answer = raw.terminal();
    assert_eq!(answer.status, ResponseStatus::Failure as i32);
    assert!(answer.message.contains("StagedLoad is internal"), "{}", answer.message);
    let records = vec![R::AddCluster(Box::new(Cluster { cluster_id: "sneaky".into(), ..Default::default() })).into()];
    raw.send(&R::StagedRecords(StagedRecords { records }).into());
    let answer = raw.terminal();
    assert_eq!(answer.status, ResponseStatus::Failure as i32);
    assert!(answer.message.contains("StagedRecords is internal"), "{}", answer.message);
    assert!(m.ok(&["status"]).contains("RUNNING"));
    assert!(!m.ok(&["cluster", "list"]).contains("sneaky"), "nothing was applied");
}
