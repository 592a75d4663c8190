//! The sozu command channel: protobuf messages framed with an 8-byte little-endian
//! length prefix that counts itself (Sōzu 2.x framing, facts §1.1).
//!
//! - [`codec`] is sans-IO: bytes in, messages out; messages in, bytes out. It checks a
//!   declared length against the configured maximum before allocating anything, never
//!   panics on any input, and grows its buffers by doubling up to the maximum and
//!   shrinks them back when drained. It never names a socket.
//! - [`Channel`] drives the codec over a non-blocking stream (a mio `UnixStream` in the
//!   master and the workers); the owner holds the `Poll` and calls
//!   [`Channel::handle_readable`] / [`Channel::flush`] on events.
//! - [`BlockingChannel`] drives it over a blocking std stream with a real deadline
//!   (the CLI, worker boot, upgrade confirmation).
//!
//! Errors are typed ([`FrameError`], [`ChannelError`]) so the owner can answer and
//! close: the channel never wedges on bad input.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blocking;
mod buffer;
pub mod codec;
mod lines;
mod nonblocking;

pub use blocking::BlockingChannel;
pub use buffer::{Buffer, Fill, IDLE_SIZE};
pub use codec::{Decoder, Encoder, FrameError, Limits, PREFIX_LEN};
pub use lines::{LineDecoder, LineError};
pub use nonblocking::Channel;

use std::{fmt, io};

/// Failure of a channel operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChannelError {
    /// The bytes received or the message to send break the framing rules.
    Frame(FrameError),
    /// The socket failed.
    Io(io::Error),
    /// The peer closed the stream at a frame boundary.
    Closed,
    /// No complete message arrived before the deadline.
    TimedOut,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => e.fmt(f),
            Self::Io(e) => write!(f, "channel I/O error: {e}"),
            Self::Closed => f.write_str("channel closed by peer"),
            Self::TimedOut => f.write_str("timed out waiting for a message"),
        }
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Frame(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FrameError> for ChannelError {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

impl From<io::Error> for ChannelError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}
