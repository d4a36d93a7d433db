//! Q6_K: super-blocks of 256 weights in 210 bytes: `ql[128]`, `qh[64]`, `scales[16]` (i8),
//! `d` (f16). Weight `e` = `d * scales[e / 16] * (q - 32)` with the 6-bit `q` split as follows:
//! with `e = 128*h + 32*k + l` (h 0..1, k 0..3, l 0..31), the low nibble is in
//! `ql[64*h + 32*(k & 1) + l]` (bits 0..3 for k < 2, bits 4..7 for k >= 2) and the high two bits
//! are `qh[32*h + l]` bits `2k .. 2k+1`.

use half::f16;

use super::{check_blocks, read_f16, GgmlType, QuantError};

/// Weights per super-block (16 sub-blocks of 16, one i8 scale each).
pub const BLOCK_ELEMS: usize = 256;
/// Bytes per super-block: `ql`, `qh`, `scales`, then `d`.
pub const BLOCK_BYTES: usize = 210;
/// Offsets of `qh` (after four low bits per weight), `scales` (after two high bits per
/// weight) and `d` (after one scale per 16 weights).
const QH: usize = BLOCK_ELEMS / 2;
const SCALES: usize = QH + BLOCK_ELEMS / 4;
const D: usize = SCALES + BLOCK_ELEMS / 16;
const _: () = assert!(D + size_of::<f16>() == BLOCK_BYTES);

/// Byte positions of element `e`'s low nibble (index, shift) and high bits (index, shift).
fn positions(e: usize) -> ((usize, u32), (usize, u32)) {
    let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
    let low = (64 * h + 32 * (k & 1) + l, 4 * (k as u32 >> 1));
    let high = (QH + 32 * h + l, 2 * k as u32);
    (low, high)
}

/// Decodes `dst.len()` weights (a multiple of 256), bit-exact with ggml's `dequantize_row_q6_K`
/// (which evaluates `(d * scale) * q` in f32).
pub fn dequantize_row_q6_k(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_blocks(GgmlType::Q6_K, dst.len(), src.len(), "src")?;
    for (b, y) in src
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        let d = read_f16(b, D);
        for (e, y) in y.iter_mut().enumerate() {
            let ((li, ls), (hi, hs)) = positions(e);
            let q = ((b[li] >> ls) & 0xf) | (((b[hi] >> hs) & 3) << 4);
            let scale = f32::from(b[SCALES + e / 16] as i8);
            *y = d * scale * f32::from(q as i8 - 32);
        }
    }
    Ok(())
}

/// A simple Q6_K quantizer producing valid blocks that ggml decodes identically to
/// [`dequantize_row_q6_k`]. It is NOT byte-identical to ggml's `quantize_row_q6_K_ref`, which
/// searches for error-minimising sub-block scales; this one maps each 16-weight sub-block's
/// largest-magnitude weight to -32, quantizes the 16 sub-block scales to i8 against one f16 `d`,
/// then rounds each weight against its final scale.
pub fn quantize_row_q6_k(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_blocks(GgmlType::Q6_K, src.len(), dst.len(), "dst")?;
    for (x, y) in src
        .chunks_exact(BLOCK_ELEMS)
        .zip(dst.chunks_exact_mut(BLOCK_BYTES))
    {
        y.fill(0);
        let mut sub_scales = [0.0f32; 16];
        for (s, xs) in sub_scales.iter_mut().zip(x.chunks_exact(16)) {
            *s = signed_max(xs) / -32.0;
        }
        let max_scale = signed_max(&sub_scales);
        // ggml's threshold for "all zero"; the block stays all zero bytes (d = 0).
        if max_scale.abs() < 1e-15 {
            continue;
        }
        let iscale = -128.0 / max_scale;
        y[D..].copy_from_slice(&f16::from_f32(1.0 / iscale).to_le_bytes());
        let d = read_f16(y, D);
        for (j, &s) in sub_scales.iter().enumerate() {
            // Round the sub-block scale away from zero so its largest weight still fits in
            // -32 (rounding down would clamp it). |iscale * s| <= 128, and +128 is only
            // reachable with the sign opposite to max_scale, hence the clamp.
            let t = iscale * s;
            let sc = (libm::ceilf(t.abs()) * t.signum()).clamp(-128.0, 127.0) as i8;
            y[SCALES + j] = sc as u8;
            let step = d * f32::from(sc);
            for (e, &v) in x.iter().enumerate().skip(16 * j).take(16) {
                let l = if step != 0.0 {
                    libm::rintf(v / step).clamp(-32.0, 31.0) as i8
                } else {
                    0
                };
                let q = (l + 32) as u8;
                let ((li, ls), (hi, hs)) = positions(e);
                y[li] |= (q & 0xf) << ls;
                y[hi] |= (q >> 4) << hs;
            }
        }
    }
    Ok(())
}

/// The value of largest magnitude (the first one on ties), keeping its sign; NaN is skipped.
fn signed_max(x: &[f32]) -> f32 {
    let mut best = 0.0f32;
    for &v in x {
        if v.abs() > best.abs() {
            best = v;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::test_rng::XorShift;
    use alloc::vec;

    /// A block written byte by byte from the layout description; all unset weights have q = 0
    /// (i.e. -32 after the offset).
    #[test]
    fn dequantize_known_answer() {
        let mut b = [0u8; BLOCK_BYTES];
        b[0] = 0x21; // element 0: low nibble 1; element 64: low nibble 2
        b[32] = 0x43; // element 32: low nibble 3; element 96: low nibble 4
        b[QH] = 0b11_10_01_00; // high bits of elements 0, 32, 64, 96: 0, 1, 2, 3
        b[64 + 5] = 0x0f; // element 128 + 5: low nibble 15
        b[QH + 32 + 5] = 0x03; // element 133: high bits 3
        for j in 0..16 {
            b[SCALES + j] = 1;
        }
        b[SCALES + 2] = (-2i8) as u8; // elements 32..47
        b[SCALES + 4] = 3; // elements 64..79
        b[SCALES + 6] = 4; // elements 96..111
        b[SCALES + 8] = 5; // elements 128..143
        b[SCALES + 15] = (-128i8) as u8; // elements 240..255
        b[D..].copy_from_slice(&[0x00, 0x38]); // d = 0.5

        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_row_q6_k(&b, &mut y).unwrap();
        assert_eq!(y[0], 0.5 * 1.0 * -31.0); // q = 1
        assert_eq!(y[32], 0.5 * -2.0 * -13.0); // q = 3 | 1 << 4 = 19
        assert_eq!(y[64], 0.5 * 3.0 * 2.0); // q = 2 | 2 << 4 = 34
        assert_eq!(y[96], 0.5 * 4.0 * 20.0); // q = 4 | 3 << 4 = 52
        assert_eq!(y[133], 0.5 * 5.0 * 31.0); // q = 63
        assert_eq!(y[1], 0.5 * 1.0 * -32.0);
        assert_eq!(y[33], 0.5 * -2.0 * -32.0);
        assert_eq!(y[255], 0.5 * -128.0 * -32.0);
        assert_eq!(y[134], 0.5 * 5.0 * -32.0);
    }

    #[test]
    fn every_element_has_its_own_bits() {
        // Setting one element's q to 63 must change that element only.
        for e in 0..BLOCK_ELEMS {
            let mut b = [0u8; BLOCK_BYTES];
            b[SCALES..D].fill(1);
            b[D..].copy_from_slice(&[0x00, 0x3c]);
            let ((li, ls), (hi, hs)) = positions(e);
            b[li] |= 0xf << ls;
            b[hi] |= 3 << hs;
            let mut y = [0.0f32; BLOCK_ELEMS];
            dequantize_row_q6_k(&b, &mut y).unwrap();
            for (i, v) in y.iter().enumerate() {
                assert_eq!(*v, if i == e { 31.0 } else { -32.0 }, "set {e}, read {i}");
            }
        }
    }

    #[test]
    fn quantize_round_trip_random() {
        let mut rng = XorShift::new(6);
        let x = rng.f32s(BLOCK_ELEMS * 8, 2.0);
        let mut b = vec![0u8; BLOCK_BYTES * 8];
        quantize_row_q6_k(&x, &mut b).unwrap();
        let mut y = vec![0.0f32; x.len()];
        dequantize_row_q6_k(&b, &mut y).unwrap();
        for (xs, ys) in x.chunks(16).zip(y.chunks(16)) {
            let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // A step is about amax / 32 (a little more after rounding the i8 scale up). Errors
            // are at most half a step, except a weight of the sign opposite to the largest one,
            // which is clamped to +31 steps: then up to one step.
            for (a, b) in xs.iter().zip(ys) {
                assert!((a - b).abs() <= amax / 32.0 * 1.05, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn quantize_zero_block_and_exact_grid() {
        let mut b = [0xffu8; BLOCK_BYTES];
        quantize_row_q6_k(&[0.0; BLOCK_ELEMS], &mut b).unwrap();
        assert_eq!(b, [0u8; BLOCK_BYTES]);

        // Each sub-block starts with -32, so every sub-block scale is 1 and integers in
        // -32..=31 come back exactly (d = -1/128, scales -128).
        let x: vec::Vec<f32> = (0..BLOCK_ELEMS)
            .map(|i| {
                if i % 16 == 0 {
                    -32.0
                } else {
                    ((i * 7) % 63) as f32 - 31.0
                }
            })
            .collect();
        quantize_row_q6_k(&x, &mut b).unwrap();
        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_row_q6_k(&b, &mut y).unwrap();
        assert_eq!(&y[..], &x[..]);
    }

    #[test]
    fn lengths_are_checked() {
        assert!(dequantize_row_q6_k(&[0u8; BLOCK_BYTES], &mut [0.0; 128]).is_err());
        assert!(dequantize_row_q6_k(&[0u8; 209], &mut [0.0; BLOCK_ELEMS]).is_err());
        assert!(quantize_row_q6_k(&[0.0; BLOCK_ELEMS], &mut [0u8; 211]).is_err());
    }
}
