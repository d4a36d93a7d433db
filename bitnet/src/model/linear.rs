//! BitLinear over a batch of tokens: every matrix of a layer that shares an input computed
//! in one parallel section, so each weight read serves every token.

use alloc::vec::Vec;

use super::{Activation, BitLinear};
use crate::kernels::{ActBatch, Kernel};
use crate::ops::{self, gcd};
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

/// Rows per chunk of a prefill's parallel section: about one chunk per thread; a divisor of
/// every row count, so no chunk straddles two matrices; a multiple of 16 where possible, so
/// chunks split no row group of the Rows16 layout.
fn chunk_rows(exec: &dyn Exec, rows: &[usize]) -> usize {
    let g = rows.iter().fold(0, |g, &r| gcd(g, r));
    if exec.threads() == 1 {
        return g.max(1);
    }
    let total: usize = rows.iter().sum();
    let target = total.div_ceil(exec.threads()).max(1);
    let divisors = || (1..=g.min(target)).rev().filter(move |d| g % d == 0);
    divisors()
        .find(|d| d % 16 == 0)
        .or_else(|| divisors().next())
        .unwrap_or(1)
}

/// Where a BitLinear's outputs go: stored, or added to what is there (the residual stream
/// `x += W a`, without a buffer and a serial pass over it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Store {
    Set,
    Add,
}

/// A decode section's tasks: one per thread, as (first row, rows) in the rows of its
/// matrices stacked, so a task may straddle matrices. Each task is a kernel call per matrix
/// that starts its code streams from cold, and decode's sections are short (40-170 us at 2
/// threads): one task per thread instead of four was 1.13x faster (median of 8 `bench`
/// pairs on an AMD Zen 4 host), and tail tasks for whichever thread is done first (guided
/// scheduling, 1/8 of the rows) 0.9x.
fn decode_tasks(threads: usize, total: usize) -> Vec<(usize, usize)> {
    let per = (total.div_ceil(threads.max(1))).next_multiple_of(16);
    (0..total)
        .step_by(per.max(1))
        .map(|at| (at, per.min(total - at)))
        .collect()
}

/// `outs[i]` (n, rows_i) = `ls[i]` applied to every token of `x` (stored or added, `store`),
/// all matrices in one parallel section (q, k, v share their input). A decode brings `next`
/// into cache on the way ([`warm_on_caller`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn linear(
    mm: &dyn Matmul,
    exec: &dyn Exec,
    ls: &[&BitLinear],
    x: &ActBatch,
    tmp: &mut Vec<f32>,
    outs: &mut [&mut Vec<f32>],
    store: Store,
    next: &[f32],
) {
    let n = x.n_tokens;
    let rows: Vec<usize> = ls.iter().map(|l| l.w.rows).collect();
    let total: usize = rows.iter().sum();
    // Each output (n, rows_i), written by the tasks at disjoint (token, row) positions.
    let dst: Vec<Dst> = outs
        .iter_mut()
        .zip(&rows)
        .map(|(o, &r)| Dst(o[..n * r].as_mut_ptr(), n * r))
        .collect();
    if n == 1 {
        if store == Store::Add {
            tmp.resize(total, 0.0);
        }
        // (total,) each task's rows, before they are added.
        let scratch = Dst(
            tmp.as_mut_ptr(),
            if store == Store::Add { total } else { 0 },
        );
        let tasks = decode_tasks(exec.threads(), total);
        exec.run(tasks.len(), &|i| {
            let (mut m, mut r) = (0, tasks[i].0);
            let (mut at, mut left) = tasks[i];
            while left > 0 {
                while r >= rows[m] {
                    r -= rows[m];
                    m += 1;
                }
                let len = left.min(rows[m] - r);
                let buf = match store {
                    Store::Add => scratch.part(at, len),
                    Store::Set => &mut [],
                };
                decode_rows(mm, ls[m], x, r, dst[m].part(r, len), buf, store);
                (r, at, left) = (r + len, at + len, left - len);
            }
            warm_on_caller(exec, next);
        });
        return;
    }
    let mut chunk = chunk_rows(exec, &rows);
    // A prefill's chunks turn their own (rows, n) output into the (n, rows) layout while it
    // is in cache: 64 rows of 128 tokens are 32 KiB, where a whole matrix's output (3.5 MB
    // for 6912 rows) was turned afterwards, out of cache (ternary layers 140-150 -> 163-173
    // G MAC/s on a Zen 4 core). Only kernels that prepare nothing per call take small chunks.
    if let Some(p) = mm.prefill_rows() {
        if chunk > p && chunk.is_multiple_of(p) {
            chunk = p;
        }
    }
    tmp.resize(total * n, 0.0);
    let kernel_out = Dst(tmp.as_mut_ptr(), total * n);
    exec.run(total.div_ceil(chunk), &|i| {
        let (mut m, mut r) = (0, i * chunk);
        while r >= rows[m] {
            r -= rows[m];
            m += 1;
        }
        // Chunks divide every matrix's rows (`chunk_rows`, `prefill_rows`).
        let len = chunk.min(rows[m] - r);
        let scale = ls[m].out_scale;
        let out = kernel_out.part(i * chunk * n, len * n);
        mm.bitmatmul(&ls[m].w, x, r, out);
        // (chunk, n) -> rows r.. of every token, 16 rows at a time: each of the 16 rows'
        // tokens is a few cache lines read once, each token's 16 outputs one line written.
        for r0 in (0..len).step_by(16) {
            let rn = (len - r0).min(16);
            for t in 0..n {
                let o = dst[m].part(t * rows[m] + r + r0, rn);
                // One loop per store: a `match` per element cost the 4-layer fixture's
                // prefill 4% more instructions (`cargo xtask counters`).
                match store {
                    Store::Set => {
                        for (j, o) in o.iter_mut().enumerate() {
                            *o = out[(r0 + j) * n + t] * scale;
                        }
                    }
                    Store::Add => {
                        for (j, o) in o.iter_mut().enumerate() {
                            *o += out[(r0 + j) * n + t] * scale;
                        }
                    }
                }
            }
        }
    });
}

/// The gated FFN's first half: `gate` (n, n_ff) = act(`w_gate` x) * (`w_up` x), `up` (n,
/// n_ff) = `w_up` x. A decode gives each thread the same rows of both matrices and gates
/// them in the same task, while its outputs are in its cache: no section of its own, and no
/// thread reads the rows the other wrote. A prefill computes both matrices in one section
/// and gates a token per task. A decode brings `next` into cache as [`linear`] does.
#[allow(clippy::too_many_arguments)]
pub(super) fn gated(
    mm: &dyn Matmul,
    exec: &dyn Exec,
    act: Activation,
    w_gate: &BitLinear,
    w_up: &BitLinear,
    x: &ActBatch,
    tmp: &mut Vec<f32>,
    gate: &mut Vec<f32>,
    up: &mut Vec<f32>,
    next: &[f32],
) {
    let (n, n_ff) = (x.n_tokens, w_gate.w.rows);
    if n > 1 || w_up.w.rows != n_ff {
        linear(
            mm,
            exec,
            &[w_gate, w_up],
            x,
            tmp,
            &mut [gate, up],
            Store::Set,
            &[],
        );
        let up = &up[..n * n_ff];
        exec.for_each_chunk(&mut gate[..n * n_ff], n_ff, &|t, g| {
            ops::act_mul(act, g, &up[t * n_ff..]);
        });
        return;
    }
    let (g_out, u_out) = (Dst(gate.as_mut_ptr(), n_ff), Dst(up.as_mut_ptr(), n_ff));
    let tasks = decode_tasks(exec.threads(), n_ff);
    exec.run(tasks.len(), &|i| {
        let (r, len) = tasks[i];
        let (g, u) = (g_out.part(r, len), u_out.part(r, len));
        decode_rows(mm, w_gate, x, r, g, &mut [], Store::Set);
        decode_rows(mm, w_up, x, r, u, &mut [], Store::Set);
        ops::act_mul(act, g, u);
        warm_on_caller(exec, next);
    });
}

/// Reads `next` (the weights of the norm the caller runs right after this decode section)
/// into the cache of the thread that called the section, at the end of its task. The
/// section's weight stream has evicted those weights since the last token, and the norm
/// read them from memory while the other thread waited: norms 0.42-0.44 ms per 2B4T token
/// on 1 thread, 0.26 on 2 with the warm, on an AMD Zen 4 host. A helper thread warming them
/// instead (when it finished first) left the norms at 0.44-0.51 ms when the host gave 2
/// threads its full bandwidth (its two vCPUs then sit far apart: a cache line's round trip
/// between them takes 420-550 ns against ~100 otherwise, `bitnet-infer membw`, so the other
/// core's cache is little faster than memory), and the caller warming them at 0.38-0.42. One load per cache line; when the caller is the last to finish, its section
/// takes what the norm would have spent reading them.
pub(super) fn warm_on_caller(exec: &dyn Exec, next: &[f32]) {
    if exec.on_caller() {
        for i in (0..next.len()).step_by(64 / size_of::<f32>()) {
            core::hint::black_box(next[i]);
        }
    }
}

/// Rows `r..r + out.len()` of one token's `l x` into `out`: the kernel writes a decode's
/// (rows, 1) output in place, already (1, rows), or into `scratch` (as long as `out`) to be
/// added. Through one buffer for the whole section, the copy into place afterwards read
/// the other thread's half from that core's cache, ~12 us per FFN section at 2 threads.
pub(super) fn decode_rows(
    mm: &dyn Matmul,
    l: &BitLinear,
    x: &ActBatch,
    r: usize,
    out: &mut [f32],
    scratch: &mut [f32],
    store: Store,
) {
    let scale = l.out_scale;
    if store == Store::Set {
        mm.bitmatmul(&l.w, x, r, out);
        out.iter_mut().for_each(|y| *y *= scale);
        return;
    }
    mm.bitmatmul(&l.w, x, r, scratch);
    for (o, &y) in out.iter_mut().zip(scratch.iter()) {
        *o += y * scale;
    }
}

/// An output matrix the tasks of [`linear`] write into at disjoint positions.
pub(super) struct Dst(*mut f32, usize);

// SAFETY: tasks write disjoint elements (each owns its chunk's rows of every token), checked
// against the length in `part`, and `for_each_chunk` returns after the last task.
unsafe impl Sync for Dst {}

impl Dst {
    /// All of `out`, for tasks to write disjoint parts of while `out`'s borrow lasts.
    pub(super) fn new(out: &mut [f32]) -> Dst {
        Dst(out.as_mut_ptr(), out.len())
    }

    /// Elements `at..at + len`, which only the calling task writes.
    #[allow(clippy::mut_from_ref)]
    pub(super) fn part(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(at <= self.1 && len <= self.1 - at, "output index");
        // SAFETY: in bounds (checked above); tasks ask for disjoint parts, and none lives
        // past its task.
        unsafe { core::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}
