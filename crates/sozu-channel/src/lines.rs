//! Sans-IO newline-delimited framing with a bounded line length: bytes in, lines out.
//! Reads go into one growable buffer (a caller fills [`LineDecoder::space`] with a
//! single `read`), never one syscall per byte.

use std::fmt;

use crate::buffer::{Buffer, Fill};

/// A line that cannot be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// More than `max` bytes arrived without a newline. The stream cannot be
    /// re-synchronised safely: answer and close.
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The line is not UTF-8. The line was consumed; the stream goes on.
    InvalidUtf8,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { max } => write!(f, "line longer than {max} bytes"),
            Self::InvalidUtf8 => f.write_str("line is not valid UTF-8"),
        }
    }
}

impl std::error::Error for LineError {}

/// Splits a byte stream into lines of at most `max` bytes (newline excluded).
#[derive(Debug)]
pub struct LineDecoder {
    buf: Buffer,
    /// Bytes already searched for a newline.
    scanned: usize,
    max: usize,
    failed: bool,
}

impl LineDecoder {
    /// A decoder starting with `initial` bytes of buffer, for lines up to `max` bytes.
    pub fn new(initial: usize, max: usize) -> Self {
        // room for a maximal line and its newline
        Self { buf: Buffer::new(initial, max + 1), scanned: 0, max, failed: false }
    }

    /// Free space to read into. Empty when the buffer is full: call
    /// [`next_line`](Self::next_line), which then reports [`LineError::TooLong`].
    pub fn space(&mut self) -> &mut [u8] {
        self.buf.space()
    }

    /// Records that `n` bytes were written into [`space`](Self::space).
    pub fn filled(&mut self, n: usize) {
        self.buf.fill(n);
    }

    /// Copies bytes in; returns how many were taken.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        Fill::feed(self, bytes)
    }

    /// The next complete line (without its `\n`, and without a `\r` before it).
    pub fn next_line(&mut self) -> Result<Option<String>, LineError> {
        if self.failed {
            return Err(LineError::TooLong { max: self.max });
        }
        let data = self.buf.data();
        match data[self.scanned..].iter().position(|b| *b == b'\n') {
            Some(pos) => {
                let end = self.scanned + pos;
                let mut line = &data[..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if line.len() > self.max {
                    self.failed = true;
                    return Err(LineError::TooLong { max: self.max });
                }
                let text = std::str::from_utf8(line).map(str::to_string);
                self.buf.consume(end + 1);
                self.scanned = 0;
                text.map(Some).map_err(|_| LineError::InvalidUtf8)
            }
            None => {
                self.scanned = data.len();
                if data.len() > self.max {
                    self.failed = true;
                    return Err(LineError::TooLong { max: self.max });
                }
                Ok(None)
            }
        }
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

impl Fill for LineDecoder {
    fn space(&mut self) -> &mut [u8] {
        LineDecoder::space(self)
    }

    fn filled(&mut self, n: usize) {
        LineDecoder::filled(self, n);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn lines_invalid_utf8_and_too_long() {
        let mut d = LineDecoder::new(8, 16);
        d.feed(b"one\ntwo\r\n\xff\xfe\nthree");
        assert_eq!(d.next_line().unwrap().as_deref(), Some("one"));
        assert_eq!(d.next_line().unwrap().as_deref(), Some("two"));
        assert_eq!(d.next_line(), Err(LineError::InvalidUtf8));
        assert_eq!(d.next_line().unwrap(), None);
        d.feed(b"\n");
        assert_eq!(d.next_line().unwrap().as_deref(), Some("three"));
        let mut d = LineDecoder::new(8, 16);
        d.feed(&[b'x'; 40]);
        assert_eq!(d.next_line(), Err(LineError::TooLong { max: 16 }));
        assert!(d.buffered() <= 17, "never buffers past the limit");
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_lines(lines in proptest::collection::vec("[a-z {}:,]{0,30}", 0..30), chunk in 1usize..50) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let mut d = LineDecoder::new(4, 64);
            let mut out = Vec::new();
            for piece in text.as_bytes().chunks(chunk) {
                let mut rest = piece;
                while !rest.is_empty() {
                    let n = d.feed(rest);
                    rest = &rest[n..];
                    while let Some(l) = d.next_line().unwrap() {
                        out.push(l);
                    }
                }
            }
            prop_assert_eq!(out, lines);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = LineDecoder::new(4, 32);
            let mut rest = &bytes[..];
            for _ in 0..400 {
                let n = d.feed(rest);
                rest = &rest[n..];
                match d.next_line() {
                    Ok(Some(_)) | Err(LineError::InvalidUtf8) => {}
                    Ok(None) if rest.is_empty() => break,
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    }
}
