//! The forward pass, one function that reads like the paper (`formats.md` section 4).

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use super::{Activation, BitLinear, Config, KvCache, KvType, Model, ModelError};
use crate::kernels::act::rmsnorm_quantize;
use crate::kernels::{ActBatch, Kernel};
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

/// One sequence's KV cache, position and scratch buffers (n = tokens in this call).
pub struct State {
    pub kv: KvCache,
    /// Positions already in the cache.
    pub pos: usize,
    x: Vec<f32>,      // (n, dim) residual stream
    acts: ActBatch,   // (n, in) int8 input of the current BitLinear
    q: Vec<f32>,      // (n, q_dim)
    k: Vec<f32>,      // (n, kv_dim)
    v: Vec<f32>,      // (n, kv_dim)
    o: Vec<f32>,      // (n, q_dim) attention output
    proj: Vec<f32>,   // (n, dim) output of attn_output / ffn_down
    gate: Vec<f32>,   // (n, n_ff)
    up: Vec<f32>,     // (n, n_ff)
    tmp: Vec<f32>,    // (rows, n) a kernel's output, rows outermost
    logits: Vec<f32>, // (n_out, vocab)
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
            x: Vec::new(),
            acts: ActBatch::default(),
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            o: Vec::new(),
            proj: Vec::new(),
            gate: Vec::new(),
            up: Vec::new(),
            tmp: Vec::new(),
            logits: Vec::new(),
        })
    }

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

const MAX_KV_BYTES: usize = if usize::BITS >= 64 { 64 << 30 } else { 1 << 30 };

/// `out` (n, rows) = `l` applied to every token of `x`.
fn linear(
    mm: &dyn Matmul,
    exec: &dyn Exec,
    l: &BitLinear,
    x: &ActBatch,
    tmp: &mut Vec<f32>,
    out: &mut [f32],
) {
    let (rows, n) = (l.w.rows, x.n_tokens);
    tmp.resize(rows * n, 0.0);
    // A few chunks per thread so uneven progress still balances.
    let chunk_rows = rows.div_ceil(exec.threads() * 4).max(1);
    exec.for_each_chunk(&mut tmp[..rows * n], chunk_rows * n, &|i, chunk| {
        mm.bitmatmul(&l.w, x, i * chunk_rows, chunk)
    });
    for t in 0..n {
        for r in 0..rows {
            out[t * rows + r] = tmp[r * n + t] * l.out_scale;
        }
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
        let c = &self.config;
        let n = tokens.len();
        if n == 0 {
            return Err(ModelError::Input("no tokens to evaluate".into()));
        }
        if s.pos + n > s.kv.ctx {
            return Err(ModelError::Input(format!(
                "context full: {} + {n} tokens exceed the context of {} (raise --ctx, up to the model's {})",
                s.pos, s.kv.ctx, c.ctx_len
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary (0..{})",
                c.vocab
            )));
        }
        s.resize(c, n);
        let (dim, q_dim, kv_dim, eps) = (c.dim, c.q_dim(), c.kv_dim(), c.eps);
        let inv_freq = ops::rope_inv_freq(c.n_rot, c.rope_theta);

        for (t, &tok) in tokens.iter().enumerate() {
            self.token_embd
                .dequantize_row(tok as usize, &mut s.x[t * dim..(t + 1) * dim]);
        }

        for (layer, b) in self.blocks.iter().enumerate() {
            // Attention: a = rmsnorm(x) * attn_norm; q, k, v = BitLinear(a)
            rmsnorm_quantize(&s.x, &b.attn_norm, eps, &mut s.acts);
            linear(mm, exec, &b.wq, &s.acts, &mut s.tmp, &mut s.q);
            linear(mm, exec, &b.wk, &s.acts, &mut s.tmp, &mut s.k);
            linear(mm, exec, &b.wv, &s.acts, &mut s.tmp, &mut s.v);
            for t in 0..n {
                let pos = s.pos + t;
                for head in s.q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(c.head_dim) {
                    ops::rope_neox(head, pos, &inv_freq);
                }
                let k = &mut s.k[t * kv_dim..(t + 1) * kv_dim];
                for head in k.chunks_exact_mut(c.head_dim) {
                    ops::rope_neox(head, pos, &inv_freq);
                }
                s.kv.write(layer, pos, k, &s.v[t * kv_dim..(t + 1) * kv_dim]);
            }
            attention(c, exec, &s.kv, layer, s.pos, &s.q, &mut s.o);
            // o = rmsnorm(o) * attn_sub_norm; x = x + BitLinear_o(o)
            rmsnorm_quantize(&s.o, &b.attn_sub_norm, eps, &mut s.acts);
            linear(mm, exec, &b.wo, &s.acts, &mut s.tmp, &mut s.proj);
            add(&mut s.x, &s.proj);

            // FFN: g = act(BitLinear_gate(f)) * BitLinear_up(f), f = rmsnorm(x) * ffn_norm
            rmsnorm_quantize(&s.x, &b.ffn_norm, eps, &mut s.acts);
            linear(mm, exec, &b.w_gate, &s.acts, &mut s.tmp, &mut s.gate);
            linear(mm, exec, &b.w_up, &s.acts, &mut s.tmp, &mut s.up);
            let act = match c.act {
                Activation::Relu2 => ops::relu2,
                Activation::Silu => ops::silu,
            };
            for (g, &u) in s.gate.iter_mut().zip(&s.up) {
                *g = act(*g) * u;
            }
            // g = rmsnorm(g) * ffn_sub_norm; x = x + BitLinear_down(g)
            rmsnorm_quantize(&s.gate, &b.ffn_sub_norm, eps, &mut s.acts);
            linear(mm, exec, &b.w_down, &s.acts, &mut s.tmp, &mut s.proj);
            add(&mut s.x, &s.proj);
        }
        s.pos += n;

        // logits = head . (rmsnorm(x) * output_norm)
        let first = if all_logits { 0 } else { n - 1 };
        let n_out = n - first;
        let mut normed = vec![0.0f32; n_out * dim]; // (n_out, dim)
        for t in 0..n_out {
            let x = &s.x[(first + t) * dim..(first + t + 1) * dim];
            ops::rmsnorm(
                &mut normed[t * dim..(t + 1) * dim],
                x,
                &self.output_norm,
                eps,
            );
        }
        self.head_matmul(exec, &normed, n_out, &mut s.tmp, &mut s.logits);
        Ok(&s.logits)
    }

    /// `logits` (n, vocab) = head (vocab, dim) . `x` (n, dim), in f32.
    fn head_matmul(
        &self,
        exec: &dyn Exec,
        x: &[f32],
        n: usize,
        tmp: &mut Vec<f32>,
        logits: &mut Vec<f32>,
    ) {
        let head = self.head();
        let (vocab, dim) = (head.rows, head.cols);
        tmp.resize(vocab * n, 0.0);
        let chunk_rows = vocab.div_ceil(exec.threads() * 4).max(1);
        exec.for_each_chunk(&mut tmp[..vocab * n], chunk_rows * n, &|i, chunk| {
            let mut row = vec![0.0f32; dim]; // (dim,) one dequantized head row
            for (j, out) in chunk.chunks_exact_mut(n).enumerate() {
                head.dequantize_row(i * chunk_rows + j, &mut row);
                for (t, y) in out.iter_mut().enumerate() {
                    *y = ops::dot(&row, &x[t * dim..(t + 1) * dim]);
                }
            }
        });
        logits.resize(n * vocab, 0.0);
        for t in 0..n {
            for r in 0..vocab {
                logits[t * vocab + r] = tmp[r * n + t];
            }
        }
    }
}

/// `o` (n, q_dim) = softmax(q k^T / sqrt(head_dim) + causal mask) v, per head; query head
/// h reads kv head h / (n_head / n_kv_head).
fn attention(
    c: &Config,
    exec: &dyn Exec,
    kv: &KvCache,
    layer: usize,
    pos0: usize,
    q: &[f32],
    o: &mut [f32],
) {
    let (hd, n_head) = (c.head_dim, c.n_head);
    let group = c.n_head / c.n_kv_head;
    let scale = 1.0 / libm::sqrtf(hd as f32);
    exec.for_each_chunk(o, hd, &|i, out| {
        let (t, h) = (i / n_head, i % n_head);
        let pos = pos0 + t;
        let kv_off = (h / group) * hd;
        let qh = &q[i * hd..(i + 1) * hd];
        let mut row = vec![0.0f32; hd]; // (head_dim,) one cached key or value
        let mut att = vec![0.0f32; pos + 1]; // (pos + 1,) scores, then weights
        for (j, a) in att.iter_mut().enumerate() {
            kv.read_k(layer, j, kv_off, &mut row);
            *a = ops::dot(qh, &row) * scale;
        }
        ops::softmax(&mut att);
        out.fill(0.0);
        for (j, &a) in att.iter().enumerate() {
            kv.read_v(layer, j, kv_off, &mut row);
            for (y, &v) in out.iter_mut().zip(&row) {
                *y += a * v;
            }
        }
    });
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
