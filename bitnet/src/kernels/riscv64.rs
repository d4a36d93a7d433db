//! riscv64 BitLinear kernels: RVV 1.0, and Zbb (bit-sliced, for cores without V such as the
//! SiFive U74 of a VisionFive 2).
//!
//! Rust has no stable RVV intrinsics or `v` target feature, and a whole-crate `+v` build dies
//! with SIGILL on the many boards without V, so the vector code is self-contained `asm!` blocks
//! (`.option arch, +v`, vector registers as clobbers) run only when HWCAP reports V.
//!
//! The RVV kernel is VLEN-agnostic: it strip-mines each row with `vsetvli`, so wider vectors
//! simply take bigger strips. To make every strip a unit-stride load, the activations are first
//! split into four planes per token matching the four 2-bit fields of the canonical code bytes:
//! code byte `i` of a row (block `i / 32`, lane `i % 32`) meets element `128 (i / 32) + 32 j +
//! i % 32` of the token in field j, which plane j stores at index i. Products `trit * q` (at
//! most 128 in magnitude) are accumulated in i16 lanes by `vwmacc`, four per strip; one `asm!`
//! call covers at most [`CHUNK`] code bytes, so no lane sums more than 4 * (1536 / 32 + 2) = 200
//! products (<= 25600 < 32767) before `vwredsum` widens them.
//!
//! The RVV kernel's attention dot against a Q8_0 / Q4_0 KV cache (`kv_dot_*_rvv`) needs one
//! exact i32 per 32-element block, and blocks are 34 / 18 bytes apart (an f16 scale before
//! the codes), so it reduces block by block: widening products to i16 (`vwmul`, plus one
//! `vwmacc` for Q4_0's small codes), then `vwredsum` into i32, strip-mined like the rest.
//!
//! The Zbb kernel turns the ternary dot into population counts: a weight word becomes a mask
//! of its +1 and of its -1 elements, a token becomes eight bit planes (two's complement), and
//! `sum trit * q = sum_b +-2^b (cpop(pos & plane_b) - cpop(neg & plane_b))`, with -2^7 for the
//! sign plane: about one instruction per weight against six or seven for the scalar loop, but
//! only with `cpop` in hardware.

use alloc::vec;
use alloc::vec::Vec;
use core::arch::asm;

use super::scalar::epilogue_rows;
use super::{ActBatch, KernelDesc};
use crate::ternary::{CodeLayout, TernaryMatrix};

/// Code bytes per `asm!` call. `vsetvli` gives at least 32 e8/m2 lanes (VLEN >= 128) and at
/// most two short strips at the end, which bounds the i16 lane sums (see the module doc).
const CHUNK: usize = 1536;
/// Tokens sharing each decoded strip of weights.
const TILE: usize = 4;
/// Rows whose accumulators are computed before the float epilogue runs over them.
const ROWS_PER_PASS: usize = 8;

/// Tokens `q` (n_tokens, cols) as planes: (n_tokens, 4, cols / 4), plane j of token t holding
/// element `128 b + 32 j + g` at index `32 b + g`.
fn planes(q: &[i8], cols: usize) -> Vec<i8> {
    let stride = cols / 4;
    let mut p = vec![0i8; q.len()];
    for (dst, token) in p.chunks_exact_mut(cols).zip(q.chunks_exact(cols)) {
        for (b, block) in token.chunks_exact(128).enumerate() {
            for (j, field) in block.chunks_exact(32).enumerate() {
                dst[j * stride + 32 * b..j * stride + 32 * b + 32].copy_from_slice(field);
            }
        }
    }
    p
}

/// `sum trit * q` over `len` (1..=CHUNK) code bytes at `w` against one token whose plane 0
/// starts at `q` (planes `stride` bytes apart).
///
/// # Safety
/// The CPU must have V; `w..w + len` and the four planes `q + j * stride..q + j * stride + len`
/// (j in 0..4) must be readable, with `1 <= len <= CHUNK`.
#[inline(always)]
unsafe fn dot_rvv_1(w: *const u8, len: usize, q: *const i8, stride: usize) -> i32 {
    debug_assert!(len > 0 && len <= CHUNK);
    let sum: isize;
    // SAFETY: the caller guarantees V (the block enables it only inside `.option push/pop`)
    // and that the `vle8.v` loads, `w..w + len` and the four planes `q + j * stride..+ len`,
    // are readable; the asm only reads memory (`readonly`, `nostack`), and every register it
    // writes is declared: `w`, `len`, `q` as inouts, `vl`, `tmp`, `sum` as outputs, and
    // v1-v11, v16-v19 (v2, v4, v6, v8, v10 as e8/m2 pairs, v16 as an e16/m4 group) as clobbers.
    unsafe {
        asm!(
            ".option push",
            ".option arch, +v",
            "vsetvli {tmp}, zero, e16, m4, ta, ma",
            "vmv.v.i v16, 0",
            "2:",
            // Tail-undisturbed: a short last strip must leave the other accumulator lanes alone.
            "vsetvli {vl}, {len}, e8, m2, tu, ma",
            "vle8.v v2, ({w})",
            "add {w}, {w}, {vl}",
            "sub {len}, {len}, {vl}",
            "vsrl.vi v4, v2, 6",
            "vadd.vi v4, v4, -1",
            "vle8.v v6, ({q})",
            "vwmacc.vv v16, v4, v6",
            "add {tmp}, {q}, {stride}",
            "vsrl.vi v8, v2, 4",
            "vand.vi v8, v8, 3",
            "vadd.vi v8, v8, -1",
            "vle8.v v10, ({tmp})",
            "vwmacc.vv v16, v8, v10",
            "add {tmp}, {tmp}, {stride}",
            "vsrl.vi v4, v2, 2",
            "vand.vi v4, v4, 3",
            "vadd.vi v4, v4, -1",
            "vle8.v v6, ({tmp})",
            "vwmacc.vv v16, v4, v6",
            "add {tmp}, {tmp}, {stride}",
            "vand.vi v8, v2, 3",
            "vadd.vi v8, v8, -1",
            "vle8.v v10, ({tmp})",
            "vwmacc.vv v16, v8, v10",
            "add {q}, {q}, {vl}",
            "bnez {len}, 2b",
            "vsetvli {tmp}, zero, e32, m1, ta, ma",
            "vmv.s.x v1, zero",
            "vsetvli {tmp}, zero, e16, m4, ta, ma",
            "vwredsum.vs v1, v16, v1",
            "vsetvli {tmp}, zero, e32, m1, ta, ma",
            "vmv.x.s {sum}, v1",
            ".option pop",
            w = inout(reg) w => _,
            len = inout(reg) len => _,
            q = inout(reg) q => _,
            stride = in(reg) stride,
            vl = out(reg) _,
            tmp = out(reg) _,
            sum = lateout(reg) sum,
            out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _,
            out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            options(nostack, readonly)
        );
    }
    sum as i32
}

/// One token's fields of a decoded strip (trits in v8, v10, v12, v14) into accumulator `$acc`;
/// `$q` is the register of the token's plane 0.
macro_rules! rvv_token {
    ($q:literal, $acc:literal) => {
        concat!(
            "vle8.v v4, ({",
            $q,
            "})\n",
            "add {tmp}, {",
            $q,
            "}, {stride}\n",
            "vle8.v v6, ({tmp})\n",
            "add {tmp}, {tmp}, {stride}\n",
            "vwmacc.vv ",
            $acc,
            ", v8, v4\n",
            "vle8.v v4, ({tmp})\n",
            "add {tmp}, {tmp}, {stride}\n",
            "vwmacc.vv ",
            $acc,
            ", v10, v6\n",
            "vle8.v v6, ({tmp})\n",
            "vwmacc.vv ",
            $acc,
            ", v12, v4\n",
            "vwmacc.vv ",
            $acc,
            ", v14, v6\n",
            "add {",
            $q,
            "}, {",
            $q,
            "}, {vl}\n",
        )
    };
}

/// Like [`dot_rvv_1`] for four tokens (planes at `q[k]`), decoding each strip once.
///
/// # Safety
/// As [`dot_rvv_1`], for every token: the CPU must have V, `w..w + len` and, for each `q[k]`,
/// the four planes `q[k] + j * stride..q[k] + j * stride + len` must be readable, with
/// `1 <= len <= CHUNK`.
#[inline(always)]
unsafe fn dot_rvv_4(w: *const u8, len: usize, q: [*const i8; 4], stride: usize) -> [i32; 4] {
    debug_assert!(len > 0 && len <= CHUNK);
    let (s0, s1, s2, s3): (isize, isize, isize, isize);
    // SAFETY: the caller guarantees V (the block enables it only inside `.option push/pop`)
    // and that the `vle8.v` loads, `w..w + len` and each token's four planes
    // `q[k] + j * stride..+ len`, are readable; the asm only reads memory (`readonly`,
    // `nostack`), and every register it writes is declared: `w`, `len`, `q0`-`q3` as inouts,
    // `vl`, `tmp` as outputs, and v1-v31 as clobbers (v0 is not touched).
    unsafe {
        asm!(
            ".option push",
            ".option arch, +v",
            "vsetvli {tmp}, zero, e16, m4, ta, ma",
            "vmv.v.i v16, 0",
            "vmv.v.i v20, 0",
            "vmv.v.i v24, 0",
            "vmv.v.i v28, 0",
            "2:",
            "vsetvli {vl}, {len}, e8, m2, tu, ma",
            "vle8.v v2, ({w})",
            "add {w}, {w}, {vl}",
            "sub {len}, {len}, {vl}",
            "vsrl.vi v8, v2, 6",
            "vsrl.vi v10, v2, 4",
            "vsrl.vi v12, v2, 2",
            "vand.vi v10, v10, 3",
            "vand.vi v12, v12, 3",
            "vand.vi v14, v2, 3",
            "vadd.vi v8, v8, -1",
            "vadd.vi v10, v10, -1",
            "vadd.vi v12, v12, -1",
            "vadd.vi v14, v14, -1",
            rvv_token!("q0", "v16"),
            rvv_token!("q1", "v20"),
            rvv_token!("q2", "v24"),
            rvv_token!("q3", "v28"),
            "bnez {len}, 2b",
            "vsetvli {tmp}, zero, e32, m1, ta, ma",
            "vmv.s.x v1, zero",
            "vsetvli {tmp}, zero, e16, m4, ta, ma",
            "vwredsum.vs v2, v16, v1",
            "vwredsum.vs v3, v20, v1",
            "vwredsum.vs v4, v24, v1",
            "vwredsum.vs v5, v28, v1",
            "vsetvli {tmp}, zero, e32, m1, ta, ma",
            "vmv.x.s {q0}, v2",
            "vmv.x.s {q1}, v3",
            "vmv.x.s {q2}, v4",
            "vmv.x.s {q3}, v5",
            ".option pop",
            w = inout(reg) w => _,
            len = inout(reg) len => _,
            q0 = inout(reg) q[0] => s0,
            q1 = inout(reg) q[1] => s1,
            q2 = inout(reg) q[2] => s2,
            q3 = inout(reg) q[3] => s3,
            stride = in(reg) stride,
            vl = out(reg) _,
            tmp = out(reg) _,
            out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _,
            out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _, out("v12") _,
            out("v13") _, out("v14") _, out("v15") _, out("v16") _, out("v17") _, out("v18") _,
            out("v19") _, out("v20") _, out("v21") _, out("v22") _, out("v23") _, out("v24") _,
            out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _, out("v30") _,
            out("v31") _,
            options(nostack, readonly)
        );
    }
    [s0 as i32, s1 as i32, s2 as i32, s3 as i32]
}

/// Accumulators (rows, n_tokens, groups) of rows `row0..` against `n` tokens given as
/// [`planes`].
///
/// # Safety
/// The CPU must have V; `w` as checked by `check_bitmatmul_args` (`group_len` a nonzero
/// multiple of 128 dividing `cols`). Every pointer handed to the `asm!` helpers is derived from
/// bounds-checked slices: a row of `w.codes` (`cols / 4` bytes) and `planes` (asserted to be
/// `n * cols` bytes).
pub(crate) unsafe fn acc_rows_rvv(
    w: &TernaryMatrix,
    planes: &[i8],
    n: usize,
    row0: usize,
    acc: &mut [i32],
) {
    let cols = w.cols;
    assert!(row0 + acc.len() / (n * (cols / w.group_len)).max(1) <= w.rows);
    let (ng, group_bytes, stride) = (cols / w.group_len, w.group_len / 4, cols / 4);
    assert!(planes.len() == n * cols);
    for (i, acc) in acc.chunks_exact_mut(n * ng).enumerate() {
        let wrow = w.codes[(row0 + i) * stride..(row0 + i + 1) * stride].as_ptr();
        let mut t = 0;
        while t < n {
            let nt = if n - t >= TILE { TILE } else { 1 };
            // (nt,) plane 0 of each token of the tile
            let q: [*const i8; TILE] =
                core::array::from_fn(|k| planes[(t + k.min(nt - 1)) * cols..].as_ptr());
            for g in 0..ng {
                let mut sums = [0i32; TILE];
                let mut at = g * group_bytes;
                while at < (g + 1) * group_bytes {
                    let len = ((g + 1) * group_bytes - at).min(CHUNK);
                    // Both calls read code bytes `at..at + len` of the row and plane bytes
                    // `j * stride + at..j * stride + at + len` of a token, with
                    // `at + len <= ng * group_bytes <= stride`: inside the row's `stride`
                    // bytes and inside the token's `cols = 4 * stride` bytes of `planes`.
                    if nt == TILE {
                        // SAFETY: the caller guarantees V; the ranges above are in bounds for
                        // the four tokens `t..t + 4 <= n` of the tile, and 1 <= len <= CHUNK.
                        let part =
                            unsafe { dot_rvv_4(wrow.add(at), len, q.map(|p| p.add(at)), stride) };
                        for (s, p) in sums.iter_mut().zip(part) {
                            *s += p;
                        }
                    } else {
                        // SAFETY: the caller guarantees V; the ranges above are in bounds for
                        // token `t < n`, and 1 <= len <= CHUNK.
                        sums[0] += unsafe { dot_rvv_1(wrow.add(at), len, q[0].add(at), stride) };
                    }
                    at += len;
                }
                for (k, s) in sums[..nt].iter().enumerate() {
                    acc[(t + k) * ng + g] = *s;
                }
            }
            t += nt;
        }
    }
}

/// RVV 1.0, any VLEN. Same contract as [`Kernel::bitmatmul`](super::Kernel::bitmatmul).
///
/// # Safety
/// The CPU must have V (the `rvv` kernel is available).
#[inline(never)]
pub unsafe fn bitmatmul_rvv(w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
    super::check_bitmatmul_args(w, x, row0, out);
    let (n, ng) = (x.n_tokens, w.cols / w.group_len);
    if n == 0 {
        return;
    }
    let planes = planes(&x.q, x.cols);
    // (ROWS_PER_PASS, n_tokens, groups)
    let mut acc = vec![0i32; ROWS_PER_PASS * n * ng];
    for (pass, out) in out.chunks_mut(ROWS_PER_PASS * n).enumerate() {
        let r0 = row0 + pass * ROWS_PER_PASS;
        let acc = &mut acc[..out.len() * ng];
        // SAFETY: the caller guarantees V; `check_bitmatmul_args` checked `w` above.
        unsafe { acc_rows_rvv(w, &planes, n, r0, acc) };
        epilogue_rows(w, x, r0, acc, out);
    }
}

/// Exact integer accumulators of row `row` against token `t`, one per scale group, added into
/// `acc` (like [`vec_dot_ternary_i8_ref`](super::scalar::vec_dot_ternary_i8_ref)).
///
/// # Safety
/// The CPU must have V (the `rvv` kernel is available).
pub unsafe fn vec_dot_ternary_i8_rvv(
    w: &TernaryMatrix,
    row: usize,
    x: &ActBatch,
    t: usize,
    acc: &mut [i32],
) {
    super::check_bitmatmul_args(w, x, 0, &[]);
    assert!(row < w.rows && t < x.n_tokens);
    assert_eq!(acc.len(), w.cols / w.group_len);
    let mut a = vec![0i32; acc.len()];
    // SAFETY: the caller guarantees V; `check_bitmatmul_args` checked `w` above.
    unsafe { acc_rows_rvv(w, &planes(x.token(t), x.cols), 1, row, &mut a) };
    for (acc, a) in acc.iter_mut().zip(a) {
        *acc += a;
    }
}

/// Exact `sum w * x` of one Q8_0 block: the 32 codes at `w` times the 32 query bytes at `x`.
///
/// One reduction per block, as ggml's RVV `vec_dot_q8_0_q8_0` does: `vwmul` widens each
/// product to i16 (at most 128 * 128 = 16384, so no pair may share an i16 lane, which rules
/// out `vwmacc` here) and `vwredsum` sums the i16 products into an i32 seed, exactly. The
/// block is strip-mined with the `vl` that `vsetvli` returns: V implies VLEN >= 128
/// (Zvl128b), where e8/m2 holds all 32 bytes and the loop runs once; a narrower vector would
/// take more strips, each reduction adding to the previous strip's sum.
///
/// # Safety
/// The CPU must have V; `w..w + 32` and `x..x + 32` must be readable.
#[inline(always)]
unsafe fn q8_block_rvv(w: *const u8, x: *const i8) -> i32 {
    let sum: isize;
    // SAFETY: the caller guarantees V (the block enables it only inside `.option push/pop`)
    // and that the `vle8.v` loads, `w..w + 32` and `x..x + 32`, are readable (the strips
    // cover exactly 32 bytes of each); the asm only reads memory (`readonly`, `nostack`), and
    // every register it writes is declared: `w`, `x`, `len` as inouts, `vl`, `sum` as
    // outputs, and v1-v5, v8-v11 (v2, v4 as e8/m2 pairs, v8 as an e16/m4 group) as clobbers.
    unsafe {
        asm!(
            ".option push",
            ".option arch, +v",
            // The running sum, element 0 of v1 (the reductions read and write only that).
            "vsetivli zero, 1, e32, m1, ta, ma",
            "vmv.s.x v1, zero",
            "2:",
            // Tail-agnostic is safe: nothing reads lanes at or past vl.
            "vsetvli {vl}, {len}, e8, m2, ta, ma",
            "vle8.v v2, ({w})",
            "vle8.v v4, ({x})",
            "add {w}, {w}, {vl}",
            "add {x}, {x}, {vl}",
            "sub {len}, {len}, {vl}",
            "vwmul.vv v8, v2, v4",
            // e16/m4 has e8/m2's SEW/LMUL ratio, so `zero, zero` keeps vl.
            "vsetvli zero, zero, e16, m4, ta, ma",
            "vwredsum.vs v1, v8, v1",
            "bnez {len}, 2b",
            "vsetivli zero, 1, e32, m1, ta, ma",
            "vmv.x.s {sum}, v1",
            ".option pop",
            w = inout(reg) w => _,
            x = inout(reg) x => _,
            len = inout(reg) 32usize => _,
            vl = out(reg) _,
            sum = lateout(reg) sum,
            out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            options(nostack, readonly)
        );
    }
    sum as i32
}

/// Exact `sum code * x` of one Q4_0 block: codes `nibble - 8` of the 16 bytes at `qs` (low
/// nibbles are elements 0..16, high nibbles 16..32) times the 32 query bytes at `x`.
///
/// A strip of code bytes meets query bytes `i..` (low nibbles) and `16 + i..` (high
/// nibbles), so both halves are unit-stride loads and no nibble shuffling is needed. With
/// |code| <= 8 the two products of a lane (`vwmul`, then `vwmacc`) stay within 2 * 8 * 128 =
/// 2048 in i16 before `vwredsum` sums them into i32. Strip-mined like [`q8_block_rvv`]:
/// e8/m1 holds all 16 bytes at VLEN >= 128 (m1, not mf2: e8/mf2 would hold only 8 there).
///
/// # Safety
/// The CPU must have V; `qs..qs + 16` and `x..x + 32` must be readable.
#[inline(always)]
unsafe fn q4_block_rvv(qs: *const u8, x: *const i8) -> i32 {
    let sum: isize;
    // SAFETY: the caller guarantees V (the block enables it only inside `.option push/pop`)
    // and that the `vle8.v` loads, `qs..qs + 16` and `x..x + 32` (the strips cover the 16
    // bytes at `qs`, at `x` and at `x + 16`), are readable; the asm only reads memory
    // (`readonly`, `nostack`), and every register it writes is declared: `qs`, `x`, `len` as
    // inouts, `vl`, `tmp`, `sum` as outputs, and v1-v6, v8-v9 (an e16/m2 group) as clobbers.
    unsafe {
        asm!(
            ".option push",
            ".option arch, +v",
            "vsetivli zero, 1, e32, m1, ta, ma",
            "vmv.s.x v1, zero",
            "2:",
            "vsetvli {vl}, {len}, e8, m1, ta, ma",
            "vle8.v v2, ({qs})",
            "addi {tmp}, {x}, 16",
            "vle8.v v3, ({x})",
            "vle8.v v4, ({tmp})",
            "vand.vi v5, v2, 15",
            "vsrl.vi v6, v2, 4",
            "vadd.vi v5, v5, -8",
            "vadd.vi v6, v6, -8",
            "vwmul.vv v8, v5, v3",
            "vwmacc.vv v8, v6, v4",
            "add {qs}, {qs}, {vl}",
            "add {x}, {x}, {vl}",
            "sub {len}, {len}, {vl}",
            "vsetvli zero, zero, e16, m2, ta, ma",
            "vwredsum.vs v1, v8, v1",
            "bnez {len}, 2b",
            "vsetivli zero, 1, e32, m1, ta, ma",
            "vmv.x.s {sum}, v1",
            ".option pop",
            qs = inout(reg) qs => _,
            x = inout(reg) x => _,
            len = inout(reg) 16usize => _,
            vl = out(reg) _,
            tmp = out(reg) _,
            sum = lateout(reg) sum,
            out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _, out("v6") _,
            out("v8") _, out("v9") _,
            options(nostack, readonly)
        );
    }
    sum as i32
}

/// Generates `kv_dot_<type>_rvv` (a [`super::KvDotFn`] slot) around an exact block dot
/// product of that type: `isums[j * nb + b]` for key row j, block b. One `asm!` call per
/// block keeps each reduction's operands obvious; the loops stay in Rust, as on aarch64.
macro_rules! kv_dot {
    ($name:ident, $block:ident, $bytes:expr) => {
        /// Exact block sums of key rows against an int8 query (`kernels::kv`).
        ///
        /// # Safety
        /// The CPU must have V (the `rvv` kernel is available).
        #[inline(never)]
        pub unsafe fn $name(rows: &[u8], q: &[i8], isums: &mut [i32]) {
            let (nb, n) = super::kv::check_kv_dot(rows, q, isums, $bytes);
            for j in 0..n {
                for b in 0..nb {
                    // SAFETY: `check_kv_dot` asserted rows.len() == n * nb * $bytes and
                    // q.len() == nb * 32, so the codes after block (j, b)'s 2-byte scale and
                    // elements 32b..32b + 32 of the query are in bounds; the caller
                    // guarantees V.
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
    kv_dot_q8_0_rvv,
    q8_block_rvv,
    crate::quants::q8_0::BLOCK_BYTES
);
kv_dot!(
    kv_dot_q4_0_rvv,
    q4_block_rvv,
    crate::quants::q4_0::BLOCK_BYTES
);

/// Bits (8 r + c) <-> (8 c + r) of an 8 x 8 bit matrix (Hacker's Delight `transpose8`).
fn transpose8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00aa_00aa_00aa_00aa;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_cccc_0000_cccc;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_f0f0_f0f0;
    x ^ t ^ (t << 28)
}

/// Tokens `q` (n_tokens, cols) as bit planes: (n_tokens, cols / 128, 2, 8) words. Word c of a
/// block pairs code words 2c and 2c+1 the way [`block_masks`] does: bit `8 i + o` is element
/// `32 (3 - o / 2) + 8 (2c + o % 2) + i`, and plane b holds bit b of each such activation.
fn bit_planes(q: &[i8]) -> Vec<u64> {
    let mut out = vec![0u64; q.len() / 8];
    for (block, dst) in q.chunks_exact(128).zip(out.chunks_exact_mut(16)) {
        for (c, planes) in dst.chunks_exact_mut(8).enumerate() {
            for i in 0..8 {
                // Byte o: the activation at offset o of byte i; transposed, byte b: plane b.
                let mut x = 0u64;
                for o in 0..8 {
                    let e = 32 * (3 - o / 2) + 8 * (2 * c + o % 2) + i;
                    x |= u64::from(block[e] as u8) << (8 * o);
                }
                let t = transpose8(x);
                for (b, plane) in planes.iter_mut().enumerate() {
                    *plane |= ((t >> (8 * b)) & 0xff) << (8 * i);
                }
            }
        }
    }
    out
}

/// (+1 mask, -1 mask) of the two word pairs of a block (its 32 code bytes as 4 LE words).
#[inline(always)]
fn block_masks(w: &[u64]) -> ([u64; 2], [u64; 2]) {
    // The high bit of each 2-bit field: set for code 2 (+1); both bits clear: code 0 (-1).
    const HI: u64 = 0xaaaa_aaaa_aaaa_aaaa;
    let pos = |x: u64| x & HI;
    let neg = |x: u64| !(x | x << 1) & HI;
    // Two words' masks use only odd bits: pair them into one full word.
    (
        [pos(w[0]) >> 1 | pos(w[1]), pos(w[2]) >> 1 | pos(w[3])],
        [neg(w[0]) >> 1 | neg(w[1]), neg(w[2]) >> 1 | neg(w[3])],
    )
}

/// Accumulators of one row (code `words`) against `NT` tokens whose [`bit_planes`] start at
/// `planes` (`16 * blocks` words apart): `acc[t * ng + g]`.
///
/// # Safety
/// The CPU must have Zbb (the function is compiled with it, so `count_ones` is `cpop`). All
/// memory is reached through bounds-checked slice indexing.
#[inline]
#[target_feature(enable = "zbb")]
unsafe fn tile_zbb<const NT: usize>(
    words: &[u64],
    planes: &[u64],
    blocks_per_group: usize,
    acc: &mut [i32],
) {
    let nb = words.len() / 4;
    let ng = nb / blocks_per_group;
    for g in 0..ng {
        let mut s = [0i32; NT];
        for b in g * blocks_per_group..(g + 1) * blocks_per_group {
            let (pos, neg) = block_masks(&words[4 * b..4 * b + 4]);
            for (t, s) in s.iter_mut().enumerate() {
                let a = &planes[(t * nb + b) * 16..(t * nb + b + 1) * 16];
                for c in 0..2 {
                    for bit in 0..8 {
                        let x = a[8 * c + bit];
                        let d = (pos[c] & x).count_ones() as i32 - (neg[c] & x).count_ones() as i32;
                        // Plane 7 is the sign bit: weight -128.
                        *s += if bit == 7 { -(d << 7) } else { d << bit };
                    }
                }
            }
        }
        for (t, s) in s.iter().enumerate() {
            acc[t * ng + g] = *s;
        }
    }
}

/// One token's accumulator of one group: code `words` (4 per block) against its
/// [`bit_planes`] `a` (16 per block). Decode's case, so it keeps one signed population count
/// per plane in registers across the group's blocks and weights the planes once at the end:
/// seven instructions per plane word (load, two `and`, two `cpop`, `sub`, `add`) instead of
/// the tile's shift and signed add on top, and few enough live values that nothing spills.
///
/// # Safety
/// The CPU must have Zbb (the function is compiled with it, so `count_ones` is `cpop`). All
/// memory is reached through slices.
#[inline]
#[target_feature(enable = "zbb")]
unsafe fn group_zbb_1(words: &[u64], a: &[u64]) -> i32 {
    let mut d = [0i32; 8]; // per plane: cpop(+1 & x) - cpop(-1 & x)
    for (w, a) in words.chunks_exact(4).zip(a.chunks_exact(16)) {
        let (pos, neg) = block_masks(w);
        for c in 0..2 {
            for (bit, d) in d.iter_mut().enumerate() {
                let x = a[8 * c + bit];
                *d += (pos[c] & x).count_ones() as i32 - (neg[c] & x).count_ones() as i32;
            }
        }
    }
    // Plane 7 is the sign bit: weight -128.
    (0..7).map(|bit| d[bit] << bit).sum::<i32>() - (d[7] << 7)
}

/// Accumulators (rows, n_tokens, groups) of rows `row0..` against `n` tokens given as
/// [`bit_planes`].
///
/// # Safety
/// The CPU must have Zbb; `w` as checked by `check_bitmatmul_args` (in particular `cols` a
/// multiple of 128, so a row's `cols / 4` code bytes fill `cols / 32` words exactly).
#[target_feature(enable = "zbb")]
pub(crate) unsafe fn acc_rows_zbb(
    w: &TernaryMatrix,
    planes: &[u64],
    n: usize,
    row0: usize,
    acc: &mut [i32],
) {
    let (cols, bpg) = (w.cols, w.group_len / 128);
    let ng = cols / w.group_len;
    assert!(planes.len() == n * cols / 8);
    // (cols / 32,) one row's codes as little-endian words, copied when the rows are not
    // 8-byte aligned: RV64GC has no fast misaligned loads, and byte-wise assembly would cost
    // more than the dot itself. Rows are `cols / 4` bytes, a multiple of 32.
    let aligned = w.codes.as_ptr().align_offset(8) == 0;
    let mut copy = vec![0u64; if aligned { 0 } else { cols / 32 }];
    for (i, acc) in acc.chunks_exact_mut(n * ng).enumerate() {
        let row = &w.codes[(row0 + i) * cols / 4..(row0 + i + 1) * cols / 4];
        let words: &[u64] = if aligned {
            // SAFETY: `row` starts 8-byte aligned (the codes are, and a row is a multiple of
            // 32 bytes in) and holds cols / 4 bytes = cols / 32 words; any bits are a valid
            // u64, and riscv64 is little-endian, so the words are LE.
            unsafe { core::slice::from_raw_parts(row.as_ptr().cast::<u64>(), cols / 32) }
        } else {
            // SAFETY: `row` is a slice of cols / 4 bytes and `copy`, a separate allocation,
            // holds cols / 32 words = cols / 4 bytes; byte copies need no alignment.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    row.as_ptr(),
                    copy.as_mut_ptr().cast::<u8>(),
                    cols / 4,
                )
            };
            &copy
        };
        if n == 1 {
            let gw = w.group_len / 32; // words of a group's codes; 4 gw plane words
            for (g, a) in acc.iter_mut().enumerate() {
                // SAFETY: the caller guarantees Zbb; slices only.
                *a = unsafe {
                    group_zbb_1(
                        &words[g * gw..(g + 1) * gw],
                        &planes[4 * g * gw..4 * (g + 1) * gw],
                    )
                };
            }
            continue;
        }
        let mut t = 0;
        while t < n {
            let nt = (n - t).min(TILE);
            let (p, a) = (&planes[t * cols / 8..], &mut acc[t * ng..]);
            // SAFETY: the caller guarantees Zbb; `tile_zbb` reads and writes only through its
            // slice arguments, with bounds checks.
            unsafe {
                match nt {
                    1 => tile_zbb::<1>(words, p, bpg, a),
                    2 => tile_zbb::<2>(words, p, bpg, a),
                    3 => tile_zbb::<3>(words, p, bpg, a),
                    _ => tile_zbb::<TILE>(words, p, bpg, a),
                }
            }
            t += nt;
        }
    }
}

/// Zbb (`cpop`), for RV64GC cores without V. Same contract as
/// [`Kernel::bitmatmul`](super::Kernel::bitmatmul).
///
/// # Safety
/// The CPU must have Zbb (the `zbb` kernel is available).
#[inline(never)]
#[target_feature(enable = "zbb")]
pub unsafe fn bitmatmul_zbb(w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
    super::check_bitmatmul_args(w, x, row0, out);
    let (n, ng) = (x.n_tokens, w.cols / w.group_len);
    if n == 0 {
        return;
    }
    let planes = bit_planes(&x.q);
    // (ROWS_PER_PASS, n_tokens, groups)
    let mut acc = vec![0i32; ROWS_PER_PASS * n * ng];
    for (pass, out) in out.chunks_mut(ROWS_PER_PASS * n).enumerate() {
        let r0 = row0 + pass * ROWS_PER_PASS;
        let acc = &mut acc[..out.len() * ng];
        // SAFETY: the caller guarantees Zbb; `check_bitmatmul_args` checked `w` above.
        unsafe { acc_rows_zbb(w, &planes, n, r0, acc) };
        epilogue_rows(w, x, r0, acc, out);
    }
}

/// Exact integer accumulators of row `row` against token `t`, one per scale group, added into
/// `acc` (like [`vec_dot_ternary_i8_ref`](super::scalar::vec_dot_ternary_i8_ref)).
///
/// # Safety
/// The CPU must have Zbb (the `zbb` kernel is available).
#[target_feature(enable = "zbb")]
pub unsafe fn vec_dot_ternary_i8_zbb(
    w: &TernaryMatrix,
    row: usize,
    x: &ActBatch,
    t: usize,
    acc: &mut [i32],
) {
    super::check_bitmatmul_args(w, x, 0, &[]);
    assert!(row < w.rows && t < x.n_tokens);
    assert_eq!(acc.len(), w.cols / w.group_len);
    let mut a = vec![0i32; acc.len()];
    // SAFETY: the caller guarantees Zbb; `check_bitmatmul_args` checked `w` above.
    unsafe { acc_rows_zbb(w, &bit_planes(x.token(t)), 1, row, &mut a) };
    for (acc, a) in acc.iter_mut().zip(a) {
        *acc += a;
    }
}

/// `sum row[k] * x[k]` over `len` F16 weights at `w` and f32 activations at `x`.
///
/// F16 to f32 with integer ops, since RVV 1.0 boards need not have Zvfhmin: an F16
/// magnitude's bits shifted left by 13 are an f32 whose value is the F16 value times 2^-112,
/// exactly (subnormals too: RVV float arithmetic keeps subnormals), so one multiply by
/// 2^112 converts it. F16 exponent 31 (inf, NaN) comes out as f32 exponent 143 after the
/// multiply; or-ing 0x7f80_0000 makes it 255 with the payload kept. The sign is or-ed back
/// last. Strip-mined at e16/m2 -> e32/m4; the accumulator lanes past a short last strip
/// stay as they were (tail-undisturbed), and one ordered reduction ends the row.
///
/// # Safety
/// The CPU must have V; `w..w + len` (u16, 2-byte aligned) and `x..x + len` must be
/// readable.
#[inline(always)]
unsafe fn dot_f16_rvv(w: *const u16, x: *const f32, len: usize) -> f32 {
    let sum: f32;
    // SAFETY: the caller guarantees V (enabled only inside `.option push/pop`) and that the
    // `vle16.v` / `vle32.v` loads, `w..w + len` and `x..x + len`, are readable; the asm only
    // reads memory (`readonly`, `nostack`), and every register it writes is declared: `w`,
    // `x`, `len` as inouts, `vl`, `tmp`, `sum` as outputs, and v0-v3, v8-v27 as clobbers.
    unsafe {
        asm!(
            ".option push",
            ".option arch, +v",
            "vsetvli {tmp}, zero, e32, m4, ta, ma",
            "vmv.v.i v8, 0",
            "2:",
            "vsetvli {vl}, {len}, e16, m2, tu, mu",
            "vle16.v v2, ({w})",
            // e32/m4 has e16/m2's SEW/LMUL ratio: same vl.
            "vsetvli zero, zero, e32, m4, tu, mu",
            "vzext.vf2 v12, v2",
            "vle32.v v16, ({x})",
            "vsll.vi v20, v12, 16",
            "vand.vx v20, v20, {sign}",
            "vand.vx v12, v12, {mag}",
            "vsll.vi v12, v12, 13",
            "vmsgeu.vx v0, v12, {inf}",
            "vfmul.vf v24, v12, {scale}",
            "vor.vx v24, v24, {exp255}, v0.t",
            "vor.vv v24, v24, v20",
            "vfmacc.vv v8, v24, v16",
            "slli {tmp}, {vl}, 1",
            "add {w}, {w}, {tmp}",
            "slli {tmp}, {vl}, 2",
            "add {x}, {x}, {tmp}",
            "sub {len}, {len}, {vl}",
            "bnez {len}, 2b",
            "vsetvli {tmp}, zero, e32, m1, ta, ma",
            "vmv.s.x v1, zero",
            "vsetvli {tmp}, zero, e32, m4, ta, ma",
            "vfredosum.vs v1, v8, v1",
            "vfmv.f.s {sum}, v1",
            ".option pop",
            w = inout(reg) w => _,
            x = inout(reg) x => _,
            len = inout(reg) len => _,
            vl = out(reg) _,
            tmp = out(reg) _,
            sign = in(reg) 0x8000_0000u64,
            mag = in(reg) 0x7fffu64,
            inf = in(reg) 0x0f80_0000u64,
            exp255 = in(reg) 0x7f80_0000u64,
            scale = in(freg) f32::from_bits(0x7780_0000), // 2^112
            sum = lateout(freg) sum,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _, out("v12") _, out("v13") _,
            out("v14") _, out("v15") _, out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _, out("v24") _, out("v25") _,
            out("v26") _, out("v27") _,
            options(nostack, readonly)
        );
    }
    sum
}

/// F16 head rows against f32 activations: `out[r * n + t] = row r . x[t]`.
///
/// # Safety
/// The CPU must have V (the `rvv` kernel is available); the shapes are checked here.
#[inline(never)]
pub unsafe fn head_f16_rvv(rows: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
    super::head::head_f16_by_rows(rows, cols, x, out, |row, xt| {
        // SAFETY: the caller guarantees V; `row` holds `cols >= 1` F16 values, 2-byte aligned,
        // and `xt` `cols` floats (both checked by `head_f16_by_rows`).
        unsafe { dot_f16_rvv(row.as_ptr().cast(), xt.as_ptr(), cols) }
    });
}

/// The riscv64 kernels, worst to best: integer accumulators, then the reference's epilogue
/// (bit-exact); rvv has its own F16 head, zbb none.
pub static KERNELS: &[KernelDesc] = &[
    // Cores without V (SiFive U74: VisionFive 2, HiFive Unmatched).
    KernelDesc {
        name: "zbb",
        requires: &["zbb"],
        layout: CodeLayout::Canonical,
        bit_exact: true,
        prefill_rows: None,
        bitmatmul: bitmatmul_zbb,
        vec_dot: Some(vec_dot_ternary_i8_zbb),
        head_f16: None,
        head_q8_0: None,
        kv_dot_q8_0: None,
        kv_dot_q4_0: None,
    },
    // RVV 1.0, any VLEN.
    KernelDesc {
        name: "rvv",
        requires: &["v"],
        layout: CodeLayout::Canonical,
        bit_exact: true,
        prefill_rows: None,
        bitmatmul: bitmatmul_rvv,
        vec_dot: Some(vec_dot_ternary_i8_rvv),
        head_f16: Some(head_f16_rvv),
        head_q8_0: None,
        kv_dot_q8_0: Some(kv_dot_q8_0_rvv),
        kv_dot_q4_0: Some(kv_dot_q4_0_rvv),
    },
];

#[cfg(any(test, feature = "kernel-tests"))]
pub(crate) mod tests {
    use super::super::scalar::{bitmatmul_scalar, vec_dot_ternary_i8_ref};
    use super::super::tally::Tally;
    use super::super::tests::{case, ref_acc};
    use super::*;
    use crate::quants::test_rng::XorShift;

    fn rvv_acc(w: &TernaryMatrix, x: &ActBatch) -> Vec<i32> {
        let mut acc = vec![i32::MIN; w.rows * x.n_tokens * (w.cols / w.group_len)];
        // SAFETY: callers check that the `rvv` kernel is available.
        unsafe { acc_rows_rvv(w, &planes(&x.q, x.cols), x.n_tokens, 0, &mut acc) };
        acc
    }

    /// Counts for an RVV test, and whether V is missing (then the test checks nothing and
    /// its line says `rvv ran=0`).
    fn start_rvv(test: &str) -> (Tally, bool) {
        let mut tally = Tally::new(test);
        if super::super::Kernel::by_name("rvv").is_none() {
            tally.absent("rvv", "this CPU has no V (HWCAP bit 21)");
        }
        (tally, super::super::Kernel::by_name("rvv").is_none())
    }

    #[cfg_attr(test, test)]
    pub(crate) fn planes_hold_fields() {
        let mut x = ActBatch::new(2, 256);
        for (i, q) in x.q.iter_mut().enumerate() {
            *q = i as i8;
        }
        let p = planes(&x.q, 256);
        // Token 1, block 1, field 2, lane 5: element 128 + 64 + 5, plane 2 index 32 + 5.
        assert_eq!(p[256 + 2 * 64 + 32 + 5], x.q[256 + 128 + 64 + 5]);
        let mut sorted = p[..256].to_vec();
        sorted.sort();
        let mut want = x.q[..256].to_vec();
        want.sort();
        assert_eq!(sorted, want);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn accumulators_equal_reference() {
        let (mut tally, absent) = start_rvv("accumulators_equal_reference");
        if absent {
            return;
        }
        let mut rng = XorShift::new(0x5f5);
        for case_i in 0..24 {
            let rows = 1 + rng.next_u64() as usize % 7;
            let cols: usize = 128 * [1, 2, 3, 6][rng.next_u64() as usize % 4];
            let group_len = if cols.is_multiple_of(256) && rng.next_u64().is_multiple_of(2) {
                256
            } else {
                cols
            };
            let n = 1 + rng.next_u64() as usize % 9;
            let (w, x) = case(&mut rng, rows, cols, group_len, n);
            tally.case("rvv", || {
                assert!(
                    rvv_acc(&w, &x) == ref_acc(&w, &x),
                    "case {case_i}: rows {rows} cols {cols} group {group_len} n {n}"
                )
            });
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn long_rows_split_into_chunks() {
        // 12288 columns in one group: 3072 code bytes, two CHUNKs, every product at its
        // extreme. In one call a lane would sum 384 products of 128 at VLEN 128 and overflow.
        let (mut tally, absent) = start_rvv("long_rows_split_into_chunks");
        if absent {
            return;
        }
        let cols = 12288;
        let mut trits = vec![-1i8; 3 * cols];
        trits[cols..2 * cols].fill(1);
        let w = TernaryMatrix::from_trits(&trits, 3, cols, cols, vec![1.0; 3]).unwrap();
        for n in [1, 5] {
            let mut x = ActBatch::new(n, cols);
            x.q.fill(-128);
            x.scale.fill(1.0);
            x.update_block_sums();
            let want = ref_acc(&w, &x);
            assert_eq!(want[0], 128 * cols as i32);
            tally.case("rvv", || assert_eq!(rvv_acc(&w, &x), want, "{n} tokens"));
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn outputs_match_scalar() {
        let (mut tally, absent) = start_rvv("outputs_match_scalar");
        if absent {
            return;
        }
        let mut rng = XorShift::new(0x5f6);
        for (rows, cols, group_len, n) in [(5, 384, 384, 1), (4, 512, 256, 5), (7, 256, 256, 2)] {
            let (w, x) = case(&mut rng, rows, cols, group_len, n);
            // SAFETY: `start_rvv` checked V.
            tally.case("rvv", || unsafe {
                check_outputs(&w, &x, bitmatmul_rvv, vec_dot_ternary_i8_rvv)
            });
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn kv_dot_at_i8_extremes() {
        // `kernels::tests::kv_dot_*` keep the query in -127..=127, as the quantizer does; the
        // kernels' contract is any i8, so every lane at -128 * -128 = 16384 (the largest i16
        // product) and block sums far outside i16 must come out exact too.
        use super::super::kv::{kv_dot_q4_0_ref, kv_dot_q8_0_ref};
        use crate::quants::{q4_0, q8_0};
        let (mut tally, absent) = start_rvv("kv_dot_at_i8_extremes");
        if absent {
            return;
        }
        let (n, nb) = (3, 5);
        // (query byte, Q8_0 code byte, Q4_0 code byte): codes -128 / -8, then 127 / 7.
        for (x, c8, c4) in [
            (-128i8, 0x80u8, 0x00u8),
            (127, 0x80, 0x00),
            (-128, 0x7f, 0xff),
        ] {
            let q = vec![x; 32 * nb];
            // The scale bytes hold the code too: the integer sums must not read them.
            let r8 = vec![c8; n * nb * q8_0::BLOCK_BYTES];
            let r4 = vec![c4; n * nb * q4_0::BLOCK_BYTES];
            let (mut want8, mut want4) = (vec![0i32; n * nb], vec![0i32; n * nb]);
            kv_dot_q8_0_ref(&r8, &q, &mut want8);
            kv_dot_q4_0_ref(&r4, &q, &mut want4);
            if x == -128 && c8 == 0x80 {
                assert_eq!((want8[0], want4[0]), (32 * 16384, 32 * 1024));
            }
            tally.case("rvv", || {
                let mut got = vec![i32::MAX; n * nb];
                // SAFETY: `start_rvv` checked V.
                unsafe { kv_dot_q8_0_rvv(&r8, &q, &mut got) };
                assert_eq!(got, want8, "Q8_0, query {x}, code byte {c8:#x}");
                // SAFETY: as above.
                unsafe { kv_dot_q4_0_rvv(&r4, &q, &mut got) };
                assert_eq!(got, want4, "Q4_0, query {x}, code byte {c4:#x}");
            });
        }
    }

    type Entry = unsafe fn(&TernaryMatrix, &ActBatch, usize, &mut [f32]);
    type VecDot = unsafe fn(&TernaryMatrix, usize, &ActBatch, usize, &mut [i32]);

    /// One output case: rows 1.. through `bitmatmul` equal the scalar kernel's bit for bit (the
    /// kernels finish with the reference's own epilogue), and `vec_dot` of the last row and
    /// token equals the reference accumulators.
    ///
    /// # Safety
    /// The CPU must support the kernel.
    unsafe fn check_outputs(w: &TernaryMatrix, x: &ActBatch, bitmatmul: Entry, vec_dot: VecDot) {
        let (rows, n, ng) = (w.rows, x.n_tokens, w.cols / w.group_len);
        let row0 = 1;
        let mut want = vec![0.0f32; (rows - row0) * n];
        bitmatmul_scalar(w, x, row0, &mut want);
        let mut got = vec![f32::NAN; (rows - row0) * n];
        // SAFETY: the caller guarantees the kernel's CPU features; `bitmatmul` checks the shapes.
        unsafe { bitmatmul(w, x, row0, &mut got) };
        for (a, b) in got.iter().zip(&want) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} vs scalar {b}");
        }
        let (r, t) = (rows - 1, n - 1);
        let mut one = vec![0i32; ng];
        // SAFETY: the caller guarantees the kernel's CPU features; `vec_dot` checks the shapes.
        unsafe { vec_dot(w, r, x, t, &mut one) };
        let mut want = vec![0i32; ng];
        vec_dot_ternary_i8_ref(w, r, x.token(t), &mut want);
        assert_eq!(one, want);
    }
    #[cfg_attr(test, test)]
    pub(crate) fn transpose8_transposes() {
        let mut rng = XorShift::new(0x7a);
        for _ in 0..100 {
            let x = rng.next_u64();
            let t = transpose8(x);
            for r in 0..8 {
                for c in 0..8 {
                    assert_eq!(t >> (8 * c + r) & 1, x >> (8 * r + c) & 1);
                }
            }
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn bit_planes_line_up_with_block_masks() {
        // A block whose element e has trit +1 only at e0 (else 0) must select exactly
        // activation e0 from each plane: the mask and plane layouts agree everywhere.
        let mut rng = XorShift::new(0x7b);
        let q: Vec<i8> = (0..256).map(|_| rng.next_u64() as i8).collect();
        let planes = bit_planes(&q);
        for (e0, &qe) in q.iter().enumerate() {
            let (block, k) = (e0 / 128, e0 % 128);
            let mut codes = [0x55u8; 32];
            codes[k % 32] = codes[k % 32] & !(3 << (6 - 2 * (k / 32))) | 2 << (6 - 2 * (k / 32));
            let words: Vec<u64> = codes
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let (pos, neg) = block_masks(&words);
            assert_eq!(neg, [0, 0]);
            assert_eq!(pos[0].count_ones() + pos[1].count_ones(), 1);
            let a = &planes[block * 16..block * 16 + 16];
            let mut v = 0i32;
            for c in 0..2 {
                for bit in 0..8 {
                    let d = (pos[c] & a[8 * c + bit]).count_ones() as i32;
                    v += if bit == 7 { -(d << 7) } else { d << bit };
                }
            }
            assert_eq!(v, i32::from(qe), "element {e0}");
        }
    }

    fn zbb_acc(w: &TernaryMatrix, x: &ActBatch) -> Vec<i32> {
        let mut acc = vec![i32::MIN; w.rows * x.n_tokens * (w.cols / w.group_len)];
        // SAFETY: callers check that the `zbb` kernel is available.
        unsafe { acc_rows_zbb(w, &bit_planes(&x.q), x.n_tokens, 0, &mut acc) };
        acc
    }

    /// Counts for a Zbb test, and whether Zbb is missing: then the test checks nothing, its
    /// line says `zbb ran=0 passed=0` and the harness fails a profile that lists zbb.
    fn start_zbb(test: &str) -> (Tally, bool) {
        let mut tally = Tally::new(test);
        if super::super::Kernel::by_name("zbb").is_none() {
            tally.absent(
                "zbb",
                "Zbb neither built in (+zbb) nor reported by riscv_hwprobe",
            );
        }
        (tally, super::super::Kernel::by_name("zbb").is_none())
    }

    #[cfg_attr(test, test)]
    pub(crate) fn zbb_accumulators_equal_reference() {
        let (mut tally, absent) = start_zbb("zbb_accumulators_equal_reference");
        if absent {
            return;
        }
        let mut rng = XorShift::new(0x7c);
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
            tally.case("zbb", || {
                assert!(
                    zbb_acc(&w, &x) == ref_acc(&w, &x),
                    "case {case_i}: rows {rows} cols {cols} group {group_len} n {n}"
                )
            });
        }
        // Every product at its extreme.
        let cols = 768;
        let mut trits = vec![-1i8; 2 * cols];
        trits[cols..].fill(1);
        let w = TernaryMatrix::from_trits(&trits, 2, cols, cols, vec![1.0; 2]).unwrap();
        for fill in [-128i8, 127] {
            let mut x = ActBatch::new(5, cols);
            x.q.fill(fill);
            x.scale.fill(1.0);
            x.update_block_sums();
            tally.case("zbb", || {
                assert_eq!(zbb_acc(&w, &x), ref_acc(&w, &x), "{fill}")
            });
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn zbb_outputs_match_scalar() {
        let (mut tally, absent) = start_zbb("zbb_outputs_match_scalar");
        if absent {
            return;
        }
        let mut rng = XorShift::new(0x7d);
        for (rows, cols, group_len, n) in [(5, 384, 384, 1), (4, 512, 256, 5), (7, 256, 256, 2)] {
            let (w, x) = case(&mut rng, rows, cols, group_len, n);
            // SAFETY: `start_zbb` checked Zbb.
            tally.case("zbb", || unsafe {
                check_outputs(&w, &x, bitmatmul_zbb, vec_dot_ternary_i8_zbb)
            });
        }
    }
}
