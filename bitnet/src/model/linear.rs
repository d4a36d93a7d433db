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

    /// Rows per call in a prefill ([`Kernel::prefill_rows`]); `None`: whole matrices.
    fn prefill_rows(&self) -> Option<usize> {
        None
    }
}

impl Matmul for Kernel {
    fn bitmatmul(&self, w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
        Kernel::bitmatmul(*self, w, x, row0, out)
    }

    fn prefill_rows(&self) -> Option<usize> {
        Kernel::prefill_rows(*self)
    }
}

/// Chunks per thread of a parallel section (at least: a chunk never straddles two matrices).
/// Each chunk is a kernel call that starts its streams from cold, and decode's sections are
/// short (40-140 us at 2 threads): with one chunk per thread instead of four, tg32 on 2
/// threads of an AMD Zen 4 host was 1.01-1.21x faster (median 1.13x) in 8 interleaved
/// `bench` pairs. Balance under preemption is no reason for more: a thread the OS takes away
/// for a millisecond holds a 100 us section up whatever the chunking.
const CHUNKS_PER_THREAD: usize = 1;

/// Rows per chunk when the matrices `rows` are computed in one parallel section: about
/// [`CHUNKS_PER_THREAD`] chunks per thread; a divisor of every row count, so no chunk
/// straddles two matrices; a multiple of 16 where possible, so chunks split no row group of
/// the Rows16 layout.
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
    let mut chunk = chunk_rows(exec, &rows);
    // A prefill's chunks turn their own (rows, n) output into the (n, rows) layout while it
    // is in cache: 64 rows of 128 tokens are 32 KiB, where a whole matrix's output (3.5 MB
    // for 6912 rows) was turned afterwards, out of cache (ternary layers 140-150 -> 163-173
    // G MAC/s on a Zen 4 core). Only kernels that prepare nothing per call take small chunks.
    if let Some(p) = mm.prefill_rows().filter(|_| n > 1) {
        if chunk > p && chunk.is_multiple_of(p) {
            chunk = p;
        }
    }
    // Each output (n, rows_i), written by the tasks at disjoint (token, row) positions.
    let dst: Vec<Dst> = outs
        .iter_mut()
        .zip(&rows)
        .map(|(o, &r)| Dst(o[..n * r].as_mut_ptr(), n * r))
        .collect();
    // A decode's (rows, 1) output is already (1, rows): the kernels write it in place. Through
    // a buffer, its copy into place after the section read the other thread's half from that
    // core's cache, ~12 us per FFN section at 2 threads.
    if n > 1 {
        tmp.resize(total * n, 0.0);
    }
    let kernel_out = Dst(tmp.as_mut_ptr(), if n > 1 { total * n } else { 0 });
    exec.run(total.div_ceil(chunk), &|i| {
        let (mut m, mut r) = (0, i * chunk);
        while r >= rows[m] {
            r -= rows[m];
            m += 1;
        }
        // Chunks divide every matrix's rows (`chunk_rows`, `prefill_rows`).
        let len = chunk.min(rows[m] - r);
        let scale = ls[m].out_scale;
        if n == 1 {
            let out = dst[m].part(r, len);
            mm.bitmatmul(&ls[m].w, x, r, out);
            out.iter_mut().for_each(|y| *y *= scale);
            return;
        }
        let out = kernel_out.part(i * chunk * n, len * n);
        mm.bitmatmul(&ls[m].w, x, r, out);
        // (chunk, n) -> rows r.. of every token, 16 rows at a time: each of the 16 rows'
        // tokens is a few cache lines read once, each token's 16 outputs one line written.
        for r0 in (0..len).step_by(16) {
            let rn = (len - r0).min(16);
            for t in 0..n {
                let o = dst[m].part(t * rows[m] + r + r0, rn);
                for (j, o) in o.iter_mut().enumerate() {
                    *o = out[(r0 + j) * n + t] * scale;
                }
            }
        }
    });
}

/// An output matrix the tasks of [`linear`] write into at disjoint positions.
struct Dst(*mut f32, usize);

// SAFETY: tasks write disjoint elements (each owns its chunk's rows of every token), checked
// against the length in `part`, and `for_each_chunk` returns after the last task.
unsafe impl Sync for Dst {}

impl Dst {
    /// Elements `at..at + len`, which only the calling task writes.
    #[allow(clippy::mut_from_ref)]
    fn part(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(at <= self.1 && len <= self.1 - at, "output index");
        // SAFETY: in bounds (checked above); tasks ask for disjoint parts, and none lives
        // past its task.
        unsafe { core::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}
