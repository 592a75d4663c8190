//! The worker's buffers: at most `max_buffers` of `buffer_size` bytes are held by active
//! connections at any time, TCP and HTTP together.
//!
//! A TCP connection is a tunnel: it holds its two buffers (one per direction) from
//! accept to close, and is refused at accept when two are not available. An HTTP
//! connection holds two only during an exchange (from the first byte of a request to
//! the end of its response, or while it is a tunnel): an idle keep-alive connection holds
//! none, so 10k idle connections cost no buffer. When none are left, an idle HTTP
//! connection does not read its next request until an exchange elsewhere ends
//! (back-pressure, not an error). Freed TCP buffers are kept for the next connection
//! instead of going back to the allocator.

use std::cell::RefCell;
use std::rc::Rc;

/// Buffers one connection holds while active: one per direction.
pub(crate) const PER_CONNECTION: usize = 2;

/// The buffer budget and the free TCP buffers.
#[derive(Debug)]
pub(crate) struct BufferPool {
    size: usize,
    max: usize,
    in_use: usize,
    peak: usize,
    free: Vec<Box<[u8]>>,
}

impl Default for BufferPool {
    /// Sōzu's defaults: 1,000 buffers of 16 KiB.
    fn default() -> Self {
        Self::new(16 * 1024, 1000)
    }
}

/// The pool shared by the TCP and HTTP proxies of a worker (one thread).
pub(crate) type SharedPool = Rc<RefCell<BufferPool>>;

impl BufferPool {
    /// A pool of at most `max` buffers of `size` bytes.
    pub(crate) fn new(size: usize, max: usize) -> Self {
        BufferPool { size, max: max.max(PER_CONNECTION), in_use: 0, peak: 0, free: Vec::new() }
    }

    /// Shared between proxies.
    pub(crate) fn shared(size: usize, max: usize) -> SharedPool {
        Rc::new(RefCell::new(Self::new(size, max)))
    }

    /// Whether one more connection can hold its buffers.
    pub(crate) fn can_take(&self) -> bool {
        self.in_use + PER_CONNECTION <= self.max
    }

    /// Counts one connection's buffers as held (HTTP: its own growable buffers, each
    /// bounded by `buffer_size`); `false` and nothing counted when none are left.
    pub(crate) fn take(&mut self) -> bool {
        if !self.can_take() {
            return false;
        }
        self.in_use += PER_CONNECTION;
        self.peak = self.peak.max(self.in_use);
        true
    }

    /// Gives back what [`take`](Self::take) counted.
    pub(crate) fn give(&mut self) {
        self.in_use = self.in_use.saturating_sub(PER_CONNECTION);
    }

    /// Two zeroed buffers for a TCP connection, reused when some were given back.
    pub(crate) fn take_pair(&mut self) -> Option<[Box<[u8]>; 2]> {
        if !self.take() {
            return None;
        }
        let mut one = || self.free.pop().unwrap_or_else(|| vec![0; self.size].into_boxed_slice());
        Some([one(), one()])
    }

    /// Gives back a TCP connection's buffers (kept for the next one).
    pub(crate) fn give_pair(&mut self, pair: [Box<[u8]>; 2]) {
        self.give();
        for b in pair {
            if b.len() == self.size {
                self.free.push(b);
            }
        }
    }

    /// Buffers held now.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use
    }

    /// Most buffers ever held at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_buffers_are_held_and_given_ones_are_reused() {
        let mut pool = BufferPool::new(1024, 5);
        assert!(pool.take());
        let pair = pool.take_pair().expect("4 of 5 held");
        assert_eq!(pair[0].len(), 1024);
        assert!(!pool.can_take() && pool.take_pair().is_none() && !pool.take(), "a sixth is refused");
        assert_eq!((pool.in_use(), pool.peak()), (4, 4));
        let first = pair[0].as_ptr();
        pool.give_pair(pair);
        assert!(pool.can_take());
        let again = pool.take_pair().unwrap();
        assert!(again.iter().any(|b| b.as_ptr() == first), "the freed buffers are reused");
        pool.give_pair(again);
        pool.give();
        assert_eq!((pool.in_use(), pool.peak()), (0, 4));
        pool.give();
        assert_eq!(pool.in_use(), 0, "never below zero");
        // a pool too small for one connection still serves one
        assert!(BufferPool::new(16, 1).take());
    }
}
