//! Audit: sanitizer throughput against a plain copy of the same bytes, and the JSON
//! sink (hash-chained, to a file) against unchained serde_json lines to a file.

use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use audit::{AuditEntry, AuditResult, Fsync, JsonSink, json_value, sanitize};
use ulid::Ulid;

use crate::{Row, Section, best_of, rate};

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn sanitizer_rows(quick: bool) -> Vec<Row> {
    let size = if quick { 4 << 20 } else { 32 << 20 };
    let clean: String =
        "cluster:api-v2 frontend:http:www.example.com:127.0.0.1:8080 ".chars().cycle().take(size).collect();
    let dirty: String =
        "cluster:api\u{202e}v2\nfrontend,x=y\u{85}\t ".chars().cycle().take(size / 2).collect::<String>();
    let mut rows = Vec::new();
    for (name, input) in [("clean input (borrowed)", &clean), ("dirty input (rewritten)", &dirty)] {
        let ours = best_of(3, || time(|| drop(black_box(sanitize(black_box(input))).into_owned())));
        let copy = best_of(3, || time(|| drop(black_box(black_box(input).to_owned()))));
        let bytes = input.len() as f64;
        rows.push(Row {
            name: format!("sanitizer, {name}"),
            ours: format!("{:.2} GB/s", rate(bytes, ours) / 1e9),
            baseline: format!("{:.2} GB/s (String copy)", rate(bytes, copy) / 1e9),
            ratio: rate(bytes, ours) / rate(bytes, copy),
            target: "—".into(),
        });
    }
    rows
}

fn entry(i: u64) -> AuditEntry {
    let mut e = AuditEntry::new(Ulid::new(), Ulid::new(), "cluster_added", format!("cluster:c{i}"), AuditResult::Ok);
    e.cluster_id = Some(format!("c{i}"));
    e.actor.uid = Some(1000);
    e.actor.user = Some("ops".into());
    e.actor.comm = Some("sozu".into());
    e.socket = "/run/sozu/sozu.sock".into();
    e.version = "0.1.0".into();
    e.elapsed_ms = Some(3);
    e
}

fn json_rows(quick: bool) -> Vec<Row> {
    let n = if quick { 20_000 } else { 200_000 };
    let entries: Vec<AuditEntry> = (0..n).map(entry).collect();
    let dir = std::env::temp_dir().join(format!("sozu-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours_path = dir.join("chained.json");
    let floor_path = dir.join("plain.json");
    let ours = best_of(3, || {
        let _ = std::fs::remove_file(&ours_path);
        let (mut sink, _) = JsonSink::open_file(&ours_path, Fsync::Never).unwrap();
        time(|| entries.iter().for_each(|e| sink.record(e).unwrap()))
    });
    let floor = best_of(3, || {
        let _ = std::fs::remove_file(&floor_path);
        let mut file = OpenOptions::new().append(true).create(true).open(&floor_path).unwrap();
        time(|| {
            for e in &entries {
                let mut line = serde_json::to_vec(&json_value(e)).unwrap();
                line.push(b'\n');
                file.write_all(&line).unwrap();
            }
        })
    });
    std::fs::remove_dir_all(&dir).unwrap();
    vec![Row {
        name: format!("JSON sink, {n} records to a file (O_APPEND, no fsync)"),
        ours: format!("{:.0} records/s (sanitize + canonical JSON + SHA-256 chain)", rate(n as f64, ours)),
        baseline: format!("{:.0} records/s (serde_json line per write, unchained)", rate(n as f64, floor)),
        ratio: rate(n as f64, ours) / rate(n as f64, floor),
        target: "—".into(),
    }]
}

pub fn run(quick: bool) -> Section {
    let mut rows = sanitizer_rows(quick);
    rows.extend(json_rows(quick));
    Section {
        title: "Audit",
        baseline: "sanitizer: copying the same string; JSON sink: the same records as plain serde_json lines, one write each",
        rows,
    }
}
