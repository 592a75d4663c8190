//! Socket I/O of an HTTP session: edge-triggered reads into a bounded buffer, and
//! writes of what a socket takes now.

use std::io::{self, Read, Write};

use mio::net::TcpStream;

/// What one read did.
pub(super) enum Io {
    Read(usize),
    Eof,
    Blocked,
    Failed,
}

/// Reads what fits under `limit` into `buf`, through the proxy's zeroed `scratch`
/// (so that no read zeroes a buffer first). `ready`: the socket may have data; a read
/// that comes back short drained it (edge-triggered: the next data is a new event),
/// which saves the `EAGAIN` read.
pub(super) fn read_into(
    stream: &mut TcpStream,
    (ready, hup): (&mut bool, bool),
    buf: &mut Vec<u8>,
    limit: usize,
    scratch: &mut [u8],
) -> Io {
    let room = limit.saturating_sub(buf.len()).min(scratch.len());
    if room == 0 || !*ready {
        return Io::Blocked;
    }
    match stream.read(&mut scratch[..room]) {
        Ok(0) => Io::Eof,
        Ok(n) => {
            buf.extend_from_slice(&scratch[..n]);
            // unless the end of stream was announced: it is still to be read
            *ready = n == room || hup;
            Io::Read(n)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Io::Blocked,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            *ready = false;
            Io::Blocked
        }
        Err(_) => Io::Failed,
    }
}

/// Writes what it can of `buf`, removing it; `Err` when the peer is gone.
pub(super) fn write_from(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, ()> {
    let mut total = 0;
    while !buf.is_empty() {
        match stream.write(buf) {
            Ok(0) => return Err(()),
            Ok(n) => {
                buf.drain(..n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(()),
        }
    }
    Ok(total)
}
