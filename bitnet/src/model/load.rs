//! `Model::load`: check every tensor against the hyper-parameters, repack the ternary
//! weights into the kernels' layout, leave the embedding in the file.

use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::{BitLinear, Block, Config, DenseMatrix, Model, ModelError, Source};
use crate::gguf::{Gguf, TensorInfo};
use crate::kernels::Kernel;
use crate::quants::{self, GgmlType};
use crate::ternary::TernaryMatrix;

struct Loader<'a> {
    g: &'a Gguf,
    source: &'a Source,
}

impl<'a> Loader<'a> {
    fn info(&self, name: &str) -> Result<&'a TensorInfo, ModelError> {
        self.g
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    fn data(&self, t: &TensorInfo) -> &'a [u8] {
        self.g.tensor_data((**self.source).as_ref(), t)
    }

    fn expect_dims(&self, t: &TensorInfo, dims: &[usize]) -> Result<(), ModelError> {
        if t.dims.len() != dims.len() || t.dims.iter().zip(dims).any(|(&a, &b)| a != b as u64) {
            return Err(ModelError::Shape(format!(
                "tensor '{}': dims {:?}, expected {:?}",
                t.name, t.dims, dims
            )));
        }
        Ok(())
    }

    /// A 1-D float vector (norm weights).
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.info(name)?;
        self.expect_dims(t, &[len])?;
        if !matches!(t.ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(ModelError::Unsupported(format!(
                "tensor '{name}' has type {}; expected F32, F16 or BF16",
                t.ty
            )));
        }
        let mut out = vec![0.0f32; len];
        quants::dequantize_row(t.ty, self.data(t), &mut out)
            .map_err(|e| ModelError::Shape(format!("tensor '{name}': {e}")))?;
        Ok(out)
    }

    /// A ternary (rows, cols) projection, repacked, with its optional `.scale`.
    fn bitlinear(&self, prefix: &str, rows: usize, cols: usize) -> Result<BitLinear, ModelError> {
        let name = format!("{prefix}.weight");
        let t = self.info(&name)?;
        self.expect_dims(t, &[cols, rows])?;
        let bytes = self.data(t);
        let w = match t.ty {
            GgmlType::I2_S => TernaryMatrix::from_i2_s(bytes, rows, cols),
            GgmlType::TQ2_0 => TernaryMatrix::from_tq2_0(bytes, rows, cols),
            GgmlType::TQ1_0 => TernaryMatrix::from_tq1_0(bytes, rows, cols),
            other => {
                return Err(ModelError::Unsupported(format!(
                "tensor '{name}' has type {other}; BitLinear weights must be I2_S, TQ1_0 or TQ2_0"
            )))
            }
        }
        .map_err(|e| ModelError::Shape(format!("tensor '{name}': {e}")))?;
        let scale_name = format!("{prefix}.scale");
        let out_scale = match self.g.tensor(&scale_name) {
            None => 1.0,
            Some(_) => {
                let s = self.vector(&scale_name, 1)?[0];
                if !s.is_finite() {
                    return Err(ModelError::Shape(format!(
                        "tensor '{scale_name}': scale {s} is not finite"
                    )));
                }
                s
            }
        };
        Ok(BitLinear { w, out_scale })
    }

    /// A (rows, cols) matrix left in the file (embedding, head).
    fn dense(&self, name: &str, rows: usize, cols: usize) -> Result<DenseMatrix, ModelError> {
        let t = self.info(name)?;
        self.expect_dims(t, &[cols, rows])?;
        let offset = self.g.data_offset + t.offset;
        DenseMatrix::new(t.ty, rows, cols, self.source.clone(), offset as usize).ok_or_else(|| {
            ModelError::Unsupported(format!(
                "tensor '{name}' has type {}; expected F32, F16, BF16, Q8_0 or Q6_K",
                t.ty
            ))
        })
    }

    fn block(&self, c: &Config, i: usize) -> Result<Block, ModelError> {
        let p = |w: &str| format!("blk.{i}.{w}");
        let n = |w: &str| format!("blk.{i}.{w}.weight");
        let (dim, q_dim, kv_dim, n_ff) = (c.dim, c.q_dim(), c.kv_dim(), c.n_ff);
        Ok(Block {
            attn_norm: self.vector(&n("attn_norm"), dim)?,
            wq: self.bitlinear(&p("attn_q"), q_dim, dim)?,
            wk: self.bitlinear(&p("attn_k"), kv_dim, dim)?,
            wv: self.bitlinear(&p("attn_v"), kv_dim, dim)?,
            attn_sub_norm: self.vector(&n("attn_sub_norm"), q_dim)?,
            wo: self.bitlinear(&p("attn_output"), dim, q_dim)?,
            ffn_norm: self.vector(&n("ffn_norm"), dim)?,
            w_gate: self.bitlinear(&p("ffn_gate"), n_ff, dim)?,
            w_up: self.bitlinear(&p("ffn_up"), n_ff, dim)?,
            ffn_sub_norm: self.vector(&n("ffn_sub_norm"), n_ff)?,
            w_down: self.bitlinear(&p("ffn_down"), dim, n_ff)?,
        })
    }
}

impl Model {
    /// Builds the model from a parsed file and the bytes it was parsed from.
    pub fn load(g: &Gguf, source: Source, kernel: Kernel) -> Result<Model, ModelError> {
        let config = Config::from_gguf(g)?;
        let l = Loader { g, source: &source };
        let mut blocks = (0..config.n_layer)
            .map(|i| l.block(&config, i))
            .collect::<Result<Vec<_>, _>>()?;
        // The kernel may read its own arrangement of the codes (no copy when canonical).
        let layout = kernel.code_layout();
        for b in &mut blocks {
            for l in [
                &mut b.wq,
                &mut b.wk,
                &mut b.wv,
                &mut b.wo,
                &mut b.w_gate,
                &mut b.w_up,
                &mut b.w_down,
            ] {
                if l.w.layout != layout {
                    l.w = l.w.to_layout(layout);
                }
            }
        }
        let token_embd = l.dense("token_embd.weight", config.vocab, config.dim)?;
        let output_norm = l.vector("output_norm.weight", config.dim)?;
        let output = match g.tensor("output.weight") {
            None => None,
            Some(_) => Some(l.dense("output.weight", config.vocab, config.dim)?),
        };
        Ok(Model {
            config,
            blocks,
            token_embd,
            output_norm,
            output,
            kernel,
        })
    }
}

/// Counts and bytes of each tensor type in a file, for `info`.
pub fn tensor_type_summary(g: &Gguf) -> Vec<(GgmlType, usize, u64)> {
    let mut out: Vec<(GgmlType, usize, u64)> = Vec::new();
    for t in &g.tensors {
        match out.iter_mut().find(|e| e.0 == t.ty) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.n_bytes;
            }
            None => out.push((t.ty, 1, t.n_bytes)),
        }
    }
    out
}
