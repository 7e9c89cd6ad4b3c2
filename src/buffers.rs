//! Buffer pools: fixed-size byte buffers that connections borrow while busy and return when idle.
//!
//! Owns the free lists. A connection holds a buffer only while it has something to carry between
//! reads (a partial request head, a partial frame header or control frame, output the socket did
//! not take); an idle connection holds none, which is what keeps it at its struct size (see `conn`).
//! Buffers are recycled, so steady traffic allocates nothing; the free list keeps at most
//! `max_free` buffers and frees the rest, so a burst does not pin memory forever. It knows nothing
//! about WebSocket or sockets.

/// A free list of equally sized, zero-initialised-once byte buffers.
#[derive(Debug)]
pub struct Pool {
    size: usize,
    max_free: usize,
    free: Vec<Box<[u8]>>,
    /// Buffers handed out and not yet returned.
    pub outstanding: usize,
}

impl Pool {
    /// A pool of `size`-byte buffers keeping at most `max_free` idle ones.
    pub fn new(size: usize, max_free: usize) -> Pool {
        Pool { size, max_free, free: Vec::with_capacity(max_free.min(1024)), outstanding: 0 }
    }

    /// Size of every buffer of this pool.
    pub fn buf_size(&self) -> usize {
        self.size
    }

    /// Takes a buffer (allocates only when the free list is empty).
    #[inline]
    pub fn get(&mut self) -> Box<[u8]> {
        self.outstanding += 1;
        self.free.pop().unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    /// Returns a buffer taken from this pool.
    #[inline]
    pub fn put(&mut self, buf: Box<[u8]>) {
        debug_assert_eq!(buf.len(), self.size);
        self.outstanding -= 1;
        if self.free.len() < self.max_free {
            self.free.push(buf);
        }
    }

    /// Idle buffers currently kept.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycles_and_bounds_the_free_list() {
        let mut p = Pool::new(16, 2);
        let a = p.get();
        let a_ptr = a.as_ptr();
        p.put(a);
        let b = p.get();
        assert_eq!(b.as_ptr(), a_ptr, "the returned buffer is reused");
        let c = p.get();
        let d = p.get();
        assert_eq!(p.outstanding, 3);
        p.put(b);
        p.put(c);
        p.put(d);
        assert_eq!((p.idle(), p.outstanding), (2, 0));
    }
}
