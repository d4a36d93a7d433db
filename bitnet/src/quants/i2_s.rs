//! I2_S (bitnet.cpp): a whole tensor of `n` ternary weights (n a multiple of 128) in `n/4`
//! bytes, then a 32-byte tail whose first four bytes are the per-tensor scale beta (f32 LE).
//!
//! The flattened tensor is cut into blocks of 128; byte `g` of a block's 32 bytes holds the codes
//! `c = trit + 1` of the block's elements `g, 32+g, 64+g, 96+g` in bits 7..6, 5..4, 3..2, 1..0.
//! This is also the canonical in-memory layout of `crate::ternary::TernaryMatrix`.

use super::{check_len, check_trits, ternary_code, GgmlType, QuantError};
use crate::ternary::{check_scale, code3_mask, load_u64, locate_canonical, TernaryError};

/// Weights per block: the packing granularity (the scale is per tensor).
pub const BLOCK_ELEMS: usize = 128;
/// Bytes per block: four 2-bit codes per byte, no scale.
pub const BLOCK_BYTES: usize = BLOCK_ELEMS / 4;
/// Bytes after the packed codes; the first four are the per-tensor scale (f32 LE).
pub const TAIL_BYTES: usize = 32;
const _: () = assert!(size_of::<f32>() <= TAIL_BYTES);

/// Packs 128 codes (0..=2) into one 32-byte block.
pub(crate) fn pack_block_128(codes: &[u8], out: &mut [u8]) {
    for (g, byte) in out[..BLOCK_BYTES].iter_mut().enumerate() {
        *byte = codes[g] << 6 | codes[32 + g] << 4 | codes[64 + g] << 2 | codes[96 + g];
    }
}

/// Checks `n` and the packed buffer's length (`n/4 + 32`).
fn check_tensor(n: usize, bytes: usize, buffer: &'static str) -> Result<(), QuantError> {
    let ty = GgmlType::I2_S;
    if !n.is_multiple_of(BLOCK_ELEMS) {
        return Err(QuantError::ElementCount { ty, n });
    }
    check_len(ty, buffer, n / 4 + TAIL_BYTES, bytes)
}

/// Packs codes (one per element, 0..=2) and beta into `dst`, zeroing the rest of the tail.
fn write_tensor(codes: impl Fn(usize) -> u8, beta: f32, dst: &mut [u8]) {
    let (body, tail) = dst.split_at_mut(dst.len() - TAIL_BYTES);
    let mut block = [0u8; BLOCK_ELEMS];
    for (i, out) in body.chunks_exact_mut(BLOCK_BYTES).enumerate() {
        for (k, c) in block.iter_mut().enumerate() {
            *c = codes(i * BLOCK_ELEMS + k);
        }
        pack_block_128(&block, out);
    }
    tail.fill(0);
    tail[..4].copy_from_slice(&beta.to_le_bytes());
}

/// Ternarizes master weights the way BitNet b1.58 was trained: beta = mean|W| over the whole
/// tensor (summed in f64, stored as f32), trit = clamp(round(W / beta), -1, 1) with halves away
/// from zero, where the division uses the stored f32 beta so the file alone reproduces it.
/// beta = 0 (all-zero tensor) gives all trits 0.
///
/// `src.len()` must be a multiple of 128; `dst` must be `src.len()/4 + 32` bytes.
///
/// Note this is the trainer's recipe, not bitnet.cpp's `quantize_i2_s`, which expects weights that
/// are already ternary times a scale and stores max|W|. Feeding this function `trit * beta`
/// keeps the trits but stores a smaller beta (the mean over zeros too); use [`pack_i2_s`] then.
pub fn quantize_i2_s_ref(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_tensor(src.len(), dst.len(), "dst")?;
    let beta = if src.is_empty() {
        0.0
    } else {
        let sum: f64 = src.iter().map(|x| f64::from(x.abs())).sum();
        (sum / src.len() as f64) as f32
    };
    if beta == 0.0 {
        write_tensor(|_| 1, beta, dst);
    } else {
        write_tensor(|i| ternary_code(src[i] / beta), beta, dst);
    }
    Ok(())
}

/// Packs already-ternary weights (`trits`, each -1..=1, a multiple of 128) with scale `beta`.
pub fn pack_i2_s(trits: &[i8], beta: f32, dst: &mut [u8]) -> Result<(), QuantError> {
    check_tensor(trits.len(), dst.len(), "dst")?;
    check_trits(GgmlType::I2_S, trits)?;
    write_tensor(|i| (trits[i] + 1) as u8, beta, dst);
    Ok(())
}

/// The scale beta of an I2_S tensor of `n` elements stored in `src`.
pub fn i2_s_scale(src: &[u8], n: usize) -> Result<f32, QuantError> {
    check_tensor(n, src.len(), "src")?;
    let at = n / 4;
    Ok(f32::from_le_bytes([
        src[at],
        src[at + 1],
        src[at + 2],
        src[at + 3],
    ]))
}

/// Decodes a whole I2_S tensor of `n` elements: `w = (c - 1) * beta`. The never-written code 3
/// decodes as `2 * beta`, as upstream's arithmetic does; `TernaryMatrix::from_i2_s` rejects it.
pub fn dequantize_i2_s(src: &[u8], n: usize, dst: &mut [f32]) -> Result<(), QuantError> {
    let beta = i2_s_scale(src, n)?;
    check_len(GgmlType::I2_S, "dst", n, dst.len())?;
    for (b, y) in src[..n / 4]
        .chunks_exact(BLOCK_BYTES)
        .zip(dst.chunks_exact_mut(BLOCK_ELEMS))
    {
        for (k, y) in y.iter_mut().enumerate() {
            let (j, g) = (k / 32, k % 32);
            let c = (b[g] >> (6 - 2 * j)) & 3;
            *y = f32::from(c as i8 - 1) * beta;
        }
    }
    Ok(())
}

/// Repacks a whole I2_S tensor of `cols` columns into [`crate::ternary::TernaryMatrix`]'s
/// canonical layout, which is I2_S's own: the codes are validated (no code 3) and copied, and
/// beta is repeated as the scale of every row. The caller has checked the shape and every
/// length. A non-finite beta is reported before any code.
pub fn repack_i2_s(
    src: &[u8],
    cols: usize,
    codes: &mut [u8],
    scales: &mut [f32],
) -> Result<(), TernaryError> {
    let (body, tail) = src.split_at(codes.len());
    let beta = check_scale(
        f32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]),
        0,
        0,
    )?;
    if let Some((i, j)) = first_code3(body) {
        let (row, col) = locate_canonical(i, j, cols);
        let ty = GgmlType::I2_S;
        return Err(TernaryError::InvalidCode { ty, row, col });
    }
    codes.copy_from_slice(body);
    scales.fill(beta);
    Ok(())
}

/// The first byte (index, field 0..=3 from the top bits) of packed codes holding code 3.
fn first_code3(body: &[u8]) -> Option<(usize, usize)> {
    let mut words = body.chunks_exact(8);
    let mut base = 0;
    for w in words.by_ref() {
        if code3_mask(load_u64(w)) != 0 {
            break;
        }
        base += 8;
    }
    body[base..].iter().enumerate().find_map(|(i, &b)| {
        (0..4)
            .find(|j| (b >> (6 - 2 * j)) & 3 == 3)
            .map(|j| (base + i, j))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::test_rng::XorShift;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn known_answer() {
        let mut x = [0.0f32; BLOCK_ELEMS];
        x[0] = 1.0; // byte 0 bits 7..6
        x[32 + 1] = -1.0; // byte 1 bits 5..4
        x[96 + 31] = 1.0; // byte 31 bits 1..0
        let mut b = [0u8; BLOCK_BYTES + TAIL_BYTES];
        quantize_i2_s_ref(&x, &mut b).unwrap();
        let mut want = [0x55u8; BLOCK_BYTES + TAIL_BYTES];
        want[0] = 0x95; // 2<<6 | 1<<4 | 1<<2 | 1
        want[1] = 0x45; // 1<<6 | 0<<4 | 1<<2 | 1
        want[31] = 0x56; // 1<<6 | 1<<4 | 1<<2 | 2
        want[BLOCK_BYTES..].fill(0);
        // beta = 3/128 = 1.5 * 2^-6: f32 bits 0x3cc00000.
        want[BLOCK_BYTES..BLOCK_BYTES + 4].copy_from_slice(&[0x00, 0x00, 0xc0, 0x3c]);
        assert_eq!(b, want);

        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_i2_s(&b, BLOCK_ELEMS, &mut y).unwrap();
        let beta = 3.0 / 128.0;
        let mut expect = [0.0f32; BLOCK_ELEMS];
        expect[0] = beta;
        expect[33] = -beta;
        expect[127] = beta;
        assert_eq!(y, expect);
    }

    #[test]
    fn halves_round_away_from_zero() {
        // sum|x| = 128 + 2^-24 over 128 elements: beta = 1 + 2^-31, stored as f32 1.0.
        let mut x = [0.0f32; BLOCK_ELEMS];
        let head = [
            0.5,
            -0.5,
            1.5,
            -1.5,
            0.5 - 2f32.powi(-24),
            1.5 + 2f32.powi(-23),
        ];
        x[..6].copy_from_slice(&head);
        for (i, v) in x[6..].iter_mut().enumerate() {
            *v = if i % 2 == 0 { 1.0 } else { -1.0 };
        }
        let mut b = [0u8; BLOCK_BYTES + TAIL_BYTES];
        quantize_i2_s_ref(&x, &mut b).unwrap();
        assert_eq!(i2_s_scale(&b, BLOCK_ELEMS).unwrap(), 1.0);
        let mut y = [0.0f32; BLOCK_ELEMS];
        dequantize_i2_s(&b, BLOCK_ELEMS, &mut y).unwrap();
        assert_eq!(&y[..6], &[1.0, -1.0, 1.0, -1.0, 0.0, 1.0]);
    }

    #[test]
    fn all_zero_tensor() {
        let mut b = [0xaau8; 1024 / 4 + TAIL_BYTES];
        quantize_i2_s_ref(&[0.0; 1024], &mut b).unwrap();
        assert!(b[..256].iter().all(|&v| v == 0x55));
        assert!(b[256..].iter().all(|&v| v == 0));
        let mut y = [1.0f32; 1024];
        dequantize_i2_s(&b, 1024, &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn pack_round_trip_random() {
        let mut rng = XorShift::new(5);
        let n = BLOCK_ELEMS * 20;
        let trits = rng.trits(n);
        let beta = 0.7312f32;
        let mut b = vec![0u8; n / 4 + TAIL_BYTES];
        pack_i2_s(&trits, beta, &mut b).unwrap();
        assert_eq!(&b[n / 4..n / 4 + 4], &beta.to_le_bytes());
        assert!(b[n / 4 + 4..].iter().all(|&v| v == 0));
        let mut y = vec![0.0f32; n];
        dequantize_i2_s(&b, n, &mut y).unwrap();
        let expect: Vec<f32> = trits.iter().map(|&t| f32::from(t) * beta).collect();
        assert_eq!(y, expect);

        // Re-quantizing ternary input keeps the trits but stores mean|W| (< beta).
        let mut b2 = vec![0u8; n / 4 + TAIL_BYTES];
        quantize_i2_s_ref(&y, &mut b2).unwrap();
        assert_eq!(&b2[..n / 4], &b[..n / 4]);
        assert!(i2_s_scale(&b2, n).unwrap() < beta);
    }

    #[test]
    fn quantize_random_master_weights() {
        let mut rng = XorShift::new(7);
        let n = BLOCK_ELEMS * 16;
        let x = rng.f32s(n, 0.02);
        let mut b = vec![0u8; n / 4 + TAIL_BYTES];
        quantize_i2_s_ref(&x, &mut b).unwrap();
        let beta = i2_s_scale(&b, n).unwrap();
        let mean = x.iter().map(|v| f64::from(v.abs())).sum::<f64>() / n as f64;
        assert_eq!(beta, mean as f32);
        let mut y = vec![0.0f32; n];
        dequantize_i2_s(&b, n, &mut y).unwrap();
        for (&a, &v) in x.iter().zip(&y) {
            assert_eq!(v, libm::roundf(a / beta).clamp(-1.0, 1.0) * beta);
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            quantize_i2_s_ref(&[0.0; 100], &mut [0u8; 57]),
            Err(QuantError::ElementCount {
                ty: GgmlType::I2_S,
                n: 100
            })
        );
        assert!(quantize_i2_s_ref(&[0.0; BLOCK_ELEMS], &mut [0u8; BLOCK_BYTES]).is_err());
        assert!(pack_i2_s(&[3; BLOCK_ELEMS], 1.0, &mut [0u8; BLOCK_BYTES + TAIL_BYTES]).is_err());
        assert!(dequantize_i2_s(
            &[0u8; BLOCK_BYTES + TAIL_BYTES],
            BLOCK_ELEMS,
            &mut [0.0; 127]
        )
        .is_err());
        assert!(dequantize_i2_s(
            &[0u8; BLOCK_BYTES + TAIL_BYTES - 1],
            BLOCK_ELEMS,
            &mut [0.0; BLOCK_ELEMS]
        )
        .is_err());
        assert!(i2_s_scale(&[0u8; BLOCK_BYTES + TAIL_BYTES], 256).is_err());
    }
}
