//! The float operations of the forward pass. All transcendental math goes through `libm`
//! so every target (and `no_std`) computes bit-identical results from identical inputs.
//! Each keeps its summation order: changing one changes the logits.

use alloc::vec::Vec;

use crate::kernels::act::{
    quantize_acts_ref, quantize_row_i8_ref, rmsnorm_quantize, rmsnorm_quantize_row,
};
use crate::kernels::ActBatch;
use crate::model::{Activation, RopeType};
use crate::parallel::Exec;

/// `out = x / sqrt(mean(x^2) + eps) * w`. The sum of squares is accumulated in f64, as ggml
/// does, so long rows do not lose precision.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let inv = rms_inv(x, eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * inv * wi;
    }
}

/// `1 / sqrt(mean(x^2) + eps)`.
#[inline(always)]
pub fn rms_inv(x: &[f32], eps: f32) -> f32 {
    // Eight partial sums: one chain of dependent f64 adds was most of the norms' time.
    let mut acc = [0.0f64; 8];
    let blocks = x.chunks_exact(8);
    let tail: f64 = blocks
        .remainder()
        .iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum();
    for b in blocks {
        for (a, &v) in acc.iter_mut().zip(b) {
            *a += (v as f64) * (v as f64);
        }
    }
    let ss = acc.iter().sum::<f64>() + tail;
    let mean = ss / x.len().max(1) as f64;
    (1.0 / libm::sqrt(mean + eps as f64)) as f32
}

/// Softmax in place, numerically stabilised by the maximum.
#[inline(always)]
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Two loops: the exponentials vectorise, the sum keeps its order.
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let sum: f32 = x.iter().sum();
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `e^x` within 2 ulp of `expf` (Cephes' `expf` reduction and polynomial), without branches
/// or calls, so that the compiler vectorises the loops around it: `libm::expf` per element
/// was 1.6 ms of a 2B4T-shape token in the SiLU alone. Inputs are clamped to
/// [-87.3, 88.3], the range where the result is a normal float: below, it is 1e-38 instead of
/// a subnormal or 0; above, 2.2e38 instead of infinity. NaN gives NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    // ln 2 in two parts: n * LN2_HI is exact for |n| <= 128.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to an integer (|x log2 e| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * (r * r) + r + 1.0;
    // 2^n from its exponent bits: n is in -126..=127.
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Squared ReLU, BitNet b1.58's FFN activation (`hidden_act = relu2`).
#[inline(always)]
pub fn relu2(x: f32) -> f32 {
    let r = x.max(0.0);
    r * r
}

/// `g = act(g) * up`, the FFN's gating. On x86_64 the same code runs compiled for AVX2
/// where the CPU has it: SiLU's `exp` and division vectorise to eight lanes instead of
/// SSE2's four. No FMA, the same operations in the same order: the same bits.
pub fn act_mul(act: Activation, g: &mut [f32], up: &[f32]) {
    act_mul_with(crate::cpu::avx2_float_loops(), act, g, up)
}

/// [`act_mul`] with the AVX2 build chosen by the caller (tests run both; only
/// `cpu::avx2_float_loops` may say `true`).
fn act_mul_with(avx2: bool, act: Activation, g: &mut [f32], up: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: callers pass `avx2` only for a CPU that has it.
        return unsafe { act_mul_avx2(act, g, up) };
    }
    let _ = avx2;
    act_mul_body(act, g, up)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn act_mul_avx2(act: Activation, g: &mut [f32], up: &[f32]) {
    act_mul_body(act, g, up)
}

#[inline(always)]
fn act_mul_body(act: Activation, g: &mut [f32], up: &[f32]) {
    let gate_up = g.iter_mut().zip(up);
    // One loop per activation, so that each is inlined and vectorised.
    match act {
        Activation::Relu2 => gate_up.for_each(|(g, &u)| *g = relu2(*g) * u),
        Activation::Silu => gate_up.for_each(|(g, &u)| *g = silu(*g) * u),
    }
}

/// Inverse frequencies of RoPE (either pairing): `theta^(-2i/n_rot)` for i in 0..n_rot/2.
pub fn rope_inv_freq(n_rot: usize, theta: f32) -> Vec<f32> {
    (0..n_rot / 2)
        .map(|i| libm::powf(theta, -2.0 * i as f32 / n_rot as f32))
        .collect()
}

/// NEOX ("rotate half") RoPE on one head: element i pairs with i + n_rot/2; dimensions past
/// n_rot are left alone.
pub fn rope_neox(head: &mut [f32], pos: usize, inv_freq: &[f32]) {
    let half = inv_freq.len();
    for (i, &f) in inv_freq.iter().enumerate() {
        let angle = pos as f32 * f;
        let (sin, cos) = (libm::sinf(angle), libm::cosf(angle));
        let (a, b) = (head[i], head[i + half]);
        head[i] = a * cos - b * sin;
        head[i + half] = a * sin + b * cos;
    }
}

/// [`rope_neox`] with the sines and cosines of the angles already computed (same
/// arithmetic): the forward pass computes them once per token for every head.
pub fn rope_neox_with(head: &mut [f32], rot: &[(f32, f32)]) {
    let half = rot.len();
    for (i, &(sin, cos)) in rot.iter().enumerate() {
        let (a, b) = (head[i], head[i + half]);
        head[i] = a * cos - b * sin;
        head[i + half] = a * sin + b * cos;
    }
}

/// NORM RoPE (ggml mode 0, llama.cpp's `llama`) with precomputed sines and cosines: pair
/// i is the adjacent elements (2i, 2i + 1), rotated by angle i; dimensions past n_rot are
/// left alone. On rows permuted as llama.cpp's converter permutes q/k (row 2i <- i, row
/// 2i + 1 <- i + hd/2 of each head) it equals NEOX on the original rows.
pub fn rope_norm_with(head: &mut [f32], rot: &[(f32, f32)]) {
    for (i, &(sin, cos)) in rot.iter().enumerate() {
        let (a, b) = (head[2 * i], head[2 * i + 1]);
        head[2 * i] = a * cos - b * sin;
        head[2 * i + 1] = a * sin + b * cos;
    }
}

/// RoPE of `ty` on one head, with the angles' sines and cosines (n_rot / 2 of them).
pub fn rope_with(ty: RopeType, head: &mut [f32], rot: &[(f32, f32)]) {
    match ty {
        RopeType::Neox => rope_neox_with(head, rot),
        RopeType::Norm => rope_norm_with(head, rot),
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A dot product in eight independent lanes, which the compiler vectorises. Sums in a
/// different order than [`dot`]: the two are not interchangeable bit for bit.
#[inline(always)]
pub fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (xa, xb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = xa
        .remainder()
        .iter()
        .zip(xb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in xa.zip(xb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `x += y`.
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

pub fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// [`rmsnorm_quantize`] of every token of `x` (n, cols), the tokens spread over the threads
/// (prefill and batches): `out` gets each token's int8 row and scale.
pub fn norm_quantize(exec: &dyn Exec, x: &[f32], w: &[f32], eps: f32, out: &mut ActBatch) {
    let cols = w.len();
    let n = x.len() / cols;
    if n == 1 || exec.threads() == 1 {
        return rmsnorm_quantize(x, w, eps, out);
    }
    out.resize(n, cols);
    // (n,) one task per token: its int8 row and its scale.
    let mut rows: Vec<(&mut [i8], &mut f32)> =
        out.q.chunks_exact_mut(cols).zip(&mut out.scale).collect();
    exec.for_each_chunk(&mut rows, 1, &|t, task| {
        let (q, scale) = &mut task[0];
        **scale = rmsnorm_quantize_row(&x[t * cols..(t + 1) * cols], w, eps, q);
    });
    out.update_block_sums();
}

/// [`norm_quantize`] with norm weights `w`, or [`quantize`] of `x` as is without: a BitNet
/// sub-norm, or a `llama` BitLinear's raw input.
pub fn maybe_norm_quantize(
    exec: &dyn Exec,
    x: &[f32],
    w: Option<&[f32]>,
    cols: usize,
    eps: f32,
    out: &mut ActBatch,
) {
    match w {
        Some(w) => norm_quantize(exec, x, w, eps, out),
        None => quantize(exec, x, cols, out),
    }
}

/// Per-token int8 quantization of `x` (n, cols) without a norm (a `llama` BitLinear's raw
/// input), the tokens spread over the threads as in [`norm_quantize`].
pub fn quantize(exec: &dyn Exec, x: &[f32], cols: usize, out: &mut ActBatch) {
    let n = x.len() / cols;
    if n == 1 || exec.threads() == 1 {
        return quantize_acts_ref(x, cols, out);
    }
    out.resize(n, cols);
    let mut rows: Vec<(&mut [i8], &mut f32)> =
        out.q.chunks_exact_mut(cols).zip(&mut out.scale).collect();
    exec.for_each_chunk(&mut rows, 1, &|t, task| {
        let (q, scale) = &mut task[0];
        **scale = quantize_row_i8_ref(&x[t * cols..(t + 1) * cols], |_, v| v, q);
    });
    out.update_block_sums();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX2 build of the gating gives the baseline build's bits (tails, NaN,
    /// infinities, values past `exp`'s clamp).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn act_mul_avx2_build_gives_the_baseline_bits() {
        crate::cpu::assert_avx2_host();
        let mut rng = crate::quants::test_rng::XorShift::new(0x5111);
        for act in [Activation::Silu, Activation::Relu2] {
            for len in [1, 7, 8, 9, 33, 6912] {
                let mut g = rng.f32s(len, 30.0);
                let up = rng.f32s(len, 3.0);
                if len > 8 {
                    g[..6].copy_from_slice(&[
                        f32::NAN,
                        f32::INFINITY,
                        -f32::INFINITY,
                        -0.0,
                        200.0,
                        -200.0,
                    ]);
                }
                let (mut a, mut b) = (g.clone(), g);
                act_mul_with(false, act, &mut a, &up);
                act_mul_with(true, act, &mut b, &up);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{act:?}, {len} elements");
            }
        }
    }

    #[test]
    fn exp_within_2_ulp_of_expf() {
        let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        let mut worst = 0;
        // Every 97th float in the normal-result range, both signs, and the range's ends.
        let mut bits = 0u32;
        while bits < 0x42b0_0000 {
            let v = f32::from_bits(bits);
            for x in [v, -v] {
                if (-87.3..=88.3).contains(&x) {
                    worst = worst.max(ulps(exp(x), libm::expf(x)));
                }
            }
            bits += 97;
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1.3e-38);
        assert!(exp(1000.0).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn rmsnorm_unit_rms() {
        let x = [3.0f32, -4.0, 0.0, 0.0];
        let mut out = [0.0f32; 4];
        rmsnorm(&mut out, &x, &[1.0; 4], 0.0);
        // mean(x^2) = 25/4, rms = 2.5
        assert_eq!(out, [1.2, -1.6, 0.0, 0.0]);
    }

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let mut x = [1.0f32, 2.0, 3.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[0] < x[1] && x[1] < x[2]);
    }

    #[test]
    fn rope_rotates_pairs_half_apart() {
        let inv = rope_inv_freq(4, 10000.0);
        let mut h = [1.0f32, 0.0, 0.0, 0.0];
        rope_neox(&mut h, 1, &inv);
        // pair (0, 2) rotated by angle 1 rad; pair (1, 3) untouched values stay zero
        assert!((h[0] - 1.0f32.cos()).abs() < 1e-6);
        assert!((h[2] - 1.0f32.sin()).abs() < 1e-6);
        assert_eq!(h[1], 0.0);
        assert_eq!(h[3], 0.0);
        let mut p0 = [0.3f32, -0.7, 1.1, 2.0];
        let before = p0;
        rope_neox(&mut p0, 0, &inv);
        assert_eq!(p0, before);
    }

    #[test]
    fn rope_norm_on_permuted_rows_equals_neox() {
        // One head of 8 with n_rot 8: NORM on rows permuted as llama.cpp's converter does
        // (new 2i <- i, new 2i + 1 <- i + 4) equals NEOX on the original rows, permuted.
        let inv = rope_inv_freq(8, 10000.0);
        let rot: Vec<(f32, f32)> = inv
            .iter()
            .map(|&f| (libm::sinf(3.0 * f), libm::cosf(3.0 * f)))
            .collect();
        let orig = [0.3f32, -0.7, 1.1, 2.0, -0.4, 0.9, 0.05, -1.3];
        let perm = |h: &[f32]| -> Vec<f32> { (0..8).map(|r| h[r / 2 + 4 * (r % 2)]).collect() };
        let mut neox = orig;
        rope_neox_with(&mut neox, &rot);
        let mut norm = perm(&orig);
        rope_norm_with(&mut norm, &rot);
        assert_eq!(norm, perm(&neox));
        // And it rotates adjacent pairs: element 1 moved at position 3, element 4 did not
        // pair with element 0.
        let mut h = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        rope_norm_with(&mut h, &rot);
        assert!((h[1] - libm::sinf(3.0)).abs() < 1e-6);
        assert_eq!(h[4], 0.0);
    }

    #[test]
    fn activations() {
        assert_eq!(relu2(-2.0), 0.0);
        assert_eq!(relu2(3.0), 9.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
    }
}
