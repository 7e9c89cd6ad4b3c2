//! Proof that the permessage-deflate codec allocates nothing per message after warm-up, and that a
//! decompression bomb stops at the limit without memory growth.
//!
//! A counting `#[global_allocator]` counts allocations on the test's own thread only. Messages
//! are inflated and deflated in pieces through a fixed 16 KiB chunk, with states taken from and
//! given back to the per-reactor pools as the connection code will do, with and without context
//! takeover, also after errors. The bomb is 1 GiB of zeros deflated to about 1 MiB (DEFLATE tops
//! out near 1032:1, so 1 KiB of input can name at most ~1 MiB; a second case does exactly that):
//! inflating it with a 16 MiB limit must stop at exactly 16 MiB of output with `TooBig`, having
//! allocated nothing, i.e. never holding more than the output chunk.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use wsecho::deflate::codec::{CodecError, DeflateParams, Deflater, Inflater};
use wsecho::deflate::pool::Pool;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; counting
// touches only atomics (and a thread-local flag), never the allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNT_HERE.try_with(|c| c.get()).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(l.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: forwarded as received (the caller upholds `GlobalAlloc::alloc`'s contract).
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System` with layout `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNT_HERE.try_with(|c| c.get()).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(n as u64, Ordering::Relaxed);
        }
        // SAFETY: `p` came from `System` with layout `l`; forwarded as received.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns (allocations, bytes) it made on this thread.
fn counted<R>(f: impl FnOnce() -> R) -> (R, u64, u64) {
    let (a0, b0) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    COUNT_HERE.with(|c| c.set(true));
    let r = f();
    COUNT_HERE.with(|c| c.set(false));
    (r, ALLOCS.load(Ordering::Relaxed) - a0, BYTES.load(Ordering::Relaxed) - b0)
}

const CHUNK: usize = 16 << 10;

/// Deflates `msg` in `pieces` into `wire` (preallocated), through `chunk`.
fn deflate_into(def: &mut Deflater, msg: &[u8], pieces: usize, chunk: &mut [u8], wire: &mut Vec<u8>) {
    wire.clear();
    let step = msg.len() / pieces + 1;
    for piece in msg.chunks(step) {
        let mut pos = 0;
        loop {
            let p = def.compress(&piece[pos..], chunk).unwrap();
            pos += p.consumed;
            wire.extend_from_slice(&chunk[..p.produced]);
            if !p.out_full {
                break;
            }
        }
    }
    loop {
        let p = def.finish(chunk).unwrap();
        wire.extend_from_slice(&chunk[..p.produced]);
        if !p.out_full {
            break;
        }
    }
}

/// Inflates `wire` in `pieces` through `chunk`, checking it against `msg` as it comes.
fn inflate_check(inf: &mut Inflater, wire: &[u8], pieces: usize, chunk: &mut [u8], msg: &[u8]) {
    let step = wire.len() / pieces + 1;
    let mut at = 0;
    for piece in wire.chunks(step) {
        let mut pos = 0;
        loop {
            let p = inf.inflate(&piece[pos..], chunk, 1 << 30).unwrap();
            pos += p.consumed;
            assert_eq!(&chunk[..p.produced], &msg[at..at + p.produced]);
            at += p.produced;
            if !p.out_full {
                break;
            }
        }
    }
    loop {
        let p = inf.finish(chunk, 1 << 30).unwrap();
        assert_eq!(&chunk[..p.produced], &msg[at..at + p.produced]);
        at += p.produced;
        if !p.out_full {
            break;
        }
    }
    assert_eq!(at, msg.len());
}

fn messages() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x1234_5678;
    let mut text = |n: usize| -> Vec<u8> {
        let words: [&[u8]; 6] = [b"{\"price\":", b"12.5", b",\"user\":\"carol\"}", "héllo ".as_bytes(), b"\n", b"42"];
        let mut v = Vec::with_capacity(n + 32);
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(words[(x % 6) as usize]);
        }
        v.truncate(n);
        v
    };
    vec![text(0), text(20), text(1024), text(70_000), text(16 << 10), vec![7u8; 200_000], text(3)]
}

#[test]
fn no_allocation_per_message_after_warm_up() {
    let msgs = messages();
    let mut chunk = vec![0u8; CHUNK];
    let mut wire = Vec::with_capacity(1 << 20);
    let mut inflaters: Pool<Inflater> = Pool::new(4);
    let mut deflaters: Pool<Deflater> = Pool::new(4);
    let params = DeflateParams::new(15, true);
    // Context-takeover states, owned by "their connection".
    let mut ctx_def = Deflater::new(DeflateParams::new(15, false)).unwrap();
    let mut ctx_inf = Inflater::new(false).unwrap();

    let mut round =
        |chunk: &mut [u8], wire: &mut Vec<u8>, inflaters: &mut Pool<Inflater>, deflaters: &mut Pool<Deflater>| {
            for (i, m) in msgs.iter().enumerate() {
                let mut d = deflaters.take(params).unwrap();
                deflate_into(&mut d, m, 1 + i % 3, chunk, wire);
                deflaters.give(d);
                let mut inf = inflaters.take(true).unwrap();
                inflate_check(&mut inf, wire, 1 + i % 4, chunk, m);
                inflaters.give(inf);
                deflate_into(&mut ctx_def, m, 2, chunk, wire);
                inflate_check(&mut ctx_inf, wire, 3, chunk, m);
            }
            // A corrupt message: the state is given back mid-error and reused cleanly.
            let mut inf = inflaters.take(true).unwrap();
            assert_eq!(inf.inflate(&[0xff; 8], chunk, 1 << 30), Err(CodecError::Corrupt));
            inflaters.give(inf);
            // A message abandoned half-way (connection closed).
            let mut d = deflaters.take(params).unwrap();
            d.compress(&msgs[3][..30_000], chunk).unwrap();
            deflaters.give(d);
        };

    let ((), warm_allocs, warm_bytes) = counted(|| round(&mut chunk, &mut wire, &mut inflaters, &mut deflaters));
    println!("warm-up: {warm_allocs} allocations, {warm_bytes} bytes (states for the pools)");
    assert!(warm_allocs > 0);
    for n in 1..=3 {
        let ((), allocs, bytes) = counted(|| {
            for _ in 0..10 {
                round(&mut chunk, &mut wire, &mut inflaters, &mut deflaters);
            }
        });
        println!(
            "round {n} ({} messages inflated + deflated): {allocs} allocations, {bytes} bytes",
            10 * msgs.len() * 2
        );
        assert_eq!(allocs, 0, "no allocation per message after warm-up");
    }
    assert_eq!((inflaters.outstanding, deflaters.outstanding), (0, 0));
}

/// Deflates `total` zero bytes as one message (streamed from a 64 KiB zero buffer).
fn zeros_message(total: u64) -> Vec<u8> {
    let mut def = Deflater::new(DeflateParams { level: 9, ..DeflateParams::new(15, true) }).unwrap();
    let zeros = vec![0u8; 64 << 10];
    let mut chunk = vec![0u8; 64 << 10];
    let mut wire = Vec::new();
    let mut left = total;
    while left > 0 {
        let piece = &zeros[..left.min(zeros.len() as u64) as usize];
        left -= piece.len() as u64;
        let mut pos = 0;
        loop {
            let p = def.compress(&piece[pos..], &mut chunk).unwrap();
            pos += p.consumed;
            wire.extend_from_slice(&chunk[..p.produced]);
            if !p.out_full {
                break;
            }
        }
    }
    loop {
        let p = def.finish(&mut chunk).unwrap();
        wire.extend_from_slice(&chunk[..p.produced]);
        if !p.out_full {
            return wire;
        }
    }
}

/// Inflates `wire` (fed in 4 KiB reads) under `max`; returns (bytes produced, error).
fn inflate_bomb(inf: &mut Inflater, wire: &[u8], max: u64, chunk: &mut [u8]) -> (u64, Option<CodecError>) {
    let mut total = 0u64;
    for read in wire.chunks(4096) {
        let mut pos = 0;
        loop {
            match inf.inflate(&read[pos..], chunk, max) {
                Ok(p) => {
                    total += p.produced as u64;
                    pos += p.consumed;
                    if !p.out_full {
                        break;
                    }
                }
                Err(e) => return (total, Some(e)),
            }
        }
    }
    loop {
        match inf.finish(chunk, max) {
            Ok(p) => {
                total += p.produced as u64;
                if !p.out_full {
                    return (total, None);
                }
            }
            Err(e) => return (total, Some(e)),
        }
    }
}

#[test]
fn decompression_bomb_stops_at_the_limit() {
    let mut chunk = vec![0u8; CHUNK];
    let mut inf = Inflater::new(true).unwrap();

    // 1 KiB of input naming ~1 MiB.
    let small = zeros_message(1 << 20);
    println!("1 MiB of zeros -> {} bytes", small.len());
    assert!(small.len() <= 1100);
    let ((total, err), allocs, _) = counted(|| inflate_bomb(&mut inf, &small, 64 << 10, &mut chunk));
    assert_eq!((total, err, allocs), (64 << 10, Some(CodecError::TooBig), 0));
    inf.reset();

    // ~1 MiB of input naming 1 GiB.
    let big = zeros_message(1 << 30);
    println!("1 GiB of zeros -> {} bytes ({}:1)", big.len(), (1u64 << 30) / big.len() as u64);
    assert!(big.len() < 1_100_000);
    let max = 16u64 << 20;
    let ((total, err), allocs, bytes) = counted(|| inflate_bomb(&mut inf, &big, max, &mut chunk));
    println!("inflated with a 16 MiB limit: {total} bytes, {err:?}, {allocs} allocations ({bytes} bytes)");
    assert_eq!(total, max, "exactly the limit, not one byte more");
    assert_eq!(err, Some(CodecError::TooBig));
    assert_eq!(allocs, 0, "only the 16 KiB chunk ever held output");
    // It really is a 1 GiB bomb: without a limit it inflates to 1 GiB, still allocation-free.
    inf.reset();
    let ((total, err), allocs, _) = counted(|| inflate_bomb(&mut inf, &big, u64::MAX, &mut chunk));
    assert_eq!((total, err, allocs), (1 << 30, None, 0));
}
