//! Unquantized rows: F32, F16 and BF16, stored little-endian.
//!
//! Conversions to 16 bits round to nearest, ties to even, like ggml's. NaN payloads may differ
//! from ggml's (which itself differs between its F16C and software paths); NaN stays NaN.

use half::{bf16, f16};

use super::{check_len, GgmlType, QuantError};

/// Bytes per element of the unquantized types (each element is its own block).
pub const F32_BYTES: usize = size_of::<f32>();
pub const F16_BYTES: usize = size_of::<f16>();
pub const BF16_BYTES: usize = size_of::<bf16>();

/// Decodes `dst.len()` little-endian f32 values from `src`.
pub fn dequantize_row_f32(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_len(GgmlType::F32, "src", dst.len() * F32_BYTES, src.len())?;
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(F32_BYTES)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

/// Encodes `src` as little-endian f32 bytes (for writing fixtures).
pub fn quantize_row_f32_ref(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_len(GgmlType::F32, "dst", src.len() * F32_BYTES, dst.len())?;
    for (b, x) in dst.chunks_exact_mut(F32_BYTES).zip(src) {
        b.copy_from_slice(&x.to_le_bytes());
    }
    Ok(())
}

/// IEEE half bits to f32, exactly; NaNs come out quiet with their payload, as F16C,
/// AArch64's `fcvt` and `half`'s software path give them.
///
/// `half` converts with the hardware instruction on x86_64 (F16C) and aarch64; elsewhere
/// (armv7, riscv64) it runs a general software path that counted ~30 guest instructions
/// per element of an F16 head under QEMU. Here the half, sign-extended and shifted by 13,
/// has its sign in bit 31 and exponent and mantissa in f32 position (bits 30..28, copies of
/// the sign, are cleared); one multiply by 2^112 rebiases the exponent from 15 to 127 and
/// makes a subnormal half a normal f32, exactly. Only infinities and NaNs need a branch.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let bits = ((h as i16 as i32) << 13) as u32 & 0x8fff_e000;
    if bits & 0x0f80_0000 == 0x0f80_0000 {
        // Exponent 31: infinity, or a NaN kept quiet with its payload.
        let quiet = if bits & 0x007f_e000 != 0 {
            0x7fc0_0000
        } else {
            0x7f80_0000
        };
        return f32::from_bits(bits | quiet);
    }
    const TWO_POW_112: f32 = f32::from_bits((112 + 127) << 23);
    f32::from_bits(bits) * TWO_POW_112
}

/// Decodes `dst.len()` little-endian IEEE half values from `src` (exact).
pub fn dequantize_row_f16(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_len(GgmlType::F16, "src", dst.len() * F16_BYTES, src.len())?;
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(F16_BYTES)) {
        *y = to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
    Ok(())
}

/// The fastest exact conversion on this target: on AArch64 the half-to-single `fcvt`, which
/// is baseline floating point (FEAT_FP16 is half-precision arithmetic; `half` converts in
/// software on a core without it, ~30 instructions per weight of a Cortex-A53's F16 head),
/// [`f16_to_f32`] elsewhere.
#[inline]
pub fn to_f32(h: u16) -> f32 {
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        let o: f32;
        // SAFETY: `fmov` and `fcvt` are baseline AArch64 floating point, which the target
        // enables (the `vreg` operand does not compile without it); they read and write
        // registers only (nomem).
        unsafe {
            core::arch::asm!("fmov {o:s}, {b:w}", "fcvt {o:s}, {o:h}", b = in(reg) u32::from(h),
                o = out(vreg) o, options(pure, nomem, nostack, preserves_flags));
        }
        o
    }
    #[cfg(not(all(target_arch = "aarch64", target_feature = "neon")))]
    f16_to_f32(h)
}

/// Encodes `src` as little-endian IEEE half, rounding to nearest even; overflow gives ±inf.
pub fn quantize_row_f16_ref(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_len(GgmlType::F16, "dst", src.len() * F16_BYTES, dst.len())?;
    for (b, x) in dst.chunks_exact_mut(F16_BYTES).zip(src) {
        b.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
    }
    Ok(())
}

/// Decodes `dst.len()` little-endian bfloat16 values from `src` (exact).
pub fn dequantize_row_bf16(src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_len(GgmlType::BF16, "src", dst.len() * BF16_BYTES, src.len())?;
    for (y, b) in dst.iter_mut().zip(src.chunks_exact(BF16_BYTES)) {
        *y = bf16::from_le_bytes([b[0], b[1]]).to_f32();
    }
    Ok(())
}

/// Encodes `src` as little-endian bfloat16, rounding to nearest even.
pub fn quantize_row_bf16_ref(src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_len(GgmlType::BF16, "dst", src.len() * BF16_BYTES, dst.len())?;
    for (b, x) in dst.chunks_exact_mut(BF16_BYTES).zip(src) {
        b.copy_from_slice(&bf16::from_f32(*x).to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn f16_bytes(x: f32) -> [u8; 2] {
        let mut b = [0u8; 2];
        quantize_row_f16_ref(&[x], &mut b).unwrap();
        b
    }

    #[test]
    fn f16_known_answers() {
        let bytes = [0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x7c];
        let mut y = [0.0f32; 5];
        dequantize_row_f16(&bytes, &mut y).unwrap();
        assert_eq!(y, [1.0, -2.0, 65504.0, 2f32.powi(-24), f32::INFINITY]);
        assert_eq!(f16_bytes(1.0), [0x00, 0x3c]);
        assert_eq!(f16_bytes(-2.0), [0x00, 0xc0]);
        assert_eq!(f16_bytes(2f32.powi(-24)), [0x01, 0x00]);
    }

    #[test]
    fn f16_rounds_ties_to_even() {
        // 1 + 2^-11 lies exactly between 1.0 (even) and 1 + 2^-10 (odd).
        assert_eq!(f16_bytes(1.0 + 2f32.powi(-11)), [0x00, 0x3c]);
        // 1 + 3 * 2^-11 lies between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
        assert_eq!(f16_bytes(1.0 + 3.0 * 2f32.powi(-11)), [0x02, 0x3c]);
        // Just above the tie rounds up.
        assert_eq!(
            f16_bytes(1.0 + 2f32.powi(-11) + 2f32.powi(-20)),
            [0x01, 0x3c]
        );
        // 65520 is the tie between 65504 and 65536 (= inf): even wins, so inf.
        assert_eq!(f16_bytes(65520.0), [0x00, 0x7c]);
        assert_eq!(f16_bytes(65519.0), [0xff, 0x7b]);
    }

    #[test]
    fn f16_every_finite_value_round_trips() {
        for bits in 0..=u16::MAX {
            let b = bits.to_le_bytes();
            let mut y = [0.0f32];
            dequantize_row_f16(&b, &mut y).unwrap();
            if y[0].is_nan() {
                continue;
            }
            assert_eq!(f16_bytes(y[0]), b, "bits {bits:#06x}");
        }
    }

    #[test]
    fn bf16_known_answers_and_ties() {
        let mut b = [0u8; 6];
        // 1 + 2^-8 is the tie between 1.0 (even) and 1 + 2^-7.
        quantize_row_bf16_ref(&[1.0, -2.0, 1.0 + 2f32.powi(-8)], &mut b).unwrap();
        assert_eq!(b, [0x80, 0x3f, 0x00, 0xc0, 0x80, 0x3f]);
        let mut y = [0.0f32; 2];
        dequantize_row_bf16(&[0x80, 0x3f, 0x49, 0x40], &mut y).unwrap();
        assert_eq!(y, [1.0, f32::from_bits(0x4049_0000)]);
    }

    #[test]
    fn f32_round_trip() {
        let x = [1.5f32, -0.0, f32::MIN_POSITIVE, 1e30];
        let mut b = [0u8; 16];
        quantize_row_f32_ref(&x, &mut b).unwrap();
        assert_eq!(&b[..4], &[0x00, 0x00, 0xc0, 0x3f]);
        let mut y = [0.0f32; 4];
        dequantize_row_f32(&b, &mut y).unwrap();
        assert_eq!(x.map(f32::to_bits), y.map(f32::to_bits));
    }

    #[test]
    fn lengths_are_checked() {
        let mut y = vec![0.0f32; 3];
        let err = dequantize_row_f16(&[0u8; 5], &mut y).unwrap_err();
        assert_eq!(
            err,
            QuantError::Length {
                ty: GgmlType::F16,
                buffer: "src",
                expected: 6,
                actual: 5
            }
        );
        assert!(dequantize_row_bf16(&[0u8; 7], &mut y).is_err());
        assert!(dequantize_row_f32(&[0u8; 11], &mut y).is_err());
        assert!(quantize_row_f16_ref(&[0.0; 3], &mut [0u8; 4]).is_err());
        assert!(quantize_row_bf16_ref(&[0.0; 3], &mut [0u8; 8]).is_err());
        assert!(quantize_row_f32_ref(&[0.0; 3], &mut [0u8; 8]).is_err());
    }

    #[test]
    fn f16_to_f32_is_exact_for_every_half() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h).to_f32();
            let got = f16_to_f32(h);
            assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}: {got} vs {want}");
            assert_eq!(to_f32(h).to_bits(), want.to_bits(), "{h:#06x}");
        }
    }
}
