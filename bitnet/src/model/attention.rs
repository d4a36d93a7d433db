//! Attention over the KV cache, reading each cached row in place in the cache's own type.
//!
//! * f32 / f16 keys and values: each row converted to f32 into a one-row scratch buffer, then
//!   the f32 dot (keys) or multiply-add (values); the original path, so f32/f16 results are
//!   unchanged by the quantized types.
//! * Q8_0 / Q4_0 keys: the query is quantized to int8 per 32-element block
//!   ([`quantize_row_q8_act_ref`], llama.cpp's `quantize_row_q8_0` with an f32 scale: the query
//!   is never stored) and each score is an exact integer dot per block, times the two block
//!   scales, as llama.cpp's flash attention does for these types. The integer part is the
//!   kernel table's `kv_dot_*` (SIMD per ISA, tested for equality with the scalar reference);
//!   the float part is shared ([`kv_scores_epilogue`]), so attention gives the same bits on
//!   every kernel. This reads 34 (Q8_0) or 18 (Q4_0) bytes per 32 keys instead of 64 (f16) and
//!   multiplies int8 by int8, which the integer dot instructions do 32 or 64 at a time.
//! * Q8_0 / Q4_0 values: each row dequantized into the one-row scratch buffer, then the same
//!   multiply-add as f32. The weights are softmax probabilities, not quantized, so there is
//!   no integer product to take (llama.cpp converts quantized V rows to float the same way);
//!   the row buffer is all the dequantized data there ever is.

use alloc::vec;
use alloc::vec::Vec;

#[cfg(target_arch = "x86_64")]
use super::attention_tiles as tiles;
use super::forward::Placement;
use super::{Config, KvCache, Rows};
use crate::kernels::head::quantize_row_q8_act_ref;
use crate::kernels::kv::kv_scores_epilogue;
use crate::kernels::Kernel;
use crate::ops;
use crate::parallel::Exec;
use crate::quants::{q4_0, q8_0};

/// `o` (n, q_dim) = softmax(q k^T / sqrt(head_dim) + causal mask) v, per head; query head
/// h reads kv head h / (n_head / n_kv_head) of its own sequence's cache. Decode (one token
/// of each of several sequences; a single token takes `model/decode_attention.rs`, which
/// calls [`attend_heads`]): one task per (token, kv head), the query heads sharing a kv
/// head sharing each cached row read. Prefill:
/// one task per block of tokens, whose tokens share one f32 copy of each kv head's cached
/// rows ([`Prefix`]) instead of converting the whole prefix again for every token.
///
/// The loops are plain f32 code that the compiler vectorises; on x86_64 each task runs them
/// compiled a second time for AVX2 where the CPU has it ([`Task::run`]), as the baseline
/// build has only SSE2's four lanes. That build takes its dots and weighted sums from the
/// register tiles of `attention_tiles.rs` (the same bits), for the head shapes they have
/// ([`tileable`]); other shapes run the baseline build.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    c: &Config,
    kernel: Kernel,
    exec: &dyn Exec,
    kvs: &[&mut KvCache],
    layer: usize,
    at: &Placement,
    q: &[f32],
    o: &mut [f32],
) {
    attention_with(
        crate::cpu::avx2_float_loops(),
        c,
        kernel,
        exec,
        kvs,
        layer,
        at,
        q,
        o,
    )
}

/// [`attention`] with the AVX2 build of its loops chosen by the caller (tests run both).
#[allow(clippy::too_many_arguments)]
fn attention_with(
    avx2: bool,
    c: &Config,
    kernel: Kernel,
    exec: &dyn Exec,
    kvs: &[&mut KvCache],
    layer: usize,
    at: &Placement,
    q: &[f32],
    o: &mut [f32],
) {
    let group = c.n_head / c.n_kv_head;
    let task = Task {
        kernel,
        kvs,
        layer,
        at,
        q,
        hd: c.head_dim,
        n_kv: c.n_kv_head,
        group,
        scale: attention_scale(c.head_dim),
        avx2: avx2 && cfg!(target_arch = "x86_64") && tileable(c.head_dim, group),
    };
    if at.len() < PREFILL_TOKENS {
        exec.for_each_chunk(o, group * c.head_dim, &|i, out| {
            task.run(Part::Decode(i), out)
        });
    } else {
        let q_dim = c.n_head * c.head_dim;
        exec.for_each_chunk(o, PREFILL_TOKENS * q_dim, &|b, out| {
            task.run(Part::Prefill(b), out)
        });
    }
}

/// What one attention call reads, shared by its tasks.
struct Task<'a> {
    kernel: Kernel,
    kvs: &'a [&'a mut KvCache],
    layer: usize,
    at: &'a Placement,
    q: &'a [f32], // (n, n_head * head_dim)
    hd: usize,
    n_kv: usize,
    group: usize, // query heads per kv head
    scale: f32,
    avx2: bool, // run the AVX2 build (x86_64, CPU checked)
}

/// A task's share of the output: one (token, kv head) of a decode step, or one block of
/// [`PREFILL_TOKENS`] tokens of a prompt.
#[derive(Clone, Copy)]
enum Part {
    Decode(usize),
    Prefill(usize),
}

impl Task<'_> {
    fn run(&self, part: Part, out: &mut [f32]) {
        if self.avx2 {
            // SAFETY: `avx2` is set only on x86_64 CPUs that have it.
            #[cfg(target_arch = "x86_64")]
            return unsafe { self.run_avx2(part, out) };
        }
        self.run_body::<false>(part, out)
    }

    /// [`Task::run_body`] compiled for AVX2. No FMA: every multiply and add stays as
    /// written, in the same order, so the bits are the baseline build's; only the vectors
    /// are wider (attention of a 128-token prompt 1.2 -> 0.8 ms per token on a Zen 4 host).
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(&self, part: Part, out: &mut [f32]) {
        self.run_body::<true>(part, out)
    }

    /// `WIDE`: the AVX2 build, which runs the register tiles of [`tiles`].
    #[inline(always)]
    fn run_body<const WIDE: bool>(&self, part: Part, out: &mut [f32]) {
        let (hd, n_kv, group) = (self.hd, self.n_kv, self.group);
        match part {
            Part::Decode(i) => self.head::<WIDE>(i / n_kv, i % n_kv, None, out),
            Part::Prefill(b) => {
                let t0 = b * PREFILL_TOKENS;
                let q_dim = n_kv * group * hd;
                for kvh in 0..n_kv {
                    let mut prefix = Prefix::default();
                    for (k, out_t) in out.chunks_exact_mut(q_dim).enumerate() {
                        let (seq, pos) = self.at[t0 + k];
                        prefix.extend(&*self.kvs[seq], seq, self.layer, kvh, pos + 1, hd);
                        self.head::<WIDE>(
                            t0 + k,
                            kvh,
                            Some(&prefix),
                            &mut out_t[kvh * group * hd..][..group * hd],
                        );
                    }
                }
            }
        }
    }

    /// The `group` query heads of token `t` that read kv head `kvh`, into `out` (group,
    /// head_dim): from the f32 copy `prefix` when given, else from the cache in its own type.
    #[inline(always)]
    fn head<const WIDE: bool>(
        &self,
        t: usize,
        kvh: usize,
        prefix: Option<&Prefix>,
        out: &mut [f32],
    ) {
        let (hd, group, scale, layer) = (self.hd, self.group, self.scale, self.layer);
        let (seq, pos) = self.at[t];
        let kv: &KvCache = &*self.kvs[seq];
        let i = t * self.n_kv + kvh;
        let qs = &self.q[i * group * hd..(i + 1) * group * hd]; // (group, head_dim)
        let len = pos + 1;
        let Some(p) = prefix else {
            let (keys, values) = (kv.keys(layer, kvh, len), kv.values(layer, kvh, len));
            return attend_heads(self.avx2, self.kernel, keys, values, len, qs, hd, out);
        };
        let mut att = vec![0.0f32; group * len]; // (group, pos + 1) scores, then weights
        if p.keys.is_empty() {
            let keys = kv.keys(layer, kvh, len);
            scores::<WIDE>(self.kernel, keys, qs, hd, scale, &mut att, &mut Vec::new());
        } else {
            scores_f32::<WIDE>(&p.keys[..len * hd], qs, hd, scale, &mut att);
        }
        for a in att.chunks_exact_mut(len) {
            ops::softmax(a);
        }
        let values = &p.values[..len * hd];
        out.fill(0.0);
        if !tiled_add_rows::<WIDE>(values, &att, len, 0, hd, out) {
            weighted_sum_f32(values, &att, hd, out);
        }
    }
}

/// Query heads `qs` (heads, head_dim) of one token against the `len` cached rows `keys`
/// and `values` of their kv head, into `out` (heads, head_dim): a decode task of
/// [`attention`], for the decode section that projects, rotates and attends in one
/// (`model/decode_attention.rs`). The same operations in the same order, so the same bits,
/// whichever query heads a call holds.
#[allow(clippy::too_many_arguments)]
pub(super) fn attend_heads(
    avx2: bool,
    kernel: Kernel,
    keys: Rows,
    values: Rows,
    len: usize,
    qs: &[f32],
    hd: usize,
    out: &mut [f32],
) {
    let scale = attention_scale(hd);
    if avx2 && cfg!(target_arch = "x86_64") && tileable(hd, qs.len() / hd) {
        // SAFETY: `avx2` is set only on x86_64 CPUs that have it.
        #[cfg(target_arch = "x86_64")]
        return unsafe { attend_avx2(kernel, keys, values, len, qs, hd, scale, out) };
    }
    attend_baseline(kernel, keys, values, len, qs, hd, scale, out)
}

/// [`attend`] in the baseline build, one copy for every caller (as [`attend_avx2`]).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn attend_baseline(
    kernel: Kernel,
    keys: Rows,
    values: Rows,
    len: usize,
    qs: &[f32],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) {
    attend::<false>(kernel, keys, values, len, qs, hd, scale, out)
}

/// [`attend`] compiled for AVX2, as [`Task::run_avx2`]; not inlined, so the decode tasks
/// of both paths share one copy (the x86_64 binaries have a size budget).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2(
    kernel: Kernel,
    keys: Rows,
    values: Rows,
    len: usize,
    qs: &[f32],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) {
    attend::<true>(kernel, keys, values, len, qs, hd, scale, out)
}

/// 1 / sqrt(head_dim), the scores' scale.
fn attention_scale(hd: usize) -> f32 {
    1.0 / libm::sqrtf(hd as f32)
}

/// Query heads `qs` (heads, head_dim) against `len` cached rows, into `out` (heads,
/// head_dim).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend<const WIDE: bool>(
    kernel: Kernel,
    keys: Rows,
    values: Rows,
    len: usize,
    qs: &[f32],
    hd: usize,
    scale: f32,
    out: &mut [f32],
) {
    let mut att = vec![0.0f32; qs.len() / hd * len]; // (heads, len) scores, then weights
    let mut rows = Vec::new(); // ([`BLOCK_ROWS`], head_dim) cached rows as f32, shared
    scores::<WIDE>(kernel, keys, qs, hd, scale, &mut att, &mut rows);
    for a in att.chunks_exact_mut(len) {
        ops::softmax(a);
    }
    weighted_sum::<WIDE>(values, &att, hd, out, &mut rows);
}

/// Whether [`tiles`] has tiles for `group` query heads of `hd` elements: the AVX2 build
/// runs only those, so that it carries no second copy of the plain loops (the x86_64
/// binaries have a size budget); other shapes run the baseline build (the same bits).
fn tileable(hd: usize, group: usize) -> bool {
    hd.is_multiple_of(64) || (hd.is_multiple_of(16) && group.is_multiple_of(4))
}

/// [`tiles::scores`] in the AVX2 build (`WIDE`): `false`, nothing done, elsewhere.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tiled_scores<const WIDE: bool>(
    rows: &[f32],
    qs: &[f32],
    hd: usize,
    scale: f32,
    att: &mut [f32],
    len: usize,
    j0: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if WIDE {
        // SAFETY: `WIDE` code runs only in the AVX2 build, on CPUs that have it, for
        // shapes [`tileable`] accepts.
        unsafe { tiles::scores(rows, qs, hd, scale, att, len, j0) };
        return true;
    }
    let _ = (rows, qs, hd, scale, att, len, j0);
    false
}

/// [`tiles::add_rows`] in the AVX2 build (`WIDE`): `false`, nothing done, elsewhere.
#[inline(always)]
fn tiled_add_rows<const WIDE: bool>(
    rows: &[f32],
    att: &[f32],
    len: usize,
    j0: usize,
    hd: usize,
    out: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if WIDE {
        // SAFETY: as in `tiled_scores`.
        unsafe { tiles::add_rows(rows, att, len, j0, hd, out) };
        return true;
    }
    let _ = (rows, att, len, j0, hd, out);
    false
}

/// Tokens per prefill task (and the fewest that take the prefill path).
const PREFILL_TOKENS: usize = 16;

/// The f32 rows of one (sequence, kv head) at positions `0..len`, grown as a prompt's later
/// tokens need more: the same conversions [`Rows::dequantize`] makes per row, done once.
/// Keys are kept only for f32/f16 caches (quantized keys are scored in their own type).
#[derive(Default)]
struct Prefix {
    seq: usize,
    len: usize,
    keys: Vec<f32>,   // (len, head_dim), or empty
    values: Vec<f32>, // (len, head_dim)
}

impl Prefix {
    #[inline(always)]
    fn extend(
        &mut self,
        kv: &KvCache,
        seq: usize,
        layer: usize,
        kvh: usize,
        len: usize,
        hd: usize,
    ) {
        if seq != self.seq || len < self.len {
            *self = Prefix {
                seq,
                ..Prefix::default()
            };
        }
        let (keys, values) = (kv.keys(layer, kvh, len), kv.values(layer, kvh, len));
        let new = self.len * hd..len * hd;
        // All new rows in one call: a block's first token converts the whole context, and
        // `half`'s conversion of one row at a time cost as much as the conversion.
        if matches!(keys, Rows::F32(_) | Rows::F16(_)) {
            self.keys.resize(len * hd, 0.0);
            keys.dequantize_rows(self.len, hd, &mut self.keys[new.clone()]);
        }
        self.values.resize(len * hd, 0.0);
        values.dequantize_rows(self.len, hd, &mut self.values[new]);
        self.len = len;
    }
}

/// [`scores`] of f32 keys (len, head_dim): the same dot per key and head.
#[inline(always)]
fn scores_f32<const WIDE: bool>(keys: &[f32], qs: &[f32], hd: usize, scale: f32, att: &mut [f32]) {
    let len = keys.len() / hd;
    if tiled_scores::<WIDE>(keys, qs, hd, scale, att, len, 0) {
        return;
    }
    for (j, row) in keys.chunks_exact(hd).enumerate() {
        for (g, qh) in qs.chunks_exact(hd).enumerate() {
            att[g * len + j] = ops::dot_lanes(qh, row) * scale;
        }
    }
}

/// [`weighted_sum`] of f32 values (len, head_dim): the same multiply-adds in the same order.
#[inline(always)]
fn weighted_sum_f32(values: &[f32], att: &[f32], hd: usize, out: &mut [f32]) {
    let len = values.len() / hd;
    out.fill(0.0);
    for (j, row) in values.chunks_exact(hd).enumerate() {
        for (g, y) in out.chunks_exact_mut(hd).enumerate() {
            let a = att[g * len + j];
            for (y, &v) in y.iter_mut().zip(row) {
                *y += a * v;
            }
        }
    }
}

/// `out[g] += sum_i att[g * len + j0 + i] * rows_i` for the heads g of `out` (heads,
/// head_dim) and the f32 rows (n, head_dim) at positions `j0..j0 + n`, each output
/// element taking the rows' products one after another, in order.
///
/// Four rows per pass over the output: the same sums, bit for bit, but each element is
/// loaded and stored once per four rows instead of once per row, which bound the loop
/// (attention at depth 1024, f16 cache: 13.6 -> 11.8 ms per 2B4T token on a Zen 4 core).
/// On rows read in place from an f32 cache instead of a block in L1 it was slower (12.4
/// -> 14.6 ms): four rows 512 bytes apart at once, where the copy reads one stream.
#[inline(always)]
fn add_rows<const WIDE: bool>(
    rows: &[f32],
    att: &[f32],
    len: usize,
    j0: usize,
    hd: usize,
    out: &mut [f32],
) {
    if tiled_add_rows::<WIDE>(rows, att, len, j0, hd, out) {
        return;
    }
    let mut quads = rows.chunks_exact(4 * hd);
    let mut i = 0;
    for quad in quads.by_ref() {
        let (r0, r) = quad.split_at(hd);
        let (r1, r) = r.split_at(hd);
        let (r2, r3) = r.split_at(hd);
        for (g, y) in out.chunks_exact_mut(hd).enumerate() {
            let a = &att[g * len + j0 + i..][..4];
            let (a0, a1, a2, a3) = (a[0], a[1], a[2], a[3]);
            let ys = y.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3);
            for ((((y, &v0), &v1), &v2), &v3) in ys {
                *y = (((*y + a0 * v0) + a1 * v1) + a2 * v2) + a3 * v3;
            }
        }
        i += 4;
    }
    for row in quads.remainder().chunks_exact(hd) {
        for (g, y) in out.chunks_exact_mut(hd).enumerate() {
            let a = att[g * len + j0 + i];
            for (y, &v) in y.iter_mut().zip(row) {
                *y += a * v;
            }
        }
        i += 1;
    }
}

/// `att[g * len + j] = scale * q_g . k_j` for the `group` query heads in `qs` against the
/// `len` cached keys.
#[inline(always)]
///
/// `rows` is scratch for f16 keys, grown to a block of rows (zeroed once: for a short
/// context, zeroing a block per call cost as many instructions as the attention itself).
#[allow(clippy::too_many_arguments)]
fn scores<const WIDE: bool>(
    kernel: Kernel,
    keys: Rows,
    qs: &[f32],
    hd: usize,
    scale: f32,
    att: &mut [f32],
    rows: &mut Vec<f32>,
) {
    let len = att.len() / (qs.len() / hd);
    match keys {
        // In place: the same dots as a copy of each row would give.
        Rows::F32(v) => scores_f32::<WIDE>(&v[..len * hd], qs, hd, scale, att),
        Rows::F16(_) => {
            rows.resize(rows.len().max(BLOCK_ROWS.min(len) * hd), 0.0);
            for j0 in (0..len).step_by(BLOCK_ROWS) {
                let rows = &mut rows[..(len - j0).min(BLOCK_ROWS) * hd];
                keys.dequantize_rows(j0, hd, rows);
                if tiled_scores::<WIDE>(rows, qs, hd, scale, att, len, j0) {
                    continue;
                }
                for (i, row) in rows.chunks_exact(hd).enumerate() {
                    for (g, qh) in qs.chunks_exact(hd).enumerate() {
                        att[g * len + j0 + i] = ops::dot_lanes(qh, row) * scale;
                    }
                }
            }
        }
        Rows::Q8_0(rows) | Rows::Q4_0(rows) => {
            let nb = hd / 32;
            let (mut qq, mut dq) = (vec![0i8; hd], vec![0.0f32; nb]); // the query, int8
            let mut isums = vec![0i32; len * nb]; // (len, nb) exact block sums
            let block_bytes = match keys {
                Rows::Q8_0(_) => q8_0::BLOCK_BYTES,
                _ => q4_0::BLOCK_BYTES,
            };
            for (qh, a) in qs.chunks_exact(hd).zip(att.chunks_exact_mut(len)) {
                quantize_row_q8_act_ref(qh, &mut qq, &mut dq);
                match keys {
                    Rows::Q8_0(_) => kernel.kv_dot_q8_0(rows, &qq, &mut isums),
                    _ => kernel.kv_dot_q4_0(rows, &qq, &mut isums),
                }
                kv_scores_epilogue(rows, block_bytes, &isums, &dq, scale, a);
            }
        }
    }
}

/// `out[g] = sum_j att[g * len + j] * v_j` for the `group` heads of `out` (group, head_dim).
#[inline(always)]
fn weighted_sum<const WIDE: bool>(
    values: Rows,
    att: &[f32],
    hd: usize,
    out: &mut [f32],
    rows: &mut Vec<f32>,
) {
    let len = att.len() / (out.len() / hd);
    rows.resize(rows.len().max(BLOCK_ROWS.min(len) * hd), 0.0);
    out.fill(0.0);
    for j0 in (0..len).step_by(BLOCK_ROWS) {
        let rows = &mut rows[..(len - j0).min(BLOCK_ROWS) * hd];
        values.dequantize_rows(j0, hd, rows);
        add_rows::<WIDE>(rows, att, len, j0, hd, out);
    }
}

/// Cached rows converted (or, f32 values, copied) to f32 per call in [`scores`] and
/// [`weighted_sum`]: 8 KiB for 128-element heads, in L1. A call per row cost as much as
/// the conversion (f16), or a quarter of attention's time at depth 1024 (f32 copies).
const BLOCK_ROWS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{KvType, KvTypes};
    use crate::parallel::Serial;
    use crate::quants::test_rng::XorShift;

    fn config(n_head: usize, n_kv_head: usize, head_dim: usize) -> Config {
        Config {
            arch_name: "bitnet-b1.58".into(),
            arch: crate::model::Arch::BitnetB158,
            n_layer: 2,
            dim: n_head * head_dim,
            n_ff: 64,
            n_head,
            n_kv_head,
            head_dim,
            n_rot: head_dim,
            rope_theta: 10000.0,
            eps: 1e-5,
            ctx_len: 64,
            vocab: 16,
            act: crate::model::Activation::Relu2,
            rope_type: crate::model::Arch::BitnetB158.rope_type(),
        }
    }

    /// Attention of `n` tokens at positions `0..n` of one sequence whose cache holds random
    /// keys and values, computed with `kernel`.
    fn run(c: &Config, types: KvTypes, kernel: Kernel, seed: u64, n: usize) -> Vec<f32> {
        run_with(None, c, types, kernel, seed, n)
    }

    /// `run`, with the AVX2 build forced on or off (`None`: as detected).
    fn run_with(
        avx2: Option<bool>,
        c: &Config,
        types: KvTypes,
        kernel: Kernel,
        seed: u64,
        n: usize,
    ) -> Vec<f32> {
        let mut rng = XorShift::new(seed);
        let mut kv = KvCache::new(types, c.n_layer, n, c.n_kv_head, c.head_dim).unwrap();
        for layer in 0..c.n_layer {
            for pos in 0..n {
                let (k, v) = (rng.f32s(c.kv_dim(), 3.0), rng.f32s(c.kv_dim(), 3.0));
                kv.write(layer, pos, &k, &v);
            }
        }
        let q = rng.f32s(n * c.q_dim(), 2.0);
        let at: Vec<(usize, usize)> = (0..n).map(|p| (0, p)).collect();
        let mut o = vec![f32::NAN; n * c.q_dim()];
        match avx2 {
            Some(w) => attention_with(w, c, kernel, &Serial, &[&mut kv], 1, &at, &q, &mut o),
            None => attention(c, kernel, &Serial, &[&mut kv], 1, &at, &q, &mut o),
        }
        o
    }

    /// The AVX2 build of the loops gives the baseline build's bits, decode and prefill, for
    /// every cache type (no FMA: the same operations in the same order).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_build_gives_the_baseline_bits() {
        crate::cpu::assert_avx2_host();
        // Query heads per kv head 2, 1 and 4: the tiles of `attention_tiles` and the
        // shapes they leave to the plain loops.
        for (n_head, n_kv, hd) in [(4, 2, 32), (4, 4, 128), (8, 2, 64)] {
            let c = config(n_head, n_kv, hd);
            for k in KvType::ALL {
                for v in KvType::ALL {
                    let types = KvTypes { k, v };
                    for n in [11, 40] {
                        let base = run_with(Some(false), &c, types, Kernel::SCALAR, 3, n);
                        let wide = run_with(Some(true), &c, types, Kernel::SCALAR, 3, n);
                        assert!(base.iter().all(|x| x.is_finite()));
                        let same = base
                            .iter()
                            .zip(&wide)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{types} heads {n_head}/{n_kv}x{hd}, {n} tokens");
                    }
                }
            }
        }
    }

    #[test]
    fn decode_equals_prefill_across_conversion_blocks() {
        // The token at position 40 reads 41 cached rows: two blocks of 16 and 9 more (two
        // groups of four rows and one), through the decode path; the prefill path takes
        // the same query as the last of 41 tokens, row by row from its own f32 copy.
        let n = 41;
        for (n_head, n_kv, hd) in [(4, 2, 32), (6, 3, 64), (4, 4, 128)] {
            let c = config(n_head, n_kv, hd);
            let q_dim = c.q_dim();
            for k in KvType::ALL {
                for v in KvType::ALL {
                    let types = KvTypes { k, v };
                    let mut rng = XorShift::new(9);
                    let mut kv = KvCache::new(types, c.n_layer, n, n_kv, hd).unwrap();
                    for pos in 0..n {
                        let (k, v) = (rng.f32s(c.kv_dim(), 3.0), rng.f32s(c.kv_dim(), 3.0));
                        kv.write(1, pos, &k, &v);
                    }
                    let q = rng.f32s(n * q_dim, 2.0);
                    let all: Vec<(usize, usize)> = (0..n).map(|p| (0, p)).collect();
                    let mut prefill = vec![f32::NAN; n * q_dim];
                    let kvs = [&mut kv];
                    attention(&c, Kernel::SCALAR, &Serial, &kvs, 1, &all, &q, &mut prefill);
                    let mut decode = vec![f32::NAN; q_dim];
                    let last = &q[(n - 1) * q_dim..];
                    let at = [(0, n - 1)];
                    attention(&c, Kernel::SCALAR, &Serial, &kvs, 1, &at, last, &mut decode);
                    let want = &prefill[(n - 1) * q_dim..];
                    assert!(want.iter().all(|x| x.is_finite()));
                    let same = want
                        .iter()
                        .zip(&decode)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{types} heads {n_head}/{n_kv}x{hd}");
                }
            }
        }
    }

    #[test]
    fn every_kernel_gives_the_same_bits() {
        // The kernels only compute exact integer block sums; the float part is shared.
        for (n_head, n_kv, hd) in [(4, 2, 32), (6, 3, 64), (2, 1, 96), (4, 4, 128)] {
            let c = config(n_head, n_kv, hd);
            for k in [KvType::Q8_0, KvType::Q4_0] {
                for v in KvType::ALL {
                    let types = KvTypes { k, v };
                    let want = run(&c, types, Kernel::SCALAR, 7, 11);
                    assert!(want.iter().all(|x| x.is_finite()));
                    for kernel in Kernel::available() {
                        let got = run(&c, types, kernel, 7, 11);
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{kernel} {types} heads {n_head}/{n_kv}x{hd}");
                    }
                }
            }
        }
    }

    #[test]
    fn quantized_cache_approximates_f32() {
        // Same keys and values: each quantized type lands near the f32 cache's output, within
        // what its block rounding allows (4-bit much looser than 8-bit); a wrong nibble order,
        // scale or sign would be far off.
        let c = config(4, 2, 64);
        let f32_out = run(&c, KvType::F32.into(), Kernel::SCALAR, 3, 9);
        let mag = f32_out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (k, v, tol) in [
            (KvType::F16, KvType::F16, 2e-3),
            (KvType::Q8_0, KvType::Q8_0, 0.05),
            (KvType::Q8_0, KvType::F32, 0.05),
            (KvType::F32, KvType::Q8_0, 0.05),
            (KvType::Q4_0, KvType::Q4_0, 0.6),
            (KvType::F32, KvType::Q4_0, 0.4),
        ] {
            let types = KvTypes { k, v };
            let got = run(&c, types, Kernel::SCALAR, 3, 9);
            let err = got
                .iter()
                .zip(&f32_out)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err <= tol * mag,
                "{types}: max error {err} vs magnitude {mag}"
            );
            assert!(
                err > 0.0 || k == KvType::F32,
                "{types}: quantization changed nothing"
            );
        }
    }

    #[test]
    fn quantized_scores_equal_the_block_formula() {
        // One query head, one kv head: the scores are exactly sum_b isum_b * (d_k * d_q),
        // the integer sums taken from dequantized codes independently of the kernels.
        let hd = 96;
        let mut rng = XorShift::new(11);
        for ty in [KvType::Q8_0, KvType::Q4_0] {
            let len = 13;
            let mut kv = KvCache::new(ty, 1, len, 1, hd).unwrap();
            for pos in 0..len {
                let k = rng.f32s(hd, 2.0);
                kv.write(0, pos, &k, &k);
            }
            let q = rng.f32s(hd, 1.5);
            let mut att = vec![0.0f32; len];
            let keys = kv.keys(0, 0, len);
            scores::<false>(Kernel::SCALAR, keys, &q, hd, 0.5, &mut att, &mut Vec::new());
            let (mut qq, mut dq) = (vec![0i8; hd], vec![0.0f32; hd / 32]);
            quantize_row_q8_act_ref(&q, &mut qq, &mut dq);
            let rows = match kv.keys(0, 0, len) {
                Rows::Q8_0(r) | Rows::Q4_0(r) => r,
                _ => unreachable!(),
            };
            let bb = ty.block_bytes();
            for (j, &got) in att.iter().enumerate() {
                let mut want = 0.0f32;
                for b in 0..hd / 32 {
                    let blk = &rows[(j * hd / 32 + b) * bb..][..bb];
                    let dk = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                    // Codes from the dequantizer with the scale set to 1.
                    let mut unit = blk.to_vec();
                    unit[..2].copy_from_slice(&half::f16::ONE.to_le_bytes());
                    let mut codes = [0.0f32; 32];
                    crate::quants::dequantize_row(
                        if ty == KvType::Q8_0 {
                            crate::quants::GgmlType::Q8_0
                        } else {
                            crate::quants::GgmlType::Q4_0
                        },
                        &unit,
                        &mut codes,
                    )
                    .unwrap();
                    let isum: i32 = codes
                        .iter()
                        .zip(&qq[32 * b..32 * b + 32])
                        .map(|(&c, &x)| c as i32 * i32::from(x))
                        .sum();
                    want += isum as f32 * (dk * dq[b]);
                }
                assert_eq!(got.to_bits(), (want * 0.5).to_bits(), "{ty} row {j}");
            }
        }
    }
}
