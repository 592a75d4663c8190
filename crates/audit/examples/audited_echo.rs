//! A Unix-socket echo server that writes an audit record for every line it receives.
//!
//! `cargo run -p audit --example audited_echo [DIR] [--once]`
//! then `socat - UNIX-CONNECT:DIR/echo.sock`, type lines, and read `DIR/audit.log`
//! (text) and `DIR/audit.json` (chained JSON). With `--once` it sends itself one hostile
//! line, verifies the chain and exits.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use audit::{AuditEntry, AuditLog, AuditResult, FailPolicy, FileSink, Fsync, GENESIS, verify};
use ulid::Ulid;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .filter(|a| a != "--once")
        .unwrap_or_else(|| format!("/tmp/audited-echo-{}", std::process::id()));
    let once = std::env::args().any(|a| a == "--once");
    std::fs::create_dir_all(&dir)?;
    let sock = format!("{dir}/echo.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)?;
    let (text, _) = FileSink::open(format!("{dir}/audit.log"), Fsync::Never)?;
    let (json, notice) = FileSink::open(format!("{dir}/audit.json"), Fsync::Always)?;
    if let Some(n) = notice {
        eprintln!("{n}");
    }
    let mut log = AuditLog::new(FailPolicy::Closed).with_text(text).with_json(json, GENESIS.into());
    eprintln!("listening on {sock}");

    // kept open until the end so that the echo can be written back
    let _client = if once {
        let mut c = UnixStream::connect(&sock)?;
        writeln!(c, "hello\u{202e} ], result=ok")?;
        Some(c)
    } else {
        None
    };
    for stream in listener.incoming() {
        let stream = stream?;
        let session = Ulid::new();
        let mut writer = stream.try_clone()?;
        for line in BufReader::new(stream).lines() {
            let line = line?;
            let mut entry = AuditEntry::new(session, Ulid::new(), "echo", format!("line:{line}"), AuditResult::Ok);
            entry.version = env!("CARGO_PKG_VERSION").into();
            // fail closed: if we cannot record it, we do not do it
            match log.record(&entry) {
                Ok(()) => writeln!(writer, "{line}")?,
                Err(e) => writeln!(writer, "refused: {e}")?,
            }
            if once {
                break;
            }
        }
        if once {
            break;
        }
    }
    drop(log);
    let (records, head) = verify(BufReader::new(std::fs::File::open(format!("{dir}/audit.json"))?), GENESIS)?;
    println!("{records} records, chain head {head}");
    print!("{}", std::fs::read_to_string(format!("{dir}/audit.log"))?);
    Ok(())
}
