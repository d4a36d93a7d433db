//! The BitNet model: weights loaded from GGUF (`load`), the forward pass (`forward`).

mod config;
mod dense;
mod forward;
mod head;
mod kv_cache;
mod load;
pub mod tensors;
mod ties;
pub use load::tensor_type_summary;

pub use config::{Activation, Arch, Config};
pub use dense::{DenseMatrix, Source};
pub use forward::{Batch, State};
pub use kv_cache::{KvCache, KvType};

use alloc::string::String;
use alloc::vec::Vec;

use crate::gguf::GgufError;
use crate::kernels::Kernel;
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
    pub attn_norm: Vec<f32>,     // (dim,)
    pub wq: BitLinear,           // (q_dim, dim)
    pub wk: BitLinear,           // (kv_dim, dim)
    pub wv: BitLinear,           // (kv_dim, dim)
    pub attn_sub_norm: Vec<f32>, // (q_dim,)
    pub wo: BitLinear,           // (dim, q_dim)
    pub ffn_norm: Vec<f32>,      // (dim,)
    pub w_gate: BitLinear,       // (n_ff, dim)
    pub w_up: BitLinear,         // (n_ff, dim)
    pub ffn_sub_norm: Vec<f32>,  // (n_ff,)
    pub w_down: BitLinear,       // (dim, n_ff)
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
        let ternary: usize = self
            .blocks
            .iter()
            .flat_map(|b| [&b.wq, &b.wk, &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down])
            .map(|l| l.w.codes.len() + l.w.scales.len() * 4)
            .sum();
        ternary + self.head().byte_len()
    }
}

/// Why a model could not be loaded. Messages name the tensor or key and what was expected.
#[derive(Debug)]
pub enum ModelError {
    Gguf(GgufError),
    Metadata(String),
    MissingTensor(String),
    Shape(String),
    Unsupported(String),
    /// Bad input to the forward pass (token id, context length).
    Input(String),
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
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ModelError {}

#[cfg(test)]
mod tests;
