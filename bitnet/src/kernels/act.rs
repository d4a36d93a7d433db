//! Per-token absmax int8 quantization of BitLinear inputs (the "A8" of W1.58A8).

use alloc::vec;
use alloc::vec::Vec;

/// Quantized activations of a batch of tokens.
#[derive(Clone, Debug, Default)]
pub struct ActBatch {
    pub n_tokens: usize,
    pub cols: usize,
    /// (n_tokens, cols) int8 activations.
    pub q: Vec<i8>,
    /// (n_tokens,) scale `s` per token: `x ~= q / s`.
    pub scale: Vec<f32>,
    /// (n_tokens, cols / 128) sum of `q` over each 128-element block: the SIMD kernels
    /// multiply unsigned codes `c = trit + 1` and subtract these. Kept in step with `q` by
    /// the quantizers; call [`ActBatch::update_block_sums`] after writing `q` by hand.
    pub bsums: Vec<i32>,
}

impl ActBatch {
    pub fn new(n_tokens: usize, cols: usize) -> ActBatch {
        ActBatch {
            n_tokens,
            cols,
            q: vec![0; n_tokens * cols],
            scale: vec![0.0; n_tokens],
            bsums: vec![0; n_tokens * (cols / 128)],
        }
    }

    pub fn resize(&mut self, n_tokens: usize, cols: usize) {
        self.n_tokens = n_tokens;
        self.cols = cols;
        self.q.resize(n_tokens * cols, 0);
        self.scale.resize(n_tokens, 0.0);
        self.bsums.resize(n_tokens * (cols / 128), 0);
    }

    /// Recomputes `bsums` from `q`.
    pub fn update_block_sums(&mut self) {
        let blocks = self.cols / 128;
        for t in 0..self.n_tokens {
            let q = &self.q[t * self.cols..(t + 1) * self.cols];
            let sums = &mut self.bsums[t * blocks..(t + 1) * blocks];
            for (s, b) in sums.iter_mut().zip(q.chunks_exact(128)) {
                *s = b.iter().map(|&v| i32::from(v)).sum();
            }
        }
    }

    /// Block sums of token `t` (cols / 128 values).
    pub fn token_bsums(&self, t: usize) -> &[i32] {
        let blocks = self.cols / 128;
        &self.bsums[t * blocks..(t + 1) * blocks]
    }

    pub fn token(&self, t: usize) -> &[i8] {
        &self.q[t * self.cols..(t + 1) * self.cols]
    }
}

/// Quantizes one token: `s = 127 / max(max|x|, 1e-5)`, `q = clamp(round_half_even(x s))`.
/// `f(i, x[i])` is applied first (RMSNorm when fused), so the normalised activations are
/// never stored in float. Written so the compiler vectorises both passes, even for x86_64's
/// baseline SSE2 (3x faster than a maximum over the bit patterns, which has no SSE2 unsigned
/// maximum, and a saturating `as i8`): a NaN is skipped by the maximum and quantizes to 0,
/// as with `f32::max` and `as i8`.
#[inline(always)]
pub fn quantize_row_i8_ref(x: &[f32], f: impl Fn(usize, f32) -> f32, q: &mut [i8]) -> f32 {
    // `f32::max` returns the other operand when one is NaN.
    let amax = x
        .iter()
        .enumerate()
        .map(|(i, &v)| f(i, v).abs())
        .fold(0.0f32, f32::max);
    let s = 127.0 / amax.max(1e-5);
    for (i, (qi, &v)) in q.iter_mut().zip(x).enumerate() {
        let y = rint_small(f(i, v) * s);
        let y = if y.is_nan() {
            0.0
        } else {
            y.clamp(-128.0, 127.0)
        };
        // SAFETY: `y` is finite and within -128..=127, so it fits an i32 (and an i8).
        *qi = unsafe { y.to_int_unchecked::<i32>() } as i8;
    }
    s
}

/// `rintf` (round half to even) for |x| < 2^22, which |x s| <= 127 always is: adding and
/// subtracting 1.5 * 2^23 in the default rounding mode leaves no fraction bits. Unlike a
/// call to `rintf`, this vectorises.
#[inline(always)]
fn rint_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// Quantizes every token of `x` (n_tokens, cols) into `out`.
pub fn quantize_acts_ref(x: &[f32], cols: usize, out: &mut ActBatch) {
    let n = x.len() / cols;
    out.resize(n, cols);
    for t in 0..n {
        let row = &x[t * cols..(t + 1) * cols];
        out.scale[t] = quantize_row_i8_ref(row, |_, v| v, &mut out.q[t * cols..(t + 1) * cols]);
    }
    out.update_block_sums();
}

/// RMSNorm fused with quantization: `quantize(x / rms(x) * w)` per token, one pass saved.
pub fn rmsnorm_quantize(x: &[f32], w: &[f32], eps: f32, out: &mut ActBatch) {
    let cols = w.len();
    let n = x.len() / cols;
    out.resize(n, cols);
    for t in 0..n {
        let row = &x[t * cols..(t + 1) * cols];
        out.scale[t] = rmsnorm_quantize_row(row, w, eps, &mut out.q[t * cols..(t + 1) * cols]);
    }
    out.update_block_sums();
}

/// One token of [`rmsnorm_quantize`] into `q`, returning its scale. On x86_64 the same code
/// runs compiled for AVX2 where the CPU has it: the baseline build has SSE2's four lanes,
/// and a decode token makes 120 of these rows (norms 0.7 -> 0.4 ms per token on a Zen 4
/// host). No FMA, the same operations in the same order: the same bits.
pub fn rmsnorm_quantize_row(row: &[f32], w: &[f32], eps: f32, q: &mut [i8]) -> f32 {
    rmsnorm_quantize_row_with(crate::cpu::avx2_float_loops(), row, w, eps, q)
}

/// [`rmsnorm_quantize_row`] with the AVX2 build chosen by the caller (tests run both; only
/// x86_64 has it).
fn rmsnorm_quantize_row_with(avx2: bool, row: &[f32], w: &[f32], eps: f32, q: &mut [i8]) -> f32 {
    if avx2 {
        // SAFETY: callers pass `avx2` only for a CPU that has it.
        #[cfg(target_arch = "x86_64")]
        return unsafe { rmsnorm_quantize_row_avx2(row, w, eps, q) };
    }
    rmsnorm_quantize_row_body(row, w, eps, q)
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rmsnorm_quantize_row_avx2(row: &[f32], w: &[f32], eps: f32, q: &mut [i8]) -> f32 {
    rmsnorm_quantize_row_body(row, w, eps, q)
}

#[inline(always)]
fn rmsnorm_quantize_row_body(row: &[f32], w: &[f32], eps: f32, q: &mut [i8]) -> f32 {
    let inv = crate::ops::rms_inv(row, eps);
    let w = &w[..row.len()];
    quantize_row_i8_ref(row, |i, v| v * inv * w[i], q)
}

#[cfg(any(test, feature = "kernel-tests"))]
pub(crate) mod tests {
    use super::*;

    /// The AVX2 build of the fused norm and quantization gives the baseline build's bits
    /// (rows with tails, zeros, a NaN, huge and tiny values).
    #[cfg(all(test, target_arch = "x86_64"))]
    #[test]
    fn avx2_build_gives_the_baseline_bits() {
        crate::cpu::assert_avx2_host();
        let mut rng = crate::quants::test_rng::XorShift::new(0xA5);
        for cols in [1, 7, 8, 33, 256, 2560, 6912] {
            let w = rng.f32s(cols, 2.0);
            let mut x = rng.f32s(cols, 50.0);
            if cols > 7 {
                x[3] = f32::NAN;
                x[5] = 3e30;
                x[6] = 1e-30;
                x[cols - 1] = 0.0;
            }
            let (mut qa, mut qb) = (vec![0i8; cols], vec![0i8; cols]);
            let sa = rmsnorm_quantize_row_with(false, &x, &w, 1e-6, &mut qa);
            let sb = rmsnorm_quantize_row_with(true, &x, &w, 1e-6, &mut qb);
            assert_eq!(sa.to_bits(), sb.to_bits(), "scale, {cols} columns");
            assert_eq!(qa, qb, "{cols} columns");
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn absmax_maps_to_127_and_rounds_half_even() {
        let x = [1.0f32, -0.5, 0.25, 0.0];
        let mut q = [0i8; 4];
        let s = quantize_row_i8_ref(&x, |_, v| v, &mut q);
        assert_eq!(s, 127.0);
        // -0.5*127 = -63.5 -> -64 (even); 0.25*127 = 31.75 -> 32
        assert_eq!(q, [127, -64, 32, 0]);
        // s = 63.5: +-1.0 * 63.5 are exact halves and round to the even +-64.
        let s = quantize_row_i8_ref(&[2.0, -1.0, 1.0], |_, v| v, &mut q[..3]);
        assert_eq!(s, 63.5);
        assert_eq!(q[..3], [127, -64, 64]);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn zero_row_is_all_zero() {
        let mut q = [5i8; 3];
        let s = quantize_row_i8_ref(&[0.0; 3], |_, v| v, &mut q);
        assert_eq!(q, [0; 3]);
        assert_eq!(s, 127.0 / 1e-5);
    }

    #[cfg_attr(test, test)]
    pub(crate) fn fused_equals_unfused() {
        let x: Vec<f32> = (0..64).map(|i| libm::sinf(i as f32 * 0.37) * 3.0).collect();
        let w: Vec<f32> = (0..32).map(|i| 0.5 + i as f32 * 0.03).collect();
        let mut fused = ActBatch::default();
        rmsnorm_quantize(&x, &w, 1e-5, &mut fused);
        let mut normed = vec![0.0; 64];
        for t in 0..2 {
            crate::ops::rmsnorm(
                &mut normed[t * 32..(t + 1) * 32],
                &x[t * 32..(t + 1) * 32],
                &w,
                1e-5,
            );
        }
        let mut plain = ActBatch::default();
        quantize_acts_ref(&normed, 32, &mut plain);
        assert_eq!(fused.q, plain.q);
        assert_eq!(fused.scale, plain.scale);
    }

    /// The definition, written plainly: the maximum over the magnitudes' bit patterns (NaN
    /// counted as 0), `rintf`, and Rust's saturating `as i8` (NaN to 0).
    fn quantize_row_spec(x: &[f32], q: &mut [i8]) -> f32 {
        let amax = x
            .iter()
            .map(|v| v.abs().to_bits())
            .map(|b| if b > f32::INFINITY.to_bits() { 0 } else { b })
            .max()
            .unwrap_or(0);
        let s = 127.0 / f32::from_bits(amax).max(1e-5);
        for (q, &v) in q.iter_mut().zip(x) {
            *q = libm::rintf(v * s).clamp(-128.0, 127.0) as i8;
        }
        s
    }

    #[cfg_attr(test, test)]
    pub(crate) fn quantize_row_matches_its_definition_on_special_values() {
        let mut rng = crate::rng::Rng::new(11);
        let special = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-30,
        ];
        for len in [1usize, 7, 31, 128, 333] {
            for case in 0..40 {
                let x: Vec<f32> = (0..len)
                    .map(|i| match (case, rng.below(8)) {
                        // Ties: halves of the scale when the maximum is 127.
                        (0..=9, _) if i == 0 => 127.0,
                        (0..=9, _) => (rng.below(255) as f32 - 127.0) + 0.5,
                        (10..=19, 0) => special[rng.below(special.len() as u64) as usize],
                        (_, _) => rng.normal() * libm::powf(10.0, rng.below(8) as f32 - 4.0),
                    })
                    .collect();
                let (mut got, mut want) = (vec![0i8; len], vec![0i8; len]);
                let s = quantize_row_i8_ref(&x, |_, v| v, &mut got);
                let s_want = quantize_row_spec(&x, &mut want);
                assert_eq!(
                    s.to_bits(),
                    s_want.to_bits(),
                    "len {len} case {case}: {x:?}"
                );
                assert_eq!(got, want, "len {len} case {case}: {x:?}");
            }
        }
    }
}
