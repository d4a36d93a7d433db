//! The binary's allocator: the system's, except that blocks of 2 MiB and more (the repacked
//! ternary weights, the KV cache, prompt-sized scratch) get a mapping of their own, advised
//! onto 2 MiB pages before first touch.
//!
//! Why: decode streams every weight once per token, and on 4 KiB pages the TLB misses cost
//! bandwidth (`bitnet-infer membw`: 23.6 GB/s on 4 KiB pages, 28.8 on 2 MiB pages, 2 threads
//! of a Sapphire Rapids host). Debian's default `transparent_hugepage=madvise` gives huge
//! pages only to memory that asks, and the system allocator's blocks never ask (or ask after
//! their first page is already touched). Linux from 6.7 on aligns anonymous mappings of 2 MiB
//! and more to 2 MiB, so such a block is all huge pages but for its tail.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct HugePageAlloc;

/// Blocks from this size on are mapped on their own.
const HUGE: usize = 2 << 20;

fn own_mapping(size: usize, align: usize) -> bool {
    size >= HUGE && align <= 4096
}

/// A fresh private anonymous mapping of `size` bytes (zeroed), advised onto huge pages.
unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: a new anonymous mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    // Advice only: a kernel without THP (or an emulator) ignoring it changes nothing else.
    // SAFETY: the range is the mapping just made.
    let _ = unsafe { libc::madvise(p, size, libc::MADV_HUGEPAGE) };
    p.cast()
}

// SAFETY: every block comes from exactly one of the two sources, decided by its layout alone
// (`own_mapping`), and goes back to the same one; mappings are page-aligned, which satisfies
// any alignment up to 4096.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if own_mapping(l.size(), l.align()) {
            unsafe { map(l.size()) }
        } else {
            unsafe { System.alloc(l) }
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if own_mapping(l.size(), l.align()) {
            // Anonymous mappings are zero-filled, and stay untouched until written.
            unsafe { map(l.size()) }
        } else {
            unsafe { System.alloc_zeroed(l) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if own_mapping(l.size(), l.align()) {
            // SAFETY: `p` is a mapping of exactly `l.size()` bytes made by `map`.
            unsafe { libc::munmap(p.cast(), l.size()) };
        } else {
            unsafe { System.dealloc(p, l) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        match (
            own_mapping(l.size(), l.align()),
            own_mapping(new_size, l.align()),
        ) {
            (false, false) => unsafe { System.realloc(p, l, new_size) },
            (true, true) => {
                // SAFETY: `p` is a mapping of `l.size()` bytes; the kernel moves it if it
                // must, keeping its huge-page advice.
                let q = unsafe { libc::mremap(p.cast(), l.size(), new_size, libc::MREMAP_MAYMOVE) };
                if q == libc::MAP_FAILED {
                    core::ptr::null_mut()
                } else {
                    q.cast()
                }
            }
            _ => {
                // Crossing the threshold: a new block from the other source, then a copy.
                // SAFETY: `new_size` is non-zero (GlobalAlloc's contract) with `l`'s align.
                let new_l = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
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
    }
}
