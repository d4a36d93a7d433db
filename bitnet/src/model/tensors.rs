//! The tensors of a model file: names, shapes and kinds, in file order. The loader checks
//! them and the synthetic writer (`crate::synth`) writes them, so the two cannot disagree.

use alloc::format;
use alloc::string::String;

use super::{Arch, Config};

pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT_NORM: &str = "output_norm.weight";
/// The untied head; without it the head is `TOKEN_EMBD`.
pub const OUTPUT: &str = "output.weight";

/// A dimension a block tensor's shape is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// The hidden size.
    Model,
    /// All query heads together.
    Q,
    /// All key (or value) heads together.
    Kv,
    /// The feed-forward size.
    Ff,
}

/// The sizes [`Dim`] stands for in one model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockDims {
    pub dim: usize,
    pub q_dim: usize,
    pub kv_dim: usize,
    pub n_ff: usize,
}

impl BlockDims {
    pub fn of(c: &Config) -> BlockDims {
        BlockDims {
            dim: c.dim,
            q_dim: c.q_dim(),
            kv_dim: c.kv_dim(),
            n_ff: c.n_ff,
        }
    }

    pub fn get(&self, d: Dim) -> usize {
        match d {
            Dim::Model => self.dim,
            Dim::Q => self.q_dim,
            Dim::Kv => self.kv_dim,
            Dim::Ff => self.n_ff,
        }
    }
}

/// A float RMS-norm weight vector of `len` elements: `blk.N.<name>.weight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormSpec {
    pub name: &'static str,
    pub len: Dim,
}

/// A ternary projection of `rows` outputs and `cols` inputs (GGUF dims `[cols, rows]`):
/// `blk.N.<name>.weight`, and optionally a one-element `blk.N.<name>.scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TernarySpec {
    pub name: &'static str,
    pub rows: Dim,
    pub cols: Dim,
}

/// One tensor of every block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorSpec {
    Norm(NormSpec),
    Ternary(TernarySpec),
}

const fn norm(name: &'static str, len: Dim) -> NormSpec {
    NormSpec { name, len }
}

const fn ternary(name: &'static str, rows: Dim, cols: Dim) -> TernarySpec {
    TernarySpec { name, rows, cols }
}

pub const ATTN_NORM: NormSpec = norm("attn_norm", Dim::Model);
pub const ATTN_Q: TernarySpec = ternary("attn_q", Dim::Q, Dim::Model);
pub const ATTN_K: TernarySpec = ternary("attn_k", Dim::Kv, Dim::Model);
pub const ATTN_V: TernarySpec = ternary("attn_v", Dim::Kv, Dim::Model);
/// BitNet's extra norm before the attention output projection.
pub const ATTN_SUB_NORM: NormSpec = norm("attn_sub_norm", Dim::Q);
pub const ATTN_OUTPUT: TernarySpec = ternary("attn_output", Dim::Model, Dim::Q);
pub const FFN_NORM: NormSpec = norm("ffn_norm", Dim::Model);
pub const FFN_GATE: TernarySpec = ternary("ffn_gate", Dim::Ff, Dim::Model);
pub const FFN_UP: TernarySpec = ternary("ffn_up", Dim::Ff, Dim::Model);
/// BitNet's extra norm before the FFN down projection.
pub const FFN_SUB_NORM: NormSpec = norm("ffn_sub_norm", Dim::Ff);
pub const FFN_DOWN: TernarySpec = ternary("ffn_down", Dim::Model, Dim::Ff);

/// Every tensor of a BitNet block (`bitnet-b1.58`, `bitnet`), in the order the writer emits
/// them and the loader checks them.
pub const LAYER_TENSORS: [TensorSpec; 11] = [
    TensorSpec::Norm(ATTN_NORM),
    TensorSpec::Ternary(ATTN_Q),
    TensorSpec::Ternary(ATTN_K),
    TensorSpec::Ternary(ATTN_V),
    TensorSpec::Norm(ATTN_SUB_NORM),
    TensorSpec::Ternary(ATTN_OUTPUT),
    TensorSpec::Norm(FFN_NORM),
    TensorSpec::Ternary(FFN_GATE),
    TensorSpec::Ternary(FFN_UP),
    TensorSpec::Norm(FFN_SUB_NORM),
    TensorSpec::Ternary(FFN_DOWN),
];

/// A ternary `llama` block: Llama's layer with ternary projections and no sub-norms
/// (transformers' `BitLinear` without `use_rms_norm` quantizes its raw input).
pub const LLAMA_LAYER_TENSORS: [TensorSpec; 9] = [
    TensorSpec::Norm(ATTN_NORM),
    TensorSpec::Ternary(ATTN_Q),
    TensorSpec::Ternary(ATTN_K),
    TensorSpec::Ternary(ATTN_V),
    TensorSpec::Ternary(ATTN_OUTPUT),
    TensorSpec::Norm(FFN_NORM),
    TensorSpec::Ternary(FFN_GATE),
    TensorSpec::Ternary(FFN_UP),
    TensorSpec::Ternary(FFN_DOWN),
];

/// The tensors a block of `arch` has, in file order.
pub fn layer_tensors(arch: Arch) -> &'static [TensorSpec] {
    match arch {
        Arch::BitnetB158 | Arch::Bitnet => &LAYER_TENSORS,
        Arch::Llama => &LLAMA_LAYER_TENSORS,
    }
}

/// Whether a block of `arch` has the norm `spec`.
pub fn has_norm(arch: Arch, spec: &NormSpec) -> bool {
    layer_tensors(arch).contains(&TensorSpec::Norm(*spec))
}

/// `blk.<layer>.<name>.weight`.
pub fn weight_name(layer: usize, name: &str) -> String {
    format!("blk.{layer}.{name}.weight")
}

/// `blk.<layer>.<name>.scale`: a ternary projection's optional output scale.
pub fn scale_name(layer: usize, name: &str) -> String {
    format!("blk.{layer}.{name}.scale")
}
