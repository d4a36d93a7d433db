//! TQ1_0: blocks of 256 ternary weights in 54 bytes, `qs[48]`, `qh[4]`, `d: f16`; weight =
//! `d * (c - 1)`. Codes are packed five per byte in base 3:
//! * `qs[m]`, m < 32: elements `m + 32n`, n = 0..4 (elements 0..160);
//! * `qs[32 + m]`, m < 16: elements `160 + 16n + m` (elements 160..240);
//! * `qh[m]`, m < 4: elements `240 + 4n + m`, n = 0..3, and a fifth digit that is always 0.
//!
//! Digit n = 0 is the most significant: a byte stores `v = sum c_n 3^(4-n)` as
//! `ceil(v * 256 / 243)`, i.e. the fraction `v / 243` in 8 bits, so digit n is recovered by
//! multiplying by `3^n` modulo 256 (dropping the digits above) and taking `(q * 3) >> 8`.

use half::f16;

use super::i2_s;
use super::{
    check_blocks, check_len, check_trits, ggml_amax, read_f16, repack_tq_blocks, ternary_code,
    GgmlType, QuantError,
};
use crate::ternary::TernaryError;

/// Weights per block, all sharing the block's scale `d`.
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per block: `qs`, `qh`, then `d`.
pub const BLOCK_BYTES: usize = 54;
/// Offset of `qh`: 48 bytes of five codes each cover elements 0..240.
const QH: usize = 48;
/// Offset of `d`, after the four `qh` bytes that hold the last 16 codes.
const D: usize = QH + 4;
const _: () = assert!(5 * QH + 4 * (D - QH) == BLOCK_ELEMS);
const _: () = assert!(D + size_of::<f16>() == BLOCK_BYTES);

/// `DIGITS[b][n]`: digit n of byte b, by ggml's extraction (always 0..=2, for every byte).
const DIGITS: [[u8; 5]; 256] = {
    let mut table = [[0u8; 5]; 256];
    let mut b = 0;
    while b < 256 {
        let mut n = 0;
        let mut pow3 = 1u8;
        while n < 5 {
            let q = (b as u8).wrapping_mul(pow3);
            table[b][n] = ((q as u16 * 3) >> 8) as u8;
            pow3 = pow3.wrapping_mul(3);
            n += 1;
        }
        b += 1;
    }
    table
};

/// The byte holding base-3 digits `c[0]` (most significant) .. `c[4]`: ggml's
/// `(v * 256 + 242) / 243`, at most 255 for v <= 242.
fn encode(c: [u8; 5]) -> u8 {
    let v = c.iter().fold(0u16, |v, &c| v * 3 + u16::from(c));
    (v * 256).div_ceil(243) as u8
}

/// Writes one block from its 256 codes and scale.
fn write_block(codes: &[u8; BLOCK_ELEMS], d: f32, out: &mut [u8]) {
    for m in 0..32 {
        out[m] = encode(core::array::from_fn(|n| codes[m + 32 * n]));
    }
    for m in 0..16 {
        out[32 + m] = encode(core::array::from_fn(|n| codes[160 + 16 * n + m]));
    }
    for m in 0..4 {
        out[QH + m] = encode(core::array::from_fn(|n| {
            if n < 4 {
                codes[240 + 4 * n + m]
            } else {
                0
            }
        }));
    }
    out[D..].copy_from_slice(&f16::from_f32(d).to_le_bytes());
}

/// Decodes the 256 codes of one block into `codes`.
///
/// Every byte decodes to digits 0..=2, but a `qh` byte whose unused fifth digit is not 0 cannot
/// come from a conforming writer: the offset of the first such byte is returned as the error
/// (after all codes have been written; ggml itself ignores that digit).
fn tq1_0_block_codes(block: &[u8], codes: &mut [u8; BLOCK_ELEMS]) -> Result<(), usize> {
    for m in 0..32 {
        let digits = &DIGITS[usize::from(block[m])];
        for (n, &c) in digits.iter().enumerate() {
            codes[m + 32 * n] = c;
        }
    }
    for m in 0..16 {
        let digits = &DIGITS[usize::from(block[32 + m])];
        for (n, &c) in digits.iter().enumerate() {
            codes[160 + 16 * n + m] = c;
        }
    }
    let mut bad = None;
    for m in 0..4 {
        let digits = &DIGITS[usize::from(block[QH + m])];
        for (n, &c) in digits[..4].iter().enumerate() {
            codes[240 + 4 * n + m] = c;
        }
        if digits[4] != 0 && bad.is_none() {
            bad = Some(QH + m);
        }
    }
    bad.map_or(Ok(()), Err)
}

/// ggml's reference quantizer: `d = max|x|` over the block (stored as f16),
/// `c = lroundf(x * (1/d)) + 1` with `1/d` from the unrounded f32 `d`; an all-zero block gets
/// `d = 0` and codes 1.
pub fn quantize_row_tq1_0_ref(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_blocks(GgmlType::TQ1_0, src.len(), dst.len(), "dst")?;
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
pub fn pack_row_tq1_0(trits: &[i8], d: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_blocks(GgmlType::TQ1_0, trits.len(), dst.len(), "dst")?;
    check_len(GgmlType::TQ1_0, "d", trits.len() / BLOCK_ELEMS, d.len())?;
    check_trits(GgmlType::TQ1_0, trits)?;
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
/// `dequantize_row_tq1_0` (which, like this, ignores the fifth digit of `qh` bytes).
pub fn dequantize_row_tq1_0(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_blocks(GgmlType::TQ1_0, dst.len(), src.len(), "src")?;
    let mut codes = [0u8; BLOCK_ELEMS];
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        // A nonzero fifth qh digit only matters to the validating repacker.
        let _ = tq1_0_block_codes(b, &mut codes);
        let d = read_f16(b, D);
        for (y, &c) in y.iter_mut().zip(&codes) {
            *y = f32::from(c as i8 - 1) * d;
        }
    }
    Ok(())
}

/// Repacks a whole TQ1_0 tensor of `cols` columns into [`crate::ternary::TernaryMatrix`]'s
/// canonical layout: `codes` (`n / 4` bytes) and one scale per block in `scales`. The caller has
/// checked the shape and every length. A `qh` byte with a nonzero fifth digit and non-finite
/// scales are rejected, the first in file order winning.
pub fn repack_tq1_0(
    src: &[u8],
    cols: usize,
    codes: &mut [u8],
    scales: &mut [f32],
) -> Result<(), TernaryError> {
    let mut block_codes = [0u8; BLOCK_ELEMS];
    let layout = (BLOCK_BYTES, D);
    repack_tq_blocks(src, cols, layout, codes, scales, |src, dst, row, block| {
        if let Err(at) = tq1_0_block_codes(src, &mut block_codes) {
            let byte = src[at];
            return Err(TernaryError::InvalidTq1Byte { row, block, byte });
        }
        for (codes, out) in block_codes
            .chunks_exact(i2_s::BLOCK_ELEMS)
            .zip(dst.chunks_exact_mut(i2_s::BLOCK_BYTES))
        {
            i2_s::pack_block_128(codes, out);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::test_rng::XorShift;
    use alloc::vec;

    #[test]
    fn every_value_decodes_to_its_digits() {
        for v in 0..243u16 {
            let digits: [u8; 5] =
                core::array::from_fn(|n| ((v / 3u16.pow(4 - n as u32)) % 3) as u8);
            let b = encode(digits);
            assert_eq!(u16::from(b), (v * 256).div_ceil(243));
            assert_eq!(DIGITS[usize::from(b)], digits, "v = {v}");
        }
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
        quantize_row_tq1_0_ref(&x, &mut b).unwrap();
        assert_eq!(
            (
                DIGITS[usize::from(b[0])][0],
                DIGITS[usize::from(b[BLOCK_BYTES])][0]
            ),
            (2, 1)
        );
    }

    #[test]
    fn all_zero_block() {
        // Codes all 1: v = 121 -> ceil(121 * 256 / 243) = 128; qh: v = 40 * 3 = 120 -> 127.
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_tq1_0_ref(&[0.0; BLOCK_ELEMS], &mut b).unwrap();
        let mut want = [0x80u8; BLOCK_BYTES];
        want[QH..D].fill(0x7f);
        want[D..].fill(0);
        assert_eq!(b, want);
    }

    #[test]
    fn known_answer() {
        let mut x = [0.0f32; BLOCK_ELEMS];
        x[0] = 1.0; // qs[0] digit 0: v = 2*81 + 27 + 9 + 3 + 1 = 202 -> 213
        x[32 * 4 + 7] = -1.0; // qs[7] digit 4: v = 81 + 27 + 9 + 3 + 0 = 120 -> 127
        x[160 + 16 * 2 + 3] = 0.5; // qs[35] digit 2: v = 81 + 27 + 18 + 3 + 1 = 130 -> 137
        x[240 + 4 + 2] = -0.5; // qh[2] digit 1: v = (27 + 0 + 3 + 1) * 3 = 93 -> 98
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_tq1_0_ref(&x, &mut b).unwrap();
        let mut want = [0x80u8; BLOCK_BYTES];
        want[QH..D].fill(0x7f);
        want[0] = 213;
        want[7] = 127;
        want[35] = 137;
        want[50] = 98;
        want[D..].copy_from_slice(&[0x00, 0x3c]);
        assert_eq!(b, want);

        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_row_tq1_0(&b, &mut y).unwrap();
        let mut expect = [0.0f32; BLOCK_ELEMS];
        expect[0] = 1.0;
        expect[135] = -1.0;
        expect[195] = 1.0;
        expect[246] = -1.0;
        assert_eq!(y, expect);
    }

    #[test]
    fn halves_round_away_from_zero() {
        let mut x = [0.0f32; BLOCK_ELEMS];
        x[0] = -1.0; // d = 1
        x[32] = 0.5;
        x[64] = -0.5;
        x[96] = 0.49999997;
        x[128] = -0.49999997;
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_tq1_0_ref(&x, &mut b).unwrap();
        assert_eq!(DIGITS[usize::from(b[0])], [0, 2, 0, 1, 1]);
    }

    #[test]
    fn phantom_qh_digit_is_reported_but_ignored_by_dequantize() {
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_tq1_0_ref(&[0.0; BLOCK_ELEMS], &mut b).unwrap();
        // 128 decodes to 1,1,1,1,1: the fifth digit of a qh byte must be 0.
        b[49] = 128;
        let mut codes = [0u8; BLOCK_ELEMS];
        assert_eq!(tq1_0_block_codes(&b, &mut codes), Err(49));
        assert!(codes.iter().all(|&c| c == 1));
        let mut y = [1.0f32; BLOCK_ELEMS];
        dequantize_row_tq1_0(&b, &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn round_trip_random() {
        let mut rng = XorShift::new(1);
        let n = BLOCK_ELEMS * 6;
        let x = rng.f32s(n, 0.1);
        let mut b = vec![0u8; BLOCK_BYTES * 6];
        quantize_row_tq1_0_ref(&x, &mut b).unwrap();
        let mut y = vec![0.0f32; n];
        dequantize_row_tq1_0(&b, &mut y).unwrap();
        for (xs, ys) in x.chunks(BLOCK_ELEMS).zip(y.chunks(BLOCK_ELEMS)) {
            let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = f16::from_f32(amax).to_f32();
            for (&a, &v) in xs.iter().zip(ys) {
                assert_eq!(v, libm::roundf(a * (1.0 / amax)) * d);
            }
        }
    }

    #[test]
    fn pack_matches_quantize_on_ternary_input() {
        let mut rng = XorShift::new(4);
        let trits = rng.trits(2 * BLOCK_ELEMS);
        let d = [0.125f32, 3.0];
        let x: vec::Vec<f32> = trits
            .iter()
            .enumerate()
            .map(|(i, &t)| f32::from(t) * d[i / BLOCK_ELEMS])
            .collect();
        let (mut a, mut b) = ([0u8; 2 * BLOCK_BYTES], [0u8; 2 * BLOCK_BYTES]);
        pack_row_tq1_0(&trits, &d, &mut a).unwrap();
        quantize_row_tq1_0_ref(&x, &mut b).unwrap();
        assert_eq!(a, b);
        let mut y = [0.0f32; 2 * BLOCK_ELEMS];
        dequantize_row_tq1_0(&a, &mut y).unwrap();
        assert_eq!(&y[..], &x[..]);
    }

    #[test]
    fn errors() {
        assert!(quantize_row_tq1_0_ref(&[0.0; BLOCK_ELEMS], &mut [0u8; 53]).is_err());
        assert!(dequantize_row_tq1_0(&[0u8; BLOCK_BYTES], &mut [0.0; 128]).is_err());
        assert!(pack_row_tq1_0(&[0; BLOCK_ELEMS], &[1.0, 1.0], &mut [0u8; BLOCK_BYTES]).is_err());
        assert!(pack_row_tq1_0(&[-2; BLOCK_ELEMS], &[1.0], &mut [0u8; BLOCK_BYTES]).is_err());
    }
}
