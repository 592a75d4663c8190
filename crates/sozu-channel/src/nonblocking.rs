//! The codec over a non-blocking stream, driven by the owner's event loop.

use std::io::{self, Read, Write};
use std::marker::PhantomData;

use mio::event::Source;
use mio::{Interest, Registry, Token};
use prost::Message;

use crate::ChannelError;
use crate::codec::{Decoder, Encoder, Limits};

/// A typed, framed, non-blocking channel: sends `Tx`, receives `Rx`.
///
/// The owner registers the stream with its `Poll` through [`register`](Self::register)
/// (edge triggered) and, on events, calls [`handle_readable`](Self::handle_readable)
/// then [`poll_message`](Self::poll_message) until it returns `Ok(None)`, and
/// [`flush`](Self::flush) when writable. After writing, it calls
/// [`sync_interest`](Self::sync_interest), which asks for writable events only while
/// bytes wait: a peer reading what we sent then does not wake us for nothing.
#[derive(Debug)]
pub struct Channel<Tx, Rx, S = mio::net::UnixStream> {
    stream: S,
    decoder: Decoder<Rx>,
    encoder: Encoder,
    /// The stream may have bytes we have not read (edge-triggered readiness).
    readable: bool,
    /// The token and whether writable events are asked for, once registered.
    registration: Option<(Token, bool)>,
    _tx: PhantomData<fn(Tx)>,
}

fn interest(writable: bool) -> Interest {
    if writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE }
}

impl<Tx, Rx, S: Source> Channel<Tx, Rx, S> {
    /// Registers the stream with `registry` under `token`: readable events always,
    /// writable events only while [`wants_write`](Self::wants_write) (see
    /// [`sync_interest`](Self::sync_interest)).
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let writable = !self.encoder.is_empty();
        registry.register(&mut self.stream, token, interest(writable))?;
        self.registration = Some((token, writable));
        Ok(())
    }

    /// Asks for writable events if bytes wait to be written, and stops asking once
    /// they are gone: one `epoll_ctl` when that changes, nothing otherwise. Call it
    /// after sending or flushing, before waiting for events again; without it a
    /// write that would block is never retried. Does nothing before
    /// [`register`](Self::register).
    pub fn sync_interest(&mut self, registry: &Registry) -> io::Result<()> {
        let Some((token, writable)) = self.registration else { return Ok(()) };
        let wants = !self.encoder.is_empty();
        if wants != writable {
            registry.reregister(&mut self.stream, token, interest(wants))?;
            self.registration = Some((token, wants));
        }
        Ok(())
    }

    /// Removes the stream from `registry`.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.registration = None;
        registry.deregister(&mut self.stream)
    }
}

impl<Tx: Message, Rx: Message + Default, S: Read + Write> Channel<Tx, Rx, S> {
    /// Wraps a non-blocking stream; `read` and `write` bound each direction's buffer.
    pub fn new(stream: S, read: Limits, write: Limits) -> Self {
        Self {
            stream,
            decoder: Decoder::new(read),
            encoder: Encoder::new(write),
            readable: true,
            registration: None,
            _tx: PhantomData,
        }
    }

    pub(crate) fn from_parts(stream: S, decoder: Decoder<Rx>, encoder: Encoder) -> Self {
        Self { stream, decoder, encoder, readable: true, registration: None, _tx: PhantomData }
    }

    /// The stream, to register with a `Poll`.
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The stream.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// Records a readable event.
    pub fn handle_readable(&mut self) {
        self.readable = true;
    }

    /// The next message: decoded from what is buffered, reading from the stream (one
    /// `read` fills all the free buffer space) only when no whole message is buffered.
    /// `Ok(None)` means the stream has nothing more for now.
    ///
    /// Errors: [`ChannelError::Closed`] at a clean end of stream,
    /// [`FrameError::Truncated`](crate::FrameError::Truncated) at an end inside a frame,
    /// other frame errors as the codec reports them.
    pub fn poll_message(&mut self) -> Result<Option<Rx>, ChannelError> {
        loop {
            if let Some(message) = self.decoder.decode()? {
                return Ok(Some(message));
            }
            if !self.readable {
                return Ok(None);
            }
            let space = self.decoder.space();
            if space.is_empty() {
                // cannot happen: a full buffer at max holds a whole frame; be safe anyway
                return Ok(None);
            }
            match self.stream.read(space) {
                Ok(0) => {
                    self.readable = false;
                    self.decoder.finish()?;
                    return Err(ChannelError::Closed);
                }
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

    /// Queues `message` and writes as much as the stream takes now. On a frame error
    /// nothing is queued and the channel stays usable.
    pub fn send(&mut self, message: &Tx) -> Result<(), ChannelError> {
        self.encoder.queue(message)?;
        self.flush().map(drop)
    }

    /// Queues `message` without writing: call [`flush`](Self::flush) after a batch, so
    /// that many small messages cost one `write`. On a frame error nothing is queued.
    pub fn queue(&mut self, message: &Tx) -> Result<(), ChannelError> {
        self.encoder.queue(message).map_err(ChannelError::Frame)
    }

    /// Writes pending bytes until the stream would block. Returns `true` when nothing
    /// is left to write.
    pub fn flush(&mut self) -> Result<bool, ChannelError> {
        while !self.encoder.is_empty() {
            match self.stream.write(self.encoder.pending()) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => self.encoder.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Whether bytes are waiting for a writable event.
    pub fn wants_write(&self) -> bool {
        !self.encoder.is_empty()
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Current sizes of the read and write buffers.
    pub fn capacities(&self) -> (usize, usize) {
        (self.decoder.capacity(), self.encoder.capacity())
    }

    /// Gives the stream back (unsent bytes are dropped).
    pub fn into_inner(self) -> S {
        self.stream
    }
}
