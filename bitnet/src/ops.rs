//! The float operations of the forward pass. All transcendental math goes through `libm`
//! so every target (and `no_std`) computes bit-identical results from identical inputs.

/// `out = x / sqrt(mean(x^2) + eps) * w`. The sum of squares is accumulated in f64, as ggml
/// does, so long rows do not lose precision.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let inv = rms_inv(x, eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * inv * wi;
    }
}

/// `1 / sqrt(mean(x^2) + eps)`.
pub fn rms_inv(x: &[f32], eps: f32) -> f32 {
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let mean = ss / x.len().max(1) as f64;
    (1.0 / libm::sqrt(mean + eps as f64)) as f32
}

/// Softmax in place, numerically stabilised by the maximum.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + libm::expf(-x))
}

/// Squared ReLU, BitNet b1.58's FFN activation (`hidden_act = relu2`).
pub fn relu2(x: f32) -> f32 {
    let r = x.max(0.0);
    r * r
}

/// Inverse frequencies of NEOX RoPE: `theta^(-2i/n_rot)` for i in 0..n_rot/2.
pub fn rope_inv_freq(n_rot: usize, theta: f32) -> alloc::vec::Vec<f32> {
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

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn activations() {
        assert_eq!(relu2(-2.0), 0.0);
        assert_eq!(relu2(3.0), 9.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
    }
}
