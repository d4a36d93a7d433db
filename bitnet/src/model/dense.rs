//! Float and block-quantized matrices (embedding, head) read in place from the file.

use alloc::sync::Arc;

use crate::quants::{self, GgmlType};

/// The bytes of a model file: an mmap, a buffer, or a `'static` image on bare metal.
pub type Source = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A (rows, cols) matrix of a non-ternary type, left in the file and dequantized a row at
/// a time: the 2B4T embedding is 656 MB as F16. (`bitnet-infer` copies a head it streams
/// every token into memory: [`Model::copy_head_to_memory`](super::Model::copy_head_to_memory).)
#[derive(Clone)]
pub struct DenseMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    source: Source,
    offset: usize,
    row_bytes: usize,
}

impl core::fmt::Debug for DenseMatrix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DenseMatrix({} x {} {})", self.rows, self.cols, self.ty)
    }
}

impl DenseMatrix {
    /// `None` when the type cannot be dequantized by rows or the bytes are not where the
    /// shape says; the caller turns that into an error naming the tensor.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        source: Source,
        offset: usize,
    ) -> Option<DenseMatrix> {
        if ty.is_ternary() {
            return None;
        }
        let row_bytes = ty.tensor_bytes(cols as u64)? as usize;
        let end = row_bytes.checked_mul(rows)?.checked_add(offset)?;
        if end > (*source).as_ref().len() {
            return None;
        }
        Some(DenseMatrix {
            ty,
            rows,
            cols,
            source,
            offset,
            row_bytes,
        })
    }

    pub fn byte_len(&self) -> usize {
        self.row_bytes * self.rows
    }

    pub fn row_bytes(&self, r: usize) -> &[u8] {
        let start = self.offset + r * self.row_bytes;
        &(*self.source).as_ref()[start..start + self.row_bytes]
    }

    /// The bytes of rows `r0..r0 + n`, contiguous.
    pub fn rows_bytes(&self, r0: usize, n: usize) -> &[u8] {
        let start = self.offset + r0 * self.row_bytes;
        &(*self.source).as_ref()[start..start + n * self.row_bytes]
    }

    /// `out` (cols,) = row `r` as f32.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        // Type and lengths were checked in `new`, so this cannot fail.
        let _ = quants::dequantize_row(self.ty, self.row_bytes(r), out);
    }
}
