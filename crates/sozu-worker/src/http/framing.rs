//! Where an HTTP/1.1 message body ends, found while its bytes stream through: a
//! Content-Length count, or the chunked coding read chunk by chunk (sizes, data,
//! trailers) without holding any of it. Sans I/O.

/// How a message body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `digits` seen so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: extensions up to the line's end.
    Extension {
        size: u64,
    },
    /// The LF ending the size line.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    TrailerLf,
    /// The CR of the final empty line was seen.
    FinalLf,
}

/// The body delimiter of one message as its bytes go by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyTracker {
    framing: Framing,
    left: u64,
    chunk: Chunk,
    done: bool,
}

/// A malformed chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FramingError(pub &'static str);

impl BodyTracker {
    pub fn new(framing: Framing) -> Self {
        let (left, done) = match framing {
            Framing::None => (0, true),
            Framing::Length(n) => (n, n == 0),
            Framing::Chunked | Framing::UntilClose => (0, false),
        };
        BodyTracker { framing, left, chunk: Chunk::Size { size: 0, digits: 0 }, done }
    }

    /// Whether the body is complete.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether the body ends only when the connection closes.
    pub fn until_close(&self) -> bool {
        self.framing == Framing::UntilClose
    }

    /// How many of `bytes` belong to this body (the rest is the next message); the
    /// tracker moves past them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, FramingError> {
        if self.done {
            return Ok(0);
        }
        match self.framing {
            Framing::None => Ok(0),
            Framing::UntilClose => Ok(bytes.len()),
            Framing::Length(_) => {
                let n = (bytes.len() as u64).min(self.left) as usize;
                self.left -= n as u64;
                self.done = self.left == 0;
                Ok(n)
            }
            Framing::Chunked => self.feed_chunked(bytes),
        }
    }

    fn feed_chunked(&mut self, bytes: &[u8]) -> Result<usize, FramingError> {
        let mut i = 0;
        while i < bytes.len() && !self.done {
            let b = bytes[i];
            self.chunk = match self.chunk {
                Chunk::Size { size, digits } => match (b as char).to_digit(16) {
                    Some(d) if digits < 16 => Chunk::Size { size: size * 16 + u64::from(d), digits: digits + 1 },
                    Some(_) => return Err(FramingError("chunk size too large")),
                    None if digits == 0 => return Err(FramingError("chunk size expected")),
                    None if b == b'\r' => Chunk::SizeLf { size },
                    None if b == b';' || b == b' ' || b == b'\t' => Chunk::Extension { size },
                    None => return Err(FramingError("bad chunk size")),
                },
                Chunk::Extension { size } => match b {
                    b'\r' => Chunk::SizeLf { size },
                    b'\n' => return Err(FramingError("bare LF in chunk extension")),
                    _ => Chunk::Extension { size },
                },
                Chunk::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => Chunk::TrailerStart,
                    (b'\n', n) => Chunk::Data { left: n },
                    _ => return Err(FramingError("CR without LF after the chunk size")),
                },
                Chunk::Data { left } => {
                    let n = ((bytes.len() - i) as u64).min(left) as usize;
                    i += n;
                    let left = left - n as u64;
                    self.chunk = if left == 0 { Chunk::DataCr } else { Chunk::Data { left } };
                    continue;
                }
                Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                Chunk::DataLf if b == b'\n' => Chunk::Size { size: 0, digits: 0 },
                Chunk::DataCr | Chunk::DataLf => return Err(FramingError("chunk data not followed by CRLF")),
                Chunk::TrailerStart if b == b'\r' => Chunk::FinalLf,
                Chunk::TrailerStart | Chunk::Trailer if b == b'\n' => {
                    return Err(FramingError("bare LF in trailers"));
                }
                Chunk::TrailerStart | Chunk::Trailer if b == b'\r' => Chunk::TrailerLf,
                Chunk::TrailerStart | Chunk::Trailer => Chunk::Trailer,
                Chunk::TrailerLf if b == b'\n' => Chunk::TrailerStart,
                Chunk::TrailerLf => return Err(FramingError("CR without LF in trailers")),
                Chunk::FinalLf if b == b'\n' => {
                    self.done = true;
                    Chunk::FinalLf
                }
                Chunk::FinalLf => return Err(FramingError("CR without LF at the end of the body")),
            };
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(framing: Framing, bytes: &[u8]) -> (usize, bool) {
        let mut t = BodyTracker::new(framing);
        let n = t.feed(bytes).unwrap();
        (n, t.done())
    }

    #[test]
    fn content_length_stops_at_the_count() {
        assert_eq!(whole(Framing::Length(3), b"abcGET /"), (3, true));
        assert_eq!(whole(Framing::Length(10), b"abc"), (3, false));
        assert_eq!(whole(Framing::Length(0), b"GET"), (0, true));
        assert_eq!(whole(Framing::None, b"GET"), (0, true));
    }

    #[test]
    fn chunked_finds_the_end_byte_by_byte_and_at_once() {
        let body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        let mut next = body.to_vec();
        next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(whole(Framing::Chunked, &next), (body.len(), true));
        let mut t = BodyTracker::new(Framing::Chunked);
        for (i, b) in body.iter().enumerate() {
            assert!(!t.done(), "done early at {i}");
            assert_eq!(t.feed(&[*b]).unwrap(), 1);
        }
        assert!(t.done());
        assert_eq!(t.feed(b"more").unwrap(), 0);
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [&b"zz\r\n"[..], b"\r\n", b"4\r\nabcdXX", b"0\r\n\n", b"4\nabcd", b"11111111111111111\r\n"] {
            let mut t = BodyTracker::new(Framing::Chunked);
            assert!(t.feed(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn until_close_takes_everything() {
        let mut t = BodyTracker::new(Framing::UntilClose);
        assert_eq!(t.feed(b"abc").unwrap(), 3);
        assert!(!t.done() && t.until_close());
    }
}
