//! `bitnet-infer tokenize` on vocabulary-only GGUF files, and `--chat` on a model that
//! carries the full Llama 3 vocabulary.

mod tokenizer_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use tokenizer_support as data;

fn bitnet_infer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitnet-infer"))
        .args(args)
        .output()
        .expect("bitnet-infer runs")
}

fn stdout_of(args: &[&str]) -> String {
    let out = bitnet_infer(args);
    assert!(
        out.status.success(),
        "bitnet-infer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn llama3_vocab() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let file = data::vocab_gguf("llama3-vocab", data::llama3_metadata());
        data::scratch_file("llama3-vocab.gguf", &file)
    })
}

fn llama_spm_vocab() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let file = data::vocab_gguf("llama-spm-vocab", data::llama_spm_metadata());
        data::scratch_file("llama-spm-vocab.gguf", &file)
    })
}

/// `{"ids": [...], "pieces": [...]}`
fn parse_json(s: &str) -> (Vec<u32>, Vec<String>) {
    let v: serde_json::Value = serde_json::from_str(s.trim()).expect("one JSON object");
    let ids = v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let pieces = v["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    (ids, pieces)
}

#[test]
fn tokenize_json_on_a_vocabulary_only_file() {
    let model = llama3_vocab().to_str().unwrap();
    let out = stdout_of(&[
        "tokenize",
        "--model",
        model,
        "--text",
        "Hello world<|eot_id|>",
        "--json",
    ]);
    let (ids, pieces) = parse_json(&out);
    assert_eq!(ids, [128000, 9906, 1917, 128009]);
    assert_eq!(
        pieces,
        ["<|begin_of_text|>", "Hello", "Ġworld", "<|eot_id|>"]
    );

    // --no-special: no BOS, and the special token's text is plain text.
    let out = stdout_of(&[
        "tokenize",
        "--model",
        model,
        "--text",
        "<|eot_id|>",
        "--json",
        "--no-special",
    ]);
    let (ids, _) = parse_json(&out);
    assert!(!ids.contains(&128000) && !ids.contains(&128009), "{ids:?}");
}

#[test]
fn tokenize_text_output_on_sentencepiece() {
    let model = llama_spm_vocab().to_str().unwrap();
    let out = stdout_of(&["tokenize", "--model", model, "--text", "Hello\nworld 🦙"]);
    let rows: Vec<(u32, String)> = out
        .lines()
        .map(|l| {
            let (id, piece) = l.trim().split_once("  ").unwrap();
            (id.parse().unwrap(), serde_json::from_str(piece).unwrap())
        })
        .collect();
    let ids: Vec<u32> = rows.iter().map(|r| r.0).collect();
    // BOS, "▁Hello", "<0x0A>", then "world" and the llama's bytes: what llama-tokenizer-js
    // gives for the same text, with BOS.
    assert_eq!(rows[0], (1, "<s>".into()));
    assert_eq!(rows[1], (15043, "▁Hello".into()));
    assert_eq!(rows[2], (13, "<0x0A>".into()));
    assert_eq!(ids.len(), 9, "{rows:?}");
}

/// The corpus holds this exact prompt as llama3-tokenizer-js encoded it.
const CHAT_TEXT: &str =
    "<|begin_of_text|>System: Be brief.<|eot_id|>User: What is 2+2?<|eot_id|>Assistant: ";

fn reference_chat_ids() -> Vec<u32> {
    data::corpus()
        .into_iter()
        .find(|c| c.text == CHAT_TEXT)
        .expect("chat prompt in the corpus")
        .llama3
}

#[test]
fn tokenize_chat_prompt_matches_the_reference() {
    let model = llama3_vocab().to_str().unwrap();
    let out = stdout_of(&[
        "tokenize",
        "--model",
        model,
        "--chat",
        "--system",
        "Be brief.",
        "--text",
        "What is 2+2?",
        "--json",
    ]);
    let (ids, _) = parse_json(&out);
    assert_eq!(ids, reference_chat_ids());
}

#[test]
fn tokenize_errors_name_the_problem() {
    // A file without a vocabulary.
    let mut w = bitnet::gguf::GgufWriter::new();
    w.add_metadata(
        "general.architecture",
        bitnet::gguf::Value::String("llama".into()),
    )
    .unwrap();
    let path = data::scratch_file("no-vocab.gguf", &w.finish().unwrap());
    let out = bitnet_infer(&["tokenize", "--model", path.to_str().unwrap(), "--text", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokenizer.ggml.model"), "{err}");

    // A SentencePiece vocabulary has no chat template.
    let model = llama_spm_vocab().to_str().unwrap();
    let out = bitnet_infer(&["tokenize", "--model", model, "--chat", "--text", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokenizer.chat_template"), "{err}");
}

/// A tiny fixture model whose vocabulary is Llama 3's (128256 tokens, random embeddings).
fn llama3_model() -> PathBuf {
    let spec = &bitnet::synth::fixture_specs()[0];
    let tiny = bitnet::synth::build(spec).unwrap();
    let model = data::with_vocabulary(&tiny, data::llama3_metadata(), 128256);
    data::scratch_file("tiny-llama3-vocab.gguf", &model)
}

#[test]
fn chat_runs_on_a_model_with_the_llama3_vocabulary() {
    let model = llama3_model();
    let model = model.to_str().unwrap();
    let want = reference_chat_ids();
    let out = bitnet_infer(&[
        "--model",
        model,
        "--chat",
        "--system",
        "Be brief.",
        "--prompt",
        "What is 2+2?",
        "-n",
        "6",
        "--temperature",
        "0",
        "--threads",
        "1",
        "--show-special",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The prompt evaluated is exactly the reference chat encoding.
    let prefill = format!("prefill      {} tokens", want.len());
    assert!(err.contains(&prefill), "expected {prefill:?} in:\n{err}");
    // The chat template is not echoed: only the reply is printed.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("System:"), "{text}");
}

#[test]
fn interactive_chat_on_a_fixture_reads_turns_from_stdin() {
    use std::io::Write;
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-b158-i2_s.gguf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitnet-infer"))
        .args([
            "--model",
            model.to_str().unwrap(),
            "--chat",
            "--system",
            "Be brief.",
            "-n",
            "5",
            "--temperature",
            "0",
            "--threads",
            "1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Hello!\n\nWhat is BitNet?\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // One reply line per non-empty turn, and a prompt marker before each read.
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text:?}");
    assert_eq!(err.matches("> ").count(), 4, "{err:?}");
}
