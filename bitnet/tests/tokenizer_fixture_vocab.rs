//! The fixture models carry a real BPE vocabulary (merges learned from a short text), and
//! their golden prompt goes through it.

use bitnet::gguf::Gguf;
use bitnet::synth;
use bitnet::tokenizer::Tokenizer;

fn fixture_tokenizer() -> Tokenizer {
    let spec = &synth::fixture_specs()[0];
    let file = synth::build(spec).unwrap();
    Tokenizer::from_gguf(&Gguf::parse(&file).unwrap()).unwrap()
}

#[test]
fn fixture_vocabulary_is_a_real_bpe() {
    let tok = fixture_tokenizer();
    assert_eq!(tok.model_name(), "gpt2");
    assert_eq!(tok.vocab_size(), synth::FIXTURE_VOCAB);
    assert_eq!(tok.bos, Some(synth::BOS));
    // Merges at work: the prompt takes far fewer tokens than bytes.
    let ids = synth::fixture_prompt_tokens();
    assert_eq!(ids[0], synth::BOS);
    assert!(ids.len() < 1 + synth::FIXTURE_PROMPT.len() / 2, "{ids:?}");
    assert_eq!(tok.encode(synth::FIXTURE_PROMPT), ids);
    let text = tok.decode(&ids, false);
    assert_eq!(text, synth::FIXTURE_PROMPT.as_bytes());
    // Any text still round-trips through the byte tokens.
    let odd = "ünïcödé 中文 🦙\t\r\n";
    assert_eq!(
        tok.decode(&tok.encode_with(odd, false, false), false),
        odd.as_bytes()
    );
}

#[test]
fn fixture_chat_prompt() {
    let tok = fixture_tokenizer();
    let ids = tok.chat_prompt(Some("Be brief."), "Hello!").unwrap();
    assert_eq!(ids[0], synth::BOS);
    let eot = synth::BOS + 2;
    assert_eq!(ids.iter().filter(|&&i| i == eot).count(), 2);
    assert_eq!(
        tok.decode(&ids, true),
        "<|begin_of_text|>System: Be brief.<|eot_id|>User: Hello!<|eot_id|>Assistant: ".as_bytes()
    );
    assert!(tok.is_end(eot) && tok.is_end(synth::BOS + 1) && !tok.is_end(synth::BOS));
}
