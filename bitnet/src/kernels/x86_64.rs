//! x86_64 kernels: AVX2 (`vpmaddubsw`), AVX-VNNI (256-bit `vpdpbusd`) and AVX-512 VNNI
//! (512-bit `vpdpbusd`), with the same function names as `scalar.rs` plus the variant, and
//! their table [`KERNELS`].
//!
//! All three read the Rows16 layout the model repacks into at load
//! ([`CodeLayout::Rows16`]): a 64-byte chunk holds 16 rows x 16 columns, so one vector of
//! codes against four activations broadcast to every lane gives each row its own i32 lane
//! and needs no horizontal sum. Codes are unsigned (0..=2) and activations signed, which is
//! exactly the u8 x s8 multiply-accumulate these ISAs have; `sum (c - 1) q = sum c q - sum q`
//! with the block sums kept in [`ActBatch`]. Each lane holds its row's exact group sum,
//! scaled and added in the reference's order, so the outputs equal the reference bit for bit.
//! The production entry of kernel `k` is named `bitmatmul_<k>`: the symbol the size report
//! looks for.

use core::arch::x86_64::*;

use super::head::{HeadActs, Q8_0_BLOCK_BYTES};
use super::kv::check_kv_dot;
use super::prefetch;
use super::{ActBatch, KernelDesc};
use crate::quants::q4_0;
use crate::ternary::{CodeLayout, TernaryMatrix};

/// The operands of one `bitmatmul` call, checked once at the entry so that tiles can index
/// without bounds checks.
struct Job<'a> {
    codes: &'a [u8],      // (rows, cols / 4)
    scales: &'a [f32],    // (rows, n_groups)
    q: &'a [i8],          // (n_tokens, cols)
    bsums: &'a [i32],     // (n_tokens, cols / 128)
    act_scale: &'a [f32], // (n_tokens,)
    cols: usize,
    n_tokens: usize,
    blocks: usize,       // 128-element blocks per row
    group_blocks: usize, // blocks sharing one scale
    n_groups: usize,
    row0: usize,
}

impl<'a> Job<'a> {
    fn new(w: &'a TernaryMatrix, x: &'a ActBatch, row0: usize, out: &[f32]) -> Job<'a> {
        super::check_bitmatmul_args(w, x, row0, out);
        Job {
            codes: &w.codes,
            scales: &w.scales,
            q: &x.q,
            bsums: &x.bsums,
            act_scale: &x.scale,
            cols: w.cols,
            n_tokens: x.n_tokens,
            blocks: w.cols / 128,
            group_blocks: w.group_len / 128,
            n_groups: w.cols / w.group_len,
            row0,
        }
    }

    /// Sum of token `t`'s activations over blocks `b0..b1` (bounds-checked: once per scale
    /// group, not per element).
    #[inline(always)]
    fn qsum(&self, t: usize, b0: usize, b1: usize) -> i32 {
        let base = t * self.blocks;
        self.bsums[base + b0..base + b1].iter().sum()
    }

    #[inline(always)]
    fn out_index(&self, r: usize, t: usize) -> usize {
        (r - self.row0) * self.n_tokens + t
    }
}

/// Sum of the eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_epi32_256(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Sum of the eight f32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_ps_256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Rows16 layout, 256 bits: `acc[lane i] += sum_q sum_j c(row i, col 4q + j) x[4q + j]` for
/// one half (8 rows) of a 16-column chunk; `w[q]` are the half's unpacked codes, `x` the
/// chunk's 16 activations. `vpmaddubsw` pairs stay below 512, four of them below 2048.
///
/// # Safety
/// The CPU has AVX2; `x..x + 16` is readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_chunk_avx2(acc: __m256i, w: &[__m256i; 4], x: *const i8) -> __m256i {
    // SAFETY: q < 4, so the four bytes at x + 4q are inside the caller's 16.
    let xb = |q: usize| _mm256_set1_epi32(unsafe { x.add(4 * q).cast::<i32>().read_unaligned() });
    let p01 = _mm256_add_epi16(
        _mm256_maddubs_epi16(w[0], xb(0)),
        _mm256_maddubs_epi16(w[1], xb(1)),
    );
    let p23 = _mm256_add_epi16(
        _mm256_maddubs_epi16(w[2], xb(2)),
        _mm256_maddubs_epi16(w[3], xb(3)),
    );
    let p = _mm256_madd_epi16(_mm256_add_epi16(p01, p23), _mm256_set1_epi16(1));
    _mm256_add_epi32(acc, p)
}

/// [`dot_chunk_avx2`] with `vpdpbusd`.
///
/// # Safety
/// The CPU has AVX2 and AVX-VNNI; `x..x + 16` is readable.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn dot_chunk_avxvnni(acc: __m256i, w: &[__m256i; 4], x: *const i8) -> __m256i {
    // SAFETY: q < 4, so the four bytes at x + 4q are inside the caller's 16.
    let xb = |q: usize| _mm256_set1_epi32(unsafe { x.add(4 * q).cast::<i32>().read_unaligned() });
    let acc = _mm256_dpbusd_avx_epi32(acc, w[0], xb(0));
    let acc = _mm256_dpbusd_avx_epi32(acc, w[1], xb(1));
    let acc = _mm256_dpbusd_avx_epi32(acc, w[2], xb(2));
    _mm256_dpbusd_avx_epi32(acc, w[3], xb(3))
}

/// The four code vectors of half `h` (rows 8h..8h + 8) of a Rows16 chunk.
///
/// # Safety
/// The CPU has AVX2; `h < 2` and the chunk's 64 bytes at `chunk` are readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn unpack_half(chunk: *const u8, h: usize) -> [__m256i; 4] {
    // SAFETY: bytes 32h..32h + 32 of the caller's 64.
    let v = unsafe { _mm256_loadu_si256(chunk.add(32 * h).cast()) };
    let m3 = _mm256_set1_epi8(3);
    [
        _mm256_and_si256(v, m3),
        _mm256_and_si256(_mm256_srli_epi16::<2>(v), m3),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), m3),
        _mm256_and_si256(_mm256_srli_epi16::<6>(v), m3),
    ]
}

/// Sum of `q * d` over one 32-element block of a Q8_0 head row (sign trick: |w| is unsigned,
/// x takes w's sign; |w| <= 128 and |x| <= 127 keep `vpmaddubsw` pairs below 32767).
#[inline]
#[target_feature(enable = "avx2")]
fn q8_block_avx2(w: __m256i, x: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn q8_block_avxvnni(w: __m256i, x: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    _mm256_dpbusd_avx_epi32(zero, _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
}

#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
fn q8_block_avx512vnni(w: __m256i, x: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    _mm256_dpbusd_epi32(zero, _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
}

/// The f32 scale of Q8_0 block `k` of a head row (its first two bytes, f16).
///
/// # Safety
/// The CPU has F16C; block `k` of the row at `row` is readable.
#[inline]
#[target_feature(enable = "f16c")]
unsafe fn q8_scale(row: *const u8, k: usize) -> f32 {
    // SAFETY: the first two bytes of block k, readable by the caller's guarantee.
    let bits = unsafe { row.add(Q8_0_BLOCK_BYTES * k).cast::<u16>().read_unaligned() };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
}

/// One Q8_0 head row against token `t`: per block, exact integer sums (`$block`), times
/// the two scales, in two chains. (Converting eight scales per `vcvtph2ps` measured no
/// faster: the head is memory-bound either way.) A macro so it expands inside each
/// variant's `#[target_feature]` function, which must guarantee that `row` points at a
/// whole Q8_0 row of `a.cols` columns and that `t < a.n_tokens` (`check_head_q8_0`).
macro_rules! q8_row {
    ($row:expr, $a:expr, $t:expr, $block:ident) => {{
        let (row, a, t): (*const u8, &HeadActs, usize) = ($row, $a, $t);
        let nb = a.cols / 32;
        let xq = &a.q[t * a.cols..(t + 1) * a.cols];
        let xd = &a.d[t * nb..(t + 1) * nb];
        let mut acc = [_mm256_setzero_ps(); 2];
        for k in 0..nb {
            // SAFETY: block k < nb of the row (34 bytes: scale, then 32 weights) and
            // elements 32k..32k + 32 of the token, both in bounds by the guarantee above.
            let (wv, xv, dw) = unsafe {
                (
                    _mm256_loadu_si256(row.add(Q8_0_BLOCK_BYTES * k + 2).cast()),
                    _mm256_loadu_si256(xq.as_ptr().add(32 * k).cast()),
                    q8_scale(row, k),
                )
            };
            let p = _mm256_cvtepi32_ps($block(wv, xv));
            let d = _mm256_set1_ps(dw * xd[k]);
            acc[k % 2] = _mm256_fmadd_ps(p, d, acc[k % 2]);
        }
        hsum_ps_256(_mm256_add_ps(acc[0], acc[1]))
    }};
}

/// The 256-bit kernels: AVX2 and AVX-VNNI differ only in the chunk dot product.
macro_rules! kernels_256 {
    (
        $module:ident, $features:literal, $dot_chunk:ident, $q8_block:ident,
        $bitmatmul:ident, $vec_dot:ident, $head_f16:ident, $head_q8_0:ident
    ) => {
        #[allow(clippy::needless_range_loop)]
        pub mod $module {
            use super::*;

            /// Rows16 layout: one row group (two halves of 8 rows) x T tokens, each row in
            /// its own i32 lane; P accumulators per (half, token) alternate over chunks so
            /// the multiply-accumulate chains stay short when T is 1.
            ///
            /// # Safety
            /// The CPU has the variant's features; `j` is from `Job::new` (shapes checked),
            /// row group `g0` holds rows below `rows_end <= rows`, `t0 + T <= n_tokens`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn tile16<const T: usize, const P: usize>(
                j: &Job,
                g0: usize,
                t0: usize,
                rows_end: usize,
                out: &mut [f32],
                prefetch: bool,
            ) {
                let chunks = j.cols / 16;
                let per_group = j.group_blocks * 8; // even
                                                    // The unsafe blocks below rely on `Job::new`'s checks: row group g0 is
                                                    // (chunks, 64) code bytes and (n_groups, 16) scales inside the Rows16 matrix,
                                                    // chunk c < chunks, token t0 + t < n_tokens, and out_index(row, t) of a row in
                                                    // row0..rows_end is inside `out`.
                let codes = j.codes[g0 * chunks * 64..][..chunks * 64].as_ptr();
                let mut facc = [[_mm256_setzero_ps(); T]; 2];
                for g in 0..j.n_groups {
                    let b0 = g * j.group_blocks;
                    let mut acc = [[[_mm256_setzero_si256(); P]; T]; 2];
                    for t in 0..T {
                        let init = _mm256_set1_epi32(-j.qsum(t0 + t, b0, b0 + j.group_blocks));
                        acc[0][t][0] = init;
                        acc[1][t][0] = init;
                    }
                    for c in g * per_group..(g + 1) * per_group {
                        if T == 1 && prefetch {
                            // Decode streams the codes once: 1 KiB ahead, as in avx512vnni.
                            let ahead = codes.wrapping_add((c + 16) * 64);
                            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                        }
                        for h in 0..2 {
                            // SAFETY: in bounds as noted where `codes` is taken.
                            let w = unsafe { unpack_half(codes.add(c * 64), h) };
                            for t in 0..T {
                                let a = &mut acc[h][t][c % P];
                                // SAFETY: in bounds as noted where `codes` is taken.
                                *a = unsafe {
                                    let x = j.q.as_ptr().add((t0 + t) * j.cols + 16 * c);
                                    $dot_chunk(*a, &w, x)
                                };
                            }
                        }
                    }
                    for h in 0..2 {
                        let at = (g0 * j.n_groups + g) * 16 + 8 * h;
                        // SAFETY: in bounds as noted where `codes` is taken.
                        let d = unsafe { _mm256_loadu_ps(j.scales.as_ptr().add(at)) };
                        for t in 0..T {
                            let mut sum = acc[h][t][0];
                            for p in 1..P {
                                sum = _mm256_add_epi32(sum, acc[h][t][p]);
                            }
                            let prod = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), d);
                            facc[h][t] = _mm256_add_ps(facc[h][t], prod);
                        }
                    }
                }
                for h in 0..2 {
                    for t in 0..T {
                        // The reference's `y / s` in the lanes (IEEE division: the same bits).
                        let y = _mm256_div_ps(facc[h][t], _mm256_set1_ps(j.act_scale[t0 + t]));
                        let mut lanes = [0.0f32; 8];
                        // SAFETY: `lanes` holds the eight floats stored.
                        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), y) };
                        for (i, &y) in lanes.iter().enumerate() {
                            let row = 16 * g0 + 8 * h + i;
                            if row >= j.row0 && row < rows_end {
                                // SAFETY: in bounds as noted where `codes` is taken.
                                unsafe { *out.get_unchecked_mut(j.out_index(row, t0 + t)) = y };
                            }
                        }
                    }
                }
            }

            /// The production entry: same contract as
            /// [`Kernel::bitmatmul`](crate::kernels::Kernel::bitmatmul), for a matrix in the
            /// Rows16 layout (what the model repacks into for this kernel).
            ///
            /// # Safety
            /// The CPU must support the features this variant is compiled for.
            #[inline(never)]
            #[target_feature(enable = $features)]
            pub unsafe fn $bitmatmul(
                w: &TernaryMatrix,
                x: &ActBatch,
                row0: usize,
                out: &mut [f32],
            ) {
                assert_eq!(w.layout, CodeLayout::Rows16);
                let j = Job::new(w, x, row0, out);
                let n = j.n_tokens;
                let rows_end = row0 + out.len() / n.max(1);
                let (g_begin, g_end) = (row0 / 16, rows_end.div_ceil(16));
                let pf = prefetch::enabled();
                // Row groups outermost: a group's codes stay in cache while every token
                // passes over them (each weight from memory once per call).
                for g in g_begin..g_end {
                    let mut t0 = 0;
                    while t0 < n {
                        let tn = (n - t0).min(2);
                        // SAFETY: the caller guarantees the features; `Job::new` checked the
                        // shapes, g < g_end covers rows below rows_end, t0 + tn <= n.
                        unsafe {
                            match tn {
                                1 => tile16::<1, 2>(&j, g, t0, rows_end, out, pf),
                                _ => tile16::<2, 1>(&j, g, t0, rows_end, out, pf),
                            }
                        }
                        t0 += tn;
                    }
                }
            }

            /// Exact integer accumulators of one row (Rows16 layout) against token `t`,
            /// one per scale group, added into `acc`.
            ///
            /// # Safety
            /// The CPU must support the features this variant is compiled for.
            #[target_feature(enable = $features)]
            pub unsafe fn $vec_dot(
                w: &TernaryMatrix,
                row: usize,
                x: &ActBatch,
                t: usize,
                acc: &mut [i32],
            ) {
                assert_eq!(w.layout, CodeLayout::Rows16);
                assert!(row < w.rows && t < x.n_tokens && x.cols == w.cols);
                assert_eq!(acc.len(), w.cols / w.group_len);
                let j = Job::new(w, x, 0, &[]);
                let (g0, h, chunks) = (row / 16, (row % 16) / 8, j.cols / 16);
                let per_group = j.group_blocks * 8;
                for (g, a) in acc.iter_mut().enumerate() {
                    let b0 = g * j.group_blocks;
                    let mut v = _mm256_set1_epi32(-j.qsum(t, b0, b0 + j.group_blocks));
                    for c in g * per_group..(g + 1) * per_group {
                        // SAFETY: the caller guarantees the features; chunk c of row group
                        // g0 and 16 activations of token t are inside the matrix and batch
                        // `Job::new` checked (row < rows, t < n_tokens asserted above).
                        v = unsafe {
                            let wq = unpack_half(j.codes.as_ptr().add((g0 * chunks + c) * 64), h);
                            $dot_chunk(v, &wq, j.q.as_ptr().add(t * j.cols + 16 * c))
                        };
                    }
                    let mut lanes = [0i32; 8];
                    // SAFETY: `lanes` holds the eight i32 stored.
                    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
                    *a += lanes[row % 8];
                }
            }

            /// `out[(r, t)] = row r . x[t]` for F16 head rows (`rows` holds whole rows of
            /// `cols` halves), written rows outermost like `bitmatmul`. One row at a time in
            /// memory order: a single sequential stream is what the prefetchers follow best.
            ///
            /// # Safety
            /// The CPU must support the features this variant is compiled for.
            #[inline(never)]
            #[target_feature(enable = $features)]
            pub unsafe fn $head_f16(rows: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
                let (n, n_rows) = super::super::head::check_head_f16(rows, cols, x, out);
                let main = cols / 32 * 32;
                let pf = prefetch::enabled();
                for r in 0..n_rows {
                    let row = &rows[r * cols * 2..(r + 1) * cols * 2];
                    for t in 0..n {
                        let xt = &x[t * cols..(t + 1) * cols];
                        let mut acc = [_mm256_setzero_ps(); 4];
                        let mut k = 0;
                        while k < main {
                            if t == 0 && pf {
                                // 1 KiB ahead, as in avx512vnni.
                                let ahead = row.as_ptr().wrapping_add(2 * k + 1024);
                                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                            }
                            for (i, a) in acc.iter_mut().enumerate() {
                                // SAFETY: k + 8i + 8 <= main <= cols: eight halves of `row`
                                // and eight floats of `xt`.
                                let (w, xv) = unsafe {
                                    (
                                        _mm_loadu_si128(row.as_ptr().add(2 * (k + 8 * i)).cast()),
                                        _mm256_loadu_ps(xt.as_ptr().add(k + 8 * i)),
                                    )
                                };
                                *a = _mm256_fmadd_ps(_mm256_cvtph_ps(w), xv, *a);
                            }
                            k += 32;
                        }
                        let s = _mm256_add_ps(
                            _mm256_add_ps(acc[0], acc[1]),
                            _mm256_add_ps(acc[2], acc[3]),
                        );
                        let tail = super::super::head::dot_f16_tail(row, x, t, cols, main);
                        out[r * n + t] = hsum_ps_256(s) + tail;
                    }
                }
            }

            /// `out[(r, t)] = row r . x[t]` for Q8_0 head rows against int8 activations.
            ///
            /// # Safety
            /// The CPU must support the features this variant is compiled for.
            #[inline(never)]
            #[target_feature(enable = $features)]
            pub unsafe fn $head_q8_0(rows: &[u8], a: &HeadActs, out: &mut [f32]) {
                let (n, n_rows, row_bytes) = super::super::head::check_head_q8_0(rows, a, out);
                for r in 0..n_rows {
                    let row = rows[r * row_bytes..].as_ptr();
                    for t in 0..n {
                        // q8_row's guarantee: `check_head_q8_0` checked whole rows and tokens.
                        out[r * n + t] = q8_row!(row, a, t, $q8_block);
                    }
                }
            }
        }
    };
}

kernels_256!(
    avx2,
    "avx2,fma,f16c",
    dot_chunk_avx2,
    q8_block_avx2,
    bitmatmul_avx2,
    vec_dot_ternary_i8_avx2,
    head_f16_avx2,
    head_q8_0_avx2
);

kernels_256!(
    avxvnni,
    "avx2,fma,f16c,avxvnni",
    dot_chunk_avxvnni,
    q8_block_avxvnni,
    bitmatmul_avxvnni,
    vec_dot_ternary_i8_avxvnni,
    head_f16_avxvnni,
    head_q8_0_avxvnni
);

/// The 512-bit kernel: a whole 16-row chunk per zmm vector.
// Tiles index several arrays by the same (row, token) pair; index loops say that plainest.
#[allow(clippy::needless_range_loop)]
pub mod avx512vnni {
    use super::*;

    /// Rows16 layout: R row groups x T tokens. Lane i of an accumulator is row 16G + i, so a
    /// `vpdpbusd` of 64 codes (16 rows x 4 columns) against 4 activations broadcast to every
    /// lane needs no horizontal sum; each lane holds its row's exact group sum, scaled and
    /// added in the reference's order.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW/VNNI, AVX2 and FMA; `j` is from `Job::new` (shapes checked),
    /// row groups `g0..g0 + R` hold rows below `rows_end <= rows`, `t0 + T <= n_tokens`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    unsafe fn tile16<const R: usize, const T: usize>(
        j: &Job,
        g0: usize,
        t0: usize,
        rows_end: usize,
        out: &mut [f32],
    ) {
        let chunks = j.cols / 16;
        let per_group = j.group_blocks * 8; // 16-column chunks per scale group
        let m3 = _mm512_set1_epi8(3);
        // Each token's activations checked once here, not per chunk: sixteen compares and
        // branches per 64 `vpdpbusd` otherwise, with the token offsets spilled to the stack.
        let xts: [*const i8; T] =
            core::array::from_fn(|t| j.q[(t0 + t) * j.cols..][..j.cols].as_ptr());
        let mut facc = [[_mm512_setzero_ps(); T]; R];
        for g in 0..j.n_groups {
            let mut acc = [[_mm512_setzero_si512(); T]; R];
            for t in 0..T {
                let b0 = g * j.group_blocks;
                let init = _mm512_set1_epi32(-j.qsum(t0 + t, b0, b0 + j.group_blocks));
                for a in acc.iter_mut() {
                    a[t] = init;
                }
            }
            for c in g * per_group..(g + 1) * per_group {
                let mut w = [[_mm512_setzero_si512(); 4]; R];
                for (r, w) in w.iter_mut().enumerate() {
                    // SAFETY: chunk c < chunks of row group g0 + r, inside the Rows16 codes
                    // `Job::new` checked.
                    let v = unsafe {
                        _mm512_loadu_si512(
                            j.codes.as_ptr().add(((g0 + r) * chunks + c) * 64).cast(),
                        )
                    };
                    *w = [
                        _mm512_and_si512(v, m3),
                        _mm512_and_si512(_mm512_srli_epi16::<2>(v), m3),
                        _mm512_and_si512(_mm512_srli_epi16::<4>(v), m3),
                        _mm512_and_si512(_mm512_srli_epi16::<6>(v), m3),
                    ];
                }
                for t in 0..T {
                    // SAFETY: chunk c < chunks: its 16 activations are inside token t0 + t's
                    // `cols`, the slice taken above.
                    let xp = unsafe { xts[t].add(16 * c) };
                    for q in 0..4 {
                        // SAFETY: bytes 4q..4q + 4 of the 16 at `xp`.
                        let x4 = unsafe { xp.add(4 * q).cast::<i32>().read_unaligned() };
                        let xb = _mm512_set1_epi32(x4);
                        for r in 0..R {
                            acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], w[r][q], xb);
                        }
                    }
                }
            }
            for r in 0..R {
                let d = &j.scales[((g0 + r) * j.n_groups + g) * 16..][..16];
                // SAFETY: `d` holds the sixteen floats loaded.
                let d = unsafe { _mm512_loadu_ps(d.as_ptr()) };
                for t in 0..T {
                    let p = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][t]), d);
                    facc[r][t] = _mm512_add_ps(facc[r][t], p);
                }
            }
        }
        for r in 0..R {
            for t in 0..T {
                // The reference's `y / s` in the lanes (IEEE division: the same bits): one
                // `vdivps` instead of sixteen `vdivss`, for each of 683K outputs per token.
                let y = _mm512_div_ps(facc[r][t], _mm512_set1_ps(j.act_scale[t0 + t]));
                let mut lanes = [0.0f32; 16];
                // SAFETY: `lanes` holds the sixteen floats stored.
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), y) };
                for (i, &y) in lanes.iter().enumerate() {
                    let row = 16 * (g0 + r) + i;
                    if row >= j.row0 && row < rows_end {
                        // SAFETY: rows row0..rows_end x tokens of `out`, checked by
                        // `Job::new`.
                        unsafe { *out.get_unchecked_mut(j.out_index(row, t0 + t)) = y };
                    }
                }
            }
        }
    }

    /// Chunks (64 bytes each) the decode loop prefetches ahead: the hardware prefetchers
    /// alone left a single-token stream at ~55% of the read bandwidth on a Sapphire Rapids
    /// host; 1 KiB ahead measured best there (2 KiB no better).
    const DECODE_PREFETCH: usize = 16;

    /// Chunks (even) between folds of the decode accumulators into the group's sum. A lane
    /// of field 3's accumulator gains at most 4 x 192 x 128 per `vpdpbusd` (code 3 masked in
    /// place against the most negative activation), one per two chunks, and a fold adds
    /// two of them: 512 chunks stay below 2^26, and a 2B4T row (432 chunks) takes one fold.
    const DECODE_FOLD: usize = 512;

    /// Rows16 decode: one row group, one token, in memory order (one sequential stream for
    /// the prefetchers). Eight accumulators, one per (chunk parity, column quad), keep the
    /// `vpdpbusd` chains short; their exact sums are added per scale group.
    ///
    /// # Safety
    /// As [`tile16`] with `R = T = 1` (token `t < n_tokens`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    unsafe fn row16_decode(j: &Job, g0: usize, t: usize, rows_end: usize, out: &mut [f32]) {
        // SAFETY: as this function's own contract.
        unsafe {
            if prefetch::enabled() {
                row16_decode_n::<1, true>(j, [g0], t, rows_end, out)
            } else {
                row16_decode_n::<1, false>(j, [g0], t, rows_end, out)
            }
        }
    }

    /// [`row16_decode`] of `G` row groups at once, their code streams interleaved chunk by
    /// chunk, prefetching each stream `DECODE_PREFETCH` chunks ahead if `PF`
    /// ([`prefetch`]).
    ///
    /// # Safety
    /// As [`row16_decode`] for each of `gs`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    unsafe fn row16_decode_n<const G: usize, const PF: bool>(
        j: &Job,
        gs: [usize; G],
        t: usize,
        rows_end: usize,
        out: &mut [f32],
    ) {
        let chunks = j.cols / 16;
        let per_group = j.group_blocks * 8; // even: 16-column chunks per scale group

        // Field q of each code byte masked in place, not shifted down: lane sums of
        // accumulator q are 4^q times the field's exact sums, shifted back (exactly) when
        // folded. One `vpandd` per field instead of a shift and an and: the loop is as much
        // arithmetic as memory on one Zen 4 core.
        let masks = [3i8, 3 << 2, 3 << 4, -64].map(|m| _mm512_set1_epi8(m));
        // Raw pointers and unchecked reads: this loop is the decode hot path, and each check
        // is a compare and branch per 64 weights. Row group g0 is (chunks, 64) code bytes
        // inside the checked matrix, token t is `cols` activations.
        let codes = gs.map(|g0| j.codes[g0 * chunks * 64..][..chunks * 64].as_ptr());
        let xt = j.q[t * j.cols..][..j.cols].as_ptr();
        let mut facc = [_mm512_setzero_ps(); G];
        for g in 0..j.n_groups {
            let b0 = g * j.group_blocks;
            let mut sum = [_mm512_set1_epi32(-j.qsum(t, b0, b0 + j.group_blocks)); G];
            let (mut c, end) = (g * per_group, (g + 1) * per_group);
            while c < end {
                let stop = end.min(c + DECODE_FOLD);
                let mut acc = [[_mm512_setzero_si512(); 8]; G];
                while c < stop {
                    for (codes, acc) in codes.iter().zip(acc.iter_mut()) {
                        if PF {
                            let ahead = codes.wrapping_add((c + DECODE_PREFETCH) * 64);
                            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
                        }
                        for h in 0..2 {
                            // SAFETY: chunk c + h < chunks (c is even, chunks per group
                            // even): its 64 code bytes and 16 activations are inside the
                            // slices taken above.
                            let (v, xp) = unsafe {
                                (
                                    _mm512_loadu_si512(codes.add((c + h) * 64).cast()),
                                    xt.add(16 * (c + h)),
                                )
                            };
                            for q in 0..4 {
                                let wq = _mm512_and_si512(v, masks[q]);
                                // SAFETY: bytes 4q..4q + 4 of the chunk's 16 activations.
                                let xb = _mm512_set1_epi32(unsafe {
                                    xp.add(4 * q).cast::<i32>().read_unaligned()
                                });
                                acc[4 * h + q] = _mm512_dpbusd_epi32(acc[4 * h + q], wq, xb);
                            }
                        }
                    }
                    c += 2;
                }
                for (acc, sum) in acc.iter().zip(sum.iter_mut()) {
                    let f = |q: usize| _mm512_add_epi32(acc[q], acc[4 + q]);
                    let s01 = _mm512_add_epi32(f(0), _mm512_srai_epi32::<2>(f(1)));
                    let s23 = _mm512_add_epi32(
                        _mm512_srai_epi32::<4>(f(2)),
                        _mm512_srai_epi32::<6>(f(3)),
                    );
                    *sum = _mm512_add_epi32(*sum, _mm512_add_epi32(s01, s23));
                }
            }
            for ((sum, facc), &g0) in sum.iter().zip(facc.iter_mut()).zip(&gs) {
                let d = &j.scales[(g0 * j.n_groups + g) * 16..][..16];
                // SAFETY: `d` holds the sixteen floats loaded.
                let d = unsafe { _mm512_loadu_ps(d.as_ptr()) };
                let p = _mm512_mul_ps(_mm512_cvtepi32_ps(*sum), d);
                *facc = _mm512_add_ps(*facc, p);
            }
        }
        // The reference's `y / s` in the lanes (IEEE division: the same bits).
        let s = _mm512_set1_ps(j.act_scale[t]);
        for (facc, &g0) in facc.iter().zip(&gs) {
            let mut lanes = [0.0f32; 16];
            // SAFETY: `lanes` holds the sixteen floats stored.
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), _mm512_div_ps(*facc, s)) };
            for (i, &y) in lanes.iter().enumerate() {
                let row = 16 * g0 + i;
                if row >= j.row0 && row < rows_end {
                    out[j.out_index(row, t)] = y;
                }
            }
        }
    }

    /// The production entry: same contract as
    /// [`Kernel::bitmatmul`](crate::kernels::Kernel::bitmatmul), for a matrix in the Rows16
    /// layout (what the model repacks into for this kernel).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VL/VNNI, FMA and F16C.
    #[inline(never)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub unsafe fn bitmatmul_avx512vnni(
        w: &TernaryMatrix,
        x: &ActBatch,
        row0: usize,
        out: &mut [f32],
    ) {
        assert_eq!(w.layout, CodeLayout::Rows16);
        let j = Job::new(w, x, row0, out);
        let n = j.n_tokens;
        let rows_end = row0 + out.len() / n.max(1);
        let (g_begin, g_end) = (row0 / 16, rows_end.div_ceil(16));
        if n == 1 {
            // Two code streams at once, the first and second half of the rows: decode went
            // from ~10.8 to ~13.9 GB/s per thread on a Sapphire Rapids host (three or four
            // streams measured no better). One stream leaves too few cache-line misses in
            // flight.
            let half = (g_end - g_begin) / 2;
            let pf = prefetch::enabled();
            for g in g_begin..g_begin + half {
                let gs = [g, g + half];
                // SAFETY: the caller guarantees the features; `Job::new` checked the shapes,
                // g and g + half < g_end cover rows below rows_end, 0 < n.
                unsafe {
                    if pf {
                        row16_decode_n::<2, true>(&j, gs, 0, rows_end, out)
                    } else {
                        row16_decode_n::<2, false>(&j, gs, 0, rows_end, out)
                    }
                };
            }
            for g in g_begin + 2 * half..g_end {
                // SAFETY: as above, the odd group left.
                unsafe { row16_decode(&j, g, 0, rows_end, out) };
            }
            return;
        }
        // Prefill: two row groups x up to four tokens share each code vector and each
        // broadcast. Row groups outermost: a pair's codes (2 x cols x 4 bytes) stay in cache
        // while every token passes over them, so each weight comes from memory once per call
        // rather than once per four tokens.
        let mut g = g_begin;
        while g < g_end {
            let rn = if g_end - g >= 2 { 2 } else { 1 };
            let mut t0 = 0;
            while t0 < n {
                let tn = if n - t0 >= 8 { 8 } else { (n - t0).min(4) };
                // SAFETY: the caller guarantees the features; `Job::new` checked the shapes,
                // g + rn <= g_end covers rows below rows_end, t0 + tn <= n.
                unsafe {
                    match (rn, tn) {
                        (_, 1) => {
                            for g in g..g + rn {
                                row16_decode(&j, g, t0, rows_end, out);
                            }
                        }
                        (2, 2) => tile16::<2, 2>(&j, g, t0, rows_end, out),
                        (2, 3) => tile16::<2, 3>(&j, g, t0, rows_end, out),
                        (2, 4) => tile16::<2, 4>(&j, g, t0, rows_end, out),
                        (2, 8) => tile16::<2, 8>(&j, g, t0, rows_end, out),
                        (1, 8) => tile16::<1, 8>(&j, g, t0, rows_end, out),
                        (1, 2) => tile16::<1, 2>(&j, g, t0, rows_end, out),
                        (1, 3) => tile16::<1, 3>(&j, g, t0, rows_end, out),
                        (1, 4) => tile16::<1, 4>(&j, g, t0, rows_end, out),
                        _ => unreachable!("tile shape"),
                    }
                }
                t0 += tn;
            }
            g += rn;
        }
    }

    /// Exact integer accumulators of one row (Rows16 layout) against token `t`, one per scale
    /// group, added into `acc`: lane `row % 16` of the row group's sums.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW/VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn vec_dot_ternary_i8_avx512vnni(
        w: &TernaryMatrix,
        row: usize,
        x: &ActBatch,
        t: usize,
        acc: &mut [i32],
    ) {
        assert_eq!(w.layout, CodeLayout::Rows16);
        assert!(row < w.rows && t < x.n_tokens && x.cols == w.cols);
        assert_eq!(acc.len(), w.cols / w.group_len);
        let j = Job::new(w, x, 0, &[]);
        let (g0, chunks, per_group) = (row / 16, j.cols / 16, j.group_blocks * 8);
        let m3 = _mm512_set1_epi8(3);
        for (g, a) in acc.iter_mut().enumerate() {
            let b0 = g * j.group_blocks;
            let mut v = _mm512_set1_epi32(-j.qsum(t, b0, b0 + j.group_blocks));
            for c in g * per_group..(g + 1) * per_group {
                let codes = &j.codes[(g0 * chunks + c) * 64..][..64];
                let xp = &j.q[t * j.cols + 16 * c..][..16];
                // SAFETY: `codes` holds the 64 bytes loaded.
                let codes = unsafe { _mm512_loadu_si512(codes.as_ptr().cast()) };
                for q in 0..4 {
                    let wq = _mm512_and_si512(
                        _mm512_srl_epi16(codes, _mm_cvtsi32_si128(2 * q as i32)),
                        m3,
                    );
                    // SAFETY: bytes 4q..4q + 4 of the 16 in `xp`.
                    let x4 = unsafe { xp.as_ptr().add(4 * q).cast::<i32>().read_unaligned() };
                    v = _mm512_dpbusd_epi32(v, wq, _mm512_set1_epi32(x4));
                }
            }
            let mut lanes = [0i32; 16];
            // SAFETY: `lanes` holds the sixteen i32 stored.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), v) };
            *a += lanes[row % 16];
        }
    }

    /// Bytes the F16 head prefetches ahead of the row being read (1 KiB measured best of
    /// 1 and 2 KiB on a Sapphire Rapids host).
    const HEAD_PREFETCH: usize = 1024;

    /// F16 head rows x f32 activations, 16 halves per `vcvtph2ps`, one row at a time.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, FMA and F16C.
    #[inline(never)]
    #[target_feature(enable = "avx512f,fma,f16c")]
    pub unsafe fn head_f16_avx512vnni(rows: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
        let (n, n_rows) = super::super::head::check_head_f16(rows, cols, x, out);
        let main = cols / 64 * 64;
        if n == 1 && cols == main && n_rows >= 2 {
            // Decode: two rows at once, from the first and second half of the chunk, as
            // two streams (as the ternary decode does); each row's sums are the same as below.
            let half = n_rows / 2;
            let xt = x.as_ptr();
            let pf = prefetch::enabled();
            for r in 0..half {
                let (a, b) = (
                    &rows[r * cols * 2..][..cols * 2],
                    &rows[(r + half) * cols * 2..][..cols * 2],
                );
                let mut acc = [[_mm512_setzero_ps(); 4]; 2];
                let mut k = 0;
                while k < main {
                    for (row, acc) in [a, b].iter().zip(acc.iter_mut()) {
                        if pf {
                            let ahead = row.as_ptr().wrapping_add(2 * k + HEAD_PREFETCH);
                            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
                        }
                        for (i, acc) in acc.iter_mut().enumerate() {
                            // SAFETY: k + 16i + 16 <= main == cols: sixteen halves of the row
                            // and sixteen floats of `x` (one token of `cols`).
                            let (w, xv) = unsafe {
                                (
                                    _mm256_loadu_si256(row.as_ptr().add(2 * (k + 16 * i)).cast()),
                                    _mm512_loadu_ps(xt.add(k + 16 * i)),
                                )
                            };
                            *acc = _mm512_fmadd_ps(_mm512_cvtph_ps(w), xv, *acc);
                        }
                    }
                    k += 64;
                }
                for (acc, r) in acc.iter().zip([r, r + half]) {
                    let s =
                        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
                    out[r] = _mm512_reduce_add_ps(s);
                }
            }
            if n_rows % 2 == 1 {
                let r = n_rows - 1;
                // SAFETY: as this function's contract, for the last row alone.
                unsafe { head_f16_avx512vnni(&rows[r * cols * 2..], cols, x, &mut out[r..]) };
            }
            return;
        }
        let pf = prefetch::enabled();
        for r in 0..n_rows {
            let row = &rows[r * cols * 2..(r + 1) * cols * 2];
            for t in 0..n {
                let xt = &x[t * cols..(t + 1) * cols];
                let mut acc = [_mm512_setzero_ps(); 4];
                let mut k = 0;
                while k < main {
                    if t == 0 && pf {
                        let ahead = row.as_ptr().wrapping_add(2 * k + HEAD_PREFETCH);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
                    }
                    for (i, a) in acc.iter_mut().enumerate() {
                        // SAFETY: k + 16i + 16 <= main <= cols: sixteen halves of `row` and
                        // sixteen floats of `xt`.
                        let (w, xv) = unsafe {
                            (
                                _mm256_loadu_si256(row.as_ptr().add(2 * (k + 16 * i)).cast()),
                                _mm512_loadu_ps(xt.as_ptr().add(k + 16 * i)),
                            )
                        };
                        *a = _mm512_fmadd_ps(_mm512_cvtph_ps(w), xv, *a);
                    }
                    k += 64;
                }
                let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
                let tail = super::super::head::dot_f16_tail(row, x, t, cols, main);
                out[r * n + t] = _mm512_reduce_add_ps(s) + tail;
            }
        }
    }

    /// Q8_0 head rows x int8 activations (256-bit EVEX `vpdpbusd`: a Q8_0 block is 32 bytes).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/VL/VNNI, AVX2, FMA and F16C.
    #[inline(never)]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    pub unsafe fn head_q8_0_avx512vnni(rows: &[u8], a: &HeadActs, out: &mut [f32]) {
        let (n, n_rows, row_bytes) = super::super::head::check_head_q8_0(rows, a, out);
        for r in 0..n_rows {
            let row = rows[r * row_bytes..].as_ptr();
            for t in 0..n {
                // q8_row's guarantee: `check_head_q8_0` checked whole rows and tokens.
                out[r * n + t] = q8_row!(row, a, t, q8_block_avx512vnni);
            }
        }
    }
}

/// Integer sums of each Q8_0 block of one head row against int8 activations, with kernel
/// `name`'s block dot product, for the exactness tests: `isums[k] = sum over block k of w * x`.
///
/// # Safety
/// The CPU must support what kernel `name` requires.
#[cfg(any(test, feature = "kernel-tests"))]
#[target_feature(enable = "avx2")]
pub unsafe fn q8_0_block_sums(name: &str, row: &[u8], xq: &[i8], isums: &mut [i32]) {
    assert_eq!(row.len(), isums.len() * Q8_0_BLOCK_BYTES);
    assert_eq!(xq.len(), isums.len() * 32);
    for (k, s) in isums.iter_mut().enumerate() {
        let (w, x) = (&row[Q8_0_BLOCK_BYTES * k + 2..][..32], &xq[32 * k..][..32]);
        // SAFETY: `w` and `x` hold the 32 bytes loaded.
        let (w, x) = unsafe {
            (
                _mm256_loadu_si256(w.as_ptr().cast()),
                _mm256_loadu_si256(x.as_ptr().cast()),
            )
        };
        let v = match name {
            "avx2" => q8_block_avx2(w, x),
            // SAFETY: the caller guarantees what kernel `name` requires.
            "avxvnni" => unsafe { q8_block_avxvnni(w, x) },
            // SAFETY: the caller guarantees what kernel `name` requires.
            "avx512vnni" => unsafe { q8_block_avx512vnni(w, x) },
            _ => panic!("no x86_64 kernel {name}"),
        };
        *s = hsum_epi32_256(v);
    }
}

/// The 32 signed codes (`nibble - 8`, -8..=7) of the Q4_0 block whose 16 code bytes start
/// at `qs`, in element order: low nibbles are elements 0..16, high nibbles 16..32.
///
/// # Safety
/// The CPU has AVX2; `qs..qs + 16` is readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q4_0_codes(qs: *const u8) -> __m256i {
    // SAFETY: 16 bytes at `qs`, readable by the caller's guarantee.
    let v = unsafe { _mm_loadu_si128(qs.cast()) };
    let m = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(v, m);
    // No 8-bit shift exists: shift 16-bit lanes and mask off what crossed from the byte above.
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
    _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8))
}

/// Generates `kv_dot_q8_0_<k>` and `kv_dot_q4_0_<k>` (the [`super::KvDotFn`] slots) around
/// kernel `k`'s exact block dot product (`q8_block_<k>`, sign trick: |code| <= 128 and
/// |q| <= 127 keep every pair sum of `vpmaddubsw` below 32767).
macro_rules! kv_dot {
    ($q8:ident, $q4:ident, $features:literal, $block:ident) => {
        /// Exact block sums of Q8_0 key rows against an int8 query (`kernels::kv`).
        ///
        /// # Safety
        /// The CPU must support the features this variant is compiled for.
        #[inline(never)]
        #[target_feature(enable = $features)]
        pub unsafe fn $q8(rows: &[u8], q: &[i8], isums: &mut [i32]) {
            let (nb, n) = check_kv_dot(rows, q, isums, Q8_0_BLOCK_BYTES);
            for j in 0..n {
                for b in 0..nb {
                    let blk = (j * nb + b) * Q8_0_BLOCK_BYTES;
                    // SAFETY: `check_kv_dot` asserted rows.len() == n * nb * 34 and
                    // q.len() == nb * 32: the 32 codes after block (j, b)'s 2-byte scale and
                    // elements 32b..32b + 32 of the query are in bounds.
                    let (w, x) = unsafe {
                        (
                            _mm256_loadu_si256(rows.as_ptr().add(blk + 2).cast()),
                            _mm256_loadu_si256(q.as_ptr().add(32 * b).cast()),
                        )
                    };
                    isums[j * nb + b] = hsum_epi32_256($block(w, x));
                }
            }
        }

        /// Exact block sums of Q4_0 key rows against an int8 query (`kernels::kv`).
        ///
        /// # Safety
        /// The CPU must support the features this variant is compiled for.
        #[inline(never)]
        #[target_feature(enable = $features)]
        pub unsafe fn $q4(rows: &[u8], q: &[i8], isums: &mut [i32]) {
            let (nb, n) = check_kv_dot(rows, q, isums, q4_0::BLOCK_BYTES);
            for j in 0..n {
                for b in 0..nb {
                    let blk = (j * nb + b) * q4_0::BLOCK_BYTES;
                    // SAFETY: `check_kv_dot` asserted rows.len() == n * nb * 18 and
                    // q.len() == nb * 32: the 16 code bytes after block (j, b)'s 2-byte scale
                    // and elements 32b..32b + 32 of the query are in bounds.
                    let (w, x) = unsafe {
                        (
                            q4_0_codes(rows.as_ptr().add(blk + 2)),
                            _mm256_loadu_si256(q.as_ptr().add(32 * b).cast()),
                        )
                    };
                    isums[j * nb + b] = hsum_epi32_256($block(w, x));
                }
            }
        }
    };
}

kv_dot!(kv_dot_q8_0_avx2, kv_dot_q4_0_avx2, "avx2", q8_block_avx2);
kv_dot!(
    kv_dot_q8_0_avxvnni,
    kv_dot_q4_0_avxvnni,
    "avx2,avxvnni",
    q8_block_avxvnni
);
kv_dot!(
    kv_dot_q8_0_avx512vnni,
    kv_dot_q4_0_avx512vnni,
    "avx2,avx512f,avx512vl,avx512vnni",
    q8_block_avx512vnni
);

/// The x86_64 kernels, worst to best. Each needs AVX2, FMA and F16C besides its dot product
/// (the heads convert halves with F16C and sum with FMA).
pub static KERNELS: &[KernelDesc] = &[
    KernelDesc {
        name: "avx2",
        requires: &["avx2", "fma", "f16c"],
        layout: CodeLayout::Rows16,
        bit_exact: true,
        prefill_rows: Some(64),
        bitmatmul: avx2::bitmatmul_avx2,
        vec_dot: Some(avx2::vec_dot_ternary_i8_avx2),
        head_f16: Some(avx2::head_f16_avx2),
        head_q8_0: Some(avx2::head_q8_0_avx2),
        kv_dot_q8_0: Some(kv_dot_q8_0_avx2),
        kv_dot_q4_0: Some(kv_dot_q4_0_avx2),
    },
    // Alder Lake and later, Zen 5.
    KernelDesc {
        name: "avxvnni",
        requires: &["avx2", "fma", "f16c", "avxvnni"],
        layout: CodeLayout::Rows16,
        bit_exact: true,
        prefill_rows: Some(64),
        bitmatmul: avxvnni::bitmatmul_avxvnni,
        vec_dot: Some(avxvnni::vec_dot_ternary_i8_avxvnni),
        head_f16: Some(avxvnni::head_f16_avxvnni),
        head_q8_0: Some(avxvnni::head_q8_0_avxvnni),
        kv_dot_q8_0: Some(kv_dot_q8_0_avxvnni),
        kv_dot_q4_0: Some(kv_dot_q4_0_avxvnni),
    },
    // Ice Lake and later, Zen 4/5.
    KernelDesc {
        name: "avx512vnni",
        requires: &[
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni",
        ],
        layout: CodeLayout::Rows16,
        bit_exact: true,
        prefill_rows: Some(64),
        bitmatmul: avx512vnni::bitmatmul_avx512vnni,
        vec_dot: Some(avx512vnni::vec_dot_ternary_i8_avx512vnni),
        head_f16: Some(avx512vnni::head_f16_avx512vnni),
        head_q8_0: Some(avx512vnni::head_q8_0_avx512vnni),
        kv_dot_q8_0: Some(kv_dot_q8_0_avx512vnni),
        kv_dot_q4_0: Some(kv_dot_q4_0_avx512vnni),
    },
];
