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
    let tokens = synth::fixture_prompt_tokens();
    let spec = &synth::fixture_specs()[0];
    let model = load(spec);
    let batched = run(&model, &Kernel::SCALAR, &tokens, KvType::F16);
    let mut state = State::new(&model.config, 64, KvType::F16).unwrap();
    let mut stepwise = Vec::new();
    for &t in &tokens {
        let l = model.forward(&Serial, &mut state, &[t], false).unwrap();
        stepwise.extend_from_slice(l);
    }
    // Same operations in the same order per token: bit-identical, not merely close.
    assert_eq!(batched, stepwise);
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
