//! Attention's dot products and weighted sums register-tiled, for the AVX2 build of
//! `attention.rs` (x86_64): several query heads against several cached rows at once, so that each
//! row and each query is loaded once per tile and the add chains of different outputs
//! overlap. Every output is still the same multiplies and adds in the same order as the
//! plain loops ([`crate::ops::dot_lanes`], `attention::add_rows`), so the bits are theirs.

use core::arch::x86_64::*;

/// `att[g * len + j0 + i] = scale * dot_lanes(q_g, row_i)` for the heads `qs` (heads,
/// head_dim) and the rows `rows` (n, head_dim); `head_dim` a multiple of 8.
///
/// Not inlined: one copy for its three callers (the x86_64 binaries have a size budget).
///
/// # Safety
/// The CPU must have AVX2.
#[inline(never)]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn scores(
    rows: &[f32],
    qs: &[f32],
    hd: usize,
    scale: f32,
    att: &mut [f32],
    len: usize,
    j0: usize,
) {
    assert!(hd.is_multiple_of(8), "no tile for heads of {hd}");
    let (n, heads) = (rows.len() / hd, qs.len() / hd);
    assert!(att.len() >= heads * len && j0 + n <= len);
    let mut g = 0;
    while g < heads {
        let h = if heads - g >= 4 { 4 } else { 1 };
        let mut i = 0;
        while i < n {
            let k = if n - i >= 2 { 2 } else { 1 };
            // SAFETY: heads g..g + h of `qs` and rows i..i + k of `rows`, whole rows of
            // `hd` (a multiple of 8) elements.
            let (q, r) = unsafe { (qs.as_ptr().add(g * hd), rows.as_ptr().add(i * hd)) };
            let mut put = |hh: usize, kk: usize, d: f32| {
                att[(g + hh) * len + j0 + i + kk] = d * scale;
            };
            // SAFETY: as above.
            unsafe {
                match (h, k) {
                    (4, 2) => each(dots::<4, 2>(q, r, hd), &mut put),
                    (4, _) => each(dots::<4, 1>(q, r, hd), &mut put),
                    (_, 2) => each(dots::<1, 2>(q, r, hd), &mut put),
                    _ => each(dots::<1, 1>(q, r, hd), &mut put),
                }
            }
            i += k;
        }
        g += h;
    }
}

#[inline(always)]
fn each<const H: usize, const K: usize>(d: [[f32; K]; H], put: &mut impl FnMut(usize, usize, f32)) {
    for (h, d) in d.iter().enumerate() {
        for (k, &d) in d.iter().enumerate() {
            put(h, k, d);
        }
    }
}

/// [`crate::ops::dot_lanes`] of each of the `H` queries at `q` (H, hd) with each of the
/// `K` rows at `r` (K, hd): eight lane sums per pair (a multiply, then an add), then the
/// lanes added in order.
///
/// # Safety
/// The CPU must have AVX2; `q` and `r` point at `H` and `K` whole rows of `hd` elements, a
/// multiple of 8.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dots<const H: usize, const K: usize>(
    q: *const f32,
    r: *const f32,
    hd: usize,
) -> [[f32; K]; H] {
    let mut acc = [[_mm256_setzero_ps(); K]; H];
    let mut rk = [_mm256_setzero_ps(); K];
    for c in (0..hd).step_by(8) {
        for (k, rk) in rk.iter_mut().enumerate() {
            // SAFETY: elements c..c + 8 of row k.
            *rk = unsafe { _mm256_loadu_ps(r.add(k * hd + c)) };
        }
        for (h, acc) in acc.iter_mut().enumerate() {
            // SAFETY: elements c..c + 8 of query h.
            let qh = unsafe { _mm256_loadu_ps(q.add(h * hd + c)) };
            for (acc, &rk) in acc.iter_mut().zip(&rk) {
                *acc = _mm256_add_ps(*acc, _mm256_mul_ps(qh, rk));
            }
        }
    }
    // `dot_lanes` adds its tail's sum, here of no elements (head_dim % 8 == 0).
    let tail: f32 = core::iter::empty::<f32>().sum();
    let mut out = [[0.0f32; K]; H];
    for (out, acc) in out.iter_mut().zip(&acc) {
        for (out, &acc) in out.iter_mut().zip(acc) {
            let mut lanes = [0.0f32; 8];
            // SAFETY: `lanes` holds the eight floats stored.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
            *out = lanes.iter().sum::<f32>() + tail;
        }
    }
    out
}

/// `out[g] += sum_i att[g * len + j0 + i] * rows_i` for the heads of `out` (heads,
/// head_dim) and the rows (n, head_dim), each output element adding the rows' products
/// one after another, in order. `head_dim` a multiple of 64, or of 16 with the heads a
/// multiple of 4.
///
/// Not inlined, as [`scores`].
///
/// # Safety
/// The CPU must have AVX2.
#[inline(never)]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn add_rows(
    rows: &[f32],
    att: &[f32],
    len: usize,
    j0: usize,
    hd: usize,
    out: &mut [f32],
) {
    let (n, heads) = (rows.len() / hd, out.len() / hd);
    assert!(att.len() >= heads * len && j0 + n <= len);
    if heads.is_multiple_of(4) && hd.is_multiple_of(16) {
        for g in (0..heads).step_by(4) {
            // SAFETY: heads g..g + 4 of `out` and `att`, checked above.
            unsafe {
                sums::<4, 2>(
                    rows,
                    att.as_ptr().add(g * len + j0),
                    len,
                    hd,
                    out.as_mut_ptr().add(g * hd),
                )
            };
        }
    } else if hd.is_multiple_of(64) {
        for g in 0..heads {
            // SAFETY: head g of `out` and `att`, checked above.
            unsafe {
                sums::<1, 8>(
                    rows,
                    att.as_ptr().add(g * len + j0),
                    len,
                    hd,
                    out.as_mut_ptr().add(g * hd),
                )
            };
        }
    } else {
        panic!("no tile for {heads} heads of {hd}");
    }
}

/// [`add_rows`] for `H` heads, `V` vectors of eight elements of each at a time kept in
/// registers over all the rows, each row's slice loaded once for the `H` heads.
///
/// # Safety
/// The CPU must have AVX2; `att` points at `H` rows of `len` weights from the first row's
/// own, `out` at `H` rows of `hd` elements, a multiple of `8 * V`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sums<const H: usize, const V: usize>(
    rows: &[f32],
    att: *const f32,
    len: usize,
    hd: usize,
    out: *mut f32,
) {
    for s0 in (0..hd).step_by(8 * V) {
        let mut acc = [[_mm256_setzero_ps(); V]; H];
        for (h, acc) in acc.iter_mut().enumerate() {
            for (v, acc) in acc.iter_mut().enumerate() {
                // SAFETY: elements s0 + 8v.. + 8 of head h's output.
                *acc = unsafe { _mm256_loadu_ps(out.add(h * hd + s0 + 8 * v)) };
            }
        }
        for (i, row) in rows.chunks_exact(hd).enumerate() {
            let mut x = [_mm256_setzero_ps(); V];
            for (v, x) in x.iter_mut().enumerate() {
                // SAFETY: eight elements of the row, bounds-checked.
                *x = unsafe { _mm256_loadu_ps(row[s0 + 8 * v..][..8].as_ptr()) };
            }
            for (h, acc) in acc.iter_mut().enumerate() {
                // SAFETY: weight i of head h.
                let a = _mm256_set1_ps(unsafe { *att.add(h * len + i) });
                for (acc, &x) in acc.iter_mut().zip(&x) {
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(a, x));
                }
            }
        }
        for (h, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                // SAFETY: as the loads.
                unsafe { _mm256_storeu_ps(out.add(h * hd + s0 + 8 * v), acc) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops;
    use crate::rng::Rng;
    use alloc::vec;

    fn random(rng: &mut Rng, n: usize) -> alloc::vec::Vec<f32> {
        (0..n).map(|_| rng.f32() * 2.0 - 1.0).collect()
    }

    /// The tiles against the plain loops, bit for bit, for head counts and row counts
    /// that take every tile shape and its remainders.
    #[test]
    fn tiles_give_the_plain_loops_bits() {
        crate::cpu::assert_avx2_host();
        let mut rng = Rng::new(7);
        for (heads, hd) in [(4, 128), (8, 64), (5, 16), (1, 128), (2, 64), (3, 8)] {
            for n in [1, 2, 3, 16, 17] {
                let (j0, len) = (3, n + 5);
                let rows = random(&mut rng, n * hd);
                let qs = random(&mut rng, heads * hd);
                let (mut want, mut got) = (vec![0.0f32; heads * len], vec![0.0f32; heads * len]);
                for (i, row) in rows.chunks_exact(hd).enumerate() {
                    for (g, q) in qs.chunks_exact(hd).enumerate() {
                        want[g * len + j0 + i] = ops::dot_lanes(q, row) * 0.3;
                    }
                }
                // SAFETY: the host has AVX2 (asserted above).
                unsafe { scores(&rows, &qs, hd, 0.3, &mut got, len, j0) };
                assert_eq!(bits(&got), bits(&want), "scores {heads}x{hd}, {n} rows");

                let att = random(&mut rng, heads * len);
                let start = random(&mut rng, heads * hd);
                let mut want = start.clone();
                for (i, row) in rows.chunks_exact(hd).enumerate() {
                    for (g, y) in want.chunks_exact_mut(hd).enumerate() {
                        let a = att[g * len + j0 + i];
                        for (y, &v) in y.iter_mut().zip(row) {
                            *y += a * v;
                        }
                    }
                }
                let mut got = start.clone();
                if hd.is_multiple_of(64) || (hd.is_multiple_of(16) && heads.is_multiple_of(4)) {
                    // SAFETY: as above.
                    unsafe { add_rows(&rows, &att, len, j0, hd, &mut got) };
                    assert_eq!(bits(&got), bits(&want), "sums {heads}x{hd}, {n} rows");
                }
            }
        }
    }

    fn bits(v: &[f32]) -> alloc::vec::Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
