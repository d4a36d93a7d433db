//! Q8_0: blocks of 32 weights, `d: f16` then `qs: [i8; 32]`, weight = `d * q`.

use half::f16;

use super::{check_blocks, ggml_amax, read_f16, GgmlType, QuantError};

/// Weights per block, all sharing the block's scale `d`.
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block: `d`, then one signed byte per weight.
pub const BLOCK_BYTES: usize = 34;
const _: () = assert!(size_of::<f16>() + BLOCK_ELEMS == BLOCK_BYTES);

/// ggml's reference quantizer: `d = amax / 127`, `q = roundf(x / d)` (computed as `x * (1/d)`,
/// halves away from zero), `d` stored as f16 (so the stored scale is not exactly `amax / 127`).
pub fn quantize_row_q8_0_ref(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_blocks(GgmlType::Q8_0, src.len(), dst.len(), "dst")?;
    for (x, y) in src
        .chunks_exact(BLOCK_ELEMS)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        let d = ggml_amax(x) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        for (q, &v) in y[2..].iter_mut().zip(x) {
            // `as` saturates (and maps NaN to 0) where C's float -> int8 conversion is undefined.
            *q = libm::roundf(v * id) as i8 as u8;
        }
    }
    Ok(())
}

/// Decodes `dst.len()` weights (a multiple of 32) from `src`.
pub fn dequantize_row_q8_0(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_blocks(GgmlType::Q8_0, dst.len(), src.len(), "src")?;
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = read_f16(b, 0);
        for (y, &q) in y.iter_mut().zip(&b[2..]) {
            *y = f32::from(q as i8) * d;
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
    fn known_answer_with_unit_scale() {
        // amax = 127 gives d = 1 exactly, so q = roundf(x) and halves go away from zero.
        let mut x = [0.0f32; BLOCK_ELEMS];
        x[0] = 127.0;
        x[1] = -127.0;
        x[2] = 2.5;
        x[3] = -2.5;
        x[4] = 0.5;
        x[5] = -0.5;
        x[6] = 0.49999997;
        x[7] = 3.0;
        x[31] = -100.4;
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_q8_0_ref(&x, &mut b).unwrap();
        let mut want = [0u8; BLOCK_BYTES];
        want[..2].copy_from_slice(&[0x00, 0x3c]);
        want[2..10].copy_from_slice(&[127, 0x81, 3, 0xfd, 1, 0xff, 0, 3]);
        want[33] = 0x9c; // -100
        assert_eq!(b, want);

        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_row_q8_0(&b, &mut y).unwrap();
        assert_eq!(&y[..8], &[127.0, -127.0, 3.0, -3.0, 1.0, -1.0, 0.0, 3.0]);
        assert_eq!(y[31], -100.0);
    }

    #[test]
    fn dequantize_known_answer() {
        let mut b = [0u8; 2 * BLOCK_BYTES];
        b[..2].copy_from_slice(&[0x00, 0x38]); // 0.5
        b[2] = 0x80; // -128
        b[3] = 7;
        b[BLOCK_BYTES..BLOCK_BYTES + 2].copy_from_slice(&[0x00, 0xc0]); // -2
        b[BLOCK_BYTES + 2] = 0xff; // -1
        let mut y = [0.0f32; 64];
        dequantize_row_q8_0(&b, &mut y).unwrap();
        assert_eq!(&y[..3], &[-64.0, 3.5, 0.0]);
        assert_eq!(&y[BLOCK_ELEMS..BLOCK_ELEMS + 2], &[2.0, -0.0]);
    }

    #[test]
    fn all_zero_block() {
        let mut b = [0xaau8; BLOCK_BYTES];
        quantize_row_q8_0_ref(&[0.0; BLOCK_ELEMS], &mut b).unwrap();
        assert_eq!(b, [0u8; BLOCK_BYTES]);
    }

    #[test]
    fn round_trip_random() {
        let mut rng = XorShift::new(8);
        let x = rng.f32s(BLOCK_ELEMS * 64, 3.0);
        let mut b = vec![0u8; BLOCK_BYTES * 64];
        quantize_row_q8_0_ref(&x, &mut b).unwrap();
        let mut y = vec![0.0f32; x.len()];
        dequantize_row_q8_0(&b, &mut y).unwrap();
        for (xb, yb) in x.chunks(BLOCK_ELEMS).zip(y.chunks(BLOCK_ELEMS)) {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // Half a step, plus the f16 rounding of d (relative 2^-11) over up to 127 steps.
            let tol = amax / 127.0 * 0.5 + amax * 2f32.powi(-10);
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= tol, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn lengths_are_checked() {
        let mut y = [0.0f32; 31];
        assert_eq!(
            dequantize_row_q8_0(&[0u8; BLOCK_BYTES], &mut y),
            Err(QuantError::ElementCount {
                ty: GgmlType::Q8_0,
                n: 31
            })
        );
        assert!(dequantize_row_q8_0(&[0u8; 33], &mut [0.0; BLOCK_ELEMS]).is_err());
        assert!(quantize_row_q8_0_ref(&[0.0; 64], &mut [0u8; BLOCK_BYTES]).is_err());
    }
}
