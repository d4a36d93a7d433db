//! TQ2_0: blocks of 256 ternary weights, `qs[64]` then `d: f16`; weight = `d * (c - 1)`.
//! Element `e = 128*h + 32*l + m` has its code `c` in `qs[32*h + m]` bits `2l .. 2l+1`.

use half::f16;

use super::{
    check_blocks, check_len, check_trits, ggml_amax, read_f16, repack_tq_blocks, ternary_code,
    GgmlType, QuantError,
};
use crate::ternary::{code3_mask, load_u64, TernaryError};

/// Weights per block, all sharing the block's scale `d`.
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per block: `qs` then `d`.
pub const BLOCK_BYTES: usize = 66;
/// Offset of `d`, after the 2-bit codes.
const D: usize = BLOCK_ELEMS / 4;
const _: () = assert!(D + size_of::<f16>() == BLOCK_BYTES);

/// Writes one block from its 256 codes and scale.
fn write_block(codes: &[u8; BLOCK_ELEMS], d: f32, out: &mut [u8]) {
    for (i, q) in out[..D].iter_mut().enumerate() {
        let (h, m) = (i / 32, i % 32);
        *q = (0..4).fold(0, |q, l| q | codes[128 * h + 32 * l + m] << (2 * l));
    }
    out[D..].copy_from_slice(&f16::from_f32(d).to_le_bytes());
}

/// ggml's reference quantizer: `d = max|x|` over the block (stored as f16),
/// `c = lroundf(x * (1/d)) + 1` with `1/d` from the unrounded f32 `d`; an all-zero block gets
/// `d = 0` and codes 1.
pub fn quantize_row_tq2_0_ref(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_blocks(GgmlType::TQ2_0, src.len(), dst.len(), "dst")?;
    for (x, y) in src
        .chunks_exact(BLOCK_ELEMS)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let d = ggml_amax(x);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut codes = [0u8; BLOCK_ELEMS];
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = ternary_code(v * id);
        }
        write_block(&codes, d, y);
    }
    Ok(())
}

/// Packs already-ternary weights: `trits` (a multiple of 256, each -1..=1) with one scale per
/// block in `d` (rounded to f16 on the way).
pub fn pack_row_tq2_0(trits: &[i8], d: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_blocks(GgmlType::TQ2_0, trits.len(), dst.len(), "dst")?;
    check_len(GgmlType::TQ2_0, "d", trits.len() / BLOCK_ELEMS, d.len())?;
    check_trits(GgmlType::TQ2_0, trits)?;
    for ((t, &d), y) in trits
        .chunks_exact(BLOCK_ELEMS)
        .zip(d)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut codes = [0u8; BLOCK_ELEMS];
        for (c, &t) in codes.iter_mut().zip(t) {
            *c = (t + 1) as u8;
        }
        write_block(&codes, d, y);
    }
    Ok(())
}

/// Decodes `dst.len()` weights (a multiple of 256), bit-exact with ggml's
/// `dequantize_row_tq2_0`: like it, the never-written code 3 decodes as `2 * d`
/// (`TernaryMatrix::from_tq2_0` rejects it instead).
pub fn dequantize_row_tq2_0(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_blocks(GgmlType::TQ2_0, dst.len(), src.len(), "src")?;
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = read_f16(b, D);
        for (e, y) in y.iter_mut().enumerate() {
            let (h, l, m) = (e / 128, (e % 128) / 32, e % 32);
            let c = (b[32 * h + m] >> (2 * l)) & 3;
            *y = f32::from(c as i8 - 1) * d;
        }
    }
    Ok(())
}

/// Repacks a whole TQ2_0 tensor of `cols` columns into [`crate::ternary::TernaryMatrix`]'s
/// canonical layout: `codes` (`n / 4` bytes) and one scale per block in `scales`. The caller has
/// checked the shape and every length. Code 3 and non-finite scales are rejected, the first in
/// file order winning.
pub fn repack_tq2_0(
    src: &[u8],
    cols: usize,
    codes: &mut [u8],
    scales: &mut [f32],
) -> Result<(), TernaryError> {
    let ty = GgmlType::TQ2_0;
    let layout = (BLOCK_BYTES, D);
    repack_tq_blocks(src, cols, layout, codes, scales, |src, dst, row, block| {
        // TQ2_0 keeps element 128h + 32l + m in byte 32h + m bits 2l; the canonical layout
        // keeps it in the same byte at bits 6 - 2l: reverse the fields of every byte.
        for (s, d) in src[..D].chunks_exact(8).zip(dst.chunks_exact_mut(8)) {
            let word = load_u64(s);
            if code3_mask(word) != 0 {
                let col = block * BLOCK_ELEMS + first_code3(src);
                return Err(TernaryError::InvalidCode { ty, row, col });
            }
            d.copy_from_slice(&reverse_fields(word).to_le_bytes());
        }
        Ok(())
    })
}

/// Reverses the order of the four 2-bit fields of every byte of `word`.
fn reverse_fields(word: u64) -> u64 {
    let w = (word >> 4) & 0x0f0f_0f0f_0f0f_0f0f | (word & 0x0f0f_0f0f_0f0f_0f0f) << 4;
    (w >> 2) & 0x3333_3333_3333_3333 | (w & 0x3333_3333_3333_3333) << 2
}

/// The first element of a block holding code 3 (slow; only used to report an error).
fn first_code3(block: &[u8]) -> usize {
    (0..BLOCK_ELEMS)
        .find(|&e| (block[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3 == 3)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::test_rng::XorShift;
    use alloc::vec;

    #[test]
    fn known_answer() {
        let mut x = [0.0f32; BLOCK_ELEMS];
        x[0] = 1.0; // h 0, l 0, m 0 -> qs[0] bits 0..1 = 2
        x[32 * 3 + 5] = -1.0; // h 0, l 3, m 5 -> qs[5] bits 6..7 = 0
        x[128 + 64 + 31] = 0.75; // h 1, l 2, m 31 -> qs[63] bits 4..5 = 2
        x[128 + 32 + 7] = -0.25; // rounds to 0: code 1, unchanged
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        let mut want = [0x55u8; BLOCK_BYTES];
        want[0] = 0x56;
        want[5] = 0x15;
        want[63] = 0x65;
        want[D..].copy_from_slice(&[0x00, 0x3c]);
        assert_eq!(b, want);

        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_row_tq2_0(&b, &mut y).unwrap();
        let mut expect = [0.0f32; BLOCK_ELEMS];
        expect[0] = 1.0;
        expect[101] = -1.0;
        expect[223] = 1.0;
        assert_eq!(y, expect);
    }

    #[test]
    fn halves_round_away_from_zero() {
        let mut x = [0.0f32; BLOCK_ELEMS];
        x[0] = 1.0; // d = 1
        x[1] = 0.5;
        x[2] = -0.5;
        x[3] = 0.49999997;
        x[4] = -0.49999997;
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        let codes: vec::Vec<u8> = (0..5).map(|m| b[m] & 3).collect();
        assert_eq!(codes, [2, 2, 0, 1, 1]);
    }

    /// ggml computes `x * (1/d)`, not `x / d`; the two differ at ties. These pairs were found by
    /// search: the first rounds to code 2 only through the reciprocal, the second to code 1.
    #[test]
    fn scales_by_the_reciprocal_like_ggml() {
        let mut x = [0.0f32; 2 * BLOCK_ELEMS];
        x[0] = f32::from_bits(0x3ef2_99aa); // x / d = 0.49999997, x * (1/d) = 0.5
        x[1] = f32::from_bits(0x3f72_99ab); // d
        x[256] = f32::from_bits(0x407c_7586); // x / d = 0.5, x * (1/d) = 0.49999997
        x[257] = f32::from_bits(0x40fc_7586); // d
        assert_eq!(x[0] / x[1], 0.49999997);
        assert_eq!(x[256] / x[257], 0.5);
        let mut b = [0u8; 2 * BLOCK_BYTES];
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        assert_eq!((b[0] & 3, b[BLOCK_BYTES] & 3), (2, 1));
    }

    #[test]
    fn all_zero_block() {
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_tq2_0_ref(&[0.0; BLOCK_ELEMS], &mut b).unwrap();
        let mut want = [0x55u8; BLOCK_BYTES];
        want[D..].copy_from_slice(&[0, 0]);
        assert_eq!(b, want);
    }

    #[test]
    fn code_3_decodes_like_ggml() {
        let mut b = [0x55u8; BLOCK_BYTES];
        b[0] = 0x57;
        b[D..].copy_from_slice(&[0x00, 0x3c]);
        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_row_tq2_0(&b, &mut y).unwrap();
        assert_eq!(y[0], 2.0);
    }

    #[test]
    fn round_trip_random() {
        let mut rng = XorShift::new(2);
        let n = BLOCK_ELEMS * 6;
        let x = rng.f32s(n, 0.1);
        let mut b = vec![0u8; BLOCK_BYTES * 6];
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        let mut y = vec![0.0f32; n];
        dequantize_row_tq2_0(&b, &mut y).unwrap();
        for (xs, ys) in x.chunks(BLOCK_ELEMS).zip(y.chunks(BLOCK_ELEMS)) {
            let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = f16::from_f32(amax).to_f32();
            for (&a, &v) in xs.iter().zip(ys) {
                let t = libm::roundf(a * (1.0 / amax));
                assert_eq!(v, t * d);
            }
        }
    }

    #[test]
    fn pack_matches_quantize_on_ternary_input() {
        let mut rng = XorShift::new(3);
        let trits = rng.trits(512);
        let d = [0.375f32, 2.5];
        let x: vec::Vec<f32> = trits
            .iter()
            .enumerate()
            .map(|(i, &t)| f32::from(t) * d[i / BLOCK_ELEMS])
            .collect();
        let (mut a, mut b) = ([0u8; 2 * BLOCK_BYTES], [0u8; 2 * BLOCK_BYTES]);
        pack_row_tq2_0(&trits, &d, &mut a).unwrap();
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        assert_eq!(a, b);
        let mut y = [0.0f32; 2 * BLOCK_ELEMS];
        dequantize_row_tq2_0(&a, &mut y).unwrap();
        assert_eq!(&y[..], &x[..]);
    }

    #[test]
    fn errors() {
        assert!(quantize_row_tq2_0_ref(&[0.0; 255], &mut [0u8; BLOCK_BYTES]).is_err());
        assert!(dequantize_row_tq2_0(&[0u8; 65], &mut [0.0; BLOCK_ELEMS]).is_err());
        assert!(pack_row_tq2_0(&[0; BLOCK_ELEMS], &[], &mut [0u8; BLOCK_BYTES]).is_err());
        let mut t = [0i8; BLOCK_ELEMS];
        t[9] = 2;
        assert_eq!(
            pack_row_tq2_0(&t, &[1.0], &mut [0u8; BLOCK_BYTES]),
            Err(QuantError::InvalidTrit {
                ty: GgmlType::TQ2_0,
                index: 9,
                value: 2
            })
        );
    }
}
