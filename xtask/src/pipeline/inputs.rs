//! What every run evaluates: each model with its prompt, the decode tokens it is
//! teacher-forced through, and an independent reference's logits when the model has them:
//! the numpy reference's for the tiny fixtures (`fixtures/<name>.golden.json`, written by
//! tools/reference/golden.py), transformers' for a trained model
//! (`fixtures/<dir>/expected.json`, written by tools/reference/hf_expected.py).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::checks::logits::{self, Logits};

/// KV cache types every model is validated with.
pub const KV_TYPES: [&str; 2] = ["f32", "f16"];

pub struct Case {
    pub model: PathBuf,
    pub name: String,
    pub prompt: Vec<u32>,
    /// Tokens fed one at a time after the prompt; `None` until the host's greedy run
    /// picks them (models without a reference file).
    pub decode: Option<Vec<u32>>,
    /// KV type -> the independent reference's logits over prompt + decode.
    pub oracle: BTreeMap<String, Logits>,
    /// Who computed `oracle`: the numpy reference (fixtures) or transformers (trained models).
    pub oracle_source: &'static str,
}

pub struct Inputs {
    pub cases: Vec<Case>,
    /// Decode steps when the host picks the tokens.
    pub decode_steps: usize,
    pub tolerance: f32,
    pub timeout: Duration,
    /// Test builds only: make this kernel's output wrong, to prove validation notices.
    pub inject_fault: Option<String>,
    pub scratch: PathBuf,
    /// The matrix's instruction-count gate: every emulated profile's kernels are counted
    /// on the gate model and held to this baseline.
    pub counters: Option<crate::counters::baseline::Baseline>,
}

/// What a model's reference says: the prompt and decode tokens it was computed over, and
/// per KV type the file of its logits (rows: prompt + decode).
struct Reference {
    path: PathBuf,
    /// Who computed it, for messages and the report.
    source: &'static str,
    prompt_tokens: Vec<u32>,
    decode_tokens: Vec<u32>,
    kv: BTreeMap<String, String>,
}

/// `<name>.golden.json`, written by tools/reference/golden.py (numpy, both KV types).
#[derive(Deserialize)]
struct GoldenMeta {
    prompt_tokens: Vec<u32>,
    decode_tokens: Vec<u32>,
    kv: BTreeMap<String, String>,
}

/// `expected.json` next to a trained `model.gguf`, written by tools/reference/hf_expected.py:
/// transformers' logits of the probe, token by token with its float32 cache.
#[derive(Deserialize)]
struct TransformersMeta {
    probe_ids: Vec<u32>,
}

/// The trained models' logits file (see [`TransformersMeta`]).
const TRANSFORMERS_LOGITS: &str = "expected-logits.npy";

/// A model's name in messages: its file stem, or its directory for `<dir>/model.gguf`.
fn model_name(m: &Path) -> String {
    let stem = m
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    match m.parent().and_then(Path::file_name) {
        Some(dir) if stem == "model" => dir.to_string_lossy().into_owned(),
        _ => stem,
    }
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Err(_) => Ok(None),
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: not a reference description: {e}", path.display())),
    }
}

/// The reference next to `model`, if there is one.
fn reference(model: &Path) -> Result<Option<Reference>, String> {
    let stem = model
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let golden = model.with_file_name(format!("{stem}.golden.json"));
    if let Some(m) = parse::<GoldenMeta>(&golden)? {
        return Ok(Some(Reference {
            path: golden,
            source: "the numpy reference",
            prompt_tokens: m.prompt_tokens,
            decode_tokens: m.decode_tokens,
            kv: m.kv,
        }));
    }
    let expected = model.with_file_name("expected.json");
    if stem != "model" {
        return Ok(None);
    }
    Ok(parse::<TransformersMeta>(&expected)?.map(|m| Reference {
        path: expected,
        source: "transformers",
        prompt_tokens: m.probe_ids,
        decode_tokens: Vec::new(),
        kv: BTreeMap::from([("f32".to_string(), TRANSFORMERS_LOGITS.to_string())]),
    }))
}

/// A model, with its reference if one sits next to it (`<stem>.golden.json`, or
/// `expected.json` beside a `model.gguf`) and its prompt is the one asked for.
pub fn case(model: &Path, prompt: Option<&[u32]>) -> Result<Case, String> {
    let name = model_name(model);
    let meta = reference(model)?;
    let default_prompt = bitnet::synth::fixture_prompt_tokens();
    let prompt: Vec<u32> = prompt.map_or_else(
        || {
            meta.as_ref()
                .map_or(default_prompt.clone(), |m| m.prompt_tokens.clone())
        },
        <[u32]>::to_vec,
    );
    let mut c = Case {
        model: model.to_path_buf(),
        name,
        prompt,
        decode: None,
        oracle: BTreeMap::new(),
        oracle_source: "no reference",
    };
    if let Some(m) = meta.filter(|m| m.prompt_tokens == c.prompt) {
        for (kv, file) in &m.kv {
            let l = logits::read(&model.with_file_name(file))?;
            let rows = m.prompt_tokens.len() + m.decode_tokens.len();
            if l.shape[0] != rows {
                return Err(format!(
                    "{}: {file} has {} rows; prompt + decode tokens are {rows}",
                    m.path.display(),
                    l.shape[0]
                ));
            }
            c.oracle.insert(kv.clone(), l);
        }
        c.decode = Some(m.decode_tokens);
        c.oracle_source = m.source;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
    }

    #[test]
    fn a_trained_model_is_named_by_its_directory_and_judged_by_transformers() {
        let c = case(&fixtures().join("shakespeare/model.gguf"), None).unwrap();
        assert_eq!(c.name, "shakespeare");
        assert_eq!(c.oracle_source, "transformers");
        assert_eq!(c.decode.as_deref(), Some(&[][..]));
        let l = &c.oracle["f32"];
        assert_eq!(l.shape[0], c.prompt.len());
        assert!(
            !c.oracle.contains_key("f16"),
            "transformers ran an f32 cache only"
        );
    }

    #[test]
    fn a_tiny_fixture_is_judged_by_numpy_over_prompt_and_decode() {
        let c = case(&fixtures().join("tiny-b158-i2_s.gguf"), None).unwrap();
        assert_eq!(c.name, "tiny-b158-i2_s");
        assert_eq!(c.oracle_source, "the numpy reference");
        let rows = c.prompt.len() + c.decode.as_ref().unwrap().len();
        for kv in KV_TYPES {
            assert_eq!(c.oracle[kv].shape[0], rows);
        }
    }

    #[test]
    fn another_prompt_drops_the_reference() {
        let c = case(&fixtures().join("shakespeare/model.gguf"), Some(&[0, 1, 2])).unwrap();
        assert!(c.oracle.is_empty() && c.decode.is_none());
    }
}
