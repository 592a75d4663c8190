//! Dashboard socket: the line reader against a reader doing one `read` per byte (as
//! the seed's does), and `state` latency with 10k clusters against `hello`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sozu_channel::LineDecoder;

use crate::{Row, Section, best_of, rate};

fn writer(mut stream: UnixStream, line: Vec<u8>, count: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let block = line.repeat(256);
        let mut left = count;
        while left > 0 {
            let n = left.min(256);
            stream.write_all(&block[..n * line.len()]).unwrap();
            left -= n;
        }
    })
}

fn ours(line: &[u8], count: usize) -> Duration {
    let (a, mut b) = UnixStream::pair().unwrap();
    let start = Instant::now();
    let tx = writer(a, line.to_vec(), count);
    let mut d = LineDecoder::new(64 * 1024, 1 << 20);
    let mut got = 0;
    while got < count {
        match d.next_line().unwrap() {
            Some(l) => {
                std::hint::black_box(l);
                got += 1;
            }
            None => {
                let n = b.read(d.space()).unwrap();
                d.filled(n);
            }
        }
    }
    let took = start.elapsed();
    tx.join().unwrap();
    took
}

fn byte_per_read(line: &[u8], count: usize) -> Duration {
    let (a, mut b) = UnixStream::pair().unwrap();
    let start = Instant::now();
    let tx = writer(a, line.to_vec(), count);
    let (mut got, mut current, mut byte) = (0, Vec::new(), [0u8; 1]);
    while got < count {
        b.read_exact(&mut byte).unwrap();
        if byte[0] == b'\n' {
            std::hint::black_box(String::from_utf8(std::mem::take(&mut current)).unwrap());
            got += 1;
        } else {
            current.push(byte[0]);
        }
    }
    let took = start.elapsed();
    tx.join().unwrap();
    took
}

fn state_latency(sozu: &Path, quick: bool) -> Option<Row> {
    let dir = std::env::temp_dir().join(format!("sozu-bench-dash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::write(
        dir.join("c.toml"),
        "command_socket = \"s.sock\"\ndashboard_socket = \"d.sock\"\nworker_count = 2\nlog_level = \"warn\"\n",
    )
    .ok()?;
    let mut state = sozu_state::ConfigState::new();
    for i in 0..10_000 {
        let request =
            sozu_proto::Request::from(sozu_proto::request::RequestType::AddCluster(Box::new(sozu_proto::Cluster {
                cluster_id: format!("c{i}"),
                ..Default::default()
            })));
        state.dispatch(&request).ok()?;
    }
    sozu_state::save_atomic(&dir.join("state"), &state).ok()?;
    let mut child =
        Command::new(sozu).args(["start", "-c"]).arg(dir.join("c.toml")).stdout(Stdio::null()).spawn().ok()?;
    let end = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(dir.join("d.sock")).is_err() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = UnixStream::connect(dir.join("d.sock")).ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut w = s;
    let mut call = |line: &str| {
        let start = Instant::now();
        w.write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        r.read_line(&mut answer).unwrap();
        start.elapsed()
    };
    call(&format!(
        "{{\"id\":0,\"method\":\"command\",\"request\":{{\"LOAD_STATE\":\"{}\"}}}}\n",
        dir.join("state").display()
    ));
    let rounds = if quick { 200 } else { 2000 };
    let mut state_t: Vec<Duration> = (0..rounds).map(|_| call("{\"id\":1,\"method\":\"state\"}\n")).collect();
    let mut hello_t: Vec<Duration> = (0..rounds).map(|_| call("{\"id\":2,\"method\":\"hello\"}\n")).collect();
    state_t.sort();
    hello_t.sort();
    let _ = Command::new(sozu).args(["-c"]).arg(dir.join("c.toml")).args(["shutdown", "--hard"]).output();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (s50, h50) = (state_t[rounds / 2], hello_t[rounds / 2]);
    Some(Row {
        name: "dashboard `state` with 10k clusters, p50 round trip".into(),
        ours: format!(
            "{:.1} µs (p99 {:.1} µs)",
            s50.as_secs_f64() * 1e6,
            state_t[rounds * 99 / 100].as_secs_f64() * 1e6
        ),
        baseline: format!("{:.1} µs (`hello` on the same connection)", h50.as_secs_f64() * 1e6),
        ratio: s50.as_secs_f64() / h50.as_secs_f64(),
        target: "—".into(),
    })
}

pub fn run(sozu: Option<&Path>, quick: bool) -> Section {
    let line =
        br#"{"id":123,"method":"command","request":{"QUERY_CLUSTER_BY_ID":"cluster-1234567890"},"pad":"xxxxxxxxxx"}"#;
    let mut line = line.to_vec();
    line.push(b'\n');
    let count = if quick { 100_000 } else { 1_000_000 };
    let slow_count = count / 20;
    let t_ours = best_of(3, || ours(&line, count));
    let t_slow = best_of(1, || byte_per_read(&line, slow_count));
    let (o, b) = (rate(count as f64, t_ours), rate(slow_count as f64, t_slow));
    let mut rows = vec![Row {
        name: format!("line reader, {}-byte JSON lines through a socketpair", line.len()),
        ours: format!("{o:.0} lines/s"),
        baseline: format!("{b:.0} lines/s (one read per byte)"),
        ratio: o / b,
        target: "≥ 50".into(),
    }];
    if let Some(row) = sozu.and_then(|s| state_latency(s, quick)) {
        rows.push(row);
    }
    Section {
        title: "Dashboard socket",
        baseline: "a newline reader doing one read(2) per byte, as the dashboard seed does; `hello` round trips",
        rows,
    }
}
