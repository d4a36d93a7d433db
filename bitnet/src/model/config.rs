//! Hyper-parameters read from GGUF metadata.

use alloc::format;
use alloc::string::{String, ToString};

use super::ModelError;
use crate::gguf::Gguf;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// BitNet b1.58 2B4T (`bitnet-b1.58`, alias `bitnet-25`): relu^2 FFN, GQA.
    BitnetB158,
    /// 1bitLLM BitNet (`bitnet`): SiLU FFN by default, MHA.
    Bitnet,
    /// Llama with ternary linears (`llama`: Falcon3-*-1.58bit, Llama3-8B-1.58): SiLU FFN,
    /// GQA, no sub-norms, NORM RoPE as llama.cpp writes llama files.
    Llama,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "bitnet-b1.58" | "bitnet-25" => Some(Arch::BitnetB158),
            "bitnet" => Some(Arch::Bitnet),
            "llama" => Some(Arch::Llama),
            _ => None,
        }
    }

    /// The name written as `general.architecture` (the first, for an alias).
    pub fn name(self) -> &'static str {
        match self {
            Arch::BitnetB158 => "bitnet-b1.58",
            Arch::Bitnet => "bitnet",
            Arch::Llama => "llama",
        }
    }

    /// llama.cpp's choice per architecture: the bitnet ones rotate NEOX pairs; `llama` uses
    /// NORM and its converter permutes the q/k rows of the Hugging Face weights to match.
    pub fn rope_type(self) -> RopeType {
        match self {
            Arch::BitnetB158 | Arch::Bitnet => RopeType::Neox,
            Arch::Llama => RopeType::Norm,
        }
    }

    /// RoPE theta when the file has no `rope.freq_base`.
    pub fn default_rope_theta(self) -> f32 {
        match self {
            Arch::BitnetB158 => 500_000.0,
            Arch::Bitnet | Arch::Llama => 10_000.0,
        }
    }

    /// FFN activation when the file has no `hidden_act`.
    pub fn default_activation(self) -> Activation {
        match self {
            Arch::BitnetB158 => Activation::Relu2,
            Arch::Bitnet | Arch::Llama => Activation::Silu,
        }
    }
}

/// Which elements of a head RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeType {
    /// Adjacent pairs (2i, 2i + 1) (ggml's mode 0).
    Norm,
    /// Pairs half a rotation apart (i, i + n_rot/2), "rotate half" (ggml's NEOX mode).
    Neox,
}

impl RopeType {
    pub fn name(self) -> &'static str {
        match self {
            RopeType::Norm => "norm",
            RopeType::Neox => "neox",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu2,
    Silu,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu2 => "relu2",
            Activation::Silu => "silu",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `general.architecture` as written in the file.
    pub arch_name: String,
    pub arch: Arch,
    pub n_layer: usize,
    pub dim: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Dimensions of each head that RoPE rotates.
    pub n_rot: usize,
    pub rope_type: RopeType,
    pub rope_theta: f32,
    pub eps: f32,
    /// Context length the model was trained with.
    pub ctx_len: usize,
    pub vocab: usize,
    pub act: Activation,
}

/// Upper bound on any single dimension: far above every real model, low enough that the
/// products sizing buffers cannot overflow on 32-bit targets.
const MAX_DIM: usize = 1 << 20;

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Config, ModelError> {
        let arch_name = g.architecture()?.to_string();
        let arch = Arch::from_name(&arch_name).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "general.architecture is '{arch_name}'; expected bitnet-b1.58, bitnet-25, bitnet or llama"
            ))
        })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let dim_of = |k: &str| -> Result<usize, ModelError> {
            let v = g.get_u64(&key(k))?;
            if v == 0 || v > MAX_DIM as u64 {
                return Err(ModelError::Metadata(format!(
                    "{}: {v} is out of range (expected 1..={MAX_DIM})",
                    key(k)
                )));
            }
            Ok(v as usize)
        };
        let opt_dim = |k: &str| -> Result<Option<usize>, ModelError> {
            match g.get(&key(k)) {
                None => Ok(None),
                Some(_) => dim_of(k).map(Some),
            }
        };
        let opt_f32 = |k: &str, default: f32| -> Result<f32, ModelError> {
            match g.get(&key(k)) {
                None => Ok(default),
                Some(_) => Ok(g.get_f32(&key(k))?),
            }
        };

        let n_layer = dim_of("block_count")?;
        let dim = dim_of("embedding_length")?;
        let n_ff = dim_of("feed_forward_length")?;
        let n_head = dim_of("attention.head_count")?;
        let n_kv_head = opt_dim("attention.head_count_kv")?.unwrap_or(n_head);
        let head_dim = match opt_dim("attention.key_length")? {
            Some(d) => d,
            None if dim % n_head == 0 => dim / n_head,
            None => {
                return Err(ModelError::Metadata(format!(
                    "{}: embedding_length {dim} is not a multiple of head_count {n_head}",
                    key("attention.head_count")
                )))
            }
        };
        if n_head % n_kv_head != 0 {
            return Err(ModelError::Metadata(format!(
                "{}: head_count {n_head} is not a multiple of head_count_kv {n_kv_head}",
                key("attention.head_count_kv")
            )));
        }
        let n_rot = opt_dim("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(ModelError::Metadata(format!(
                "{}: {n_rot} must be even and at most the head size {head_dim}",
                key("rope.dimension_count")
            )));
        }
        let rope_theta = opt_f32("rope.freq_base", arch.default_rope_theta())?;
        let eps = opt_f32("attention.layer_norm_rms_epsilon", 1e-5)?;
        if !(rope_theta.is_finite() && rope_theta > 0.0 && eps.is_finite() && eps >= 0.0) {
            return Err(ModelError::Metadata(format!(
                "{arch_name}: rope.freq_base {rope_theta} / layer_norm_rms_epsilon {eps} out of range"
            )));
        }
        let ctx_len = opt_dim("context_length")?.unwrap_or(4096);
        let act = match g.get(&key("hidden_act")) {
            Some(_) => match g.get_str(&key("hidden_act"))? {
                "relu2" => Activation::Relu2,
                "silu" => Activation::Silu,
                other => {
                    return Err(ModelError::Unsupported(format!(
                        "{}: activation '{other}' (expected relu2 or silu)",
                        key("hidden_act")
                    )))
                }
            },
            None => arch.default_activation(),
        };
        // The vocabulary size comes from the embedding tensor (checked at load).
        let vocab = match g.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 && t.dims[1] > 0 && t.dims[1] <= 1 << 24 => {
                t.dims[1] as usize
            }
            Some(t) => {
                return Err(ModelError::Shape(format!(
                    "tensor 'token_embd.weight': dims {:?}, expected [{dim}, n_vocab]",
                    t.dims
                )))
            }
            None => return Err(ModelError::MissingTensor("token_embd.weight".to_string())),
        };
        Ok(Config {
            arch_name,
            arch,
            n_layer,
            dim,
            n_ff,
            n_head,
            n_kv_head,
            head_dim,
            n_rot,
            rope_type: arch.rope_type(),
            rope_theta,
            eps,
            ctx_len,
            vocab,
            act,
        })
    }

    /// Width of the concatenated query heads.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of the concatenated key (or value) heads.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
}
