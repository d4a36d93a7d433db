//! Synthetic BitNet models from a seeded PRNG: the committed fixtures, and (later) the
//! full-size benchmark model. Same spec, same bytes, on every machine.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use half::f16;

use crate::gguf::{Array, GgufWriter, Value};
use crate::model::Arch;
use crate::quants::{self, GgmlType};
use crate::rng::Rng;
use crate::tokenizer::byte_to_char;

#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub name: String,
    pub arch: Arch,
    /// I2_S, TQ1_0 or TQ2_0.
    pub weight_type: GgmlType,
    /// Type of the tied embedding / head: F16 or Q8_0.
    pub embd_type: GgmlType,
    pub n_layer: usize,
    pub dim: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub ctx_len: usize,
    /// Write `blk.N.<w>.scale` tensors (upstream llama.cpp conversions may carry them).
    pub scale_tensors: bool,
    pub seed: u64,
}

/// Byte-level vocabulary: 256 byte tokens, then these control tokens (Llama 3 names).
pub const SPECIAL_TOKENS: [&str; 3] = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"];
pub const FIXTURE_VOCAB: usize = 256 + SPECIAL_TOKENS.len();
pub const BOS: u32 = 256;

/// The prompt whose logits the fixtures' golden files hold.
pub const FIXTURE_PROMPT: &str = "Hello, BitNet!";

/// One fixture per (architecture x ternary type): 4 layers, hidden 256, ffn 768.
pub fn fixture_specs() -> Vec<SynthSpec> {
    let mut out = Vec::new();
    for (arch, tag, n_kv_head) in [(Arch::BitnetB158, "b158", 2), (Arch::Bitnet, "bitnet", 4)] {
        for (i, ty) in [GgmlType::I2_S, GgmlType::TQ2_0, GgmlType::TQ1_0]
            .into_iter()
            .enumerate()
        {
            out.push(SynthSpec {
                name: format!("tiny-{tag}-{}", ty.name().to_ascii_lowercase()),
                arch,
                weight_type: ty,
                embd_type: GgmlType::F16,
                n_layer: 4,
                dim: 256,
                n_ff: 768,
                n_head: 4,
                n_kv_head,
                ctx_len: 256,
                // Exercise the optional per-tensor output scales on one upstream-style file.
                scale_tensors: arch == Arch::Bitnet && ty == GgmlType::TQ1_0,
                seed: 0xB17_0000 + 16 * arch as u64 + i as u64,
            });
        }
    }
    out
}

fn arch_name(arch: Arch) -> &'static str {
    match arch {
        Arch::BitnetB158 => "bitnet-b1.58",
        Arch::Bitnet => "bitnet",
    }
}

/// Serialises the model described by `spec` as a GGUF file.
pub fn build(spec: &SynthSpec) -> Result<Vec<u8>, String> {
    let mut rng = Rng::new(spec.seed);
    let arch = arch_name(spec.arch);
    let head_dim = spec.dim / spec.n_head;
    let (q_dim, kv_dim) = (spec.n_head * head_dim, spec.n_kv_head * head_dim);
    let mut w = GgufWriter::new();
    let mut meta = |k: &str, v: Value| w.add_metadata(k, v).map_err(|e| e.to_string());
    meta("general.architecture", Value::String(arch.into()))?;
    meta("general.name", Value::String(spec.name.clone()))?;
    let key = |k: &str| format!("{arch}.{k}");
    let u32v = |v: usize| Value::U32(v as u32);
    meta(&key("vocab_size"), u32v(FIXTURE_VOCAB))?;
    meta(&key("context_length"), u32v(spec.ctx_len))?;
    meta(&key("embedding_length"), u32v(spec.dim))?;
    meta(&key("feed_forward_length"), u32v(spec.n_ff))?;
    meta(&key("block_count"), u32v(spec.n_layer))?;
    meta(&key("attention.head_count"), u32v(spec.n_head))?;
    meta(&key("attention.head_count_kv"), u32v(spec.n_kv_head))?;
    meta(&key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))?;
    let theta = match spec.arch {
        Arch::BitnetB158 => 500_000.0,
        Arch::Bitnet => 10_000.0,
    };
    meta(&key("rope.freq_base"), Value::F32(theta))?;
    meta(&key("rope.dimension_count"), u32v(head_dim))?;
    for (k, v) in tokenizer_metadata() {
        meta(k, v)?;
    }

    // Embedding values ~ N(0, 0.25^2): logits of a unit-RMS state come out of order 1-10.
    let embd: Vec<f32> = (0..FIXTURE_VOCAB * spec.dim)
        .map(|_| 0.25 * rng.normal())
        .collect();
    let embd = encode_dense(spec.embd_type, &embd)?;
    add_tensor(
        &mut w,
        "token_embd.weight",
        &[spec.dim, FIXTURE_VOCAB],
        spec.embd_type,
        embd,
    )?;
    for l in 0..spec.n_layer {
        let norm = |w: &mut GgufWriter, rng: &mut Rng, name: &str, n: usize| {
            let bytes = (0..n)
                .flat_map(|_| (1.0 + 0.1 * rng.normal()).to_le_bytes())
                .collect();
            add_tensor(
                w,
                &format!("blk.{l}.{name}.weight"),
                &[n],
                GgmlType::F32,
                bytes,
            )
        };
        let linear = |w: &mut GgufWriter, rng: &mut Rng, name: &str, rows: usize, cols: usize| {
            let ty = spec.weight_type;
            let bytes = ternary_tensor(rng, ty, rows, cols)?;
            add_tensor(
                w,
                &format!("blk.{l}.{name}.weight"),
                &[cols, rows],
                ty,
                bytes,
            )?;
            if spec.scale_tensors {
                let s = (0.8 + 0.4 * rng.f32()).to_le_bytes().to_vec();
                add_tensor(w, &format!("blk.{l}.{name}.scale"), &[1], GgmlType::F32, s)?;
            }
            Ok::<(), String>(())
        };
        let (w, rng) = (&mut w, &mut rng);
        norm(w, rng, "attn_norm", spec.dim)?;
        linear(w, rng, "attn_q", q_dim, spec.dim)?;
        linear(w, rng, "attn_k", kv_dim, spec.dim)?;
        linear(w, rng, "attn_v", kv_dim, spec.dim)?;
        norm(w, rng, "attn_sub_norm", q_dim)?;
        linear(w, rng, "attn_output", spec.dim, q_dim)?;
        norm(w, rng, "ffn_norm", spec.dim)?;
        linear(w, rng, "ffn_gate", spec.n_ff, spec.dim)?;
        linear(w, rng, "ffn_up", spec.n_ff, spec.dim)?;
        norm(w, rng, "ffn_sub_norm", spec.n_ff)?;
        linear(w, rng, "ffn_down", spec.dim, spec.n_ff)?;
    }
    let out_norm: Vec<u8> = (0..spec.dim)
        .flat_map(|_| (1.0 + 0.1 * rng.normal()).to_le_bytes())
        .collect();
    add_tensor(
        &mut w,
        "output_norm.weight",
        &[spec.dim],
        GgmlType::F32,
        out_norm,
    )?;
    w.finish().map_err(|e| e.to_string())
}

/// The byte-level GPT-2 style vocabulary (no merges) of the fixtures.
fn add_tensor(
    w: &mut GgufWriter,
    name: &str,
    dims: &[usize],
    ty: GgmlType,
    bytes: Vec<u8>,
) -> Result<(), String> {
    let dims: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    w.add_tensor(name, &dims, ty, bytes)
        .map_err(|e| e.to_string())
}

fn tokenizer_metadata() -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
    tokens.extend(SPECIAL_TOKENS.iter().map(|s| s.to_string()));
    let mut types = vec![1i32; 256];
    types.extend([3; SPECIAL_TOKENS.len()]);
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("default".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.bos_token_id", Value::U32(BOS)),
        ("tokenizer.ggml.eos_token_id", Value::U32(BOS + 1)),
        ("tokenizer.ggml.eot_token_id", Value::U32(BOS + 2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ]
}

fn encode_dense(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; ty.tensor_bytes(x.len() as u64).ok_or("bad size")? as usize];
    match ty {
        GgmlType::F16 => quants::quantize_row_f16_ref(x, &mut out),
        GgmlType::Q8_0 => quants::quantize_row_q8_0_ref(x, &mut out),
        GgmlType::F32 => quants::quantize_row_f32_ref(x, &mut out),
        other => return Err(format!("synthetic embeddings cannot be {other}")),
    }
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Random trits (each of -1, 0, +1 equally likely) with scales ~0.05-0.1, so a unit-RMS
/// input gives outputs of order 1.
fn ternary_tensor(
    rng: &mut Rng,
    ty: GgmlType,
    rows: usize,
    cols: usize,
) -> Result<Vec<u8>, String> {
    let n = rows * cols;
    let trits: Vec<i8> = (0..n).map(|_| rng.below(3) as i8 - 1).collect();
    let mut out = vec![0u8; ty.tensor_bytes(n as u64).ok_or("bad size")? as usize];
    let scale = |rng: &mut Rng| f16::from_f32(0.05 + 0.05 * rng.f32()).to_f32();
    match ty {
        GgmlType::I2_S => quants::pack_i2_s(&trits, scale(rng), &mut out),
        GgmlType::TQ2_0 | GgmlType::TQ1_0 => {
            let d: Vec<f32> = (0..n / 256).map(|_| scale(rng)).collect();
            if ty == GgmlType::TQ2_0 {
                quants::pack_row_tq2_0(&trits, &d, &mut out)
            } else {
                quants::pack_row_tq1_0(&trits, &d, &mut out)
            }
        }
        other => return Err(format!("{other} is not a ternary type")),
    }
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The prompt of the golden logits, as token ids: BOS, then one token per byte.
pub fn fixture_prompt_tokens() -> Vec<u32> {
    core::iter::once(BOS)
        .chain(FIXTURE_PROMPT.bytes().map(u32::from))
        .collect()
}

/// Logits (n_prompt, vocab) of the scalar reference path for the fixture prompt: what the
/// golden files hold.
pub fn golden_logits(file: Vec<u8>) -> Result<Vec<f32>, String> {
    use crate::kernels::Kernel;
    use crate::model::{KvType, Model, State};
    let g = crate::gguf::Gguf::parse(&file).map_err(|e| e.to_string())?;
    let source: crate::model::Source = alloc::sync::Arc::new(file);
    let model = Model::load(&g, source, Kernel::Scalar).map_err(|e| e.to_string())?;
    let tokens = fixture_prompt_tokens();
    let mut state =
        State::new(&model.config, tokens.len(), KvType::F32).map_err(|e| e.to_string())?;
    let logits = model
        .forward(&crate::parallel::Serial, &mut state, &tokens, true)
        .map_err(|e| e.to_string())?;
    Ok(logits.to_vec())
}
