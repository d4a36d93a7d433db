//! The forward pass, one function that reads like the paper (`formats.md` section 4).
//!
//! Every linear layer sees all tokens of a call at once as a matrix: the prompt of one
//! sequence (prefill), or one token from each of several sequences ([`Batch`]), so each
//! weight read serves every token. Only attention looks at which sequence a token belongs to.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::{ties, Activation, BitLinear, Config, KvCache, KvType, Model, ModelError};
use crate::kernels::act::{quantize_row_i8_ref, rmsnorm_quantize};
use crate::kernels::{ActBatch, HeadActs, Kernel};
use crate::ops;
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

/// Scratch buffers of one forward call (n = tokens in the call).
#[derive(Default)]
pub(crate) struct Buffers {
    x: Vec<f32>,         // (n, dim) residual stream
    acts: ActBatch,      // (n, in) int8 input of the current BitLinear
    q: Vec<f32>,         // (n, q_dim)
    k: Vec<f32>,         // (n, kv_dim)
    v: Vec<f32>,         // (n, kv_dim)
    o: Vec<f32>,         // (n, q_dim) attention output
    proj: Vec<f32>,      // (n, dim) output of attn_output / ffn_down
    gate: Vec<f32>,      // (n, n_ff)
    up: Vec<f32>,        // (n, n_ff)
    tmp: Vec<f32>,       // (rows, n) kernels' output, rows outermost
    normed: Vec<f32>,    // (n_out, dim) final hidden states
    head_acts: HeadActs, // (n_out, dim) int8 input of a Q8_0 head
    logits: Vec<f32>,    // (n_out, vocab)
}

impl Buffers {
    fn resize(&mut self, c: &Config, n: usize) {
        self.x.resize(n * c.dim, 0.0);
        self.q.resize(n * c.q_dim(), 0.0);
        self.k.resize(n * c.kv_dim(), 0.0);
        self.v.resize(n * c.kv_dim(), 0.0);
        self.o.resize(n * c.q_dim(), 0.0);
        self.proj.resize(n * c.dim, 0.0);
        self.gate.resize(n * c.n_ff, 0.0);
        self.up.resize(n * c.n_ff, 0.0);
    }
}

/// One sequence's KV cache, position and scratch buffers.
pub struct State {
    pub kv: KvCache,
    /// Positions already in the cache.
    pub pos: usize,
    buf: Buffers,
}

impl State {
    /// Fresh state holding up to `ctx` positions.
    pub fn new(c: &Config, ctx: usize, kv_type: KvType) -> Result<State, ModelError> {
        // A hostile file can claim any context length: size the cache before allocating.
        let bytes = KvCache::bytes_needed(kv_type, c.n_layer, ctx, c.kv_dim());
        if bytes.is_none_or(|b| b > MAX_KV_BYTES) {
            return Err(ModelError::Unsupported(format!(
                "a KV cache of {ctx} positions x {} layers x {} would exceed {} GiB; lower --ctx",
                c.n_layer,
                c.kv_dim(),
                MAX_KV_BYTES >> 30
            )));
        }
        Ok(State {
            kv: KvCache::new(kv_type, c.n_layer, ctx, c.kv_dim()),
            pos: 0,
            buf: Buffers::default(),
        })
    }
}

/// Independent sequences decoded together: one token of each per [`Model::forward_batch`],
/// sharing every weight read. Each has its own cache and position.
pub struct Batch {
    pub seqs: Vec<State>,
    buf: Buffers,
}

impl Batch {
    /// `n` fresh sequences of up to `ctx` positions each.
    pub fn new(c: &Config, n: usize, ctx: usize, kv_type: KvType) -> Result<Batch, ModelError> {
        let bytes = KvCache::bytes_needed(kv_type, c.n_layer, ctx, c.kv_dim())
            .and_then(|b| b.checked_mul(n));
        if bytes.is_none_or(|b| b > MAX_KV_BYTES) {
            return Err(ModelError::Unsupported(format!(
                "{n} KV caches of {ctx} positions would exceed {} GiB; lower --ctx or --batch-size",
                MAX_KV_BYTES >> 30
            )));
        }
        let seqs = (0..n)
            .map(|_| State::new(c, ctx, kv_type))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Batch {
            seqs,
            buf: Buffers::default(),
        })
    }
}

const MAX_KV_BYTES: usize = if usize::BITS >= 64 { 64 << 30 } else { 1 << 30 };

/// Where each token of a call goes: (sequence, position).
type Placement = [(usize, usize)];

/// Rows per chunk when the matrices `rows` are computed in one parallel section: many
/// chunks per thread, so a thread the OS preempts holds up at most a small one; a divisor of
/// every row count, so no chunk straddles two matrices; a multiple of 16 where possible, so
/// chunks split no row group of the Rows16 layout.
fn chunk_rows(exec: &dyn Exec, rows: &[usize]) -> usize {
    let g = rows.iter().fold(0, |g, &r| gcd(g, r));
    if exec.threads() == 1 {
        return g.max(1);
    }
    let total: usize = rows.iter().sum();
    let target = total.div_ceil(exec.threads() * 16).max(1);
    let divisors = || (1..=g.min(target)).rev().filter(move |d| g % d == 0);
    divisors()
        .find(|d| d % 16 == 0)
        .or_else(|| divisors().next())
        .unwrap_or(1)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// `outs[i]` (n, rows_i) = `ls[i]` applied to every token of `x`, all matrices in one
/// parallel section (q, k, v share their input; so do gate and up).
fn linear(
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
        mm.bitmatmul(&ls[m].w, x, r, out)
    });
    // (rows, n) -> (n, rows), one token per task: for a prompt this is a sizeable copy.
    let mut off = 0;
    for ((l, out), &rows) in ls.iter().zip(outs.iter_mut()).zip(&rows) {
        let tmp = &tmp[off * n..(off + rows) * n];
        exec.for_each_chunk(&mut out[..n * rows], rows, &|t, o| {
            for (r, y) in o.iter_mut().enumerate() {
                *y = tmp[r * n + t] * l.out_scale;
            }
        });
        off += rows;
    }
}

impl Model {
    /// Evaluates `tokens` at positions `state.pos..`, appends them to the cache and returns
    /// the logits (n_out, vocab): of every token if `all_logits`, else of the last only.
    pub fn forward<'s>(
        &self,
        exec: &dyn Exec,
        state: &'s mut State,
        tokens: &[u32],
        all_logits: bool,
    ) -> Result<&'s [f32], ModelError> {
        self.forward_with(&self.kernel, exec, state, tokens, all_logits)
    }

    pub(crate) fn forward_with<'s>(
        &self,
        mm: &dyn Matmul,
        exec: &dyn Exec,
        s: &'s mut State,
        tokens: &[u32],
        all_logits: bool,
    ) -> Result<&'s [f32], ModelError> {
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::Input("no tokens to evaluate".into()));
        }
        let at: Vec<(usize, usize)> = (0..n).map(|t| (0, s.pos + t)).collect();
        let first = if all_logits { 0 } else { n - 1 };
        self.forward_core(mm, exec, &mut s.buf, &mut [&mut s.kv], &at, tokens, first)?;
        s.pos += n;
        Ok(&s.buf.logits)
    }

    /// Evaluates token `tokens[i]` of every sequence `i` of `batch` at its next position and
    /// returns the logits (n_seqs, vocab).
    pub fn forward_batch<'s>(
        &self,
        exec: &dyn Exec,
        batch: &'s mut Batch,
        tokens: &[u32],
    ) -> Result<&'s [f32], ModelError> {
        if tokens.len() != batch.seqs.len() || tokens.is_empty() {
            return Err(ModelError::Input(format!(
                "{} tokens for a batch of {} sequences",
                tokens.len(),
                batch.seqs.len()
            )));
        }
        let at: Vec<(usize, usize)> = batch
            .seqs
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.pos))
            .collect();
        let mut kvs: Vec<&mut KvCache> = batch.seqs.iter_mut().map(|s| &mut s.kv).collect();
        self.forward_core(&self.kernel, exec, &mut batch.buf, &mut kvs, &at, tokens, 0)?;
        for s in &mut batch.seqs {
            s.pos += 1;
        }
        Ok(&batch.buf.logits)
    }

    /// The forward pass of `tokens`, token `t` going to sequence `at[t].0` at position
    /// `at[t].1`; logits of tokens `first..` land in `b.logits`.
    #[allow(clippy::too_many_arguments)]
    fn forward_core(
        &self,
        mm: &dyn Matmul,
        exec: &dyn Exec,
        b: &mut Buffers,
        kvs: &mut [&mut KvCache],
        at: &Placement,
        tokens: &[u32],
        first: usize,
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let n = tokens.len();
        for &(seq, pos) in at {
            if pos >= kvs[seq].ctx {
                return Err(ModelError::Input(format!(
                    "context full: position {pos} is past the context of {} (raise --ctx, up to the model's {})",
                    kvs[seq].ctx, c.ctx_len
                )));
            }
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary (0..{})",
                c.vocab
            )));
        }
        b.resize(c, n);
        let (dim, q_dim, kv_dim, eps) = (c.dim, c.q_dim(), c.kv_dim(), c.eps);
        let inv_freq = ops::rope_inv_freq(c.n_rot, c.rope_theta);
        // (n, n_rot / 2) sin and cos of each token's angles: computed once, used by every
        // head of every layer.
        let half = inv_freq.len();
        let rope: Vec<(f32, f32)> = at
            .iter()
            .flat_map(|&(_, pos)| {
                inv_freq.iter().map(move |&f| {
                    let angle = pos as f32 * f;
                    (libm::sinf(angle), libm::cosf(angle))
                })
            })
            .collect();

        for (t, &tok) in tokens.iter().enumerate() {
            self.token_embd
                .dequantize_row(tok as usize, &mut b.x[t * dim..(t + 1) * dim]);
        }

        for (layer, blk) in self.blocks.iter().enumerate() {
            // BITNET_DUMP_TIES (std builds): the codes chosen near rounding ties, for the
            // float64 reference; a no-op unless the variable is set.
            let dump_ties = |norm, x: &[f32], w: &[f32], acts: &ActBatch| {
                ties::record(layer, norm, x, w, eps, acts, at)
            };
            // Attention: a = rmsnorm(x) * attn_norm; q, k, v = BitLinear(a)
            norm_quantize(exec, &b.x, &blk.attn_norm, eps, &mut b.acts);
            dump_ties("attn_norm", &b.x, &blk.attn_norm, &b.acts)?;
            linear(
                mm,
                exec,
                &[&blk.wq, &blk.wk, &blk.wv],
                &b.acts,
                &mut b.tmp,
                &mut [&mut b.q, &mut b.k, &mut b.v],
            );
            for (t, &(seq, pos)) in at.iter().enumerate() {
                let rot = &rope[t * half..(t + 1) * half];
                for head in b.q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(c.head_dim) {
                    rope_neox_with(head, rot);
                }
                let k = &mut b.k[t * kv_dim..(t + 1) * kv_dim];
                for head in k.chunks_exact_mut(c.head_dim) {
                    rope_neox_with(head, rot);
                }
                let v = &b.v[t * kv_dim..(t + 1) * kv_dim];
                kvs[seq].write(layer, pos, k, v);
                if kvs[seq].ty == KvType::F16 {
                    // BITNET_DUMP_KV_TIES: the f16 stored near rounding midpoints.
                    ties::record_kv(layer, pos, k, v)?;
                }
            }
            attention(c, exec, kvs, layer, at, &b.q, &mut b.o);
            // o = rmsnorm(o) * attn_sub_norm; x = x + BitLinear_o(o)
            norm_quantize(exec, &b.o, &blk.attn_sub_norm, eps, &mut b.acts);
            dump_ties("attn_sub_norm", &b.o, &blk.attn_sub_norm, &b.acts)?;
            linear(
                mm,
                exec,
                &[&blk.wo],
                &b.acts,
                &mut b.tmp,
                &mut [&mut b.proj],
            );
            add(&mut b.x, &b.proj);

            // FFN: g = act(BitLinear_gate(f)) * BitLinear_up(f), f = rmsnorm(x) * ffn_norm
            norm_quantize(exec, &b.x, &blk.ffn_norm, eps, &mut b.acts);
            dump_ties("ffn_norm", &b.x, &blk.ffn_norm, &b.acts)?;
            linear(
                mm,
                exec,
                &[&blk.w_gate, &blk.w_up],
                &b.acts,
                &mut b.tmp,
                &mut [&mut b.gate, &mut b.up],
            );
            let act = match c.act {
                Activation::Relu2 => ops::relu2,
                Activation::Silu => ops::silu,
            };
            for (g, &u) in b.gate.iter_mut().zip(&b.up) {
                *g = act(*g) * u;
            }
            // g = rmsnorm(g) * ffn_sub_norm; x = x + BitLinear_down(g)
            norm_quantize(exec, &b.gate, &blk.ffn_sub_norm, eps, &mut b.acts);
            dump_ties("ffn_sub_norm", &b.gate, &blk.ffn_sub_norm, &b.acts)?;
            linear(
                mm,
                exec,
                &[&blk.w_down],
                &b.acts,
                &mut b.tmp,
                &mut [&mut b.proj],
            );
            add(&mut b.x, &b.proj);
        }

        // logits = head . (rmsnorm(x) * output_norm)
        let n_out = n - first;
        b.normed.resize(n_out * dim, 0.0);
        for t in 0..n_out {
            let x = &b.x[(first + t) * dim..(first + t + 1) * dim];
            ops::rmsnorm(
                &mut b.normed[t * dim..(t + 1) * dim],
                x,
                &self.output_norm,
                eps,
            );
        }
        self.head_matmul(
            exec,
            &b.normed,
            n_out,
            &mut b.head_acts,
            &mut b.tmp,
            &mut b.logits,
        );
        Ok(())
    }
}

/// `o` (n, q_dim) = softmax(q k^T / sqrt(head_dim) + causal mask) v, per head; query head
/// h reads kv head h / (n_head / n_kv_head) of its own sequence's cache. One task per
/// (token, kv head): the query heads sharing a kv head share each cached row read.
fn attention(
    c: &Config,
    exec: &dyn Exec,
    kvs: &[&mut KvCache],
    layer: usize,
    at: &Placement,
    q: &[f32],
    o: &mut [f32],
) {
    let (hd, n_kv) = (c.head_dim, c.n_kv_head);
    let group = c.n_head / c.n_kv_head;
    let scale = 1.0 / libm::sqrtf(hd as f32);
    exec.for_each_chunk(o, group * hd, &|i, out| {
        let (t, kvh) = (i / n_kv, i % n_kv);
        let (seq, pos) = at[t];
        let kv: &KvCache = &*kvs[seq];
        let qs = &q[i * group * hd..(i + 1) * group * hd]; // (group, head_dim)
        let len = pos + 1;
        let mut row = vec![0.0f32; hd]; // (head_dim,) one cached key or value
        let mut att = vec![0.0f32; group * len]; // (group, pos + 1) scores, then weights
        for j in 0..len {
            kv.read_k(layer, j, kvh * hd, &mut row);
            for (g, qh) in qs.chunks_exact(hd).enumerate() {
                att[g * len + j] = dot_lanes(qh, &row) * scale;
            }
        }
        for a in att.chunks_exact_mut(len) {
            ops::softmax(a);
        }
        out.fill(0.0);
        for j in 0..len {
            kv.read_v(layer, j, kvh * hd, &mut row);
            for (g, y) in out.chunks_exact_mut(hd).enumerate() {
                let a = att[g * len + j];
                for (y, &v) in y.iter_mut().zip(&row) {
                    *y += a * v;
                }
            }
        }
    });
}

/// A dot product in eight independent lanes, which the compiler vectorises.
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (xa, xb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = xa
        .remainder()
        .iter()
        .zip(xb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in xa.zip(xb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// [`rmsnorm_quantize`] with the tokens spread over the threads (prefill and batches).
fn norm_quantize(exec: &dyn Exec, x: &[f32], w: &[f32], eps: f32, out: &mut ActBatch) {
    let cols = w.len();
    let n = x.len() / cols;
    if n == 1 || exec.threads() == 1 {
        return rmsnorm_quantize(x, w, eps, out);
    }
    out.resize(n, cols);
    let scales = SyncPtr(out.scale.as_mut_ptr());
    // SAFETY: i8 and u8 have the same layout; the slice is only borrowed for this call.
    let bytes =
        unsafe { core::slice::from_raw_parts_mut(out.q.as_mut_ptr().cast::<u8>(), n * cols) };
    exec.for_each_chunk_u8(bytes, cols, &|t, chunk| {
        // SAFETY: as above, back to i8.
        let q = unsafe { core::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast::<i8>(), cols) };
        let row = &x[t * cols..(t + 1) * cols];
        let inv = ops::rms_inv(row, eps);
        let s = quantize_row_i8_ref(row, |i, v| v * inv * w[i], q);
        // SAFETY: task t alone writes scale t, inside the n-long buffer.
        unsafe { *scales.get().add(t) = s };
    });
    out.update_block_sums();
}

/// A pointer tasks write disjoint elements through.
struct SyncPtr(*mut f32);

impl SyncPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

// SAFETY: only used for writes to disjoint elements by parallel tasks.
unsafe impl Sync for SyncPtr {}

/// [`ops::rope_neox`] with the sines and cosines already computed (same arithmetic).
fn rope_neox_with(head: &mut [f32], rot: &[(f32, f32)]) {
    let half = rot.len();
    for (i, &(sin, cos)) in rot.iter().enumerate() {
        let (a, b) = (head[i], head[i + half]);
        head[i] = a * cos - b * sin;
        head[i + half] = a * sin + b * cos;
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
