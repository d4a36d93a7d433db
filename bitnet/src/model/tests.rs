//! Whole-model checks on the fixture specs: the integer path against an f64
//! "dequantize then matmul" path, batching against token-by-token, determinism.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::linear::Matmul;
use super::{KvType, Model, State};
use crate::gguf::Gguf;
use crate::kernels::{ActBatch, Kernel};
use crate::parallel::Serial;
use crate::synth;
use crate::ternary::TernaryMatrix;

/// `W x` with W dequantized to `trit * scale` and the int8 activations divided back by
/// their scale, all in f64: no integer accumulator anywhere.
struct DequantF64;

impl Matmul for DequantF64 {
    fn bitmatmul(&self, w: &TernaryMatrix, x: &ActBatch, row0: usize, out: &mut [f32]) {
        let mut row = vec![0.0f32; w.cols]; // (cols,) one dequantized weight row
        for (i, out_row) in out.chunks_exact_mut(x.n_tokens).enumerate() {
            w.dequantize_row(row0 + i, &mut row).unwrap();
            for (t, y) in out_row.iter_mut().enumerate() {
                let dot: f64 = row
                    .iter()
                    .zip(x.token(t))
                    .map(|(&w, &q)| w as f64 * q as f64)
                    .sum();
                *y = (dot / x.scale[t] as f64) as f32;
            }
        }
    }
}

fn load(spec: &synth::SynthSpec) -> Model {
    let bytes = synth::build(spec).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    Model::load(&g, Arc::new(bytes), Kernel::SCALAR).unwrap()
}

fn run(model: &Model, mm: &dyn Matmul, tokens: &[u32], kv: KvType) -> Vec<f32> {
    let mut state = State::new(&model.config, 64, kv).unwrap();
    model
        .forward_with(mm, &Serial, &mut state, tokens, true)
        .unwrap()
        .to_vec()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn integer_path_matches_f64_dequantized_path() {
    let tokens = synth::fixture_prompt_tokens();
    for spec in synth::fixture_specs() {
        let model = load(&spec);
        let int = run(&model, &Kernel::SCALAR, &tokens, KvType::F32);
        let f64 = run(&model, &DequantF64, &tokens, KvType::F32);
        let d = max_abs_diff(&int, &f64);
        assert!(d <= 1e-3, "{}: max |int - f64| = {d}", spec.name);
    }
}

#[test]
fn prefill_batch_equals_token_by_token() {
    // A decode token takes its own path through attention (one section that projects,
    // rotates, writes the cache and attends, split by heads between threads); a prompt the
    // batched one. Same operations in the same order per token: bit-identical, not merely
    // close, for every cache type and thread count. Spec 0 has 2 kv heads for 4 query
    // heads, spec 3 one per query head: 3 threads split them mid kv head.
    let tokens = synth::fixture_prompt_tokens();
    let specs = synth::fixture_specs();
    #[cfg(feature = "std")]
    let pools: Vec<crate::parallel::Pool> = (2..=3)
        .map(|t| crate::parallel::Pool::new(t).unwrap())
        .collect();
    let mut execs: Vec<&dyn crate::parallel::Exec> = vec![&Serial];
    #[cfg(feature = "std")]
    execs.extend(pools.iter().map(|p| p as &dyn crate::parallel::Exec));
    for spec in [&specs[0], &specs[3]] {
        let model = load(spec);
        for kv in KvType::ALL {
            let batched = run(&model, &Kernel::SCALAR, &tokens, kv);
            for &exec in &execs {
                let mut state = State::new(&model.config, 64, kv).unwrap();
                let mut stepwise = Vec::new();
                for &t in &tokens {
                    let l = model.forward(exec, &mut state, &[t], false).unwrap();
                    stepwise.extend_from_slice(l);
                }
                let same = batched
                    .iter()
                    .zip(&stepwise)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same && batched.len() == stepwise.len(),
                    "{}, {kv} cache, {} threads",
                    spec.name,
                    exec.threads()
                );
            }
        }
    }
}

#[test]
fn forward_is_deterministic_and_position_dependent() {
    let spec = &synth::fixture_specs()[3];
    let model = load(spec);
    let a = run(&model, &Kernel::SCALAR, &[256, 65, 65, 65], KvType::F16);
    let b = run(&model, &Kernel::SCALAR, &[256, 65, 65, 65], KvType::F16);
    assert_eq!(a, b);
    // The same token at different positions must see different contexts.
    let v = model.config.vocab;
    assert_ne!(a[v..2 * v], a[2 * v..3 * v]);
}

#[test]
fn bad_tokens_and_full_context_are_errors() {
    let model = load(&synth::fixture_specs()[0]);
    let mut state = State::new(&model.config, 4, KvType::F16).unwrap();
    let e = model
        .forward(&Serial, &mut state, &[100_000], false)
        .err()
        .unwrap();
    assert!(alloc::format!("{e}").contains("100000"), "{e}");
    let e = model
        .forward(&Serial, &mut state, &[1, 2, 3, 4, 5], false)
        .err()
        .unwrap();
    assert!(
        matches!(e, super::ModelError::ContextFull { pos: 4, ctx: 4, .. }),
        "{e}"
    );
    assert!(alloc::format!("{e}").contains("context full"), "{e}");
    let e = State::new(&model.config, usize::MAX / 2, KvType::F32)
        .err()
        .unwrap();
    assert!(
        matches!(e, super::ModelError::KvCacheTooLarge { seqs: 1, .. }),
        "{e}"
    );
    assert!(!alloc::format!("{e}").contains("--"), "{e}");
}

#[test]
fn llama_blocks_have_no_sub_norms_and_rotate_norm_pairs() {
    let spec = synth::fixture_specs()
        .into_iter()
        .find(|s| s.arch == super::Arch::Llama)
        .expect("a llama fixture spec");
    let model = load(&spec);
    assert_eq!(model.config.rope_type, super::RopeType::Norm);
    assert_eq!(model.config.act, super::Activation::Silu);
    assert!(model.output.is_some(), "the llama fixture's head is untied");
    for b in &model.blocks {
        assert!(b.attn_sub_norm.is_none() && b.ffn_sub_norm.is_none());
    }
    let bitnet = load(&synth::fixture_specs()[0]);
    assert_eq!(bitnet.config.rope_type, super::RopeType::Neox);
    assert!(bitnet.blocks[0].attn_sub_norm.is_some());
}

#[test]
fn llama_with_type_36_is_an_error_naming_tensor_id_and_arch() {
    let mut spec = synth::fixture_specs()
        .into_iter()
        .find(|s| s.arch == super::Arch::Llama)
        .unwrap();
    spec.weight_type = crate::quants::GgmlType::I2_S;
    // The writer refuses it as the reader does (tests/gguf_malformed.rs parses such a file).
    let e = synth::build(&spec).expect_err("type 36 under llama");
    for part in ["blk.0.attn_q.weight", "36", "'llama'"] {
        assert!(e.contains(part), "{part} missing from: {e}");
    }
}

/// Runs each task of a section on a thread of its own, the first task late: a task that
/// read what an earlier task writes without waiting for it would read it too soon.
#[cfg(feature = "std")]
struct FirstTaskLate(usize);

// SAFETY: each task runs once, on a scoped thread joined before `run` returns.
#[cfg(feature = "std")]
unsafe impl crate::parallel::Exec for FirstTaskLate {
    fn threads(&self) -> usize {
        self.0
    }

    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        std::thread::scope(|s| {
            for i in 0..n {
                s.spawn(move || {
                    if i == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    f(i)
                });
            }
        });
    }
}

#[cfg(feature = "std")]
#[test]
fn decode_tasks_wait_for_the_kv_heads_an_earlier_task_writes() {
    // Spec 0, 3 threads: the second task's query heads read a kv head the first writes.
    let spec = &synth::fixture_specs()[0];
    let model = load(spec);
    let tokens = synth::fixture_prompt_tokens();
    let want = run(&model, &Kernel::SCALAR, &tokens, KvType::F16);
    let mut state = State::new(&model.config, 64, KvType::F16).unwrap();
    let mut got = Vec::new();
    for &t in &tokens {
        let l = model
            .forward(&FirstTaskLate(3), &mut state, &[t], false)
            .unwrap();
        got.extend_from_slice(l);
    }
    assert_eq!(want, got);
}
