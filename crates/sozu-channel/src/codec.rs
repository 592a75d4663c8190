//! Sans-IO framing: `[u64 LE total length, prefix included][protobuf payload]`.
//!
//! [`Decoder`] takes bytes (write them into [`Decoder::space`], then
//! [`Decoder::filled`]) and yields messages; [`Encoder`] takes messages and yields the
//! bytes to write ([`Encoder::pending`], then [`Encoder::advance`]). Neither touches a
//! socket nor a clock.

use std::fmt;
use std::marker::PhantomData;

use prost::Message;

use crate::buffer::{Buffer, Fill};

/// Width of the length prefix: `size_of::<usize>()` of a 64-bit Sōzu.
pub const PREFIX_LEN: usize = 8;

/// Buffer sizes of one direction of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Size a buffer starts at and shrinks back to.
    pub initial: usize,
    /// Largest size a buffer may grow to; also the largest frame accepted or sent.
    pub max: usize,
}

impl Limits {
    /// Limits with `initial` clamped to `PREFIX_LEN..=max`.
    pub fn new(initial: usize, max: usize) -> Self {
        let max = max.max(PREFIX_LEN);
        Self { initial: initial.clamp(PREFIX_LEN, max), max }
    }
}

impl Default for Limits {
    /// Sōzu's command channel defaults: 1 000 000 bytes, up to 2 000 000.
    fn default() -> Self {
        Self::new(1_000_000, 2_000_000)
    }
}

/// A framing error. The codec never panics; each error tells the owner what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The declared length is larger than the maximum. Nothing was allocated; the
    /// stream cannot be re-synchronised and every later decode returns this again:
    /// answer and close.
    TooLarge {
        /// Length the peer declared, prefix included.
        declared: u64,
        /// Configured maximum.
        max: usize,
    },
    /// The declared length is smaller than the prefix itself. The 8 prefix bytes were
    /// consumed.
    TooShort {
        /// Length the peer declared.
        declared: u64,
    },
    /// A whole frame arrived but its payload is not a valid message. The frame was
    /// consumed: the stream stays in sync.
    Decode(prost::DecodeError),
    /// The stream ended in the middle of a frame.
    Truncated {
        /// Bytes of the incomplete frame that did arrive.
        buffered: usize,
    },
    /// The outgoing buffer cannot take this frame now (the peer is not reading).
    WriteBufferFull {
        /// Bytes already waiting to be written.
        pending: usize,
        /// Size of the frame that did not fit.
        frame: usize,
        /// Configured maximum.
        max: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { declared, max } => {
                write!(f, "frame too large: declared {declared} bytes, maximum is {max}")
            }
            Self::TooShort { declared } => {
                write!(f, "frame too short: declared {declared} bytes, less than the {PREFIX_LEN}-byte prefix")
            }
            Self::Decode(e) => write!(f, "frame payload is not a valid message: {e}"),
            Self::Truncated { buffered } => write!(f, "stream ended inside a frame ({buffered} bytes buffered)"),
            Self::WriteBufferFull { pending, frame, max } => {
                write!(f, "write buffer full: {pending} bytes pending, a {frame}-byte frame does not fit under {max}")
            }
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads frames of `M` out of the bytes given to it.
#[derive(Debug)]
pub struct Decoder<M> {
    buf: Buffer,
    /// Set once a frame declared more than the maximum: the stream is lost.
    poisoned: Option<u64>,
    _message: PhantomData<fn() -> M>,
}

impl<M: Message + Default> Decoder<M> {
    /// A decoder with the given buffer limits.
    pub fn new(limits: Limits) -> Self {
        Self { buf: Buffer::new(limits.initial, limits.max), poisoned: None, _message: PhantomData }
    }

    /// Free space to read bytes into, sized for the frame being received when its length
    /// is known. Empty only when the buffer is full of complete frames: decode first.
    pub fn space(&mut self) -> &mut [u8] {
        if let Some(declared) = self.declared_len() {
            let missing = declared.saturating_sub(self.buf.len());
            if missing > 0 {
                // cannot fail: declared <= max was checked by declared_len
                self.buf.reserve(missing);
            }
        }
        self.buf.space()
    }

    /// Records that `n` bytes were written into [`space`](Self::space).
    pub fn filled(&mut self, n: usize) {
        self.buf.fill(n);
    }

    /// Copies `bytes` in (for tests and callers without a socket). Returns how many
    /// were taken: fewer than given only when nothing more fits now.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        Fill::feed(self, bytes)
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<M>, FrameError> {
        if let Some(declared) = self.poisoned {
            return Err(FrameError::TooLarge { declared, max: self.buf.max() });
        }
        let data = self.buf.data();
        let Some(declared) = read_prefix(data) else { return Ok(None) };
        if declared < PREFIX_LEN as u64 {
            self.buf.consume(PREFIX_LEN);
            return Err(FrameError::TooShort { declared });
        }
        if declared > self.buf.max() as u64 {
            self.poisoned = Some(declared);
            return Err(FrameError::TooLarge { declared, max: self.buf.max() });
        }
        let len = declared as usize;
        let Some(frame) = data.get(PREFIX_LEN..len) else { return Ok(None) };
        let message = M::decode(frame);
        self.buf.consume(len);
        message.map(Some).map_err(FrameError::Decode)
    }

    /// The same buffered bytes, decoded as another message type from now on (a channel
    /// whose first message has its own type, like a worker's `ServerConfig`).
    pub fn retype<N: Message + Default>(self) -> Decoder<N> {
        Decoder { buf: self.buf, poisoned: self.poisoned, _message: PhantomData }
    }

    /// Call at end of stream: an error if a frame was left incomplete.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() { Ok(()) } else { Err(FrameError::Truncated { buffered: self.buf.len() }) }
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Current size of the read buffer.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Length of the frame at the head of the buffer, if its prefix has arrived and is
    /// within bounds.
    fn declared_len(&self) -> Option<usize> {
        let declared = read_prefix(self.buf.data())?;
        (PREFIX_LEN as u64..=self.buf.max() as u64).contains(&declared).then_some(declared as usize)
    }
}

/// The length prefix at the head of `data`, once all its bytes are there.
fn read_prefix(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(..PREFIX_LEN)?.try_into().ok()?))
}

/// Turns messages into framed bytes waiting to be written.
#[derive(Debug)]
pub struct Encoder {
    buf: Buffer,
}

impl Encoder {
    /// An encoder with the given buffer limits.
    pub fn new(limits: Limits) -> Self {
        Self { buf: Buffer::new(limits.initial, limits.max) }
    }

    /// Frames `message` after the bytes already pending. On error nothing is queued and
    /// the channel stays usable.
    pub fn queue<M: Message>(&mut self, message: &M) -> Result<(), FrameError> {
        let max = self.buf.max();
        let frame = PREFIX_LEN + message.encoded_len();
        if frame > max {
            return Err(FrameError::TooLarge { declared: frame as u64, max });
        }
        if !self.buf.reserve(frame) {
            return Err(FrameError::WriteBufferFull { pending: self.buf.len(), frame, max });
        }
        let space = &mut self.buf.space()[..frame];
        space[..PREFIX_LEN].copy_from_slice(&(frame as u64).to_le_bytes());
        let mut body = &mut space[PREFIX_LEN..];
        // cannot fail: `frame` bytes were reserved for exactly encoded_len()
        message.encode(&mut body).map_err(|_| FrameError::TooLarge { declared: frame as u64, max })?;
        self.buf.fill(frame);
        Ok(())
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> &[u8] {
        self.buf.data()
    }

    /// Records that `n` pending bytes were written.
    pub fn advance(&mut self, n: usize) {
        self.buf.consume(n);
    }

    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Current size of the write buffer.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<M: Message + Default> Fill for Decoder<M> {
    fn space(&mut self) -> &mut [u8] {
        Decoder::space(self)
    }

    fn filled(&mut self, n: usize) {
        Decoder::filled(self, n);
    }
}

#[cfg(test)]
mod tests;
