//! Decoding fuzz input by hand: [`Bytes`], a cursor that never panics (reads past the end give
//! zeros), sorted cut points from u16 values, and byte-slice searches.
//!
//! Owns no property and no reference behaviour (that is `reference` and the targets); it imports
//! nothing from the other checks modules.

use std::ops::Range;

/// A cursor over fuzz input; reads past the end yield zeros (and empty slices), never panic.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Starts at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    /// Whether everything was consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Sorted cut points in `0..=len`, from big-endian u16 values.
pub(super) fn cut_points(raw: &[u16], len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = raw.iter().map(|&c| c as usize % (len + 1)).collect();
    v.sort_unstable();
    v
}

/// Where `part` lies inside `whole`, if it is a subslice of it (by address).
pub(super) fn subslice_range(whole: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let w = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    (p >= w && p + part.len() <= w + whole.len()).then(|| p - w..p - w + part.len())
}

pub(super) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
