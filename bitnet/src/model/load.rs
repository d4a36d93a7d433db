//! `Model::load`: check every tensor against the hyper-parameters, repack the ternary
//! weights into the kernels' layout, leave the embedding in the file.

use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::tensors::{self, BlockDims, NormSpec, TernarySpec};
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
    fn bitlinear(
        &self,
        name: &str,
        scale_name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<BitLinear, ModelError> {
        let t = self.info(name)?;
        self.expect_dims(t, &[cols, rows])?;
        let bytes = self.data(t);
        if !t.ty.is_ternary() {
            // A float llama file is an ordinary Llama: this engine only runs ternary ones.
            let what = match self.g.architecture() {
                Ok("llama") => {
                    "this engine runs only ternary llama files, whose block \
                                projections are TQ1_0 or TQ2_0"
                }
                _ => "BitLinear weights must be I2_S, TQ1_0 or TQ2_0",
            };
            return Err(ModelError::Unsupported(format!(
                "tensor '{name}' has type {}; {what}",
                t.ty
            )));
        }
        let w = TernaryMatrix::from_ggml(t.ty, bytes, rows, cols)
            .map_err(|e| ModelError::Shape(format!("tensor '{name}': {e}")))?;
        let out_scale = match self.g.tensor(scale_name) {
            None => 1.0,
            Some(_) => {
                let s = self.vector(scale_name, 1)?[0];
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

    /// Block `i`'s norm weights `spec`.
    fn norm(&self, spec: &NormSpec, dims: &BlockDims, i: usize) -> Result<Vec<f32>, ModelError> {
        self.vector(&tensors::weight_name(i, spec.name), dims.get(spec.len))
    }

    /// Block `i`'s ternary projection `spec`.
    fn linear(&self, spec: &TernarySpec, d: &BlockDims, i: usize) -> Result<BitLinear, ModelError> {
        let (weight, scale) = (
            tensors::weight_name(i, spec.name),
            tensors::scale_name(i, spec.name),
        );
        self.bitlinear(&weight, &scale, d.get(spec.rows), d.get(spec.cols))
    }

    /// The norm `spec` when blocks of this architecture have it (`tensors::layer_tensors`).
    fn opt_norm(
        &self,
        c: &Config,
        spec: &NormSpec,
        d: &BlockDims,
        i: usize,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        if tensors::has_norm(c.arch, spec) {
            self.norm(spec, d, i).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fields in `tensors::layer_tensors` order, so the first bad tensor in the file is the
    /// one reported.
    fn block(&self, c: &Config, i: usize) -> Result<Block, ModelError> {
        let d = &BlockDims::of(c);
        Ok(Block {
            attn_norm: self.norm(&tensors::ATTN_NORM, d, i)?,
            wq: self.linear(&tensors::ATTN_Q, d, i)?,
            wk: self.linear(&tensors::ATTN_K, d, i)?,
            wv: self.linear(&tensors::ATTN_V, d, i)?,
            attn_sub_norm: self.opt_norm(c, &tensors::ATTN_SUB_NORM, d, i)?,
            wo: self.linear(&tensors::ATTN_OUTPUT, d, i)?,
            ffn_norm: self.norm(&tensors::FFN_NORM, d, i)?,
            w_gate: self.linear(&tensors::FFN_GATE, d, i)?,
            w_up: self.linear(&tensors::FFN_UP, d, i)?,
            ffn_sub_norm: self.opt_norm(c, &tensors::FFN_SUB_NORM, d, i)?,
            w_down: self.linear(&tensors::FFN_DOWN, d, i)?,
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
        let token_embd = l.dense(tensors::TOKEN_EMBD, config.vocab, config.dim)?;
        let output_norm = l.vector(tensors::OUTPUT_NORM, config.dim)?;
        let output = match g.tensor(tensors::OUTPUT) {
            None => None,
            Some(_) => Some(l.dense(tensors::OUTPUT, config.vocab, config.dim)?),
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
