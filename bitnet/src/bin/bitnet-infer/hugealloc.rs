//! The binary's allocator: the system's, except that what a decode step streams goes on
//! 2 MiB pages.
//!
//! Why: decode streams every weight once per token, and on 4 KiB pages the TLB misses cost
//! bandwidth (`bitnet-infer membw`: 23.6 GB/s on 4 KiB pages, 28.8 on 2 MiB pages, 2 threads
//! of a Sapphire Rapids host). Debian's default `transparent_hugepage=madvise` gives huge
//! pages only to memory that asks, and the system allocator's blocks never ask (or ask after
//! their first page is already touched); and Linux aligns an anonymous mapping to 2 MiB only
//! when its length is a multiple of 2 MiB, so a 4.4 MB matrix in a mapping of its own got
//! one or two huge pages, and a 1.6 MB one none.
//!
//! * Blocks of 2 MiB and more get a mapping of their own that starts on a 2 MiB boundary,
//!   advised onto huge pages before first touch (only a tail under 2 MiB stays on 4 KiB
//!   pages).
//! * While the model loads ([`packed`]), blocks of 256 KiB and more are carved in turn out of
//!   slabs (32 MiB, or a block's own size rounded up to 2 MiB), 2 MiB-aligned and advised
//!   the same way: every repacked matrix, the 2B4T shape's 0.4 to 1.6 MB q, k, v and o
//!   matrices included, lies on huge pages, packed with no rounding. A slab is unmapped when
//!   its last block is freed; freed blocks are not reused before then, which costs little
//!   because the loader makes every matrix, then repacks each (the originals' slabs empty
//!   one after another).
//!
//! On a Sapphire Rapids host the ternary layers went from 39.3 to ~35 ms per decode token on
//! one thread (`bench --profile`, the 2B4T-shape model).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub struct HugePageAlloc;

const PMD: usize = 2 << 20;
/// Blocks from this size on are mapped on their own.
const HUGE: usize = PMD;
/// While loading, blocks from this size on are carved out of slabs.
const SLABBED: usize = 256 << 10;
const SLAB: usize = 32 << 20;
/// Slabs at once; past them, blocks come from the other sources.
const MAX_SLABS: usize = 256;
/// Every slab block starts on a cache line (the SIMD loads' unit).
const SLAB_ALIGN: usize = 64;

/// Nesting depth of [`packed`].
static PACKING: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` (the model's load) with its large blocks packed onto huge-page slabs.
pub fn packed<T>(f: impl FnOnce() -> T) -> T {
    PACKING.fetch_add(1, Ordering::Relaxed);
    let out = f();
    PACKING.fetch_sub(1, Ordering::Relaxed);
    out
}

/// A fresh private anonymous mapping of `size` bytes (zeroed) starting on a 2 MiB boundary,
/// advised onto huge pages.
unsafe fn map(size: usize) -> *mut u8 {
    // Over-map by 2 MiB, then give back the head before the boundary and the tail.
    let len = size + PMD;
    // SAFETY: a new anonymous mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    let a = p as usize;
    let start = a.next_multiple_of(PMD);
    let end = (start + size).next_multiple_of(4096);
    // SAFETY: both ranges lie inside the mapping just made, outside [start, end).
    unsafe {
        if start > a {
            libc::munmap(p, start - a);
        }
        if a + len > end {
            libc::munmap(end as *mut libc::c_void, a + len - end);
        }
    }
    // Advice only: a kernel without THP (or an emulator) ignoring it changes nothing else.
    // SAFETY: the range is inside the mapping kept.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE) };
    start as *mut u8
}

/// Gives back a mapping made by [`map`] for `size` bytes.
unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: the caller's: `p` is what `map(size)` returned, no longer used.
    unsafe { libc::munmap(p.cast(), size) };
}

#[derive(Clone, Copy)]
struct Slab {
    base: usize,
    len: usize,
    /// Bytes handed out from `base` (the next block starts at or after it).
    used: usize,
    /// Blocks not yet freed.
    live: usize,
}

struct Slabs {
    slabs: [Slab; MAX_SLABS],
    n: usize,
    /// The base of the slab blocks are carved from (0: none).
    current: usize,
}

const NO_SLABS: Slabs = Slabs {
    slabs: [Slab {
        base: 0,
        len: 0,
        used: 0,
        live: 0,
    }; MAX_SLABS],
    n: 0,
    current: 0,
};

static SLABS: Mutex<Slabs> = Mutex::new(NO_SLABS);

impl Slabs {
    /// A block of `size` bytes: from the current slab, a new one when it is full, or one
    /// of its own when `size` is over half a slab; null when no slab can be had.
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let own = size > SLAB / 2;
        if !own {
            if let Some(s) = self.slabs[..self.n]
                .iter_mut()
                .find(|s| s.base == self.current)
            {
                let start = s.used.next_multiple_of(SLAB_ALIGN);
                if start + size <= s.len {
                    s.used = start + size;
                    s.live += 1;
                    return (s.base + start) as *mut u8;
                }
            }
        }
        if self.n == MAX_SLABS {
            return core::ptr::null_mut();
        }
        let len = if own {
            size.next_multiple_of(PMD)
        } else {
            SLAB
        };
        // SAFETY: a fresh mapping.
        let base = unsafe { map(len) };
        if base.is_null() {
            return base;
        }
        self.slabs[self.n] = Slab {
            base: base as usize,
            len,
            used: size,
            live: 1,
        };
        self.n += 1;
        if !own {
            self.current = base as usize;
        }
        base
    }

    /// Whether `p` is a slab block; if so, it is freed.
    fn free(&mut self, p: *mut u8) -> bool {
        let a = p as usize;
        let Some(i) = self.slabs[..self.n]
            .iter()
            .position(|s| (s.base..s.base + s.len).contains(&a))
        else {
            return false;
        };
        let s = &mut self.slabs[i];
        s.live -= 1;
        if s.live == 0 {
            if s.base == self.current {
                s.used = 0; // carve the current slab again from the start
            } else {
                // SAFETY: the slab's own mapping, with no live block left.
                unsafe { unmap(s.base as *mut u8, s.len) };
                self.slabs.copy_within(i + 1..self.n, i);
                self.n -= 1;
            }
        }
        true
    }
}

fn slabs() -> std::sync::MutexGuard<'static, Slabs> {
    // Nothing panics while the lock is held; a poisoned lock is still consistent.
    SLABS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a new block of layout `l` comes from.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    System,
    Slab,
    Own,
}

fn source(l: &Layout) -> Source {
    if l.align() > SLAB_ALIGN {
        Source::System
    } else if l.size() >= SLABBED && PACKING.load(Ordering::Relaxed) > 0 {
        Source::Slab
    } else if l.size() >= HUGE {
        Source::Own
    } else {
        Source::System
    }
}

// SAFETY: a block is freed by the source that made it. Slab blocks are known by address
// (`Slabs::free` is asked first for every block that could be one: 256 KiB and more, align
// at most 64, whatever the mode now); the rest by layout alone, as `source` decided without
// the mode: own mappings are 2 MiB and more with align at most 64, the system's the others
// (a slab request that found no slab falls back to the source it would have had).
// Mappings and slabs are page-aligned and slab blocks 64-byte aligned.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        match source(&l) {
            Source::Slab => {
                let p = slabs().alloc(l.size());
                match p.is_null() {
                    false => p,
                    true if l.size() >= HUGE => unsafe { map(l.size()) },
                    true => unsafe { System.alloc(l) },
                }
            }
            Source::Own => unsafe { map(l.size()) },
            Source::System => unsafe { System.alloc(l) },
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        match source(&l) {
            Source::Slab => {
                let p = unsafe { self.alloc(l) };
                if !p.is_null() {
                    // SAFETY: a block of `l.size()` bytes (a slab's memory may be reused).
                    unsafe { core::ptr::write_bytes(p, 0, l.size()) };
                }
                p
            }
            // Anonymous mappings are zero-filled, and stay untouched until written.
            Source::Own => unsafe { map(l.size()) },
            Source::System => unsafe { System.alloc_zeroed(l) },
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if l.size() >= SLABBED && l.align() <= SLAB_ALIGN && slabs().free(p) {
            return;
        }
        if l.size() >= HUGE && l.align() <= SLAB_ALIGN {
            // SAFETY: `p` is a mapping made by `map(l.size())`.
            unsafe { unmap(p, l.size()) }
        } else {
            unsafe { System.dealloc(p, l) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` is non-zero (GlobalAlloc's contract) with `l`'s align.
        let new_l = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        let small = |l: &Layout| l.size() < SLABBED || l.align() > SLAB_ALIGN;
        if small(&l) && source(&new_l) == Source::System {
            return unsafe { System.realloc(p, l, new_size) };
        }
        // Anything else moves: a new block from its source, then a copy.
        let q = unsafe { self.alloc(new_l) };
        if !q.is_null() {
            // SAFETY: both blocks hold at least the smaller size; distinct blocks.
            unsafe {
                core::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                self.dealloc(p, l);
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_blocks_pack_and_slabs_go_when_empty() {
        let mut s = NO_SLABS;
        // Three 1.5 MB blocks share the first slab, 64-byte aligned, one after another.
        let size = 1_500_001;
        let b: Vec<usize> = (0..3).map(|_| s.alloc(size) as usize).collect();
        assert_eq!(s.n, 1);
        assert_eq!(b[0] % PMD, 0, "a slab starts on a 2 MiB boundary");
        assert_eq!(b[1], b[0] + size.next_multiple_of(SLAB_ALIGN));
        assert_eq!(b[2], b[1] + size.next_multiple_of(SLAB_ALIGN));
        // The slab's memory is there to write.
        // SAFETY: each block holds `size` bytes.
        unsafe {
            b.iter()
                .for_each(|&p| core::ptr::write_bytes(p as *mut u8, 7, size))
        };
        // A block over half a slab gets a slab of its own, rounded to 2 MiB; the current
        // slab stays the one carved from.
        let big = s.alloc(SLAB / 2 + 1) as usize;
        assert_eq!((s.n, big % PMD), (2, 0));
        assert_eq!(s.slabs[1].len, (SLAB / 2 + 1).next_multiple_of(PMD));
        assert_eq!(
            s.alloc(size) as usize,
            b[2] + size.next_multiple_of(SLAB_ALIGN)
        );
        // Filling the first slab starts another.
        let more: Vec<usize> = (0..SLAB / size).map(|_| s.alloc(size) as usize).collect();
        assert_eq!(s.n, 3);
        // Freed blocks: the big slab goes at once, the first when its last block goes, the
        // current one is kept and carved again from its start.
        assert!(s.free(big as *mut u8));
        assert_eq!(s.n, 2);
        assert!(!s.free(12345 as *mut u8), "not a slab block");
        for p in b.iter().chain(&more) {
            assert!(s.free(*p as *mut u8));
        }
        assert!(s.free((b[2] + size.next_multiple_of(SLAB_ALIGN)) as *mut u8));
        assert_eq!(s.n, 1, "only the current slab is left");
        assert_eq!((s.slabs[0].used, s.slabs[0].live), (0, 0));
        assert_eq!(s.alloc(size) as usize, s.current);
    }

    #[test]
    fn packing_puts_load_time_blocks_on_slabs_only() {
        let a = HugePageAlloc;
        let l = Layout::from_size_align(1 << 20, 8).unwrap();
        let in_slab = |p: *mut u8| {
            let s = slabs();
            s.slabs[..s.n]
                .iter()
                .any(|s| (s.base..s.base + s.len).contains(&(p as usize)))
        };
        // SAFETY: blocks allocated and freed with the same layout.
        unsafe {
            let p = packed(|| a.alloc_zeroed(l));
            assert!(in_slab(p));
            assert!((0..l.size()).all(|i| *p.add(i) == 0));
            // Freed outside `packed`: still known by its address (the slab itself stays
            // while it is the one carved from: `slab_blocks_pack_and_slabs_go_when_empty`).
            a.dealloc(p, l);
            let q = a.alloc(l);
            assert!(!in_slab(q), "not while loading: the system's");
            a.dealloc(q, l);
            // Own mappings start on a 2 MiB boundary.
            let big = Layout::from_size_align(3 << 20, 8).unwrap();
            let r = a.alloc(big);
            assert_eq!(r as usize % PMD, 0);
            r.write_bytes(1, big.size());
            let r2 = a.realloc(r, big, 5 << 20);
            assert_eq!(*r2.add((3 << 20) - 1), 1);
            a.dealloc(r2, Layout::from_size_align(5 << 20, 8).unwrap());
        }
    }
}
