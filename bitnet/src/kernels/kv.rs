//! Attention scores against a quantized KV cache: cached key rows of Q8_0 or Q4_0 blocks
//! times a query quantized to int8 per 32-element block (as llama.cpp's flash attention
//! does for these cache types: the query goes to the key type's `vec_dot_type`, Q8_0).
//! The kernels compute only the exact integer sum of every block; the float part
//! ([`kv_scores_epilogue`]) is shared, so attention is bit-identical on every kernel.
//! The `_ref` functions are the specification the SIMD kernels must equal.

use crate::quants::{q4_0, q8_0};

/// Checks the operands of a KV dot kernel; returns (blocks per row, rows). `rows` holds
/// whole rows of `q.len() / 32` blocks of `block_bytes` each, `isums` one sum per block.
pub(crate) fn check_kv_dot(
    rows: &[u8],
    q: &[i8],
    isums: &[i32],
    block_bytes: usize,
) -> (usize, usize) {
    let nb = q.len() / 32;
    assert!(
        nb > 0 && q.len().is_multiple_of(32),
        "KV dot: query of {} elements",
        q.len()
    );
    assert!(isums.len().is_multiple_of(nb), "KV dot: block sums");
    let n = isums.len() / nb;
    assert_eq!(rows.len(), n * nb * block_bytes, "KV dot: rows");
    (nb, n)
}

/// `isums[j * nb + b] = sum over block b of key row j times q`, exactly, for Q8_0 rows.
pub fn kv_dot_q8_0_ref(rows: &[u8], q: &[i8], isums: &mut [i32]) {
    let (nb, _) = check_kv_dot(rows, q, isums, q8_0::BLOCK_BYTES);
    for (row, s) in rows
        .chunks_exact(nb * q8_0::BLOCK_BYTES)
        .zip(isums.chunks_exact_mut(nb))
    {
        super::head::q8_0_block_sums_ref(row, q, s);
    }
}

/// The same for Q4_0 rows: codes `nibble - 8` (-8..=7) times q.
pub fn kv_dot_q4_0_ref(rows: &[u8], q: &[i8], isums: &mut [i32]) {
    let (nb, _) = check_kv_dot(rows, q, isums, q4_0::BLOCK_BYTES);
    for (row, s) in rows
        .chunks_exact(nb * q4_0::BLOCK_BYTES)
        .zip(isums.chunks_exact_mut(nb))
    {
        for ((b, xb), s) in row
            .chunks_exact(q4_0::BLOCK_BYTES)
            .zip(q.chunks_exact(32))
            .zip(s)
        {
            let codes = q4_0::block_codes(b);
            *s = codes
                .iter()
                .zip(xb)
                .map(|(&c, &x)| i32::from(c) * i32::from(x))
                .sum();
        }
    }
}

/// Scores from block sums: `out[j] = scale * sum_b isums[j, b] * (d_k[j, b] * d_q[b])`,
/// blocks in order, the key scale the f16 at the start of each block of `block_bytes`.
pub fn kv_scores_epilogue(
    rows: &[u8],
    block_bytes: usize,
    isums: &[i32],
    dq: &[f32],
    scale: f32,
    out: &mut [f32],
) {
    let nb = dq.len();
    for ((row, s), y) in rows
        .chunks_exact(nb * block_bytes)
        .zip(isums.chunks_exact(nb))
        .zip(out)
    {
        let mut acc = 0.0f32;
        for ((b, &s), &dx) in row.chunks_exact(block_bytes).zip(s).zip(dq) {
            let dk = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            acc += s as f32 * (dk * dx);
        }
        *y = acc * scale;
    }
}
