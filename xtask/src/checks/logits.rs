//! Comparing two logits arrays (n_positions, n_vocab): max |diff|, the first element
//! beyond tolerance, argmax disagreements where the reference is not a near-tie, and
//! bit identity.

use std::path::Path;

/// Logits of one run: (n_positions, n_vocab).
#[derive(Clone, Debug)]
pub struct Logits {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn read(path: &Path) -> Result<Logits, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (shape, data) =
        bitnet::npy::read_f32(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if shape.len() != 2 {
        return Err(format!(
            "{}: logits of shape {shape:?}; expected [positions, vocab]",
            path.display()
        ));
    }
    Ok(Logits { shape, data })
}

/// A reference's top-2 gap under which a different argmax is a tie, not a bug.
pub const ARGMAX_MARGIN: f32 = 1e-3;

#[derive(Debug)]
pub struct Diff {
    pub max_abs: f32,
    /// (position, token, reference, got) of the first element beyond tolerance.
    pub first_bad: Option<(usize, usize, f32, f32)>,
    /// Positions whose argmax differs while the reference's top-2 gap exceeds the margin.
    pub argmax_mismatch: Vec<usize>,
    pub bit_identical: bool,
}

fn argmax_and_gap(v: &[f32]) -> (usize, f32) {
    let (mut best, mut b1, mut b2) = (0, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > b1 {
            (best, b2, b1) = (i, b1, x);
        } else if x > b2 {
            b2 = x;
        }
    }
    (best, b1 - b2)
}

pub fn compare(reference: &Logits, got: &Logits, tol: f32) -> Result<Diff, String> {
    if reference.shape != got.shape {
        return Err(format!(
            "logits have shape {:?}, the reference {:?}",
            got.shape, reference.shape
        ));
    }
    let vocab = reference.shape[1].max(1);
    let mut d = Diff {
        max_abs: 0.0,
        first_bad: None,
        argmax_mismatch: Vec::new(),
        bit_identical: true,
    };
    for (i, (&a, &b)) in reference.data.iter().zip(&got.data).enumerate() {
        d.bit_identical &= a.to_bits() == b.to_bits();
        let abs = (a - b).abs();
        if abs.is_nan() || !approx::abs_diff_eq!(a, b, epsilon = tol) {
            d.first_bad.get_or_insert((i / vocab, i % vocab, a, b));
        }
        d.max_abs = d
            .max_abs
            .max(if abs.is_nan() { f32::INFINITY } else { abs });
    }
    for (p, (a, b)) in reference
        .data
        .chunks(vocab)
        .zip(got.data.chunks(vocab))
        .enumerate()
    {
        let (ra, gap) = argmax_and_gap(a);
        if argmax_and_gap(b).0 != ra && gap > ARGMAX_MARGIN {
            d.argmax_mismatch.push(p);
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(data: &[f32]) -> Logits {
        Logits {
            shape: vec![data.len() / 3, 3],
            data: data.to_vec(),
        }
    }

    #[test]
    fn first_bad_names_position_and_token() {
        let r = l(&[0.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        let g = l(&[0.0, 1.0, 2.0, 3.0, 2.5, 1.0]);
        let d = compare(&r, &g, 1e-3).unwrap();
        assert_eq!(d.first_bad, Some((1, 1, 2.0, 2.5)));
        assert!(!d.bit_identical);
        assert!(d.argmax_mismatch.is_empty());
        let same = compare(&r, &r, 0.0).unwrap();
        assert!(same.bit_identical && same.first_bad.is_none());
    }

    #[test]
    fn argmax_mismatch_counts_only_clear_winners() {
        let r = l(&[1.0, 1.0005, 0.0, 3.0, 0.0, 0.0]);
        let g = l(&[1.0005, 1.0, 0.0, 0.0, 3.0, 0.0]);
        let d = compare(&r, &g, 10.0).unwrap();
        assert_eq!(d.argmax_mismatch, vec![1]);
        assert!(compare(&r, &l(&[0.0; 3]), 1.0).is_err());
    }
}
