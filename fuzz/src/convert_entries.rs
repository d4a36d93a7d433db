//! The `convert` readers' fuzz entry points: `model.safetensors` (+ an index) through
//! `Checkpoint`, `tokenizer.json` + `tokenizer_config.json` through `hf_tokenizer::read`.
//! The readers live in the `bitnet-infer` binary, so they are included here by `#[path]`
//! unchanged (this module stands in for their parent, `convert/mod.rs`, and provides the
//! one helper they take from it). Each input is written to a per-thread scratch directory,
//! as the readers take a checkpoint directory.
//!
//! Included by the fuzz targets (through `fuzz/src/lib.rs`) and by
//! `bitnet/tests/fuzz_corpus.rs`, which replays the corpus.

use std::path::{Path, PathBuf};

use super::meter::{assert_load_bound, Meter};

#[allow(dead_code)]
#[path = "../../bitnet/src/bin/bitnet-infer/convert/hf_config.rs"]
mod hf_config;
#[allow(dead_code)]
#[path = "../../bitnet/src/bin/bitnet-infer/convert/hf_tokenizer.rs"]
mod hf_tokenizer;
#[allow(dead_code)]
#[path = "../../bitnet/src/bin/bitnet-infer/convert/hf_weights.rs"]
mod hf_weights;

/// `convert/mod.rs`'s `read_json`, which the readers call as `super::read_json` (the same
/// two lines; the readers are the code under test, not this).
fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))
}

/// An empty directory of this process and thread (tests replay in parallel threads).
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bitnet-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Splits an input at its first NUL byte.
fn split(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}

/// `convert_safetensors`: the input is `model.safetensors`; or, when it starts with `{`,
/// `model.safetensors.index.json` up to the first NUL byte and the rest a shard written
/// as `a.safetensors` (the index decides which files are opened). Every tensor is read
/// and widened to f32; memory stays within the loading bound of the input's size.
pub fn convert_safetensors(data: &[u8]) {
    let dir = scratch();
    let shard = match split(data) {
        (index, Some(shard)) if data.first() == Some(&b'{') => {
            std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
            std::fs::write(dir.join("a.safetensors"), shard).unwrap();
            shard
        }
        _ => {
            std::fs::write(dir.join("model.safetensors"), data).unwrap();
            data
        }
    };
    let m = Meter::start();
    if let Ok(ckpt) = hf_weights::Checkpoint::open(&dir) {
        // The names the file declares (Checkpoint keeps its own map private).
        let names: Vec<String> = safetensors::SafeTensors::deserialize(shard)
            .map(|st| st.names().into_iter().map(String::from).collect())
            .unwrap_or_default();
        for name in names {
            let Ok(t) = ckpt.tensor(&name) else { continue };
            let shape = t.shape.clone();
            assert!(t.expect_shape(&shape).is_ok());
            if t.is_float() {
                if let Ok(v) = t.to_f32() {
                    assert_eq!(v.len() * (t.dtype.bitsize() / 8), t.data.len());
                }
                let mut row = [0.0f32; 8];
                let _ = t.rows_to_f32(usize::MAX / 16, &mut row);
            }
        }
    }
    assert_load_bound(&m, data.len(), "convert: safetensors");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The hf-random fixture's config.json: 384 tokens, BOS 0, EOS 1.
const CONFIG: &str = include_str!("../../fixtures/hf-random/bf16/config.json");

/// `convert_tokenizer_json`: `tokenizer.json` up to the first NUL byte,
/// `tokenizer_config.json` after it (absent without a NUL), under the fixture's config.
/// Whatever the reader accepts has one token and one type per id.
pub fn convert_tokenizer_json(data: &[u8]) {
    let dir = scratch();
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    let config = hf_config::read(&dir).expect("the fixture's config.json");
    let (tokenizer, tokenizer_config) = split(data);
    std::fs::write(dir.join("tokenizer.json"), tokenizer).unwrap();
    if let Some(tc) = tokenizer_config {
        std::fs::write(dir.join("tokenizer_config.json"), tc).unwrap();
    }
    let m = Meter::start();
    if let Ok(meta) = hf_tokenizer::read(&dir, &config) {
        let len = |key: &str| {
            meta.iter().find(|(k, _)| *k == key).map(|(_, v)| match v {
                bitnet::gguf::Value::Array(a) => a.len(),
                _ => panic!("{key} is not an array"),
            })
        };
        assert_eq!(len("tokenizer.ggml.tokens"), Some(config.vocab_size));
        assert_eq!(len("tokenizer.ggml.token_type"), Some(config.vocab_size));
    }
    // The vocabulary is sized by config.json's vocab_size (384 here), not by the input.
    assert_load_bound(
        &m,
        data.len() + config.vocab_size * 64,
        "convert: tokenizer.json",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
