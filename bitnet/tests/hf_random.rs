//! Small random `BitNetForCausalLM` checkpoints in both published forms (`fixtures/hf-random/`:
//! `bf16` master weights as `microsoft/bitnet-b1.58-2B-4T-bf16`, `packed` uint8 +
//! `weight_scale` as `microsoft/bitnet-b1.58-2B-4T`), written and computed by Hugging Face
//! transformers itself (tools/reference/hf_random.py). Each is converted by the binary under
//! test and run; its logits at every prompt position must be within 1e-3 of transformers'
//! token-by-token ones, its greedy tokens the same, and its tokenizer must give the ids the
//! `tokenizers` library gave. No torch needed.

mod gguf_support;

use std::path::{Path, PathBuf};

use gguf_support::{argmax, fixture, greedy_logits, ids, infer};

const TOLERANCE: f32 = 1e-3;

struct Expected {
    prompt_text: String,
    prompt: Vec<u32>,
    greedy: Vec<u32>,
    /// transformers' logits, `[prompt.len(), vocab]`.
    shape: Vec<usize>,
    logits: Vec<f32>,
}

fn expected(form: &str) -> Expected {
    let dir = fixture("hf-random").join(form);
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let (shape, logits) =
        bitnet::npy::read_f32(&std::fs::read(dir.join("expected-logits.npy")).unwrap()).unwrap();
    let prompt = ids(&e["prompt_ids"]);
    assert_eq!(shape[0], prompt.len(), "{form}: expected-logits.npy rows");
    Expected {
        prompt_text: e["prompt_text"].as_str().unwrap().to_string(),
        prompt,
        greedy: ids(&e["greedy_ids"]),
        shape,
        logits,
    }
}

fn temp(form: &str, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "bitnet-hf-random-{}-{form}-{name}",
        std::process::id()
    ))
}

/// The committed checkpoint converted to a temporary GGUF (the default I2_S).
fn convert(form: &str) -> PathBuf {
    let out = temp(form, "model.gguf");
    let dir = fixture("hf-random").join(form);
    let o = infer(&[
        "convert",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "{form}: convert: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Logits over `prompt` plus `n` greedy tokens, as (shape, rows).
fn run(gguf: &Path, form: &str, prompt: &[u32], n: usize, kernel: &str) -> (Vec<usize>, Vec<f32>) {
    greedy_logits(
        gguf,
        prompt,
        n,
        kernel,
        &temp(form, &format!("{kernel}.npy")),
    )
}

fn check(form: &str) {
    let e = expected(form);
    let gguf = convert(form);
    let vocab = e.shape[1];

    // The converted tokenizer against the `tokenizers` library's ids of the prompt text.
    let o = infer(&[
        "tokenize",
        "--model",
        gguf.to_str().unwrap(),
        "--text",
        &e.prompt_text,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ids(&t["ids"]), e.prompt, "{form}: tokenize");

    let best = bitnet::kernels::Kernel::detect().name();
    let kernels: &[&str] = if best == "scalar" {
        &["scalar"]
    } else {
        &["scalar", best]
    };
    for &kernel in kernels {
        let (shape, got) = run(&gguf, form, &e.prompt, e.greedy.len(), kernel);
        assert_eq!(shape[1], vocab, "{form} {kernel}: vocabulary");
        assert!(
            shape[0] >= e.prompt.len(),
            "{form} {kernel}: {} rows",
            shape[0]
        );
        for (p, (g, w)) in got
            .chunks_exact(vocab)
            .zip(e.logits.chunks_exact(vocab))
            .enumerate()
        {
            let worst = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                worst <= TOLERANCE,
                "{form} {kernel}: position {p}: max |diff| {worst} against transformers"
            );
        }
        // Row i holds the logits after position i: greedy token k is the argmax of row
        // prompt.len() - 1 + k. The engine stops early at an EOS, which transformers'
        // greedy run (no EOS) would not: fewer tokens, so a mismatch too.
        let greedy: Vec<u32> = (0..e.greedy.len())
            .map(|k| e.prompt.len() - 1 + k)
            .take_while(|&r| r < shape[0])
            .map(|r| argmax(&got[r * vocab..(r + 1) * vocab]))
            .collect();
        assert_eq!(greedy, e.greedy, "{form} {kernel}: greedy tokens");
    }
    std::fs::remove_file(&gguf).ok();
}

#[test]
fn bf16_master_checkpoint_matches_transformers() {
    check("bf16");
}

#[test]
fn packed_checkpoint_matches_transformers() {
    check("packed");
}
