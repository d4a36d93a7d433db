//! The `llama` architecture against Hugging Face transformers, without torch: the seeded
//! random 1.58-bit `LlamaForCausalLM` checkpoint in `fixtures/hf-random/llama-packed/`
//! (built, saved and computed by transformers: tools/reference/hf_llama_expected.py) is
//! converted by `bitnet-infer convert` and run; its logits must be transformers' at every
//! prompt position and its greedy continuation transformers' token for token.
//!
//! Prompt ids, not text: to stay small the checkpoint's byte-level BPE has 80 tokens, not
//! all 256 bytes, which the engine's tokenizer requires (tokenization is checked against
//! the `tokenizers` library by tests/convert.rs and tests/shakespeare.rs).

mod gguf_support;

use std::path::{Path, PathBuf};

use gguf_support::{fixture, greedy_logits, ids, infer};

const DIR: &str = "hf-random/llama-packed";

fn expected() -> serde_json::Value {
    let p = fixture(&format!("{DIR}/expected.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bitnet-hf-llama-{}-{name}", std::process::id()))
}

/// The committed checkpoint converted with the converter's defaults (`tq2_0` for llama).
fn converted(tag: &str) -> PathBuf {
    let out = scratch(&format!("{tag}.gguf"));
    let src = fixture(DIR);
    let o = infer(&[
        "convert",
        src.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// (shape, logits) of the engine over `prompt` then `n` greedy tokens.
fn run(model: &Path, prompt: &[u32], n: usize, kernel: &str) -> (Vec<usize>, Vec<f32>) {
    greedy_logits(
        model,
        prompt,
        n,
        kernel,
        &scratch(&format!("{kernel}-{n}.npy")),
    )
}

#[test]
fn converted_llama_is_transformers_at_every_position_and_greedy_step() {
    let e = expected();
    let prompt = ids(&e["prompt_ids"]);
    let greedy = ids(&e["greedy_ids"]);
    let bytes = std::fs::read(fixture(&format!("{DIR}/expected-logits.npy"))).unwrap();
    let (shape, want) = bitnet::npy::read_f32(&bytes).unwrap();
    assert_eq!(shape[0], prompt.len());
    let vocab = shape[1];
    let model = converted("model");

    let info = infer(&["info", "--json", "--model", model.to_str().unwrap()]);
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains("\"architecture\": \"llama\""), "{info}");
    assert!(info.contains("\"rope_type\": \"norm\""), "{info}");

    for kernel in ["scalar", bitnet::kernels::Kernel::detect().name()] {
        let (got_shape, got) = run(&model, &prompt, greedy.len(), kernel);
        // The prompt's rows, then one per greedy token fed back (the last is not).
        assert_eq!(got_shape, vec![prompt.len() + greedy.len() - 1, vocab]);
        for (pos, (g, w)) in got
            .chunks_exact(vocab)
            .zip(want.chunks_exact(vocab))
            .enumerate()
        {
            let worst = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= 1e-3,
                "{kernel}: position {pos}: max |diff| {worst} against transformers"
            );
        }
        let tokens: Vec<u32> = got[(prompt.len() - 1) * vocab..]
            .chunks_exact(vocab)
            .map(|row| (0..vocab).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32)
            .collect();
        assert_eq!(tokens, greedy, "{kernel}: greedy tokens");
    }
    std::fs::remove_file(&model).ok();
}
