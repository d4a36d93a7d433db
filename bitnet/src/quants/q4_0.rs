//! Q4_0: blocks of 32 values, `d: f16` then `qs: [u8; 16]`; element `j` (0..16) is the low
//! nibble of `qs[j]`, element `j + 16` its high nibble, value = `(nibble - 8) * d`. The KV
//! cache stores keys and values in it with `--kv-type q4_0`.

use half::f16;

use super::{check_blocks, read_f16, GgmlType, QuantError};

/// Values per block, all sharing the block's scale `d`.
pub const BLOCK_ELEMS: usize = 32;
/// Bytes per block: `d`, then two 4-bit codes per byte.
pub const BLOCK_BYTES: usize = 18;
const _: () = assert!(size_of::<f16>() + BLOCK_ELEMS / 2 == BLOCK_BYTES);

/// ggml's reference quantizer. `d = max / -8` where `max` is the value of largest magnitude
/// with its sign (the first of equal magnitudes), so that value maps to code 0 (= -8, the end
/// of the asymmetric range -8..=7 that has one more step) and the others round to
/// `min(15, trunc(x / d + 8.5))` (computed as `x * (1/d)`, as ggml does); `d` stored as f16.
pub fn quantize_row_q4_0_ref(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_blocks(GgmlType::Q4_0, src.len(), dst.len(), "dst")?;
    for (x, y) in src
        .chunks_exact(BLOCK_ELEMS)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        // ggml: `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }` from 0: a NaN is never
        // picked, the first of equal magnitudes wins.
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        let (lo, hi) = x.split_at(BLOCK_ELEMS / 2);
        for ((q, &x0), &x1) in y[2..].iter_mut().zip(lo).zip(hi) {
            // `as i8` truncates toward zero like C's (int8_t) cast, and saturates (NaN -> 0)
            // where C would be undefined.
            let c0 = ((x0 * id + 8.5) as i8).min(15) as u8;
            let c1 = ((x1 * id + 8.5) as i8).min(15) as u8;
            *q = c0 | (c1 << 4);
        }
    }
    Ok(())
}

/// Decodes `dst.len()` values (a multiple of 32) from `src`.
pub fn dequantize_row_q4_0(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_blocks(GgmlType::Q4_0, dst.len(), src.len(), "src")?;
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = read_f16(b, 0);
        let (lo, hi) = y.split_at_mut(BLOCK_ELEMS / 2);
        for ((y0, y1), &q) in lo.iter_mut().zip(hi).zip(&b[2..]) {
            *y0 = ((q & 0x0f) as i32 - 8) as f32 * d;
            *y1 = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
    Ok(())
}

/// The signed codes (-8..=7) of one block, in element order.
pub fn block_codes(block: &[u8]) -> [i8; BLOCK_ELEMS] {
    let mut c = [0i8; BLOCK_ELEMS];
    for (j, &q) in block[2..BLOCK_BYTES].iter().enumerate() {
        c[j] = (q & 0x0f) as i8 - 8;
        c[j + BLOCK_ELEMS / 2] = (q >> 4) as i8 - 8;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::test_rng::XorShift;
    use alloc::vec;

    #[test]
    fn known_answer() {
        // max = -8 (largest magnitude, negative) gives d = 1 exactly: code = trunc(x + 8.5)
        // clamped to 15, so x = 7.6 -> 15 (clamped from 16), x = -8 -> 0, halves round up.
        let mut x = [0.0f32; BLOCK_ELEMS];
        x[0] = -8.0;
        x[1] = 7.6;
        x[2] = 2.5;
        x[3] = -2.5;
        x[4] = 0.49;
        x[16] = -0.5;
        x[17] = 3.0;
        x[31] = -7.0;
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_q4_0_ref(&x, &mut b).unwrap();
        let mut want = [0u8; BLOCK_BYTES];
        want[..2].copy_from_slice(&[0x00, 0x3c]); // 1.0
                                                  // Low nibbles: elements 0..16; high nibbles: elements 16..32 (8 = zero).
        let lo = [0u8, 15, 11, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8];
        let hi = [8u8, 11, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 1];
        for j in 0..16 {
            want[2 + j] = lo[j] | (hi[j] << 4);
        }
        assert_eq!(b, want);

        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_row_q4_0(&b, &mut y).unwrap();
        assert_eq!(&y[..5], &[-8.0, 7.0, 3.0, -2.0, 0.0]);
        assert_eq!((y[16], y[17], y[31]), (0.0, 3.0, -7.0));
        assert_eq!(block_codes(&b)[1], 7);
        assert_eq!(block_codes(&b)[31], -7);
    }

    #[test]
    fn positive_max_maps_to_code_zero() {
        // The largest magnitude is positive: d = -max / 8 < 0 and max itself decodes exactly.
        let mut x = [0.0f32; BLOCK_ELEMS];
        x[5] = 4.0;
        x[6] = -4.0;
        let mut b = [0u8; BLOCK_BYTES];
        quantize_row_q4_0_ref(&x, &mut b).unwrap();
        assert_eq!(f16::from_le_bytes([b[0], b[1]]).to_f32(), -0.5);
        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_row_q4_0(&b, &mut y).unwrap();
        assert_eq!((y[5], y[6]), (4.0, -3.5)); // -4 needs code 16: clamped to 15
    }

    #[test]
    fn all_zero_block() {
        let mut b = [0xaau8; BLOCK_BYTES];
        quantize_row_q4_0_ref(&[0.0; BLOCK_ELEMS], &mut b).unwrap();
        // d = 0 / -8 = -0.0, stored as the f16 -0.0 (0x8000) as ggml does; codes 8 (= 0).
        let mut want = [0x88u8; BLOCK_BYTES];
        want[..2].copy_from_slice(&[0x00, 0x80]);
        assert_eq!(b, want);
    }

    #[test]
    fn round_trip_random() {
        let mut rng = XorShift::new(4);
        let x = rng.f32s(BLOCK_ELEMS * 64, 3.0);
        let mut b = vec![0u8; BLOCK_BYTES * 64];
        quantize_row_q4_0_ref(&x, &mut b).unwrap();
        let mut y = vec![0.0f32; x.len()];
        dequantize_row_q4_0(&b, &mut y).unwrap();
        for (i, (xb, yb)) in x.chunks(BLOCK_ELEMS).zip(y.chunks(BLOCK_ELEMS)).enumerate() {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // Half a step (amax / 8 per step), or a whole one where +amax clamps at 7; plus
            // the f16 rounding of d (relative 2^-11) over up to 8 steps.
            let tol = amax / 8.0 + amax * 2f32.powi(-10);
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= tol, "block {i}: {a} vs {b}");
            }
            let codes = block_codes(&b[i * BLOCK_BYTES..(i + 1) * BLOCK_BYTES]);
            assert!(codes.contains(&-8), "block {i}: the max maps to -8");
        }
    }

    #[test]
    fn lengths_are_checked() {
        assert!(dequantize_row_q4_0(&[0u8; BLOCK_BYTES], &mut [0.0; 31]).is_err());
        assert!(dequantize_row_q4_0(&[0u8; 17], &mut [0.0; BLOCK_ELEMS]).is_err());
        assert!(quantize_row_q4_0_ref(&[0.0; 64], &mut [0u8; BLOCK_BYTES]).is_err());
    }
}
