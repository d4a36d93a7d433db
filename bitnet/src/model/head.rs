//! The output head: logits = head (vocab, dim) . x, with the kernel's F16 or Q8_0 head
//! matvec, and the load-time option to quantize an F16 head to Q8_0 (~47% fewer bytes per
//! token, the largest single decode lever on the 2B4T shape).

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::{DenseMatrix, Model, ModelError};
use crate::kernels::head::Q8_0_BLOCK_BYTES;
use crate::kernels::HeadActs;
use crate::parallel::Exec;
use crate::quants::{self, GgmlType};

impl Model {
    /// Replaces the head by its Q8_0 quantization (`quantize_row_q8_0_ref`, what llama.cpp
    /// writes), computed here once; the embedding lookups keep the original rows.
    pub fn quantize_head_q8_0(&mut self, exec: &dyn Exec) -> Result<(), ModelError> {
        let head = self.head();
        let (rows, cols) = (head.rows, head.cols);
        match head.ty {
            GgmlType::Q8_0 => return Ok(()),
            GgmlType::F16 | GgmlType::BF16 | GgmlType::F32 if cols % 32 == 0 => {}
            ty => return Err(ModelError::HeadNotQuantizable { ty, cols }),
        }
        let row_bytes = cols / 32 * Q8_0_BLOCK_BYTES;
        let mut bytes = vec![0u8; rows * row_bytes]; // (vocab, dim / 32) Q8_0 blocks
        let per_chunk = rows.div_ceil(exec.threads() * 8).max(1);
        exec.for_each_chunk(&mut bytes, per_chunk * row_bytes, &|i, out| {
            let mut row = vec![0.0f32; cols]; // (dim,) one head row
            for (j, dst) in out.chunks_exact_mut(row_bytes).enumerate() {
                head.dequantize_row(i * per_chunk + j, &mut row);
                // Lengths match by construction.
                let _ = quants::quantize_row_q8_0_ref(&row, dst);
            }
        });
        let source: super::Source = Arc::new(bytes);
        let q8 = DenseMatrix::new(GgmlType::Q8_0, rows, cols, source, 0)
            .ok_or_else(|| ModelError::Shape("quantized head".into()))?;
        self.output = Some(q8);
        Ok(())
    }

    /// Copies a head that is read in place from the file into memory of its own (the
    /// global allocator's), where the binary's allocator puts it on 2 MiB pages: the page
    /// cache holds a file in folios of the kernel's choosing, and on 4 KiB pages the head
    /// streamed 13.8-15.3 GB/s where the copy streams 16.5-16.8 (2B4T shape, one thread of a
    /// Sapphire Rapids host). Costs the head's size in anonymous memory (656 MB on 2B4T).
    pub fn copy_head_to_memory(&mut self) {
        let head = self.head();
        let bytes = head.rows_bytes(0, head.rows).to_vec(); // (vocab, row bytes)
        let source: super::Source = Arc::new(bytes);
        // Same type and shape over a buffer of exactly their size: cannot fail.
        self.output =
            DenseMatrix::new(head.ty, head.rows, head.cols, source, 0).or(self.output.take());
    }

    /// `logits` (n, vocab) = head (vocab, dim) . `x` (n, dim).
    pub(super) fn head_matmul(
        &self,
        exec: &dyn Exec,
        x: &[f32],
        n: usize,
        acts: &mut HeadActs,
        tmp: &mut Vec<f32>,
        logits: &mut Vec<f32>,
    ) {
        let head = self.head();
        let (vocab, dim) = (head.rows, head.cols);
        tmp.resize(vocab * n, 0.0);
        let chunk_rows = vocab.div_ceil(exec.threads() * 16).max(1);
        let kernel = self.kernel;
        match head.ty {
            GgmlType::F16 => {
                exec.for_each_chunk(&mut tmp[..vocab * n], chunk_rows * n, &|i, chunk| {
                    let r0 = i * chunk_rows;
                    let rows = head.rows_bytes(r0, chunk.len() / n);
                    kernel.head_f16(rows, dim, x, chunk);
                });
            }
            GgmlType::Q8_0 => {
                acts.quantize(x, dim);
                let acts = &*acts;
                exec.for_each_chunk(&mut tmp[..vocab * n], chunk_rows * n, &|i, chunk| {
                    let r0 = i * chunk_rows;
                    let rows = head.rows_bytes(r0, chunk.len() / n);
                    kernel.head_q8_0(rows, acts, chunk);
                });
            }
            _ => {
                exec.for_each_chunk(&mut tmp[..vocab * n], chunk_rows * n, &|i, chunk| {
                    let mut row = vec![0.0f32; dim]; // (dim,) one dequantized head row
                    for (j, out) in chunk.chunks_exact_mut(n).enumerate() {
                        head.dequantize_row(i * chunk_rows + j, &mut row);
                        for (t, y) in out.iter_mut().enumerate() {
                            *y = crate::ops::dot(&row, &x[t * dim..(t + 1) * dim]);
                        }
                    }
                });
            }
        }
        logits.resize(n * vocab, 0.0);
        for t in 0..n {
            for r in 0..vocab {
                logits[t * vocab + r] = tmp[r * n + t];
            }
        }
    }
}
