//! The forward pass, one function that reads like the paper (`formats.md` section 4).
//!
//! Every linear layer sees all tokens of a call at once as a matrix: the prompt of one
//! sequence (prefill), the prompts of several sequences, or one token from each ([`Batch`]),
//! so each weight read serves every token. Only attention looks at which sequence a token
//! belongs to.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use core::sync::atomic::AtomicU32;

use super::attention::attention;
use super::decode_attention::Outputs;
use super::linear::{gated, linear, Matmul, Store};
use super::{ties, Config, KvCache, KvType, KvTypes, Model, ModelError};
use crate::kernels::{ActBatch, HeadActs};
use crate::ops;
use crate::parallel::Exec;
use crate::profile::{self, Part};

/// Scratch buffers of one forward call (n = tokens in the call).
#[derive(Default)]
pub(crate) struct Buffers {
    x: Vec<f32>,             // (n, dim) residual stream
    acts: ActBatch,          // (n, in) int8 input of the current BitLinear
    q: Vec<f32>,             // (n, q_dim)
    k: Vec<f32>,             // (n, kv_dim)
    v: Vec<f32>,             // (n, kv_dim)
    o: Vec<f32>,             // (n, q_dim) attention output
    gate: Vec<f32>,          // (n, n_ff)
    up: Vec<f32>,            // (n, n_ff)
    tmp: Vec<f32>,           // (rows, n) kernels' output, rows outermost
    normed: Vec<f32>,        // (n_out, dim) final hidden states
    head_acts: HeadActs,     // (n_out, dim) int8 input of a Q8_0 head
    logits: Vec<f32>,        // (n_out, vocab)
    written: Vec<AtomicU32>, // (n_kv_head,) a decode section's kv heads written
}

impl Buffers {
    fn resize(&mut self, c: &Config, n: usize) {
        self.x.resize(n * c.dim, 0.0);
        self.q.resize(n * c.q_dim(), 0.0);
        self.k.resize(n * c.kv_dim(), 0.0);
        self.v.resize(n * c.kv_dim(), 0.0);
        self.o.resize(n * c.q_dim(), 0.0);
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
    pub fn new(c: &Config, ctx: usize, kv_type: impl Into<KvTypes>) -> Result<State, ModelError> {
        let kv_type = kv_type.into();
        // A hostile file can claim any context length: size the cache before allocating.
        let bytes = KvCache::bytes_needed(kv_type, c.n_layer, ctx, c.kv_dim());
        if bytes.is_none_or(|b| b > MAX_KV_BYTES) {
            return Err(kv_too_large(c, 1, ctx));
        }
        Ok(State {
            kv: KvCache::new(kv_type, c.n_layer, ctx, c.n_kv_head, c.head_dim)?,
            pos: 0,
            buf: Buffers::default(),
        })
    }
}

/// Independent sequences evaluated together, sharing every weight read: their prompts in one
/// [`Model::forward_seqs`], then one token of each per [`Model::forward_batch`]. Each has its
/// own cache and position.
pub struct Batch {
    pub seqs: Vec<State>,
    buf: Buffers,
}

impl Batch {
    /// `n` fresh sequences of up to `ctx` positions each.
    pub fn new(
        c: &Config,
        n: usize,
        ctx: usize,
        kv_type: impl Into<KvTypes>,
    ) -> Result<Batch, ModelError> {
        let kv_type = kv_type.into();
        let bytes = KvCache::bytes_needed(kv_type, c.n_layer, ctx, c.kv_dim())
            .and_then(|b| b.checked_mul(n));
        if bytes.is_none_or(|b| b > MAX_KV_BYTES) {
            return Err(kv_too_large(c, n, ctx));
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

impl From<State> for Batch {
    /// A batch of one sequence, going on from `s`.
    fn from(s: State) -> Batch {
        Batch {
            seqs: vec![s],
            buf: Buffers::default(),
        }
    }
}

const MAX_KV_BYTES: usize = if usize::BITS >= 64 { 64 << 30 } else { 1 << 30 };

fn kv_too_large(c: &Config, seqs: usize, ctx: usize) -> ModelError {
    ModelError::KvCacheTooLarge {
        seqs,
        ctx,
        layers: c.n_layer,
        kv_dim: c.kv_dim(),
        limit: MAX_KV_BYTES,
    }
}

/// Where each token of a call goes: (sequence, position).
pub(super) type Placement = [(usize, usize)];

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
        let outs: Vec<usize> = (if all_logits { 0 } else { n - 1 }..n).collect();
        self.forward_core(mm, exec, &mut s.buf, &mut [&mut s.kv], &at, tokens, &outs)?;
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
        let prompts: Vec<&[u32]> = tokens.chunks(1).collect();
        self.forward_seqs(exec, batch, &prompts, false)
    }

    /// Evaluates `prompts[i]` into sequence `i` of `batch` at its next positions, the tokens
    /// of every sequence in one pass, and returns the logits (n_out, vocab): of every token,
    /// sequence by sequence, if `all_logits`, else of each sequence's last token.
    pub fn forward_seqs<'s>(
        &self,
        exec: &dyn Exec,
        batch: &'s mut Batch,
        prompts: &[&[u32]],
        all_logits: bool,
    ) -> Result<&'s [f32], ModelError> {
        if prompts.len() != batch.seqs.len() || prompts.iter().any(|p| p.is_empty()) {
            return Err(ModelError::Input(format!(
                "{} prompts, {} of them empty, for a batch of {} sequences",
                prompts.len(),
                prompts.iter().filter(|p| p.is_empty()).count(),
                batch.seqs.len()
            )));
        }
        let (mut at, mut outs) = (Vec::new(), Vec::new());
        for (i, (s, p)) in batch.seqs.iter().zip(prompts).enumerate() {
            if all_logits {
                outs.extend(at.len()..at.len() + p.len());
            } else {
                outs.push(at.len() + p.len() - 1);
            }
            at.extend((0..p.len()).map(|t| (i, s.pos + t)));
        }
        let tokens: Vec<u32> = prompts.concat();
        let mut kvs: Vec<&mut KvCache> = batch.seqs.iter_mut().map(|s| &mut s.kv).collect();
        let b = &mut batch.buf;
        self.forward_core(&self.kernel, exec, b, &mut kvs, &at, &tokens, &outs)?;
        for (s, p) in batch.seqs.iter_mut().zip(prompts) {
            s.pos += p.len();
        }
        Ok(&batch.buf.logits)
    }

    /// The forward pass of `tokens`, token `t` going to sequence `at[t].0` at position
    /// `at[t].1`; the logits of tokens `outs` land in `b.logits`, in that order.
    #[allow(clippy::too_many_arguments)]
    fn forward_core(
        &self,
        mm: &dyn Matmul,
        exec: &dyn Exec,
        b: &mut Buffers,
        kvs: &mut [&mut KvCache],
        at: &Placement,
        tokens: &[u32],
        outs: &[usize],
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let n = tokens.len();
        for &(seq, pos) in at {
            if pos >= kvs[seq].ctx {
                return Err(ModelError::ContextFull {
                    pos,
                    ctx: kvs[seq].ctx,
                    model_ctx: c.ctx_len,
                });
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
        let span = profile::span(Part::RopeKv);
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
        drop(span);

        let span = profile::span(Part::Embed);
        for (t, &tok) in tokens.iter().enumerate() {
            self.token_embd
                .dequantize_row(tok as usize, &mut b.x[t * dim..(t + 1) * dim]);
        }

        drop(span);

        for (layer, blk) in self.blocks.iter().enumerate() {
            // BITNET_DUMP_TIES (std builds): the codes chosen near rounding ties, for the
            // float64 reference; a no-op unless the variable is set.
            let dump_ties = |site, x: &[f32], w: Option<&[f32]>, acts: &ActBatch| {
                ties::record(layer, site, x, w.map(|w| (w, eps)), acts, at)
            };
            // Attention: a = rmsnorm(x) * attn_norm; q, k, v = BitLinear(a)
            let span = profile::span(Part::Norms);
            ops::norm_quantize(exec, &b.x, &blk.attn_norm, eps, &mut b.acts);
            dump_ties("attn_norm", &b.x, Some(&blk.attn_norm), &b.acts)?;
            drop(span);
            let sub_norm = blk.attn_sub_norm.as_deref();
            if let [(seq, pos)] = *at {
                // q, k, v, RoPE, the cache write and attention: one section.
                let span = profile::span(Part::Ternary);
                let out = Outputs {
                    q: &mut b.q,
                    k: &mut b.k,
                    v: &mut b.v,
                    o: &mut b.o,
                    written: &mut b.written,
                };
                let (kv, rot) = (&mut *kvs[seq], &rope[..half]);
                let next = sub_norm.unwrap_or_default();
                self.decode_attention(mm, exec, layer, &b.acts, rot, kv, pos, out, next);
                drop(span);
                if kvs[seq].types == KvType::F16.into() {
                    ties::record_kv(layer, pos, &b.k, &b.v)?;
                }
            } else {
                let span = profile::span(Part::Ternary);
                linear(
                    mm,
                    exec,
                    &[&blk.wq, &blk.wk, &blk.wv],
                    &b.acts,
                    &mut b.tmp,
                    &mut [&mut b.q, &mut b.k, &mut b.v],
                    Store::Set,
                    sub_norm.unwrap_or_default(),
                );
                drop(span);
                let span = profile::span(Part::RopeKv);
                for (t, &(seq, pos)) in at.iter().enumerate() {
                    let rot = &rope[t * half..(t + 1) * half];
                    for head in b.q[t * q_dim..(t + 1) * q_dim].chunks_exact_mut(c.head_dim) {
                        ops::rope_with(c.rope_type, head, rot);
                    }
                    let k = &mut b.k[t * kv_dim..(t + 1) * kv_dim];
                    for head in k.chunks_exact_mut(c.head_dim) {
                        ops::rope_with(c.rope_type, head, rot);
                    }
                    let v = &b.v[t * kv_dim..(t + 1) * kv_dim];
                    kvs[seq].write(layer, pos, k, v);
                    if kvs[seq].types == KvType::F16.into() {
                        // BITNET_DUMP_KV_TIES: the f16 stored near rounding midpoints.
                        ties::record_kv(layer, pos, k, v)?;
                    }
                }
                drop(span);
                let span = profile::span(Part::Attention);
                attention(c, self.kernel, exec, kvs, layer, at, &b.q, &mut b.o);
                drop(span);
            }
            // o = rmsnorm(o) * attn_sub_norm (BitNet; llama has none); x = x + BitLinear_o(o)
            let span = profile::span(Part::Norms);
            ops::maybe_norm_quantize(exec, &b.o, sub_norm, q_dim, eps, &mut b.acts);
            let site = sub_norm_site(sub_norm, "attn_sub_norm", "attn_output");
            dump_ties(site, &b.o, sub_norm, &b.acts)?;
            drop(span);
            let span = profile::span(Part::Ternary);
            let x = &mut [&mut b.x];
            let next = &blk.ffn_norm;
            linear(
                mm,
                exec,
                &[&blk.wo],
                &b.acts,
                &mut b.tmp,
                x,
                Store::Add,
                next,
            );
            drop(span);

            // FFN: g = act(BitLinear_gate(f)) * BitLinear_up(f), f = rmsnorm(x) * ffn_norm
            let span = profile::span(Part::Norms);
            ops::norm_quantize(exec, &b.x, &blk.ffn_norm, eps, &mut b.acts);
            dump_ties("ffn_norm", &b.x, Some(&blk.ffn_norm), &b.acts)?;
            drop(span);
            let span = profile::span(Part::Ternary);
            let (w_gate, w_up) = (&blk.w_gate, &blk.w_up);
            let (gate, up) = (&mut b.gate, &mut b.up);
            let next = blk.ffn_sub_norm.as_deref().unwrap_or_default();
            gated(
                mm, exec, c.act, w_gate, w_up, &b.acts, &mut b.tmp, gate, up, next,
            );
            drop(span);
            // g = rmsnorm(g) * ffn_sub_norm (BitNet; llama has none); x = x + BitLinear_down(g)
            let span = profile::span(Part::Norms);
            let sub_norm = blk.ffn_sub_norm.as_deref();
            ops::maybe_norm_quantize(exec, &b.gate, sub_norm, c.n_ff, eps, &mut b.acts);
            let site = sub_norm_site(sub_norm, "ffn_sub_norm", "ffn_down");
            dump_ties(site, &b.gate, sub_norm, &b.acts)?;
            drop(span);
            let _span = profile::span(Part::Ternary);
            let x = &mut [&mut b.x];
            let next = self
                .blocks
                .get(layer + 1)
                .map_or(&self.output_norm, |b| &b.attn_norm);
            linear(
                mm,
                exec,
                &[&blk.w_down],
                &b.acts,
                &mut b.tmp,
                x,
                Store::Add,
                next,
            );
        }

        // logits = head . (rmsnorm(x) * output_norm)
        let _span = profile::span(Part::Head);
        let n_out = outs.len();
        b.normed.resize(n_out * dim, 0.0);
        for (o, &t) in outs.iter().enumerate() {
            let x = &b.x[t * dim..(t + 1) * dim];
            ops::rmsnorm(
                &mut b.normed[o * dim..(o + 1) * dim],
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

/// The tie-dump site of a sub-norm's output: the norm's name, or without the norm the name
/// of the projection whose raw input is quantized (`model/ties.rs`).
fn sub_norm_site(norm: Option<&[f32]>, with: &'static str, without: &'static str) -> &'static str {
    if norm.is_some() {
        with
    } else {
        without
    }
}
