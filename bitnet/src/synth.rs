//! Synthetic BitNet models from a seeded PRNG: the committed fixtures, and (later) the
//! full-size benchmark model. Same spec, same bytes, on every machine.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use half::f16;

use crate::gguf::{Array, GgufWriter, Value};
use crate::model::tensors::{self, BlockDims, TensorSpec};
use crate::model::Arch;
use crate::quants::{self, tq1_0, tq2_0, GgmlType};
use crate::rng::Rng;
use crate::tokenizer::byte_to_char;

#[derive(Clone, Debug)]
pub struct SynthSpec {
    pub name: String,
    pub arch: Arch,
    /// I2_S, TQ1_0 or TQ2_0.
    pub weight_type: GgmlType,
    /// Type of the embedding and head: F16 or Q8_0.
    pub embd_type: GgmlType,
    /// Write a separate `output.weight` head (else the head is tied to the embedding).
    pub untied_head: bool,
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

/// The fixtures' vocabulary is a real byte-level BPE (Llama 3's layout and pre-tokenizer,
/// `llama-bpe`): 256 byte tokens, [`FIXTURE_MERGES`] merges learned from `TRAIN_TEXT`,
/// then these control tokens (Llama 3 names).
pub const SPECIAL_TOKENS: [&str; 3] = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"];
pub const FIXTURE_MERGES: usize = 120;
pub const FIXTURE_VOCAB: usize = 256 + FIXTURE_MERGES + SPECIAL_TOKENS.len();
pub const BOS: u32 = (256 + FIXTURE_MERGES) as u32;

/// What the fixture vocabulary's merges are learned from.
const TRAIN_TEXT: &str = "Hello, BitNet! Hello world. BitNet b1.58 is a large language model \
whose weights are ternary: every weight is -1, 0 or +1. Ternary weights need about 1.58 bits \
each, so the model is small and the matrix products need no multiplications. Hello again, \
BitNet! The model reads the prompt, then it writes the answer one token at a time. \
The tokenizer splits the text into tokens, and the tokens into ids.\n\n\
fn main() {\n    let x = 42;\n    println!(\"Hello, {x}!\");\n}\n\
User: What is the capital of France? Assistant: The capital of France is Paris.\n\
User: Hello! Assistant: Hello! How can I help you today?\n\
System: You are a helpful assistant. Answer in one sentence.\n\
The quick brown fox jumps over the lazy dog; the dog sleeps in the sun. \
In 2025, models with 2 billion parameters ran on phones, laptops and small boards. ";

/// A prompt in the fixtures' own vocabulary, for tests that run them. (The golden logits use
/// raw token ids instead: tools/reference/golden.py.)
pub const FIXTURE_PROMPT: &str = "Hello, BitNet!";

/// One fixture per (BitNet architecture x ternary type): 4 layers, hidden 256, ffn 768; and
/// one `llama` (ternary Llama: no sub-norms, NORM RoPE) with GQA and an untied head.
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
                untied_head: false,
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
    // TQ2_0 only: llama.cpp's llama architecture has no I2_S (type 36 is something else
    // there), and the TQ1_0 decoding is covered by the BitNet fixtures.
    out.push(SynthSpec {
        name: "tiny-llama-tq2_0".into(),
        arch: Arch::Llama,
        weight_type: GgmlType::TQ2_0,
        embd_type: GgmlType::F16,
        untied_head: true,
        n_layer: 4,
        dim: 256,
        n_ff: 768,
        n_head: 4,
        n_kv_head: 2,
        ctx_len: 256,
        scale_tensors: false,
        seed: 0xB17_0000 + 16 * Arch::Llama as u64,
    });
    out
}

/// Serialises the model described by `spec` as a GGUF file.
pub fn build(spec: &SynthSpec) -> Result<Vec<u8>, String> {
    build_with_vocab(spec, FIXTURE_VOCAB)
}

/// The BitNet b1.58 2B4T shape (30 layers, hidden 2560, ffn 6912, 20/5 heads of 128,
/// vocab 128256) with random weights: the benchmark model, ~1.2 GB with an F16 head.
///
/// `arch` is `bitnet-b1.58` (what bitnet.cpp writes for 2B4T) or `bitnet` (what upstream
/// llama.cpp converts 2B4T to, and the only BitNet architecture it loads: the file
/// `cargo xtask compare` gives both engines). Same shape and tensors either way; the
/// `bitnet` file's name says its architecture.
pub fn bench_spec(arch: Arch, weight_type: GgmlType, embd_type: GgmlType) -> SynthSpec {
    let tag = match arch {
        Arch::BitnetB158 => String::new(),
        other => format!("{}-", other.name()),
    };
    SynthSpec {
        name: format!(
            "bench-2b4t-{tag}{}-{}",
            weight_type.name().to_ascii_lowercase(),
            embd_type.name().to_ascii_lowercase()
        ),
        arch,
        weight_type,
        embd_type,
        untied_head: false,
        n_layer: 30,
        dim: 2560,
        n_ff: 6912,
        n_head: 20,
        n_kv_head: 5,
        ctx_len: 4096,
        scale_tensors: false,
        seed: 0xB17_2B47,
    }
}

/// Vocabulary of [`bench_spec`] models (Llama 3's).
pub const BENCH_VOCAB: usize = 128_256;

/// [`build`] with a vocabulary of `vocab` tokens: the fixture byte vocabulary, then filler
/// tokens `<|filler_N|>` up to `vocab` (the benchmark needs the real head size, not a real
/// tokenizer).
pub fn build_with_vocab(spec: &SynthSpec, vocab: usize) -> Result<Vec<u8>, String> {
    if vocab < FIXTURE_VOCAB {
        return Err(format!(
            "vocab {vocab} is below the {FIXTURE_VOCAB} fixture tokens"
        ));
    }
    let mut rng = Rng::new(spec.seed);
    let arch = spec.arch.name();
    let head_dim = spec.dim / spec.n_head;
    let dims = BlockDims {
        dim: spec.dim,
        q_dim: spec.n_head * head_dim,
        kv_dim: spec.n_kv_head * head_dim,
        n_ff: spec.n_ff,
    };
    let mut w = GgufWriter::new();
    let mut meta = |k: &str, v: Value| w.add_metadata(k, v).map_err(|e| e.to_string());
    meta("general.architecture", Value::String(arch.into()))?;
    meta("general.name", Value::String(spec.name.clone()))?;
    let key = |k: &str| format!("{arch}.{k}");
    let u32v = |v: usize| Value::U32(v as u32);
    meta(&key("vocab_size"), u32v(vocab))?;
    meta(&key("context_length"), u32v(spec.ctx_len))?;
    meta(&key("embedding_length"), u32v(spec.dim))?;
    meta(&key("feed_forward_length"), u32v(spec.n_ff))?;
    meta(&key("block_count"), u32v(spec.n_layer))?;
    meta(&key("attention.head_count"), u32v(spec.n_head))?;
    meta(&key("attention.head_count_kv"), u32v(spec.n_kv_head))?;
    meta(&key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))?;
    meta(
        &key("rope.freq_base"),
        Value::F32(spec.arch.default_rope_theta()),
    )?;
    meta(&key("rope.dimension_count"), u32v(head_dim))?;
    let tokenizer = if vocab == FIXTURE_VOCAB {
        tokenizer_metadata()
    } else {
        filler_tokenizer_metadata(vocab)
    };
    for (k, v) in tokenizer {
        meta(k, v)?;
    }

    // Embedding values ~ N(0, 0.25^2): logits of a unit-RMS state come out of order 1-10.
    let embd: Vec<f32> = (0..vocab * spec.dim).map(|_| 0.25 * rng.normal()).collect();
    let embd = encode_dense(spec.embd_type, &embd)?;
    add_tensor(
        &mut w,
        tensors::TOKEN_EMBD,
        &[spec.dim, vocab],
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
                &tensors::weight_name(l, name),
                &[n],
                GgmlType::F32,
                bytes,
            )
        };
        let linear = |w: &mut GgufWriter, rng: &mut Rng, name: &str, rows: usize, cols: usize| {
            let ty = spec.weight_type;
            let bytes = ternary_tensor(rng, ty, rows, cols)?;
            add_tensor(w, &tensors::weight_name(l, name), &[cols, rows], ty, bytes)?;
            if spec.scale_tensors {
                let s = (0.8 + 0.4 * rng.f32()).to_le_bytes().to_vec();
                add_tensor(w, &tensors::scale_name(l, name), &[1], GgmlType::F32, s)?;
            }
            Ok::<(), String>(())
        };
        for &t in tensors::layer_tensors(spec.arch) {
            match t {
                TensorSpec::Norm(n) => norm(&mut w, &mut rng, n.name, dims.get(n.len))?,
                TensorSpec::Ternary(t) => {
                    let (rows, cols) = (dims.get(t.rows), dims.get(t.cols));
                    linear(&mut w, &mut rng, t.name, rows, cols)?
                }
            }
        }
    }
    let out_norm: Vec<u8> = (0..spec.dim)
        .flat_map(|_| (1.0 + 0.1 * rng.normal()).to_le_bytes())
        .collect();
    add_tensor(
        &mut w,
        tensors::OUTPUT_NORM,
        &[spec.dim],
        GgmlType::F32,
        out_norm,
    )?;
    if spec.untied_head {
        // Drawn after everything else, so the tied fixtures' bytes do not depend on it.
        let head: Vec<f32> = (0..vocab * spec.dim).map(|_| 0.25 * rng.normal()).collect();
        let head = encode_dense(spec.embd_type, &head)?;
        add_tensor(
            &mut w,
            tensors::OUTPUT,
            &[spec.dim, vocab],
            spec.embd_type,
            head,
        )?;
    }
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
    let (mut tokens, merges) = train_bpe(TRAIN_TEXT, FIXTURE_MERGES);
    tokens.extend(SPECIAL_TOKENS.iter().map(|s| s.to_string()));
    let mut types = vec![1i32; 256 + FIXTURE_MERGES];
    types.extend([3; SPECIAL_TOKENS.len()]);
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("llama-bpe".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges", Value::Array(Array::String(merges))),
        ("tokenizer.ggml.bos_token_id", Value::U32(BOS)),
        ("tokenizer.ggml.eos_token_id", Value::U32(BOS + 1)),
        ("tokenizer.ggml.eot_token_id", Value::U32(BOS + 2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.chat_template", Value::String("bitnet".into())),
    ]
}

/// Learns `n_merges` byte-level BPE merges from `text`: pre-tokenize as Llama 3 does, then
/// repeatedly merge the most frequent adjacent pair (ties: lowest ids) into a new token.
/// Returns the tokens (bytes in GPT-2's order, then one per merge) and the merges.
fn train_bpe(text: &str, n_merges: usize) -> (Vec<String>, Vec<String>) {
    use crate::tokenizer::PreTokenizer;
    use alloc::collections::BTreeMap;
    // GPT-2's byte order: the printable bytes first, then the rest.
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let order: Vec<u8> = (0..=255u8)
        .filter(|&b| printable(b))
        .chain((0..=255u8).filter(|&b| !printable(b)))
        .collect();
    let mut tokens: Vec<String> = order.iter().map(|&b| byte_to_char(b).to_string()).collect();
    let mut id_of_byte = [0u32; 256];
    for (i, &b) in order.iter().enumerate() {
        id_of_byte[b as usize] = i as u32;
    }
    // word (as token ids) -> count
    let mut words: BTreeMap<Vec<u32>, u32> = BTreeMap::new();
    PreTokenizer::Llama3.split(text, |w| {
        let ids = w.bytes().map(|b| id_of_byte[b as usize]).collect();
        *words.entry(ids).or_insert(0) += 1;
    });
    let mut merges = Vec::with_capacity(n_merges);
    while merges.len() < n_merges {
        let mut pairs: BTreeMap<(u32, u32), u32> = BTreeMap::new();
        for (w, &n) in &words {
            for p in w.windows(2) {
                *pairs.entry((p[0], p[1])).or_insert(0) += n;
            }
        }
        // Most frequent first, lowest ids among equals. A pair whose text is already a
        // token would not grow the vocabulary: skip it.
        let joined = |a: u32, b: u32| [tokens[a as usize].as_str(), &tokens[b as usize]].concat();
        let best = pairs
            .iter()
            .filter(|(&(a, b), _)| !tokens.contains(&joined(a, b)))
            .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
            .map(|(&pair, _)| pair);
        let Some((a, b)) = best else {
            break;
        };
        let new = tokens.len() as u32;
        merges.push(format!("{} {}", tokens[a as usize], tokens[b as usize]));
        tokens.push(joined(a, b));
        let mut merged: BTreeMap<Vec<u32>, u32> = BTreeMap::new();
        for (w, n) in words {
            let mut out = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                    out.push(new);
                    i += 2;
                } else {
                    out.push(w[i]);
                    i += 1;
                }
            }
            *merged.entry(out).or_insert(0) += n;
        }
        words = merged;
    }
    (tokens, merges)
}

/// The fixture vocabulary padded with `<|filler_N|>` control tokens to `vocab` entries.
fn filler_tokenizer_metadata(vocab: usize) -> Vec<(&'static str, Value)> {
    let mut meta = tokenizer_metadata();
    for (key, value) in meta.iter_mut() {
        match (*key, value) {
            ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))) => {
                let n = tokens.len();
                tokens.extend((n..vocab).map(|i| format!("<|filler_{i}|>")));
            }
            ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))) => {
                types.resize(vocab, 3);
            }
            _ => {}
        }
    }
    meta
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
        GgmlType::TQ2_0 => {
            let d: Vec<f32> = (0..n / tq2_0::BLOCK_ELEMS).map(|_| scale(rng)).collect();
            quants::pack_row_tq2_0(&trits, &d, &mut out)
        }
        GgmlType::TQ1_0 => {
            let d: Vec<f32> = (0..n / tq1_0::BLOCK_ELEMS).map(|_| scale(rng)).collect();
            quants::pack_row_tq1_0(&trits, &d, &mut out)
        }
        other => return Err(format!("{other} is not a ternary type")),
    }
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// [`FIXTURE_PROMPT`] as token ids: what the fixtures' own tokenizer makes of it (BOS
/// first).
pub fn fixture_prompt_tokens() -> Vec<u32> {
    let mut meta = crate::gguf::Metadata::new();
    for (k, v) in tokenizer_metadata() {
        meta.insert(k, v)
            .expect("fixture tokenizer keys are unique");
    }
    crate::tokenizer::Tokenizer::from_metadata(&meta)
        .expect("the fixture vocabulary is valid")
        .encode(FIXTURE_PROMPT)
}
