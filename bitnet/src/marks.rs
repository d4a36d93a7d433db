//! Phase marks for `cargo xtask counters`: its QEMU plugin (qemu/counters) splits a run's
//! instruction and byte counts at calls to functions named `bitnet_counters_phase_<name>`.
//! `bitnet-infer` and `bitnet-bare` call them around prefill and decode; here, in the
//! library, so both binaries carry the same marks.
//! Each mark is its own exported, never-inlined function whose body LLVM must keep (its
//! phase number through `black_box`) and cannot merge with another's, so LTO neither drops,
//! inlines nor merges the calls.

use core::hint::black_box;

#[no_mangle]
#[inline(never)]
pub extern "C" fn bitnet_counters_phase_prefill() {
    black_box(1u32);
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bitnet_counters_phase_decode() {
    black_box(2u32);
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bitnet_counters_phase_end() {
    black_box(3u32);
}
