//! armv7 BitLinear kernel: NEON through `asm!` (32-bit Raspberry Pi OS on a Pi 2/3/4, i.MX6,
//! Allwinner boards).
//!
//! NEON intrinsics and the `neon` target feature are unstable on 32-bit ARM, and
//! `armv7-unknown-linux-gnueabihf` does not assume NEON (VFPv3-D16 cores such as the
//! Cortex-R5F and some Tegra 2 lack it), so the kernel is self-contained `asm!` blocks
//! (`.fpu neon`, only d0-d15 so the operands also exist on D16 register files) run only when
//! HWCAP reports NEON.
//!
//! The blocks multiply the unsigned codes `c = trit + 1` with the activations (`vmull.s8` /
//! `vmlal.s8`, |c * q| <= 256) and subtract the activations' block sums kept in [`ActBatch`]:
//! `sum trit * q = sum c * q - sum q`. Each i16 lane sums 16 products of one block (<= 4096)
//! before `vpadal.s16` widens it, far from the i16 overflow bitnet.cpp hit with 256 products.

use alloc::vec;
use core::arch::asm;

use super::scalar::epilogue_rows;
use super::{ActBatch, KernelDesc};
use crate::ternary::{CodeLayout, TernaryMatrix};

/// `sum c * q` over `blocks` 128-element blocks of codes at `w` and one token's activations
/// at `q` (without the `- sum q` correction).
///
/// # Safety
/// The CPU must have NEON; `blocks >= 1` (the loop counts down to zero after each block), and
/// `w..w + 32 * blocks` and `q..q + 128 * blocks` must be readable.
#[inline(always)]
unsafe fn dot_codes_1(w: *const u8, q: *const i8, blocks: usize) -> i32 {
    debug_assert!(blocks > 0);
    let sum: i32;
    // SAFETY: the caller guarantees NEON (enabled for the block by `.fpu neon`), `blocks >= 1`,
    // and that the `vld1.8` loads, `w..w + 32 * blocks` and `q..q + 128 * blocks` (no alignment
    // hint), are readable; the asm only reads memory (`readonly`, `nostack`), and every
    // register it writes is declared: `w`, `x0`, `n` as inouts, `sum` as an output, d0-d9 and
    // d12-d13 (q0-q4, q6) as clobbers; the flags `subs` sets are clobbered by default (no
    // `preserves_flags`).
    unsafe {
        asm!(
            ".fpu neon",
            "vmov.i32 q6, #0",
            "2:",
            "vld1.8 {{d0-d3}}, [{w}]!",
            "vmov.i16 q4, #0",
            // Field 0 (bits 7-6): elements 0..32 of the block.
            "vshr.u8 q2, q0, #6",
            "vld1.8 {{d6-d7}}, [{x0}]!",
            "vmlal.s8 q4, d4, d6",
            "vmlal.s8 q4, d5, d7",
            "vshr.u8 q2, q1, #6",
            "vld1.8 {{d6-d7}}, [{x0}]!",
            "vmlal.s8 q4, d4, d6",
            "vmlal.s8 q4, d5, d7",
            // Field 1 (bits 5-4): elements 32..64.
            "vshl.i8 q2, q0, #2",
            "vshr.u8 q2, q2, #6",
            "vld1.8 {{d6-d7}}, [{x0}]!",
            "vmlal.s8 q4, d4, d6",
            "vmlal.s8 q4, d5, d7",
            "vshl.i8 q2, q1, #2",
            "vshr.u8 q2, q2, #6",
            "vld1.8 {{d6-d7}}, [{x0}]!",
            "vmlal.s8 q4, d4, d6",
            "vmlal.s8 q4, d5, d7",
            // Field 2 (bits 3-2): elements 64..96.
            "vshl.i8 q2, q0, #4",
            "vshr.u8 q2, q2, #6",
            "vld1.8 {{d6-d7}}, [{x0}]!",
            "vmlal.s8 q4, d4, d6",
            "vmlal.s8 q4, d5, d7",
            "vshl.i8 q2, q1, #4",
            "vshr.u8 q2, q2, #6",
            "vld1.8 {{d6-d7}}, [{x0}]!",
            "vmlal.s8 q4, d4, d6",
            "vmlal.s8 q4, d5, d7",
            // Field 3 (bits 1-0): elements 96..128.
            "vshl.i8 q2, q0, #6",
            "vshr.u8 q2, q2, #6",
            "vld1.8 {{d6-d7}}, [{x0}]!",
            "vmlal.s8 q4, d4, d6",
            "vmlal.s8 q4, d5, d7",
            "vshl.i8 q2, q1, #6",
            "vshr.u8 q2, q2, #6",
            "vld1.8 {{d6-d7}}, [{x0}]!",
            "vmlal.s8 q4, d4, d6",
            "vmlal.s8 q4, d5, d7",
            "vpadal.s16 q6, q4",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vpadd.i32 d12, d12, d13",
            "vpadd.i32 d12, d12, d12",
            "vmov.32 {sum}, d12[0]",
            w = inout(reg) w => _,
            x0 = inout(reg) q => _,
            n = inout(reg) blocks => _,
            sum = lateout(reg) sum,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d12") _, out("d13") _,
            options(nostack, readonly)
        );
    }
    sum
}

/// Like [`dot_codes_1`] for two tokens (activations at `q0` and `q1`), decoding each code
/// vector once for both.
///
/// # Safety
/// As [`dot_codes_1`], for both tokens: the CPU must have NEON, `blocks >= 1`, and
/// `w..w + 32 * blocks`, `q0..q0 + 128 * blocks` and `q1..q1 + 128 * blocks` must be readable.
#[inline(always)]
unsafe fn dot_codes_2(w: *const u8, q0: *const i8, q1: *const i8, blocks: usize) -> [i32; 2] {
    debug_assert!(blocks > 0);
    let (s0, s1): (i32, i32);
    // q0-q1: code bytes, q2: one field's codes, q3: activations, q4/q5: i16 lanes of token
    // 0/1, q6/q7: their i32 sums.
    macro_rules! both {
        () => {
            concat!(
                "vld1.8 {{d6-d7}}, [{x0}]!\n",
                "vmlal.s8 q4, d4, d6\n",
                "vmlal.s8 q4, d5, d7\n",
                "vld1.8 {{d6-d7}}, [{x1}]!\n",
                "vmlal.s8 q5, d4, d6\n",
                "vmlal.s8 q5, d5, d7\n",
            )
        };
    }
    // SAFETY: the caller guarantees NEON (enabled for the block by `.fpu neon`), `blocks >= 1`,
    // and that the `vld1.8` loads, `w..w + 32 * blocks`, `q0..q0 + 128 * blocks` and
    // `q1..q1 + 128 * blocks` (no alignment hint), are readable; the asm only reads memory
    // (`readonly`, `nostack`), and every register it writes is declared: `w`, `x0`, `x1`, `n`
    // as inouts, `s0`, `s1` as outputs, d0-d15 (q0-q7) as clobbers; the flags `subs` sets are
    // clobbered by default (no `preserves_flags`).
    unsafe {
        asm!(
            ".fpu neon",
            "vmov.i32 q6, #0",
            "vmov.i32 q7, #0",
            "2:",
            "vld1.8 {{d0-d3}}, [{w}]!",
            "vmov.i16 q4, #0",
            "vmov.i16 q5, #0",
            "vshr.u8 q2, q0, #6",
            both!(),
            "vshr.u8 q2, q1, #6",
            both!(),
            "vshl.i8 q2, q0, #2",
            "vshr.u8 q2, q2, #6",
            both!(),
            "vshl.i8 q2, q1, #2",
            "vshr.u8 q2, q2, #6",
            both!(),
            "vshl.i8 q2, q0, #4",
            "vshr.u8 q2, q2, #6",
            both!(),
            "vshl.i8 q2, q1, #4",
            "vshr.u8 q2, q2, #6",
            both!(),
            "vshl.i8 q2, q0, #6",
            "vshr.u8 q2, q2, #6",
            both!(),
            "vshl.i8 q2, q1, #6",
            "vshr.u8 q2, q2, #6",
            both!(),
            "vpadal.s16 q6, q4",
            "vpadal.s16 q7, q5",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vpadd.i32 d12, d12, d13",
            "vpadd.i32 d14, d14, d15",
            "vpadd.i32 d12, d12, d14",
            "vmov.32 {s0}, d12[0]",
            "vmov.32 {s1}, d12[1]",
            w = inout(reg) w => _,
            x0 = inout(reg) q0 => _,
            x1 = inout(reg) q1 => _,
            n = inout(reg) blocks => _,
            s0 = lateout(reg) s0,
            s1 = lateout(reg) s1,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            out("d12") _, out("d13") _, out("d14") _, out("d15") _,
            options(nostack, readonly)
        );
    }
    [s0, s1]
}

/// Accumulators (rows, n_tokens, groups) of rows `row0..` against every token of `x`.
///
/// # Safety
/// The CPU must have NEON; shapes as checked by `check_bitmatmul_args`: `x.cols == w.cols`,
/// `group_len` a nonzero multiple of 128 dividing `cols`, `x.q` holding `n_tokens * cols`
/// activations and `x.bsums` `n_tokens * cols / 128` sums. The `asm!` helpers read raw
/// pointers whose ranges rely on these.
pub(crate) unsafe fn acc_rows_neon(w: &TernaryMatrix, x: &ActBatch, row0: usize, acc: &mut [i32]) {
    let (n, cols) = (x.n_tokens, w.cols);
    let (ng, bpg, nb) = (cols / w.group_len, w.group_len / 128, cols / 128);
    // sum q of token t over the blocks of group g
    let qsum = |t: usize, g: usize| -> i32 {
        x.bsums[t * nb + g * bpg..t * nb + (g + 1) * bpg]
            .iter()
            .sum()
    };
    for (i, acc) in acc.chunks_exact_mut(n * ng).enumerate() {
        let wrow = &w.codes[(row0 + i) * cols / 4..(row0 + i + 1) * cols / 4];
        for g in 0..ng {
            // The helpers read code bytes `32 g bpg..32 (g + 1) bpg <= 32 nb = cols / 4` of the
            // row and activations `t cols + g group_len..t cols + (g + 1) group_len <= (t + 1)
            // cols` of token t < n, inside `x.q` (n * cols); bpg >= 1.
            let wg = wrow[g * bpg * 32..].as_ptr();
            let mut t = 0;
            while t + 2 <= n {
                let q0 = x.q[t * cols + g * w.group_len..].as_ptr();
                let q1 = x.q[(t + 1) * cols + g * w.group_len..].as_ptr();
                // SAFETY: the caller guarantees NEON and the shapes above, so the ranges read
                // for tokens t and t + 1 < n are in bounds and `bpg >= 1`.
                let [s0, s1] = unsafe { dot_codes_2(wg, q0, q1, bpg) };
                acc[t * ng + g] = s0 - qsum(t, g);
                acc[(t + 1) * ng + g] = s1 - qsum(t + 1, g);
                t += 2;
            }
            if t < n {
                let q = x.q[t * cols + g * w.group_len..].as_ptr();
                // SAFETY: the caller guarantees NEON and the shapes above, so the ranges read
                // for token t < n are in bounds and `bpg >= 1`.
                acc[t * ng + g] = unsafe { dot_codes_1(wg, q, bpg) } - qsum(t, g);
            }
        }
    }
}

/// NEON on armv7. Same contract as [`Kernel::bitmatmul`](super::Kernel::bitmatmul).
///
/// # Safety
/// The CPU must have NEON (the `neon` kernel is available).
#[inline(never)]
pub unsafe fn bitmatmul_neon(w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
    super::check_bitmatmul_args(w, x, row0, out);
    let (n, ng) = (x.n_tokens, w.cols / w.group_len);
    if n == 0 {
        return;
    }
    // One row's accumulators (n_tokens, groups) at a time: each row is read once for all
    // tokens, two tokens per pass over it.
    let mut acc = vec![0i32; n * ng];
    for (i, out_row) in out.chunks_exact_mut(n).enumerate() {
        let r = row0 + i;
        // SAFETY: the caller guarantees NEON; `check_bitmatmul_args` checked the shapes above.
        unsafe { acc_rows_neon(w, x, r, &mut acc) };
        epilogue_rows(w, x, r, &acc, out_row);
    }
}

/// Exact integer accumulators of row `row` against token `t`, one per scale group, added into
/// `acc` (like [`vec_dot_ternary_i8_ref`](super::scalar::vec_dot_ternary_i8_ref)).
///
/// # Safety
/// The CPU must have NEON (the `neon` kernel is available).
pub unsafe fn vec_dot_ternary_i8_neon(
    w: &TernaryMatrix,
    row: usize,
    x: &ActBatch,
    t: usize,
    acc: &mut [i32],
) {
    super::check_bitmatmul_args(w, x, 0, &[]);
    assert!(row < w.rows && t < x.n_tokens);
    let (cols, bpg, nb) = (w.cols, w.group_len / 128, w.cols / 128);
    assert_eq!(acc.len(), cols / w.group_len);
    let wrow = &w.codes[row * cols / 4..(row + 1) * cols / 4];
    for (g, a) in acc.iter_mut().enumerate() {
        let q = x.q[t * cols + g * w.group_len..].as_ptr();
        let qsum: i32 = x.bsums[t * nb + g * bpg..t * nb + (g + 1) * bpg]
            .iter()
            .sum();
        // SAFETY: the caller guarantees NEON; after `check_bitmatmul_args`, `bpg >= 1`, the
        // row's code bytes `32 g bpg..32 (g + 1) bpg` lie in its cols / 4, and token t's
        // activations `g group_len..(g + 1) group_len` lie in its `cols` entries of `x.q`.
        *a += unsafe { dot_codes_1(wrow[g * bpg * 32..].as_ptr(), q, bpg) } - qsum;
    }
}

/// `sum row[k] * x[k]` over `4 * quads` F16 weights at `w` and f32 activations at `x`.
///
/// F16 to f32 in integer NEON ops (the NEON half-precision conversions are an extension some
/// armv7 NEON cores lack), and without ever forming an f32 subnormal, which armv7 NEON
/// flushes to zero: the magnitude shifted into f32 position plus the exponent rebias
/// (112 << 23) is the value for exponents 1..=30; exponent 31 (inf, NaN) takes the rebias
/// twice, reaching 255; exponent 0 (zero, subnormal m) gives 2^-15 (1 + m / 1024), from which
/// subtracting 2^-15 and doubling leaves m 2^-24, exactly. `vmla` sums four lanes.
///
/// # Safety
/// The CPU must have NEON; `quads >= 1`, and `w..w + 4 * quads` (u16) and `x..x + 4 * quads`
/// must be readable.
#[inline(always)]
unsafe fn dot_f16_neon(w: *const u16, x: *const f32, quads: usize) -> f32 {
    debug_assert!(quads > 0);
    let sum: u32;
    // SAFETY: the caller guarantees NEON (enabled for the block by `.fpu neon`), `quads >= 1`,
    // and that the `vld1` loads, `w..w + 4 * quads` and `x..x + 4 * quads` (no alignment
    // hint), are readable; the asm only reads memory (`readonly`, `nostack`), and every
    // register it writes is declared: `w`, `x`, `n` as inouts, `sum` as an output, d0-d15
    // (q0-q7) as clobbers; the flags `subs` sets are clobbered by default.
    unsafe {
        asm!(
            ".fpu neon",
            "vmov.i32 q5, #0",
            // q6: the exponent rebias, 112 << 23, which is also 2^-15 as a float.
            "vmov.i32 q6, #0x38000000",
            // q7: the exponent field, 31 << 23.
            "vmov.i32 q7, #0x0f000000",
            "vorr.i32 q7, #0x00800000",
            "2:",
            "vld1.16 {{d0}}, [{w}]!",
            "vld1.32 {{d2-d3}}, [{x}]!",
            "vmovl.u16 q2, d0",
            "vshr.u32 q3, q2, #15",
            "vshl.i32 q3, q3, #31",
            "vshl.i32 q2, q2, #17",
            "vshr.u32 q2, q2, #4",
            "vtst.32 q0, q2, q7",
            "vcge.u32 q4, q2, q7",
            "vand q4, q4, q6",
            "vadd.i32 q2, q2, q6",
            "vadd.i32 q2, q2, q4",
            "vsub.f32 q4, q2, q6",
            "vadd.f32 q4, q4, q4",
            "vbsl q0, q2, q4",
            "vorr q0, q0, q3",
            "vmla.f32 q5, q0, q1",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vadd.f32 d10, d10, d11",
            "vpadd.f32 d10, d10, d10",
            "vmov.32 {sum}, d10[0]",
            w = inout(reg) w => _,
            x = inout(reg) x => _,
            n = inout(reg) quads => _,
            sum = lateout(reg) sum,
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _,
            out("d6") _, out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _,
            out("d12") _, out("d13") _, out("d14") _, out("d15") _,
            options(nostack, readonly)
        );
    }
    f32::from_bits(sum)
}

/// F16 head rows against f32 activations: `out[r * n + t] = row r . x[t]`.
///
/// # Safety
/// The CPU must have NEON (the `neon` kernel is available); the shapes are checked here.
#[inline(never)]
pub unsafe fn head_f16_neon(rows: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
    use crate::quants::f16::f16_to_f32;
    let quads = cols / 4;
    super::head::head_f16_by_rows(rows, cols, x, out, |row, xt| {
        let main = if quads > 0 {
            // SAFETY: the caller guarantees NEON; `row` holds `cols` F16 values, 2-byte
            // aligned, and `xt` `cols` floats (checked by `head_f16_by_rows`), and
            // 4 * quads <= cols.
            unsafe { dot_f16_neon(row.as_ptr().cast(), xt.as_ptr(), quads) }
        } else {
            0.0
        };
        let tail: f32 = (4 * quads..cols)
            .map(|k| f16_to_f32(u16::from_le_bytes([row[2 * k], row[2 * k + 1]])) * xt[k])
            .sum();
        main + tail
    });
}

/// The armv7 kernel: integer accumulators, then the reference's epilogue (bit-exact), and an
/// F16 head of its own.
pub static KERNELS: &[KernelDesc] = &[KernelDesc {
    name: "neon",
    requires: &["neon"],
    layout: CodeLayout::Canonical,
    bit_exact: true,
    prefill_rows: None,
    bitmatmul: bitmatmul_neon,
    vec_dot: Some(vec_dot_ternary_i8_neon),
    head_f16: Some(head_f16_neon),
    head_q8_0: None,
    kv_dot_q8_0: None,
    kv_dot_q4_0: None,
}];

#[cfg(any(test, feature = "kernel-tests"))]
pub(crate) mod tests {
    use super::super::scalar::bitmatmul_scalar;
    use super::super::tally::Tally;
    use super::super::tests::{case, ref_acc};
    use super::*;
    use crate::quants::test_rng::XorShift;
    use alloc::vec::Vec;

    fn neon_acc(w: &TernaryMatrix, x: &ActBatch) -> Vec<i32> {
        let mut acc = vec![i32::MIN; w.rows * x.n_tokens * (w.cols / w.group_len)];
        // SAFETY: callers check that the `neon` kernel is available.
        unsafe { acc_rows_neon(w, x, 0, &mut acc) };
        acc
    }

    /// Counts for `test`, and whether NEON is missing (then the test checks nothing and its
    /// line says `neon ran=0`).
    fn start(test: &str) -> (Tally, bool) {
        let mut tally = Tally::new(test);
        if super::super::Kernel::by_name("neon").is_none() {
            tally.absent("neon", "this CPU has no NEON (HWCAP bit 12)");
        }
        (tally, super::super::Kernel::by_name("neon").is_none())
    }

    #[cfg_attr(test, test)]
    pub(crate) fn accumulators_equal_reference() {
        let (mut tally, absent) = start("accumulators_equal_reference");
        if absent {
            return;
        }
        let mut rng = XorShift::new(0xa7);
        for case_i in 0..30 {
            let rows = 1 + rng.next_u64() as usize % 7;
            let cols: usize = 128 * [1, 2, 3, 6][rng.next_u64() as usize % 4];
            let group_len = if cols.is_multiple_of(256) && rng.next_u64().is_multiple_of(2) {
                256
            } else {
                cols
            };
            let n = 1 + rng.next_u64() as usize % 9;
            let (w, x) = case(&mut rng, rows, cols, group_len, n);
            tally.case("neon", || {
                assert!(
                    neon_acc(&w, &x) == ref_acc(&w, &x),
                    "case {case_i}: rows {rows} cols {cols} group {group_len} n {n}"
                )
            });
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn worst_case_activations_do_not_overflow() {
        let (mut tally, absent) = start("worst_case_activations_do_not_overflow");
        if absent {
            return;
        }
        let cols = 768;
        let mut trits = vec![-1i8; 2 * cols];
        trits[cols..].fill(1);
        let w = TernaryMatrix::from_trits(&trits, 2, cols, cols, vec![1.0; 2]).unwrap();
        for fill in [-128i8, 127] {
            let mut x = ActBatch::new(3, cols);
            x.q.fill(fill);
            x.scale.fill(1.0);
            x.update_block_sums();
            tally.case("neon", || {
                assert_eq!(neon_acc(&w, &x), ref_acc(&w, &x), "{fill}")
            });
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn outputs_match_scalar() {
        let (mut tally, absent) = start("outputs_match_scalar");
        if absent {
            return;
        }
        let mut rng = XorShift::new(0xa8);
        for (rows, cols, group_len, n) in [(5, 384, 384, 1), (4, 512, 256, 5), (7, 256, 256, 2)] {
            let (w, x) = case(&mut rng, rows, cols, group_len, n);
            tally.case("neon", || {
                let row0 = 1;
                let mut want = vec![0.0f32; (rows - row0) * n];
                bitmatmul_scalar(&w, &x, row0, &mut want);
                let mut got = vec![f32::NAN; (rows - row0) * n];
                // SAFETY: `start` checked NEON.
                unsafe { bitmatmul_neon(&w, &x, row0, &mut got) };
                // Bit for bit: the kernel finishes with the reference's own epilogue.
                for (a, b) in got.iter().zip(&want) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{a} vs scalar {b}");
                }
            });
        }
    }
}
