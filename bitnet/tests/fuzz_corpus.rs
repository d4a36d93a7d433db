//! The fuzz corpus and every fuzzer finding, replayed without libFuzzer: each file under
//! `fuzz/corpus/<target>/` (the minimized corpus) and `fixtures/fuzz-regressions/<target>/`
//! (inputs that once crashed, hung or over-allocated, kept after their fix) goes through
//! the same entry point as in the fuzz target (`fuzz/src/entries.rs`, included below),
//! with the same counting allocator asserting the loading memory bound.
//! (`targets_toml` replays in xtask's own tests.) The `convert_*` entries include the
//! `bitnet-infer convert` readers by `#[path]`.

#[path = "../../fuzz/src/convert_entries.rs"]
mod convert_entries;
#[path = "../../fuzz/src/entries.rs"]
mod entries;
#[path = "../../fuzz/src/gguf_gen.rs"]
mod gguf_gen;
#[path = "../../fuzz/src/meter.rs"]
mod meter;

use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOC: meter::Counting = meter::Counting;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// Every file of the target's corpus and regressions; at least one must exist, so a
/// missing or misnamed directory fails instead of passing on nothing.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in [
        root().join("fuzz/corpus").join(target),
        root().join("fixtures/fuzz-regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
    out.sort();
    assert!(
        !out.is_empty(),
        "no corpus or regression files for {target}"
    );
    out
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    for (path, bytes) in inputs(target) {
        // Name the file if it panics: that is the input to look at.
        eprintln!("{target}: {}", path.display());
        run(&bytes);
    }
}

#[test]
fn gguf_parse_corpus() {
    replay("gguf_parse", entries::gguf_parse);
}

#[test]
fn model_load_corpus() {
    replay("model_load", entries::model_load);
}

#[test]
fn gguf_structured_corpus() {
    replay("gguf_structured", entries::gguf_structured);
}

#[test]
fn tokenizer_corpus() {
    replay("tokenizer", entries::tokenizer);
}

#[test]
fn chat_template_corpus() {
    replay("chat_template", |b| {
        let _ = entries::chat_template(b);
    });
}

#[test]
fn convert_safetensors_corpus() {
    replay("convert_safetensors", convert_entries::convert_safetensors);
}

#[test]
fn convert_tokenizer_json_corpus() {
    replay(
        "convert_tokenizer_json",
        convert_entries::convert_tokenizer_json,
    );
}

/// The hf-random checkpoints are the convert targets' seeds: both forms go through them.
#[test]
fn convert_fixtures_read_within_the_memory_bound() {
    for form in ["bf16", "packed"] {
        let dir = root().join("fixtures/hf-random").join(form);
        convert_entries::convert_safetensors(
            &std::fs::read(dir.join("model.safetensors")).unwrap(),
        );
        let mut pair = std::fs::read(dir.join("tokenizer.json")).unwrap();
        pair.push(0);
        pair.extend(std::fs::read(dir.join("tokenizer_config.json")).unwrap());
        convert_entries::convert_tokenizer_json(&pair);
    }
}

/// The fixtures are the GGUF targets' seeds: they must load within the memory bound (the
/// bound would be wrong if a real model broke it) and run a token.
#[test]
fn fixtures_load_within_the_memory_bound() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("fixtures")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "gguf") {
            let bytes = std::fs::read(&path).unwrap();
            entries::gguf_parse(&bytes);
            entries::model_load(&bytes);
            n += 1;
        }
    }
    assert_eq!(n, 7);
}

/// The bound is live: a load that keeps more than the bound allows is caught.
#[test]
#[should_panic(expected = "above the bound")]
fn the_memory_bound_is_enforced() {
    let m = meter::Meter::start();
    let held = vec![0u8; meter::LOAD_FACTOR * 100 + meter::LOAD_SLACK + 1];
    meter::assert_load_bound(&m, 100, "test");
    drop(held);
}

/// The costliest input per byte the bound's factor is meant for: a vocabulary of many
/// distinct short tokens (each a `String` in the metadata, cloned into the tokenizer and
/// keyed in its index), all of them user-defined so the special-token matcher holds them
/// too, on a SentencePiece model that then builds completely.
#[test]
fn a_vocabulary_of_tiny_tokens_stays_within_the_bound() {
    use bitnet::gguf::{Array, GgufWriter, Value};
    let n = 60_000;
    let tokens: Vec<String> = (0..n).map(|i| format!("{i:x}")).collect();
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "llama").unwrap();
    w.add_metadata("tokenizer.ggml.tokens", Value::Array(Array::String(tokens)))
        .unwrap();
    w.add_metadata(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![4; n])),
    )
    .unwrap();
    w.add_metadata("tokenizer.ggml.unknown_token_id", 0u32)
        .unwrap();
    let bytes = w.finish().unwrap();
    let g = bitnet::gguf::Gguf::parse(&bytes).unwrap();
    let m = meter::Meter::start();
    let tok = bitnet::tokenizer::Tokenizer::from_gguf(&g).unwrap();
    let peak = m.peak();
    assert_eq!(tok.vocab_size(), n);
    eprintln!(
        "{n} tokens, {} bytes: {peak} bytes live at most ({:.1} per file byte)",
        bytes.len(),
        peak as f64 / bytes.len() as f64
    );
    entries::model_load(&bytes);
}
