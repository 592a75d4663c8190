//! A Unix-socket server that greets each client with what it knows of them.
//!
//! `cargo run -p peer-identity --example whoami_server [SOCKET_PATH] [--once]`
//! then, from another shell: `socat - UNIX-CONNECT:SOCKET_PATH`.
//! With `--once` it also connects to itself, prints the greeting and exits.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use peer_identity::{PeerIdentity, SystemUsers, UserResolver, UserResolverConfig};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| format!("/tmp/whoami-{}.sock", std::process::id()));
    let once = std::env::args().any(|a| a == "--once");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    eprintln!("listening on {path}");
    let users = UserResolver::new(SystemUsers, UserResolverConfig::default());

    let client = once.then(|| UnixStream::connect(&path)).transpose()?;
    for stream in listener.incoming() {
        let mut stream = stream?;
        let (mut who, pending) = PeerIdentity::capture(&stream, &path, &users);
        if let Some(pending) = pending {
            // a real server polls this from its event loop; this demo just waits a bit
            while who.user.is_none() {
                match pending.poll(Instant::now()) {
                    Some(answer) => who.set_user(answer),
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        }
        writeln!(stream, "hello {who}")?;
        if once {
            break;
        }
    }
    if let Some(mut client) = client {
        let mut greeting = String::new();
        client.read_to_string(&mut greeting)?;
        print!("{greeting}");
    }
    std::fs::remove_file(&path)
}
