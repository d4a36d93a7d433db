//! Our tokenizer against two implementations nobody here wrote: every corpus text must
//! encode to exactly the ids that llama3-tokenizer-js (Llama 3 BPE) and llama-tokenizer-js
//! (LLaMA SentencePiece) produce, and decode back to itself.

mod tokenizer_support;

use bitnet::gguf::Gguf;
use bitnet::tokenizer::Tokenizer;
use tokenizer_support as data;

fn load(name: &str, meta: Vec<(String, bitnet::gguf::Value)>) -> Tokenizer {
    let file = data::vocab_gguf(name, meta);
    let g = Gguf::parse(&file).expect("vocabulary GGUF parses");
    assert!(g.tensors.is_empty());
    Tokenizer::from_gguf(&g).expect("vocabulary loads")
}

/// Checks every case, then reports all mismatches at once.
fn check(
    name: &str,
    cases: &[data::Case],
    expected: impl Fn(&data::Case) -> &[u32],
    encode: impl Fn(&str) -> Vec<u32>,
    decode: impl Fn(&[u32]) -> Vec<u8>,
) {
    let mut failures = Vec::new();
    for c in cases {
        let want = expected(c);
        let got = encode(&c.text);
        if got != want {
            failures.push(format!(
                "{name} encode {:?}\n   want {want:?}\n    got {got:?}",
                c.text
            ));
        }
        let back = decode(want);
        if back != c.text.as_bytes() {
            failures.push(format!(
                "{name} decode {:?} gave {:?}",
                c.text,
                String::from_utf8_lossy(&back)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures[..failures.len().min(12)].join("\n")
    );
}

#[test]
fn corpus_is_substantial() {
    let cases = data::corpus();
    assert!(cases.len() >= 300, "{} cases", cases.len());
    let all: String = cases.iter().map(|c| c.text.as_str()).collect();
    for needle in ["<|eot_id|>", "🦙", "中", "\t", "\r\n", "é", "12345", "'s"] {
        assert!(all.contains(needle), "corpus lacks {needle:?}");
    }
}

#[test]
fn llama3_bpe_matches_llama3_tokenizer_js() {
    let tok = load("llama3-vocab", data::llama3_metadata());
    assert_eq!(tok.vocab_size(), 128256);
    let cases = data::corpus();
    // The package parses special-token text and adds no BOS with {bos: false}.
    check(
        "llama3",
        &cases,
        |c| &c.llama3,
        |t| tok.encode_with(t, false, true),
        |ids| tok.decode(ids, true),
    );
    // With specials added, only BOS is prepended (add_bos_token, no add_eos_token).
    let ids = tok.encode("Hello world");
    assert_eq!(ids, [data::LLAMA3_BOS, 9906, 1917]);
    // Without special parsing, `<|eot_id|>` is plain text.
    let plain = tok.encode_with("<|eot_id|>", false, false);
    assert!(plain.len() > 1 && !plain.contains(&data::LLAMA3_EOT));
}

#[test]
fn llama_spm_matches_llama_tokenizer_js() {
    let tok = load("llama-spm-vocab", data::llama_spm_metadata());
    assert_eq!(tok.vocab_size(), 32000);
    let cases = data::corpus();
    // The package never parses special tokens; it adds the SentencePiece leading space.
    check(
        "llama",
        &cases,
        |c| &c.llama,
        |t| tok.encode_with(t, false, false),
        |ids| tok.decode(ids, false),
    );
    assert_eq!(tok.encode("Hello world"), [1, 15043, 3186]);
}
