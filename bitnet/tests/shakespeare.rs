//! The trained model in `fixtures/shakespeare/` (tools/train/train.py, converted by
//! `bitnet-infer convert`) against Hugging Face transformers on its checkpoint
//! (tools/reference/hf_expected.py wrote `expected.json` and `expected-logits.npy`):
//! logits at every position of a probe, a greedy continuation, and the held-out perplexity.

mod gguf_support;

use std::path::Path;

use gguf_support::{fixture, greedy_logits, ids, infer};

fn expected() -> serde_json::Value {
    let p = fixture("shakespeare/expected.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn model() -> String {
    fixture("shakespeare/model.gguf")
        .to_string_lossy()
        .into_owned()
}

/// Logits over `prompt` (plus `n` greedy tokens) as (rows, vocab).
fn logits(prompt: &[u32], n: usize, kernel: &str, tag: &str) -> (Vec<usize>, Vec<f32>) {
    let out = std::env::temp_dir().join(format!(
        "bitnet-shakespeare-{}-{tag}-{kernel}.npy",
        std::process::id()
    ));
    greedy_logits(Path::new(&model()), prompt, n, kernel, &out)
}

#[test]
fn logits_match_transformers_at_every_position() {
    let e = expected();
    let probe = ids(&e["probe_ids"]);
    let bytes = std::fs::read(fixture("shakespeare/expected-logits.npy")).unwrap();
    let (shape, want) = bitnet::npy::read_f32(&bytes).unwrap();
    assert_eq!(shape[0], probe.len());
    for kernel in ["scalar", "auto"] {
        let kernel = if kernel == "auto" {
            bitnet::kernels::Kernel::detect().name()
        } else {
            kernel
        };
        let (got_shape, got) = logits(&probe, 0, kernel, "probe");
        assert_eq!(got_shape, shape);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= 1e-3,
            "{kernel}: max |diff| {worst} against transformers"
        );
    }
}

#[test]
fn greedy_continuation_matches_transformers() {
    let e = expected();
    let prompt = ids(&e["greedy_prompt_ids"]);
    let want = ids(&e["greedy_ids"]);
    let (shape, l) = logits(&prompt, want.len(), "scalar", "greedy");
    let vocab = shape[1];
    // Row i holds the logits after position i: the greedy token is its argmax.
    let got: Vec<u32> = (prompt.len() - 1..prompt.len() - 1 + want.len())
        .map(|r| {
            let row = &l[r * vocab..(r + 1) * vocab];
            (0..vocab).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as u32
        })
        .collect();
    assert_eq!(got, want);
}

#[test]
fn heldout_perplexity_matches_transformers_and_beats_unigram() {
    let e = expected();
    let p = &e["perplexity"];
    let text = fixture("shakespeare/heldout.txt");
    let o = infer(&[
        "perplexity",
        "--model",
        &model(),
        "--file",
        text.to_str().unwrap(),
        "--ctx",
        &p["ctx"].to_string(),
        "--chunks",
        &p["chunks"].to_string(),
        "--kv-type",
        "f32",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The same tokens: the engine's tokenizer from the GGUF, the reference's from
    // tokenizer.json through the `tokenizers` library.
    assert_eq!(got["n_tokens"], e["heldout_tokens"]);
    assert_eq!(got["n_scored"], p["n_scored"]);
    let (ppl, want) = (got["ppl"].as_f64().unwrap(), p["ppl"].as_f64().unwrap());
    assert!(
        (ppl - want).abs() <= 1e-3 * want,
        "perplexity {ppl} vs transformers {want}"
    );
    let unigram = e["unigram_ppl"].as_f64().unwrap();
    assert!(ppl < unigram / 2.0, "{ppl} is not below half of {unigram}");
}
