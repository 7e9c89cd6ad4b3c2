//! A per-reactor free list of deflate and inflate states, so that connections without context
//! takeover hold a state only while a message is in flight.
//!
//! Owns idle states: a connection takes one when a compressed message starts (or when it has one
//! to compress), keeps it while the message spans reads, and gives it back at the message's end
//! (or on close, error or abort); the pool resets it and keeps it for the next message of any
//! connection. With the default no-context-takeover agreement an idle connection therefore holds
//! no state at all (an inflater is about 40 KiB, a deflater 70–270 KiB: docs/deflate.md). The free
//! list is bounded (`max_free`, reserved up front, so giving back never allocates): states beyond
//! it are freed, so a burst does not pin memory forever. A state is taken only with the
//! parameters it was made with (a deflater's window bits, level, memLevel); a miss allocates a
//! new one. It does not own the states of connections with context takeover (those live as long
//! as their connection) and knows nothing about sockets or frames. Single-threaded: one per
//! reactor.

use super::codec::{CodecError, DeflateParams, Deflater, Inflater};

/// A state a [`Pool`] can hold.
pub trait Pooled: Sized {
    /// What a state is made with; only a state with equal parameters is reused.
    type Params: Copy + PartialEq;
    /// Makes a new state (allocates).
    fn create(params: Self::Params) -> Result<Self, CodecError>;
    /// The parameters it was made with.
    fn params(&self) -> Self::Params;
    /// Forgets any message in progress and the window (keeps every allocation).
    fn recycle(&mut self);
}

impl Pooled for Inflater {
    type Params = bool;
    fn create(reset_per_message: bool) -> Result<Inflater, CodecError> {
        Inflater::new(reset_per_message)
    }
    fn params(&self) -> bool {
        self.resets_per_message()
    }
    fn recycle(&mut self) {
        self.reset();
    }
}

impl Pooled for Deflater {
    type Params = DeflateParams;
    fn create(params: DeflateParams) -> Result<Deflater, CodecError> {
        Deflater::new(params)
    }
    fn params(&self) -> DeflateParams {
        Deflater::params(self)
    }
    fn recycle(&mut self) {
        self.reset();
    }
}

/// A bounded free list of states.
pub struct Pool<T: Pooled> {
    free: Vec<T>,
    max_free: usize,
    /// States taken and not given back.
    pub outstanding: usize,
    /// States ever created by this pool (a miss allocates).
    pub created: u64,
}

impl<T: Pooled> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle", &self.free.len())
            .field("max_free", &self.max_free)
            .field("outstanding", &self.outstanding)
            .field("created", &self.created)
            .finish()
    }
}

impl<T: Pooled> Pool<T> {
    /// A pool keeping at most `max_free` idle states (the list is reserved now).
    pub fn new(max_free: usize) -> Pool<T> {
        Pool { free: Vec::with_capacity(max_free), max_free, outstanding: 0, created: 0 }
    }

    /// A reset state made with `params`: an idle one if any, else a new one.
    pub fn take(&mut self, params: T::Params) -> Result<T, CodecError> {
        let state = match self.free.iter().rposition(|s| s.params() == params) {
            Some(i) => self.free.swap_remove(i),
            None => {
                let s = T::create(params)?;
                self.created += 1;
                s
            }
        };
        self.outstanding += 1;
        Ok(state)
    }

    /// Gives a state back (at a message's end, or when its connection goes away mid-message):
    /// reset and kept if the free list has room, freed otherwise.
    pub fn give(&mut self, mut state: T) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if self.free.len() < self.max_free {
            state.recycle();
            self.free.push(state);
        }
    }

    /// Idle states kept.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_matching_states_and_bounds_the_list() {
        let mut p: Pool<Inflater> = Pool::new(2);
        let a = p.take(true).unwrap();
        let b = p.take(true).unwrap();
        let c = p.take(true).unwrap();
        assert_eq!((p.created, p.outstanding), (3, 3));
        p.give(a);
        p.give(b);
        p.give(c);
        assert_eq!((p.idle(), p.outstanding), (2, 0));
        let _d = p.take(true).unwrap();
        assert_eq!(p.created, 3, "reused");
        let _e = p.take(false).unwrap();
        assert_eq!(p.created, 4, "other parameters: a new state");
    }

    #[test]
    fn deflaters_are_matched_by_parameters() {
        let mut p: Pool<Deflater> = Pool::new(4);
        let w15 = DeflateParams::new(15, true);
        let w10 = DeflateParams::new(10, true);
        let a = p.take(w15).unwrap();
        p.give(a);
        let b = p.take(w10).unwrap();
        assert_eq!(b.params(), w10);
        assert_eq!(p.created, 2);
        p.give(b);
        assert_eq!(p.take(w15).unwrap().params(), w15);
        assert_eq!(p.created, 2);
    }

    #[test]
    fn a_state_given_back_mid_message_is_clean() {
        let mut p: Pool<Inflater> = Pool::new(1);
        let mut s = p.take(true).unwrap();
        let mut out = [0u8; 16];
        // Half of "Hello", then the connection goes away.
        s.inflate(&[0xf2, 0x48, 0xcd], &mut out, 100).unwrap();
        p.give(s);
        let mut s = p.take(true).unwrap();
        let p1 = s.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100).unwrap();
        let p2 = s.finish(&mut out[p1.produced..], 100).unwrap();
        assert_eq!(&out[..p1.produced + p2.produced], b"Hello");
    }
}
