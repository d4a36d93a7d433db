//! What every run evaluates: each model with its prompt, the decode tokens it is
//! teacher-forced through, and the independent numpy reference's logits when the model
//! has them (`fixtures/<name>.golden.json`, written by tools/reference/golden.py).

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
    /// KV type -> the numpy reference's logits over prompt + decode.
    pub oracle: BTreeMap<String, Logits>,
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
}

#[derive(Deserialize)]
struct GoldenMeta {
    prompt_tokens: Vec<u32>,
    decode_tokens: Vec<u32>,
    kv: BTreeMap<String, String>,
}

fn model_name(m: &Path) -> String {
    m.file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
}

/// A model, with its reference if `<stem>.golden.json` sits next to it and its prompt
/// is the one asked for.
pub fn case(model: &Path, prompt: Option<&[u32]>) -> Result<Case, String> {
    let name = model_name(model);
    let meta_path = model.with_file_name(format!("{name}.golden.json"));
    let meta: Option<GoldenMeta> =
        match std::fs::read_to_string(&meta_path) {
            Err(_) => None,
            Ok(text) => Some(serde_json::from_str(&text).map_err(|e| {
                format!("{}: not a reference description: {e}", meta_path.display())
            })?),
        };
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
    };
    if let Some(m) = meta.filter(|m| m.prompt_tokens == c.prompt) {
        for (kv, file) in &m.kv {
            let l = logits::read(&model.with_file_name(file))?;
            let rows = m.prompt_tokens.len() + m.decode_tokens.len();
            if l.shape[0] != rows {
                return Err(format!(
                    "{}: {file} has {} rows; prompt + decode tokens are {rows}",
                    meta_path.display(),
                    l.shape[0]
                ));
            }
            c.oracle.insert(kv.clone(), l);
        }
        c.decode = Some(m.decode_tokens);
    }
    Ok(c)
}
