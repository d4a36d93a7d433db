//! The canonical in-memory ternary weight matrix: the one layout every kernel reads.
//!
//! Every on-disk ternary type (I2_S, TQ2_0, TQ1_0) is repacked into it at load, so no block size
//! or bit order ever depends on the target or on the file type. The layout is I2_S's 128/32 block
//! layout applied row by row, which makes I2_S a validated copy and TQ2_0 a per-byte bit shuffle.
//! Each type's repacking lives with its format, in `quants::<type>::repack_<type>`.

use alloc::vec;
use alloc::vec::Vec;

use crate::quants::i2_s::{pack_block_128, BLOCK_BYTES, BLOCK_ELEMS};
use crate::quants::{self, GgmlType};

/// A ternary type's conversion into the canonical layout: `(src, cols, codes, scales)`, with
/// `src` the whole tensor's data, `codes` its `rows * cols / 4` canonical bytes and `scales`
/// its `rows * cols / group_len` scales, every length checked by the caller.
pub type Repack = fn(&[u8], usize, &mut [u8], &mut [f32]) -> Result<(), TernaryError>;

/// (rows, cols) ternary weight matrix; rows = output features (GGUF ne1), cols = input features
/// (ne0), cols % 128 == 0.
#[derive(Clone, Debug, PartialEq)]
pub struct TernaryMatrix {
    pub rows: usize,
    pub cols: usize,
    /// (rows, cols/4) bytes. Each row is cols/128 blocks of 32 bytes; byte g of a block holds the
    /// codes c = trit + 1 of the block's elements g, 32+g, 64+g, 96+g in bits 7..6, 5..4, 3..2, 1..0.
    pub codes: Vec<u8>,
    /// Elements sharing one scale, along a row: cols for I2_S (per-tensor beta repeated per row),
    /// 256 for TQ types.
    pub group_len: usize,
    /// (rows, cols/group_len) scales.
    pub scales: Vec<f32>,
    /// How `codes` and `scales` are arranged: every constructor gives `Canonical`; a kernel
    /// may have the model repack into its own layout at load ([`TernaryMatrix::to_layout`]).
    pub layout: CodeLayout,
}

/// Arrangements of a [`TernaryMatrix`]'s codes and scales.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeLayout {
    /// Row by row, the 128/32 blocks described on `codes`.
    Canonical,
    /// Rows in groups of 16 (the last padded with code-0 rows of scale 0), for 16-lane SIMD
    /// that accumulates each row in its own i32 lane. Group `G`, columns `16c..16c + 16`:
    /// 64 bytes at `(G * cols/16 + c) * 64`; byte `4i + j` holds in bits `2q..2q+1` the code
    /// of row `16G + i`, column `16c + 4q + j`. Scales are (row groups, n_groups, 16).
    Rows16,
}

/// Rows per group of [`CodeLayout::Rows16`].
pub const ROWS16: usize = 16;

/// Why a tensor cannot become a [`TernaryMatrix`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TernaryError {
    /// `rows * cols` overflows.
    Overflow { rows: usize, cols: usize },
    /// `cols` is not a positive multiple of what the source type needs (128 for I2_S, 256 for TQ
    /// types).
    Cols {
        ty: Option<GgmlType>,
        cols: usize,
        multiple: usize,
    },
    /// The data (or the trits / scales given) have the wrong length.
    Length {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// `group_len` is not a positive multiple of 128 dividing `cols`.
    GroupLen { group_len: usize, cols: usize },
    /// Code 3 (never written by a conforming writer) at this element.
    InvalidCode {
        ty: GgmlType,
        row: usize,
        col: usize,
    },
    /// A trit given to [`TernaryMatrix::from_trits`] is not -1, 0 or +1.
    InvalidTrit { row: usize, col: usize, value: i8 },
    /// A TQ1_0 `qh` byte whose unused fifth base-3 digit is not 0.
    InvalidTq1Byte { row: usize, block: usize, byte: u8 },
    /// A scale is NaN or infinite; `group` counts scale groups along the row.
    NonFiniteScale {
        row: usize,
        group: usize,
        value: f32,
    },
    /// A row index past the last row.
    RowOutOfRange { row: usize, rows: usize },
    /// The tensor type is not one of the ternary types.
    NotTernary(GgmlType),
}

impl core::fmt::Display for TernaryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TernaryError::Overflow { rows, cols } => {
                write!(f, "ternary matrix of {rows} x {cols} elements overflows")
            }
            TernaryError::Cols { ty, cols, multiple } => {
                if let Some(ty) = ty {
                    write!(f, "{ty}: ")?;
                }
                write!(f, "{cols} columns is not a positive multiple of {multiple}")
            }
            TernaryError::Length {
                what,
                expected,
                actual,
            } => write!(f, "{what} has length {actual}, expected {expected}"),
            TernaryError::GroupLen { group_len, cols } => write!(
                f,
                "scale group length {group_len} is not a positive multiple of 128 dividing {cols} columns"
            ),
            TernaryError::InvalidCode { ty, row, col } => {
                write!(f, "{ty}: invalid code 3 at row {row} column {col}")
            }
            TernaryError::InvalidTrit { row, col, value } => {
                write!(f, "trit {value} at row {row} column {col} is not -1, 0 or 1")
            }
            TernaryError::InvalidTq1Byte { row, block, byte } => write!(
                f,
                "TQ1_0: qh byte {byte:#04x} in row {row} block {block} has a nonzero fifth digit"
            ),
            TernaryError::NonFiniteScale { row, group, value } => {
                write!(f, "non-finite scale {value} at row {row} group {group}")
            }
            TernaryError::RowOutOfRange { row, rows } => {
                write!(f, "row {row} out of range for {rows} rows")
            }
            TernaryError::NotTernary(ty) => write!(f, "{ty} is not a ternary type"),
        }
    }
}

impl core::error::Error for TernaryError {}

pub(crate) fn load_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// Nonzero iff some 2-bit field of some byte in `word` is 3.
pub(crate) fn code3_mask(word: u64) -> u64 {
    // Bit 2k of the result is set iff bits 2k and 2k+1 are both set. Bits shifted in from the
    // next byte land in odd positions, which the mask drops.
    word & (word >> 1) & 0x5555_5555_5555_5555
}

/// `value`, or the error naming the scale's `row` and `group` when it is NaN or infinite.
pub(crate) fn check_scale(value: f32, row: usize, group: usize) -> Result<f32, TernaryError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(TernaryError::NonFiniteScale { row, group, value })
    }
}

fn check_data_len(what: &'static str, expected: usize, actual: usize) -> Result<(), TernaryError> {
    if expected == actual {
        Ok(())
    } else {
        Err(TernaryError::Length {
            what,
            expected,
            actual,
        })
    }
}

impl TernaryMatrix {
    /// Checks the shape against the source type's block size; returns `rows * cols`.
    fn check_shape(
        ty: Option<GgmlType>,
        rows: usize,
        cols: usize,
        multiple: usize,
    ) -> Result<usize, TernaryError> {
        // cols = 0 would make group_len 0 for I2_S, a division by zero in every kernel.
        if cols == 0 || !cols.is_multiple_of(multiple) {
            return Err(TernaryError::Cols { ty, cols, multiple });
        }
        rows.checked_mul(cols)
            .ok_or(TernaryError::Overflow { rows, cols })
    }

    /// Repacks a tensor of any ternary type `ty` (`bytes` = the tensor's data in the file).
    pub fn from_ggml(
        ty: GgmlType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self, TernaryError> {
        let (what, repack): (&'static str, Repack) = match ty {
            GgmlType::I2_S => ("I2_S data", quants::repack_i2_s),
            GgmlType::TQ2_0 => ("TQ2_0 data", quants::repack_tq2_0),
            GgmlType::TQ1_0 => ("TQ1_0 data", quants::repack_tq1_0),
            _ => return Err(TernaryError::NotTernary(ty)),
        };
        let n = Self::check_shape(Some(ty), rows, cols, ty.block_elems() as usize)?;
        let expected = ty
            .tensor_bytes(n as u64)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or(TernaryError::Overflow { rows, cols })?;
        check_data_len(what, expected, bytes.len())?;
        // I2_S has one scale per tensor, which every row repeats; the TQ types one per block.
        let group_len = match ty {
            GgmlType::I2_S => cols,
            _ => ty.block_elems() as usize,
        };
        let mut codes = vec![0u8; n / 4];
        let mut scales = vec![0.0f32; n / group_len];
        repack(bytes, cols, &mut codes, &mut scales)?;
        Ok(TernaryMatrix {
            rows,
            cols,
            codes,
            group_len,
            scales,
            layout: CodeLayout::Canonical,
        })
    }

    /// Repacks an I2_S tensor (`bytes` = `rows*cols/4` packed bytes + 32-byte tail). The layout is
    /// already canonical: this validates (no code 3, finite beta) and copies.
    pub fn from_i2_s(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, TernaryError> {
        Self::from_ggml(GgmlType::I2_S, bytes, rows, cols)
    }

    /// Repacks a TQ2_0 tensor (`rows * cols / 256` blocks of 66 bytes).
    pub fn from_tq2_0(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, TernaryError> {
        Self::from_ggml(GgmlType::TQ2_0, bytes, rows, cols)
    }

    /// Repacks a TQ1_0 tensor (`rows * cols / 256` blocks of 54 bytes).
    pub fn from_tq1_0(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, TernaryError> {
        Self::from_ggml(GgmlType::TQ1_0, bytes, rows, cols)
    }

    /// Builds a matrix from row-major trits (each -1..=1) and `rows * cols / group_len` scales,
    /// for tests and fixtures. `group_len` must be a positive multiple of 128 dividing `cols`.
    pub fn from_trits(
        trits: &[i8],
        rows: usize,
        cols: usize,
        group_len: usize,
        scales: Vec<f32>,
    ) -> Result<Self, TernaryError> {
        let n = Self::check_shape(None, rows, cols, BLOCK_ELEMS)?;
        if group_len == 0
            || !group_len.is_multiple_of(BLOCK_ELEMS)
            || !cols.is_multiple_of(group_len)
        {
            return Err(TernaryError::GroupLen { group_len, cols });
        }
        check_data_len("trits", n, trits.len())?;
        check_data_len("scales", n / group_len, scales.len())?;
        if let Some(i) = trits.iter().position(|t| !(-1..=1).contains(t)) {
            let (row, col, value) = (i / cols, i % cols, trits[i]);
            return Err(TernaryError::InvalidTrit { row, col, value });
        }
        let groups_per_row = cols / group_len;
        for (i, &s) in scales.iter().enumerate() {
            check_scale(s, i / groups_per_row, i % groups_per_row)?;
        }
        let mut codes = vec![0u8; n / 4];
        let mut block = [0u8; BLOCK_ELEMS];
        for (src, dst) in trits
            .chunks_exact(BLOCK_ELEMS)
            .zip(codes.chunks_exact_mut(BLOCK_BYTES))
        {
            for (c, &t) in block.iter_mut().zip(src) {
                *c = (t + 1) as u8;
            }
            pack_block_128(&block, dst);
        }
        Ok(TernaryMatrix {
            rows,
            cols,
            codes,
            group_len,
            scales,
            layout: CodeLayout::Canonical,
        })
    }

    /// Row groups of [`CodeLayout::Rows16`] (rows rounded up to 16).
    pub fn row_groups16(&self) -> usize {
        self.rows.div_ceil(ROWS16)
    }

    /// The same matrix in `layout` (a copy; `self` when it already is).
    pub fn to_layout(&self, layout: CodeLayout) -> TernaryMatrix {
        if layout == self.layout {
            return self.clone();
        }
        let canonical = match self.layout {
            CodeLayout::Canonical => None,
            CodeLayout::Rows16 => Some(self.to_canonical()),
        };
        let src = canonical.as_ref().unwrap_or(self);
        match layout {
            CodeLayout::Canonical => src.clone(),
            CodeLayout::Rows16 => src.to_rows16(),
        }
    }

    fn to_rows16(&self) -> TernaryMatrix {
        let (rows, cols) = (self.rows, self.cols);
        let n_groups = cols / self.group_len;
        let groups = self.row_groups16();
        let mut codes = vec![0u8; groups * ROWS16 * cols / 4];
        let mut scales = vec![0.0f32; groups * n_groups * ROWS16];
        for r in 0..rows {
            let (g, i) = (r / ROWS16, r % ROWS16);
            let src = &self.codes[r * cols / 4..(r + 1) * cols / 4];
            // 16 consecutive columns are 16 consecutive canonical bytes, one 2-bit field.
            for chunk in 0..cols / 16 {
                let (block, k) = (chunk * 16 / BLOCK_ELEMS, chunk * 16 % BLOCK_ELEMS);
                let bytes = &src[block * BLOCK_BYTES + k % BLOCK_BYTES..][..16];
                let shift = 6 - 2 * (k / BLOCK_BYTES);
                let dst = &mut codes[(g * (cols / 16) + chunk) * 64 + 4 * i..][..4];
                for (c, &b) in bytes.iter().enumerate() {
                    dst[c % 4] |= ((b >> shift) & 3) << (2 * (c / 4));
                }
            }
            for k in 0..n_groups {
                scales[(g * n_groups + k) * ROWS16 + i] = self.scales[r * n_groups + k];
            }
        }
        TernaryMatrix {
            rows,
            cols,
            codes,
            group_len: self.group_len,
            scales,
            layout: CodeLayout::Rows16,
        }
    }

    fn to_canonical(&self) -> TernaryMatrix {
        let (rows, cols) = (self.rows, self.cols);
        let n_groups = cols / self.group_len;
        let mut codes = vec![0u8; rows * cols / 4];
        let mut scales = vec![0.0f32; rows * n_groups];
        for r in 0..rows {
            for c in 0..cols {
                let (block, k) = (c / BLOCK_ELEMS, c % BLOCK_ELEMS);
                let at = r * cols / 4 + block * BLOCK_BYTES + k % BLOCK_BYTES;
                codes[at] |= self.code(r, c) << (6 - 2 * (k / BLOCK_BYTES));
            }
            for k in 0..n_groups {
                scales[r * n_groups + k] = self.scale(r, k * self.group_len);
            }
        }
        TernaryMatrix {
            rows,
            cols,
            codes,
            group_len: self.group_len,
            scales,
            layout: CodeLayout::Canonical,
        }
    }

    /// The code (0..=2) of element (r, c).
    ///
    /// # Panics
    /// If `r >= rows` or `c >= cols`, like slice indexing.
    pub fn code(&self, r: usize, c: usize) -> u8 {
        assert!(r < self.rows && c < self.cols, "({r}, {c}) out of range");
        match self.layout {
            CodeLayout::Canonical => {
                let (block, k) = (c / BLOCK_ELEMS, c % BLOCK_ELEMS);
                let byte = self.codes[r * self.cols / 4 + block * BLOCK_BYTES + k % BLOCK_BYTES];
                (byte >> (6 - 2 * (k / BLOCK_BYTES))) & 3
            }
            CodeLayout::Rows16 => {
                let (g, i) = (r / ROWS16, r % ROWS16);
                let (chunk, q, j) = (c / 16, (c % 16) / 4, c % 4);
                let byte = self.codes[(g * (self.cols / 16) + chunk) * 64 + 4 * i + j];
                (byte >> (2 * q)) & 3
            }
        }
    }

    /// The trit (-1..=1) of element (r, c).
    ///
    /// # Panics
    /// If `r >= rows` or `c >= cols`, like slice indexing.
    pub fn trit(&self, r: usize, c: usize) -> i8 {
        self.code(r, c) as i8 - 1
    }

    /// The scale of element (r, c).
    ///
    /// # Panics
    /// If `r >= rows` or `c >= cols`, like slice indexing.
    pub fn scale(&self, r: usize, c: usize) -> f32 {
        assert!(r < self.rows && c < self.cols, "({r}, {c}) out of range");
        let n_groups = self.cols / self.group_len;
        match self.layout {
            CodeLayout::Canonical => self.scales[r * n_groups + c / self.group_len],
            CodeLayout::Rows16 => {
                let (g, i) = (r / ROWS16, r % ROWS16);
                self.scales[(g * n_groups + c / self.group_len) * ROWS16 + i]
            }
        }
    }

    /// Writes row `r` as `trit * scale` into `dst` (`cols` long): the reference the kernels and
    /// the per-type dequantizers are tested against.
    pub fn dequantize_row(&self, r: usize, dst: &mut [f32]) -> Result<(), TernaryError> {
        if r >= self.rows {
            return Err(TernaryError::RowOutOfRange {
                row: r,
                rows: self.rows,
            });
        }
        check_data_len("dst", self.cols, dst.len())?;
        if self.layout != CodeLayout::Canonical {
            for (c, y) in dst.iter_mut().enumerate() {
                *y = f32::from(self.code(r, c) as i8 - 1) * self.scale(r, c);
            }
            return Ok(());
        }
        let row = &self.codes[r * self.cols / 4..(r + 1) * self.cols / 4];
        let scales = &self.scales[r * (self.cols / self.group_len)..];
        for (i, (bytes, y)) in row
            .chunks_exact(BLOCK_BYTES)
            .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
            .enumerate()
        {
            let scale = scales[i * BLOCK_ELEMS / self.group_len];
            for (k, y) in y.iter_mut().enumerate() {
                let c = (bytes[k % BLOCK_BYTES] >> (6 - 2 * (k / BLOCK_BYTES))) & 3;
                *y = f32::from(c as i8 - 1) * scale;
            }
        }
        Ok(())
    }
}

/// (row, col) of field `j` of canonical byte `i` in a matrix with `cols` columns.
pub(crate) fn locate_canonical(i: usize, j: usize, cols: usize) -> (usize, usize) {
    let bytes_per_row = cols / 4;
    let (row, in_row) = (i / bytes_per_row, i % bytes_per_row);
    let col = in_row / BLOCK_BYTES * BLOCK_ELEMS + BLOCK_BYTES * j + in_row % BLOCK_BYTES;
    (row, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::test_rng::XorShift;
    use crate::quants::{
        dequantize_i2_s, dequantize_row_tq1_0, dequantize_row_tq2_0, pack_i2_s, pack_row_tq1_0,
        pack_row_tq2_0, quantize_row_tq1_0_ref, quantize_row_tq2_0_ref,
    };
    use crate::quants::{i2_s, tq1_0, tq2_0};
    use half::f16;

    const ROWS: usize = 5;
    const COLS: usize = 768;

    /// Per-block scales that survive the f16 round trip unchanged.
    fn f16_scales(rng: &mut XorShift, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| f16::from_f32(rng.f32().abs() + 0.01).to_f32())
            .collect()
    }

    fn assert_matches(m: &TernaryMatrix, trits: &[i8], scales: &[f32], group_len: usize) {
        assert_eq!((m.rows, m.cols, m.group_len), (ROWS, COLS, group_len));
        assert_eq!(m.codes.len(), ROWS * COLS / 4);
        assert_eq!(m.scales, scales);
        for r in 0..ROWS {
            for c in 0..COLS {
                assert_eq!(m.trit(r, c), trits[r * COLS + c], "({r}, {c})");
                assert_eq!(m.scale(r, c), scales[(r * COLS + c) / group_len]);
            }
        }
    }

    /// `dequantize_row` of every row equals the source type's own dequantization.
    fn assert_rows_equal(m: &TernaryMatrix, reference: &[f32]) {
        let mut row = vec![0.0f32; m.cols];
        for r in 0..m.rows {
            m.dequantize_row(r, &mut row).unwrap();
            let want = &reference[r * m.cols..(r + 1) * m.cols];
            assert!(
                row.iter()
                    .zip(want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "row {r}"
            );
        }
    }

    #[test]
    fn from_i2_s_random() {
        let mut rng = XorShift::new(11);
        let trits = rng.trits(ROWS * COLS);
        let beta = 0.0421f32;
        let mut bytes = vec![0u8; ROWS * COLS / 4 + i2_s::TAIL_BYTES];
        pack_i2_s(&trits, beta, &mut bytes).unwrap();
        let m = TernaryMatrix::from_i2_s(&bytes, ROWS, COLS).unwrap();
        assert_matches(&m, &trits, &[beta; ROWS], COLS);
        assert_eq!(&m.codes[..], &bytes[..ROWS * COLS / 4]);
        let mut reference = vec![0.0f32; ROWS * COLS];
        dequantize_i2_s(&bytes, ROWS * COLS, &mut reference).unwrap();
        assert_rows_equal(&m, &reference);
    }

    #[test]
    fn from_tq2_0_random() {
        let mut rng = XorShift::new(12);
        let trits = rng.trits(ROWS * COLS);
        let scales = f16_scales(&mut rng, ROWS * COLS / tq2_0::BLOCK_ELEMS);
        let mut bytes = vec![0u8; ROWS * COLS / tq2_0::BLOCK_ELEMS * tq2_0::BLOCK_BYTES];
        pack_row_tq2_0(&trits, &scales, &mut bytes).unwrap();
        let m = TernaryMatrix::from_tq2_0(&bytes, ROWS, COLS).unwrap();
        assert_matches(&m, &trits, &scales, tq2_0::BLOCK_ELEMS);
        let mut reference = vec![0.0f32; ROWS * COLS];
        dequantize_row_tq2_0(&bytes, &mut reference).unwrap();
        assert_rows_equal(&m, &reference);
    }

    #[test]
    fn from_tq1_0_random() {
        let mut rng = XorShift::new(13);
        let trits = rng.trits(ROWS * COLS);
        let scales = f16_scales(&mut rng, ROWS * COLS / tq1_0::BLOCK_ELEMS);
        let mut bytes = vec![0u8; ROWS * COLS / tq1_0::BLOCK_ELEMS * tq1_0::BLOCK_BYTES];
        pack_row_tq1_0(&trits, &scales, &mut bytes).unwrap();
        let m = TernaryMatrix::from_tq1_0(&bytes, ROWS, COLS).unwrap();
        assert_matches(&m, &trits, &scales, tq1_0::BLOCK_ELEMS);
        let mut reference = vec![0.0f32; ROWS * COLS];
        dequantize_row_tq1_0(&bytes, &mut reference).unwrap();
        assert_rows_equal(&m, &reference);
    }

    #[test]
    fn from_quantized_continuous_weights() {
        // Real converters quantize float weights; the canonical matrix must agree with the
        // reference dequantizers whatever the trits are.
        let mut rng = XorShift::new(14);
        let x = rng.f32s(ROWS * COLS, 0.05);
        let mut reference = vec![0.0f32; ROWS * COLS];

        let mut tq2 = vec![0u8; ROWS * COLS / tq2_0::BLOCK_ELEMS * tq2_0::BLOCK_BYTES];
        quantize_row_tq2_0_ref(&x, &mut tq2).unwrap();
        dequantize_row_tq2_0(&tq2, &mut reference).unwrap();
        assert_rows_equal(
            &TernaryMatrix::from_tq2_0(&tq2, ROWS, COLS).unwrap(),
            &reference,
        );

        let mut tq1 = vec![0u8; ROWS * COLS / tq1_0::BLOCK_ELEMS * tq1_0::BLOCK_BYTES];
        quantize_row_tq1_0_ref(&x, &mut tq1).unwrap();
        dequantize_row_tq1_0(&tq1, &mut reference).unwrap();
        assert_rows_equal(
            &TernaryMatrix::from_tq1_0(&tq1, ROWS, COLS).unwrap(),
            &reference,
        );
    }

    #[test]
    fn from_trits_matches_every_source() {
        let mut rng = XorShift::new(15);
        let trits = rng.trits(ROWS * COLS);
        let scales = f16_scales(&mut rng, ROWS * COLS / tq2_0::BLOCK_ELEMS);
        let m = TernaryMatrix::from_trits(&trits, ROWS, COLS, 256, scales.clone()).unwrap();
        assert_matches(&m, &trits, &scales, tq2_0::BLOCK_ELEMS);
        let mut bytes = vec![0u8; ROWS * COLS / tq2_0::BLOCK_ELEMS * tq2_0::BLOCK_BYTES];
        pack_row_tq2_0(&trits, &scales, &mut bytes).unwrap();
        assert_eq!(TernaryMatrix::from_tq2_0(&bytes, ROWS, COLS).unwrap(), m);
    }

    #[test]
    fn rows16_round_trip() {
        let mut rng = XorShift::new(16);
        for rows in [1, 16, 21, 33] {
            let trits = rng.trits(rows * 384);
            let scales = f16_scales(&mut rng, rows * 384 / 128);
            let m = TernaryMatrix::from_trits(&trits, rows, 384, 128, scales).unwrap();
            let p = m.to_layout(CodeLayout::Rows16);
            assert_eq!(p.codes.len(), rows.div_ceil(16) * 16 * 384 / 4);
            let mut a = vec![0.0f32; 384];
            let mut b = vec![0.0f32; 384];
            for r in 0..rows {
                m.dequantize_row(r, &mut a).unwrap();
                p.dequantize_row(r, &mut b).unwrap();
                assert_eq!(a, b, "row {r}");
            }
            assert_eq!(p.to_layout(CodeLayout::Canonical), m);
        }
        // Row 17, column 16 * 2 + 4 * 3 + 1 = 45: group 1, chunk 2, byte 4 + 1, bits 6..7.
        let mut trits = vec![0i8; 18 * 128];
        trits[17 * 128 + 45] = 1;
        let m = TernaryMatrix::from_trits(&trits, 18, 128, 128, vec![1.0; 18]).unwrap();
        let p = m.to_layout(CodeLayout::Rows16);
        assert_eq!(p.codes[(8 + 2) * 64 + 5], 0b1001_0101);
    }

    #[test]
    fn canonical_byte_layout() {
        // Row 1, block 1, element 32*2 + 5: byte 32 + 5 of row 1, bits 3..2.
        let mut trits = vec![0i8; 2 * 256];
        trits[256 + 128 + 64 + 5] = 1;
        let m = TernaryMatrix::from_trits(&trits, 2, 256, 256, vec![1.0, 2.0]).unwrap();
        let mut want = vec![0x55u8; 128];
        want[64 + 32 + 5] = 0x59;
        assert_eq!(m.codes, want);
        assert_eq!(m.trit(1, 197), 1);
        assert_eq!(m.code(1, 196), 1);
        let mut row = [0.0f32; 256];
        m.dequantize_row(1, &mut row).unwrap();
        assert_eq!(row[197], 2.0);
        assert_eq!(row.iter().sum::<f32>(), 2.0);
    }

    #[test]
    fn rejects_code_3() {
        let mut bytes = vec![0x55u8; 2 * 256 / 4 + i2_s::TAIL_BYTES];
        // Row 1, second block, byte 7, bits 5..4: element 128 + 32 + 7 of row 1.
        bytes[64 + 32 + 7] = 0x75;
        assert_eq!(
            TernaryMatrix::from_i2_s(&bytes, 2, 256),
            Err(TernaryError::InvalidCode {
                ty: GgmlType::I2_S,
                row: 1,
                col: 167
            })
        );

        let mut tq2 = vec![0x55u8; 3 * tq2_0::BLOCK_BYTES];
        // Block 2 (row 1, block 0 with cols = 512 -> row 1 is blocks 2..), qs[32 + 9] bits 2..3:
        // element 128 + 32 + 9.
        tq2[2 * tq2_0::BLOCK_BYTES + 32 + 9] = 0x5d;
        let mut tq2_4 = vec![0x55u8; 4 * tq2_0::BLOCK_BYTES];
        tq2_4[..3 * tq2_0::BLOCK_BYTES].copy_from_slice(&tq2);
        for b in tq2_4.chunks_mut(tq2_0::BLOCK_BYTES) {
            b[tq2_0::BLOCK_BYTES - 2..].copy_from_slice(&[0x00, 0x3c]);
        }
        assert_eq!(
            TernaryMatrix::from_tq2_0(&tq2_4, 2, 512),
            Err(TernaryError::InvalidCode {
                ty: GgmlType::TQ2_0,
                row: 1,
                col: 169
            })
        );
    }

    #[test]
    fn rejects_non_finite_scales() {
        let mut bytes = vec![0x55u8; 64 + i2_s::TAIL_BYTES];
        bytes[64..68].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(matches!(
            TernaryMatrix::from_i2_s(&bytes, 2, 128),
            Err(TernaryError::NonFiniteScale { .. })
        ));

        let mut tq2 = vec![0u8; 2 * tq2_0::BLOCK_BYTES];
        pack_row_tq2_0(&[0; 512], &[1.0, 1.0], &mut tq2).unwrap();
        tq2[tq2_0::BLOCK_BYTES + 64..].copy_from_slice(&[0x00, 0x7c]); // +inf
        assert!(matches!(
            TernaryMatrix::from_tq2_0(&tq2, 2, 256),
            Err(TernaryError::NonFiniteScale { row: 1, group: 0, value }) if value.is_infinite()
        ));

        let mut tq1 = vec![0u8; 2 * tq1_0::BLOCK_BYTES];
        pack_row_tq1_0(&[0; 512], &[1.0, 1.0], &mut tq1).unwrap();
        tq1[tq1_0::BLOCK_BYTES + 52..].copy_from_slice(&[0x01, 0x7e]); // NaN
        assert!(matches!(
            TernaryMatrix::from_tq1_0(&tq1, 1, 512),
            Err(TernaryError::NonFiniteScale {
                row: 0,
                group: 1,
                ..
            })
        ));

        assert!(TernaryMatrix::from_trits(&[0; 128], 1, 128, 128, vec![f32::INFINITY]).is_err());
    }

    #[test]
    fn rejects_tq1_0_phantom_digit() {
        let mut tq1 = vec![0u8; tq1_0::BLOCK_BYTES];
        pack_row_tq1_0(&[0; 256], &[1.0], &mut tq1).unwrap();
        tq1[50] = 0x80; // decodes to five 1 digits
        assert_eq!(
            TernaryMatrix::from_tq1_0(&tq1, 1, 256),
            Err(TernaryError::InvalidTq1Byte {
                row: 0,
                block: 0,
                byte: 0x80
            })
        );
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(
            TernaryMatrix::from_i2_s(&[0x55; 64], 1, 192),
            Err(TernaryError::Cols {
                ty: Some(GgmlType::I2_S),
                cols: 192,
                multiple: 128
            })
        );
        assert!(matches!(
            TernaryMatrix::from_tq2_0(&[0; tq2_0::BLOCK_BYTES], 1, 128),
            Err(TernaryError::Cols { multiple: 256, .. })
        ));
        assert!(matches!(
            TernaryMatrix::from_tq1_0(&[0; tq1_0::BLOCK_BYTES], usize::MAX, 256),
            Err(TernaryError::Overflow { .. })
        ));
        assert_eq!(
            TernaryMatrix::from_i2_s(&[0x55; 63], 1, 128),
            Err(TernaryError::Length {
                what: "I2_S data",
                expected: 64,
                actual: 63
            })
        );
        assert!(TernaryMatrix::from_tq2_0(&[0; tq2_0::BLOCK_BYTES + 1], 1, 256).is_err());
        assert!(matches!(
            TernaryMatrix::from_i2_s(&[0; 32], 3, 0),
            Err(TernaryError::Cols { cols: 0, .. })
        ));
        assert!(TernaryMatrix::from_tq1_0(&[0; tq1_0::BLOCK_BYTES - 1], 1, 256).is_err());
    }

    #[test]
    fn from_trits_validates() {
        let ok = |g: usize, n_scales: usize| {
            TernaryMatrix::from_trits(&[0; 512], 1, 512, g, vec![1.0; n_scales])
        };
        assert!(ok(512, 1).is_ok());
        assert!(ok(128, 4).is_ok());
        for g in [0, 64, 384, 1024] {
            assert_eq!(
                ok(g, 1),
                Err(TernaryError::GroupLen {
                    group_len: g,
                    cols: 512
                })
            );
        }
        assert!(matches!(
            ok(256, 1),
            Err(TernaryError::Length { what: "scales", .. })
        ));
        let mut trits = [0i8; 256];
        trits[130] = -2;
        assert_eq!(
            TernaryMatrix::from_trits(&trits, 2, 128, 128, vec![1.0; 2]),
            Err(TernaryError::InvalidTrit {
                row: 1,
                col: 2,
                value: -2
            })
        );
        let m = ok(512, 1).unwrap();
        assert_eq!(
            m.dequantize_row(1, &mut [0.0; 512]),
            Err(TernaryError::RowOutOfRange { row: 1, rows: 1 })
        );
        assert!(m.dequantize_row(0, &mut [0.0; 511]).is_err());
    }
}
