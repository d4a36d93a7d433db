//! `tokenizer.json` and `tokenizer_config.json` as GGUF `tokenizer.*` metadata: a byte-level
//! BPE vocabulary, its merges, special tokens and chat template.

use std::path::Path;

use bitnet::gguf::{Array, Value};
use serde_json::Value as Json;

use super::hf_config::HfConfig;
use super::read_json;

/// GPT-2's pre-tokenizer regex: tokenizers' `ByteLevel(use_regex=true)` applies it.
const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's (and so BitNet b1.58 2B4T's) split regex.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// ggml token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

pub fn read(dir: &Path, config: &HfConfig) -> Result<Vec<(&'static str, Value)>, String> {
    let path = dir.join("tokenizer.json");
    let tj = read_json(&path)?;
    let p = path.display();
    let model = tj
        .get("model")
        .ok_or_else(|| format!("{p}: field 'model' is missing"))?;
    match model.get("type").and_then(Json::as_str) {
        Some("BPE") => {}
        other => {
            return Err(format!(
                "{p}: field 'model.type' is {other:?}; only byte-level BPE is supported"
            ))
        }
    }
    if tj.get("normalizer").is_some_and(|n| !n.is_null()) {
        return Err(format!(
            "{p}: field 'normalizer' is set; byte-level BPE vocabularies have none"
        ));
    }
    let pre = pre_tokenizer(&tj).map_err(|e| format!("{p}: {e}"))?;

    // Ids are dense up to vocab_size: the embedding has one row per id.
    let n = config.vocab_size;
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![NORMAL; n];
    let mut place = |id: u64, text: &str, field: &str| -> Result<usize, String> {
        let i = usize::try_from(id).ok().filter(|&i| i < n).ok_or_else(|| {
            format!("{p}: field '{field}': token {text:?} has id {id}, beyond config.json vocab_size {n}")
        })?;
        tokens[i] = Some(text.to_string());
        Ok(i)
    };
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| format!("{p}: field 'model.vocab' is missing or not an object"))?;
    for (text, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| format!("{p}: field 'model.vocab': {text:?} has id {id}"))?;
        place(id, text, "model.vocab")?;
    }
    let added = tj
        .get("added_tokens")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for t in added {
        let (Some(id), Some(text)) = (
            t.get("id").and_then(Json::as_u64),
            t.get("content").and_then(Json::as_str),
        ) else {
            return Err(format!(
                "{p}: field 'added_tokens': entry {t} has no id or content"
            ));
        };
        let i = place(id, text, "added_tokens")?;
        let special = t.get("special").and_then(Json::as_bool).unwrap_or(false);
        types[i] = if special { CONTROL } else { USER_DEFINED };
    }
    // As llama.cpp's converter does: ids the tokenizer never produces keep their row.
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = UNUSED;
                format!("[PAD{i}]")
            })
        })
        .collect();

    let merges = model
        .get("merges")
        .and_then(Json::as_array)
        .ok_or_else(|| format!("{p}: field 'model.merges' is missing or not a list"))?
        .iter()
        .map(|m| match m {
            Json::String(s) => Ok(s.clone()),
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(a), Json::String(b)] => Ok(format!("{a} {b}")),
                _ => Err(format!(
                    "{p}: field 'model.merges': entry {m} is not a pair"
                )),
            },
            _ => Err(format!(
                "{p}: field 'model.merges': entry {m} is not a merge"
            )),
        })
        .collect::<Result<Vec<String>, String>>()?;

    let cfg_path = dir.join("tokenizer_config.json");
    let tc = read_json(&cfg_path)?;
    let id_of = |text: &str| tokens.iter().position(|t| t == text).map(|i| i as u32);
    let special_id = |key: &str, fallback: Option<u32>| -> Result<Option<u32>, String> {
        let text = match tc.get(key) {
            Some(Json::String(s)) => s.as_str(),
            Some(Json::Object(o)) => o.get("content").and_then(Json::as_str).unwrap_or(""),
            _ => return Ok(fallback),
        };
        id_of(text).map(Some).ok_or_else(|| {
            format!(
                "{}: field '{key}': token {text:?} is not in the vocabulary",
                cfg_path.display()
            )
        })
    };
    let bos = special_id("bos_token", config.bos_token_id)?;
    let eos = special_id("eos_token", config.eos_token_id)?;
    // Without the flag (Llama 3's files), the post-processor's template adds the BOS.
    let add_bos = match tc.get("add_bos_token").and_then(Json::as_bool) {
        Some(b) => b,
        None => match (bos, tj.get("post_processor")) {
            (Some(b), Some(pp)) if !pp.is_null() => pp.to_string().contains(&tokens[b as usize]),
            _ => false,
        },
    };
    let chat_template = match tc.get("chat_template") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        // Several named templates: the default one, as transformers picks.
        Some(Json::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .or(list.first())
            .and_then(|t| t.get("template").and_then(Json::as_str))
            .map(str::to_string),
        Some(other) => {
            return Err(format!(
                "{}: field 'chat_template' is {other}; expected a string",
                cfg_path.display()
            ))
        }
    };

    let mut meta = vec![
        ("tokenizer.ggml.model", Value::from("gpt2")),
        ("tokenizer.ggml.pre", Value::from(pre)),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges", Value::Array(Array::String(merges))),
    ];
    if let Some(b) = bos {
        meta.push(("tokenizer.ggml.bos_token_id", Value::U32(b)));
    }
    if let Some(e) = eos {
        meta.push(("tokenizer.ggml.eos_token_id", Value::U32(e)));
    }
    meta.push(("tokenizer.ggml.add_bos_token", Value::Bool(add_bos)));
    if let Some(t) = chat_template {
        meta.push(("tokenizer.chat_template", Value::String(t)));
    }
    Ok(meta)
}

fn ty(j: &Json) -> &str {
    j.get("type").and_then(Json::as_str).unwrap_or("")
}

/// The `tokenizer.ggml.pre` name of the file's `pre_tokenizer`: read from the regex it
/// applies, since that is what decides the tokenization.
fn pre_tokenizer(tj: &Json) -> Result<&'static str, String> {
    let pre = tj.get("pre_tokenizer").unwrap_or(&Json::Null);
    let of_regex = |r: &str| match r {
        GPT2_REGEX => Some("gpt-2"),
        LLAMA3_REGEX => Some("llama-bpe"),
        _ => None,
    };
    let unsupported = || {
        format!(
            "field 'pre_tokenizer' is {pre}; supported: ByteLevel(use_regex=true) (gpt-2), or a \
             Split with GPT-2's or Llama 3's regex followed by ByteLevel(use_regex=false)"
        )
    };
    let prefix_space = |j: &Json| j.get("add_prefix_space").and_then(Json::as_bool) == Some(true);
    match ty(pre) {
        "ByteLevel"
            if pre.get("use_regex").and_then(Json::as_bool) != Some(false)
                && !prefix_space(pre) =>
        {
            Ok("gpt-2")
        }
        "Sequence" => {
            let steps = pre
                .get("pretokenizers")
                .and_then(Json::as_array)
                .ok_or_else(unsupported)?;
            match steps.as_slice() {
                [split, byte_level]
                    if ty(split) == "Split"
                        && ty(byte_level) == "ByteLevel"
                        && byte_level.get("use_regex").and_then(Json::as_bool) == Some(false)
                        && !prefix_space(byte_level)
                        && split.get("invert").and_then(Json::as_bool) != Some(true) =>
                {
                    split
                        .pointer("/pattern/Regex")
                        .and_then(Json::as_str)
                        .and_then(of_regex)
                        .ok_or_else(unsupported)
                }
                _ => Err(unsupported()),
            }
        }
        _ => Err(unsupported()),
    }
}
