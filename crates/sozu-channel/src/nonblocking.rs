//! The codec over a non-blocking stream, driven by the owner's event loop.

use std::io::{self, Read, Write};
use std::marker::PhantomData;

use prost::Message;

use crate::ChannelError;
use crate::codec::{Decoder, Encoder, Limits};

/// A typed, framed, non-blocking channel: sends `Tx`, receives `Rx`.
///
/// The owner registers [`stream_mut`](Self::stream_mut) with its `Poll` (edge
/// triggered, readable and writable) and, on events, calls
/// [`handle_readable`](Self::handle_readable) then [`poll_message`](Self::poll_message)
/// until it returns `Ok(None)`, and [`flush`](Self::flush) when writable.
#[derive(Debug)]
pub struct Channel<Tx, Rx, S = mio::net::UnixStream> {
    stream: S,
    decoder: Decoder<Rx>,
    encoder: Encoder,
    /// The stream may have bytes we have not read (edge-triggered readiness).
    readable: bool,
    _tx: PhantomData<fn(Tx)>,
}

impl<Tx: Message, Rx: Message + Default, S: Read + Write> Channel<Tx, Rx, S> {
    /// Wraps a non-blocking stream; `read` and `write` bound each direction's buffer.
    pub fn new(stream: S, read: Limits, write: Limits) -> Self {
        Self { stream, decoder: Decoder::new(read), encoder: Encoder::new(write), readable: true, _tx: PhantomData }
    }

    pub(crate) fn from_parts(stream: S, decoder: Decoder<Rx>, encoder: Encoder) -> Self {
        Self { stream, decoder, encoder, readable: true, _tx: PhantomData }
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
