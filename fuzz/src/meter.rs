//! A counting global allocator: how many bytes one thread has live, and the most it had
//! live, since a [`Meter`] started. Per thread, so the corpus replay in `cargo test` (tests
//! run in parallel threads) measures only its own input.
//!
//! Included by `#[path]` from `bitnet/tests/fuzz_corpus.rs` as well as used by the fuzz
//! targets, so both assert the same bound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator and counts per thread.
pub struct Counting;

thread_local! {
    // `const` and `Cell<isize>`: no lazy initialisation and no destructor, so touching
    // these from inside the allocator never allocates (which would recurse).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(n: usize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + n as isize;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn shrank(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get() - n as isize));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counting only touches thread-local integers.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

/// Allocation figures of the current thread since [`Meter::start`].
pub struct Meter {
    base: isize,
}

impl Meter {
    pub fn start() -> Meter {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        Meter { base }
    }

    /// The most bytes live at once above what was live at the start.
    pub fn peak(&self) -> usize {
        (PEAK.with(Cell::get) - self.base).max(0) as usize
    }
}

/// The resource property: loading `len` input bytes (parse, tokenizer, model) keeps at
/// most `LOAD_FACTOR * len + LOAD_SLACK` bytes live at once. The factor covers the owned
/// header structures (a one-byte token string costs 9 file bytes but a `String` in the
/// metadata, its clone in the tokenizer, a hash-map slot and its key: ~100 bytes) and
/// the repacked ternary weights; the slack covers fixed tables (256-entry byte maps, the
/// kernel's scratch) that do not grow with the file.
pub const LOAD_FACTOR: usize = 16;
pub const LOAD_SLACK: usize = 1 << 20;

/// Panics (a fuzzer finding) when `m` exceeded the bound for an input of `len` bytes.
pub fn assert_load_bound(m: &Meter, len: usize, what: &str) {
    let limit = LOAD_FACTOR.saturating_mul(len).saturating_add(LOAD_SLACK);
    let peak = m.peak();
    assert!(
        peak <= limit,
        "{what}: {peak} bytes live while loading a {len}-byte input, above the bound \
         {LOAD_FACTOR} x {len} + {LOAD_SLACK} = {limit}"
    );
}
