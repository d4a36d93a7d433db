//! A decode token's attention block in one parallel section: each thread projects q, k and
//! v for whole heads, rotates them, writes its keys and values into the cache and attends
//! with its own query heads.
//!
//! As separate sections (q, k, v; then RoPE and the cache write on the calling thread; then
//! attention), every hand-over crossed cores: the attention tasks read queries and keys the
//! other thread had just written, and the serial RoPE left it idle. On a host whose two
//! vCPUs sit far apart (a cache line's round trip 420-550 ns, `bitnet-infer membw`) that
//! cost about as much as reading from memory.
//!
//! Work is cut in units of one head's rows (`head_dim` rows of `wq`, `wk` or `wv`), ordered
//! kv head by kv head: its key head, its value head, then its query heads. Each task takes
//! a run of units, so the key and value heads a query head reads belong to the same task or
//! an earlier one; the only wait is for a kv head whose rows an earlier task writes, and
//! tasks write their keys and values first. 2B4T on 2 threads: the first task takes kv
//! heads 0-2 and query heads 0-8, the second kv heads 3-4 and query heads 9-19, 1920 rows
//! each; query heads 9-11 read kv head 2 once the first task has written it.

use core::ops::Range;
use core::sync::atomic::{AtomicU32, Ordering};

use super::attention::attend_heads;
use super::linear::{decode_rows, warm_on_caller, Dst, Matmul, Store};
use super::{KvCache, Model};
use crate::kernels::ActBatch;
use crate::ops;
use crate::parallel::Exec;
use crate::profile::{self, Part};

/// The section's outputs and scratch, each (1, rows) for the one token.
pub(super) struct Outputs<'a> {
    pub q: &'a mut [f32], // (q_dim,) rotated queries
    pub k: &'a mut [f32], // (kv_dim,) rotated keys, as written into the cache
    pub v: &'a mut [f32], // (kv_dim,)
    pub o: &'a mut [f32], // (q_dim,) attention output
    /// (n_kv_head,) writes done per kv head (its key and its value: 2 when complete).
    pub written: &'a mut alloc::vec::Vec<AtomicU32>,
}

impl Model {
    /// q, k, v = BitLinear(`x`) of `layer` for the token at `pos`; RoPE on q and k (`rot`:
    /// the token's sin and cos); k and v into `kv` at `pos`; `out.o` = attention of q over
    /// positions `0..=pos`. Brings `next` into the calling thread's cache on the way.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decode_attention(
        &self,
        mm: &dyn Matmul,
        exec: &dyn Exec,
        layer: usize,
        x: &ActBatch,
        rot: &[(f32, f32)],
        kv: &mut KvCache,
        pos: usize,
        out: Outputs,
        next: &[f32],
    ) {
        let c = &self.config;
        let blk = &self.blocks[layer];
        let hd = c.head_dim;
        let group = c.n_head / c.n_kv_head; // query heads per kv head
        let units = c.n_kv_head * (group + 2);
        let per = units.div_ceil(exec.threads().max(1));
        let tasks = units.div_ceil(per);
        out.written.resize_with(c.n_kv_head, || AtomicU32::new(0));
        out.written.iter_mut().for_each(|w| *w.get_mut() = 0);
        let written: &[AtomicU32] = out.written;
        let (q, k, v, o) = (
            Dst::new(out.q),
            Dst::new(out.k),
            Dst::new(out.v),
            Dst::new(out.o),
        );
        let cache = kv.shared();
        let avx2 = crate::cpu::avx2_float_loops();
        exec.run(tasks, &|i| {
            let on_caller = exec.on_caller();
            let heads = Heads::of(i * per..((i + 1) * per).min(units), group);
            let (kh, vh, qh) = (&heads.k, &heads.v, &heads.q);
            let (k, v) = (
                k.part(kh.start * hd, kh.len() * hd),
                v.part(vh.start * hd, vh.len() * hd),
            );
            {
                // Keys and values first: later tasks may wait for them. Counted as written
                // when this block ends, also by a panic's unwinding: a task waiting for
                // them must not spin forever while the section fails.
                let _done = Written(written, kh.clone(), vh.clone());
                for (l, r, out) in [(&blk.wk, kh, &mut *k), (&blk.wv, vh, &mut *v)] {
                    if !r.is_empty() {
                        decode_rows(mm, l, x, r.start * hd, out, &mut [], Store::Set);
                    }
                }
                let _phase = profile::phase(Part::RopeKv, on_caller);
                for (g, k) in kh.clone().zip(k.chunks_exact_mut(hd)) {
                    ops::rope_with(c.rope_type, k, rot);
                    // SAFETY: only this task writes kv head g's key; no task reads it
                    // before `written[g]` says so.
                    unsafe { cache.write_key(layer, g, pos, k) };
                }
                for (g, v) in vh.clone().zip(v.chunks_exact(hd)) {
                    // SAFETY: as for the key.
                    unsafe { cache.write_value(layer, g, pos, v) };
                }
            }
            let q = q.part(qh.start * hd, qh.len() * hd);
            if !qh.is_empty() {
                decode_rows(mm, &blk.wq, x, qh.start * hd, q, &mut [], Store::Set);
            }
            let phase = profile::phase(Part::RopeKv, on_caller);
            for head in q.chunks_exact_mut(hd) {
                ops::rope_with(c.rope_type, head, rot);
            }
            drop(phase);
            let _phase = profile::phase(Part::Attention, on_caller);
            let o = o.part(qh.start * hd, qh.len() * hd);
            let mut h = qh.start;
            while h < qh.end {
                let g = h / group;
                let end = qh.end.min((g + 1) * group);
                exec.wait_until(&|| written[g].load(Ordering::Acquire) == 2);
                // SAFETY: both writes to kv head g happened before the load above
                // (Release, Acquire); nothing writes its rows until the section ends.
                let (keys, values) = unsafe {
                    (
                        cache.keys(layer, g, pos + 1),
                        cache.values(layer, g, pos + 1),
                    )
                };
                let at = (h - qh.start) * hd..(end - qh.start) * hd;
                let (qs, os) = (&q[at.clone()], &mut o[at]);
                attend_heads(avx2, self.kernel, keys, values, pos + 1, qs, hd, os);
                h = end;
            }
            warm_on_caller(exec, next);
        });
    }
}

/// The heads of one task's units: contiguous runs of key, value and query heads.
struct Heads {
    k: Range<usize>,
    v: Range<usize>,
    q: Range<usize>,
}

impl Heads {
    /// The heads of `units` when each kv head has `group` query heads.
    fn of(units: Range<usize>, group: usize) -> Heads {
        let stride = group + 2;
        let (mut k, mut v, mut q) = (0..0, 0..0, 0..0);
        let add = |r: &mut Range<usize>, h: usize| {
            *r = if Range::is_empty(r) {
                h..h + 1
            } else {
                r.start..h + 1
            };
        };
        for u in units {
            let (g, j) = (u / stride, u % stride);
            match j {
                0 => add(&mut k, g),
                1 => add(&mut v, g),
                _ => add(&mut q, g * group + j - 2),
            }
        }
        Heads { k, v, q }
    }
}

/// Counts a task's key and value heads as written when dropped.
struct Written<'a>(&'a [AtomicU32], Range<usize>, Range<usize>);

impl Drop for Written<'_> {
    fn drop(&mut self) {
        for g in self.1.clone().chain(self.2.clone()) {
            self.0[g].fetch_add(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_cover_every_head_once_and_wait_only_for_earlier_tasks() {
        for (n_head, n_kv) in [(20usize, 5usize), (4, 2), (4, 4), (8, 1), (6, 3)] {
            let group = n_head / n_kv;
            let units = n_kv * (group + 2);
            for threads in 1..=units + 1 {
                let per = units.div_ceil(threads);
                let tasks: alloc::vec::Vec<Heads> = (0..units.div_ceil(per))
                    .map(|i| Heads::of(i * per..((i + 1) * per).min(units), group))
                    .collect();
                assert!(tasks.len() <= threads);
                let what = format!("{n_head}/{n_kv} heads, {threads} threads");
                // Each kind's heads, task after task, are 0, 1, 2, ... once each.
                let all = |r: fn(&Heads) -> &Range<usize>| -> alloc::vec::Vec<usize> {
                    tasks.iter().flat_map(|h| r(h).clone()).collect()
                };
                assert!(all(|h| &h.k).into_iter().eq(0..n_kv), "{what}: keys");
                assert!(all(|h| &h.v).into_iter().eq(0..n_kv), "{what}: values");
                assert!(all(|h| &h.q).into_iter().eq(0..n_head), "{what}: queries");
                // A query head's key and value heads belong to its task or an earlier one.
                for (i, t) in tasks.iter().enumerate() {
                    for g in t.q.clone().map(|h| h / group) {
                        let owner = |r: fn(&Heads) -> &Range<usize>| {
                            tasks.iter().position(|t| r(t).contains(&g)).unwrap()
                        };
                        assert!(owner(|h| &h.k) <= i && owner(|h| &h.v) <= i, "{what}");
                    }
                }
            }
        }
    }
}
