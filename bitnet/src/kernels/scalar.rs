//! The reference BitLinear: plain loops, the specification the SIMD kernels must equal.

use super::ActBatch;
use crate::ternary::TernaryMatrix;

/// Exact integer accumulators of one weight row against one token, one per scale group:
/// `acc[g] = sum over the group of trit * q`.
pub fn vec_dot_ternary_i8_ref(w: &TernaryMatrix, row: usize, q: &[i8], acc: &mut [i32]) {
    let codes = &w.codes[row * w.cols / 4..(row + 1) * w.cols / 4];
    let blocks_per_group = w.group_len / 128;
    for (b, block) in codes.chunks_exact(32).enumerate() {
        let x = &q[b * 128..(b + 1) * 128];
        let mut sum = 0i32;
        for (g, &byte) in block.iter().enumerate() {
            for j in 0..4 {
                let code = (byte >> (6 - 2 * j)) & 3;
                sum += (code as i32 - 1) * x[32 * j + g] as i32;
            }
        }
        acc[b / blocks_per_group] += sum;
    }
}

/// [`vec_dot_ternary_i8_ref`] against token `t` of a batch: the scalar kernel's
/// [`VecDotFn`](super::VecDotFn) entry.
pub fn vec_dot_ternary_i8_scalar(
    w: &TernaryMatrix,
    row: usize,
    x: &ActBatch,
    t: usize,
    acc: &mut [i32],
) {
    vec_dot_ternary_i8_ref(w, row, x.token(t), acc)
}

/// Float epilogue: `y = sum_g acc[g] * scale[g] / s`.
#[inline]
pub fn epilogue(acc: &[i32], scales: &[f32], s: f32) -> f32 {
    let mut y = 0.0f32;
    for (&a, &d) in acc.iter().zip(scales) {
        y += a as f32 * d;
    }
    y / s
}

/// `out` rows `row0..` from their integer accumulators (rows, n_tokens, groups), through
/// [`epilogue`]: SIMD kernels finish with this so their outputs equal the reference's bit
/// for bit.
#[cfg(any(target_arch = "aarch64", armv7_neon, target_arch = "riscv64"))]
pub(super) fn epilogue_rows(
    w: &TernaryMatrix,
    x: &ActBatch,
    row0: usize,
    acc: &[i32],
    out: &mut [f32],
) {
    let (n, ng) = (x.n_tokens, w.cols / w.group_len);
    for (i, (out_row, acc_row)) in out
        .chunks_exact_mut(n)
        .zip(acc.chunks_exact(n * ng))
        .enumerate()
    {
        let scales = &w.scales[(row0 + i) * ng..(row0 + i + 1) * ng];
        for (t, (y, a)) in out_row.iter_mut().zip(acc_row.chunks_exact(ng)).enumerate() {
            *y = epilogue(a, scales, x.scale[t]);
        }
    }
}

#[inline(never)]
pub fn bitmatmul_scalar(w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
    let n_groups = w.cols / w.group_len;
    let mut acc = alloc::vec![0i32; n_groups];
    for (i, out_row) in out.chunks_exact_mut(x.n_tokens).enumerate() {
        let r = row0 + i;
        let scales = &w.scales[r * n_groups..(r + 1) * n_groups];
        for (t, y) in out_row.iter_mut().enumerate() {
            acc.fill(0);
            vec_dot_ternary_i8_ref(w, r, x.token(t), &mut acc);
            *y = epilogue(&acc, scales, x.scale[t]);
        }
    }
}
