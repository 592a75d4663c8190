//! The JSON-lines dashboard socket.

use super::support::*;

#[test]
fn dashboard_every_method_over_a_real_socket() {
    let m = dash_master("dash", "");
    let mode = std::fs::metadata(m.dir.join("dash.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut d = Dash::connect(&m);
    let hello = d.call(r#"{"id":1,"method":"hello"}"#);
    assert_eq!(hello["id"], 1);
    assert_eq!(hello["ok"], true);
    assert!(hello["result"]["capabilities"].as_array().unwrap().len() == 5);
    let state = d.call(r#"{"id":"s","method":"state"}"#);
    assert_eq!(state["result"]["workers"].as_array().unwrap().len(), 2);
    assert_eq!(state["result"]["clusters"], 1);
    let added = d.call(r#"{"id":2,"method":"command","request":{"ADD_CLUSTER":{"cluster_id":"dash","sticky_session":false,"https_redirect":false,"load_balancing":0}}}"#);
    assert_eq!(added["ok"], true, "{added}");
    assert_eq!(added["result"]["message"], "Successfully applied request to all workers");
    let query = d.call(r#"{"id":3,"method":"command","request":{"QUERY_CLUSTER_BY_ID":"dash"}}"#);
    assert!(query["result"]["content"]["WORKER_RESPONSES"]["map"]["main"].to_string().contains("dash"));
    let failed = d.call(r#"{"id":4,"method":"command","request":{"REMOVE_CLUSTER":"nope"}}"#);
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["error"]["code"], "failure");
    // subscribe with replay from the journal: the CLUSTER_ADDED above comes back
    let sub = d.call(r#"{"id":5,"method":"events.subscribe","since":0}"#);
    assert_eq!(sub["ok"], true);
    let mut kinds = Vec::new();
    for _ in 0..sub["result"]["replayed"].as_u64().unwrap() {
        kinds.push(d.recv().unwrap()["event"]["kind"].as_str().unwrap().to_string());
    }
    assert!(kinds.contains(&"CLUSTER_ADDED".to_string()), "{kinds:?}");
    m.ok(&["cluster", "add", "-i", "live"]);
    let live = d.recv().unwrap();
    assert_eq!(live["event"]["kind"], "CLUSTER_ADDED");
    assert_eq!(live["event"]["cluster_id"], "live");
    let tail = d.call(r#"{"id":6,"method":"audit.tail","n":3}"#);
    let records = tail["result"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 3);
    assert!(records.iter().any(|r| r["verb"] == "cluster_added"));
    // errors with stable codes; the connection survives them
    assert_eq!(d.call(r#"{"id":7,"method":"nope"}"#)["error"]["code"], "unknown_method");
    assert_eq!(d.call("not json")["error"]["code"], "invalid_json");
    assert_eq!(d.call(r#"{"id":8}"#)["error"]["code"], "invalid_request");
    assert_eq!(
        d.call(r#"{"id":9,"method":"command","request":{"ADD_UNICORN":{}}}"#)["error"]["code"],
        "invalid_command"
    );
    d.1.write_all(b"\xff\xfe\n").unwrap();
    assert_eq!(d.recv().unwrap()["error"]["code"], "invalid_utf8");
    assert_eq!(d.call(r#"{"id":10,"method":"hello"}"#)["ok"], true);
    // an oversized line: an error, then the connection is closed
    let mut big = Dash::connect(&m);
    let _ = big.1.write_all(&vec![b'x'; (1 << 20) + 10]);
    assert_eq!(big.recv().unwrap()["error"]["code"], "frame_too_large");
    assert!(big.recv().is_none());
}

#[test]
fn dashboard_answers_1000_pipelined_lines_in_order() {
    let m = dash_master("dashpipe", "");
    let mut d = Dash::connect(&m);
    let mut all = String::new();
    for i in 0..1000 {
        if i % 10 == 0 {
            all.push_str(&format!(r#"{{"id":{i},"method":"command","request":{{"STATUS":{{}}}}}}"#));
        } else {
            all.push_str(&format!(r#"{{"id":{i},"method":"hello"}}"#));
        }
        all.push('\n');
    }
    d.1.write_all(all.as_bytes()).unwrap();
    for i in 0..1000 {
        let answer = d.recv().unwrap();
        assert_eq!(answer["id"], i, "in order");
        assert_eq!(answer["ok"], true);
    }
}

#[test]
fn a_dashboard_subscriber_that_never_reads_does_not_slow_others_and_is_told_it_lagged() {
    let m = dash_master("dashslow", "");
    let mut slow = Dash::connect(&m);
    assert_eq!(slow.call(r#"{"id":1,"method":"events.subscribe"}"#)["ok"], true);
    // many events while the subscriber does not read
    let mut raw = m.raw();
    for i in 0..300 {
        raw.send(&R::AddCluster(Box::new(Cluster { cluster_id: format!("e{i}"), ..Default::default() })).into());
        raw.terminal();
    }
    let start = Instant::now();
    assert!(m.ok(&["status"]).contains("RUNNING"));
    assert!(start.elapsed() < Duration::from_secs(1), "status took {:?}", start.elapsed());
    // reading now: at most the queue's worth of events, then a lagged notice
    let mut events = 0;
    let lagged = loop {
        let v = slow.recv().expect("lines");
        if v.get("lagged").is_some() {
            break v["lagged"]["dropped"].as_u64().unwrap();
        }
        events += 1;
        assert!(events <= 300);
    };
    assert!(lagged > 0, "dropped events counted");
    assert!(events as u64 + lagged >= 300, "{events} delivered + {lagged} dropped");
}

const DASH_CHILD_ENV: &str = "SOZU_E2E_DASH_CHILD";

/// Runs only as a child started by the uid test: one command line, prints the answer.
#[test]
fn dash_child_client() {
    let Ok(path) = std::env::var(DASH_CHILD_ENV) else { return };
    let mut s = UnixStream::connect(path).unwrap();
    s.write_all(b"{\"id\":1,\"method\":\"command\",\"request\":{\"REMOVE_CLUSTER\":\"web\"}}\n").unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    println!("ANSWER {line}");
}

#[test]
fn dashboard_refuses_an_unlisted_uid_and_audits_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to run a client as uid 65534");
        return;
    }
    let m = dash_master("dashuid", "command_allowed_uids = [0]");
    std::fs::set_permissions(m.dir.join("dash.sock"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let exe = world_executable(&std::env::current_exe().unwrap());
    let out = Command::new(&exe)
        .args(["--exact", "dashboard::dash_child_client", "--nocapture", "--test-threads=1"])
        .env(DASH_CHILD_ENV, m.dir.join("dash.sock"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(exe.parent().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""code":"unauthorized""#), "{stdout}");
    assert!(m.ok(&["cluster", "list", "-i", "web"]).contains("cluster web"), "nothing changed");
    let audit = std::fs::read_to_string(m.dir.join("audit.log")).unwrap();
    assert!(audit.contains("verb=request_refused") && audit.contains("actor_uid=65534"), "{audit}");
}
