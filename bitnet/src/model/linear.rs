//! BitLinear over a batch of tokens: every matrix of a layer that shares an input computed
//! in one parallel section, so each weight read serves every token.

use alloc::vec::Vec;

use super::BitLinear;
use crate::kernels::{ActBatch, Kernel};
use crate::ops::gcd;
use crate::parallel::Exec;
use crate::ternary::TernaryMatrix;

/// What computes `W x` for a ternary W: a kernel, or (in tests) an f64 reference.
pub(crate) trait Matmul: Sync {
    /// Same contract as [`Kernel::bitmatmul`].
    fn bitmatmul(&self, w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]);
}

impl Matmul for Kernel {
    fn bitmatmul(&self, w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
        Kernel::bitmatmul(*self, w, x, row0, out)
    }
}

/// Chunks per thread of a parallel section. Fewer, longer streams decode faster (2B4T shape,
/// 2 threads: ternary layers 19.8 GB/s with 16, 21.0 with 4, 21.3 with 1); four keep some
/// balance when the OS preempts a thread.
const CHUNKS_PER_THREAD: usize = 4;

/// Rows per chunk when the matrices `rows` are computed in one parallel section: a few
/// chunks per thread, so a thread the OS preempts holds up at most a small one; a divisor of
/// every row count, so no chunk straddles two matrices; a multiple of 16 where possible, so
/// chunks split no row group of the Rows16 layout.
fn chunk_rows(exec: &dyn Exec, rows: &[usize]) -> usize {
    let g = rows.iter().fold(0, |g, &r| gcd(g, r));
    if exec.threads() == 1 {
        return g.max(1);
    }
    let total: usize = rows.iter().sum();
    let target = total.div_ceil(exec.threads() * CHUNKS_PER_THREAD).max(1);
    let divisors = || (1..=g.min(target)).rev().filter(move |d| g % d == 0);
    divisors()
        .find(|d| d % 16 == 0)
        .or_else(|| divisors().next())
        .unwrap_or(1)
}

/// `outs[i]` (n, rows_i) = `ls[i]` applied to every token of `x`, all matrices in one
/// parallel section (q, k, v share their input; so do gate and up).
pub(super) fn linear(
    mm: &dyn Matmul,
    exec: &dyn Exec,
    ls: &[&BitLinear],
    x: &ActBatch,
    tmp: &mut Vec<f32>,
    outs: &mut [&mut Vec<f32>],
) {
    let n = x.n_tokens;
    let rows: Vec<usize> = ls.iter().map(|l| l.w.rows).collect();
    let total: usize = rows.iter().sum();
    let chunk = chunk_rows(exec, &rows);
    tmp.resize(total * n, 0.0);
    exec.for_each_chunk(&mut tmp[..total * n], chunk * n, &|i, out| {
        let (mut m, mut r) = (0, i * chunk);
        while r >= rows[m] {
            r -= rows[m];
            m += 1;
        }
        mm.bitmatmul(&ls[m].w, x, r, out);
        if n == 1 {
            // (rows, 1) is already (1, rows): scale here, while the rows are in cache.
            out.iter_mut().for_each(|y| *y *= ls[m].out_scale);
        }
    });
    if n == 1 {
        let mut off = 0;
        for (out, &rows) in outs.iter_mut().zip(&rows) {
            out[..rows].copy_from_slice(&tmp[off..off + rows]);
            off += rows;
        }
        return;
    }
    // (rows, n) -> (n, rows), 16 tokens per task: a task reads whole cache lines of `tmp`
    // (16 tokens of a row) instead of one float per line; one token per task took an eighth
    // of a 128-token prefill.
    const TOKENS: usize = 16;
    let mut off = 0;
    for ((l, out), &rows) in ls.iter().zip(outs.iter_mut()).zip(&rows) {
        let tmp = &tmp[off * n..(off + rows) * n];
        exec.for_each_chunk(&mut out[..n * rows], TOKENS * rows, &|i, o| {
            let (t0, tn) = (i * TOKENS, o.len() / rows);
            for r in 0..rows {
                for (t, &y) in tmp[r * n + t0..][..tn].iter().enumerate() {
                    o[t * rows + r] = y * l.out_scale;
                }
            }
        });
        off += rows;
    }
}
