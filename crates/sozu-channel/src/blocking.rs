//! The codec over a blocking stream, with real deadlines.

use std::io::{self, Write};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use prost::Message;

use crate::ChannelError;
use crate::codec::{Decoder, Encoder, Limits};

/// A typed, framed channel over a blocking Unix stream, for the CLI and for
/// handshakes. Reads wait at most the given timeout (measured against one deadline,
/// not per `read`); writes report every error.
#[derive(Debug)]
pub struct BlockingChannel<Tx, Rx> {
    stream: UnixStream,
    decoder: Decoder<Rx>,
    encoder: Encoder,
    _tx: PhantomData<fn(Tx)>,
}

impl<Tx: Message, Rx: Message + Default> BlockingChannel<Tx, Rx> {
    /// Wraps `stream`, switching it to blocking mode.
    pub fn new(stream: UnixStream, read: Limits, write: Limits) -> io::Result<Self> {
        stream.set_nonblocking(false)?;
        Ok(Self { stream, decoder: Decoder::new(read), encoder: Encoder::new(write), _tx: PhantomData })
    }

    /// Connects to the Unix socket at `path`.
    pub fn connect(path: impl AsRef<std::path::Path>, read: Limits, write: Limits) -> io::Result<Self> {
        // a new std stream is blocking already
        let stream = UnixStream::connect(path)?;
        Ok(Self { stream, decoder: Decoder::new(read), encoder: Encoder::new(write), _tx: PhantomData })
    }

    /// Sends `message` and waits until it is written.
    pub fn send(&mut self, message: &Tx) -> Result<(), ChannelError> {
        self.encoder.queue(message)?;
        while !self.encoder.is_empty() {
            match self.stream.write(self.encoder.pending()) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => self.encoder.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Waits for the next message, at most `timeout` (`None`: forever).
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Rx, ChannelError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // mid-frame, the rest is likely there already: read before waiting (a stream of
        // frames is then one system call per read, not a poll and a read)
        let mut readable = self.decoder.buffered() > 0;
        loop {
            if let Some(message) = self.decoder.decode()? {
                return Ok(message);
            }
            if !readable {
                let wait = match deadline {
                    None => PollTimeout::NONE,
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(ChannelError::TimedOut);
                        }
                        // whole milliseconds, rounded up: never a busy loop on a short rest
                        PollTimeout::try_from(left.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
                    }
                };
                // poll(2) for readability, not a blocking read: a sleeping read(2) is
                // woken each time the peer reads what we sent (the socket's writers and
                // readers share one wait queue); poll is woken only by what it asked for
                let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, wait) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(io::Error::from(e).into()),
                }
            }
            let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT;
            match nix::sys::socket::recv(self.stream.as_raw_fd(), self.decoder.space(), flags) {
                Ok(0) => {
                    self.decoder.finish()?;
                    return Err(ChannelError::Closed);
                }
                Ok(n) => {
                    self.decoder.filled(n);
                    readable = true;
                }
                Err(Errno::EAGAIN) => readable = false,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
    }

    /// Switches to a non-blocking [`Channel`](crate::Channel) sending `Tx2` and
    /// receiving `Rx2`, keeping every byte already buffered in either direction.
    pub fn into_nonblocking<Tx2: Message, Rx2: Message + Default>(self) -> io::Result<crate::Channel<Tx2, Rx2>> {
        self.stream.set_nonblocking(true)?;
        let stream = mio::net::UnixStream::from_std(self.stream);
        Ok(crate::Channel::from_parts(stream, self.decoder.retype(), self.encoder))
    }

    /// The underlying stream.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Gives the stream back.
    pub fn into_inner(self) -> UnixStream {
        self.stream
    }
}
