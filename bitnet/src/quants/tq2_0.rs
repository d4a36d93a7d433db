//! TQ2_0: blocks of 256 ternary weights, `qs[64]` then `d: f16`; weight = `d * (c - 1)`.
//! Element `e = 128*h + 32*l + m` has its code `c` in `qs[32*h + m]` bits `2l .. 2l+1`.

use half::f16;

use super::{
    check_blocks, check_len, check_trits, ggml_amax, read_f16, ternary_code, GgmlType, QuantError,
};

const QK: usize = 256;
const BLOCK_BYTES: usize = 66;
const D: usize = 64;

/// Writes one block from its 256 codes and scale.
fn write_block(codes: &[u8; QK], d: f32, out: &mut [u8]) {
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
    for (x, y) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let d = ggml_amax(x);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut codes = [0u8; QK];
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
    check_len(GgmlType::TQ2_0, "d", trits.len() / QK, d.len())?;
    check_trits(GgmlType::TQ2_0, trits)?;
    for ((t, &d), y) in trits
        .chunks_exact(QK)
        .zip(d)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut codes = [0u8; QK];
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
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = read_f16(b, D);
        for (e, y) in y.iter_mut().enumerate() {
            let (h, l, m) = (e / 128, (e % 128) / 32, e % 32);
            let c = (b[32 * h + m] >> (2 * l)) & 3;
            *y = f32::from(c as i8 - 1) * d;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::test_rng::XorShift;
    use alloc::vec;

    #[test]
    fn known_answer() {
        let mut x = [0.0f32; 256];
        x[0] = 1.0; // h 0, l 0, m 0 -> qs[0] bits 0..1 = 2
        x[32 * 3 + 5] = -1.0; // h 0, l 3, m 5 -> qs[5] bits 6..7 = 0
        x[128 + 64 + 31] = 0.75; // h 1, l 2, m 31 -> qs[63] bits 4..5 = 2
        x[128 + 32 + 7] = -0.25; // rounds to 0: code 1, unchanged
        let mut b = [0u8; 66];
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        let mut want = [0x55u8; 66];
        want[0] = 0x56;
        want[5] = 0x15;
        want[63] = 0x65;
        want[64..].copy_from_slice(&[0x00, 0x3c]);
        assert_eq!(b, want);

        let mut y = [0.0f32; 256];
        dequantize_row_tq2_0(&b, &mut y).unwrap();
        let mut expect = [0.0f32; 256];
        expect[0] = 1.0;
        expect[101] = -1.0;
        expect[223] = 1.0;
        assert_eq!(y, expect);
    }

    #[test]
    fn halves_round_away_from_zero() {
        let mut x = [0.0f32; 256];
        x[0] = 1.0; // d = 1
        x[1] = 0.5;
        x[2] = -0.5;
        x[3] = 0.49999997;
        x[4] = -0.49999997;
        let mut b = [0u8; 66];
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        let codes: vec::Vec<u8> = (0..5).map(|m| b[m] & 3).collect();
        assert_eq!(codes, [2, 2, 0, 1, 1]);
    }

    /// ggml computes `x * (1/d)`, not `x / d`; the two differ at ties. These pairs were found by
    /// search: the first rounds to code 2 only through the reciprocal, the second to code 1.
    #[test]
    fn scales_by_the_reciprocal_like_ggml() {
        let mut x = [0.0f32; 512];
        x[0] = f32::from_bits(0x3ef2_99aa); // x / d = 0.49999997, x * (1/d) = 0.5
        x[1] = f32::from_bits(0x3f72_99ab); // d
        x[256] = f32::from_bits(0x407c_7586); // x / d = 0.5, x * (1/d) = 0.49999997
        x[257] = f32::from_bits(0x40fc_7586); // d
        assert_eq!(x[0] / x[1], 0.49999997);
        assert_eq!(x[256] / x[257], 0.5);
        let mut b = [0u8; 132];
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        assert_eq!((b[0] & 3, b[66] & 3), (2, 1));
    }

    #[test]
    fn all_zero_block() {
        let mut b = [0u8; 66];
        quantize_row_tq2_0_ref(&[0.0; 256], &mut b).unwrap();
        let mut want = [0x55u8; 66];
        want[64..].copy_from_slice(&[0, 0]);
        assert_eq!(b, want);
    }

    #[test]
    fn code_3_decodes_like_ggml() {
        let mut b = [0x55u8; 66];
        b[0] = 0x57;
        b[64..].copy_from_slice(&[0x00, 0x3c]);
        let mut y = [0.0f32; 256];
        dequantize_row_tq2_0(&b, &mut y).unwrap();
        assert_eq!(y[0], 2.0);
    }

    #[test]
    fn round_trip_random() {
        let mut rng = XorShift::new(2);
        let n = 256 * 6;
        let x = rng.f32s(n, 0.1);
        let mut b = vec![0u8; 66 * 6];
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        let mut y = vec![0.0f32; n];
        dequantize_row_tq2_0(&b, &mut y).unwrap();
        for (xs, ys) in x.chunks(256).zip(y.chunks(256)) {
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
            .map(|(i, &t)| f32::from(t) * d[i / 256])
            .collect();
        let (mut a, mut b) = ([0u8; 132], [0u8; 132]);
        pack_row_tq2_0(&trits, &d, &mut a).unwrap();
        quantize_row_tq2_0_ref(&x, &mut b).unwrap();
        assert_eq!(a, b);
        let mut y = [0.0f32; 512];
        dequantize_row_tq2_0(&a, &mut y).unwrap();
        assert_eq!(&y[..], &x[..]);
    }

    #[test]
    fn errors() {
        assert!(quantize_row_tq2_0_ref(&[0.0; 255], &mut [0u8; 66]).is_err());
        assert!(dequantize_row_tq2_0(&[0u8; 65], &mut [0.0; 256]).is_err());
        assert!(pack_row_tq2_0(&[0; 256], &[], &mut [0u8; 66]).is_err());
        let mut t = [0i8; 256];
        t[9] = 2;
        assert_eq!(
            pack_row_tq2_0(&t, &[1.0], &mut [0u8; 66]),
            Err(QuantError::InvalidTrit {
                ty: GgmlType::TQ2_0,
                index: 9,
                value: 2
            })
        );
    }
}
