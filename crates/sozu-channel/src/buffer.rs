//! A bounded byte buffer that grows by doubling and shrinks back when drained.

/// A sink of bytes read from a stream: free space to read into, and a count of what
/// was written there. `feed` copies from a slice (for tests and callers without a socket).
pub trait Fill {
    /// Free space to read into; empty when nothing more can be taken now.
    fn space(&mut self) -> &mut [u8];

    /// Records that `n` bytes were written into [`space`](Fill::space).
    fn filled(&mut self, n: usize);

    /// Copies `bytes` in; returns how many were taken.
    fn feed(&mut self, mut bytes: &[u8]) -> usize {
        let mut taken = 0;
        while !bytes.is_empty() {
            let space = self.space();
            let n = space.len().min(bytes.len());
            if n == 0 {
                break;
            }
            space[..n].copy_from_slice(&bytes[..n]);
            self.filled(n);
            bytes = &bytes[n..];
            taken += n;
        }
        taken
    }
}

/// The size a buffer that grew past its initial size goes back to once drained (or
/// its initial size, if smaller).
pub const IDLE_SIZE: usize = 64 * 1024;

/// A contiguous byte buffer with a read cursor (`start`) and a write cursor (`end`).
///
/// It starts at `initial` bytes and grows by doubling up to `max`. Once (nearly)
/// drained after growing past `initial` (a burst), it returns to its idle size,
/// `initial` or [`IDLE_SIZE`] if smaller, so a channel that once carried a 2 MB burst
/// does not keep megabytes resident while idle. Within `initial` it keeps its size: a
/// buffer shrunk at every drain grew again for each large frame (64 KiB frames ran at
/// a third of a bare read loop's speed), and pages it never touched cost no memory.
/// Growth never goes past `max`: callers check the size they need first.
#[derive(Debug)]
pub struct Buffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
    initial: usize,
    max: usize,
}

impl Buffer {
    /// An empty buffer of `initial` bytes that may grow to `max` (`initial` is clamped
    /// to `1..=max`).
    pub fn new(initial: usize, max: usize) -> Self {
        let max = max.max(1);
        let initial = initial.clamp(1, max);
        Self { data: vec![0; initial], start: 0, end: 0, initial, max }
    }

    /// The bytes held and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// How many bytes are held.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether no byte is held.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Current allocated size.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// The ceiling on [`capacity`](Self::capacity).
    pub fn max(&self) -> usize {
        self.max
    }

    /// Drops `n` bytes from the front (at most what is held), shrinking back to the
    /// idle size when what remains is small and the buffer grew past its initial size.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let idle = self.initial.min(IDLE_SIZE);
        if self.capacity() > self.initial && self.len() * 4 < idle {
            self.compact();
            self.data.truncate(idle);
            self.data.shrink_to(idle);
        }
    }

    /// Makes room for `additional` more bytes after the held ones, growing by doubling.
    /// Returns `false` (and changes nothing) when that would pass the maximum.
    pub fn reserve(&mut self, additional: usize) -> bool {
        let Some(needed) = self.len().checked_add(additional) else { return false };
        if needed > self.max {
            return false;
        }
        if self.data.len() - self.end >= additional {
            return true;
        }
        self.compact();
        if self.data.len() < needed {
            let mut size = self.data.len().max(1);
            while size < needed {
                size = size.saturating_mul(2);
            }
            self.data.resize(size.min(self.max), 0);
        }
        true
    }

    /// Free space after the held bytes, for the next read: the held bytes move to the
    /// front when less than half of the buffer is free after them (a read at the tail
    /// would be small, and cost a system call for a few KiB), and the buffer doubles
    /// when it is full and the maximum allows. Empty only when the buffer is full at its
    /// maximum.
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 && (self.data.len() - self.end) * 2 < self.data.len() {
            self.compact();
        }
        if self.end == self.data.len() && self.data.len() < self.max {
            let size = self.data.len().saturating_mul(2).min(self.max);
            self.data.resize(size, 0);
        }
        &mut self.data[self.end..]
    }

    /// Marks `n` bytes of [`space`](Self::space) as written.
    pub fn fill(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Buffer;

    #[test]
    fn grows_by_doubling_to_max_and_shrinks_when_drained() {
        let mut b = Buffer::new(8, 20);
        assert_eq!(b.capacity(), 8);
        assert!(b.reserve(9));
        assert_eq!(b.capacity(), 16);
        assert!(b.reserve(20));
        assert_eq!(b.capacity(), 20);
        assert!(!b.reserve(21));
        b.space()[..20].copy_from_slice(&[7; 20]);
        b.fill(20);
        assert!(b.space().is_empty(), "full at max");
        b.consume(19);
        assert_eq!(b.capacity(), 8, "grown past its initial size: back to it");
        assert_eq!(b.data(), &[7]);
    }

    #[test]
    fn frames_of_64_kib_do_not_reallocate_the_buffer_each_time() {
        let mut b = Buffer::new(1 << 20, 2 << 20);
        let frame = (64 << 10) + 8;
        for i in 0..4 {
            assert!(b.reserve(frame));
            b.space()[..frame].fill(i);
            b.fill(frame);
            b.consume(frame);
            assert_eq!(b.capacity(), 1 << 20, "frame {i}: within its initial size, kept");
        }
        // after a burst past it, back to the idle size; then frames grow it once
        assert!(b.reserve(3 << 19));
        b.space()[..3 << 19].fill(1);
        b.fill(3 << 19);
        b.consume(3 << 19);
        assert_eq!(b.capacity(), super::IDLE_SIZE);
    }

    #[test]
    fn a_large_buffer_drains_to_the_idle_size() {
        let mut b = Buffer::new(1 << 20, 4 << 20);
        assert_eq!(b.capacity(), 1 << 20);
        assert!(b.reserve(3 << 20));
        b.space()[..3 << 20].fill(1);
        b.fill(3 << 20);
        b.consume((3 << 20) - 10);
        assert_eq!(b.capacity(), super::IDLE_SIZE);
        assert_eq!(b.data(), &[1; 10]);
        assert!(b.reserve(2 << 20), "grows again on demand");
        assert_eq!(b.data(), &[1; 10]);
    }

    #[test]
    fn space_compacts_before_growing() {
        let mut b = Buffer::new(4, 8);
        b.space()[..4].copy_from_slice(b"abcd");
        b.fill(4);
        b.start = 2; // as if consumed without shrink
        assert_eq!(b.space().len(), 2);
        assert_eq!(b.data(), b"cd");
        assert_eq!(b.capacity(), 4);
    }
}
