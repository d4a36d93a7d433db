//! Ternary weights and their per-tensor scale beta (effective weight = trit * beta) from
//! the two forms a `BitNetForCausalLM` checkpoint stores.

/// Master weights ternarised as transformers' `WeightQuant` does in training: in f32,
/// `s = 1 / max(mean|W|, 1e-5)`, `trit = clamp(round_half_even(W * s), -1, 1)`, and the
/// weight the model computed with is `trit / s`, so beta = 1 / s.
///
/// The mean is summed in f64 and rounded once: torch's f32 reduction order is not
/// specified, and the correctly rounded mean is what every order approximates.
pub fn from_master(w: &[f32]) -> (Vec<i8>, f32) {
    let sum: f64 = w.iter().map(|&x| f64::from(x.abs())).sum();
    let mean = (sum / w.len().max(1) as f64) as f32;
    let s = 1.0 / mean.max(1e-5);
    let trits = w
        .iter()
        .map(|&x| (x * s).round_ties_even().clamp(-1.0, 1.0) as i8)
        .collect();
    (trits, 1.0 / s)
}

/// Unpacks transformers' `pack_weights` layout: a `[ceil(rows/4), cols]` uint8 tensor
/// whose packed row `i` holds original row `j * ceil(rows/4) + i` in bits `2j..2j+1`,
/// as `trit + 1`. `Err` gives the first element holding code 3.
pub fn unpack(packed: &[u8], rows: usize, cols: usize) -> Result<Vec<i8>, (usize, usize)> {
    let packed_rows = rows.div_ceil(4);
    debug_assert_eq!(packed.len(), packed_rows * cols);
    let mut trits = vec![0i8; rows * cols];
    for r in 0..rows {
        let (j, i) = (r / packed_rows, r % packed_rows);
        let src = &packed[i * cols..(i + 1) * cols];
        for (c, (t, &b)) in trits[r * cols..(r + 1) * cols]
            .iter_mut()
            .zip(src)
            .enumerate()
        {
            let code = (b >> (2 * j)) & 3;
            if code == 3 {
                return Err((r, c));
            }
            *t = code as i8 - 1;
        }
    }
    Ok(trits)
}

/// beta from a packed checkpoint's `weight_scale`: transformers' `BitLinear` divides its
/// output by it, so the effective weight is trit / weight_scale.
pub fn beta_from_weight_scale(weight_scale: f32) -> Option<f32> {
    let beta = 1.0 / weight_scale;
    (weight_scale.is_finite() && weight_scale > 0.0 && beta.is_finite()).then_some(beta)
}

/// The q or k rows of `n_head` heads reordered for NORM RoPE, as llama.cpp's converter
/// does for its llama architecture: within each head of `hd` rows, new row `2i + j` is old
/// row `j * hd/2 + i` (j = 0, 1), so rotating adjacent pairs (2i, 2i + 1) equals transformers'
/// rotate-half on pairs (i, i + hd/2) of the original rows.
pub fn permute_for_norm_rope(trits: &[i8], n_head: usize, cols: usize) -> Vec<i8> {
    let rows = trits.len() / cols;
    let hd = rows / n_head;
    let mut out = vec![0i8; trits.len()];
    for h in 0..n_head {
        for r in 0..hd {
            let src = h * hd + (r % 2) * (hd / 2) + r / 2;
            let dst = h * hd + r;
            out[dst * cols..(dst + 1) * cols].copy_from_slice(&trits[src * cols..(src + 1) * cols]);
        }
    }
    out
}

/// Per-block `d` with the per-tensor scale folded in, as ggml's TQ quantizer computes it for
/// weights `trit * beta`: `d = max|w|` over the block, so beta, or 0 for an all-zero block.
pub fn folded_block_scales(trits: &[i8], block: usize, beta: f32) -> Vec<f32> {
    trits
        .chunks_exact(block)
        .map(|b| if b.iter().any(|&t| t != 0) { beta } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_rounds_half_to_even_and_clamps() {
        // mean|W| = 1: s = 1, so the trits are the rounded weights.
        let (t, beta) = from_master(&[0.5, -1.5, 2.5, 0.25, -0.25, 1.0]);
        assert_eq!(t, [0, -1, 1, 0, 0, 1]);
        assert_eq!(beta, 1.0);
        let (t, beta) = from_master(&[0.0; 4]);
        assert_eq!((t, beta), (vec![0; 4], 1e-5));
    }

    #[test]
    fn norm_rope_permutation_interleaves_the_halves_of_each_head() {
        // 2 heads of 4 rows, 1 column: head rows (a0 a1 b0 b1) -> (a0 b0 a1 b1).
        let t = [0i8, 1, -1, 0, 1, 1, -1, -1];
        assert_eq!(permute_for_norm_rope(&t, 2, 1), [0, -1, 1, 0, 1, -1, 1, -1]);
    }

    #[test]
    fn folded_scales_are_zero_for_all_zero_blocks() {
        assert_eq!(folded_block_scales(&[0, 0, 1, 0], 2, 0.5), [0.0, 0.5]);
    }

    #[test]
    fn unpack_reads_the_output_dim_in_quarters() {
        // 8 rows, 1 column: packed row i holds rows i, 2 + i, 4 + i, 6 + i.
        let trits = [-1i8, 0, 1, -1, 0, 1, 1, -1];
        let mut packed = [0u8; 2];
        for (r, &t) in trits.iter().enumerate() {
            packed[r % 2] |= ((t + 1) as u8) << (2 * (r / 2));
        }
        assert_eq!(unpack(&packed, 8, 1).unwrap(), trits);
        assert_eq!(unpack(&[0xFF, 0], 8, 1), Err((0, 0)));
    }
}
