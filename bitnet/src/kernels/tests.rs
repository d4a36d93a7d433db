//! Every kernel the CPU can run against the scalar reference: integer accumulators exactly,
//! float outputs within 1e-6 of the magnitude of the terms summed (only the summation order
//! may differ) and bit for bit where the kernel claims it, on random shapes with odd row
//! counts, tails and extreme activations. Each test reports its cases per kernel through a
//! [`Tally`] (`kernel-test: <test> <kernel> ran=N passed=M`).

use alloc::vec;
use alloc::vec::Vec;

use super::head::{self, HeadActs, Q8_0_BLOCK_BYTES};
use super::scalar::{epilogue, vec_dot_ternary_i8_ref};
use super::tally::Tally;
use super::{quantize_acts_ref, ActBatch, Kernel};
use crate::quants::quantize_row_q8_0_ref;
use crate::quants::test_rng::XorShift;
use crate::ternary::TernaryMatrix;

/// Relative tolerance of float outputs, against the sum of the absolute terms.
const REL: f32 = 1e-6;

fn kernels() -> Vec<Kernel> {
    let k: Vec<Kernel> = Kernel::available().collect();
    assert!(k.contains(&Kernel::SCALAR));
    k
}

fn random_matrix(rng: &mut XorShift, rows: usize, cols: usize, group_len: usize) -> TernaryMatrix {
    let trits = rng.trits(rows * cols);
    let scales = (0..rows * cols / group_len)
        .map(|_| 0.01 + rng.f32().abs())
        .collect();
    TernaryMatrix::from_trits(&trits, rows, cols, group_len, scales).unwrap()
}

fn random_acts(rng: &mut XorShift, n: usize, cols: usize) -> ActBatch {
    let x = rng.f32s(n * cols, 4.0);
    let mut a = ActBatch::default();
    quantize_acts_ref(&x, cols, &mut a);
    a
}

/// A random (rows, cols) matrix and `n` tokens of activations that hit -128 and 127
/// often: the input of the per-ISA kernel tests.
#[cfg(any(target_arch = "aarch64", armv7_neon, target_arch = "riscv64"))]
pub(super) fn case(
    rng: &mut XorShift,
    rows: usize,
    cols: usize,
    group_len: usize,
    n: usize,
) -> (TernaryMatrix, ActBatch) {
    let trits = rng.trits(rows * cols);
    let scales = (0..rows * cols / group_len)
        .map(|_| rng.f32().abs() + 0.01)
        .collect();
    let w = TernaryMatrix::from_trits(&trits, rows, cols, group_len, scales).unwrap();
    let mut x = ActBatch::new(n, cols);
    for q in x.q.iter_mut() {
        *q = match rng.next_u64() % 8 {
            0 => -128,
            1 => 127,
            _ => rng.next_u64() as i8,
        };
    }
    for s in x.scale.iter_mut() {
        *s = rng.f32().abs() * 100.0 + 1.0;
    }
    x.update_block_sums();
    (w, x)
}

/// The scalar reference's integer accumulators, (rows, n_tokens, groups).
#[cfg(any(target_arch = "aarch64", armv7_neon, target_arch = "riscv64"))]
pub(super) fn ref_acc(w: &TernaryMatrix, x: &ActBatch) -> Vec<i32> {
    let ng = w.cols / w.group_len;
    let mut acc = vec![0i32; w.rows * x.n_tokens * ng];
    for r in 0..w.rows {
        for t in 0..x.n_tokens {
            let at = (r * x.n_tokens + t) * ng;
            vec_dot_ternary_i8_ref(w, r, x.token(t), &mut acc[at..at + ng]);
        }
    }
    acc
}

/// Reference outputs (rows, n) and the magnitude bound of each.
fn reference(w: &TernaryMatrix, x: &ActBatch) -> (Vec<f32>, Vec<f32>) {
    let n_groups = w.cols / w.group_len;
    let (mut y, mut mag) = (Vec::new(), Vec::new());
    for r in 0..w.rows {
        let scales = &w.scales[r * n_groups..(r + 1) * n_groups];
        for t in 0..x.n_tokens {
            let mut acc = vec![0i32; n_groups];
            vec_dot_ternary_i8_ref(w, r, x.token(t), &mut acc);
            y.push(epilogue(&acc, scales, x.scale[t]));
            let m: f32 = acc
                .iter()
                .zip(scales)
                .map(|(&a, &d)| (a as f32 * d).abs())
                .sum();
            mag.push(m / x.scale[t]);
        }
    }
    (y, mag)
}

fn check_kernel(k: Kernel, w: &TernaryMatrix, x: &ActBatch, what: &str) {
    let n_groups = w.cols / w.group_len;
    let canonical = w.to_layout(crate::ternary::CodeLayout::Canonical);
    let w = &w.to_layout(k.code_layout());
    if let Some(dot) = k.vec_dot_i32() {
        for r in 0..w.rows {
            for t in 0..x.n_tokens {
                let (mut want, mut got) = (vec![0i32; n_groups], vec![0i32; n_groups]);
                vec_dot_ternary_i8_ref(&canonical, r, x.token(t), &mut want);
                dot(w, r, x, t, &mut got);
                assert_eq!(got, want, "{k} {what}: row {r} token {t}");
            }
        }
    }
    let (want, mag) = reference(&canonical, x);
    let n = x.n_tokens;
    // Whole matrix, then a chunk starting at an odd row as the threads call it.
    let mut out = vec![f32::NAN; w.rows * n];
    k.bitmatmul(w, x, 0, &mut out);
    for (i, (&got, (&y, &m))) in out.iter().zip(want.iter().zip(&mag)).enumerate() {
        let (r, t) = (i / n, i % n);
        // Exact group sums, then the reference's float epilogue in the reference's order:
        // bit for bit. Kernels free to sum in another order get the relative tolerance.
        let tol = REL * m + f32::MIN_POSITIVE;
        assert!(
            (got - y).abs() <= tol,
            "{k} {what}: row {r} token {t}: {got} vs {y}"
        );
        if k.bit_exact() {
            assert_eq!(got.to_bits(), y.to_bits(), "{k} {what}: row {r} token {t}");
        }
    }
    // Chunks as the threads call them, starting and ending inside row groups.
    for (row0, end) in [
        (1, w.rows),
        (1, w.rows.saturating_sub(1)),
        (w.rows / 2, w.rows),
    ] {
        if row0 >= end {
            continue;
        }
        let mut part = vec![f32::NAN; (end - row0) * n];
        k.bitmatmul(w, x, row0, &mut part);
        assert_eq!(
            part,
            out[row0 * n..end * n],
            "{k} {what}: rows {row0}..{end}"
        );
    }
}

#[cfg_attr(test, test)]
pub(crate) fn bitmatmul_random_shapes() {
    let mut tally = Tally::all_kernels("bitmatmul_random_shapes");
    let mut rng = XorShift::new(0x5EED);
    let shapes = [
        (1, 128),
        (3, 128),
        (5, 256),
        (7, 384),
        (4, 512),
        (9, 768),
        (2, 2560),
        (3, 6912),
        // Several row groups of the 16-row layouts, an odd and an even count: the x86
        // decode interleaves two halves of the groups and does an odd one alone.
        (45, 256),
        (64, 128),
        // One scale group longer than the x86 decode's fold of its accumulators (512
        // chunks of 16 columns): two whole folds and a short one.
        (33, 16512),
    ];
    for (i, &(rows, cols)) in shapes.iter().enumerate() {
        for group_len in [cols, 256] {
            if cols % group_len != 0 {
                continue;
            }
            let w = random_matrix(&mut rng, rows, cols, group_len);
            for n in 1..=9 {
                if cols >= 2560 && n % 4 != 1 {
                    continue; // keep the large shapes quick: 1, 5, 9 tokens
                }
                let x = random_acts(&mut rng, n, cols);
                for k in kernels() {
                    let what =
                        alloc::format!("shape {i} ({rows}x{cols}, group {group_len}, {n} tokens)");
                    tally.case(k.name(), || check_kernel(k, &w, &x, &what));
                }
            }
        }
    }
}

#[cfg_attr(test, test)]
pub(crate) fn bitmatmul_extremes() {
    // Every code 0 or 2 against activations of -128 and 127: the largest sums a block can
    // produce, where a narrow or saturating accumulator would show.
    let mut tally = Tally::all_kernels("bitmatmul_extremes");
    let (rows, cols) = (6, 6912);
    for trit in [-1i8, 1] {
        for group_len in [cols, 256] {
            let scales = vec![1.0; rows * cols / group_len];
            let w =
                TernaryMatrix::from_trits(&vec![trit; rows * cols], rows, cols, group_len, scales)
                    .unwrap();
            for fill in [-128i8, 127] {
                let mut x = ActBatch::new(3, cols);
                x.q.fill(fill);
                x.q[cols..2 * cols]
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, q)| {
                        *q = if i % 2 == 0 { -128 } else { 127 };
                    });
                x.scale.fill(1.0);
                x.update_block_sums();
                for k in kernels() {
                    let what = alloc::format!("extremes: trit {trit}, group {group_len}, {fill}");
                    tally.case(k.name(), || check_kernel(k, &w, &x, &what));
                }
            }
        }
    }
}

fn f16_rows(rng: &mut XorShift, rows: usize, cols: usize) -> Vec<u8> {
    let w = rng.f32s(rows * cols, 0.5);
    let mut b = vec![0u8; rows * cols * 2];
    crate::quants::quantize_row_f16_ref(&w, &mut b).unwrap();
    b
}

#[cfg_attr(test, test)]
pub(crate) fn head_f16_matches_reference() {
    let mut tally = Tally::all_kernels("head_f16_matches_reference");
    let mut rng = XorShift::new(0x4EAD);
    for &(rows, cols, n) in &[
        (1, 16, 1),
        (5, 40, 2),
        (9, 2560, 1),
        (7, 256, 3),
        (4, 100, 1),
        (6, 128, 1),
        (8, 33, 2),
        (11, 64, 3),
    ] {
        let w = f16_rows(&mut rng, rows, cols);
        let x = rng.f32s(n * cols, 2.0);
        let mut scalar = vec![f32::NAN; rows * n];
        head::head_f16_scalar(&w, cols, &x, &mut scalar);
        // The portable head is the reference's dot bit for bit (kernels without a head of
        // their own, and so `logits_exact`, rely on it), on rows read as u16 and on rows
        // at an odd address, read byte by byte.
        let mut odd = vec![0u8; w.len() + 1];
        odd[1..].copy_from_slice(&w);
        let mut from_odd = vec![f32::NAN; rows * n];
        head::head_f16_scalar(&odd[1..], cols, &x, &mut from_odd);
        assert_eq!(
            bits(&from_odd),
            bits(&scalar),
            "{rows}x{cols} at an odd address"
        );
        for (r, row) in w.chunks_exact(2 * cols).enumerate() {
            for (t, xt) in x.chunks_exact(cols).enumerate() {
                let want = head::vec_dot_f16_f32_ref(row, xt);
                assert_eq!(
                    scalar[r * n + t].to_bits(),
                    want.to_bits(),
                    "{rows}x{cols} r{r} t{t}"
                );
            }
        }
        for k in kernels() {
            tally.case(k.name(), || check_head_f16(k, &w, cols, &x, &scalar));
        }
    }
}

/// The decode (one token) and head loops with software prefetch forced on and then off:
/// each setting is a separate code path of the x86_64 loops, and which one `auto` picks
/// depends on the CPU. The only test that sets the process's choice (the others only read
/// it, and no result depends on it), so each pass runs the path it names.
#[cfg_attr(test, test)]
pub(crate) fn decode_with_and_without_prefetch() {
    use super::prefetch::{self, Prefetch};
    let mut tally = Tally::all_kernels("decode_with_and_without_prefetch");
    let mut rng = XorShift::new(0xF37C);
    for mode in [Prefetch::On, Prefetch::Off] {
        prefetch::set(mode);
        assert_eq!(prefetch::enabled(), mode == Prefetch::On);
        // An odd and an even count of 16-row groups; rows of 2560 run past the 1 KiB the
        // loops prefetch ahead.
        for &(rows, cols, group_len) in &[(45, 2560, 256), (64, 2560, 2560), (33, 128, 128)] {
            let w = random_matrix(&mut rng, rows, cols, group_len);
            let x = random_acts(&mut rng, 1, cols);
            let what = alloc::format!("prefetch {mode:?}, {rows}x{cols}");
            for k in kernels() {
                tally.case(k.name(), || check_kernel(k, &w, &x, &what));
            }
        }
        for &(rows, cols) in &[(9, 2560), (4, 1024), (5, 100)] {
            let w = f16_rows(&mut rng, rows, cols);
            let x = rng.f32s(cols, 2.0);
            let mut scalar = vec![f32::NAN; rows];
            head::head_f16_scalar(&w, cols, &x, &mut scalar);
            for k in kernels() {
                tally.case(k.name(), || check_head_f16(k, &w, cols, &x, &scalar));
            }
        }
    }
    prefetch::set(Prefetch::Auto);
    assert_eq!(prefetch::enabled(), prefetch::auto_enabled());
    assert_eq!(prefetch::auto_enabled(), !crate::cpu::is_amd());
}

/// F16 weights of every class a SIMD head converts by hand: zeros, subnormals, the
/// smallest and largest normals, both signs; and an infinite weight, which must give an
/// infinite output as in the reference.
#[cfg_attr(test, test)]
pub(crate) fn head_f16_special_values() {
    let mut tally = Tally::all_kernels("head_f16_special_values");
    let specials: [u16; 12] = [
        0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x83ff, 0x0400, 0x8400, 0x7bff, 0xfbff, 0x3c00,
        0x3555,
    ];
    let cols = 70; // 5 rounds of the specials and a tail of 10
    let mut w: Vec<u8> = (0..cols)
        .flat_map(|k| specials[k % specials.len()].to_le_bytes())
        .collect();
    // Row 1: the same with element 3 +inf.
    let mut inf_row = w.clone();
    inf_row[6..8].copy_from_slice(&0x7c00u16.to_le_bytes());
    w.extend(inf_row);
    let x: Vec<f32> = (0..cols).map(|k| 0.25 + (k % 7) as f32 * 0.5).collect();
    let want_inf = head::vec_dot_f16_f32_ref(&w[2 * cols..], &x);
    assert_eq!(want_inf, f32::INFINITY);
    let mut scalar = vec![f32::NAN; 2];
    head::head_f16_scalar(&w, cols, &x, &mut scalar);
    for k in kernels() {
        tally.case(k.name(), || {
            check_head_f16(k, &w[..2 * cols], cols, &x, &scalar[..1]);
            let mut out = [f32::NAN; 2];
            k.head_f16(&w, cols, &x, &mut out);
            assert_eq!(out[1], f32::INFINITY, "{k}: +inf weight");
        });
    }
}

/// One F16 head case: within tolerance of the reference dot, and bit for bit the scalar
/// head's output (`scalar`) where the kernel has no head of its own.
fn check_head_f16(k: Kernel, w: &[u8], cols: usize, x: &[f32], scalar: &[f32]) {
    let n = x.len() / cols;
    let rows = w.len() / (2 * cols);
    let mut out = vec![f32::NAN; rows * n];
    k.head_f16(w, cols, x, &mut out);
    if !k.has_simd_head() {
        assert_eq!(bits(&out), bits(scalar), "{k} f16 head {rows}x{cols}");
    }
    for r in 0..rows {
        let row = &w[r * cols * 2..(r + 1) * cols * 2];
        for t in 0..n {
            let xt = &x[t * cols..(t + 1) * cols];
            let want = head::vec_dot_f16_f32_ref(row, xt);
            let mut wf = vec![0.0f32; cols];
            crate::quants::dequantize_row_f16(row, &mut wf).unwrap();
            let mag: f32 = wf.iter().zip(xt).map(|(a, b)| (a * b).abs()).sum();
            let got = out[r * n + t];
            assert!(
                (got - want).abs() <= REL * mag,
                "{k} f16 head {rows}x{cols}: row {r} token {t}: {got} vs {want}"
            );
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|y| y.to_bits()).collect()
}

fn q8_0_rows(rng: &mut XorShift, rows: usize, cols: usize) -> Vec<u8> {
    let w = rng.f32s(rows * cols, 0.5);
    let mut b = vec![0u8; rows * cols / 32 * Q8_0_BLOCK_BYTES];
    quantize_row_q8_0_ref(&w, &mut b).unwrap();
    b
}

/// One Q8_0 head case: within tolerance of the reference dot, and bit for bit the scalar
/// head's output where the kernel has no head of its own or (aarch64) keeps the reference's
/// float order.
fn check_head_q8_0(k: Kernel, w: &[u8], a: &HeadActs) {
    let (n, cols) = (a.n_tokens, a.cols);
    let row_bytes = cols / 32 * Q8_0_BLOCK_BYTES;
    let rows = w.len() / row_bytes;
    let mut out = vec![f32::NAN; rows * n];
    k.head_q8_0(w, a, &mut out);
    if !k.has_simd_head() || cfg!(target_arch = "aarch64") {
        let mut scalar = vec![f32::NAN; rows * n];
        head::head_q8_0_scalar(w, a, &mut scalar);
        assert_eq!(bits(&out), bits(&scalar), "{k} q8_0 head {rows}x{cols}");
    }
    for r in 0..rows {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        for t in 0..n {
            let (q, d) = (
                &a.q[t * cols..(t + 1) * cols],
                &a.d[t * cols / 32..(t + 1) * cols / 32],
            );
            let want = head::vec_dot_q8_0_i8_ref(row, q, d);
            let mut isums = vec![0i32; cols / 32];
            head::q8_0_block_sums_ref(row, q, &mut isums);
            let mag: f32 = isums
                .iter()
                .zip(row.chunks_exact(Q8_0_BLOCK_BYTES))
                .zip(d)
                .map(|((&s, b), &dx)| {
                    (s as f32 * half::f16::from_le_bytes([b[0], b[1]]).to_f32() * dx).abs()
                })
                .sum();
            let got = out[r * n + t];
            assert!(
                (got - want).abs() <= REL * mag + f32::MIN_POSITIVE,
                "{k} q8_0 head {rows}x{cols}: row {r} token {t}: {got} vs {want}"
            );
        }
    }
}

#[cfg_attr(test, test)]
pub(crate) fn head_q8_0_matches_reference() {
    let mut tally = Tally::all_kernels("head_q8_0_matches_reference");
    let mut rng = XorShift::new(0x0808);
    for &(rows, cols, n) in &[(1, 32, 1), (5, 64, 2), (9, 2560, 1), (6, 256, 3)] {
        let w = q8_0_rows(&mut rng, rows, cols);
        let mut a = HeadActs::default();
        a.quantize(&rng.f32s(n * cols, 3.0), cols);
        for k in kernels() {
            tally.case(k.name(), || check_head_q8_0(k, &w, &a));
        }
    }
}

#[cfg_attr(test, test)]
pub(crate) fn head_q8_0_extremes() {
    // Weights of -128 (a file may hold them; |w| = 128 only fits as unsigned) against
    // activations of +-127: the largest pair sums the sign trick produces.
    let mut tally = Tally::all_kernels("head_q8_0_extremes");
    let cols = 256;
    let mut w = vec![0u8; 3 * cols / 32 * Q8_0_BLOCK_BYTES];
    for (i, b) in w.chunks_exact_mut(Q8_0_BLOCK_BYTES).enumerate() {
        b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        for (j, q) in b[2..].iter_mut().enumerate() {
            *q = if (i + j) % 3 == 0 { 0x80 } else { 127 };
        }
    }
    let mut a = HeadActs::default();
    let x: Vec<f32> = (0..2 * cols)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    a.quantize(&x, cols);
    assert!(a.q.iter().all(|&q| q.abs() == 127));
    for k in kernels() {
        tally.case(k.name(), || check_head_q8_0(k, &w, &a));
    }
}

#[cfg(target_arch = "x86_64")]
#[cfg_attr(test, test)]
pub(crate) fn q8_0_block_sums_exact_x86() {
    use super::x86_64::q8_0_block_sums;
    let mut tally = Tally::new("q8_0_block_sums_exact_x86");
    let mut rng = XorShift::new(0x1808);
    let cols = 512;
    let mut w = q8_0_rows(&mut rng, 1, cols);
    w[2] = 0x80; // a -128 weight
    let mut a = HeadActs::default();
    a.quantize(&rng.f32s(cols, 1.0), cols);
    let mut want = vec![0i32; cols / 32];
    head::q8_0_block_sums_ref(&w, &a.q, &mut want);
    for d in super::x86_64::KERNELS {
        let Some(k) = Kernel::new(d) else {
            let why = alloc::format!("needs {}, not all on this CPU", d.requires_text());
            tally.absent(d.name, &why);
            continue;
        };
        tally.case(k.name(), || {
            let mut got = vec![0i32; cols / 32];
            // SAFETY: `k` exists, so the CPU has what kernel `d` requires.
            unsafe { q8_0_block_sums(k.name(), &w, &a.q, &mut got) };
            assert_eq!(got, want, "{k}");
        });
    }
}

/// Random KV rows of `n` x `nb` blocks of `ty` (Q8_0 or Q4_0 bytes with random codes and
/// scales), `extreme` ones with every code at the type's end of range.
fn kv_rows(
    rng: &mut XorShift,
    ty: crate::quants::GgmlType,
    n: usize,
    nb: usize,
    extreme: bool,
) -> Vec<u8> {
    let bb = ty.block_bytes() as usize;
    let mut rows = vec![0u8; n * nb * bb];
    for (i, b) in rows.chunks_exact_mut(bb).enumerate() {
        b[..2].copy_from_slice(&half::f16::from_f32(rng.f32() * 0.1).to_le_bytes());
        for c in b[2..].iter_mut() {
            *c = match (ty, extreme) {
                // -128 (a quantizer never writes it, a kernel must still sum it) and 127.
                (crate::quants::GgmlType::Q8_0, true) => [0x80, 0x7f][i % 2],
                // Nibbles 0 and 15: codes -8 and 7.
                (_, true) => [0x00, 0xff, 0x0f, 0xf0][i % 4],
                _ => rng.next_u64() as u8,
            };
        }
    }
    rows
}

/// A query of `nb` blocks in -127..=127 (what the query quantizer produces), `extreme` all
/// at +-127.
fn kv_query(rng: &mut XorShift, nb: usize, extreme: bool) -> Vec<i8> {
    (0..nb * 32)
        .map(|i| {
            if extreme {
                [127, -127][(i / 32) % 2] // whole blocks of one sign
            } else {
                // -127..=127, uniformly.
                ((rng.next_u64() % 255) as i32 - 127) as i8
            }
        })
        .collect()
}

/// Every kernel's KV block sums of `ty` equal the scalar reference's exactly, on random
/// row counts (odd ones, one row, long runs) and head sizes of 1 to 5 blocks, then on the
/// extreme codes.
fn kv_dot_matches_reference(test: &str, ty: crate::quants::GgmlType, seed: u64) {
    use super::kv::{kv_dot_q4_0_ref, kv_dot_q8_0_ref};
    let mut tally = Tally::all_kernels(test);
    let mut rng = XorShift::new(seed);
    let q8 = ty == crate::quants::GgmlType::Q8_0;
    let mut cases: Vec<(usize, usize, bool)> = (0..24)
        .map(|_| {
            (
                1 + rng.next_u64() as usize % 37,
                1 + rng.next_u64() as usize % 5,
                false,
            )
        })
        .collect();
    cases.extend([(1, 1, true), (7, 4, true), (64, 3, false), (300, 4, false)]);
    for (n, nb, extreme) in cases {
        let rows = kv_rows(&mut rng, ty, n, nb, extreme);
        let q = kv_query(&mut rng, nb, extreme);
        let mut want = vec![i32::MIN; n * nb];
        if q8 {
            kv_dot_q8_0_ref(&rows, &q, &mut want);
        } else {
            kv_dot_q4_0_ref(&rows, &q, &mut want);
        }
        if extreme {
            // The extremes reach the largest block sums the types allow.
            let m = want.iter().map(|s| s.abs()).max().unwrap();
            assert!(m >= if q8 { 127 * 127 * 32 } else { 8 * 127 * 32 }, "{m}");
        }
        for k in kernels() {
            tally.case(k.name(), || {
                let mut got = vec![i32::MAX; n * nb];
                if q8 {
                    k.kv_dot_q8_0(&rows, &q, &mut got);
                } else {
                    k.kv_dot_q4_0(&rows, &q, &mut got);
                }
                assert_eq!(
                    got, want,
                    "{k} {ty}: {n} rows of {nb} blocks, extreme {extreme}"
                );
            });
        }
    }
}

#[cfg_attr(test, test)]
pub(crate) fn kv_dot_q8_0_matches_reference() {
    kv_dot_matches_reference(
        "kv_dot_q8_0_matches_reference",
        crate::quants::GgmlType::Q8_0,
        0x4B58,
    );
}

#[cfg_attr(test, test)]
pub(crate) fn kv_dot_q4_0_matches_reference() {
    kv_dot_matches_reference(
        "kv_dot_q4_0_matches_reference",
        crate::quants::GgmlType::Q4_0,
        0x4B54,
    );
}

#[cfg_attr(test, test)]
pub(crate) fn kv_dot_references_equal_dequantized_codes() {
    // The references against an independent computation: each block dequantized with its
    // scale set to 1 gives its codes as floats, whose dot with the query is exact in f32
    // (|sum| <= 32 * 128 * 127 < 2^24).
    use crate::quants::GgmlType;
    let mut rng = XorShift::new(0x4B44);
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
        let (n, nb) = (9, 3);
        let mut rows = kv_rows(&mut rng, ty, n, nb, false);
        let bb = ty.block_bytes() as usize;
        for b in rows.chunks_exact_mut(bb) {
            b[..2].copy_from_slice(&half::f16::ONE.to_le_bytes());
        }
        let q = kv_query(&mut rng, nb, false);
        let mut got = vec![0i32; n * nb];
        if ty == GgmlType::Q8_0 {
            super::kv::kv_dot_q8_0_ref(&rows, &q, &mut got);
        } else {
            super::kv::kv_dot_q4_0_ref(&rows, &q, &mut got);
        }
        for (i, b) in rows.chunks_exact(bb).enumerate() {
            let mut codes = [0.0f32; 32];
            crate::quants::dequantize_row(ty, b, &mut codes).unwrap();
            let qb = &q[(i % nb) * 32..(i % nb + 1) * 32];
            let want: f32 = codes.iter().zip(qb).map(|(&c, &x)| c * f32::from(x)).sum();
            assert_eq!(got[i] as f32, want, "{ty} block {i}");
        }
    }
}

/// The bare-metal runner's list (`exactness.rs`, compiled only with `kernel-tests`) names
/// every kernel test of every architecture: a test added here but not there would silently
/// never run without libtest.
#[test]
fn every_kernel_test_is_listed() {
    let list = include_str!("exactness.rs");
    let sources = [
        ("act", include_str!("act.rs")),
        ("aarch64", include_str!("aarch64.rs")),
        ("armv7", include_str!("armv7.rs")),
        ("riscv64", include_str!("riscv64.rs")),
        ("tests", include_str!("tests.rs")),
    ];
    // Built here so that this test's own text does not match.
    let marker = ["#[cfg_attr(test,", " test)]"].concat();
    let mut n = 0;
    for (module, text) in sources {
        let mut rest = text;
        while let Some(at) = rest.find(&marker) {
            rest = &rest[at..];
            let f = rest.find("fn ").expect("a test function follows");
            let name: String = rest[f + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let path = if module == "tests" {
                alloc::format!("    tests::{name},")
            } else {
                alloc::format!("    {module}::tests::{name},")
            };
            assert!(list.contains(&path), "{path} is missing from exactness.rs");
            n += 1;
            rest = &rest[f..];
        }
    }
    assert!(n >= 30, "found only {n} kernel tests");
}
