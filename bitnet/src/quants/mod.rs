//! Tensor element types as stored in GGUF files, and the reference (de)quantizers.
//!
//! Naming follows ggml: `quantize_row_<type>_ref` is the specification of a format and
//! `dequantize_row_<type>` its inverse. Layouts: `shared/design/formats.md`.

/// The GGUF tensor types this engine reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q8_0,
    Q6_K,
    TQ1_0,
    TQ2_0,
    /// bitnet.cpp's 2-bit ternary type; id 36 only under the bitnet architectures.
    I2_S,
}

/// Architectures under which type id 36 means I2_S (upstream ggml reused 36 later).
pub const I2_S_ARCHITECTURES: &[&str] = &["bitnet-b1.58", "bitnet-25", "bitnet"];

impl GgmlType {
    pub const ALL: [GgmlType; 9] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q6_K,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::I2_S,
    ];

    /// The id written in GGUF tensor infos.
    pub const fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::BF16 => 30,
            GgmlType::Q4_0 => 2,
            GgmlType::Q8_0 => 8,
            GgmlType::Q6_K => 14,
            GgmlType::TQ1_0 => 34,
            GgmlType::TQ2_0 => 35,
            GgmlType::I2_S => 36,
        }
    }

    /// Maps a GGUF type id to a type. `architecture` is `general.architecture`: id 36 is
    /// I2_S only for the bitnet architectures. `None` for anything unknown.
    pub fn from_id(id: u32, architecture: &str) -> Option<GgmlType> {
        if id == 36 && !I2_S_ARCHITECTURES.contains(&architecture) {
            return None;
        }
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    pub const fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q6_K => "Q6_K",
            GgmlType::TQ1_0 => "TQ1_0",
            GgmlType::TQ2_0 => "TQ2_0",
            GgmlType::I2_S => "I2_S",
        }
    }

    /// Elements per block: a tensor's element count must be a multiple of it.
    /// For I2_S this is the packing granularity (128 weights in 32 bytes).
    pub const fn block_elems(self) -> u64 {
        (match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 => q4_0::BLOCK_ELEMS,
            GgmlType::Q8_0 => q8_0::BLOCK_ELEMS,
            GgmlType::Q6_K => q6_k::BLOCK_ELEMS,
            GgmlType::TQ1_0 => tq1_0::BLOCK_ELEMS,
            GgmlType::TQ2_0 => tq2_0::BLOCK_ELEMS,
            GgmlType::I2_S => i2_s::BLOCK_ELEMS,
        }) as u64
    }

    /// Bytes per block (for I2_S: per 128 weights, excluding the 32-byte per-tensor tail).
    pub const fn block_bytes(self) -> u64 {
        (match self {
            GgmlType::F32 => f16::F32_BYTES,
            GgmlType::F16 => f16::F16_BYTES,
            GgmlType::BF16 => f16::BF16_BYTES,
            GgmlType::Q4_0 => q4_0::BLOCK_BYTES,
            GgmlType::Q8_0 => q8_0::BLOCK_BYTES,
            GgmlType::Q6_K => q6_k::BLOCK_BYTES,
            GgmlType::TQ1_0 => tq1_0::BLOCK_BYTES,
            GgmlType::TQ2_0 => tq2_0::BLOCK_BYTES,
            GgmlType::I2_S => i2_s::BLOCK_BYTES,
        }) as u64
    }

    pub const fn is_ternary(self) -> bool {
        matches!(self, GgmlType::TQ1_0 | GgmlType::TQ2_0 | GgmlType::I2_S)
    }

    /// Bytes a tensor of `n_elems` elements occupies, or `None` when `n_elems` is not a
    /// multiple of the block size or the size overflows.
    pub fn tensor_bytes(self, n_elems: u64) -> Option<u64> {
        if !n_elems.is_multiple_of(self.block_elems()) {
            return None;
        }
        let body = (n_elems / self.block_elems()).checked_mul(self.block_bytes())?;
        match self {
            GgmlType::I2_S => body.checked_add(i2_s::TAIL_BYTES as u64),
            _ => Some(body),
        }
    }
}

impl core::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

// One module per format: each owns its block layout (`BLOCK_ELEMS`, `BLOCK_BYTES`) and, for
// the ternary types, its repacking into `crate::ternary::TernaryMatrix` (`repack_<type>`).
pub mod f16;
pub mod i2_s;
pub mod q4_0;
pub mod q6_k;
pub mod q8_0;
pub mod tq1_0;
pub mod tq2_0;

pub use self::f16::{
    dequantize_row_bf16, dequantize_row_f16, dequantize_row_f32, quantize_row_bf16_ref,
    quantize_row_f16_ref, quantize_row_f32_ref,
};
pub use i2_s::{dequantize_i2_s, i2_s_scale, pack_i2_s, quantize_i2_s_ref};
pub use q4_0::{dequantize_row_q4_0, quantize_row_q4_0_ref};
pub use q6_k::{dequantize_row_q6_k, quantize_row_q6_k};
pub use q8_0::{dequantize_row_q8_0, quantize_row_q8_0_ref};
pub use tq1_0::{dequantize_row_tq1_0, pack_row_tq1_0, quantize_row_tq1_0_ref};
pub use tq2_0::{dequantize_row_tq2_0, pack_row_tq2_0, quantize_row_tq2_0_ref};

pub use i2_s::repack_i2_s;
pub use tq1_0::repack_tq1_0;
pub use tq2_0::repack_tq2_0;

/// Decodes `dst.len()` elements of type `ty` from `src`, which must be exactly their bytes.
/// I2_S has one scale per tensor, so for it `src` must be the whole tensor including its tail.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    match ty {
        GgmlType::F32 => dequantize_row_f32(src, dst),
        GgmlType::F16 => dequantize_row_f16(src, dst),
        GgmlType::BF16 => dequantize_row_bf16(src, dst),
        GgmlType::Q4_0 => dequantize_row_q4_0(src, dst),
        GgmlType::Q8_0 => dequantize_row_q8_0(src, dst),
        GgmlType::Q6_K => dequantize_row_q6_k(src, dst),
        GgmlType::TQ1_0 => dequantize_row_tq1_0(src, dst),
        GgmlType::TQ2_0 => dequantize_row_tq2_0(src, dst),
        GgmlType::I2_S => dequantize_i2_s(src, dst.len(), dst),
    }
}

/// Why a (de)quantizer refused its arguments. Nothing is written when an error is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantError {
    /// The element count is not a multiple of the type's block size.
    ElementCount { ty: GgmlType, n: usize },
    /// A buffer does not have the length the element count implies.
    Length {
        ty: GgmlType,
        buffer: &'static str,
        expected: usize,
        actual: usize,
    },
    /// An input trit is not -1, 0 or +1.
    InvalidTrit {
        ty: GgmlType,
        index: usize,
        value: i8,
    },
}

impl core::fmt::Display for QuantError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            QuantError::ElementCount { ty, n } => write!(
                f,
                "{ty}: {n} elements is not a multiple of the block size {}",
                ty.block_elems()
            ),
            QuantError::Length {
                ty,
                buffer,
                expected,
                actual,
            } => write!(f, "{ty}: {buffer} has length {actual}, expected {expected}"),
            QuantError::InvalidTrit { ty, index, value } => {
                write!(f, "{ty}: trit {index} is {value}, not -1, 0 or 1")
            }
        }
    }
}

impl core::error::Error for QuantError {}

/// Checks that `n_elems` elements of the block type `ty` occupy exactly `n_bytes` bytes
/// (`buffer` names the byte buffer in the error).
fn check_blocks(
    ty: GgmlType,
    n_elems: usize,
    n_bytes: usize,
    buffer: &'static str,
) -> Result<(), QuantError> {
    let block = ty.block_elems() as usize;
    if !n_elems.is_multiple_of(block) {
        return Err(QuantError::ElementCount { ty, n: n_elems });
    }
    let expected = (n_elems / block)
        .checked_mul(ty.block_bytes() as usize)
        .ok_or(QuantError::ElementCount { ty, n: n_elems })?;
    check_len(ty, buffer, expected, n_bytes)
}

fn check_len(
    ty: GgmlType,
    buffer: &'static str,
    expected: usize,
    actual: usize,
) -> Result<(), QuantError> {
    if expected == actual {
        Ok(())
    } else {
        Err(QuantError::Length {
            ty,
            buffer,
            expected,
            actual,
        })
    }
}

/// Rejects trits outside -1..=1 before anything is packed.
fn check_trits(ty: GgmlType, trits: &[i8]) -> Result<(), QuantError> {
    match trits.iter().position(|t| !(-1..=1).contains(t)) {
        Some(index) => Err(QuantError::InvalidTrit {
            ty,
            index,
            value: trits[index],
        }),
        None => Ok(()),
    }
}

/// `max(|x|)` with the exact semantics of ggml's `amax = MAX(amax, fabsf(v))` loop, so that the
/// reference quantizers pick the same scale even for odd inputs (a NaN is only kept when last).
fn ggml_amax(x: &[f32]) -> f32 {
    x.iter().fold(
        0.0f32,
        |amax, v| if amax > v.abs() { amax } else { v.abs() },
    )
}

/// The ternary code `lroundf(q) + 1` of a scaled weight, clamped to 0..=2.
///
/// `lroundf` rounds halves away from zero, so `round(q) >= 1` exactly when `q >= 0.5`. For the
/// reference quantizers `|q| <= 1` up to rounding, where this equals `lroundf(q) + 1`; the clamp
/// (and NaN -> code 1) only keeps out-of-range inputs from producing code 3.
fn ternary_code(q: f32) -> u8 {
    if q >= 0.5 {
        2
    } else if q <= -0.5 {
        0
    } else {
        1
    }
}

/// The block walk the TQ repackers share: both types hold 256 weights per block with an f16
/// `d` at byte `d_at`, and repack a block into 64 canonical code bytes. `block` converts one
/// block (`(src, dst, row, block_in_row)`); scales are checked here, errors name the first bad
/// block in file order.
fn repack_tq_blocks(
    src: &[u8],
    cols: usize,
    (block_bytes, d_at): (usize, usize),
    codes: &mut [u8],
    scales: &mut [f32],
    mut block: impl FnMut(&[u8], &mut [u8], usize, usize) -> Result<(), crate::ternary::TernaryError>,
) -> Result<(), crate::ternary::TernaryError> {
    const ELEMS: usize = 256;
    let blocks_per_row = cols / ELEMS;
    for (b, ((src, dst), scale)) in src
        .chunks_exact(block_bytes)
        .zip(codes.chunks_exact_mut(ELEMS / 4))
        .zip(scales.iter_mut())
        .enumerate()
    {
        let (row, col_block) = (b / blocks_per_row, b % blocks_per_row);
        block(src, dst, row, col_block)?;
        *scale = crate::ternary::check_scale(read_f16(src, d_at), row, col_block)?;
    }
    Ok(())
}

/// Reads a little-endian f16 at `bytes[at..at + 2]`.
fn read_f16(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Deterministic pseudo-random numbers for the unit tests (no `rand` dependency).
#[cfg(any(test, feature = "kernel-tests"))]
pub(crate) mod test_rng {
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            XorShift(seed | 1)
        }

        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// Uniform in [-1, 1).
        pub fn f32(&mut self) -> f32 {
            ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        }

        /// Uniform in {-1, 0, 1}.
        pub fn trit(&mut self) -> i8 {
            (self.next_u64() % 3) as i8 - 1
        }

        pub fn trits(&mut self, n: usize) -> alloc::vec::Vec<i8> {
            (0..n).map(|_| self.trit()).collect()
        }

        pub fn f32s(&mut self, n: usize, scale: f32) -> alloc::vec::Vec<f32> {
            (0..n).map(|_| self.f32() * scale).collect()
        }
    }
}
