//! aarch64 BitLinear kernels: NEON (every ARMv8-A core), `sdot` (dotprod, Armv8.2+ such as the
//! Cortex-A76 of a Raspberry Pi 5) and `smmla` (i8mm, Armv8.6+) for prefill and batches.
//!
//! All three decode a 32-byte weight block into eight vectors of trits (`code - 1`, -1..=1), so
//! no activation sums are needed and every product stays within |trit * q| <= 128. `vdotq_s32`
//! and `vmmlaq_s32` are unstable in Rust, so `sdot` / `smmla` are one-instruction `asm!` blocks
//! inside `#[target_feature]` functions; LLVM schedules them like any other instruction.
//!
//! Each decoded block is reused across a tile of up to [`TILE`] tokens (the activations of a
//! tile stay in L1), so prefill reads every weight byte once per tile instead of once per token.
//!
//! Safety: NEON is baseline on every aarch64 CPU, and every function here that calls NEON
//! intrinsics enables it with `#[target_feature]` (the target enabling it does not count for
//! the safety check), so register-only intrinsics are safe calls. What stays `unsafe` is
//! reading through raw pointers and running `dotprod` / `i8mm` code: every `unsafe fn` states
//! in `# Safety` which bytes its caller guarantees readable and which CPU features present.

use alloc::vec;
use alloc::vec::Vec;
use core::arch::aarch64::*;
use core::arch::asm;

use super::scalar::epilogue_rows;
use super::{ActBatch, KernelDesc};
use crate::quants::f16::to_f32 as f16_to_f32;
use crate::ternary::{CodeLayout, TernaryMatrix};

/// Tokens sharing each decoded weight block.
const TILE: usize = 4;
/// Token pairs sharing each decoded pair of weight rows in the i8mm kernel.
const PAIR_TILE: usize = 4;
/// Rows whose accumulators are computed before the float epilogue runs over them.
const ROWS_PER_PASS: usize = 8;

/// Runs `acc_rows` over `out` a few rows at a time, then the float epilogue.
fn drive(
    w: &TernaryMatrix,
    x: &ActBatch,
    row0: usize,
    out: &mut [f32],
    mut acc_rows: impl FnMut(usize, &mut [i32]),
) {
    super::check_bitmatmul_args(w, x, row0, out);
    let (n, ng) = (x.n_tokens, w.cols / w.group_len);
    if n == 0 {
        return;
    }
    // (ROWS_PER_PASS, n_tokens, groups)
    let mut acc = vec![0i32; ROWS_PER_PASS * n * ng];
    for (pass, out) in out.chunks_mut(ROWS_PER_PASS * n).enumerate() {
        let r = row0 + pass * ROWS_PER_PASS;
        let acc = &mut acc[..out.len() * ng];
        acc_rows(r, acc);
        epilogue_rows(w, x, r, acc, out);
    }
}

/// The 128 trits of a 32-byte block: vector k holds elements 16k..16k+16.
///
/// # Safety
/// The CPU must have NEON (every aarch64 CPU does); `p..p + 32` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn decode_block(p: *const u8) -> [int8x16_t; 8] {
    // Byte g holds elements g, 32+g, 64+g, 96+g from the top bits down: field j of the first
    // 16 bytes is elements 32j..32j+16, of the last 16 bytes 32j+16..32j+32.
    // SAFETY: the caller guarantees `p..p + 32` readable: these read `p..p + 16` and
    // `p + 16..p + 32` (vld1q has no alignment requirement).
    let (b0, b1) = unsafe { (vld1q_u8(p), vld1q_u8(p.add(16))) };
    let m = vdupq_n_u8(3);
    let one = vdupq_n_s8(1);
    let t = |c: uint8x16_t| vsubq_s8(vreinterpretq_s8_u8(c), one);
    [
        t(vshrq_n_u8::<6>(b0)),
        t(vshrq_n_u8::<6>(b1)),
        t(vandq_u8(vshrq_n_u8::<4>(b0), m)),
        t(vandq_u8(vshrq_n_u8::<4>(b1), m)),
        t(vandq_u8(vshrq_n_u8::<2>(b0), m)),
        t(vandq_u8(vshrq_n_u8::<2>(b1), m)),
        t(vandq_u8(b0, m)),
        t(vandq_u8(b1, m)),
    ]
}

/// `acc + dot(w, q)` for 128 elements, without dotprod.
///
/// # Safety
/// The CPU must have NEON (every aarch64 CPU does); `q..q + 128` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot_block_neon(acc: int32x4_t, w: &[int8x16_t; 8], q: *const i8) -> int32x4_t {
    // Trits keep |trit * q| <= 128 and each i16 lane below sums 8 products (<= 1024) before it
    // is widened: far from the i16 overflow bitnet.cpp hit summing 256 code * q products.
    let mut lo = vdupq_n_s16(0);
    let mut hi = vdupq_n_s16(0);
    for k in (0..8).step_by(2) {
        // SAFETY: k <= 6, so these read `q + 16k..q + 16k + 32`, inside `q..q + 128`, which
        // the caller guarantees readable.
        let (q0, q1) = unsafe { (vld1q_s8(q.add(16 * k)), vld1q_s8(q.add(16 * k + 16))) };
        lo = vmlal_s8(lo, vget_low_s8(w[k]), vget_low_s8(q0));
        lo = vmlal_high_s8(lo, w[k], q0);
        hi = vmlal_s8(hi, vget_low_s8(w[k + 1]), vget_low_s8(q1));
        hi = vmlal_high_s8(hi, w[k + 1], q1);
    }
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

/// `acc + dot(a, b)` per group of four bytes. Callers must have dotprod enabled.
#[inline]
#[target_feature(enable = "dotprod")]
fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: `sdot` is a dotprod instruction and this function is only callable where dotprod
    // is enabled (target_feature); it reads and writes registers only (nomem, no stack).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// `acc + dot(w, q)` for 128 elements with `sdot`.
///
/// # Safety
/// The CPU must support dotprod; `q..q + 128` must be readable.
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn dot_block_dotprod(acc: int32x4_t, w: &[int8x16_t; 8], q: *const i8) -> int32x4_t {
    // Two chains so consecutive sdots do not wait on each other.
    let mut a = acc;
    let mut b = vdupq_n_s32(0);
    for k in (0..8).step_by(2) {
        // SAFETY: k <= 6, so these read `q + 16k..q + 16k + 32`, inside `q..q + 128`, which
        // the caller guarantees readable.
        a = sdot(a, w[k], unsafe { vld1q_s8(q.add(16 * k)) });
        // SAFETY: as above.
        b = sdot(b, w[k + 1], unsafe { vld1q_s8(q.add(16 * k + 16)) });
    }
    vaddq_s32(a, b)
}

/// Generates `tile_<isa>::<NT>`: the accumulators of one weight row against `NT` consecutive
/// tokens, reusing each decoded block for all of them.
macro_rules! row_tile {
    ($name:ident, $feature:literal, $dot:ident) => {
        /// `acc[t * ng + g]` for tokens `t < NT` starting at `q` (`cols` apart).
        ///
        /// # Safety
        /// The CPU must support the target feature; `wrow..wrow + cols / 4` (one row of
        /// codes) and `q..q + NT * cols` (`NT` tokens) must be readable.
        #[inline]
        #[target_feature(enable = $feature)]
        unsafe fn $name<const NT: usize>(
            wrow: *const u8,
            q: *const i8,
            cols: usize,
            group_len: usize,
            acc: &mut [i32],
        ) {
            let (ng, bpg) = (cols / group_len, group_len / 128);
            debug_assert!(acc.len() >= NT * ng);
            for g in 0..ng {
                let mut a = [vdupq_n_s32(0); NT];
                for b in g * bpg..(g + 1) * bpg {
                    // SAFETY: b < ng * bpg <= cols / 128, so `wrow + 32b..wrow + 32b + 32` is
                    // inside the row of cols / 4 bytes the caller guarantees readable.
                    let wv = unsafe { decode_block(wrow.add(32 * b)) };
                    for (t, a) in a.iter_mut().enumerate() {
                        // SAFETY: t < NT and 128b + 128 <= cols, so `q + t * cols + 128b` and
                        // the 128 bytes after it are inside token t, which the caller
                        // guarantees readable; the caller also guarantees the feature `$dot`
                        // needs.
                        *a = unsafe { $dot(*a, &wv, q.add(t * cols + 128 * b)) };
                    }
                }
                for (t, a) in a.iter().enumerate() {
                    acc[t * ng + g] = vaddvq_s32(*a);
                }
            }
        }
    };
}

row_tile!(tile_neon, "neon", dot_block_neon);
row_tile!(tile_dotprod, "dotprod", dot_block_dotprod);

/// Generates `acc_rows_<isa>`: accumulators (rows, n_tokens, groups) of rows `row0..` against
/// every token, in tiles of [`TILE`] tokens.
macro_rules! acc_rows {
    ($name:ident, $feature:literal, $tile:ident) => {
        /// # Safety
        /// The CPU must support the target feature; shapes as checked by `check_bitmatmul_args`
        /// (`x.q` holds `x.n_tokens * w.cols` bytes, `cols` and `group_len` multiples of 128).
        #[target_feature(enable = $feature)]
        pub(crate) unsafe fn $name(w: &TernaryMatrix, x: &ActBatch, row0: usize, acc: &mut [i32]) {
            let (n, cols, gl) = (x.n_tokens, w.cols, w.group_len);
            let ng = cols / gl;
            for (i, acc) in acc.chunks_exact_mut(n * ng).enumerate() {
                let wrow = w.codes[(row0 + i) * cols / 4..(row0 + i + 1) * cols / 4].as_ptr();
                let mut t = 0;
                while t < n {
                    let q = x.q[t * cols..].as_ptr();
                    let acc = &mut acc[t * ng..];
                    let nt = (n - t).min(TILE);
                    // SAFETY: `wrow` is a slice of cols / 4 bytes (one row); `q` starts token t
                    // of `x.q`, which holds n_tokens * cols bytes (check_bitmatmul_args), so
                    // the nt <= n - t tokens from it are readable; the caller guarantees the
                    // feature.
                    unsafe {
                        match nt {
                            1 => $tile::<1>(wrow, q, cols, gl, acc),
                            2 => $tile::<2>(wrow, q, cols, gl, acc),
                            3 => $tile::<3>(wrow, q, cols, gl, acc),
                            _ => $tile::<TILE>(wrow, q, cols, gl, acc),
                        }
                    }
                    t += nt;
                }
            }
        }
    };
}

acc_rows!(acc_rows_neon, "neon", tile_neon);
acc_rows!(acc_rows_dotprod, "dotprod", tile_dotprod);

/// Generates the entry points of a row-tile kernel: `bitmatmul_<isa>` (same contract as
/// [`Kernel::bitmatmul`](super::Kernel::bitmatmul)) and `vec_dot_ternary_i8_<isa>`.
macro_rules! entries {
    ($bitmatmul:ident, $vec_dot:ident, $feature:literal, $acc_rows:ident, $tile:ident) => {
        /// # Safety
        /// The CPU must support the target feature.
        #[inline(never)]
        #[target_feature(enable = $feature)]
        pub unsafe fn $bitmatmul(w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
            // SAFETY: the caller guarantees the feature; `drive` checks the shapes.
            drive(w, x, row0, out, |r, acc| unsafe { $acc_rows(w, x, r, acc) });
        }

        /// Exact integer accumulators of row `row` against token `t`, one per scale group,
        /// added into `acc` (like
        /// [`vec_dot_ternary_i8_ref`](super::scalar::vec_dot_ternary_i8_ref)).
        ///
        /// # Safety
        /// The CPU must support the target feature.
        #[target_feature(enable = $feature)]
        pub unsafe fn $vec_dot(
            w: &TernaryMatrix,
            row: usize,
            x: &ActBatch,
            t: usize,
            acc: &mut [i32],
        ) {
            super::check_bitmatmul_args(w, x, 0, &[]);
            assert!(row < w.rows && t < x.n_tokens);
            let ng = w.cols / w.group_len;
            assert_eq!(acc.len(), ng);
            let mut a = vec![0i32; ng];
            let wrow = w.codes[row * w.cols / 4..(row + 1) * w.cols / 4].as_ptr();
            // SAFETY: `wrow` is a slice of cols / 4 bytes (one row) and `x.token(t)` one of
            // x.cols == w.cols bytes (checked above); the caller guarantees the feature.
            unsafe { $tile::<1>(wrow, x.token(t).as_ptr(), w.cols, w.group_len, &mut a) };
            for (acc, a) in acc.iter_mut().zip(a) {
                *acc += a;
            }
        }
    };
}

// NEON without dotprod: Cortex-A53/A72 (Raspberry Pi 3 and 4).
entries!(
    bitmatmul_neon,
    vec_dot_ternary_i8_neon,
    "neon",
    acc_rows_neon,
    tile_neon
);
// `sdot`: Armv8.2 dotprod (Cortex-A55/A76, Neoverse-N1 and later).
entries!(
    bitmatmul_dotprod,
    vec_dot_ternary_i8_dotprod,
    "dotprod",
    acc_rows_dotprod,
    tile_dotprod
);

/// `acc + A B^T` where A is two rows of 8 int8 (first and last 8 bytes of `a`), B likewise:
/// lanes (a0.b0, a0.b1, a1.b0, a1.b1). Callers must have i8mm enabled.
#[inline]
#[target_feature(enable = "i8mm")]
fn smmla(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: `smmla` is an i8mm instruction and this function is only callable where i8mm is
    // enabled (target_feature); it reads and writes registers only (nomem, no stack).
    unsafe {
        asm!(
            "smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// Activations rearranged for `smmla`: token pairs (2p, 2p+1), each as cols/8 chunks of 8
/// bytes of token 2p then 8 bytes of token 2p+1 (zeros if n is odd). The 8-element chunk
/// starting at element e of pair p is at `p * 2 * cols + 2 * e`.
fn pair_acts(x: &ActBatch) -> Vec<i8> {
    let (n, cols) = (x.n_tokens, x.cols);
    // (n_tokens / 2 rounded up, cols / 8, 2, 8)
    let mut pairs = vec![0i8; n.div_ceil(2) * 2 * cols];
    for t in 0..n {
        let dst = &mut pairs[t / 2 * 2 * cols..];
        for (c, src) in x.token(t).chunks_exact(8).enumerate() {
            let at = 16 * c + 8 * (t % 2);
            dst[at..at + 8].copy_from_slice(src);
        }
    }
    pairs
}

/// The 2 x 128 trits of one block of two rows, interleaved for `smmla`: entry [j][m] holds
/// elements 32j+8m..32j+8m+8 of the first row, then the same of the second.
///
/// # Safety
/// The CPU must support i8mm; `p0..p0 + 32` and `p1..p1 + 32` must be readable.
#[inline]
#[target_feature(enable = "neon,i8mm")]
unsafe fn decode_block_pair(p0: *const u8, p1: *const u8) -> [[int8x16_t; 4]; 4] {
    // Interleaving the packed bytes first means one decode serves both rows.
    // SAFETY: these read `p0..p0 + 32` and `p1..p1 + 32`, which the caller guarantees
    // readable (vld1q has no alignment requirement).
    let (a0, a1, b0, b1) = unsafe {
        (
            vld1q_u64(p0 as *const u64),
            vld1q_u64(p0.add(16) as *const u64),
            vld1q_u64(p1 as *const u64),
            vld1q_u64(p1.add(16) as *const u64),
        )
    };
    let z = [
        vreinterpretq_u8_u64(vzip1q_u64(a0, b0)),
        vreinterpretq_u8_u64(vzip2q_u64(a0, b0)),
        vreinterpretq_u8_u64(vzip1q_u64(a1, b1)),
        vreinterpretq_u8_u64(vzip2q_u64(a1, b1)),
    ];
    let m = vdupq_n_u8(3);
    let one = vdupq_n_s8(1);
    let t = |c: uint8x16_t| vsubq_s8(vreinterpretq_s8_u8(c), one);
    [
        z.map(|v| t(vshrq_n_u8::<6>(v))),
        z.map(|v| t(vandq_u8(vshrq_n_u8::<4>(v), m))),
        z.map(|v| t(vandq_u8(vshrq_n_u8::<2>(v), m))),
        z.map(|v| t(vandq_u8(v, m))),
    ]
}

/// Accumulators of rows (r, r+1) against `NP` token pairs starting at pair `p0`; `acc0` and
/// `acc1` are the two rows' (n_tokens, groups) accumulators, `n` the real token count.
///
/// # Safety
/// The CPU must support i8mm; `w0..w0 + cols / 4` and `w1..w1 + cols / 4` (two rows of codes)
/// must be readable. `pairs` is sliced with bounds checks.
#[inline]
#[target_feature(enable = "neon,i8mm")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_i8mm<const NP: usize>(
    w0: *const u8,
    w1: *const u8,
    pairs: &[i8],
    p0: usize,
    n: usize,
    cols: usize,
    group_len: usize,
    acc0: &mut [i32],
    acc1: &mut [i32],
) {
    let (ng, bpg) = (cols / group_len, group_len / 128);
    let qp = pairs[p0 * 2 * cols..(p0 + NP) * 2 * cols].as_ptr();
    for g in 0..ng {
        let mut a = [vdupq_n_s32(0); NP];
        for b in g * bpg..(g + 1) * bpg {
            // SAFETY: b < ng * bpg <= cols / 128, so the 32 bytes at `w0 + 32b` and `w1 + 32b`
            // are inside the two rows of cols / 4 bytes the caller guarantees readable; the
            // caller guarantees i8mm.
            let wv = unsafe { decode_block_pair(w0.add(32 * b), w1.add(32 * b)) };
            for (p, a) in a.iter_mut().enumerate() {
                // `qp` is a slice of NP * 2 * cols bytes; pair p < NP starts at p * 2 * cols and
                // block b covers its bytes 256b..256b + 256, with 256b + 256 <= 2 * cols.
                let at = p * 2 * cols + 2 * 128 * b;
                for (j, wj) in wv.iter().enumerate() {
                    for (m, &wjm) in wj.iter().enumerate() {
                        // SAFETY: j, m < 4, so this reads `qp + at + 2 * (32j + 8m)` and the 15
                        // bytes after it, at most `qp + at + 256`: inside the slice (see above).
                        let q = unsafe { vld1q_s8(qp.add(at + 2 * (32 * j + 8 * m))) };
                        *a = smmla(*a, wjm, q);
                    }
                }
            }
        }
        for (p, a) in a.iter().enumerate() {
            let t = 2 * (p0 + p);
            acc0[t * ng + g] = vgetq_lane_s32::<0>(*a);
            acc1[t * ng + g] = vgetq_lane_s32::<2>(*a);
            if t + 1 < n {
                acc0[(t + 1) * ng + g] = vgetq_lane_s32::<1>(*a);
                acc1[(t + 1) * ng + g] = vgetq_lane_s32::<3>(*a);
            }
        }
    }
}

/// Accumulators (rows, n_tokens, groups) of rows `row0..`: row pairs with `smmla`, a last odd
/// row with `sdot`. `pairs` is [`pair_acts`] of `x`.
///
/// # Safety
/// The CPU must support i8mm and dotprod; shapes as checked by `check_bitmatmul_args`
/// (`x.q` holds `x.n_tokens * w.cols` bytes, `cols` and `group_len` multiples of 128).
#[target_feature(enable = "i8mm,dotprod")]
pub(crate) unsafe fn acc_rows_i8mm(
    w: &TernaryMatrix,
    x: &ActBatch,
    pairs: &[i8],
    row0: usize,
    acc: &mut [i32],
) {
    let (n, cols, gl) = (x.n_tokens, w.cols, w.group_len);
    let ng = cols / gl;
    let n_pairs = n.div_ceil(2);
    let mut rows = acc.chunks_exact_mut(2 * n * ng);
    let mut r = row0;
    for acc in rows.by_ref() {
        let (acc0, acc1) = acc.split_at_mut(n * ng);
        let w0 = w.codes[r * cols / 4..(r + 1) * cols / 4].as_ptr();
        let w1 = w.codes[(r + 1) * cols / 4..(r + 2) * cols / 4].as_ptr();
        let mut p = 0;
        while p < n_pairs {
            let np = (n_pairs - p).min(PAIR_TILE);
            // SAFETY: `w0` and `w1` are slices of cols / 4 bytes (rows r and r + 1); the
            // caller guarantees i8mm.
            unsafe {
                match np {
                    1 => tile_i8mm::<1>(w0, w1, pairs, p, n, cols, gl, acc0, acc1),
                    2 => tile_i8mm::<2>(w0, w1, pairs, p, n, cols, gl, acc0, acc1),
                    3 => tile_i8mm::<3>(w0, w1, pairs, p, n, cols, gl, acc0, acc1),
                    _ => tile_i8mm::<PAIR_TILE>(w0, w1, pairs, p, n, cols, gl, acc0, acc1),
                }
            }
            p += np;
        }
        r += 2;
    }
    let rest = rows.into_remainder();
    if !rest.is_empty() {
        // SAFETY: the caller guarantees dotprod and the shapes `acc_rows_dotprod` needs.
        unsafe { acc_rows_dotprod(w, x, r, rest) };
    }
}

/// `smmla` (Armv8.6 i8mm: Cortex-A510/A710/X2, Neoverse-N2/V1 and later) for two tokens or more;
/// single tokens go through `sdot`, which does not waste half of each `smmla` on padding.
/// Same contract as [`Kernel::bitmatmul`](super::Kernel::bitmatmul).
///
/// # Safety
/// The CPU must support i8mm and dotprod.
#[inline(never)]
#[target_feature(enable = "i8mm,dotprod")]
pub unsafe fn bitmatmul_i8mm(w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
    if x.n_tokens < 2 {
        // SAFETY: the caller guarantees dotprod; `drive` checks the shapes.
        return drive(w, x, row0, out, |r, acc| unsafe {
            acc_rows_dotprod(w, x, r, acc)
        });
    }
    let pairs = pair_acts(x);
    // SAFETY: the caller guarantees i8mm and dotprod; `drive` checks the shapes.
    drive(w, x, row0, out, |r, acc| unsafe {
        acc_rows_i8mm(w, x, &pairs, r, acc)
    });
}

/// Output rows of the head computed together, sharing each activation load.
const HEAD_ROWS: usize = 4;

/// f32 of the low four halves of `h`.
#[inline(always)]
fn cvt_lo(h: uint8x16_t) -> float32x4_t {
    // `vcvt_f32_f16` needs the unstable f16 types; `fcvtl` itself is baseline ARMv8 SIMD.
    let o: float32x4_t;
    // SAFETY: `fcvtl` is baseline AArch64 Advanced SIMD (neon), which the target enables (the
    // `vreg` operands do not compile without it); it reads and writes registers only (nomem).
    unsafe {
        asm!("fcvtl {o:v}.4s, {h:v}.4h", h = in(vreg) h, o = lateout(vreg) o,
            options(pure, nomem, nostack, preserves_flags));
    }
    o
}

/// f32 of the high four halves of `h`.
#[inline(always)]
fn cvt_hi(h: uint8x16_t) -> float32x4_t {
    let o: float32x4_t;
    // SAFETY: `fcvtl2` is baseline AArch64 Advanced SIMD (neon), which the target enables (the
    // `vreg` operands do not compile without it); it reads and writes registers only (nomem).
    unsafe {
        asm!("fcvtl2 {o:v}.4s, {h:v}.8h", h = in(vreg) h, o = lateout(vreg) o,
            options(pure, nomem, nostack, preserves_flags));
    }
    o
}

/// F16 head rows against f32 activations: `out[r * n + t] = row r . x[t]`.
///
/// # Safety
/// The CPU must have NEON (every aarch64 CPU); the shapes are checked here.
#[inline(never)]
#[target_feature(enable = "neon")]
pub unsafe fn head_f16_neon(rows: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
    let (n, n_rows) = super::head::check_head_f16(rows, cols, x, out);
    let main = cols / 16 * 16;
    let mut r = 0;
    while r < n_rows {
        let rn = (n_rows - r).min(HEAD_ROWS);
        for t in 0..n {
            let xt = x[t * cols..(t + 1) * cols].as_ptr();
            // (rows of the tile, 4 chains of 4 lanes)
            let mut acc = [[vdupq_n_f32(0.0); 4]; HEAD_ROWS];
            let mut k = 0;
            while k < main {
                // SAFETY: k + 16 <= main <= cols, so these read `xt + k..xt + k + 16`, inside
                // token t (a slice of cols floats).
                let xs = unsafe {
                    [
                        vld1q_f32(xt.add(k)),
                        vld1q_f32(xt.add(k + 4)),
                        vld1q_f32(xt.add(k + 8)),
                        vld1q_f32(xt.add(k + 12)),
                    ]
                };
                for (i, acc) in acc[..rn].iter_mut().enumerate() {
                    // SAFETY: r + i < n_rows and `rows` holds n_rows rows of 2 * cols bytes
                    // (check_head_f16); 2k + 32 <= 2 * cols, so `p..p + 32` is inside row r + i.
                    let (h0, h1) = unsafe {
                        let p = rows.as_ptr().add((r + i) * cols * 2 + 2 * k);
                        (vld1q_u8(p), vld1q_u8(p.add(16)))
                    };
                    acc[0] = vfmaq_f32(acc[0], cvt_lo(h0), xs[0]);
                    acc[1] = vfmaq_f32(acc[1], cvt_hi(h0), xs[1]);
                    acc[2] = vfmaq_f32(acc[2], cvt_lo(h1), xs[2]);
                    acc[3] = vfmaq_f32(acc[3], cvt_hi(h1), xs[3]);
                }
                k += 16;
            }
            for (i, a) in acc[..rn].iter().enumerate() {
                let row = &rows[(r + i) * cols * 2..(r + i + 1) * cols * 2];
                let v = vaddq_f32(vaddq_f32(a[0], a[1]), vaddq_f32(a[2], a[3]));
                let tail = super::head::dot_f16_tail(row, x, t, cols, main);
                out[(r + i) * n + t] = vaddvq_f32(v) + tail;
            }
        }
        r += rn;
    }
}

/// Exact `sum w * x` of one Q8_0 block (32 weights at `w`) without dotprod.
///
/// # Safety
/// The CPU must have NEON (every aarch64 CPU does); `w..w + 32` and `x..x + 32` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn q8_block_neon(w: *const u8, x: *const i8) -> i32 {
    // SAFETY: these read `w..w + 32` and `x..x + 32`, which the caller guarantees readable.
    let (w0, w1, x0, x1) = unsafe {
        (
            vld1q_s8(w as *const i8),
            vld1q_s8(w.add(16) as *const i8),
            vld1q_s8(x),
            vld1q_s8(x.add(16)),
        )
    };
    // |w| <= 128 and |x| <= 127: one i16 lane holds two products (<= 32512), not three.
    let a = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0);
    let b = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), w1, x1);
    vaddvq_s32(vaddq_s32(vpaddlq_s16(a), vpaddlq_s16(b)))
}

/// Exact `sum w * x` of one Q8_0 block with `sdot`.
///
/// # Safety
/// The CPU must support dotprod; `w..w + 32` and `x..x + 32` must be readable.
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn q8_block_dotprod(w: *const u8, x: *const i8) -> i32 {
    // SAFETY: these read `w..w + 32` and `x..x + 32`, which the caller guarantees readable.
    let (w0, w1, x0, x1) = unsafe {
        (
            vld1q_s8(w as *const i8),
            vld1q_s8(w.add(16) as *const i8),
            vld1q_s8(x),
            vld1q_s8(x.add(16)),
        )
    };
    vaddvq_s32(sdot(sdot(vdupq_n_s32(0), w0, x0), w1, x1))
}

/// Generates `head_q8_0_<isa>` and `q8_0_block_sums_<isa>` around an exact block sum. The
/// float part runs in the reference's order, so outputs equal the reference bit for bit.
macro_rules! head_q8_0 {
    ($head:ident, $sums:ident, $feature:literal, $block:ident) => {
        /// Q8_0 head rows against int8 activations: `out[r * n + t] = row r . x[t]`.
        ///
        /// # Safety
        /// The CPU must support the target feature.
        #[inline(never)]
        #[target_feature(enable = $feature)]
        pub unsafe fn $head(rows: &[u8], a: &super::HeadActs, out: &mut [f32]) {
            use super::head::Q8_0_BLOCK_BYTES as BB;
            let (n, _, row_bytes) = super::head::check_head_q8_0(rows, a, out);
            let nb = a.cols / 32;
            for (row, o) in rows.chunks_exact(row_bytes).zip(out.chunks_exact_mut(n)) {
                for (t, y) in o.iter_mut().enumerate() {
                    let (q, d) = (a.q[t * a.cols..].as_ptr(), &a.d[t * nb..(t + 1) * nb]);
                    let mut acc = 0.0f32;
                    for (k, &dx) in d.iter().enumerate() {
                        // SAFETY: k < nb, so block k (`BB` bytes: the half scale, then 32
                        // codes) lies inside `row` (nb * BB bytes, check_head_q8_0), and
                        // `q + 32k..q + 32k + 32` inside token t of `a.q` (a.cols bytes left
                        // after `q`); the caller guarantees the feature `$block` needs.
                        let (dw, s) = unsafe {
                            let b = row.as_ptr().add(k * BB);
                            let dw = f16_to_f32(u16::from_le_bytes([*b, *b.add(1)]));
                            (dw, $block(b.add(2), q.add(32 * k)))
                        };
                        acc += s as f32 * (dw * dx);
                    }
                    *y = acc;
                }
            }
        }

        /// `isums[k] = sum over Q8_0 block k of row * xq` (for the exactness tests).
        ///
        /// # Safety
        /// The CPU must support the target feature.
        #[target_feature(enable = $feature)]
        pub unsafe fn $sums(row: &[u8], xq: &[i8], isums: &mut [i32]) {
            use super::head::Q8_0_BLOCK_BYTES as BB;
            assert!(row.len() == isums.len() * BB && xq.len() == isums.len() * 32);
            for (k, s) in isums.iter_mut().enumerate() {
                // SAFETY: k < isums.len(), so the 32 codes of block k (after its 2-byte scale)
                // are inside `row` and `xq + 32k..xq + 32k + 32` inside `xq` (lengths asserted
                // above); the caller guarantees the feature `$block` needs.
                *s = unsafe { $block(row.as_ptr().add(k * BB + 2), xq.as_ptr().add(32 * k)) };
            }
        }
    };
}

head_q8_0!(head_q8_0_neon, q8_0_block_sums_neon, "neon", q8_block_neon);
head_q8_0!(
    head_q8_0_dotprod,
    q8_0_block_sums_dotprod,
    "dotprod",
    q8_block_dotprod
);

/// The 32 signed codes (`nibble - 8`, -8..=7) of the Q4_0 block whose 16 code bytes start
/// at `qs`: elements 0..16 (low nibbles) and 16..32 (high nibbles).
///
/// # Safety
/// `qs..qs + 16` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn q4_0_codes(qs: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: 16 bytes at `qs`, readable by the caller's guarantee.
    let v = unsafe { vld1q_u8(qs) };
    let eight = vdupq_n_s8(8);
    let lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
    (vsubq_s8(lo, eight), vsubq_s8(hi, eight))
}

/// Exact `sum code * x` of one Q4_0 block (code bytes at `qs`) without dotprod.
///
/// # Safety
/// `qs..qs + 16` and `x..x + 32` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn q4_block_neon(qs: *const u8, x: *const i8) -> i32 {
    // SAFETY: the caller guarantees `qs..qs + 16` and `x..x + 32` readable.
    let ((w0, w1), x0, x1) = unsafe { (q4_0_codes(qs), vld1q_s8(x), vld1q_s8(x.add(16))) };
    // |code| <= 8, |x| <= 128: two products per i16 lane stay far below 32767.
    let a = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0);
    let b = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), w1, x1);
    vaddvq_s32(vaddq_s32(vpaddlq_s16(a), vpaddlq_s16(b)))
}

/// Exact `sum code * x` of one Q4_0 block with `sdot`.
///
/// # Safety
/// The CPU must support dotprod; `qs..qs + 16` and `x..x + 32` must be readable.
#[inline]
#[target_feature(enable = "dotprod")]
unsafe fn q4_block_dotprod(qs: *const u8, x: *const i8) -> i32 {
    // SAFETY: the caller guarantees `qs..qs + 16` and `x..x + 32` readable.
    let ((w0, w1), x0, x1) = unsafe { (q4_0_codes(qs), vld1q_s8(x), vld1q_s8(x.add(16))) };
    vaddvq_s32(sdot(sdot(vdupq_n_s32(0), w0, x0), w1, x1))
}

/// Generates `kv_dot_<type>_<isa>` (a [`super::KvDotFn`] slot) around an exact block dot
/// product of that type: `isums[j * nb + b]` for key row j, block b.
macro_rules! kv_dot {
    ($name:ident, $feature:literal, $block:ident, $bytes:expr) => {
        /// Exact block sums of key rows against an int8 query (`kernels::kv`).
        ///
        /// # Safety
        /// The CPU must support the target feature.
        #[inline(never)]
        #[target_feature(enable = $feature)]
        pub unsafe fn $name(rows: &[u8], q: &[i8], isums: &mut [i32]) {
            let (nb, n) = super::kv::check_kv_dot(rows, q, isums, $bytes);
            for j in 0..n {
                for b in 0..nb {
                    // SAFETY: `check_kv_dot` asserted rows.len() == n * nb * $bytes and
                    // q.len() == nb * 32, so the codes after block (j, b)'s 2-byte scale and
                    // elements 32b..32b + 32 of the query are in bounds; the caller
                    // guarantees the feature `$block` needs.
                    isums[j * nb + b] = unsafe {
                        $block(
                            rows.as_ptr().add((j * nb + b) * $bytes + 2),
                            q.as_ptr().add(32 * b),
                        )
                    };
                }
            }
        }
    };
}

kv_dot!(
    kv_dot_q8_0_neon,
    "neon",
    q8_block_neon,
    super::head::Q8_0_BLOCK_BYTES
);
kv_dot!(
    kv_dot_q8_0_dotprod,
    "dotprod",
    q8_block_dotprod,
    super::head::Q8_0_BLOCK_BYTES
);
kv_dot!(
    kv_dot_q4_0_neon,
    "neon",
    q4_block_neon,
    crate::quants::q4_0::BLOCK_BYTES
);
kv_dot!(
    kv_dot_q4_0_dotprod,
    "dotprod",
    q4_block_dotprod,
    crate::quants::q4_0::BLOCK_BYTES
);

/// The aarch64 kernels, worst to best. They compute integer accumulators and finish with the
/// reference's own epilogue, so `bitmatmul` is bit-exact; the F16 head sums with FMA in
/// vector lanes (not the reference's order), the Q8_0 head keeps the reference's order.
pub static KERNELS: &[KernelDesc] = &[
    // Every ARMv8-A core; Cortex-A53/A72 (Raspberry Pi 3 and 4) have nothing better.
    KernelDesc {
        name: "neon",
        requires: &["neon"],
        layout: CodeLayout::Canonical,
        bit_exact: true,
        prefill_rows: None,
        bitmatmul: bitmatmul_neon,
        vec_dot: Some(vec_dot_ternary_i8_neon),
        head_f16: Some(head_f16_neon),
        head_q8_0: Some(head_q8_0_neon),
        kv_dot_q8_0: Some(kv_dot_q8_0_neon),
        kv_dot_q4_0: Some(kv_dot_q4_0_neon),
    },
    // Armv8.2 dotprod: Cortex-A55/A76, Neoverse-N1 and later.
    KernelDesc {
        name: "dotprod",
        requires: &["neon", "dotprod"],
        layout: CodeLayout::Canonical,
        bit_exact: true,
        prefill_rows: None,
        bitmatmul: bitmatmul_dotprod,
        vec_dot: Some(vec_dot_ternary_i8_dotprod),
        head_f16: Some(head_f16_neon),
        head_q8_0: Some(head_q8_0_dotprod),
        kv_dot_q8_0: Some(kv_dot_q8_0_dotprod),
        kv_dot_q4_0: Some(kv_dot_q4_0_dotprod),
    },
    // Armv8.6 i8mm: Cortex-A510/A710/X2, Neoverse-N2/V1; single tokens go through `sdot`.
    KernelDesc {
        name: "i8mm",
        requires: &["neon", "dotprod", "i8mm"],
        layout: CodeLayout::Canonical,
        bit_exact: true,
        prefill_rows: None,
        bitmatmul: bitmatmul_i8mm,
        vec_dot: None,
        head_f16: Some(head_f16_neon),
        head_q8_0: Some(head_q8_0_dotprod),
        kv_dot_q8_0: Some(kv_dot_q8_0_dotprod),
        kv_dot_q4_0: Some(kv_dot_q4_0_dotprod),
    },
];

#[cfg(any(test, feature = "kernel-tests"))]
pub(crate) mod tests {
    use super::super::head::Q8_0_BLOCK_BYTES;
    use super::super::scalar::bitmatmul_scalar;
    use super::super::tally::Tally;
    use super::super::tests::{case, ref_acc};
    use super::*;

    fn available(name: &str) -> bool {
        super::super::Kernel::by_name(name).is_some()
    }
    use crate::quants::test_rng::XorShift;

    /// Bit for bit: the kernels finish with the reference's own epilogue.
    fn assert_same_bits(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{what}: out[{i}] = {a}, scalar {b}"
            );
        }
    }

    type Entry = unsafe fn(&TernaryMatrix, &ActBatch, usize, &mut [f32]);

    /// The kernels this CPU can run, with their entries; the others are recorded in `tally`
    /// as not checked.
    fn kernels(tally: &mut Tally) -> Vec<(&'static str, Entry, bool)> {
        let all: [(&str, Entry, bool); 3] = [
            ("neon", bitmatmul_neon, available("neon")),
            ("dotprod", bitmatmul_dotprod, available("dotprod")),
            ("i8mm", bitmatmul_i8mm, available("i8mm")),
        ];
        for (name, _, ok) in &all {
            if !ok {
                tally.absent(name, "not supported by this CPU");
            }
        }
        all.into_iter().filter(|k| k.2).collect()
    }

    fn acc_of(name: &str, w: &TernaryMatrix, x: &ActBatch) -> Vec<i32> {
        let ng = w.cols / w.group_len;
        let mut acc = vec![i32::MIN; w.rows * x.n_tokens * ng];
        // SAFETY: only called for kernels `kernels()` found available; shapes from `case`.
        unsafe {
            match name {
                "neon" => acc_rows_neon(w, x, 0, &mut acc),
                "dotprod" => acc_rows_dotprod(w, x, 0, &mut acc),
                "i8mm" => acc_rows_i8mm(w, x, &pair_acts(x), 0, &mut acc),
                _ => unreachable!(),
            }
        }
        acc
    }

    #[cfg_attr(test, test)]
    pub(crate) fn accumulators_equal_reference() {
        let mut tally = Tally::new("accumulators_equal_reference");
        let mut rng = XorShift::new(0xa64);
        let kernels = kernels(&mut tally);
        for case_i in 0..40 {
            let rows = 1 + rng.next_u64() as usize % 9;
            let cols: usize = 128 * [1, 2, 3, 4, 6][rng.next_u64() as usize % 5];
            let group_len = if cols.is_multiple_of(256) && rng.next_u64().is_multiple_of(2) {
                256
            } else {
                cols
            };
            let n = 1 + rng.next_u64() as usize % 9;
            let (w, x) = case(&mut rng, rows, cols, group_len, n);
            let want = ref_acc(&w, &x);
            for &(name, _, _) in &kernels {
                tally.case(name, || {
                    let got = acc_of(name, &w, &x);
                    assert!(
                        got == want,
                        "{name}: case {case_i} rows {rows} cols {cols} group {group_len} n {n}"
                    );
                });
            }
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn worst_case_activations_do_not_overflow() {
        // Every product at its extreme: +-128 per element, the case bitnet.cpp's NEON path
        // overflowed; 768 columns with one group sums 768 of them.
        let mut tally = Tally::new("worst_case_activations_do_not_overflow");
        let (rows, cols) = (3, 768);
        let mut trits = vec![-1i8; rows * cols];
        trits[cols..2 * cols].fill(1);
        trits[2 * cols..].iter_mut().step_by(2).for_each(|t| *t = 1);
        let w = TernaryMatrix::from_trits(&trits, rows, cols, cols, vec![1.0; rows]).unwrap();
        let mut x = ActBatch::new(3, cols);
        x.q.fill(-128);
        x.scale.fill(1.0);
        x.update_block_sums();
        let want = ref_acc(&w, &x);
        assert_eq!(want[0], 128 * 768);
        for (name, _, _) in kernels(&mut tally) {
            tally.case(name, || assert_eq!(acc_of(name, &w, &x), want, "{name}"));
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn outputs_match_scalar() {
        let mut tally = Tally::new("outputs_match_scalar");
        let mut rng = XorShift::new(0xa65);
        let kernels = kernels(&mut tally);
        for (rows, cols, group_len, n) in [
            (7, 384, 384, 1),
            (5, 768, 256, 2),
            (9, 128, 128, 3),
            (4, 512, 256, 5),
            (3, 256, 256, 9),
        ] {
            let (w, x) = case(&mut rng, rows, cols, group_len, n);
            // A slice of rows in the middle, as one thread's chunk.
            let row0 = rows / 3;
            let nrows = rows - row0 - rows / 4;
            let mut want = vec![0.0f32; nrows * n];
            bitmatmul_scalar(&w, &x, row0, &mut want);
            for &(name, kernel, _) in &kernels {
                tally.case(name, || {
                    let mut got = vec![f32::NAN; nrows * n];
                    // SAFETY: `kernels()` returns only what this CPU supports.
                    unsafe { kernel(&w, &x, row0, &mut got) };
                    assert_same_bits(&got, &want, name);
                });
            }
        }
    }
    #[cfg_attr(test, test)]
    pub(crate) fn q8_0_block_sums_exact() {
        // Random blocks plus the extremes: weights of -128 (a file may hold them) against
        // activations of +-127.
        let mut tally = Tally::new("q8_0_block_sums_exact");
        let mut rng = XorShift::new(0xa66);
        let nb = 12;
        let mut row = vec![0u8; nb * Q8_0_BLOCK_BYTES];
        for (k, b) in row.chunks_exact_mut(Q8_0_BLOCK_BYTES).enumerate() {
            b[..2].copy_from_slice(&half::f16::from_f32(0.25).to_le_bytes());
            for q in b[2..].iter_mut() {
                *q = if k < 4 { 0x80 } else { rng.next_u64() as u8 };
            }
        }
        let xq: Vec<i8> = (0..nb * 32)
            .map(|i| match i / 32 {
                0 | 1 => 127,
                2 | 3 => -127,
                _ => (rng.next_u64() % 255) as i8,
            })
            .collect();
        let mut want = vec![0i32; nb];
        crate::kernels::head::q8_0_block_sums_ref(&row, &xq, &mut want);
        assert_eq!(want[0], -128 * 127 * 32);
        type BlockSums = unsafe fn(&[u8], &[i8], &mut [i32]);
        let all: [(&str, BlockSums, bool); 2] = [
            ("neon", q8_0_block_sums_neon, available("neon")),
            ("dotprod", q8_0_block_sums_dotprod, available("dotprod")),
        ];
        for (name, sums, ok) in all {
            if !ok {
                tally.absent(name, "not supported by this CPU");
                continue;
            }
            tally.case(name, || {
                let mut got = vec![0i32; nb];
                // SAFETY: availability checked just above.
                unsafe { sums(&row, &xq, &mut got) };
                assert_eq!(got, want, "{name}");
            });
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn f16_conversion_is_exact() {
        // Every finite half (normal, subnormal, zero) and the infinities convert exactly.
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            if h.is_nan() {
                continue;
            }
            let got = f16_to_f32(bits);
            assert_eq!(got.to_bits(), h.to_f32().to_bits(), "{bits:#06x}");
        }
        let halves: Vec<u8> = (0..8u16)
            .flat_map(|i| (0x3c00 + 0x123 * i).to_le_bytes())
            .collect();
        // SAFETY: `halves` holds 16 bytes and `lo`, `hi` 4 floats each: the loads and stores
        // stay inside them.
        let (lo, hi) = unsafe {
            let v = vld1q_u8(halves.as_ptr());
            let mut lo = [0.0f32; 4];
            let mut hi = [0.0f32; 4];
            vst1q_f32(lo.as_mut_ptr(), cvt_lo(v));
            vst1q_f32(hi.as_mut_ptr(), cvt_hi(v));
            (lo, hi)
        };
        for i in 0..8u16 {
            let want = half::f16::from_bits(0x3c00 + 0x123 * i).to_f32();
            assert_eq!(
                if i < 4 {
                    lo[i as usize]
                } else {
                    hi[i as usize - 4]
                },
                want
            );
        }
    }
}
