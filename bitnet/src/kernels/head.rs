//! The output head (the tied embedding, vocab x dim): the largest read of a decode step.
//! F16 rows against f32 activations, or Q8_0 rows against int8 activations quantized per
//! 32-element block (`--head q8_0`). The `_ref` functions are the specification.

use alloc::vec;
use alloc::vec::Vec;

use crate::quants::dequantize_row_f16;
use crate::quants::f16::to_f32 as f16_to_f32;

/// Bytes of a Q8_0 block: f16 scale, then 32 signed bytes (owned by `quants::q8_0`).
pub use crate::quants::q8_0::BLOCK_BYTES as Q8_0_BLOCK_BYTES;

/// Activations of a batch of tokens for a Q8_0 head: per 32-element block, `x ~= q * d`.
#[derive(Clone, Debug, Default)]
pub struct HeadActs {
    pub n_tokens: usize,
    pub cols: usize,
    /// (n_tokens, cols) int8, each in -127..=127.
    pub q: Vec<i8>,
    /// (n_tokens, cols / 32) block scales.
    pub d: Vec<f32>,
}

impl HeadActs {
    /// Quantizes `x` (n_tokens, cols); `cols` must be a multiple of 32.
    pub fn quantize(&mut self, x: &[f32], cols: usize) {
        assert!(
            cols.is_multiple_of(32) && x.len().is_multiple_of(cols),
            "Q8 head: {cols} cols"
        );
        self.n_tokens = x.len() / cols;
        self.cols = cols;
        self.q.resize(x.len(), 0);
        self.d.resize(x.len() / 32, 0.0);
        quantize_row_q8_act_ref(x, &mut self.q, &mut self.d);
    }
}

/// Like ggml's `quantize_row_q8_0_ref` (`d = amax / 127`, `q = roundf(x / d)`), but `d`
/// stays f32: the activations are never stored, so there is no reason to round the scale.
pub fn quantize_row_q8_act_ref(x: &[f32], q: &mut [i8], d: &mut [f32]) {
    for ((xb, qb), db) in x.chunks_exact(32).zip(q.chunks_exact_mut(32)).zip(d) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        *db = amax / 127.0;
        let id = if *db != 0.0 { 1.0 / *db } else { 0.0 };
        for (qi, &v) in qb.iter_mut().zip(xb) {
            *qi = libm::roundf(v * id).clamp(-127.0, 127.0) as i8;
        }
    }
}

/// `row . x` for one F16 row: dequantize, then a sequential f32 dot (the forward pass's
/// original head, which the golden logits were computed with).
pub fn vec_dot_f16_f32_ref(row: &[u8], x: &[f32]) -> f32 {
    let mut w = vec![0.0f32; x.len()];
    let _ = dequantize_row_f16(row, &mut w);
    crate::ops::dot(&w, x)
}

/// Exact integer sum of each Q8_0 block of `row` times the int8 activations.
pub fn q8_0_block_sums_ref(row: &[u8], q: &[i8], isums: &mut [i32]) {
    for ((b, xb), s) in row
        .chunks_exact(Q8_0_BLOCK_BYTES)
        .zip(q.chunks_exact(32))
        .zip(isums)
    {
        *s = b[2..]
            .iter()
            .zip(xb)
            .map(|(&w, &x)| i32::from(w as i8) * i32::from(x))
            .sum();
    }
}

/// `row . x` for one Q8_0 row: `sum_k isum_k * (d_w,k * d_x,k)`.
pub fn vec_dot_q8_0_i8_ref(row: &[u8], q: &[i8], d: &[f32]) -> f32 {
    let mut y = 0.0f32;
    for ((b, xb), &dx) in row
        .chunks_exact(Q8_0_BLOCK_BYTES)
        .zip(q.chunks_exact(32))
        .zip(d)
    {
        let isum: i32 = b[2..]
            .iter()
            .zip(xb)
            .map(|(&w, &x)| i32::from(w as i8) * i32::from(x))
            .sum();
        let dw = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        y += isum as f32 * (dw * dx);
    }
    y
}

/// Checks the operands of an F16 head kernel; returns (n_tokens, rows).
pub(crate) fn check_head_f16(rows: &[u8], cols: usize, x: &[f32], out: &[f32]) -> (usize, usize) {
    assert!(
        cols > 0 && rows.len().is_multiple_of(2 * cols),
        "F16 head rows"
    );
    assert!(x.len().is_multiple_of(cols), "F16 head activations");
    let (n, n_rows) = (x.len() / cols, rows.len() / (2 * cols));
    assert_eq!(out.len(), n * n_rows, "F16 head output");
    (n, n_rows)
}

/// Checks the operands of a Q8_0 head kernel; returns (n_tokens, rows, bytes per row).
pub(crate) fn check_head_q8_0(rows: &[u8], a: &HeadActs, out: &[f32]) -> (usize, usize, usize) {
    assert!(a.cols > 0 && a.cols.is_multiple_of(32), "Q8_0 head cols");
    assert!(a.q.len() == a.n_tokens * a.cols && a.d.len() == a.n_tokens * a.cols / 32);
    let row_bytes = a.cols / 32 * Q8_0_BLOCK_BYTES;
    assert!(rows.len().is_multiple_of(row_bytes), "Q8_0 head rows");
    let n_rows = rows.len() / row_bytes;
    assert_eq!(out.len(), n_rows * a.n_tokens, "Q8_0 head output");
    (a.n_tokens, n_rows, row_bytes)
}

/// An F16 head that goes row by row and token by token: `out[r * n + t] = dot(row r, x[t])`,
/// for kernels whose `dot` takes one whole row (armv7 NEON, RVV). Checks the shapes and that
/// the rows are 2-byte aligned (GGUF aligns tensor data to 32 bytes; a row is 2 * cols
/// bytes), so `dot` may read a row as u16.
#[cfg(any(armv7_neon, target_arch = "riscv64"))]
pub(crate) fn head_f16_by_rows(
    rows: &[u8],
    cols: usize,
    x: &[f32],
    out: &mut [f32],
    dot: impl Fn(&[u8], &[f32]) -> f32,
) {
    let (n, _) = check_head_f16(rows, cols, x, out);
    assert!(
        rows.as_ptr().align_offset(2) == 0,
        "F16 head rows must be 2-byte aligned"
    );
    for (row, o) in rows.chunks_exact(2 * cols).zip(out.chunks_exact_mut(n)) {
        for (t, y) in o.iter_mut().enumerate() {
            *y = dot(row, &x[t * cols..(t + 1) * cols]);
        }
    }
}

/// The elements `from..cols` of an F16 row dot token `t` of `x`: the SIMD kernels' tail.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn dot_f16_tail(row: &[u8], x: &[f32], t: usize, cols: usize, from: usize) -> f32 {
    let xt = &x[t * cols..(t + 1) * cols];
    (from..cols)
        .map(|k| half::f16::from_le_bytes([row[2 * k], row[2 * k + 1]]).to_f32() * xt[k])
        .sum()
}

/// Portable head kernels, written rows outermost: `out[r * n_tokens + t]`.
///
/// Each row's dot runs in the reference's order (a product, then an add, element by
/// element, from -0.0 as `f32`'s `Sum` does), so it is [`vec_dot_f16_f32_ref`] bit for
/// bit. Four rows go at once: each activation is loaded once for four weights, and a core
/// has four independent add chains instead of one; the weights convert as they are read,
/// not through a row buffer. Rows 2-byte aligned (GGUF aligns tensor data to 32 bytes) are
/// read as `u16`: byte by byte, RISC-V needs five instructions per weight to load it.
pub fn head_f16_scalar(rows: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
    let (n, _) = check_head_f16(rows, cols, x, out);
    // SAFETY: every bit pattern is a valid u16.
    match unsafe { rows.align_to::<u16>() } {
        (&[], words, &[]) => head_f16_rows(words, cols, x, out, n, |h| f16_to_f32(u16::from_le(h))),
        _ => {
            let (pairs, _) = rows.as_chunks::<2>();
            head_f16_rows(pairs, cols, x, out, n, |b| {
                f16_to_f32(u16::from_le_bytes(b))
            });
        }
    }
}

/// [`head_f16_scalar`] on rows of `cols` F16 weights of type `W`, each read by `f32_of`.
#[inline(always)]
fn head_f16_rows<W: Copy>(
    w: &[W],
    cols: usize,
    x: &[f32],
    out: &mut [f32],
    n: usize,
    f32_of: impl Fn(W) -> f32,
) {
    let mut quads = w.chunks_exact(4 * cols);
    let mut outs = out.chunks_exact_mut(4 * n);
    for (quad, o) in (&mut quads).zip(&mut outs) {
        let (w0, rest) = quad.split_at(cols);
        let (w1, rest) = rest.split_at(cols);
        let (w2, w3) = rest.split_at(cols);
        for (t, xt) in x.chunks_exact(cols).enumerate() {
            let mut acc = [-0.0f32; 4];
            for ((((&a, &b), &c), &d), &xk) in w0.iter().zip(w1).zip(w2).zip(w3).zip(xt) {
                acc[0] += f32_of(a) * xk;
                acc[1] += f32_of(b) * xk;
                acc[2] += f32_of(c) * xk;
                acc[3] += f32_of(d) * xk;
            }
            for (i, y) in acc.into_iter().enumerate() {
                o[i * n + t] = y;
            }
        }
    }
    for (row, o) in quads
        .remainder()
        .chunks_exact(cols)
        .zip(outs.into_remainder().chunks_exact_mut(n))
    {
        for (y, xt) in o.iter_mut().zip(x.chunks_exact(cols)) {
            *y = row
                .iter()
                .zip(xt)
                .fold(-0.0f32, |acc, (&h, &xk)| acc + f32_of(h) * xk);
        }
    }
}

pub fn head_q8_0_scalar(rows: &[u8], a: &HeadActs, out: &mut [f32]) {
    let (n, _, row_bytes) = check_head_q8_0(rows, a, out);
    let nb = a.cols / 32;
    for (row, o) in rows.chunks_exact(row_bytes).zip(out.chunks_exact_mut(n)) {
        for (t, y) in o.iter_mut().enumerate() {
            let q = &a.q[t * a.cols..(t + 1) * a.cols];
            *y = vec_dot_q8_0_i8_ref(row, q, &a.d[t * nb..(t + 1) * nb]);
        }
    }
}
