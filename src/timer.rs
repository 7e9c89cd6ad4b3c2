//! Connection timeouts: one FIFO list per fixed duration, linked through the connections.
//!
//! Every timeout class has a single duration (handshake, close, idle), so deadlines within a
//! class are reached in the order they were set: a doubly linked FIFO per class is a timing wheel
//! with one slot, and arming, cancelling and expiring are all O(1) with no allocation. The links
//! live inside each connection ([`Links`], 16 bytes); the lists own only head and tail. This module
//! knows nothing of sockets or frames; the reactor decides what an expiry means.

use slab::Slab;

const NIL: u32 = u32::MAX;

/// The timeout classes a connection can be waiting on (at most one at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TimerKind {
    /// Not armed.
    None = 0,
    /// Upgrade not finished.
    Handshake = 1,
    /// Close sent, waiting for the peer's close or its TCP close.
    Close = 2,
    /// Open connection: idle / ping timer.
    Idle = 3,
}

impl TimerKind {
    /// The armed kinds, in list order (the order of [`Timers::new`]'s durations).
    pub const ARMED: [TimerKind; KINDS] = [TimerKind::Handshake, TimerKind::Close, TimerKind::Idle];

    /// Position among [`TimerKind::ARMED`]; `None` for [`TimerKind::None`].
    pub fn index(self) -> Option<usize> {
        (self as usize).checked_sub(1)
    }

    /// A short stable label (the metrics `kind` label).
    pub fn label(self) -> &'static str {
        match self {
            TimerKind::None => "none",
            TimerKind::Handshake => "handshake",
            TimerKind::Close => "close",
            TimerKind::Idle => "idle",
        }
    }
}

/// Number of timer lists (one per armed kind).
pub const KINDS: usize = 3;

/// Intrusive links, embedded in each connection.
#[derive(Debug, Clone, Copy)]
pub struct Links {
    prev: u32,
    next: u32,
    /// Deadline in milliseconds since the reactor started.
    pub deadline: u32,
    /// Which list the connection is on.
    pub kind: TimerKind,
}

impl Default for Links {
    fn default() -> Self {
        Links { prev: NIL, next: NIL, deadline: 0, kind: TimerKind::None }
    }
}

/// Access to the links of a slab entry.
pub trait Linked {
    /// The entry's links.
    fn links(&mut self) -> &mut Links;
}

/// The FIFO lists, one per [`TimerKind`] other than `None`.
#[derive(Debug)]
pub struct Timers {
    heads: [u32; KINDS],
    tails: [u32; KINDS],
    /// Duration of each kind, in milliseconds.
    pub durations: [u32; KINDS],
}

impl Timers {
    /// Lists with the given durations (milliseconds) for Handshake, Close and Idle.
    pub fn new(durations: [u32; KINDS]) -> Timers {
        Timers { heads: [NIL; KINDS], tails: [NIL; KINDS], durations }
    }

    /// Puts `key` on the list of `kind`, due `durations[kind]` after `now` (removing it from any
    /// list it was on).
    pub fn arm<T: Linked>(&mut self, slab: &mut Slab<T>, key: usize, kind: TimerKind, now: u32) {
        self.cancel(slab, key);
        if kind == TimerKind::None {
            return;
        }
        let k = kind as usize - 1;
        let deadline = now.saturating_add(self.durations[k]);
        let tail = self.tails[k];
        {
            let l = slab[key].links();
            *l = Links { prev: tail, next: NIL, deadline, kind };
        }
        if tail == NIL {
            self.heads[k] = key as u32;
        } else {
            slab[tail as usize].links().next = key as u32;
        }
        self.tails[k] = key as u32;
    }

    /// Takes `key` off whatever list it is on.
    pub fn cancel<T: Linked>(&mut self, slab: &mut Slab<T>, key: usize) {
        let l = *slab[key].links();
        if l.kind == TimerKind::None {
            return;
        }
        let k = l.kind as usize - 1;
        if l.prev == NIL {
            self.heads[k] = l.next;
        } else {
            slab[l.prev as usize].links().next = l.next;
        }
        if l.next == NIL {
            self.tails[k] = l.prev;
        } else {
            slab[l.next as usize].links().prev = l.prev;
        }
        *slab[key].links() = Links::default();
    }

    /// Pops one connection whose deadline has passed, with its kind; `None` when none is due.
    pub fn pop_expired<T: Linked>(&mut self, slab: &mut Slab<T>, now: u32) -> Option<(usize, TimerKind)> {
        for k in 0..KINDS {
            let h = self.heads[k];
            if h != NIL {
                let l = *slab[h as usize].links();
                if l.deadline <= now {
                    self.cancel(slab, h as usize);
                    return Some((h as usize, l.kind));
                }
            }
        }
        None
    }

    /// Milliseconds from `now` until the earliest deadline, if any list is non-empty.
    pub fn next_due<T: Linked>(&self, slab: &mut Slab<T>, now: u32) -> Option<u32> {
        let mut best: Option<u32> = None;
        for k in 0..KINDS {
            let h = self.heads[k];
            if h != NIL {
                let d = slab[h as usize].links().deadline.saturating_sub(now);
                best = Some(best.map_or(d, |b| b.min(d)));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct E(Links);
    impl Linked for E {
        fn links(&mut self) -> &mut Links {
            &mut self.0
        }
    }

    #[test]
    fn fifo_per_kind_with_cancel() {
        let mut slab: Slab<E> = Slab::new();
        let keys: Vec<usize> = (0..5).map(|_| slab.insert(E::default())).collect();
        let mut t = Timers::new([100, 50, 1000]);
        for (i, &k) in keys.iter().enumerate() {
            t.arm(&mut slab, k, TimerKind::Handshake, i as u32 * 10);
        }
        t.arm(&mut slab, keys[4], TimerKind::Close, 45); // moves 4 to the close list, due 95
        t.cancel(&mut slab, keys[1]);
        assert_eq!(t.next_due(&mut slab, 0), Some(95));
        assert_eq!(t.pop_expired(&mut slab, 94), None);
        assert_eq!(t.pop_expired(&mut slab, 95), Some((keys[4], TimerKind::Close)));
        assert_eq!(t.pop_expired(&mut slab, 99), None);
        assert_eq!(t.pop_expired(&mut slab, 100), Some((keys[0], TimerKind::Handshake)));
        assert_eq!(t.pop_expired(&mut slab, 125), Some((keys[2], TimerKind::Handshake)));
        assert_eq!(t.pop_expired(&mut slab, 125), None);
        assert_eq!(t.pop_expired(&mut slab, 130), Some((keys[3], TimerKind::Handshake)));
        assert_eq!(t.next_due(&mut slab, 130), None);
    }
}
