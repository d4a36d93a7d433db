//! The BitNet model: weights loaded from GGUF (`load`), the forward pass (`forward`).

mod attention;
#[cfg(target_arch = "x86_64")]
mod attention_tiles;
mod config;
mod decode_attention;
mod dense;
mod forward;
mod head;
mod kv_cache;
mod linear;
mod load;
pub mod tensors;
mod ties;
pub use load::tensor_type_summary;

pub use config::{Activation, Arch, Config, RopeType};
pub use dense::{DenseMatrix, Source};
pub use forward::{Batch, State};
pub use kv_cache::{KvCache, KvType, KvTypes, Rows};

use alloc::string::String;
use alloc::vec::Vec;

use crate::gguf::GgufError;
use crate::kernels::Kernel;
use crate::quants::GgmlType;
use crate::ternary::TernaryMatrix;

/// A ternary projection `y = W x` (W1.58A8) with its optional output scale tensor.
#[derive(Debug)]
pub struct BitLinear {
    pub w: TernaryMatrix,
    /// `blk.N.<w>.scale` when present (upstream conversions), else 1.
    pub out_scale: f32,
}

/// One transformer layer.
#[derive(Debug)]
pub struct Block {
    pub attn_norm: Vec<f32>, // (dim,)
    pub wq: BitLinear,       // (q_dim, dim)
    pub wk: BitLinear,       // (kv_dim, dim)
    pub wv: BitLinear,       // (kv_dim, dim)
    /// BitNet's norm before `wo`; `None` for `llama` (`wo` quantizes its raw input).
    pub attn_sub_norm: Option<Vec<f32>>, // (q_dim,)
    pub wo: BitLinear,       // (dim, q_dim)
    pub ffn_norm: Vec<f32>,  // (dim,)
    pub w_gate: BitLinear,   // (n_ff, dim)
    pub w_up: BitLinear,     // (n_ff, dim)
    /// BitNet's norm before `w_down`; `None` for `llama`.
    pub ffn_sub_norm: Option<Vec<f32>>, // (n_ff,)
    pub w_down: BitLinear,   // (dim, n_ff)
}

pub struct Model {
    pub config: Config,
    pub blocks: Vec<Block>,
    pub token_embd: DenseMatrix, // (vocab, dim)
    pub output_norm: Vec<f32>,   // (dim,)
    /// `output.weight` (vocab, dim); `None` when the head is tied to `token_embd`.
    pub output: Option<DenseMatrix>,
    pub kernel: Kernel,
}

impl Model {
    /// The matrix that maps the final hidden state to logits.
    pub fn head(&self) -> &DenseMatrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Bytes of weights one decode step reads: every ternary matrix and the head.
    pub fn bytes_per_token(&self) -> usize {
        self.ternary_bytes() + self.head().byte_len()
    }

    /// Every BitLinear of every layer, in the order a token reads them.
    fn ternary_layers(&self) -> impl Iterator<Item = &BitLinear> {
        self.blocks
            .iter()
            .flat_map(|b| [&b.wq, &b.wk, &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down])
    }

    /// Bytes of every ternary matrix (codes and scales): what the BitLinear layers read per
    /// decode step.
    pub fn ternary_bytes(&self) -> usize {
        self.ternary_layers()
            .map(|l| l.w.codes.len() + l.w.scales.len() * 4)
            .sum()
    }

    /// Every ternary matrix times one token's activations in a single parallel section, a
    /// task per matrix: how fast the kernels stream the weights without decode's four
    /// barriers per layer, where each section waits for its last thread and the next starts
    /// its streams from cold (`bench --profile` holds the ternary layers against it). The
    /// activations are zeros: a kernel's time does not depend on the values.
    pub fn ternary_one_section(&self, exec: &dyn crate::parallel::Exec) {
        let ls: Vec<&BitLinear> = self.ternary_layers().collect();
        let mut acts: Vec<crate::kernels::ActBatch> = Vec::new();
        for l in &ls {
            if !acts.iter().any(|a| a.cols == l.w.cols) {
                let mut a = crate::kernels::ActBatch::new(1, l.w.cols);
                a.scale[0] = 1.0;
                acts.push(a);
            }
        }
        exec.run(ls.len(), &|i| {
            let w = &ls[i].w;
            if let Some(x) = acts.iter().find(|a| a.cols == w.cols) {
                let mut out = alloc::vec![0.0f32; w.rows]; // (rows,) discarded
                self.kernel.bitmatmul(w, x, 0, &mut out);
                core::hint::black_box(&out);
            }
        });
    }

    /// Ternary weights in all layers: the int8 multiply-adds per token of the BitLinear layers.
    pub fn ternary_weights(&self) -> usize {
        self.ternary_layers().map(|l| l.w.rows * l.w.cols).sum()
    }
}

/// Why a model could not be loaded or run. Messages name the tensor or key and what was
/// expected; they name no command-line flag (front ends add their own advice).
#[derive(Debug)]
pub enum ModelError {
    Gguf(GgufError),
    Metadata(String),
    MissingTensor(String),
    Shape(String),
    Unsupported(String),
    /// Bad input to the forward pass (token id, token count).
    Input(String),
    /// A token would go to position `pos`, past the `ctx` positions of its cache; the model
    /// was trained for `model_ctx`.
    ContextFull {
        pos: usize,
        ctx: usize,
        model_ctx: usize,
    },
    /// `seqs` KV caches of `ctx` positions x `layers` layers x `kv_dim` would take more than
    /// `limit` bytes.
    KvCacheTooLarge {
        seqs: usize,
        ctx: usize,
        layers: usize,
        kv_dim: usize,
        limit: usize,
    },
    /// A KV cache type cannot store this model's heads (block types need whole blocks).
    KvTypeUnsupported(String),
    /// Only an F32/F16/BF16 head with a multiple of 32 columns quantizes to Q8_0.
    HeadNotQuantizable {
        ty: GgmlType,
        cols: usize,
    },
}

impl From<GgufError> for ModelError {
    fn from(e: GgufError) -> Self {
        ModelError::Gguf(e)
    }
}

impl core::fmt::Display for ModelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ModelError::Gguf(e) => write!(f, "{e}"),
            ModelError::Metadata(m) | ModelError::Shape(m) => f.write_str(m),
            ModelError::MissingTensor(name) => write!(f, "tensor '{name}' is missing"),
            ModelError::Unsupported(m) => write!(f, "unsupported: {m}"),
            ModelError::Input(m) => f.write_str(m),
            ModelError::KvTypeUnsupported(m) => write!(f, "unsupported KV cache type: {m}"),
            ModelError::ContextFull {
                pos,
                ctx,
                model_ctx,
            } => write!(
                f,
                "context full: position {pos} is past the context of {ctx} (the model's is {model_ctx})"
            ),
            ModelError::KvCacheTooLarge {
                seqs: 1,
                ctx,
                layers,
                kv_dim,
                limit,
            } => write!(
                f,
                "unsupported: a KV cache of {ctx} positions x {layers} layers x {kv_dim} would exceed {} GiB",
                limit >> 30
            ),
            ModelError::KvCacheTooLarge {
                seqs, ctx, limit, ..
            } => write!(
                f,
                "unsupported: {seqs} KV caches of {ctx} positions would exceed {} GiB",
                limit >> 30
            ),
            ModelError::HeadNotQuantizable { ty, cols } => write!(
                f,
                "unsupported: a Q8_0 head needs an F32/F16/BF16 head with a multiple of 32 columns; this head is {ty} with {cols}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ModelError {}

#[cfg(test)]
mod tests;
