//! A client connection: the protobuf command channel, or a JSON-lines dashboard
//! connection. The master's request handling is the same for both; only the encoding
//! of answers and events differs.

use std::io::{self, Read, Write};

use mio::net::UnixStream;
use serde_json::{Value, json};
use sozu_channel::{Channel, ChannelError, FrameError, LineDecoder, LineError};
use sozu_proto::response_content::ContentType;
use sozu_proto::{Request, Response, ResponseStatus};

/// The dashboard side of a connection.
pub(crate) struct JsonConn {
    pub stream: UnixStream,
    pub decoder: LineDecoder,
    out: Vec<u8>,
    /// Event lines waiting in `out` (answers are never dropped, events may be).
    event_lines: usize,
    max_event_lines: usize,
    /// Events dropped since the last `lagged` notice.
    lagged: u64,
    /// Above this many unwritten bytes the peer is not reading: close it.
    max_out: usize,
    pub readable: bool,
    /// The client-chosen id of the command being answered.
    pub current: Option<Value>,
    pub subscribed: bool,
}

/// How answers are written to a client.
pub(crate) enum Conn {
    Proto(Channel<Response, Request>),
    Json(Box<JsonConn>),
}

impl JsonConn {
    pub fn new(stream: UnixStream, max_line: usize, max_event_lines: usize) -> Self {
        JsonConn {
            stream,
            decoder: LineDecoder::new(64 * 1024, max_line),
            out: Vec::new(),
            event_lines: 0,
            max_event_lines,
            lagged: 0,
            max_out: max_line.saturating_mul(8).max(1 << 20),
            readable: true,
            current: None,
            subscribed: false,
        }
    }

    /// Appends one JSON line (an answer: never dropped).
    pub fn line(&mut self, value: &Value) -> Result<(), ChannelError> {
        if self.out.len() > self.max_out {
            return Err(ChannelError::Frame(FrameError::WriteBufferFull {
                pending: self.out.len(),
                frame: 0,
                max: self.max_out,
            }));
        }
        let _ = serde_json::to_writer(&mut self.out, value);
        self.out.push(b'\n');
        Ok(())
    }

    /// Appends an event line, or counts it as dropped when the subscriber is behind.
    pub fn event(&mut self, value: &Value) {
        if self.event_lines >= self.max_event_lines {
            self.lagged += 1;
            return;
        }
        self.event_lines += 1;
        let _ = self.line(value);
    }

    /// A terminal answer for the current request id.
    pub fn ok(&mut self, id: Value, result: Value) -> Result<(), ChannelError> {
        self.line(&json!({"id": id, "ok": true, "result": result}))
    }

    /// An error answer with a stable code.
    pub fn error(&mut self, id: Value, code: &str, message: &str) -> Result<(), ChannelError> {
        self.line(&json!({"id": id, "ok": false, "error": {"code": code, "message": message}}))
    }

    fn flush(&mut self) -> Result<bool, ChannelError> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.event_lines = 0;
        if self.lagged > 0 {
            let dropped = std::mem::take(&mut self.lagged);
            self.line(&json!({"lagged": {"dropped": dropped}}))?;
            return self.flush();
        }
        Ok(true)
    }

    /// The next line received, reading (one `read` per free buffer) as needed.
    pub fn next_line(&mut self) -> Result<Option<Result<String, LineError>>, ChannelError> {
        loop {
            match self.decoder.next_line() {
                Ok(Some(l)) => return Ok(Some(Ok(l))),
                Err(e) => return Ok(Some(Err(e))),
                Ok(None) => {}
            }
            if !self.readable {
                return Ok(None);
            }
            let space = self.decoder.space();
            if space.is_empty() {
                continue; // next_line reports TooLong
            }
            match self.stream.read(space) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => self.decoder.filled(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// An event as a dashboard line.
pub(crate) fn event_json(seq: u64, source: &str, event: &sozu_proto::Event) -> Value {
    let kind = sozu_proto::EventKind::try_from(event.kind).map_or("UNKNOWN", |k| k.as_str_name());
    json!({"event": {
        "seq": seq,
        "source": source,
        "kind": kind,
        "cluster_id": event.cluster_id,
        "backend_id": event.backend_id,
        "address": event.address.as_ref().map(|a| a.to_string()),
    }})
}

impl Conn {
    /// Registers with `registry`: a protobuf client asks for writable events only
    /// while an answer waits (see `Channel::sync_interest`); a dashboard client always.
    pub fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> std::io::Result<()> {
        match self {
            Conn::Proto(c) => c.register(registry, token),
            Conn::Json(j) => registry.register(&mut j.stream, token, mio::Interest::READABLE | mio::Interest::WRITABLE),
        }
    }

    /// After writing: writable events asked for exactly while bytes wait.
    pub fn sync_interest(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        match self {
            Conn::Proto(c) => c.sync_interest(registry),
            Conn::Json(_) => Ok(()),
        }
    }

    pub fn deregister(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        match self {
            Conn::Proto(c) => c.deregister(registry),
            Conn::Json(j) => registry.deregister(&mut j.stream),
        }
    }

    pub fn wants_write(&self) -> bool {
        match self {
            Conn::Proto(c) => c.wants_write(),
            Conn::Json(j) => !j.out.is_empty(),
        }
    }

    pub fn flush(&mut self) -> Result<bool, ChannelError> {
        match self {
            Conn::Proto(c) => c.flush(),
            Conn::Json(j) => j.flush(),
        }
    }

    /// Writes what is queued, waiting at most `limit` for a slow reader (used only
    /// right before the master re-executes itself).
    pub fn flush_blocking(&mut self, limit: std::time::Duration) -> Result<(), ChannelError> {
        let end = std::time::Instant::now() + limit;
        while self.wants_write() && std::time::Instant::now() < end {
            self.flush()?;
            if self.wants_write() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// Sends a master answer: as a protobuf frame, or as a JSON line answering the
    /// current dashboard request (PROCESSING answers are not sent to dashboards).
    pub fn send(&mut self, response: &Response) -> Result<(), ChannelError> {
        match self {
            Conn::Proto(c) => c.send(response),
            Conn::Json(j) => {
                if response.status == ResponseStatus::Processing as i32 {
                    return Ok(());
                }
                let id = j.current.take().unwrap_or(Value::Null);
                let result = if response.status == ResponseStatus::Ok as i32 {
                    let content = response
                        .content
                        .as_ref()
                        .and_then(|c| c.content_type.as_ref())
                        .map(|c: &ContentType| serde_json::to_value(c).unwrap_or(Value::Null));
                    j.ok(id, json!({"message": response.message, "content": content}))
                } else {
                    let code = if response.message.starts_with("unauthorized") { "unauthorized" } else { "failure" };
                    j.error(id, code, &response.message)
                };
                result.and_then(|()| j.flush().map(drop))
            }
        }
    }
}
