//! Channel throughput through a socketpair: our framed channel versus a bare
//! write/read loop of the same bytes, and versus a newline-delimited reader doing one
//! `read` per byte (as the dashboard seed does).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use sozu_channel::{BlockingChannel, Encoder, Limits};
use sozu_proto::Request;
use sozu_proto::request::RequestType;

use crate::{Row, Section, best_of, rate};

fn message(size: usize) -> Request {
    // payload of ~size bytes (string field overhead is 1 tag + varint length)
    Request::from(RequestType::SaveState("a".repeat(size.saturating_sub(4))))
}

fn limits() -> Limits {
    // Sōzu's command channel defaults
    Limits::new(1_000_000, 2_000_000)
}

/// Writes `count` copies of `unit` from a thread, in writes of about 64 KiB, the same
/// way for every reader so that only the reading side differs.
fn sender(mut stream: UnixStream, unit: Vec<u8>, count: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let per_block = (65_536 / unit.len()).max(1);
        let block: Vec<u8> = unit.repeat(per_block);
        let mut left = count;
        while left > 0 {
            let n = left.min(per_block);
            stream.write_all(&block[..n * unit.len()]).unwrap();
            left -= n;
        }
    })
}

fn frame(size: usize) -> Vec<u8> {
    let mut enc = Encoder::new(limits());
    enc.queue(&message(size)).unwrap();
    enc.pending().to_vec()
}

/// Ours: every frame read and decoded into a `Request` by a BlockingChannel.
fn ours(size: usize, count: usize) -> Duration {
    let (a, b) = UnixStream::pair().unwrap();
    let start = Instant::now();
    let tx = sender(a, frame(size), count);
    let mut rx: BlockingChannel<Request, Request> = BlockingChannel::new(b, limits(), limits()).unwrap();
    for _ in 0..count {
        rx.recv(None).unwrap();
    }
    let took = start.elapsed();
    tx.join().unwrap();
    took
}

/// Baseline: the same bytes read with plain read calls into a buffer of the same size
/// as ours, not decoded.
fn bare(size: usize, count: usize) -> Duration {
    let (a, mut b) = UnixStream::pair().unwrap();
    let unit = frame(size);
    let total = unit.len() * count;
    let start = Instant::now();
    let tx = sender(a, unit, count);
    let mut buf = vec![0u8; limits().initial];
    let mut got = 0;
    while got < total {
        got += b.read(&mut buf).unwrap();
    }
    let took = start.elapsed();
    tx.join().unwrap();
    took
}

/// Seed-style: newline-delimited lines of the same size, read one byte per `read` call.
fn byte_per_syscall(size: usize, count: usize) -> Duration {
    let (a, mut b) = UnixStream::pair().unwrap();
    let mut line = vec![b'a'; size.saturating_sub(1)];
    line.push(b'\n');
    let start = Instant::now();
    let tx = sender(a, line, count);
    let mut lines = 0;
    let mut current = Vec::with_capacity(size);
    let mut byte = [0u8; 1];
    while lines < count {
        b.read_exact(&mut byte).unwrap();
        if byte[0] == b'\n' {
            lines += 1;
            current.clear();
        } else {
            current.push(byte[0]);
        }
    }
    let took = start.elapsed();
    tx.join().unwrap();
    took
}

pub fn run(quick: bool) -> Section {
    let scale = if quick { 10 } else { 1 };
    let mut rows = Vec::new();
    for (size, count, slow_count, target_bare) in
        [(128usize, 200_000 / scale, 20_000 / scale, "—"), (64 * 1024, 20_000 / scale, 100 / scale.min(5), "≥ 0.8")]
    {
        // interleaved, best of 5 each: the least disturbed run of both
        let (mut t_ours, mut t_bare) = (Duration::MAX, Duration::MAX);
        for _ in 0..5 {
            t_ours = t_ours.min(ours(size, count));
            t_bare = t_bare.min(bare(size, count));
        }
        let t_slow = best_of(1, || byte_per_syscall(size, slow_count));
        let bytes = (size * count) as f64;
        let ours_fps = rate(count as f64, t_ours);
        let bare_fps = rate(count as f64, t_bare);
        let slow_fps = rate(slow_count as f64, t_slow);
        let label = if size >= 1024 { format!("{} KiB", size / 1024) } else { format!("{size} B") };
        rows.push(Row {
            name: format!("{label} messages vs bare write/read"),
            ours: format!("{:.0} frames/s, {:.1} MB/s", ours_fps, rate(bytes, t_ours) / 1e6),
            baseline: format!("{:.0} frames/s, {:.1} MB/s", bare_fps, rate(bytes, t_bare) / 1e6),
            ratio: ours_fps / bare_fps,
            target: target_bare.into(),
        });
        rows.push(Row {
            name: format!("{label} messages vs 1-byte-per-read line reader"),
            ours: format!("{ours_fps:.0} frames/s"),
            baseline: format!("{slow_fps:.0} lines/s"),
            ratio: ours_fps / slow_fps,
            target: "≥ 50".into(),
        });
    }
    Section {
        title: "Command channel throughput (socketpair, one sender thread, one receiver)",
        baseline: "the same bytes through bare write/read calls; and newline-delimited lines read one byte per read(2)",
        rows,
    }
}
