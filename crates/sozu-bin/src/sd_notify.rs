//! systemd's notify protocol: one datagram per state change to `$NOTIFY_SOCKET`.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `message` (e.g. `READY=1`) if `NOTIFY_SOCKET` is set; a no-op otherwise.
pub fn notify(message: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(()) };
    let path = path.to_string_lossy().into_owned();
    let socket = UnixDatagram::unbound()?;
    let addr = match path.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes())?,
        None => SocketAddr::from_pathname(&path)?,
    };
    socket.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}
