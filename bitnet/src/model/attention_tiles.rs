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
    // Rows outermost: two rows (1 KiB for 128-element heads) stay in L1 while every group
    // of four heads passes over them.
    let mut i = 0;
    while i < n {
        let k = if n - i >= 2 { 2 } else { 1 };
        let mut g = 0;
        while g < heads {
            let h = if heads - g >= 4 { 4 } else { 1 };
            // SAFETY: heads g..g + h of `qs` and rows i..i + k of `rows`, whole rows of
            // `hd` (a multiple of 8) elements.
            let (q, r) = unsafe { (qs.as_ptr().add(g * hd), rows.as_ptr().add(i * hd)) };
            let mut put = |hh: usize, kk: usize, d: f32| {
                att[(g + hh) * len + j0 + i + kk] = d * scale;
            };
            // SAFETY: as above.
            unsafe {
                match (h, k) {
                    (4, 2) => {
                        let [[a0, a1], [a2, a3], [a4, a5], [a6, a7]] = dots::<4, 2>(q, r, hd);
                        let sums = lane_sums8([a0, a1, a2, a3, a4, a5, a6, a7]);
                        let mut d = [0.0f32; 8];
                        let scaled = _mm256_mul_ps(sums, _mm256_set1_ps(scale));
                        _mm256_storeu_ps(d.as_mut_ptr(), scaled);
                        for (x, &d) in d.iter().enumerate() {
                            att[(g + x / 2) * len + j0 + i + x % 2] = d;
                        }
                    }
                    (4, _) => each(dots::<4, 1>(q, r, hd), &mut put),
                    (_, 2) => each(dots::<1, 2>(q, r, hd), &mut put),
                    _ => each(dots::<1, 1>(q, r, hd), &mut put),
                }
            }
            g += h;
        }
        i += k;
    }
}

/// The sums of the accumulators' lanes, one by one ([`lane_sum`]).
#[inline]
#[target_feature(enable = "avx2")]
fn each<const H: usize, const K: usize>(
    acc: [[__m256; K]; H],
    put: &mut impl FnMut(usize, usize, f32),
) {
    for (h, acc) in acc.iter().enumerate() {
        for (k, &acc) in acc.iter().enumerate() {
            put(h, k, lane_sum(acc));
        }
    }
}

/// `dot_lanes`' last step: its eight lanes added in order, then its tail's sum, here of no
/// elements (head_dim % 8 == 0).
#[inline]
#[target_feature(enable = "avx2")]
fn lane_sum(acc: __m256) -> f32 {
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds the eight floats stored.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let tail: f32 = core::iter::empty::<f32>().sum();
    lanes.iter().sum::<f32>() + tail
}

/// [`lane_sum`] of eight accumulators at once, as lane `d` of the result: the 8 x 8 lanes
/// turned so that vector `l` holds lane `l` of each, then those added in order, so each
/// lane adds what `lane_sum` adds in the same order (24 shuffles and 9 vector adds, where
/// eight `lane_sum`s take about 120 scalar operations).
#[inline]
#[target_feature(enable = "avx2")]
fn lane_sums8(v: [__m256; 8]) -> __m256 {
    let a0 = _mm256_unpacklo_ps(v[0], v[1]); // v0[0] v1[0] v0[1] v1[1] | lanes 4, 5
    let a1 = _mm256_unpackhi_ps(v[0], v[1]); // v0[2] v1[2] v0[3] v1[3] | lanes 6, 7
    let a2 = _mm256_unpacklo_ps(v[2], v[3]);
    let a3 = _mm256_unpackhi_ps(v[2], v[3]);
    let a4 = _mm256_unpacklo_ps(v[4], v[5]);
    let a5 = _mm256_unpackhi_ps(v[4], v[5]);
    let a6 = _mm256_unpacklo_ps(v[6], v[7]);
    let a7 = _mm256_unpackhi_ps(v[6], v[7]);
    let b0 = _mm256_shuffle_ps::<0x44>(a0, a2); // lane 0 of v0..v3 | lane 4
    let b1 = _mm256_shuffle_ps::<0xEE>(a0, a2); // lane 1 | lane 5
    let b2 = _mm256_shuffle_ps::<0x44>(a1, a3); // lane 2 | lane 6
    let b3 = _mm256_shuffle_ps::<0xEE>(a1, a3); // lane 3 | lane 7
    let b4 = _mm256_shuffle_ps::<0x44>(a4, a6); // the same of v4..v7
    let b5 = _mm256_shuffle_ps::<0xEE>(a4, a6);
    let b6 = _mm256_shuffle_ps::<0x44>(a5, a7);
    let b7 = _mm256_shuffle_ps::<0xEE>(a5, a7);
    let lanes = [
        _mm256_permute2f128_ps::<0x20>(b0, b4),
        _mm256_permute2f128_ps::<0x20>(b1, b5),
        _mm256_permute2f128_ps::<0x20>(b2, b6),
        _mm256_permute2f128_ps::<0x20>(b3, b7),
        _mm256_permute2f128_ps::<0x31>(b0, b4),
        _mm256_permute2f128_ps::<0x31>(b1, b5),
        _mm256_permute2f128_ps::<0x31>(b2, b6),
        _mm256_permute2f128_ps::<0x31>(b3, b7),
    ];
    // `Sum` starts from the sum of no elements, and `dot_lanes` adds its empty tail's.
    let empty = _mm256_set1_ps(core::iter::empty::<f32>().sum());
    let mut s = empty;
    for l in lanes {
        s = _mm256_add_ps(s, l);
    }
    _mm256_add_ps(s, empty)
}

/// [`crate::ops::dot_lanes`] of each of the `H` queries at `q` (H, hd) with each of the
/// `K` rows at `r` (K, hd), up to its last step: eight lane sums per pair (a multiply,
/// then an add), left for [`lane_sum`] or [`lane_sums8`] to add up.
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
) -> [[__m256; K]; H] {
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
    acc
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
    let four = heads.is_multiple_of(4) && hd.is_multiple_of(16);
    assert!(
        four || hd.is_multiple_of(64),
        "no tile for {heads} heads of {hd}"
    );
    // Blocks of rows outermost, each read whole before the next: the slices of one row are
    // 64-byte lines 512 bytes apart, and a pass of one slice over every row of a long
    // prefix (557 KB of values at depth 1024, 2B4T) waited on each line. A block (16 KiB)
    // stays in L1 while every head passes over it.
    for (b, block) in rows.chunks(SUM_BLOCK * hd).enumerate() {
        let at = j0 + b * SUM_BLOCK;
        for g in (0..heads).step_by(if four { 4 } else { 1 }) {
            // SAFETY: heads g.. of `out` and `att` and the block's weights, checked above.
            let (a, o) = unsafe { (att.as_ptr().add(g * len + at), out.as_mut_ptr().add(g * hd)) };
            // SAFETY: as above.
            unsafe {
                if four {
                    sums::<4, 2>(block, a, len, hd, o)
                } else {
                    sums::<1, 8>(block, a, len, hd, o)
                }
            };
        }
    }
}

/// Rows per block of [`add_rows`]: 16 KiB of values for 128-element heads.
const SUM_BLOCK: usize = 32;

/// [`add_rows`] of one block of rows for `H` heads, `V` vectors of eight elements of each
/// at a time kept in registers over the block, each row's slice loaded once for the `H`
/// heads.
///
/// # Safety
/// The CPU must have AVX2; `att` points at `H` rows of `len` weights from the block's
/// first row's own, `out` at `H` rows of `hd` elements, a multiple of `8 * V`.
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
            for n in [1, 2, 3, 16, 17, 70] {
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
