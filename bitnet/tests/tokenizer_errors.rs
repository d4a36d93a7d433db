//! Bad vocabularies are refused with an error naming the key and what was expected.

use bitnet::gguf::{Array, Metadata, Value};
use bitnet::tokenizer::{byte_to_char, Tokenizer};

/// A valid byte-level vocabulary: 256 byte tokens, "ab", and one control token.
fn base() -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
    tokens.push("ab".into());
    tokens.push("<|eot_id|>".into());
    let mut types = vec![1i32; 257];
    types.push(3);
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("llama-bpe".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        (
            "tokenizer.ggml.merges",
            Value::Array(Array::String(vec!["a b".into()])),
        ),
    ]
}

fn load(entries: Vec<(&'static str, Value)>) -> Result<Tokenizer, String> {
    let mut m = Metadata::new();
    for (k, v) in entries {
        m.insert(k, v).unwrap();
    }
    Tokenizer::from_metadata(&m)
}

fn with(key: &'static str, value: Value) -> Vec<(&'static str, Value)> {
    let mut e: Vec<_> = base().into_iter().filter(|(k, _)| *k != key).collect();
    e.push((key, value));
    e
}

fn expect_err(entries: Vec<(&'static str, Value)>, needles: &[&str]) {
    let e = load(entries).expect_err("must be refused");
    for n in needles {
        assert!(e.contains(n), "{n:?} not in {e:?}");
    }
}

#[test]
fn the_base_vocabulary_loads_and_merges() {
    let tok = load(base()).unwrap();
    assert_eq!(tok.encode_with("ab", false, false), [256]);
    assert_eq!(tok.encode_with("ab<|eot_id|>", false, true), [256, 257]);
    assert!(tok.is_end(257), "<|eot_id|> is found by its text");
}

#[test]
fn bad_vocabularies_are_named() {
    expect_err(
        with("tokenizer.ggml.model", Value::String("bert".into())),
        &["tokenizer.ggml.model", "bert"],
    );
    expect_err(
        with("tokenizer.ggml.pre", Value::String("qwen9".into())),
        &["tokenizer.ggml.pre", "qwen9", "llama-bpe"],
    );
    expect_err(
        with(
            "tokenizer.ggml.merges",
            Value::Array(Array::String(vec!["a zz".into()])),
        ),
        &["tokenizer.ggml.merges[0]", "a zz"],
    );
    expect_err(
        with(
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![1; 3])),
        ),
        &["tokenizer.ggml.token_type", "3 entries", "258"],
    );
    expect_err(
        with("tokenizer.ggml.bos_token_id", Value::U32(9999)),
        &["tokenizer.ggml.bos_token_id", "9999"],
    );
    expect_err(
        with("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        &["add_bos_token", "bos_token_id"],
    );
    let mut dup = with(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String(vec!["a".into(), "a".into()])),
    );
    dup.retain(|(k, _)| *k != "tokenizer.ggml.token_type");
    expect_err(dup, &["tokenizer.ggml.tokens", "twice", "ids 0 and 1"]);
    // A byte-level vocabulary missing a byte.
    let mut short: Vec<String> = (0..=254u8).map(|b| byte_to_char(b).to_string()).collect();
    short.push("zz".into());
    let mut e = with("tokenizer.ggml.tokens", Value::Array(Array::String(short)));
    e.retain(|(k, _)| *k != "tokenizer.ggml.token_type" && *k != "tokenizer.ggml.merges");
    e.push(("tokenizer.ggml.merges", Value::Array(Array::String(vec![]))));
    expect_err(e, &["0xFF", "256"]);
    expect_err(
        with("tokenizer.ggml.tokens", Value::U32(3)),
        &["tokenizer.ggml.tokens", "array of string"],
    );
}

/// The base vocabulary without `tokenizer.ggml.pre`, and with the extra keys the official
/// BitNet b1.58 2B4T GGUF has on its gpt2 vocabulary (scores; no eot id).
fn published(tokens: Vec<String>) -> Vec<(&'static str, Value)> {
    let n = tokens.len();
    let mut types = vec![1i32; n];
    types[n - 1] = 3;
    let mut e: Vec<_> = base()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("tokenizer.ggml.t") && *k != "tokenizer.ggml.pre")
        .collect();
    e.push(("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))));
    e.push(("tokenizer.ggml.token_type", Value::Array(Array::I32(types))));
    e.push((
        "tokenizer.ggml.scores",
        Value::Array(Array::F32(vec![0.0; n])),
    ));
    e
}

#[test]
fn a_vocabulary_without_pre_tokenizer_falls_back_to_llama_cpp_default_with_a_warning() {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
    tokens.push("ab".into());
    tokens.push("<|eot_id|>".into());
    let tok = load(published(tokens)).expect("loads");
    assert_eq!(tok.notes.len(), 1);
    assert!(tok.notes[0].starts_with("warning:"), "{:?}", tok.notes);
    assert!(tok.notes[0].contains("default"), "{:?}", tok.notes);
    // llama.cpp's default splits punctuation from letters: "x'ab" -> "x", "'", "ab".
    let ids = tok.encode_with("x'ab", false, false);
    assert_eq!(ids, [u32::from(b'x'), u32::from(b'\''), 256], "{ids:?}");
}

#[test]
fn the_llama3_vocabulary_without_pre_tokenizer_is_recognised() {
    // 128256 tokens with Llama 3's specials where Llama 3 has them (BitNet b1.58 2B4T).
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
    tokens.push("ab".into());
    tokens.push("'ab".into());
    while tokens.len() < 128000 {
        tokens.push(format!("filler{}", tokens.len()));
    }
    for i in 0..256 {
        tokens.push(match i {
            0 => "<|begin_of_text|>".into(),
            1 => "<|end_of_text|>".into(),
            6 => "<|start_header_id|>".into(),
            7 => "<|end_header_id|>".into(),
            9 => "<|eot_id|>".into(),
            _ => format!("<|reserved_special_token_{i}|>"),
        });
    }
    let tok = load(published(tokens)).expect("loads");
    assert_eq!(tok.notes.len(), 1);
    assert!(tok.notes[0].starts_with("note:"), "{:?}", tok.notes);
    assert!(tok.notes[0].contains("llama-bpe"), "{:?}", tok.notes);
    // llama-bpe's `[^\r\n\p{L}\p{N}]?\p{L}+` keeps "'ab" one word, and a word that is a
    // token is emitted whole (the default pre-tokenizer would split off the "'").
    assert_eq!(
        tok.encode_with("x'ab", false, false),
        [u32::from(b'x'), 257]
    );
    assert_eq!(tok.eot, Some(128009), "found by its text");
}

#[test]
fn an_older_bitnet_chat_template_loads_and_chats_in_the_2b4t_format() {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
    tokens.push("ab".into());
    tokens.push("<|eot_id|>".into());
    let eot = tokens.len() as u32 - 1;
    let mut e = published(tokens);
    e.push((
        "tokenizer.chat_template",
        Value::String(
            "{% for message in messages %}{{ message['role'] | capitalize + ': ' + message['content'] + eos_token }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}".into(),
        ),
    ));
    let tok = load(e).expect("loads");
    assert!(
        tok.notes
            .iter()
            .any(|n| n.contains("older BitNet template")),
        "{:?}",
        tok.notes
    );
    let ids = tok.chat_prompt(None, "Hi").unwrap();
    let text: Vec<u32> = "User: Hi".bytes().map(u32::from).collect();
    let tail: Vec<u32> = "Assistant: ".bytes().map(u32::from).collect();
    let want: Vec<u32> = text.into_iter().chain([eot]).chain(tail).collect();
    assert!(ids.ends_with(&want), "{ids:?}");
}
