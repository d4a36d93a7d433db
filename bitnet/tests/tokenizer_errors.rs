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
        with("tokenizer.ggml.pre", Value::String("default".into())),
        &["tokenizer.ggml.pre", "default", "llama-bpe"],
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
